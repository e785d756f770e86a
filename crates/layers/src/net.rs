//! The builder: a network described by what each layer adds, its sizes
//! inferred from the input shape.
//!
//! A [`NetSpec`] starts from one example's shape (`[784]`, or `[1, 28, 28]`
//! for images) and lists [`LayerDef`]s, each naming only what it adds: an
//! Affine layer its outputs, a convolution its filters and window, a pool its
//! window. [`NetSpec::layer_specs`] walks the list once, computing every
//! layer's input size from the previous layer's output shape
//! ([`LayerSpec::output_shape`]) and bounding every size before anything is
//! allocated; [`NetSpec::build`] then draws the weights.
//!
//! **Initial weights.** Every weight tensor `W` (Affine `[inputs, outputs]`,
//! Convolution `[FN, C, FH, FW]`) is drawn as `std * N(0, 1)` with `std`
//! from the net's [`Init`] rule and that weight's own fan-in (`inputs`, or
//! `C * FH * FW`), in layer order from one ChaCha8 stream seeded by the
//! caller; biases start at 0, BatchNorm's scale at 1 and shift at 0. The
//! book's nets ([`Mlp`](crate::Mlp), [`SimpleConvNet`](crate::SimpleConvNet),
//! [`deep_convnet`](crate::NetSpec::deep_convnet)) are recipes over this builder.
//! Naming a layer changes no draw: the weights depend on the layers only.
//!
//! **Layer names.** [`NetSpec::name`] names the layer just added. A named
//! layer's tensors are `{name}.{kind}` (`stem.W`, `stem.b`; a BatchNorm's
//! `bn.gamma`, `bn.running_mean`) and it takes no number, so the unnamed
//! layers keep the book's names (`W1 b1 W2 b2`, `gamma1 beta1`) among
//! themselves. Inserting a named layer anywhere leaves every other tensor's
//! name, and so an older checkpoint's, as it was; inserting an unnamed
//! Affine or convolution renumbers the ones after it. A name is a plain
//! identifier (`[A-Za-z_][A-Za-z0-9_]*`) of at most
//! [`MAX_LAYER_NAME_LEN`](crate::MAX_LAYER_NAME_LEN) characters, used once,
//! that does not read as a book name (`W2`, `gamma1`); a bad one is refused
//! by [`NetSpec::layer_specs`] (and so [`NetSpec::build`]).
//!
//! ```
//! use layers::{Init, NetSpec};
//!
//! // conv -> BatchNorm -> ReLU -> pool -> affine, on 1x8x8 images, 3 classes.
//! let model = NetSpec::new(&[1, 8, 8])
//!     .conv(4, 3)
//!     .batch_norm()
//!     .relu()
//!     .pool(2)
//!     .affine(3)
//!     .init(Init::He)
//!     .build::<f32>(42)
//!     .unwrap();
//! // Every input size was inferred: 4 filters of 3x3 leave 4x6x6, the pool 4x3x3.
//! assert_eq!(model.summary(), "Conv(4x3x3 s1 p0) BatchNorm Relu Pool(2x2 s2 p0) Affine(36x3)");
//! assert_eq!(model.param_names(), ["W1", "b1", "gamma1", "beta1", "W2", "b2"]);
//!
//! // Name the convolution, and a BatchNorm inserted after it changes no other name.
//! let net = NetSpec::new(&[1, 8, 8]).conv(4, 3).name("stem");
//! let before = net.clone().relu().pool(2).affine(3).build::<f32>(42).unwrap();
//! let after = net.batch_norm().name("stem_bn").relu().pool(2).affine(3).build::<f32>(42).unwrap();
//! assert_eq!(before.param_names(), ["stem.W", "stem.b", "W1", "b1"]);
//! assert_eq!(
//!     after.param_names(),
//!     ["stem.W", "stem.b", "stem_bn.gamma", "stem_bn.beta", "W1", "b1"]
//! );
//! assert!(NetSpec::new(&[4]).affine(3).name("3x").build::<f32>(1).is_err());
//! ```

