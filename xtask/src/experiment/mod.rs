//! `cargo xtask experiment NAME`: the book's chapter-6 scripts as commands.
//!
//! Each network experiment trains its curves with the same [`Trainer`] as
//! `cargo xtask train` (`optimizer-paths` runs the optimizers on a 2-D
//! function instead), writes a CSV and the book's figure as PNG into a run
//! folder, prints one summary line per curve, and with `--json` ends with one
//! object mapping each curve's name to its final figures. Everything is
//! seeded by `--seed`; `--quick` runs a shortened version (for tests and a
//! first look).

mod batch_norm;
mod hyperparameter_search;
mod optimizer_paths;
mod optimizers;
mod overfit;
mod weight_init;

use crate::common::{check_out_dir, project_root, timestamp, DataArgs, Result, RunDir, StopSignal, ThreadsArg};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use train::report::{line_chart, smooth_curve, write_csv, Axes, Series, SeriesLabelPosition};
use train::{EvalRecord, ImageData, Observer, Summary, TrainConfig, TrainError, Trainer};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Name {
    /// optimizer_compare_naive.py: the paths of four optimizers over x^2/20 + y^2 (no data).
    OptimizerPaths,
    /// optimizer_compare_mnist.py: SGD, Momentum, AdaGrad and Adam on a 5-layer net.
    Optimizers,
    /// weight_init_compare.py and weight_init_activation_histogram.py.
    WeightInit,
    /// batch_norm_test.py: with and without BatchNorm over 16 weight scales.
    BatchNorm,
    /// overfit_weight_decay.py and overfit_dropout.py on 300 images.
    Overfit,
    /// hyperparameter_optimization.py: 100 random trials of lr and weight decay.
    HyperparameterSearch,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::OptimizerPaths => "optimizer-paths",
            Name::Optimizers => "optimizers",
            Name::WeightInit => "weight-init",
            Name::BatchNorm => "batch-norm",
            Name::Overfit => "overfit",
            Name::HyperparameterSearch => "hyperparameter-search",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Which of the book's chapter-6 experiments.
    #[arg(value_enum)]
    name: Name,
    /// Seed of every random choice (weights, batches, masks, trials).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A shortened run (a tenth of the steps or fewer, fewer curves): for tests and a first look.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    data: DataArgs,
    /// Run folder for the CSV and the figure [default: runs/experiment-<name>-seed<seed>-<time>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into an --out folder that already holds files (they are replaced).
    #[arg(long)]
    overwrite: bool,
    /// Print a JSON object (curve name -> final figures) as the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// What every experiment gets.
pub struct Context<'a> {
    pub train: ImageData<'a>,
    pub test: ImageData<'a>,
    pub seed: u64,
    pub threads: usize,
    pub quick: bool,
    pub out: PathBuf,
    /// Steps done over all curves; each experiment sets its length.
    pub bar: ProgressBar,
    /// Ctrl-C or SIGTERM: the curve under way stops, and the experiment
    /// draws what it has (see [`Context::stopped`]).
    pub stop: StopSignal,
}

/// What every experiment returns: one line per curve, and the JSON summary.
pub struct Outcome {
    pub lines: Vec<String>,
    pub json: serde_json::Map<String, serde_json::Value>,
    pub files: Vec<&'static str>,
}

/// One trained curve.
pub struct Curve {
    pub losses: Vec<f32>,
    /// The evaluations; after a divergence, those before it.
    pub evals: Vec<EvalRecord>,
    /// The end of the run; after a divergence, the figures of the weights kept.
    pub summary: Summary,
    /// The iteration whose loss was not finite, when the run diverged.
    pub diverged_at: Option<usize>,
    /// The steps taken when Ctrl-C or SIGTERM stopped the curve.
    pub stopped_at: Option<usize>,
}

impl Curve {
    /// `{"final_loss":..,"train_accuracy":..,"test_accuracy":..}`, and
    /// `"diverged_at"` when the run diverged.
    pub fn figures(&self) -> serde_json::Value {
        let mut figures = serde_json::json!({
            "final_loss": self.summary.final_loss,
            "train_accuracy": self.summary.train_accuracy,
            "test_accuracy": self.summary.test_accuracy,
        });
        if let Some(iteration) = self.diverged_at {
            figures["diverged_at"] = iteration.into();
        }
        if let Some(iteration) = self.stopped_at {
            figures["stopped_at"] = iteration.into();
        }
        figures
    }

