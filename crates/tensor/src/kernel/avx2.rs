//! The AVX2 + FMA tile set: register tiles for x86-64 CPUs with AVX2 and
//! FMA, written with explicit vector intrinsics.
//!
//! Why not leave it to LLVM's vectorizer (as the portable tiles do): for a
//! 6 x 16 f32 tile it does well, but for the short, wide tiles that small
//! batches need (3 rows: the gradient check and the numerical gradient) it
//! mixes scalar, 128-bit and 256-bit lanes and runs at a quarter of the
//! speed. The tiles themselves are `simd.rs`'s, here over 256-bit vectors.
//!
//! The tiles are safe code: since Rust 1.87 the value intrinsics are safe to
//! call from functions compiled with the features they need, and loads and
//! stores go through fixed-size arrays (`_mm256_setr_*` from consecutive
//! elements compiles to one unaligned vector load, lane extracts written to
//! consecutive elements to one vector store). The one `unsafe` is the entry
//! from code compiled without those features, in the [`TileSet`] impl that
//! `simd_tiles!` writes for [`Avx2`], a value that exists only where the CPU
//! has both.

use super::simd::{simd_tiles, MAX_VECTORS, ROW_BLOCK};
use super::{column_tile_by, dot_tile_by, driver, store_tile, APanel, ARows, Product, Steps, TileAt, TileSet};
use crate::MatMut;
use std::arch::x86_64::*;

/// The AVX2 + FMA tiles. Holding one is the proof that the CPU has both
/// features: [`Avx2::detect`] is the only way to make one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// The tile set, where this CPU has AVX2 and FMA (checked once by the
    /// standard library, then a load of a cached flag).
    pub(crate) fn detect() -> Option<Avx2> {
        let present = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        present.then_some(Avx2 { _detected: () })
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load_f32(x: &[f32; 8]) -> __m256 {
    _mm256_setr_ps(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn store_f32(v: __m256, out: &mut [f32; 8]) {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let lane = |x: i32| f32::from_bits(x as u32);
    *out = [
        lane(_mm_extract_ps::<0>(lo)),
        lane(_mm_extract_ps::<1>(lo)),
        lane(_mm_extract_ps::<2>(lo)),
        lane(_mm_extract_ps::<3>(lo)),
        lane(_mm_extract_ps::<0>(hi)),
        lane(_mm_extract_ps::<1>(hi)),
        lane(_mm_extract_ps::<2>(hi)),
        lane(_mm_extract_ps::<3>(hi)),
    ];
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn load_f64(x: &[f64; 4]) -> __m256d {
    _mm256_setr_pd(x[0], x[1], x[2], x[3])
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn store_f64(v: __m256d, out: &mut [f64; 4]) {
    let lo = _mm256_castpd256_pd128(v);
    let hi = _mm256_extractf128_pd::<1>(v);
    *out = [
        _mm_cvtsd_f64(lo),
        _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)),
        _mm_cvtsd_f64(hi),
        _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)),
    ];
}

simd_tiles!(
    Avx2,
    "avx2,fma",
    gemm_f32,
    tile_f32,
    tile_f32,
    dot_tile_f32,
    false,
    f32,
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    load_f32,
    store_f32
);
simd_tiles!(
    Avx2,
    "avx2,fma",
    gemm_f64,
    tile_f64,
    tile_f64,
    dot_tile_f64,
    false,
    f64,
    __m256d,
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_mul_pd,
    _mm256_add_pd,
    load_f64,
    store_f64
);
