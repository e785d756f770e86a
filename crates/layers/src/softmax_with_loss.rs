//! Softmax followed by cross-entropy, as one layer.
//!
//! For logits `z` (N x C) and targets `t` (labels, or one-hot rows):
//! * `y_ij = exp(z_ij - lse_i)` with `lse_i = log sum_j exp(z_ij)`, computed
//!   from the row max so that nothing overflows (logits of +-1e4 are fine);
//! * `L = (1/N) sum_i sum_j t_ij (lse_i - z_ij)`, which is `-sum t log y`
//!   written without forming `log y`: no `log(0)`, no `+ 1e-7` fudge (a fudge
//!   the backward pass does not know about, which is what makes the book's
//!   notebooks' gradient checks worse than they should be);
//! * `dL/dz = dout * (y - t) / N`.
//!
//! The two were fused because their joint derivative is this simple
//! difference, while softmax alone has a full Jacobian.

use tensor::{Element, Tensor};

/// What the network should have predicted.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a, T> {
    /// One class index per row.
    Labels(&'a [usize]),
    /// One row of class weights per input (usually one-hot), same shape as the logits.
    OneHot(&'a Tensor<T>),
}

impl<T> Target<'_, T> {
    /// Number of rows the target describes.
    pub fn len(&self) -> usize
    where
        T: Element,
    {
        match self {
            Target::Labels(labels) => labels.len(),
            Target::OneHot(t) => t.rows(),
        }
    }

    /// Whether the target describes no rows.
    pub fn is_empty(&self) -> bool
    where
        T: Element,
    {
        self.len() == 0
    }
}

/// Keeps the probabilities and a copy of the targets of the last forward
/// pass, so that `backward` needs only the upstream gradient. The buffers are
/// reused from call to call.
#[derive(Debug, Clone)]
pub struct SoftmaxWithLoss<T> {
    probs: Tensor<T>,
    labels: Vec<usize>,
    one_hot: Tensor<T>,
    uses_one_hot: bool,
}

impl<T: Element> Default for SoftmaxWithLoss<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> SoftmaxWithLoss<T> {
    /// The layer, its buffers empty until the first forward pass.
    pub fn new() -> Self {
        SoftmaxWithLoss {
            probs: Tensor::zeros(&[0]),
            labels: Vec::new(),
            one_hot: Tensor::zeros(&[0]),
            uses_one_hot: false,
        }
    }

    /// The softmax output of the last forward pass.
    pub fn probs(&self) -> &Tensor<T> {
        &self.probs
    }

    /// Mean cross-entropy of `softmax(logits)` against `target`.
    ///
    /// # Panics
    /// When the target does not have one entry per row, or a label is not a
    /// column of `logits`. ([`crate::Sequential`] checks both at its boundary.)
    pub fn forward(&mut self, logits: &Tensor<T>, target: Target<'_, T>) -> T {
        let (batch, classes) = (logits.rows(), logits.row_len());
        assert_eq!(
            target.len(),
            batch,
            "SoftmaxWithLoss: {} targets for {batch} rows",
            target.len()
        );
        self.probs.resize(logits.shape());
        let mut total = 0.0f64;
        for i in 0..batch {
            let lse = logits.row_log_sum_exp(i);
            for (p, &z) in self.probs.row_mut(i).iter_mut().zip(logits.row(i)) {
                *p = (z - lse).exp();
            }
            total += match target {
                Target::Labels(labels) => {
                    assert!(
                        labels[i] < classes,
                        "SoftmaxWithLoss: label {} >= {classes} classes",
                        labels[i]
                    );
                    (lse - logits.row(i)[labels[i]]).to_f64()
                }
                Target::OneHot(t) => {
                    let row = t.row(i);
                    assert_eq!(
                        row.len(),
                        classes,
                        "SoftmaxWithLoss: one-hot rows of {} for {classes} classes",
                        row.len()
                    );
                    row.iter()
                        .zip(logits.row(i))
                        .map(|(&tj, &z)| (tj * (lse - z)).to_f64())
                        .sum()
                }
            };
        }
        match target {
            Target::Labels(labels) => {
                self.labels.clear();
                self.labels.extend_from_slice(labels);
                self.uses_one_hot = false;
            }
            Target::OneHot(t) => {
                self.one_hot.assign(t);
                self.uses_one_hot = true;
            }
        }
        T::from_f64(if batch == 0 { 0.0 } else { total / batch as f64 })
    }

