//! A convolution by its direct sums, an image at a time, with the filters
//! as the vectors' lanes; and, where a ReLU and the book's 2x2 max pool of
//! stride 2 follow it, with those two taken on, and the filters' gradient
//! taken back through them.
//!
//! **Forward.** `y[f, oh, ow] = b[f] + sum_k W[f, k] x[c, oh S + i, ow S + j]`
//! over the taps `k = (c, i, j)` of the padded image, each output one chain
//! of multiply-adds in the order of `k` from zero, then the bias. The sums
//! of one pixel for [`LANES`] filters are a vector, `W` read as its
//! transpose `[K, FN']` (`FN'` the filters rounded up to whole register
//! tiles, zeros past `FN`): at each tap, one vector of weights against each
//! pixel's value, broadcast. The register tile is a row of 2x2 blocks of
//! pixels (a pool's windows) by one or two vectors of filters. The outputs
//! come out channels last, `[OH, OW, FN']`, and are transposed to `[FN,
//! OH, OW]` at the end of the image.
//!
//! It serves convolutions of stride 1 that the shifted products do not
//! (one channel, or a pad at least as wide as the filter), where a ReLU
//! and a pool follow: `K` is short there (25 taps for SimpleConvNet's 5x5
//! filters over one channel), so a GEMM's tiles are mostly loads and
//! stores of its output, after `im2col` wrote `K` copies of the image and
//! the GEMM packed them again.
//!
//! **With a ReLU and a 2x2 max pool** ([`DirectOutput::Pooled`]): each
//! block's four outputs are in registers when summed, so they go through
//! the ReLU and the pool there, as the layers would take them (the ReLU
//! layer's `x <= 0` rule, the first maximum in row-major order kept, ties
//! included), and only the pooled values are written, with a byte for each
//! saying which of the four pixels won: a quarter of the output, where the
//! three layers wrote the whole of it twice and read it back twice.
//!
//! **The filters' gradient behind them** ([`pooled_filter_gradient`]):
//! each pooled value's gradient goes to one pixel of its window (the one
//! that won) and passes the ReLU there or stops (`dL/dy` is zero at the
//! other three, and where the maximum was not above 0). So `dW[f, k] = sum
//! g x_k` over the pooled values of filter `f` only, `x_k` tap `k` of the
//! winner's window: a row of `col^T` ([`window_columns`], `K` values in a
//! row, vectors of taps), a quarter of the dense `G col^T`'s products,
//! with no `G` written.
//!
//! **Rounding.** Each output, pooled value and gradient sum is a fixed
//! sequence of operations, whatever the threads. The forward sums go in
//! the order of `im2col`'s rows; on CPUs with FMA each step is one
//! multiply-add (one rounding), in the portable code a multiply and an
//! add. The gradient sums go over the pooled values in two interleaved
//! chains: the same values as `G col^T` up to rounding.

use crate::conv::ConvGeometry;
use crate::shifted::multiply_add;
#[cfg(target_arch = "x86_64")]
use crate::shifted::Features;
use crate::sparse_backward::transpose;
use crate::Element;

/// Filters in a vector: one AVX-512 vector of f32.
pub const LANES: usize = 16;

/// The taps the filters' gradient sums at a time: two vectors of f32, all
/// of SimpleConvNet's 25.
const WINDOW_CHUNK: usize = 32;

/// Taps of a window's row copied at a time into `col_t`: AVX2's vector of
/// f32 (SimpleConvNet's rows of 5 in one).
const ROW_LANES: usize = 8;

/// A convolution as [`forward`] sees one image: its geometry and its
/// filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectShape {
    /// The window over one image (`C, H, W`, the filter's size, stride, pad).
    pub geometry: ConvGeometry,
    /// `FN`: the filters, the output's channels.
    pub filters: usize,
}

impl DirectShape {
    /// Whether [`forward`] takes this shape: a geometry that
    /// [`ConvGeometry::new`] accepts (its fields are public), stride 1, at
    /// least one filter, and an output of at least 2x2 (whole 2x2 blocks of
    /// pixels).
    pub fn fits(&self) -> bool {
        let g = &self.geometry;
        let valid = ConvGeometry::new(
            (g.channels, g.height, g.width),
            (g.filter_h, g.filter_w),
            g.stride,
            g.pad,
        );
        valid.is_ok() && g.stride == 1 && self.filters > 0 && g.out_h() >= 2 && g.out_w() >= 2
    }

    /// `FN'`: the filters rounded up to the register tile's vectors (one
    /// vector up to [`LANES`] filters, else pairs of them).
    pub fn filter_lanes(&self) -> usize {
        if self.filters <= LANES {
            LANES
        } else {
            self.filters.div_ceil(2 * LANES) * 2 * LANES
        }
    }

    /// `(H + 2P, W + 2P)`: the padded image's height and width.
    pub fn padded(&self) -> (usize, usize) {
        let g = &self.geometry;
        (g.height + 2 * g.pad, g.width + 2 * g.pad)
    }

    /// `C (H + 2P) (W + 2P)`: the padded image [`forward`] reads.
    pub fn padded_len(&self) -> usize {
        let (hp, wp) = self.padded();
        self.geometry.channels * hp * wp
    }

    /// `(OH / 2, OW / 2)`: the 2x2 pool's output (a last odd row or
    /// column of the convolution's is dropped, as the pool drops it).
    pub fn pooled(&self) -> (usize, usize) {
        (self.geometry.out_h() / 2, self.geometry.out_w() / 2)
    }

