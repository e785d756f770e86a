//! Convolution (the book's `Convolution`, section 7.4), as im2col and one GEMM.
//!
//! Shapes: `x` is `[N, C, H, W]`; the filters `W` are `[FN, C, FH, FW]`
//! (seen as an `FN x K` matrix, `K = C * FH * FW`); `b` is `[FN]`; `y` is
//! `[N, FN, OH, OW]` with `OH = (H + 2 pad - FH) / stride + 1` (and `OW`
//! likewise). With `col = im2col(x)` (`[M, K]`, `M = N * OH * OW`, one row per
//! output position; see [`tensor::conv`]):
//! * forward: `rows = col W^T` (`[M, FN]`), then `y = permute(rows) + b`;
//! * backward, with `G = permute(dL/dy)` (`[M, FN]`):
//!   `dL/dW = G^T col`, `dL/db = sum over the rows of G`,
//!   `dL/dx = col2im(G W)`.
//!
//! The products run through the crate's GEMM (split by rows over rayon,
//! the same result for any thread count). Training keeps `col` for backward
//! in buffers reused from step to step; inference works through the batch in
//! slices of [`INFERENCE_SLICE`] images, so that evaluating thousands of
//! images at once never holds their whole `col`.

use crate::layer::{visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::{Layer, LayerError, LayerRng, LayerSpec, Param, ParamMut};
use tensor::conv::{col2im, im2col, images_to_rows, rows_to_images, ConvGeometry};
use tensor::{gemm_par, Element, MatMut, MatRef, Tensor, Transpose};

/// Images per slice of the inference forward pass.
pub const INFERENCE_SLICE: usize = 50;

#[derive(Debug, Clone)]
pub struct Convolution<T> {
    /// `[FN, C, FH, FW]`.
    pub w: Tensor<T>,
    /// `[FN]`.
    pub b: Tensor<T>,
    pub grad_w: Tensor<T>,
    pub grad_b: Tensor<T>,
    stride: usize,
    pad: usize,
    /// `im2col` of the last training input, `[M, K]`.
    col: Tensor<T>,
    /// `[M, FN]`: the GEMM's output in forward, the permuted upstream gradient in backward.
    rows: Tensor<T>,
    /// `dL/d col`, `[M, K]`.
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
            rows: Tensor::zeros(&[0]),
            grad_col: Tensor::zeros(&[0]),
        }
    }

    pub fn filters(&self) -> usize {
        self.w.shape()[0]
    }

    pub fn channels(&self) -> usize {
        self.w.shape()[1]
    }

    /// The window over one example of shape `[C, H, W]`.
    fn geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        let [channels, height, width] = example[..] else {
            return Err(LayerError::Config(format!(
                "a Convolution takes [C, H, W] per example, not {example:?}"
            )));
        };
        if channels != self.channels() {
            return Err(LayerError::Config(format!(
                "a Convolution over {} channels cannot take {channels}",
                self.channels()
            )));
        }
        let (filter_h, filter_w) = (self.w.shape()[2], self.w.shape()[3]);
        ConvGeometry::new((channels, height, width), (filter_h, filter_w), self.stride, self.pad).map_err(|_| {
            LayerError::Config(format!(
                "a {filter_h}x{filter_w} filter with pad {} does not fit a {height}x{width} input (stride {})",
                self.pad, self.stride
            ))
        })
    }

    /// The geometry of a batch the model has already checked.
    fn batch_geometry(&self, input: &Tensor<T>) -> ConvGeometry {
        self.geometry(&input.shape()[1..])
            .unwrap_or_else(|e| panic!("Convolution on {:?}: {e}", input.shape()))
    }
}

/// `y = permute(im2col(x) w^T) + b` for the images in `x`, through the given buffers.
fn forward_images<T: Element>(
    (w, b): (&Tensor<T>, &Tensor<T>),
    x: &[T],
    g: &ConvGeometry,
    col: &mut [T],
    rows: &mut [T],
    y: &mut [T],
) {
    let (filters, positions) = (b.numel(), col.len() / g.window_len());
    im2col(x, g, col);
    gemm_par(
        T::ONE,
        MatRef::row_major(col, positions, g.window_len()),
        MatRef::row_major(w.as_slice(), filters, g.window_len()).t(),
        T::ZERO,
        MatMut::row_major(rows, positions, filters),
    )
    .expect("buffers sized from the geometry");
    rows_to_images(rows, filters, g.windows(), Some(b.as_slice()), y);
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

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError> {
        let g = self.geometry(input)?;
        Ok(vec![self.filters(), g.out_h(), g.out_w()])
    }

    fn numbers_params(&self) -> bool {
        true
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let g = self.batch_geometry(input);
        let images = input.rows();
        output.resize(&[images, self.filters(), g.out_h(), g.out_w()]);
        let slice = INFERENCE_SLICE.min(images.max(1));
        let mut col = vec![T::ZERO; slice * g.windows() * g.window_len()];
        let mut rows = vec![T::ZERO; slice * g.windows() * self.filters()];
        let out_len = self.filters() * g.windows();
        for (x, y) in input
            .as_slice()
            .chunks(slice * g.image_len())
            .zip(output.as_mut_slice().chunks_mut(slice * out_len))
        {
            let count = x.len() / g.image_len();
            forward_images(
                (&self.w, &self.b),
                x,
                &g,
                &mut col[..count * g.windows() * g.window_len()],
                &mut rows[..count * g.windows() * self.filters()],
                y,
            );
        }
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        let g = self.batch_geometry(input);
        let positions = input.rows() * g.windows();
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        self.col.resize(&[positions, g.window_len()]);
        self.rows.resize(&[positions, self.filters()]);
        forward_images(
            (&self.w, &self.b),
            input.as_slice(),
            &g,
            self.col.as_mut_slice(),
            self.rows.as_mut_slice(),
            output.as_mut_slice(),
        );
    }

    fn backward(
        &mut self,
        input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let g = self.batch_geometry(input);
        let positions = input.rows() * g.windows();
        // G: the upstream gradient with one row per output position.
        self.rows.resize(&[positions, self.filters()]);
        images_to_rows(
            grad_output.as_slice(),
            self.filters(),
            g.windows(),
            self.rows.as_mut_slice(),
        );
        self.rows.sum_rows_into(&mut self.grad_b);
        // dW = G^T col, written as the [FN, K] matrix view of [FN, C, FH, FW].
        self.grad_w
            .matmul(Transpose::Yes, &self.rows, Transpose::No, &self.col, T::ONE, T::ZERO);
        if let Some(grad_input) = grad_input {
            self.grad_col.resize(&[positions, g.window_len()]);
            self.grad_col
                .matmul(Transpose::No, &self.rows, Transpose::No, &self.w, T::ONE, T::ZERO);
            grad_input.resize(input.shape());
            col2im(self.grad_col.as_slice(), &g, grad_input.as_mut_slice());
        }
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
        // Stride 2, pad 1, a non-square filter, 3 channels; 120 images so that
        // inference goes through several slices, the last one partial.
        let mut layer = random_layer([4, 3, 3, 2], 2, 1, &mut rng);
        let x = Tensor::<f64>::randn(&[120, 3, 7, 6], 1.0, &mut rng);
        let g = ConvGeometry::new((3, 7, 6), (3, 2), 2, 1).unwrap();
        let expected = conv_naive(x.as_slice(), &g, layer.w.as_slice(), layer.b.as_slice());
        let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        layer.forward(&x, &mut y);
        layer.forward_train(&x, &mut y_train, &mut rng);
        assert_eq!(y.shape(), &[120, 4, 4, 4]);
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
