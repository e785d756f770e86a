//! The book's computational-graph example (section 5.4): buying apples and
//! oranges with 10% tax, forward for the price, backward for how the price
//! reacts to each input.
//!
//! `cargo run -p layers --example buy_apple_orange`

use layers::{AddLayer, MulLayer};

fn main() {
    let (apple, apple_num, orange, orange_num, tax) = (100.0f64, 2.0, 150.0, 3.0, 1.1);

    // Apples alone.
    let mut mul_apple = MulLayer::new(0.0);
    let mut mul_tax = MulLayer::new(0.0);
    let price = mul_tax.forward(mul_apple.forward(apple, apple_num), tax);
    let (dapple_price, dtax) = mul_tax.backward(1.0);
    let (dapple, dapple_num) = mul_apple.backward(dapple_price);
    println!("apples:  price {price}");
    println!("         dapple {dapple}, dapple_num {dapple_num}, dtax {dtax}");

    // Apples and oranges.
    let mut mul_apple = MulLayer::new(0.0);
    let mut mul_orange = MulLayer::new(0.0);
    let mut add_apple_orange = AddLayer::new();
    let mut mul_tax = MulLayer::new(0.0);
    let all_price = add_apple_orange.forward(
        mul_apple.forward(apple, apple_num),
        mul_orange.forward(orange, orange_num),
    );
    let price = mul_tax.forward(all_price, tax);
    let (dall_price, dtax) = mul_tax.backward(1.0);
    let (dapple_price, dorange_price) = add_apple_orange.backward(dall_price);
    let (dorange, dorange_num) = mul_orange.backward(dorange_price);
    let (dapple, dapple_num) = mul_apple.backward(dapple_price);
    println!("+oranges: price {price}");
    println!(
        "         dapple {dapple}, dapple_num {dapple_num}, dorange {dorange}, dorange_num {dorange_num}, dtax {dtax}"
    );
}
