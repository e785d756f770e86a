//! What convolution needs around the GEMM: `im2col`, `col2im` and the axis
//! permutes between image layout and row layout (the book's
//! `common/util.py`), each with its shape contract.
//!
//! Shapes (`S = stride`, `P = pad`):
//! * images `x` are `[N, C, H, W]` row-major;
//! * filters are `FH x FW`; the output is `OH x OW` with
//!   `OH = (H + 2P - FH) / S + 1`, `OW = (W + 2P - FW) / S + 1`;
//! * `col` is `[N * OH * OW, C * FH * FW]`: row `(n, oh, ow)` holds the
//!   `C x FH x FW` window of image `n` whose top-left corner is at
//!   `(oh * S - P, ow * S - P)`, values outside the image being 0.
//!
//! With filters `W` as a `[FN, C * FH * FW]` matrix, the convolution is one
//! GEMM, `out_rows = col W^T` (`[N * OH * OW, FN]`), permuted to `[N, FN, OH, OW]`.
//! Every function splits its work by image over rayon's current pool; each
//! image's result depends on that image only, so results are the same for
//! any thread count.

use crate::{Element, TensorError};
use rayon::prelude::*;

/// The sizes of a convolution (or pooling) window sliding over images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    /// Checks that the window fits the padded image and the stride is
    /// positive. (The book's formula floors `(H + 2P - FH) / S`, so a stride
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
        if channels == 0 || stride == 0 || !fits(height, filter_h) || !fits(width, filter_w) {
            return Err(TensorError::ShapeMismatch {
                op: "convolution window (filter must fit the padded image, stride >= 1)",
                lhs: vec![channels, height, width, pad, stride],
                rhs: vec![filter_h, filter_w],
            });
        }
        Ok(geometry)
    }

    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.pad - self.filter_h) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.pad - self.filter_w) / self.stride + 1
    }

    /// `C * FH * FW`: values in one window, one row of `col`.
    pub fn window_len(&self) -> usize {
        self.channels * self.filter_h * self.filter_w
    }

    /// `C * H * W`: values in one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `OH * OW`: windows per image.
    pub fn windows(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// For the taps of window row `i` of output row `oh`: the image row they
    /// read (`None` in the padding), and for output column `ow` the first
    /// image column (may be negative: padding) of the `FW` taps.
    #[inline(always)]
    fn tap_row(&self, oh: usize, i: usize) -> Option<usize> {
        (oh * self.stride + i)
            .checked_sub(self.pad)
            .filter(|&y| y < self.height)
    }

    #[inline(always)]
    fn tap_col(&self, ow: usize) -> isize {
        (ow * self.stride) as isize - self.pad as isize
    }

    /// Calls `f(tap, image_index)` for the `FW` taps of one window row that
    /// starts at column `x0` of image row `row` (`row_start = row * W`), with
    /// `None` for taps in the padding: the slow path, for windows that
    /// overlap the padding.
    #[inline(always)]
    fn for_row_taps(&self, row_start: usize, x0: isize, mut f: impl FnMut(usize, Option<usize>)) {
        for j in 0..self.filter_w {
            let x = x0 + j as isize;
            let inside = x >= 0 && (x as usize) < self.width;
            f(j, inside.then(|| row_start + x as usize));
        }
    }
}

fn check_len(op: &'static str, len: usize, expected: usize) {
    assert_eq!(len, expected, "{op}: buffer of {len} elements, {expected} expected");
}

