use thiserror::Error;

/// Everything the tensor crate can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// Two operands whose shapes do not fit the operation: a GEMM with
    /// `op(A).cols != op(B).rows` or a C that is not `op(A).rows x op(B).cols`,
    /// a row index past the source in [`crate::Tensor::gather_rows`], or a
    /// convolution geometry with an empty image, a zero stride or a window
    /// larger than the padded image ([`crate::conv::ConvGeometry::new`]).
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}")]
    ShapeMismatch {
        /// The operation that refused.
        op: &'static str,
        /// The first operand: op(A)'s `[rows, cols]` in a GEMM, the source's
        /// shape in `gather_rows`, `[C, H, W, pad, stride]` for a window.
        lhs: Vec<usize>,
        /// The second: op(B)'s `[rows, cols]` then C's in a GEMM, the bad
        /// index in `gather_rows`, `[FH, FW]` for a window.
        rhs: Vec<usize>,
    },
    /// A buffer whose length is not the product of the requested shape
    /// ([`crate::Tensor::from_vec`], [`crate::Tensor::reshape`]).
    #[error("{op}: {len} elements cannot have shape {shape:?} ({expected} elements)")]
    LengthMismatch {
        /// The operation that refused.
        op: &'static str,
        /// Elements given.
        len: usize,
        /// The shape requested.
        shape: Vec<usize>,
        /// Elements that shape holds.
        expected: usize,
    },
    /// More dimensions than [`crate::MAX_DIMS`], or a size that overflows usize
    /// ([`crate::Shape::new`], and every constructor through it).
    #[error("{op}: unsupported shape {shape:?} (at most {max} dimensions, product must fit in usize)")]
    BadShape {
        /// The operation that refused.
        op: &'static str,
        /// The dimensions requested.
        shape: Vec<usize>,
        /// [`crate::MAX_DIMS`].
        max: usize,
    },
    /// A strided view that reaches outside its buffer, or a C whose elements
    /// alias (checked by [`crate::gemm()`] and the other GEMM entry points).
    #[error("{op}: view {rows}x{cols} with strides ({row_stride}, {col_stride}) does not fit a buffer of {len} elements{extra}")]
    BadView {
        /// The operation that refused.
        op: &'static str,
        /// The view's rows.
        rows: usize,
        /// The view's columns.
        cols: usize,
        /// Elements between the starts of consecutive rows.
        row_stride: usize,
        /// Elements between consecutive columns of a row.
        col_stride: usize,
        /// Length of the buffer under the view.
        len: usize,
        /// `" (elements of C alias each other)"` for aliasing, else empty.
        extra: &'static str,
    },
}
