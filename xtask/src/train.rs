//! `cargo xtask train`: the book's run, watchable and reproducible.

use crate::common::{
    available_memory, check_out_dir, parse_count, project_root, read_net_with_weight_decay, timestamp, write_failure,
    DataArgs, JsonArg, MlpArgs, ModelKind, Result, RunDir, StopSignal, ThreadsArg, XtaskError,
};
use indicatif::{ProgressBar, ProgressStyle};
use layers::{LayerSpec, OptimizerConfig, OptimizerKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use train::{
    report, save_checkpoint, Augment, EvalRecord, ImageData, LrSchedule, ModelSpec, Observer, Summary, TrainConfig,
    TrainError, Trainer,
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
    #[command(flatten)]
    mlp: MlpArgs,
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
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = parse_count::<1>)]
    batch_size: usize,
    /// Number of steps [default: 10000 for the mlp].
    #[arg(long, conflicts_with = "epochs", allow_negative_numbers = true, value_parser = parse_count::<1>)]
    iters: Option<usize>,
    /// Train for N epochs instead (N * train size / batch size steps) [default: 20 for the convnets].
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count::<1>)]
    epochs: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count::<1>)]
    train_size: Option<usize>,
    /// Evaluate train and test accuracy every N steps [default: one epoch, train size / batch size].
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count::<1>)]
    eval_every: Option<usize>,
    /// Measure training accuracy on the first N training images [default: all for the mlp, 10000 for the convnets].
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count::<1>)]
    eval_train_size: Option<usize>,
    /// Seed of every random choice (weights, batches, dropout masks).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How the learning rate changes over the run: constant (the book's),
    /// step (a tenth from half the run, a hundredth from three quarters) or
    /// cosine (half a cosine from --lr towards 0).
    #[arg(long, default_value = "constant", value_name = "constant|step|cosine")]
    lr_schedule: LrSchedule,
    /// Move each training image by a random small affine map as its batch
    /// is gathered: at strength 1 (the default when no value is given) a
    /// shift of up to 2 pixels, a rotation of up to 10 degrees and a scale
    /// within 10%; other strengths scale all three.
    #[arg(long, value_name = "STRENGTH", num_args = 0..=1, default_missing_value = "1", allow_negative_numbers = true)]
    augment: Option<f64>,
    /// Refuse a run whose memory estimate (network, optimizer, batches) is
    /// above this many GiB (the book's nets need at most 0.8); a value above
    /// the memory this machine has available is capped to it.
    #[arg(long, value_name = "GIB", default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_gib)]
    max_memory: f64,
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
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_count::<0>)]
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
            self.mlp.refuse_for(&model_name)?;
        }
        let mut weight_decay = self.weight_decay.unwrap_or(0.0);
        let model = match (&self.net, kind) {
            (Some(path), _) => {
                let (net, net_weight_decay) = read_net_with_weight_decay(path, self.weight_decay)?;
                weight_decay = net_weight_decay;
                ModelSpec::Net(net)
            }
            (None, kind) => kind.spec(self.mlp.options()),
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
        if let Some(strength) = self.augment {
            // Strength 7 shifts by up to 14 pixels, half an MNIST image.
            if !(strength.is_finite() && (0.0..=7.0).contains(&strength)) {
                return Err(XtaskError::Usage(format!(
                    "--augment {} is not a strength between 0 and 7 (1: shifts of up to 2 pixels, turns of up to 10 degrees, scale within 10%)",
                    layers::readable(strength)
                )));
            }
        }
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
            lr_schedule: self.lr_schedule,
            augment: self.augment.map(Augment::with_strength),
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
    check_memory(needed, args.max_memory, config.batch_size)?;
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
    if let Some(a) = config.augment {
        extras.push(format!(
            "augmented (shifts up to {} px, turns up to {} degrees, scale within {}%)",
            a.shift,
            a.rotate,
            100.0 * a.scale
        ));
        tags.push("-aug");
    }
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
        "  optimizer {}{}  batch {} (with replacement)  iters {iterations} ({:.2} epochs)  eval every {eval_every}",
        config.optimizer.describe(),
        match config.lr_schedule {
            LrSchedule::Constant => String::new(),
            schedule => format!(" ({schedule} schedule)"),
        },
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
    let golden_json = args.export_golden.map(|_| {
        let batches = &console.golden.1;
        let losses = trainer.losses();
        serde_json::json!({
            "batches": batches,
            "losses": &losses[..batches.len().min(losses.len())],
            "learning_rate": config.optimizer.learning_rate,
            "optimizer": config.optimizer.kind.to_string(),
        })
        .to_string()
    });
    let record = RunRecord {
        run_dir: &run_dir,
        dataset,
        data_dir: &data_dir,
        trainer: &trainer,
        title: &title,
        golden_json: golden_json.as_deref(),
    };
    if let Some(failure) = write_run(&record, result.is_ok()) {
        return Err(XtaskError::Failed(failure));
    }
    let model_path = run_dir.join("model.safetensors");

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

/// What a run that has ended leaves in its folder, and where it came from.
pub struct RunRecord<'a> {
    /// The run folder (claimed by the caller).
    pub run_dir: &'a Path,
    /// The data set trained on, and the folder it was read from.
    pub dataset: mnist::Dataset,
    pub data_dir: &'a Path,
    /// The trainer after its run: settings, weights, losses, evaluations.
    pub trainer: &'a Trainer<f32, ImageData<'a>>,
    /// The plots' title.
    pub title: &'a str,
    /// `--export-golden`'s record, when asked for.
    pub golden_json: Option<&'a str>,
}

