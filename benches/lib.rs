//! Shared set-up for the criterion benchmarks in `benches/benches/`.
//!
//! Timing does not depend on pixel values, so the benchmarks run on the real
//! MNIST files when `MNIST_DIR` is set and on random bytes of the same shape
//! otherwise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{Element, MatMut, MatRef, Transpose};
use train::Dataset as _;

/// `println!` for the examples, which never panics: once stdout is closed
/// (`gemm_table | head` has read what it wanted) the example ends quietly,
/// as a command-line tool does; any other failure to write ends it with
/// the error.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

/// The line of [`say!`].
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// The GEMMs of one training step of the 784-50-10 net at batch 100, and of
/// evaluation: `(name, m, k, n, transpose A, transpose B)` with op(A) m x k.
pub const TRAINING_SHAPES: &[(&str, usize, usize, usize, Transpose, Transpose)] = &[
    ("fwd1 [100x784]x[784x50]", 100, 784, 50, Transpose::No, Transpose::No),
    (
        "dW1 x^T.dout [784x100]x[100x50]",
        784,
        100,
        50,
        Transpose::Yes,
        Transpose::No,
    ),
    ("fwd2 [100x50]x[50x10]", 100, 50, 10, Transpose::No, Transpose::No),
    (
        "dW2 h^T.dout [50x100]x[100x10]",
        50,
        100,
        10,
        Transpose::Yes,
        Transpose::No,
    ),
    (
        "dx2 dout.W2^T [100x10]x[10x50]",
        100,
        10,
        50,
        Transpose::No,
        Transpose::Yes,
    ),
    (
        "eval [10000x784]x[784x50]",
        10000,
        784,
        50,
        Transpose::No,
        Transpose::No,
    ),
    (
        "gradcheck fwd1 [3x784]x[784x50]",
        3,
        784,
        50,
        Transpose::No,
        Transpose::No,
    ),
    (
        "gradcheck dW1 [784x3]x[3x50]",
        784,
        3,
        50,
        Transpose::Yes,
        Transpose::No,
    ),
];

/// The GEMMs of a SimpleConvNet step at batch 100 (`gemm_table --convnet`):
/// its convolution's forward per image (30 filters of 5x5 taps over 576
/// windows), its weight gradient as a GEMM would take it (the step takes it
/// by `row_products`, timed beside), and its hidden affine layer's three
/// products.
pub const CONVNET_SHAPES: &[(&str, usize, usize, usize, Transpose, Transpose)] = &[
    ("conv W.col [30x25]x[25x576]", 30, 25, 576, Transpose::No, Transpose::No),
    (
        "conv dW G.col^T [30x576]x[576x25]",
        30,
        576,
        25,
        Transpose::No,
        Transpose::Yes,
    ),
    (
        "affine fwd [100x4320]x[4320x100]",
        100,
        4320,
        100,
        Transpose::No,
        Transpose::No,
    ),
    (
        "affine dW x^T.G [4320x100]x[100x100]",
        4320,
        100,
        100,
        Transpose::Yes,
        Transpose::No,
    ),
    (
        "affine dX G.W^T [100x100]x[100x4320]",
        100,
        100,
        4320,
        Transpose::No,
        Transpose::Yes,
    ),
];

/// Operands for `C = op(A) op(B)`: A and B stored so that op() gives the shape.
pub struct GemmCase<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
    pub c: Vec<T>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: Transpose,
    pub tb: Transpose,
}

impl<T: Element> GemmCase<T> {
    pub fn new(m: usize, k: usize, n: usize, ta: Transpose, tb: Transpose) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut random = |len: usize| (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect();
        GemmCase {
            a: random(m * k),
            b: random(k * n),
            c: vec![T::ZERO; m * n],
            m,
            k,
            n,
            ta,
            tb,
        }
    }

    /// The three views, with the transposes applied through strides.
    pub fn views(&mut self) -> (MatRef<'_, T>, MatRef<'_, T>, MatMut<'_, T>) {
        let a = match self.ta {
            Transpose::No => MatRef::row_major(&self.a, self.m, self.k),
            Transpose::Yes => MatRef::row_major(&self.a, self.k, self.m).t(),
        };
        let b = match self.tb {
            Transpose::No => MatRef::row_major(&self.b, self.k, self.n),
            Transpose::Yes => MatRef::row_major(&self.b, self.n, self.k).t(),
        };
        (a, b, MatMut::row_major(&mut self.c, self.m, self.n))
    }

    /// Floating-point operations of one product: 2 m n k.
    pub fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }
}

/// `count` images of 784 pixels and their labels: the first `count` MNIST
/// training images when `MNIST_DIR` is set, seeded random bytes otherwise.
pub fn images(count: usize) -> (mnist::Pixels, Vec<u8>, &'static str) {
    // In `Pixels`, as the trainer holds them (huge pages), so that the
    // gather's cache and TLB misses are the trainer's.
    let in_pixels = mnist::Pixels::copy_of;
    if let Some(dir) = std::env::var_os("MNIST_DIR") {
        if let Ok(data) = mnist::Mnist::load(std::path::Path::new(&dir), mnist::Dataset::Mnist) {
            let n = count.min(data.train.len());
            return (
                in_pixels(&data.train.images[..n * 784]),
                data.train.labels[..n].to_vec(),
                "MNIST",
            );
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let pixels: Vec<u8> = (0..count * 784).map(|_| rng.random_range(0..=255u8)).collect();
    let labels = (0..count).map(|_| rng.random_range(0..10u8)).collect();
    (in_pixels(&pixels), labels, "random")
}

/// The first `count` images as a `[count, 784]` tensor in `[0, 1]`, with labels.
pub fn batch<T: Element>(count: usize) -> (tensor::Tensor<T>, Vec<usize>) {
    let (pixels, labels, _) = images(count);
    let data = train::ImageData::new(&pixels, &labels, 784).expect("count images of 784 pixels");
    let (mut x, mut t) = (tensor::Tensor::zeros(&[0]), Vec::new());
    data.gather_range(0, count, &mut x, &mut t);
    (x, t)
}

/// The book's TwoLayerNet, 784-50-10, seed 42.
pub fn two_layer_net<T: Element>() -> layers::Sequential<T> {
    layers::Mlp::two_layer_net(784, 50, 10)
        .build(42)
        .expect("the book's network is valid")
}

/// The numbers an example takes on its command line, each with its default
/// and its range; anything else ends the process with `usage` (exit 2).
pub fn example_args(usage: &str, specs: &[(usize, std::ops::RangeInclusive<usize>)]) -> Vec<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() > specs.len() {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, (default, range))| match args.get(i) {
            None => *default,
            Some(text) => match text.parse() {
                Ok(value) if range.contains(&value) => value,
                _ => {
                    eprintln!("usage: {usage}; got {text:?}");
                    std::process::exit(2)
                }
            },
        })
        .collect()
}

/// Seconds that `work` takes on a pool of `threads`, run as the trainer runs
/// (on a worker, the others kept busy: `train::with_busy_workers`).
pub fn seconds_on_busy_pool(threads: usize, work: impl FnOnce() + Send) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a pool of a sane number of threads");
    pool.install(|| {
        train::with_busy_workers(|_| {
            let start = std::time::Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
    })
}
