//! `cargo xtask train`: the book's run, watchable and reproducible.

use crate::common::{
    available_memory, check_out_dir, project_root, read_net_with_weight_decay, timestamp, DataArgs, JsonArg, ModelKind,
    Result, RunDir, StopSignal, ThreadsArg, XtaskError,
};
use indicatif::{ProgressBar, ProgressStyle};
use layers::{Activation, Init, LayerSpec, OptimizerConfig, OptimizerKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use train::{
    report, save_checkpoint, EvalRecord, ImageData, MlpOptions, ModelSpec, Observer, Summary, TrainConfig, TrainError,
    Trainer,
};

#[derive(clap::Args)]
pub struct Args {
    /// mlp (the book's fully connected nets), simple-convnet (chapter 7) or deep-convnet (chapter 8) [default: mlp].
    #[arg(long, conflicts_with = "net")]
    model: Option<ModelKind>,
    /// A network of one's own: a file listing its layers, one a line, sizes
    /// inferred (see nets/lenet5.net). Trained as the convnets are: adam, 20 epochs.
    #[arg(long, value_name = "FILE")]
    net: Option<PathBuf>,
    /// Hidden layer widths of the mlp, comma separated: 50 is the book's net, 100,100 a deeper one [default: 50].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    hidden: Option<Vec<usize>>,
    /// Hidden activation of the mlp: relu or sigmoid [default: relu].
    #[arg(long)]
    activation: Option<Activation>,
    /// Initial weights of the mlp: std:S (S * N(0,1)), xavier (sqrt(1/n)) or he (sqrt(2/n)) [default: std:0.01].
    #[arg(long, allow_hyphen_values = true)]
    init: Option<Init>,
    /// A BatchNorm layer after every hidden Affine layer of the mlp.
    #[arg(long)]
    batch_norm: bool,
    /// A Dropout layer of this ratio (in [0, 1)) after every hidden activation of the mlp.
    #[arg(long, allow_negative_numbers = true)]
    dropout: Option<f64>,
    /// L2 weight decay lambda: lambda/2 * sum(W^2) added to the loss [default: 0, or the --net file's].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// sgd, momentum, nesterov, adagrad, rmsprop or adam [default: sgd for the mlp, adam for the convnets].
    #[arg(long)]
    optimizer: Option<OptimizerKind>,
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
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    batch_size: usize,
    /// Number of steps [default: 10000 for the mlp].
    #[arg(long, conflicts_with = "epochs", allow_negative_numbers = true)]
    iters: Option<usize>,
    /// Train for N epochs instead (N * train size / batch size steps) [default: 20 for the convnets].
    #[arg(long, allow_negative_numbers = true)]
    epochs: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long, allow_negative_numbers = true)]
    train_size: Option<usize>,
    /// Evaluate train and test accuracy every N steps [default: one epoch, train size / batch size].
    #[arg(long, allow_negative_numbers = true)]
    eval_every: Option<usize>,
    /// Measure training accuracy on the first N training images [default: all for the mlp, 10000 for the convnets].
    #[arg(long, allow_negative_numbers = true)]
    eval_train_size: Option<usize>,
    /// Seed of every random choice (weights, batches, dropout masks).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    data: DataArgs,
    /// Run folder for records, plots and weights [default: runs/<dataset>-<net>-<optimizer>-seed<seed>-<time>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into an --out folder that already holds files (they are replaced).
    #[arg(long)]
    overwrite: bool,
    /// Also write the initial weights (initial.safetensors) and the first N
    /// batches with their losses (golden.json), for an independent check of
    /// the first steps (benches/numpy/golden_check.py; CI runs it).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    export_golden: Option<usize>,
    #[command(flatten)]
    json: JsonArg,
}