/// Writes a run's files (config, weights, CSVs, plots) into its folder,
/// each attempted whatever became of the others; returns the message that
/// says what could not be written there, and where it went instead
/// (`finished`: whether the run ran to its end, for the message).
pub fn write_run(record: &RunRecord<'_>, finished: bool) -> Option<String> {
    let trainer = record.trainer;
    let config = trainer.config();
    let config_json = serde_json::json!({
        "settings": config.to_json(trainer.train_set().len()),
        "dataset": record.dataset.name(),
        "data_dir": record.data_dir.display().to_string(),
        "layers": trainer.model().specs(),
        "dtype": "f32",
    });
    let config_text = serde_json::to_string_pretty(&config_json).unwrap_or_default();
    let checkpoint_metadata = [
        ("dataset", record.dataset.name().to_string()),
        ("seed", config.seed.to_string()),
    ];
    let (model, losses, evals, title) = (trainer.model(), trainer.losses(), trainer.evals(), record.title);
    let filters_after = first_filters(model);
    let mut writes: Vec<RunFile> = vec![
        (
            "config.json",
            Box::new(|path| train::write_atomic(path, config_text.as_bytes())),
        ),
        (
            "model.safetensors",
            Box::new(|path| save_checkpoint(path, model, &checkpoint_metadata)),
        ),
        ("loss.csv", Box::new(|path| report::write_loss_csv(path, losses))),
        ("accuracy.csv", Box::new(|path| report::write_eval_csv(path, evals))),
        (
            "accuracy.png",
            Box::new(|path| report::plot_accuracy(path, evals, title)),
        ),
        ("loss.png", Box::new(|path| report::plot_loss(path, losses, title))),
    ];
    if let Some(json) = record.golden_json {
        writes.push((
            "golden.json",
            Box::new(|path| train::write_atomic(path, json.as_bytes())),
        ));
    }
    if let Some(w) = &filters_after {
        writes.push((
            "filters-after.png",
            Box::new(|path| report::plot_filters(path, "first-layer filters after training", w)),
        ));
    }
    write_run_files(record.run_dir, &writes, if finished { "finished" } else { "stopped" })
}

/// One file of a run's final writes: its name, and how to write it at a path.
type RunFile<'a> = (
    &'static str,
    Box<dyn Fn(&Path) -> std::result::Result<(), TrainError> + 'a>,
);