/// `x` (`[N, C, H, W]`, `N = x.len() / image_len`) into `col`
/// (`[N * OH * OW, C * FH * FW]`, resized by the caller).
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn im2col<T: Element>(x: &[T], geometry: &ConvGeometry, col: &mut [T]) {
    let g = geometry;
    let images = x.len() / g.image_len();
    check_len("im2col x", x.len(), images * g.image_len());
    check_len("im2col col", col.len(), images * g.windows() * g.window_len());
    let (oh_count, ow_count) = (g.out_h(), g.out_w());
    col.par_chunks_mut(g.windows() * g.window_len())
        .zip(x.par_chunks(g.image_len()))
        .for_each(|(col, image)| {
            let mut rows = col.chunks_exact_mut(g.window_len());
            for oh in 0..oh_count {
                for ow in 0..ow_count {
                    let row = rows.next().expect("one row per window");
                    // Row layout: (c, i, j), one run of FW taps per (c, i).
                    for (run, taps) in row.chunks_exact_mut(g.filter_w).enumerate() {
                        let (c, i) = (run / g.filter_h, run % g.filter_h);
                        let Some(y) = g.tap_row(oh, i) else {
                            taps.fill(T::ZERO);
                            continue;
                        };
                        let row_start = (c * g.height + y) * g.width;
                        let x0 = g.tap_col(ow);
                        if x0 >= 0 && x0 as usize + g.filter_w <= g.width {
                            // The common case, a run inside the image: one copy.
                            let start = row_start + x0 as usize;
                            taps.copy_from_slice(&image[start..start + g.filter_w]);
                        } else {
                            g.for_row_taps(row_start, x0, |j, at| {
                                taps[j] = at.map_or(T::ZERO, |at| image[at]);
                            });
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: every value of `col` added back to the image
/// position it was copied from (padding positions dropped), so
/// `dx = col2im(dcol)` is the gradient of the input. `x` is overwritten.
///
/// # Panics
/// When the buffer lengths do not fit the geometry.
pub fn col2im<T: Element>(col: &[T], geometry: &ConvGeometry, x: &mut [T]) {
    let g = geometry;
    let images = x.len() / g.image_len();
    check_len("col2im x", x.len(), images * g.image_len());
    check_len("col2im col", col.len(), images * g.windows() * g.window_len());
    let (oh_count, ow_count) = (g.out_h(), g.out_w());
    x.par_chunks_mut(g.image_len())
        .zip(col.par_chunks(g.windows() * g.window_len()))
        .for_each(|(image, col)| {
            image.fill(T::ZERO);
            let mut rows = col.chunks_exact(g.window_len());
            for oh in 0..oh_count {
                for ow in 0..ow_count {
                    let row = rows.next().expect("one row per window");
                    for (run, taps) in row.chunks_exact(g.filter_w).enumerate() {
                        let (c, i) = (run / g.filter_h, run % g.filter_h);
                        let Some(y) = g.tap_row(oh, i) else {
                            continue;
                        };
                        let row_start = (c * g.height + y) * g.width;
                        let x0 = g.tap_col(ow);
                        if x0 >= 0 && x0 as usize + g.filter_w <= g.width {
                            let start = row_start + x0 as usize;
                            for (pixel, &value) in image[start..start + g.filter_w].iter_mut().zip(taps) {
                                *pixel += value;
                            }
                        } else {
                            g.for_row_taps(row_start, x0, |j, at| {
                                if let Some(at) = at {
                                    image[at] += taps[j];
                                }
                            });
                        }
                    }
                }
            }
        });
}

/// `rows` (`[N * S, C]`: one row per position, `S` positions per image) into
/// `images` (`[N, C, S]`), adding `bias[c]` to channel `c` when given: the
/// GEMM's output back to image layout.
///
/// # Panics
/// When the lengths do not fit `channels` and `positions`.
pub fn rows_to_images<T: Element>(rows: &[T], channels: usize, positions: usize, bias: Option<&[T]>, images: &mut [T]) {
    check_len("rows_to_images", rows.len(), images.len());
    check_len("rows_to_images", images.len() % (channels * positions).max(1), 0);
    if let Some(bias) = bias {
        check_len("rows_to_images bias", bias.len(), channels);
    }
    images
        .par_chunks_mut(channels * positions)
        .zip(rows.par_chunks(channels * positions))
        .for_each(|(image, rows)| {
            for (c, plane) in image.chunks_exact_mut(positions).enumerate() {
                let b = bias.map_or(T::ZERO, |bias| bias[c]);
                for (s, value) in plane.iter_mut().enumerate() {
                    *value = rows[s * channels + c] + b;
                }
            }
        });
}

/// The inverse permute: `images` (`[N, C, S]`) into `rows` (`[N * S, C]`),
/// as the GEMMs of the backward pass read the upstream gradient.
///
/// # Panics
/// When the lengths do not fit `channels` and `positions`.
pub fn images_to_rows<T: Element>(images: &[T], channels: usize, positions: usize, rows: &mut [T]) {
    check_len("images_to_rows", rows.len(), images.len());
    check_len("images_to_rows", images.len() % (channels * positions).max(1), 0);
    rows.par_chunks_mut(channels * positions)
        .zip(images.par_chunks(channels * positions))
        .for_each(|(rows, image)| {
            for (c, plane) in image.chunks_exact(positions).enumerate() {
                for (s, &value) in plane.iter().enumerate() {
                    rows[s * channels + c] = value;
                }
            }
        });
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
    use crate::{Tensor, Transpose};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Odd shapes: stride 2, pad 1, non-square filters, several channels,
    /// a stride that does not tile the image, a filter as large as the padded image.
    /// `((C, H, W), (FH, FW), stride, pad)`.
    type Case = ((usize, usize, usize), (usize, usize), usize, usize);
    const CASES: [Case; 6] = [
        ((1, 10, 10), (3, 3), 1, 0),
        ((3, 7, 6), (3, 2), 2, 1),
        ((2, 5, 8), (1, 4), 1, 2),
        ((2, 9, 9), (4, 4), 3, 0),
        ((1, 4, 4), (6, 6), 1, 1),
        ((4, 6, 5), (5, 3), 2, 2),
    ];

    #[test]
    fn im2col_gemm_permute_equals_the_direct_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (image, filter, stride, pad) in CASES {
            let g = ConvGeometry::new(image, filter, stride, pad).unwrap();
            let (images, filters) = (3, 5);
            let x = Tensor::<f64>::randn(&[images, g.image_len()], 1.0, &mut rng);
            let w = Tensor::<f64>::randn(&[filters, g.window_len()], 1.0, &mut rng);
            let b = Tensor::<f64>::randn(&[filters], 1.0, &mut rng);
            let mut col = Tensor::zeros(&[images * g.windows(), g.window_len()]);
            im2col(x.as_slice(), &g, col.as_mut_slice());
            let mut rows = Tensor::zeros(&[images * g.windows(), filters]);
            rows.matmul(Transpose::No, &col, Transpose::Yes, &w, 1.0, 0.0);
            let mut out = vec![0.0; images * filters * g.windows()];
            rows_to_images(rows.as_slice(), filters, g.windows(), Some(b.as_slice()), &mut out);
            let expected = conv_naive(x.as_slice(), &g, w.as_slice(), b.as_slice());
            for (got, want) in out.iter().zip(&expected) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "{image:?} {filter:?} s{stride} p{pad}: {got} vs {want}"
                );
            }
            // The permute back is its inverse.
            let mut back = vec![0.0; rows.numel()];
            let unbiased: Vec<f64> = {
                let mut u = vec![0.0; out.len()];
                rows_to_images(rows.as_slice(), filters, g.windows(), None, &mut u);
                u
            };
            images_to_rows(&unbiased, filters, g.windows(), &mut back);
            assert_eq!(back, rows.as_slice());
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
            let c = Tensor::<f64>::randn(&[images * g.windows(), g.window_len()], 1.0, &mut rng);
            let mut col = vec![0.0; c.numel()];
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
                let mut col = vec![0.0f32; 7 * g.windows() * g.window_len()];
                im2col(x.as_slice(), &g, &mut col);
                let mut back = vec![0.0f32; x.numel()];
                col2im(&col, &g, &mut back);
                (col, back)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