impl Args {
    /// The run's settings: the flags given, and each model's book recipe for the rest.
    fn config(&self) -> Result<TrainConfig> {
        let kind = self.model.unwrap_or_default();
        let convnet = kind != ModelKind::Mlp || self.net.is_some();
        let model_name = match &self.net {
            Some(path) => format!("--net {}", path.display()),
            None => format!("--model {kind}"),
        };
        if convnet {
            let mlp_only = [
                ("--hidden", self.hidden.is_some()),
                ("--activation", self.activation.is_some()),
                ("--init", self.init.is_some()),
                ("--batch-norm", self.batch_norm),
                ("--dropout", self.dropout.is_some()),
            ];
            if let Some((flag, _)) = mlp_only.iter().find(|(_, given)| *given) {
                return Err(XtaskError::Usage(format!(
                    "{flag} shapes the mlp; {model_name} is a network as it is"
                )));
            }
        }
        let mut weight_decay = self.weight_decay.unwrap_or(0.0);
        let model = match (&self.net, kind) {
            (Some(path), _) => {
                let (net, net_weight_decay) = read_net_with_weight_decay(path, self.weight_decay)?;
                weight_decay = net_weight_decay;
                ModelSpec::Net(net)
            }
            (None, ModelKind::Mlp) => {
                let defaults = MlpOptions::default();
                ModelSpec::Mlp(MlpOptions {
                    hidden: self.hidden.clone().unwrap_or(defaults.hidden),
                    activation: self.activation.unwrap_or(defaults.activation),
                    init: self.init.unwrap_or(defaults.init),
                    batch_norm: self.batch_norm,
                    dropout: self.dropout,
                })
            }
            (None, ModelKind::SimpleConvNet) => ModelSpec::SimpleConvNet,
            (None, ModelKind::DeepConvNet) => ModelSpec::DeepConvNet,
        };
        let optimizer = self.optimizer.unwrap_or(if convnet {
            OptimizerKind::Adam
        } else {
            OptimizerKind::Sgd
        });
        let chapter5_sgd = optimizer == OptimizerKind::Sgd;
        let learning_rate = self.lr.unwrap_or(if chapter5_sgd {
            0.1
        } else {
            optimizer.default_learning_rate()
        });
        // The book trains its convnets for 20 epochs, the mlp for 10000 steps.
        let epochs = match (self.epochs, self.iters) {
            (None, None) if convnet => Some(20),
            (epochs, _) => epochs,
        };
        let defaults = TrainConfig::default();
        Ok(TrainConfig {
            model,
            weight_decay,
            optimizer: OptimizerConfig {
                kind: optimizer,
                learning_rate,
                momentum: self.momentum,
                decay_rate: self.decay_rate,
                beta1: self.beta1,
                beta2: self.beta2,
            },
            batch_size: self.batch_size,
            iters: self.iters.unwrap_or(defaults.iters),
            epochs,
            train_size: self.train_size,
            eval_every: self.eval_every,
            eval_train_size: self.eval_train_size.or(convnet.then_some(10_000)),
            seed: self.seed,
            threads: self.threads.threads,
        })
    }
}

/// A progress bar with the live loss and iterations per second, and one
/// printed line per evaluation.
struct Console {
    bar: ProgressBar,
    /// The batches recorded for `--export-golden`, and how many to record.
    golden: (usize, Vec<Vec<usize>>),
    /// Set by the first Ctrl-C: the run stops after the current step.
    stop: StopSignal,
}

impl Observer for Console {
    fn on_batch(&mut self, iteration: usize, indices: &[usize]) {
        if iteration < self.golden.0 {
            self.golden.1.push(indices.to_vec());
        }
    }

    fn on_step(&mut self, iteration: usize, loss: f64) {
        // The bar's message is a new String: made every 50 steps only. (The
        // trainer allocates nothing per step; this observer does, that rarely.)
        if iteration.is_multiple_of(50) {
            self.bar.set_message(format!("loss {loss:.4}"));
        }
        self.bar.set_position(iteration as u64 + 1);
    }

    fn should_stop(&self) -> bool {
        self.stop.requested()
    }

