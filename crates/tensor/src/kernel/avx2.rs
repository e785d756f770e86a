//! The AVX2 + FMA tile set: register tiles for x86-64 CPUs with AVX2 and
//! FMA, written with explicit vector intrinsics.
//!
//! Why not leave it to LLVM's vectorizer (as the portable tiles do): for a
//! 6 x 16 f32 tile it does well, but for the short, wide tiles that small
//! batches need (3 rows: the gradient check and the numerical gradient) it
//! mixes scalar, 128-bit and 256-bit lanes and runs at a quarter of the
//! speed. Here every tile is `MR` rows of `NR / LANES` vector accumulators:
//! per step of k, `NR / LANES` loads of B, `MR` broadcasts of A and
//! `MR * NR / LANES` fused multiply-adds, nothing else (tiles with fewer than
//! 8 sums keep a second set for odd steps, to hide the FMA latency).
//!
//! The tiles are safe code: since Rust 1.87 the value intrinsics are safe to
//! call from functions compiled with the features they need, and loads and
//! stores go through fixed-size arrays (`_mm256_setr_*` from consecutive
//! elements compiles to one unaligned vector load, lane extracts written to
//! consecutive elements to one vector store). The one `unsafe` is the entry
//! from code compiled without those features, in [`TileSet::gemm`] for
//! [`Avx2`], a value that exists only where the CPU has both.

use super::{driver, store_tile, Steps, TileAt, TileSet};
use crate::{MatMut, MatRef};
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

macro_rules! impl_tile_set {
    ($t:ty, $gemm:ident) => {
        impl TileSet<$t> for Avx2 {
            fn gemm<const MR: usize, const NR: usize, const NH: usize>(
                &self,
                alpha: $t,
                a: &MatRef<$t>,
                b: &MatRef<$t>,
                beta: $t,
                c: &mut MatMut<$t>,
                pack_a: &mut Vec<$t>,
                pack_b: &mut Vec<$t>,
            ) {
                // SAFETY: `self` exists only when `Avx2::detect` found AVX2 and
                // FMA on this CPU, the two features `$gemm` is compiled with.
                unsafe { $gemm::<MR, NR, NH>(alpha, a, b, beta, c, pack_a, pack_b) }
            }
        }
    };
}

impl_tile_set!(f32, gemm_f32);
impl_tile_set!(f64, gemm_f64);

/// Most vector accumulators in a tile row: 4 vectors x 3 rows = 12 sums, which
/// with 3 broadcasts of A and one vector of B fill the 16 ymm registers.
const MAX_VECTORS: usize = 4;

