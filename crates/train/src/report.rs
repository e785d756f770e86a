//! A run's records: CSV tables and PNG plots, each written atomically.

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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the .png extension: the encoder picks the format from it.
    let temp = dir.join(format!(".tmp-{}-{name}", std::process::id()));
    if let Err(e) = draw(&temp) {
        let _ = std::fs::remove_file(&temp);
        return Err(plot_error(e.to_string()));
    }
    std::fs::rename(&temp, path).map_err(|e| TrainError::io(path, e))
}

/// The book's figure: accuracy (0..1) against epochs, train solid, test
/// dashed, legend in the lower right.
pub fn plot_accuracy(path: &Path, evals: &[EvalRecord], title: &str) -> Result<(), TrainError> {
    draw_png(path, |file| {
        let root = BitMapBackend::new(file, (800, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_epoch = evals.iter().map(|e| e.epoch).fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_epoch, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("epochs")
            .y_desc("accuracy")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 15))
            .draw()?;
        let train: Vec<(f64, f64)> = evals.iter().map(|e| (e.epoch, e.train_accuracy)).collect();
        let test: Vec<(f64, f64)> = evals.iter().map(|e| (e.epoch, e.test_accuracy)).collect();
        chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?
            .label("train acc")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(test, 8, 5, RED.stroke_width(2)))?
            .label("test acc")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// Batch loss against iterations, with a moving average over `window` iterations on top.
pub fn plot_loss(path: &Path, losses: &[f32], title: &str) -> Result<(), TrainError> {
    let window = 100.min(losses.len().max(1));
    draw_png(path, |file| {
        let root = BitMapBackend::new(file, (800, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_loss = losses.iter().copied().fold(0.1f32, f32::max).min(10.0) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..losses.len().max(1) as f64 * 1.02, 0.0..max_loss * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("loss")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 15))
            .draw()?;
        let raw = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as f64, (l as f64).min(max_loss)));
        chart
            .draw_series(LineSeries::new(raw, RGBColor(150, 170, 220).stroke_width(1)))?
            .label("batch loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], RGBColor(150, 170, 220)));
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
        chart
            .draw_series(LineSeries::new(averaged, BLUE.stroke_width(2)))?
            .label(format!("mean of {window}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLUE.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}