    fn on_eval(&mut self, e: &EvalRecord) {
        let loss = e.loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "-".into());
        let line = format!(
            "iter {:>6}  epoch {:>6.2}  loss {loss:>7}  train acc {:.4}  test acc {:.4}  {:>6.2}s",
            e.iteration, e.epoch, e.train_accuracy, e.test_accuracy, e.elapsed_seconds
        );
        if self.bar.is_hidden() {
            say!("{line}");
        } else {
            self.bar.suspend(|| say!("{line}"));
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; `cargo xtask` runs the release profile, use it for real runs");
    }
    let config = args.config()?;
    // Refuse bad settings before loading anything.
    config.validate()?;
    check_out_dir(args.out.as_deref(), args.overwrite)?;
    let dataset = args.data.dataset;
    let needed = config.memory_estimate(dataset.pixels(), 10, args.threads.count())?;
    if let Some(available) = available_memory().filter(|&a| needed > a) {
        let gib = |bytes: f64| bytes / f64::from(1u32 << 30);
        return Err(XtaskError::Usage(format!(
            "this run would need about {:.1} GiB for the network, its optimizer and its batches, more than the {:.1} GiB this machine has available; use a smaller network or --batch-size",
            gib(needed),
            gib(available)
        )));
    }
    // Within what the machine has, but more than a person may expect of a
    // from-scratch trainer: say so before the work, as the refusal would.
    if needed > f64::from(1u32 << 30) {
        eprintln!(
            "note: this run needs about {:.1} GiB of memory for the network, its optimizer and its batches of {}; a smaller --batch-size needs less",
            needed / f64::from(1u32 << 30),
            config.batch_size
        );
    }
    let (data, data_dir, load_seconds) = args.data.load()?;
    let train_set = ImageData::new(&data.train.images, &data.train.labels, data.train.pixels())?;
    let test_set = ImageData::new(&data.test.images, &data.test.labels, data.test.pixels())?;
    let classes = 10;
    let mut trainer = Trainer::<f32, _>::new(config.clone(), train_set, test_set, classes)?;
    let train_len = trainer.train_set().len();
    let eval_every = config.eval_interval(train_len);
    let iterations = trainer.iterations();
    let parameters = trainer.model().num_params();
    // "784-50-10 relu" for the mlp, the file's name for a --net, the book's name for the convnets.
    let mut extras = Vec::new();
    let mut tags = Vec::new();
    let (net_name, network) = match &config.model {
        ModelSpec::Mlp(mlp) => {
            let sizes: Vec<String> = std::iter::once(train_set.features())
                .chain(mlp.hidden.iter().copied())
                .chain([classes])
                .map(|s| s.to_string())
                .collect();
            if mlp.batch_norm {
                extras.push("batch norm".to_string());
                tags.push("-bn");
            }
            if let Some(ratio) = mlp.dropout {
                extras.push(format!("dropout {ratio}"));
                tags.push("-dropout");
            }
            let name = format!("{} {}", sizes.join("-"), mlp.activation);
            let network = format!("{name} (f32, {parameters} parameters, init {})", mlp.init);
            (name, network)
        }
        ModelSpec::Net(net) => {
            let name = args
                .net
                .as_deref()
                .and_then(|p| p.file_stem())
                .map_or("net".into(), |stem| stem.to_string_lossy().into_owned());
            let network = format!("{name} (f32, {parameters} parameters, init {})", net.init);
            (name, network)
        }
        book => {
            let name = book.name().to_string();
            let network = format!("{name} (f32, {parameters} parameters, the book's initial weights)");
            (name, network)
        }
    };
    if config.weight_decay > 0.0 {
        extras.push(format!("weight decay {}", config.weight_decay));
        tags.push("-wd");
    }
    let title = format!("{dataset} {net_name} {}", config.optimizer.kind);
    let run_dir = args.out.clone().unwrap_or_else(|| {
        let tags: String = std::iter::once(net_name.replace(' ', "-"))
            .chain(tags.iter().map(|t| t.to_string()))
            .collect();
        project_root().join("runs").join(format!(
            "{dataset}-{tags}-{}-seed{}-{}",
            config.optimizer.kind,
            args.seed,
            timestamp()
        ))
    });
    // Claimed for this run alone until it ends (a lock file in it).
    let _claim = RunDir::claim(&run_dir, args.overwrite)?;
    train::remove_stale_temp_files(&run_dir);

    say!("backprop-rs train");
    say!(
        "  data      {dataset} from {} ({} train, {} test images; loaded in {load_seconds:.2}s)",
        data_dir.display(),
        train_len,
        test_set.len()
    );
    say!(
        "  network   {network}{}",
        if extras.is_empty() {
            String::new()
        } else {
            format!(", {}", extras.join(", "))
        }
    );
    say!("  layers    {}", trainer.model().summary());
    say!(
        "  optimizer {}  batch {} (with replacement)  iters {iterations} ({:.2} epochs)  eval every {eval_every}",
        config.optimizer.describe(),
        config.batch_size,
        iterations as f64 / config.iters_per_epoch(train_len) as f64
    );
    say!("  seed      {}  threads {}", config.seed, args.threads.count());
    say!("  run dir   {}", run_dir.display());