    /// `grad_logits = dout * (y - t) / N`, written into `grad_logits` (resized to the logits' shape).
    pub fn backward(&self, dout: T, grad_logits: &mut Tensor<T>) {
        let batch = self.probs.rows();
        grad_logits.assign(&self.probs);
        if batch == 0 {
            return;
        }
        if self.uses_one_hot {
            grad_logits.axpy(-T::ONE, &self.one_hot);
        } else {
            for (i, &label) in self.labels.iter().enumerate() {
                grad_logits.row_mut(i)[label] -= T::ONE;
            }
        }
        grad_logits.scale(dout / T::from_f64(batch as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{central_difference, relative_error};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn one_hot(labels: &[usize], classes: usize) -> Tensor<f64> {
        let mut t = Tensor::zeros(&[labels.len(), classes]);
        for (i, &l) in labels.iter().enumerate() {
            t.row_mut(i)[l] = 1.0;
        }
        t
    }

    #[test]
    fn matches_the_textbook_formula() {
        let logits = Tensor::from_vec(vec![0.3f64, 2.9, 4.0, 1.0, 1.0, 1.0], &[2, 3]).unwrap();
        let mut layer = SoftmaxWithLoss::new();
        let loss = layer.forward(&logits, Target::Labels(&[2, 0]));
        let softmax = |row: &[f64]| {
            let s: f64 = row.iter().map(|v| v.exp()).sum();
            row.iter().map(|v| v.exp() / s).collect::<Vec<_>>()
        };
        let y0 = softmax(&[0.3, 2.9, 4.0]);
        let expected = -(y0[2].ln() + (1.0f64 / 3.0).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-15, "{loss} vs {expected}");
        assert!((layer.probs().row(0)[1] - y0[1]).abs() < 1e-15);
        // Labels and one-hot give the same loss.
        let loss_one_hot = layer.forward(&logits, Target::OneHot(&one_hot(&[2, 0], 3)));
        assert!((loss - loss_one_hot).abs() < 1e-15);
    }

    #[test]
    fn extreme_logits_stay_finite() {
        let logits = Tensor::from_vec(vec![1e4f32, -1e4, 0.0, -1e4, 1e4, 1e4], &[2, 3]).unwrap();
        let mut layer = SoftmaxWithLoss::new();
        let loss = layer.forward(&logits, Target::Labels(&[1, 0]));
        assert!(loss.is_finite(), "{loss}");
        // Row 0 costs 1e4 - (-1e4) = 2e4, row 1 costs 2e4 + ln 2.
        assert!((loss - 2e4).abs() < 1.0, "{loss}");
        let mut grad = Tensor::zeros(&[0]);
        layer.backward(1.0, &mut grad);
        assert!(grad.as_slice().iter().all(|g| g.is_finite()));
        assert!(layer.probs().as_slice().iter().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn gradient_check_labels_and_one_hot() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let logits = Tensor::<f64>::randn(&[4, 5], 2.0, &mut rng);
        let labels = [0usize, 3, 4, 3];
        let targets = one_hot(&labels, 5);
        for target in [Target::Labels(&labels), Target::OneHot(&targets)] {
            let mut layer = SoftmaxWithLoss::new();
            layer.forward(&logits, target);
            let mut grad = Tensor::zeros(&[0]);
            // An upstream gradient other than 1 must scale the result.
            layer.backward(0.5, &mut grad);
            let mut again = Tensor::zeros(&[0]);
            layer.backward(0.5, &mut again);
            assert_eq!(grad, again, "backward must be repeatable");
            let numerical = central_difference(logits.as_slice(), 1e-5, |values| {
                let z = Tensor::from_vec(values.to_vec(), &[4, 5]).unwrap();
                0.5 * SoftmaxWithLoss::new().forward(&z, target)
            });
            let err = relative_error(grad.as_slice(), &numerical);
            assert!(err < 1e-8, "{err}");
        }
    }
}
