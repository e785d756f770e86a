//! A run's records: CSV tables and PNG plots (line charts, grids of them,
//! histograms), each written atomically: a failed write leaves the old file.
//!
//! Every function fails with [`TrainError::Io`] when its file cannot be
//! written, and the plots with [`TrainError::Plot`] when the drawing fails.

use crate::{write_atomic, EvalRecord, TrainError};
/// Where a chart's legend goes.
pub use plotters::prelude::SeriesLabelPosition;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

/// Writes `losses` as CSV, `iteration,loss`, one line per iteration (from 0).
pub fn write_loss_csv(path: &Path, losses: &[f32]) -> Result<(), TrainError> {
    let mut text = String::from("iteration,loss\n");
    for (i, loss) in losses.iter().enumerate() {
        let _ = writeln!(text, "{i},{loss}");
    }
    write_atomic(path, text.as_bytes())
}

/// Writes `evals` as CSV, one line per evaluation:
/// `iteration,epoch,loss,train_accuracy,test_accuracy,elapsed_seconds`
/// (accuracies as fractions in `[0, 1]`, the loss empty before the first step).
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

/// A drawing surface of a figure: the pixels of the bitmap backend, in memory.
type Root<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws a `width x height` figure in memory (on white), encodes it as PNG
/// and writes it with [`write_atomic`]. The bitmap backend is never given
/// the file: its failures to write come back as `Debug` text of types it
/// does not export (`ImageError(IoError(Os { code: 13, .. }))`), while
/// `write_atomic` fails with the [`TrainError::Io`] of every other file.
fn draw_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Root<'_>) -> DrawResult,
) -> Result<(), TrainError> {
    register_font();
    let plot_error = |detail: String| TrainError::Plot {
        path: path.to_path_buf(),
        detail,
    };
    // Only PNG is encoded: refuse another extension rather than write PNG
    // bytes under a name that says otherwise.
    let is_png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(plot_error(
            "plots are written as PNG; give a file name ending in .png".to_string(),
        ));
    }
    // RGB, 3 bytes a pixel, as `BitMapBackend::with_buffer` takes it.
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
    let drawn = (|| -> DrawResult {
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| plot_error(e.to_string()))?;
    drop(root);
    let png = encode_png(&rgb, width, height).map_err(|e| plot_error(format!("cannot encode the PNG: {e}")))?;
    write_atomic(path, &png)
}

/// `rgb` (8 bits a channel, rows top to bottom) as the bytes of a PNG file.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Figures are mostly flat color: the best compression makes them a
    // third of the default's size for a few milliseconds more.
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(bytes)
}

/// One line of a chart.
pub struct Series {
    /// The legend entry; an empty label gets none.
    pub label: String,
    /// `(x, y)` points in the axes' units, joined in order.
    pub points: Vec<(f64, f64)>,
    /// The line's color.
    pub color: RGBColor,
    /// The stroke width in pixels.
    pub width: u32,
    /// Drawn in dashes (8 pixels, gaps of 5) instead of a solid line.
    pub dashed: bool,
}

impl Series {
    /// A 2-pixel line in the `index`-th color of [`PALETTE`].
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, index: usize) -> Self {
        Series {
            label: label.into(),
            points,
            color: PALETTE[index % PALETTE.len()],
            width: 2,
            dashed: false,
        }
    }

    /// The same line, dashed.
    pub fn dashed(self) -> Self {
        Series { dashed: true, ..self }
    }
}

/// Distinct line colors (matplotlib's first six), in order.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Axis titles and ranges of a chart.
pub struct Axes {
    /// The x axis title.
    pub x_desc: &'static str,
    /// The y axis title.
    pub y_desc: &'static str,
    /// The x range shown.
    pub x: std::ops::Range<f64>,
    /// The y range shown.
    pub y: std::ops::Range<f64>,
}

