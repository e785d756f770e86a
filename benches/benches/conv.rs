//! The convolution path at SimpleConvNet's shapes (batch 100 of 1x28x28,
//! 30 filters of 5x5, then a 2x2 max pool): im2col, col2im, the
//! convolution's forward and backward, pooling's forward and backward, and
//! one whole training step of the book's SimpleConvNet (Adam).
//!
//! `cargo bench --bench conv`

use benches::images;
use criterion::{criterion_group, criterion_main, Criterion};
use layers::{layer_stream, Convolution, Layer, OptimizerConfig, OptimizerKind, Pooling, SimpleConvNet, Target};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tensor::conv::{col2im, im2col, ConvGeometry};
use tensor::Tensor;
use train::{Dataset as _, ImageData};

fn conv(c: &mut Criterion) {
    let (pixels, labels, _) = images(100);
    let data = ImageData::new(&pixels, &labels, 784).unwrap();
    let (mut x, mut t) = (Tensor::<f32>::zeros(&[0]), Vec::new());
    data.gather_range(0, 100, &mut x, &mut t);
    x.reshape(&[100, 1, 28, 28]).unwrap();
    let g = ConvGeometry::new((1, 28, 28), (5, 5), 1, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut layer = Convolution::new(
        Tensor::randn(&[30, 1, 5, 5], 0.01, &mut rng),
        Tensor::zeros(&[30]),
        1,
        0,
    );
    let mut col = vec![0.0f32; 100 * g.windows() * g.window_len()];
    let mut back = vec![0.0f32; x.numel()];
    let (mut y, mut dx) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
    let mut stream = layer_stream(1);
    layer.forward_train(&x, &mut y, &mut stream);
    let dy = Tensor::<f32>::randn(y.shape(), 1.0, &mut rng);
    let mut pool = Pooling::new(2, 2, 2, 0);
    let (mut pooled, mut dpool) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
    pool.forward_train(&y, &mut pooled, &mut stream);
    let dpooled = Tensor::<f32>::randn(pooled.shape(), 1.0, &mut rng);

    let mut model = SimpleConvNet::default().build::<f32>(42).unwrap();
    let mut adam = OptimizerConfig::new(OptimizerKind::Adam).build::<f32>(&model).unwrap();

    for threads in [1, 2] {
        let threads_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut group = c.benchmark_group(format!("conv threads {threads}"));
        group.measurement_time(Duration::from_secs(4));
        let on_pool = &threads_pool;
        group.bench_function("im2col 100x1x28x28 5x5", |b| {
            on_pool.install(|| b.iter(|| im2col(x.as_slice(), &g, &mut col)))
        });
        group.bench_function("col2im 100x1x28x28 5x5", |b| {
            on_pool.install(|| b.iter(|| col2im(&col, &g, &mut back)))
        });
        group.bench_function("conv forward 30x5x5 batch 100", |b| {
            on_pool.install(|| b.iter(|| layer.forward_train(&x, &mut y, &mut stream)))
        });
        group.bench_function("conv backward 30x5x5 batch 100 (with dx)", |b| {
            on_pool.install(|| b.iter(|| layer.backward(&x, &y, &dy, Some(&mut dx))))
        });
        group.bench_function("pool forward 2x2 batch 100", |b| {
            on_pool.install(|| b.iter(|| pool.forward_train(&y, &mut pooled, &mut stream)))
        });
        group.bench_function("pool backward 2x2 batch 100", |b| {
            on_pool.install(|| b.iter(|| pool.backward(&y, &pooled, &dpooled, Some(&mut dpool))))
        });
        group.bench_function("SimpleConvNet train step batch 100", |b| {
            on_pool.install(|| {
                b.iter(|| {
                    model.gradient_unchecked(&x, Target::Labels(&t), &mut stream);
                    adam.step(&mut model);
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, conv);
criterion_main!(benches);
