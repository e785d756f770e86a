//! One iteration of the book's run (784-50-10 ReLU, batch 100, f32): gather
//! the batch, forward, backward, update; with SGD (the chapter-5 recipe) and
//! with Adam. Run as the trainer runs it (see `train::with_busy_workers`).
//!
//! `cargo bench --bench train_step`

use benches::{images, two_layer_net};
use criterion::{criterion_group, criterion_main, Criterion};
use layers::{LayerRng, OptimizerConfig, OptimizerKind, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;
use train::{with_busy_workers, Dataset as _, ImageData};

fn train_step(c: &mut Criterion) {
    let (pixels, labels, _) = images(60000);
    let n = labels.len();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut layer_rng = LayerRng::seed_from_u64(42);
    let mut x = Tensor::<f32>::zeros(&[100, 784]);
    let mut t = Vec::with_capacity(100);
    let mut indices = vec![0usize; 100];
    let data = ImageData::new(&pixels, &labels, 784).unwrap();
    for (kind, learning_rate) in [(OptimizerKind::Sgd, 0.1), (OptimizerKind::Adam, 0.001)] {
        let mut net = two_layer_net::<f32>();
        let mut optimizer = OptimizerConfig::new(kind)
            .with_learning_rate(learning_rate)
            .build::<f32>(&net)
            .unwrap();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let name = match kind {
                OptimizerKind::Sgd => format!("train_step batch 100 threads {threads}"),
                _ => format!("train_step {kind} batch 100 threads {threads}"),
            };
            c.bench_function(&name, |b| {
                // As the trainer runs it: the other workers kept busy.
                pool.install(|| {
                    with_busy_workers(|_| {
                        b.iter(|| {
                            for index in indices.iter_mut() {
                                *index = rng.random_range(0..n);
                            }
                            data.gather(&indices, &mut x, &mut t);
                            net.gradient_unchecked(&x, Target::Labels(&t), &mut layer_rng);
                            optimizer.step(&mut net);
                        })
                    })
                })
            });
        }
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
