//! The book's `batch_norm_test.py` (figure 6-19): the first 1000 training
//! images, a 784-(100 x 5)-10 ReLU network with weights `w * N(0, 1)` for 16
//! scales `w` from 1 down to 1e-4, SGD at 0.01, batches of 100, 20 epochs,
//! with and without BatchNorm; the training accuracy per epoch.
//!
//! The figure only shows training accuracy, so the test accuracy of each
//! epoch is measured on the first 1000 test images (to save time), not 10000.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{Init, OptimizerConfig, OptimizerKind};
use train::report::SeriesLabelPosition;
use train::report::{panel_grid, write_csv, Axes, Panel, Series};
use train::{Dataset as _, MlpOptions, ModelSpec, TrainConfig};

/// The epoch at which "learning has started" is compared.
const EARLY_EPOCH: usize = 5;

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    // np.logspace(0, -4, num=16)
    let all_scales: Vec<f64> = (0..16).map(|i| 10f64.powf(-4.0 * i as f64 / 15.0)).collect();
    let (scales, epochs) = if ctx.quick {
        (vec![all_scales[0], all_scales[5], all_scales[10], all_scales[15]], 3)
    } else {
        (all_scales, 20)
    };
    let (train, test) = (ctx.train.first(1000), ctx.test.first(1000));
    let steps_per_curve = epochs * (train.len() / 100);
    ctx.bar.set_length((scales.len() * 2 * steps_per_curve) as u64);

    let (mut panels, mut rows, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut json = serde_json::Map::new();
    let mut early_wins = 0;
    for &scale in &scales {
        ctx.bar.set_message(format!("w = {scale:.4}"));
        let mut pair = Vec::new();
        for batch_norm in [true, false] {
            let config = TrainConfig {
                model: ModelSpec::Mlp(MlpOptions {
                    hidden: vec![100; 5],
                    init: Init::Std(scale),
                    batch_norm,
                    ..MlpOptions::default()
                }),
                optimizer: OptimizerConfig::new(OptimizerKind::Sgd),
                batch_size: 100,
                epochs: Some(epochs),
                ..ctx.base_config()
            };
            pair.push(ctx.train_curve(config, train, test)?);
            if ctx.stopped() {
                break;
            }
        }
        // Stopped between the two curves of a pair: the figure has the pairs before it.
        let [with, without] = &pair[..] else {
            break;
        };
        // A diverged curve stops early: its later cells stay empty.
        let cell = |curve: &super::Curve, epoch: usize| {
            curve
                .evals
                .get(epoch)
                .map(|e| e.train_accuracy.to_string())
                .unwrap_or_default()
        };
        for epoch in 0..with.evals.len().max(without.evals.len()) {
            rows.push(vec![
                format!("{scale}"),
                epoch.to_string(),
                cell(with, epoch),
                cell(without, epoch),
            ]);
        }
        let early = EARLY_EPOCH.min(epochs);
        // A diverged curve counts as not learning from the epoch it diverged.
        let accuracy_at = |curve: &super::Curve, epoch: usize| curve.evals.get(epoch).map_or(0.0, |e| e.train_accuracy);
        let (early_with, early_without) = (accuracy_at(with, early), accuracy_at(without, early));
        if early_with > early_without {
            early_wins += 1;
        }
        lines.push(format!(
            "w = {scale:<7.4} train acc after {early} epochs: BatchNorm {early_with:.3}, without {early_without:.3};  after {epochs}: {:.3}{} vs {:.3}{}",
            with.summary.train_accuracy,
            with.note(),
            without.summary.train_accuracy,
            without.note()
        ));
        json.insert(format!("w={scale:.4} BatchNorm"), with.figures());
        json.insert(format!("w={scale:.4} Normal"), without.figures());
        let accuracy_points = |curve: &super::Curve| {
            curve
                .evals
                .iter()
                .enumerate()
                .map(|(e, r)| (e as f64, r.train_accuracy))
                .collect()
        };
        panels.push(Panel {
            title: format!("W: {scale:.4}"),
            axes: Axes::from_zero("epochs", "accuracy", epochs as f64, 1.0),
            series: vec![
                Series::new("Batch Normalization", accuracy_points(with), 0),
                Series::new("Normal (without BatchNorm)", accuracy_points(without), 1).dashed(),
            ],
        });
    }
    lines.push(format!(
        "BatchNorm ahead after {} epochs at {early_wins} of {} weight scales",
        EARLY_EPOCH.min(epochs),
        scales.len()
    ));
    write_csv(
        &ctx.path("batch-norm.csv"),
        &[
            "weight_scale",
            "epoch",
            "batch_norm_train_accuracy",
            "normal_train_accuracy",
        ],
        &rows,
    )?;
    let cols = 4;
    panel_grid(
        &ctx.path("batch-norm.png"),
        "Training accuracy on 1000 images, with (solid) and without (dashed) BatchNorm",
        (scales.len().div_ceil(cols), cols),
        panels,
        SeriesLabelPosition::LowerRight,
    )?;
    Ok(Outcome {
        lines,
        json,
        files: vec!["batch-norm.png", "batch-norm.csv"],
    })
}
