//! A network: an ordered list of layers, then [`SoftmaxWithLoss`].
//!
//! `Affine -> act -> Affine -> ... -> Affine -> SoftmaxWithLoss`. The forward
//! pass runs the list front to back, keeping each layer's output; the backward
//! pass runs it back to front, each layer turning `dL/d(its output)` into
//! `dL/d(its input)` and its parameter gradients. Parameters are named
//! `W1 b1 W2 b2 ...` in the order of the Affine layers, as in the book.

use crate::{Activation, Affine, Layer, LayerError, SoftmaxWithLoss, Target};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tensor::{Element, Tensor};

/// The book's `TwoLayerNet` is a [`Network`] with one hidden layer; see [`Network::new`].
pub type TwoLayerNet<T> = Network<T>;

/// Number of parameters one worker perturbs before taking the next chunk in
/// [`Network::numerical_gradient`]. Fixed, so the work split (and thus the
/// result) does not depend on the thread count.
const NUMERICAL_CHUNK: usize = 64;

pub struct Network<T: Element> {
    layers: Vec<Box<dyn Layer<T>>>,
    loss_layer: SoftmaxWithLoss<T>,
    /// `activations[i]` is the output of `layers[i]` in the last forward pass.
    activations: Vec<Tensor<T>>,
    /// `grads[i]` is `dL/d activations[i]` in the last backward pass.
    grads: Vec<Tensor<T>>,
    sizes: Vec<usize>,
    activation: Activation,
}

impl<T: Element> std::fmt::Debug for Network<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let layers: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
        f.debug_struct("Network")
            .field("sizes", &self.sizes)
            .field("activation", &self.activation)
            .field("layers", &layers)
            .field("params", &self.num_params())
            .finish()
    }
}

impl<T: Element> Clone for Network<T> {
    fn clone(&self) -> Self {
        Network {
            layers: self.layers.clone(),
            loss_layer: self.loss_layer.clone(),
            activations: self.activations.clone(),
            grads: self.grads.clone(),
            sizes: self.sizes.clone(),
            activation: self.activation,
        }
    }
}

