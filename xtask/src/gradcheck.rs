//! `cargo xtask gradcheck`: the book's gradient check (section 5.7.3), for
//! any of the fully connected networks `train` builds, the book's small
//! SimpleConvNet, or a net of one's own (`--net FILE`).
//!
//! On the first `--samples` training images, the backprop gradient of every
//! parameter is compared with the central-difference one, both in training
//! mode: BatchNorm on the batch's statistics, Dropout with one mask (the
//! random stream is reseeded for every forward pass). Both are timed; the
//! ratio is the point of chapter 5.
//!
//! The numerical gradient is two forward passes per parameter, so its cost is
//! counted from the layers' shapes before anything is loaded and refused
//! beyond [`MAX_OPERATIONS`], with a progress bar while it runs. A parameter
//! that fails is checked again on its largest differences with steps 10,
//! 100 and 1000 times smaller (or, where rounding forbids that, 10 times
//! larger): a difference that goes away or shrinks with the step is the
//! numerical gradient's (a kink within the step, truncation, rounding); one
//! that stays is backprop's, or a kink nearer than the smallest step.

use crate::common::{
    parse_dataset, read_net_with_weight_decay, thread_pool, DataArgs, JsonArg, MlpArgs, ModelKind, Result, StopSignal,
    XtaskError,
};
use indicatif::{ProgressBar, ProgressStyle};
use layers::gradcheck::{mean_abs_diff, numerical_derivatives, relative_error};
use layers::{layer_stream, Init, LayerRng, LayerSpec, NetSpec, Sequential, SimpleConvNet, Target};
use mnist::{Dataset, Split};
use rand::{Rng, SeedableRng};
use rayon::iter::{IntoParallelRefIterator, ParallelIterator};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tensor::{Element, Tensor};
use train::{Dataset as _, ImageData, ModelCost, ModelSpec, TrainConfig};

#[derive(clap::Args)]
pub struct Args {
    /// mlp (on MNIST images, the network flags below), or simple-convnet (the
    /// book's small SimpleConvNet on random 1x10x10 inputs, as
    /// ch07/gradient_check.py: no data set).
    #[arg(long, default_value = "mlp", conflicts_with = "net")]
    model: ModelKind,
    /// A net of one's own (a file of layers, as `train --net` takes), on MNIST images.
    #[arg(long, value_name = "FILE")]
    net: Option<PathBuf>,
    /// Number of training images (random inputs for simple-convnet) in the batch
    /// [default: 3, or 10 with BatchNorm].
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::parse_count::<1>)]
    samples: Option<usize>,
    #[command(flatten)]
    mlp: MlpArgs,
    /// L2 weight decay lambda [default: 0, or the --net file's].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// Precision of both gradients: f64 (the book's) or f32.
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    dtype: Dtype,
    /// Seed of the initial weights and of the dropout mask (and of simple-convnet's inputs).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Step h of the central difference [default: f64: the book's 1e-4, 1e-6 for
    /// simple-convnet and with BatchNorm; f32: 1e-3, 3e-4 for simple-convnet].
    #[arg(long, allow_negative_numbers = true)]
    h: Option<f64>,
    /// Fail when a mean |backprop - numerical| exceeds this [default: 1e-8 for f64, 1e-3 for f32].
    #[arg(long, allow_negative_numbers = true)]
    tolerance: Option<f64>,
    /// Threads for the numerical gradient (0: one per core).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = crate::common::parse_count::<0>)]
    threads: usize,
    /// mnist or fashion-mnist [default: mnist]; not with simple-convnet, whose inputs are random.
    #[arg(long, value_parser = parse_dataset)]
    dataset: Option<Dataset>,
    /// Folder holding the four files [default: $MNIST_DIR (or $FASHION_MNIST_DIR), else data/<dataset>, fetched on first use].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    json: JsonArg,
}

/// The precision both gradients are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Dtype {
    F64,
    F32,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "f64",
            Dtype::F32 => "f32",
        }
    }

    /// The spacing of numbers near 1: a value `v` is stored to within about `eps * |v|`.
    fn eps(self) -> f64 {
        match self {
            Dtype::F64 => f64::EPSILON,
            Dtype::F32 => f64::from(f32::EPSILON),
        }
    }

    /// The numerical gradient's rate per thread, in the operations [`Cost`]
    /// counts, measured on a 2-core x86-64 laptop-class CPU (release build,
    /// 3 images, 1 and 2 threads): f64 1.6e10 (`nets/mlp-bn-dropout.net`),
    /// 1.8e10 (LeNet-5, the mlp of 50), 2.6e10 (`--hidden 300`); f32 2.5e10,
    /// 2.8e10, 5.4e10. Only for the time a run would take, so one typical
    /// figure per dtype (`--hidden 600` was estimated at 76 s and took 55).
    fn operations_per_second(self) -> f64 {
        match self {
            Dtype::F64 => 1.8e10,
            Dtype::F32 => 2.8e10,
        }
    }

    /// The default `--tolerance` on a mean |backprop - numerical|. In f64 the
    /// book's figures are 1e-13..1e-10, so 1e-8 leaves room and still catches
    /// a wrong term. In f32 the numerical gradient itself is off by ~1e-4
    /// (see [`default_step`]), so 1e-3 is as sharp as it can be.
    fn default_tolerance(self) -> f64 {
        match self {
            Dtype::F64 => 1e-8,
            Dtype::F32 => 1e-3,
        }
    }
}

