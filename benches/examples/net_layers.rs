//! Times every layer of one of the book's convnets, forward (training) and
//! backward, on a batch of 100 random images, on a pool of THREADS:
//! `cargo run --release -p benches --example net_layers -- NET THREADS REPEATS`
//! (NET 0: DeepConvNet, 1: SimpleConvNet). Each figure is the best of
//! REPEATS passes.

use benches::example_args;
use layers::{Layer, LayerRng, NetSpec, SimpleConvNet};
use rand::SeedableRng;
use std::time::Instant;
use tensor::Tensor;

fn main() {
    let numbers = example_args(
        "net_layers [NET 0-1 (DeepConvNet, SimpleConvNet)] [THREADS 1-64] [REPEATS 1-10000]",
        &[(0, 0..=1), (2, 1..=64), (20, 1..=10_000)],
    );
    let (spec, threads, repeats) = match numbers[0] {
        0 => (NetSpec::deep_convnet(), numbers[1], numbers[2]),
        _ => (SimpleConvNet::default().net(), numbers[1], numbers[2]),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a pool");
    let net = spec.build::<f32>(42).expect("the book's net builds");
    let mut layers: Vec<Box<dyn Layer<f32>>> = net.layers().iter().map(|layer| layer.clone_box()).collect();
    let mut rng = LayerRng::seed_from_u64(1);
    let x = Tensor::<f32>::randn(&[100, 1, 28, 28], 1.0, &mut rng);
    let count = layers.len();
    let mut outputs: Vec<Tensor<f32>> = (0..count).map(|_| Tensor::zeros(&[0])).collect();
    let mut grads: Vec<Tensor<f32>> = (0..=count).map(|_| Tensor::zeros(&[0])).collect();
    let (mut forward, mut backward) = (vec![f64::MAX; count], vec![f64::MAX; count]);
    pool.install(|| {
        for _ in 0..repeats {
            for i in 0..count {
                let start = Instant::now();
                let (before, after) = outputs.split_at_mut(i);
                let input = if i == 0 { &x } else { &before[i - 1] };
                layers[i].forward_train(input, &mut after[0], &mut rng);
                forward[i] = forward[i].min(start.elapsed().as_secs_f64());
            }
            grads[count] = Tensor::randn(outputs[count - 1].shape(), 0.01, &mut rng);
            for i in (0..count).rev() {
                let start = Instant::now();
                let input = if i == 0 { &x } else { &outputs[i - 1] };
                let (below, above) = grads.split_at_mut(i + 1);
                let grad_input = if i == 0 { None } else { Some(&mut below[i]) };
                layers[i].backward(input, &outputs[i], &above[0], grad_input);
                backward[i] = backward[i].min(start.elapsed().as_secs_f64());
            }
        }
    });
    for (i, layer) in layers.iter().enumerate() {
        benches::say!(
            "{i:>2} {:<12} {:?}: forward {:6.3} ms, backward {:6.3} ms",
            layer.name(),
            outputs[i].shape(),
            forward[i] * 1e3,
            backward[i] * 1e3
        );
    }
    let (f, b): (f64, f64) = (forward.iter().sum(), backward.iter().sum());
    benches::say!(
        "total: forward {:.2} ms, backward {:.2} ms, a step {:.2} ms",
        f * 1e3,
        b * 1e3,
        (f + b) * 1e3
    );
}