    /// `" (diverged at iteration N)"` or nothing.
    pub fn note(&self) -> String {
        match (self.diverged_at, self.stopped_at) {
            (Some(i), _) => format!(" (diverged at iteration {i})"),
            (None, Some(i)) => format!(" (stopped after {i} iterations)"),
            (None, None) => String::new(),
        }
    }
}

/// Advances the shared progress bar, one tick per step.
struct Ticker<'b>(&'b ProgressBar, &'b StopSignal);

impl Observer for Ticker<'_> {
    fn on_step(&mut self, _iteration: usize, _loss: f64) {
        self.0.inc(1);
    }

    fn should_stop(&self) -> bool {
        self.1.requested()
    }
}

/// The loss curves of a comparison (optimizers, initial weights): the CSV
/// `iteration,<name>...`, the book's figure of the smoothed losses clipped at
/// `y_max`, and one summary line and JSON entry per curve.
pub fn loss_curves(
    ctx: &Context<'_>,
    file: &str,
    title: &str,
    y_max: f64,
    curves: &[(&str, Curve)],
) -> Result<(Vec<String>, serde_json::Map<String, serde_json::Value>)> {
    let iters = curves.iter().map(|(_, c)| c.losses.len()).max().unwrap_or(0);
    let rows: Vec<Vec<String>> = (0..iters)
        .map(|i| {
            let mut row = vec![i.to_string()];
            row.extend(
                curves
                    .iter()
                    .map(|(_, c)| c.losses.get(i).map(|l| l.to_string()).unwrap_or_default()),
            );
            row
        })
        .collect();
    let mut header = vec!["iteration"];
    header.extend(curves.iter().map(|(name, _)| *name));
    write_csv(&ctx.path(&format!("{file}.csv")), &header, &rows)?;
    let series = curves
        .iter()
        .enumerate()
        .map(|(index, (name, curve))| {
            let losses: Vec<f64> = curve.losses.iter().map(|&l| l as f64).collect();
            let points = smooth_curve(&losses)
                .into_iter()
                .enumerate()
                .map(|(i, l)| (i as f64, l.min(y_max)))
                .collect();
            Series::new(*name, points, index)
        })
        .collect();
    let axes = Axes::from_zero("iterations", "loss", iters as f64, y_max);
    line_chart(
        &ctx.path(&format!("{file}.png")),
        title,
        axes,
        series,
        SeriesLabelPosition::UpperRight,
    )?;
    let mut lines = Vec::new();
    let mut json = serde_json::Map::new();
    for (name, curve) in curves {
        lines.push(format!(
            "{name:<9} mean loss of the last 100 iterations {:.4}   train acc {:.4}   test acc {:.4}{}",
            curve.summary.final_loss,
            curve.summary.train_accuracy,
            curve.summary.test_accuracy,
            curve.note()
        ));
        json.insert(name.to_string(), curve.figures());
    }
    Ok((lines, json))
}