/// The default step h of the central difference for a model in `dtype`.
///
/// The quotient `(L(p + h) - L(p - h)) / 2h` misses `dL/dp` by about
///
/// ```text
///     h^2 |L'''| / 6      truncation
///   + eps |L| / h         rounding each loss (|L| ~ 2.3 here) to the dtype
///   + kinks               up to half a jump in slope wherever a ReLU input (or
///                         a max-pool window's runner-up) lies within the
///                         perturbation of its kink: a chance that grows with h
/// ```
///
/// In f64 (eps 2.2e-16) rounding is at most 5e-12 at h = 1e-4 and 5e-10
/// at 1e-6 (measured means 1e-12, 1e-10), far below the tolerance of 1e-8
/// either way, so the step is chosen small against kinks: the book's 1e-4
/// for the mlp (its figures, 1e-13..1e-10; 3 of seeds 1-10 and 42 cross a
/// kink there, none at 1e-5: the failure says so), and 1e-6 where inputs
/// to a kink are small or magnified. simple-convnet's weights of 0.01 make
/// hidden inputs of ~1e-3: at 1e-5, 7 of those 11 seeds fail (W1, b2 off by
/// up to 1.6e-4), at 1e-6 one (a ReLU input within 1e-7 of 0). BatchNorm
/// divides by the batch's spread, moving its output by h / sigma: the mlp
/// with `--batch-norm` over 3 images is off by up to 5e-5 at 1e-4, 7e-9 at
/// 1e-5, 2e-10 at 1e-6.
///
/// In f32 (eps 1.2e-7) rounding alone is eps |L| / h = 2.7e-3 at the book's
/// 1e-4 (a mean of ~3e-4 is measured) and 2.7e-2 at 1e-5, so the step must
/// be larger and the tolerance 1e-3: at h = 1e-3 rounding is at most 2.7e-4
/// (measured means 3e-5..9e-5) and truncation ~1e-7, and the mlp's worst
/// mean difference over those 11 seeds is 9e-5 (relu), 8e-5 (sigmoid),
/// 6e-5 (`--batch-norm`, 10 images), 5e-4 (`--batch-norm --dropout 0.3
/// --hidden 100,50 --init he --weight-decay 0.1`). simple-convnet's hidden
/// inputs being ~1e-3, a step of 1e-3 crosses their kinks (b2 off by up to
/// 1.3e-3 over seeds 1-20); 3e-4 keeps rounding below the tolerance (at
/// most 9e-4, measured ~2e-4) and b2 at 6e-4 at worst.
fn default_step(dtype: Dtype, convnet: bool, batch_norm: bool) -> f64 {
    match (dtype, convnet || batch_norm) {
        (Dtype::F64, false) => 1e-4,
        (Dtype::F64, true) => 1e-6,
        (Dtype::F32, _) if convnet => 3e-4,
        (Dtype::F32, _) => 1e-3,
    }
}

/// Most floating-point operations the numerical gradient may take: as
/// `eval` and `predict` allow a checkpoint, minutes of work on two cores
/// (5 minutes in f64, 3 in f32 at [`Dtype::operations_per_second`]).
const MAX_OPERATIONS: f64 = 1e13;

/// The most elements of one failing parameter checked again with another
/// step: its largest differences, enough to tell a kink from a wrong term
/// and a small fraction of the first pass's cost.
const RECHECK_ELEMENTS: usize = 1000;

/// What is checked, settled from the flags before anything is loaded.
struct Plan {
    /// The network, weight decay included.
    net: NetSpec,
    /// Whether it is simple-convnet (random inputs) rather than a net on images.
    convnet: bool,
    /// Whether it has BatchNorm layers.
    batch_norm: bool,
    /// Images (or random inputs) in the batch.
    samples: usize,
    h: f64,
    /// The default step for this model and dtype, whether or not `--h` was given.
    default_h: f64,
    tolerance: f64,
    cost: Cost,
}

/// Floating-point operations of the numerical gradient, from the layers'
/// shapes ([`ModelCost`]).
struct Cost {
    params: usize,
    /// One forward pass over the batch, with the weight decay term's sum of
    /// squares when there is one.
    per_pass: f64,
}

/// What the weight decay term costs per parameter and pass, in the
/// operations of [`Dtype::operations_per_second`]: `Sequential::weight_decay_loss`
/// is a scalar walk over every parameter, ~1e9 per second per thread, as
/// slow as ~20 operations of the layers' (measured: `--hidden 100,50` takes
/// 1.3 s, 7.9 s with `--weight-decay`).
const DECAY_OPERATIONS_PER_PARAMETER: f64 = 20.0;

impl Cost {
    fn of(net: &NetSpec, samples: usize) -> Result<Self> {
        let model = ModelCost::of(&net.input, &net.layer_specs()?, 10)?;
        let decay = if net.weight_decay != 0.0 {
            DECAY_OPERATIONS_PER_PARAMETER * model.params as f64
        } else {
            0.0
        };
        Ok(Cost {
            params: model.params,
            per_pass: samples as f64 * model.flops_per_example + decay,
        })
    }

    /// Two forward passes per parameter.
    fn total(&self) -> f64 {
        2.0 * self.params as f64 * self.per_pass
    }

    /// Seconds at the measured rate on `threads` threads.
    fn seconds(&self, dtype: Dtype, threads: usize) -> f64 {
        self.total() / (dtype.operations_per_second() * threads as f64)
    }
}

/// The threads that can run at once: the pool's, at most one per core.
fn busy_threads(pool_threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(pool_threads, |n| n.get());
    pool_threads.clamp(1, cores.max(1))
}

/// A time for people: `45 s`, `12 minutes`, `3.2 hours`, `40 days`.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 90.0 => format!("{s:.1} s"),
        s if s < 90.0 * 60.0 => format!("{:.0} minutes", s / 60.0),
        s if s < 48.0 * 3600.0 => format!("{:.1} hours", s / 3600.0),
        s if s < 2.0 * 365.0 * 86_400.0 => format!("{:.0} days", s / 86_400.0),
        s => format!("{:.0} years", s / (365.0 * 86_400.0)),
    }
}

struct ParamReport {
    name: String,
    mean_abs_diff: f64,
    max_rel_err: f64,
}

/// A failing parameter's largest differences, again with other steps.
struct Recheck {
    name: String,
    /// How many of its elements (its largest differences at h).
    elements: usize,
    /// `(step, mean |backprop - numerical| over those elements)`: at h
    /// first, then at each further step tried ([`further_steps`]), up to
    /// the first within the tolerance.
    looks: Vec<(f64, f64)>,
    /// Of those elements, how many sit at a kink at h ([`at_kink`]).
    kinks: usize,
    /// The parameter's mean |backprop - numerical| at h over all its
    /// elements but those at a kink.
    mean_without_kinks: f64,
}

/// What the further looks at a failing parameter say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Within the tolerance at another step: the numerical gradient was off at h.
    PassesAtStep,
    /// More than threefold smaller at another step, yet still above the
    /// tolerance: the step is implicated (a wrong backprop would not shrink).
    Shrinks,
    /// Never threefold smaller at steps below h that reach within ten times
    /// the default: not the step's doing (unless a kink is nearer than the
    /// smallest step tried).
    Stays,
    /// Not smaller, but the only other step was larger (h / 10 would drown
    /// in rounding) or all steps were far above the default: no verdict.
    Unresolved,
    /// Within the tolerance once the elements at a kink are set aside: at
    /// each of those, the one-sided quotients at h differ from each other
    /// at least as much as backprop differs from their mean, which is what
    /// crossing a kink does and a wrong backprop at a smooth point does not.
    AtKinks,
}

impl Recheck {
    fn at_h(&self) -> f64 {
        self.looks[0].1
    }

    /// The further look with the smallest difference.
    fn best(&self) -> (f64, f64) {
        self.looks[1..]
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or(self.looks[0])
    }

