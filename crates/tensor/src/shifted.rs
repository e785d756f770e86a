//! Products whose one operand is a buffer read at shifted places: a
//! convolution of stride 1 without `im2col`.
//!
//! Pad an image `[C, H, W]` to `[C, Hp, Wp]` and number its values in
//! order. The tap `(c, i, j)` of the window at output `(oh, ow)` reads the
//! value at `c Hp Wp + (oh + i) Wp + (ow + j)`: the window's own place,
//! `p = oh Wp + ow`, plus an offset that depends on the tap alone,
//! `offset_k = c Hp Wp + i Wp + j`. So `col[k, p] = x[offset_k + p]`: every
//! row of `im2col`'s matrix is already in the padded image, shifted, if the
//! output is laid out `Wp` wide (its last `Wp - OW` columns of each row are
//! then windows that wrap around the row's end, computed and dropped). The
//! products of a convolution then read the image in place:
//!
//! * [`shifted_product`]: `C[r, p] = sum_k A[r, k] x[offset_k + p]`, the
//!   forward pass `y = W col` (and, on the padded output gradient with the
//!   filters turned, the input gradient);
//! * [`shifted_gradient`]: `C[k, f] += sum_p x[offset_k + p] B[f, p]`, the
//!   filters' gradient `dW^T = col G^T`.
//!
//! Each is a register tile as in the GEMM (`kernel/`): `MR x NR` sums kept in
//! registers over every tap (or position), one load of `NR` values and `MR`
//! broadcasts a step, compiled for AVX-512 or AVX2 + FMA where the CPU has
//! them (the one `unsafe` each: the call into that code, after the check).
//! Nothing is copied but the other operand (`A`'s panels, `B`'s transpose,
//! each the size of the filters or of one output): `im2col` wrote `K` times
//! the image, and the GEMM then packed it again.

use crate::Element;

/// Rows of A in each packed panel of [`ShiftedPanels`] (and in the tiles of
/// [`shifted_product`]): the filters of a convolution, 16 to 64 in the
/// book's nets, so 4 wastes nothing there and little on SimpleConvNet's 30.
pub const PANEL_ROWS: usize = 4;

/// A row-major `rows x steps` matrix packed in panels of [`PANEL_ROWS`] rows
/// for [`shifted_product`]: panel `q`, step `k`, row `r` at `(q * steps + k)
/// * PANEL_ROWS + r`, zero past the last row. Reused from call to call.
#[derive(Debug, Clone, Default)]
pub struct ShiftedPanels<T> {
    data: Vec<T>,
    rows: usize,
    steps: usize,
}

impl<T: Element> ShiftedPanels<T> {
    /// No panels yet (pack some with [`ShiftedPanels::pack`]).
    pub fn new() -> Self {
        ShiftedPanels {
            data: Vec::new(),
            rows: 0,
            steps: 0,
        }
    }

    /// Packs the `rows x steps` matrix whose element `(r, k)` is
    /// `element(r, k)` (a filter matrix, or the filters turned for the input
    /// gradient), reusing the buffer.
    pub fn pack(&mut self, rows: usize, steps: usize, element: impl Fn(usize, usize) -> T) {
        let panels = rows.div_ceil(PANEL_ROWS);
        self.data.clear();
        self.data.resize(panels * steps * PANEL_ROWS, T::ZERO);
        // `max(1)`: with no steps there is no data, and no chunk of zero.
        for (q, panel) in self.data.chunks_exact_mut((steps * PANEL_ROWS).max(1)).enumerate() {
            for (k, step) in panel.chunks_exact_mut(PANEL_ROWS).enumerate() {
                for (r, value) in step.iter_mut().enumerate() {
                    let row = q * PANEL_ROWS + r;
                    if row < rows {
                        *value = element(row, k);
                    }
                }
            }
        }
        self.rows = rows;
        self.steps = steps;
    }

