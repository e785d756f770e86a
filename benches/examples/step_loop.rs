//! The book's training step (784-50-10, batch 100, SGD) in a loop, run as
//! the trainer runs it (on a pool, its other workers kept busy), for
//! profilers: `cargo run --release -p benches --example step_loop -- THREADS STEPS`,
//! then e.g. `perf record -g target/release/examples/step_loop 2 20000`.

use benches::{example_args, images, seconds_on_busy_pool, two_layer_net};
use layers::{LayerRng, OptimizerConfig, OptimizerKind, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;
use train::{Dataset as _, ImageData};

fn main() {
    let numbers = example_args(
        "step_loop [THREADS 1-64] [STEPS 1-10000000]",
        &[(2, 1..=64), (20000, 1..=10_000_000)],
    );
    let (threads, steps) = (numbers[0], numbers[1]);
    let (pixels, labels, _) = images(60000);
    let data = ImageData::new(&pixels, &labels, 784).expect("images and labels of one length");
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut layer_rng = LayerRng::seed_from_u64(42);
    let mut x = Tensor::<f32>::zeros(&[100, 784]);
    let mut batch_labels = Vec::with_capacity(100);
    let mut indices = vec![0usize; 100];
    let mut net = two_layer_net::<f32>();
    let mut optimizer = OptimizerConfig::new(OptimizerKind::Sgd)
        .with_learning_rate(0.1)
        .build::<f32>(&net)
        .expect("SGD has no state to refuse");
    let seconds = seconds_on_busy_pool(threads, || {
        for _ in 0..steps {
            for index in indices.iter_mut() {
                *index = rng.random_range(0..data.len());
            }
            data.gather(&indices, &mut x, &mut batch_labels);
            net.gradient_unchecked(&x, Target::Labels(&batch_labels), &mut layer_rng);
            optimizer.step(&mut net);
        }
    });
    benches::say!(
        "{threads} threads: {:.1} us a step over {steps} steps",
        seconds * 1e6 / steps as f64
    );
}
