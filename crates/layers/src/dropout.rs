//! Dropout (the book's `Dropout`, section 6.4.3).
//!
//! Training mode: each value is kept with probability `1 - ratio` and zeroed
//! otherwise, `y = x * mask`, a fresh mask per forward pass drawn from the
//! caller's random stream. Backward: `dx = dout * mask`.
//!
//! Inference mode: `y = x * (1 - ratio)`. As in the book, the scaling is done
//! **at inference** (not "inverted dropout", which divides by `1 - ratio`
//! while training), so that the expected value of every unit is the same in
//! both modes. The ratio is part of the layer's spec, so a saved model scales
//! the same way when it is loaded.

use crate::{Layer, LayerRng, LayerSpec};
use rand::Rng;
use tensor::{Element, Tensor};

/// The dropout layer: elementwise, any shape, no parameters; the output has
/// the input's shape.
#[derive(Debug, Clone)]
pub struct Dropout<T> {
    ratio: f64,
    /// 1 where the last training pass kept the value, 0 where it dropped it.
    mask: Tensor<T>,
}

impl<T: Element> Dropout<T> {
    /// A layer that drops each value with probability `ratio` in training.
    ///
    /// # Panics
    /// When `ratio` is not in `[0, 1)` ([`LayerSpec::validate`] refuses it first).
    pub fn new(ratio: f64) -> Self {
        assert!((0.0..1.0).contains(&ratio), "Dropout: ratio {ratio} outside [0, 1)");
        Dropout {
            ratio,
            mask: Tensor::zeros(&[0]),
        }
    }

    /// The probability that a value is dropped in training, in `[0, 1)`.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The mask of the last training pass.
    pub fn mask(&self) -> &Tensor<T> {
        &self.mask
    }
}

impl<T: Element> Layer<T> for Dropout<T> {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout { ratio: self.ratio }
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let keep = T::from_f64(1.0 - self.ratio);
        output.resize(input.shape());
        for (y, &x) in output.as_mut_slice().iter_mut().zip(input.as_slice()) {
            *y = x * keep;
        }
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, rng: &mut LayerRng) {
        // The book's `np.random.rand(*x.shape) > ratio`.
        self.mask.resize(input.shape());
        for m in self.mask.as_mut_slice() {
            *m = if rng.random::<f64>() > self.ratio {
                T::ONE
            } else {
                T::ZERO
            };
        }
        output.zip_from(input, &self.mask, |x, m| x * m);
    }

    fn backward(
        &mut self,
        _input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        if let Some(grad_input) = grad_input {
            grad_input.zip_from(grad_output, &self.mask, |g, m| g * m);
        }
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
    fn drops_about_the_ratio_and_scales_at_inference() {
        let x = Tensor::<f32>::full(&[100, 100], 2.0);
        let mut layer = Dropout::new(0.2);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(1));
        let kept = layer.mask().as_slice().iter().filter(|&&m| m == 1.0).count();
        assert!((7800..8200).contains(&kept), "{kept} of 10000 kept");
        assert!(y.as_slice().iter().all(|&v| v == 0.0 || v == 2.0));
        // The same seed draws the same mask; another seed another one.
        let first = layer.mask().clone();
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(1));
        assert_eq!(layer.mask(), &first);
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(2));
        assert_ne!(layer.mask(), &first);
        // Inference: every value times 1 - ratio, the expectation of training.
        layer.forward(&x, &mut y);
        assert!(y.as_slice().iter().all(|&v| (v - 1.6).abs() < 1e-6));
    }

    #[test]
    fn gradient_check_with_a_fixed_mask() {
        // check_layer reseeds the stream for every training pass, so the
        // central differences see the mask that backprop saw.
        let mut rng = LayerRng::seed_from_u64(3);
        let x = Tensor::<f64>::randn(&[4, 5], 1.0, &mut rng);
        let mut layer = Dropout::new(0.5);
        let report = check_layer(&mut layer, &x, 1e-5, 7);
        assert!(report.input < 1e-9, "{report:?}");
        assert!(report.repeatable);
        let dropped = layer.mask().as_slice().iter().filter(|&&m| m == 0.0).count();
        assert!(
            dropped > 0 && dropped < 20,
            "the check saw a real mask: {dropped} dropped"
        );
    }
}
