//! A convolution's backward over the nonzero values of its output gradient,
//! channels last.
//!
//! Behind a ReLU and a 2x2 max pool, a convolution's output gradient `G` is
//! at least three quarters zeros: the pool sends each window's gradient to
//! one position, and the ReLU drops those where the output was not
//! positive (DeepConvNet's second, fourth and sixth layers: 13-20% nonzero
//! in training). Behind a ReLU alone it is about half zeros (the third and
//! fifth: 37-55%). The dense products of the backward pass (the weight
//! gradient `dW = sum_p G[f, p] x(window at p)`, the input gradient
//! `dx(window at p) += G[f, p] W[f]`) spend a multiply-add on every zero.
//! Here the nonzero values are found by scans of `G` (64 values at a time
//! into a bit mask, as [`crate::sparse`] does), and each does exactly its
//! own work: `g = G[f, p]` times the window's input into `dW[f]`, and `g`
//! times the filter `W[f]` into the window's input gradient. [`pays`] says
//! where that beats the dense products.
//!
//! `dW` goes filter by filter, over the nonzero values of its plane of `G`;
//! `dx` position by position, over the nonzero values of `G` laid out
//! channels last (`[P, FN]`: a position's filters together). Either way the
//! sums of a scan's values are kept in registers, a block of up to 3 rows
//! by 4 vectors of the window at a time, and go to memory once a scan: into
//! `dW[f]`, or into the window of `dx` (once for each scan a position's
//! filters fall in). Adding each value's multiple straight into memory
//! instead (a read, a multiply-add and a write for every vector, the next
//! value waiting on the last one's writes) was slower on each of
//! DeepConvNet's three layers behind a pool: the sixth took about 6.5 ms a
//! batch on one core against 4.9.
//!
//! For that work to be vector operations, the image, its input gradient
//! and the filters are laid out **channels last**: position `q` of the
//! padded image (`q = y Wp + x`) holds its `C` channels together, and a
//! filter is `[FH, FW, C]`. A row `i` of a window is then `FW C`
//! consecutive values in all three: `x[(origin + i Wp) C..][..FW C]`,
//! `W[f][i FW C..][..FW C]`, `dW[f]` the same.
//!
//! **Order of the sums.** Each value of `dW` is one chain of multiply-adds
//! over the nonzero values of its filter's `G`, in order of position, image
//! after image. Each value of `dx` is a sum over the positions whose window
//! covers it, in order, of chains over that position's filters in order
//! (a new chain wherever the scans of the channels-last `G`, 64 values
//! each, cut the position's filters). With AVX2 or AVX-512 each
//! multiply-add is rounded once (FMA); the portable code rounds the product
//! and the sum. A zero of `G` skipped would have added `0 * x`, which
//! leaves a sum as it is, so these are the dense sums taken in that order,
//! except that an infinite `x` or `W` meets only the nonzero values of `G`
//! (the dense products would turn its `0 * inf` into NaN). Nothing depends
//! on threads: a caller splits the images, each call is one image.

use crate::shifted::multiply_add;
#[cfg(target_arch = "x86_64")]
use crate::shifted::Features;
use crate::sparse::{nonzero_mask, padded, SCAN};
use crate::Element;

/// The largest share of nonzero values of `G` at which [`pays`] chooses
/// [`backward_image`] for a layer of fewer than [`WIDE_CHANNELS`] input
/// channels. On the shape of DeepConvNet's second layer (16 channels and
/// filters, 28x28; one image, one core, f32, nonzero values placed at
/// random) it takes 49 us at 30% nonzero, 61 at 39%, 71 at 49% and 84 at
/// 60%, where the layer's dense backward takes 90 (and the transposes
/// around this route 5-8 more): even near 55-60%. The margin is kept
/// because DeepConvNet's third layer (16 channels, 32 filters, 14x14), at
/// 49-55% in training, took the same time either way (4.8 ms a batch).
pub const MAX_NONZERO_SHARE: f64 = 0.45;

/// From this many input channels a nonzero value's work (`9 C`
/// multiply-adds for a 3x3 filter) dwarfs the cost of finding it, and
/// [`pays`] chooses [`backward_image`] up to [`MAX_NONZERO_SHARE_WIDE`].
pub const WIDE_CHANNELS: usize = 32;

/// [`MAX_NONZERO_SHARE`] for [`WIDE_CHANNELS`] channels or more. On the
/// shape of DeepConvNet's fifth layer (32 channels, 64 filters, 8x8; `G`
/// 49-54% nonzero in training, behind a ReLU alone) it takes 16 us at 17%
/// nonzero, 41 at 48% and 50 at 60%, where the dense backward takes 74.
pub const MAX_NONZERO_SHARE_WIDE: f64 = 0.6;

/// One image's convolution of stride 1, as [`backward_image`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// `C`: the input's channels.
    pub channels: usize,
    /// `FN`: the filters, the output's channels.
    pub filters: usize,
    /// `(FH, FW)`: a filter's height and width.
    pub filter: (usize, usize),
    /// `(Hp, Wp)`: the padded input's height and width.
    pub padded: (usize, usize),
}

