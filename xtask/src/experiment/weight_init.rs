//! The book's `weight_init_compare.py` (figure 6-15): the 5-layer ReLU net of
//! the optimizer comparison with SGD (lr 0.01) from three initial weights:
//! `std 0.01`, Xavier's and He's; and `weight_init_activation_histogram.py`
//! (figures 6-10 to 6-14): the activations of 5 layers of 100 units on 1000
//! random inputs, for several activations and initial weights.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{Activation, Init, Layer, LayerRng, OptimizerConfig, OptimizerKind, Relu, Sigmoid};
use rand::SeedableRng;
use tensor::{Tensor, Transpose};
use train::report::{histogram_grid, Histogram};
use train::{MlpOptions, ModelSpec, TrainConfig};

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let iters = if ctx.quick { 200 } else { 2000 };
    let inits = [
        ("std=0.01", Init::Std(0.01)),
        ("Xavier", Init::Xavier),
        ("He", Init::He),
    ];
    ctx.bar.set_length((inits.len() * iters) as u64);
    let mut curves = Vec::new();
    for (name, init) in inits {
        ctx.bar.set_message(name);
        let config = TrainConfig {
            model: ModelSpec::Mlp(MlpOptions {
                hidden: vec![100; 4],
                init,
                ..MlpOptions::default()
            }),
            optimizer: OptimizerConfig::new(OptimizerKind::Sgd),
            batch_size: 128,
            iters,
            eval_every: Some(iters),
            ..ctx.base_config()
        };
        curves.push((name, ctx.train_curve(config, ctx.train, ctx.test)?));
        if ctx.stopped() {
            break;
        }
    }

    let (lines, json) = super::loss_curves(
        ctx,
        "weight-init",
        "MNIST, 5-layer ReLU net, SGD: initial weights (smoothed loss)",
        2.5,
        &curves,
    )?;

    let histograms = activation_histograms(ctx.seed);
    let rows_of_histograms = histograms.len() / LAYERS;
    histogram_grid(
        &ctx.path("activations.png"),
        "Activations of 5 layers of 100 units, 1000 random inputs",
        (rows_of_histograms, LAYERS),
        30,
        (0.0, 1.0),
        histograms,
    )?;

    Ok(Outcome {
        lines,
        json,
        files: vec!["weight-init.png", "activations.png", "weight-init.csv"],
    })
}

/// Layers of the histogram experiment.
const LAYERS: usize = 5;

/// The book's histogram experiment: `x = randn(1000, 100)`, then five times
/// `x = activation(x W)` with `W = std * randn(100, 100)` (no bias). One row
/// of five histograms per (activation, initial weights), the book's cases:
/// sigmoid with std 1 (figure 6-10), std 0.01 (6-11) and Xavier (6-13); ReLU
/// with std 0.01 and He (6-14). Each histogram has its own count axis, as
/// the book's.
fn activation_histograms(seed: u64) -> Vec<Histogram> {
    let cases = [
        (Activation::Sigmoid, Init::Std(1.0)),
        (Activation::Sigmoid, Init::Std(0.01)),
        (Activation::Sigmoid, Init::Xavier),
        (Activation::Relu, Init::Std(0.01)),
        (Activation::Relu, Init::He),
    ];
    let (samples, units) = (1000, 100);
    let mut histograms = Vec::new();
    for (activation, init) in cases {
        // The same inputs and weight draws for every case: only the scale and the activation differ.
        let mut rng = LayerRng::seed_from_u64(seed);
        let mut x = Tensor::<f64>::randn(&[samples, units], 1.0, &mut rng);
        let (mut a, mut z) = (Tensor::zeros(&[samples, units]), Tensor::zeros(&[0]));
        let layer: Box<dyn Layer<f64>> = match activation {
            Activation::Sigmoid => Box::new(Sigmoid),
            Activation::Relu => Box::new(Relu),
        };
        for index in 1..=LAYERS {
            let w = Tensor::<f64>::randn(&[units, units], init.std(units), &mut rng);
            a.matmul(Transpose::No, &x, Transpose::No, &w, 1.0, 0.0);
            layer.forward(&a, &mut z);
            histograms.push(Histogram {
                title: format!("{activation}, {init}: layer {index}"),
                values: z.as_slice().to_vec(),
                // Half of ReLU's outputs are exactly 0: the book clips the axis at 7000.
                y_max: (activation == Activation::Relu).then_some(7000.0),
            });
            std::mem::swap(&mut x, &mut z);
        }
    }
    histograms
}
