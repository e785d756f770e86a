//! A packed, register-blocked GEMM in safe Rust (the GotoBLAS / BLIS scheme).
//!
//! C is computed in `MR x NR` tiles held in registers. For each block of
//! `KC` steps along k, a `KC x NC` block of B is copied into panels of `NR`
//! columns and an `MC x KC` block of A into panels of `MR` rows, both laid out
//! in the order the micro-kernel reads them, zero-padded at the edges, so
//! the inner loop is `MR * NR` multiply-adds over two contiguous streams.
//!
//! Why not only `matrixmultiply`: it allocates its packing buffers on every
//! call, and the training loop must not allocate. Here the buffers belong to
//! the caller (a thread-local in `gemm.rs`) and are reused.
//!
//! This file is the driver (blocking, packing, edges) and the portable tile,
//! which LLVM vectorizes for whatever the target has. On CPUs with AVX2 and
//! FMA, `gemm.rs` runs the same driver with the explicit tiles of `avx2.rs`.
//! With no more rows of A than one tile (the gradient check's 3 images) B is
//! not packed: the tiles read it in place.

use crate::gemm::{MatMut, MatRef};
use crate::Element;

/// Most steps along k per packed block. k = 784 (an MNIST row) fits in one
/// block, so each tile of C is stored once; on the machines measured this
/// beats two L1-sized blocks of 392, as L2 serves the panels fast enough.
const KC: usize = 1024;
/// Most rows of A per packed block (a multiple of every MR used).
const MC: usize = 144;
/// At most this many rows of a row-major B are read in place, not packed.
const SHORT_K: usize = 32;
/// Columns of B per packed block (a multiple of the usual NR; a block of
/// 4-row products, whose tiles are 24 or 12 wide, just ends in a tail).
const NC: usize = 2048;