    /// Truncation scales as h^2, rounding as 1/h, and kink crossings fade
    /// as the step shrinks below the kink's distance, so the numerical
    /// gradient's own error moves with the step; a wrong backprop term does
    /// not depend on h at all. A difference that stays blames backprop only
    /// if the steps went down to the default's neighbourhood: far above it,
    /// a kink crossed at h is crossed at h / 10 too, each worth about half a
    /// jump whatever the step. (A kink nearer than the smallest step, or a
    /// ReLU input of exactly 0, stays too: the failure message says so.)
    fn verdict(&self, default_h: f64, tolerance: f64) -> Verdict {
        let h = self.looks[0].0;
        if self.looks.iter().any(|look| look.1.is_nan()) {
            // A NaN at some step: no step explains it.
            return Verdict::Stays;
        }
        let (_, best) = self.best();
        let smallest = self.looks.iter().map(|look| look.0).fold(h, f64::min);
        if best <= tolerance {
            Verdict::PassesAtStep
        } else if self.kinks > 0 && self.mean_without_kinks <= tolerance {
            Verdict::AtKinks
        } else if best < self.at_h() / 3.0 {
            Verdict::Shrinks
        } else if smallest < h && smallest <= 10.0 * default_h {
            Verdict::Stays
        } else {
            Verdict::Unresolved
        }
    }
}

struct Report {
    /// The model's layers, one line.
    summary: String,
    /// Whether it has ReLU or max-pool layers, whose kinks a step can cross.
    kinks: bool,
    /// The loss at the checked parameters.
    loss: f64,
    params: Vec<ParamReport>,
    rechecks: Vec<Recheck>,
    numerical_seconds: f64,
    backprop_seconds: f64,
}

/// Ctrl-C and SIGTERM, installed by [`run`] and checked as the numerical
/// gradient's pieces finish. Process-wide, as the signals are; unset in unit
/// tests, which are then never stopped.
static STOP: std::sync::OnceLock<StopSignal> = std::sync::OnceLock::new();

pub fn run(args: Args) -> Result<ExitCode> {
    args.refuse_misplaced_flags()?;
    // A gradient check writes nothing, so a stop loses nothing but the
    // check: it ends at the next finished piece, saying how far it got.
    let _ = STOP.set(StopSignal::install()?);
    let pool = thread_pool(args.threads)?;
    let plan = args.plan()?;
    args.check_cost(&plan, busy_threads(pool.current_num_threads()))?;
    let report = if plan.convnet {
        pool.install(|| match args.dtype {
            Dtype::F32 => check_convnet::<f32>(&args, &plan),
            Dtype::F64 => check_convnet::<f64>(&args, &plan),
        })?
    } else {
        let train = args.data().load_split(Split::Train)?;
        if plan.samples > train.len() {
            return Err(XtaskError::Usage(format!(
                "--samples {} exceeds the {} training images",
                plan.samples,
                train.len()
            )));
        }
        pool.install(|| match args.dtype {
            Dtype::F32 => check::<f32>(&args, &plan, &train),
            Dtype::F64 => check::<f64>(&args, &plan, &train),
        })?
    };
    print_report(&args, &plan, &report, &pool)
}

impl Args {
    /// `--model simple-convnet` or `--net FILE`, as the user wrote it.
    fn model_name(&self) -> String {
        match &self.net {
            Some(path) => format!("--net {}", path.display()),
            None => format!("--model {}", self.model),
        }
    }

    /// Refuses flags the chosen model would ignore, as `train` does: the
    /// mlp's shape with a network that is as it is, a data set with
    /// simple-convnet's random inputs, and the deep net.
    fn refuse_misplaced_flags(&self) -> Result<()> {
        if self.net.is_none() && self.model == ModelKind::DeepConvNet {
            return Err(XtaskError::Usage(
                "gradcheck takes --model mlp or simple-convnet; the deep net's numerical gradient (a forward pass per parameter, 2 x 200k of them) would take hours".into(),
            ));
        }
        if self.net.is_some() || self.model != ModelKind::Mlp {
            self.mlp.refuse_for(&self.model_name())?;
        }
        if self.net.is_none() && self.model == ModelKind::SimpleConvNet {
            let data_flags = [
                ("--dataset", self.dataset.is_some()),
                ("--data-dir", self.data_dir.is_some()),
            ];
            if let Some((flag, _)) = data_flags.iter().find(|(_, given)| *given) {
                return Err(XtaskError::Usage(format!(
                    "{flag} picks images, but --model simple-convnet is checked on random 1x10x10 inputs (the book's ch07/gradient_check.py) and reads no data set; drop {flag}, or check an mlp or a --net on the images"
                )));
            }
        }
        Ok(())
    }

    /// The data set flags as the loaders take them.
    fn data(&self) -> DataArgs {
        DataArgs {
            dataset: self.dataset.unwrap_or_default(),
            data_dir: self.data_dir.clone(),
        }
    }

