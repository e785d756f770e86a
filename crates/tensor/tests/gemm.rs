//! The GEMM through its public API: every backend against the naive triple
//! loop over odd shapes, transposes, strided and column-major operands and
//! the BLAS scalars; the parallel split; and the refusals.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{gemm, gemm_naive, gemm_par, gemm_with, Element, GemmBackend, MatMut, MatRef, TensorError, Transpose};

fn random_vec<T: Element>(len: usize, rng: &mut ChaCha8Rng) -> Vec<T> {
    (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect()
}

/// How the operands sit in memory beyond `op(A)` and `op(B)`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// A row-major (or its transpose), C row-major.
    Plain,
    /// A with general strides (neither is 1: every other element of rows
    /// one element longer than needed), C row-major.
    StridedA,
    /// C column-major (row stride 1, column stride `m + pad`).
    ColumnMajorC,
}

/// Runs `gemm` (every backend) and `gemm_naive` on the same problem and
/// compares. C sits inside a larger buffer (`pad` spare elements per row or
/// column, and `pad` before and after) filled with NaN, so a write outside C
/// shows up as a changed sentinel and a read of C under beta = 0 shows up as
/// NaN in the result.
fn check_case<T: Element>(
    (m, k, n): (usize, usize, usize),
    (ta, tb): (Transpose, Transpose),
    layout: Layout,
    (alpha, beta): (f64, f64),
    tol: f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64((m * 1_000_000 + k * 1000 + n) as u64);
    // Stored shapes: op(A) is m x k, so A itself is k x m when transposed.
    let (a_rows, a_cols) = if ta == Transpose::Yes { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if tb == Transpose::Yes { (n, k) } else { (k, n) };
    let (a_row_stride, a_col_stride) = match layout {
        Layout::StridedA => (2 * a_cols + 1, 2),
        _ => (a_cols, 1),
    };
    let a = random_vec::<T>(a_rows * a_row_stride, &mut rng);
    // B's rows are 2 elements longer than B, so kernels that read B in
    // place are tested with a row stride that is not its width.
    let ldb = b_cols + 2;
    let b = random_vec::<T>(b_rows * ldb, &mut rng);
    let pad = 3;
    let (c_row_stride, c_col_stride) = match layout {
        Layout::ColumnMajorC => (1, m + pad),
        _ => (n + pad, 1),
    };
    let at = |i: usize, j: usize| pad + i * c_row_stride + j * c_col_stride;
    let len = at(m, n) + pad;
    let mut inside = vec![false; len];
    let mut c_init = vec![T::from_f64(f64::NAN); len];
    for i in 0..m {
        for j in 0..n {
            inside[at(i, j)] = true;
            if beta != 0.0 {
                c_init[at(i, j)] = T::from_f64(rng.random_range(-1.0..1.0));
            }
        }
    }
    let run = |backend: Option<GemmBackend>| {
        let mut c = c_init.clone();
        let a_view = MatRef::new(&a, a_rows, a_cols, a_row_stride, a_col_stride).op(ta);
        let b_view = MatRef::new(&b, b_rows, b_cols, ldb, 1).op(tb);
        let c_view = MatMut::new(&mut c[pad..], m, n, c_row_stride, c_col_stride);
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
        GemmBackend::PackedAvx2,
        GemmBackend::PackedPortable,
        GemmBackend::MatrixMultiply,
    ] {
        let fast = run(Some(backend));
        for idx in 0..len {
            let (f, s) = (fast[idx].to_f64(), slow[idx].to_f64());
            if inside[idx] {
                assert!(
                    (f - s).abs() <= tol * (1.0 + s.abs()),
                    "{backend:?} {m}x{k}x{n} {ta:?}{tb:?} {layout:?} alpha {alpha} beta {beta}: C[{idx}] = {f}, reference {s}"
                );
            } else {
                assert!(
                    f.is_nan(),
                    "{backend:?} {m}x{k}x{n} {ta:?}{tb:?} {layout:?}: wrote outside C at {idx}"
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
    (100, 300, 50), // the training batch's shape class
    // A row-major A of at least 64 columns is read in place, and a tail of
    // at most NH / 2 columns is then dot products along k; 63 are packed.
    (1, 101, 70), // one row: the paired-step loop and an odd last step
    (1, 64, 35),  // exactly 64 columns, whole blocks of steps
    (5, 63, 20),  // one column short: packed
    (9, 100, 56), // a tail exactly NH wide: a narrow tile on rows in place
    (9, 100, 52), // a tail of 4 (NH / 2): dot products on every tile set
    // A packed (transposed) with a tail of at most NH / 2: column tiles on
    // AVX-512, in groups of 4 panels, then single panels, the last one cut.
    (37, 90, 51),    // a tail of 3: a pair of columns and a single one
    (13, 2100, 50),  // AVX-512 tiles and dot products (column tiles, A transposed) over two blocks of k
    (7, 2100, 19),   // two blocks of k (KC): the second adds to C
    (3, 1500, 50),   // two blocks of k with B read in place
    (130, 20, 2100), // crosses the NC block boundary (the 200- and 784-row cases cross MC)
];
const TRANSPOSES: [(Transpose, Transpose); 4] = [
    (Transpose::No, Transpose::No),
    (Transpose::No, Transpose::Yes),
    (Transpose::Yes, Transpose::No),
    (Transpose::Yes, Transpose::Yes),
];
const SCALARS: [f64; 3] = [0.0, 1.0, -0.5];

fn check_all<T: Element>(tol: f64) {
    for &shape in SHAPES {
        for &(ta, tb) in &TRANSPOSES {
            for layout in [Layout::Plain, Layout::StridedA, Layout::ColumnMajorC] {
                for &alpha in &SCALARS {
                    for &beta in &SCALARS {
                        check_case::<T>(shape, (ta, tb), layout, (alpha, beta), tol);
                    }
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
    // get a tile of its own (the 1-row kernel rounds differently). Row-major
    // A of long rows is read in place (with a dot-product tail for n = 50);
    // a transposed A, or one of fewer than 64 columns, is packed. A batch
    // of 100 rows in place ends in 4 rows, a tile half as tall on AVX-512,
    // and splits 52 + 48: rows 48-51, in a full tile serially, are the
    // first part's half tile.
    // Small products on many threads must not split into parts of 4 rows
    // or fewer (a kernel of their own): 9 rows on 3 threads, 100 on 32.
    for (m, k, n, ta) in [
        (100, 784, 50, Transpose::No),
        (9, 784, 290, Transpose::No),
        (301, 257, 50, Transpose::No),
        (25, 300, 300, Transpose::No),
        (25, 300, 290, Transpose::No),
        (61, 2100, 56, Transpose::No),
        (301, 257, 50, Transpose::Yes),
        (301, 50, 300, Transpose::No),
    ] {
        check_parallel_split(m, k, n, ta);
    }
}

fn check_parallel_split(m: usize, k: usize, n: usize, ta: Transpose) {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let a = random_vec::<f32>(m * k, &mut rng);
    let a_view = || match ta {
        Transpose::No => MatRef::row_major(&a, m, k),
        Transpose::Yes => MatRef::row_major(&a, k, m).t(),
    };
    let b = random_vec::<f32>(k * n, &mut rng);
    let c0 = random_vec::<f32>(m * n, &mut rng);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut c = c0.clone();
        pool.install(|| {
            gemm_par(
                0.5,
                a_view(),
                MatRef::row_major(&b, k, n),
                -1.0,
                MatMut::row_major(&mut c, m, n),
            )
            .unwrap()
        });
        c
    };
    let serial = run(1);
    for threads in [2, 3, 32] {
        assert_eq!(serial, run(threads), "{m} x {k} x {n} on {threads} threads");
    }
    let mut expected = c0.clone();
    gemm_naive(
        0.5,
        a_view(),
        MatRef::row_major(&b, k, n),
        -1.0,
        MatMut::row_major(&mut expected, m, n),
    )
    .unwrap();
    for (x, y) in serial.iter().zip(&expected) {
        // f32 rounding grows with the length of the sums.
        let tolerance = 1e-4 * (k as f32).sqrt() * (1.0 + y.abs());
        assert!((x - y).abs() < tolerance, "{x} vs {y}");
    }
}

/// A transposed A's product (packed A) with a tail of 2 columns (48 + 2,
/// column tiles on AVX-512) gives, to the bit, the columns that a tail of 7
/// (48 + 7, the narrow tile the column tiles replace) gives for the same A,
/// columns of B and C: the two ways of summing the last columns are one
/// chain of multiply-adds each, merged into C alike (`alpha` and `beta` not
/// 1 and 0, over two blocks of k).
fn check_column_tail_is_a_tile<T: Element>() {
    let (m, k, wide_n) = (61, 2100, 55);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = random_vec::<T>(k * m, &mut rng);
    let wide_b = random_vec::<T>(k * wide_n, &mut rng);
    let wide_c = random_vec::<T>(m * wide_n, &mut rng);
    let first =
        |values: &[T], n: usize| -> Vec<T> { values.chunks_exact(wide_n).flat_map(|row| row[..n].to_vec()).collect() };
    let product = |n: usize| {
        let b = first(&wide_b, n);
        let mut c = first(&wide_c, n);
        gemm(
            T::from_f64(0.5),
            MatRef::row_major(&a, k, m).t(),
            MatRef::row_major(&b, k, n),
            T::from_f64(-1.5),
            MatMut::row_major(&mut c, m, n),
        )
        .unwrap();
        c
    };
    assert_eq!(product(50), first(&product(wide_n), 50));
}

#[test]
fn a_column_tail_gives_a_tiles_values() {
    check_column_tail_is_a_tile::<f32>();
    check_column_tail_is_a_tile::<f64>();
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
