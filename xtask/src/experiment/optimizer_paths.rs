//! The book's `optimizer_compare_naive.py` (figure 6-8): the paths of SGD
//! (lr 0.95), Momentum (0.1), AdaGrad (1.5) and Adam (0.3) over
//! `f(x, y) = x^2 / 20 + y^2` for 30 steps from (-7, 2), drawn over the
//! function's contours. No network and no data: `x` and `y` are two
//! parameters of one element each, updated by the same optimizers that train
//! the networks.

use super::{Context, Outcome};
use crate::common::Result;
use layers::{OptimizerConfig, OptimizerKind, ParamList};
use tensor::Tensor;
use train::report::{panel_grid, write_csv, Axes, Panel, Series, SeriesLabelPosition};

/// Steps per path, as the book.
const STEPS: usize = 30;

fn f(x: f64, y: f64) -> f64 {
    x * x / 20.0 + y * y
}

/// `(df/dx, df/dy)`.
fn gradient(x: f64, y: f64) -> (f64, f64) {
    (x / 10.0, 2.0 * y)
}

/// The positions visited, the start first: the book records the position
/// before each of its 30 updates.
fn path(config: OptimizerConfig) -> Result<Vec<(f64, f64)>> {
    // x and y with their gradients.
    let mut position = ParamList {
        pairs: vec![
            (Tensor::full(&[1], -7.0), Tensor::zeros(&[1])),
            (Tensor::full(&[1], 2.0), Tensor::zeros(&[1])),
        ],
    };
    let mut optimizer = config.build::<f64>(&position)?;
    let mut visited = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let (x, y) = (position.pairs[0].0.as_slice()[0], position.pairs[1].0.as_slice()[0]);
        visited.push((x, y));
        let (dx, dy) = gradient(x, y);
        position.pairs[0].1.fill(dx);
        position.pairs[1].1.fill(dy);
        optimizer.step(&mut position);
    }
    Ok(visited)
}

pub fn run(ctx: &Context<'_>) -> Result<Outcome> {
    let settings = [
        (OptimizerKind::Sgd, 0.95),
        (OptimizerKind::Momentum, 0.1),
        (OptimizerKind::AdaGrad, 1.5),
        (OptimizerKind::Adam, 0.3),
    ];
    // Contours f = level: ellipses x = sqrt(20 level) cos t, y = sqrt(level) sin t.
    let contours: Vec<Vec<(f64, f64)>> = [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        .iter()
        .map(|&level: &f64| {
            (0..=180)
                .map(|i| {
                    let t = i as f64 * std::f64::consts::TAU / 180.0;
                    ((20.0 * level).sqrt() * t.cos(), level.sqrt() * t.sin())
                })
                .collect()
        })
        .collect();
    let (mut panels, mut rows, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut json = serde_json::Map::new();
    for (kind, learning_rate) in settings {
        let visited = path(OptimizerConfig::new(kind).with_learning_rate(learning_rate))?;
        let name = kind.book_name();
        for (step, &(x, y)) in visited.iter().enumerate() {
            rows.push(vec![
                name.to_string(),
                step.to_string(),
                x.to_string(),
                y.to_string(),
                f(x, y).to_string(),
            ]);
        }
        let &(x, y) = visited.last().expect("30 positions");
        lines.push(format!(
            "{name:<9} lr {learning_rate:<5} after {} steps at ({x:>8.4}, {y:>8.4}), f = {:.5}",
            STEPS - 1,
            f(x, y)
        ));
        json.insert(
            name.to_string(),
            serde_json::json!({"x": x, "y": y, "final_loss": f(x, y)}),
        );
        let mut series: Vec<Series> = contours
            .iter()
            .enumerate()
            .map(|(i, points)| Series {
                width: 1,
                ..Series::new(if i == 0 { "f = const" } else { "" }, points.clone(), 5)
            })
            .collect();
        series.push(Series {
            color: train::report::PALETTE[3],
            ..Series::new(format!("{name} path"), visited, 3)
        });
        panels.push(Panel {
            title: format!("{name} (lr {learning_rate})"),
            axes: Axes {
                x_desc: "x",
                y_desc: "y",
                x: -10.0..10.0,
                y: -10.0..10.0,
            },
            series,
        });
    }
    write_csv(
        &ctx.path("optimizer-paths.csv"),
        &["optimizer", "step", "x", "y", "f"],
        &rows,
    )?;
    panel_grid(
        &ctx.path("optimizer-paths.png"),
        "Paths over f(x, y) = x^2/20 + y^2 from (-7, 2), 30 steps",
        (2, 2),
        panels,
        SeriesLabelPosition::LowerRight,
    )?;
    Ok(Outcome {
        lines,
        json,
        files: vec!["optimizer-paths.png", "optimizer-paths.csv"],
    })
}
