use thiserror::Error;

/// Everything the tensor crate can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// Two operands whose shapes do not fit the operation.
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A buffer whose length is not the product of the requested shape.
    #[error("{op}: {len} elements cannot have shape {shape:?} ({expected} elements)")]
    LengthMismatch {
        op: &'static str,
        len: usize,
        shape: Vec<usize>,
        expected: usize,
    },
    /// More dimensions than [`crate::MAX_DIMS`], or a size that overflows usize.
    #[error("{op}: unsupported shape {shape:?} (at most {max} dimensions, product must fit in usize)")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        max: usize,
    },
    /// A strided view that reaches outside its buffer, or a C whose elements alias.
    #[error("{op}: view {rows}x{cols} with strides ({row_stride}, {col_stride}) does not fit a buffer of {len} elements{extra}")]
    BadView {
        op: &'static str,
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
        len: usize,
        extra: &'static str,
    },
}
