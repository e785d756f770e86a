//! `cargo xtask gradcheck`: the book's gradient check (section 5.7.3), for
//! any of the fully connected networks `train` builds, the book's small
//! SimpleConvNet, or a net of one's own (`--net FILE`).
//!
//! On the first `--samples` training images, the backprop gradient of every
//! parameter is compared with the central-difference one (h = 1e-4), both in
//! training mode: BatchNorm on the batch's statistics, Dropout with one mask
//! (the random stream is reseeded for every forward pass). Both are timed;
//! the ratio is the point of chapter 5.

use crate::common::{read_net_file, thread_pool, DataArgs, JsonArg, ModelKind, Result, XtaskError};
use layers::gradcheck::{mean_abs_diff, numerical_gradient, relative_error};
use layers::{layer_stream, Activation, Init, LayerRng, NetSpec, Sequential, SimpleConvNet, Target};
use mnist::Split;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tensor::{Element, Tensor};
use train::{Dataset as _, ImageData, MlpOptions, ModelSpec, TrainConfig};

#[derive(clap::Args)]
pub struct Args {
    /// mlp (on MNIST images, the network flags below), or simple-convnet (the
    /// book's small SimpleConvNet on random 1x10x10 inputs, as ch07/gradient_check.py).
    #[arg(long, default_value = "mlp", conflicts_with = "net")]
    model: ModelKind,
    /// A net of one's own (a file of layers, as `train --net` takes), on MNIST images.
    #[arg(long, value_name = "FILE")]
    net: Option<PathBuf>,
    /// Number of training images in the batch.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    samples: usize,
    /// Hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "50", allow_negative_numbers = true)]
    hidden: Vec<usize>,
    /// Hidden activation: relu or sigmoid.
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// Initial weights: std:S, xavier or he.
    #[arg(long, default_value = "std:0.01", allow_hyphen_values = true)]
    init: Init,
    /// A BatchNorm layer after every hidden Affine layer.
    #[arg(long)]
    batch_norm: bool,
    /// A Dropout layer of this ratio after every hidden activation (one fixed mask).
    #[arg(long, allow_negative_numbers = true)]
    dropout: Option<f64>,
    /// L2 weight decay lambda.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Precision: f64 (the book's) or f32.
    #[arg(long, default_value = "f64", value_parser = ["f64", "f32"])]
    dtype: String,
    /// Seed of the initial weights and of the dropout mask.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Step h of the central difference [default: the book's 1e-4; 1e-5 for simple-convnet, see the README].
    #[arg(long)]
    h: Option<f64>,
    /// Fail when a mean |backprop - numerical| exceeds this [default: 1e-8 for f64, 1e-3 for f32].
    #[arg(long)]
    tolerance: Option<f64>,
    /// Threads for the numerical gradient (0: one per core).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    threads: usize,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    json: JsonArg,
}

struct ParamReport {
    name: String,
    mean_abs_diff: f64,
    max_rel_err: f64,
}

struct Report {
    /// The model's layers, one line.
    summary: String,
    params: Vec<ParamReport>,
    numerical_seconds: f64,
    backprop_seconds: f64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.samples == 0 {
        return Err(XtaskError::Usage("--samples must be at least 1".into()));
    }
    if args.samples > 1000 {
        return Err(XtaskError::Usage(format!(
            "--samples {} is more than 1000; the numerical gradient runs two forward passes over every sample per parameter",
            args.samples
        )));
    }
    let tolerance = args.tolerance.unwrap_or(if args.dtype == "f64" { 1e-8 } else { 1e-3 });
    if !(tolerance.is_finite() && tolerance > 0.0) {
        return Err(XtaskError::Usage(format!(
            "--tolerance must be a positive number, got {tolerance}"
        )));
    }
    let h = args.step();
    if !(h.is_finite() && h > 0.0 && h < 1.0) {
        return Err(XtaskError::Usage(format!("--h must be a number in (0, 1), got {h}")));
    }
    // Refuse a bad network before loading anything (the thread count is
    // checked by `thread_pool`, also before).
    let recipe = args.recipe(args.data.dataset.pixels())?;
    recipe.layer_specs()?;
    if args.batch_norm && args.samples < 2 {
        return Err(XtaskError::Usage(
            "--batch-norm needs --samples of 2 or more: over one image BatchNorm's output is constant and every gradient before it is 0".into(),
        ));
    }
    let pool = thread_pool(args.threads)?;
    let report = match args.model {
        _ if args.net.is_some() => check_mlp(&args, &pool)?,
        ModelKind::Mlp => check_mlp(&args, &pool)?,
        ModelKind::SimpleConvNet => pool.install(|| match args.dtype.as_str() {
            "f32" => check_convnet::<f32>(&args),
            _ => check_convnet::<f64>(&args),
        })?,
        ModelKind::DeepConvNet => {
            return Err(XtaskError::Usage(
                "gradcheck takes --model mlp or simple-convnet; the deep net's numerical gradient (a forward pass per parameter, 2 x 200k of them) would take hours".into(),
            ))
        }
    };
    print_report(&args, &report, tolerance, &pool)
}