impl Axes {
    /// Both axes from 0 to their maximum.
    pub fn from_zero(x_desc: &'static str, y_desc: &'static str, x_max: f64, y_max: f64) -> Self {
        Axes {
            x_desc,
            y_desc,
            x: 0.0..x_max,
            y: 0.0..y_max,
        }
    }
}

/// One chart of a figure: a title, its axes, its lines.
pub struct Panel {
    /// The caption above the chart.
    pub title: String,
    /// Axis titles and ranges.
    pub axes: Axes,
    /// The lines, drawn in order (later on top).
    pub series: Vec<Series>,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws `panel` into `area`, with a legend at `legend` when `legend` is given.
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: Panel,
    font_size: u32,
    legend: Option<SeriesLabelPosition>,
) -> DrawResult {
    let axes = panel.axes;
    let y_decimals = tick_decimals(axes.y.end - axes.y.start);
    // The legend goes to the corner its lines leave most free.
    let legend = legend.map(|preferred| least_crowded_corner(&panel.series, &axes, preferred));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, font_size + 7))
        .margin(font_size)
        .x_label_area_size(font_size * 3)
        .y_label_area_size(font_size * 3 + 8)
        .build_cartesian_2d(axes.x, axes.y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(&|x| {
            if x.fract().abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
        .label_style((FONT, font_size))
        // Major grid lines only: the minor ones add noise (and megabytes to a grid of panels).
        .max_light_lines(0)
        .draw()?;
    for line in panel.series {
        let style = line.color.stroke_width(line.width);
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points, 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(line.points, style))?
        };
        // An unlabelled line (one of several contours, say) gets no legend entry.
        if !line.label.is_empty() {
            drawn
                .label(line.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    if let Some(position) = legend {
        chart
            .configure_series_labels()
            .position(position)
            .label_font((FONT, font_size + 1))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// Decimals that tell apart the labels of about ten ticks over `span`: a
/// span of 2 ticks every 0.2, labelled with one decimal (with none it read
/// "2, 2, 2, 1, 1").
fn tick_decimals(span: f64) -> usize {
    if !(span.is_finite() && span > 0.0) {
        return 1;
    }
    let step = span / 10.0;
    (-step.log10().floor()).clamp(0.0, 6.0) as usize
}

/// The corner of the plot where a legend of `series.len()` entries covers
/// the fewest points of the lines (segments sampled between their points),
/// `preferred` when it is as free as any.
fn least_crowded_corner(series: &[Series], axes: &Axes, preferred: SeriesLabelPosition) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let (x0, x1, y0, y1) = (axes.x.start, axes.x.end, axes.y.start, axes.y.end);
    let entries = series.iter().filter(|s| !s.label.is_empty()).count() as f64;
    // The legend box as fractions of the plot: a third of its width, a line
    // of text per entry.
    let (width, height) = (0.38, (0.08 * entries + 0.05).min(0.6));
    let covered = |position: &SeriesLabelPosition| -> usize {
        let (left, bottom) = match position {
            UpperLeft => (0.0, 1.0 - height),
            UpperRight => (1.0 - width, 1.0 - height),
            LowerLeft => (0.0, 0.0),
            _ => (1.0 - width, 0.0),
        };
        let inside = |(x, y): (f64, f64)| {
            let (u, v) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
            (left..=left + width).contains(&u) && (bottom..=bottom + height).contains(&v)
        };
        series
            .iter()
            .flat_map(|s| s.points.windows(2))
            .flat_map(|pair| {
                let ((xa, ya), (xb, yb)) = (pair[0], pair[1]);
                (0..8).map(move |k| {
                    let t = k as f64 / 8.0;
                    (xa + t * (xb - xa), ya + t * (yb - ya))
                })
            })
            .filter(|&p| inside(p))
            .count()
    };
    let mut best = (covered(&preferred), preferred);
    for corner in [UpperRight, UpperLeft, LowerRight, LowerLeft] {
        let count = covered(&corner);
        if count < best.0 {
            best = (count, corner);
        }
    }
    best.1
}

/// An 800x560 line chart with a title, labelled axes over the given ranges, and a legend.
pub fn line_chart(
    path: &Path,
    title: &str,
    axes: Axes,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
) -> Result<(), TrainError> {
    draw_png(path, (800, 560), |root| {
        let panel = Panel {
            title: title.to_string(),
            axes,
            series,
        };
        draw_panel(root, panel, 15, Some(legend))
    })
}

/// A grid of `rows x cols` small charts under one title, filled row by row;
/// the legend of the first panel explains them all. Panels beyond
/// `rows * cols` are not drawn.
pub fn panel_grid(
    path: &Path,
    title: &str,
    (rows, cols): (usize, usize),
    panels: Vec<Panel>,
    legend: SeriesLabelPosition,
) -> Result<(), TrainError> {
    let size = ((cols * 320) as u32, (rows * 250 + 50) as u32);
    draw_png(path, size, |root| {
        let root = root.titled(title, (FONT, 26))?;
        let mut legend = Some(legend);
        for (panel, area) in panels.into_iter().zip(root.split_evenly((rows, cols))) {
            draw_panel(&area, panel, 11, legend.take())?;
        }
        Ok(())
    })
}

/// One histogram of a figure: a title and the values to count.
pub struct Histogram {
    /// The caption above the histogram.
    pub title: String,
    /// The values to count.
    pub values: Vec<f64>,
    /// The top of the count axis, bars clipped there (the book's `plt.ylim`);
    /// `None` fits the tallest bar.
    pub y_max: Option<f64>,
}

/// A grid of histograms (`bins` equal bins over `range`, values outside it
/// not counted, as NumPy's `hist(range=...)`), filled row by row. `bins`
/// must be at least 1.
pub fn histogram_grid(
    path: &Path,
    title: &str,
    (rows, cols): (usize, usize),
    bins: usize,
    range: (f64, f64),
    histograms: Vec<Histogram>,
) -> Result<(), TrainError> {
    let width = (range.1 - range.0) / bins as f64;
    let counts: Vec<Vec<usize>> = histograms
        .iter()
        .map(|h| {
            let mut counts = vec![0usize; bins];
            for &v in &h.values {
                if v >= range.0 && v <= range.1 {
                    let bin = (((v - range.0) / width) as usize).min(bins - 1);
                    counts[bin] += 1;
                }
            }
            counts
        })
        .collect();
    let size = ((cols * 260) as u32, (rows * 220 + 50) as u32);
    draw_png(path, size, |root| {
        let root = root.titled(title, (FONT, 26))?;
        for ((histogram, counts), area) in histograms.iter().zip(&counts).zip(root.split_evenly((rows, cols))) {
            let tallest = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
            let y_max = histogram.y_max.unwrap_or(tallest);
            let mut chart = ChartBuilder::on(&area)
                .caption(&histogram.title, (FONT, 16))
                .margin(10)
                .x_label_area_size(28)
                .y_label_area_size(44)
                .build_cartesian_2d(range.0..range.1, 0.0..y_max)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(3)
                .y_labels(4)
                .x_label_formatter(&|x| format!("{x:.1}"))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .label_style((FONT, 11))
                .draw()?;
            chart.draw_series(counts.iter().enumerate().map(|(i, &count)| {
                let left = range.0 + i as f64 * width;
                Rectangle::new(
                    [(left, 0.0), (left + width, (count as f64).min(y_max))],
                    PALETTE[0].filled(),
                )
            }))?;
        }
        Ok(())
    })
}

/// Filters `[FN, C, FH, FW]` as a grid of gray squares, 8 a row, channel 0
/// of each (the book's `filter_show`: each filter scaled to its own range,
/// dark for large values as its `gray_r` map). Filters of another rank are
/// a [`TrainError::Plot`]. The figure is bounded whatever the tensor: the
/// first 128 filters, each at most about 80 pixels on a side.
pub fn plot_filters<T: tensor::Element>(
    path: &Path,
    title: &str,
    filters: &tensor::Tensor<T>,
) -> Result<(), TrainError> {
    let &[count, channels, height, width] = filters.shape() else {
        return Err(TrainError::Plot {
            path: path.to_path_buf(),
            detail: format!("filters must be [FN, C, FH, FW], got {:?}", filters.shape()),
        });
    };
    const COLUMNS: usize = 8;
    // A checkpoint may hold thousands of filters of up to 64x64: the figure
    // shows the first MAX_FILTERS, each at most about 80 pixels on a side.
    const MAX_FILTERS: usize = 128;
    let cell = (80 / height.max(width).max(1)).clamp(1, 10);
    let shown = count.min(MAX_FILTERS);
    let (filter_px_w, filter_px_h) = (width * cell, height * cell);
    let rows = shown.div_ceil(COLUMNS).max(1);
    const GAP: usize = 10;
    let grid_width = COLUMNS * (filter_px_w + GAP) + GAP;
    // Small filters make a narrow grid (330 pixels for 3x3): the figure is
    // widened to its title, which would otherwise be cut at both ends, and
    // the grid centred in it.
    register_font();
    let title_font = (FONT, 18).into_font();
    let title_width = title_font
        .box_size(title)
        .map(|(w, _)| w as usize)
        .unwrap_or(title.chars().count() * 11);
    let figure_width = grid_width.max(title_width + 4 * GAP);
    let grid_left = (figure_width - grid_width) / 2;
    let size = (figure_width as u32, (rows * (filter_px_h + GAP) + GAP + 40) as u32);
    draw_png(path, size, |root| {
        let root = root.titled(title, title_font)?;
        let plane = height * width;
        for (f, filter) in filters
            .as_slice()
            .chunks_exact(channels * plane)
            .take(shown)
            .enumerate()
        {
            let values = &filter[..plane];
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v.to_f64()), hi.max(v.to_f64()))
            });
            let (left, top) = (
                grid_left + (f % COLUMNS) * (filter_px_w + GAP) + GAP,
                (f / COLUMNS) * (filter_px_h + GAP) + GAP,
            );
            for (i, v) in values.iter().enumerate() {
                let level = if hi > lo { (v.to_f64() - lo) / (hi - lo) } else { 0.5 };
                let gray = (255.0 * (1.0 - level)).round() as u8;
                let (x, y) = (left + (i % width) * cell, top + (i / width) * cell);
                root.draw(&Rectangle::new(
                    [(x as i32, y as i32), ((x + cell) as i32, (y + cell) as i32)],
                    RGBColor(gray, gray, gray).filled(),
                ))?;
            }
        }
        Ok(())
    })
}

