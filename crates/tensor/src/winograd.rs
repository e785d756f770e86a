//! The forward pass of a 3x3 convolution of stride 1 by Winograd's minimal
//! filtering, F(2x2, 3x3): 16 multiplies for each 2x2 block of outputs of
//! a channel, where the direct sums take 36.
//!
//! For one channel, a 4x4 tile `d` of the padded image (tiles 2 apart in
//! each direction, overlapping by 2) and a 3x3 filter `g` give the 2x2
//! outputs `Y = A^T [(G g G^T) . (B^T d B)] A`, `.` the elementwise product
//! (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016), with
//!
//! ```text
//!        | 1  0 -1  0 |          | 1    0    0  |
//! B^T =  | 0  1  1  0 |     G =  | 1/2  1/2  1/2 |     A^T = | 1  1  1  0 |
//!        | 0 -1  1  0 |          | 1/2 -1/2  1/2 |           | 0  1 -1 -1 |
//!        | 0  1  0 -1 |          | 0    0    1  |
//! ```
//!
//! This is the correlation `y[i, j] = sum_uv d[i + u, j + v] g[u, v]` of a
//! convolution layer, exactly in real numbers. Summed over channels, the
//! elementwise products become 16 matrix products, one per place `xi` of
//! the 4x4 tile: `M_xi[t, f] = sum_c V_xi[t, c] U_xi[f, c]`, with `U = G g
//! G^T` (the filters, transformed once a batch), `V = B^T d B` (each tile
//! `t` of each channel) and `M` turned back into outputs by `A`.
//!
//! **Channels last.** The image is read `[Hp, Wp, C]`, `V_xi` is `[T, C]`,
//! `M_xi` is `[T, FN]` and the outputs come out `[OH, OW, FN]`: the
//! transforms then work on vectors of [`LANES`] channels (or filters) at
//! once, every load and store whole, where along the rows each tile's
//! columns are 2 apart and overlap (shuffles, and lanes wasted at the end
//! of short rows). So `C` and `FN` must be multiples of [`LANES`]
//! ([`WinogradShape::fits`]). The products are register tiles as in the
//! GEMM (`kernel/`): 8 (`BLOCK_TILES`) tiles by [`LANES`] filters of sums, at
//! each channel one vector of `U_xi^T`'s row against each tile's value,
//! broadcast. They read `V` and `M` of a block of tiles at a time, in the
//! first-level cache: all of an image's `V` (4 times the image) went to the
//! second-level cache and back, and the transforms took as long as the
//! products.
//!
//! **Cost.** On DeepConvNet's layers (16 to 64 channels and filters), the
//! direct products spend `9 C` multiply-adds an output, these `4 C`, plus
//! the transforms: a few additions a value, 16 values written for every 4
//! read, or 4 of the output.
//!
//! **Rounding.** For finite values the result differs from the direct
//! sums by rounding only: the transforms add and subtract values (and halve
//! them, exactly, for `U`), so where the direct sums are exact (small
//! integers, or multiples of a power of two) so is this. An infinite input
//! does not: the transforms' sums and differences meet `inf - inf`, and
//! outputs the direct sums make infinite come out NaN. Each output is a
//! fixed sequence of operations, whatever the threads: a caller that splits
//! the images over threads gets the same bits for any number of them.

use crate::direct::relu_pool;
use crate::shifted::multiply_add;
#[cfg(target_arch = "x86_64")]
use crate::shifted::Features;
use crate::sparse_backward::transpose;
use crate::Element;

/// Values of a transformed tile: the 16 products of [`forward`].
pub const TILE_VALUES: usize = 16;

/// Channels (or filters) the transforms take at a time: one AVX-512
/// vector of f32.
pub const LANES: usize = 16;

/// A 3x3 convolution of stride 1 as [`forward`] sees one image: `C`
/// channels in, `FN` filters, `OH x OW` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinogradShape {
    /// `C`: the input's channels.
    pub channels: usize,
    /// `FN`: the filters, the output's channels.
    pub filters: usize,
    /// `(OH, OW)`: the output's height and width.
    pub out: (usize, usize),
}

