//! The layers of *Deep Learning from Scratch*, chapters 5 to 8, and the
//! models built from them.
//!
//! Every layer is a `forward` / `backward` pair (see [`Layer`]). Backward is
//! the chain rule: given `dL/d(output)` it returns `dL/d(input)` and, for
//! layers with parameters, keeps `dL/d(parameter)`. A [`Sequential`] model is
//! any ordered list of layers followed by a [`SoftmaxWithLoss`]; [`Mlp`]
//! builds the book's fully connected networks (`TwoLayerNet`,
//! `MultiLayerNet`, `MultiLayerNetExtend`) as such lists. An [`Optimizer`]
//! updates a model's parameters.
//!
//! * Scalars: [`MulLayer`], [`AddLayer`] (the apple and orange example).
//! * Tensors: [`Relu`], [`Sigmoid`], [`Affine`], [`BatchNorm`], [`Dropout`],
//!   [`Convolution`], [`Pooling`], [`SoftmaxWithLoss`].
//! * Convolutional networks: [`SimpleConvNet`] (chapter 7) and
//!   [`deep_convnet`] (chapter 8).
//! * Optimizers ([`OptimizerConfig`]): SGD, Momentum, Nesterov, AdaGrad,
//!   RMSprop, Adam.
//!
//! Every layer's tests hold a gradient check through [`gradcheck`].
//!
//! ```
//! use layers::{LayerRng, Mlp, OptimizerConfig, OptimizerKind, Target};
//! use rand::SeedableRng;
//! use tensor::Tensor;
//!
//! // The book's TwoLayerNet, smaller: 4 inputs, 8 hidden units, 3 classes.
//! let mut model = Mlp::two_layer_net(4, 8, 3).build::<f32>(42).unwrap();
//! let mut adam = OptimizerConfig::new(OptimizerKind::Adam)
//!     .build::<f32>(&model.param_shapes())
//!     .unwrap();
//! let mut previous = model.param_buffers();
//! let x = Tensor::from_vec(vec![0.1f32; 8], &[2, 4]).unwrap();
//! let mut rng = LayerRng::seed_from_u64(42);
//! let loss = model.gradient(&x, Target::Labels(&[0, 2]), &mut rng).unwrap();
//! model.step(adam.as_mut(), &mut previous);
//! assert!((loss - 3f32.ln()).abs() < 0.01, "near-zero weights: loss ln(3)");
//! ```

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
pub use convnet::{deep_convnet, SimpleConvNet};
pub use convolution::Convolution;
pub use dropout::Dropout;
pub use error::LayerError;
pub use layer::{layer_stream, Layer, LayerRng, Param, ParamMut};
pub use mlp::{Init, Mlp, MAX_HIDDEN_LAYERS};
pub use model::{NamedParam, Sequential};
pub use mul::MulLayer;
pub use optimizer::{Optimizer, OptimizerConfig, OptimizerKind};
pub use pooling::Pooling;
pub use relu::Relu;
pub use sigmoid::Sigmoid;
pub use softmax_with_loss::{SoftmaxWithLoss, Target};
pub use spec::{LayerSpec, MAX_PARAMS, MAX_WIDTH, MAX_WINDOW};
pub use tensor::{Element, Tensor};