/// `C = alpha * A * B + beta * C`; shapes and bounds already checked by the caller.
/// `full_tile` and `half_tile` compute one `MR x NR` (`MR x NH`) tile and
/// merge it into C ([`portable_tile`], or the explicit AVX2 kernels of `avx2.rs`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Element, const MR: usize, const NR: usize, const NH: usize>(
    alpha: T,
    a: &MatRef<T>,
    b: &MatRef<T>,
    beta: T,
    c: &mut MatMut<T>,
    pack_a: &mut Vec<T>,
    pack_b: &mut Vec<T>,
    full_tile: impl Fn(&[T], Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>),
    half_tile: impl Fn(&[T], Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>),
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::ZERO {
        scale_c(c, beta);
        return;
    }
    // Equal blocks rather than full blocks plus a sliver: k = 784 is two
    // blocks of 392, not 512 + 272, so no block is too short to pay for its
    // tile stores.
    // With a row or so of A, packing B would cost as much as the product
    // (the numerical gradient's 3-image batches): a row-major B is then read
    // in place. (Blocking k so that B's rows stay in L1 across the panels
    // was tried: 64 or 128 rows a block, 20-40% slower for the tile stores.)
    // So is a B of few rows (a convolution's `col` of 5x5 taps): a panel's
    // `k` rows of `NR` values stay in L1 while every panel of A reads them,
    // and copying them first would cost as much as the product.
    let direct_b = b.col_stride == 1 && b.row_stride >= b.cols && (m <= MR || k <= SHORT_K);
    let kc_even = even_block(k, KC);
    let mc_even = even_block(m, MC).next_multiple_of(MR);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(kc_even) {
            let kc = kc_even.min(k - pc);
            // After the first k block, C already holds the partial product.
            let beta_block = if pc == 0 { beta } else { T::ONE };
            // B is cut into full panels of NR columns and a tail; a tail of
            // at most NH columns gets a half-width tile (n = 50 is 3 x 16 +
            // 8, not 4 x 16), so fewer multiply-adds are spent on padding.
            let full_panels = nc / NR;
            let tail = nc % NR;
            let tail_width = if tail == 0 {
                0
            } else if tail <= NH {
                NH
            } else {
                NR
            };
            let b_block = |col: usize| Block {
                data: b.data,
                start: pc * b.row_stride + (jc + col) * b.col_stride,
                k_stride: b.row_stride,
                lane_stride: b.col_stride,
            };
            // Read in place, the tail is the last `tail_width` columns of the
            // block, overlapping the last full panel; only its last `tail`
            // columns are stored. No padding, nothing to pack.
            let direct_tail = direct_b && tail > 0 && nc >= tail_width;
            let tail_offset = if direct_b { 0 } else { full_panels * kc * NR };
            let pack_b = grown(pack_b, tail_offset + if direct_tail { 0 } else { kc * tail_width });
            if !direct_b {
                pack_panels::<T, NR>(&mut pack_b[..tail_offset], kc, full_panels * NR, b_block(0));
            }
            match tail_width {
                _ if direct_tail => {}
                0 => {}
                w if w == NH => pack_panels::<T, NH>(&mut pack_b[tail_offset..], kc, tail, b_block(full_panels * NR)),
                _ => pack_panels::<T, NR>(&mut pack_b[tail_offset..], kc, tail, b_block(full_panels * NR)),
            }
            let pack_b: &[T] = pack_b;
            for ic in (0..m).step_by(mc_even) {
                let mc = mc_even.min(m - ic);
                let pack_a = grown(pack_a, mc.div_ceil(MR) * kc * MR);
                pack_panels::<T, MR>(
                    pack_a,
                    kc,
                    mc,
                    Block {
                        data: a.data,
                        start: ic * a.row_stride + pc * a.col_stride,
                        k_stride: a.col_stride,
                        lane_stride: a.row_stride,
                    },
                );
                let rows_of = |p: usize| MR.min(ic + mc - (ic + p * MR));
                let at = |p: usize, col0: usize, cols: usize| TileAt {
                    row0: ic + p * MR,
                    col0,
                    // Clip to this block, not to C: the padded lanes of the
                    // last panel must not touch the next block's rows.
                    rows: rows_of(p),
                    cols,
                    skip: 0,
                    alpha,
                    beta: beta_block,
                };
                for q in 0..full_panels {
                    let col0 = jc + q * NR;
                    let b_steps = if direct_b {
                        Steps {
                            data: b.data,
                            start: pc * b.row_stride + col0,
                            stride: b.row_stride,
                        }
                    } else {
                        Steps {
                            data: pack_b,
                            start: q * kc * NR,
                            stride: NR,
                        }
                    };
                    for (p, a_panel) in pack_a.chunks_exact(kc * MR).enumerate() {
                        full_tile(a_panel, b_steps, c, at(p, col0, NR));
                    }
                }
                if tail_width == 0 {
                    continue;
                }
                // The tail tile: packed and zero-padded, or (B in place) the
                // block's last `tail_width` columns, of which only the last
                // `tail` are stored.
                let (tail_steps, tail_col0, skip) = if direct_tail {
                    let col0 = jc + nc - tail_width;
                    let steps = Steps {
                        data: b.data,
                        start: pc * b.row_stride + col0,
                        stride: b.row_stride,
                    };
                    (steps, col0, tail_width - tail)
                } else {
                    let steps = Steps {
                        data: pack_b,
                        start: tail_offset,
                        stride: tail_width,
                    };
                    (steps, jc + full_panels * NR, 0)
                };
                for (p, a_panel) in pack_a.chunks_exact(kc * MR).enumerate() {
                    let at = TileAt {
                        skip,
                        ..at(p, tail_col0, skip + tail)
                    };
                    if tail_width == NH {
                        half_tile(a_panel, tail_steps, c, at);
                    } else {
                        full_tile(a_panel, tail_steps, c, at);
                    }
                }
            }
        }
    }
}

/// The first `len` elements of `buf`, growing it (never shrinking) first:
/// a buffer that only grows is zero-filled once, not on every call whose
/// product is larger than the previous one's.
fn grown<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::ZERO);
    }
    &mut buf[..len]
}

/// The size of `ceil(len / max)` equal blocks covering `len`.
fn even_block(len: usize, max: usize) -> usize {
    len.div_ceil(len.div_ceil(max).max(1)).max(1)
}

/// A strided block to pack: element `(kk, lane)` is
/// `data[start + kk * k_stride + lane * lane_stride]`.
#[derive(Clone, Copy)]
struct Block<'a, T> {
    data: &'a [T],
    start: usize,
    k_stride: usize,
    lane_stride: usize,
}