impl WinogradShape {
    /// Whether [`forward`] takes this shape: `C` and `FN` multiples of
    /// [`LANES`], `OH` and `OW` even (whole 2x2 blocks), none of them 0.
    pub fn fits(&self) -> bool {
        let (out_h, out_w) = self.out;
        self.channels > 0
            && self.filters > 0
            && self.channels.is_multiple_of(LANES)
            && self.filters.is_multiple_of(LANES)
            && out_h > 0
            && out_w > 0
            && out_h.is_multiple_of(2)
            && out_w.is_multiple_of(2)
    }

    /// `(TH, TW)`: the 2x2 output blocks down and across.
    pub fn tiles(&self) -> (usize, usize) {
        (self.out.0 / 2, self.out.1 / 2)
    }

    /// Blocks of one image's output, `T = TH TW`.
    pub fn tiles_per_image(&self) -> usize {
        let (th, tw) = self.tiles();
        th * tw
    }

    /// `(Hp, Wp)`: the padded image [`forward`] reads, `OH + 2` by `OW + 2`.
    pub fn padded(&self) -> (usize, usize) {
        (self.out.0 + 2, self.out.1 + 2)
    }

    /// Values of a padded image, channels last: `Hp Wp C`.
    pub fn padded_len(&self) -> usize {
        let (hp, wp) = self.padded();
        hp * wp * self.channels
    }

    /// Values of one image's output, `FN OH OW`.
    pub fn out_len(&self) -> usize {
        self.filters * self.out.0 * self.out.1
    }

    /// The scratch [`forward`] needs: a block of tiles' `V` and `M`, and
    /// the outputs channels last.
    pub fn scratch_len(&self) -> usize {
        TILE_VALUES * BLOCK_TILES * (self.channels + self.filters) + self.out_len()
    }

    /// `(OH / 2, OW / 2)`: the output of a 2x2 pool of stride 2 after it.
    pub fn pooled(&self) -> (usize, usize) {
        (self.out.0 / 2, self.out.1 / 2)
    }

    /// Values of one image's pooled output, `FN OH/2 OW/2`, and bytes of
    /// [`forward_pooled`]'s `codes`.
    pub fn pooled_len(&self) -> usize {
        self.out_len() / 4
    }

    /// The scratch [`forward_pooled`] needs: [`forward`]'s and the pooled
    /// values channels last.
    pub fn pooled_scratch_len(&self) -> usize {
        self.scratch_len() + self.pooled_len()
    }
}

/// The filters transformed, `U_xi[f, c] = (G g_fc G^T)[xi]`, kept as 16
/// matrices `U_xi^T`, `[C, FN]`: a channel's row is the filters' values, a
/// vector load. Reused from batch to batch.
#[derive(Debug, Clone, Default)]
pub struct WinogradFilters<T> {
    u: Vec<T>,
    shape: Option<WinogradShape>,
}

impl<T: Element> WinogradFilters<T> {
    /// No filters yet (transform some with [`WinogradFilters::pack`]).
    pub fn new() -> Self {
        WinogradFilters {
            u: Vec::new(),
            shape: None,
        }
    }

    /// Transforms the filters `w` (`[FN, C, 3, 3]`) for [`forward`] on
    /// images of `shape`, reusing the buffers.
    ///
    /// # Panics
    /// When `w` does not hold `FN C` filters of 3x3.
    pub fn pack(&mut self, w: &[T], shape: &WinogradShape) {
        let channels = shape.channels;
        assert_eq!(
            w.len(),
            shape.filters * channels * 9,
            "winograd: W must be [FN, C, 3, 3]"
        );
        self.pack_from(shape, |f, c| std::array::from_fn(|k| w[(f * channels + c) * 9 + k]));
    }

    /// Room for the filters of `shape`, so that a later
    /// [`WinogradFilters::pack_from`] for it allocates nothing.
    pub fn reserve(&mut self, shape: &WinogradShape) {
        let len = TILE_VALUES * shape.filters * shape.channels;
        self.u.reserve(len.saturating_sub(self.u.len()));
    }

