//! The driver of the packed GEMM: the five loops of the GotoBLAS / BLIS
//! scheme around a micro-kernel, the packing and the edges.
//!
//! ```text
//! 5th loop  jc: NC columns of B and C
//!   4th loop  pc: KC steps along k          pack B[pc.., jc..] into panels of NR columns
//!     3rd loop  ic: MC rows of A and C      pack A[ic.., pc..] into panels of MR rows
//!       2nd loop  jr: one NR-column panel of B
//!         1st loop  ir: one MR-row panel of A
//!           micro-kernel: the MR x NR tile of C, `kc` rank-1 updates in registers
//!       then the tail: C's last columns past the full panels of B
//! ```
//!
//! Packed panels are laid out in the order the micro-kernel reads them,
//! zero-padded at the edges, so its inner loop is `MR * NR` multiply-adds over
//! two contiguous streams. Operands are read in place where packing would
//! cost as much as the product:
//! - a row-major B when A has no more rows than one tile (the gradient
//!   check's 3 images) or B has few rows (a convolution's 25 taps);
//! - a row-major A with at least [`LONG_K`] columns (a batch of images), whose
//!   packing would be a transpose. Its tail of at most NH / 2 columns is then
//!   dot products of A's rows with B's columns along k, not a narrow tile.
//!
//! Why not only `matrixmultiply`: it allocates its packing buffers on every
//! call, and the training loop must not allocate. Here the buffers belong to
//! the caller (a thread-local in `gemm.rs`) and are reused.

use super::{APanel, ARows, Product, Steps, TileAt};
use crate::{Element, MatMut};

/// Most steps along k per packed block. k = 784 (an MNIST row) fits in one
/// block, so each tile of C is stored once; on the machines measured this
/// beats two L1-sized blocks of 392, as L2 serves the panels fast enough.
const KC: usize = 1024;
/// Most rows of A per packed block (a multiple of every MR used).
const MC: usize = 144;
/// Columns of B per packed block (a multiple of the usual NR, 16 and 48; a
/// block of 4-row products, whose tiles are 24 or 12 wide, just ends in a tail).
const NC: usize = 2016;
/// At most this many rows of a row-major B are read in place, not packed.
const SHORT_K: usize = 32;
/// At least this many columns of a row-major A for it to be read in place:
/// the SIMD tiles read rows in blocks of `simd::ROW_BLOCK` (16) steps, and
/// each step past the last block costs a bounds check a row. Below it A is
/// packed, and its tail is a narrow tile or column tiles, never dot products.
const LONG_K: usize = 64;