    /// The positions of one filter's output: `OH OW`, or pooled `OH/2 OW/2`.
    pub fn positions(&self, pooled: bool) -> usize {
        match pooled {
            true => self.pooled().0 * self.pooled().1,
            false => self.geometry.windows(),
        }
    }

    /// The scratch [`forward`] needs: the outputs channels last.
    pub fn scratch_len(&self, pooled: bool) -> usize {
        self.positions(pooled) * self.filter_lanes()
    }

    /// The bytes of [`DirectOutput::Pooled`]'s `codes`: `[OH/2 OW/2, FN']`.
    pub fn codes_len(&self) -> usize {
        self.scratch_len(true)
    }

    /// A row of `col_t` ([`window_columns`]): a window's `K = C FH FW`
    /// taps, and room to copy its last row 8 taps at a time, rounded up to
    /// 32 (the gradient's chunk of taps).
    pub fn window_lanes(&self) -> usize {
        let g = &self.geometry;
        let room = ROW_LANES.saturating_sub(g.filter_w);
        (g.window_len() + room).div_ceil(WINDOW_CHUNK) * WINDOW_CHUNK
    }

    /// `OH OW` rows of [`DirectShape::window_lanes`]: `col_t`'s length.
    pub fn col_t_len(&self) -> usize {
        self.geometry.windows() * self.window_lanes()
    }
}

/// The filters and bias as [`forward`] reads them: `W^T`, `[K, FN']`, and
/// the bias, `[FN']`, zeros past `FN`. Reused from batch to batch.
#[derive(Debug, Clone, Default)]
pub struct DirectFilters<T> {
    w_t: Vec<T>,
    bias: Vec<T>,
    shape: Option<DirectShape>,
}

impl<T: Element> DirectFilters<T> {
    /// No filters yet (lay some out with [`DirectFilters::pack`]).
    pub fn new() -> Self {
        DirectFilters {
            w_t: Vec::new(),
            bias: Vec::new(),
            shape: None,
        }
    }

    /// Lays out the filters `w` (`[FN, K]`) and bias `b` (`[FN]`) for
    /// [`forward`] on images of `shape` (which must
    /// [fit](DirectShape::fits) there), reusing the buffers.
    ///
    /// # Panics
    /// When `w` or `b` does not fit `shape`.
    pub fn pack(&mut self, w: &[T], b: &[T], shape: &DirectShape) {
        let (filters, window) = (shape.filters, shape.geometry.window_len());
        assert_eq!(w.len(), filters * window, "direct: W must be [FN, C * FH * FW]");
        assert_eq!(b.len(), filters, "direct: one bias a filter");
        let lanes = shape.filter_lanes();
        self.w_t.clear();
        self.w_t.resize(window * lanes, T::ZERO);
        transpose((w, window), (filters, window), (&mut self.w_t, lanes));
        self.bias.clear();
        self.bias.extend_from_slice(b);
        self.bias.resize(lanes, T::ZERO);
        self.shape = Some(*shape);
    }
}

/// Where [`forward`] writes an image's output.
#[derive(Debug)]
pub enum DirectOutput<'a, T> {
    /// The convolution's output, `[FN, OH, OW]`.
    Plain(&'a mut [T]),
    /// The convolution's output through a ReLU and a 2x2 max pool of
    /// stride 2: `y` is `[FN, OH/2, OW/2]`; `codes`, `[OH/2 OW/2, FN']`,
    /// says for each pooled value which pixel of its window won (0 top
    /// left, 1 top right, 2 bottom left, 3 bottom right).
    Pooled {
        /// The pooled values.
        y: &'a mut [T],
        /// Each window's winner.
        codes: &'a mut [u8],
    },
}

/// One image's convolution, `padded` (`[C, H + 2P, W + 2P]`) by the packed
/// filters, into `out`; `scratch` holds at least
/// [`DirectShape::scratch_len`] values.
///
/// # Panics
/// When the filters are not packed, their shape does not
/// [fit](DirectShape::fits), or a buffer does not fit it.
pub fn forward<T: Element>(filters: &DirectFilters<T>, padded: &[T], out: DirectOutput<'_, T>, scratch: &mut [T]) {
    forward_by(detected, filters, padded, out, scratch);
}

/// [`Image::run`] on the widest instruction set this CPU has.
fn detected<T: Element>(image: Image<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.direct_forward(image);
    }
    image.run::<false, false>();
}

/// [`forward`], its tiles run by `run` (the tests run each instruction set).
fn forward_by<T: Element>(
    run: impl FnOnce(Image<'_, T>),
    filters: &DirectFilters<T>,
    padded: &[T],
    out: DirectOutput<'_, T>,
    scratch: &mut [T],
) {
    let shape = filters.shape.as_ref().expect("direct: filters not packed");
    assert!(shape.fits(), "direct: {shape:?} does not fit");
    assert_eq!(padded.len(), shape.padded_len(), "direct: padded must be [C, Hp, Wp]");
    let (y, codes) = match out {
        DirectOutput::Plain(y) => (y, None),
        DirectOutput::Pooled { y, codes } => {
            assert_eq!(codes.len(), shape.codes_len(), "direct: codes must be [OH/2 OW/2, FN']");
            (y, Some(codes))
        }
    };
    let positions = shape.positions(codes.is_some());
    assert_eq!(y.len(), shape.filters * positions, "direct: y does not fit the output");
    let filter_lanes = shape.scratch_len(codes.is_some());
    assert!(
        scratch.len() >= filter_lanes,
        "direct: scratch of {} values, {filter_lanes} needed",
        scratch.len()
    );
    let out_last = &mut scratch[..filter_lanes];
    run(Image {
        shape,
        padded,
        w_t: &filters.w_t,
        bias: &filters.bias,
        out_last: &mut *out_last,
        codes,
    });
    let lanes = shape.filter_lanes();
    transpose((out_last, lanes), (positions, shape.filters), (y, positions));
}

/// A checked [`forward`]'s operands: the padded image, the packed filters,
/// and the outputs channels last (pooled, with their codes).
struct Image<'a, T> {
    shape: &'a DirectShape,
    padded: &'a [T],
    w_t: &'a [T],
    bias: &'a [T],
    out_last: &'a mut [T],
    codes: Option<&'a mut [u8]>,
}