    /// Transforms the filters `filter(f, c)` (filter `f`'s 3x3 over
    /// channel `c`, row-major) for [`forward`] on images of `shape`: the
    /// input gradient's filters, say, which are a layer's turned half a
    /// circle with their two first axes swapped.
    pub fn pack_from(&mut self, shape: &WinogradShape, filter: impl Fn(usize, usize) -> [T; 9]) {
        let (filters, channels) = (shape.filters, shape.channels);
        self.u.clear();
        self.u.resize(TILE_VALUES * filters * channels, T::ZERO);
        for f in 0..filters {
            for c in 0..channels {
                for (xi, &value) in transform_filter(&filter(f, c)).iter().enumerate() {
                    self.u[(xi * channels + c) * filters + f] = value;
                }
            }
        }
        self.shape = Some(*shape);
    }
}

/// `U = G g G^T` of one 3x3 filter `g` (row-major), row-major 4x4.
fn transform_filter<T: Element>(g: &[T; 9]) -> [T; TILE_VALUES] {
    let half = T::from_f64(0.5);
    // `G g`, column `j` (4 values), then each row of that times `G^T`.
    let column = |j: usize| {
        let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
        [g0, half * (g0 + g1 + g2), half * (g0 - g1 + g2), g2]
    };
    let columns = [column(0), column(1), column(2)];
    let mut u = [T::ZERO; TILE_VALUES];
    for a in 0..4 {
        let (r0, r1, r2) = (columns[0][a], columns[1][a], columns[2][a]);
        u[4 * a] = r0;
        u[4 * a + 1] = half * (r0 + r1 + r2);
        u[4 * a + 2] = half * (r0 - r1 + r2);
        u[4 * a + 3] = r2;
    }
    u
}

/// One image's forward pass: `y = W * x + b` for a 3x3 convolution of
/// stride 1 (see the module doc). `padded` is the image padded to
/// [`WinogradShape::padded`] and laid out channels last (`[Hp, Wp, C]`),
/// `bias` has `FN` values (none: no bias), `y` is the output, `[FN, OH, OW]`
/// (overwritten), `scratch` at least [`WinogradShape::scratch_len`] values.
///
/// # Panics
/// When the shape does not [fit](WinogradShape::fits), `filters` were
/// packed for another shape, or a buffer is not as long as the shape makes it.
pub fn forward<T: Element>(
    filters: &WinogradFilters<T>,
    shape: &WinogradShape,
    padded: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    scratch: &mut [T],
) {
    forward_by(detected, (filters, shape), (padded, bias), Output::Plain(y), scratch);
}

/// [`forward`], then a ReLU and a 2x2 max pool of stride 2, as the layers
/// take them (the ReLU layer's `x <= 0` rule, a later pixel of a window
/// winning only when greater): `pooled` (`[FN, OH/2, OW/2]`) has the bits
/// of [`forward`]'s `y` through those two, and `codes` (`[OH/2 OW/2, FN]`)
/// which pixel of each window won (0 top left, 1 top right, 2 bottom left,
/// 3 bottom right; as [`crate::direct::DirectOutput::Pooled`]). `scratch`
/// holds at least [`WinogradShape::pooled_scratch_len`] values. The pool
/// reads the outputs channels last, in cache, and only the pooled quarter
/// is transposed.
///
/// # Panics
/// As [`forward`], or when `pooled` or `codes` is not
/// [`WinogradShape::pooled_len`] long.
pub fn forward_pooled<T: Element>(
    filters: &WinogradFilters<T>,
    shape: &WinogradShape,
    (padded, bias): (&[T], Option<&[T]>),
    (pooled, codes): (&mut [T], &mut [u8]),
    scratch: &mut [T],
) {
    forward_by(
        detected,
        (filters, shape),
        (padded, bias),
        Output::Pooled(pooled, codes),
        scratch,
    );
}

/// Where [`forward_by`] writes an image's output.
enum Output<'a, T> {
    /// `y`, `[FN, OH, OW]`.
    Plain(&'a mut [T]),
    /// The pooled values and the codes of [`forward_pooled`].
    Pooled(&'a mut [T], &'a mut [u8]),
}

/// [`Image::run`] on the widest instruction set this CPU has.
fn detected<T: Element>(image: Image<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.forward(image);
    }
    image.run::<false>();
}