use crate::batch_norm::{BATCH_NORM_EPS, BATCH_NORM_MOMENTUM};
use crate::model::check_layer_names;
use crate::{Init, LayerError, LayerSpec, Sequential, Takes, MAX_PARAMS, MAX_WIDTH};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::{Element, Tensor};

/// The most layers a net may have: far deeper than anything here, small
/// enough that a file cannot ask for millions of layers.
pub const MAX_LAYERS: usize = 1000;

/// A layer as the builder takes it: only what it adds to its input. The
/// input sizes come from the layer before (see [`NetSpec::layer_specs`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerDef {
    /// A fully connected layer of `outputs` units; `[C, H, W]` input is flattened.
    Affine {
        /// Output units.
        outputs: usize,
    },
    /// `filters` filters of `size` (height, width) over every input channel.
    Conv {
        /// Number of filters: the output's channels.
        filters: usize,
        /// Filter height and width.
        size: (usize, usize),
        /// Step between windows.
        stride: usize,
        /// Zeros added on every side of the input.
        pad: usize,
    },
    /// Max pooling over windows of `size` on each channel.
    Pool {
        /// Window height and width.
        size: (usize, usize),
        /// Step between windows.
        stride: usize,
        /// Padding on every side.
        pad: usize,
    },
    /// `max(0, x)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// Batch normalization per feature (per channel for `[C, H, W]` input).
    BatchNorm {
        /// Weight of the old running statistics in their update.
        momentum: f64,
        /// Added to the variance before its square root.
        eps: f64,
    },
    /// Drops each value with probability `ratio` in training.
    Dropout {
        /// Probability of dropping a value, in `[0, 1)`.
        ratio: f64,
    },
}

impl LayerDef {
    /// The full spec of this layer on input of `shape`, and its output shape.
    fn resolve(&self, shape: &[usize]) -> Result<(LayerSpec, Vec<usize>), LayerError> {
        let spec = match *self {
            LayerDef::Affine { outputs } => LayerSpec::Affine {
                inputs: shape
                    .iter()
                    .try_fold(1usize, |n, &d| n.checked_mul(d))
                    .unwrap_or(usize::MAX),
                outputs,
            },
            LayerDef::Conv {
                filters,
                size: (filter_h, filter_w),
                stride,
                pad,
            } => LayerSpec::Convolution {
                channels: if shape.len() == 3 { shape[0] } else { 0 },
                filters,
                filter_h,
                filter_w,
                stride,
                pad,
            },
            LayerDef::Pool {
                size: (pool_h, pool_w),
                stride,
                pad,
            } => LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            },
            LayerDef::Relu => LayerSpec::Relu,
            LayerDef::Sigmoid => LayerSpec::Sigmoid,
            LayerDef::BatchNorm { momentum, eps } => LayerSpec::BatchNorm {
                features: shape.first().copied().unwrap_or(0),
                momentum,
                eps,
            },
            LayerDef::Dropout { ratio } => LayerSpec::Dropout { ratio },
        };
        // Before `validate`, which would refuse the 0 channels taken from a flat shape.
        if matches!(self, LayerDef::Conv { .. }) && shape.len() != 3 {
            return Err(LayerError::InputMisfit {
                layer: "Convolution",
                input: shape.to_vec(),
                takes: Takes::Image { channels: None },
            });
        }
        spec.validate()?;
        let output = spec.output_shape(shape)?;
        Ok((spec, output))
    }
}

/// A network as the builder takes it: the input shape, the layers by what
/// they add, the rule for the initial weights and the weight decay.
#[derive(Debug, Clone, PartialEq)]
pub struct NetSpec {
    /// One example's shape, without the batch dimension: `[784]` or `[1, 28, 28]`.
    pub input: Vec<usize>,
    /// The layers, first to last (the softmax-with-loss is implied).
    pub layers: Vec<LayerDef>,
    /// `names[i]` is `layers[i]`'s name (`None`: unnamed; see the module
    /// doc). The builder methods keep one entry per layer; layers pushed
    /// onto `layers` by hand are unnamed. More names than layers (a name
    /// given before the first layer) is an error of [`NetSpec::layer_specs`].
    pub names: Vec<Option<String>>,
    /// How every weight tensor is drawn.
    pub init: Init,
    /// L2 weight decay lambda (0: none); see [`Sequential::weight_decay`].
    pub weight_decay: f64,
}

