use crate::TensorError;
use std::fmt;
use std::ops::Deref;

/// Most dimensions a tensor may have: enough for a batch of images
/// (N x C x H x W), small enough to live inline so that a reshape never allocates.
pub const MAX_DIMS: usize = 4;

/// A tensor's dimensions, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; MAX_DIMS],
    ndim: usize,
}

impl Shape {
    /// Builds a shape, refusing more than [`MAX_DIMS`] dimensions or a product
    /// that overflows `usize`.
    pub fn new(dims: &[usize]) -> Result<Self, TensorError> {
        let bad = || TensorError::BadShape {
            op: "shape",
            shape: dims.to_vec(),
            max: MAX_DIMS,
        };
        if dims.len() > MAX_DIMS {
            return Err(bad());
        }
        dims.iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(bad)?;
        let mut inline = [0; MAX_DIMS];
        inline[..dims.len()].copy_from_slice(dims);
        Ok(Shape {
            dims: inline,
            ndim: dims.len(),
        })
    }

    /// Number of elements: the product of the dimensions (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.iter().product()
    }

    /// Size of the first dimension (the batch), 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.first().copied().unwrap_or(1)
    }

    /// Product of every dimension after the first: the row length of the
    /// tensor seen as a matrix. This is how `Affine` flattens N-d input.
    pub fn row_len(&self) -> usize {
        self.iter().skip(1).product()
    }
}

impl Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.dims[..self.ndim]
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