/// Lays out a `kc x len` block as panels of `W` lanes: panel `p`, step `kk`,
/// lane `l` at `((p * kc) + kk) * W + l`, zero past `len`. The two common
/// layouts get loops over contiguous memory; packing is a large share of the
/// work at the small shapes training uses.
#[inline(always)]
fn pack_panels<T: Element, const W: usize>(buf: &mut [T], kc: usize, len: usize, block: Block<'_, T>) {
    let panels = len.div_ceil(W);
    for (p, panel) in buf[..panels * kc * W].chunks_exact_mut(kc * W).enumerate() {
        let lanes = W.min(len - p * W);
        if lanes < W {
            // Padding lanes must be zero: the micro-kernel multiplies them too.
            panel.fill(T::ZERO);
        }
        let panel_start = block.start + p * W * block.lane_stride;
        if block.lane_stride == 1 {
            // Lanes contiguous (row-major B, transposed A): one copy per step.
            for (kk, step) in panel.chunks_exact_mut(W).enumerate() {
                let from = panel_start + kk * block.k_stride;
                if lanes == W {
                    // A fixed-size copy compiles to vector moves, not a memcpy call.
                    let step: &mut [T; W] = step.try_into().expect("chunks_exact gives W");
                    *step = block.data[from..from + W].try_into().expect("W elements");
                } else {
                    // Element by element: `copy_from_slice` of a few elements
                    // is a memcpy call per step, slower than the copy itself.
                    for (slot, &value) in step.iter_mut().zip(&block.data[from..from + lanes]) {
                        *slot = value;
                    }
                }
            }
        } else if block.k_stride == 1 {
            // Steps contiguous (row-major A, transposed B): stream each lane's run.
            if lanes == W {
                // Read the W runs side by side so each step is written as one block.
                let runs: [&[T]; W] = std::array::from_fn(|l| {
                    let from = panel_start + l * block.lane_stride;
                    &block.data[from..from + kc]
                });
                for (kk, step) in panel.chunks_exact_mut(W).enumerate() {
                    for (slot, run) in step.iter_mut().zip(&runs) {
                        *slot = run[kk];
                    }
                }
            } else {
                for l in 0..lanes {
                    let from = panel_start + l * block.lane_stride;
                    let run = &block.data[from..from + kc];
                    for (slot, &value) in panel[l..].iter_mut().step_by(W).zip(run) {
                        *slot = value;
                    }
                }
            }
        } else {
            for (kk, step) in panel.chunks_exact_mut(W).enumerate() {
                for (l, slot) in step.iter_mut().enumerate().take(lanes) {
                    *slot = block.data[panel_start + kk * block.k_stride + l * block.lane_stride];
                }
            }
        }
    }
}

/// Where a micro-kernel reads B: step `kk` is the `NR` elements at
/// `data[start + kk * stride..]` (a packed panel has `stride == NR`).
#[derive(Clone, Copy)]
pub(crate) struct Steps<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) start: usize,
    pub(crate) stride: usize,
}

impl<'a, T> Steps<'a, T> {
    /// The `(steps - 1) * stride + width` elements a kernel reads, checked
    /// once here so that the kernel's loop has no bounds check left.
    #[inline(always)]
    pub(crate) fn run(&self, steps: usize, width: usize) -> &'a [T] {
        &self.data[self.start..self.start + (steps - 1) * self.stride + width]
    }
}

/// Where a tile of C goes: `rows x cols` of it are real (the rest is
/// padding), merged as `C = alpha * tile + beta * C`, except its first
/// `skip` columns (another tile's, when a tail tile overlaps a full one).
#[derive(Clone, Copy)]
pub(crate) struct TileAt<T> {
    pub(crate) row0: usize,
    pub(crate) col0: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) skip: usize,
    pub(crate) alpha: T,
    pub(crate) beta: T,
}

impl<T> TileAt<T> {
    /// Every one of the tile's `width` columns is stored, into a row-major C:
    /// each row of the tile is one contiguous run of C.
    #[inline(always)]
    pub(crate) fn fills_rows_of(&self, c: &MatMut<'_, T>, width: usize) -> bool {
        self.cols == width && self.skip == 0 && c.col_stride == 1
    }
}

