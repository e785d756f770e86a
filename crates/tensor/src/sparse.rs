//! A product whose left operand is mostly zeros, computed over its nonzero
//! values only.
//!
//! An MNIST image is about 81% zero pixels (the background), and an MLP's
//! first layer multiplies a batch of images by its weights, `Y = X W`,
//! where a packed GEMM spends a multiply-add on every pixel. Here a row of
//! `A` is scanned 64 values at a time for its nonzero values (a few vector
//! comparisons into a bit mask), and each one's row of `B` is multiplied
//! into the row of `C`: a fifth of the multiply-adds, but a load of a row
//! of `B` each, in the order the pixels pick them, where the GEMM's tiles
//! reuse every load of `B` for 8 rows. That pays where `A` is sparse enough
//! and `B` small enough to stay in cache, which [`pays`] decides.
//!
//! **Order of the sums.** Each value of `C` is one chain of multiply-adds,
//! from zero, over the nonzero terms in order of `k`; with FMA (AVX2 or
//! AVX-512) each multiply-add is rounded once. A term skipped for its zero
//! would add `0 * b`, which leaves a nonzero sum as it is: the result is
//! the chain over every term, except that a non-finite value of `B` meets
//! only the nonzero values of `A` (a GEMM would turn `0 * inf` into NaN).
//! Rows of `C` are split over rayon's threads whole, so the result is the
//! same for any number of threads.
//!
//! The weight gradient `dW = X^T G` the same way did not pay: each nonzero
//! pixel adding its multiple of a row of `G` to a row of `dW` (read, added
//! to and written back once per pixel) took 141 us against the GEMM's 84
//! for a batch of 100 on one core; `X` transposed first (its nonzero values
//! scattered into a zeroed `X^T`, 26 us) and then this module's product
//! (`G`'s 20 KB in L1), 72-77 us: 10% for a second code path.

use crate::shifted::multiply_add;
#[cfg(target_arch = "x86_64")]
use crate::shifted::Features;
use crate::Element;
use rayon::prelude::*;

/// The largest share of nonzero values in `A` at which [`pays`] chooses
/// [`product`]. A nonzero value costs it about 3.3 ns on one core (a load
/// of a row of `B` from L2 and a multiply-add a column), where the packed
/// GEMM spends about 1 ns a value of `A`, zero or not (its tiles reuse
/// each load of `B` for 8 rows): at MNIST's shapes (`k = 784`, `n = 50`)
/// they break even near 30% nonzero. MNIST's batches are 19% nonzero.
pub const MAX_NONZERO_SHARE: f64 = 0.25;

/// The largest `B` (`k x n`, in bytes) [`pays`] accepts: the nonzero values
/// pick its rows in no order a cache can foresee, so it must fit in a
/// core's L2 cache (1 MB or more on the machines measured) with room to
/// spare. An MLP's first layer on MNIST is 784 x 50 (157 KB in f32).
pub const MAX_B_BYTES: usize = 512 * 1024;

/// Values of `A` scanned at once for their nonzero values (a 64-bit mask):
/// a scan ends in a mispredicted branch when its last nonzero value is
/// done, so the fewer scans a row, the better.
pub(crate) const SCAN: usize = 64;

/// Products of fewer multiply-adds than this (counting zeros too) run on
/// one thread: the GEMM's threshold (`gemm.rs`), where waking a second core
/// costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Whether [`product`] beats the packed GEMM for `a` (row-major, `k`
/// values a row) times a `k x n` `B`: at most [`MAX_NONZERO_SHARE`] of `a` nonzero, and `B` at
/// most [`MAX_B_BYTES`]. Counts `a`'s nonzero values (a pass over it).
pub fn pays<T: Element>(a: &[T], k: usize, n: usize) -> bool {
    let b_bytes = k.saturating_mul(n).saturating_mul(size_of::<T>());
    if a.is_empty() || b_bytes > MAX_B_BYTES {
        return false;
    }
    nonzeros(a) as f64 <= MAX_NONZERO_SHARE * a.len() as f64
}

/// The number of nonzero values in `a`, on the widest instruction set the CPU has.
pub(crate) fn nonzeros<T: Element>(a: &[T]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.nonzeros(a);
    }
    count_nonzeros(a, nonzero_mask)
}

/// [`nonzeros`] with `mask` telling the nonzero values of a scan.
#[inline(always)]
fn count_nonzeros<T: Element>(a: &[T], mask: impl Fn(&[T; SCAN]) -> u64) -> usize {
    let (blocks, rest) = a.as_chunks::<SCAN>();
    let in_blocks: usize = blocks.iter().map(|block| mask(block).count_ones() as usize).sum();
    in_blocks + rest.iter().filter(|&&v| v != T::ZERO).count()
}