impl NetSpec {
    /// An empty net over examples of `input` shape, weights `0.01 * N(0, 1)`
    /// (the book's default), no weight decay.
    pub fn new(input: &[usize]) -> Self {
        NetSpec {
            input: input.to_vec(),
            layers: Vec::new(),
            names: Vec::new(),
            init: Init::default(),
            weight_decay: 0.0,
        }
    }

    /// Appends any layer, unnamed.
    pub fn layer(mut self, layer: LayerDef) -> Self {
        // Layers pushed by hand have no entry yet: they are unnamed.
        if self.names.len() < self.layers.len() {
            self.names.resize(self.layers.len(), None);
        }
        self.layers.push(layer);
        self.names.push(None);
        self
    }

    /// Names the layer added last: its tensors become `{name}.{kind}`
    /// (`.conv(6, 5).name("stem")` gives `stem.W` and `stem.b`) and it takes
    /// no number (see the module doc). Naming it again replaces the name.
    /// The name is checked by [`NetSpec::layer_specs`], which refuses a name
    /// given before any layer, one that is not a plain identifier of at most
    /// [`MAX_LAYER_NAME_LEN`](crate::MAX_LAYER_NAME_LEN) characters or that
    /// reads as a book name (`W2`), and one given to two layers.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let name = Some(name.into());
        let layers = self.layers.len();
        if layers == 0 || self.names.len() > layers {
            // No layer to name: kept as an entry past the layers, which layer_specs refuses.
            self.names.push(name);
        } else {
            self.names.resize(layers, None);
            self.names[layers - 1] = name;
        }
        self
    }

    /// One name per layer (`None`: unnamed), as [`Sequential::with_layer_names`] takes them.
    pub fn layer_names(&self) -> Vec<Option<String>> {
        let mut names = self.names.clone();
        names.resize(self.layers.len(), None);
        names
    }

    /// Appends a fully connected layer of `outputs` units.
    pub fn affine(self, outputs: usize) -> Self {
        self.layer(LayerDef::Affine { outputs })
    }

    /// Appends `filters` square filters of side `size`, stride 1, no padding.
    pub fn conv(self, filters: usize, size: usize) -> Self {
        self.conv_with(filters, size, 1, 0)
    }

    /// Appends `filters` square filters of side `size` with a stride and padding.
    pub fn conv_with(self, filters: usize, size: usize, stride: usize, pad: usize) -> Self {
        self.layer(LayerDef::Conv {
            filters,
            size: (size, size),
            stride,
            pad,
        })
    }

    /// Appends a max pool of `size x size` windows that tile the input (stride `size`).
    pub fn pool(self, size: usize) -> Self {
        self.pool_with(size, size, 0)
    }

    /// Appends a max pool of `size x size` windows with a stride and padding.
    pub fn pool_with(self, size: usize, stride: usize, pad: usize) -> Self {
        self.layer(LayerDef::Pool {
            size: (size, size),
            stride,
            pad,
        })
    }

    /// Appends a ReLU.
    pub fn relu(self) -> Self {
        self.layer(LayerDef::Relu)
    }

    /// Appends a sigmoid.
    pub fn sigmoid(self) -> Self {
        self.layer(LayerDef::Sigmoid)
    }

    /// Appends a BatchNorm with the book's momentum (0.9) and eps (1e-6, [`BATCH_NORM_EPS`]).
    pub fn batch_norm(self) -> Self {
        self.layer(LayerDef::BatchNorm {
            momentum: BATCH_NORM_MOMENTUM,
            eps: BATCH_NORM_EPS,
        })
    }

    /// Appends a Dropout of `ratio`.
    pub fn dropout(self, ratio: f64) -> Self {
        self.layer(LayerDef::Dropout { ratio })
    }

    /// Sets the rule for the initial weights.
    pub fn init(self, init: Init) -> Self {
        NetSpec { init, ..self }
    }

    /// Sets the L2 weight decay lambda.
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        NetSpec { weight_decay, ..self }
    }

    /// Values per example: the product of the input shape.
    pub fn input_size(&self) -> usize {
        self.input.iter().product()
    }

    /// Every layer's full spec, its input sizes inferred from the previous
    /// layer's output, after checking the whole chain: the input shape,
    /// the layer names (see [`NetSpec::name`]), each layer's fit, at most
    /// [`MAX_LAYERS`] layers, at most
    /// [`MAX_PARAMS`] parameters, scores per class at the end. Nothing is
    /// allocated beyond the list.
    pub fn layer_specs(&self) -> Result<Vec<LayerSpec>, LayerError> {
        self.validate_settings()?;
        let mut shape = self.input.clone();
        let mut specs = Vec::with_capacity(self.layers.len());
        let mut params = 0usize;
        for (index, layer) in self.layers.iter().enumerate() {
            let (spec, output) = layer.resolve(&shape).map_err(|e| LayerError::AtLayer {
                index: index + 1,
                input: shape.clone(),
                source: Box::new(e),
            })?;
            params = params.saturating_add(spec.num_params());
            if params > MAX_PARAMS {
                return Err(LayerError::TooManyParams {
                    params,
                    max: MAX_PARAMS,
                });
            }
            specs.push(spec);
            shape = output;
        }
        if shape.len() != 1 {
            return Err(LayerError::OutputNotScores { output: shape });
        }
        Ok(specs)
    }

    /// The output shape of every layer for one example, first to last.
    pub fn output_shapes(&self) -> Result<Vec<Vec<usize>>, LayerError> {
        let mut shape = self.input.clone();
        self.layer_specs()?
            .iter()
            .map(|spec| {
                shape = spec.output_shape(&shape)?;
                Ok(shape.clone())
            })
            .collect()
    }

    fn validate_settings(&self) -> Result<(), LayerError> {
        check_example_shape(&self.input)?;
        if !(1..=MAX_LAYERS).contains(&self.layers.len()) {
            return Err(LayerError::OutOfRange {
                what: "the number of layers",
                value: self.layers.len(),
                min: 1,
                max: MAX_LAYERS,
            });
        }
        if self.names.len() > self.layers.len() {
            // A name given before any layer is one entry too many (see `name`).
            return Err(LayerError::LayerNameCount {
                names: self.names.len(),
                layers: self.layers.len(),
            });
        }
        check_layer_names(&self.names)?;
        self.init.validate()?;
        check_weight_decay(self.weight_decay)
    }

    /// The network, its layers named and its weights drawn from the stream
    /// seeded by `seed` (see the module doc).
    pub fn build<T: Element>(&self, seed: u64) -> Result<Sequential<T>, LayerError> {
        let specs = self.layer_specs()?;
        let mut model = Sequential::from_specs(&self.input, &specs)?
            .with_layer_names(self.layer_names())?
            .with_weight_decay(self.weight_decay)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let init = self.init;
        model.visit_params_mut(&mut |_, param| {
            if param.kind == "W" {
                // Fan-in: the inputs of an Affine `[inputs, outputs]`, the
                // `C * FH * FW` taps of a filter `[FN, C, FH, FW]`.
                let shape = param.value.shape().to_vec();
                let fan_in = if shape.len() == 4 {
                    shape[1..].iter().product()
                } else {
                    shape[0]
                };
                *param.value = Tensor::randn(&shape, init.std(fan_in), &mut rng);
            }
        });
        Ok(model)
    }
}

