//! Convolution (the book's `Convolution`, section 7.4), as im2col and GEMMs.
//!
//! Shapes: `x` is `[N, C, H, W]`; the filters `W` are `[FN, C, FH, FW]`
//! (seen as an `FN x K` matrix, `K = C * FH * FW`); `b` is `[FN]`; `y` is
//! `[N, FN, OH, OW]` with `OH = (H + 2 pad - FH) / stride + 1` (and `OW`
//! likewise). Per image `n`, with `col_n = im2col(x_n)` (`[K, OH * OW]`, one
//! column per output position; see [`tensor::conv`]) and `G_n = dL/dy_n`
//! seen as `[FN, OH * OW]`:
//! * forward: `y_n = W col_n + b` (one GEMM, already in image layout);
//! * backward: `dL/dW = sum_n G_n col_n^T`, `dL/db = sum_n` (row sums of
//!   `G_n`), `dL/dx_n = col2im(W^T G_n)`.
//!
//! The work is split over rayon by images: each image's products run whole
//! on one thread, where its `col` (a few tens of KB) stays in cache between
//! im2col and the GEMM. Backward sums `dL/dW` and `dL/db` in tasks of a fixed
//! [`IMAGES_PER_TASK`] images, whose shares are added in task order, so the
//! result is the same for any thread count. Training keeps every image's
//! `col` for backward, in buffers reused from step to step; inference keeps
//! one image's `col` per thread, allocated per call.

use crate::layer::{visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::{Layer, LayerError, LayerRng, LayerSpec, Param, ParamMut};
use rayon::prelude::*;
use tensor::conv::{col2im_image, im2col_image, ConvGeometry};
use tensor::{gemm, Element, MatMut, MatRef, Tensor};

/// Images per parallel task: enough work per task to pay for its
/// scheduling, and enough tasks (20 for a batch of 100) to keep the threads
/// evenly busy. Fixed, because it sets the order of the sums over the batch.
pub const IMAGES_PER_TASK: usize = 5;

/// The convolution layer: filters, bias, their gradients, stride and padding.
///
/// [`Layer::forward`] maps `[N, C, H, W]` to `[N, FN, OH, OW]`; it panics
/// when the input is not 4-D or its channels or size do not fit the filters (a
/// [`crate::Sequential`] checks the shapes first).
#[derive(Debug, Clone)]
pub struct Convolution<T> {
    /// The filters `W`, `[FN, C, FH, FW]`.
    pub w: Tensor<T>,
    /// The bias `b`, one per filter, `[FN]`.
    pub b: Tensor<T>,
    /// `dL/dW = sum_n G_n col_n^T`, `[FN, C, FH, FW]`, from the last backward pass.
    pub grad_w: Tensor<T>,
    /// `dL/db`, `G` summed over images and positions, `[FN]`, from the last
    /// backward pass.
    pub grad_b: Tensor<T>,
    stride: usize,
    pad: usize,
    /// `im2col` of the last training input, `[N, K, OH * OW]`.
    col: Tensor<T>,
    /// Per task, its images' share of `dL/dW` (`FN * K` values) then of `dL/db` (`FN`).
    partials: Tensor<T>,
    /// Per task, `dL/d col` of the image it is working on, `[K, OH * OW]`.
    grad_col: Tensor<T>,
}

impl<T: Element> Convolution<T> {
    /// A layer with filters `w` (`[FN, C, FH, FW]`) and bias `b` (`[FN]`).
    ///
    /// # Panics
    /// When `w` is not 4-D, `b` does not have `FN` elements, or `stride` is 0
    /// ([`LayerSpec::validate`] refuses all of these first).
    pub fn new(w: Tensor<T>, b: Tensor<T>, stride: usize, pad: usize) -> Self {
        assert_eq!(
            w.shape().len(),
            4,
            "Convolution: W must be [FN, C, FH, FW], got {:?}",
            w.shape()
        );
        assert_eq!(
            b.numel(),
            w.shape()[0],
            "Convolution: b {:?} does not fit W {:?}",
            b.shape(),
            w.shape()
        );
        assert!(stride > 0, "Convolution: stride 0");
        let grad_w = Tensor::zeros(w.shape());
        let grad_b = Tensor::zeros(b.shape());
        Convolution {
            w,
            b,
            grad_w,
            grad_b,
            stride,
            pad,
            col: Tensor::zeros(&[0]),
            partials: Tensor::zeros(&[0]),
            grad_col: Tensor::zeros(&[0]),
        }
    }

    /// `FN`: the number of filters, the output's channels.
    pub fn filters(&self) -> usize {
        self.w.shape()[0]
    }

    /// `C`: the input channels each filter spans.
    pub fn channels(&self) -> usize {
        self.w.shape()[1]
    }

    /// The window over one example of shape `[C, H, W]`.
    fn geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        self.spec().window_geometry(example)
    }

    /// The geometry of a batch the model has already checked.
    fn batch_geometry(&self, input: &Tensor<T>) -> ConvGeometry {
        self.geometry(&input.shape()[1..])
            .unwrap_or_else(|e| panic!("Convolution on {:?}: {e}", input.shape()))
    }
}

