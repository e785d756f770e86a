use crate::gemm::gemm_par;
use crate::view::{MatMut, MatRef, Transpose};
use crate::{Element, Shape, TensorError};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Elementwise work from this many elements on is split over the threads
/// (below it, the split costs more than it saves).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// The piece of `len` elements each thread of the current pool takes in
/// elementwise work, or `None` when the work stays on the calling thread
/// (below `PARALLEL_MIN_ELEMENTS` = 2^15 elements, or on one thread).
/// [`Tensor::zip_from`] and [`Tensor::map_from`] cut their work so, and so
/// does an optimizer whose update writes several tensors at once.
pub fn parallel_piece(len: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (threads > 1 && len >= PARALLEL_MIN_ELEMENTS).then(|| len.div_ceil(threads))
}

/// A dense tensor: contiguous row-major storage plus a [`Shape`].
///
/// Seen as a matrix, a tensor has `shape[0]` rows of `product(shape[1..])`
/// elements each; that is how [`Tensor::matmul`] and the row operations read
/// an N-d batch.
///
/// Operations whose operands have mismatched shapes are programming errors
/// inside the network and panic with both shapes named (like `ndarray`);
/// constructors and `try_` methods, which take outside input, return
/// [`TensorError`] instead.
///
/// ```
/// use tensor::{Tensor, Transpose};
/// // A batch of 2 inputs of 3 features, and a 3 x 2 weight matrix.
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
/// let w = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
/// let b = Tensor::from_vec(vec![0.5f32, -6.0], &[2]).unwrap();
/// // An affine layer: y = x.w + b, then ReLU elementwise.
/// let mut y = Tensor::zeros(&[2, 2]);
/// y.matmul(Transpose::No, &x, Transpose::No, &w, 1.0, 0.0);
/// y.add_row_vector(&b);
/// y.map_inplace(|v| v.max(0.0));
/// assert_eq!(y.shape(), &[2, 2]);
/// assert_eq!(y.as_slice(), &[4.5, 0.0, 10.5, 5.0]);
/// assert_eq!(y.row_argmax(1), 0);
/// ```
#[derive(Clone, PartialEq)]
pub struct Tensor<T> {
    data: Vec<T>,
    shape: Shape,
}