impl Context<'_> {
    /// The recipe every curve starts from: this run's seed and threads.
    pub fn base_config(&self) -> TrainConfig {
        TrainConfig {
            seed: self.seed,
            threads: self.threads,
            ..TrainConfig::default()
        }
    }

    /// Whether Ctrl-C or SIGTERM asked the experiment to stop: its loops
    /// then end after the curve under way, and it draws the curves it has.
    pub fn stopped(&self) -> bool {
        self.stop.requested()
    }

    /// Trains one curve of `config` on `train`, evaluating on `test`. A
    /// curve that diverges is kept (some of the book's curves do: weights of
    /// scale 1 without BatchNorm), with the figures of its last good weights;
    /// so is a curve stopped by Ctrl-C or SIGTERM, with the figures of its
    /// weights so far.
    pub fn train_curve(&self, config: TrainConfig, train: ImageData<'_>, test: ImageData<'_>) -> Result<Curve> {
        let classes = usize::from(mnist::CLASSES);
        let mut trainer = Trainer::<f32, _>::new(config, train, test, classes)?;
        let started = Instant::now();
        let (summary, diverged_at, stopped_at) = match trainer.run(&mut Ticker(&self.bar, &self.stop)) {
            Ok(summary) => (summary, None, None),
            Err(e @ (TrainError::NonFiniteLoss { .. } | TrainError::Interrupted { .. })) => {
                let (iteration, diverged) = match e {
                    TrainError::NonFiniteLoss { iteration, .. } => (iteration, true),
                    _ => (trainer.losses().len(), false),
                };
                // The bar counts the steps the curve would have taken.
                self.bar.inc((trainer.iterations() - iteration) as u64);
                let losses = trainer.losses();
                let tail = &losses[losses.len().saturating_sub(100)..];
                let seconds = started.elapsed().as_secs_f64();
                let summary = Summary {
                    final_loss: tail.iter().map(|&l| l as f64).sum::<f64>() / tail.len().max(1) as f64,
                    train_accuracy: train::accuracy(trainer.model(), trainer.train_set()),
                    test_accuracy: train::accuracy(trainer.model(), &test),
                    iterations: iteration,
                    seconds_total: seconds,
                    seconds_train: seconds,
                };
                if diverged {
                    (summary, Some(iteration), None)
                } else {
                    (summary, None, Some(iteration))
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Curve {
            losses: trainer.losses().to_vec(),
            evals: trainer.evals().to_vec(),
            summary,
            diverged_at,
            stopped_at,
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.out.join(file)
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.threads.check()?;
    // Every experiment but the optimizers' paths trains on the data set.
    check_out_dir(args.out.as_deref(), args.overwrite)?;
    let loaded = match args.name {
        Name::OptimizerPaths => None,
        _ => Some(args.data.load()?),
    };
    let (train, test) = match &loaded {
        Some((data, _, _)) => (
            ImageData::new(&data.train.images, &data.train.labels, data.train.pixels())?,
            ImageData::new(&data.test.images, &data.test.labels, data.test.pixels())?,
        ),
        None => {
            let empty = ImageData::new(&[], &[], args.data.dataset.pixels())?;
            (empty, empty)
        }
    };
    let name = args.name.as_str();
    let out = args.out.clone().unwrap_or_else(|| {
        project_root()
            .join("runs")
            .join(format!("experiment-{name}-seed{}-{}", args.seed, timestamp()))
    });
    // Claimed for this run alone until it ends (a lock file in it).
    let _claim = RunDir::claim(&out, args.overwrite)?;
    train::remove_stale_temp_files(&out);
    say!(
        "backprop-rs experiment {name}{}",
        if args.quick { " (quick)" } else { "" }
    );
    if let Some((_, data_dir, _)) = &loaded {
        say!(
            "  data      {} from {} ({} train, {} test images)",
            args.data.dataset,
            data_dir.display(),
            train.len(),
            test.len()
        );
    }
    say!("  seed      {}", args.seed);
    say!("  run dir   {}", out.display());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ctx = Context {
        train,
        test,
        seed: args.seed,
        threads: args.threads.threads,
        quick: args.quick,
        out,
        bar,
        stop: StopSignal::install()?,
    };
    let started = Instant::now();
    let outcome = match args.name {
        Name::OptimizerPaths => optimizer_paths::run(&ctx),
        Name::Optimizers => optimizers::run(&ctx),
        Name::WeightInit => weight_init::run(&ctx),
        Name::BatchNorm => batch_norm::run(&ctx),
        Name::Overfit => overfit::run(&ctx),
        Name::HyperparameterSearch => hyperparameter_search::run(&ctx),
    };
    ctx.bar.finish_and_clear();
    let outcome = outcome?;
    for line in &outcome.lines {
        say!("{line}");
    }
    if ctx.stopped() {
        eprintln!(
            "interrupted ({}): the curves finished so far, and their figure, are in {}",
            ctx.stop.cause(),
            ctx.out.display()
        );
        return Ok(ctx.stop.exit_code());
    }
    say!("done in {:.1}s", started.elapsed().as_secs_f64());
    for file in &outcome.files {
        say!("  {}", ctx.path(file).display());
    }
    if args.json {
        say!("{}", serde_json::Value::Object(outcome.json));
    }
    Ok(ExitCode::SUCCESS)
}