/// `C = alpha * A * B + beta * C` (a [`Product`], views already checked).
/// `full_tile` and `tail_tile` compute one `MR x NR` (`MR x NH`) tile and
/// merge it into C, `dot_tile` the last columns of a tile by dot products
/// along k, `column_tile` (where the tile set has one) the last columns
/// of a group of packed panels of A, vectorized along A's rows, and
/// `half_tile` (where the tile set has one) a full tile's columns for at
/// most `MR / 2` rows of A read in place: a tile set's micro-kernels
/// (`portable.rs`, `simd.rs`).
#[inline(always)]
pub(crate) fn gemm<T: Element, const MR: usize, const NR: usize, const NH: usize>(
    product: Product<'_, '_, T>,
    full_tile: impl Fn(APanel<'_, T>, Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>),
    tail_tile: impl Fn(APanel<'_, T>, Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>),
    dot_tile: impl Fn(ARows<'_, T>, &[T], &mut MatMut<'_, T>, TileAt<T>),
    column_tile: Option<impl Fn(&[T], &[T], &mut MatMut<'_, T>, TileAt<T>)>,
    half_tile: Option<impl Fn(ARows<'_, T>, Steps<'_, T>, &mut MatMut<'_, T>, TileAt<T>)>,
) {
    let Product {
        alpha,
        a,
        b,
        beta,
        c,
        pack_a,
        pack_b,
    } = product;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::ZERO {
        scale_c(c, beta);
        return;
    }
    // With a row or so of A, packing B would cost as much as the product
    // (the numerical gradient's 3-image batches): a row-major B is then read
    // in place. (Blocking k so that B's rows stay in L1 across the panels
    // was tried: 64 or 128 rows a block, 20-40% slower for the tile stores.)
    // So is a B of few rows (a convolution's `col` of 5x5 taps): a panel's
    // `k` rows of `NR` values stay in L1 while every panel of A reads them,
    // and copying them first would cost as much as the product.
    let direct_b = b.col_stride == 1 && b.row_stride >= b.cols && (m <= MR || k <= SHORT_K);
    // A row-major A with long rows is read in place, a row of A per row of
    // the tile: packing it would be a transpose, as costly as a third of the
    // product at the training shapes (n = 50), where each panel of A is read
    // by two of B. Such rows also give the narrow tail of B's columns as dot
    // products along k (`dot_tile`): a tail tile would spend a multiply-add
    // a row and step on 2 columns, a quarter of the product's time at n = 50.
    let direct_a = a.col_stride == 1 && k >= LONG_K;
    // Equal blocks rather than full blocks plus a sliver (k = 1500 is two
    // blocks of 750, not 1024 + 476), so no block is too short to pay for
    // its tile stores.
    let kc_even = even_block(k, KC);
    let mc_even = even_block(m, MC).next_multiple_of(MR);
    // 5th loop (BLIS): blocks of NC columns of B and C.
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        // 4th loop: blocks of KC steps along k. B's `kc x nc` block is
        // packed once here (unless it is read in place), and then read by
        // every block of A.
        for pc in (0..k).step_by(kc_even) {
            let kc = kc_even.min(k - pc);
            // After the first k block, C already holds the partial product.
            let beta_block = if pc == 0 { beta } else { T::ONE };
            // B is cut into full panels of NR columns and a tail; a tail of
            // at most NH columns gets a narrow tile (with AVX-512, n = 50 is
            // 48 + 8, not 48 + 48), so fewer multiply-adds are spent on
            // padding. With A read in place, a tail of at most NH / 2 columns
            // is dot products instead (48 + 2): a dot product loads two
            // vectors a multiply-add, so up to NH / 2 columns it costs no
            // more than the narrow tile, which spends NH columns of work.
            // With A packed, such a tail is column tiles where the tile set
            // has them (below).
            //
            // The choice depends on k, n and A's layout only, never on m:
            // `gemm_par` splits C's rows, and a row must be summed the same
            // way in any part (`direct_b`, which depends on m, only chooses
            // between two reads of the same tile).
            let full_panels = nc / NR;
            let tail = nc % NR;
            let width = if tail <= NH { NH } else { NR };
            let tail_kind = if tail == 0 {
                Tail::None
            } else if direct_a && 2 * tail <= NH {
                Tail::Dots
            } else if column_tile.is_some() && 2 * tail <= NH {
                // A packed (a weight gradient's x^T), B packed or in place:
                // the few last columns as sums of A's packed steps, MR rows
                // a vector, times one value of B a column. A narrow tile
                // would spend MR multiply-adds a step on NH columns of which
                // `tail` are real; these spend `tail` (a product of 50
                // columns: 48 + 2). Their tail is packed, one column after
                // another, even where B is otherwise read in place.
                Tail::Columns
            } else if direct_b && nc >= width {
                // Read in place, the tail is the last `width` columns of the
                // block, overlapping the last full panel; only its last
                // `tail` columns are stored. No padding, nothing to pack.
                Tail::InPlace(width)
            } else {
                Tail::Tile(width)
            };
            let b_block = |col: usize| Block {
                data: b.data,
                start: pc * b.row_stride + (jc + col) * b.col_stride,
                k_stride: b.row_stride,
                lane_stride: b.col_stride,
            };
            let tail_offset = if direct_b { 0 } else { full_panels * kc * NR };
            let tail_len = match tail_kind {
                Tail::None | Tail::InPlace(_) => 0,
                Tail::Dots | Tail::Columns => tail * kc,
                Tail::Tile(width) => width * kc,
            };
            let pack_b = grown(pack_b, tail_offset + tail_len);
            if !direct_b {
                pack_panels::<T, NR>(&mut pack_b[..tail_offset], kc, full_panels * NR, b_block(0));
            }
            let tail_block = b_block(full_panels * NR);
            match tail_kind {
                Tail::None | Tail::InPlace(_) => {}
                // One column a panel: column j's kc steps at `j * kc`.
                Tail::Dots | Tail::Columns => pack_panels::<T, 1>(&mut pack_b[tail_offset..], kc, tail, tail_block),
                Tail::Tile(width) if width == NH => {
                    pack_panels::<T, NH>(&mut pack_b[tail_offset..], kc, tail, tail_block)
                }
                Tail::Tile(_) => pack_panels::<T, NR>(&mut pack_b[tail_offset..], kc, tail, tail_block),
            }
            let pack_b: &[T] = pack_b;
            // 3rd loop: blocks of MC rows of A and C. A's `mc x kc` block is
            // packed into panels of MR rows, unless it is read in place.
            for ic in (0..m).step_by(mc_even) {
                let mc = mc_even.min(m - ic);
                let pack_a = grown(pack_a, if direct_a { 0 } else { mc.div_ceil(MR) * kc * MR });
                if !direct_a {
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
                }
                let pack_a: &[T] = pack_a;
                let rows_of = |p: usize| MR.min(ic + mc - (ic + p * MR));
                let a_rows = |p: usize| ARows {
                    data: a.data,
                    start: (ic + p * MR) * a.row_stride + pc * a.col_stride,
                    row_stride: a.row_stride,
                    steps: kc,
                    rows: rows_of(p),
                };
                let a_panel = |p: usize| {
                    if direct_a {
                        APanel::Rows(a_rows(p))
                    } else {
                        APanel::Packed(&pack_a[p * kc * MR..][..kc * MR])
                    }
                };
                let a_panels = mc.div_ceil(MR);
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
                // 2nd loop: the NR-column panels of B's block (jr in BLIS).
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
                    // 1st loop: the MR-row panels of A's block (ir); each
                    // panel and B panel make one micro-kernel call, one tile of C.
                    for p in 0..a_panels {
                        match &half_tile {
                            // A last panel of at most MR / 2 rows read in
                            // place (a batch of 100 is 12 panels of 8 and
                            // 4 rows, or, split over two threads, 6 + 4 and
                            // 6): a tile half as tall, half the work, the
                            // same sums.
                            Some(half_tile) if direct_a && 2 * rows_of(p) <= MR => {
                                half_tile(a_rows(p), b_steps, c, at(p, col0, NR))
                            }
                            _ => full_tile(a_panel(p), b_steps, c, at(p, col0, NR)),
                        }
                    }
                }
                // The tail: column tiles or dot products with B's packed tail
                // columns, or a tile on them packed and zero-padded, or (B in
                // place) on the block's last columns, of which only the last
                // `tail` are stored.
                let tail_col0 = jc + full_panels * NR;
                if let (Tail::Columns, Some(column_tile)) = (tail_kind, &column_tile) {
                    // Every panel of the block at once: the column tile
                    // groups them.
                    let b_columns = &pack_b[tail_offset..][..tail * kc];
                    let at = TileAt {
                        rows: mc,
                        ..at(0, tail_col0, tail)
                    };
                    column_tile(&pack_a[..a_panels * kc * MR], b_columns, c, at);
                    continue;
                }
                for p in 0..a_panels {
                    let (width, steps, at) = match tail_kind {
                        Tail::None | Tail::Columns => break,
                        Tail::Dots => {
                            let b_columns = &pack_b[tail_offset..][..tail * kc];
                            dot_tile(a_rows(p), b_columns, c, at(p, tail_col0, tail));
                            continue;
                        }
                        Tail::InPlace(width) => {
                            let skip = width - tail;
                            let steps = Steps {
                                data: b.data,
                                start: pc * b.row_stride + jc + nc - width,
                                stride: b.row_stride,
                            };
                            let at = TileAt {
                                skip,
                                ..at(p, tail_col0 - skip, width)
                            };
                            (width, steps, at)
                        }
                        Tail::Tile(width) => {
                            let steps = Steps {
                                data: pack_b,
                                start: tail_offset,
                                stride: width,
                            };
                            (width, steps, at(p, tail_col0, tail))
                        }
                    };
                    if width == NH {
                        tail_tile(a_panel(p), steps, c, at);
                    } else {
                        full_tile(a_panel(p), steps, c, at);
                    }
                }
            }
        }
    }
}

/// How the columns of a block past its last full panel of B are computed.
#[derive(Clone, Copy)]
enum Tail {
    /// There are none.
    None,
    /// Dot products of A's rows (read in place) and B's packed columns.
    Dots,
    /// Sums along k of A's packed panels, a vector of MR rows each, times
    /// B's packed columns (`column_tile`).
    Columns,
    /// A tile of this width on the last columns of a row-major B, in place.
    InPlace(usize),
    /// A tile of this width on the packed, zero-padded columns.
    Tile(usize),
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

/// `C = beta * C` (zero-filled when beta is 0, so NaN in C does not survive).
fn scale_c<T: Element>(c: &mut MatMut<T>, beta: T) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            let slot = c.get_mut(i, j);
            *slot = if beta == T::ZERO { T::ZERO } else { beta * *slot };
        }
    }
}