/// An example's shape, as a model takes it: 1 to 3 dimensions, each
/// between 1 and [`MAX_WIDTH`].
pub(crate) fn check_example_shape(shape: &[usize]) -> Result<(), LayerError> {
    if !(1..=3).contains(&shape.len()) {
        return Err(LayerError::OutOfRange {
            what: "an example's number of dimensions",
            value: shape.len(),
            min: 1,
            max: 3,
        });
    }
    if let Some(&value) = shape.iter().find(|&&d| !(1..=MAX_WIDTH).contains(&d)) {
        return Err(LayerError::OutOfRange {
            what: "an example's dimensions",
            value,
            min: 1,
            max: MAX_WIDTH,
        });
    }
    Ok(())
}

/// An L2 weight decay lambda: a finite number `>= 0`.
pub(crate) fn check_weight_decay(lambda: f64) -> Result<(), LayerError> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(LayerError::InvalidSetting {
            field: "weight_decay",
            value: lambda,
            expected: "a number >= 0",
        });
    }
    Ok(())
}

/// LeNet-5 on 28x28 MNIST (ReLU, max pooling), as the tests of the builder
/// and of the text form (`nets/lenet5.net`) both take it.
#[cfg(test)]
pub(crate) fn lenet5() -> NetSpec {
    NetSpec::new(&[1, 28, 28])
        .init(Init::He)
        .conv_with(6, 5, 1, 2)
        .relu()
        .pool(2)
        .conv(16, 5)
        .relu()
        .pool(2)
        .affine(120)
        .relu()
        .affine(84)
        .relu()
        .affine(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_inferred_and_checked() {
        let lenet = super::lenet5();
        let shapes = lenet.output_shapes().unwrap();
        assert_eq!(shapes[0], [6, 28, 28]);
        assert_eq!(shapes[3], [16, 10, 10]);
        assert_eq!(shapes[5], [16, 5, 5]);
        assert_eq!(
            lenet.layer_specs().unwrap()[6],
            LayerSpec::Affine {
                inputs: 400,
                outputs: 120
            }
        );
        let model = lenet.build::<f32>(1).unwrap();
        assert_eq!(
            model.param_names(),
            ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "W5", "b5"]
        );

        // Each failure names the layer and its input.
        let err = NetSpec::new(&[1, 8, 8]).conv(4, 9).affine(2).layer_specs().unwrap_err();
        assert!(err.to_string().contains("layer 1"), "{err}");
        assert!(err.to_string().contains("does not fit"), "{err}");
        let LayerError::AtLayer { index: 1, source, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(
                *source,
                LayerError::InputMisfit {
                    layer: "Convolution",
                    takes: Takes::Window { window: (9, 9), .. },
                    ..
                }
            ),
            "{source:?}"
        );
        let err = NetSpec::new(&[784]).affine(10).conv(4, 3).layer_specs().unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 2 (on input [10]): a Convolution takes [C, H, W] per example, not [10]; put convolutions before the first Affine layer"
        );
        let err = NetSpec::new(&[1, 8, 8]).conv(4, 3).layer_specs().unwrap_err();
        assert!(err.to_string().contains("end with an Affine"), "{err}");
        assert_eq!(err, LayerError::OutputNotScores { output: vec![4, 6, 6] });
        let err = NetSpec::new(&[784])
            .affine(65536)
            .affine(65536)
            .layer_specs()
            .unwrap_err();
        assert!(matches!(err, LayerError::TooManyParams { .. }), "{err}");
        let out_of_range = |net: NetSpec| match net.layer_specs() {
            Err(LayerError::OutOfRange { what, value, .. }) => (what, value),
            other => panic!("{other:?}"),
        };
        assert_eq!(out_of_range(NetSpec::new(&[784])), ("the number of layers", 0));
        let deep = NetSpec {
            layers: vec![LayerDef::Relu; MAX_LAYERS + 1],
            ..NetSpec::new(&[784])
        };
        assert_eq!(out_of_range(deep), ("the number of layers", MAX_LAYERS + 1));
        assert_eq!(
            out_of_range(NetSpec::new(&[0]).affine(2)),
            ("an example's dimensions", 0)
        );
        assert_eq!(
            out_of_range(NetSpec::new(&[1, 1, 1, 1]).affine(2)),
            ("an example's number of dimensions", 4)
        );
        assert!(matches!(
            NetSpec::new(&[4]).affine(2).weight_decay(-1.0).layer_specs(),
            Err(LayerError::InvalidSetting {
                field: "weight_decay",
                ..
            })
        ));
    }

    #[test]
    fn weights_follow_each_ones_fan_in() {
        let model = NetSpec::new(&[2, 12, 12])
            .conv(64, 3)
            .relu()
            .affine(400)
            .init(Init::He)
            .build::<f64>(7)
            .unwrap();
        let params = model.params();
        let std = |t: &Tensor<f64>| (t.as_slice().iter().map(|v| v * v).sum::<f64>() / t.numel() as f64).sqrt();
        // He: sqrt(2 / fan-in); the filters' fan-in is 2 * 3 * 3, the Affine's 64 * 10 * 10.
        assert!((std(params[0].value) / (2.0f64 / 18.0).sqrt() - 1.0).abs() < 0.05);
        assert!((std(params[2].value) / (2.0f64 / 6400.0).sqrt() - 1.0).abs() < 0.05);
        assert!(
            params[1].value.as_slice().iter().all(|&b| b == 0.0),
            "biases start at 0"
        );
        // Same seed, same weights.
        let again = NetSpec::new(&[2, 12, 12])
            .conv(64, 3)
            .relu()
            .affine(400)
            .init(Init::He)
            .build::<f64>(7);
        assert_eq!(again.unwrap().params()[2].value, params[2].value);
    }

    #[test]
    fn names_apply_to_the_last_layer_and_are_checked() {
        let net = NetSpec::new(&[4]).affine(5).name("hidden").relu().affine(3).name("out");
        assert_eq!(net.names, [Some("hidden".to_string()), None, Some("out".to_string())]);
        let model = net.build::<f32>(1).unwrap();
        assert_eq!(model.param_names(), ["hidden.W", "hidden.b", "out.W", "out.b"]);
        assert_eq!(model.layer_names(), net.layer_names());
        // Naming the same layer again replaces the name.
        let renamed = NetSpec::new(&[4]).affine(3).name("a").name("b");
        assert_eq!(renamed.build::<f32>(1).unwrap().param_names(), ["b.W", "b.b"]);
        // Layers pushed by hand are unnamed; the next name still goes to the last layer.
        let mut by_hand = NetSpec::new(&[4]).affine(5).name("first");
        by_hand.layers.push(LayerDef::Relu);
        let by_hand = by_hand.affine(3).name("last");
        assert_eq!(by_hand.layer_names(), [Some("first".into()), None, Some("last".into())]);

        let error = |net: NetSpec| net.layer_specs().unwrap_err().to_string();
        let err = error(NetSpec::new(&[4]).name("early").affine(3));
        assert!(err.contains("given before the layer it names"), "{err}");
        assert_eq!(
            NetSpec::new(&[4]).name("early").affine(3).layer_specs(),
            Err(LayerError::LayerNameCount { names: 2, layers: 1 })
        );
        let err = error(NetSpec::new(&[4]).affine(4).name("fc").affine(3).name("fc"));
        assert!(err.contains("layers 1 and 2 are both named 'fc'"), "{err}");
        let err = error(NetSpec::new(&[4]).affine(4).relu().name("re lu").affine(3));
        assert!(
            err.contains("layer 2: the layer name 're lu' is not a plain identifier"),
            "{err}"
        );
        let err = error(NetSpec::new(&[4]).affine(3).name("b1"));
        assert!(err.contains("reads as the name"), "{err}");
        assert!(matches!(
            NetSpec::new(&[4]).affine(4).relu().name("re lu").affine(3).layer_specs(),
            Err(LayerError::BadLayerName { layer: 2, name, .. }) if name == "re lu"
        ));
        assert!(NetSpec::new(&[4]).affine(3).name("x").build::<f32>(1).is_ok());
        assert!(NetSpec::new(&[4])
            .affine(3)
            .name("x".repeat(33))
            .build::<f32>(1)
            .is_err());
    }
}
