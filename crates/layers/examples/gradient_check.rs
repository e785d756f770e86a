//! The book's gradient check (sections 4.4 and 5.7.3) on a net of one's own:
//! backprop's gradient of every parameter against the central difference
//! `(L(p + h) - L(p - h)) / 2h`, in f64.
//!
//! `cargo run -p layers --example gradient_check`

use layers::gradcheck::{mean_abs_diff, numerical_gradient, relative_error};
use layers::{layer_stream, Init, NetSpec, Target, Tensor};
use rand::{Rng, SeedableRng};

fn main() -> Result<(), layers::LayerError> {
    // conv -> BatchNorm -> ReLU -> pool -> affine -> sigmoid -> affine on
    // 2-channel 6x6 inputs, 3 classes. Xavier weights keep the units away
    // from ReLU's kink, where a step of h would measure a jump.
    let net = NetSpec::new(&[2, 6, 6])
        .conv_with(3, 3, 1, 1)
        .batch_norm()
        .relu()
        .pool(2)
        .affine(5)
        .sigmoid()
        .affine(3)
        .init(Init::Xavier)
        .weight_decay(0.1);
    let mut model = net.build::<f64>(7)?;
    println!("{}", model.summary());

    // Four random inputs in [0, 1) and their labels.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let values = (0..4 * 72).map(|_| rng.random::<f64>()).collect();
    let mut x = Tensor::from_vec(values, &[4, 72]).expect("4 rows of 72 values");
    model.shape_batch(&mut x)?;
    let labels = [0, 2, 1, 2];
    let target = Target::Labels(&labels);

    // Backprop leaves dL/dp in the layers; the numerical gradient perturbs
    // every one of the parameters, two full forward passes each.
    let seed = 3;
    let loss = model.gradient(&x, target, &mut layer_stream(seed))?;
    let numerical = numerical_gradient(&model, &x, target, 1e-5, seed)?;
    println!("loss {loss:.6}; backprop against the numerical gradient:");
    println!(
        "  {:<7} {:>6}  {:>15}  {:>12}",
        "", "values", "mean |bp - num|", "relative"
    );
    let mut wrong = Vec::new();
    for (param, (name, num)) in model.params().iter().zip(&numerical) {
        let (bp, num) = (param.grad.as_slice(), num.as_slice());
        let (diff, relative) = (mean_abs_diff(bp, num), relative_error(bp, num));
        println!("  {name:<7} {:>6}  {diff:>15.2e}  {relative:>12.2e}", num.len());
        // b1 feeds BatchNorm, which subtracts each channel's mean: the bias
        // cancels, its gradient is 0, and the relative error of two values
        // near 0 (rounding noise) means nothing. The absolute one does.
        if diff > 1e-9 && relative > 1e-6 {
            wrong.push(name.clone());
        }
    }
    assert!(
        wrong.is_empty(),
        "backprop disagrees with the numerical gradient for {wrong:?}"
    );
    println!("every parameter agrees: backprop is right (b1's gradient is 0: BatchNorm cancels a bias before it)");
    Ok(())
}