    /// Rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Steps (columns) of the packed matrix.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// `C[r, p] = sum_k A[r, k] x[offsets[k] + p]` for the `A.rows()` rows of
/// `C` and `p < n`; row `r` of `C` at `c[r * ldc..][..n]`, overwritten.
///
/// Reads `x` in whole tiles where it can (up to a tile, 32 values, past the
/// last window); a buffer that ends sooner is still read correctly, its last
/// tile a value at a time.
///
/// # Panics
/// When `offsets` does not have one offset per step of `a`, an offset plus
/// `n` passes the end of `x`, `ldc < n`, or `c` is too short for its rows.
pub fn shifted_product<T: Element>(
    a: &ShiftedPanels<T>,
    x: &[T],
    offsets: &[usize],
    n: usize,
    c: &mut [T],
    ldc: usize,
) {
    assert_eq!(offsets.len(), a.steps, "shifted_product: one offset per step of A");
    let reach = offsets.iter().max().map_or(0, |&most| most + n);
    assert!(
        reach <= x.len(),
        "shifted_product: x has {} values, the offsets reach {reach}",
        x.len()
    );
    assert!(ldc >= n, "shifted_product: ldc {ldc} < n {n}");
    if a.rows == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (a.rows - 1) * ldc + n,
        "shifted_product: c has {} values, {} rows of {ldc} need more",
        c.len(),
        a.rows
    );
    if a.steps == 0 {
        // A sum of no terms.
        for row in c.chunks_mut(ldc).take(a.rows) {
            row[..n].fill(T::ZERO);
        }
        return;
    }
    let product = Shifted {
        a,
        x,
        offsets,
        n,
        c,
        ldc,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.product(product);
    }
    product.run::<4, 8, false>();
}

/// `C[k, f] += sum_i sum_p x_i[offsets[k] + p] B_i[f, p]` over the `images`
/// images `i`: `x_i = x[i * x_stride..]`, `B_i` the row-major `cols x n`
/// matrix at `b[i * b_stride..]` (row stride `n`), `C` row-major
/// `offsets.len() x cols`. `scratch` holds `B_i` transposed while it is
/// read: at least [`gradient_scratch_len`]`(cols, n)` values.
///
/// # Panics
/// When an image's `x` or `B` passes the end of its buffer, `c` is not
/// `offsets.len() * cols` long, or `scratch` is too short.
#[allow(clippy::too_many_arguments)]
pub fn shifted_gradient<T: Element>(
    (x, x_stride): (&[T], usize),
    (b, b_stride): (&[T], usize),
    images: usize,
    offsets: &[usize],
    (cols, n): (usize, usize),
    c: &mut [T],
    scratch: &mut [T],
) {
    assert_eq!(c.len(), offsets.len() * cols, "shifted_gradient: C must be taps x cols");
    assert!(
        scratch.len() >= gradient_scratch_len(cols, n),
        "shifted_gradient: scratch of {} values, {} needed",
        scratch.len(),
        gradient_scratch_len(cols, n)
    );
    if images == 0 || n == 0 || cols == 0 || offsets.is_empty() {
        return;
    }
    let reach = offsets.iter().max().map_or(0, |&most| most + n);
    assert!(
        (images - 1) * x_stride + reach <= x.len(),
        "shifted_gradient: x has {} values, {images} images reach further",
        x.len()
    );
    assert_items_fit("shifted_gradient: b", b.len(), (images, b_stride), cols * n);
    let gradient = ShiftedGradient {
        x,
        x_stride,
        b,
        b_stride,
        images,
        offsets,
        cols,
        n,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.gradient(gradient, c, scratch);
    }
    gradient.run::<4, 8, false>(c, scratch);
}

/// Panics unless `items` items of `len` values each, `stride` apart (the
/// first at 0), fit in a buffer of `buf_len` values; `what` names the
/// buffer. For `items >= 1`.
pub(crate) fn assert_items_fit(what: &str, buf_len: usize, (items, stride): (usize, usize), len: usize) {
    assert!(
        (items - 1) * stride + len <= buf_len,
        "{what} has {buf_len} values, {items} items of {len} reach further"
    );
}

/// Columns of the widest tile of [`shifted_gradient`] on any instruction set.
const GRADIENT_MAX_NR: usize = 16;

