//! Rectified linear unit: `y = max(0, x)`.
//!
//! Backward: `dx = dout * [x > 0]`. The derivative at exactly 0 is taken as 0
//! (the book's `mask = (x <= 0)`), for forward and backward alike. Written as
//! that mask, so a NaN input stays NaN (as in the book) instead of being
//! silently turned into 0, and a diverging network shows in its loss.

use crate::{Layer, LayerSpec};
use tensor::{Element, Tensor};

/// `max(0, x)` by the book's mask (`x <= 0` gives 0), so a NaN stays NaN:
/// the one place the rule is written, for this layer and for the layers
/// that take a ReLU on ([`Layer::forward_after_relu`]).
#[inline(always)]
pub(crate) fn relu<T: Element>(x: T) -> T {
    if x <= T::ZERO {
        T::ZERO
    } else {
        x
    }
}

/// `dL/dx` of [`relu`] at `x`, given `dout = dL/dy`: zero where `x <= 0`.
#[inline(always)]
pub(crate) fn relu_grad<T: Element>(x: T, dout: T) -> T {
    if x <= T::ZERO {
        T::ZERO
    } else {
        dout
    }
}

/// The ReLU layer: elementwise, any shape, no parameters; the output has the
/// input's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relu;

impl Relu {
    /// The layer (it holds nothing).
    pub fn new() -> Self {
        Relu
    }
}

impl<T: Element> Layer<T> for Relu {
    fn name(&self) -> &'static str {
        "Relu"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Relu
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        // Split over the threads for a convolution's output (1.7 million
        // values for SimpleConvNet at batch 100); an MLP's [100, 50] stays
        // on one. Each value depends on its own input only.
        output.map_from(input, relu);
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
        assert_eq!(input.shape(), grad_output.shape(), "Relu backward: dout does not fit x");
        grad_input.zip_from(input, grad_output, relu_grad);
    }

    fn clone_box(&self) -> Box<dyn Layer<T>> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;

    #[test]
    fn forward_and_mask() {
        let x = Tensor::from_vec(vec![1.0f32, -0.5, -2.0, 3.0], &[2, 2]).unwrap();
        let mut y = Tensor::zeros(&[0]);
        Relu.forward(&x, &mut y);
        assert_eq!(y.as_slice(), &[1.0, 0.0, 0.0, 3.0]);
        let dout = Tensor::full(&[2, 2], 2.0f32);
        let mut dx = Tensor::zeros(&[2, 2]);
        Relu.backward(&x, &y, &dout, Some(&mut dx));
        assert_eq!(dx.as_slice(), &[2.0, 0.0, 0.0, 2.0]);
        assert_eq!(dout.as_slice(), &[2.0; 4], "upstream gradient untouched");
        let nan = Tensor::from_vec(vec![f32::NAN, -0.0, 0.0, 1.0], &[1, 4]).unwrap();
        Relu.forward(&nan, &mut y);
        assert!(y.as_slice()[0].is_nan(), "NaN is not hidden");
        assert_eq!(&y.as_slice()[1..], &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn gradient_check() {
        // Inputs kept at least 0.1 away from the kink at 0, where the central
        // difference straddles two slopes.
        let values: Vec<f64> = (0..24)
            .map(|i| {
                if i % 3 == 0 {
                    -0.1 - i as f64 * 0.05
                } else {
                    0.1 + i as f64 * 0.07
                }
            })
            .collect();
        let x = Tensor::from_vec(values, &[4, 2, 3]).unwrap();
        let report = check_layer(&mut Relu, &x, 1e-5, 1);
        assert!(report.input < 1e-9, "{report:?}");
        assert!(report.repeatable);
    }
}
