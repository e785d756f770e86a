//! Addition node on scalars: `out = x + y`.
//!
//! Backward passes the upstream gradient through to both inputs unchanged.

/// The book's `AddLayer`: needs no memory of its inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddLayer;

impl AddLayer {
    /// The node (it holds nothing).
    pub fn new() -> Self {
        AddLayer
    }

    /// Returns `x + y`.
    pub fn forward<T: std::ops::Add<Output = T>>(&mut self, x: T, y: T) -> T {
        x + y
    }

    /// Returns `(dL/dx, dL/dy) = (dout, dout)`.
    pub fn backward<T: Copy>(&self, dout: T) -> (T, T) {
        (dout, dout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{central_difference, relative_error};
    use crate::MulLayer;

    #[test]
    fn apple_and_orange_example_matches_the_book() {
        let (apple, apple_num, orange, orange_num, tax) = (100.0f64, 2.0, 150.0, 3.0, 1.1);
        let mut mul_apple = MulLayer::new(0.0);
        let mut mul_orange = MulLayer::new(0.0);
        let mut add_apple_orange = AddLayer::new();
        let mut mul_tax = MulLayer::new(0.0);

        let apple_price = mul_apple.forward(apple, apple_num);
        let orange_price = mul_orange.forward(orange, orange_num);
        let all_price = add_apple_orange.forward(apple_price, orange_price);
        let price = mul_tax.forward(all_price, tax);

        let (dall_price, dtax) = mul_tax.backward(1.0);
        let (dapple_price, dorange_price) = add_apple_orange.backward(dall_price);
        let (dorange, dorange_num) = mul_orange.backward(dorange_price);
        let (dapple, dapple_num) = mul_apple.backward(dapple_price);

        // The book prints 715.0000000000001 110.00000000000001 2.2 3.3000000000000003 165.0 650.
        assert_eq!(price, 715.0000000000001);
        assert_eq!(dapple_num, 110.00000000000001);
        assert_eq!(dapple, 2.2);
        assert_eq!(dorange, 3.3000000000000003);
        assert_eq!(dorange_num, 165.0);
        assert_eq!(dtax, 650.0);
    }

    #[test]
    fn gradient_check() {
        let mut layer = AddLayer::new();
        layer.forward(0.25f64, -4.0);
        let (dx, dy) = layer.backward(1.0);
        let numerical = central_difference(&[0.25, -4.0], 1e-5, |v| v[0] + v[1]);
        assert!(relative_error(&[dx, dy], &numerical) < 1e-9);
    }
}