/// The scratch [`shifted_gradient`] needs for `B`'s transpose: `n` rows of
/// `cols` rounded up to a whole tile.
pub fn gradient_scratch_len(cols: usize, n: usize) -> usize {
    cols.next_multiple_of(GRADIENT_MAX_NR) * n
}

/// A checked [`shifted_product`].
struct Shifted<'a, T> {
    a: &'a ShiftedPanels<T>,
    x: &'a [T],
    offsets: &'a [usize],
    n: usize,
    c: &'a mut [T],
    ldc: usize,
}

/// `a * b + c`, fused (one rounding, one instruction) where the tile set has
/// FMA; without it `mul_add` would be a library call.
#[inline(always)]
pub(crate) fn multiply_add<T: Element, const FUSED: bool>(a: T, b: T, c: T) -> T {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

impl<T: Element> Shifted<'_, T> {
    /// The product in `MR x NR` tiles (`MR` is [`PANEL_ROWS`]).
    #[inline(always)]
    fn run<const MR: usize, const NR: usize, const FUSED: bool>(self) {
        const { assert!(MR == PANEL_ROWS) };
        let Shifted {
            a,
            x,
            offsets,
            n,
            c,
            ldc,
        } = self;
        let most = offsets.iter().copied().max().unwrap_or(0);
        let (steps, _) = a.data.as_chunks::<MR>();
        for (q, panel) in steps.chunks_exact(a.steps).enumerate() {
            let rows = (a.rows - q * MR).min(MR);
            let mut start = 0;
            while start < n {
                let width = (n - start).min(NR);
                let tile = if most + start + NR <= x.len() {
                    product_tile::<T, MR, NR, FUSED>(panel, x, offsets, start)
                } else {
                    // The buffer ends inside this tile: its columns one at a time.
                    let mut tile = [[T::ZERO; NR]; MR];
                    for (step, &offset) in panel.iter().zip(offsets) {
                        for (j, &value) in x[offset + start..offset + start + width].iter().enumerate() {
                            for r in 0..MR {
                                tile[r][j] = multiply_add::<T, FUSED>(step[r], value, tile[r][j]);
                            }
                        }
                    }
                    tile
                };
                for (r, sums) in tile.iter().enumerate().take(rows) {
                    let row = (q * MR + r) * ldc + start;
                    store(&mut c[row..row + width], sums);
                }
                start += NR;
            }
        }
    }
}

/// `row = sums[..row.len()]`: a whole tile row as one fixed-size copy (a
/// few vector moves, inline), where a copy of a length known only at run
/// time is a call to `memmove`, which costs more than these 16 to 32 values.
#[inline(always)]
fn store<T: Copy, const NR: usize>(row: &mut [T], sums: &[T; NR]) {
    match row.first_chunk_mut::<NR>() {
        Some(whole) => *whole = *sums,
        None => row.copy_from_slice(&sums[..row.len()]),
    }
}

/// `sums[..row.len()] = row`, the other way (see [`store`]).
#[inline(always)]
fn load<T: Copy, const NR: usize>(sums: &mut [T; NR], row: &[T]) {
    match row.first_chunk::<NR>() {
        Some(whole) => *sums = *whole,
        None => sums[..row.len()].copy_from_slice(row),
    }
}

/// One `MR x NR` tile of [`shifted_product`] at column `start`: every step's
/// `NR` values of `x` (in bounds: the caller checked the largest offset)
/// against the step's `MR` values of the panel.
#[inline(always)]
fn product_tile<T: Element, const MR: usize, const NR: usize, const FUSED: bool>(
    panel: &[[T; MR]],
    x: &[T],
    offsets: &[usize],
    start: usize,
) -> [[T; NR]; MR] {
    let mut sums = [[T::ZERO; NR]; MR];
    for (step, &offset) in panel.iter().zip(offsets) {
        // Never `None` (checked by the caller); no panic path in the loop,
        // or LLVM keeps the sums in memory rather than registers.
        let Some(values) = x.get(offset + start..).and_then(|rest| rest.first_chunk::<NR>()) else {
            continue;
        };
        for r in 0..MR {
            for j in 0..NR {
                sums[r][j] = multiply_add::<T, FUSED>(step[r], values[j], sums[r][j]);
            }
        }
    }
    sums
}

