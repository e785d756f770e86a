//! GEMM with BLAS semantics on strided views.
//!
//! `C = alpha * A * B + beta * C`, with A `m x k`, B `k x n`, C `m x n`.
//! Every matrix is a view `(data, rows, cols, row_stride, col_stride)`: element
//! `(i, j)` lives at `data[i * row_stride + j * col_stride]`. A row-major matrix
//! has strides `(cols, 1)`; its transpose is the same buffer with the strides
//! swapped ([`MatRef::t`]), so `op(A)` never copies.
//!
//! As in BLAS, when `beta == 0` C is not read: it may hold NaN or garbage.
//!
//! [`gemm()`] checks the shapes, that each view stays inside its buffer and
//! that no two elements of C share an address, and only then runs the crate's
//! packed kernel (`packed.rs`, safe code, with the explicit AVX2 + FMA tiles
//! of `avx2.rs` where the CPU has them, chosen at run time) or, with
//! [`GemmBackend::MatrixMultiply`], hands raw pointers to `matrixmultiply`. [`gemm_par`] splits large products by
//! rows over rayon. This module holds the crate's only `unsafe`.

#[cfg(target_arch = "x86_64")]
use crate::avx2;
use crate::{packed, Element, TensorError};
use std::cell::RefCell;

/// Whether an operand enters the product as is or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    No,
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
    /// A view with explicit strides; [`gemm()`] checks it against the buffer.
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

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl<'a, T> MatRef<'a, T> {
    /// Rows `..mid` and `mid..` as two views (`0 < mid < rows`).
    fn split_rows(self, mid: usize) -> (Self, Self) {
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
    /// layouts whose rows do not interleave (see [`rows_are_disjoint`]).
    fn split_rows(self, mid: usize) -> (Self, Self) {
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
    fn rows_are_disjoint(&self) -> bool {
        self.col_stride == 1 && self.row_stride >= self.cols
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A writable view with explicit strides; [`gemm()`] checks it.
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

fn check_gemm<T>(op: &'static str, a: &MatRef<T>, b: &MatRef<T>, c: &MatMut<T>) -> Result<(), TensorError> {
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

/// Which implementation computes a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmBackend {
    /// The crate's choice: currently [`GemmBackend::Packed`] everywhere,
    /// because it never allocates (see `packed.rs`).
    Auto,
    /// The crate's own packed kernel, with packing buffers reused per thread
    /// (explicit AVX2 + FMA tiles where the CPU has them).
    Packed,
    /// The packed kernel with its portable tiles (what CPUs without AVX2
    /// run), selectable on any CPU so that tests cover it.
    PackedPortable,
    /// `matrixmultiply`'s `sgemm` / `dgemm` (allocates its packing buffers per call).
    MatrixMultiply,
}

/// `C = alpha * A * B + beta * C`.
///
/// Transposes are expressed through the views ([`MatRef::t`]). Fails, without
/// touching C, when `A.cols != B.rows`, C is not `A.rows x B.cols`, a view
/// reaches outside its buffer, or C's strides make two elements share an address.
pub fn gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) -> Result<(), TensorError> {
    gemm_with(GemmBackend::Auto, alpha, a, b, beta, c)
}

/// [`gemm()`] on a chosen implementation (for benchmarks and tests).
pub fn gemm_with<T: Element>(
    backend: GemmBackend,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    mut c: MatMut<T>,
) -> Result<(), TensorError> {
    check_gemm("gemm", &a, &b, &c)?;
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    match backend {
        GemmBackend::Auto | GemmBackend::Packed => T::gemm_packed(alpha, &a, &b, beta, &mut c),
        GemmBackend::PackedPortable => T::gemm_packed_portable(alpha, &a, &b, beta, &mut c),
        GemmBackend::MatrixMultiply => T::gemm_matrixmultiply(alpha, &a, &b, beta, &mut c),
    }
    Ok(())
}

/// Products smaller than this many multiply-adds run on one thread: below
/// it, waking a second core costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Rows per parallel part are a multiple of this (the register tile height),
/// so no part ends in a half-empty tile; small enough that a batch of 100
/// splits 54 + 46, not 72 + 28.
const PARALLEL_ROW_QUANTUM: usize = 6;

/// [`gemm()`] with the rows of C split over rayon's current pool when the
/// product is large enough. Every element of C is computed by the same
/// sequence of operations however the rows are split, so the result is
/// bit-identical for any number of threads.
pub fn gemm_par<T: Element>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    mut c: MatMut<T>,
) -> Result<(), TensorError> {
    check_gemm("gemm", &a, &b, &c)?;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let threads = rayon::current_num_threads();
    let macs = m.saturating_mul(k).saturating_mul(n);
    if threads <= 1 || macs < PARALLEL_MIN_MACS || m < 2 * PARALLEL_ROW_QUANTUM || !c.rows_are_disjoint() {
        // Already checked: straight to the kernel, as `GemmBackend::Auto` would.
        T::gemm_packed(alpha, &a, &b, beta, &mut c);
        return Ok(());
    }
    let part_rows = m.div_ceil(threads).next_multiple_of(PARALLEL_ROW_QUANTUM);
    split_rows_and_run(alpha, a, b, beta, c, part_rows);
    Ok(())
}

/// Halves C (and A) by rows until a part has at most `part_rows` rows.
///
/// A last part of 4 rows or fewer joins the one before it: the kernel gives
/// products that short a tile of their own height and width (see
/// `gemm_packed`), which rounds differently from the 6-row tiles the serial
/// run uses for the same rows.
fn split_rows_and_run<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, mut c: MatMut<T>, part_rows: usize) {
    const SHORT: usize = 4;
    let parts = c.rows.saturating_sub(SHORT).div_ceil(part_rows);
    if parts <= 1 {
        T::gemm_packed(alpha, &a, &b, beta, &mut c);
        return;
    }
    let mid = parts / 2 * part_rows;
    let (a_top, a_bottom) = a.split_rows(mid);
    let (c_top, c_bottom) = c.split_rows(mid);
    rayon::join(
        || split_rows_and_run(alpha, a_top, b, beta, c_top, part_rows),
        || split_rows_and_run(alpha, a_bottom, b, beta, c_bottom, part_rows),
    );
}

/// The textbook triple loop with the same contract as [`gemm()`]: the
/// reference that tests and benchmarks compare against.
pub fn gemm_naive<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) -> Result<(), TensorError> {
    check_gemm("gemm_naive", &a, &b, &c)?;
    for i in 0..c.rows {
        for j in 0..c.cols {
            let mut dot = T::ZERO;
            for p in 0..a.cols {
                dot += a.data[i * a.row_stride + p * a.col_stride] * b.data[p * b.row_stride + j * b.col_stride];
            }
            let out = &mut c.data[i * c.row_stride + j * c.col_stride];
            // BLAS: with beta == 0, C is write-only (NaN in C must not leak).
            *out = if beta == T::ZERO {
                alpha * dot
            } else {
                alpha * dot + beta * *out
            };
        }
    }
    Ok(())
}

