//! GEMM GFLOP/s at the training shapes, best of several timed runs, one line
//! per shape: quick to read, and the same shapes and method as
//! `benches/numpy/gemm_table.py`, so `benches/compare_numpy.sh` can put the
//! two side by side (OpenBLAS vs ours, one thread, same run).
//!
//! `cargo run --release -p benches --example gemm_table` (`-- --tsv` for
//! tab-separated lines: type, shape, packed GFLOP/s, matrixmultiply GFLOP/s;
//! `-- --convnet` for SimpleConvNet's products instead, in f32; `-- --sparse`
//! for the MLP's first layer on MNIST images (`MNIST_DIR`) as the packed GEMM
//! and as `tensor::sparse` compute it, one thread).
//! The table also gives the packed kernel on its AVX2 tiles, which CPUs
//! with AVX-512 do not run otherwise.

use benches::{GemmCase, CONVNET_SHAPES, TRAINING_SHAPES};
use std::time::Instant;
use tensor::row_products::row_products;
use tensor::{gemm_with, Element, GemmBackend, Transpose};

fn best_seconds<T: Element>(case: &mut GemmCase<T>, backend: GemmBackend) -> f64 {
    let reps = (200_000_000 / (case.m * case.k * case.n)).max(1);
    best_of(reps, || {
        let (a, b, c) = case.views();
        gemm_with(backend, T::ONE, a, b, T::ZERO, c).expect("shapes fit");
    })
}

/// The best mean time of a call of `run` over 7 timed runs of `reps` calls,
/// after a warm-up of up to 50.
fn best_of(reps: usize, mut run: impl FnMut()) -> f64 {
    for _ in 0..reps.min(50) {
        run();
    }
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..reps {
            run();
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn table<T: Element>(shapes: &[(&str, usize, usize, usize, Transpose, Transpose)], tsv: bool) {
    for &(name, m, k, n, ta, tb) in shapes {
        let mut case = GemmCase::<T>::new(m, k, n, ta, tb);
        let flops = case.flops() as f64;
        let packed = best_seconds(&mut case, GemmBackend::Packed);
        let avx2 = best_seconds(&mut case, GemmBackend::PackedAvx2);
        let mm = best_seconds(&mut case, GemmBackend::MatrixMultiply);
        if tsv {
            benches::say!(
                "{}\t{name}\t{:.1}\t{:.1}",
                T::NAME,
                flops / packed / 1e9,
                flops / mm / 1e9
            );
            continue;
        }
        benches::say!(
            "{} {name:<34} packed {:>8.1} us {:>6.1} GFLOP/s (AVX2 tiles {:>6.1}) | matrixmultiply {:>8.1} us {:>6.1} GFLOP/s",
            T::NAME,
            packed * 1e6,
            flops / packed / 1e9,
            flops / avx2 / 1e9,
            mm * 1e6,
            flops / mm / 1e9
        );
    }
}

fn main() {
    let tsv = std::env::args().any(|arg| arg == "--tsv");
    if std::env::args().any(|arg| arg == "--sparse") {
        sparse_lines();
        return;
    }
    if std::env::args().any(|arg| arg == "--convnet") {
        table::<f32>(CONVNET_SHAPES, tsv);
        if !tsv {
            row_products_line();
        }
        return;
    }
    table::<f32>(TRAINING_SHAPES, tsv);
    table::<f64>(TRAINING_SHAPES, tsv);
}

/// SimpleConvNet's weight gradient as `row_products` computes it: `G col^T`
/// summed over a task's 5 images, 30 filters by 25 taps over 576 windows.
fn row_products_line() {
    let (images, filters, taps, windows) = (5, 30, 25, 576);
    let case = GemmCase::<f32>::new(images * filters, windows, images * taps, Transpose::No, Transpose::No);
    let (g, col) = (&case.a[..], &case.b[..]);
    let mut dw = vec![0.0f32; filters * taps];
    let best = best_of(2000, || {
        row_products(
            (g, filters * windows),
            (col, taps * windows),
            images,
            (filters, taps, windows),
            &mut dw,
        )
    });
    let flops = 2.0 * (images * filters * taps * windows) as f64;
    benches::say!(
        "f32 conv dW row_products, 5 images       {:>8.1} us an image {:>6.1} GFLOP/s",
        best * 1e6 / images as f64,
        flops / best / 1e9
    );
}

/// The first layer's product on MNIST images, dense and over the nonzero
/// pixels: `X W` for a batch of 100 and for 10000 images.
fn sparse_lines() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool");
    pool.install(|| {
        let (n, k) = (50, 784);
        let (x, _) = benches::batch::<f32>(10_000);
        let source = if std::env::var_os("MNIST_DIR").is_some() { "MNIST" } else { "random bytes" };
        let nonzero = x.as_slice().iter().filter(|&&v| v != 0.0).count() as f64 / x.numel() as f64;
        benches::say!("f32 first layer on {source} images, {:.1}% nonzero", 100.0 * nonzero);
        let w = GemmCase::<f32>::new(k, n, 1, Transpose::No, Transpose::No).a;
        for (name, m) in [("fwd1 X.W", 100), ("eval X.W", 10_000)] {
            let a = &x.as_slice()[..m * k];
            let mut c = vec![0.0f32; m * n];
            let reps = (200_000_000 / (m * k * n)).max(1);
            let dense = best_of(reps, || {
                let (a, w) = (tensor::MatRef::row_major(a, m, k), tensor::MatRef::row_major(&w, k, n));
                let c = tensor::MatMut::row_major(&mut c, m, n);
                gemm_with(GemmBackend::Packed, 1.0, a, w, 0.0, c).expect("shapes fit");
            });
            let sparse = best_of(reps, || tensor::sparse::product(a, &w, (m, k, n), &mut c));
            let count = best_of(reps, || {
                std::hint::black_box(tensor::sparse::pays(a, k, n));
            });
            benches::say!(
                "f32 {name:<10} m = {m:<6} packed GEMM {:>8.1} us | over nonzero values {:>8.1} us (+ {:>6.1} us to count them): {:.2}x",
                dense * 1e6,
                sparse * 1e6,
                count * 1e6,
                dense / (sparse + count)
            );
        }
    });
}