/// [`LANES`] values from `at` in `values`, as an array (a vector); zeros
/// past the end (never, for a checked [`forward`]).
#[inline(always)]
fn lanes<T: Element, const N: usize>(values: &[T], at: usize) -> [T; N] {
    debug_assert!(
        at + N <= values.len(),
        "direct: {N} values from {at} of {}",
        values.len()
    );
    values
        .get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .unwrap_or([T::ZERO; N])
}

/// `values` into `out[at..]` (nowhere past the end).
#[inline(always)]
fn put<T: Copy, const N: usize>(out: &mut [T], at: usize, values: &[T; N]) {
    debug_assert!(at + N <= out.len(), "direct: {N} values to {at} of {}", out.len());
    if let Some(run) = out.get_mut(at..).and_then(|rest| rest.first_chunk_mut::<N>()) {
        *run = *values;
    }
}

/// The ReLU layer's rule: 0 where `x <= 0`, else `x` (NaN stays NaN).
#[inline(always)]
fn relu<T: Element>(x: T) -> T {
    if x <= T::ZERO {
        T::ZERO
    } else {
        x
    }
}

/// The ReLU layer's gradient: `dout` where `x > 0` (or NaN), else 0.
#[inline(always)]
fn relu_grad<T: Element>(x: T, dout: T) -> T {
    if x <= T::ZERO {
        T::ZERO
    } else {
        dout
    }
}

/// A register tile's sums: `BLOCKS` 2x2 blocks of pixels (top left, top
/// right, bottom left, bottom right) by `VECS` vectors of filters.
type Sums<T, const VECS: usize, const BLOCKS: usize> = [[[[T; LANES]; VECS]; 4]; BLOCKS];

