//! A run's records: CSV tables and PNG plots, each written atomically.

use crate::checkpoint::temp_beside;
use crate::{write_atomic, EvalRecord, TrainError};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

/// `iteration,loss` for every iteration.
pub fn write_loss_csv(path: &Path, losses: &[f32]) -> Result<(), TrainError> {
    let mut text = String::from("iteration,loss\n");
    for (i, loss) in losses.iter().enumerate() {
        let _ = writeln!(text, "{i},{loss}");
    }
    write_atomic(path, text.as_bytes())
}

/// One row per evaluation.
pub fn write_eval_csv(path: &Path, evals: &[EvalRecord]) -> Result<(), TrainError> {
    let mut text = String::from("iteration,epoch,loss,train_accuracy,test_accuracy,elapsed_seconds\n");
    for e in evals {
        let loss = e.loss.map(|l| l.to_string()).unwrap_or_default();
        let _ = writeln!(
            text,
            "{},{:.4},{loss},{},{},{:.3}",
            e.iteration, e.epoch, e.train_accuracy, e.test_accuracy, e.elapsed_seconds
        );
    }
    write_atomic(path, text.as_bytes())
}

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is compiled in, so plots need no system fonts.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws into a temporary PNG beside `path`, then renames it into place.
fn draw_png(path: &Path, draw: impl FnOnce(&Path) -> Result<(), Box<dyn std::error::Error>>) -> Result<(), TrainError> {
    register_font();
    let plot_error = |detail: String| TrainError::Plot {
        path: path.to_path_buf(),
        detail,
    };
    let temp = temp_beside(path)?;
    if let Err(e) = draw(&temp) {
        let _ = std::fs::remove_file(&temp);
        return Err(plot_error(e.to_string()));
    }
    std::fs::rename(&temp, path).map_err(|e| TrainError::io(path, e))
}

/// One line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    dashed: bool,
}

/// Axis titles and ranges of a chart.
struct Axes {
    x_desc: &'static str,
    y_desc: &'static str,
    x_max: f64,
    y_max: f64,
}

/// An 800x560 line chart with a title, labelled axes from 0, and a legend.
fn line_chart(
    path: &Path,
    title: &str,
    axes: Axes,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
) -> Result<(), TrainError> {
    draw_png(path, |file| {
        let root = BitMapBackend::new(file, (800, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..axes.x_max, 0.0..axes.y_max)?;
        chart
            .configure_mesh()
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 15))
            .draw()?;
        for line in series {
            let style = line.color.stroke_width(line.width);
            let drawn = if line.dashed {
                chart.draw_series(DashedLineSeries::new(line.points, 8, 5, style))?
            } else {
                chart.draw_series(LineSeries::new(line.points, style))?
            };
            drawn
                .label(line.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        chart
            .configure_series_labels()
            .position(legend)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// The book's figure: accuracy (0..1) against epochs, train solid, test
/// dashed, legend in the lower right.
pub fn plot_accuracy(path: &Path, evals: &[EvalRecord], title: &str) -> Result<(), TrainError> {
    let max_epoch = evals.iter().map(|e| e.epoch).fold(1.0f64, f64::max);
    let series = vec![
        Series {
            label: "train acc".into(),
            points: evals.iter().map(|e| (e.epoch, e.train_accuracy)).collect(),
            color: BLUE,
            width: 2,
            dashed: false,
        },
        Series {
            label: "test acc".into(),
            points: evals.iter().map(|e| (e.epoch, e.test_accuracy)).collect(),
            color: RED,
            width: 2,
            dashed: true,
        },
    ];
    let axes = Axes {
        x_desc: "epochs",
        y_desc: "accuracy",
        x_max: max_epoch,
        y_max: 1.0,
    };
    line_chart(path, title, axes, series, SeriesLabelPosition::LowerRight)
}

/// Batch loss against iterations, with its moving average over 100 iterations on top.
pub fn plot_loss(path: &Path, losses: &[f32], title: &str) -> Result<(), TrainError> {
    let window = 100.min(losses.len().max(1));
    // Clip the axis at 10 so one wild early batch does not flatten the curve.
    let max_loss = losses.iter().copied().fold(0.1f32, f32::max).min(10.0) as f64;
    let mut averaged = Vec::with_capacity(losses.len());
    let mut sum = 0.0f64;
    for (i, &l) in losses.iter().enumerate() {
        sum += l as f64;
        if i >= window {
            sum -= losses[i - window] as f64;
        }
        if i + 1 >= window {
            averaged.push((i as f64, sum / window as f64));
        }
    }
    let series = vec![
        Series {
            label: "batch loss".into(),
            points: losses
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as f64, (l as f64).min(max_loss)))
                .collect(),
            color: RGBColor(150, 170, 220),
            width: 1,
            dashed: false,
        },
        Series {
            label: format!("mean of {window}"),
            points: averaged,
            color: BLUE,
            width: 2,
            dashed: false,
        },
    ];
    let axes = Axes {
        x_desc: "iteration",
        y_desc: "loss",
        x_max: losses.len().max(1) as f64 * 1.02,
        y_max: max_loss * 1.05,
    };
    line_chart(path, title, axes, series, SeriesLabelPosition::UpperRight)
}
