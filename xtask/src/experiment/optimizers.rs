//! The book's `optimizer_compare_mnist.py` (figure 6-9): a 784-100-100-100-100-10
//! ReLU network with He's initial weights, batches of 128, 2000 steps, with
//! SGD (lr 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001). Every
//! optimizer starts from the same weights and sees the same batches.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{Init, OptimizerConfig, OptimizerKind};
use train::report::SeriesLabelPosition;
use train::report::{line_chart, smooth_curve, write_csv, Axes, Series};
use train::TrainConfig;

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
            hidden: vec![100; 4],
            init: Init::He,
            // The book's defaults: lr 0.01, Adam 0.001.
            optimizer: OptimizerConfig::new(kind),
            batch_size: 128,
            iters,
            // Accuracy only before and after: the figure is the loss.
            eval_every: Some(iters),
            ..ctx.base_config()
        };
        curves.push((kind.book_name(), ctx.train_curve(config, ctx.train, ctx.test)?));
    }

    let rows: Vec<Vec<String>> = (0..iters)
        .map(|i| {
            let mut row = vec![i.to_string()];
            row.extend(curves.iter().map(|(_, c)| c.losses[i].to_string()));
            row
        })
        .collect();
    let mut header = vec!["iteration"];
    header.extend(curves.iter().map(|(name, _)| *name));
    write_csv(&ctx.path("optimizers.csv"), &header, &rows)?;

    let series = curves
        .iter()
        .enumerate()
        .map(|(index, (name, curve))| {
            let losses: Vec<f64> = curve.losses.iter().map(|&l| l as f64).collect();
            let points = smooth_curve(&losses)
                .into_iter()
                .enumerate()
                .map(|(i, l)| (i as f64, l.min(1.0)))
                .collect();
            Series::new(*name, points, index)
        })
        .collect();
    let axes = Axes::from_zero("iterations", "loss", iters as f64, 1.0);
    line_chart(
        &ctx.path("optimizers.png"),
        "MNIST, 5-layer ReLU net: optimizers (smoothed loss)",
        axes,
        series,
        SeriesLabelPosition::UpperRight,
    )?;

    let mut lines = Vec::new();
    let mut json = serde_json::Map::new();
    for (name, curve) in &curves {
        lines.push(format!(
            "{name:<9} mean loss of the last 100 iterations {:.4}   train acc {:.4}   test acc {:.4}{}",
            curve.summary.final_loss,
            curve.summary.train_accuracy,
            curve.summary.test_accuracy,
            curve.note()
        ));
        json.insert(name.to_string(), curve.figures());
    }
    Ok(Outcome {
        lines,
        json,
        files: vec!["optimizers.png", "optimizers.csv"],
    })
}
