//! Multiplication node on scalars: `out = x * y`.
//!
//! Backward swaps the inputs: `dL/dx = dout * y`, `dL/dy = dout * x`.

/// The book's `MulLayer`: remembers its inputs for the backward pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct MulLayer<T> {
    x: T,
    y: T,
}

impl<T: Copy + std::ops::Mul<Output = T>> MulLayer<T> {
    /// A node whose remembered inputs start at `zero` (`0.0` for floats);
    /// call [`MulLayer::forward`] before [`MulLayer::backward`].
    pub fn new(zero: T) -> Self {
        MulLayer { x: zero, y: zero }
    }

    /// Returns `x * y` and keeps `x` and `y` for the backward pass.
    pub fn forward(&mut self, x: T, y: T) -> T {
        self.x = x;
        self.y = y;
        x * y
    }

    /// Returns `(dL/dx, dL/dy) = (dout * y, dout * x)` for the last
    /// forward's `x` and `y`.
    pub fn backward(&self, dout: T) -> (T, T) {
        (dout * self.y, dout * self.x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{central_difference, relative_error};

    #[test]
    fn apple_example_matches_the_book() {
        // 2 apples at 100 each, 10% tax.
        let (apple, apple_num, tax) = (100.0f64, 2.0, 1.1);
        let mut mul_apple = MulLayer::new(0.0);
        let mut mul_tax = MulLayer::new(0.0);
        let apple_price = mul_apple.forward(apple, apple_num);
        let price = mul_tax.forward(apple_price, tax);
        let (dapple_price, dtax) = mul_tax.backward(1.0);
        let (dapple, dapple_num) = mul_apple.backward(dapple_price);
        // The book prints 220.00000000000003 2.2 110.00000000000001 200.
        assert_eq!(price, 220.00000000000003);
        assert_eq!(dapple, 2.2);
        assert_eq!(dapple_num, 110.00000000000001);
        assert_eq!(dtax, 200.0);
    }

    #[test]
    fn gradient_check() {
        let (x, y) = (1.7f64, -0.3);
        let mut layer = MulLayer::new(0.0);
        layer.forward(x, y);
        let (dx, dy) = layer.backward(1.0);
        let numerical = central_difference(&[x, y], 1e-5, |v| v[0] * v[1]);
        assert!(relative_error(&[dx, dy], &numerical) < 1e-9);
        // Scaled upstream gradient scales both outputs.
        assert_eq!(layer.backward(2.0), (2.0 * dx, 2.0 * dy));
    }
}
