//! What several tasks share: errors, where the data is, loading it.

use indicatif::{ProgressBar, ProgressStyle};
use mnist::{Dataset, FetchProgress, ImageSet, Mnist, MnistError, Source, Split};
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Every way an xtask can fail; each message says what to do.
#[derive(Debug, Error)]
pub enum XtaskError {
    #[error("{}", data_in_cli_terms(&.0.to_string()))]
    Data(#[from] MnistError),
    #[error("{}", in_flags(&.0.to_string(), setting_of_train(.0)))]
    Train(#[from] train::TrainError),
    #[error("{}", in_flags(&.0.to_string(), setting_of_layer(.0)))]
    Layer(#[from] layers::LayerError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, XtaskError>;

/// The library names a setting by its field (`learning_rate`); a user of
/// the command line knows it by its flag (`--lr`).
fn flag(field: &str) -> String {
    match field {
        "learning_rate" => "--lr".into(),
        "model weight_decay" => "weight_decay in the --net file".into(),
        "dropout ratio" => "--dropout".into(),
        "init std" => "--init std".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

fn setting_of_train(e: &train::TrainError) -> Option<&'static str> {
    match e {
        train::TrainError::InvalidSetting { field, .. } => Some(field),
        train::TrainError::Layer(layer) => setting_of_layer(layer),
        _ => None,
    }
}

fn setting_of_layer(e: &layers::LayerError) -> Option<&'static str> {
    match e {
        layers::LayerError::InvalidSetting { field, .. } => Some(field),
        _ => None,
    }
}

/// A library message in the command line's terms: the setting it names
/// (if any) as its flag, and the advice of a divergence as flags.
fn in_flags(message: &str, field: Option<&'static str>) -> String {
    let message = match field {
        Some(field) if message.starts_with(field) => format!("{}{}", flag(field), &message[field.len()..]),
        _ => message.to_string(),
    };
    message
        .replace("try a lower learning rate", "try a lower --lr")
        .replace("or a lower weight decay", "or a lower --weight-decay")
        .replace("try a lower weight decay", "try a lower --weight-decay")
        .replace(
            "try smaller initial weights",
            "try smaller initial weights (--init for the mlp, `init` in a --net file)",
        )
}

/// The data crate's advice in this command line's terms: its fetch is
/// `cargo xtask fetch`, and a folder can also be given as `--data-dir`.
fn data_in_cli_terms(message: &str) -> String {
    let mut message = message
        .replace(
            "fetch the fashion-mnist files again",
            "run `cargo xtask fetch --dataset fashion-mnist`",
        )
        .replace("fetch the mnist files again", "run `cargo xtask fetch`")
        .replace("fetch the files again", "run `cargo xtask fetch`")
        .replace("fetch the files into it", "run `cargo xtask fetch`")
        .replace(
            "fetch from a local folder or file:// source",
            "run `cargo xtask fetch --from DIR`",
        )
        .replace(
            "fetch from another source or a public mirror",
            "give --from another source (without --from, fetch uses the public mirrors)",
        );
    for var in ["FASHION_MNIST_DIR", "MNIST_DIR"] {
        if message.contains(&format!("point {var} at")) {
            message = message.replace(&format!("point {var} at"), &format!("point {var} (or --data-dir) at"));
            break;
        }
    }
    message
}

/// The networks `--model` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// A fully connected network from `--hidden` and the chapter-6 options.
    #[default]
    Mlp,
    /// The book's `SimpleConvNet` (chapter 7).
    SimpleConvNet,
    /// The book's `DeepConvNet` (chapter 8).
    DeepConvNet,
}

impl ModelKind {
    /// The book's network of this kind, an mlp being `mlp`.
    pub fn spec(self, mlp: train::MlpOptions) -> train::ModelSpec {
        match self {
            ModelKind::Mlp => train::ModelSpec::Mlp(mlp),
            ModelKind::SimpleConvNet => train::ModelSpec::SimpleConvNet,
            ModelKind::DeepConvNet => train::ModelSpec::DeepConvNet,
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Mlp => "mlp",
            ModelKind::SimpleConvNet => "simple-convnet",
            ModelKind::DeepConvNet => "deep-convnet",
        })
    }
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mlp" => Ok(ModelKind::Mlp),
            "simple-convnet" => Ok(ModelKind::SimpleConvNet),
            "deep-convnet" => Ok(ModelKind::DeepConvNet),
            other => Err(format!(
                "unknown model '{other}'; use mlp, simple-convnet or deep-convnet (or --net FILE)"
            )),
        }
    }
}