/// A checked [`shifted_gradient`].
struct ShiftedGradient<'a, T> {
    x: &'a [T],
    x_stride: usize,
    b: &'a [T],
    b_stride: usize,
    images: usize,
    offsets: &'a [usize],
    cols: usize,
    n: usize,
}

impl<T: Element> ShiftedGradient<'_, T> {
    /// The sums in `MR x NR` tiles: `MR` taps by `NR` columns of `C`.
    #[inline(always)]
    fn run<const MR: usize, const NR: usize, const FUSED: bool>(self, c: &mut [T], scratch: &mut [T]) {
        // `gradient_scratch_len` rounds `cols` up to a whole widest tile,
        // which is a whole number of these.
        const { assert!(GRADIENT_MAX_NR.is_multiple_of(NR)) };
        let ShiftedGradient {
            x,
            x_stride,
            b,
            b_stride,
            images,
            offsets,
            cols,
            n,
        } = self;
        let scratch = &mut scratch[..cols.div_ceil(NR) * n * NR];
        for image in 0..images {
            transpose_into_panels::<T, NR>(&b[image * b_stride..][..cols * n], cols, n, scratch);
            let x_image = &x[image * x_stride..];
            let (positions, _) = scratch.as_chunks::<NR>();
            for (q, panel) in positions.chunks_exact(n).enumerate() {
                // The last panel's columns past `cols` are zero in `B^T`:
                // the tile runs whole and stores only the real columns.
                let width = (cols - q * NR).min(NR);
                for (block, taps) in offsets.chunks(MR).enumerate() {
                    let corner = &mut c[block * MR * cols + q * NR..];
                    // The last block may have fewer than MR taps: it runs the
                    // whole tile, its rows past them repeating the last tap
                    // and never stored. A tap at a time, each sum would wait
                    // on its own last multiply-add (latency-bound, 4 to 8
                    // times slower).
                    let mut padded = [taps[taps.len() - 1]; MR];
                    padded[..taps.len()].copy_from_slice(taps);
                    gradient_tile::<T, MR, NR, FUSED>(corner, (cols, taps.len(), width), x_image, &padded, panel);
                }
            }
        }
    }
}

/// `B`'s `cols x n` matrix transposed into `scratch`, in panels of `NR`
/// columns: panel `q`, position `p`, column `f` at `(q * n + p) * NR + f`,
/// zero past `cols`. Written a whole line of `NR` at a time, gathered from
/// the panel's rows: a value at a time, strided by `NR`, every store would
/// land on its own cache line (or, vectorized, be a scatter, slow on x86).
#[inline(always)]
fn transpose_into_panels<T: Element, const NR: usize>(b: &[T], cols: usize, n: usize, scratch: &mut [T]) {
    let (lines, _) = scratch.as_chunks_mut::<NR>();
    for (q, panel) in lines.chunks_exact_mut(n).take(cols.div_ceil(NR)).enumerate() {
        let width = (cols - q * NR).min(NR);
        let rows: [&[T]; NR] = std::array::from_fn(|lane| &b[(q * NR + lane.min(width - 1)) * n..][..n]);
        for (p, line) in panel.iter_mut().enumerate() {
            *line = std::array::from_fn(|lane| if lane < width { rows[lane][p] } else { T::ZERO });
        }
    }
}

