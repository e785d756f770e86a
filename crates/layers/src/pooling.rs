//! Max pooling (the book's `Pooling`, section 7.5).
//!
//! Shapes: `x` is `[N, C, H, W]`; each channel is pooled on its own with a
//! `PH x PW` window moved by `stride` over the image padded with `pad` zeros;
//! `y` is `[N, C, OH, OW]` with `OH = (H + 2 pad - PH) / stride + 1`.
//! * forward: `y = max` over the window. Padding counts as 0, as in the
//!   book (whose im2col pads with zeros); on ties the first maximum in
//!   row-major order wins, as NumPy's `argmax`. A tap replaces the best so
//!   far only when greater, so a NaN is kept only as a window's first tap
//!   (NumPy would keep any); a diverging network still shows in its loss,
//!   since its weights, and so every tap, turn NaN.
//! * backward: each `dL/dy` goes to the input position that was the
//!   maximum (nowhere if that was padding); overlapping windows add up.
//!
//! Training keeps the position of every maximum for backward.

use crate::relu::{relu, relu_grad};
use crate::{Layer, LayerError, LayerRng, LayerSpec};
use rayon::prelude::*;
use tensor::conv::ConvGeometry;
use tensor::{Element, Tensor};

/// The argmax of a window whose maximum was a padding zero.
const IN_PADDING: u32 = u32::MAX;

/// The max pooling layer: a `PH x PW` window, its stride and padding; no
/// parameters. [`Layer::forward`] maps `[N, C, H, W]` to `[N, C, OH, OW]`,
/// and panics when the input is not 4-D or its padded image is smaller than
/// the window (a [`crate::Sequential`] checks the shapes first).
#[derive(Debug, Clone)]
pub struct Pooling {
    pool_h: usize,
    pool_w: usize,
    stride: usize,
    pad: usize,
    /// For every output value of the last training pass, the index of the
    /// maximum within its input channel plane (or [`IN_PADDING`]).
    argmax: Vec<u32>,
}

impl Pooling {
    /// A `pool_h x pool_w` window moved by `stride` over the image padded
    /// with `pad` zeros on each side.
    ///
    /// # Panics
    /// When a size or the stride is 0 ([`LayerSpec::validate`] refuses it first).
    pub fn new(pool_h: usize, pool_w: usize, stride: usize, pad: usize) -> Self {
        assert!(pool_h > 0 && pool_w > 0 && stride > 0, "Pooling: zero size or stride");
        Pooling {
            pool_h,
            pool_w,
            stride,
            pad,
            argmax: Vec::new(),
        }
    }