/// [`forward`], its blocks run by `run` (the tests run each instruction set).
fn forward_by<T: Element>(
    run: impl FnOnce(Image<'_, T>),
    (packed, shape): (&WinogradFilters<T>, &WinogradShape),
    (padded, bias): (&[T], Option<&[T]>),
    out: Output<'_, T>,
    scratch: &mut [T],
) {
    assert!(shape.fits(), "winograd: {shape:?} does not fit");
    assert_eq!(packed.shape, Some(*shape), "winograd: filters packed for another shape");
    assert_eq!(padded.len(), shape.padded_len(), "winograd: padded must be [Hp, Wp, C]");
    assert!(
        bias.is_none_or(|bias| bias.len() == shape.filters),
        "winograd: one bias a filter"
    );
    let scratch_len = match &out {
        Output::Plain(y) => {
            assert_eq!(y.len(), shape.out_len(), "winograd: y must be [FN, OH, OW]");
            shape.scratch_len()
        }
        Output::Pooled(pooled, codes) => {
            assert_eq!(
                pooled.len(),
                shape.pooled_len(),
                "winograd: pooled must be [FN, OH/2, OW/2]"
            );
            assert_eq!(
                codes.len(),
                shape.pooled_len(),
                "winograd: codes must be [OH/2 OW/2, FN]"
            );
            shape.pooled_scratch_len()
        }
    };
    assert!(
        scratch.len() >= scratch_len,
        "winograd: scratch of {} values, {scratch_len} needed",
        scratch.len(),
    );
    let (channels, filters) = (shape.channels, shape.filters);
    let (v, rest) = scratch.split_at_mut(TILE_VALUES * BLOCK_TILES * channels);
    let (m, rest) = rest.split_at_mut(TILE_VALUES * BLOCK_TILES * filters);
    let (y_last, rest) = rest.split_at_mut(shape.out_len());
    let (y, pool) = match out {
        Output::Plain(y) => (y, None),
        Output::Pooled(pooled, codes) => (pooled, Some((&mut rest[..shape.pooled_len()], codes))),
    };
    let pooling = pool.is_some();
    let image = Image {
        shape,
        padded,
        u: &packed.u,
        bias,
        v,
        m,
        y_last: &mut *y_last,
        pool,
    };
    run(image);
    let (ph, pw) = shape.pooled();
    let (last, positions) = match pooling {
        true => (&rest[..shape.pooled_len()], ph * pw),
        false => (&*y_last, shape.out.0 * shape.out.1),
    };
    transpose((last, filters), (positions, filters), (y, positions));
}

/// Tiles (2x2 blocks of outputs) taken through the three steps at a time,
/// so that their `V` and `M` stay in the first-level cache; also the rows
/// of a product's register tile: with [`LANES`] filters, 8 vectors of sums
/// in f32 on AVX-512 (16 in f64, or on AVX2, which has 16 registers: those
/// spill, the gradient checks' and the older CPUs' cost).
const BLOCK_TILES: usize = 8;

/// A checked [`forward`]'s operands and buffers: `V` and `M` for a block
/// of [`BLOCK_TILES`] tiles (`[16, BLOCK_TILES, C]`, `[16, BLOCK_TILES,
/// FN]`), and the outputs channels last.
struct Image<'a, T> {
    shape: &'a WinogradShape,
    padded: &'a [T],
    u: &'a [T],
    bias: Option<&'a [T]>,
    v: &'a mut [T],
    m: &'a mut [T],
    y_last: &'a mut [T],
    /// Pooled, the pooled values channels last (`[OH/2 OW/2, FN]`) and
    /// the codes.
    pool: Option<(&'a mut [T], &'a mut [u8])>,
}

/// [`LANES`] values from `at` in `values`, as an array (a vector); zeros
/// past the end (never, for a checked [`forward`]).
#[inline(always)]
fn lanes<T: Element>(values: &[T], at: usize) -> [T; LANES] {
    values
        .get(at..)
        .and_then(|rest| rest.first_chunk::<LANES>())
        .copied()
        .unwrap_or([T::ZERO; LANES])
}

