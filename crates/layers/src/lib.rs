//! The layers of *Deep Learning from Scratch*, chapters 5 to 8, and the
//! models built from them.
//!
//! Every layer is a `forward` / `backward` pair (see [`Layer`]). Backward is
//! the chain rule: given `dL/d(output)` it returns `dL/d(input)` and, for
//! layers with parameters, keeps `dL/d(parameter)`. A [`Sequential`] model is
//! any ordered list of layers followed by a [`SoftmaxWithLoss`]; the builder
//! [`NetSpec`] makes one from what each layer adds (its input sizes
//! inferred), and the book's networks are recipes over it ([`Mlp`]:
//! `TwoLayerNet`, `MultiLayerNet`, `MultiLayerNetExtend`; [`SimpleConvNet`];
//! [`NetSpec::deep_convnet`]). An [`Optimizer`] ([`Sgd`], [`Momentum`],
//! [`Nesterov`], [`AdaGrad`], [`RmsProp`], [`Adam`]) is built from a model's
//! parameters, owns its state, and steps the model.
//!
//! Every parameter and buffer has a name: the book's, numbered by position
//! (`W1 b1 gamma1 beta1 running_mean1 ...`), or `{layer}.{kind}` (`stem.W`)
//! for a layer given a name with [`NetSpec::name`]; such names stay put when
//! layers are inserted, so an older checkpoint still loads by name.
//!
//! * Scalars: [`MulLayer`], [`AddLayer`] (the apple and orange example).
//! * Tensors: [`Relu`], [`Sigmoid`], [`Affine`], [`BatchNorm`], [`Dropout`],
//!   [`Convolution`], [`Pooling`], [`SoftmaxWithLoss`].
//!
//! Every layer's tests hold a gradient check through [`gradcheck`].
//!
//! ```
//! use layers::{Adam, AdamConfig, Init, LayerRng, NetSpec, Optimizer, Target};
//! use rand::SeedableRng;
//! use tensor::Tensor;
//!
//! // conv -> BatchNorm -> ReLU -> pool -> affine on 1x6x6 inputs, 3 classes:
//! // only what each layer adds is named; every input size is inferred.
//! let mut model = NetSpec::new(&[1, 6, 6])
//!     .conv(4, 3)
//!     .batch_norm()
//!     .relu()
//!     .pool(2)
//!     .affine(3)
//!     .init(Init::He)
//!     .build::<f32>(42)
//!     .unwrap();
//! let mut adam = Adam::new(AdamConfig::default(), &model).unwrap();
//! let x = Tensor::from_vec((0..72).map(|i| (i % 7) as f32 / 7.0).collect(), &[2, 1, 6, 6]).unwrap();
//! let labels = [0, 2];
//! let mut rng = LayerRng::seed_from_u64(42);
//! let first = model.loss(&x, Target::Labels(&labels)).unwrap();
//! for _ in 0..100 {
//!     model.gradient(&x, Target::Labels(&labels), &mut rng).unwrap();
//!     adam.step(&mut model);
//! }
//! let last = model.loss(&x, Target::Labels(&labels)).unwrap();
//! assert!(last < first / 2.0, "{first} -> {last}");
//! assert_eq!(model.accuracy(&x, &labels).unwrap(), 1.0);
//! ```

#![warn(missing_docs)]

mod activation;
mod add;
mod affine;
mod batch_norm;
mod convnet;
mod convolution;
mod dropout;
mod error;
pub mod gradcheck;
mod layer;
mod mlp;
mod model;
mod mul;
mod net;
mod net_file;
mod optimizer;
mod pooling;
mod relu;
mod sigmoid;
mod softmax_with_loss;
mod spec;

pub use activation::Activation;
pub use add::AddLayer;
pub use affine::Affine;
pub use batch_norm::{BatchNorm, BATCH_NORM_EPS, BATCH_NORM_MOMENTUM};
pub use convnet::SimpleConvNet;
pub use convolution::Convolution;
pub use dropout::Dropout;
pub use error::{readable, LayerError, Takes};
pub use layer::{layer_stream, Layer, LayerRng, Param, ParamMut};
pub use mlp::{Init, Mlp, MAX_HIDDEN_LAYERS};
pub use model::{NamedParam, Sequential, MAX_LAYER_NAME_LEN};
pub use mul::MulLayer;
pub use net::{LayerDef, NetSpec, MAX_LAYERS};
pub use optimizer::{
    AdaGrad, AdaGradConfig, Adam, AdamConfig, Momentum, MomentumConfig, Nesterov, Optimizer, OptimizerConfig,
    OptimizerKind, ParamList, Parameters, RmsProp, RmsPropConfig, Sgd, SgdConfig,
};
pub use pooling::Pooling;
pub use relu::Relu;
pub use sigmoid::Sigmoid;
pub use softmax_with_loss::{SoftmaxWithLoss, Target};
pub use spec::{LayerSpec, MAX_PARAMS, MAX_WIDTH, MAX_WINDOW};
pub use tensor::{Element, Tensor};
