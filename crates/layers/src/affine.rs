//! Fully connected layer: `Y = X W + b`.
//!
//! Shapes: `X` is `[N, ...]`, flattened to `N x D` (D = product of the
//! trailing dimensions); `W` is `D x M`; `b` is `M`; `Y` is `N x M`.
//!
//! Backward, with `G = dL/dY`:
//! * `dL/dX = G W^T` (N x D, reshaped back to X's shape),
//! * `dL/dW = X^T G` (D x M),
//! * `dL/db = sum over the batch of G` (M).
//!
//! Both transposes are strides handed to the GEMM, never copies.
//!
//! Forward, an `X` mostly of zeros (a batch of MNIST images, 81% background)
//! is multiplied over its nonzero values only ([`tensor::sparse`], where
//! [`tensor::sparse::pays`]): the first layer of the book's TwoLayerNet
//! 80 -> 54 us for a batch of 100 on one core. Each output is then one chain
//! of multiply-adds in order of `k`, the GEMM's sums in its own order: the
//! two agree to rounding, and each is the same for any number of threads.
//! The choice is made per batch (by its share of zeros), so an example's
//! outputs may round differently in another batch; a non-finite weight
//! meets only the nonzero inputs on the sparse route (the GEMM's `0 * inf`
//! is NaN).