    /// The network, its batch, its step, its tolerance and its cost; every
    /// setting checked, nothing loaded.
    fn plan(&self) -> Result<Plan> {
        let convnet = self.net.is_none() && self.model == ModelKind::SimpleConvNet;
        let net = self.recipe()?;
        let batch_norm = net
            .layer_specs()?
            .iter()
            .any(|s| matches!(s, LayerSpec::BatchNorm { .. }));
        // BatchNorm normalizes over the batch: over 3 images a unit's 3
        // values are divided by their spread, which can be tiny, and every
        // step is magnified as much. `nets/mlp-bn-dropout.net` fails over 3
        // (f64 at h = 1e-6: W1 off by 6e-8; f32: no step works) and passes
        // over 10 (2e-10 and 7e-5); so does the mlp with --batch-norm
        // --hidden 100,50 --dropout 0.3 in f32 (3e-3 over 3, 4e-4 over 10).
        let samples = self.samples.unwrap_or(if batch_norm { 10 } else { 3 });
        if samples == 0 {
            return Err(XtaskError::Usage("--samples must be at least 1".into()));
        }
        if samples > 1000 {
            return Err(XtaskError::Usage(format!(
                "--samples {samples} is more than 1000; the numerical gradient runs two forward passes over every sample per parameter"
            )));
        }
        if batch_norm && samples < 2 {
            return Err(XtaskError::Usage(format!(
                "{} needs --samples of 2 or more: over one image BatchNorm's output is constant and every gradient before it is 0",
                if self.net.is_some() { "BatchNorm" } else { "--batch-norm" }
            )));
        }
        let tolerance = self.tolerance.unwrap_or(self.dtype.default_tolerance());
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(XtaskError::Usage(format!(
                "--tolerance must be a positive number, got {tolerance}"
            )));
        }
        let default_h = default_step(self.dtype, convnet, batch_norm);
        let h = self.h.unwrap_or(default_h);
        if !(h.is_finite() && h > 0.0 && h < 1.0) {
            return Err(XtaskError::Usage(format!("--h must be a number in (0, 1), got {h}")));
        }
        let cost = Cost::of(&net, samples)?;
        Ok(Plan {
            net,
            convnet,
            batch_norm,
            samples,
            h,
            default_h,
            tolerance,
            cost,
        })
    }

    /// The network as `train` builds it: the `--net` file's, the mlp of the
    /// flags (for the data set's images and 10 classes), or the book's small
    /// SimpleConvNet; with the run's weight decay.
    fn recipe(&self) -> Result<NetSpec> {
        let mut weight_decay = self.weight_decay.unwrap_or(0.0);
        let (model, features) = match &self.net {
            Some(path) => {
                let (net, net_weight_decay) = read_net_with_weight_decay(path, self.weight_decay)?;
                weight_decay = net_weight_decay;
                (ModelSpec::Net(net), self.data().dataset.pixels())
            }
            None if self.model == ModelKind::SimpleConvNet => {
                let net = SimpleConvNet::gradient_check().net();
                let features = net.input_size();
                (ModelSpec::Net(net), features)
            }
            None => {
                let options = self.mlp.options();
                (ModelSpec::Mlp(options), self.data().dataset.pixels())
            }
        };
        let config = TrainConfig {
            model,
            weight_decay,
            ..TrainConfig::default()
        };
        config.validate()?;
        let net = config.net(features, 10)?;
        net.layer_specs()?;
        Ok(net)
    }

    /// Refuses a numerical gradient of more than [`MAX_OPERATIONS`], saying
    /// the estimate, the time it would take and what to shrink.
    fn check_cost(&self, plan: &Plan, threads: usize) -> Result<()> {
        let cost = &plan.cost;
        let total = cost.total();
        if total <= MAX_OPERATIONS {
            return Ok(());
        }
        let shrink = if plan.convnet {
            "fewer --samples".to_string()
        } else if self.net.is_some() {
            format!("a smaller net than {}, or fewer --samples", self.model_name())
        } else {
            "a smaller --hidden (the cost grows as the square of the widths) or fewer --samples".to_string()
        };
        let at_limit = MAX_OPERATIONS / (self.dtype.operations_per_second() * threads as f64);
        Err(XtaskError::Usage(format!(
            "the numerical gradient of this network would take about {total:.1e} floating-point operations (2 forward passes of {:.1e} over {} images for each of its {} parameters): about {} at the measured {:.1e} per second per thread, on {threads} threads; gradcheck takes at most {MAX_OPERATIONS:.0e} (about {} here): try {shrink}",
            cost.per_pass,
            plan.samples,
            cost.params,
            duration(cost.seconds(self.dtype, threads)),
            self.dtype.operations_per_second(),
            duration(at_limit),
        )))
    }
}

/// The mlp (or the `--net`) on the first `--samples` training images.
fn check<T: Element>(args: &Args, plan: &Plan, train: &mnist::ImageSet) -> Result<Report> {
    let data = ImageData::new(&train.images, &train.labels, train.pixels())?;
    let (mut x, mut labels) = (Tensor::<T>::zeros(&[0]), Vec::new());
    data.gather_range(0, plan.samples, &mut x, &mut labels);
    let net = plan.net.build::<T>(args.seed)?;
    net.shape_batch(&mut x)?;
    compare(args, plan, net, x, &labels)
}

/// The book's `ch07/gradient_check.py`: its small SimpleConvNet (a 1x10x10
/// input, 10 filters of 3x3, 10 hidden units) on `--samples` inputs drawn
/// uniformly from [0, 1), with random labels, all from `--seed`.
fn check_convnet<T: Element>(args: &Args, plan: &Plan) -> Result<Report> {
    let net = plan.net.build::<T>(args.seed)?;
    let mut rng = LayerRng::seed_from_u64(args.seed);
    rng.set_stream(3);
    let values = (0..plan.samples * net.input_size())
        .map(|_| T::from_f64(rng.random::<f64>()))
        .collect();
    let mut x =
        Tensor::from_vec(values, &[plan.samples, net.input_size()]).map_err(|e| XtaskError::Failed(e.to_string()))?;
    net.shape_batch(&mut x)?;
    let labels: Vec<usize> = (0..plan.samples).map(|_| rng.random_range(0..10)).collect();
    compare(args, plan, net, x, &labels)
}

/// `(L(p + h) - L(p - h)) / 2h` for each `(parameter, element)` of
/// `elements`, in order ([`numerical_derivatives`], the passes of the
/// library's numerical gradient), advancing `bar` as pieces finish. The
/// caller has checked `x` and `target` against `net`.
fn numerical_elements<T: Element>(
    net: &Sequential<T>,
    x: &Tensor<T>,
    target: Target<'_, T>,
    h: f64,
    seed: u64,
    elements: &[(usize, usize)],
    bar: &ProgressBar,
) -> Vec<T> {
    numerical_derivatives(net, x, target, T::from_f64(h), seed, elements, &|n| {
        bar.inc(n as u64);
        if let Some(stop) = STOP.get().filter(|stop| stop.requested()) {
            bar.abandon();
            eprintln!(
                "gradcheck interrupted ({}) after {} of {} derivatives; it writes nothing, so nothing is lost",
                stop.cause(),
                bar.position(),
                bar.length().unwrap_or(0)
            );
            std::process::exit(i32::from(stop.status()));
        }
    })
}

/// `((L(p) - L(p - h)) / h, (L(p + h) - L(p)) / h)` for each `(parameter,
/// element)` of `elements`: the quotients on either side, whose mean is the
/// central one.
fn one_sided_quotients<T: Element>(
    net: &Sequential<T>,
    x: &Tensor<T>,
    target: Target<'_, T>,
    h: f64,
    seed: u64,
    elements: &[(usize, usize)],
) -> Vec<(f64, f64)> {
    let step = T::from_f64(h);
    // What the numerical gradient's steps were from: `p + h` and `p - h`
    // as T rounds them, so the quotients divide by the steps taken.
    elements
        .par_iter()
        .map_init(
            || net.clone(),
            |model, &(p, e)| {
                let loss =
                    |model: &mut Sequential<T>| model.loss_train_unchecked(x, target, &mut layer_stream(seed)).to_f64();
                let original = model.replace_param_element(p, e, T::ZERO);
                model.replace_param_element(p, e, original);
                let centre = loss(model);
                model.replace_param_element(p, e, original + step);
                let plus = loss(model);
                model.replace_param_element(p, e, original - step);
                let minus = loss(model);
                model.replace_param_element(p, e, original);
                let (up, down) = (
                    (original + step).to_f64() - original.to_f64(),
                    original.to_f64() - (original - step).to_f64(),
                );
                ((centre - minus) / down, (plus - centre) / up)
            },
        )
        .collect()
}