impl<T: Element> Tensor<T> {
    /// A tensor of zeros.
    ///
    /// # Panics
    /// On more than [`crate::MAX_DIMS`] dimensions or an overflowing size.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::ZERO)
    }

    /// A tensor with every element set to `value`.
    ///
    /// # Panics
    /// As [`Tensor::zeros`].
    pub fn full(shape: &[usize], value: T) -> Self {
        let shape = Shape::new(shape).unwrap_or_else(|e| panic!("{e}"));
        Tensor {
            data: vec![value; shape.numel()],
            shape,
        }
    }

    /// Wraps `data` (row-major) with a shape, checking the length.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self, TensorError> {
        let checked = Shape::new(shape)?;
        if checked.numel() != data.len() {
            return Err(TensorError::LengthMismatch {
                op: "from_vec",
                len: data.len(),
                shape: shape.to_vec(),
                expected: checked.numel(),
            });
        }
        Ok(Tensor { data, shape: checked })
    }

    /// Elements drawn from `std * N(0, 1)`: the book's `weight_init_std * np.random.randn`.
    ///
    /// # Panics
    /// As [`Tensor::zeros`].
    pub fn randn<R: Rng + ?Sized>(shape: &[usize], std: f64, rng: &mut R) -> Self {
        let mut tensor = Self::zeros(shape);
        for value in &mut tensor.data {
            let z: f64 = StandardNormal.sample(rng);
            *value = T::from_f64(std * z);
        }
        tensor
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements: the product of the dimensions.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Number of rows when seen as a matrix (the batch size).
    pub fn rows(&self) -> usize {
        self.shape.rows()
    }

    /// Length of one row when seen as a matrix (everything after the batch dimension).
    pub fn row_len(&self) -> usize {
        self.shape.row_len()
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The row-major storage, without the shape.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Row `i` of the matrix view.
    pub fn row(&self, i: usize) -> &[T] {
        let len = self.row_len();
        &self.data[i * len..(i + 1) * len]
    }

    /// Row `i` of the matrix view, writable.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let len = self.row_len();
        &mut self.data[i * len..(i + 1) * len]
    }

    /// The tensor as a row-major `rows x row_len` matrix view.
    pub fn as_mat(&self) -> MatRef<'_, T> {
        MatRef::row_major(&self.data, self.rows(), self.row_len())
    }

    /// The tensor as a writable row-major `rows x row_len` matrix view.
    pub fn as_mat_mut(&mut self) -> MatMut<'_, T> {
        let (rows, cols) = (self.rows(), self.row_len());
        MatMut::row_major(&mut self.data, rows, cols)
    }

    /// Gives the same elements a new shape with the same number of elements. Never copies.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<(), TensorError> {
        let checked = Shape::new(shape)?;
        if checked.numel() != self.data.len() {
            return Err(TensorError::LengthMismatch {
                op: "reshape",
                len: self.data.len(),
                shape: shape.to_vec(),
                expected: checked.numel(),
            });
        }
        self.shape = checked;
        Ok(())
    }

    /// Sets a new shape of any size, keeping the allocation: shrinking and
    /// growing back within the capacity never allocates. New elements are zero;
    /// the values of kept ones are unspecified (callers overwrite them).
    ///
    /// # Panics
    /// As [`Tensor::zeros`].
    pub fn resize(&mut self, shape: &[usize]) {
        let checked = Shape::new(shape).unwrap_or_else(|e| panic!("{e}"));
        self.data.resize(checked.numel(), T::ZERO);
        self.shape = checked;
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: T) {
        self.data.fill(value);
    }

    /// Copies `other`'s shape and values into `self`, reusing the allocation.
    pub fn assign(&mut self, other: &Tensor<T>) {
        self.data.clear();
        self.data.extend_from_slice(&other.data);
        self.shape = other.shape;
    }

    fn assert_same_shape(&self, other: &Tensor<T>, op: &str) {
        assert_eq!(
            self.shape(),
            other.shape(),
            "{op}: shape mismatch between {:?} and {:?}",
            self.shape(),
            other.shape()
        );
    }

    /// `self[i] = f(self[i])`.
    pub fn map_inplace(&mut self, f: impl Fn(T) -> T) {
        for value in &mut self.data {
            *value = f(*value);
        }
    }

    /// `self[i] = f(self[i], other[i])`.
    ///
    /// # Panics
    /// When the shapes differ.
    pub fn zip_map_inplace(&mut self, other: &Tensor<T>, f: impl Fn(T, T) -> T) {
        self.assert_same_shape(other, "zip_map_inplace");
        for (value, &o) in self.data.iter_mut().zip(&other.data) {
            *value = f(*value, o);
        }
    }

    /// `self = f(a)` elementwise, taking the shape of `a`, split over the
    /// threads as [`Tensor::zip_from`] is.
    pub fn map_from(&mut self, a: &Tensor<T>, f: impl Fn(T) -> T + Sync) {
        self.resize(a.shape());
        let map = |out: &mut [T], a: &[T]| {
            for (out, &x) in out.iter_mut().zip(a) {
                *out = f(x);
            }
        };
        match parallel_piece(self.data.len()) {
            None => map(&mut self.data, &a.data),
            Some(piece) => self
                .data
                .par_chunks_mut(piece)
                .zip(a.data.par_chunks(piece))
                .for_each(|(out, a)| map(out, a)),
        }
    }

    /// `self = f(a, b)` elementwise, taking the shape of `a` and `b`.
    ///
    /// From `PARALLEL_MIN_ELEMENTS` (2^15) elements on, they are cut into one
    /// contiguous piece per thread of the current pool, the first piece on
    /// the calling thread. That is how `gemm_par` cuts a product's rows, so
    /// an SGD step on a weight matrix updates each half on the core that
    /// computed its gradient, instead of pulling it across. Each element is
    /// the same `f(x, y)` whichever thread computes it.
    ///
    /// # Panics
    /// When `a` and `b` differ in shape.
    pub fn zip_from(&mut self, a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T + Sync) {
        a.assert_same_shape(b, "zip_from");
        self.resize(a.shape());
        let zip = |out: &mut [T], a: &[T], b: &[T]| {
            for ((out, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *out = f(x, y);
            }
        };
        match parallel_piece(self.data.len()) {
            None => zip(&mut self.data, &a.data, &b.data),
            Some(piece) => self
                .data
                .par_chunks_mut(piece)
                .zip(a.data.par_chunks(piece))
                .zip(b.data.par_chunks(piece))
                .for_each(|((out, a), b)| zip(out, a, b)),
        }
    }

    /// `self *= alpha`.
    pub fn scale(&mut self, alpha: T) {
        self.map_inplace(|v| v * alpha);
    }

    /// `self += alpha * x`: the SGD update with `alpha = -learning_rate`.
    ///
    /// # Panics
    /// When the shapes differ.
    pub fn axpy(&mut self, alpha: T, x: &Tensor<T>) {
        self.assert_same_shape(x, "axpy");
        for (value, &xv) in self.data.iter_mut().zip(&x.data) {
            *value += alpha * xv;
        }
    }

    /// Adds the vector `bias` (length `row_len`) to every row: the `+ b` of an affine layer.
    ///
    /// # Panics
    /// When `bias` does not have `row_len` elements.
    pub fn add_row_vector(&mut self, bias: &Tensor<T>) {
        let len = self.row_len();
        assert_eq!(
            bias.numel(),
            len,
            "add_row_vector: shape mismatch between {:?} and {:?}",
            self.shape(),
            bias.shape()
        );
        if len == 0 {
            return;
        }
        for row in self.data.chunks_exact_mut(len) {
            for (value, &b) in row.iter_mut().zip(&bias.data) {
                *value += b;
            }
        }
    }

    /// Writes the column sums (sum over the rows) into `out`, whose shape is
    /// kept: the bias gradient `db = sum_i dout[i, :]`.
    ///
    /// # Panics
    /// When `out` does not have `row_len` elements.
    pub fn sum_rows_into(&self, out: &mut Tensor<T>) {
        let len = self.row_len();
        assert_eq!(
            out.numel(),
            len,
            "sum_rows_into: shape mismatch between {:?} and {:?}",
            self.shape(),
            out.shape()
        );
        out.fill(T::ZERO);
        if len == 0 {
            return;
        }
        for row in self.data.chunks_exact(len) {
            for (acc, &v) in out.data.iter_mut().zip(row) {
                *acc += v;
            }
        }
    }

    /// The largest element of row `i` (NaN-free input assumed; NaN loses to numbers).
    pub fn row_max(&self, i: usize) -> T {
        self.row(i)
            .iter()
            .fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v))
    }

    /// Index of the largest element of row `i`; the first one on ties, as NumPy's argmax.
    pub fn row_argmax(&self, i: usize) -> usize {
        let row = self.row(i);
        let mut best = 0;
        for (j, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = j;
            }
        }
        best
    }

    /// `log(sum_j exp(row[j]))` of row `i`, computed as
    /// `m + log(sum_j exp(row[j] - m))` with `m` the row max, so that no term
    /// overflows and at least one term is exactly 1 (no log of 0).
    pub fn row_log_sum_exp(&self, i: usize) -> T {
        let max = self.row_max(i);
        if !max.is_finite() {
            return max;
        }
        let sum: T = self.row(i).iter().map(|&v| (v - max).exp()).sum();
        max + sum.ln()
    }

    /// Copies rows `indices` of `source` into `self` (shape `[indices.len(), ...]`),
    /// reusing `self`'s allocation: how a mini-batch is assembled without allocating.
    pub fn gather_rows(&mut self, source: &Tensor<T>, indices: &[usize]) -> Result<(), TensorError> {
        let rows = source.rows();
        if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
            return Err(TensorError::ShapeMismatch {
                op: "gather_rows (index out of range)",
                lhs: source.shape().to_vec(),
                rhs: vec![bad],
            });
        }
        let mut shape = [0usize; crate::MAX_DIMS];
        let ndim = source.shape().len().max(1);
        shape[..ndim].copy_from_slice(if source.shape().is_empty() {
            &[1]
        } else {
            source.shape()
        });
        shape[0] = indices.len();
        self.resize(&shape[..ndim]);
        let len = source.row_len();
        for (out_row, &i) in indices.iter().enumerate() {
            self.data[out_row * len..(out_row + 1) * len].copy_from_slice(source.row(i));
        }
        Ok(())
    }

    /// `self = alpha * op(a) * op(b) + beta * self`, each operand seen as a
    /// matrix (`rows x row_len`); `self` keeps its shape, which must have
    /// `op(a).rows` rows and `op(b).cols` elements per row.
    ///
    /// # Panics
    /// On a shape mismatch, naming both shapes; see [`Tensor::try_matmul`].
    pub fn matmul(&mut self, ta: Transpose, a: &Tensor<T>, tb: Transpose, b: &Tensor<T>, alpha: T, beta: T) {
        if let Err(e) = self.try_matmul(ta, a, tb, b, alpha, beta) {
            panic!(
                "matmul({ta:?} {:?}, {tb:?} {:?}) into {:?}: {e}",
                a.shape(),
                b.shape(),
                self.shape()
            );
        }
    }

    /// [`Tensor::matmul`] that returns the shape error instead of panicking.
    ///
    /// Large products are split by rows over rayon's current pool
    /// ([`crate::gemm_par`]); the result does not depend on the thread count.
    pub fn try_matmul(
        &mut self,
        ta: Transpose,
        a: &Tensor<T>,
        tb: Transpose,
        b: &Tensor<T>,
        alpha: T,
        beta: T,
    ) -> Result<(), TensorError> {
        gemm_par(alpha, a.as_mat().op(ta), b.as_mat().op(tb), beta, self.as_mat_mut())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        write!(f, "Tensor<{}>{:?} ", std::any::type_name::<T>(), self.shape)?;
        f.debug_list().entries(self.data.iter().take(SHOWN)).finish()?;
        if self.data.len() > SHOWN {
            write!(f, " ... ({} elements)", self.data.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(data.to_vec(), shape).unwrap()
    }

    #[test]
    fn from_vec_checks_length_and_rank() {
        assert!(Tensor::<f32>::from_vec(vec![0.0; 5], &[2, 3]).is_err());
        assert!(Tensor::<f32>::from_vec(vec![0.0; 1], &[1, 1, 1, 1, 1]).is_err());
        assert!(Tensor::<f32>::from_vec(vec![], &[usize::MAX, 2]).is_err());
        let x = Tensor::<f32>::from_vec(vec![1.0; 6], &[2, 3]).unwrap();
        assert_eq!((x.rows(), x.row_len(), x.numel()), (2, 3, 6));
    }

    #[test]
    fn reshape_keeps_data_and_refuses_wrong_size() {
        let mut x = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let before = x.as_slice().as_ptr();
        x.reshape(&[3, 1, 2]).unwrap();
        assert_eq!(x.shape(), &[3, 1, 2]);
        assert_eq!(x.row(1), &[3., 4.]);
        assert_eq!(x.as_slice().as_ptr(), before, "reshape must not copy");
        assert!(x.reshape(&[4, 2]).is_err());
        assert_eq!(x.shape(), &[3, 1, 2], "failed reshape leaves the shape alone");
    }

    #[test]
    fn resize_within_capacity_keeps_the_allocation() {
        let mut x = Tensor::<f32>::zeros(&[100, 10]);
        let before = x.as_slice().as_ptr();
        x.resize(&[7, 10]);
        x.resize(&[100, 10]);
        assert_eq!(x.as_slice().as_ptr(), before);
    }

    #[test]
    fn map_from_and_zip_from_split_over_threads_give_every_element_its_own_value() {
        // Odd lengths around the threshold, so the pieces are unequal.
        for len in [
            PARALLEL_MIN_ELEMENTS - 1,
            PARALLEL_MIN_ELEMENTS,
            3 * PARALLEL_MIN_ELEMENTS + 7,
        ] {
            let a = Tensor::from_vec((0..len).map(|i| i as f64).collect(), &[len]).unwrap();
            let b = Tensor::from_vec((0..len).map(|i| (i % 7) as f64).collect(), &[len]).unwrap();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut out = Tensor::zeros(&[0]);
                pool.install(|| out.zip_from(&a, &b, |x, y| x * 2.0 - y));
                assert_eq!(out.shape(), &[len]);
                for (i, &v) in out.as_slice().iter().enumerate() {
                    assert_eq!(
                        v,
                        i as f64 * 2.0 - (i % 7) as f64,
                        "element {i} of {len}, {threads} threads"
                    );
                }
                let mut mapped = Tensor::zeros(&[0]);
                pool.install(|| mapped.map_from(&b, |y| y * 3.0));
                assert_eq!(mapped.shape(), &[len]);
                for (i, &v) in mapped.as_slice().iter().enumerate() {
                    assert_eq!(v, (i % 7) as f64 * 3.0, "element {i} of {len}, {threads} threads");
                }
            }
        }
    }

    #[test]
    fn elementwise_ops() {
        let mut x = t(&[1., -2., 3.], &[3]);
        x.scale(2.0);
        assert_eq!(x.as_slice(), &[2., -4., 6.]);
        x.axpy(-0.5, &t(&[2., 2., 2.], &[3]));
        assert_eq!(x.as_slice(), &[1., -5., 5.]);
        x.map_inplace(|v| v.max(0.0));
        assert_eq!(x.as_slice(), &[1., 0., 5.]);
        x.zip_map_inplace(&t(&[3., 3., 3.], &[3]), |a, b| a * b);
        assert_eq!(x.as_slice(), &[3., 0., 15.]);
        let mut z = Tensor::zeros(&[1]);
        z.zip_from(&t(&[1., 2.], &[2]), &t(&[10., 20.], &[2]), |a, b| a + b);
        assert_eq!(z.as_slice(), &[11., 22.]);
    }

    #[test]
    #[should_panic(expected = "axpy: shape mismatch between [3] and [2]")]
    fn mismatched_axpy_panics_with_shapes() {
        t(&[1., 2., 3.], &[3]).axpy(1.0, &t(&[1., 2.], &[2]));
    }

    #[test]
    fn bias_and_column_sums() {
        let mut x = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        x.add_row_vector(&t(&[10., 20., 30.], &[3]));
        assert_eq!(x.as_slice(), &[11., 22., 33., 14., 25., 36.]);
        let mut sums = Tensor::zeros(&[3]);
        sums.fill(99.0); // must be overwritten, not accumulated into
        x.sum_rows_into(&mut sums);
        assert_eq!(sums.as_slice(), &[25., 47., 69.]);
    }

    #[test]
    fn row_max_argmax_and_log_sum_exp() {
        let x = t(&[1., 5., 5., -1., 0., -3.], &[2, 3]);
        assert_eq!(x.row_max(0), 5.0);
        assert_eq!(x.row_argmax(0), 1, "first index on ties");
        assert_eq!(x.row_argmax(1), 1);
        let lse = x.row_log_sum_exp(1);
        let expected = ((-1f64).exp() + 1.0 + (-3f64).exp()).ln();
        assert!((lse - expected).abs() < 1e-15);
        // Stable where the naive formula overflows to inf.
        let big = t(&[1e4, 1e4 - 1.0], &[1, 2]);
        let lse = big.row_log_sum_exp(0);
        assert!((lse - (1e4 + (1.0 + (-1f64).exp()).ln())).abs() < 1e-9, "{lse}");
    }

    #[test]
    fn gather_rows_builds_a_batch_in_place() {
        let source = t(&[0., 0., 1., 1., 2., 2., 3., 3.], &[4, 1, 2]);
        let mut batch = Tensor::zeros(&[8, 1, 2]);
        let before = batch.as_slice().as_ptr();
        batch.gather_rows(&source, &[3, 0, 3]).unwrap();
        assert_eq!(batch.shape(), &[3, 1, 2]);
        assert_eq!(batch.as_slice(), &[3., 3., 0., 0., 3., 3.]);
        assert_eq!(batch.as_slice().as_ptr(), before);
        assert!(batch.gather_rows(&source, &[4]).is_err());
    }

    #[test]
    fn matmul_transposes_through_strides() {
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let b = t(&[1., 0., 0., 1., 1., 1.], &[2, 3]);
        let mut c = Tensor::zeros(&[2, 2]);
        // A * B^T = [[1+0+3*... ]]
        c.matmul(Transpose::No, &a, Transpose::Yes, &b, 1.0, 0.0);
        assert_eq!(c.as_slice(), &[1., 6., 4., 15.]);
        let mut d = Tensor::zeros(&[3, 3]);
        c.fill(0.0);
        d.matmul(Transpose::Yes, &a, Transpose::No, &b, 1.0, 0.0);
        assert_eq!(d.as_slice(), &[5., 4., 4., 7., 5., 5., 9., 6., 6.]);
        assert!(c.try_matmul(Transpose::No, &a, Transpose::No, &b, 1.0, 0.0).is_err());
    }

    #[test]
    fn randn_is_seeded_and_scaled() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x: Tensor<f64> = Tensor::randn(&[100, 100], 0.01, &mut rng);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let y: Tensor<f64> = Tensor::randn(&[100, 100], 0.01, &mut rng);
        assert_eq!(x, y);
        let n = x.numel() as f64;
        let mean = x.as_slice().iter().sum::<f64>() / n;
        let var = x.as_slice().iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 5e-4, "{mean}");
        assert!((var.sqrt() - 0.01).abs() < 5e-4, "{}", var.sqrt());
    }
}
