//! Sums of products of rows: `C = sum_i A_i B_i^T` where both operands are
//! stored along the summed dimension, as a convolution's weight gradient is.
//!
//! With `im2col`, the filters' gradient of one image is `dW = G col^T`: `G`
//! is `[FN, windows]` and `col` is `[taps, windows]`, both row-major, so
//! every value of `dW` is a dot product of a row of `G` with a row of `col`.
//! As a GEMM that is a B stored transposed: packing it is a transpose, a
//! value at a time, and its few columns (SimpleConvNet's 25 taps) fill a
//! register tile only half (one image 25.5 us, 34 GFLOP/s on one core).
//! Here the sums run along the rows themselves: a tile of `R` rows of `A`
//! by `S` rows of `B` keeps `R x S` vector sums, each step loading `R + S`
//! vectors of `L` consecutive values and doing `R x S` multiply-adds. The
//! sums carry on across all the images of a call and are added across
//! their lanes once at the end, so nothing is packed, nothing is
//! transposed, and the cost of the lanes' sum is paid once per call.
//!
//! The order of the additions is fixed by the shapes (lane `l` sums the
//! steps `l, l + L, ...` of every image in turn, then the lanes are added in
//! a fixed tree): the same bits whatever thread runs it.

#[cfg(target_arch = "x86_64")]
use crate::shifted::Features;
use crate::shifted::{assert_items_fit, multiply_add};
use crate::Element;

/// `C[r, s] = sum_i sum_p A_i[r, p] B_i[s, p]` over the `items` items `i`:
/// `A_i` the row-major `m x k` matrix at `a[i * a_stride..]`, `B_i` the
/// row-major `n x k` matrix at `b[i * b_stride..]`, `C` row-major `m x n`,
/// overwritten (zero when there are no items).
///
/// # Panics
/// When an item's `A` or `B` passes the end of its buffer, or `c` is not
/// `m * n` long.
pub fn row_products<T: Element>(
    (a, a_stride): (&[T], usize),
    (b, b_stride): (&[T], usize),
    items: usize,
    (m, n, k): (usize, usize, usize),
    c: &mut [T],
) {
    assert_eq!(c.len(), m * n, "row_products: C must be m x n");
    c.fill(T::ZERO);
    if items == 0 || m == 0 || n == 0 || k == 0 {
        return;
    }
    assert_items_fit("row_products: a", a.len(), (items, a_stride), m * k);
    assert_items_fit("row_products: b", b.len(), (items, b_stride), n * k);
    let products = RowProducts {
        a,
        a_stride,
        b,
        b_stride,
        items,
        m,
        n,
        k,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(features) = Features::detect() {
        return features.row_products(products, c);
    }
    products.run::<3, 3, 4, false>(c);
}

/// A checked [`row_products`].
struct RowProducts<'a, T> {
    a: &'a [T],
    a_stride: usize,
    b: &'a [T],
    b_stride: usize,
    items: usize,
    m: usize,
    n: usize,
    k: usize,
}