    /// The window over one channel plane of an example of shape `[C, H, W]`.
    fn geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        let spec = LayerSpec::Pooling {
            pool_h: self.pool_h,
            pool_w: self.pool_w,
            stride: self.stride,
            pad: self.pad,
        };
        spec.window_geometry(example)
    }

    fn batch_geometry(&self, input: &[usize]) -> ConvGeometry {
        self.geometry(&input[1..])
            .unwrap_or_else(|e| panic!("Pooling on {input:?}: {e}"))
    }

    /// Whether the window is the book's 2x2 of stride 2 without padding,
    /// the one shape that takes the ReLU before it
    /// ([`Layer::forward_after_relu`]).
    fn takes_relu(&self) -> bool {
        (self.pool_h, self.pool_w, self.stride, self.pad) == (2, 2, 2, 0)
    }

    /// Pools every plane of `input` into `output`, writing the position of
    /// each maximum into `argmax` when given. With `relu_first` (only for a
    /// pool that [`Pooling::takes_relu`]), each tap is `relu(x)`, computed
    /// as the ReLU layer computes it.
    fn pool<T: Element>(
        &self,
        input: &Tensor<T>,
        output: &mut Tensor<T>,
        argmax: Option<&mut Vec<u32>>,
        relu_first: bool,
    ) {
        let g = self.batch_geometry(input.shape());
        let planes = input.shape()[0] * input.shape()[1];
        let (plane_in, plane_out) = (g.height * g.width, g.windows());
        output.resize(&[input.shape()[0], input.shape()[1], g.out_h(), g.out_w()]);
        // Windows that tile the image (no pad, stride = window, as the
        // book's 2x2 pools): row by row, each output the max of its
        // `pool_w` taps in `pool_h` rows, a loop the compiler vectorizes;
        // then, in training, the first tap equal to it.
        let tiles = g.pad == 0 && g.stride == g.filter_w && g.stride == g.filter_h;
        let pool_tiles = |x: &[T], y: &mut [T], positions: Option<&mut [u32]>| {
            let (pool_h, pool_w, width) = (g.filter_h, g.filter_w, g.width);
            for (oh, y_row) in y.chunks_exact_mut(g.out_w()).enumerate() {
                for i in 0..pool_h {
                    let row = &x[(oh * pool_h + i) * width..][..g.out_w() * pool_w];
                    for (out, taps) in y_row.iter_mut().zip(row.chunks_exact(pool_w)) {
                        let first = if i == 0 { taps[0] } else { *out };
                        *out = taps.iter().fold(first, |m, &v| if v > m { v } else { m });
                    }
                }
            }
            if let Some(positions) = positions {
                for (o, (at, &best)) in positions.iter_mut().zip(y.iter()).enumerate() {
                    let (oh, ow) = (o / g.out_w(), o % g.out_w());
                    let top_left = oh * pool_h * width + ow * pool_w;
                    *at = (0..pool_h)
                        .flat_map(|i| (0..pool_w).map(move |j| top_left + i * width + j))
                        .find(|&p| x[p] == best)
                        .unwrap_or(top_left) as u32;
                }
            }
        };
        let two_by_two = tiles && g.filter_h == 2 && g.filter_w == 2;
        assert!(
            !relu_first || two_by_two,
            "Pooling: a ReLU taken into a pool other than 2x2"
        );
        let pool_plane = |x: &[T], y: &mut [T], mut positions: Option<&mut [u32]>| {
            if two_by_two {
                // Two copies of the loop, one per tap rule: a test of
                // `relu_first` at every tap made the plain pool 38% slower.
                return match relu_first {
                    true => pool_2x2(&g, x, y, positions, relu),
                    false => pool_2x2(&g, x, y, positions, |v| v),
                };
            }
            if tiles {
                return pool_tiles(x, y, positions);
            }
            for oh in 0..g.out_h() {
                let top = (oh * g.stride) as isize - g.pad as isize;
                for ow in 0..g.out_w() {
                    let left = (ow * g.stride) as isize - g.pad as isize;
                    let inside = top >= 0
                        && left >= 0
                        && top as usize + g.filter_h <= g.height
                        && left as usize + g.filter_w <= g.width;
                    let (best, best_at) = if inside {
                        // The common case: no padding in the window, plain indexing.
                        let (top, left) = (top as usize, left as usize);
                        let mut best_at = top * g.width + left;
                        let mut best = x[best_at];
                        for row in (top..top + g.filter_h).map(|r| r * g.width + left) {
                            for (at, &value) in (row..).zip(&x[row..row + g.filter_w]) {
                                if value > best {
                                    (best, best_at) = (value, at);
                                }
                            }
                        }
                        (best, best_at as u32)
                    } else {
                        let (mut best, mut best_at, mut first) = (T::ZERO, IN_PADDING, true);
                        for i in 0..g.filter_h {
                            for j in 0..g.filter_w {
                                let (r, c) = (top + i as isize, left + j as isize);
                                let real = r >= 0 && c >= 0 && (r as usize) < g.height && (c as usize) < g.width;
                                let (value, at) = if real {
                                    let at = r as usize * g.width + c as usize;
                                    (x[at], at as u32)
                                } else {
                                    (T::ZERO, IN_PADDING)
                                };
                                if first || value > best {
                                    (best, best_at, first) = (value, at, false);
                                }
                            }
                        }
                        (best, best_at)
                    };
                    y[oh * g.out_w() + ow] = best;
                    if let Some(positions) = positions.as_deref_mut() {
                        positions[oh * g.out_w() + ow] = best_at;
                    }
                }
            }
        };
        let inputs = input.as_slice().par_chunks(plane_in);
        let outputs = output.as_mut_slice().par_chunks_mut(plane_out);
        match argmax {
            Some(argmax) => {
                argmax.clear();
                argmax.resize(planes * plane_out, IN_PADDING);
                inputs
                    .zip(outputs)
                    .zip(argmax.par_chunks_mut(plane_out))
                    .for_each(|((x, y), at)| pool_plane(x, y, Some(at)));
            }
            None => inputs.zip(outputs).for_each(|(x, y)| pool_plane(x, y, None)),
        }
    }
}

