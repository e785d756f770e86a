//! `cargo xtask train`: the book's run, watchable and reproducible.

use crate::common::{load_data, parse_dataset, project_root, timestamp, Result, XtaskError};
use indicatif::{ProgressBar, ProgressStyle};
use layers::{Activation, Init, OptimizerConfig, OptimizerKind};
use mnist::Dataset;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use train::{report, save_checkpoint, EvalRecord, ImageData, Observer, Summary, TrainConfig, TrainError, Trainer};

#[derive(clap::Args)]
pub struct Args {
    /// Hidden layer widths, comma separated: 50 is the book's net, 100,100 a deeper one.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    hidden: Vec<usize>,
    /// Hidden activation: relu or sigmoid.
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// Initial weights: std:S (S * N(0,1), the book's std:0.01), xavier (sqrt(1/n)) or he (sqrt(2/n)).
    #[arg(long, default_value = "std:0.01", allow_hyphen_values = true)]
    init: Init,
    /// A BatchNorm layer after every hidden Affine layer.
    #[arg(long)]
    batch_norm: bool,
    /// A Dropout layer of this ratio (in [0, 1)) after every hidden activation.
    #[arg(long, allow_negative_numbers = true)]
    dropout: Option<f64>,
    /// L2 weight decay lambda: lambda/2 * sum(W^2) added to the loss.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f64,
    /// sgd, momentum, nesterov, adagrad, rmsprop or adam.
    #[arg(long, default_value = "sgd")]
    optimizer: OptimizerKind,
    /// Learning rate [default: 0.1 for sgd (the chapter-5 recipe), else the book's: 0.01, adam 0.001].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Momentum of momentum and nesterov.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    momentum: f64,
    /// Decay rate of rmsprop.
    #[arg(long, default_value_t = 0.99, allow_negative_numbers = true)]
    decay_rate: f64,
    /// Adam's beta1.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    beta1: f64,
    /// Adam's beta2.
    #[arg(long, default_value_t = 0.999, allow_negative_numbers = true)]
    beta2: f64,
    /// Images per mini-batch (drawn with replacement).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Number of steps.
    #[arg(long, default_value_t = 10_000, conflicts_with = "epochs")]
    iters: usize,
    /// Train for N epochs instead (N * train size / batch size steps).
    #[arg(long)]
    epochs: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_size: Option<usize>,
    /// Evaluate train and test accuracy every N steps [default: one epoch, train size / batch size].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Seed of every random choice (weights, batches, dropout masks).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (0: one per core). Results are identical for any value.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// mnist or fashion-mnist.
    #[arg(long, default_value = "mnist", value_parser = parse_dataset)]
    dataset: Dataset,
    /// Folder holding the four files [default: $MNIST_DIR, else data/<dataset>, fetched on first use].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run folder for records, plots and weights [default: runs/<dataset>-<net>-<optimizer>-seed<seed>-<time>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print a JSON summary as the last line of stdout.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn config(&self) -> TrainConfig {
        let chapter5_sgd = self.optimizer == OptimizerKind::Sgd;
        let learning_rate = self.lr.unwrap_or(if chapter5_sgd {
            0.1
        } else {
            self.optimizer.default_learning_rate()
        });
        TrainConfig {
            hidden: self.hidden.clone(),
            activation: self.activation,
            init: self.init,
            batch_norm: self.batch_norm,
            dropout: self.dropout,
            weight_decay: self.weight_decay,
            optimizer: OptimizerConfig {
                kind: self.optimizer,
                learning_rate,
                momentum: self.momentum,
                decay_rate: self.decay_rate,
                beta1: self.beta1,
                beta2: self.beta2,
            },
            batch_size: self.batch_size,
            iters: self.iters,
            epochs: self.epochs,
            train_size: self.train_size,
            eval_every: self.eval_every,
            seed: self.seed,
            threads: self.threads,
        }
    }
}

/// A progress bar with the live loss and iterations per second, and one
/// printed line per evaluation.
struct Console {
    bar: ProgressBar,
}

impl Observer for Console {
    fn on_step(&mut self, iteration: usize, loss: f64) {
        // The bar's message is formatted (allocated) only a few times a second's worth of steps.
        if iteration.is_multiple_of(50) {
            self.bar.set_message(format!("loss {loss:.4}"));
        }
        self.bar.set_position(iteration as u64 + 1);
    }

