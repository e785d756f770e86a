//! The portable tile set: the `MR x NR` micro-kernel in plain Rust, which
//! LLVM vectorizes for whatever the target has (CPUs without AVX2, and the
//! tests' cross-check of the AVX2 tiles).

use super::{driver, store_tile, Product, Steps, TileAt, TileSet};
use crate::{Element, MatMut};

/// The portable tiles.
pub(crate) struct Portable;

impl<T: Element> TileSet<T> for Portable {
    fn gemm<const MR: usize, const NR: usize, const NH: usize>(&self, product: Product<'_, '_, T>) {
        driver::gemm::<T, MR, NR, NH>(product, portable_tile::<T, MR, NR>, portable_tile::<T, MR, NH>)
    }
}

/// One tile through the portable kernel. LLVM vectorizes `micro_kernel`
/// (a multiply and an add per step: `mul_add` would be a library call where
/// the target has no FMA instruction).
#[inline(always)]
pub(crate) fn portable_tile<T: Element, const MR: usize, const NR: usize>(
    a_panel: &[T],
    b: Steps<'_, T>,
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    let tile = micro_kernel::<T, MR, NR>(a_panel, b);
    store_tile(c, &tile, at);
}

/// The `MR x NR` product of one A panel and `kc` steps of B, in registers.
#[inline(always)]
fn micro_kernel<T: Element, const MR: usize, const NR: usize>(a_panel: &[T], b: Steps<'_, T>) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    let steps = a_panel.len() / MR;
    if steps == 0 {
        return acc;
    }
    // One bounds check for the whole run of B; inside the loop no path may
    // panic, or LLVM keeps the sums in memory instead of registers.
    let b_run = b.run(steps, NR);
    // The same body twice: over a packed panel (contiguous steps) and over a
    // row-major B read in place (steps `stride` apart). Each iterator yields
    // exactly NR elements per step, which is what keeps the loop panic-free.
    if b.stride == NR {
        for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.chunks_exact(NR)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] += a_step[i] * b_step[j];
                }
            }
        }
    } else {
        for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.windows(NR).step_by(b.stride)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] += a_step[i] * b_step[j];
                }
            }
        }
    }
    acc
}