/// The book's 2x2 pool of stride 2 over one plane, written out: the same
/// result as `pool`'s general loops in one pass, without their per-tap
/// bookkeeping. Each tap is read through `tap` (the identity, or the ReLU
/// before the pool). A tap replaces the best so far only when greater, so
/// the first maximum in row-major order wins.
#[inline(always)]
fn pool_2x2<T: Element>(g: &ConvGeometry, x: &[T], y: &mut [T], positions: Option<&mut [u32]>, tap: impl Fn(T) -> T) {
    let (width, out_w) = (g.width, g.out_w());
    let window = |top: &[T; 2], bottom: &[T; 2]| {
        let (top, bottom) = ([tap(top[0]), tap(top[1])], [tap(bottom[0]), tap(bottom[1])]);
        let (mut best, mut offset) = (top[0], 0);
        if top[1] > best {
            (best, offset) = (top[1], 1);
        }
        if bottom[0] > best {
            (best, offset) = (bottom[0], width);
        }
        if bottom[1] > best {
            (best, offset) = (bottom[1], width + 1);
        }
        (best, offset)
    };
    let rows = |oh: usize| {
        let top = x[2 * oh * width..][..2 * out_w].as_chunks::<2>().0;
        let bottom = x[(2 * oh + 1) * width..][..2 * out_w].as_chunks::<2>().0;
        top.iter().zip(bottom)
    };
    match positions {
        Some(positions) => {
            let out_rows = y.chunks_exact_mut(out_w).zip(positions.chunks_exact_mut(out_w));
            for (oh, (y_row, at_row)) in out_rows.enumerate() {
                for (ow, ((out, at), (top, bottom))) in y_row.iter_mut().zip(at_row).zip(rows(oh)).enumerate() {
                    let (best, offset) = window(top, bottom);
                    *out = best;
                    *at = (2 * oh * width + 2 * ow + offset) as u32;
                }
            }
        }
        None => {
            for (oh, y_row) in y.chunks_exact_mut(out_w).enumerate() {
                for (out, (top, bottom)) in y_row.iter_mut().zip(rows(oh)) {
                    *out = window(top, bottom).0;
                }
            }
        }
    }
}

