//! Evaluations of the 784-50-10 net (f32) over 60000 images in a loop, as
//! the trainer evaluates (its other workers kept busy), for profilers:
//! `cargo run --release -p benches --example eval_loop -- THREADS ROUNDS`,
//! then e.g. `perf record -g target/release/examples/eval_loop 2 100`.

use benches::{example_args, images, seconds_on_busy_pool, two_layer_net};
use train::{accuracy, ImageData};

fn main() {
    let numbers = example_args(
        "eval_loop [THREADS 1-64] [ROUNDS 1-100000]",
        &[(2, 1..=64), (100, 1..=100_000)],
    );
    let (threads, rounds) = (numbers[0], numbers[1]);
    let (pixels, labels, _) = images(60000);
    let data = ImageData::new(&pixels, &labels, 784).expect("images and labels of one length");
    let net = two_layer_net::<f32>();
    let seconds = seconds_on_busy_pool(threads, || {
        for _ in 0..rounds {
            std::hint::black_box(accuracy(&net, &data));
        }
    });
    benches::say!(
        "{threads} threads: {:.1} ms an evaluation of {} images",
        seconds * 1e3 / rounds as f64,
        data.len()
    );
}
