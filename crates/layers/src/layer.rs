use crate::{LayerError, LayerSpec};
use rand_chacha::ChaCha8Rng;
use tensor::{Element, Tensor};

/// The random stream a layer draws from in training mode (Dropout's masks).
/// The caller owns and seeds it, so a run is reproducible from its seed.
pub type LayerRng = ChaCha8Rng;

/// The layers' stream of `seed`: stream 2 of its ChaCha8 generator (stream 0
/// draws the initial weights, stream 1 the training batches), so that masks
/// never reuse the numbers the weights were drawn from.
pub fn layer_stream(seed: u64) -> LayerRng {
    use rand::SeedableRng;
    let mut rng = LayerRng::seed_from_u64(seed);
    rng.set_stream(2);
    rng
}

/// A trainable parameter as a layer shows it: what kind it is, its value and
/// its gradient. [`crate::Sequential`] gives it its name (`W1`, `gamma2`, ...).
pub struct Param<'a, T> {
    /// `"W"`, `"b"`, `"gamma"`, `"beta"`: the name without its number.
    pub kind: &'static str,
    /// The parameter's current value.
    pub value: &'a Tensor<T>,
    /// `dL/d(value)` from the last backward pass; the value's shape.
    pub grad: &'a Tensor<T>,
    /// Whether weight decay applies: weight matrices yes, biases and
    /// BatchNorm's scale and shift no (the book's `MultiLayerNetExtend`).
    pub decays: bool,
}

/// A [`Param`] with the value and the gradient writable (optimizers,
/// numerical gradients, loading, weight decay).
pub struct ParamMut<'a, T> {
    /// As [`Param::kind`].
    pub kind: &'static str,
    /// The parameter's value, writable.
    pub value: &'a mut Tensor<T>,
    /// `dL/d(value)`, writable (weight decay adds `lambda * W` to it).
    pub grad: &'a mut Tensor<T>,
    /// As [`Param::decays`].
    pub decays: bool,
}

/// A differentiable step of a network.
///
/// Shapes: `input` is `[batch, ...]`; `forward` resizes `output` (reusing its
/// allocation) and fills it. `backward` receives the same `input` and
/// `output` as the forward pass, and `grad_output = dL/d(output)`; it writes
/// `grad_input = dL/d(input)` (skipped when `None`, as for the first layer,
/// whose input is data) and *overwrites* the layer's parameter gradients, so
/// calling it twice gives the same result. It never writes into `grad_output`
/// (the borrow is shared).
///
/// Passing the forward tensors back into `backward` (as llm.c does) instead of
/// caching them keeps most layers free of hidden copies and lets one layer
/// value serve several threads in evaluation.
///
/// **Modes.** [`Layer::forward`] is inference: `&self`, so evaluation threads
/// share one model. [`Layer::forward_train`] is training: it may draw from the
/// caller's random stream (Dropout), use batch statistics and update running
/// ones (BatchNorm), and keep what its `backward` needs. Layers that behave
/// the same in both modes keep the default, which calls `forward`; `backward`
/// always follows a `forward_train`.
///
/// **State.** Trainable parameters are reached through
/// [`Layer::visit_params`] / [`Layer::visit_params_mut`]; state that is saved
/// but not trained (BatchNorm's running mean and variance) through
/// [`Layer::visit_buffers`] / [`Layer::visit_buffers_mut`], in a fixed order.
pub trait Layer<T: Element>: Send + Sync {
    /// A short name for reports: `"Affine"`, `"Relu"`, ...
    fn name(&self) -> &'static str;

    /// What rebuilds this layer (without its values): the checkpoint's
    /// architecture entry.
    fn spec(&self) -> LayerSpec;

