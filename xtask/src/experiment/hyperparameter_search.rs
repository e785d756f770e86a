//! The book's `hyperparameter_optimization.py` (figure 6-24): the first 500
//! training images, shuffled, 20% held out for validation (never the test
//! set); 100 trials of a 784-(100 x 6)-10 ReLU network (He's initial
//! weights) trained with SGD for 50 epochs, with a learning rate of
//! `10^U(-6, -2)` and a weight decay of `10^U(-8, -4)`; the 20 best trials'
//! validation (solid) and training (dashed) accuracy per epoch.

use super::{Context, Curve, Outcome};
use crate::common::Result;
use layers::{Init, OptimizerConfig, OptimizerKind};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use train::report::SeriesLabelPosition;
use train::report::{panel_grid, write_csv, Axes, Panel, Series};
use train::{Dataset as _, ImageData, MlpOptions, ModelSpec, TrainConfig};

/// The best trials drawn and printed.
const SHOWN: usize = 20;

struct Trial {
    index: usize,
    learning_rate: f64,
    weight_decay: f64,
    curve: Curve,
}

impl Trial {
    fn validation_accuracy(&self) -> f64 {
        self.curve.summary.test_accuracy
    }
}

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let (trials, epochs) = if ctx.quick { (8, 5) } else { (100, 50) };
    // The book's shuffle_dataset, then the first 20% for validation.
    let subset = ctx.train.first(500);
    let mut order: Vec<usize> = (0..subset.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
    order.shuffle(&mut rng);
    let pixels: Vec<u8> = order.iter().flat_map(|&i| subset.image(i).iter().copied()).collect();
    let labels: Vec<u8> = order.iter().map(|&i| subset.label(i) as u8).collect();
    let features = subset.features();
    let validation_len = subset.len() / 5;
    let validation = ImageData::new(
        &pixels[..validation_len * features],
        &labels[..validation_len],
        features,
    )?;
    let train = ImageData::new(
        &pixels[validation_len * features..],
        &labels[validation_len..],
        features,
    )?;
    let base = TrainConfig {
        model: ModelSpec::Mlp(MlpOptions {
            hidden: vec![100; 6],
            init: Init::He,
            ..MlpOptions::default()
        }),
        batch_size: 100,
        epochs: Some(epochs),
        ..ctx.base_config()
    };
    ctx.bar
        .set_length((trials * epochs * base.iters_per_epoch(train.len())) as u64);

    let mut results = Vec::new();
    for index in 0..trials {
        // The book draws the weight decay, then the learning rate.
        let weight_decay = 10f64.powf(rng.random_range(-8.0..-4.0));
        let learning_rate = 10f64.powf(rng.random_range(-6.0..-2.0));
        ctx.bar.set_message(format!("trial {}/{trials}", index + 1));
        let config = TrainConfig {
            weight_decay,
            optimizer: OptimizerConfig::new(OptimizerKind::Sgd).with_learning_rate(learning_rate),
            seed: ctx.seed.wrapping_add(1 + index as u64),
            ..base.clone()
        };
        let curve = ctx.train_curve(config, train, validation)?;
        results.push(Trial {
            index,
            learning_rate,
            weight_decay,
            curve,
        });
        if ctx.stopped() {
            break;
        }
    }
    let trial_rows: Vec<Vec<String>> = results
        .iter()
        .map(|t| {
            vec![
                t.index.to_string(),
                t.learning_rate.to_string(),
                t.weight_decay.to_string(),
                t.validation_accuracy().to_string(),
                t.curve.summary.train_accuracy.to_string(),
            ]
        })
        .collect();
    write_csv(
        &ctx.path("trials.csv"),
        &[
            "trial",
            "learning_rate",
            "weight_decay",
            "validation_accuracy",
            "train_accuracy",
        ],
        &trial_rows,
    )?;
    // Best first; ties keep the trial order.
    results.sort_by(|a, b| b.validation_accuracy().total_cmp(&a.validation_accuracy()));
    let best = &results[..SHOWN.min(results.len())];

    let (mut panels, mut rows, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut json = serde_json::Map::new();
    for (rank, trial) in best.iter().enumerate() {
        let name = format!("Best-{}", rank + 1);
        lines.push(format!(
            "{name:<7} (val acc:{:.2}) | lr:{:.3e}, weight decay:{:.3e}{}",
            trial.validation_accuracy(),
            trial.learning_rate,
            trial.weight_decay,
            trial.curve.note()
        ));
        json.insert(
            name.clone(),
            serde_json::json!({
                "learning_rate": trial.learning_rate,
                "weight_decay": trial.weight_decay,
                "validation_accuracy": trial.validation_accuracy(),
                "train_accuracy": trial.curve.summary.train_accuracy,
                "final_loss": trial.curve.summary.final_loss,
            }),
        );
        for e in &trial.curve.evals {
            rows.push(vec![
                name.clone(),
                e.epoch.to_string(),
                e.train_accuracy.to_string(),
                e.test_accuracy.to_string(),
            ]);
        }
        let evals = &trial.curve.evals;
        panels.push(Panel {
            title: name,
            axes: Axes::from_zero("epochs", "accuracy", epochs as f64, 1.0),
            series: vec![
                Series::new(
                    "validation",
                    evals.iter().map(|e| (e.epoch, e.test_accuracy)).collect(),
                    0,
                ),
                Series::new("train", evals.iter().map(|e| (e.epoch, e.train_accuracy)).collect(), 1).dashed(),
            ],
        });
    }
    let (lr_range, wd_range) = (
        range(best.iter().take(5).map(|t| t.learning_rate)),
        range(best.iter().take(5).map(|t| t.weight_decay)),
    );
    lines.push(format!(
        "the 5 best trials: lr in [{:.1e}, {:.1e}], weight decay in [{:.1e}, {:.1e}]",
        lr_range.0, lr_range.1, wd_range.0, wd_range.1
    ));
    write_csv(
        &ctx.path("hyperparameter-search.csv"),
        &["curve", "epoch", "train_accuracy", "validation_accuracy"],
        &rows,
    )?;
    let cols = 4;
    panel_grid(
        &ctx.path("hyperparameter-search.png"),
        "The best random trials: validation (solid) and training (dashed) accuracy",
        (best.len().div_ceil(cols), cols),
        panels,
        SeriesLabelPosition::LowerRight,
    )?;
    Ok(Outcome {
        lines,
        json,
        files: vec!["hyperparameter-search.png", "hyperparameter-search.csv", "trials.csv"],
    })
}

/// `(min, max)` of the values.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}