/// The `sgemm` / `dgemm` entry points behind [`Element`]. Sealed: only `f32`
/// and `f64` implement it.
pub trait GemmKernel: sealed::Sealed + Sized {
    /// The packed kernel with this thread's packing buffers, on the best
    /// instruction set the CPU has. Views are already checked.
    #[doc(hidden)]
    fn gemm_packed(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>);

    /// The packed kernel with its portable tiles, whatever the CPU.
    #[doc(hidden)]
    fn gemm_packed_portable(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>);

    /// `matrixmultiply`'s `sgemm` / `dgemm` on views already checked.
    #[doc(hidden)]
    fn gemm_matrixmultiply(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

macro_rules! impl_kernel {
    ($t:ty, $module:ident, $gemm:path, $avx2:ident, $mr:literal, $nr:literal, $nh:literal) => {
        impl GemmKernel for $t {
            fn gemm_packed(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                #[cfg(target_arch = "x86_64")]
                let fast = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
                #[cfg(not(target_arch = "x86_64"))]
                let fast = false;
                $module::packed_on(fast, alpha, a, b, beta, c)
            }

            fn gemm_packed_portable(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                $module::packed_on(false, alpha, a, b, beta, c)
            }

            fn gemm_matrixmultiply(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                $module::matrixmultiply_on(alpha, a, b, beta, c)
            }
        }

        mod $module {
            use super::*;

            thread_local! {
                /// Packing buffers for A and B, grown on first use and then reused.
                static BUFFERS: RefCell<(Vec<$t>, Vec<$t>)> = const { RefCell::new((Vec::new(), Vec::new())) };
            }

        /// The packed kernel with this thread's buffers; AVX2 tiles when `fast`
        /// (which the caller has checked the CPU for).
        pub(super) fn packed_on(fast: bool, alpha: $t, a: &MatRef<$t>, b: &MatRef<$t>, beta: $t, c: &mut MatMut<$t>) {
                BUFFERS.with(|buffers| {
                    let (pack_a, pack_b) = &mut *buffers.borrow_mut();
                    macro_rules! with_tile {
                        ($height:literal, $width:expr) => {{
                            #[cfg(target_arch = "x86_64")]
                            if fast {
                                // SAFETY: `fast` is true only when the CPU has both features the function is compiled with.
                                unsafe { avx2::$avx2::<$height, { $width }, $nh>(alpha, a, b, beta, c, pack_a, pack_b) };
                                return;
                            }
                            let _ = fast;
                            packed::gemm::<$t, $height, { $width }, $nh>(
                                alpha,
                                a,
                                b,
                                beta,
                                c,
                                pack_a,
                                pack_b,
                                packed::portable_tile::<$t, $height, { $width }, false>,
                                packed::portable_tile::<$t, $height, $nh, false>,
                            )
                        }};
                    }
                    // With fewer rows than a tile, a tile exactly as tall as A
                    // wastes no multiply-adds on padding (the gradient check's
                    // 3 images), and a wider one keeps enough sums in flight
                    // to hide the latency of the multiply-add.
                    match a.rows {
                        1 => with_tile!(1, 4 * $nr / 2),
                        2 => with_tile!(2, 4 * $nr / 2),
                        3 => with_tile!(3, 4 * $nr / 2),
                        4 => with_tile!(4, 3 * $nr / 2),
                        _ => with_tile!($mr, $nr),
                    }
                })
            }

        /// `matrixmultiply` on views already checked.
        pub(super) fn matrixmultiply_on(alpha: $t, a: &MatRef<$t>, b: &MatRef<$t>, beta: $t, c: &mut MatMut<$t>) {
                // A dimension of extent 1 is never stepped along; stride 0 keeps
                // an arbitrary (possibly huge) unused stride out of the casts.
                let stride = |s: usize, extent: usize| if extent <= 1 { 0 } else { s as isize };
                // SAFETY: check_gemm proved that the largest offset each view
                // reaches, (rows-1)*row_stride + (cols-1)*col_stride, is inside
                // its slice (so every used stride fits in isize), and that C's
                // elements are pairwise distinct. A and B are shared borrows and
                // C an exclusive one, so C cannot overlap A or B.
                unsafe {
                    $gemm(
                        a.rows,
                        a.cols,
                        b.cols,
                        alpha,
                        a.data.as_ptr(),
                        stride(a.row_stride, a.rows),
                        stride(a.col_stride, a.cols),
                        b.data.as_ptr(),
                        stride(b.row_stride, b.rows),
                        stride(b.col_stride, b.cols),
                        beta,
                        c.data.as_mut_ptr(),
                        stride(c.row_stride, c.rows),
                        stride(c.col_stride, c.cols),
                    )
                }
            }
        }
    };
}

// Register tiles: 6 rows x 2 AVX vectors of C (12 of the 16 ymm registers),
// and half that width for a narrow last panel.
impl_kernel!(f32, kernel_f32, matrixmultiply::sgemm, gemm_f32, 6, 16, 8);
impl_kernel!(f64, kernel_f64, matrixmultiply::dgemm, gemm_f64, 6, 8, 4);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_vec<T: Element>(len: usize, rng: &mut ChaCha8Rng) -> Vec<T> {
        (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect()
    }

    /// Runs `gemm` and `gemm_naive` on the same problem and compares. C sits
    /// inside a larger buffer (row stride `n + pad`, `pad` elements before and
    /// after) filled with NaN, so a write outside C shows up as a changed
    /// sentinel and a read of C under beta = 0 shows up as NaN in the result.
    #[allow(clippy::too_many_arguments)]
    fn check_case<T: Element>(
        m: usize,
        k: usize,
        n: usize,
        ta: Transpose,
        tb: Transpose,
        alpha: f64,
        beta: f64,
        tol: f64,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64((m * 1_000_000 + k * 1000 + n) as u64);
        // Stored shapes: op(A) is m x k, so A itself is k x m when transposed.
        let (a_rows, a_cols) = if ta == Transpose::Yes { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if tb == Transpose::Yes { (n, k) } else { (k, n) };
        let a = random_vec::<T>(a_rows * a_cols, &mut rng);
        // B's rows are 2 elements longer than B, so kernels that read B in
        // place are tested with a row stride that is not its width.
        let ldb = b_cols + 2;
        let b = random_vec::<T>(b_rows * ldb, &mut rng);
        let pad = 3;
        let ldc = n + pad;
        let len = pad + m * ldc + pad;
        let c_init: Vec<T> = if beta == 0.0 {
            vec![T::from_f64(f64::NAN); len]
        } else {
            let mut c = vec![T::from_f64(f64::NAN); len];
            for i in 0..m {
                for j in 0..n {
                    c[pad + i * ldc + j] = T::from_f64(rng.random_range(-1.0..1.0));
                }
            }
            c
        };
        let run = |backend: Option<GemmBackend>| {
            let mut c = c_init.clone();
            let a_view = MatRef::row_major(&a, a_rows, a_cols).op(ta);
            let b_view = MatRef::new(&b, b_rows, b_cols, ldb, 1).op(tb);
            let c_view = MatMut::new(&mut c[pad..], m, n, ldc, 1);
            let (alpha, beta) = (T::from_f64(alpha), T::from_f64(beta));
            match backend {
                Some(backend) => gemm_with(backend, alpha, a_view, b_view, beta, c_view).unwrap(),
                None => gemm_naive(alpha, a_view, b_view, beta, c_view).unwrap(),
            }
            c
        };
        let slow = run(None);
        for backend in [
            GemmBackend::Packed,
            GemmBackend::PackedPortable,
            GemmBackend::MatrixMultiply,
        ] {
            let fast = run(Some(backend));
            for idx in 0..len {
                let inside = idx >= pad && idx < pad + m * ldc && (idx - pad) % ldc < n;
                let (f, s) = (fast[idx].to_f64(), slow[idx].to_f64());
                if inside {
                    assert!(
                        (f - s).abs() <= tol * (1.0 + s.abs()),
                        "{backend:?} {m}x{k}x{n} {ta:?}{tb:?} alpha {alpha} beta {beta}: C[{idx}] = {f}, reference {s}"
                    );
                } else {
                    assert!(
                        f.is_nan(),
                        "{backend:?} {m}x{k}x{n} {ta:?}{tb:?}: wrote outside C at {idx}"
                    );
                }
            }
        }
    }

    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (63, 65, 67),
        (5, 1, 7),    // k = 1: an outer product
        (200, 3, 4),  // tall
        (3, 4, 200),  // wide
        (2, 300, 3),  // long k
        (3, 784, 50), // the gradient check's forward pass (few rows)
        (784, 3, 50), // and its weight gradient (short k)
        (16, 16, 16),
        (1, 17, 9),
        // Few rows: wide tiles over B in place, with every kind of tail
        // (overlapping the last full panel, or packed when B is too narrow).
        (1, 40, 70),
        (2, 33, 50),
        (3, 9, 17),
        (3, 5, 12),
        (4, 20, 37),
        (4, 7, 5),
        (100, 300, 50),  // crosses the KC block boundary
        (130, 20, 2100), // crosses the MC and NC block boundaries
    ];
    const TRANSPOSES: [(Transpose, Transpose); 4] = [
        (Transpose::No, Transpose::No),
        (Transpose::No, Transpose::Yes),
        (Transpose::Yes, Transpose::No),
        (Transpose::Yes, Transpose::Yes),
    ];
    const SCALARS: [f64; 3] = [0.0, 1.0, -0.5];

    fn check_all<T: Element>(tol: f64) {
        for &(m, k, n) in SHAPES {
            for &(ta, tb) in &TRANSPOSES {
                for &alpha in &SCALARS {
                    for &beta in &SCALARS {
                        check_case::<T>(m, k, n, ta, tb, alpha, beta, tol);
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_matches_naive_f32() {
        check_all::<f32>(1e-4);
    }

    #[test]
    fn gemm_matches_naive_f64() {
        check_all::<f64>(1e-12);
    }

    #[test]
    fn parallel_split_is_bit_identical_to_serial() {
        // 25 rows over 3 threads would leave a 1-row part, which must not
        // get a tile of its own (the 1-row kernel rounds differently).
        for (m, k, n) in [(301, 257, 50), (25, 300, 300)] {
            check_parallel_split(m, k, n);
        }
    }

    fn check_parallel_split(m: usize, k: usize, n: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(77);
        let a = random_vec::<f32>(m * k, &mut rng);
        let b = random_vec::<f32>(k * n, &mut rng);
        let c0 = random_vec::<f32>(m * n, &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = c0.clone();
            pool.install(|| {
                gemm_par(
                    0.5,
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    -1.0,
                    MatMut::row_major(&mut c, m, n),
                )
                .unwrap()
            });
            c
        };
        let serial = run(1);
        assert_eq!(serial, run(2));
        assert_eq!(serial, run(3));
        let mut expected = c0.clone();
        gemm_naive(
            0.5,
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            -1.0,
            MatMut::row_major(&mut expected, m, n),
        )
        .unwrap();
        for (x, y) in serial.iter().zip(&expected) {
            assert!((x - y).abs() < 1e-3, "{x} vs {y}");
        }
    }

    #[test]
    fn naive_matches_hand_computed_product() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let b = [5.0f64, 6.0, 7.0, 8.0];
        let mut c = [0.0f64; 4];
        gemm_naive(
            1.0,
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&b, 2, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap();
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        // With alpha 2 and beta -1 on top of the previous C: 2*AB - AB = AB.
        gemm(
            2.0,
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&b, 2, 2),
            -1.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap();
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = [1.0f32; 6];
        let b = [2.0f32; 6];
        let mut c = [f32::NAN; 4];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap();
        assert_eq!(c, [6.0; 4]);
    }

    #[test]
    fn shape_mismatch_names_both_shapes() {
        let a = [0.0f32; 6];
        let b = [0.0f32; 8];
        let mut c = [0.0f32; 8];
        let err = gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 4, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("[2, 3]") && text.contains("[4, 2"), "{text}");
    }

    #[test]
    fn view_outside_buffer_is_refused() {
        let a = [0.0f64; 5]; // too short for 2x3
        let b = [0.0f64; 6];
        let mut c = [7.0f64; 4];
        let err = gemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap_err();
        assert!(matches!(err, TensorError::BadView { .. }), "{err}");
        assert_eq!(c, [7.0; 4], "C must be untouched on error");
        // Overflowing strides are refused, not wrapped.
        let err = gemm(
            1.0,
            MatRef::new(&a, 2, 3, usize::MAX, 1),
            MatRef::row_major(&b, 3, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        )
        .unwrap_err();
        assert!(matches!(err, TensorError::BadView { .. }), "{err}");
    }

    #[test]
    fn aliasing_c_is_refused() {
        let a = [1.0f32; 4];
        let b = [1.0f32; 4];
        let mut c = [0.0f32; 4];
        // Row stride 0: both rows of C would be the same memory.
        let err = gemm(
            1.0,
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&b, 2, 2),
            0.0,
            MatMut::new(&mut c, 2, 2, 0, 1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("alias"), "{err}");
        // Strides (1, 1): C[0,1] and C[1,0] coincide.
        let err = gemm(
            1.0,
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&b, 2, 2),
            0.0,
            MatMut::new(&mut c, 2, 2, 1, 1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("alias"), "{err}");
        // A and B may alias freely: A * A^T from one buffer.
        let mut out = [0.0f32; 4];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 2),
            MatRef::row_major(&a, 2, 2).t(),
            0.0,
            MatMut::row_major(&mut out, 2, 2),
        )
        .unwrap();
        assert_eq!(out, [2.0; 4]);
    }

    #[test]
    fn empty_k_scales_c_by_beta() {
        let a: [f64; 0] = [];
        let b: [f64; 0] = [];
        let mut c = [2.0f64; 6];
        gemm(
            1.0,
            MatRef::row_major(&a, 2, 0),
            MatRef::row_major(&b, 0, 3),
            0.5,
            MatMut::row_major(&mut c, 2, 3),
        )
        .unwrap();
        assert_eq!(c, [1.0; 6]);
    }
}