impl<T: Element> RowProducts<'_, T> {
    /// `C` in tiles of `R` rows of `A` by `S` rows of `B`, `L` lanes a sum.
    /// A last tile of fewer rows runs whole, its missing rows repeating the
    /// last real one and never stored.
    #[inline(always)]
    fn run<const R: usize, const S: usize, const L: usize, const FUSED: bool>(self, c: &mut [T]) {
        let (m, n) = (self.m, self.n);
        for r0 in (0..m).step_by(R) {
            let rows: [usize; R] = std::array::from_fn(|r| (r0 + r).min(m - 1));
            for s0 in (0..n).step_by(S) {
                let cols: [usize; S] = std::array::from_fn(|s| (s0 + s).min(n - 1));
                let tile = self.tile::<R, S, L, FUSED>(&rows, &cols);
                for (r, sums) in tile.iter().enumerate().take(m - r0) {
                    let row = &mut c[(r0 + r) * n + s0..];
                    for (slot, &sum) in row.iter_mut().zip(sums).take(n - s0) {
                        *slot = sum;
                    }
                }
            }
        }
    }

    /// One tile: rows `rows` of every `A_i` against rows `cols` of every
    /// `B_i`, `L` partial sums each, then each sum's lanes added.
    #[inline(always)]
    fn tile<const R: usize, const S: usize, const L: usize, const FUSED: bool>(
        &self,
        rows: &[usize; R],
        cols: &[usize; S],
    ) -> [[T; S]; R] {
        let k = self.k;
        let whole = k / L;
        let mut sums = [[[T::ZERO; L]; S]; R];
        for i in 0..self.items {
            let a_item = &self.a[i * self.a_stride..];
            let b_item = &self.b[i * self.b_stride..];
            let a_rows: [&[T]; R] = std::array::from_fn(|r| &a_item[rows[r] * k..][..k]);
            let b_rows: [&[T]; S] = std::array::from_fn(|s| &b_item[cols[s] * k..][..k]);
            let a_vectors: [&[[T; L]]; R] = std::array::from_fn(|r| a_rows[r].as_chunks::<L>().0);
            let b_vectors: [&[[T; L]]; S] = std::array::from_fn(|s| b_rows[s].as_chunks::<L>().0);
            // Every run has `whole` vectors, so the loop never breaks; but
            // with a panic path in it (an index LLVM cannot prove), the sums
            // would be kept in memory rather than in registers.
            'steps: for step in 0..whole {
                let mut a_step = [[T::ZERO; L]; R];
                for (slot, run) in a_step.iter_mut().zip(&a_vectors) {
                    let Some(&vector) = run.get(step) else { break 'steps };
                    *slot = vector;
                }
                for s in 0..S {
                    let Some(&b_step) = b_vectors[s].get(step) else {
                        break 'steps;
                    };
                    for r in 0..R {
                        for l in 0..L {
                            sums[r][s][l] = multiply_add::<T, FUSED>(a_step[r][l], b_step[l], sums[r][s][l]);
                        }
                    }
                }
            }
            if whole * L < k {
                // The last steps, zero-padded to one vector.
                let last = |run: &[T]| {
                    let mut padded = [T::ZERO; L];
                    padded[..k - whole * L].copy_from_slice(&run[whole * L..]);
                    padded
                };
                let a_step: [[T; L]; R] = std::array::from_fn(|r| last(a_rows[r]));
                for s in 0..S {
                    let b_step = last(b_rows[s]);
                    for r in 0..R {
                        for l in 0..L {
                            sums[r][s][l] = multiply_add::<T, FUSED>(a_step[r][l], b_step[l], sums[r][s][l]);
                        }
                    }
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|s| lane_sum(sums[r][s])))
    }
}

/// The sum of `L` lanes as a tree of halves (a fixed order).
#[inline(always)]
fn lane_sum<T: Element, const L: usize>(mut lanes: [T; L]) -> T {
    const { assert!(L.is_power_of_two()) };
    let mut width = L;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            let right = lanes[l + width];
            lanes[l] += right;
        }
    }
    lanes[0]
}

/// [`row_products`] compiled for one instruction set; `T` is `f32` or
/// `f64` (`Element` is sealed): `f64`'s vectors hold half the lanes.
#[cfg(target_arch = "x86_64")]
macro_rules! compiled_for {
    ($name:ident, $features:literal, ($r:literal, $s:literal), $lanes_f32:literal) => {
        #[target_feature(enable = $features)]
        fn $name<T: Element>(products: RowProducts<'_, T>, c: &mut [T]) {
            match size_of::<T>() == 4 {
                true => products.run::<$r, $s, $lanes_f32, true>(c),
                false => products.run::<$r, $s, { $lanes_f32 / 2 }, true>(c),
            }
        }
    };
}

