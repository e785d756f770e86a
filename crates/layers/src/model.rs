//! A model: any ordered list of layers, then [`SoftmaxWithLoss`].
//!
//! The forward pass runs the list front to back, keeping each layer's output;
//! the backward pass runs it back to front, each layer turning
//! `dL/d(its output)` into `dL/d(its input)` and its parameter gradients.
//! This file holds the model, its construction and its passes (loss,
//! gradient, accuracy, predictions); [`state`] holds its state: the one walk
//! over the parameters and buffers, and their names.
//!
//! **Names.** Every parameter and buffer has a name, given when the model is
//! built. By default they are the book's (`MultiLayerNetExtend`'s): Affine
//! and Convolution layers number theirs (`W1 b1`, `W2 b2`, ...), and a layer
//! that does not number its own (BatchNorm) takes the number of the last one
//! that did (`gamma1 beta1`, buffers `running_mean1 running_var1`). A layer
//! may also be named ([`Sequential::with_layer_names`], or
//! [`NetSpec::name`](crate::NetSpec::name) in the builder): its tensors are
//! then `{name}.{kind}` (`stem.W`, `bn.running_var`) and it takes no number,
//! so inserting a named layer leaves every other name, and so a checkpoint's
//! tensors, where they were.
//!
//! **Weight decay** (L2, the book's `weight_decay_lambda`): the loss gains
//! `lambda / 2 * sum(W^2)` over the weight matrices (not biases, not
//! BatchNorm's scale and shift), and their gradients `lambda * W`.

mod state;

pub(crate) use state::{check_layer_name, check_layer_names};
pub use state::{NamedParam, MAX_LAYER_NAME_LEN};

use crate::net::{check_example_shape, check_weight_decay};
use crate::{Layer, LayerError, LayerRng, LayerSpec, SoftmaxWithLoss, Target, MAX_PARAMS};
use state::State;
use tensor::{Element, Tensor};

/// A network: its layers in order, then a [`SoftmaxWithLoss`]. It owns the
/// parameters, their gradients, and the outputs and gradients of its last
/// forward and backward passes (buffers reused from batch to batch).
///
/// A batch `x` is `[N, ...]` with [`Sequential::input_size`] values per row
/// (`[N, C, H, W]` for a model of images, see [`Sequential::shape_batch`]);
/// the logits are `[N, classes]`. The checked entry points ([`predict`],
/// [`loss`], [`gradient`], [`accuracy`]) return a [`LayerError`] for a batch
/// or target that does not fit; the `_unchecked` ones leave that to the
/// caller. Inference through [`Sequential::predict_with`] and
/// [`Sequential::accuracy`] takes `&self`, so threads can share one model.
///
/// [`predict`]: Sequential::predict
/// [`loss`]: Sequential::loss
/// [`gradient`]: Sequential::gradient
/// [`accuracy`]: Sequential::accuracy
///
/// ```
/// use layers::{LayerRng, NetSpec, Target, Tensor};
/// use rand::SeedableRng;
///
/// // 4 inputs, 3 classes: one Affine layer, W1 [4, 3] and b1 [3].
/// let mut model = NetSpec::new(&[4]).affine(3).build::<f64>(1).unwrap();
/// assert_eq!(model.param_names(), ["W1", "b1"]);
/// assert_eq!(model.num_params(), 4 * 3 + 3);
///
/// let x = Tensor::from_vec(vec![1.0, 0.5, -0.5, 2.0, 0.0, 1.0, 1.0, -1.0], &[2, 4]).unwrap();
/// assert_eq!(model.predict(&x).unwrap().shape(), &[2, 3]);
///
/// // Weights 0.01 * N(0, 1) give nearly uniform probabilities: loss ~ ln 3.
/// let loss = model.loss(&x, Target::Labels(&[0, 2])).unwrap();
/// assert!((loss - 3f64.ln()).abs() < 0.1, "{loss}");
///
/// // Backprop leaves dL/dW1 and dL/db1 in the model.
/// let mut rng = LayerRng::seed_from_u64(1);
/// model.gradient(&x, Target::Labels(&[0, 2]), &mut rng).unwrap();
/// assert_eq!(model.params()[0].grad.shape(), &[4, 3]);
///
/// // A batch with 5 values per row, or a label past the last class, is refused.
/// assert!(model.predict(&Tensor::zeros(&[2, 5])).is_err());
/// assert!(model.loss(&x, Target::Labels(&[0, 3])).is_err());
/// ```
pub struct Sequential<T: Element> {
    layers: Vec<Box<dyn Layer<T>>>,
    loss_layer: SoftmaxWithLoss<T>,
    /// `activations[i]` is the output of `layers[i]` in the last forward
    /// pass; not written for a layer whose output another layer's work
    /// took in (`taken`).
    activations: Vec<Tensor<T>>,
    /// `grads[i]` is `dL/d activations[i]` in the last backward pass; not
    /// written where `activations[i]` was not.
    grads: Vec<Tensor<T>>,
    /// `taken[i]`: what `layers[i]` did besides its own work in the last
    /// training forward pass.
    taken: Vec<Taken>,
    /// One example's shape, without the batch dimension: `[784]`.
    input_shape: Vec<usize>,
    output_size: usize,
    /// `layer_names[i]` is `layers[i]`'s name (`None`: unnamed, numbered).
    layer_names: Vec<Option<String>>,
    /// Every parameter's name, in the order of the walk (see [`state`]).
    param_names: Vec<String>,
    /// Every buffer's name, in the order of the walk.
    buffer_names: Vec<String>,
    weight_decay: f64,
}

