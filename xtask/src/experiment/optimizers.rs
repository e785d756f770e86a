//! The book's `optimizer_compare_mnist.py` (figure 6-9): a 784-100-100-100-100-10
//! ReLU network with He's initial weights, batches of 128, 2000 steps, with
//! SGD (lr 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001). Every
//! optimizer starts from the same weights and sees the same batches.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{Init, OptimizerConfig, OptimizerKind};

use train::{MlpOptions, ModelSpec, TrainConfig};

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let iters = if ctx.quick { 200 } else { 2000 };
    let kinds = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::AdaGrad,
        OptimizerKind::Adam,
    ];
    ctx.bar.set_length((kinds.len() * iters) as u64);
    let mut curves = Vec::new();
    for kind in kinds {
        ctx.bar.set_message(kind.book_name());
        let config = TrainConfig {
            model: ModelSpec::Mlp(MlpOptions {
                hidden: vec![100; 4],
                init: Init::He,
                ..MlpOptions::default()
            }),
            // The book's defaults: lr 0.01, Adam 0.001.
            optimizer: OptimizerConfig::new(kind),
            batch_size: 128,
            iters,
            // Accuracy only before and after: the figure is the loss.
            eval_every: Some(iters),
            ..ctx.base_config()
        };
        curves.push((kind.book_name(), ctx.train_curve(config, ctx.train, ctx.test)?));
        if ctx.stopped() {
            break;
        }
    }

    let (lines, json) = super::loss_curves(
        ctx,
        "optimizers",
        "MNIST, 5-layer ReLU net: optimizers (smoothed loss)",
        1.0,
        &curves,
    )?;

    Ok(Outcome {
        lines,
        json,
        files: vec!["optimizers.png", "optimizers.csv"],
    })
}
