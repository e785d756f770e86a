//! What convolution needs around the GEMM: `im2col` and `col2im` (the
//! book's `common/util.py`), with their shape contract and a direct
//! convolution as the tests' reference.
//!
//! Shapes (`S = stride`, `P = pad`):
//! * images `x` are `[N, C, H, W]` row-major;
//! * filters are `FH x FW`; the output is `OH x OW` with
//!   `OH = (H + 2P - FH) / S + 1`, `OW = (W + 2P - FW) / S + 1`;
//! * `col` is `[N, C * FH * FW, OH * OW]`: for each image, row `(c, i, j)`
//!   holds tap `(i, j)` of channel `c` for every output position `(oh, ow)`,
//!   that is `x[c, oh * S - P + i, ow * S - P + j]`, 0 outside the image.
//!
//! This is Caffe's layout, the transpose of the book's (which has one row
//! per output position). With filters `W` as a `[FN, C * FH * FW]` matrix,
//! one image's convolution is one GEMM, `y_n = W col_n` (`[FN, OH * OW]`),
//! already in image layout `[FN, OH, OW]`: no permute of the output, nor of
//! the upstream gradient in backward. And with stride 1 every run of `col`
//! is a contiguous run of an image row, so `im2col` is a sequence of copies.
//!
//! The batch functions split their work by image over rayon's current pool;
//! each image's result depends on that image only, so results are the same
//! for any thread count.

use crate::{Element, TensorError};
use rayon::prelude::*;

/// The sizes of a convolution (or pooling) window sliding over images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// `C`: channels of each image (and of each filter).
    pub channels: usize,
    /// `H`: image height, before padding.
    pub height: usize,
    /// `W`: image width, before padding.
    pub width: usize,
    /// `FH`: window height.
    pub filter_h: usize,
    /// `FW`: window width.
    pub filter_w: usize,
    /// `S`: step between neighbouring windows, in both directions.
    pub stride: usize,
    /// `P`: rows and columns of zeros around each side of the image.
    pub pad: usize,
}

impl ConvGeometry {
    /// Checks that the image is not empty, the window fits the padded image
    /// and the stride is positive. (The book's formula floors `(H + 2P - FH) / S`, so a stride
    /// that does not tile the image drops the last partial window, as there.)
    pub fn new(
        (channels, height, width): (usize, usize, usize),
        (filter_h, filter_w): (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Result<Self, TensorError> {
        let geometry = ConvGeometry {
            channels,
            height,
            width,
            filter_h,
            filter_w,
            stride,
            pad,
        };
        let padded = |size: usize| size.checked_add(pad.checked_mul(2)?);
        let fits = |size: usize, filter: usize| padded(size).is_some_and(|p| filter >= 1 && filter <= p);
        let empty = channels == 0 || height == 0 || width == 0;
        if empty || stride == 0 || !fits(height, filter_h) || !fits(width, filter_w) {
            return Err(TensorError::ShapeMismatch {
                op: "convolution window (filter must fit the padded image, stride >= 1)",
                lhs: vec![channels, height, width, pad, stride],
                rhs: vec![filter_h, filter_w],
            });
        }
        Ok(geometry)
    }

    /// `OH = (H + 2P - FH) / S + 1`: output rows.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.pad - self.filter_h) / self.stride + 1
    }

    /// `OW = (W + 2P - FW) / S + 1`: output columns.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.pad - self.filter_w) / self.stride + 1
    }

    /// `C * FH * FW`: values in one window, one row of `col` per value.
    pub fn window_len(&self) -> usize {
        self.channels * self.filter_h * self.filter_w
    }

    /// `C * H * W`: values in one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `OH * OW`: windows per image, one column of `col` per window.
    pub fn windows(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// `C * FH * FW * OH * OW`: the length of one image's `col`.
    pub fn col_len(&self) -> usize {
        self.window_len() * self.windows()
    }

    /// The image row read by tap row `i` for output row `oh` (`None` in the padding).
    #[inline(always)]
    fn tap_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.stride + i)
            .checked_sub(self.pad)
            .filter(|&y| y < self.height)
    }

    /// For tap column `j`: the output columns `ow_first..ow_end` whose tap
    /// falls inside the image (the others read padding), and the image column
    /// read by `ow_first`.
    #[inline(always)]
    fn inside_columns(&self, j: usize) -> (usize, usize, usize) {
        let (s, p) = (self.stride, self.pad);
        // Column of output ow: ow * S + j - P, inside when in 0..W.
        let ow_first = p.saturating_sub(j).div_ceil(s);
        let ow_end = if self.width + p <= j {
            0
        } else {
            (self.width + p - j).div_ceil(s).min(self.out_w())
        };
        if ow_first >= ow_end {
            return (0, 0, 0);
        }
        (ow_first, ow_end, ow_first * s + j - p)
    }
}

fn check_len(op: &'static str, len: usize, expected: usize) {
    assert_eq!(len, expected, "{op}: buffer of {len} elements, {expected} expected");
}

