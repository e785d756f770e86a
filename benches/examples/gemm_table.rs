//! GEMM GFLOP/s at the training shapes, best of several timed runs, one line
//! per shape: quick to read, and the same shapes and method as
//! `benches/numpy/gemm_table.py`, so `benches/compare_numpy.sh` can put the
//! two side by side (OpenBLAS vs ours, one thread, same run).
//!
//! `cargo run --release -p benches --example gemm_table` (`-- --tsv` for
//! tab-separated lines: type, shape, packed GFLOP/s, matrixmultiply GFLOP/s).
//! The table also gives the packed kernel on its AVX2 tiles, which CPUs
//! with AVX-512 do not run otherwise.

use benches::{GemmCase, TRAINING_SHAPES};
use std::time::Instant;
use tensor::{gemm_with, Element, GemmBackend};

fn best_seconds<T: Element>(case: &mut GemmCase<T>, backend: GemmBackend) -> f64 {
    let reps = (200_000_000 / (case.m * case.k * case.n)).max(1);
    let mut run = || {
        let (a, b, c) = case.views();
        gemm_with(backend, T::ONE, a, b, T::ZERO, c).expect("shapes fit");
    };
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

fn table<T: Element>(tsv: bool) {
    for &(name, m, k, n, ta, tb) in TRAINING_SHAPES {
        let mut case = GemmCase::<T>::new(m, k, n, ta, tb);
        let flops = case.flops() as f64;
        let packed = best_seconds(&mut case, GemmBackend::Packed);
        let avx2 = best_seconds(&mut case, GemmBackend::PackedAvx2);
        let mm = best_seconds(&mut case, GemmBackend::MatrixMultiply);
        if tsv {
            println!(
                "{}\t{name}\t{:.1}\t{:.1}",
                T::NAME,
                flops / packed / 1e9,
                flops / mm / 1e9
            );
            continue;
        }
        println!(
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
    table::<f32>(tsv);
    table::<f64>(tsv);
}