/// `values` into `out[at..]`, [`LANES`] of them (nowhere past the end).
#[inline(always)]
fn put<T: Element>(out: &mut [T], at: usize, values: &[T; LANES]) {
    if let Some(run) = out.get_mut(at..).and_then(|rest| rest.first_chunk_mut::<LANES>()) {
        *run = *values;
    }
}

/// `a + b`, `a - b` lane by lane.
#[inline(always)]
fn add<T: Element>(a: &[T; LANES], b: &[T; LANES]) -> [T; LANES] {
    let mut sum = *a;
    for (sum, &b) in sum.iter_mut().zip(b) {
        *sum += b;
    }
    sum
}

#[inline(always)]
fn sub<T: Element>(a: &[T; LANES], b: &[T; LANES]) -> [T; LANES] {
    let mut difference = *a;
    for (difference, &b) in difference.iter_mut().zip(b) {
        *difference -= b;
    }
    difference
}

impl<T: Element> Image<'_, T> {
    /// The image a block of tiles at a time: their `V`, their 16
    /// products, their outputs; then, pooled, the pool over the outputs.
    #[inline(always)]
    fn run<const FUSED: bool>(self) {
        let Image {
            shape,
            padded,
            u,
            bias,
            v,
            m,
            y_last,
            pool,
        } = self;
        let tiles = shape.tiles_per_image();
        for first in (0..tiles).step_by(BLOCK_TILES) {
            let block = first..(first + BLOCK_TILES).min(tiles);
            inputs(shape, padded, block.clone(), v);
            products::<T, FUSED>(shape, v, u, block.len(), m);
            outputs(shape, m, bias, block, y_last);
        }
        if let Some((pooled_last, codes)) = pool {
            pool_outputs(shape, y_last, pooled_last, codes);
        }
    }
}

/// `V_xi[k, c] = (B^T d B)[xi]` for tile `first + k` of `block` and every
/// channel `c` (`V` is `[16, BLOCK_TILES, C]`), [`LANES`] channels at a
/// time: the tile's 16 vectors, `B^T` down its columns, then `. B` across
/// its rows.
#[inline(always)]
fn inputs<T: Element>(shape: &WinogradShape, padded: &[T], block: std::ops::Range<usize>, v: &mut [T]) {
    let (_, wp) = shape.padded();
    let (_, tw) = shape.tiles();
    let channels = shape.channels;
    for (k, t) in block.enumerate() {
        let (ty, tx) = (t / tw, t % tw);
        for c in (0..channels).step_by(LANES) {
            let d = |i: usize, j: usize| lanes(padded, ((2 * ty + i) * wp + 2 * tx + j) * channels + c);
            // `columns[j][a]`: row `a` of `B^T d`, column `j`.
            let mut columns = [[[T::ZERO; LANES]; 4]; 4];
            for (j, column) in columns.iter_mut().enumerate() {
                let (d0, d1, d2, d3) = (d(0, j), d(1, j), d(2, j), d(3, j));
                *column = [sub(&d0, &d2), add(&d1, &d2), sub(&d2, &d1), sub(&d1, &d3)];
            }
            let [c0, c1, c2, c3] = &columns;
            for (a, ((r0, r1), (r2, r3))) in c0.iter().zip(c1).zip(c2.iter().zip(c3)).enumerate() {
                let values = [sub(r0, r2), add(r1, r2), sub(r2, r1), sub(r1, r3)];
                for (b, value) in values.iter().enumerate() {
                    put(v, ((4 * a + b) * BLOCK_TILES + k) * channels + c, value);
                }
            }
        }
    }
}