    /// The shape of one example's output for one example's input shape (the
    /// batch dimension left out), or why this input does not fit: the
    /// spec's [`LayerSpec::output_shape`], the one place the rule is written.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError> {
        self.spec().output_shape(input)
    }

    /// Inference-mode forward pass.
    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>);

    /// Training-mode forward pass; the same as [`Layer::forward`] unless the
    /// layer differs between modes.
    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        self.forward(input, output);
    }

    /// Backward pass after a [`Layer::forward_train`] on `input` that gave
    /// `output`: overwrites the parameter gradients and, when `grad_input`
    /// is `Some`, resizes it to `input`'s shape and writes `dL/d(input)`.
    /// `grad_output` must have `output`'s shape.
    fn backward(
        &mut self,
        input: &Tensor<T>,
        output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    );

    /// [`Layer::forward`] on `relu(pre_relu)`, without `relu(pre_relu)`
    /// written out: a ReLU just before this layer, done inside it (the
    /// book's ReLU -> max pool, where the pool reads each tap through the
    /// ReLU: a pass over the convolution's output saved each way). Must give
    /// the bits of the ReLU's forward followed by this layer's. Returns
    /// `false`, having done nothing, where this layer cannot (the default):
    /// the ReLU then runs on its own.
    fn forward_after_relu(&self, _pre_relu: &Tensor<T>, _output: &mut Tensor<T>) -> bool {
        false
    }

    /// [`Layer::forward_after_relu`] in training mode, keeping what
    /// [`Layer::backward_after_relu`] needs; `false` (doing nothing) where
    /// this layer cannot.
    fn forward_train_after_relu(
        &mut self,
        _pre_relu: &Tensor<T>,
        _output: &mut Tensor<T>,
        _rng: &mut LayerRng,
    ) -> bool {
        false
    }

    /// Backward after a [`Layer::forward_train_after_relu`] on `pre_relu`
    /// that gave `output`: overwrites the parameter gradients and, when
    /// `grad_pre_relu` is `Some`, resizes it to `pre_relu`'s shape and writes
    /// `dL/d(pre_relu)`, through this layer and the ReLU, bit for bit as
    /// their two backward passes would. Must return `true` (and do this)
    /// whenever `forward_train_after_relu` did on that input, which
    /// [`crate::Sequential`] asserts; `false` (doing nothing) otherwise.
    fn backward_after_relu(
        &mut self,
        _pre_relu: &Tensor<T>,
        _output: &Tensor<T>,
        _grad_output: &Tensor<T>,
        _grad_pre_relu: Option<&mut Tensor<T>>,
    ) -> bool {
        false
    }

    /// [`Layer::forward`], then a ReLU and the book's 2x2 max pool of stride
    /// 2, into `pooled`, without this layer's output or the ReLU's written
    /// out (SimpleConvNet's convolution -> ReLU -> pool, DeepConvNet's
    /// second, fourth and sixth: the pool writes a quarter of what it
    /// reads). With `relu_first`, `input` is a ReLU's input, taken in
    /// through it as [`Layer::forward_after_relu`] does. Must give the
    /// layers' values up to rounding (the sums may go in another order than
    /// this layer's own forward pass), the same for any thread count.
    /// Returns `false`, having done nothing, where this layer cannot (the
    /// default): the layers then run on their own.
    fn forward_relu_pool(&self, _input: &Tensor<T>, _relu_first: bool, _pooled: &mut Tensor<T>) -> bool {
        false
    }

    /// [`Layer::forward_relu_pool`] in training mode, keeping what
    /// [`Layer::backward_relu_pool`] needs; `false` (doing nothing) where
    /// this layer cannot.
    fn forward_train_relu_pool(
        &mut self,
        _input: &Tensor<T>,
        _relu_first: bool,
        _pooled: &mut Tensor<T>,
        _rng: &mut LayerRng,
    ) -> bool {
        false
    }

    /// Backward after a [`Layer::forward_train_relu_pool`] on `input` (with
    /// the same `relu_first`) that gave `pooled`: from `dL/d(pooled)`
    /// through the pool, the ReLU and this layer (and the ReLU before it),
    /// overwrites the parameter gradients and, when `grad_input` is `Some`,
    /// resizes it to `input`'s shape and writes `dL/d(input)`: the layers'
    /// backward passes' values up to rounding. Must return `true` (and do
    /// this) whenever `forward_train_relu_pool` did on that input, which
    /// [`crate::Sequential`] asserts; `false` (doing nothing) where the
    /// layer cannot take them on. It may panic where it can but the last
    /// training forward pass was not a `forward_train_relu_pool` on this
    /// batch.
    fn backward_relu_pool(
        &mut self,
        _input: &Tensor<T>,
        _relu_first: bool,
        (_pooled, _grad_pooled): (&Tensor<T>, &Tensor<T>),
        _grad_input: Option<&mut Tensor<T>>,
    ) -> bool {
        false
    }

    /// Whether this layer's parameters start a new number in their names:
    /// Affine layers do (`W1 b1`, then `W2 b2`); a BatchNorm's take the
    /// number of the layer before it (`gamma1 beta1` after the first Affine).
    fn numbers_params(&self) -> bool {
        false
    }

    /// Calls `f` for each parameter, in a fixed order; none by default.
    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(Param<'a, T>)) {}

    /// Calls `f` for each parameter with the value and gradient writable.
    fn visit_params_mut(&mut self, _f: &mut dyn FnMut(ParamMut<'_, T>)) {}

    /// Calls `f(kind, tensor)` for each non-trainable saved tensor; none by default.
    fn visit_buffers<'a>(&'a self, _f: &mut dyn FnMut(&'static str, &'a Tensor<T>)) {}

    /// [`Layer::visit_buffers`] with the tensors writable (loading).
    fn visit_buffers_mut(&mut self, _f: &mut dyn FnMut(&'static str, &mut Tensor<T>)) {}

    /// A boxed copy of this layer, values and gradients included (what
    /// makes `Box<dyn Layer<T>>`, and so [`crate::Sequential`], `Clone`).
    fn clone_box(&self) -> Box<dyn Layer<T>>;
}

impl<T: Element> Clone for Box<dyn Layer<T>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Shows a weight `W` (decayed) and a bias `b` (not): Affine's and
/// Convolution's parameters, in that order.
pub(crate) fn visit_weight_and_bias<'a, T>(
    (w, grad_w): (&'a Tensor<T>, &'a Tensor<T>),
    (b, grad_b): (&'a Tensor<T>, &'a Tensor<T>),
    f: &mut dyn FnMut(Param<'a, T>),
) {
    f(Param {
        kind: "W",
        value: w,
        grad: grad_w,
        decays: true,
    });
    f(Param {
        kind: "b",
        value: b,
        grad: grad_b,
        decays: false,
    });
}

/// [`visit_weight_and_bias`] with the values and gradients writable.
pub(crate) fn visit_weight_and_bias_mut<T>(
    (w, grad_w): (&mut Tensor<T>, &mut Tensor<T>),
    (b, grad_b): (&mut Tensor<T>, &mut Tensor<T>),
    f: &mut dyn FnMut(ParamMut<'_, T>),
) {
    f(ParamMut {
        kind: "W",
        value: w,
        grad: grad_w,
        decays: true,
    });
    f(ParamMut {
        kind: "b",
        value: b,
        grad: grad_b,
        decays: false,
    });
}