/// `MR` taps by `NR` columns of [`shifted_gradient`] over one image, added
/// to `C`'s tile whose corner is `c[0]` (rows `cols` apart, of which the
/// first `rows`, and their first `width` columns, are stored): at each
/// position `p`, the `MR` taps' values `x[offset + p]` against the `NR`
/// values of `B^T`'s row `p`. The tile is read and written a row at a time with
/// constant indices, so it lives in registers, not in memory.
#[inline(always)]
fn gradient_tile<T: Element, const MR: usize, const NR: usize, const FUSED: bool>(
    c: &mut [T],
    (cols, rows, width): (usize, usize, usize),
    x: &[T],
    taps: &[usize; MR],
    panel: &[[T; NR]],
) {
    let n = panel.len();
    let mut tile = [[T::ZERO; NR]; MR];
    // Each row moved whole through a local `line`: a copy of a length known
    // only at run time straight into or out of `tile` would keep the tile
    // in memory, stored back at every step.
    for (r, sums) in tile.iter_mut().enumerate() {
        if r < rows {
            let mut line = [T::ZERO; NR];
            load(&mut line, &c[r * cols..][..width]);
            *sums = line;
        }
    }
    // The taps' runs of x, each `n` long; one bounds check each, outside the loop.
    let runs: [&[T]; MR] = std::array::from_fn(|r| &x[taps[r]..taps[r] + n]);
    for (p, values) in panel.iter().enumerate() {
        for r in 0..MR {
            // `p < n` = every run's length: LLVM drops the check.
            let pixel = runs[r][p];
            for f in 0..NR {
                tile[r][f] = multiply_add::<T, FUSED>(pixel, values[f], tile[r][f]);
            }
        }
    }
    for (r, sums) in tile.iter().enumerate() {
        if r < rows {
            let line = *sums;
            store(&mut c[r * cols..][..width], &line);
        }
    }
}

/// The instruction sets the tiles are compiled for, as detected on this CPU
/// (here, and in `row_products.rs` and `sparse.rs`).
///
/// Made only by [`Features::detect`] (the tests name `Avx2` only once it
/// has found AVX2 or more): holding one is the proof that the CPU has its
/// features, which the `unsafe` calls into its tiles rely on.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Features {
    /// AVX-512 F and DQ (and so AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA, no AVX-512.
    Avx2,
}

#[cfg(target_arch = "x86_64")]
impl Features {
    /// The widest set this CPU has, `None` below AVX2 + FMA (the portable
    /// tiles then run).
    pub(crate) fn detect() -> Option<Features> {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        match (avx512, avx2) {
            (true, _) => Some(Features::Avx512),
            (false, true) => Some(Features::Avx2),
            _ => None,
        }
    }
}

/// Entry points compiled for one instruction set. `T` is `f32` or `f64`
/// (`Element` is sealed): `f64`'s tiles hold half the columns, the same
/// number of vector sums.
#[cfg(target_arch = "x86_64")]
macro_rules! compiled_for {
    ($product:ident, $gradient:ident, $features:literal, $product_tiles:expr, $gradient_tiles:expr) => {
        #[target_feature(enable = $features)]
        fn $product<T: Element>(product: Shifted<'_, T>) {
            match size_of::<T>() == 4 {
                true => product.run::<{ $product_tiles[0].0 }, { $product_tiles[0].1 }, true>(),
                false => product.run::<{ $product_tiles[1].0 }, { $product_tiles[1].1 }, true>(),
            }
        }

        #[target_feature(enable = $features)]
        fn $gradient<T: Element>(gradient: ShiftedGradient<'_, T>, c: &mut [T], scratch: &mut [T]) {
            match size_of::<T>() == 4 {
                true => gradient.run::<{ $gradient_tiles[0].0 }, { $gradient_tiles[0].1 }, true>(c, scratch),
                false => gradient.run::<{ $gradient_tiles[1].0 }, { $gradient_tiles[1].1 }, true>(c, scratch),
            }
        }
    };
}