impl<T: Element> Network<T> {
    /// The book's `TwoLayerNet(input_size, hidden_size, output_size, weight_init_std)`:
    /// Affine-Relu-Affine, `W = weight_init_std * N(0, 1)`, `b = 0`, seeded.
    ///
    /// # Panics
    /// When a size is zero; [`Network::mlp`] returns the error instead.
    pub fn new(input_size: usize, hidden_size: usize, output_size: usize, weight_init_std: f64, seed: u64) -> Self {
        Self::mlp(
            &[input_size, hidden_size, output_size],
            Activation::Relu,
            weight_init_std,
            seed,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A multi-layer perceptron with layer widths `sizes` (input, hidden..., output).
    /// Weights are drawn in order W1, W2, ... from one ChaCha8 stream seeded by `seed`.
    pub fn mlp(sizes: &[usize], activation: Activation, weight_init_std: f64, seed: u64) -> Result<Self, LayerError> {
        if sizes.len() < 2 {
            return Err(LayerError::Config(format!(
                "need at least an input and an output size, got {sizes:?}"
            )));
        }
        if sizes.contains(&0) {
            return Err(LayerError::Config(format!(
                "layer sizes must be positive, got {sizes:?}"
            )));
        }
        if !(weight_init_std.is_finite() && weight_init_std > 0.0) {
            return Err(LayerError::Config(format!(
                "weight_init_std must be a positive number, got {weight_init_std}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers: Vec<Box<dyn Layer<T>>> = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            let w = Tensor::randn(&[pair[0], pair[1]], weight_init_std, &mut rng);
            layers.push(Box::new(Affine::new(w, Tensor::zeros(&[pair[1]]))));
            if i + 2 < sizes.len() {
                layers.push(activation.layer());
            }
        }
        let count = layers.len();
        Ok(Network {
            layers,
            loss_layer: SoftmaxWithLoss::new(),
            activations: vec![Tensor::zeros(&[0]); count],
            grads: vec![Tensor::zeros(&[0]); count],
            sizes: sizes.to_vec(),
            activation,
        })
    }

    /// Layer widths: input, hidden..., output.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    pub fn input_size(&self) -> usize {
        self.sizes[0]
    }

    pub fn output_size(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        let mut count = 0;
        for layer in &self.layers {
            layer.visit_params(&mut |_, value, _| count += value.numel());
        }
        count
    }

    fn check_input(&self, x: &Tensor<T>) -> Result<(), LayerError> {
        if x.row_len() != self.input_size() || x.shape().is_empty() {
            return Err(LayerError::InputShape {
                expected: self.input_size(),
                got: x.shape().to_vec(),
            });
        }
        Ok(())
    }

    fn check_target(&self, x: &Tensor<T>, target: Target<'_, T>) -> Result<(), LayerError> {
        self.check_input(x)?;
        if target.len() != x.rows() {
            return Err(LayerError::BatchMismatch {
                batch: x.rows(),
                targets: target.len(),
            });
        }
        let classes = self.output_size();
        match target {
            Target::Labels(labels) => {
                if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
                    return Err(LayerError::LabelOutOfRange { index, label, classes });
                }
            }
            Target::OneHot(t) => {
                if t.row_len() != classes {
                    return Err(LayerError::InputShape {
                        expected: classes,
                        got: t.shape().to_vec(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs the layers on `x`, keeping every output in `activations`; returns the logits.
    fn forward_into<'a>(
        layers: &[Box<dyn Layer<T>>],
        x: &Tensor<T>,
        activations: &'a mut [Tensor<T>],
    ) -> &'a Tensor<T> {
        for (i, layer) in layers.iter().enumerate() {
            let (done, rest) = activations.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            layer.forward(input, &mut rest[0]);
        }
        &activations[layers.len() - 1]
    }

    /// The logits (scores before softmax) for a batch `x` of shape `[N, input_size]`
    /// (or `[N, ...]` with as many values per row).
    pub fn predict(&mut self, x: &Tensor<T>) -> Result<&Tensor<T>, LayerError> {
        self.check_input(x)?;
        Ok(Self::forward_into(&self.layers, x, &mut self.activations))
    }

    /// Buffers for [`Network::predict_with`], one set per thread.
    pub fn new_scratch(&self) -> Vec<Tensor<T>> {
        vec![Tensor::zeros(&[0]); self.layers.len()]
    }

    /// [`Network::predict`] through caller-owned buffers, so that several
    /// threads can evaluate one shared network.
    pub fn predict_with<'a>(
        &self,
        x: &Tensor<T>,
        scratch: &'a mut Vec<Tensor<T>>,
    ) -> Result<&'a Tensor<T>, LayerError> {
        self.check_input(x)?;
        scratch.resize(self.layers.len(), Tensor::zeros(&[0]));
        Ok(Self::forward_into(&self.layers, x, scratch))
    }

    /// Mean cross-entropy loss on a batch.
    pub fn loss(&mut self, x: &Tensor<T>, target: Target<'_, T>) -> Result<T, LayerError> {
        self.check_target(x, target)?;
        Ok(self.loss_unchecked(x, target))
    }

    fn loss_unchecked(&mut self, x: &Tensor<T>, target: Target<'_, T>) -> T {
        let logits = Self::forward_into(&self.layers, x, &mut self.activations);
        self.loss_layer.forward(logits, target)
    }

    /// Fraction of rows whose largest logit is at the label.
    pub fn accuracy(&mut self, x: &Tensor<T>, labels: &[usize]) -> Result<f64, LayerError> {
        self.check_target(x, Target::Labels(labels))?;
        let logits = Self::forward_into(&self.layers, x, &mut self.activations);
        let correct = (0..logits.rows())
            .filter(|&i| logits.row_argmax(i) == labels[i])
            .count();
        Ok(if labels.is_empty() {
            0.0
        } else {
            correct as f64 / labels.len() as f64
        })
    }

    /// Backprop: one forward and one backward pass. Leaves `dL/dparam` in the
    /// layers (see [`Network::named_params`]) and returns the loss.
    pub fn gradient(&mut self, x: &Tensor<T>, target: Target<'_, T>) -> Result<T, LayerError> {
        self.check_target(x, target)?;
        Ok(self.gradient_unchecked(x, target))
    }

    /// [`Network::gradient`] without the boundary checks: for the training
    /// loop, whose batches are built to fit.
    pub fn gradient_unchecked(&mut self, x: &Tensor<T>, target: Target<'_, T>) -> T {
        let loss = self.loss_unchecked(x, target);
        let last = self.layers.len() - 1;
        self.loss_layer.backward(T::ONE, &mut self.grads[last]);
        for i in (0..self.layers.len()).rev() {
            let (lower, upper) = self.grads.split_at_mut(i);
            let grad_output = &upper[0];
            // The first layer's input is data: its gradient is never needed.
            let (input, grad_input) = if i == 0 {
                (x, None)
            } else {
                (&self.activations[i - 1], Some(&mut lower[i - 1]))
            };
            self.layers[i].backward(input, &self.activations[i], grad_output, grad_input);
        }
        loss
    }

    /// Plain SGD: `param -= learning_rate * grad` for every parameter.
    pub fn sgd_step(&mut self, learning_rate: T) {
        for layer in &mut self.layers {
            layer.visit_params_mut(&mut |_, value, grad| value.axpy(-learning_rate, grad));
        }
    }

    /// Copies of every parameter, in order: the spare buffers for
    /// [`Network::sgd_step_keeping`].
    pub fn param_buffers(&self) -> Vec<Tensor<T>> {
        self.named_params()
            .into_iter()
            .map(|(_, value, _)| value.clone())
            .collect()
    }

    /// SGD that keeps what it replaces: the new parameters are written into
    /// `previous` (which must come from [`Network::param_buffers`]) and then
    /// swapped in, so afterwards `previous` holds the parameters from before
    /// the step. Costs the same memory traffic as an in-place update, and
    /// [`Network::swap_params`] can undo the step exactly.
    ///
    /// # Panics
    /// When `previous` does not match the parameters in count and shape.
    pub fn sgd_step_keeping(&mut self, learning_rate: T, previous: &mut [Tensor<T>]) {
        let mut spares = previous.iter_mut();
        for layer in &mut self.layers {
            layer.visit_params_mut(&mut |_, value, grad| {
                let spare = spares.next().expect("one spare buffer per parameter");
                spare.zip_from(value, grad, |p, g| p - learning_rate * g);
                std::mem::swap(value, spare);
            });
        }
    }

    /// Exchanges the parameters with `other` (same order and shapes).
    ///
    /// # Panics
    /// When `other` does not match the parameters in count and shape.
    pub fn swap_params(&mut self, other: &mut [Tensor<T>]) {
        let mut others = other.iter_mut();
        for layer in &mut self.layers {
            layer.visit_params_mut(&mut |_, value, _| {
                let other = others.next().expect("one buffer per parameter");
                assert_eq!(value.shape(), other.shape(), "swap_params: shape mismatch");
                std::mem::swap(value, other);
            });
        }
    }

    /// Every parameter as `(name, value, gradient)`, in the order W1 b1 W2 b2 ...
    pub fn named_params(&self) -> Vec<(String, &Tensor<T>, &Tensor<T>)> {
        let mut out = Vec::new();
        let mut affine = 0;
        for layer in &self.layers {
            let mut first = true;
            layer.visit_params(&mut |name, value, grad| {
                if first {
                    affine += 1;
                    first = false;
                }
                out.push((format!("{name}{affine}"), value, grad));
            });
        }
        out
    }

    /// Overwrites parameter `name` ("W1", "b2", ...) after checking its shape.
    pub fn set_param(&mut self, name: &str, shape: &[usize], values: &[T]) -> Result<(), LayerError> {
        let mut result = Err(LayerError::MissingParam { name: name.to_string() });
        let mut affine = 0;
        for layer in &mut self.layers {
            let mut first = true;
            layer.visit_params_mut(&mut |param, value, _| {
                if first {
                    affine += 1;
                    first = false;
                }
                if format!("{param}{affine}") != name {
                    return;
                }
                result = if value.shape() != shape || values.len() != value.numel() {
                    Err(LayerError::ParamShape {
                        name: name.to_string(),
                        expected: value.shape().to_vec(),
                        found: shape.to_vec(),
                    })
                } else {
                    value.as_mut_slice().copy_from_slice(values);
                    Ok(())
                };
            });
        }
        result
    }

    /// The book's `numerical_gradient`: for every parameter `p`,
    /// `(L(p + h) - L(p - h)) / 2h` with an honest full forward pass for each
    /// of the two perturbations. Spread over rayon's current pool; each worker
    /// perturbs its own copy of the network, so nothing is shared or aliased.
    pub fn numerical_gradient(
        &self,
        x: &Tensor<T>,
        target: Target<'_, T>,
        h: T,
    ) -> Result<Vec<(String, Tensor<T>)>, LayerError> {
        self.check_target(x, target)?;
        // (layer, index among that layer's params, numel) for every parameter tensor.
        let mut slots = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let mut p = 0;
            layer.visit_params(&mut |_, value, _| {
                slots.push((l, p, value.numel()));
                p += 1;
            });
        }
        let flat: Vec<(usize, usize, usize)> = slots
            .iter()
            .flat_map(|&(l, p, n)| (0..n).map(move |e| (l, p, e)))
            .collect();
        let two_h = h + h;
        let derivatives: Vec<T> = flat
            .par_chunks(NUMERICAL_CHUNK)
            .map_init(
                || self.clone(),
                |net, chunk| {
                    chunk
                        .iter()
                        .map(|&(l, p, e)| {
                            let original = net.nudge(l, p, e, None);
                            net.nudge(l, p, e, Some(original + h));
                            let plus = net.loss_unchecked(x, target);
                            net.nudge(l, p, e, Some(original - h));
                            let minus = net.loss_unchecked(x, target);
                            net.nudge(l, p, e, Some(original));
                            (plus - minus) / two_h
                        })
                        .collect::<Vec<T>>()
                },
            )
            .flatten_iter()
            .collect();
        let mut out = Vec::new();
        let mut offset = 0;
        for ((name, value, _), _) in self.named_params().into_iter().zip(&slots) {
            let n = value.numel();
            let grad = Tensor::from_vec(derivatives[offset..offset + n].to_vec(), value.shape())
                .expect("numerical gradient has the parameter's shape");
            out.push((name, grad));
            offset += n;
        }
        Ok(out)
    }

    /// Reads element `e` of parameter `p` of layer `l`, then writes `value` if given.
    fn nudge(&mut self, l: usize, p: usize, e: usize, value: Option<T>) -> T {
        let mut index = 0;
        let mut old = T::ZERO;
        self.layers[l].visit_params_mut(&mut |_, tensor, _| {
            if index == p {
                let slot = &mut tensor.as_mut_slice()[e];
                old = *slot;
                if let Some(v) = value {
                    *slot = v;
                }
            }
            index += 1;
        });
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{mean_abs_diff, relative_error};

    fn toy_batch(rows: usize, cols: usize, seed: u64) -> Tensor<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor::randn(&[rows, cols], 1.0, &mut rng)
    }

    #[test]
    fn backprop_matches_numerical_gradient_relu_and_sigmoid() {
        for activation in [Activation::Relu, Activation::Sigmoid] {
            let mut net = Network::<f64>::mlp(&[12, 7, 5, 4], activation, 0.5, 11).unwrap();
            let x = toy_batch(3, 12, 12);
            let labels = [1usize, 3, 0];
            net.gradient(&x, Target::Labels(&labels)).unwrap();
            let numerical = net.numerical_gradient(&x, Target::Labels(&labels), 1e-5).unwrap();
            let names: Vec<String> = net.named_params().iter().map(|p| p.0.clone()).collect();
            assert_eq!(names, ["W1", "b1", "W2", "b2", "W3", "b3"]);
            for ((name, _, grad), (num_name, num)) in net.named_params().iter().zip(&numerical) {
                assert_eq!(name, num_name);
                let err = relative_error(grad.as_slice(), num.as_slice());
                assert!(err < 1e-6, "{activation} {name}: relative error {err}");
                assert!(mean_abs_diff(grad.as_slice(), num.as_slice()) < 1e-9);
            }
        }
    }

    #[test]
    fn numerical_gradient_does_not_depend_on_thread_count() {
        let net = Network::<f64>::new(6, 4, 3, 0.3, 5);
        let x = toy_batch(2, 6, 6);
        let labels = [2usize, 1];
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| net.numerical_gradient(&x, Target::Labels(&labels), 1e-4).unwrap())
        };
        let one = run(1);
        let two = run(2);
        for ((_, a), (_, b)) in one.iter().zip(&two) {
            assert_eq!(a, b);
        }
    }

    #[test]
    fn seeded_init_is_reproducible_and_follows_the_book() {
        let a = Network::<f32>::new(784, 50, 10, 0.01, 42);
        let b = Network::<f32>::new(784, 50, 10, 0.01, 42);
        let c = Network::<f32>::new(784, 50, 10, 0.01, 43);
        let pa = a.named_params();
        assert_eq!(pa[0].1, b.named_params()[0].1);
        assert_ne!(pa[0].1, c.named_params()[0].1);
        assert_eq!(pa[0].1.shape(), &[784, 50]);
        assert!(pa[1].1.as_slice().iter().all(|&v| v == 0.0), "biases start at zero");
        assert_eq!(a.num_params(), 784 * 50 + 50 + 50 * 10 + 10);
    }

    #[test]
    fn boundary_errors_are_typed() {
        let mut net = Network::<f32>::new(4, 3, 2, 0.1, 0);
        let x = Tensor::zeros(&[2, 5]);
        assert!(matches!(
            net.predict(&x),
            Err(LayerError::InputShape { expected: 4, .. })
        ));
        let x = Tensor::zeros(&[2, 4]);
        assert!(matches!(
            net.loss(&x, Target::Labels(&[0])),
            Err(LayerError::BatchMismatch { .. })
        ));
        assert!(matches!(
            net.gradient(&x, Target::Labels(&[0, 2])),
            Err(LayerError::LabelOutOfRange { label: 2, .. })
        ));
        assert!(Network::<f32>::mlp(&[4], Activation::Relu, 0.1, 0).is_err());
        assert!(Network::<f32>::mlp(&[4, 0, 2], Activation::Relu, 0.1, 0).is_err());
        assert!(Network::<f32>::mlp(&[4, 2], Activation::Relu, f64::NAN, 0).is_err());
        assert!(matches!(
            net.set_param("W1", &[3, 4], &[0.0; 12]),
            Err(LayerError::ParamShape { .. })
        ));
        assert!(matches!(
            net.set_param("W9", &[4, 3], &[0.0; 12]),
            Err(LayerError::MissingParam { .. })
        ));
        net.set_param("W1", &[4, 3], &[0.5; 12]).unwrap();
        assert_eq!(net.named_params()[0].1.as_slice(), &[0.5; 12]);
    }

    #[test]
    fn sgd_lowers_the_loss_and_accuracy_counts() {
        let mut net = Network::<f64>::new(5, 8, 3, 0.5, 1);
        let x = toy_batch(6, 5, 2);
        let labels = [0usize, 1, 2, 0, 1, 2];
        let first = net.gradient(&x, Target::Labels(&labels)).unwrap();
        for _ in 0..200 {
            net.gradient(&x, Target::Labels(&labels)).unwrap();
            net.sgd_step(0.5);
        }
        let last = net.loss(&x, Target::Labels(&labels)).unwrap();
        assert!(last < first * 0.1, "{first} -> {last}");
        assert_eq!(net.accuracy(&x, &labels).unwrap(), 1.0);
        // The keeping variant takes the same step and can undo it exactly.
        let mut twin = net.clone();
        let before = net.param_buffers();
        net.gradient(&x, Target::Labels(&labels)).unwrap();
        twin.gradient(&x, Target::Labels(&labels)).unwrap();
        net.sgd_step(0.5);
        let mut previous = twin.param_buffers();
        twin.sgd_step_keeping(0.5, &mut previous);
        assert_eq!(net.param_buffers(), twin.param_buffers());
        assert_eq!(previous, before);
        twin.swap_params(&mut previous);
        assert_eq!(twin.param_buffers(), before);
        let mut scratch = net.new_scratch();
        let shared = net.predict_with(&x, &mut scratch).unwrap().clone();
        assert_eq!(&shared, net.predict(&x).unwrap());
    }
}
