//! GEMM with BLAS semantics on strided views: the entry points.
//!
//! `C = alpha * op(A) * op(B) + beta * C`, with op(A) `m x k`, op(B) `k x n`,
//! C `m x n`, each a strided view (`view.rs`; a transpose is a swap of
//! strides). As in BLAS, when `beta == 0` C is not read: it may hold NaN or
//! garbage.
//!
//! [`gemm()`] checks the shapes, that each view stays inside its buffer and
//! that no two elements of C share an address, and only then runs the crate's
//! packed kernel (`kernel/`: the BLIS-style driver with the explicit AVX-512
//! or AVX2 + FMA tiles where the CPU has them, chosen at run time, or the
//! portable tiles)
//! or, with [`GemmBackend::MatrixMultiply`], hands raw pointers to
//! `matrixmultiply`. [`gemm_par`] splits large products by rows over rayon.
//! The library's `unsafe` is here (the `matrixmultiply` call) and in the
//! tile sets' `TileSet` impl (`kernel/simd.rs`: the call into code compiled
//! for AVX2 or AVX-512), and in `shifted.rs` and `row_products.rs` (the
//! same call for their tiles), all after the checks.

#[cfg(target_arch = "x86_64")]
use crate::kernel::{avx2::Avx2, avx512::Avx512};
use crate::kernel::{portable::Portable, Product, TileSet};
use crate::view::check_gemm;
use crate::{Element, MatMut, MatRef, TensorError};
use std::cell::RefCell;

/// Which implementation computes a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmBackend {
    /// The crate's own packed kernel, with packing buffers reused per thread,
    /// on the widest tiles the CPU has (AVX-512 for products of more than 4
    /// rows and at least half an AVX-512 tile wide, else AVX2 + FMA, else
    /// portable). What [`gemm()`] runs.
    Packed,
    /// The packed kernel with its AVX2 + FMA tiles (portable ones on CPUs
    /// without them), so that tests cover them on AVX-512 CPUs too.
    PackedAvx2,
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
///
/// ```
/// use tensor::{gemm, MatMut, MatRef};
/// let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
/// let b_t = [1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0]; // B^T, 2 x 3
/// let mut c = [1.0f32; 4]; // 2 x 2
/// // C = 2 * A * B + C, with B read through the transposed view of b_t.
/// let (a, b) = (MatRef::row_major(&a, 2, 3), MatRef::row_major(&b_t, 2, 3).t());
/// gemm(2.0, a, b, 1.0, MatMut::row_major(&mut c, 2, 2)).unwrap();
/// assert_eq!(c, [9.0, 11.0, 21.0, 23.0]);
/// // A 2 x 3 times a 2 x 3: refused, C untouched.
/// assert!(gemm(1.0, a, b.t(), 0.0, MatMut::row_major(&mut c, 2, 2)).is_err());
/// assert_eq!(c, [9.0, 11.0, 21.0, 23.0]);
/// ```
pub fn gemm<T: Element>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) -> Result<(), TensorError> {
    gemm_with(GemmBackend::Packed, alpha, a, b, beta, c)
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
        GemmBackend::Packed => T::gemm_packed(alpha, &a, &b, beta, &mut c),
        GemmBackend::PackedAvx2 => T::gemm_packed_avx2(alpha, &a, &b, beta, &mut c),
        GemmBackend::PackedPortable => T::gemm_packed_portable(alpha, &a, &b, beta, &mut c),
        GemmBackend::MatrixMultiply => T::gemm_matrixmultiply(alpha, &a, &b, beta, &mut c),
    }
    Ok(())
}

/// Products smaller than this many multiply-adds run on one thread: below
/// it, waking a second core costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Rows per parallel part are a multiple of this: half the AVX-512 tile's
/// 8 rows, as a last panel of 4 rows gets a tile half as tall, so a batch
/// of 100 splits 52 + 48 (6.5 and 6 tiles' work, where multiples of 6 give
/// 54 + 46, 7 and 6) and 784 rows 392 + 392 (49 tiles each). AVX2's tiles
/// are 6 rows, and a part of them may end in a partly filled one: at 100
/// rows the longer part is 9 tiles either way.
const PARALLEL_ROW_QUANTUM: usize = 4;

/// The fewest rows of a parallel part other than the last: every part then
/// runs the tiles the whole product runs (`gemm_packed` gives products of 4
/// rows or fewer tiles of their own, whose last columns sum in another
/// order: a part of 4 rows would round differently from the serial run).
const PARALLEL_MIN_PART: usize = 2 * PARALLEL_ROW_QUANTUM;

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
    if threads <= 1 || macs < PARALLEL_MIN_MACS || m < 2 * PARALLEL_MIN_PART || !c.rows_are_disjoint() {
        // Already checked: straight to the kernel, as `gemm()` would.
        T::gemm_packed(alpha, &a, &b, beta, &mut c);
        return Ok(());
    }
    let part_rows = m
        .div_ceil(threads)
        .next_multiple_of(PARALLEL_ROW_QUANTUM)
        .max(PARALLEL_MIN_PART);
    split_rows_and_run(alpha, a, b, beta, c, part_rows);
    Ok(())
}

