//! The AVX-512 tile set: `simd.rs`'s register tiles over 512-bit vectors, for
//! x86-64 CPUs with AVX-512 (F and DQ), where a fused multiply-add does twice
//! the work of an AVX2 one. Used for products of more than 4 rows and at
//! least half a tile wide; the tiles of shorter or narrower products stay
//! AVX2's (`gemm.rs` chooses), and so does the f32 tail tile: 8 columns
//! wide, where one 512-bit vector is 16.
//!
//! Safe code as the AVX2 tiles are (the value intrinsics are safe inside
//! functions compiled with their features, since Rust 1.89 for AVX-512); the
//! one `unsafe` is the entry from code compiled without those features, in
//! the [`TileSet`] impl that `simd_tiles!` writes for [`Avx512`], a value that
//! exists only where the CPU has them.

use super::avx2::{store_f32, store_f64, tile_f32 as avx2_tile_f32};
use super::simd::{simd_tiles, MAX_VECTORS, ROW_BLOCK};
use super::{column_tile_by, dot_tile_by, driver, store_tile, APanel, ARows, Product, Steps, TileAt, TileSet};
use crate::MatMut;
use std::arch::x86_64::*;

/// The AVX-512 tiles. Holding one is the proof that the CPU has AVX-512 F
/// and DQ (and so AVX2 and FMA): [`Avx512::detect`] is the only way to make one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512 {
    _detected: (),
}

impl Avx512 {
    /// The tile set, where this CPU has AVX-512 F and DQ (checked once by the
    /// standard library, then a load of a cached flag).
    pub(crate) fn detect() -> Option<Avx512> {
        let present = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma");
        present.then_some(Avx512 { _detected: () })
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub(crate) fn load_f32x16(x: &[f32; 16]) -> __m512 {
    _mm512_setr_ps(
        x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15],
    )
}

/// As two 256-bit halves, each one vector store.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn store_f32x16(v: __m512, out: &mut [f32; 16]) {
    let (low, high) = out.split_at_mut(8);
    store_f32(_mm512_castps512_ps256(v), low.try_into().expect("8 lanes"));
    store_f32(_mm512_extractf32x8_ps::<1>(v), high.try_into().expect("8 lanes"));
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub(crate) fn load_f64x8(x: &[f64; 8]) -> __m512d {
    _mm512_setr_pd(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn store_f64x8(v: __m512d, out: &mut [f64; 8]) {
    let (low, high) = out.split_at_mut(4);
    store_f64(_mm512_castpd512_pd256(v), low.try_into().expect("4 lanes"));
    store_f64(_mm512_extractf64x4_pd::<1>(v), high.try_into().expect("4 lanes"));
}

simd_tiles!(
    Avx512,
    "avx512f,avx512dq,avx2,fma",
    gemm_f32,
    tile_f32,
    avx2_tile_f32,
    dot_tile_f32,
    true,
    f32,
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    load_f32x16,
    store_f32x16
);
simd_tiles!(
    Avx512,
    "avx512f,avx512dq,avx2,fma",
    gemm_f64,
    tile_f64,
    tile_f64,
    dot_tile_f64,
    true,
    f64,
    __m512d,
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_mul_pd,
    _mm512_add_pd,
    load_f64x8,
    store_f64x8
);