impl<T: Element> Image<'_, T> {
    /// The image in register tiles of one vector of filters (up to
    /// [`LANES`] of them) or two, by blocks of pixels: with `WIDE` (AVX-512
    /// in f32: 32 registers of 16 lanes), 6 blocks or 3, 24 registers of
    /// sums; else one block (4 or 8 arrays of sums, each two registers of
    /// AVX2 or of f64: the portable code, AVX2's 16 registers, the gradient
    /// checks' f64) and one where a row has fewer blocks than a wide tile.
    #[inline(always)]
    fn run<const FUSED: bool, const WIDE: bool>(self) {
        let one_vector = self.shape.filter_lanes() == LANES;
        let blocks = match self.codes {
            Some(_) => self.shape.pooled().1,
            None => self.shape.geometry.out_w() / 2,
        };
        let wide = WIDE && blocks >= if one_vector { 6 } else { 3 };
        match (one_vector, wide) {
            (true, true) => self.tiles::<1, 6, FUSED>(),
            (false, true) => self.tiles::<2, 3, FUSED>(),
            (true, false) => self.tiles::<1, 1, FUSED>(),
            (false, false) => self.tiles::<2, 1, FUSED>(),
        }
    }

    /// Tiles of `BLOCKS` 2x2 blocks side by side: pooled, the pool's
    /// windows; else blocks covering the output. A tile that would pass
    /// the output's last row or column is moved back to end there (its
    /// overlap with the one before is summed again, the same values).
    #[inline(always)]
    fn tiles<const VECS: usize, const BLOCKS: usize, const FUSED: bool>(self) {
        let Image {
            shape,
            padded,
            w_t,
            bias,
            out_last,
            mut codes,
        } = self;
        let g = &shape.geometry;
        let (out_h, out_w) = (g.out_h(), g.out_w());
        let (_, wp) = shape.padded();
        let filter_lanes = shape.filter_lanes();
        // The tiles' top rows and left columns, in outputs.
        let (rows, cols) = match codes {
            Some(_) => (2 * shape.pooled().0, 2 * shape.pooled().1),
            None => (out_h, out_w),
        };
        let tile_rows = (0..rows.div_ceil(2)).map(|r| (2 * r).min(rows - 2));
        let tile_cols = (0..cols.div_ceil(2 * BLOCKS)).map(|t| (2 * BLOCKS * t).min(cols - 2 * BLOCKS));
        for first_lane in (0..filter_lanes).step_by(VECS * LANES) {
            let bias: [[T; LANES]; VECS] = std::array::from_fn(|v| lanes(bias, first_lane + v * LANES));
            for top in tile_rows.clone() {
                for left in tile_cols.clone() {
                    let sums = tile::<T, VECS, BLOCKS, FUSED>(shape, padded, w_t, first_lane, top * wp + left);
                    for (b, sums) in sums.iter().enumerate() {
                        let left = left + 2 * b;
                        match codes.as_deref_mut() {
                            Some(codes) => {
                                let at = ((top / 2) * (cols / 2) + left / 2) * filter_lanes + first_lane;
                                pool_block(sums, &bias, (out_last, codes), at);
                            }
                            None => {
                                for (a, sums) in sums.iter().enumerate() {
                                    let at = ((top + a / 2) * out_w + left + a % 2) * filter_lanes + first_lane;
                                    for (v, (sums, bias)) in sums.iter().zip(&bias).enumerate() {
                                        let mut y = *sums;
                                        for (y, &b) in y.iter_mut().zip(bias) {
                                            *y += b;
                                        }
                                        put(out_last, at + v * LANES, &y);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One register tile: the sums over every tap for the 2 x `2 BLOCKS`
/// pixels whose first window starts at `start` in the padded image,
/// filters `first_lane..` of `W^T`. A row of taps at a time (`FW` of them,
/// one image row for each of the tile's two rows of pixels), each pixel's
/// value at a fixed place in it.
#[inline(always)]
fn tile<T: Element, const VECS: usize, const BLOCKS: usize, const FUSED: bool>(
    shape: &DirectShape,
    padded: &[T],
    w_t: &[T],
    first_lane: usize,
    start: usize,
) -> Sums<T, VECS, BLOCKS> {
    let g = &shape.geometry;
    let (hp, wp) = shape.padded();
    let (filter_w, filter_lanes) = (g.filter_w, shape.filter_lanes());
    let span = 2 * BLOCKS + filter_w - 1;
    let mut sums = [[[[T::ZERO; LANES]; VECS]; 4]; BLOCKS];
    let mut k = 0;
    for c in 0..g.channels {
        for i in 0..g.filter_h {
            let row = start + (c * hp + i) * wp;
            let (upper, lower) = (&padded[row..][..span], &padded[row + wp..][..span]);
            for j in 0..filter_w {
                let weights: [[T; LANES]; VECS] =
                    std::array::from_fn(|v| lanes(w_t, (k + j) * filter_lanes + first_lane + v * LANES));
                let (upper, lower) = (&upper[j..][..2 * BLOCKS], &lower[j..][..2 * BLOCKS]);
                for (b, sums) in sums.iter_mut().enumerate() {
                    for (a, sums) in sums.iter_mut().enumerate() {
                        let x = match a {
                            0 | 1 => upper[2 * b + a],
                            _ => lower[2 * b + a - 2],
                        };
                        for (sums, weights) in sums.iter_mut().zip(&weights) {
                            for (sum, &weight) in sums.iter_mut().zip(weights) {
                                *sum = multiply_add::<T, FUSED>(x, weight, *sum);
                            }
                        }
                    }
                }
            }
            k += filter_w;
        }
    }
    sums
}

/// A 2x2 block's four sums plus the bias, pooled ([`relu_pool`]) into
/// `out_last[at..]` and `codes[at..]`, a vector of filters at a time.
#[inline(always)]
fn pool_block<T: Element, const VECS: usize>(
    sums: &[[[T; LANES]; VECS]; 4],
    bias: &[[T; LANES]; VECS],
    (out_last, codes): (&mut [T], &mut [u8]),
    at: usize,
) {
    for (v, bias) in bias.iter().enumerate() {
        let (best, code) = relu_pool(|a, l| sums[a][v][l] + bias[l]);
        put(out_last, at + v * LANES, &best);
        put(codes, at + v * LANES, &code);
    }
}

/// A 2x2 window's four pixels (0 top left, 1 top right, 2 bottom left, 3
/// bottom right; `pixel(a, l)` is pixel `a`'s value for lane `l`), through
/// the ReLU and pooled, [`LANES`] filters at a time: the maximum (a later
/// pixel wins only when greater, the pool layer's rule) and which pixel
/// gave it. (An accessor, not arrays of the pixels: built as arrays, the
/// direct sums' pooled forward took 8.4 us an image rather than 5.)
#[inline(always)]
pub(crate) fn relu_pool<T: Element>(pixel: impl Fn(usize, usize) -> T) -> ([T; LANES], [u8; LANES]) {
    let mut best: [T; LANES] = std::array::from_fn(|l| relu(pixel(0, l)));
    let mut code = [0u8; LANES];
    for a in 1..4 {
        for (l, (best, code)) in best.iter_mut().zip(&mut code).enumerate() {
            let value = relu(pixel(a, l));
            if value > *best {
                (*best, *code) = (value, a as u8);
            }
        }
    }
    (best, code)
}

/// Each output pixel's window of the padded image (`[C, Hp, Wp]`) in a row
/// of `col_t` (`[OH OW, window_lanes]`: `im2col`'s `col` transposed), its
/// taps in `W`'s order. Past them each row holds what a copy brought in
/// (the next values of the image's row) or what `col_t` held before:
/// [`pooled_filter_gradient`] multiplies those lanes but never keeps them.
/// Rows of taps up to 8 wide are copied 8 at a time, each over the end of
/// the one before.
///
/// # Panics
/// When `shape` does not [fit](DirectShape::fits) or a buffer does not fit it.
pub fn window_columns<T: Element>(shape: &DirectShape, padded: &[T], col_t: &mut [T]) {
    assert!(shape.fits(), "direct: {shape:?} does not fit");
    assert_eq!(padded.len(), shape.padded_len(), "direct: padded must be [C, Hp, Wp]");
    assert_eq!(
        col_t.len(),
        shape.col_t_len(),
        "direct: col_t must be [OH OW, window_lanes]"
    );
    let g = &shape.geometry;
    let (hp, wp) = shape.padded();
    let filter_w = g.filter_w;
    let mut rows = col_t.chunks_exact_mut(shape.window_lanes());
    let pixels = (0..g.out_h()).flat_map(|oh| (0..g.out_w()).map(move |ow| (oh, ow)));
    for ((oh, ow), row) in pixels.zip(&mut rows) {
        let mut k = 0;
        for c in 0..g.channels {
            for i in 0..g.filter_h {
                let at = (c * hp + oh + i) * wp + ow;
                let source = padded.get(at..).and_then(|rest| rest.first_chunk::<ROW_LANES>());
                match (
                    source,
                    row.get_mut(k..).and_then(|rest| rest.first_chunk_mut::<ROW_LANES>()),
                ) {
                    (Some(source), Some(out)) if filter_w <= ROW_LANES => *out = *source,
                    _ => row[k..k + filter_w].copy_from_slice(&padded[at..at + filter_w]),
                }
                k += filter_w;
            }
        }
    }
}

/// `dL/dW` and `dL/db` of one image's convolution through a ReLU and a 2x2
/// max pool, added to `grad_w` (`[FN, K]`) and `grad_b` (`[FN]`):
/// `pooled` and `grad_pooled` are the pool's output and its gradient
/// (`[FN, OH/2, OW/2]`), `codes` [`forward`]'s, and `col_t` each output
/// pixel's window in a row ([`window_columns`]).
///
/// # Panics
/// When `shape` does not [fit](DirectShape::fits) or a buffer does not fit it.
pub fn pooled_filter_gradient<T: Element>(
    shape: &DirectShape,
    col_t: &[T],
    (pooled, grad_pooled): (&[T], &[T]),
    codes: &[u8],
    (grad_w, grad_b): (&mut [T], &mut [T]),
) {
    let gradient = Gradient {
        shape,
        col_t,
        pooled,
        grad_pooled,
        codes,
    };
    gradient_by(detected_gradient, gradient, (grad_w, grad_b));
}

/// [`Gradient::run`] on the widest instruction set this CPU has.
fn detected_gradient<T: Element>(gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])) {
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.direct_gradient(gradient, sums);
    }
    gradient.run::<false>(sums);
}

/// [`pooled_filter_gradient`], run by `run` (the tests run each instruction set).
fn gradient_by<T: Element>(
    run: impl FnOnce(Gradient<'_, T>, (&mut [T], &mut [T])),
    gradient: Gradient<'_, T>,
    (grad_w, grad_b): (&mut [T], &mut [T]),
) {
    let shape = gradient.shape;
    assert!(shape.fits(), "direct: {shape:?} does not fit");
    let out_len = shape.filters * shape.positions(true);
    assert_eq!(
        gradient.col_t.len(),
        shape.col_t_len(),
        "direct: col_t must be [OH OW, window_lanes]"
    );
    assert_eq!(gradient.pooled.len(), out_len, "direct: pooled does not fit the output");
    assert_eq!(
        gradient.grad_pooled.len(),
        out_len,
        "direct: its gradient does not fit the output"
    );
    assert_eq!(
        gradient.codes.len(),
        shape.codes_len(),
        "direct: codes must be [OH/2 OW/2, FN']"
    );
    assert_eq!(
        grad_w.len(),
        shape.filters * shape.geometry.window_len(),
        "direct: dW must be [FN, K]"
    );
    assert_eq!(grad_b.len(), shape.filters, "direct: db must be [FN]");
    run(gradient, (grad_w, grad_b));
}

/// A checked [`pooled_filter_gradient`]'s operands.
struct Gradient<'a, T> {
    shape: &'a DirectShape,
    col_t: &'a [T],
    pooled: &'a [T],
    grad_pooled: &'a [T],
    codes: &'a [u8],
}

/// A chain of [`pooled_filter_gradient`]'s sums: a chunk of taps, and `g`.
type Chain<T> = ([[T; LANES]; WINDOW_CHUNK / LANES], T);

/// `chain += (g * taps, g)`, the taps [`WINDOW_CHUNK`] values of `col_t`
/// from `at`. A function called in place, not a closure: a closure is not
/// always inlined into the caller compiled for FMA (not in the dev
/// profile), and its `mul_add` then calls `fmaf` a value at a time (the
/// no-allocation test's SimpleConvNet took twice as long).
#[inline(always)]
fn add_window<T: Element, const FUSED: bool>((sums, sum_g): &mut Chain<T>, (grad, at): (T, usize), col_t: &[T]) {
    *sum_g += grad;
    let (taps, _) = col_t[at..][..WINDOW_CHUNK].as_chunks::<LANES>();
    for (sums, taps) in sums.iter_mut().zip(taps) {
        for (sum, &tap) in sums.iter_mut().zip(taps) {
            *sum = multiply_add::<T, FUSED>(grad, tap, *sum);
        }
    }
}

impl<T: Element> Gradient<'_, T> {
    /// A filter at a time, [`WINDOW_CHUNK`] taps of its row at a time: over
    /// the filter's pooled values, two chains of sums (one for the even
    /// places of each pooled row, one for the odd), each adding `g` times
    /// its pixel's row of `col_t`.
    #[inline(always)]
    fn run<const FUSED: bool>(self, (grad_w, grad_b): (&mut [T], &mut [T])) {
        let Gradient {
            shape,
            col_t,
            pooled,
            grad_pooled,
            codes,
        } = self;
        let g = &shape.geometry;
        let (window, filter_lanes) = (g.window_len(), shape.filter_lanes());
        // The chunks that hold taps (a row may have room for one more).
        let chunks = window.div_ceil(WINDOW_CHUNK);
        let (pooled_h, pooled_w) = shape.pooled();
        let positions = shape.positions(true);
        let out_w = g.out_w();
        // A row of `col_t`, and where each pixel of a pool window starts
        // from its top left's.
        let row_len = shape.window_lanes();
        let pixel_offsets = [0, 1, out_w, out_w + 1].map(|pixel| pixel * row_len);
        let rows = grad_w.chunks_exact_mut(window).zip(grad_b.iter_mut());
        for (f, (grad_w, grad_b)) in rows.enumerate() {
            let values = &pooled[f * positions..][..positions];
            let grads = &grad_pooled[f * positions..][..positions];
            for chunk in 0..chunks {
                // Each chain's sums of the taps, and of `g` (the bias's
                // gradient, kept from the first chunk).
                let mut even: Chain<T> = ([[T::ZERO; LANES]; WINDOW_CHUNK / LANES], T::ZERO);
                let mut odd: Chain<T> = ([[T::ZERO; LANES]; WINDOW_CHUNK / LANES], T::ZERO);
                let first_tap = chunk * WINDOW_CHUNK;
                for py in 0..pooled_h {
                    let first = py * pooled_w;
                    let (values, grads) = (&values[first..][..pooled_w], &grads[first..][..pooled_w]);
                    // Pooled value `px` of the row: its gradient through the
                    // ReLU, and where its winner's taps start in `col_t`.
                    let (codes, row_at) = (&codes[first * filter_lanes + f..], 2 * py * out_w * row_len + first_tap);
                    let term = |px: usize| {
                        let code = usize::from(codes[px * filter_lanes] & 3);
                        let at = row_at + 2 * px * row_len + pixel_offsets[code];
                        (relu_grad(values[px], grads[px]), at)
                    };
                    for px in 0..pooled_w / 2 {
                        add_window::<T, FUSED>(&mut even, term(2 * px), col_t);
                        add_window::<T, FUSED>(&mut odd, term(2 * px + 1), col_t);
                    }
                    if pooled_w % 2 == 1 {
                        add_window::<T, FUSED>(&mut even, term(pooled_w - 1), col_t);
                    }
                }
                let end = (first_tap + WINDOW_CHUNK).min(window);
                if chunk == 0 {
                    *grad_b += even.1 + odd.1;
                }
                // Whole vectors added, then the window's taps kept: adding
                // only the taps' lanes, LLVM split the sums into pieces of
                // registers, one of them kept in memory (8.7 against 7.5 us
                // an image).
                let mut sums = even.0;
                for (sums, odd) in sums.iter_mut().zip(&odd.0) {
                    for (sum, &odd) in sums.iter_mut().zip(odd) {
                        *sum += odd;
                    }
                }
                for (out, &sum) in grad_w[first_tap..end].iter_mut().zip(sums.as_flattened()) {
                    *out += sum;
                }
            }
        }
    }
}

/// [`Image::run`] and [`Gradient::run`] compiled for AVX-512 or AVX2 and
/// FMA: each array of [`LANES`] values one, two or four vectors, where the
/// crates' baseline (SSE2) has 4 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn forward_avx512<T: Element>(image: Image<'_, T>) {
    match size_of::<T>() == 4 {
        true => image.run::<true, true>(),
        false => image.run::<true, false>(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_avx2<T: Element>(image: Image<'_, T>) {
    image.run::<true, false>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn gradient_avx512<T: Element>(gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])) {
    gradient.run::<true>(sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gradient_avx2<T: Element>(gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])) {
    gradient.run::<true>(sums)
}

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`Image::run`] compiled for these features.
    fn direct_forward<T: Element>(self, image: Image<'_, T>) {
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

    /// [`Gradient::run`] compiled for these features.
    fn direct_gradient<T: Element>(self, gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])) {
        // SAFETY: as in `direct_forward` above.
        unsafe {
            match self {
                Features::Avx512 => gradient_avx512(gradient, sums),
                Features::Avx2 => gradient_avx2(gradient, sums),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv_naive, im2col_image};
    use crate::shifted::exact_values;

    /// `((C, H, W), (FH, FW), pad, FN)`: SimpleConvNet's layer,
    /// DeepConvNet's first, odd outputs, a pad wider than the filter with
    /// two vectors of filters, rows of fewer blocks than a tile (3x4 and
    /// 4x5 outputs), a window of 50 taps (two chunks).
    type Case = ((usize, usize, usize), (usize, usize), usize, usize);
    const CASES: [Case; 7] = [
        ((1, 28, 28), (5, 5), 0, 30),
        ((1, 28, 28), (3, 3), 1, 16),
        ((1, 9, 11), (3, 3), 1, 5),
        ((2, 7, 8), (3, 2), 3, 40),
        ((1, 4, 5), (2, 2), 0, 16),
        ((3, 4, 5), (1, 1), 0, 33),
        ((2, 10, 10), (5, 5), 2, 17),
    ];

    fn shape_of(((c, h, w), (fh, fw), pad, filters): Case) -> DirectShape {
        let geometry = ConvGeometry::new((c, h, w), (fh, fw), 1, pad).unwrap();
        DirectShape { geometry, filters }
    }

    /// `x` (`[C, H, W]`) with `P` zeros around each plane.
    fn pad<T: Element>(shape: &DirectShape, x: &[T]) -> Vec<T> {
        let g = &shape.geometry;
        let (hp, wp) = shape.padded();
        let mut padded = vec![T::ZERO; shape.padded_len()];
        for c in 0..g.channels {
            for i in 0..g.height {
                for j in 0..g.width {
                    padded[(c * hp + i + g.pad) * wp + j + g.pad] = x[(c * g.height + i) * g.width + j];
                }
            }
        }
        padded
    }

    fn portable<T: Element>(image: Image<'_, T>) {
        image.run::<false, false>()
    }

    /// A way to run [`forward`]'s tiles, by name.
    type ForwardRun<T> = (&'static str, fn(Image<'_, T>));

    /// A way to run [`pooled_filter_gradient`]'s sums, by name.
    type GradientRun<'a, T> = (&'static str, &'a dyn Fn(Gradient<'_, T>, (&mut [T], &mut [T])));

    /// Every way the tiles run: the detected set, the portable code, and
    /// AVX2's on an AVX-512 CPU.
    fn forward_runs<T: Element>() -> Vec<ForwardRun<T>> {
        let mut runs: Vec<ForwardRun<T>> = vec![("detected", detected), ("portable", portable)];
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            runs.push(("AVX2", |image| Features::Avx2.direct_forward(image)));
        }
        runs
    }

    /// The pool of `relu(y)` (`[FN, OH, OW]`), term by term: each window's
    /// first maximum and which pixel it was.
    fn relu_pool<T: Element>(shape: &DirectShape, y: &[T]) -> (Vec<T>, Vec<u8>) {
        let g = &shape.geometry;
        let (ph, pw) = shape.pooled();
        let (mut pooled, mut winners) = (Vec::new(), Vec::new());
        for f in 0..shape.filters {
            for py in 0..ph {
                for px in 0..pw {
                    let tap = |a: usize| relu(y[(f * g.out_h() + 2 * py + a / 2) * g.out_w() + 2 * px + a % 2]);
                    let mut best = (tap(0), 0);
                    for a in 1..4 {
                        if tap(a) > best.0 {
                            best = (tap(a), a as u8);
                        }
                    }
                    pooled.push(best.0);
                    winners.push(best.1);
                }
            }
        }
        (pooled, winners)
    }

    /// [`forward`] against [`conv_naive`] (and the pool of its ReLU), on
    /// values whose sums are exact, so every order gives the same bits.
    fn check_forward<T: Element>(case: Case) {
        let shape = shape_of(case);
        let g = shape.geometry;
        let x = exact_values::<T>(g.image_len(), 3);
        let w = exact_values::<T>(shape.filters * g.window_len(), 5);
        let b = exact_values::<T>(shape.filters, 7);
        let expected = conv_naive(&x, &g, &w, &b);
        let padded = pad(&shape, &x);
        let mut filters = DirectFilters::new();
        filters.pack(&w, &b, &shape);
        let mut scratch = vec![T::from_f64(f64::NAN); shape.scratch_len(false) + 3];
        for (name, run) in forward_runs::<T>() {
            let mut y = vec![T::from_f64(99.0); expected.len()];
            forward_by(run, &filters, &padded, DirectOutput::Plain(&mut y), &mut scratch);
            assert_eq!(y, expected, "{case:?} {name}");
            let (expected_pooled, winners) = relu_pool(&shape, &expected);
            let mut pooled = vec![T::from_f64(99.0); expected_pooled.len()];
            let mut codes = vec![9u8; shape.codes_len()];
            let out = DirectOutput::Pooled {
                y: &mut pooled,
                codes: &mut codes,
            };
            forward_by(run, &filters, &padded, out, &mut scratch);
            assert_eq!(pooled, expected_pooled, "{case:?} {name} pooled");
            let positions = shape.positions(true);
            for (i, &winner) in winners.iter().enumerate() {
                let (f, p) = (i / positions, i % positions);
                assert_eq!(codes[p * shape.filter_lanes() + f], winner, "{case:?} {name} code {i}");
            }
            // The lanes past `FN` (zero filters and bias) pool zeros: the first wins.
            for p in 0..positions {
                let lanes = &codes[p * shape.filter_lanes()..][..shape.filter_lanes()];
                assert!(lanes[shape.filters..].iter().all(|&code| code == 0), "{case:?} {name}");
            }
        }
    }

    #[test]
    fn forward_matches_the_direct_convolution_and_pool() {
        for case in CASES {
            check_forward::<f32>(case);
            check_forward::<f64>(case);
        }
    }

    #[test]
    fn ties_keep_the_first_pixel_and_nan_stays_only_as_the_first() {
        // One filter, one channel, 1x1: the output is the image times 2.
        let shape = shape_of(((1, 2, 8), (1, 1), 0, 1));
        let mut filters = DirectFilters::<f32>::new();
        filters.pack(&[2.0], &[0.0], &shape);
        // Windows: [1, 3 | 3, 0], [-1, -2 | 0, -5], [NaN, 3 | 1, 0], [1, NaN | 0, 2].
        let nan = f32::NAN;
        let x = [
            1.0, 3.0, -1.0, -2.0, nan, 3.0, 1.0, nan, 3.0, 0.0, 0.0, -5.0, 1.0, 0.0, 0.0, 2.0,
        ];
        let (mut y, mut codes) = (vec![0.0; 4], vec![9u8; shape.codes_len()]);
        let mut scratch = vec![0.0; shape.scratch_len(true)];
        let out = DirectOutput::Pooled {
            y: &mut y,
            codes: &mut codes,
        };
        forward(&filters, &x, out, &mut scratch);
        // The ReLU keeps a NaN, and no later pixel is greater than it; a
        // NaN after the first is never greater than the best.
        assert_eq!([y[0], y[1], y[3]], [6.0, 0.0, 4.0]);
        assert!(y[2].is_nan());
        let codes: Vec<u8> = (0..4).map(|p| codes[p * LANES]).collect();
        assert_eq!(codes, [1, 0, 0, 3], "the first 6, the first 0, the NaN, the 4");
    }

    /// [`pooled_filter_gradient`] against `G col^T` with `G` written out
    /// (each pooled gradient at its winner, through the ReLU), exact values.
    fn check_gradient<T: Element>(case: Case) {
        let shape = shape_of(case);
        let g = shape.geometry;
        let (window, windows) = (g.window_len(), g.windows());
        let x = exact_values::<T>(g.image_len(), 3);
        let w = exact_values::<T>(shape.filters * window, 5);
        let b = exact_values::<T>(shape.filters, 7);
        let mut filters = DirectFilters::new();
        filters.pack(&w, &b, &shape);
        let positions = shape.positions(true);
        let mut pooled = vec![T::ZERO; shape.filters * positions];
        let mut codes = vec![0u8; shape.codes_len()];
        let mut scratch = vec![T::ZERO; shape.scratch_len(true)];
        let out = DirectOutput::Pooled {
            y: &mut pooled,
            codes: &mut codes,
        };
        let padded = pad(&shape, &x);
        forward(&filters, &padded, out, &mut scratch);
        let grad_pooled = exact_values::<T>(pooled.len(), 11);
        let mut col = vec![T::ZERO; g.col_len()];
        im2col_image(&x, &g, &mut col);
        let mut col_t = vec![T::from_f64(99.0); shape.col_t_len()];
        window_columns(&shape, &padded, &mut col_t);
        for k in 0..window {
            for p in 0..windows {
                assert_eq!(
                    col_t[p * shape.window_lanes() + k],
                    col[k * windows + p],
                    "{case:?} col_t"
                );
            }
        }
        // The reference: G dense, then its products with `col`, added to 1.
        let (_, pooled_w) = shape.pooled();
        let mut grad_y = vec![T::ZERO; shape.filters * windows];
        for f in 0..shape.filters {
            for p in 0..positions {
                let code = usize::from(codes[p * shape.filter_lanes() + f]);
                let (oh, ow) = (2 * (p / pooled_w) + code / 2, 2 * (p % pooled_w) + code % 2);
                let i = f * positions + p;
                grad_y[f * windows + oh * g.out_w() + ow] = relu_grad(pooled[i], grad_pooled[i]);
            }
        }
        let mut expected_w = vec![T::ONE; shape.filters * window];
        let mut expected_b = vec![T::ONE; shape.filters];
        for f in 0..shape.filters {
            for p in 0..windows {
                let grad = grad_y[f * windows + p];
                expected_b[f] += grad;
                for k in 0..window {
                    expected_w[f * window + k] += grad * col[k * windows + p];
                }
            }
        }
        let portable = |gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])| gradient.run::<false>(sums);
        let mut runs: Vec<GradientRun<'_, T>> = vec![("detected", &detected_gradient), ("portable", &portable)];
        #[cfg(target_arch = "x86_64")]
        let avx2 =
            |gradient: Gradient<'_, T>, sums: (&mut [T], &mut [T])| Features::Avx2.direct_gradient(gradient, sums);
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            runs.push(("AVX2", &avx2));
        }
        for (name, run) in runs {
            let (mut grad_w, mut grad_b) = (vec![T::ONE; expected_w.len()], vec![T::ONE; shape.filters]);
            let gradient = Gradient {
                shape: &shape,
                col_t: &col_t,
                pooled: &pooled,
                grad_pooled: &grad_pooled,
                codes: &codes,
            };
            gradient_by(run, gradient, (&mut grad_w, &mut grad_b));
            assert_eq!(grad_w, expected_w, "{case:?} {name} dW");
            assert_eq!(grad_b, expected_b, "{case:?} {name} db");
        }
    }

    #[test]
    fn the_filters_gradient_matches_the_dense_products() {
        for case in CASES {
            check_gradient::<f32>(case);
            check_gradient::<f64>(case);
        }
    }

    #[test]
    fn fits_stride_1_and_outputs_of_2x2_or_more() {
        let shape = shape_of(CASES[0]);
        assert!(shape.fits());
        let g = shape.geometry;
        let strided = ConvGeometry { stride: 2, ..g };
        assert!(!DirectShape {
            geometry: strided,
            ..shape
        }
        .fits());
        assert!(!DirectShape { filters: 0, ..shape }.fits());
        let one_row = ConvGeometry::new((1, 5, 28), (5, 5), 1, 0).unwrap();
        assert!(!DirectShape {
            geometry: one_row,
            ..shape
        }
        .fits());
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn refuses_a_shape_that_does_not_fit() {
        let geometry = ConvGeometry::new((1, 5, 5), (5, 5), 1, 0).unwrap();
        let shape = DirectShape { geometry, filters: 4 };
        let mut filters = DirectFilters::<f32>::new();
        filters.pack(&[0.0; 100], &[0.0; 4], &shape);
        let mut scratch = vec![0.0; 64];
        forward(&filters, &[0.0; 25], DirectOutput::Plain(&mut [0.0; 4]), &mut scratch);
    }
}