// Tiles (rows of A, rows of B) and f32 lanes: AVX-512 12 sums, AVX2 9, each
// step loading one vector a row. Larger AVX-512 tiles would fit its 32
// registers, but LLVM then keeps the sums in memory as well, a store per
// multiply-add: SimpleConvNet's weight gradient 11.2 us an image with 3 x 4,
// 12.2 with 2 x 5, 16.2 with 4 x 4, 22.2 with 4 x 5.
#[cfg(target_arch = "x86_64")]
compiled_for!(row_products_avx512, "avx512f,avx512dq,avx2,fma", (3, 4), 16);
#[cfg(target_arch = "x86_64")]
compiled_for!(row_products_avx2, "avx2,fma", (3, 3), 8);

#[cfg(target_arch = "x86_64")]
impl Features {
    /// [`row_products`] on these tiles.
    fn row_products<T: Element>(self, products: RowProducts<'_, T>, c: &mut [T]) {
        // SAFETY: a `Features` value is made only by `detect`, after finding
        // on this CPU every feature its variant names, which are the ones
        // these functions are compiled with (tests name `Avx2` only once
        // `detect` has found AVX2 or more).
        unsafe {
            match self {
                Features::Avx512 => row_products_avx512(products, c),
                Features::Avx2 => row_products_avx2(products, c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Exact in f32 at these sizes: every tile set must give the reference's bits.
    use crate::shifted::exact_values as values;

    fn check<T: Element + std::fmt::Debug>(items: usize, (m, n, k): (usize, usize, usize)) {
        let (a_stride, b_stride) = (m * k + 3, n * k + 1);
        let a = values::<T>(items * a_stride, 1);
        let b = values::<T>(items * b_stride, 2);
        let mut expected = vec![T::ZERO; m * n];
        for i in 0..items {
            for r in 0..m {
                for s in 0..n {
                    for p in 0..k {
                        expected[r * n + s] += a[i * a_stride + r * k + p] * b[i * b_stride + s * k + p];
                    }
                }
            }
        }
        let products = || RowProducts {
            a: &a,
            a_stride,
            b: &b,
            b_stride,
            items,
            m,
            n,
            k,
        };
        let shape = format!("{items} items of {m} x {n} x {k}");
        let mut c = values::<T>(m * n, 5);
        row_products((&a, a_stride), (&b, b_stride), items, (m, n, k), &mut c);
        assert_eq!(c, expected, "detected tiles, {shape}");
        let mut c = vec![T::ZERO; m * n];
        products().run::<3, 3, 4, false>(&mut c);
        assert_eq!(c, expected, "portable tiles, {shape}");
        #[cfg(target_arch = "x86_64")]
        if Features::detect().is_some() {
            let mut c = vec![T::ZERO; m * n];
            Features::Avx2.row_products(products(), &mut c);
            assert_eq!(c, expected, "AVX2 tiles, {shape}");
        }
    }

    #[test]
    fn products_match_the_reference_at_every_edge() {
        for (items, shape) in [
            (1, (1, 1, 1)),
            (2, (3, 5, 7)),
            (3, (4, 5, 16)),
            (2, (5, 6, 33)),
            (1, (9, 11, 100)),
            // SimpleConvNet's weight gradient (30 filters, 25 taps, but
            // fewer windows), and DeepConvNet's first (16 filters, 9 taps).
            (5, (30, 25, 40)),
            (2, (16, 9, 49)),
        ] {
            check::<f32>(items, shape);
            check::<f64>(items, shape);
        }
    }

    #[test]
    fn no_items_give_zeros() {
        let mut c = vec![7.0f32; 6];
        row_products((&[], 0), (&[], 0), 0, (2, 3, 4), &mut c);
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "C must be m x n")]
    fn a_c_of_the_wrong_size_is_refused() {
        let mut c = vec![0.0f32; 5];
        row_products((&[1.0; 8], 8), (&[1.0; 8], 8), 1, (2, 2, 4), &mut c);
    }

    #[test]
    #[should_panic(expected = "reach further")]
    fn an_item_past_the_end_is_refused() {
        let mut c = vec![0.0f32; 4];
        row_products((&[1.0; 8], 8), (&[1.0; 16], 8), 2, (2, 2, 4), &mut c);
    }
}