/// What a layer did in a training forward pass besides its own work: the
/// layers whose work it did write neither output nor gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Its own work only.
    Nothing,
    /// The ReLU before it ([`Layer::forward_train_after_relu`]).
    ReluBefore,
    /// The ReLU and the 2x2 pool after it ([`Layer::forward_train_relu_pool`]).
    ReluPoolAfter,
    /// The ReLU before it and the ReLU and the 2x2 pool after it
    /// ([`Layer::forward_train_relu_pool`] with `relu_first`).
    ReluBeforeReluPoolAfter,
}

impl<T: Element> Clone for Sequential<T> {
    fn clone(&self) -> Self {
        Sequential {
            layers: self.layers.clone(),
            loss_layer: self.loss_layer.clone(),
            activations: self.activations.clone(),
            grads: self.grads.clone(),
            taken: self.taken.clone(),
            input_shape: self.input_shape.clone(),
            output_size: self.output_size,
            layer_names: self.layer_names.clone(),
            param_names: self.param_names.clone(),
            buffer_names: self.buffer_names.clone(),
            weight_decay: self.weight_decay,
        }
    }
}

impl<T: Element> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("input_shape", &self.input_shape)
            .field("layers", &self.layers.iter().map(|l| l.name()).collect::<Vec<_>>())
            .field("params", &self.param_names)
            .field("weight_decay", &self.weight_decay)
            .finish()
    }
}

impl<T: Element> Sequential<T> {
    /// A model over inputs of `input_shape` per example (`[784]`). Checks
    /// that every layer takes the previous one's output and that the last
    /// gives one score per class, and gives the parameters and buffers the
    /// book's names (see the module doc; [`Sequential::with_layer_names`]
    /// names layers).
    pub fn new(input_shape: &[usize], layers: Vec<Box<dyn Layer<T>>>) -> Result<Self, LayerError> {
        check_example_shape(input_shape)?;
        if layers.is_empty() {
            return Err(LayerError::OutOfRange {
                what: "the number of layers",
                value: 0,
                min: 1,
                max: usize::MAX,
            });
        }
        let mut shape = input_shape.to_vec();
        for layer in &layers {
            shape = layer.output_shape(&shape)?;
        }
        let [output_size] = shape[..] else {
            return Err(LayerError::OutputNotScores { output: shape });
        };
        let count = layers.len();
        let model = Sequential {
            layers,
            loss_layer: SoftmaxWithLoss::new(),
            activations: vec![Tensor::zeros(&[0]); count],
            grads: vec![Tensor::zeros(&[0]); count],
            taken: vec![Taken::Nothing; count],
            input_shape: input_shape.to_vec(),
            output_size,
            layer_names: Vec::new(),
            param_names: Vec::new(),
            buffer_names: Vec::new(),
            weight_decay: 0.0,
        };
        // The book's names, every layer unnamed.
        model.with_layer_names(vec![None; count])
    }

    /// The model that `specs` describe, with zero weights (BatchNorm's scale
    /// one), for values to be loaded into. Every size is bounded before
    /// anything is allocated.
    pub fn from_specs(input_shape: &[usize], specs: &[LayerSpec]) -> Result<Self, LayerError> {
        let mut total = 0usize;
        for spec in specs {
            spec.validate()?;
            total = total.saturating_add(spec.num_params());
        }
        if total > MAX_PARAMS {
            return Err(LayerError::TooManyParams {
                params: total,
                max: MAX_PARAMS,
            });
        }
        let layers = specs.iter().map(|s| s.build()).collect::<Result<Vec<_>, _>>()?;
        Self::new(input_shape, layers)
    }

    /// The architecture, one spec per layer.
    pub fn specs(&self) -> Vec<LayerSpec> {
        self.layers.iter().map(|l| l.spec()).collect()
    }

    /// Sets the L2 weight decay `lambda` (0 turns it off).
    pub fn with_weight_decay(mut self, lambda: f64) -> Result<Self, LayerError> {
        check_weight_decay(lambda)?;
        self.weight_decay = lambda;
        Ok(self)
    }