// Tiles (rows, columns) for f32 then f64. AVX-512: 8 sums of 16 lanes (4 x
// 32 or 8 x 16 for f32); AVX2: 12 sums of 8 lanes for the product (4 x 24),
// 8 for the gradient (8 x 8), leaving registers for loads and broadcasts.
// Tried and dropped: a product tile of 8 x 32 (LLVM kept its sums in
// memory, 20 times slower); a 4 x 16 tile for the last columns of an 8x8
// image (80 windows: 32 + 32 + 16 rather than 3 x 32), slower than the
// wasted lanes it saves, its 4 sums too few to hide the FMA latency.
#[cfg(target_arch = "x86_64")]
compiled_for!(
    product_avx512,
    gradient_avx512,
    "avx512f,avx512dq,avx2,fma",
    [(4, 32), (4, 16)],
    [(8, 16), (8, 8)]
);
#[cfg(target_arch = "x86_64")]
compiled_for!(
    product_avx2,
    gradient_avx2,
    "avx2,fma",
    [(4, 24), (4, 12)],
    [(8, 8), (8, 4)]
);

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`shifted_product`] on these tiles.
    fn product<T: Element>(self, product: Shifted<'_, T>) {
        // SAFETY: a `Features` value is made only by `detect`, after finding
        // on this CPU every feature its variant names, which are the ones
        // these functions are compiled with.
        unsafe {
            match self {
                Features::Avx512 => product_avx512(product),
                Features::Avx2 => product_avx2(product),
            }
        }
    }

    /// [`shifted_gradient`] on these tiles.
    fn gradient<T: Element>(self, gradient: ShiftedGradient<'_, T>, c: &mut [T], scratch: &mut [T]) {
        // SAFETY: as in `product`.
        unsafe {
            match self {
                Features::Avx512 => gradient_avx512(gradient, c, scratch),
                Features::Avx2 => gradient_avx2(gradient, c, scratch),
            }
        }
    }
}