/// One image `x` (`[C, H, W]`) into its `col` (`[C * FH * FW, OH * OW]`).
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn im2col_image<T: Element>(image: &[T], geometry: &ConvGeometry, col: &mut [T]) {
    let g = geometry;
    check_len("im2col image", image.len(), g.image_len());
    check_len("im2col col", col.len(), g.col_len());
    let (out_w, stride) = (g.out_w(), g.stride);
    let mut rows = col.chunks_exact_mut(g.windows());
    for c in 0..g.channels {
        for i in 0..g.filter_h {
            for j in 0..g.filter_w {
                let row = rows.next().expect("one row per tap");
                let (ow_first, ow_end, x_first) = g.inside_columns(j);
                for (oh, run) in row.chunks_exact_mut(out_w).enumerate() {
                    let Some(y) = g.tap_row(oh, i) else {
                        run.fill(T::ZERO);
                        continue;
                    };
                    let source = &image[(c * g.height + y) * g.width..][..g.width];
                    run[..ow_first].fill(T::ZERO);
                    run[ow_end..].fill(T::ZERO);
                    let inside = &mut run[ow_first..ow_end];
                    if stride == 1 {
                        inside.copy_from_slice(&source[x_first..x_first + inside.len()]);
                    } else {
                        for (value, &pixel) in inside.iter_mut().zip(source[x_first..].iter().step_by(stride)) {
                            *value = pixel;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_image`]: every value of `col` added back to the
/// pixel it was copied from (padding positions dropped), so `dx = col2im(dcol)`
/// is the gradient of the input. `image` is overwritten.
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn col2im_image<T: Element>(col: &[T], geometry: &ConvGeometry, image: &mut [T]) {
    let g = geometry;
    check_len("col2im image", image.len(), g.image_len());
    check_len("col2im col", col.len(), g.col_len());
    let (out_w, stride) = (g.out_w(), g.stride);
    image.fill(T::ZERO);
    let mut rows = col.chunks_exact(g.windows());
    for c in 0..g.channels {
        for i in 0..g.filter_h {
            for j in 0..g.filter_w {
                let row = rows.next().expect("one row per tap");
                let (ow_first, ow_end, x_first) = g.inside_columns(j);
                for (oh, run) in row.chunks_exact(out_w).enumerate() {
                    let Some(y) = g.tap_row(oh, i) else {
                        continue;
                    };
                    let target = &mut image[(c * g.height + y) * g.width..][..g.width];
                    let inside = &run[ow_first..ow_end];
                    if stride == 1 {
                        // Contiguous, so the adds vectorize.
                        for (pixel, &value) in target[x_first..x_first + inside.len()].iter_mut().zip(inside) {
                            *pixel += value;
                        }
                    } else {
                        for (pixel, &value) in target[x_first..].iter_mut().step_by(stride).zip(inside) {
                            *pixel += value;
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col_image`] for every image of `x` (`[N, C, H, W]`, `N = x.len() /
/// image_len`) into `col` (`[N, C * FH * FW, OH * OW]`), in parallel.
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn im2col<T: Element>(x: &[T], geometry: &ConvGeometry, col: &mut [T]) {
    let g = geometry;
    let images = x.len() / g.image_len();
    check_len("im2col x", x.len(), images * g.image_len());
    check_len("im2col col", col.len(), images * g.col_len());
    col.par_chunks_mut(g.col_len())
        .zip(x.par_chunks(g.image_len()))
        .for_each(|(col, image)| im2col_image(image, g, col));
}

/// [`col2im_image`] for every image, in parallel; `x` is overwritten.
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn col2im<T: Element>(col: &[T], geometry: &ConvGeometry, x: &mut [T]) {
    let g = geometry;
    let images = x.len() / g.image_len();
    check_len("col2im x", x.len(), images * g.image_len());
    check_len("col2im col", col.len(), images * g.col_len());
    x.par_chunks_mut(g.image_len())
        .zip(col.par_chunks(g.col_len()))
        .for_each(|(image, col)| col2im_image(col, g, image));
}

/// The reference the tests compare against: a direct convolution,
/// `out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * x[n, c, oh*S - P + i, ow*S - P + j]`,
/// with `w` as `[FN, C, FH, FW]`. Slow and obvious.
pub fn conv_naive<T: Element>(x: &[T], geometry: &ConvGeometry, w: &[T], b: &[T]) -> Vec<T> {
    let g = geometry;
    let filters = b.len();
    let images = x.len() / g.image_len();
    let mut out = vec![T::ZERO; images * filters * g.windows()];
    for n in 0..images {
        for f in 0..filters {
            for oh in 0..g.out_h() {
                for ow in 0..g.out_w() {
                    let mut sum = b[f];
                    for c in 0..g.channels {
                        for i in 0..g.filter_h {
                            for j in 0..g.filter_w {
                                let y = (oh * g.stride + i) as isize - g.pad as isize;
                                let xx = (ow * g.stride + j) as isize - g.pad as isize;
                                if y < 0 || xx < 0 || y >= g.height as isize || xx >= g.width as isize {
                                    continue;
                                }
                                let pixel = x[((n * g.channels + c) * g.height + y as usize) * g.width + xx as usize];
                                sum += w[((f * g.channels + c) * g.filter_h + i) * g.filter_w + j] * pixel;
                            }
                        }
                    }
                    out[((n * filters + f) * g.out_h() + oh) * g.out_w() + ow] = sum;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{gemm, MatMut, MatRef, Tensor};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Odd shapes: stride 2, pad 1, non-square filters, several channels,
    /// a stride that does not tile the image, a filter as large as the padded image.
    /// `((C, H, W), (FH, FW), stride, pad)`.
    type Case = ((usize, usize, usize), (usize, usize), usize, usize);
    const CASES: [Case; 10] = [
        // Outputs as wide as the image, stride 1: the book's 3x3 pad 1; a
        // tall filter; a wide one with wide padding; a 4x1 without padding.
        ((3, 7, 6), (3, 3), 1, 1),
        ((2, 5, 6), (5, 3), 1, 1),
        ((1, 3, 4), (3, 5), 1, 2),
        ((2, 4, 3), (4, 1), 1, 0),
        ((1, 10, 10), (3, 3), 1, 0),
        ((3, 7, 6), (3, 2), 2, 1),
        ((2, 5, 8), (1, 4), 1, 2),
        ((2, 9, 9), (4, 4), 3, 0),
        ((1, 4, 4), (6, 6), 1, 1),
        ((4, 6, 5), (5, 3), 2, 2),
    ];

    #[test]
    fn im2col_and_one_gemm_per_image_equal_the_direct_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (image, filter, stride, pad) in CASES {
            let g = ConvGeometry::new(image, filter, stride, pad).unwrap();
            let (images, filters) = (3, 5);
            let x = Tensor::<f64>::randn(&[images, g.image_len()], 1.0, &mut rng);
            let w = Tensor::<f64>::randn(&[filters, g.window_len()], 1.0, &mut rng);
            let b = Tensor::<f64>::randn(&[filters], 1.0, &mut rng);
            let mut col = vec![f64::NAN; images * g.col_len()];
            im2col(x.as_slice(), &g, &mut col);
            let mut out = vec![0.0; images * filters * g.windows()];
            for (y, col) in out
                .chunks_exact_mut(filters * g.windows())
                .zip(col.chunks_exact(g.col_len()))
            {
                for (plane, &bias) in y.chunks_exact_mut(g.windows()).zip(b.as_slice()) {
                    plane.fill(bias);
                }
                gemm(
                    1.0,
                    MatRef::row_major(w.as_slice(), filters, g.window_len()),
                    MatRef::row_major(col, g.window_len(), g.windows()),
                    1.0,
                    MatMut::row_major(y, filters, g.windows()),
                )
                .unwrap();
            }
            let expected = conv_naive(x.as_slice(), &g, w.as_slice(), b.as_slice());
            for (got, want) in out.iter().zip(&expected) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "{image:?} {filter:?} s{stride} p{pad}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for any x and c: col2im routes every
        // value back to the pixel it came from, and only there.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (image, filter, stride, pad) in CASES {
            let g = ConvGeometry::new(image, filter, stride, pad).unwrap();
            let images = 2;
            let x = Tensor::<f64>::randn(&[images, g.image_len()], 1.0, &mut rng);
            let c = Tensor::<f64>::randn(&[images * g.col_len()], 1.0, &mut rng);
            let mut col = vec![f64::NAN; c.numel()];
            im2col(x.as_slice(), &g, &mut col);
            let mut back = vec![7.0; x.numel()];
            col2im(c.as_slice(), &g, &mut back);
            let lhs: f64 = col.iter().zip(c.as_slice()).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.as_slice().iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "{image:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn the_books_output_sizes_and_refusals() {
        let g = ConvGeometry::new((1, 28, 28), (5, 5), 1, 0).unwrap();
        assert_eq!((g.out_h(), g.out_w(), g.window_len()), (24, 24, 25));
        let g = ConvGeometry::new((32, 14, 14), (3, 3), 1, 2).unwrap();
        assert_eq!((g.out_h(), g.out_w()), (16, 16), "DeepConvNet's conv 4");
        assert!(
            ConvGeometry::new((1, 4, 4), (7, 3), 1, 1).is_err(),
            "filter taller than the padded image"
        );
        assert!(ConvGeometry::new((1, 4, 4), (3, 3), 0, 0).is_err(), "stride 0");
        assert!(ConvGeometry::new((0, 4, 4), (3, 3), 1, 0).is_err(), "no channels");
        assert!(
            ConvGeometry::new((1, 0, 4), (1, 1), 1, 1).is_err(),
            "no rows, even padded"
        );
        assert!(
            ConvGeometry::new((1, 4, 4), (3, 3), 1, usize::MAX).is_err(),
            "overflowing pad"
        );
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let g = ConvGeometry::new((3, 9, 9), (3, 3), 1, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = Tensor::<f32>::randn(&[7, g.image_len()], 1.0, &mut rng);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut col = vec![0.0f32; 7 * g.col_len()];
                im2col(x.as_slice(), &g, &mut col);
                let mut back = vec![0.0f32; x.numel()];
                col2im(&col, &g, &mut back);
                (col, back)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