macro_rules! avx2_kernels {
    (
        $gemm:ident, $tile:ident, $t:ty, $v:ty, $lanes:literal,
        $zero:ident, $splat:ident, $fmadd:ident, $mul:ident, $add:ident, $load:ident, $store:ident
    ) => {
        /// The driver with this file's tiles, compiled for AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $gemm<const MR: usize, const NR: usize, const NH: usize>(
            alpha: $t,
            a: &MatRef<$t>,
            b: &MatRef<$t>,
            beta: $t,
            c: &mut MatMut<$t>,
            pack_a: &mut Vec<$t>,
            pack_b: &mut Vec<$t>,
        ) {
            driver::gemm::<$t, MR, NR, NH>(
                alpha,
                a,
                b,
                beta,
                c,
                pack_a,
                pack_b,
                |panel, steps, c, at| $tile::<MR, NR>(panel, steps, c, at),
                |panel, steps, c, at| $tile::<MR, NH>(panel, steps, c, at),
            )
        }

        /// One `MR x NR` tile: `sum_k A[.., k] B[k, ..]` in registers, then
        /// merged into C.
        #[target_feature(enable = "avx2,fma")]
        fn $tile<const MR: usize, const NR: usize>(
            a_panel: &[$t],
            b: Steps<'_, $t>,
            c: &mut MatMut<'_, $t>,
            at: TileAt<$t>,
        ) {
            let vectors = const {
                assert!(NR % $lanes == 0 && NR / $lanes <= MAX_VECTORS);
                NR / $lanes
            };
            let mut acc = [[$zero(); MAX_VECTORS]; MR];
            let steps = a_panel.len() / MR;
            // One step: broadcast each of the MR values of A against the
            // NR values of B. `b_step` has exactly NR elements, so every
            // index below is provably in bounds and the loop cannot panic
            // (a panic path makes LLVM keep the sums in memory).
            //
            // The loop order keeps the live registers at most 16: B first
            // holds `vectors` loads of B and one broadcast (tall tiles), A
            // first holds `MR` broadcasts and one load of B (wide tiles).
            // (A macro, not a closure: a closure called from both loops
            // below is not inlined, and a call per step costs more than the step.)
            macro_rules! step {
                ($acc:ident, $a_step:expr, $b_step:expr) => {{
                    let (a_step, b_step): (&[$t], &[$t]) = ($a_step, $b_step);
                    let (b_vectors, _) = b_step.as_chunks::<$lanes>();
                    if vectors <= MR {
                        let mut bv = [$zero(); MAX_VECTORS];
                        for v in 0..vectors {
                            bv[v] = $load(&b_vectors[v]);
                        }
                        for i in 0..MR {
                            let ai = $splat(a_step[i]);
                            for v in 0..vectors {
                                $acc[i][v] = $fmadd(ai, bv[v], $acc[i][v]);
                            }
                        }
                    } else {
                        let mut av = [$zero(); MR];
                        for i in 0..MR {
                            av[i] = $splat(a_step[i]);
                        }
                        for v in 0..vectors {
                            let bv = $load(&b_vectors[v]);
                            for i in 0..MR {
                                $acc[i][v] = $fmadd(av[i], bv, $acc[i][v]);
                            }
                        }
                    }
                }};
            }
            if steps > 0 {
                let b_run = b.run(steps, NR);
                if MR * vectors < 8 {
                    // Fewer than 8 sums cannot hide the 4-cycle latency of a
                    // multiply-add on two units: odd steps go to a second
                    // set of sums, added in at the end (narrow tail tiles).
                    let mut odd = [[$zero(); MAX_VECTORS]; MR];
                    let a_pairs = a_panel.chunks_exact(2 * MR);
                    let a_last = a_pairs.remainder();
                    if b.stride == NR {
                        let b_pairs = b_run.chunks_exact(2 * NR);
                        let b_last = b_pairs.remainder();
                        for (a_pair, b_pair) in a_pairs.zip(b_pairs) {
                            step!(acc, &a_pair[..MR], &b_pair[..NR]);
                            step!(odd, &a_pair[MR..], &b_pair[NR..]);
                        }
                        if a_last.len() == MR && b_last.len() == NR {
                            step!(acc, a_last, b_last);
                        }
                    } else {
                        let mut b_steps = b_run.windows(NR).step_by(b.stride);
                        for a_pair in a_pairs {
                            if let (Some(b_even), Some(b_odd)) = (b_steps.next(), b_steps.next()) {
                                step!(acc, &a_pair[..MR], b_even);
                                step!(odd, &a_pair[MR..], b_odd);
                            }
                        }
                        if let (true, Some(b_last)) = (a_last.len() == MR, b_steps.next()) {
                            step!(acc, a_last, b_last);
                        }
                    }
                    for (acc_row, odd_row) in acc.iter_mut().zip(&odd) {
                        for v in 0..vectors {
                            acc_row[v] = $add(acc_row[v], odd_row[v]);
                        }
                    }
                } else if b.stride == NR {
                    for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.chunks_exact(NR)) {
                        step!(acc, a_step, b_step);
                    }
                } else {
                    for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.windows(NR).step_by(b.stride)) {
                        step!(acc, a_step, b_step);
                    }
                }
            }
            if at.fills_rows_of(c, NR) {
                // Whole vectors straight from the registers into C's rows.
                let (alpha, beta) = (at.alpha, at.beta);
                let alpha_v = $splat(alpha);
                let beta_v = $splat(beta);
                for (i, acc_row) in acc.iter().enumerate().take(at.rows) {
                    let start = (at.row0 + i) * c.row_stride + at.col0;
                    let (out, _) = c.data[start..start + NR].as_chunks_mut::<$lanes>();
                    for v in 0..vectors {
                        let scaled = $mul(alpha_v, acc_row[v]);
                        // BLAS: with beta == 0, C is write-only (NaN in C must not leak).
                        let merged = if beta == 0.0 {
                            scaled
                        } else {
                            $fmadd(beta_v, $load(&out[v]), scaled)
                        };
                        $store(merged, &mut out[v]);
                    }
                }
            } else {
                // A partial or strided tile: through an array, clipped there.
                let mut tile = [[0.0; NR]; MR];
                for (tile_row, acc_row) in tile.iter_mut().zip(&acc) {
                    let (lanes, _) = tile_row.as_chunks_mut::<$lanes>();
                    for v in 0..vectors {
                        $store(acc_row[v], &mut lanes[v]);
                    }
                }
                store_tile(c, &tile, at);
            }
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load_f32(x: &[f32; 8]) -> __m256 {
    _mm256_setr_ps(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn store_f32(v: __m256, out: &mut [f32; 8]) {
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
fn load_f64(x: &[f64; 4]) -> __m256d {
    _mm256_setr_pd(x[0], x[1], x[2], x[3])
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn store_f64(v: __m256d, out: &mut [f64; 4]) {
    let lo = _mm256_castpd256_pd128(v);
    let hi = _mm256_extractf128_pd::<1>(v);
    *out = [
        _mm_cvtsd_f64(lo),
        _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)),
        _mm_cvtsd_f64(hi),
        _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)),
    ];
}

avx2_kernels!(
    gemm_f32,
    tile_f32,
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
avx2_kernels!(
    gemm_f64,
    tile_f64,
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
