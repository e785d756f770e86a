//! Batch normalization (the book's `BatchNormalization`, section 6.3).
//!
//! Shapes: `x` is `[N, D]` (D features) or `[N, C, H, W]` (C channels); the
//! statistics are per feature over the batch, or per channel over the batch
//! and the H x W positions (what convolutional networks use; the book's own
//! layer instead flattens 4-D input to `[N, C*H*W]` and normalizes every
//! value position on its own). Below, `M` is
//! the number of values averaged (N, or N*H*W), and every sum runs over them.
//!
//! Training mode, per feature:
//! * `mu = sum(x) / M`, `var = sum((x - mu)^2) / M`, `std = sqrt(var + eps)`,
//! * `xn = (x - mu) / std`, `y = gamma * xn + beta`,
//! * running statistics `r = momentum * r + (1 - momentum) * batch value`
//!   (momentum 0.9 and eps 1e-6 as the book; the book writes eps as `10e-7`).
//!
//! Inference mode uses the running statistics instead of the batch's.
//!
//! Backward, with `G = dL/dy` (the book's chain of `dxn, dstd, dvar, dmu`
//! collapsed into one line):
//! * `dbeta = sum(G)`, `dgamma = sum(G * xn)`,
//! * `dx = gamma / std * (G - dbeta / M - xn * dgamma / M)`.

use crate::{Layer, LayerRng, LayerSpec, Param, ParamMut};
use tensor::{Element, Tensor};

/// The book's default momentum of the running statistics:
/// `r = 0.9 * r + 0.1 * batch value`.
pub const BATCH_NORM_MOMENTUM: f64 = 0.9;
/// The book's default `eps` in `std = sqrt(var + eps)` (written `10e-7` there).
pub const BATCH_NORM_EPS: f64 = 1e-6;

/// The batch normalization layer: per-feature scale `gamma` and shift `beta`,
/// their gradients, and the running statistics used in inference mode.
///
/// Every tensor here is `[features]` (D for `[N, D]` input, C for
/// `[N, C, H, W]`); the output has the input's shape.
#[derive(Debug, Clone)]
pub struct BatchNorm<T> {
    /// The scale `gamma` (starts at 1).
    pub gamma: Tensor<T>,
    /// The shift `beta` (starts at 0).
    pub beta: Tensor<T>,
    /// `dL/dgamma = sum(G * xn)`, from the last backward pass.
    pub grad_gamma: Tensor<T>,
    /// `dL/dbeta = sum(G)`, from the last backward pass.
    pub grad_beta: Tensor<T>,
    /// The running mean, updated by each training forward pass; saved, not
    /// trained (a buffer, see [`Layer::visit_buffers`]).
    pub running_mean: Tensor<T>,
    /// The running (biased, divided by `M`) variance, updated as
    /// `running_mean`; saved, not trained.
    pub running_var: Tensor<T>,
    momentum: f64,
    eps: f64,
    /// `xn` of the last training forward pass, for backward.
    normalized: Tensor<T>,
    /// `mu` and `1 / std` per feature of the last training forward pass.
    batch_mean: Vec<T>,
    inv_std: Vec<T>,
}

/// `(batch, features, positions)` of an `[N, D]` or `[N, C, H, W]` tensor,
/// whose element `(n, c, s)` is at `(n * C + c) * S + s`.
fn layout(shape: &[usize]) -> (usize, usize, usize) {
    let batch = shape.first().copied().unwrap_or(0);
    let features = shape.get(1).copied().unwrap_or(1);
    let positions = shape.iter().skip(2).product::<usize>().max(1);
    (batch, features, positions)
}

impl<T: Element> BatchNorm<T> {
    /// `gamma = 1`, `beta = 0`, running mean 0 and variance 0 (as the book,
    /// which starts them at zeros).
    ///
    /// # Panics
    /// When `features` is zero.
    pub fn new(features: usize, momentum: f64, eps: f64) -> Self {
        assert!(features > 0, "BatchNorm: zero features");
        BatchNorm {
            gamma: Tensor::full(&[features], T::ONE),
            beta: Tensor::zeros(&[features]),
            grad_gamma: Tensor::zeros(&[features]),
            grad_beta: Tensor::zeros(&[features]),
            running_mean: Tensor::zeros(&[features]),
            running_var: Tensor::zeros(&[features]),
            momentum,
            eps,
            normalized: Tensor::zeros(&[0]),
            batch_mean: Vec::with_capacity(features),
            inv_std: Vec::with_capacity(features),
        }
    }

    /// The number of features normalized: D of `[N, D]` input, C of
    /// `[N, C, H, W]`.
    pub fn features(&self) -> usize {
        self.gamma.numel()
    }
}