/// Bit `l` set where `block[l] != 0` (a NaN is nonzero), in plain code.
#[inline(always)]
pub(crate) fn nonzero_mask<T: Element>(block: &[T; SCAN]) -> u64 {
    let mut mask = 0u64;
    for (l, &v) in block.iter().enumerate() {
        mask |= u64::from(v != T::ZERO) << l;
    }
    mask
}

/// `C = A B` over `A`'s nonzero values: `A` row-major `m x k`, `B`
/// row-major `k x n`, `C` row-major `m x n`, overwritten. `C[i, j]` is the
/// chain `sum_p A[i, p] B[p, j]` over the `p` where `A[i, p] != 0`, in
/// order of `p` (see the module doc). Large products are split by rows of
/// `C` over rayon's current pool.
///
/// # Panics
/// When a buffer's length is not its shape's.
pub fn product<T: Element>(a: &[T], b: &[T], (m, k, n): (usize, usize, usize), c: &mut [T]) {
    assert_eq!(a.len(), m * k, "sparse::product: A must be m x k");
    assert_eq!(b.len(), k * n, "sparse::product: B must be k x n");
    assert_eq!(c.len(), m * n, "sparse::product: C must be m x n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(T::ZERO);
        return;
    }
    let parts = parts(m, m.saturating_mul(k).saturating_mul(n));
    let rows = m.div_ceil(parts);
    a.par_chunks(rows * k)
        .zip(c.par_chunks_mut(rows * n))
        .with_max_len(1)
        .for_each(|(a, c)| product_rows(Rows { a, b, k, n }, c));
}

/// Parts to split `rows` rows of `C` into for `macs` multiply-adds: one
/// per thread for large products, at least one row each.
fn parts(rows: usize, macs: usize) -> usize {
    let threads = rayon::current_num_threads();
    if macs < PARALLEL_MIN_MACS {
        1
    } else {
        threads.clamp(1, rows.max(1))
    }
}

/// Rows of `A` (`k` values each) against all of `B` (`k x n`).
#[derive(Clone, Copy)]
struct Rows<'a, T> {
    a: &'a [T],
    b: &'a [T],
    k: usize,
    n: usize,
}

/// `A`'s values `start..start + SCAN` of a row, as one scan: in place, or
/// copied with zeros past the row's end. A macro so that the copy can live
/// in the caller's frame.
macro_rules! scan_at {
    ($row:expr, $start:expr, $padded:ident) => {{
        let values = &$row[$start..];
        match values.first_chunk::<SCAN>() {
            Some(scan) => scan,
            None => {
                $padded = padded::<T, SCAN>(values);
                &$padded
            }
        }
    }};
}

/// [`product`] on a part of the rows, on the widest instruction set the CPU has.
fn product_rows<T: Element>(rows: Rows<'_, T>, c: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.sparse_product(rows, c);
    }
    match size_of::<T>() == 4 {
        true => rows.run::<64, false>(nonzero_mask, c),
        false => rows.run::<32, false>(nonzero_mask, c),
    }
}

impl<T: Element> Rows<'_, T> {
    /// `C` row by row, `W` columns at a time, their sums held in registers
    /// (four vectors on AVX2 and AVX-512) while the row of `A` is scanned and each nonzero
    /// value's row of `B` is multiplied in. A row of `B` is read `W` wide
    /// from where the columns start, into the next row for a last block of
    /// fewer columns (those sums are not stored), and through a copy where
    /// fewer than `W` values are left. (Blocking `k` so that `SCAN` rows of
    /// `B` stay in L1 while every row of `A` goes through them was slower:
    /// the sums then go to `C` and back once a block.)
    #[inline(always)]
    fn run<const W: usize, const FUSED: bool>(self, mask: impl Fn(&[T; SCAN]) -> u64, c: &mut [T]) {
        let Rows { a, b, k, n } = self;
        let mut padded_scan;
        for (a_row, c_row) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)) {
            for start in (0..n).step_by(W) {
                let mut sums = [T::ZERO; W];
                for first in (0..k).step_by(SCAN) {
                    let scan = scan_at!(a_row, first, padded_scan);
                    let mut bits = mask(scan);
                    while bits != 0 {
                        let l = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        // `l < SCAN` always: the `%` only spares a bounds check.
                        let x = scan[l % SCAN];
                        let at = (first + l) * n + start;
                        let b_run = match b.get(at..).and_then(|run| run.first_chunk::<W>()) {
                            Some(run) => *run,
                            None => padded::<T, W>(&b[at..]),
                        };
                        for (sum, &value) in sums.iter_mut().zip(&b_run) {
                            *sum = multiply_add::<T, FUSED>(x, value, *sum);
                        }
                    }
                }
                let c_run = &mut c_row[start..n.min(start + W)];
                c_run.copy_from_slice(&sums[..c_run.len()]);
            }
        }
    }
}