/// Draws images (`side x side` bytes each, ink high as in MNIST) in a grid
/// of ten columns, dark on white at three pixels a pixel, each with its
/// caption under it, under `title`: the book's figure of the digits a net
/// gets wrong (figure 8-6), with "true -> predicted" captions. At most
/// [`MAX_DIGITS`] are drawn; the caller says how many there were.
pub fn plot_digits(path: &Path, title: &str, digits: &[(&[u8], String)], side: usize) -> Result<(), TrainError> {
    const COLUMNS: usize = 10;
    const SCALE: usize = 3;
    const GAP: usize = 12;
    const CAPTION: usize = 18;
    let shown = &digits[..digits.len().min(MAX_DIGITS)];
    if let Some((image, _)) = shown.iter().find(|(image, _)| image.len() != side * side) {
        return Err(TrainError::Plot {
            path: path.to_path_buf(),
            detail: format!("an image of {} values is not {side}x{side}", image.len()),
        });
    }
    let cell = side * SCALE;
    let rows = shown.len().div_ceil(COLUMNS).max(1);
    let grid_width = COLUMNS * (cell + GAP) + GAP;
    register_font();
    let title_font = (FONT, 18).into_font();
    let title_width = title_font
        .box_size(title)
        .map(|(w, _)| w as usize)
        .unwrap_or(title.len() * 11);
    let width = grid_width.max(title_width + 4 * GAP);
    let left_margin = (width - grid_width) / 2;
    let size = (width as u32, (rows * (cell + CAPTION + GAP) + GAP + 40) as u32);
    draw_png(path, size, |root| {
        let root = root.titled(title, title_font)?;
        for (i, (image, caption)) in shown.iter().enumerate() {
            let (left, top) = (
                left_margin + (i % COLUMNS) * (cell + GAP) + GAP,
                (i / COLUMNS) * (cell + CAPTION + GAP) + GAP,
            );
            for (p, &value) in image.iter().enumerate() {
                let gray = 255 - value;
                let (x, y) = (left + (p % side) * SCALE, top + (p / side) * SCALE);
                root.draw(&Rectangle::new(
                    [(x as i32, y as i32), ((x + SCALE) as i32, (y + SCALE) as i32)],
                    RGBColor(gray, gray, gray).filled(),
                ))?;
            }
            root.draw(&Text::new(
                caption.clone(),
                (left as i32, (top + cell + 2) as i32),
                (FONT, 15).into_font(),
            ))?;
        }
        Ok(())
    })
}