/// Halves C (and A) by rows until a part has at most `part_rows` rows
/// (at least [`PARALLEL_MIN_PART`]): every part but the last has a whole
/// multiple of `part_rows`.
///
/// A last part of 4 rows or fewer joins the one before it: the kernel gives
/// products that short a tile of their own height and width (see
/// `gemm_packed`), which rounds differently from the tiles the serial run
/// uses for the same rows. So every part has more than 4 rows.
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

    /// The packed kernel with AVX2 tiles at most.
    #[doc(hidden)]
    fn gemm_packed_avx2(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>);

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
    (
        $t:ty, $module:ident, $gemm:path,
        ($mr:literal, $nr:literal, $nh:literal),
        ($mr_wide:literal, $nr_wide:literal, $nh_wide:literal)
    ) => {
        impl GemmKernel for $t {
            fn gemm_packed(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                // AVX-512 for products taller than 4 rows and at least half
                // its tile wide: narrower ones (an output layer's 10
                // columns) waste less padding in AVX2's narrower tiles.
                #[cfg(target_arch = "x86_64")]
                if let (true, Some(avx512)) = (a.rows > 4 && 2 * b.cols >= $nr_wide, Avx512::detect()) {
                    return $module::with_buffers(|pack_a, pack_b| {
                        avx512.gemm::<$mr_wide, $nr_wide, $nh_wide>(Product {
                            alpha,
                            a,
                            b,
                            beta,
                            c,
                            pack_a,
                            pack_b,
                        })
                    });
                }
                Self::gemm_packed_avx2(alpha, a, b, beta, c)
            }

            fn gemm_packed_avx2(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                #[cfg(target_arch = "x86_64")]
                if let Some(avx2) = Avx2::detect() {
                    return $module::packed_on(&avx2, alpha, a, b, beta, c);
                }
                $module::packed_on(&Portable, alpha, a, b, beta, c)
            }

            fn gemm_packed_portable(alpha: Self, a: &MatRef<Self>, b: &MatRef<Self>, beta: Self, c: &mut MatMut<Self>) {
                $module::packed_on(&Portable, alpha, a, b, beta, c)
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

            /// `f` with this thread's packing buffers.
            pub(super) fn with_buffers(f: impl FnOnce(&mut Vec<$t>, &mut Vec<$t>)) {
                BUFFERS.with(|buffers| {
                    let (pack_a, pack_b) = &mut *buffers.borrow_mut();
                    f(pack_a, pack_b)
                })
            }

            /// The packed kernel with this thread's buffers on the tile set `tiles`,
            /// its register tile chosen for the shape.
            pub(super) fn packed_on(
                tiles: &impl TileSet<$t>,
                alpha: $t,
                a: &MatRef<$t>,
                b: &MatRef<$t>,
                beta: $t,
                c: &mut MatMut<$t>,
            ) {
                with_buffers(|pack_a, pack_b| {
                    let product = Product {
                        alpha,
                        a,
                        b,
                        beta,
                        c,
                        pack_a,
                        pack_b,
                    };
                    // With fewer rows than a tile, a tile exactly as tall as A
                    // wastes no multiply-adds on padding (the gradient check's
                    // 3 images), and a wider one keeps enough sums in flight
                    // to hide the latency of the multiply-add.
                    match a.rows {
                        1 => tiles.gemm::<1, { 4 * $nr / 2 }, $nh>(product),
                        2 => tiles.gemm::<2, { 4 * $nr / 2 }, $nh>(product),
                        3 => tiles.gemm::<3, { 4 * $nr / 2 }, $nh>(product),
                        4 => tiles.gemm::<4, { 3 * $nr / 2 }, $nh>(product),
                        _ => tiles.gemm::<$mr, $nr, $nh>(product),
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

// Register tiles (rows, columns, columns of a narrow last panel): for AVX2,
// 6 rows x 2 vectors of C (12 of the 16 ymm registers); for AVX-512, 8 rows x
// 3 vectors in f32 (24 of the 32 zmm registers) and 8 rows x 2 vectors in
// f64, which keep the multiply-adds ahead of the loads of A's broadcasts.
// AVX-512's f32 tail tile is AVX2's, 8 wide: a packed product of 56 columns
// is 48 + 8 columns of work, where any tail of 16-wide vectors makes it 64.
// A tail of at most 4 is column tiles with A packed (a weight gradient,
// x^T.dout, of 50 columns: 48 + 2) and dot products with a row-major A of
// long rows (a layer's forward product): see `driver.rs`.
impl_kernel!(f32, kernel_f32, matrixmultiply::sgemm, (6, 16, 8), (8, 48, 8));
impl_kernel!(f64, kernel_f64, matrixmultiply::dgemm, (6, 8, 4), (8, 16, 8));