/// The filters `[FN, C, FH, FW]` as the `[FN, K]` matrix of the GEMMs.
fn filter_matrix<T: Element>(w: &Tensor<T>) -> MatRef<'_, T> {
    let filters = w.shape()[0];
    MatRef::row_major(w.as_slice(), filters, w.numel() / filters)
}

/// One image: `col = im2col(x)`, then `y = W col + b` (`[FN, OH * OW]`).
fn forward_image<T: Element>((w, b): (&Tensor<T>, &Tensor<T>), g: &ConvGeometry, x: &[T], col: &mut [T], y: &mut [T]) {
    im2col_image(x, g, col);
    for (plane, &bias) in y.chunks_exact_mut(g.windows()).zip(b.as_slice()) {
        plane.fill(bias);
    }
    gemm(
        T::ONE,
        filter_matrix(w),
        MatRef::row_major(col, g.window_len(), g.windows()),
        T::ONE,
        MatMut::row_major(y, b.numel(), g.windows()),
    )
    .expect("buffers sized from the geometry");
}

/// The sum of `values`, kept in 8 interleaved partial sums: one running sum
/// is a chain of dependent adds (one per 4 cycles), which the compiler may
/// not reorder, and a bias gradient sums 57600 values a batch.
fn sum_of<T: Element>(values: &[T]) -> T {
    let (chunks, rest) = values.as_chunks::<8>();
    let mut lanes = [T::ZERO; 8];
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    rest.iter()
        .fold(((a + b) + (c + d)) + ((e + f) + (g + h)), |acc, &v| acc + v)
}