/// Most bytes of a `--net` file: far more than any net needs, little
/// enough to read at once.
const MAX_NET_FILE: u64 = 1 << 20;

/// The net in `path` with its weight decay taken out, and the run's weight
/// decay: one setting, the flag's (`flag`), else the file's; both given and
/// different is refused.
pub fn read_net_with_weight_decay(path: &Path, flag: Option<f64>) -> Result<(layers::NetSpec, f64)> {
    let mut net = read_net_file(path)?;
    let weight_decay = match flag {
        Some(flag) if net.weight_decay != 0.0 && flag != net.weight_decay => {
            return Err(XtaskError::Usage(format!(
                "--weight-decay {flag} and the weight_decay {} of {} differ; give one",
                net.weight_decay,
                path.display()
            )))
        }
        Some(flag) => flag,
        None => net.weight_decay,
    };
    net.weight_decay = 0.0;
    Ok((net, weight_decay))
}

/// The net described in `path` (see `nets/` and `layers::NetSpec`'s text form).
pub fn read_net_file(path: &Path) -> Result<layers::NetSpec> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| XtaskError::Usage(format!("--net {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = String::new();
    file.take(MAX_NET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_NET_FILE {
        return Err(XtaskError::Usage(format!(
            "--net {}: more than {MAX_NET_FILE} bytes; a net file lists one layer a line",
            path.display()
        )));
    }
    text.parse()
        .map_err(|e: layers::LayerError| XtaskError::Usage(format!("--net {}: {e}", path.display())))
}

/// The workspace root (xtask's parent folder).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The default folder of a data set: `data/<name>` under the project root.
pub fn default_data_dir(dataset: Dataset) -> PathBuf {
    project_root().join("data").join(dataset.name())
}

/// Where to read a data set from: `--data-dir`, else `$MNIST_DIR` (or
/// `$FASHION_MNIST_DIR`), else the default folder, fetched on first use.
fn locate_data(dataset: Dataset, data_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = data_dir {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(dataset.env_var()) {
        if dir.is_empty() {
            return Err(XtaskError::Usage(format!(
                "{} is set but empty; give it the folder of the four files, or unset it to use data/{}",
                dataset.env_var(),
                dataset.name()
            )));
        }
        return Ok(PathBuf::from(dir));
    }
    let dir = default_data_dir(dataset);
    // Verifies what is there (cheap) and fetches only what is missing or
    // damaged; a fetch that gets nothing removes the folders it created.
    mnist::fetch(dataset, &dir, &[], &mut BarProgress::default())?;
    Ok(dir)
}

/// One split of a data set, from where [`locate_data`] finds it.
pub fn load_split(dataset: Dataset, data_dir: Option<&Path>, split: Split) -> Result<ImageSet> {
    let dir = locate_data(dataset, data_dir)?;
    // Folders are untrusted too: every file must be the data set's own.
    Ok(Mnist::load_split_verified(&dir, dataset, split)?)
}

/// The flags that shape the mlp, taken by `train` and `gradcheck`.
#[derive(clap::Args)]
pub struct MlpArgs {
    /// Hidden layer widths of the mlp, comma separated: 50 is the book's net, 100,100 a deeper one [default: 50].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = parse_count::<1>)]
    pub hidden: Option<Vec<usize>>,
    /// Hidden activation of the mlp: relu or sigmoid [default: relu].
    #[arg(long)]
    pub activation: Option<layers::Activation>,
    /// Initial weights of the mlp: std:S (S * N(0,1)), xavier (sqrt(1/n)) or he (sqrt(2/n)) [default: std:0.01].
    #[arg(long, allow_hyphen_values = true)]
    pub init: Option<layers::Init>,
    /// A BatchNorm layer after every hidden Affine layer of the mlp.
    #[arg(long)]
    pub batch_norm: bool,
    /// A Dropout layer of this ratio (in [0, 1)) after every hidden
    /// activation of the mlp (gradcheck draws one fixed mask).
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f64>,
}

impl MlpArgs {
    /// Refuses the first of these flags that was given for a network that
    /// is as it is (`model_name`: `--model simple-convnet`, `--net FILE`).
    pub fn refuse_for(&self, model_name: &str) -> Result<()> {
        let given = [
            ("--hidden", self.hidden.is_some()),
            ("--activation", self.activation.is_some()),
            ("--init", self.init.is_some()),
            ("--batch-norm", self.batch_norm),
            ("--dropout", self.dropout.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(XtaskError::Usage(format!(
                "{flag} shapes the mlp; {model_name} is a network as it is"
            ))),
            None => Ok(()),
        }
    }

    /// The mlp these flags describe, the book's for what was not given.
    pub fn options(&self) -> train::MlpOptions {
        let defaults = train::MlpOptions::default();
        train::MlpOptions {
            hidden: self.hidden.clone().unwrap_or(defaults.hidden),
            activation: self.activation.unwrap_or(defaults.activation),
            init: self.init.unwrap_or(defaults.init),
            batch_norm: self.batch_norm,
            dropout: self.dropout,
        }
    }
}

/// `--dataset` and `--data-dir`, for the tasks that train or check a network
/// on a data set of their choosing (`train`, `gradcheck`, `experiment`).
#[derive(clap::Args)]
pub struct DataArgs {
    /// mnist or fashion-mnist.
    #[arg(long, default_value = "mnist", value_parser = parse_dataset)]
    pub dataset: Dataset,
    /// Folder holding the four files [default: $MNIST_DIR (or $FASHION_MNIST_DIR), else data/<dataset>, fetched on first use].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Both splits, where they were found, and how long loading took.
    pub fn load(&self) -> Result<(Mnist, PathBuf, f64)> {
        let dir = locate_data(self.dataset, self.data_dir.as_deref())?;
        let start = Instant::now();
        // Folders are untrusted too: every file must be the data set's own.
        let data = Mnist::load_verified(&dir, self.dataset)?;
        Ok((data, dir, start.elapsed().as_secs_f64()))
    }

    /// One split only (`gradcheck` needs a few training images).
    pub fn load_split(&self, split: Split) -> Result<ImageSet> {
        load_split(self.dataset, self.data_dir.as_deref(), split)
    }
}

/// `--model`, `--dataset` and `--data-dir`, for the tasks that run a model
/// saved by `train` on images of its data set (`eval`, `predict`).
#[derive(clap::Args)]
pub struct SavedModelArgs {
    /// A model.safetensors written by `cargo xtask train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Data set of the images [default: the one the model was trained on].
    #[arg(long, value_parser = parse_dataset)]
    pub dataset: Option<Dataset>,
    /// Folder holding the four files [default: $MNIST_DIR (or $FASHION_MNIST_DIR), else data/<dataset>, fetched on first use].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl SavedModelArgs {
    /// The model, its data set and that set's `split`. The model is read and
    /// checked first, its cost included (`examples` to score on `threads`
    /// threads, see [`check_inference_cost`]): a bad one is refused before
    /// any data is looked for.
    pub fn load(
        &self,
        split: Split,
        examples: usize,
        threads: usize,
    ) -> Result<(train::Checkpoint<f32>, Dataset, ImageSet)> {
        let (checkpoint, dataset) = load_model(&self.model, self.dataset)?;
        check_inference_cost(&self.model, &checkpoint.model, examples, threads)?;
        let images = load_split(dataset, self.data_dir.as_deref(), split)?;
        Ok((checkpoint, dataset, images))
    }
}

/// `--threads`, for the tasks whose results do not depend on it (`train`,
/// `experiment`, `eval`; `gradcheck` says what its threads are for).
#[derive(clap::Args)]
pub struct ThreadsArg {
    /// Worker threads (0: one per core). Results are identical for any value.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = parse_count::<0>)]
    pub threads: usize,
}

impl ThreadsArg {
    /// Refuses a count beyond [`train::MAX_THREADS`].
    pub fn check(&self) -> Result<()> {
        check_threads(self.threads)
    }

    /// A rayon pool of that many workers, after [`ThreadsArg::check`].
    pub fn pool(&self) -> Result<rayon::ThreadPool> {
        thread_pool(self.threads)
    }

    /// How many workers run: the count given, or one per core for 0.
    pub fn count(&self) -> usize {
        match self.threads {
            0 => rayon::current_num_threads(),
            n => n,
        }
    }
}

/// `--json`, for the tasks whose whole result fits one JSON object.
#[derive(clap::Args)]
pub struct JsonArg {
    /// Print a JSON summary (one object) as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl JsonArg {
    /// Prints `summary` on one line when `--json` was given; call it last.
    pub fn print(&self, summary: &serde_json::Value) {
        if self.json {
            say!("{summary}");
        }
    }
}

/// Refuses an `--out` folder that already holds files (another run's,
/// probably) unless `overwrite` is set, so that runs never mix.
pub fn check_out_dir(out: Option<&Path>, overwrite: bool) -> Result<()> {
    let Some(out) = out else {
        return Ok(());
    };
    if out.exists() && !out.is_dir() {
        return Err(XtaskError::Usage(format!(
            "--out {} is a file, not a folder; give --out a folder (new or empty)",
            out.display()
        )));
    }
    // Found at the end it would cost the run its weights; and --overwrite
    // removes only files, so it would still be in the way.
    if let Some(name) = RUN_FILES.iter().find(|name| out.join(name).is_dir()) {
        return Err(XtaskError::Usage(format!(
            "{} is a folder, where a run writes its {name}; move it out of --out {}, or give another --out",
            out.join(name).display(),
            out.display()
        )));
    }
    let lock = out.join(LOCK_FILE);
    if lock.exists() && !RunDir::holder_is_gone(&lock) {
        return Err(RunDir::busy(
            out,
            &std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    if holds_files(out) && !overwrite {
        return Err(XtaskError::Usage(format!(
            "{} already holds files (another run?); give a new --out, or --overwrite to write over them",
            out.display()
        )));
    }
    Ok(())
}

/// Whether `dir` holds anything but a run's lock file.
fn holds_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK_FILE)))
        .unwrap_or(false)
}

/// The memory the system can give a new process (MemAvailable), where
/// `/proc/meminfo` tells it.
pub fn available_memory() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses a `--threads` beyond [`train::MAX_THREADS`].
fn check_threads(threads: usize) -> Result<()> {
    if threads > train::MAX_THREADS {
        return Err(XtaskError::Usage(format!(
            "--threads must be at most {} (0 uses every core), got {threads}",
            train::MAX_THREADS
        )));
    }
    Ok(())
}

/// A rayon pool of `threads` workers (0: one per core), after [`check_threads`].
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    check_threads(threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| XtaskError::Failed(format!("cannot start {threads} threads: {e}")))
}

/// Parses `--dataset`.
pub fn parse_dataset(text: &str) -> std::result::Result<Dataset, String> {
    text.parse()
}

/// Parses a source for `--from`.
pub fn parse_source(text: &str) -> std::result::Result<Source, String> {
    Source::parse(text).map_err(|e| e.to_string())
}

/// Parses every count flag (`--iters`, `--index`, a `--hidden` width...): a
/// whole number. clap's own parser answers `-3` with Rust's "invalid digit
/// found in string"; this says what the flag takes. `LEAST` is the flag's
/// least value, for that message only: a number below it (`--iters 0`)
/// parses, and the command's own check refuses it naming the flag's whole
/// range ("--batch-size must be between 1 and 65536").
pub fn parse_count<const LEAST: usize>(text: &str) -> std::result::Result<usize, String> {
    text.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        std::num::IntErrorKind::PosOverflow => "far too large for a count".to_string(),
        _ => format!("must be a whole number of {LEAST} or more"),
    })
}

