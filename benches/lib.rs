//! Shared set-up for the criterion benchmarks in `benches/benches/`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tensor::{Element, MatMut, MatRef, Transpose};

/// The GEMMs of one training step of the 784-50-10 net at batch 100, and of
/// evaluation: `(name, m, k, n, transpose A, transpose B)` with op(A) m x k.
pub const TRAINING_SHAPES: &[(&str, usize, usize, usize, Transpose, Transpose)] = &[
    ("fwd1 [100x784]x[784x50]", 100, 784, 50, Transpose::No, Transpose::No),
    (
        "dW1 x^T.dout [784x100]x[100x50]",
        784,
        100,
        50,
        Transpose::Yes,
        Transpose::No,
    ),
    ("fwd2 [100x50]x[50x10]", 100, 50, 10, Transpose::No, Transpose::No),
    (
        "dW2 h^T.dout [50x100]x[100x10]",
        50,
        100,
        10,
        Transpose::Yes,
        Transpose::No,
    ),
    (
        "dx2 dout.W2^T [100x10]x[10x50]",
        100,
        10,
        50,
        Transpose::No,
        Transpose::Yes,
    ),
    (
        "eval [10000x784]x[784x50]",
        10000,
        784,
        50,
        Transpose::No,
        Transpose::No,
    ),
    (
        "gradcheck fwd1 [3x784]x[784x50]",
        3,
        784,
        50,
        Transpose::No,
        Transpose::No,
    ),
    (
        "gradcheck dW1 [784x3]x[3x50]",
        784,
        3,
        50,
        Transpose::Yes,
        Transpose::No,
    ),
];

/// Operands for `C = op(A) op(B)`: A and B stored so that op() gives the shape.
pub struct GemmCase<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
    pub c: Vec<T>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: Transpose,
    pub tb: Transpose,
}

impl<T: Element> GemmCase<T> {
    pub fn new(m: usize, k: usize, n: usize, ta: Transpose, tb: Transpose) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut random = |len: usize| (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect();
        GemmCase {
            a: random(m * k),
            b: random(k * n),
            c: vec![T::ZERO; m * n],
            m,
            k,
            n,
            ta,
            tb,
        }
    }

    /// The three views, with the transposes applied through strides.
    pub fn views(&mut self) -> (MatRef<'_, T>, MatRef<'_, T>, MatMut<'_, T>) {
        let a = match self.ta {
            Transpose::No => MatRef::row_major(&self.a, self.m, self.k),
            Transpose::Yes => MatRef::row_major(&self.a, self.k, self.m).t(),
        };
        let b = match self.tb {
            Transpose::No => MatRef::row_major(&self.b, self.k, self.n),
            Transpose::Yes => MatRef::row_major(&self.b, self.n, self.k).t(),
        };
        (a, b, MatMut::row_major(&mut self.c, self.m, self.n))
    }

    /// Floating-point operations of one product: 2 m n k.
    pub fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }
}