/// One tile through the portable kernel: LLVM vectorizes `micro_kernel`,
/// with fused multiply-adds when `FMA` (only where compiled with that feature).
#[inline(always)]
pub(crate) fn portable_tile<T: Element, const MR: usize, const NR: usize, const FMA: bool>(
    a_panel: &[T],
    b: Steps<'_, T>,
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    let tile = micro_kernel::<T, MR, NR, FMA>(a_panel, b);
    store_tile(c, &tile, at);
}

/// The `MR x NR` product of one A panel and `kc` steps of B, in registers.
#[inline(always)]
fn micro_kernel<T: Element, const MR: usize, const NR: usize, const FMA: bool>(
    a_panel: &[T],
    b: Steps<'_, T>,
) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    let steps = a_panel.len() / MR;
    if steps == 0 {
        return acc;
    }
    // One bounds check for the whole run of B; inside the loop no path may
    // panic, or LLVM keeps the sums in memory instead of registers.
    let b_run = b.run(steps, NR);
    let madd = |x: T, y: T, z: T| if FMA { x.mul_add(y, z) } else { z + x * y };
    // The same body twice: over a packed panel (contiguous steps) and over a
    // row-major B read in place (steps `stride` apart). Each iterator yields
    // exactly NR elements per step, which is what keeps the loop panic-free.
    if b.stride == NR {
        for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.chunks_exact(NR)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] = madd(a_step[i], b_step[j], acc[i][j]);
                }
            }
        }
    } else {
        for (a_step, b_step) in a_panel.chunks_exact(MR).zip(b_run.windows(NR).step_by(b.stride)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] = madd(a_step[i], b_step[j], acc[i][j]);
                }
            }
        }
    }
    acc
}

/// `C[tile] = alpha * tile + beta * C[tile]`, reading C only when `beta != 0` (BLAS).
#[inline(always)]
pub(crate) fn store_tile<T: Element, const MR: usize, const NR: usize>(
    c: &mut MatMut<T>,
    tile: &[[T; NR]; MR],
    at: TileAt<T>,
) {
    let TileAt {
        row0,
        col0,
        rows,
        cols,
        skip,
        alpha,
        beta,
    } = at;
    if at.fills_rows_of(c, NR) {
        // Full-width rows: fixed-size copies, which compile to vector stores.
        for (i, tile_row) in tile.iter().enumerate().take(rows) {
            let start = (row0 + i) * c.row_stride + col0;
            let out: &mut [T; NR] = (&mut c.data[start..start + NR]).try_into().expect("NR elements");
            if beta == T::ZERO {
                for j in 0..NR {
                    out[j] = alpha * tile_row[j];
                }
            } else {
                for j in 0..NR {
                    out[j] = alpha * tile_row[j] + beta * out[j];
                }
            }
        }
        return;
    }
    for (i, tile_row) in tile.iter().enumerate().take(rows) {
        let tile_row = &tile_row[skip..cols];
        let col0 = col0 + skip;
        let cols = cols - skip;
        if c.col_stride == 1 {
            // Row-major C: the tile row is one contiguous run.
            let start = (row0 + i) * c.row_stride + col0;
            let out = &mut c.data[start..start + cols];
            if beta == T::ZERO {
                for (slot, &value) in out.iter_mut().zip(tile_row) {
                    *slot = alpha * value;
                }
            } else {
                for (slot, &value) in out.iter_mut().zip(tile_row) {
                    *slot = alpha * value + beta * *slot;
                }
            }
        } else {
            for (j, &value) in tile_row.iter().enumerate() {
                let slot = c.get_mut(row0 + i, col0 + j);
                *slot = if beta == T::ZERO {
                    alpha * value
                } else {
                    alpha * value + beta * *slot
                };
            }
        }
    }
}

/// `C = beta * C` (zero-filled when beta is 0, so NaN in C does not survive).
fn scale_c<T: Element>(c: &mut MatMut<T>, beta: T) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let slot = c.get_mut(i, j);
            *slot = if beta == T::ZERO { T::ZERO } else { beta * *slot };
        }
    }
}