/// Writes every file into `run_dir`, each attempted whatever became of the
/// others. Those that fail there are written into a fresh rescue folder
/// under the system's temporary folder instead: a run folder made read-only
/// or replaced during training must not cost the trained weights. Returns,
/// when a file is not in `run_dir`, the message that says which files are
/// where (`ending`: how the run ended, "finished" or "stopped").
fn write_run_files(run_dir: &Path, files: &[RunFile<'_>], ending: &str) -> Option<String> {
    let failed: Vec<(&str, String)> = files
        .iter()
        .filter_map(|(name, write)| write(&run_dir.join(name)).err().map(|e| (*name, write_failure(&e))))
        .collect();
    if failed.is_empty() {
        return None;
    }
    let run = run_dir.display();
    let mut message = match &failed[0] {
        // Every file, for one reason (the folder is gone, or read-only): the reason says it all.
        (_, reason) if failed.len() == files.len() && failed.iter().all(|(_, r)| r == reason) => format!(
            "the run {ending} but none of its {} files could be written to {run} ({reason})",
            files.len()
        ),
        _ => format!(
            "the run {ending} but {} of its {} files could not be written to {run} ({}), {}",
            failed.len(),
            files.len(),
            by_reason(&failed),
            match files.len() - failed.len() {
                1 => "the other one is there".to_string(),
                others => format!("the other {others} are there"),
            }
        ),
    };
    let rescue = match make_rescue_dir(run_dir) {
        Ok(rescue) => rescue,
        Err(e) => {
            message += &format!(
                "; no folder could be made in {} to keep them ({e})",
                std::env::temp_dir().display()
            );
            return Some(message);
        }
    };
    let mut rescued = Vec::new();
    let mut lost = Vec::new();
    for (name, write) in files.iter().filter(|(name, _)| failed.iter().any(|(f, _)| f == name)) {
        match write(&rescue.join(name)) {
            Ok(()) => rescued.push(*name),
            Err(e) => lost.push((*name, write_failure(&e))),
        }
    }
    let rescue = rescue.display();
    match (rescued.as_slice(), lost.is_empty()) {
        ([_], true) => message += &format!("; it is in {rescue} instead"),
        (_, true) => message += &format!("; they are in {rescue} instead"),
        ([], false) => message += &format!("; nor to {rescue} ({})", by_reason(&lost)),
        (some, false) => {
            message += &format!(
                "; {} {} in {rescue} instead, but not {}",
                some.join(", "),
                if some.len() == 1 { "is" } else { "are" },
                by_reason(&lost)
            )
        }
    }
    Some(message)
}

/// `(file, why)` pairs as "a, b: permission denied; c: the disk is full".
fn by_reason(failed: &[(&str, String)]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    for (_, reason) in failed {
        if !reasons.contains(&reason.as_str()) {
            reasons.push(reason);
        }
    }
    reasons
        .iter()
        .map(|reason| {
            let names: Vec<&str> = failed.iter().filter(|(_, r)| r == reason).map(|(n, _)| *n).collect();
            format!("{}: {reason}", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A new, empty folder for the files a run could not write into
/// `run_dir`: `<temp>/<run folder's name>-rescued`, numbered when that
/// name is taken (never one that holds another run's files).
fn make_rescue_dir(run_dir: &Path) -> std::io::Result<PathBuf> {
    let name = run_dir
        .file_name()
        .map_or("backprop-rs-run".into(), |n| n.to_string_lossy().into_owned());
    let temp = std::env::temp_dir();
    for attempt in 1..=100 {
        let dir = match attempt {
            1 => temp.join(format!("{name}-rescued")),
            n => temp.join(format!("{name}-rescued-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{name}-rescued and {name}-rescued-2 to -100 all exist"),
    ))
}

/// Refuses, before any work, a run whose memory estimate (`needed` bytes)
/// is above `max_memory` GiB, or above what the machine has available when
/// that is less. Runs above 1 GiB within the limit get a note.
fn check_memory(needed: f64, max_memory: f64, batch_size: usize) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    let available = available_memory();
    if let Some(available) = available.filter(|&a| needed > a && a < max_memory * GIB) {
        return Err(XtaskError::Usage(format!(
            "this run would need about {:.1} GiB for the network, its optimizer and its batches, more than the {:.1} GiB this machine has available; use a smaller network or --batch-size",
            needed / GIB,
            available / GIB
        )));
    }
    if needed > max_memory * GIB {
        let raise = match available {
            Some(available) => format!("raise --max-memory (up to the {:.1} GiB available)", available / GIB),
            None => "raise --max-memory".to_string(),
        };
        return Err(XtaskError::Usage(format!(
            "this run would need about {:.1} GiB for the network, its optimizer and its batches, more than --max-memory {max_memory} GiB; use a smaller --batch-size or network, or {raise}",
            needed / GIB
        )));
    }
    // Within the limit, but more than a person may expect of a
    // from-scratch trainer: say so before the work, as the refusal would.
    if needed > GIB {
        eprintln!(
            "note: this run needs about {:.1} GiB of memory for the network, its optimizer and its batches of {batch_size}; a smaller --batch-size needs less",
            needed / GIB
        );
    }
    Ok(())
}

/// Parses `--max-memory`: a positive number of GiB.
fn parse_gib(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(gib) if gib.is_finite() && gib > 0.0 => Ok(gib),
        _ => Err("must be a positive number of GiB (4, 0.5)".to_string()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &Path) -> std::result::Result<(), TrainError> {
        Err(TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        })
    }

    #[test]
    fn files_written_nowhere_are_named_with_why() {
        // The rescue folder is named after the run folder: a fresh name.
        let run = tempfile::tempdir().unwrap();
        let run_dir = run.path();
        let files: Vec<RunFile> = vec![
            ("config.json", Box::new(|path| train::write_atomic(path, b"{}"))),
            ("model.safetensors", Box::new(refused)),
            ("loss.csv", Box::new(refused)),
        ];
        let message = write_run_files(run_dir, &files, "finished").unwrap();
        let rescue = std::env::temp_dir().join(format!("{}-rescued", run_dir.file_name().unwrap().to_string_lossy()));
        let expected = format!(
            "the run finished but 2 of its 3 files could not be written to {} (model.safetensors, loss.csv: permission denied), the other one is there; nor to {} (model.safetensors, loss.csv: permission denied)",
            run_dir.display(),
            rescue.display()
        );
        let rescue_was_empty = std::fs::remove_dir(&rescue).is_ok();
        assert_eq!(message, expected);
        assert!(rescue_was_empty, "{} is not an empty folder", rescue.display());
        assert!(run_dir.join("config.json").is_file());
        assert!(write_run_files(run_dir, &files[..1], "finished").is_none());
    }
}