    fn on_eval(&mut self, e: &EvalRecord) {
        let loss = e.loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into());
        let line = format!(
            "iter {:>6}  epoch {:>6.2}  loss {loss:>7}  train acc {:.4}  test acc {:.4}  {:>6.2}s",
            e.iteration, e.epoch, e.train_accuracy, e.test_accuracy, e.elapsed_seconds
        );
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; `cargo xtask` runs the release profile, use it for real runs");
    }
    let config = args.config();
    // Refuse bad settings before loading anything.
    config.validate()?;
    let (data, data_dir, load_seconds) = load_data(args.dataset, args.data_dir.clone())?;
    let train_set = ImageData::new(&data.train.images, &data.train.labels, data.train.pixels())?;
    let test_set = ImageData::new(&data.test.images, &data.test.labels, data.test.pixels())?;
    let classes = 10;
    let mut trainer = Trainer::<f32>::new(config.clone(), train_set, test_set, classes)?;
    let train_len = trainer.train_set().len();
    let eval_every = config.eval_interval(train_len);
    let iterations = trainer.iterations();
    let sizes = config.mlp(train_set.features(), classes).sizes;
    let net_name = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
    let mut extras = Vec::new();
    if config.batch_norm {
        extras.push("batch norm".to_string());
    }
    if let Some(ratio) = config.dropout {
        extras.push(format!("dropout {ratio}"));
    }
    if config.weight_decay > 0.0 {
        extras.push(format!("weight decay {}", config.weight_decay));
    }
    let run_dir = args.out.clone().unwrap_or_else(|| {
        let extras: String = [
            (config.batch_norm, "-bn"),
            (config.dropout.is_some(), "-dropout"),
            (config.weight_decay > 0.0, "-wd"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, tag)| *tag)
        .collect();
        project_root().join("runs").join(format!(
            "{}-{net_name}-{}{extras}-{}-seed{}-{}",
            args.dataset,
            args.activation,
            config.optimizer.kind,
            args.seed,
            timestamp()
        ))
    });
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::Io {
        path: run_dir.clone(),
        source: e,
    })?;

    println!("backprop-rs train");
    println!(
        "  data      {} from {} ({} train, {} test images; loaded in {load_seconds:.2}s)",
        args.dataset,
        data_dir.display(),
        train_len,
        test_set.len()
    );
    println!(
        "  network   {net_name} {} (f32, {} parameters, init {}){}",
        args.activation,
        trainer.model().num_params(),
        config.init,
        if extras.is_empty() {
            String::new()
        } else {
            format!(", {}", extras.join(", "))
        }
    );
    println!("  layers    {}", trainer.model().summary());
    println!(
        "  optimizer {}  batch {} (with replacement)  iters {iterations} ({:.2} epochs)  eval every {eval_every}",
        config.optimizer.describe(),
        config.batch_size,
        iterations as f64 / config.iters_per_epoch(train_len) as f64
    );
    println!(
        "  seed      {}  threads {}",
        config.seed,
        if config.threads == 0 {
            rayon::current_num_threads()
        } else {
            config.threads
        }
    );
    println!("  run dir   {}", run_dir.display());

    let bar = ProgressBar::new(iterations as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut console = Console { bar };
    let result = trainer.run(&mut console);
    console.bar.finish_and_clear();

    // Whatever happened, keep what there is: on divergence, the last good weights.
    let config_json = serde_json::json!({
        "settings": config.to_json(train_len),
        "dataset": args.dataset.name(),
        "data_dir": data_dir.display().to_string(),
        "sizes": sizes,
        "layers": trainer.model().specs(),
        "dtype": "f32",
    });
    train::write_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(&config_json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let model_path = run_dir.join("model.safetensors");
    save_checkpoint(
        &model_path,
        trainer.model(),
        &[
            ("dataset", args.dataset.name().to_string()),
            ("seed", config.seed.to_string()),
        ],
    )?;
    write_records(
        &run_dir,
        trainer.losses(),
        trainer.evals(),
        &format!(
            "{} {net_name} {} {}",
            args.dataset, args.activation, config.optimizer.kind
        ),
    )?;

    let summary = match result {
        Ok(summary) => summary,
        Err(e @ TrainError::NonFiniteLoss { .. }) => {
            eprintln!("saved the last good weights to {}", model_path.display());
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    print_summary(&summary, &run_dir);
    if args.json {
        let json = serde_json::json!({
            "test_accuracy": summary.test_accuracy,
            "train_accuracy": summary.train_accuracy,
            "final_loss": summary.final_loss,
            "iterations": summary.iterations,
            "seconds_total": summary.seconds_total,
            "seconds_train": summary.seconds_train,
            "run_dir": run_dir.display().to_string(),
        });
        println!("{json}");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_records(dir: &Path, losses: &[f32], evals: &[EvalRecord], title: &str) -> std::result::Result<(), XtaskError> {
    report::write_loss_csv(&dir.join("loss.csv"), losses)?;
    report::write_eval_csv(&dir.join("accuracy.csv"), evals)?;
    report::plot_accuracy(&dir.join("accuracy.png"), evals, title)?;
    report::plot_loss(&dir.join("loss.png"), losses, title)?;
    Ok(())
}

fn print_summary(s: &Summary, run_dir: &Path) {
    println!(
        "done: test acc {:.4}  train acc {:.4}  final loss {:.4}  {} iters in {:.2}s ({:.2}s training, {:.2}s evaluating)",
        s.test_accuracy,
        s.train_accuracy,
        s.final_loss,
        s.iterations,
        s.seconds_total,
        s.seconds_train,
        s.seconds_total - s.seconds_train
    );
    for file in [
        "accuracy.png",
        "loss.png",
        "accuracy.csv",
        "loss.csv",
        "model.safetensors",
        "config.json",
    ] {
        println!("  {}", run_dir.join(file).display());
    }
}
