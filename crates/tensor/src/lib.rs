//! Row-major tensors and a BLAS-like GEMM, written for the layers of a small
//! neural network.
//!
//! * [`Tensor<T>`] owns contiguous row-major storage and a [`Shape`] of up to
//!   [`MAX_DIMS`] dimensions. Reshaping never copies; resizing reuses capacity,
//!   so a warm training loop allocates nothing.
//! * [`gemm()`] computes `C = alpha * op(A) * op(B) + beta * C` on strided
//!   matrix views ([`MatRef`], [`MatMut`]); a transpose is a swap of strides,
//!   never a copy. It checks every shape and bound, then runs the crate's own
//!   packed kernel (allocation-free), or `matrixmultiply` on request.
//! * [`Element`] is implemented for `f32` (training) and `f64` (gradient checks).
//! * [`conv`]: `im2col` and `col2im`, which turn a convolution over
//!   `[N, C, H, W]` images into one GEMM per image.
//! * [`shifted`]: the products of a convolution of stride 1 without
//!   `im2col`, reading the padded image in place.
//! * [`row_products`]: sums of `A_i B_i^T` over images, both read along their
//!   rows, as `im2col`'s weight gradient `G col^T` is.
//! * [`sparse`]: `A B` over the nonzero values of a mostly-zero `A` (a batch
//!   of MNIST images), skipping its zeros.
//! * [`sparse_backward`]: a convolution's backward over the nonzero values
//!   of its output gradient (behind a ReLU and a max pool), channels last.
//! * [`winograd`]: the forward pass of a 3x3 convolution of stride 1 by
//!   Winograd's F(2x2, 3x3), 16 multiplies for 4 outputs where the direct
//!   sums take 36.
//!
//! ```
//! use tensor::{Tensor, Transpose};
//! let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
//! let b = Tensor::from_vec(vec![5.0f32, 6.0, 7.0, 8.0], &[2, 2]).unwrap();
//! let mut c = Tensor::zeros(&[2, 2]);
//! // C = A^T * B
//! c.matmul(Transpose::Yes, &a, Transpose::No, &b, 1.0, 0.0);
//! assert_eq!(c.as_slice(), &[26.0, 30.0, 38.0, 44.0]);
//! ```

#![warn(missing_docs)]

pub mod conv;
pub mod direct;
mod element;
mod error;
mod gemm;
mod kernel;
pub mod row_products;
mod shape;
pub mod shifted;
pub mod sparse;
pub mod sparse_backward;
#[allow(clippy::module_inception)]
mod tensor;
mod view;
pub mod winograd;

pub use element::Element;
pub use error::TensorError;
pub use gemm::{gemm, gemm_naive, gemm_par, gemm_with, GemmBackend};
pub use shape::{Shape, MAX_DIMS};
pub use tensor::{parallel_piece, Tensor};
pub use view::{MatMut, MatRef, Transpose};