/// `M_xi[k, f] = sum_c V_xi[k, c] U_xi^T[c, f]` for the `rows` tiles of a
/// block and the 16 places `xi`, in register tiles of [`BLOCK_TILES`]
/// tiles by [`LANES`] filters: at each channel, one vector of `U^T`'s row
/// against the tiles' values, each a broadcast. Each sum is one chain over
/// the channels in order. Rows past `rows` are whatever `V` holds there,
/// summed and never stored.
#[inline(always)]
fn products<T: Element, const FUSED: bool>(shape: &WinogradShape, v: &[T], u: &[T], rows: usize, m: &mut [T]) {
    let (channels, filters) = (shape.channels, shape.filters);
    let v_xis = v.chunks_exact(BLOCK_TILES * channels);
    let u_xis = u.chunks_exact(channels * filters);
    for ((v_xi, u_xi), m_xi) in v_xis.zip(u_xis).zip(m.chunks_exact_mut(BLOCK_TILES * filters)) {
        // Tile `k`'s `C` values, for the broadcasts.
        let runs: [&[T]; BLOCK_TILES] = std::array::from_fn(|k| &v_xi[k * channels..][..channels]);
        for f in (0..filters).step_by(LANES) {
            let mut sums = [[T::ZERO; LANES]; BLOCK_TILES];
            for (c, weights) in u_xi.chunks_exact(filters).enumerate() {
                let weights = lanes(weights, f);
                for (sums, run) in sums.iter_mut().zip(&runs) {
                    let value = run[c];
                    for (sum, &weight) in sums.iter_mut().zip(&weights) {
                        *sum = multiply_add::<T, FUSED>(value, weight, *sum);
                    }
                }
            }
            for (k, sums) in sums.iter().enumerate().take(rows) {
                put(m_xi, k * filters + f, sums);
            }
        }
    }
}

/// `y[2 ty + i, 2 tx + j, f] = (A^T M A)[i, j] + b[f]` for the tiles of
/// `block` (`M` is `[16, BLOCK_TILES, FN]`), [`LANES`] filters at a time:
/// `. A` across the tile's rows, then `A^T` down.
#[inline(always)]
fn outputs<T: Element>(
    shape: &WinogradShape,
    m: &[T],
    bias: Option<&[T]>,
    block: std::ops::Range<usize>,
    y_last: &mut [T],
) {
    let (_, tw) = shape.tiles();
    let (filters, out_w) = (shape.filters, shape.out.1);
    for (k, t) in block.enumerate() {
        let (ty, tx) = (t / tw, t % tw);
        for f in (0..filters).step_by(LANES) {
            // Value `xi` of the tile's `M`, for filters `f..f + LANES`.
            let m_at = |xi: usize| lanes(m, (xi * BLOCK_TILES + k) * filters + f);
            let b = bias.map_or([T::ZERO; LANES], |bias| lanes(bias, f));
            // `m_a[a]`: row `a` of `M A`, its two columns.
            let mut m_a = [[[T::ZERO; LANES]; 2]; 4];
            for (a, row) in m_a.iter_mut().enumerate() {
                let (m0, m1, m2, m3) = (m_at(4 * a), m_at(4 * a + 1), m_at(4 * a + 2), m_at(4 * a + 3));
                *row = [add(&add(&m0, &m1), &m2), sub(&sub(&m1, &m2), &m3)];
            }
            // Then `A^T` down each column `j`: the block's two outputs in it.
            let [row0, row1, row2, row3] = &m_a;
            for (j, (((r0, r1), r2), r3)) in row0.iter().zip(row1).zip(row2).zip(row3).enumerate() {
                let top = add(&add(&add(r0, r1), r2), &b);
                let bottom = add(&sub(&sub(r1, r2), r3), &b);
                put(y_last, ((2 * ty) * out_w + 2 * tx + j) * filters + f, &top);
                put(y_last, ((2 * ty + 1) * out_w + 2 * tx + j) * filters + f, &bottom);
            }
        }
    }
}

/// The outputs (`[OH, OW, FN]`) through the ReLU and the 2x2 pool
/// ([`crate::direct::relu_pool`]), [`LANES`] filters at a time, into
/// `pooled_last` (`[OH/2 OW/2, FN]`) and `codes`.
#[inline(always)]
fn pool_outputs<T: Element>(shape: &WinogradShape, y_last: &[T], pooled_last: &mut [T], codes: &mut [u8]) {
    let (filters, out_w) = (shape.filters, shape.out.1);
    let (ph, pw) = shape.pooled();
    for py in 0..ph {
        for px in 0..pw {
            let at = (py * pw + px) * filters;
            for f in (0..filters).step_by(LANES) {
                let pixels: [[T; LANES]; 4] =
                    std::array::from_fn(|a| lanes(y_last, ((2 * py + a / 2) * out_w + 2 * px + a % 2) * filters + f));
                let (best, code) = relu_pool(|a, l| pixels[a][l]);
                put(pooled_last, at + f, &best);
                if let Some(out) = codes.get_mut(at + f..).and_then(|rest| rest.first_chunk_mut::<LANES>()) {
                    *out = code;
                }
            }
        }
    }
}