/// The first `W` values of `run`, zeros past its end.
#[inline(always)]
pub(crate) fn padded<T: Element, const W: usize>(run: &[T]) -> [T; W] {
    let mut values = [T::ZERO; W];
    for (value, &v) in values.iter_mut().zip(run) {
        *value = v;
    }
    values
}

/// The product compiled for one instruction set: `W` is four vectors,
/// 64 values in f32 and 32 in f64 with AVX-512, half that with AVX2;
/// `$mask` the set's comparison of a scan with zero.
#[cfg(target_arch = "x86_64")]
macro_rules! compiled_for {
    ($product:ident, $nonzeros:ident, $features:literal, $w_f32:literal, $mask:ident) => {
        #[target_feature(enable = $features)]
        fn $product<T: Element>(rows: Rows<'_, T>, c: &mut [T]) {
            let mask = |block: &[T; SCAN]| $mask(block);
            match size_of::<T>() == 4 {
                true => rows.run::<$w_f32, true>(mask, c),
                false => rows.run::<{ $w_f32 / 2 }, true>(mask, c),
            }
        }

        #[target_feature(enable = $features)]
        fn $nonzeros<T: Element>(a: &[T]) -> usize {
            count_nonzeros(a, |block: &[T; SCAN]| $mask(block))
        }
    };
}

/// [`nonzero_mask`] as AVX-512 comparisons, 16 values of f32 (8 of f64) a
/// vector. `to_f64` and back is exact and compiles to nothing: it only
/// names a `T` as the `f32` or `f64` it is.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
#[inline]
pub(crate) fn nonzero_mask_avx512<T: Element>(block: &[T; SCAN]) -> u64 {
    use crate::kernel::avx512::{load_f32x16, load_f64x8};
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    if size_of::<T>() == 4 {
        for (i, v) in block.as_chunks::<16>().0.iter().enumerate() {
            let vector = load_f32x16(&std::array::from_fn(|l| v[l].to_f64() as f32));
            mask |= u64::from(_mm512_cmpneq_ps_mask(vector, _mm512_setzero_ps())) << (16 * i);
        }
    } else {
        for (i, v) in block.as_chunks::<8>().0.iter().enumerate() {
            let vector = load_f64x8(&std::array::from_fn(|l| v[l].to_f64()));
            mask |= u64::from(_mm512_cmpneq_pd_mask(vector, _mm512_setzero_pd())) << (8 * i);
        }
    }
    mask
}

/// [`nonzero_mask`] as AVX2 comparisons, 8 values of f32 (4 of f64) a vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn nonzero_mask_avx2<T: Element>(block: &[T; SCAN]) -> u64 {
    use crate::kernel::avx2::{load_f32, load_f64};
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    if size_of::<T>() == 4 {
        for (i, v) in block.as_chunks::<8>().0.iter().enumerate() {
            let vector = load_f32(&std::array::from_fn(|l| v[l].to_f64() as f32));
            let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(vector, _mm256_setzero_ps());
            mask |= u64::from(_mm256_movemask_ps(nonzero) as u8) << (8 * i);
        }
    } else {
        for (i, v) in block.as_chunks::<4>().0.iter().enumerate() {
            let vector = load_f64(&std::array::from_fn(|l| v[l].to_f64()));
            let nonzero = _mm256_cmp_pd::<_CMP_NEQ_UQ>(vector, _mm256_setzero_pd());
            mask |= u64::from(_mm256_movemask_pd(nonzero) as u8 & 0xf) << (4 * i);
        }
    }
    mask
}