impl ConvShape {
    /// `(OH, OW)`: the output's height and width at stride 1,
    /// `Hp - FH + 1` by `Wp - FW + 1` (zero where the filter does not fit).
    pub fn out(&self) -> (usize, usize) {
        let out = |padded: usize, filter: usize| (padded + 1).saturating_sub(filter);
        (out(self.padded.0, self.filter.0), out(self.padded.1, self.filter.1))
    }

    /// Values of a filter, or of its gradient, channels last: `FH FW C`.
    pub fn filter_len(&self) -> usize {
        self.filter.0 * self.filter.1 * self.channels
    }

    /// Values of the padded input, or of its gradient, channels last: `Hp Wp C`.
    pub fn padded_len(&self) -> usize {
        self.padded.0 * self.padded.1 * self.channels
    }

    /// Values of the output gradient `G`: `FN OH OW`.
    pub fn grad_len(&self) -> usize {
        let (out_h, out_w) = self.out();
        self.filters * out_h * out_w
    }
}

/// Whether [`backward_image`] beats the dense products for a batch's output
/// gradient `grad_y`, for a layer of `channels` input channels: at most
/// [`MAX_NONZERO_SHARE`] of it nonzero, or [`MAX_NONZERO_SHARE_WIDE`] from
/// [`WIDE_CHANNELS`] channels (a NaN counts as nonzero). A pass over
/// `grad_y`.
pub fn pays<T: Element>(grad_y: &[T], channels: usize) -> bool {
    pays_at(nonzero_share(grad_y), channels)
}

/// The share of `grad_y`'s values that are nonzero (a NaN counts as
/// nonzero); `None` when it is empty. A pass over `grad_y`.
pub fn nonzero_share<T: Element>(grad_y: &[T]) -> Option<f64> {
    (!grad_y.is_empty()).then(|| crate::sparse::nonzeros(grad_y) as f64 / grad_y.len() as f64)
}

/// [`pays`] for a [`nonzero_share`] already counted.
pub fn pays_at(share: Option<f64>, channels: usize) -> bool {
    let most = if channels >= WIDE_CHANNELS {
        MAX_NONZERO_SHARE_WIDE
    } else {
        MAX_NONZERO_SHARE
    };
    share.is_some_and(|share| share <= most)
}

/// `dst[q, c] = src[c, q]`: `channels` planes of `positions` values each
/// (`src`'s first `channels * positions` values; it may be longer), laid out
/// channels last in `dst`.
///
/// # Panics
/// When `src` is shorter than `channels * positions` or `dst` is not that long.
pub fn to_channels_last<T: Element>(src: &[T], (channels, positions): (usize, usize), dst: &mut [T]) {
    let len = channels * positions;
    assert!(src.len() >= len, "to_channels_last: src is shorter than its planes");
    assert_eq!(dst.len(), len, "to_channels_last: dst must hold the planes");
    transpose((src, positions), (channels, positions), (dst, channels));
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for the `rows x
/// cols` matrix in `src` (row-major, rows `src_stride` apart): its
/// transpose, rows `dst_stride` apart: in blocks of 8 x 8, each read as 8
/// rows and written as 8, turned in registers (a row of `src` read 8 values
/// at a time and written to 8 rows a value at a time was 2.5 times slower).
///
/// # Panics
/// When a stride is shorter than its rows, or a matrix passes the end of
/// its buffer.
pub fn transpose<T: Element>(
    (src, src_stride): (&[T], usize),
    (rows, cols): (usize, usize),
    (dst, dst_stride): (&mut [T], usize),
) {
    if rows == 0 || cols == 0 {
        return;
    }
    let fits = |len: usize, stride: usize, (rows, cols): (usize, usize)| {
        stride >= cols
            && (rows - 1)
                .checked_mul(stride)
                .and_then(|end| end.checked_add(cols))
                .is_some_and(|end| end <= len)
    };
    assert!(
        fits(src.len(), src_stride, (rows, cols)),
        "transpose: src does not hold the matrix"
    );
    assert!(
        fits(dst.len(), dst_stride, (cols, rows)),
        "transpose: dst does not hold the transpose"
    );
    let matrix = Matrix {
        src,
        src_stride,
        rows,
        cols,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.transpose(matrix, (dst, dst_stride));
    }
    matrix.transpose_into(dst, dst_stride, transpose_8x8);
}

/// A checked [`transpose`]'s source.
struct Matrix<'a, T> {
    src: &'a [T],
    src_stride: usize,
    rows: usize,
    cols: usize,
}

