//! The book's `overfit_weight_decay.py` and `overfit_dropout.py` (figures
//! 6-20 to 6-23): the first 300 training images, a 784-(100 x 6)-10 ReLU
//! network with He's initial weights, SGD at 0.01, batches of 100; plain,
//! with weight decay 0.1 (201 epochs, as the book) and with Dropout 0.2 (301
//! epochs, as the book); train and test (all 10000 images) accuracy per epoch.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{Init, OptimizerConfig, OptimizerKind};
use train::report::SeriesLabelPosition;
use train::report::{panel_grid, write_csv, Axes, Panel, Series};
use train::{Dataset as _, MlpOptions, ModelSpec, TrainConfig};

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let train = ctx.train.first(300);
    let (short, long) = if ctx.quick { (20, 30) } else { (201, 301) };
    let mlp = MlpOptions {
        hidden: vec![100; 6],
        init: Init::He,
        ..MlpOptions::default()
    };
    let base = TrainConfig {
        model: ModelSpec::Mlp(mlp.clone()),
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd),
        batch_size: 100,
        ..ctx.base_config()
    };
    let curves = [
        (
            "plain",
            TrainConfig {
                epochs: Some(short),
                ..base.clone()
            },
        ),
        (
            "weight decay",
            TrainConfig {
                epochs: Some(short),
                weight_decay: 0.1,
                ..base.clone()
            },
        ),
        (
            "dropout",
            TrainConfig {
                epochs: Some(long),
                model: ModelSpec::Mlp(MlpOptions {
                    dropout: Some(0.2),
                    ..mlp
                }),
                ..base.clone()
            },
        ),
    ];
    let steps_per_epoch = base.iters_per_epoch(train.len());
    ctx.bar.set_length(((2 * short + long) * steps_per_epoch) as u64);

    let (mut panels, mut rows, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut json = serde_json::Map::new();
    for (name, config) in curves {
        ctx.bar.set_message(name);
        let title = match name {
            "weight decay" => "weight decay 0.1".to_string(),
            "dropout" => "Dropout 0.2".to_string(),
            _ => "no regularization".to_string(),
        };
        let curve = ctx.train_curve(config, train, ctx.test)?;
        for e in &curve.evals {
            rows.push(vec![
                name.to_string(),
                format!("{}", e.epoch),
                e.train_accuracy.to_string(),
                e.test_accuracy.to_string(),
            ]);
        }
        let (train_acc, test_acc) = (curve.summary.train_accuracy, curve.summary.test_accuracy);
        lines.push(format!(
            "{name:<13} train acc {train_acc:.4}   test acc {test_acc:.4}   gap {:.4}{}",
            train_acc - test_acc,
            curve.note()
        ));
        json.insert(name.to_string(), curve.figures());
        let points =
            |accuracy: fn(&train::EvalRecord) -> f64| curve.evals.iter().map(|e| (e.epoch, accuracy(e))).collect();
        panels.push(Panel {
            title,
            axes: Axes::from_zero("epochs", "accuracy", curve.evals.last().map_or(1.0, |e| e.epoch), 1.0),
            series: vec![
                Series::new("train", points(|e| e.train_accuracy), 0),
                Series::new("test", points(|e| e.test_accuracy), 3).dashed(),
            ],
        });
        if ctx.stopped() {
            break;
        }
    }
    write_csv(
        &ctx.path("overfit.csv"),
        &["curve", "epoch", "train_accuracy", "test_accuracy"],
        &rows,
    )?;
    panel_grid(
        &ctx.path("overfit.png"),
        "300 training images, 7-layer ReLU net: overfitting and two remedies",
        (1, 3),
        panels,
        SeriesLabelPosition::LowerRight,
    )?;
    Ok(Outcome {
        lines,
        json,
        files: vec!["overfit.png", "overfit.csv"],
    })
}