    /// The L2 weight decay `lambda` (0: none).
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay
    }

    /// The layers, in order (the loss layer not included).
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    /// One example's shape, without the batch dimension.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Values per example: the product of [`Sequential::input_shape`].
    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Values per example in the largest of the input and the layer
    /// outputs: what one example takes in a forward pass's buffers.
    pub fn widest_activation(&self) -> usize {
        let mut shape = self.input_shape.clone();
        let mut widest = self.input_size();
        for layer in &self.layers {
            shape = layer.output_shape(&shape).expect("checked when the model was built");
            widest = widest.max(shape.iter().product());
        }
        widest
    }

    /// Number of classes scored.
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// A one-line description: `Affine(784x50) Relu Affine(50x10)`.
    pub fn summary(&self) -> String {
        self.specs()
            .iter()
            .map(|spec| match spec {
                LayerSpec::Affine { inputs, outputs } => format!("Affine({inputs}x{outputs})"),
                LayerSpec::Relu => "Relu".into(),
                LayerSpec::Sigmoid => "Sigmoid".into(),
                LayerSpec::BatchNorm { .. } => "BatchNorm".into(),
                LayerSpec::Dropout { ratio } => format!("Dropout({ratio})"),
                LayerSpec::Convolution {
                    filters,
                    filter_h,
                    filter_w,
                    stride,
                    pad,
                    ..
                } => format!("Conv({filters}x{filter_h}x{filter_w} s{stride} p{pad})"),
                LayerSpec::Pooling {
                    pool_h,
                    pool_w,
                    stride,
                    pad,
                } => format!("Pool({pool_h}x{pool_w} s{stride} p{pad})"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Gives a batch `[N, input_size]` (as [`crate::Sequential`]'s callers gather
    /// it) the model's example shape, `[N, C, H, W]` for a convolutional net.
    /// Never copies; a no-op for models of flat inputs.
    pub fn shape_batch(&self, x: &mut Tensor<T>) -> Result<(), LayerError> {
        if x.shape().is_empty() || x.row_len() != self.input_size() {
            return Err(LayerError::InputShape {
                expected: self.input_size(),
                got: x.shape().to_vec(),
            });
        }
        let mut shape = [0usize; tensor::MAX_DIMS];
        shape[0] = x.rows();
        shape[1..=self.input_shape.len()].copy_from_slice(&self.input_shape);
        // Cannot fail: the rows hold input_size values, at most 3 + 1 dimensions.
        x.reshape(&shape[..=self.input_shape.len()])
            .map_err(|_| LayerError::InputShape {
                expected: self.input_size(),
                got: x.shape().to_vec(),
            })
    }

    /// A batch fits when each row has the model's input size; for a model of
    /// images (`[C, H, W]` examples) it must also have their shape (see
    /// [`Sequential::shape_batch`]).
    pub fn check_input(&self, x: &Tensor<T>) -> Result<(), LayerError> {
        let shaped = self.input_shape.len() == 1 || x.shape().get(1..) == Some(&self.input_shape[..]);
        if x.shape().is_empty() || x.row_len() != self.input_size() || !shaped {
            return Err(LayerError::InputShape {
                expected: self.input_size(),
                got: x.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// [`Sequential::check_input`], then that `target` has one entry per
    /// row of `x` ([`LayerError::BatchMismatch`]), every label is below
    /// [`Sequential::output_size`] ([`LayerError::LabelOutOfRange`]), and
    /// one-hot rows have one value per class ([`LayerError::InputShape`]).
    pub fn check_target(&self, x: &Tensor<T>, target: Target<'_, T>) -> Result<(), LayerError> {
        self.check_input(x)?;
        if target.len() != x.rows() {
            return Err(LayerError::BatchMismatch {
                batch: x.rows(),
                targets: target.len(),
            });
        }
        let classes = self.output_size;
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

    /// Whether `layers[i]` is a ReLU with a layer after it, which may do
    /// its work ([`Layer::forward_after_relu`]).
    fn relu_with_successor(layers: &[Box<dyn Layer<T>>], i: usize) -> bool {
        i + 1 < layers.len() && matches!(layers[i].spec(), LayerSpec::Relu)
    }

    /// Whether a ReLU and the book's 2x2 max pool of stride 2 follow
    /// `layers[i]`, which may do their work ([`Layer::forward_relu_pool`]).
    fn relu_pool_after(layers: &[Box<dyn Layer<T>>], i: usize) -> bool {
        let pool = LayerSpec::Pooling {
            pool_h: 2,
            pool_w: 2,
            stride: 2,
            pad: 0,
        };
        i + 2 < layers.len() && layers[i + 1].spec() == LayerSpec::Relu && layers[i + 2].spec() == pool
    }

    /// Runs the layers in inference mode, keeping their outputs in
    /// `activations`; returns the logits. With `take_relus`, a ReLU that the
    /// next layer takes on ([`Layer::forward_after_relu`]: a 2x2 pool, or a
    /// convolution of stride 1 over several channels) leaves its own output
    /// unwritten, and so do a layer and the ReLU after it where the layer
    /// takes on that ReLU and the 2x2 pool after it
    /// ([`Layer::forward_relu_pool`]: a convolution of stride 1 over one
    /// channel or with a pad at least as wide as its filter, or one that
    /// goes by Winograd), the ReLU before it too where it can; without,
    /// every layer's output is there.
    fn forward_into<'a>(
        layers: &[Box<dyn Layer<T>>],
        x: &Tensor<T>,
        activations: &'a mut [Tensor<T>],
        take_relus: bool,
    ) -> &'a Tensor<T> {
        let mut i = 0;
        while i < layers.len() {
            let (done, rest) = activations.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            if take_relus
                && Self::relu_with_successor(layers, i)
                && Self::relu_pool_after(layers, i + 1)
                && layers[i + 1].forward_relu_pool(input, true, &mut rest[3])
            {
                i += 4;
                continue;
            }
            if take_relus
                && Self::relu_with_successor(layers, i)
                && layers[i + 1].forward_after_relu(input, &mut rest[1])
            {
                i += 2;
                continue;
            }
            if take_relus && Self::relu_pool_after(layers, i) && layers[i].forward_relu_pool(input, false, &mut rest[2])
            {
                i += 3;
                continue;
            }
            layers[i].forward(input, &mut rest[0]);
            i += 1;
        }
        &activations[layers.len() - 1]
    }

    /// [`Sequential::forward_into`] in training mode, noting in `taken`
    /// which layers did the work of others.
    fn forward_train(&mut self, x: &Tensor<T>, rng: &mut LayerRng) -> &Tensor<T> {
        let count = self.layers.len();
        self.taken.clear();
        self.taken.resize(count, Taken::Nothing);
        let mut i = 0;
        while i < count {
            let (done, rest) = self.activations.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            let relu_next = Self::relu_with_successor(&self.layers, i);
            if relu_next
                && Self::relu_pool_after(&self.layers, i + 1)
                && self.layers[i + 1].forward_train_relu_pool(input, true, &mut rest[3], rng)
            {
                self.taken[i + 1] = Taken::ReluBeforeReluPoolAfter;
                i += 4;
                continue;
            }
            if relu_next && self.layers[i + 1].forward_train_after_relu(input, &mut rest[1], rng) {
                self.taken[i + 1] = Taken::ReluBefore;
                i += 2;
                continue;
            }
            if Self::relu_pool_after(&self.layers, i)
                && self.layers[i].forward_train_relu_pool(input, false, &mut rest[2], rng)
            {
                self.taken[i] = Taken::ReluPoolAfter;
                i += 3;
                continue;
            }
            self.layers[i].forward_train(input, &mut rest[0], rng);
            i += 1;
        }
        &self.activations[count - 1]
    }

    /// The logits (scores before softmax) for a batch `x` of shape
    /// `[N, input_size]` (or `[N, ...]` with as many values per row), in inference mode.
    pub fn predict(&mut self, x: &Tensor<T>) -> Result<&Tensor<T>, LayerError> {
        self.check_input(x)?;
        Ok(Self::forward_into(&self.layers, x, &mut self.activations, true))
    }

    /// Buffers for [`Sequential::predict_with`], one set per thread.
    pub fn new_scratch(&self) -> Vec<Tensor<T>> {
        vec![Tensor::zeros(&[0]); self.layers.len()]
    }

    /// [`Sequential::predict`] through caller-owned buffers, so that several
    /// threads can evaluate one shared model. Afterwards `scratch[i]` holds
    /// layer `i`'s output, every layer's (a page showing a network's
    /// feature maps reads them): no layer does another's work here. Where
    /// [`Sequential::predict`] has a convolution take on the ReLU and pool
    /// after it by the direct sums (one channel, as SimpleConvNet's), the
    /// logits may differ from these in the last bits (the sums go in
    /// another order); elsewhere they are the same.
    pub fn predict_with<'a>(
        &self,
        x: &Tensor<T>,
        scratch: &'a mut Vec<Tensor<T>>,
    ) -> Result<&'a Tensor<T>, LayerError> {
        self.check_input(x)?;
        scratch.resize(self.layers.len(), Tensor::zeros(&[0]));
        Ok(Self::forward_into(&self.layers, x, scratch, false))
    }

    /// [`Sequential::predict_with`] with `round` applied to the input and to
    /// every layer's output before the next layer reads it: arithmetic in a
    /// narrower format (float16, bfloat16) simulated in `T`, each value
    /// rounded where that format would store it.
    pub fn predict_rounded_with<'a>(
        &self,
        x: &mut Tensor<T>,
        scratch: &'a mut Vec<Tensor<T>>,
        round: &dyn Fn(&mut [T]),
    ) -> Result<&'a Tensor<T>, LayerError> {
        self.check_input(x)?;
        scratch.resize(self.layers.len(), Tensor::zeros(&[0]));
        // Layer by layer, no ReLU taken into the next layer: each output is
        // rounded where the narrower format would store it.
        round(x.as_mut_slice());
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = scratch.split_at_mut(i);
            let input = if i == 0 { &*x } else { &done[i - 1] };
            layer.forward(input, &mut rest[0]);
            round(rest[0].as_mut_slice());
        }
        Ok(&scratch[self.layers.len() - 1])
    }

    /// `lambda / 2 * sum(W^2)` over the decaying parameters (0 without weight decay).
    pub fn weight_decay_loss(&self) -> f64 {
        if self.weight_decay == 0.0 {
            return 0.0;
        }
        let mut sum_sq = 0.0f64;
        self.visit_state(&mut |state| {
            if let State::Param { param, .. } = state {
                if param.decays {
                    sum_sq += param
                        .value
                        .as_slice()
                        .iter()
                        .map(|v| v.to_f64() * v.to_f64())
                        .sum::<f64>();
                }
            }
        });
        0.5 * self.weight_decay * sum_sq
    }

    /// Mean cross-entropy loss on a batch in inference mode, plus weight decay.
    pub fn loss(&mut self, x: &Tensor<T>, target: Target<'_, T>) -> Result<T, LayerError> {
        self.check_target(x, target)?;
        let logits = Self::forward_into(&self.layers, x, &mut self.activations, true);
        let loss = self.loss_layer.forward(logits, target);
        Ok(loss + T::from_f64(self.weight_decay_loss()))
    }

    /// The training-mode loss (what [`Sequential::gradient`] differentiates),
    /// without the boundary checks.
    pub fn loss_train_unchecked(&mut self, x: &Tensor<T>, target: Target<'_, T>, rng: &mut LayerRng) -> T {
        self.forward_train(x, rng);
        let logits = &self.activations[self.layers.len() - 1];
        let loss = self.loss_layer.forward(logits, target);
        if self.weight_decay == 0.0 {
            loss
        } else {
            loss + T::from_f64(self.weight_decay_loss())
        }
    }

    /// Fraction of rows whose largest logit is at the label (inference
    /// mode). Shares the model (`&self`): the layer outputs go to buffers of
    /// its own, made for this call.
    pub fn accuracy(&self, x: &Tensor<T>, labels: &[usize]) -> Result<f64, LayerError> {
        self.check_target(x, Target::Labels(labels))?;
        let mut scratch = self.new_scratch();
        let logits = Self::forward_into(&self.layers, x, &mut scratch, true);
        let correct = (0..logits.rows())
            .filter(|&i| logits.row_argmax(i) == labels[i])
            .count();
        Ok(if labels.is_empty() {
            0.0
        } else {
            correct as f64 / labels.len() as f64
        })
    }

    /// Backprop: one training-mode forward pass (drawing from `rng`) and one
    /// backward pass. Leaves `dL/dparam` in the layers (see
    /// [`Sequential::params`]) and returns the loss.
    pub fn gradient(&mut self, x: &Tensor<T>, target: Target<'_, T>, rng: &mut LayerRng) -> Result<T, LayerError> {
        self.check_target(x, target)?;
        Ok(self.gradient_unchecked(x, target, rng))
    }

    /// [`Sequential::gradient`] without the boundary checks: for the training
    /// loop, whose batches are built to fit.
    pub fn gradient_unchecked(&mut self, x: &Tensor<T>, target: Target<'_, T>, rng: &mut LayerRng) -> T {
        let loss = self.loss_train_unchecked(x, target, rng);
        let last = self.layers.len() - 1;
        self.loss_layer.backward(T::ONE, &mut self.grads[last]);
        let mut end = self.layers.len();
        while end > 0 {
            // The group of layers ending at `end - 1`, run backward by the
            // one that did their work: a layer that did the ReLU before it
            // takes its gradient back through both, one that did the ReLU
            // and the pool after it through all three; the others' steps
            // are skipped.
            let last = end - 1;
            let (first, owner) = match (last.checked_sub(2).map(|i| self.taken[i]), self.taken[last]) {
                (Some(Taken::ReluPoolAfter), _) => (last - 2, last - 2),
                (Some(Taken::ReluBeforeReluPoolAfter), _) => (last - 3, last - 2),
                (_, Taken::ReluBefore) => (last - 1, last),
                _ => (last, last),
            };
            let (lower, upper) = self.grads.split_at_mut(first);
            let grad_output = &upper[last - first];
            // The first layer's input is data: its gradient is never needed.
            let (input, grad_input) = if first == 0 {
                (x, None)
            } else {
                (&self.activations[first - 1], Some(&mut lower[first - 1]))
            };
            let output = &self.activations[last];
            let layer = &mut self.layers[owner];
            let done = match self.taken[owner] {
                Taken::Nothing => {
                    layer.backward(input, output, grad_output, grad_input);
                    true
                }
                Taken::ReluBefore => layer.backward_after_relu(input, output, grad_output, grad_input),
                Taken::ReluPoolAfter => layer.backward_relu_pool(input, false, (output, grad_output), grad_input),
                Taken::ReluBeforeReluPoolAfter => {
                    layer.backward_relu_pool(input, true, (output, grad_output), grad_input)
                }
            };
            assert!(
                done,
                "{}: took other layers' work forward but not backward",
                layer.name()
            );
            end = first;
        }
        if self.weight_decay != 0.0 {
            let lambda = T::from_f64(self.weight_decay);
            self.visit_params_mut(&mut |_, p| {
                if p.decays {
                    p.grad.axpy(lambda, p.value);
                }
            });
        }
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::numerical_gradient;
    use crate::{Mlp, OptimizerConfig, OptimizerKind, Relu};
    use rand::SeedableRng;

    fn toy_batch(rows: usize, cols: usize, seed: u64) -> Tensor<f64> {
        let mut rng = LayerRng::seed_from_u64(seed);
        Tensor::randn(&[rows, cols], 1.0, &mut rng)
    }

    #[test]
    fn boundary_errors_are_typed() {
        let mut net = Mlp::two_layer_net(4, 3, 2).build::<f32>(0).unwrap();
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
        let mut rng = LayerRng::seed_from_u64(0);
        assert!(matches!(
            net.gradient(&x, Target::Labels(&[0, 2]), &mut rng),
            Err(LayerError::LabelOutOfRange { label: 2, .. })
        ));
        assert!(matches!(
            net.set_tensor("W1", &[3, 4], &[0.0; 12]),
            Err(LayerError::ParamShape { .. })
        ));
        assert!(matches!(
            net.set_tensor("W9", &[4, 3], &[0.0; 12]),
            Err(LayerError::MissingParam { .. })
        ));
        net.set_tensor("W1", &[4, 3], &[0.5; 12]).unwrap();
        assert_eq!(net.params()[0].value.as_slice(), &[0.5; 12]);
    }

    #[test]
    fn any_list_of_layers_is_checked_when_built() {
        let affine = |i, o| {
            Box::new(crate::Affine::<f32>::new(Tensor::zeros(&[i, o]), Tensor::zeros(&[o]))) as Box<dyn Layer<f32>>
        };
        // A free-form model: two Affine layers back to back, a ReLU between the next.
        let model = Sequential::new(&[4], vec![affine(4, 6), affine(6, 5), Box::new(Relu), affine(5, 3)]).unwrap();
        assert_eq!(model.param_names(), ["W1", "b1", "W2", "b2", "W3", "b3"]);
        assert_eq!(model.output_size(), 3);
        let err = Sequential::new(&[4], vec![affine(4, 6), affine(5, 3)]).unwrap_err();
        assert!(err.to_string().contains("6 values"), "{err}");
        assert_eq!(
            err,
            LayerError::InputMisfit {
                layer: "Affine",
                input: vec![6],
                takes: crate::Takes::Values(5)
            }
        );
        assert!(
            Sequential::<f32>::new(&[4], vec![Box::new(Relu)]).is_ok(),
            "scores straight from the input"
        );
        assert!(matches!(
            Sequential::<f32>::new(&[4], vec![]),
            Err(LayerError::OutOfRange {
                what: "the number of layers",
                value: 0,
                ..
            })
        ));
        assert!(matches!(
            Sequential::<f32>::new(&[0], vec![Box::new(Relu)]),
            Err(LayerError::OutOfRange {
                what: "an example's dimensions",
                value: 0,
                ..
            })
        ));
        assert_eq!(
            Sequential::<f32>::new(&[2, 3], vec![Box::new(Relu)]).unwrap_err(),
            LayerError::OutputNotScores { output: vec![2, 3] }
        );
        // Two BatchNorms after the same Affine would share the names gamma1 and beta1.
        let specs = [
            LayerSpec::Affine { inputs: 4, outputs: 3 },
            LayerSpec::BatchNorm {
                features: 3,
                momentum: 0.9,
                eps: 1e-6,
            },
            LayerSpec::BatchNorm {
                features: 3,
                momentum: 0.9,
                eps: 1e-6,
            },
        ];
        let err = Sequential::<f32>::from_specs(&[4], &specs).unwrap_err();
        assert!(err.to_string().contains("named beta1"), "{err}");
        assert_eq!(
            err,
            LayerError::DuplicateTensorName {
                name: "beta1".into(),
                first: 2,
                second: 3
            }
        );
        // Specs are bounded before anything is allocated.
        let huge = [
            LayerSpec::Affine {
                inputs: 60000,
                outputs: 60000,
            },
            LayerSpec::Affine {
                inputs: 60000,
                outputs: 60000,
            },
        ];
        let err = Sequential::<f32>::from_specs(&[60000], &huge).unwrap_err();
        assert!(err.to_string().contains("parameters"), "{err}");
        assert_eq!(
            err,
            LayerError::TooManyParams {
                params: 2 * (60000 * 60000 + 60000),
                max: MAX_PARAMS
            }
        );
    }

    /// `model`'s loss, logits and gradients against its layers run one by
    /// one, each on its own (no layer doing another's work): the same bits
    /// with `tolerance` 0, else each value within `tolerance` of the other
    /// (relative to the largest of its kind). Returns what each layer took on.
    fn check_against_layer_by_layer(
        mut model: Sequential<f64>,
        x: &Tensor<f64>,
        labels: &[usize],
        tolerance: f64,
    ) -> Vec<Taken> {
        let loss = model
            .gradient(x, Target::Labels(labels), &mut LayerRng::seed_from_u64(1))
            .unwrap();
        let mut layers: Vec<Box<dyn Layer<f64>>> = model.layers.clone();
        let mut rng = LayerRng::seed_from_u64(1);
        let mut outputs = vec![Tensor::zeros(&[0]); layers.len()];
        for i in 0..layers.len() {
            let (done, rest) = outputs.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            layers[i].forward_train(input, &mut rest[0], &mut rng);
        }
        let mut loss_layer = SoftmaxWithLoss::new();
        let last = layers.len() - 1;
        let expected_loss = loss_layer.forward(&outputs[last], Target::Labels(labels));
        let mut grads = vec![Tensor::zeros(&[0]); layers.len()];
        loss_layer.backward(1.0, &mut grads[last]);
        for i in (0..layers.len()).rev() {
            let (lower, upper) = grads.split_at_mut(i);
            let (input, grad_input) = if i == 0 {
                (x, None)
            } else {
                (&outputs[i - 1], Some(&mut lower[i - 1]))
            };
            layers[i].backward(input, &outputs[i], &upper[0], grad_input);
        }
        let same = |what: &str, got: &[f64], expected: &[f64]| {
            assert_eq!(got.len(), expected.len(), "{what}");
            let scale = expected.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(expected).enumerate() {
                if tolerance == 0.0 {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what} {i}: {a} {b}");
                } else {
                    assert!((a - b).abs() <= tolerance * scale, "{what} {i}: {a} {b}");
                }
            }
        };
        same("loss", &[loss], &[expected_loss]);
        same("logits", model.predict(x).unwrap().as_slice(), outputs[last].as_slice());
        for (got, expected) in model.layers.iter().zip(&layers) {
            let grads_of = |layer: &dyn Layer<f64>| {
                let mut all = Vec::new();
                layer.visit_params(&mut |p| all.push(p.grad.as_slice().to_vec()));
                all
            };
            for (got, expected) in grads_of(got.as_ref()).iter().zip(&grads_of(expected.as_ref())) {
                same("a parameter's gradient", got, expected);
            }
        }
        model.taken.clone()
    }

    #[test]
    fn a_relu_taken_into_the_next_layer_gives_the_same_bits() {
        // conv -> ReLU -> conv (takes the ReLU) -> ReLU -> pool (takes the
        // ReLU) -> affine -> ReLU -> affine (does not).
        let model = crate::NetSpec::new(&[2, 6, 6])
            .conv_with(3, 3, 1, 1)
            .relu()
            .conv_with(4, 3, 1, 1)
            .relu()
            .pool(2)
            .affine(5)
            .relu()
            .affine(3)
            .init(crate::Init::He)
            .build::<f64>(5)
            .unwrap();
        let x = Tensor::<f64>::randn(&[4, 2, 6, 6], 1.0, &mut LayerRng::seed_from_u64(6));
        let took = check_against_layer_by_layer(model, &x, &[0, 2, 1, 2], 0.0);
        use Taken::{Nothing as O, ReluBefore as R};
        assert_eq!(took, [O, O, R, O, R, O, O, O]);
    }

    #[test]
    fn predict_with_keeps_every_layer_output() {
        let model = crate::NetSpec::new(&[2, 6, 6])
            .conv_with(3, 3, 1, 1)
            .relu()
            .pool(2)
            .affine(3)
            .build::<f64>(5)
            .unwrap();
        let x = Tensor::<f64>::randn(&[2, 2, 6, 6], 1.0, &mut LayerRng::seed_from_u64(6));
        let mut scratch = model.new_scratch();
        model.predict_with(&x, &mut scratch).unwrap();
        assert_eq!(scratch[1].shape(), [2, 3, 6, 6], "the ReLU's output is kept");
        let mut relu_out = Tensor::zeros(&[0]);
        model.layers[1].forward(&scratch[0], &mut relu_out);
        assert_eq!(scratch[1], relu_out);
    }

    #[test]
    fn a_first_relu_two_relus_in_a_row_and_a_pool_that_declines() {
        // ReLU first (the pool takes it; no input gradient to write), two
        // ReLUs in a row (the second taken by nothing: a 2x2 pool of
        // stride 1 declines).
        let model = crate::NetSpec::new(&[2, 6, 6])
            .relu()
            .pool(2)
            .relu()
            .relu()
            .pool_with(2, 1, 0)
            .affine(3)
            .build::<f64>(7)
            .unwrap();
        let x = Tensor::<f64>::randn(&[3, 2, 6, 6], 1.0, &mut LayerRng::seed_from_u64(8));
        let took = check_against_layer_by_layer(model, &x, &[1, 0, 2], 0.0);
        use Taken::{Nothing as O, ReluBefore as R};
        assert_eq!(took, [O, R, O, O, O, O]);
    }

    /// DeepConvNet's pattern, ReLU -> convolution by Winograd -> ReLU ->
    /// pool: the convolution takes on all four, with the layers' bits.
    #[test]
    fn a_relu_before_and_a_relu_and_pool_after_taken_by_winograd() {
        use Taken::{Nothing as O, ReluBeforeReluPoolAfter as B};
        let model = crate::NetSpec::new(&[16, 8, 8])
            .conv_with(16, 3, 1, 1)
            .relu()
            .conv_with(16, 3, 1, 1)
            .relu()
            .pool(2)
            .affine(3)
            .init(crate::Init::He)
            .build::<f64>(5)
            .unwrap();
        let x = Tensor::<f64>::randn(&[6, 16, 8, 8], 1.0, &mut LayerRng::seed_from_u64(6));
        let took = check_against_layer_by_layer(model, &x, &[0, 2, 1, 2, 1, 0], 0.0);
        assert_eq!(took, [O, O, B, O, O, O]);
    }

    /// A convolution over one channel first (no input gradient), and one
    /// behind another over three channels with a pad as wide as its filter
    /// (an input gradient through it), each taking on the ReLU and the pool
    /// after it: the three layers' values up to rounding, gradients that
    /// match the central differences, the same bits on any thread count.
    #[test]
    fn a_relu_and_pool_taken_into_the_convolution_before_them() {
        use Taken::{Nothing as O, ReluPoolAfter as P};
        let first = crate::NetSpec::new(&[1, 10, 9])
            .conv_with(4, 3, 1, 0)
            .relu()
            .pool(2)
            .affine(3)
            .init(crate::Init::He)
            .build::<f64>(5)
            .unwrap();
        let x = Tensor::<f64>::randn(&[6, 1, 10, 9], 1.0, &mut LayerRng::seed_from_u64(6));
        let labels = [0, 2, 1, 2, 1, 0];
        let took = check_against_layer_by_layer(first.clone(), &x, &labels, 1e-13);
        assert_eq!(took, [P, O, O, O]);
        let mut behind = crate::NetSpec::new(&[2, 7, 7])
            .conv_with(3, 3, 1, 1)
            .relu()
            .conv_with(5, 2, 1, 2)
            .relu()
            .pool(2)
            .affine(3)
            .init(crate::Init::He)
            .build::<f64>(7)
            .unwrap();
        // Biases away from 0: a window wholly in the padding outputs its
        // bias, where a zero one meets the ReLU's kink.
        let mut rng = LayerRng::seed_from_u64(9);
        behind.visit_params_mut(&mut |_, p| {
            if !p.decays {
                let shift = Tensor::randn(p.value.shape(), 0.5, &mut rng);
                p.value.axpy(1.0, &shift);
            }
        });
        let x_behind = Tensor::<f64>::randn(&[6, 2, 7, 7], 1.0, &mut LayerRng::seed_from_u64(8));
        let took = check_against_layer_by_layer(behind.clone(), &x_behind, &labels, 1e-13);
        assert_eq!(took, [O, O, P, O, O, O]);
        for (model, x) in [(first, &x), (behind, &x_behind)] {
            let mut analytic = model.clone();
            analytic
                .gradient(x, Target::Labels(&labels), &mut LayerRng::seed_from_u64(1))
                .unwrap();
            let numerical = numerical_gradient(&model, x, Target::Labels(&labels), 1e-5, 1).unwrap();
            for (param, (name, numerical)) in analytic.params().iter().zip(&numerical) {
                let error = crate::gradcheck::relative_error(param.grad.as_slice(), numerical.as_slice());
                assert!(error < 1e-6, "{name}: relative error {error}");
            }
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut model = model.clone();
                pool.install(|| {
                    model
                        .gradient(x, Target::Labels(&labels), &mut LayerRng::seed_from_u64(1))
                        .unwrap();
                });
                model
                    .params()
                    .iter()
                    .flat_map(|p| p.grad.as_slice().to_vec())
                    .map(f64::to_bits)
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(1), run(3));
        }
    }

    #[test]
    fn specs_rebuild_the_same_architecture() {
        let model = Mlp::new(&[6, 5, 4, 3])
            .batch_norm(true)
            .dropout(Some(0.25))
            .build::<f32>(3)
            .unwrap();
        let rebuilt = Sequential::<f32>::from_specs(model.input_shape(), &model.specs()).unwrap();
        assert_eq!(rebuilt.specs(), model.specs());
        assert_eq!(rebuilt.param_names(), model.param_names());
        // Buffers load like parameters.
        let mut rebuilt = rebuilt;
        rebuilt.set_tensor("running_var2", &[4], &[2.0; 4]).unwrap();
        assert_eq!(rebuilt.buffers()[3].1.as_slice(), &[2.0; 4]);
    }

    #[test]
    fn numerical_gradient_does_not_depend_on_thread_count() {
        let net = Mlp::new(&[6, 4, 3])
            .init(crate::Init::Std(0.3))
            .dropout(Some(0.3))
            .build::<f64>(5)
            .unwrap();
        let x = toy_batch(2, 6, 6);
        let labels = [2usize, 1];
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| numerical_gradient(&net, &x, Target::Labels(&labels), 1e-4, 9).unwrap())
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn a_step_lowers_the_loss_and_evaluation_shares_the_model() {
        let mut net = Mlp::new(&[5, 8, 3])
            .init(crate::Init::Std(0.5))
            .build::<f64>(1)
            .unwrap();
        let x = toy_batch(6, 5, 2);
        let labels = [0usize, 1, 2, 0, 1, 2];
        let mut optimizer = OptimizerConfig::new(OptimizerKind::Sgd)
            .with_learning_rate(0.5)
            .build(&net)
            .unwrap();
        let mut rng = LayerRng::seed_from_u64(0);
        let first = net.gradient(&x, Target::Labels(&labels), &mut rng).unwrap();
        for _ in 0..200 {
            net.gradient(&x, Target::Labels(&labels), &mut rng).unwrap();
            optimizer.step(&mut net);
        }
        let last = net.loss(&x, Target::Labels(&labels)).unwrap();
        assert!(last < first * 0.1, "{first} -> {last}");
        assert_eq!(net.accuracy(&x, &labels).unwrap(), 1.0);
        let mut scratch = net.new_scratch();
        let shared = net.predict_with(&x, &mut scratch).unwrap().clone();
        assert_eq!(&shared, net.predict(&x).unwrap());
    }
}