/// The mlp (or the `--net`) on the first `--samples` training images.
fn check_mlp(args: &Args, pool: &rayon::ThreadPool) -> Result<Report> {
    let train = args.data.load_split(Split::Train)?;
    if args.samples > train.len() {
        return Err(XtaskError::Usage(format!(
            "--samples {} exceeds the {} training images",
            args.samples,
            train.len()
        )));
    }
    pool.install(|| match args.dtype.as_str() {
        "f32" => check::<f32>(args, &train),
        _ => check::<f64>(args, &train),
    })
}

fn print_report(args: &Args, report: &Report, tolerance: f64, pool: &rayon::ThreadPool) -> Result<ExitCode> {
    say!(
        "gradient check: {} images, {} in {}, h = {:e}, seed {}",
        args.samples,
        report.summary,
        args.dtype,
        args.step(),
        args.seed
    );
    say!("  {:<7} {:>16} {:>14}", "", "mean |bp - num|", "max rel err");
    for p in &report.params {
        say!("  {:<7} {:>16.3e} {:>14.3e}", p.name, p.mean_abs_diff, p.max_rel_err);
    }
    let speedup = report.numerical_seconds / report.backprop_seconds;
    say!(
        "  numerical {:.3} s, backprop {:.1} us: backprop is {speedup:.0}x faster ({} threads for the numerical gradient)",
        report.numerical_seconds,
        report.backprop_seconds * 1e6,
        pool.current_num_threads()
    );
    let failed: Vec<&str> = report
        .params
        .iter()
        .filter(|p| p.mean_abs_diff.is_nan() || p.mean_abs_diff > tolerance)
        .map(|p| p.name.as_str())
        .collect();
    let params: serde_json::Map<String, serde_json::Value> = report
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                serde_json::json!({"mean_abs_diff": p.mean_abs_diff, "max_rel_err": p.max_rel_err}),
            )
        })
        .collect();
    args.json.print(&serde_json::json!({
        "params": params,
        "numerical_seconds": report.numerical_seconds,
        "backprop_seconds": report.backprop_seconds,
        "speedup": speedup,
    }));
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(XtaskError::Failed(format!(
            "gradient check failed for {} (mean difference above {tolerance:e}); backprop disagrees with the numerical gradient{}",
            failed.join(", "),
            if args.net.is_some() && report.summary.contains("Relu") {
                ". With ReLU, a step of h crosses the kink at 0 wherever a unit's input is that small: zero biases on MNIST's blank margins give inputs of exactly 0 (a first layer's b), and BatchNorm over few --samples gives values near 0. Try more --samples or a smaller --h before suspecting backprop"
            } else if args.activation == Activation::Relu && args.model == ModelKind::Mlp && args.net.is_none() {
                ". With ReLU, a step of h = 1e-4 crosses the kink at 0 wherever a unit's input is that small (as with deep nets of std:0.01 weights): try --init he or --activation sigmoid before suspecting backprop"
            } else {
                ""
            }
        )))
    }
}

impl Args {
    /// The central difference's step. The book's 1e-4 for the mlp. The
    /// convnet's first layers see values of ~0.01 (its weights are 0.01 *
    /// N(0,1)), so a step of 1e-4 often moves a value across ReLU's kink or
    /// swaps the maximum of a pooling window, and the difference quotient
    /// then measures that jump, not the derivative. With 1e-5 such crossings
    /// are ten times rarer, and f64's rounding error (~1e-16 / 1e-5) stays far
    /// below what is checked.
    fn step(&self) -> f64 {
        self.h.unwrap_or(match self.model {
            ModelKind::SimpleConvNet => 1e-5,
            _ => 1e-4,
        })
    }