impl<T: Element> Layer<T> for Convolution<T> {
    fn name(&self) -> &'static str {
        "Convolution"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Convolution {
            channels: self.channels(),
            filters: self.filters(),
            filter_h: self.w.shape()[2],
            filter_w: self.w.shape()[3],
            stride: self.stride,
            pad: self.pad,
        }
    }

    fn numbers_params(&self) -> bool {
        true
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let g = self.batch_geometry(input);
        let out_len = self.filters() * g.windows();
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        // Inference keeps no `col`: one image's at a time per task.
        input
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * g.image_len())
            .zip(output.as_mut_slice().par_chunks_mut(IMAGES_PER_TASK * out_len))
            .for_each_init(
                || vec![T::ZERO; g.col_len()],
                |col, (x, y)| {
                    for (x, y) in x.chunks_exact(g.image_len()).zip(y.chunks_exact_mut(out_len)) {
                        forward_image((&self.w, &self.b), &g, x, col, y);
                    }
                },
            );
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        let g = self.batch_geometry(input);
        let out_len = self.filters() * g.windows();
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        self.col.resize(&[input.rows(), g.window_len(), g.windows()]);
        let weights = (&self.w, &self.b);
        input
            .as_slice()
            .par_chunks(g.image_len())
            .zip(self.col.as_mut_slice().par_chunks_mut(g.col_len()))
            .zip(output.as_mut_slice().par_chunks_mut(out_len))
            .with_min_len(IMAGES_PER_TASK)
            .for_each(|((x, col), y)| forward_image(weights, &g, x, col, y));
    }

    fn backward(
        &mut self,
        input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let g = self.batch_geometry(input);
        let (filters, window_len, windows) = (self.filters(), g.window_len(), g.windows());
        let out_len = filters * windows;
        let weights_len = filters * window_len;
        assert_eq!(
            grad_output.shape(),
            [input.rows(), filters, g.out_h(), g.out_w()],
            "Convolution backward: dL/dy does not fit the output"
        );
        assert_eq!(
            self.col.numel(),
            input.rows() * g.col_len(),
            "Convolution backward without forward_train on this batch"
        );
        let tasks = input.rows().div_ceil(IMAGES_PER_TASK);
        self.partials.resize(&[tasks, weights_len + filters]);
        // dW = sum over n of G_n col_n^T, `[FN, C*FH*FW]`. With few filters
        // and many windows the product is better taken transposed,
        // dW^T = col_n G_n^T: `col` is then read in place, where G col^T
        // packs the transpose of `col` for only FN rows of G. Measured
        // (one core, f32): DeepConvNet's second convolution (16 filters,
        // 784 windows) 77 -> 37 us an image, its first 9.2 -> 7.1 us; wider
        // layers or fewer windows are as fast or slower taken transposed.
        let transposed = filters <= 16 && windows >= 512;
        // Each task: its images' sum of G_n col_n^T (or its transpose) and of G_n's row sums.
        grad_output
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * out_len)
            .zip(self.col.as_slice().par_chunks(IMAGES_PER_TASK * g.col_len()))
            .zip(self.partials.as_mut_slice().par_chunks_mut(weights_len + filters))
            .for_each(|((grad_y, col), partial)| {
                let (grad_w, grad_b) = partial.split_at_mut(weights_len);
                grad_b.fill(T::ZERO);
                let images = grad_y.chunks_exact(out_len).zip(col.chunks_exact(g.col_len()));
                for (n, (grad_y, col)) in images.enumerate() {
                    let beta = if n == 0 { T::ZERO } else { T::ONE };
                    let (g_n, col_n) = (
                        MatRef::row_major(grad_y, filters, windows),
                        MatRef::row_major(col, window_len, windows),
                    );
                    if transposed {
                        gemm(
                            T::ONE,
                            col_n,
                            g_n.t(),
                            beta,
                            MatMut::row_major(grad_w, window_len, filters),
                        )
                    } else {
                        gemm(
                            T::ONE,
                            g_n,
                            col_n.t(),
                            beta,
                            MatMut::row_major(grad_w, filters, window_len),
                        )
                    }
                    .expect("buffers sized from the geometry");
                    for (sum, plane) in grad_b.iter_mut().zip(grad_y.chunks_exact(windows)) {
                        *sum += sum_of(plane);
                    }
                }
            });
        // The tasks' shares added in task order.
        let (grad_w, grad_b) = (self.grad_w.as_mut_slice(), self.grad_b.as_mut_slice());
        grad_w.fill(T::ZERO);
        grad_b.fill(T::ZERO);
        for share in self.partials.as_slice().chunks_exact(weights_len + filters) {
            let (share_w, share_b) = share.split_at(weights_len);
            if transposed {
                // The share is dW^T, `[C*FH*FW, FN]`.
                for (k, row) in share_w.chunks_exact(filters).enumerate() {
                    for (f, &value) in row.iter().enumerate() {
                        grad_w[f * window_len + k] += value;
                    }
                }
            } else {
                for (grad, &value) in grad_w.iter_mut().zip(share_w) {
                    *grad += value;
                }
            }
            for (grad, &value) in grad_b.iter_mut().zip(share_b) {
                *grad += value;
            }
        }
        let Some(grad_input) = grad_input else {
            return;
        };
        grad_input.resize(input.shape());
        self.grad_col.resize(&[tasks, g.col_len()]);
        let w = filter_matrix(&self.w);
        grad_output
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * out_len)
            .zip(
                grad_input
                    .as_mut_slice()
                    .par_chunks_mut(IMAGES_PER_TASK * g.image_len()),
            )
            .zip(self.grad_col.as_mut_slice().par_chunks_mut(g.col_len()))
            .for_each(|((grad_y, grad_x), grad_col)| {
                for (grad_y, grad_x) in grad_y.chunks_exact(out_len).zip(grad_x.chunks_exact_mut(g.image_len())) {
                    gemm(
                        T::ONE,
                        w.t(),
                        MatRef::row_major(grad_y, filters, windows),
                        T::ZERO,
                        MatMut::row_major(grad_col, window_len, windows),
                    )
                    .expect("buffers sized from the geometry");
                    col2im_image(grad_col, &g, grad_x);
                }
            });
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(Param<'a, T>)) {
        visit_weight_and_bias((&self.w, &self.grad_w), (&self.b, &self.grad_b), f);
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        visit_weight_and_bias_mut((&mut self.w, &mut self.grad_w), (&mut self.b, &mut self.grad_b), f);
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
    use tensor::conv::conv_naive;

    fn random_layer(shape: [usize; 4], stride: usize, pad: usize, rng: &mut LayerRng) -> Convolution<f64> {
        Convolution::new(
            Tensor::randn(&shape, 0.5, rng),
            Tensor::randn(&[shape[0]], 0.5, rng),
            stride,
            pad,
        )
    }

    #[test]
    fn forward_matches_the_direct_convolution_in_both_modes() {
        let mut rng = LayerRng::seed_from_u64(1);
        // Stride 2, pad 1, a non-square filter, 3 channels; 12 images so that
        // the work goes through several tasks, the last one partial.
        let mut layer = random_layer([4, 3, 3, 2], 2, 1, &mut rng);
        let x = Tensor::<f64>::randn(&[12, 3, 7, 6], 1.0, &mut rng);
        let g = ConvGeometry::new((3, 7, 6), (3, 2), 2, 1).unwrap();
        let expected = conv_naive(x.as_slice(), &g, layer.w.as_slice(), layer.b.as_slice());
        let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        layer.forward(&x, &mut y);
        layer.forward_train(&x, &mut y_train, &mut rng);
        assert_eq!(y.shape(), &[12, 4, 4, 4]);
        assert_eq!(layer.output_shape(&[3, 7, 6]).unwrap(), vec![4, 4, 4]);
        for (got, want) in y.as_slice().iter().zip(&expected) {
            assert!((got - want).abs() < 1e-12);
        }
        assert_eq!(y, y_train);
    }

    #[test]
    fn gradient_check_the_books_input() {
        // The book checks a 1 x 10 x 10 input; two images, so the batch sums count.
        let mut rng = LayerRng::seed_from_u64(2);
        let x = Tensor::<f64>::randn(&[2, 1, 10, 10], 1.0, &mut rng);
        let mut layer = random_layer([3, 1, 3, 3], 1, 0, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 3);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert_eq!(report.params.len(), 2);
        assert!(report.repeatable, "backward must overwrite, not accumulate");
    }

    #[test]
    fn gradient_check_stride_pad_and_channels() {
        let mut rng = LayerRng::seed_from_u64(4);
        let x = Tensor::<f64>::randn(&[2, 3, 7, 6], 1.0, &mut rng);
        let mut layer = random_layer([4, 3, 3, 2], 2, 1, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 5);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert!(report.repeatable);
    }

    #[test]
    fn gradient_check_across_tasks() {
        // More images than one task holds, the last task partial: the shares
        // of dW and db are summed across tasks.
        let images = IMAGES_PER_TASK + 2;
        let mut rng = LayerRng::seed_from_u64(6);
        let x = Tensor::<f64>::randn(&[images, 2, 5, 5], 1.0, &mut rng);
        let mut layer = random_layer([3, 2, 3, 3], 1, 1, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 7);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert!(report.repeatable);
    }

    #[test]
    fn gradient_check_few_filters_over_many_windows() {
        // 3 filters over 23 x 23 windows (529 >= 512): dW is taken
        // transposed, its shares summed across two tasks.
        let images = IMAGES_PER_TASK + 1;
        let mut rng = LayerRng::seed_from_u64(8);
        let x = Tensor::<f64>::randn(&[images, 2, 23, 23], 1.0, &mut rng);
        let mut layer = random_layer([3, 2, 3, 3], 1, 1, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 9);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert!(report.repeatable);
    }

    #[test]
    fn an_empty_batch_gives_zero_gradients() {
        let mut rng = LayerRng::seed_from_u64(8);
        let mut layer = random_layer([3, 1, 3, 3], 1, 0, &mut rng);
        layer.grad_w.fill(7.0);
        let x = Tensor::<f64>::zeros(&[0, 1, 6, 6]);
        let (mut y, mut dx) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        layer.forward_train(&x, &mut y, &mut rng);
        assert_eq!(y.shape(), &[0, 3, 4, 4]);
        layer.backward(&x, &y, &y, Some(&mut dx));
        assert_eq!(dx.shape(), x.shape());
        assert!(layer
            .grad_w
            .as_slice()
            .iter()
            .chain(layer.grad_b.as_slice())
            .all(|&g| g == 0.0));
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let mut rng = LayerRng::seed_from_u64(5);
        let layer = random_layer([2, 1, 5, 5], 1, 0, &mut rng);
        assert!(layer
            .output_shape(&[1, 4, 4])
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        assert!(layer
            .output_shape(&[2, 8, 8])
            .unwrap_err()
            .to_string()
            .contains("channels"));
        assert!(layer.output_shape(&[64]).is_err());
        assert_eq!(layer.output_shape(&[1, 28, 28]).unwrap(), vec![2, 24, 24]);
    }
}