    let bar = ProgressBar::new(iterations as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // The first convolution's filters before training (the book's figure 7-24, left).
    let filters = first_filters(trainer.model());
    if let Some(w) = &filters {
        report::plot_filters(
            &run_dir.join("filters-before.png"),
            "first-layer filters before training",
            w,
        )?;
    }
    // The first Ctrl-C or SIGTERM asks the run to stop after the current
    // step (and keep everything); a second one ends the process at once.
    let stop = StopSignal::install()?;
    if args.export_golden.is_some() {
        save_checkpoint(&run_dir.join("initial.safetensors"), trainer.model(), &[])?;
    }
    let golden_len = args.export_golden.unwrap_or(0).min(iterations);
    let mut console = Console {
        bar,
        golden: (golden_len, Vec::with_capacity(golden_len)),
        stop: stop.clone(),
    };
    let result = trainer.run(&mut console);
    console.bar.finish_and_clear();

    // Whatever happened, keep what there is: on divergence, the last good weights.
    let config_json = serde_json::json!({
        "settings": config.to_json(train_len),
        "dataset": dataset.name(),
        "data_dir": data_dir.display().to_string(),
        "layers": trainer.model().specs(),
        "dtype": "f32",
    });
    // Every file is attempted whatever became of the others: a checkpoint
    // that cannot be written must not take the records with it.
    let mut not_written = Vec::new();
    let mut keep = |result: std::result::Result<(), TrainError>| {
        if let Err(e) = result {
            not_written.push(e.to_string());
        }
    };
    keep(train::write_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(&config_json)
            .unwrap_or_default()
            .as_bytes(),
    ));
    let model_path = run_dir.join("model.safetensors");
    keep(save_checkpoint(
        &model_path,
        trainer.model(),
        &[
            ("dataset", dataset.name().to_string()),
            ("seed", config.seed.to_string()),
        ],
    ));
    for write in write_records(&run_dir, trainer.losses(), trainer.evals(), &title) {
        keep(write);
    }
    if args.export_golden.is_some() {
        let batches = &console.golden.1;
        let json = serde_json::json!({
            "batches": batches,
            "losses": &trainer.losses()[..batches.len().min(trainer.losses().len())],
            "learning_rate": config.optimizer.learning_rate,
            "optimizer": config.optimizer.kind.to_string(),
        });
        keep(train::write_atomic(
            &run_dir.join("golden.json"),
            json.to_string().as_bytes(),
        ));
    }
    if let Some(w) = first_filters(trainer.model()) {
        keep(report::plot_filters(
            &run_dir.join("filters-after.png"),
            "first-layer filters after training",
            &w,
        ));
    }
    if !not_written.is_empty() {
        return Err(XtaskError::Failed(format!(
            "the run {} but {} of its files could not be written ({}); the others are in {}",
            match &result {
                Ok(_) => "finished",
                Err(_) => "stopped",
            },
            not_written.len(),
            not_written.join("; "),
            run_dir.display()
        )));
    }

    let summary = match result {
        Ok(summary) => summary,
        Err(e @ TrainError::NonFiniteLoss { .. }) => {
            eprintln!("saved the last good weights to {}", model_path.display());
            return Err(e.into());
        }
        Err(TrainError::Interrupted { iterations }) => {
            eprintln!(
                "interrupted ({}) at iteration {iterations}: the weights, records and plots so far are in {}",
                stop.cause(),
                run_dir.display()
            );
            return Ok(stop.exit_code());
        }
        Err(e) => return Err(e.into()),
    };
    print_summary(&summary, &run_dir);
    args.json.print(&serde_json::json!({
        "test_accuracy": summary.test_accuracy,
        "train_accuracy": summary.train_accuracy,
        "final_loss": summary.final_loss,
        "iterations": summary.iterations,
        "seconds_total": summary.seconds_total,
        "seconds_train": summary.seconds_train,
        "run_dir": run_dir.display().to_string(),
    }));
    Ok(ExitCode::SUCCESS)
}

/// The filters `[FN, C, FH, FW]` of the model's first convolution, if it has one.
pub fn first_filters(model: &layers::Sequential<f32>) -> Option<tensor::Tensor<f32>> {
    let index = model
        .layers()
        .iter()
        .position(|layer| matches!(layer.spec(), LayerSpec::Convolution { .. }))?;
    let mut w = None;
    model.layers()[index].visit_params(&mut |p| {
        if p.kind == "W" {
            w = Some(p.value.clone());
        }
    });
    w
}

/// Writes the CSVs and plots of a run, each attempted whatever became of the others.
fn write_records(
    dir: &Path,
    losses: &[f32],
    evals: &[EvalRecord],
    title: &str,
) -> [std::result::Result<(), TrainError>; 4] {
    [
        report::write_loss_csv(&dir.join("loss.csv"), losses),
        report::write_eval_csv(&dir.join("accuracy.csv"), evals),
        report::plot_accuracy(&dir.join("accuracy.png"), evals, title),
        report::plot_loss(&dir.join("loss.png"), losses, title),
    ]
}

fn print_summary(s: &Summary, run_dir: &Path) {
    say!(
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
        "filters-before.png",
        "filters-after.png",
    ] {
        let path = run_dir.join(file);
        if path.exists() {
            say!("  {}", path.display());
        }
    }
}