/// The most images [`plot_digits`] draws: ten rows of ten.
pub const MAX_DIGITS: usize = 100;

/// Writes a CSV table: a header line, then one line per row.
pub fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), TrainError> {
    let mut text = header.join(",");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join(","));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// The book's `smooth_curve` (`common/util.py`): a convolution with a
/// normalized Kaiser window (length 11, beta 2), the ends mirrored so that
/// the output is as long as the input.
pub fn smooth_curve(values: &[f64]) -> Vec<f64> {
    const LEN: usize = 11;
    let n = values.len();
    if n < LEN {
        return values.to_vec();
    }
    // Kaiser window: I0(beta * sqrt(1 - (2k / (LEN - 1) - 1)^2)) / I0(beta).
    let bessel_i0 = |x: f64| {
        // The power series sum_k ((x/2)^k / k!)^2 converges fast for small x.
        let (mut sum, mut term) = (1.0f64, 1.0f64);
        for k in 1..30 {
            term *= (x / 2.0) / k as f64;
            sum += term * term;
        }
        sum
    };
    let window: Vec<f64> = (0..LEN)
        .map(|k| {
            let r = 2.0 * k as f64 / (LEN - 1) as f64 - 1.0;
            bessel_i0(2.0 * (1.0 - r * r).sqrt())
        })
        .collect();
    let total: f64 = window.iter().sum();
    // np.r_[x[LEN-1:0:-1], x, x[-1:-LEN:-1]]: each end reflected, LEN - 1 values.
    let mut padded: Vec<f64> = values[1..LEN].iter().rev().copied().collect();
    padded.extend_from_slice(values);
    padded.extend(values[n - (LEN - 1)..].iter().rev().copied());
    let convolved: Vec<f64> = padded
        .windows(LEN)
        .map(|w| w.iter().zip(&window).map(|(v, k)| v * k).sum::<f64>() / total)
        .collect();
    // The book keeps y[5:len(y)-5] of the len(x) + LEN - 1 values.
    convolved[LEN / 2..convolved.len() - LEN / 2].to_vec()
}