    /// The network for `pixels` inputs and 10 classes, as `train` builds it:
    /// the `--net` file's, or the mlp of the flags.
    fn recipe(&self, pixels: usize) -> Result<NetSpec> {
        let (model, weight_decay) = match &self.net {
            Some(path) => {
                let mut net = read_net_file(path)?;
                let weight_decay = if self.weight_decay != 0.0 {
                    self.weight_decay
                } else {
                    net.weight_decay
                };
                net.weight_decay = 0.0;
                (ModelSpec::Net(net), weight_decay)
            }
            None => (
                ModelSpec::Mlp(MlpOptions {
                    hidden: self.hidden.clone(),
                    activation: self.activation,
                    init: self.init,
                    batch_norm: self.batch_norm,
                    dropout: self.dropout,
                }),
                self.weight_decay,
            ),
        };
        let config = TrainConfig {
            model,
            weight_decay,
            ..TrainConfig::default()
        };
        config.validate()?;
        Ok(config.net(pixels, 10)?)
    }
}

fn check<T: Element>(args: &Args, train: &mnist::ImageSet) -> Result<Report> {
    let data = ImageData::new(&train.images, &train.labels, train.pixels())?;
    let (mut x, mut labels) = (Tensor::<T>::zeros(&[0]), Vec::new());
    data.gather_range(0, args.samples, &mut x, &mut labels);
    let net = args.recipe(train.pixels())?.build::<T>(args.seed)?;
    net.shape_batch(&mut x)?;
    compare(args, net, x, &labels)
}

/// The book's `ch07/gradient_check.py`: its small SimpleConvNet (a 1x10x10
/// input, 10 filters of 3x3, 10 hidden units) on `--samples` inputs drawn
/// uniformly from [0, 1), with random labels, all from `--seed`.
fn check_convnet<T: Element>(args: &Args) -> Result<Report> {
    let net = SimpleConvNet::gradient_check().build::<T>(args.seed)?;
    let mut rng = LayerRng::seed_from_u64(args.seed);
    rng.set_stream(3);
    let values = (0..args.samples * net.input_size())
        .map(|_| T::from_f64(rng.random::<f64>()))
        .collect();
    let mut x =
        Tensor::from_vec(values, &[args.samples, net.input_size()]).map_err(|e| XtaskError::Failed(e.to_string()))?;
    net.shape_batch(&mut x)?;
    let labels: Vec<usize> = (0..args.samples).map(|_| rng.random_range(0..10)).collect();
    compare(args, net, x, &labels)
}

/// Backprop and the numerical gradient of `net` on `x`, timed and compared.
fn compare<T: Element>(args: &Args, mut net: Sequential<T>, x: Tensor<T>, labels: &[usize]) -> Result<Report> {
    let target = Target::Labels(labels);
    let stream = || layer_stream(args.seed);

    // Backprop takes microseconds: time enough repetitions for a stable figure.
    net.gradient(&x, target, &mut stream())?;
    let repeats = 200;
    let start = Instant::now();
    for _ in 0..repeats {
        net.gradient(&x, target, &mut stream())?;
    }
    let backprop_seconds = start.elapsed().as_secs_f64() / repeats as f64;

    let params = net.num_params();
    eprintln!(
        "numerical gradient: {params} parameters, 2 forward passes each over {} images...",
        x.rows()
    );
    let start = Instant::now();
    let numerical = numerical_gradient(&net, &x, target, T::from_f64(args.step()), args.seed)?;
    let numerical_seconds = start.elapsed().as_secs_f64();

    let as_f64 = |t: &Tensor<T>| t.as_slice().iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
    let params = net
        .params()
        .into_iter()
        .zip(&numerical)
        .map(|(param, (_, num))| {
            let (bp, nu) = (as_f64(param.grad), as_f64(num));
            ParamReport {
                name: param.name.to_string(),
                mean_abs_diff: mean_abs_diff(&bp, &nu),
                max_rel_err: relative_error(&bp, &nu),
            }
        })
        .collect();
    Ok(Report {
        summary: net.summary(),
        params,
        numerical_seconds,
        backprop_seconds,
    })
}
