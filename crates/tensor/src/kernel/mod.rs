//! The packed GEMM kernel: the driver (`driver.rs`, the BLIS loops and the
//! packing) and its register tiles, one file per tile set behind the
//! [`TileSet`] trait: `portable.rs` (plain Rust that LLVM vectorizes, any
//! CPU), `avx2.rs` and `avx512.rs` (explicit intrinsics, the same tiles of
//! `simd.rs` at two vector widths, chosen at run time).

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod driver;
pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
mod simd;

use crate::{Element, MatMut, MatRef};

/// One product for a tile set: `C = alpha * A * B + beta * C` on views
/// already checked, with the caller's packing buffers for A and B.
pub(crate) struct Product<'p, 'c, T> {
    pub(crate) alpha: T,
    pub(crate) a: &'p MatRef<'p, T>,
    pub(crate) b: &'p MatRef<'p, T>,
    pub(crate) beta: T,
    pub(crate) c: &'p mut MatMut<'c, T>,
    pub(crate) pack_a: &'p mut Vec<T>,
    pub(crate) pack_b: &'p mut Vec<T>,
}

/// A set of register tiles the driver can run with.
pub(crate) trait TileSet<T: Element> {
    /// `product` through [`driver::gemm`] with this set's `MR x NR` tiles
    /// (and `MR x NH` ones for a narrow last panel, and dot products for the
    /// last few columns when A is read in place, or column tiles when it is
    /// packed, where the set has them, and tiles of `MR / 2` rows for a last
    /// panel that short of A read in place, where its tiles are 8 rows).
    fn gemm<const MR: usize, const NR: usize, const NH: usize>(&self, product: Product<'_, '_, T>);
}

/// Where a micro-kernel reads A: step `kk` is the `MR` values of one column
/// of an `MR`-row panel.
#[derive(Clone, Copy)]
pub(crate) enum APanel<'a, T> {
    /// Packed: step `kk` at `data[kk * MR..][..MR]`, zero past A's last row.
    Packed(&'a [T]),
    /// Rows of a row-major A read in place.
    Rows(ARows<'a, T>),
}

impl<T> APanel<'_, T> {
    /// Steps along k.
    #[inline(always)]
    pub(crate) fn steps<const MR: usize>(&self) -> usize {
        match self {
            APanel::Packed(panel) => panel.len() / MR,
            APanel::Rows(rows) => rows.steps,
        }
    }
}

/// `rows` rows of a row-major A, read in place: row `i` is the `steps`
/// elements at `data[start + i * row_stride..]`.
#[derive(Clone, Copy)]
pub(crate) struct ARows<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) start: usize,
    pub(crate) row_stride: usize,
    pub(crate) steps: usize,
    pub(crate) rows: usize,
}

impl<'a, T> ARows<'a, T> {
    /// `MR` rows for a tile, each exactly `steps` long (checked once here,
    /// so indexing them by a step below `steps` needs no check in the loop).
    /// Past the last real row the first one stands in: a tile's rows past
    /// `rows` are computed but never stored, as a packed panel's zero rows are.
    #[inline(always)]
    pub(crate) fn slices<const MR: usize>(&self) -> [&'a [T]; MR] {
        std::array::from_fn(|i| {
            let row = if i < self.rows { i } else { 0 };
            &self.data[self.start + row * self.row_stride..][..self.steps]
        })
    }
}

/// The last `at.cols` (at most `NH`) columns of a tile as `dot(row of A,
/// column of B)`: A's rows read in place, B's columns packed one after
/// another (column `j` at `b_columns[j * steps..]`). Only the tile's real
/// rows (`at.rows`) are computed. The tile sets' dot tiles, each with its
/// own `dot`.
#[inline(always)]
pub(crate) fn dot_tile_by<T: Element, const MR: usize, const NH: usize>(
    a: ARows<'_, T>,
    b_columns: &[T],
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
    dot: impl Fn(&[T], &[T]) -> T,
) {
    debug_assert_eq!(
        b_columns.len(),
        at.cols * a.steps,
        "a column of B per column of the tile"
    );
    let rows = a.slices::<MR>();
    let mut tile = [[T::ZERO; NH]; MR];
    for (tile_row, row) in tile.iter_mut().zip(&rows).take(at.rows) {
        for (slot, column) in tile_row
            .iter_mut()
            .zip(b_columns.chunks_exact(a.steps.max(1)))
            .take(at.cols)
        {
            *slot = dot(row, column);
        }
    }
    store_tile(c, &tile, at);
}

/// Panels of A a column tile sums at once: 4 panels by 2 columns keep 8
/// multiply-adds in flight, enough to hide their latency.
const COLUMN_GROUP: usize = 4;

