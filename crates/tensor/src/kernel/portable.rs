//! The portable tile set: the `MR x NR` micro-kernel in plain Rust, which
//! LLVM vectorizes for whatever the target has (CPUs without AVX2, and the
//! tests' cross-check of the AVX2 tiles).

use super::{dot_tile_by, driver, store_tile, APanel, ARows, Product, Steps, TileAt, TileSet};
use crate::{Element, MatMut};

/// The portable tiles.
pub(crate) struct Portable;

impl<T: Element> TileSet<T> for Portable {
    fn gemm<const MR: usize, const NR: usize, const NH: usize>(&self, product: Product<'_, '_, T>) {
        driver::gemm::<T, MR, NR, NH>(
            product,
            portable_tile::<T, MR, NR>,
            portable_tile::<T, MR, NH>,
            portable_dot_tile::<T, MR, NH>,
            // No column tile: these tiles multiply and add apart (no FMA),
            // and a column tile's `mul_add` would give other values (and be
            // a library call on targets without FMA).
            None::<fn(&[T], &[T], &mut MatMut<'_, T>, TileAt<T>)>,
            // No half tile: only 8-row tiles have one (the portable tiles are
            // at most 6 rows, and their 3-row halves would split their sums).
            None::<fn(ARows<'_, T>, Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>)>,
        )
    }
}

/// One tile through the portable kernel. LLVM vectorizes `micro_kernel`
/// (a multiply and an add per step: `mul_add` would be a library call where
/// the target has no FMA instruction).
#[inline(always)]
pub(crate) fn portable_tile<T: Element, const MR: usize, const NR: usize>(
    a: APanel<'_, T>,
    b: Steps<'_, T>,
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    let tile = micro_kernel::<T, MR, NR>(a, b);
    store_tile(c, &tile, at);
}

/// The `MR x NR` product of one A panel and `kc` steps of B, in registers.
#[inline(always)]
fn micro_kernel<T: Element, const MR: usize, const NR: usize>(a: APanel<'_, T>, b: Steps<'_, T>) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    let steps = a.steps::<MR>();
    if steps == 0 {
        return acc;
    }
    // One bounds check for the whole run of B (and for each row of A read
    // in place); inside the loop no path may panic, or LLVM keeps the sums
    // in memory instead of registers.
    let b_run = b.run(steps, NR);
    // The same body for each way of reading A (packed, or rows in place)
    // and B (a packed panel, or a row-major B in place, steps `stride`
    // apart). Each iterator yields exactly MR or NR elements per step, which
    // keeps the packed loop panic-free; the rows' `rows[i][kk]` may keep a
    // bounds check (the SIMD tiles read rows in blocks to avoid it; these
    // tiles serve only CPUs without AVX2).
    macro_rules! k_loop {
        ($a_steps:expr, $b_steps:expr) => {
            for (a_step, b_step) in $a_steps.zip($b_steps) {
                let a_step: [T; MR] = a_step;
                for i in 0..MR {
                    for j in 0..NR {
                        acc[i][j] += a_step[i] * b_step[j];
                    }
                }
            }
        };
    }
    match a {
        APanel::Packed(panel) => {
            let a_steps = panel.as_chunks::<MR>().0.iter().copied();
            if b.stride == NR {
                k_loop!(a_steps, b_run.chunks_exact(NR));
            } else {
                k_loop!(a_steps, b_run.windows(NR).step_by(b.stride));
            }
        }
        APanel::Rows(rows) => {
            let rows = rows.slices::<MR>();
            let a_steps = (0..steps).map(|kk| std::array::from_fn(|i| rows[i][kk]));
            if b.stride == NR {
                k_loop!(a_steps, b_run.chunks_exact(NR));
            } else {
                k_loop!(a_steps, b_run.windows(NR).step_by(b.stride));
            }
        }
    }
    acc
}

/// The last `at.cols` (at most `NH`) columns of a tile as dot products of
/// A's rows, read in place, and B's packed columns (column `j` at
/// `b_columns[j * steps..]`).
#[inline(always)]
pub(crate) fn portable_dot_tile<T: Element, const MR: usize, const NH: usize>(
    a: ARows<'_, T>,
    b_columns: &[T],
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    dot_tile_by::<T, MR, NH>(a, b_columns, c, at, dot)
}

/// `sum_k x[k] y[k]` in 8 lanes of partial sums (which LLVM vectorizes),
/// added in a fixed order.
#[inline(always)]
fn dot<T: Element>(x: &[T], y: &[T]) -> T {
    const LANES: usize = 8;
    let (x_chunks, x_rest) = x.as_chunks::<LANES>();
    let (y_chunks, y_rest) = y.as_chunks::<LANES>();
    let mut sums = [T::ZERO; LANES];
    for (x_chunk, y_chunk) in x_chunks.iter().zip(y_chunks) {
        for lane in 0..LANES {
            sums[lane] += x_chunk[lane] * y_chunk[lane];
        }
    }
    for (sum, (&x, &y)) in sums.iter_mut().zip(x_rest.iter().zip(y_rest)) {
        *sum += x * y;
    }
    sums.iter().fold(T::ZERO, |total, &sum| total + sum)
}