impl<T: Element> Layer<T> for Pooling {
    fn name(&self) -> &'static str {
        "Pooling"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Pooling {
            pool_h: self.pool_h,
            pool_w: self.pool_w,
            stride: self.stride,
            pad: self.pad,
        }
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        self.pool(input, output, None, false);
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        let mut argmax = std::mem::take(&mut self.argmax);
        self.pool(input, output, Some(&mut argmax), false);
        self.argmax = argmax;
    }

    /// The 2x2 pool of stride 2 reads each tap through the ReLU: the same
    /// taps, so the same maxima and the same first positions of them.
    fn forward_after_relu(&self, pre_relu: &Tensor<T>, output: &mut Tensor<T>) -> bool {
        if !self.takes_relu() {
            return false;
        }
        self.pool(pre_relu, output, None, true);
        true
    }

    fn forward_train_after_relu(&mut self, pre_relu: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) -> bool {
        if !self.takes_relu() {
            return false;
        }
        let mut argmax = std::mem::take(&mut self.argmax);
        self.pool(pre_relu, output, Some(&mut argmax), true);
        self.argmax = argmax;
        true
    }

    /// Each `dL/dy` goes to its maximum's position, as [`Layer::backward`]
    /// puts it, and then through the ReLU: kept where `x > 0` (or NaN),
    /// zero elsewhere (`relu.rs`'s rule). Every other position is zero
    /// either way.
    fn backward_after_relu(
        &mut self,
        pre_relu: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_pre_relu: Option<&mut Tensor<T>>,
    ) -> bool {
        if !self.takes_relu() {
            return false;
        }
        let Some(grad_input) = grad_pre_relu else {
            return true;
        };
        let g = self.batch_geometry(pre_relu.shape());
        let (plane_in, plane_out) = (g.height * g.width, g.windows());
        grad_input.resize(pre_relu.shape());
        grad_input
            .as_mut_slice()
            .par_chunks_mut(plane_in)
            .zip(pre_relu.as_slice().par_chunks(plane_in))
            .zip(grad_output.as_slice().par_chunks(plane_out))
            .zip(self.argmax.par_chunks(plane_out))
            .for_each(|(((dx, x), dy), at)| {
                dx.fill(T::ZERO);
                for (&grad, &position) in dy.iter().zip(at) {
                    // Never `IN_PADDING`: without padding every window lies inside the image.
                    let position = position as usize;
                    dx[position] += relu_grad(x[position], grad);
                }
            });
        true
    }

    fn backward(
        &mut self,
        input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let Some(grad_input) = grad_input else {
            return;
        };
        let g = self.batch_geometry(input.shape());
        let (plane_in, plane_out) = (g.height * g.width, g.windows());
        grad_input.resize(input.shape());
        grad_input
            .as_mut_slice()
            .par_chunks_mut(plane_in)
            .zip(grad_output.as_slice().par_chunks(plane_out))
            .zip(self.argmax.par_chunks(plane_out))
            .for_each(|((dx, dy), at)| {
                dx.fill(T::ZERO);
                for (&g, &position) in dy.iter().zip(at) {
                    if position != IN_PADDING {
                        dx[position as usize] += g;
                    }
                }
            });
    }

    fn clone_box(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use rand::SeedableRng;

    #[test]
    fn max_of_each_window_and_ties_go_to_the_first() {
        // One 4x4 channel, 2x2 windows, stride 2.
        let x = Tensor::from_vec(
            vec![
                1.0f32, 3.0, 2.0, 2.0, //
                0.0, -1.0, 2.0, 1.0, //
                -5.0, -4.0, 7.0, 0.0, //
                -3.0, -2.0, 0.0, 7.0,
            ],
            &[1, 1, 4, 4],
        )
        .unwrap();
        let mut layer = Pooling::new(2, 2, 2, 0);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(0));
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.as_slice(), &[3.0, 2.0, -2.0, 7.0]);
        let mut dx = Tensor::zeros(&[0]);
        let dy = Tensor::from_vec(vec![10.0f32, 20.0, 30.0, 40.0], &[1, 1, 2, 2]).unwrap();
        layer.backward(&x, &y, &dy, Some(&mut dx));
        // The tie 2, 2 in the top-right window goes to the first; 7, 7 likewise.
        let mut expected = [0.0f32; 16];
        (expected[1], expected[2], expected[13], expected[10]) = (10.0, 20.0, 30.0, 40.0);
        assert_eq!(dx.as_slice(), &expected);
    }

    /// The ReLU's forward and backward, then the pool's, against the pool
    /// taking the ReLU on: the same bits both ways.
    fn check_relu_taken<T: Element>() {
        let mut rng = LayerRng::seed_from_u64(11);
        let mut x = Tensor::<T>::randn(&[3, 2, 6, 8], 1.0, &mut rng);
        // Windows (top row, bottom row) where the ReLU's edges decide: a
        // -0.0 or a 0.0 first and every other tap negative (the first tap
        // wins, its gradient is dropped), all negative, a NaN first (kept),
        // a NaN later (never replaces the best), ties of zeros after the
        // ReLU.
        let f = |v: f64| T::from_f64(v);
        let windows = [
            [f(-0.0), f(-1.0), f(-2.0), f(-3.0)],
            [f(0.0), f(-1.0), f(-2.0), f(-3.0)],
            [f(-1.0), f(-2.0), f(-3.0), f(-4.0)],
            [f(f64::NAN), f(1.0), f(-2.0), f(3.0)],
            [f(1.0), f(f64::NAN), f(-2.0), f(3.0)],
            [f(-5.0), f(0.0), f(-0.0), f(0.0)],
        ];
        for (w, taps) in windows.iter().enumerate() {
            // Windows 0-3 in the first plane's rows 0-1, 4-5 in rows 2-3 (8 wide).
            let (top, bottom) = (2 * w % 8, 8 + 2 * w % 8);
            let at = if w < 4 { 0 } else { 16 };
            let values = x.as_mut_slice();
            (values[at + top], values[at + top + 1]) = (taps[0], taps[1]);
            (values[at + bottom], values[at + bottom + 1]) = (taps[2], taps[3]);
        }
        let mut dy = Tensor::<T>::randn(&[3, 2, 3, 4], 1.0, &mut rng);
        for v in dy.as_mut_slice().iter_mut().step_by(3) {
            *v = T::from_f64(-0.0);
        }
        let mut relu = crate::Relu::new();
        let (mut relu_out, mut y, mut d_relu_out, mut dx) = (
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
        );
        let mut pool = Pooling::new(2, 2, 2, 0);
        relu.forward_train(&x, &mut relu_out, &mut rng);
        pool.forward_train(&relu_out, &mut y, &mut rng);
        pool.backward(&relu_out, &y, &dy, Some(&mut d_relu_out));
        relu.backward(&x, &relu_out, &d_relu_out, Some(&mut dx));

        let mut taken = Pooling::new(2, 2, 2, 0);
        let (mut y_taken, mut dx_taken, mut y_inference) =
            (Tensor::zeros(&[0]), Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        assert!(taken.forward_train_after_relu(&x, &mut y_taken, &mut rng));
        assert!(taken.backward_after_relu(&x, &y_taken, &dy, Some(&mut dx_taken)));
        assert!(taken.forward_after_relu(&x, &mut y_inference));
        let bits = |t: &Tensor<T>| t.as_slice().iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y_taken), bits(&y));
        assert_eq!(bits(&y_inference), bits(&y));
        assert_eq!(bits(&dx_taken), bits(&dx));
        assert_eq!(taken.argmax, pool.argmax);
    }

    #[test]
    fn a_relu_taken_into_the_pool_gives_the_same_bits() {
        check_relu_taken::<f32>();
        check_relu_taken::<f64>();
    }

    #[test]
    fn only_the_2x2_pool_of_stride_2_takes_a_relu() {
        let x = Tensor::full(&[1, 1, 4, 4], 1.0f32);
        let mut y = Tensor::zeros(&[0]);
        let mut rng = LayerRng::seed_from_u64(0);
        for (h, w, stride, pad) in [(3, 3, 1, 0), (2, 2, 1, 0), (2, 2, 2, 1), (3, 3, 3, 0)] {
            let mut pool = Pooling::new(h, w, stride, pad);
            assert!(!pool.forward_after_relu(&x, &mut y));
            assert!(!pool.forward_train_after_relu(&x, &mut y, &mut rng));
            assert!(!pool.backward_after_relu(&x, &y, &y, None));
        }
    }

    #[test]
    fn padding_counts_as_zero() {
        // All-negative input: with pad 1 every corner window's maximum is a padding zero.
        let x = Tensor::full(&[1, 1, 2, 2], -1.0f64);
        let mut layer = Pooling::new(2, 2, 2, 1);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(0));
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.as_slice(), &[0.0; 4]);
        let mut dx = Tensor::zeros(&[0]);
        layer.backward(&x, &y, &Tensor::full(&[1, 1, 2, 2], 1.0), Some(&mut dx));
        assert_eq!(dx.as_slice(), &[0.0; 4], "no gradient flows into padding");
    }

    #[test]
    fn gradient_check_with_overlapping_windows() {
        // Distinct values (a permutation, scaled) keep every window's maximum
        // away from a tie, where the derivative jumps.
        let mut rng = LayerRng::seed_from_u64(3);
        let mut values: Vec<f64> = (0..2 * 3 * 6 * 5).map(|i| i as f64 * 0.1).collect();
        use rand::seq::SliceRandom;
        values.shuffle(&mut rng);
        let x = Tensor::from_vec(values, &[2, 3, 6, 5]).unwrap();
        for (pool, stride, pad) in [(2, 2, 0), (3, 2, 1), (2, 1, 0)] {
            let mut layer = Pooling::new(pool, pool, stride, pad);
            let report = check_layer(&mut layer, &x, 1e-5, 1);
            assert!(report.input < 1e-9, "pool {pool} stride {stride} pad {pad}: {report:?}");
            assert!(report.repeatable);
        }
    }

    #[test]
    fn every_path_matches_a_direct_max() {
        // 2x2 stride 2 (its own path), 3x3 stride 3 (tiling), 3x2 stride 1
        // pad 1 (the general loop), on an odd-sized random input.
        let mut rng = LayerRng::seed_from_u64(9);
        let x = Tensor::<f64>::randn(&[2, 3, 7, 8], 1.0, &mut rng);
        for (ph, pw, stride, pad) in [(2, 2, 2, 0), (3, 3, 3, 0), (3, 2, 1, 1)] {
            let mut layer = Pooling::new(ph, pw, stride, pad);
            let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
            layer.forward(&x, &mut y);
            layer.forward_train(&x, &mut y_train, &mut rng);
            assert_eq!(y, y_train);
            let (oh, ow) = ((7 + 2 * pad - ph) / stride + 1, (8 + 2 * pad - pw) / stride + 1);
            assert_eq!(y.shape(), &[2, 3, oh, ow]);
            for plane in 0..6 {
                let input = &x.as_slice()[plane * 56..(plane + 1) * 56];
                for r in 0..oh {
                    for c in 0..ow {
                        let mut best = f64::NEG_INFINITY;
                        for i in 0..ph {
                            for j in 0..pw {
                                let (yy, xx) = (
                                    (r * stride + i) as isize - pad as isize,
                                    (c * stride + j) as isize - pad as isize,
                                );
                                let inside = yy >= 0 && xx >= 0 && yy < 7 && xx < 8;
                                best = best.max(if inside {
                                    input[yy as usize * 8 + xx as usize]
                                } else {
                                    0.0
                                });
                            }
                        }
                        let at = plane * oh * ow + r * ow + c;
                        assert_eq!(y.as_slice()[at], best, "{ph}x{pw} s{stride} p{pad}");
                        // The recorded argmax points at that maximum (or at padding, for a 0).
                        let position = layer.argmax[at];
                        if position != IN_PADDING {
                            assert_eq!(input[position as usize], best);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_first_maximum_in_the_2x2_pool() {
        // Values rounded to -1, 0 or 1: most windows hold ties, in every arrangement.
        let mut rng = LayerRng::seed_from_u64(10);
        let mut x = Tensor::<f64>::randn(&[2, 3, 8, 8], 1.0, &mut rng);
        x.as_mut_slice()
            .iter_mut()
            .for_each(|v| *v = v.round().clamp(-1.0, 1.0));
        let mut layer = Pooling::new(2, 2, 2, 0);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut rng);
        for plane in 0..6 {
            let input = &x.as_slice()[plane * 64..][..64];
            for (r, c) in (0..4).flat_map(|r| (0..4).map(move |c| (r, c))) {
                let top_left = 2 * r * 8 + 2 * c;
                let taps = [top_left, top_left + 1, top_left + 8, top_left + 9];
                let best = taps.iter().map(|&t| input[t]).fold(f64::NEG_INFINITY, f64::max);
                let first = taps.into_iter().find(|&t| input[t] == best).unwrap();
                let at = plane * 16 + r * 4 + c;
                assert_eq!(y.as_slice()[at], best);
                assert_eq!(
                    layer.argmax[at], first as u32,
                    "plane {plane} window ({r}, {c}): {taps:?}"
                );
            }
        }
    }

    #[test]
    fn a_pool_larger_than_the_input_is_refused() {
        let layer = Pooling::new(5, 5, 2, 0);
        let err = Layer::<f32>::output_shape(&layer, &[3, 4, 4]).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert_eq!(
            Layer::<f32>::output_shape(&Pooling::new(2, 2, 2, 0), &[30, 24, 24]).unwrap(),
            vec![30, 12, 12]
        );
        assert_eq!(
            Layer::<f32>::output_shape(&Pooling::new(2, 2, 2, 0), &[64, 7, 7]).unwrap(),
            vec![64, 3, 3]
        );
    }
}
