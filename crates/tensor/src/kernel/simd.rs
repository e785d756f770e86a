//! The register tiles written with explicit vector intrinsics, as one macro
//! over the vector type and its operations, so that the AVX2 (`avx2.rs`) and
//! AVX-512 (`avx512.rs`) tile sets are the same code at two widths. The macro
//! also gives each set its `TileSet` impl: the one `unsafe` of the tiles, the
//! entry from code compiled without the set's features, behind the proof
//! that the set's value holds (it is made only by its `detect`).
//!
//! Every tile is `MR` rows of `NR / LANES` vector accumulators: per step of
//! k, `NR / LANES` loads of B, `MR` broadcasts of A and `MR * NR / LANES`
//! fused multiply-adds, nothing else (tiles with fewer than 8 sums keep a
//! second set for odd steps, to hide the FMA latency).

/// Most vector accumulators in a tile row: 4 vectors x 3 rows = 12 sums, which
/// with 3 broadcasts of A and one vector of B fill AVX2's 16 registers.
pub(crate) const MAX_VECTORS: usize = 4;

macro_rules! simd_tiles {
    (
        $set:ident, $features:literal, $gemm:ident, $tile:ident, $tail_tile:ident, $t:ty, $v:ty, $lanes:literal,
        $zero:ident, $splat:ident, $fmadd:ident, $mul:ident, $add:ident, $load:ident, $store:ident
    ) => {
        impl TileSet<$t> for $set {
            fn gemm<const MR: usize, const NR: usize, const NH: usize>(&self, product: Product<'_, '_, $t>) {
                // SAFETY: a `$set` exists only where its `detect` found on this
                // CPU every feature `$gemm` is compiled with (`$features`).
                unsafe { $gemm::<MR, NR, NH>(product) }
            }
        }

        /// The driver with these tiles, compiled for `$features`.
        #[target_feature(enable = $features)]
        fn $gemm<const MR: usize, const NR: usize, const NH: usize>(product: Product<'_, '_, $t>) {
            driver::gemm::<$t, MR, NR, NH>(
                product,
                |panel, steps, c, at| $tile::<MR, NR>(panel, steps, c, at),
                |panel, steps, c, at| $tail_tile::<MR, NH>(panel, steps, c, at),
            )
        }

        /// One `MR x NR` tile: `sum_k A[.., k] B[k, ..]` in registers, then
        /// merged into C.
        #[target_feature(enable = $features)]
        pub(crate) fn $tile<const MR: usize, const NR: usize>(
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

pub(crate) use simd_tiles;