/// [`Image::run`] compiled for AVX-512 or AVX2 and FMA: each array of
/// [`LANES`] values one or two vectors, where the crates' baseline (SSE2)
/// has 4 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn forward_avx512<T: Element>(image: Image<'_, T>) {
    image.run::<true>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2<T: Element>(image: Image<'_, T>) {
    image.run::<true>()
}

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`Image::run`] compiled for these features.
    fn forward<T: Element>(self, image: Image<'_, T>) {
        // SAFETY: a `Features` value is made only by `detect`, after finding
        // on this CPU every feature its variant names, which are the ones
        // these functions are compiled with.
        unsafe {
            match self {
                Features::Avx512 => forward_avx512(image),
                Features::Avx2 => forward_avx2(image),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shifted::exact_values;

    /// `y[f, i, j] = b[f] + sum_c sum_uv x[i + u, j + v, c] w[f, c, u, v]`
    /// over one padded image (channels last), term by term.
    fn direct<T: Element>(shape: &WinogradShape, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        let (_, wp) = shape.padded();
        let (out_h, out_w) = shape.out;
        let channels = shape.channels;
        let mut y = vec![T::ZERO; shape.out_len()];
        for f in 0..shape.filters {
            for i in 0..out_h {
                for j in 0..out_w {
                    let mut sum = T::ZERO;
                    for c in 0..channels {
                        for u in 0..3 {
                            for v in 0..3 {
                                sum +=
                                    x[((i + u) * wp + j + v) * channels + c] * w[((f * channels + c) * 3 + u) * 3 + v];
                            }
                        }
                    }
                    y[(f * out_h + i) * out_w + j] = sum + bias[f];
                }
            }
        }
        y
    }

    /// [`forward`] against [`direct`], on values whose sums are exact (so
    /// both must give the same bits).
    fn check<T: Element>(shape: WinogradShape) {
        let x = exact_values::<T>(shape.padded_len(), 3);
        let w = exact_values::<T>(shape.filters * shape.channels * 9, 5);
        let bias = exact_values::<T>(shape.filters, 7);
        let mut filters = WinogradFilters::new();
        filters.pack(&w, &shape);
        let mut y = vec![T::from_f64(99.0); shape.out_len()];
        let mut scratch = vec![T::from_f64(f64::NAN); shape.pooled_scratch_len()];
        forward(&filters, &shape, &x, Some(&bias), &mut y, &mut scratch);
        assert_eq!(y, direct(&shape, &x, &w, &bias), "{shape:?}");
        forward(&filters, &shape, &x, None, &mut y, &mut scratch);
        let zeros = vec![T::ZERO; shape.filters];
        assert_eq!(y, direct(&shape, &x, &w, &zeros), "{shape:?} without a bias");
        // Every way the blocks run: the portable code, and AVX2's on an
        // AVX-512 CPU (the detected set ran above).
        let mut y_portable = vec![T::from_f64(99.0); shape.out_len()];
        let run = |image: Image<'_, T>| image.run::<false>();
        forward_by(
            run,
            (&filters, &shape),
            (&x, Some(&bias)),
            Output::Plain(&mut y_portable),
            &mut scratch,
        );
        assert_eq!(y_portable, direct(&shape, &x, &w, &bias), "{shape:?} portable");
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            let mut y_avx2 = vec![T::from_f64(99.0); shape.out_len()];
            let run = |image: Image<'_, T>| Features::Avx2.forward(image);
            forward_by(
                run,
                (&filters, &shape),
                (&x, Some(&bias)),
                Output::Plain(&mut y_avx2),
                &mut scratch,
            );
            assert_eq!(y_avx2, direct(&shape, &x, &w, &bias), "{shape:?} AVX2");
        }
        // Through the ReLU and the pool: the same bits as `y` through them,
        // the first of tied pixels (exact values tie often) winning.
        let y = direct(&shape, &x, &w, &bias);
        let (out_h, out_w) = shape.out;
        let (ph, pw) = shape.pooled();
        let relu = |v: T| if v <= T::ZERO { T::ZERO } else { v };
        let mut pooled = vec![T::from_f64(99.0); shape.pooled_len()];
        let mut codes = vec![9u8; shape.pooled_len()];
        forward_pooled(
            &filters,
            &shape,
            (&x, Some(&bias)),
            (&mut pooled, &mut codes),
            &mut scratch,
        );
        // The same bits on every instruction set: the portable code, and
        // AVX2's on an AVX-512 CPU.
        let mut runs: Vec<fn(Image<'_, T>)> = vec![|image| image.run::<false>()];
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            runs.push(|image| Features::Avx2.forward(image));
        }
        for run in runs {
            let (mut pooled_by, mut codes_by) = (vec![T::from_f64(99.0); pooled.len()], vec![9u8; codes.len()]);
            let out = Output::Pooled(&mut pooled_by, &mut codes_by);
            forward_by(run, (&filters, &shape), (&x, Some(&bias)), out, &mut scratch);
            assert_eq!((&pooled_by, &codes_by), (&pooled, &codes), "{shape:?} pooled");
        }
        for f in 0..shape.filters {
            for py in 0..ph {
                for px in 0..pw {
                    let pixel = |a: usize| relu(y[(f * out_h + 2 * py + a / 2) * out_w + 2 * px + a % 2]);
                    let mut best = (pixel(0), 0);
                    for a in 1..4 {
                        if pixel(a) > best.0 {
                            best = (pixel(a), a as u8);
                        }
                    }
                    let p = py * pw + px;
                    assert_eq!(pooled[f * ph * pw + p], best.0, "{shape:?} pooled");
                    assert_eq!(codes[p * shape.filters + f], best.1, "{shape:?} code");
                }
            }
        }
    }

    #[test]
    fn matches_the_direct_sums() {
        for out in [(2, 2), (8, 8), (4, 6), (28, 28), (14, 14)] {
            for (channels, filters) in [(16, 16), (16, 32), (32, 16), (48, 16)] {
                let shape = WinogradShape { channels, filters, out };
                check::<f32>(shape);
                check::<f64>(shape);
            }
        }
    }

    #[test]
    fn filter_transform_is_g_g_gt() {
        let g: [f64; 9] = std::array::from_fn(|i| (i as f64) * 0.75 - 2.0);
        let gm = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let u = transform_filter(&g);
        for a in 0..4 {
            for b in 0..4 {
                let mut sum = 0.0;
                for i in 0..3 {
                    for j in 0..3 {
                        sum += gm[a][i] * g[3 * i + j] * gm[b][j];
                    }
                }
                assert_eq!(u[4 * a + b], sum, "U[{a}, {b}]");
            }
        }
    }

    #[test]
    fn fits_whole_vectors_and_blocks_only() {
        let shape = WinogradShape {
            channels: 16,
            filters: 32,
            out: (8, 8),
        };
        assert!(shape.fits());
        assert!(!WinogradShape { channels: 8, ..shape }.fits());
        assert!(!WinogradShape { filters: 24, ..shape }.fits());
        assert!(!WinogradShape { out: (7, 8), ..shape }.fits());
        assert!(!WinogradShape { out: (8, 0), ..shape }.fits());
    }

    #[test]
    #[should_panic(expected = "packed for another shape")]
    fn refuses_filters_of_another_shape() {
        let shape = WinogradShape {
            channels: 16,
            filters: 16,
            out: (4, 4),
        };
        let mut filters = WinogradFilters::<f32>::new();
        filters.pack(&vec![0.0; 16 * 16 * 9], &shape);
        let other = WinogradShape { out: (6, 6), ..shape };
        let mut y = vec![0.0; other.out_len()];
        let mut scratch = vec![0.0; other.scratch_len()];
        forward(
            &filters,
            &other,
            &vec![0.0; other.padded_len()],
            None,
            &mut y,
            &mut scratch,
        );
    }
}