impl<T: Element> Matrix<'_, T> {
    /// In blocks of 8 x 8, each read as 8 rows, transposed by `block_transpose`
    /// and written as 8 rows; then the edges a value at a time.
    #[inline(always)]
    fn transpose_into(self, dst: &mut [T], dst_stride: usize, block_transpose: impl Fn(&[[T; 8]; 8]) -> [[T; 8]; 8]) {
        const B: usize = 8;
        let Matrix {
            src,
            src_stride,
            rows,
            cols,
        } = self;
        let (whole_rows, whole_cols) = (rows / B * B, cols / B * B);
        for i0 in (0..whole_rows).step_by(B) {
            for j0 in (0..whole_cols).step_by(B) {
                let mut block = [[T::ZERO; B]; B];
                for (i, row) in block.iter_mut().enumerate() {
                    if let Some(values) = src.get((i0 + i) * src_stride + j0..).and_then(|v| v.first_chunk::<B>()) {
                        *row = *values;
                    }
                }
                for (j, column) in block_transpose(&block).iter().enumerate() {
                    if let Some(out) = dst
                        .get_mut((j0 + j) * dst_stride + i0..)
                        .and_then(|v| v.first_chunk_mut::<B>())
                    {
                        *out = *column;
                    }
                }
            }
        }
        for i in 0..rows {
            let first_col = if i < whole_rows { whole_cols } else { 0 };
            for j in first_col..cols {
                dst[j * dst_stride + i] = src[i * src_stride + j];
            }
        }
    }
}

/// An 8 x 8 block's transpose, a value at a time.
#[inline(always)]
fn transpose_8x8<T: Element>(block: &[[T; 8]; 8]) -> [[T; 8]; 8] {
    std::array::from_fn(|j| std::array::from_fn(|i| block[i][j]))
}