/// Whether a difference between backprop's `analytic` derivative and the
/// central quotient at h comes from a kink the step crosses, from the
/// quotients on either side at h and at h / 10 (`(left, right)` each).
///
/// At a smooth point the two sides differ by the step times the curvature,
/// so the gap shrinks tenfold with the step. At a kink the step reaches
/// past, they differ by the jump in slope (times how far past), and at a
/// kink the point sits on (a ReLU input of exactly 0) by the whole jump
/// at any step: the gap stays. So: a gap at h / 10 that is at least half
/// the gap at h, above rounding (`floor`), and at least as large as
/// backprop's distance from the central quotient, which at a kink is half
/// a (weighted) jump and at a smooth point with a wrong backprop is not
/// bounded by the gap at all.
fn at_kink(analytic: f64, at_h: (f64, f64), at_tenth: (f64, f64), floor: f64) -> bool {
    let gap = |(left, right): (f64, f64)| (right - left).abs();
    let central = (at_h.0 + at_h.1) / 2.0;
    let (wide, narrow) = (gap(at_h), gap(at_tenth));
    narrow > floor && narrow >= 0.5 * wide && narrow >= (analytic - central).abs()
}

/// A bar over `len` parameters on stderr (hidden when stderr is not a terminal).
fn parameter_bar(len: usize, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}<{eta_precise}] {wide_bar} {pos}/{len} parameters")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    bar
}

/// Backprop and the numerical gradient of `net` on `x`, timed and compared;
/// each parameter that fails is checked again, on its largest differences,
/// with [`further_steps`].
fn compare<T: Element>(
    args: &Args,
    plan: &Plan,
    mut net: Sequential<T>,
    x: Tensor<T>,
    labels: &[usize],
) -> Result<Report> {
    let target = Target::Labels(labels);
    let stream = || layer_stream(args.seed);

    // Backprop takes microseconds to milliseconds: repeat it for about 0.2 s
    // (at most 200 times) for a stable figure.
    let start = Instant::now();
    let loss = net.gradient(&x, target, &mut stream())?.to_f64();
    let once = start.elapsed().as_secs_f64();
    let repeats = (0.2 / once.max(1e-9)).clamp(1.0, 200.0) as usize;
    let start = Instant::now();
    for _ in 0..repeats {
        net.gradient(&x, target, &mut stream())?;
    }
    let backprop_seconds = start.elapsed().as_secs_f64() / repeats as f64;

    let shapes: Vec<usize> = net.params().iter().map(|p| p.value.numel()).collect();
    let all: Vec<(usize, usize)> = shapes
        .iter()
        .enumerate()
        .flat_map(|(p, &n)| (0..n).map(move |e| (p, e)))
        .collect();
    let threads = busy_threads(rayon::current_num_threads());
    eprintln!(
        "numerical gradient: {} parameters, 2 forward passes each over {} images: about {:.1e} operations, ~{} on {threads} threads",
        all.len(),
        x.rows(),
        plan.cost.total(),
        duration(plan.cost.seconds(args.dtype, threads)),
    );
    let bar = parameter_bar(all.len(), format!("h = {:e}", plan.h));
    let start = Instant::now();
    let numerical = numerical_elements(&net, &x, target, plan.h, args.seed, &all, &bar);
    let numerical_seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let as_f64 = |values: &[T]| values.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
    let backprop: Vec<(String, Vec<f64>)> = net
        .params()
        .iter()
        .map(|p| (p.name.to_string(), as_f64(p.grad.as_slice())))
        .collect();
    let mut params = Vec::new();
    let mut failing = Vec::new();
    let mut offset = 0;
    for (index, (name, bp)) in backprop.iter().enumerate() {
        let nu = as_f64(&numerical[offset..offset + bp.len()]);
        offset += bp.len();
        let report = ParamReport {
            name: name.clone(),
            mean_abs_diff: mean_abs_diff(bp, &nu),
            max_rel_err: relative_error(bp, &nu),
        };
        // A NaN fails too.
        if report.mean_abs_diff.is_nan() || report.mean_abs_diff > plan.tolerance {
            failing.push((index, nu));
        }
        params.push(report);
    }

    let steps = further_steps(plan.h, args.dtype, loss, plan.tolerance);
    let mut rechecks = Vec::new();
    for (index, nu) in failing {
        let (name, bp) = &backprop[index];
        let worst = largest_differences(bp, &nu, RECHECK_ELEMENTS);
        let elements: Vec<(usize, usize)> = worst.iter().map(|&e| (index, e)).collect();
        let pick = |values: &[f64]| worst.iter().map(|&e| values[e]).collect::<Vec<f64>>();
        let bp_worst = pick(bp);
        let mut looks = vec![(plan.h, mean_abs_diff(&bp_worst, &pick(&nu)))];
        for &step in &steps {
            let bar = parameter_bar(elements.len(), format!("{name} again at h = {step:e}"));
            let again = as_f64(&numerical_elements(&net, &x, target, step, args.seed, &elements, &bar));
            bar.finish_and_clear();
            let diff = mean_abs_diff(&bp_worst, &again);
            looks.push((step, diff));
            if diff <= plan.tolerance {
                break;
            }
        }
        // Which of the largest differences sit at a kink, and the mean
        // difference of the parameter without them.
        let sides = one_sided_quotients(&net, &x, target, plan.h, args.seed, &elements);
        let narrow_sides = one_sided_quotients(&net, &x, target, plan.h / 10.0, args.seed, &elements);
        // Below this, a gap between the sides at h / 10 may be rounding:
        // each loss is off by up to eps |L|, each quotient by 2 eps |L| / step.
        let noise = 4.0 * args.dtype.eps() * loss.abs().max(1.0) / (plan.h / 10.0);
        let kinked: Vec<usize> = worst
            .iter()
            .zip(sides.iter().zip(&narrow_sides))
            .filter(|&(&e, (&at_h, &at_tenth))| at_kink(bp[e], at_h, at_tenth, 10.0 * noise))
            .map(|(&e, _)| e)
            .collect();
        let kept: Vec<usize> = (0..bp.len()).filter(|e| kinked.binary_search(e).is_err()).collect();
        let mean_without_kinks = mean_abs_diff(
            &kept.iter().map(|&e| bp[e]).collect::<Vec<f64>>(),
            &kept.iter().map(|&e| nu[e]).collect::<Vec<f64>>(),
        );
        rechecks.push(Recheck {
            name: name.clone(),
            elements: worst.len(),
            looks,
            kinks: kinked.len(),
            mean_without_kinks,
        });
    }
    let specs = net.specs();
    Ok(Report {
        summary: net.summary(),
        kinks: specs
            .iter()
            .any(|s| matches!(s, LayerSpec::Relu | LayerSpec::Pooling { .. })),
        loss,
        params,
        rechecks,
        numerical_seconds,
        backprop_seconds,
    })
}

