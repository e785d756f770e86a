//! Backprop against the numerical gradient on the same TwoLayerNet (784-50-10,
//! seed 42) and the same 3-image batch in f64, as in the gradient check; and
//! backprop at batch 100 in f32, as in training. Prints the ratio at the end.
//!
//! `cargo bench --bench gradient`

use benches::{batch, two_layer_net};
use criterion::Criterion;
use layers::gradcheck::numerical_gradient;
use layers::{LayerRng, Target};
use rand::SeedableRng;
use std::time::{Duration, Instant};

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let (x3, t3) = batch::<f64>(3);
    let (x100, t100) = batch::<f32>(100);
    let mut net64 = two_layer_net::<f64>();
    let mut net32 = two_layer_net::<f32>();
    let mut rng = LayerRng::seed_from_u64(42);

    let mut group = criterion.benchmark_group("gradient");
    group.bench_function("backprop f64 batch 3", |b| {
        b.iter(|| net64.gradient(&x3, Target::Labels(&t3), &mut rng).unwrap())
    });
    group.bench_function("backprop f32 batch 100", |b| {
        b.iter(|| net32.gradient(&x100, Target::Labels(&t100), &mut rng).unwrap())
    });
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("numerical f64 batch 3", |b| {
        b.iter(|| numerical_gradient(&net64, &x3, Target::Labels(&t3), 1e-4, 42).unwrap())
    });
    group.finish();
    criterion.final_summary();

    // The ratio from this run, on this machine, with the same network and batch.
    let repeats = 2000;
    let start = Instant::now();
    for _ in 0..repeats {
        net64.gradient(&x3, Target::Labels(&t3), &mut rng).unwrap();
    }
    let backprop = start.elapsed().as_secs_f64() / repeats as f64;
    let start = Instant::now();
    numerical_gradient(&net64, &x3, Target::Labels(&t3), 1e-4, 42).unwrap();
    let numerical = start.elapsed().as_secs_f64();
    println!(
        "backprop {:.1} us vs numerical {:.3} s on 3 images (f64, {} threads): backprop is {:.0}x faster",
        backprop * 1e6,
        numerical,
        rayon::current_num_threads(),
        numerical / backprop
    );
}
