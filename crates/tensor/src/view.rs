//! Strided matrix views and the checks a GEMM runs before touching memory.
//!
//! Every matrix is a view `(data, rows, cols, row_stride, col_stride)`:
//! element `(i, j)` lives at `data[i * row_stride + j * col_stride]`. A
//! row-major matrix has strides `(cols, 1)`, a column-major one `(1, rows)`;
//! a transpose is the same buffer with the strides swapped ([`MatRef::t`]),
//! so `op(A)` never copies.

use crate::TensorError;

/// Whether an operand enters the product as is or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    /// `op(X) = X`.
    No,
    /// `op(X) = X^T`, read through swapped strides.
    Yes,
}

/// A read-only strided matrix view.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// A writable strided matrix view (the C of a GEMM).
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A view with explicit strides; [`gemm()`](crate::gemm()) checks it against the buffer.
    pub fn new(data: &'a [T], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A contiguous row-major `rows x cols` view.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose: the same buffer with rows and columns swapped.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// `op(self)`.
    pub fn op(self, transpose: Transpose) -> Self {
        match transpose {
            Transpose::No => self,
            Transpose::Yes => self.t(),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a, T> MatRef<'a, T> {
    /// Rows `..mid` and `mid..` as two views (`0 < mid < rows`).
    pub(crate) fn split_rows(self, mid: usize) -> (Self, Self) {
        let top = MatRef { rows: mid, ..self };
        let bottom = MatRef {
            data: &self.data[mid * self.row_stride..],
            rows: self.rows - mid,
            ..self
        };
        (top, bottom)
    }
}

impl<'a, T> MatMut<'a, T> {
    /// Rows `..mid` and `mid..` as two disjoint writable views. Only for
    /// layouts whose rows do not interleave (see `rows_are_disjoint`).
    pub(crate) fn split_rows(self, mid: usize) -> (Self, Self) {
        let (top, bottom) = self.data.split_at_mut(mid * self.row_stride);
        (
            MatMut {
                data: top,
                rows: mid,
                ..self
            },
            MatMut {
                data: bottom,
                rows: self.rows - mid,
                ..self
            },
        )
    }

    /// Row `i` lies entirely before row `i + 1` in memory, so splitting the
    /// buffer at a row boundary gives each half exactly its own rows.
    pub(crate) fn rows_are_disjoint(&self) -> bool {
        self.col_stride == 1 && self.row_stride >= self.cols
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A writable view with explicit strides; [`gemm()`](crate::gemm()) checks it.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A contiguous row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Element `(i, j)`, writable.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, i: usize, j: usize) -> &mut T {
        &mut self.data[i * self.row_stride + j * self.col_stride]
    }

    /// The transpose (writes land in the same buffer).
    pub fn t(self) -> Self {
        MatMut {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            data: self.data,
        }
    }
}

/// Checks that every element a view addresses lies inside a buffer of `len`
/// elements and, for C (`distinct`), that no two elements share an address.
fn check_view(
    op: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
    distinct: bool,
) -> Result<(), TensorError> {
    let bad = |extra| TensorError::BadView {
        op,
        rows,
        cols,
        row_stride,
        col_stride,
        len,
        extra,
    };
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| (cols - 1).checked_mul(col_stride).and_then(|c| r.checked_add(c)));
    match last {
        Some(last) if last < len => {}
        _ => return Err(bad("")),
    }
    if distinct {
        // Elements are distinct when the smaller stride is at least 1 and the
        // larger one steps over a whole run of the smaller dimension.
        let (small_stride, small_len, big_stride, big_len) = if row_stride <= col_stride {
            (row_stride, rows, col_stride, cols)
        } else {
            (col_stride, cols, row_stride, rows)
        };
        let distinct = match (small_len > 1, big_len > 1) {
            (false, false) => true,
            (true, false) => small_stride >= 1,
            (false, true) => big_stride >= 1,
            (true, true) => small_stride >= 1 && big_stride >= small_stride * small_len,
        };
        if !distinct {
            return Err(bad(" (elements of C alias each other)"));
        }
    }
    Ok(())
}

pub(crate) fn check_gemm<T>(op: &'static str, a: &MatRef<T>, b: &MatRef<T>, c: &MatMut<T>) -> Result<(), TensorError> {
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
        return Err(TensorError::ShapeMismatch {
            op,
            lhs: vec![a.rows, a.cols],
            rhs: vec![b.rows, b.cols, c.rows, c.cols],
        });
    }
    check_view(op, a.data.len(), a.rows, a.cols, a.row_stride, a.col_stride, false)?;
    check_view(op, b.data.len(), b.rows, b.cols, b.row_stride, b.col_stride, false)?;
    check_view(op, c.data.len(), c.rows, c.cols, c.row_stride, c.col_stride, true)
}
