//! A forward pass over the 10000-image test set (f32, chunks of 500 over
//! rayon), and over all 70000 images as one evaluation of the run does; and
//! the book's SimpleConvNet over the 10000 test images.
//!
//! `cargo bench --bench eval`

use benches::{images, two_layer_net};
use criterion::{criterion_group, criterion_main, Criterion};
use layers::SimpleConvNet;
use std::time::Duration;
use train::{accuracy, ImageData};

fn eval(c: &mut Criterion) {
    let (pixels, labels, _) = images(60000);
    let net = two_layer_net::<f32>();
    let convnet = SimpleConvNet::default().build::<f32>(42).unwrap();
    let all = ImageData::new(&pixels, &labels, 784).unwrap();
    let test = ImageData::new(&pixels[..10000 * 784], &labels[..10000], 784).unwrap();
    let mut group = c.benchmark_group("eval");
    group.measurement_time(Duration::from_secs(4));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.bench_function(format!("10k images threads {threads}"), |b| {
            b.iter(|| pool.install(|| accuracy(&net, &test)))
        });
        group.bench_function(format!("70k images threads {threads}"), |b| {
            b.iter(|| pool.install(|| accuracy(&net, &all) + accuracy(&net, &test)))
        });
        group.bench_function(format!("SimpleConvNet 10k images threads {threads}"), |b| {
            b.iter(|| pool.install(|| accuracy(&convnet, &test)))
        });
    }
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