/// The book's figure: accuracy (0..1) against epochs, train solid, test
/// dashed, legend in the lower right.
pub fn plot_accuracy(path: &Path, evals: &[EvalRecord], title: &str) -> Result<(), TrainError> {
    let max_epoch = evals.iter().map(|e| e.epoch).fold(1.0f64, f64::max);
    let series = vec![
        Series {
            color: BLUE,
            ..Series::new(
                "train acc",
                evals.iter().map(|e| (e.epoch, e.train_accuracy)).collect(),
                0,
            )
        },
        Series {
            color: RED,
            ..Series::new(
                "test acc",
                evals.iter().map(|e| (e.epoch, e.test_accuracy)).collect(),
                0,
            )
            .dashed()
        },
    ];
    let axes = Axes::from_zero("epochs", "accuracy", max_epoch, 1.0);
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
            color: BLUE,
            ..Series::new(format!("mean of {window}"), averaged, 0)
        },
    ];
    let axes = Axes::from_zero("iteration", "loss", losses.len().max(1) as f64 * 1.02, max_loss * 1.05);
    line_chart(path, title, axes, series, SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_curve_keeps_the_length_and_constants() {
        let flat = vec![2.5; 40];
        let smoothed = smooth_curve(&flat);
        assert_eq!(smoothed.len(), 40);
        assert!(smoothed.iter().all(|v| (v - 2.5).abs() < 1e-12));
        // A step is spread over the window's width and stays within its ends.
        let step: Vec<f64> = (0..40).map(|i| if i < 20 { 0.0 } else { 1.0 }).collect();
        let smoothed = smooth_curve(&step);
        assert!(smoothed[14] < 1e-12 && smoothed[25] > 1.0 - 1e-12);
        assert!(smoothed[19] > 0.0 && smoothed[19] < 0.5 && smoothed[20] > 0.5);
        // A symmetric window leaves a ramp unchanged away from the ends; at
        // the last point the mirrored end bends it down (x[-2], x[-3]... on both sides).
        let ramp: Vec<f64> = (0..30).map(f64::from).collect();
        let smoothed = smooth_curve(&ramp);
        assert!((5..25).all(|i| (smoothed[i] - i as f64).abs() < 1e-9), "{smoothed:?}");
        assert!(smoothed[29] < 29.0 && smoothed[29] > 25.0, "{}", smoothed[29]);
        // Too short to smooth: returned as is.
        assert_eq!(smooth_curve(&[1.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn a_filter_figure_is_bounded_and_only_png_is_written() {
        let dir = tempfile::tempdir().unwrap();
        // 4000 filters of 64x64: the figure shows 128, at most 80 px each.
        let filters = tensor::Tensor::<f32>::zeros(&[4000, 1, 64, 64]);
        let path = dir.path().join("filters.png");
        plot_filters(&path, "many", &filters).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // PNG's IHDR: width and height, big-endian, at bytes 16..24.
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert!(width <= 8 * 74 + 10 && height <= 16 * 74 + 50, "{width}x{height}");

        // A folder where the figure goes: refused, and no temporary file left.
        let in_the_way = dir.path().join("in-the-way.png");
        std::fs::create_dir_all(in_the_way.join("x")).unwrap();
        assert!(plot_filters(&in_the_way, "x", &filters).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let err = plot_filters(&dir.path().join("filters.jpg"), "x", &filters).unwrap_err();
        assert!(err.to_string().contains("ending in .png"), "{err}");
        assert!(!err.to_string().contains("ImageError"), "{err}");
    }

    /// The figure's pixels: width, height, and RGB rows top to bottom.
    fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width as usize, info.height as usize, rgb)
    }

    #[test]
    fn a_filter_figure_shows_its_whole_title_and_every_column() {
        // 3x3 filters make a grid 330 pixels wide, narrower than this title:
        // it was cut at both ends.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filters.png");
        let filters = tensor::Tensor::<f32>::zeros(&[200, 1, 3, 3]);
        plot_filters(&path, "the first 128 of 200 filters of 3x3 (channel 0)", &filters).unwrap();
        let (width, height, rgb) = read_png(&path);
        let dark = |x: usize, y: usize| rgb[(y * width + x) * 3] < 200;
        // The title's band: no ink within 10 pixels of either edge.
        let title_ink: Vec<usize> = (0..30).flat_map(|y| (0..width).filter(move |&x| dark(x, y))).collect();
        assert!(!title_ink.is_empty(), "no title drawn");
        let (first, last) = (title_ink.iter().min().unwrap(), title_ink.iter().max().unwrap());
        assert!(
            *first >= 10 && *last < width - 10,
            "title ink {first}..{last} of {width}"
        );
        // A row through the first filters: 8 gray squares (zeros draw mid-gray), the last
        // one ending before the right edge.
        let y = 45.min(height - 1);
        let runs: Vec<(usize, usize)> = (0..width)
            .filter(|&x| dark(x, y) && (x == 0 || !dark(x - 1, y)))
            .map(|start| (start, (start..width).take_while(|&x| dark(x, y)).count()))
            .collect();
        assert_eq!(runs.len(), 8, "{runs:?}");
        assert!(runs.iter().all(|&(_, len)| len == 30), "{runs:?}");
        assert!(runs[7].0 + 30 < width - 5, "{runs:?} in {width}");
    }

    #[test]
    fn tick_labels_tell_ticks_apart_and_legends_avoid_the_lines() {
        assert_eq!(tick_decimals(2.0), 1);
        assert_eq!(tick_decimals(1.0), 1);
        assert_eq!(tick_decimals(100.0), 0);
        assert_eq!(tick_decimals(0.05), 3);
        // A line falling from upper left to lower right: the free corners are
        // upper right and lower left; a legend asked for upper right stays.
        let axes = Axes::from_zero("x", "y", 10.0, 10.0);
        let falling = vec![Series::new(
            "a",
            (0..=10).map(|i| (i as f64, 10.0 - i as f64)).collect(),
            0,
        )];
        let corner = least_crowded_corner(&falling, &axes, SeriesLabelPosition::UpperRight);
        assert!(matches!(corner, SeriesLabelPosition::UpperRight));
        // A flat line along the top: the legend moves to a lower corner.
        let flat = vec![Series::new("b", (0..=10).map(|i| (i as f64, 9.5)).collect(), 0)];
        let corner = least_crowded_corner(&flat, &axes, SeriesLabelPosition::UpperRight);
        assert!(matches!(
            corner,
            SeriesLabelPosition::LowerRight | SeriesLabelPosition::LowerLeft
        ));
    }

    #[test]
    fn a_digit_grid_draws_each_image_dark_on_white_with_its_caption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrong.png");
        // 12 images: a full 28x28 square of ink, so each cell is a black
        // 84x84 block; two rows of ten columns, the second with 2.
        let ink = vec![255u8; 28 * 28];
        let digits: Vec<(&[u8], String)> = (0..12)
            .map(|i| (&ink[..], format!("{} -> {}", i % 10, (i + 1) % 10)))
            .collect();
        plot_digits(&path, "12 of 10000 test images misclassified", &digits, 28).unwrap();
        let (width, height, rgb) = read_png(&path);
        let black = |x: usize, y: usize| rgb[(y * width + x) * 3] == 0;
        // The middle of the first row of cells crosses ten black blocks of 84.
        let y = 40 + 12 + 42;
        let runs: Vec<usize> = (0..width)
            .filter(|&x| black(x, y) && (x == 0 || !black(x - 1, y)))
            .map(|start| (start..width).take_while(|&x| black(x, y)).count())
            .collect();
        assert_eq!(runs, vec![84; 10], "row of cells at y {y}");
        // The second row has 2, and the captions put ink under each block.
        let y2 = y + 84 + 18 + 12;
        let second = (0..width)
            .filter(|&x| black(x, y2) && (x == 0 || !black(x - 1, y2)))
            .count();
        assert_eq!(second, 2);
        let caption_band = (y + 42 + 2)..(y + 42 + 17);
        let ink_in_captions = caption_band
            .flat_map(|yy| (0..width).map(move |x| (x, yy)))
            .any(|(x, yy)| rgb[(yy * width + x) * 3] < 128);
        assert!(ink_in_captions, "no caption drawn");
        assert!(height < 400, "{height}");
        // Images of the wrong size are refused, not drawn.
        let short = [0u8; 10];
        assert!(plot_digits(&path, "t", &[(&short[..], String::new())], 28).is_err());
    }
}