/// Numbers that are exact in f32 sums of a few hundred products, so every
/// tile set must give the reference's bits: the tests' operands here and
/// in `row_products.rs`.
#[cfg(test)]
pub(crate) fn exact_values<T: Element>(len: usize, seed: usize) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64((((i * 7 + seed * 13) % 17) as f64 - 8.0) / 4.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::exact_values as values;
    use super::*;

    /// `C[r, p] = sum_k A[r, k] x[offsets[k] + p]`, term by term.
    fn product_reference<T: Element>(a: &[T], rows: usize, x: &[T], offsets: &[usize], n: usize) -> Vec<T> {
        let steps = offsets.len();
        let mut c = vec![T::ZERO; rows * n];
        for r in 0..rows {
            for p in 0..n {
                for (k, &offset) in offsets.iter().enumerate() {
                    c[r * n + p] += a[r * steps + k] * x[offset + p];
                }
            }
        }
        c
    }

    /// Every way the product runs: the detected tiles, AVX2's on an AVX-512
    /// CPU, and the portable ones, each against the reference.
    fn check_product<T: Element>(rows: usize, offsets: &[usize], n: usize, x_len: usize) {
        let steps = offsets.len();
        let a = values::<T>(rows * steps, 1);
        let x = values::<T>(x_len, 2);
        let mut panels = ShiftedPanels::new();
        panels.pack(rows, steps, |r, k| a[r * steps + k]);
        let expected = product_reference(&a, rows, &x, offsets, n);
        let ldc = n + 3;
        let mut runs: Vec<(&str, Vec<T>)> = Vec::new();
        let mut c = vec![T::from_f64(99.0); rows * ldc];
        shifted_product(&panels, &x, offsets, n, &mut c, ldc);
        runs.push(("detected", c));
        fn product<'a, T>(
            a: &'a ShiftedPanels<T>,
            x: &'a [T],
            offsets: &'a [usize],
            n: usize,
            c: &'a mut [T],
        ) -> Shifted<'a, T> {
            let ldc = n + 3;
            Shifted {
                a,
                x,
                offsets,
                n,
                c,
                ldc,
            }
        }
        let mut c = vec![T::from_f64(99.0); rows * ldc];
        product(&panels, &x, offsets, n, &mut c).run::<4, 8, false>();
        runs.push(("portable", c));
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            let mut c = vec![T::from_f64(99.0); rows * ldc];
            Features::Avx2.product(product(&panels, &x, offsets, n, &mut c));
            runs.push(("avx2", c));
        }
        for (name, c) in runs {
            for r in 0..rows {
                assert_eq!(&c[r * ldc..r * ldc + n], &expected[r * n..][..n], "{name}: row {r}");
                assert!(
                    c[r * ldc + n..(r + 1) * ldc].iter().all(|&v| v == T::from_f64(99.0)),
                    "{name}: past n"
                );
            }
        }
    }

    #[test]
    fn products_match_the_reference_at_every_edge() {
        // A convolution's offsets (2 channels, 3x3 taps, 9 wide rows).
        let offsets: Vec<usize> = (0..2)
            .flat_map(|c| (0..3).flat_map(move |i| (0..3).map(move |j| c * 99 + i * 9 + j)))
            .collect();
        for rows in [1, 3, 4, 5, 9] {
            for n in [1, 7, 8, 31, 32, 33, 70] {
                let reach = offsets.iter().max().unwrap() + n;
                // With the slack of whole tiles, and without (the last tile a value at a time).
                check_product::<f32>(rows, &offsets, n, reach + 40);
                check_product::<f32>(rows, &offsets, n, reach);
                check_product::<f64>(rows, &offsets, n, reach + 1);
            }
        }
    }

    #[test]
    fn gradients_match_the_reference_at_every_edge() {
        for (taps, cols, n, images) in [
            (9, 16, 40, 2),
            (17, 5, 33, 3),
            (8, 40, 7, 1),
            (3, 1, 1, 1),
            (24, 16, 100, 5),
            // SimpleConvNet's shape: 25 taps, 30 filters (a cut panel).
            (25, 30, 50, 2),
        ] {
            check_gradient::<f32>(taps, cols, n, images);
            check_gradient::<f64>(taps, cols, n, images);
        }
    }

    fn check_gradient<T: Element + PartialEq + std::fmt::Debug>(taps: usize, cols: usize, n: usize, images: usize) {
        let offsets: Vec<usize> = (0..taps).map(|k| (k * 5) % 23).collect();
        let x_stride = 23 + n + 2;
        let b_stride = cols * n + 1;
        let x = values::<T>(images * x_stride, 3);
        let b = values::<T>(images * b_stride, 4);
        let start = values::<T>(taps * cols, 5);
        let mut expected = start.clone();
        for i in 0..images {
            for (k, &offset) in offsets.iter().enumerate() {
                for f in 0..cols {
                    for p in 0..n {
                        expected[k * cols + f] += x[i * x_stride + offset + p] * b[i * b_stride + f * n + p];
                    }
                }
            }
        }
        let gradient = || ShiftedGradient {
            x: &x,
            x_stride,
            b: &b,
            b_stride,
            images,
            offsets: &offsets,
            cols,
            n,
        };
        let mut scratch = vec![T::ZERO; gradient_scratch_len(cols, n)];
        let mut c = start.clone();
        shifted_gradient(
            (&x, x_stride),
            (&b, b_stride),
            images,
            &offsets,
            (cols, n),
            &mut c,
            &mut scratch,
        );
        assert_eq!(c, expected, "detected tiles, {taps} taps, {cols} cols");
        let mut c = start.clone();
        gradient().run::<4, 8, false>(&mut c, &mut scratch);
        assert_eq!(c, expected, "portable tiles");
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            let mut c = start.clone();
            Features::Avx2.gradient(gradient(), &mut c, &mut scratch);
            assert_eq!(c, expected, "AVX2 tiles");
        }
    }

    #[test]
    fn a_product_of_no_steps_is_zero() {
        let mut panels = ShiftedPanels::<f64>::new();
        panels.pack(3, 0, |_, _| 1.0);
        let mut c = vec![5.0; 3 * 4];
        shifted_product(&panels, &[1.0; 8], &[], 4, &mut c, 4);
        assert_eq!(c, vec![0.0; 12]);
    }

    #[test]
    #[should_panic(expected = "the offsets reach")]
    fn a_product_past_the_end_of_x_is_refused() {
        let mut panels = ShiftedPanels::<f32>::new();
        panels.pack(2, 2, |_, _| 1.0);
        let mut c = vec![0.0; 2 * 8];
        shifted_product(&panels, &[0.0; 10], &[0, 3], 8, &mut c, 8);
    }
}
