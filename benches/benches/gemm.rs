//! GEMM at the shapes training uses, in GFLOP/s (criterion's "elem/s" with
//! 2mnk elements per product): the packed kernel, matrixmultiply, and the
//! naive loop, for f32 and f64.
//!
//! `cargo bench --bench gemm`

use benches::{GemmCase, TRAINING_SHAPES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tensor::{gemm_naive, gemm_with, Element, GemmBackend};

fn bench_type<T: Element>(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("gemm_{}", T::NAME));
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    for &(name, m, k, n, ta, tb) in TRAINING_SHAPES {
        let mut case = GemmCase::<T>::new(m, k, n, ta, tb);
        group.throughput(Throughput::Elements(case.flops()));
        for (label, backend) in [
            ("packed", GemmBackend::Packed),
            ("matrixmultiply", GemmBackend::MatrixMultiply),
        ] {
            group.bench_function(BenchmarkId::new(label, name), |bench| {
                bench.iter(|| {
                    let (a, b, c) = case.views();
                    gemm_with(backend, T::ONE, a, b, T::ZERO, c).unwrap();
                })
            });
        }
        // The naive loop is only worth timing on the small shapes.
        if m * n * k <= 4_000_000 {
            group.bench_function(BenchmarkId::new("naive", name), |bench| {
                bench.iter(|| {
                    let (a, b, c) = case.views();
                    gemm_naive(T::ONE, a, b, T::ZERO, c).unwrap();
                })
            });
        }
    }
    group.finish();
}

fn gemm_benches(c: &mut Criterion) {
    bench_type::<f32>(c);
    bench_type::<f64>(c);
}

criterion_group!(benches, gemm_benches);
criterion_main!(benches);