/// The smallest step whose rounding error, `eps |L| / h`, stays within
/// `tolerance` (see [`default_step`]).
fn smallest_step(dtype: Dtype, loss: f64, tolerance: f64) -> f64 {
    dtype.eps() * loss.abs().max(1.0) / tolerance
}

/// The steps of the further looks at a failing parameter: h / 10, h / 100
/// and h / 1000 as long as rounding allows ([`smallest_step`]), or else 10 h;
/// to 12 digits, so that 3e-4 * 10 prints as 3e-3.
fn further_steps(h: f64, dtype: Dtype, loss: f64, tolerance: f64) -> Vec<f64> {
    let tidy = |step: f64| format!("{step:.12e}").parse().unwrap_or(step);
    let smallest = smallest_step(dtype, loss, tolerance);
    let smaller: Vec<f64> = [10.0, 100.0, 1000.0]
        .iter()
        .map(|factor| h / factor)
        .take_while(|&step| step >= smallest)
        .map(tidy)
        .collect();
    if smaller.is_empty() {
        vec![tidy((h * 10.0).min(0.5))]
    } else {
        smaller
    }
}

/// Indices of the (at most) `count` largest `|a_i - n_i|`, in index order;
/// a NaN counts as largest.
fn largest_differences(analytic: &[f64], numerical: &[f64], count: usize) -> Vec<usize> {
    let diff = |i: usize| {
        let d = (analytic[i] - numerical[i]).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            d
        }
    };
    let mut indices: Vec<usize> = (0..analytic.len()).collect();
    if indices.len() > count {
        indices.select_nth_unstable_by(count - 1, |&a, &b| diff(b).total_cmp(&diff(a)));
        indices.truncate(count);
    }
    indices.sort_unstable();
    indices
}

/// What is wrong with the step for this check, if anything: too small for
/// the dtype's rounding at this tolerance, or far above the default.
fn step_note(plan: &Plan, dtype: Dtype, loss: f64) -> Option<String> {
    let h = plan.h;
    let rounding = dtype.eps() * loss.abs().max(1.0) / h;
    if rounding > plan.tolerance {
        Some(format!(
            "h = {h:e} is too small for {} at a tolerance of {:e}: rounding the loss ({loss:.3}) to {} alone moves the quotient by up to eps |L| / h = {rounding:.1e} (this model's default step in {} is {:e})",
            dtype.name(),
            plan.tolerance,
            dtype.name(),
            dtype.name(),
            plan.default_h
        ))
    } else if h > 10.0 * plan.default_h {
        Some(format!(
            "h = {h:e} is more than ten times this model's default {:e}: the central difference's error grows as h^2, and every ReLU or max-pool kink within h of a unit's input adds up to half a jump",
            plan.default_h
        ))
    } else {
        None
    }
}

fn print_report(args: &Args, plan: &Plan, report: &Report, pool: &rayon::ThreadPool) -> Result<ExitCode> {
    say!(
        "gradient check: {} images, {} in {}, h = {:e}, tolerance {:e}, seed {}",
        plan.samples,
        report.summary,
        args.dtype.name(),
        plan.h,
        plan.tolerance,
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
    if !report.rechecks.is_empty() {
        say!("  failing parameters again with other steps, over their largest differences:");
        for r in &report.rechecks {
            say!(
                "  {:<7} {:>5} elements: mean |bp - num| {}: {}",
                r.name,
                r.elements,
                looks_text(r, 3),
                match r.verdict(plan.default_h, plan.tolerance) {
                    Verdict::PassesAtStep => "within the tolerance (the numerical gradient was off)",
                    Verdict::Shrinks => "shrinks (the numerical gradient's, at least in part)",
                    Verdict::Stays => "stays (not the step's doing)",
                    Verdict::Unresolved => "no verdict",
                    Verdict::AtKinks => "at kinks",
                }
            );
            if r.verdict(plan.default_h, plan.tolerance) == Verdict::AtKinks {
                say!(
                    "          {} of them cross a ReLU or max-pool kink within h (the quotients on either side differ by a jump); without them the mean is {:.2e}, within the tolerance",
                    r.kinks,
                    r.mean_without_kinks
                );
            }
        }
    }
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
    let rechecks: serde_json::Map<String, serde_json::Value> = report
        .rechecks
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                serde_json::json!({
                    "elements": r.elements,
                    "steps": r.looks.iter().map(|look| look.0).collect::<Vec<f64>>(),
                    "mean_abs_diffs": r.looks.iter().map(|look| look.1).collect::<Vec<f64>>(),
                    "verdict": format!("{:?}", r.verdict(plan.default_h, plan.tolerance)),
                    "at_kinks": r.kinks,
                    "mean_abs_diff_without_kinks": r.mean_without_kinks,
                }),
            )
        })
        .collect();
    args.json.print(&serde_json::json!({
        "params": params,
        "samples": plan.samples,
        "h": plan.h,
        "tolerance": plan.tolerance,
        "estimated_operations": plan.cost.total(),
        "numerical_seconds": report.numerical_seconds,
        "backprop_seconds": report.backprop_seconds,
        "speedup": speedup,
        "rechecks": rechecks,
    }));
    // Differences that sit at kinks are the numerical gradient's: the
    // check passes, having said so above.
    let at_kinks = |r: &Recheck| r.verdict(plan.default_h, plan.tolerance) == Verdict::AtKinks;
    if report.rechecks.iter().all(at_kinks) {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(XtaskError::Failed(failure_message(args, plan, report)))
    }
}

/// `3.7e-4 at h = 1e-4, 3.3e-6 at h = 1e-5`: a recheck's looks, with
/// `digits` significant digits.
fn looks_text(recheck: &Recheck, digits: usize) -> String {
    recheck
        .looks
        .iter()
        .map(|(step, diff)| format!("{diff:.prec$e} at h = {step:e}", prec = digits - 1))
        .collect::<Vec<String>>()
        .join(", ")
}