#[cfg(target_arch = "x86_64")]
compiled_for!(
    product_avx512,
    nonzeros_avx512,
    "avx512f,avx512dq,avx2,fma",
    64,
    nonzero_mask_avx512
);
#[cfg(target_arch = "x86_64")]
compiled_for!(product_avx2, nonzeros_avx2, "avx2,fma", 32, nonzero_mask_avx2);

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`product`]'s rows on this instruction set.
    fn sparse_product<T: Element>(self, rows: Rows<'_, T>, c: &mut [T]) {
        // SAFETY: a `Features` value is made only by `detect`, after finding
        // on this CPU every feature its variant names, which are the ones
        // these functions are compiled with.
        unsafe {
            match self {
                Features::Avx512 => product_avx512(rows, c),
                Features::Avx2 => product_avx2(rows, c),
            }
        }
    }

    /// [`nonzeros`] on this instruction set.
    fn nonzeros<T: Element>(self, a: &[T]) -> usize {
        // SAFETY: as in `sparse_product`.
        unsafe {
            match self {
                Features::Avx512 => nonzeros_avx512(a),
                Features::Avx2 => nonzeros_avx2(a),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shifted::exact_values;

    /// Exact values with about `zeros` in 8 of them zero.
    fn sparse_values<T: Element>(len: usize, seed: usize, zeros: usize) -> Vec<T> {
        let mut values = exact_values::<T>(len, seed);
        for (i, value) in values.iter_mut().enumerate() {
            if (i * 5 + seed) % 8 < zeros {
                *value = T::ZERO;
            }
        }
        values
    }

    fn reference<T: Element>(a: &[T], b: &[T], (m, k, n): (usize, usize, usize)) -> Vec<T> {
        let mut c = vec![T::ZERO; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    /// The product against the reference, on every instruction set this
    /// CPU has (and the portable code): the whole product through
    /// `product`, which splits large ones over the threads.
    fn check<T: Element>((m, k, n): (usize, usize, usize), zeros: usize) {
        let a = sparse_values::<T>(m * k, 1, zeros);
        let b = exact_values::<T>(k * n, 2);
        let expected = reference(&a, &b, (m, k, n));
        let mut c = vec![T::from_f64(7.0); m * n];
        product(&a, &b, (m, k, n), &mut c);
        assert_eq!(c, expected, "product {m}x{k}x{n}");
        // The portable code, and AVX2 where the CPU has more.
        let mut portable = vec![T::ZERO; m * n];
        match size_of::<T>() == 4 {
            true => Rows { a: &a, b: &b, k, n }.run::<64, false>(nonzero_mask, &mut portable),
            false => Rows { a: &a, b: &b, k, n }.run::<32, false>(nonzero_mask, &mut portable),
        }
        assert_eq!(portable, expected, "portable product {m}x{k}x{n}");
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            let mut avx2 = vec![T::ZERO; m * n];
            Features::Avx2.sparse_product(Rows { a: &a, b: &b, k, n }, &mut avx2);
            assert_eq!(avx2, expected, "AVX2 product {m}x{k}x{n}");
        }
    }

    #[test]
    fn the_product_equals_the_reference() {
        for shape in [
            (1, 1, 1),
            (3, 7, 5),
            (5, 40, 50),
            (9, 37, 70),
            (4, 784, 50),
            (2, 16, 130),
        ] {
            for zeros in [0, 5, 8] {
                check::<f32>(shape, zeros);
                check::<f64>(shape, zeros);
            }
        }
    }

    #[test]
    fn an_empty_product_overwrites_c() {
        let mut c = vec![1.0f32; 6];
        product(&[], &[], (2, 0, 3), &mut c);
        assert_eq!(c, [0.0; 6]);
        // No rows, or no columns: nothing to write.
        product::<f32>(&[], &[0.0; 15], (0, 5, 3), &mut []);
        product::<f32>(&[0.0; 10], &[], (2, 5, 0), &mut []);
    }

    #[test]
    fn the_split_over_threads_changes_no_bit() {
        // Large enough to be split: 200 x 784 x 50, random values, most zero.
        let (m, k, n) = (200, 784, 50);
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let a: Vec<f32> = (0..m * k)
            .map(|_| next())
            .map(|v| if v < 0.3 { 0.0 } else { v })
            .collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut c = vec![0.0f32; m * n];
                product(&a, &b, (m, k, n), &mut c);
                c
            })
        };
        let serial = run(1);
        for threads in [2, 3, 7] {
            assert_eq!(run(threads), serial, "{threads} threads");
        }
    }

    fn check_count<T: Element>() {
        let mut a = sparse_values::<T>(1000, 1, 5);
        a[3] = T::from_f64(-0.0);
        a[70] = T::from_f64(f64::NAN);
        a[999] = T::ONE;
        let expected = a.iter().filter(|&&v| v != T::ZERO).count();
        assert_eq!(nonzeros(&a), expected);
        assert_eq!(count_nonzeros(&a, nonzero_mask), expected);
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            assert_eq!(Features::Avx2.nonzeros(&a), expected);
        }
    }

    #[test]
    fn nonzero_values_are_counted_on_every_set() {
        check_count::<f32>();
        check_count::<f64>();
    }

    #[test]
    fn pays_where_a_is_sparse_and_b_small() {
        let sparse = sparse_values::<f32>(100 * 784, 1, 6);
        let dense = sparse_values::<f32>(100 * 784, 1, 2);
        assert!(pays(&sparse, 784, 50));
        assert!(!pays(&dense, 784, 50));
        // B of 4320 x 100 f32 (1.7 MB): too large to be read out of order.
        assert!(!pays(&sparse_values::<f32>(4320, 1, 8), 4320, 100));
        assert!(!pays::<f32>(&[], 0, 0));
    }
}
