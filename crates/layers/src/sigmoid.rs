//! Logistic sigmoid: `y = 1 / (1 + exp(-x))`.
//!
//! Backward needs only the output: `dx = dout * y * (1 - y)`.

use crate::{Layer, LayerSpec};
use tensor::{Element, Tensor};

/// The sigmoid layer: elementwise, any shape, no parameters; the output has
/// the input's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sigmoid;

impl Sigmoid {
    /// The layer (it holds nothing).
    pub fn new() -> Self {
        Sigmoid
    }
}

/// `1 / (1 + e^-x)` for x >= 0 and `e^x / (1 + e^x)` below, so that no
/// exponential of a large positive number is ever formed.
#[inline]
fn sigmoid<T: Element>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

impl<T: Element> Layer<T> for Sigmoid {
    fn name(&self) -> &'static str {
        "Sigmoid"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Sigmoid
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        output.resize(input.shape());
        for (y, &x) in output.as_mut_slice().iter_mut().zip(input.as_slice()) {
            *y = sigmoid(x);
        }
    }

    fn backward(
        &mut self,
        _input: &Tensor<T>,
        output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        if let Some(grad_input) = grad_input {
            grad_input.zip_from(output, grad_output, |y, dout| dout * y * (T::ONE - y));
        }
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
    fn values_and_saturation() {
        let x = Tensor::from_vec(vec![0.0f64, 1000.0, -1000.0, 2.0], &[4]).unwrap();
        let mut y = Tensor::zeros(&[0]);
        Sigmoid.forward(&x, &mut y);
        assert_eq!(y.as_slice()[0], 0.5);
        assert_eq!(y.as_slice()[1], 1.0);
        assert_eq!(y.as_slice()[2], 0.0, "no NaN from exp overflow");
        assert!((y.as_slice()[3] - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-16);
    }

    #[test]
    fn gradient_check() {
        let values: Vec<f64> = (0..30).map(|i| (i as f64 - 15.0) * 0.37).collect();
        let x = Tensor::from_vec(values, &[5, 6]).unwrap();
        let report = check_layer(&mut Sigmoid, &x, 1e-5, 2);
        assert!(report.input < 1e-8, "{report:?}");
        assert!(report.repeatable);
    }
}