/// The last `at.cols` columns of the tiles of a block's packed panels of A
/// (`panels`, each `steps * MR` long, rows from `at.row0`, `at.rows` of
/// them real) and B's packed columns (column `j` at `b_columns[j *
/// steps..]`): `C[rows of panel p, j] = sum_k A_p[k] B[k, j]`, the `MR`
/// values of a panel's step one vector, and B's value broadcast. Each sum
/// is the same chain of multiply-adds along k, in the same order, as a
/// tile's (one sum per element, never split into odd and even steps), so
/// the values are a tile's to the bit; the tile sets that split narrow
/// tiles have no column tile. Panels go in groups of [`COLUMN_GROUP`] and
/// columns in pairs, 8 independent sums; the last few panels one at a time.
#[inline(always)]
pub(crate) fn column_tile_by<T: Element, const MR: usize>(
    panels: &[T],
    b_columns: &[T],
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    let panel_len = b_columns.len() / at.cols.max(1) * MR;
    let count = panels.len() / panel_len.max(1);
    let whole_groups = count / COLUMN_GROUP * COLUMN_GROUP;
    // Panels `p..p + group` and their rows.
    let part = |p: usize, group: usize| {
        let at = TileAt {
            row0: at.row0 + p * MR,
            rows: at.rows.saturating_sub(p * MR),
            ..at
        };
        (&panels[p * panel_len..][..group * panel_len], at)
    };
    for p in (0..whole_groups).step_by(COLUMN_GROUP) {
        let (panels, at) = part(p, COLUMN_GROUP);
        column_group::<T, MR, COLUMN_GROUP>(panels, b_columns, c, at);
    }
    for p in whole_groups..count {
        let (panels, at) = part(p, 1);
        column_group::<T, MR, 1>(panels, b_columns, c, at);
    }
}

/// [`column_tile_by`] for `P` panels: `panels` holds exactly `P`.
#[inline(always)]
fn column_group<T: Element, const MR: usize, const P: usize>(
    panels: &[T],
    b_columns: &[T],
    c: &mut MatMut<'_, T>,
    at: TileAt<T>,
) {
    let steps = b_columns.len() / at.cols.max(1);
    let a: [&[[T; MR]]; P] = std::array::from_fn(|p| panels[p * steps * MR..][..steps * MR].as_chunks::<MR>().0);
    let column = |j: usize| &b_columns[j * steps..][..steps];
    for j0 in (0..at.cols).step_by(2) {
        let at = TileAt {
            col0: at.col0 + j0,
            cols: (at.cols - j0).min(2),
            ..at
        };
        if at.cols == 2 {
            let sums = column_sums::<T, MR, P, 2>(a, [column(j0), column(j0 + 1)]);
            store_column_sums(c, &sums, at);
        } else {
            let sums = column_sums::<T, MR, P, 1>(a, [column(j0)]);
            store_column_sums(c, &sums, at);
        }
    }
}

/// `sums[p][j][r] = sum_k a[p][k][r] * b[j][k]`, one multiply-add a step
/// (`mul_add`: the tile sets' FMA, compiled in their functions).
#[inline(always)]
fn column_sums<T: Element, const MR: usize, const P: usize, const C: usize>(
    a: [&[[T; MR]]; P],
    b: [&[T]; C],
) -> [[[T; MR]; C]; P] {
    let steps = b[0].len();
    let mut sums = [[[T::ZERO; MR]; C]; P];
    for kk in 0..steps {
        let b_step: [T; C] = std::array::from_fn(|j| b[j][kk]);
        for p in 0..P {
            let a_step = a[p][kk];
            for j in 0..C {
                for r in 0..MR {
                    sums[p][j][r] = a_step[r].mul_add(b_step[j], sums[p][j][r]);
                }
            }
        }
    }
    sums
}

/// `sums` (panel, column, row) into C as `at` says: panel `p`'s rows from
/// `at.row0 + p * MR`, at most `at.rows` rows in all.
#[inline(always)]
fn store_column_sums<T: Element, const MR: usize, const P: usize, const C: usize>(
    c: &mut MatMut<'_, T>,
    sums: &[[[T; MR]; C]; P],
    at: TileAt<T>,
) {
    for (p, panel) in sums.iter().enumerate() {
        let rows = at.rows.saturating_sub(p * MR).min(MR);
        if rows == 0 {
            break;
        }
        let tile: [[T; C]; MR] = std::array::from_fn(|r| std::array::from_fn(|j| panel[j][r]));
        store_tile(
            c,
            &tile,
            TileAt {
                row0: at.row0 + p * MR,
                rows,
                ..at
            },
        );
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