/// [`transpose_8x8`] as AVX shuffles for f32 (24 of them for 64 values;
/// LLVM's own code for `transpose_8x8` moved a value at a time, and the
/// transpose a row at a time took 2.5 times as long); a value at a time for
/// f64 (the gradient checks' type). `to_f64` and back is exact and compiles
/// to nothing: it only names a `T` as the `f32` it is. AVX2 alone: the
/// same code serves the AVX-512 machines.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn transpose_8x8_avx<T: Element>(block: &[[T; 8]; 8]) -> [[T; 8]; 8] {
    use crate::kernel::avx2::{load_f32, store_f32};
    use std::arch::x86_64::*;
    if size_of::<T>() != 4 {
        return transpose_8x8(block);
    }
    let r: [__m256; 8] = std::array::from_fn(|i| load_f32(&std::array::from_fn(|l| block[i][l].to_f64() as f32)));
    // Pairs of rows interleaved, then pairs of pairs: `s0..s3` hold rows
    // 0-3 of columns `j` (low half) and `j + 4` (high half), `s4..s7` the
    // same of rows 4-7; the halves then meet in whole columns.
    let (t0, t1) = (_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));
    let (t2, t3) = (_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));
    let (t4, t5) = (_mm256_unpacklo_ps(r[4], r[5]), _mm256_unpackhi_ps(r[4], r[5]));
    let (t6, t7) = (_mm256_unpacklo_ps(r[6], r[7]), _mm256_unpackhi_ps(r[6], r[7]));
    let (s0, s1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
    let (s2, s3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
    let (s4, s5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
    let (s6, s7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
    let columns = [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ];
    let mut out = [[T::ZERO; 8]; 8];
    for (row, column) in out.iter_mut().zip(columns) {
        let mut values = [0.0f32; 8];
        store_f32(column, &mut values);
        *row = values.map(|v| T::from_f64(f64::from(v)));
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_avx2<T: Element>(matrix: Matrix<'_, T>, dst: &mut [T], dst_stride: usize) {
    matrix.transpose_into(dst, dst_stride, |block| transpose_8x8_avx(block));
}

/// The input gradient [`backward_image`] adds to, and its scratch.
#[derive(Debug)]
pub struct InputGradient<'a, T> {
    /// The padded input's gradient, `[Hp, Wp, C]` ([`ConvShape::padded_len`]
    /// values), added to.
    pub grad_x: &'a mut [T],
    /// Room for `G` laid out channels last ([`ConvShape::grad_len`] values).
    pub grad_y_last: &'a mut [T],
}

/// One image's backward over the nonzero values of its output gradient,
/// channels last (see the module doc):
/// `grad_w[f] += sum_p G[f, p] x(window at p)` and, with `grad_x`,
/// `grad_x(window at p) += sum_f G[f, p] W[f]`, over the `G[f, p] != 0`.
///
/// `grad_y` is `G`, `[FN, OH, OW]` ([`ConvShape::grad_len`] values); `x` the
/// padded input, `[Hp, Wp, C]`; `w` the filters, `[FN, FH, FW, C]`;
/// `grad_w` the same shape as `w`: added to. Buffers that start on a cache
/// line (64 bytes) run faster.
///
/// # Panics
/// When a buffer's length is not its shape's, or the filter is 0 wide or high.
pub fn backward_image<T: Element>(
    shape: &ConvShape,
    grad_y: &[T],
    x: &[T],
    w: &[T],
    grad_w: &mut [T],
    grad_x: Option<InputGradient<'_, T>>,
) {
    assert!(
        shape.filter.0 > 0 && shape.filter.1 > 0,
        "sparse_backward: a filter must be at least 1x1"
    );
    let weights_len = shape.filters * shape.filter_len();
    assert_eq!(
        grad_y.len(),
        shape.grad_len(),
        "sparse_backward: G must be [FN, OH, OW]"
    );
    assert_eq!(x.len(), shape.padded_len(), "sparse_backward: x must be [Hp, Wp, C]");
    assert_eq!(w.len(), weights_len, "sparse_backward: W must be [FN, FH, FW, C]");
    assert_eq!(grad_w.len(), weights_len, "sparse_backward: dW must be [FN, FH, FW, C]");
    if let Some(grad) = &grad_x {
        assert_eq!(
            grad.grad_x.len(),
            shape.padded_len(),
            "sparse_backward: dx must be [Hp, Wp, C]"
        );
        assert_eq!(grad.grad_y_last.len(), shape.grad_len(), "sparse_backward: room for G");
    }
    if grad_y.is_empty() || shape.channels == 0 {
        return;
    }
    let image = Image {
        shape: *shape,
        grad_y,
        x,
        w,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.sparse_backward(image, grad_w, grad_x);
    }
    image.portable(grad_w, grad_x);
}

/// A checked [`backward_image`]'s inputs.
#[derive(Clone, Copy)]
struct Image<'a, T> {
    shape: ConvShape,
    grad_y: &'a [T],
    x: &'a [T],
    w: &'a [T],
}

/// The nonzero values of `G` one scan found, and where each one's work
/// starts: its window's first value in `x` (for `dW`), or its filter's in
/// `W` (for `dx`).
struct Found<T> {
    at: [usize; SCAN],
    g: [T; SCAN],
    len: usize,
}

impl<T: Element> Found<T> {
    /// The values of `scan` whose bit is set in `bits`, in order, each
    /// with `at(l)` for its place `l` in the scan.
    #[inline(always)]
    fn collect(&mut self, scan: &[T; SCAN], mut bits: u64, at: impl Fn(usize) -> usize) {
        self.len = 0;
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // `l < SCAN` and at most `SCAN` bits: the `%`s only spare bounds checks.
            self.at[self.len % SCAN] = at(l);
            self.g[self.len % SCAN] = scan[l % SCAN];
            self.len += 1;
        }
    }

    /// The places and values of found values `range`.
    #[inline(always)]
    fn values(&self, range: std::ops::Range<usize>) -> (&[usize], &[T]) {
        (&self.at[range.clone()], &self.g[range])
    }
}

/// Where one scan's sums go: `dW[f]` (`[FH, FW, C]`, read and written
/// back), or the input gradient, its window's first value at `at`.
enum Sums<'b, T> {
    Weights(&'b mut [T]),
    Input { grad_x: &'b mut [T], at: usize },
}

/// The window's shape in vectors: `rows` rows of `FW C` values, each
/// `per_row` whole vectors of `L` and `tail` values more; a row's step
/// in `x` (`Wp C`) and in `W` (`FW C`).
#[derive(Clone, Copy)]
struct Rows {
    rows: usize,
    per_row: usize,
    tail: usize,
    x_step: usize,
    w_step: usize,
}

impl<T: Element> Image<'_, T> {
    /// [`Image::run`] in the portable code: vectors of 8 values of f32, 4
    /// of f64, each product rounded before its sum.
    fn portable(self, grad_w: &mut [T], grad_x: Option<InputGradient<'_, T>>) {
        match size_of::<T>() == 4 {
            true => self.run::<8, false>(nonzero_mask, grad_w, grad_x),
            false => self.run::<4, false>(nonzero_mask, grad_w, grad_x),
        }
    }

    /// `dW` filter by filter, each plane of `G` scanned 64 values at a time;
    /// then `dx` position by position, over `G` laid out channels last
    /// (each position's `FN` values scanned). A scan's work runs in
    /// blocks of up to 12 vectors of the window, their sums in registers.
    #[inline(always)]
    fn run<const L: usize, const FUSED: bool>(
        self,
        mask: impl Fn(&[T; SCAN]) -> u64,
        grad_w: &mut [T],
        grad_x: Option<InputGradient<'_, T>>,
    ) {
        let ConvShape {
            channels,
            filters,
            filter: (filter_h, filter_w),
            padded: (_, wp),
        } = self.shape;
        let (out_h, out_w) = self.shape.out();
        let (plane_len, filter_len, run_len) = (out_h * out_w, self.shape.filter_len(), filter_w * channels);
        let rows = Rows {
            rows: filter_h,
            per_row: run_len / L,
            tail: run_len % L,
            x_step: wp * channels,
            w_step: run_len,
        };
        // The window at output position `p` starts at padded position `origin(p)`.
        let origin = |p: usize| p + p / out_w * (wp - out_w);
        let mut found = Found {
            at: [0; SCAN],
            g: [T::ZERO; SCAN],
            len: 0,
        };
        let mut padded_scan;
        for (plane, grad_w_f) in self
            .grad_y
            .chunks_exact(plane_len)
            .zip(grad_w.chunks_exact_mut(filter_len))
        {
            for first in (0..plane_len).step_by(SCAN) {
                let scan = match plane[first..].first_chunk::<SCAN>() {
                    Some(scan) => scan,
                    None => {
                        padded_scan = padded::<T, SCAN>(&plane[first..]);
                        &padded_scan
                    }
                };
                found.collect(scan, mask(scan), |l| origin(first + l) * channels);
                if found.len > 0 {
                    self.scan_work::<L, FUSED>(found.values(0..found.len), rows, Sums::Weights(grad_w_f));
                }
            }
        }
        let Some(InputGradient { grad_x, grad_y_last }) = grad_x else {
            return;
        };
        // `G` channels last, scanned whole, 64 values at a time (a few
        // positions' filters: a scan a position cost more than its work
        // where there are 16 filters), and each position's run of values
        // done at once.
        to_channels_last(self.grad_y, (filters, plane_len), grad_y_last);
        for first in (0..grad_y_last.len()).step_by(SCAN) {
            let scan = match grad_y_last[first..].first_chunk::<SCAN>() {
                Some(scan) => scan,
                None => {
                    padded_scan = padded::<T, SCAN>(&grad_y_last[first..]);
                    &padded_scan
                }
            };
            // Each value's place in `grad_y_last`, for now.
            found.collect(scan, mask(scan), |l| first + l);
            let mut start = 0;
            while start < found.len {
                let p = found.at[start % SCAN] / filters;
                let next = (p + 1) * filters;
                let mut end = start;
                while let Some(at) = found.at[..found.len].get_mut(end).filter(|at| **at < next) {
                    // The filter's place in `W`.
                    *at = (*at - p * filters) * filter_len;
                    end += 1;
                }
                let sums = Sums::Input {
                    grad_x: &mut *grad_x,
                    at: origin(p) * channels,
                };
                self.scan_work::<L, FUSED>(found.values(start..end), rows, sums);
                start = end;
            }
        }
    }

    /// The work of `found`'s nonzero values (their places, their values)
    /// for one filter (`dW`) or one position (`dx`): the window's whole
    /// vectors in blocks of up to 3 rows by 4 vectors (12 sums in
    /// registers), then each row's last values one at a time.
    #[inline(always)]
    fn scan_work<const L: usize, const FUSED: bool>(&self, found: (&[usize], &[T]), rows: Rows, mut sums: Sums<'_, T>) {
        for first_row in (0..rows.rows).step_by(3) {
            for first_vector in (0..rows.per_row).step_by(4) {
                let at = (first_row, first_vector);
                let sums = &mut sums;
                match (rows.rows - first_row, rows.per_row - first_vector) {
                    (3.., 4..) => self.block::<3, 4, L, FUSED>(found, rows, at, sums),
                    (3.., 3) => self.block::<3, 3, L, FUSED>(found, rows, at, sums),
                    (3.., 2) => self.block::<3, 2, L, FUSED>(found, rows, at, sums),
                    (3.., _) => self.block::<3, 1, L, FUSED>(found, rows, at, sums),
                    (2, 4..) => self.block::<2, 4, L, FUSED>(found, rows, at, sums),
                    (2, 3) => self.block::<2, 3, L, FUSED>(found, rows, at, sums),
                    (2, 2) => self.block::<2, 2, L, FUSED>(found, rows, at, sums),
                    (2, _) => self.block::<2, 1, L, FUSED>(found, rows, at, sums),
                    (_, 4..) => self.block::<1, 4, L, FUSED>(found, rows, at, sums),
                    (_, 3) => self.block::<1, 3, L, FUSED>(found, rows, at, sums),
                    (_, 2) => self.block::<1, 2, L, FUSED>(found, rows, at, sums),
                    (_, _) => self.block::<1, 1, L, FUSED>(found, rows, at, sums),
                }
            }
        }
        let found = found.0.iter().zip(found.1);
        for i in 0..rows.rows {
            for t in rows.per_row * L..rows.per_row * L + rows.tail {
                let (x_at, w_at) = (i * rows.x_step + t, i * rows.w_step + t);
                match &mut sums {
                    Sums::Weights(grad_w_f) => {
                        for (&at, &g) in found.clone() {
                            grad_w_f[w_at] = multiply_add::<T, FUSED>(g, self.x[at + x_at], grad_w_f[w_at]);
                        }
                    }
                    Sums::Input { grad_x, at: at_x } => {
                        let sum = found.clone().fold(T::ZERO, |sum, (&at, &g)| {
                            multiply_add::<T, FUSED>(g, self.w[at + w_at], sum)
                        });
                        grad_x[*at_x + x_at] += sum;
                    }
                }
            }
        }
    }

    /// `R` rows by `V` vectors of the window, from row `first_row` and
    /// vector `first_vector` into each: their sums over the scan's values,
    /// kept in registers (a row's `V` vectors read as one array, one bounds
    /// check).
    #[inline(always)]
    fn block<const R: usize, const V: usize, const L: usize, const FUSED: bool>(
        &self,
        (found_at, found_g): (&[usize], &[T]),
        rows: Rows,
        (first_row, first_vector): (usize, usize),
        sums: &mut Sums<'_, T>,
    ) {
        let x_rows: [usize; R] = std::array::from_fn(|r| (first_row + r) * rows.x_step + first_vector * L);
        let w_rows: [usize; R] = std::array::from_fn(|r| (first_row + r) * rows.w_step + first_vector * L);
        let mut block = [[[T::ZERO; L]; V]; R];
        let (source, starts) = match sums {
            Sums::Weights(grad_w_f) => {
                for (sums, &at) in block.iter_mut().zip(&w_rows) {
                    *sums = vectors(grad_w_f, at);
                }
                (self.x, &x_rows)
            }
            Sums::Input { .. } => (self.w, &w_rows),
        };
        for (&at, &g) in found_at.iter().zip(found_g) {
            for (sums, &start) in block.iter_mut().zip(starts) {
                let values: [[T; L]; V] = vectors(source, at + start);
                for (sum, values) in sums.iter_mut().zip(&values) {
                    for l in 0..L {
                        sum[l] = multiply_add::<T, FUSED>(g, values[l], sum[l]);
                    }
                }
            }
        }
        match sums {
            Sums::Weights(grad_w_f) => {
                for (sums, &at) in block.iter().zip(&w_rows) {
                    grad_w_f[at..at + V * L].copy_from_slice(sums.as_flattened());
                }
            }
            Sums::Input { grad_x, at: at_x } => {
                for (sums, &start) in block.iter().zip(&x_rows) {
                    let (run, _) = grad_x[*at_x + start..][..V * L].as_chunks_mut::<L>();
                    // Each vector read whole, added to and written back: a
                    // value at a time, LLVM kept the adds scalar.
                    for (values, sum) in run.iter_mut().zip(sums) {
                        let mut added = *values;
                        for l in 0..L {
                            added[l] += sum[l];
                        }
                        *values = added;
                    }
                }
            }
        }
    }
}

/// The `V` vectors of `L` values of `values` from `at`. Every caller's
/// `at` is inside (the window fits the padded image, which
/// `backward_image` checked); the zeros are there so that the loop has no
/// panic path, which would keep its sums in memory.
#[inline(always)]
fn vectors<T: Element, const L: usize, const V: usize>(values: &[T], at: usize) -> [[T; L]; V] {
    match values
        .get(at..)
        .and_then(|run| run.as_chunks::<L>().0.first_chunk::<V>())
    {
        Some(&run) => run,
        None => [[T::ZERO; L]; V],
    }
}

/// The backward compiled for one instruction set: `L` one vector, 16
/// values of f32 (8 of f64) with AVX-512, half that with AVX2.
#[cfg(target_arch = "x86_64")]
macro_rules! compiled_for {
    ($backward:ident, $features:literal, $l_f32:literal, $mask:path) => {
        #[target_feature(enable = $features)]
        fn $backward<T: Element>(image: Image<'_, T>, grad_w: &mut [T], grad_x: Option<InputGradient<'_, T>>) {
            let mask = |block: &[T; SCAN]| $mask(block);
            match size_of::<T>() == 4 {
                true => image.run::<$l_f32, true>(mask, grad_w, grad_x),
                false => image.run::<{ $l_f32 / 2 }, true>(mask, grad_w, grad_x),
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
compiled_for!(
    backward_avx512,
    "avx512f,avx512dq,avx2,fma",
    16,
    crate::sparse::nonzero_mask_avx512
);
#[cfg(target_arch = "x86_64")]
compiled_for!(backward_avx2, "avx2,fma", 8, crate::sparse::nonzero_mask_avx2);

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`transpose`] on this instruction set.
    fn transpose<T: Element>(self, matrix: Matrix<'_, T>, (dst, dst_stride): (&mut [T], usize)) {
        // SAFETY: as in `sparse_backward` below.
        unsafe {
            match self {
                Features::Avx512 | Features::Avx2 => transpose_avx2(matrix, dst, dst_stride),
            }
        }
    }

    /// [`backward_image`] on this instruction set.
    fn sparse_backward<T: Element>(self, image: Image<'_, T>, grad_w: &mut [T], grad_x: Option<InputGradient<'_, T>>) {
        // SAFETY: a `Features` value is made only by `detect`, after finding
        // on this CPU every feature its variant names, which are the ones
        // these functions are compiled with.
        unsafe {
            match self {
                Features::Avx512 => backward_avx512(image, grad_w, grad_x),
                Features::Avx2 => backward_avx2(image, grad_w, grad_x),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shifted::exact_values;

    /// Exact values, about half of them zero.
    fn sparse_grad<T: Element>(len: usize, seed: usize) -> Vec<T> {
        let mut values = exact_values::<T>(len, seed);
        for (i, value) in values.iter_mut().enumerate() {
            if (i * 5 + seed) % 7 < 4 {
                *value = T::ZERO;
            }
        }
        values
    }

    /// `dW` and `dx` by the definition, every term (zeros too), in plain loops.
    fn reference<T: Element>(shape: &ConvShape, grad_y: &[T], x: &[T], w: &[T]) -> (Vec<T>, Vec<T>) {
        let ConvShape {
            channels,
            filters,
            filter: (fh, fw),
            padded: (_, wp),
        } = *shape;
        let (out_h, out_w) = shape.out();
        let mut grad_w = vec![T::ZERO; w.len()];
        let mut grad_x = vec![T::ZERO; x.len()];
        for f in 0..filters {
            for (oh, ow) in (0..out_h).flat_map(|oh| (0..out_w).map(move |ow| (oh, ow))) {
                let g = grad_y[(f * out_h + oh) * out_w + ow];
                for (i, j, c) in (0..fh).flat_map(|i| (0..fw).flat_map(move |j| (0..channels).map(move |c| (i, j, c))))
                {
                    let q = ((oh + i) * wp + ow + j) * channels + c;
                    let k = ((f * fh + i) * fw + j) * channels + c;
                    grad_w[k] += g * x[q];
                    grad_x[q] += g * w[k];
                }
            }
        }
        (grad_w, grad_x)
    }

    /// The backward against the reference, on exact values (every sum is
    /// exact, so the order does not show), with and without `dx`.
    fn check<T: Element>(
        shape: ConvShape,
        run: impl Fn(&ConvShape, &[T], &[T], &[T], &mut [T], Option<InputGradient<'_, T>>),
    ) {
        let grad_y = sparse_grad::<T>(shape.grad_len(), 1);
        let x = exact_values::<T>(shape.padded_len(), 2);
        let w = exact_values::<T>(shape.filters * shape.filter_len(), 3);
        let (want_w, want_x) = reference(&shape, &grad_y, &x, &w);
        // Added to: start from ones, and take them away after.
        let mut grad_w = vec![T::ONE; w.len()];
        let mut grad_x = vec![T::ONE; x.len()];
        let mut grad_y_last = vec![T::ZERO; grad_y.len()];
        let input = InputGradient {
            grad_x: &mut grad_x,
            grad_y_last: &mut grad_y_last,
        };
        run(&shape, &grad_y, &x, &w, &mut grad_w, Some(input));
        let minus_one = |v: Vec<T>| v.into_iter().map(|v| v - T::ONE).collect::<Vec<_>>();
        assert_eq!(minus_one(grad_w), want_w, "dW for {shape:?}");
        assert_eq!(minus_one(grad_x), want_x, "dx for {shape:?}");
        let mut grad_w = vec![T::ZERO; w.len()];
        run(&shape, &grad_y, &x, &w, &mut grad_w, None);
        assert_eq!(grad_w, want_w, "dW alone for {shape:?}");
    }

    fn shapes() -> Vec<ConvShape> {
        let shape = |channels, filters, filter, padded| ConvShape {
            channels,
            filters,
            filter,
            padded,
        };
        vec![
            // DeepConvNet's three layers behind a pool.
            shape(16, 16, (3, 3), (30, 30)),
            shape(32, 32, (3, 3), (18, 18)),
            shape(64, 64, (3, 3), (10, 10)),
            // Channels not a whole vector, planes not a whole scan, wide filters.
            shape(3, 5, (2, 4), (7, 9)),
            shape(17, 2, (5, 5), (12, 6)),
            shape(1, 1, (1, 1), (1, 1)),
            // A filter as large as the image: one position.
            shape(4, 3, (6, 6), (6, 6)),
            // More filters than a scan: a position's filters across two or
            // three scans of the channels-last `G`.
            shape(3, 100, (3, 3), (5, 6)),
            shape(2, 130, (2, 2), (4, 3)),
        ]
    }

    /// The unchecked inputs of one image, as the tests hand them over.
    fn image<'a, T>(shape: &ConvShape, grad_y: &'a [T], x: &'a [T], w: &'a [T]) -> Image<'a, T> {
        Image {
            shape: *shape,
            grad_y,
            x,
            w,
        }
    }

    /// [`backward_image`] in the portable code.
    fn portable<T: Element>(
        shape: &ConvShape,
        grad_y: &[T],
        x: &[T],
        w: &[T],
        grad_w: &mut [T],
        grad_x: Option<InputGradient<'_, T>>,
    ) {
        image(shape, grad_y, x, w).portable(grad_w, grad_x);
    }

    /// [`backward_image`] on the instruction set `features`.
    #[cfg(target_arch = "x86_64")]
    fn run_on<T: Element>(
        features: Features,
        (shape, grad_y): (&ConvShape, &[T]),
        x: &[T],
        w: &[T],
        grad_w: &mut [T],
        grad_x: Option<InputGradient<'_, T>>,
    ) {
        features.sparse_backward(image(shape, grad_y, x, w), grad_w, grad_x)
    }

    /// The instruction sets this CPU has.
    #[cfg(target_arch = "x86_64")]
    fn instruction_sets() -> Vec<Features> {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        [(avx2, Features::Avx2), (avx512, Features::Avx512)]
            .into_iter()
            .filter_map(|(present, features)| present.then_some(features))
            .collect()
    }

    #[test]
    fn the_backward_equals_the_reference_on_every_instruction_set() {
        for shape in shapes() {
            check::<f32>(shape, backward_image);
            check::<f64>(shape, backward_image);
            check::<f32>(shape, portable);
            check::<f64>(shape, portable);
            #[cfg(target_arch = "x86_64")]
            for features in instruction_sets() {
                check::<f32>(shape, |s, g, x, w, gw, gx| run_on(features, (s, g), x, w, gw, gx));
                check::<f64>(shape, |s, g, x, w, gw, gx| run_on(features, (s, g), x, w, gw, gx));
            }
        }
    }

    #[test]
    fn an_empty_window_changes_nothing() {
        let shape = ConvShape {
            channels: 2,
            filters: 3,
            filter: (3, 3),
            padded: (2, 5),
        };
        assert_eq!(shape.out(), (0, 3));
        let (x, w) = (vec![1.0f32; shape.padded_len()], vec![1.0f32; 3 * shape.filter_len()]);
        let mut grad_w = vec![2.0f32; w.len()];
        backward_image(&shape, &[], &x, &w, &mut grad_w, None);
        assert!(grad_w.iter().all(|&v| v == 2.0));
    }

    #[test]
    fn a_nan_in_g_reaches_its_window() {
        let shape = ConvShape {
            channels: 2,
            filters: 1,
            filter: (1, 1),
            padded: (1, 3),
        };
        let grad_y = [0.0f32, f32::NAN, 0.0];
        let (x, w) = ([1.0f32; 6], [1.0f32; 2]);
        let (mut grad_w, mut grad_x, mut grad_y_last) = ([0.0f32; 2], [0.0f32; 6], [0.0f32; 3]);
        let input = InputGradient {
            grad_x: &mut grad_x,
            grad_y_last: &mut grad_y_last,
        };
        backward_image(&shape, &grad_y, &x, &w, &mut grad_w, Some(input));
        assert!(grad_w.iter().all(|v| v.is_nan()));
        let nan_at: Vec<bool> = grad_x.iter().map(|v| v.is_nan()).collect();
        assert_eq!(nan_at, [false, false, true, true, false, false]);
    }

    #[test]
    fn pays_where_g_is_mostly_zeros() {
        let mut grad = vec![0.0f32; 100];
        grad[..45].fill(1.0);
        assert!(pays(&grad, 16));
        grad[45] = f32::NAN;
        assert!(!pays(&grad, 16));
        assert!(pays(&grad, WIDE_CHANNELS));
        grad[46..60].fill(-1.0);
        assert!(pays(&grad, WIDE_CHANNELS));
        grad[60] = 1.0;
        assert!(!pays(&grad, WIDE_CHANNELS));
        assert!(!pays::<f32>(&[], 64));
    }

    #[test]
    fn transpose_with_strides_and_edges() {
        fn portable<T: Element>(
            (src, src_stride): (&[T], usize),
            (rows, cols): (usize, usize),
            dst: (&mut [T], usize),
        ) {
            Matrix {
                src,
                src_stride,
                rows,
                cols,
            }
            .transpose_into(dst.0, dst.1, transpose_8x8)
        }
        #[cfg(target_arch = "x86_64")]
        fn on<T: Element>(
            features: Features,
            (src, src_stride): (&[T], usize),
            (rows, cols): (usize, usize),
            dst: (&mut [T], usize),
        ) {
            let matrix = Matrix {
                src,
                src_stride,
                rows,
                cols,
            };
            features.transpose(matrix, dst)
        }
        check_transpose::<f32>(transpose);
        check_transpose::<f64>(transpose);
        check_transpose::<f32>(portable);
        check_transpose::<f64>(portable);
        #[cfg(target_arch = "x86_64")]
        for features in instruction_sets() {
            check_transpose::<f32>(|src, shape, dst| on(features, src, shape, dst));
            check_transpose::<f64>(|src, shape, dst| on(features, src, shape, dst));
        }
    }

    /// `run` (a [`transpose`]) on matrices of whole blocks, edges and both,
    /// with strides longer than the rows.
    fn check_transpose<T: Element>(run: impl Fn((&[T], usize), (usize, usize), (&mut [T], usize))) {
        for (rows, cols) in [(1, 1), (8, 8), (9, 17), (16, 3), (3, 16), (24, 40)] {
            let (src_stride, dst_stride) = (cols + 3, rows + 5);
            let src: Vec<T> = (0..rows * src_stride).map(|v| T::from_f64(v as f64)).collect();
            let mut dst = vec![-T::ONE; cols * dst_stride];
            run((&src, src_stride), (rows, cols), (&mut dst, dst_stride));
            for (j, row) in dst.chunks_exact(dst_stride).enumerate() {
                for (i, &value) in row.iter().enumerate() {
                    let want = if i < rows { src[i * src_stride + j] } else { -T::ONE };
                    assert_eq!(value, want, "({i}, {j}) of {rows} x {cols}");
                }
            }
        }
    }

    #[test]
    fn channels_last_is_the_transpose() {
        for (channels, positions) in [(3, 17), (16, 8), (1, 5), (5, 1), (0, 4)] {
            let src: Vec<f64> = (0..channels * positions + 3).map(|v| v as f64).collect();
            let mut dst = vec![-1.0; channels * positions];
            to_channels_last(&src, (channels, positions), &mut dst);
            for q in 0..positions {
                for c in 0..channels {
                    assert_eq!(dst[q * channels + c], src[c * positions + q]);
                }
            }
        }
    }
}
