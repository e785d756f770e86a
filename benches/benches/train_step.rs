//! One SGD iteration of the book's run (784-50-10 ReLU, batch 100, f32):
//! gather the batch, forward, backward, update.
//!
//! `cargo bench --bench train_step`

use benches::images;
use criterion::{criterion_group, criterion_main, Criterion};
use layers::{Target, TwoLayerNet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;
use train::ImageData;

fn train_step(c: &mut Criterion) {
    let (pixels, labels, _) = images(60000);
    let n = labels.len();
    let mut net = TwoLayerNet::<f32>::new(784, 50, 10, 0.01, 42);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut x = Tensor::<f32>::zeros(&[100, 784]);
    let mut t = Vec::with_capacity(100);
    let mut indices = vec![0usize; 100];
    let data = ImageData::new(&pixels, &labels, 784).unwrap();
    let mut previous = net.param_buffers();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        c.bench_function(&format!("train_step batch 100 threads {threads}"), |b| {
            pool.install(|| {
                b.iter(|| {
                    for index in indices.iter_mut() {
                        *index = rng.random_range(0..n);
                    }
                    data.gather(&indices, &mut x, &mut t);
                    net.gradient_unchecked(&x, Target::Labels(&t));
                    net.sgd_step_keeping(0.1, &mut previous);
                })
            })
        });
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
