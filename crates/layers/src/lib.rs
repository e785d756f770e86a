//! The computation-graph layers of *Deep Learning from Scratch*, chapter 5.
//!
//! Every layer is a `forward` / `backward` pair. Backward is the chain rule:
//! given `dL/d(output)` it returns `dL/d(input)` and, for layers with
//! parameters, keeps `dL/d(parameter)`. A [`Network`] is an ordered list of
//! layers followed by a [`SoftmaxWithLoss`]; [`TwoLayerNet`] is the book's
//! 784-50-10 instance of it.
//!
//! * Scalars: [`MulLayer`], [`AddLayer`] (the apple and orange example).
//! * Tensors: [`Relu`], [`Sigmoid`], [`Affine`], [`SoftmaxWithLoss`].
//!
//! Every layer's tests hold a gradient check through [`gradcheck`].

mod activation;
mod add;
mod affine;
mod error;
pub mod gradcheck;
mod layer;
mod mul;
mod network;
mod relu;
mod sigmoid;
mod softmax_with_loss;

pub use activation::Activation;
pub use add::AddLayer;
pub use affine::Affine;
pub use error::LayerError;
pub use layer::Layer;
pub use mul::MulLayer;
pub use network::{Network, TwoLayerNet};
pub use relu::Relu;
pub use sigmoid::Sigmoid;
pub use softmax_with_loss::{SoftmaxWithLoss, Target};
pub use tensor::{Element, Tensor};