/// Why the check failed, blaming the side the evidence points at: backprop
/// when the difference stays as the step shrinks, the numerical gradient
/// when it goes away or shrinks, nobody when the further looks could not
/// tell; with what to try.
fn failure_message(args: &Args, plan: &Plan, report: &Report) -> String {
    let with = |verdict: Verdict| {
        report
            .rechecks
            .iter()
            .filter(|r| r.verdict(plan.default_h, plan.tolerance) == verdict)
            .collect::<Vec<&Recheck>>()
    };
    let figures = |rechecks: &[&Recheck]| {
        rechecks
            .iter()
            .map(|r| format!("{}: {}", r.name, looks_text(r, 2)))
            .collect::<Vec<String>>()
            .join("; ")
    };
    let (passes, shrinks, stays, unresolved, kinked) = (
        with(Verdict::PassesAtStep),
        with(Verdict::Shrinks),
        with(Verdict::Stays),
        with(Verdict::Unresolved),
        with(Verdict::AtKinks),
    );
    let steps: Vec<f64> = report
        .rechecks
        .iter()
        .flat_map(|r| r.looks[1..].iter().map(|look| look.0))
        .collect();
    let smaller = steps.iter().all(|&step| step < plan.h);
    let smallest_tried = steps.iter().copied().fold(plan.h, f64::min);
    let dtype = args.dtype.name();
    let all: Vec<&str> = report.rechecks.iter().map(|r| r.name.as_str()).collect();
    let mut message = format!(
        "gradient check failed for {} (mean difference above {:e} at h = {:e})",
        all.join(", "),
        plan.tolerance,
        plan.h
    );
    if !stays.is_empty() {
        message += &format!(
            ": backprop disagrees with the numerical gradient, and not because of the step: over the largest differences, the difference stays as the step shrinks ({})",
            figures(&stays)
        );
        if report.kinks {
            message += &format!(
                ". One cause is not backprop's: a ReLU input within {smallest_tried:e} of 0 (or a max-pool window whose two largest values are that close) is crossed at every step tried, and the quotient there is about half the jump in slope; a ReLU input of exactly 0 is crossed at any step, and zero biases on MNIST's blank margins give such inputs (a first convolution's b), as does BatchNorm over few --samples. Check such a parameter on other --samples (or another --seed) before suspecting backprop"
            );
        }
    } else if !passes.is_empty() && passes.len() + kinked.len() == all.len() {
        message += &format!(
            ", but the numerical gradient is the suspect, not backprop: with a step {} the largest differences are within the tolerance ({})",
            if smaller { "smaller than h" } else { "larger than h" },
            figures(&passes)
        );
    } else if unresolved.is_empty() {
        message.push_str(", and the step is a likelier suspect than backprop");
    } else {
        message.push_str(", and further looks with other steps cannot say whether backprop or the step is to blame");
    }
    if !kinked.is_empty() {
        message += &format!(
            ". These are not backprop's: once the elements that cross a ReLU or max-pool kink within h are set aside, they are within the tolerance ({})",
            kinked
                .iter()
                .map(|r| format!("{}: {} at kinks, {:.1e} without them", r.name, r.kinks, r.mean_without_kinks))
                .collect::<Vec<String>>()
                .join("; ")
        );
    }
    if !passes.is_empty() && passes.len() + kinked.len() < all.len() {
        message += &format!(
            ". With another step these are within the tolerance, so the numerical gradient was off: {}",
            figures(&passes)
        );
    }
    if !shrinks.is_empty() {
        message += &format!(
            ". These shrink with the step but stay above the tolerance, as the numerical gradient's error does and a wrong backprop's would not ({}){}",
            figures(&shrinks),
            if smaller {
                ""
            } else {
                ": a larger --h should shrink them further"
            }
        );
    }
    if !unresolved.is_empty() {
        let why = if !smaller {
            format!(
                "a step smaller than h would drown in {dtype}'s rounding, so this check cannot tell a kink from a backprop error{}",
                if args.dtype == Dtype::F32 {
                    ": run it with --dtype f64, whose rounding allows smaller steps"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "every step tried is far above this model's default {:e}, where a kink within the step is worth about half a jump whatever the step: try the default --h",
                plan.default_h
            )
        };
        message += &format!(". These do not shrink ({}): {why}", figures(&unresolved));
    }
    // Causes and remedies that fit.
    if let Some(note) = step_note(plan, args.dtype, report.loss) {
        message += &format!(". {note}");
    }
    let numerical_side = !passes.is_empty() || !shrinks.is_empty();
    if numerical_side && smaller && report.kinks {
        message.push_str(". A step of h crosses ReLU's kink at 0 (or swaps a max-pool window's maximum) wherever a unit's input is within h of it, and the quotient there measures a jump, not a derivative; more --samples make more such inputs");
        let deep_std_mlp = args.net.is_none()
            && !plan.convnet
            && args.mlp.hidden.as_ref().is_some_and(|h| h.len() >= 2)
            && matches!(args.mlp.init, None | Some(Init::Std(_)));
        if deep_std_mlp {
            message.push_str(", and so do small initial weights in a deep mlp (try --init he)");
        }
    } else if numerical_side && smaller {
        message.push_str(". That is the central difference's truncation error, of order h^2");
    }
    let all_passed = passes.len() == all.len();
    if plan.batch_norm && plan.samples < 10 && !all_passed {
        message += &format!(
            ". BatchNorm over {} images divides by the spread of {} values, which magnifies every step: try --samples 10 (its default)",
            plan.samples, plan.samples
        );
    }
    if all_passed {
        // The step at which every one of them passed.
        let passed_at = passes.iter().map(|r| r.looks.last().map_or(plan.h, |look| look.0));
        let step = if smaller {
            passed_at.fold(plan.h, f64::min)
        } else {
            passed_at.fold(plan.h, f64::max)
        };
        message += &format!(". Try --h {step:e}");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_net(seed: u64) -> (Sequential<f64>, Tensor<f64>, Vec<usize>) {
        let spec = NetSpec::new(&[6])
            .affine(5)
            .batch_norm()
            .relu()
            .dropout(0.3)
            .affine(3)
            .init(Init::He)
            .weight_decay(0.1);
        let net = spec.build::<f64>(seed).unwrap();
        let mut rng = LayerRng::seed_from_u64(seed);
        let x = Tensor::randn(&[4, 6], 1.0, &mut rng);
        (net, x, vec![0, 2, 1, 2])
    }

    #[test]
    fn numerical_elements_are_the_librarys_numerical_gradient() {
        let (net, x, labels) = small_net(7);
        let target = Target::Labels(&labels);
        let library = layers::gradcheck::numerical_gradient(&net, &x, target, 1e-5, 3).unwrap();
        let all: Vec<(usize, usize)> = library
            .iter()
            .enumerate()
            .flat_map(|(p, (_, g))| (0..g.numel()).map(move |e| (p, e)))
            .collect();
        let ours = numerical_elements(&net, &x, target, 1e-5, 3, &all, &ProgressBar::hidden());
        let theirs: Vec<f64> = library.iter().flat_map(|(_, g)| g.as_slice().to_vec()).collect();
        assert_eq!(ours, theirs, "bit for bit");
        // Any subset, in any chunking, gives the same values.
        let some: Vec<(usize, usize)> = all.iter().copied().step_by(3).collect();
        let subset = numerical_elements(&net, &x, target, 1e-5, 3, &some, &ProgressBar::hidden());
        let expected: Vec<f64> = (0..all.len()).step_by(3).map(|i| theirs[i]).collect();
        assert_eq!(subset, expected);
    }

    /// A wrong backprop term stays when the step shrinks; the numerical
    /// gradient's own error (truncation, here with a large step) moves.
    #[test]
    fn a_wrong_backprop_stays_and_a_bad_step_moves() {
        let (mut net, x, labels) = small_net(11);
        let target = Target::Labels(&labels);
        net.gradient(&x, target, &mut layer_stream(5)).unwrap();
        let w1: Vec<f64> = net.params()[0].grad.as_slice().to_vec();
        let elements: Vec<(usize, usize)> = (0..w1.len()).map(|e| (0, e)).collect();
        let at = |h: f64| numerical_elements(&net, &x, target, h, 5, &elements, &ProgressBar::hidden());
        let recheck = |bp: &[f64], steps: &[f64]| Recheck {
            name: "W1".into(),
            elements: bp.len(),
            looks: steps.iter().map(|&h| (h, mean_abs_diff(bp, &at(h)))).collect(),
            kinks: 0,
            mean_without_kinks: f64::INFINITY,
        };
        // Backprop off by 1e-4 on every element: the difference stays.
        let wrong: Vec<f64> = w1.iter().map(|g| g + 1e-4).collect();
        let r = recheck(&wrong, &[1e-4, 1e-5, 1e-6]);
        assert_eq!(r.verdict(1e-4, 1e-8), Verdict::Stays, "{:?}", r.looks);
        assert!(r.looks.iter().all(|look| (look.1 - 1e-4).abs() < 1e-6), "{:?}", r.looks);
        // A right backprop with far too large a step: the difference shrinks.
        let r = recheck(&w1, &[0.3, 0.03]);
        assert!(r.looks[1].1 < r.looks[0].1 / 3.0, "{:?}", r.looks);
        assert!(matches!(
            r.verdict(1e-4, 1e-8),
            Verdict::Shrinks | Verdict::PassesAtStep
        ));
        assert_eq!(r.verdict(1e-4, r.looks[1].1), Verdict::PassesAtStep);
    }

    #[test]
    fn a_difference_that_stays_blames_backprop_only_near_the_default_step() {
        let look = |looks: &[(f64, f64)]| Recheck {
            name: "W".into(),
            elements: 1,
            looks: looks.to_vec(),
            kinks: 0,
            mean_without_kinks: f64::INFINITY,
        };
        let (default_h, tolerance) = (1e-4, 1e-8);
        let verdict = |r: Recheck| r.verdict(default_h, tolerance);
        assert_eq!(verdict(look(&[(1e-4, 1e-6), (1e-5, 5e-9)])), Verdict::PassesAtStep);
        assert_eq!(
            verdict(look(&[(1e-4, 1e-6), (1e-5, 8e-7), (1e-6, 5e-9)])),
            Verdict::PassesAtStep
        );
        assert_eq!(verdict(look(&[(1e-4, 1e-6), (1e-5, 1e-7)])), Verdict::Shrinks);
        assert_eq!(
            verdict(look(&[(1e-4, 1e-6), (1e-5, 0.9e-6), (1e-6, 2e-6)])),
            Verdict::Stays
        );
        assert_eq!(verdict(look(&[(1e-4, f64::NAN), (1e-5, 1e-6)])), Verdict::Stays);
        // A look at a larger step only (h / 10 would round too much), or
        // every step far above the default.
        assert_eq!(verdict(look(&[(1e-4, 1e-6), (1e-3, 0.9e-6)])), Verdict::Unresolved);
        assert_eq!(
            look(&[(0.3, 1e-3), (3e-2, 1e-3), (3e-3, 1e-3)]).verdict(1e-5, 1e-8),
            Verdict::Unresolved
        );
        // A larger step that gets out of rounding passes.
        assert_eq!(verdict(look(&[(1e-4, 1e-6), (1e-3, 1e-9)])), Verdict::PassesAtStep);
    }

    #[test]
    fn recheck_steps_and_largest_differences() {
        // f32, loss 2.3, tolerance 1e-3: steps below 2.7e-4 round too much.
        assert_eq!(further_steps(1e-2, Dtype::F32, 2.3, 1e-3), [1e-3]);
        assert_eq!(further_steps(3e-4, Dtype::F32, 2.3, 1e-3), [3e-3]);
        assert_eq!(further_steps(1e-4, Dtype::F64, 2.3, 1e-8), [1e-5, 1e-6, 1e-7]);
        assert_eq!(further_steps(1e-6, Dtype::F64, 2.3, 1e-8), [1e-7]);
        let a = [0.0, 1.0, 2.0, 3.0, f64::NAN];
        let n = [0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(largest_differences(&a, &n, 2), vec![3, 4]);
        assert_eq!(largest_differences(&a, &n, 9), vec![0, 1, 2, 3, 4]);
        assert_eq!(duration(30.0), "30.0 s");
        assert_eq!(duration(600.0), "10 minutes");
        assert_eq!(duration(40.0 * 86_400.0), "40 days");
    }

    #[test]
    fn a_kink_within_the_step_is_told_from_a_wrong_derivative() {
        let h = 1e-6;
        let sides = |f: &dyn Fn(f64) -> f64, p: f64, h: f64| ((f(p) - f(p - h)) / h, (f(p + h) - f(p)) / h);
        // f(p) = max(p, 0) at p = 0 exactly (a zero bias on a blank input):
        // backprop takes slope 0; the sides are 0 and 1 at any step.
        let relu = |p: f64| p.max(0.0);
        assert!(at_kink(0.0, sides(&relu, 0.0, h), sides(&relu, 0.0, h / 10.0), 1e-9));
        // A smooth f(p) = 50 p^2 at p = 1: the sides differ by 100 h = 1e-4,
        // far more than a backprop off by 1e-5; but the gap shrinks with
        // the step, so the wrong backprop is not excused.
        let steep = |p: f64| 50.0 * p * p;
        let (wide, narrow) = (sides(&steep, 1.0, h), sides(&steep, 1.0, h / 10.0));
        assert!((wide.1 - wide.0) > 1e-5);
        assert!(!at_kink(100.0 + 1e-5, wide, narrow, 1e-9));
        // Nor is a gap at h / 10 that rounding alone could make.
        assert!(!at_kink(0.0, sides(&relu, 0.0, h), sides(&relu, 0.0, h / 10.0), 2.0));
    }
}