impl<T: Element> Layer<T> for BatchNorm<T> {
    fn name(&self) -> &'static str {
        "BatchNorm"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::BatchNorm {
            features: self.features(),
            momentum: self.momentum,
            eps: self.eps,
        }
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let (_, features, positions) = layout(input.shape());
        let eps = T::from_f64(self.eps);
        let (mean, var) = (self.running_mean.as_slice(), self.running_var.as_slice());
        let (gamma, beta) = (self.gamma.as_slice(), self.beta.as_slice());
        output.resize(input.shape());
        for (i, (y, x)) in output
            .as_mut_slice()
            .chunks_exact_mut(positions)
            .zip(input.as_slice().chunks_exact(positions))
            .enumerate()
        {
            let c = i % features;
            let (mu, scale) = (mean[c], T::ONE / (var[c] + eps).sqrt());
            for (y, &x) in y.iter_mut().zip(x) {
                *y = gamma[c] * ((x - mu) * scale) + beta[c];
            }
        }
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        let (batch, features, positions) = layout(input.shape());
        let inv_count = T::ONE / T::from_f64((batch * positions).max(1) as f64);
        // Batch mean, then (biased) variance, per feature: two passes.
        // `inv_std` first sums the squared deviations, then becomes 1 / std.
        let (mean, inv_std) = (&mut self.batch_mean, &mut self.inv_std);
        mean.clear();
        mean.resize(features, T::ZERO);
        inv_std.clear();
        inv_std.resize(features, T::ZERO);
        for (i, x) in input.as_slice().chunks_exact(positions).enumerate() {
            mean[i % features] += x.iter().copied().sum::<T>();
        }
        mean.iter_mut().for_each(|m| *m *= inv_count);
        for (i, x) in input.as_slice().chunks_exact(positions).enumerate() {
            let mu = mean[i % features];
            inv_std[i % features] += x.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>();
        }
        let (m, one_minus_m) = (T::from_f64(self.momentum), T::from_f64(1.0 - self.momentum));
        let eps = T::from_f64(self.eps);
        let running = self
            .running_mean
            .as_mut_slice()
            .iter_mut()
            .zip(self.running_var.as_mut_slice());
        for ((running_mean, running_var), (&mu, sum_sq)) in running.zip(mean.iter().zip(inv_std.iter_mut())) {
            let var = *sum_sq * inv_count;
            *running_mean = m * *running_mean + one_minus_m * mu;
            *running_var = m * *running_var + one_minus_m * var;
            *sum_sq = T::ONE / (var + eps).sqrt();
        }
        // xn is kept for backward; y is computed from it.
        self.normalized.resize(input.shape());
        output.resize(input.shape());
        let (gamma, beta) = (self.gamma.as_slice(), self.beta.as_slice());
        for (i, ((xn, y), x)) in self
            .normalized
            .as_mut_slice()
            .chunks_exact_mut(positions)
            .zip(output.as_mut_slice().chunks_exact_mut(positions))
            .zip(input.as_slice().chunks_exact(positions))
            .enumerate()
        {
            let c = i % features;
            let (mu, scale) = (mean[c], inv_std[c]);
            for ((xn, y), &x) in xn.iter_mut().zip(y).zip(x) {
                *xn = (x - mu) * scale;
                *y = gamma[c] * *xn + beta[c];
            }
        }
    }

    fn backward(
        &mut self,
        _input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let (batch, features, positions) = layout(grad_output.shape());
        self.grad_beta.fill(T::ZERO);
        self.grad_gamma.fill(T::ZERO);
        for (i, (g, xn)) in grad_output
            .as_slice()
            .chunks_exact(positions)
            .zip(self.normalized.as_slice().chunks_exact(positions))
            .enumerate()
        {
            let c = i % features;
            self.grad_beta.as_mut_slice()[c] += g.iter().copied().sum::<T>();
            self.grad_gamma.as_mut_slice()[c] += g.iter().zip(xn).map(|(&g, &xn)| g * xn).sum::<T>();
        }
        let Some(grad_input) = grad_input else {
            return;
        };
        let inv_count = T::ONE / T::from_f64((batch * positions).max(1) as f64);
        grad_input.resize(grad_output.shape());
        let (gamma, dbeta, dgamma) = (
            self.gamma.as_slice(),
            self.grad_beta.as_slice(),
            self.grad_gamma.as_slice(),
        );
        for (i, ((dx, g), xn)) in grad_input
            .as_mut_slice()
            .chunks_exact_mut(positions)
            .zip(grad_output.as_slice().chunks_exact(positions))
            .zip(self.normalized.as_slice().chunks_exact(positions))
            .enumerate()
        {
            let c = i % features;
            let scale = gamma[c] * self.inv_std[c];
            let (mean_g, mean_gxn) = (dbeta[c] * inv_count, dgamma[c] * inv_count);
            for ((dx, &g), &xn) in dx.iter_mut().zip(g).zip(xn) {
                *dx = scale * (g - mean_g - xn * mean_gxn);
            }
        }
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(Param<'a, T>)) {
        f(Param {
            kind: "gamma",
            value: &self.gamma,
            grad: &self.grad_gamma,
            decays: false,
        });
        f(Param {
            kind: "beta",
            value: &self.beta,
            grad: &self.grad_beta,
            decays: false,
        });
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        f(ParamMut {
            kind: "gamma",
            value: &mut self.gamma,
            grad: &mut self.grad_gamma,
            decays: false,
        });
        f(ParamMut {
            kind: "beta",
            value: &mut self.beta,
            grad: &mut self.grad_beta,
            decays: false,
        });
    }

    fn visit_buffers<'a>(&'a self, f: &mut dyn FnMut(&'static str, &'a Tensor<T>)) {
        f("running_mean", &self.running_mean);
        f("running_var", &self.running_var);
    }

    fn visit_buffers_mut(&mut self, f: &mut dyn FnMut(&'static str, &mut Tensor<T>)) {
        f("running_mean", &mut self.running_mean);
        f("running_var", &mut self.running_var);
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

    fn random_layer(features: usize, rng: &mut LayerRng) -> BatchNorm<f64> {
        let mut layer = BatchNorm::new(features, BATCH_NORM_MOMENTUM, BATCH_NORM_EPS);
        // Parameters away from 1 and 0, so a wrong use of either shows.
        layer.gamma = Tensor::randn(&[features], 1.0, rng);
        layer.beta = Tensor::randn(&[features], 1.0, rng);
        layer
    }

    #[test]
    fn training_output_has_zero_mean_unit_variance_per_feature() {
        let mut rng = LayerRng::seed_from_u64(1);
        let x = Tensor::<f64>::randn(&[8, 3], 5.0, &mut rng);
        let mut layer = BatchNorm::new(3, 0.9, 1e-6);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut rng);
        for c in 0..3 {
            let column: Vec<f64> = (0..8).map(|n| y.row(n)[c]).collect();
            let mean = column.iter().sum::<f64>() / 8.0;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 8.0;
            assert!(mean.abs() < 1e-12, "{mean}");
            assert!((var - 1.0).abs() < 1e-6, "{var}");
        }
        // Running statistics moved 10% of the way from 0 to the batch's.
        let batch_mean = (0..8).map(|n| x.row(n)[0]).sum::<f64>() / 8.0;
        assert!((layer.running_mean.as_slice()[0] - 0.1 * batch_mean).abs() < 1e-12);
        // Inference uses the running statistics: y = (x - rm) / sqrt(rv + eps).
        let mut z = Tensor::zeros(&[0]);
        layer.forward(&x, &mut z);
        let (rm, rv) = (layer.running_mean.as_slice()[1], layer.running_var.as_slice()[1]);
        assert!((z.row(2)[1] - (x.row(2)[1] - rm) / (rv + 1e-6).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn gradient_check_2d() {
        let mut rng = LayerRng::seed_from_u64(2);
        let x = Tensor::<f64>::randn(&[6, 4], 2.0, &mut rng);
        let mut layer = random_layer(4, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 3);
        assert!(report.worst() < 1e-7, "{report:?}");
        assert_eq!(report.params.len(), 2);
        assert!(report.repeatable);
    }

    #[test]
    fn gradient_check_per_channel_4d() {
        let mut rng = LayerRng::seed_from_u64(4);
        let x = Tensor::<f64>::randn(&[3, 2, 3, 2], 1.5, &mut rng);
        let mut layer = random_layer(2, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, 5);
        assert!(report.worst() < 1e-7, "{report:?}");
        assert!(report.repeatable);
        assert_eq!(layer.output_shape(&[2, 3, 2]).unwrap(), vec![2, 3, 2]);
        assert!(layer.output_shape(&[3, 3, 2]).is_err());
    }

    #[test]
    fn per_channel_statistics_cover_every_position() {
        // Channel 0 is all 1.0 and 3.0 alternating over positions, channel 1 constant 7.
        let mut values = Vec::new();
        for _ in 0..2 {
            values.extend_from_slice(&[1.0, 3.0, 1.0, 3.0]);
            values.extend_from_slice(&[7.0; 4]);
        }
        let x = Tensor::<f64>::from_vec(values, &[2, 2, 2, 2]).unwrap();
        let mut layer = BatchNorm::new(2, 0.0, 1e-6);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(0));
        assert_eq!(layer.running_mean.as_slice(), &[2.0, 7.0]);
        assert_eq!(layer.running_var.as_slice(), &[1.0, 0.0]);
        assert!((y.as_slice()[0] + 1.0).abs() < 1e-6 && y.as_slice()[4].abs() < 1e-12);
    }
}
