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
//! second set for odd steps, to hide the FMA latency). A is a packed panel
//! or `MR` rows of a row-major A read in place (`row_tile`). The dot tile
//! gives the last few columns of B as dot products along k instead.

/// Most vector accumulators in a tile row: 4 vectors x 3 rows = 12 sums, which
/// with 3 broadcasts of A and one vector of B fill AVX2's 16 registers.
pub(crate) const MAX_VECTORS: usize = 4;

/// Steps of a row of A read in place per block (even, so a step's place in
/// its block has the parity of the step).
pub(crate) const ROW_BLOCK: usize = 16;

macro_rules! simd_tiles {
    (
        $set:ident, $features:literal, $gemm:ident, $tile:ident, $tail_tile:ident, $dot_tile:ident, $column_tiles:literal, $t:ty, $v:ty, $lanes:literal,
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
            // A tail tile of at least 8 rows never splits its sums (odd and
            // even steps): the column tiles' values are then its values.
            const { assert!(!$column_tiles || MR >= 8) };
            driver::gemm::<$t, MR, NR, NH>(
                product,
                |panel, steps, c, at| $tile::<MR, NR>(panel, steps, c, at),
                |panel, steps, c, at| $tail_tile::<MR, NH>(panel, steps, c, at),
                |rows, columns, c, at| $dot_tile::<MR, NH>(rows, columns, c, at),
                // Column tiles where the tail tile sums each element in one
                // chain (`$column_tiles`), so both give the same values.
                $column_tiles.then_some(
                    |panels: &[$t], columns: &[$t], c: &mut MatMut<'_, $t>, at: TileAt<$t>| {
                        column_tile_by::<$t, MR>(panels, columns, c, at)
                    },
                ),
                // Tiles of 8 rows get a half tile of 4 for a last panel of
                // 4 rows or fewer, where 4 rows still keep 8 sums (or more)
                // and so the same single chain per element as the full tile
                // (fewer split odd and even steps, and would round otherwise).
                (MR == 8 && 4 * (NR / $lanes) >= 8).then_some(
                    |rows: ARows<'_, $t>, steps: Steps<'_, $t>, c: &mut MatMut<'_, $t>, at: TileAt<$t>| {
                        debug_assert!(rows.rows <= 4, "a half tile of {} rows", rows.rows);
                        $tile::<4, NR>(APanel::Rows(rows), steps, c, at)
                    },
                ),
            )
        }

        /// The last `at.cols` (at most `NH`) columns of a tile as dot
        /// products of A's rows, read in place, and B's packed columns
        /// (column `j` at `b_columns[j * steps..]`), vectorized along k.
        #[target_feature(enable = $features)]
        pub(crate) fn $dot_tile<const MR: usize, const NH: usize>(
            a: ARows<'_, $t>,
            b_columns: &[$t],
            c: &mut MatMut<'_, $t>,
            at: TileAt<$t>,
        ) {
            /// `sum_k x[k] y[k]` in four vector sums (the steps of k in
            /// turn, to hide the latency of the multiply-add), added in a
            /// fixed order: the same bits for a row wherever it falls.
            #[target_feature(enable = $features)]
            #[inline]
            fn dot(x: &[$t], y: &[$t]) -> $t {
                let (x_vectors, x_rest) = x.as_chunks::<$lanes>();
                let (y_vectors, y_rest) = y.as_chunks::<$lanes>();
                let (x_groups, x_left) = x_vectors.as_chunks::<4>();
                let (y_groups, y_left) = y_vectors.as_chunks::<4>();
                let mut sums = [$zero(); 4];
                for (x_group, y_group) in x_groups.iter().zip(y_groups) {
                    for s in 0..4 {
                        sums[s] = $fmadd($load(&x_group[s]), $load(&y_group[s]), sums[s]);
                    }
                }
                for (sum, (x_vector, y_vector)) in sums.iter_mut().zip(x_left.iter().zip(y_left)) {
                    *sum = $fmadd($load(x_vector), $load(y_vector), *sum);
                }
                if !x_rest.is_empty() {
                    // The last steps, zero-padded to one vector.
                    let (mut x_last, mut y_last) = ([0.0; $lanes], [0.0; $lanes]);
                    x_last[..x_rest.len()].copy_from_slice(x_rest);
                    y_last[..y_rest.len()].copy_from_slice(y_rest);
                    sums[3] = $fmadd($load(&x_last), $load(&y_last), sums[3]);
                }
                let total = $add($add(sums[0], sums[1]), $add(sums[2], sums[3]));
                let mut lanes = [0.0; $lanes];
                $store(total, &mut lanes);
                lanes.iter().sum()
            }

            dot_tile_by::<$t, MR, NH>(a, b_columns, c, at, |x, y| dot(x, y))
        }

        /// One `MR x NR` tile: `sum_k A[.., k] B[k, ..]` in registers, then
        /// merged into C.
        #[target_feature(enable = $features)]
        pub(crate) fn $tile<const MR: usize, const NR: usize>(
            a: APanel<'_, $t>,
            b: Steps<'_, $t>,
            c: &mut MatMut<'_, $t>,
            at: TileAt<$t>,
        ) {
            // `NR / $lanes` vectors of sums a row, at most MAX_VECTORS.
            const { assert!(NR % $lanes == 0 && NR / $lanes <= MAX_VECTORS) };
            // One step: broadcast each of the MR values of A (`a_at(i)`)
            // against the NR values of B. `b_step` has exactly NR elements
            // and `a_at` indexes an array, so no index can fail and the loop
            // cannot panic (a panic path makes LLVM keep the sums in memory).
            //
            // The loop order keeps the live registers at most 16: B first
            // holds `vectors` loads of B and one broadcast (tall tiles), A
            // first holds `MR` broadcasts and one load of B (wide tiles).
            // (A macro, not a closure: a closure called from several loops
            // is not inlined, and a call per step costs more than the step.)
            macro_rules! step {
                ($acc:ident, $a_at:expr, $b_step:expr) => {{
                    let a_at = $a_at;
                    let b_step: &[$t] = $b_step;
                    let vectors = NR / $lanes;
                    let (b_vectors, _) = b_step.as_chunks::<$lanes>();
                    if vectors <= MR {
                        let mut bv = [$zero(); MAX_VECTORS];
                        for v in 0..vectors {
                            bv[v] = $load(&b_vectors[v]);
                        }
                        for i in 0..MR {
                            let ai = $splat(a_at(i));
                            for v in 0..vectors {
                                $acc[i][v] = $fmadd(ai, bv[v], $acc[i][v]);
                            }
                        }
                    } else {
                        let mut av = [$zero(); MR];
                        for i in 0..MR {
                            av[i] = $splat(a_at(i));
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

            // Fewer than 8 sums cannot hide the 4-cycle latency of a
            // multiply-add on two units: odd steps then go to a second set of
            // sums (narrow tail tiles), added in here at the end.
            macro_rules! add_odd_steps {
                ($acc:ident, $odd:ident) => {
                    if MR * (NR / $lanes) < 8 {
                        for i in 0..MR {
                            for v in 0..NR / $lanes {
                                $acc[i][v] = $add($acc[i][v], $odd[i][v]);
                            }
                        }
                    }
                };
            }

            // A run of B's steps, one per step or in pairs of an even and an
            // odd step (`b_pair[..NR]` and `b_pair[stride..]`), for the
            // two layouts of B: a packed panel, or a row-major B in place.
            macro_rules! for_b_steps {
                ($b:ident, $b_run:ident, |$steps:ident, $pairs:ident| $body:block) => {
                    if $b.stride == NR {
                        let $steps = $b_run.chunks_exact(NR);
                        let $pairs = $b_run.chunks_exact(2 * NR);
                        $body
                    } else {
                        let $steps = $b_run.windows(NR).step_by($b.stride);
                        let $pairs = $b_run.windows($b.stride + NR).step_by(2 * $b.stride);
                        $body
                    }
                };
            }

            // Merges the sums `acc` into C as `at` says.
            macro_rules! store_sums {
                ($acc:ident, $c:ident, $at:ident) => {
                    if $at.fills_rows_of($c, NR) {
                        // Whole vectors straight from the registers into C's rows.
                        let (alpha, beta) = ($at.alpha, $at.beta);
                        let alpha_v = $splat(alpha);
                        let beta_v = $splat(beta);
                        for (i, acc_row) in $acc.iter().enumerate().take($at.rows) {
                            let start = ($at.row0 + i) * $c.row_stride + $at.col0;
                            let (out, _) = $c.data[start..start + NR].as_chunks_mut::<$lanes>();
                            for v in 0..NR / $lanes {
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
                        for (tile_row, acc_row) in tile.iter_mut().zip(&$acc) {
                            let (lanes, _) = tile_row.as_chunks_mut::<$lanes>();
                            for v in 0..NR / $lanes {
                                $store(acc_row[v], &mut lanes[v]);
                            }
                        }
                        store_tile($c, &tile, $at);
                    }
                };
            }

            // A packed panel here; rows of A read in place in `row_tile`, a
            // function of its own (out of line, so that this one keeps a
            // single k loop and its registers).
            match a {
                APanel::Packed(panel) => {
                    let a_steps = panel.as_chunks::<MR>().0;
                    let steps = a_steps.len();
                    // The sums are built in a block and moved out: sums whose
                    // address is taken (by `store_sums`) stay in memory.
                    let acc = {
                        let mut acc = [[$zero(); MAX_VECTORS]; MR];
                        let mut odd = [[$zero(); MAX_VECTORS]; MR];
                        if steps > 0 {
                            let b_run = b.run(steps, NR);
                            for_b_steps!(b, b_run, |b_steps, b_pairs| {
                                if MR * (NR / $lanes) < 8 {
                                    for (a_pair, b_pair) in a_steps.chunks_exact(2).zip(b_pairs) {
                                        step!(acc, |i: usize| a_pair[0][i], &b_pair[..NR]);
                                        step!(odd, |i: usize| a_pair[1][i], &b_pair[b.stride..][..NR]);
                                    }
                                    if steps % 2 == 1 {
                                        let last = steps - 1;
                                        step!(acc, |i: usize| a_steps[last][i], &b_run[last * b.stride..][..NR]);
                                    }
                                } else {
                                    for (a_step, b_step) in a_steps.iter().zip(b_steps) {
                                        step!(acc, |i: usize| a_step[i], b_step);
                                    }
                                }
                            });
                        }
                        add_odd_steps!(acc, odd);
                        acc
                    };
                    store_sums!(acc, c, at);
                }
                APanel::Rows(rows) => row_tile::<MR, NR>(rows.slices::<MR>(), b, c, at),
            }

            /// The tile of `MR` rows of A read in place (each `steps` long)
            /// and `b`, in blocks of `ROW_BLOCK` steps: a block of each row
            /// is one array, so the only checks are one per row per block.
            #[target_feature(enable = $features)]
            #[inline(never)]
            fn row_tile<const MR: usize, const NR: usize>(
                rows: [&[$t]; MR],
                b: Steps<'_, $t>,
                c: &mut MatMut<'_, $t>,
                at: TileAt<$t>,
            ) {
                let steps = rows[0].len();
                let acc = {
                    let mut acc = [[$zero(); MAX_VECTORS]; MR];
                    let mut odd = [[$zero(); MAX_VECTORS]; MR];
                    if steps > 0 {
                        let b_run = b.run(steps, NR);
                        let blocks: [&[[$t; ROW_BLOCK]]; MR] = std::array::from_fn(|i| rows[i].as_chunks().0);
                        let full_blocks = steps / ROW_BLOCK;
                        let blocked = full_blocks * ROW_BLOCK;
                        for_b_steps!(b, b_run, |b_steps, b_pairs| {
                            // Each loop has one exit: a `break` from inside
                            // makes LLVM copy the sums to memory at every step.
                            if MR * (NR / $lanes) < 8 {
                                // ROW_BLOCK is even: blocks hold whole pairs.
                                let mut b_pairs = b_pairs;
                                for block in 0..full_blocks {
                                    let row_block: [&[$t; ROW_BLOCK]; MR] = std::array::from_fn(|i| &blocks[i][block]);
                                    for (pair, b_pair) in (0..ROW_BLOCK / 2).zip(&mut b_pairs) {
                                        step!(acc, |i: usize| row_block[i][2 * pair], &b_pair[..NR]);
                                        step!(
                                            odd,
                                            |i: usize| row_block[i][2 * pair + 1],
                                            &b_pair[b.stride..][..NR]
                                        );
                                    }
                                }
                                for (kk, b_pair) in (blocked..steps - 1).step_by(2).zip(b_pairs) {
                                    step!(acc, |i: usize| rows[i][kk], &b_pair[..NR]);
                                    step!(odd, |i: usize| rows[i][kk + 1], &b_pair[b.stride..][..NR]);
                                }
                                if steps % 2 == 1 {
                                    let last = steps - 1;
                                    step!(acc, |i: usize| rows[i][last], &b_run[last * b.stride..][..NR]);
                                }
                            } else {
                                let mut b_steps = b_steps;
                                for block in 0..full_blocks {
                                    let row_block: [&[$t; ROW_BLOCK]; MR] = std::array::from_fn(|i| &blocks[i][block]);
                                    for (s, b_step) in (0..ROW_BLOCK).zip(&mut b_steps) {
                                        step!(acc, |i: usize| row_block[i][s], b_step);
                                    }
                                }
                                for (kk, b_step) in (blocked..steps).zip(b_steps) {
                                    step!(acc, |i: usize| rows[i][kk], b_step);
                                }
                            }
                        });
                    }
                    add_odd_steps!(acc, odd);
                    acc
                };
                store_sums!(acc, c, at);
            }
        }
    };
}

pub(crate) use simd_tiles;
