//! Evaluations of the 784-50-10 net (f32) over 60000 images in a loop, as
//! the trainer evaluates, for profilers:
//! `cargo run --release -p benches --example eval_loop -- THREADS ROUNDS`,
//! then e.g. `perf record -g target/release/examples/eval_loop 2 100`.

use benches::{images, two_layer_net};
use std::time::Instant;
use train::{accuracy, ImageData};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| match args.get(i) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("usage: eval_loop [THREADS 1-64] [ROUNDS]; got {text:?}");
            std::process::exit(2)
        }),
    };
    let threads = number(0, 2).clamp(1, 64);
    let rounds = number(1, 100).max(1);
    let (pixels, labels, _) = images(60000);
    let data = ImageData::new(&pixels, &labels, 784).expect("images and labels of one length");
    let net = two_layer_net::<f32>();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a pool of at most 64 threads");
    let seconds = pool.install(|| {
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(accuracy(&net, data));
        }
        start.elapsed().as_secs_f64()
    });
    println!(
        "{threads} threads: {:.1} ms an evaluation of {} images",
        seconds * 1e3 / rounds as f64,
        data.len()
    );
}