/// Why a file could not be written, in a few words ("permission denied"),
/// for a message that names several files: the library's own message
/// repeats the path and the same advice for each.
pub fn write_failure(e: &train::TrainError) -> String {
    match e {
        train::TrainError::Io { source, .. } => io_failure(source),
        train::TrainError::NotAFolder { path } => format!("{} is a file, not a folder", path.display()),
        train::TrainError::Plot { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// An operating system's error in a person's words, without "(os error 13)".
fn io_failure(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::IsADirectory => "a folder has its name".into(),
        ErrorKind::NotADirectory => "a file stands where its folder should be".into(),
        ErrorKind::NotFound => "its folder does not exist".into(),
        ErrorKind::StorageFull => "the disk is full".into(),
        ErrorKind::ReadOnlyFilesystem => "the file system is read-only".into(),
        _ => e.to_string(),
    }
}

/// A byte progress bar on stderr for transfers (hidden when not a terminal).
#[derive(Default)]
pub struct BarProgress {
    bar: Option<ProgressBar>,
}

impl FetchProgress for BarProgress {
    fn start(&mut self, file: &str, source: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("{file} from {source}"));
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn note(&mut self, message: &str) {
        eprintln!("  {message}");
    }
}

/// Loads a model written by `cargo xtask train` and picks the data set:
/// `--dataset` if given, else the one recorded in the checkpoint. The model
/// must take the data set's images and score its 10 classes.
pub fn load_model(path: &Path, dataset: Option<Dataset>) -> Result<(train::Checkpoint<f32>, Dataset)> {
    let checkpoint = train::load_checkpoint::<f32>(path)?;
    let dataset = match dataset {
        Some(d) => d,
        None => checkpoint
            .metadata
            .get("dataset")
            .map(|d| d.parse())
            .unwrap_or(Ok(Dataset::Mnist))
            .map_err(|e| {
                XtaskError::Usage(format!(
                    "{}: the data set in its metadata is not one this project reads ({e}); give --dataset",
                    path.display()
                ))
            })?,
    };
    let model = &checkpoint.model;
    let (pixels, classes) = (dataset.pixels(), usize::from(mnist::CLASSES));
    if model.input_size() != pixels || model.output_size() != classes {
        return Err(XtaskError::Usage(format!(
            "{}: the model takes {} inputs and scores {} classes, but {dataset} has images of {pixels} pixels and {classes} classes; give a model trained on {dataset}, or --dataset",
            path.display(),
            model.input_size(),
            model.output_size(),
        )));
    }
    Ok((checkpoint, dataset))
}

/// Most floating-point operations a command reading a checkpoint may ask
/// for: twice DeepConvNet's over the 10000 test images (1.5e11), half a
/// minute of work on two cores.
const MAX_INFERENCE_FLOPS: f64 = 3e11;

/// Most values one image may keep in flight through a checkpoint's layers
/// (64 MiB in f32): a thousand times SimpleConvNet's (60k). Without it a 5 MB
/// file of 65536 padded filters asked `predict` for 18 GB.
const MAX_VALUES_PER_IMAGE: usize = 1 << 24;

/// Refuses a checkpoint whose inference would not fit in memory or would
/// run for hours: the checkpoint is an untrusted file, and its layers (a
/// few numbers each) can ask for padding, filters and depth that a 1 MB
/// file does not show. From the layers' shapes (`ModelCost`), before work.
pub fn check_inference_cost(
    path: &Path,
    model: &layers::Sequential<f32>,
    examples: usize,
    threads: usize,
) -> Result<()> {
    let cost = train::ModelCost::of(model.input_shape(), &model.specs(), model.output_size())?;
    if cost.values_per_example > MAX_VALUES_PER_IMAGE {
        return Err(XtaskError::Usage(format!(
            "{}: one image keeps {} values in flight through this model's layers, more than the {MAX_VALUES_PER_IMAGE} a command takes from a checkpoint; it is not a model this project trains",
            path.display(),
            cost.values_per_example
        )));
    }
    let rows = train::chunk_images(model) * threads.max(1);
    let bytes = 4.0 * cost.params as f64 + cost.batch_bytes(rows.min(examples.max(1)), 1.0);
    let gib = |b: f64| b / f64::from(1u32 << 30);
    if let Some(available) = available_memory().filter(|&a| bytes > a) {
        return Err(XtaskError::Usage(format!(
            "{}: scoring this model needs about {:.1} GiB ({} values per image in its layers), more than the {:.1} GiB available; it is not a model this project trains",
            path.display(),
            gib(bytes),
            cost.values_per_example,
            gib(available)
        )));
    }
    let flops = cost.flops_per_example * examples as f64;
    if flops > MAX_INFERENCE_FLOPS {
        return Err(XtaskError::Usage(format!(
            "{}: scoring {examples} image{} with this model is about {flops:.1e} floating-point operations ({:.1e} per image), more than the {MAX_INFERENCE_FLOPS:.0e} a command takes from a checkpoint; it is not a model this project trains",
            path.display(),
            if examples == 1 { "" } else { "s" },
            cost.flops_per_example
        )));
    }
    Ok(())
}

/// UTC `YYYYmmdd-HHMMSS` from the system clock, for run folder names.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Ctrl-C (SIGINT) and SIGTERM (what `kill`, systemd and CI send), turned
/// into a request that a long command checks at its next safe point, so
/// that what is done gets written. A second signal of either kind ends the
/// process at once with the usual status (130, 143).
#[derive(Clone)]
pub struct StopSignal {
    /// Set by either signal.
    requested: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGTERM only: the exit status says which one it was.
    terminated: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StopSignal {
    /// Installs the handlers for the rest of the process.
    pub fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let stop = StopSignal {
            requested: Arc::new(AtomicBool::new(false)),
            terminated: Arc::new(AtomicBool::new(false)),
        };
        // Each conditional shutdown is registered before the flag it tests,
        // so that it sees the flag as it was before this very signal.
        for (signal, status) in [(SIGINT, 130), (SIGTERM, 143)] {
            flag::register_conditional_shutdown(signal, status, Arc::clone(&stop.requested))
                .and_then(|_| flag::register(signal, Arc::clone(&stop.requested)))
                .map_err(|e| XtaskError::Failed(format!("cannot handle signal {signal}: {e}")))?;
        }
        flag::register(SIGTERM, Arc::clone(&stop.terminated))
            .map_err(|e| XtaskError::Failed(format!("cannot handle SIGTERM: {e}")))?;
        Ok(stop)
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What stopped the command, for messages: `Ctrl-C` or `SIGTERM`.
    pub fn cause(&self) -> &'static str {
        if self.terminated.load(std::sync::atomic::Ordering::Relaxed) {
            "SIGTERM"
        } else {
            "Ctrl-C"
        }
    }

    /// The exit status of a command stopped this way: 130 for Ctrl-C, 143 for SIGTERM.
    pub fn status(&self) -> u8 {
        if self.terminated.load(std::sync::atomic::Ordering::Relaxed) {
            143
        } else {
            130
        }
    }

    /// [`StopSignal::status`] as `main` returns it.
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(self.status())
    }
}

/// A run folder this process has claimed: its lock file (`.backprop-rs.lock`,
/// holding the process id) exists while the claim lives, so two runs never
/// write into one folder. Dropping the claim removes the lock.
pub struct RunDir {
    lock: PathBuf,
}

/// The lock file's name inside a run folder.
const LOCK_FILE: &str = ".backprop-rs.lock";

/// What a run writes (train, and every experiment): the files `--overwrite`
/// removes from a folder before a new run. Anything else in it, a user's own
/// `results.csv` say, is left alone.
const RUN_FILES: [&str; 24] = [
    "accuracy.csv",
    "accuracy.png",
    "loss.csv",
    "loss.png",
    "model.safetensors",
    "config.json",
    "filters-before.png",
    "filters-after.png",
    "initial.safetensors",
    "golden.json",
    "optimizer-paths.csv",
    "optimizer-paths.png",
    "optimizers.csv",
    "optimizers.png",
    "weight-init.csv",
    "weight-init.png",
    "activations.png",
    "batch-norm.csv",
    "batch-norm.png",
    "overfit.csv",
    "overfit.png",
    "hyperparameter-search.csv",
    "hyperparameter-search.png",
    "trials.csv",
];

impl RunDir {
    /// Creates `dir` if needed and claims it with an exclusive create of its
    /// lock file. A lock left by a process that no longer runs (killed
    /// outright) is taken over. With `overwrite`, the previous run's files
    /// are removed (see [`RUN_FILES`]); without it a folder that
    /// holds files is refused, as [`check_out_dir`] refuses it earlier.
    pub fn claim(dir: &Path, overwrite: bool) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(XtaskError::Usage(format!(
                "{} is a file, not a folder; give --out a folder (new or empty)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| train::TrainError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let lock = dir.join(LOCK_FILE);
        let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&lock);
        let mut file = match create() {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && Self::holder_is_gone(&lock) => {
                // The holder was killed before it could remove its lock.
                let _ = std::fs::remove_file(&lock);
                create().map_err(|e| Self::busy(dir, &e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Self::busy(dir, &e)),
            Err(e) => {
                return Err(XtaskError::Usage(format!(
                    "cannot write into {} ({e}); give --out a folder you can write",
                    dir.display()
                )))
            }
        };
        use std::io::Write;
        let _ = write!(file, "{}", std::process::id());
        let claim = RunDir { lock };
        if overwrite {
            claim.remove_previous_run(dir)?;
        } else {
            // Checked again now that the folder is ours: another run may
            // have written into it since the first check.
            if holds_files(dir) {
                return Err(XtaskError::Usage(format!(
                    "{} already holds files (another run?); give a new --out, or --overwrite to write over them",
                    dir.display()
                )));
            }
        }
        Ok(claim)
    }

    fn busy(dir: &Path, e: &std::io::Error) -> XtaskError {
        XtaskError::Usage(format!(
            "another run is writing into {} ({e}: its {LOCK_FILE} is there); give another --out, or delete the lock file if no run is",
            dir.display()
        ))
    }

    /// Whether the process id in `lock` no longer runs (Linux: no `/proc/<id>`).
    fn holder_is_gone(lock: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(lock) else {
            return false;
        };
        match text.trim().parse::<u32>() {
            Ok(pid) => Path::new("/proc").is_dir() && !Path::new(&format!("/proc/{pid}")).exists(),
            Err(_) => false,
        }
    }

    fn remove_previous_run(&self, dir: &Path) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| train::TrainError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_run_file = path.is_file()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| RUN_FILES.contains(&n));
            if is_run_file {
                std::fs::remove_file(&path).map_err(|e| train::TrainError::Io {
                    path: path.clone(),
                    source: e,
                })?;
            }
        }
        Ok(())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}