use crate::layer::{visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::{Layer, LayerSpec, Param, ParamMut};
use tensor::{sparse, Element, Tensor, Transpose};

/// The book's `Affine` layer: weights, bias and their gradients.
///
/// [`Layer::forward`] writes `Y = X W + b` (`[N, M]`); [`Layer::backward`]
/// overwrites `grad_w` and `grad_b` and writes `dL/dX` in `X`'s shape.
///
/// ```
/// use layers::{Affine, Layer, Tensor};
///
/// // D = 2 inputs, M = 3 outputs, a batch of N = 1.
/// let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
/// let b = Tensor::from_vec(vec![0.5, 0.0, -0.5], &[3]).unwrap();
/// let mut affine = Affine::new(w, b);
/// let x = Tensor::from_vec(vec![1.0f64, -1.0], &[1, 2]).unwrap();
/// let mut y = Tensor::zeros(&[0]);
/// affine.forward(&x, &mut y);
/// assert_eq!(y.shape(), &[1, 3]);
/// assert_eq!(y.as_slice(), &[-2.5, -3.0, -3.5]); // x W + b
///
/// let dy = Tensor::from_vec(vec![1.0, 0.0, 2.0], &[1, 3]).unwrap();
/// let mut dx = Tensor::zeros(&[0]);
/// affine.backward(&x, &y, &dy, Some(&mut dx));
/// assert_eq!(dx.as_slice(), &[7.0, 16.0]); // dy W^T
/// assert_eq!(affine.grad_w.as_slice(), &[1.0, 0.0, 2.0, -1.0, 0.0, -2.0]); // x^T dy
/// assert_eq!(affine.grad_b.as_slice(), &[1.0, 0.0, 2.0]); // dy summed over the batch
/// ```
#[derive(Debug, Clone)]
pub struct Affine<T> {
    /// The weights `W`, `[D, M]`.
    pub w: Tensor<T>,
    /// The bias `b`, `[M]`.
    pub b: Tensor<T>,
    /// `dL/dW = X^T G`, `[D, M]`, from the last backward pass.
    pub grad_w: Tensor<T>,
    /// `dL/db`, `G` summed over the batch, `[M]`, from the last backward pass.
    pub grad_b: Tensor<T>,
}

impl<T: Element> Affine<T> {
    /// A layer with the given weights `w` (`D x M`) and bias `b` (`M`).
    ///
    /// # Panics
    /// When `w` is not 2-D or `b` does not have `w.shape()[1]` elements.
    pub fn new(w: Tensor<T>, b: Tensor<T>) -> Self {
        assert_eq!(w.shape().len(), 2, "Affine: W must be 2-D, got {:?}", w.shape());
        assert_eq!(
            b.numel(),
            w.shape()[1],
            "Affine: b {:?} does not fit W {:?}",
            b.shape(),
            w.shape()
        );
        let grad_w = Tensor::zeros(w.shape());
        let grad_b = Tensor::zeros(b.shape());
        Affine { w, b, grad_w, grad_b }
    }

    /// `D`: the number of values one example brings (`W`'s rows).
    pub fn in_features(&self) -> usize {
        self.w.shape()[0]
    }

    /// `M`: the number of outputs per example (`W`'s columns).
    pub fn out_features(&self) -> usize {
        self.w.shape()[1]
    }
}

impl<T: Element> Layer<T> for Affine<T> {
    fn name(&self) -> &'static str {
        "Affine"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Affine {
            inputs: self.in_features(),
            outputs: self.out_features(),
        }
    }

    fn numbers_params(&self) -> bool {
        true
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let (rows, inputs, outputs) = (input.rows(), self.in_features(), self.out_features());
        output.resize(&[rows, outputs]);
        // Y = X W, then + b on every row.
        // A misfit input goes to the GEMM, whose panic names the shapes.
        let fits = input.numel() == rows * inputs;
        if fits && sparse::pays(input.as_slice(), inputs, outputs) {
            let x = input.as_slice();
            sparse::product(x, self.w.as_slice(), (rows, inputs, outputs), output.as_mut_slice());
        } else {
            output.matmul(Transpose::No, input, Transpose::No, &self.w, T::ONE, T::ZERO);
        }
        output.add_row_vector(&self.b);
    }

    fn backward(
        &mut self,
        input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        self.grad_w
            .matmul(Transpose::Yes, input, Transpose::No, grad_output, T::ONE, T::ZERO);
        grad_output.sum_rows_into(&mut self.grad_b);
        if let Some(grad_input) = grad_input {
            grad_input.resize(input.shape());
            grad_input.matmul(Transpose::No, grad_output, Transpose::Yes, &self.w, T::ONE, T::ZERO);
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
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn forward_by_hand() {
        let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
        let b = Tensor::from_vec(vec![0.5f32, -0.5], &[2]).unwrap();
        let layer = Affine::new(w, b);
        let x = Tensor::from_vec(vec![1.0f32, 0.0, -1.0], &[1, 3]).unwrap();
        let mut y = Tensor::zeros(&[0]);
        layer.forward(&x, &mut y);
        assert_eq!(y.shape(), &[1, 2]);
        assert_eq!(y.as_slice(), &[1.0 - 5.0 + 0.5, 2.0 - 6.0 - 0.5]);
    }

    #[test]
    fn gradient_check_with_nd_input() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // A batch of 4 "images" of 2x3 flattens to 4x6.
        let x = Tensor::<f64>::randn(&[4, 2, 3], 1.0, &mut rng);
        let mut layer = Affine::new(
            Tensor::randn(&[6, 5], 0.5, &mut rng),
            Tensor::randn(&[5], 0.5, &mut rng),
        );
        let report = check_layer(&mut layer, &x, 1e-5, 4);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert_eq!(report.params.len(), 2);
        assert!(report.repeatable, "backward must overwrite, not accumulate");
    }

    /// Input mostly of zeros, as MNIST's: forward skips them
    /// (`tensor::sparse`), backward is the GEMMs'.
    fn sparse_input(rows: usize, cols: usize, seed: u64) -> Tensor<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Tensor::<f64>::randn(&[rows, cols], 1.0, &mut rng);
        for (i, v) in x.as_mut_slice().iter_mut().enumerate() {
            if i % 7 != 3 {
                *v = 0.0;
            }
        }
        x
    }

    #[test]
    fn gradient_check_with_mostly_zero_input() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x = sparse_input(3, 70, 8);
        assert!(sparse::pays(x.as_slice(), 70, 5));
        let mut layer = Affine::new(
            Tensor::randn(&[70, 5], 0.5, &mut rng),
            Tensor::randn(&[5], 0.5, &mut rng),
        );
        let report = check_layer(&mut layer, &x, 1e-5, 4);
        assert!(report.worst() < 1e-8, "{report:?}");
    }

    #[test]
    fn forward_over_nonzero_values_equals_the_gemm() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = sparse_input(20, 784, 10);
        assert!(sparse::pays(x.as_slice(), 784, 50));
        let layer = Affine::new(
            Tensor::randn(&[784, 50], 0.1, &mut rng),
            Tensor::randn(&[50], 0.1, &mut rng),
        );
        let mut y = Tensor::zeros(&[0]);
        layer.forward(&x, &mut y);
        let mut expected = Tensor::zeros(&[20, 50]);
        expected.matmul(Transpose::No, &x, Transpose::No, &layer.w, 1.0, 0.0);
        expected.add_row_vector(&layer.b);
        for (got, want) in y.as_slice().iter().zip(expected.as_slice()) {
            assert!((got - want).abs() <= 1e-13 * (1.0 + want.abs()), "{got} vs {want}");
        }
    }

    #[test]
    fn grad_input_restores_the_input_shape() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = Tensor::<f32>::randn(&[2, 1, 2, 2], 1.0, &mut rng);
        let mut layer = Affine::new(Tensor::randn(&[4, 3], 1.0, &mut rng), Tensor::zeros(&[3]));
        let mut y = Tensor::zeros(&[0]);
        layer.forward(&x, &mut y);
        let mut dx = Tensor::zeros(&[0]);
        layer.backward(&x, &y, &Tensor::full(&[2, 3], 1.0), Some(&mut dx));
        assert_eq!(dx.shape(), &[2, 1, 2, 2]);
        assert_eq!(layer.grad_b.as_slice(), &[2.0, 2.0, 2.0]);
    }
}
