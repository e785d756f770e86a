use crate::{Augment, ModelCost, TrainError};
use layers::{Activation, Init, Mlp, NetSpec, OptimizerConfig, OptimizerKind, Sequential, SimpleConvNet};
use std::fmt;
use tensor::Element;

/// Largest batch size accepted: far beyond anything useful here, small
/// enough that a typo cannot ask for terabytes.
pub const MAX_BATCH: usize = 1 << 16;

/// Most iterations a run may have (the loss of every one is kept: 40 MB).
pub const MAX_ITERS: usize = 10_000_000;

/// Most worker threads: beyond any machine this runs on, small enough that
/// a typo does not spawn threads for minutes.
pub const MAX_THREADS: usize = 256;

/// The book's fully connected net (`TwoLayerNet`, `MultiLayerNet(Extend)`)
/// without its outer widths: those come from the data.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpOptions {
    /// Hidden layer widths; `[50]` is the book's two-layer net, `[100, 100]` is deeper.
    pub hidden: Vec<usize>,
    /// The activation after every hidden layer.
    pub activation: Activation,
    /// How the weights are drawn.
    pub init: Init,
    /// A BatchNorm after every hidden Affine layer.
    pub batch_norm: bool,
    /// A Dropout of this ratio after every hidden activation.
    pub dropout: Option<f64>,
}

impl Default for MlpOptions {
    /// The book's chapter 5: one hidden layer of 50 ReLUs, `W ~ 0.01 N(0, 1)`.
    fn default() -> Self {
        MlpOptions {
            hidden: vec![50],
            activation: Activation::Relu,
            init: Init::Std(0.01),
            batch_norm: false,
            dropout: None,
        }
    }
}

/// The network a run trains: one of the book's, or any net of the builder.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// A fully connected net, its input and output widths the data's.
    Mlp(MlpOptions),
    /// The book's `SimpleConvNet` (chapter 7), on square one-channel images.
    SimpleConvNet,
    /// The book's `DeepConvNet` (chapter 8), on 28x28 images of 10 classes.
    DeepConvNet,
    /// Any net of the builder; its input shape must hold the data's features.
    /// Its weight decay is [`TrainConfig::weight_decay`] (the net's own must be 0).
    Net(NetSpec),
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec::Mlp(MlpOptions::default())
    }
}

impl ModelSpec {
    /// A short name: `mlp`, `simple-convnet`, `deep-convnet` or `net`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Mlp(_) => "mlp",
            ModelSpec::SimpleConvNet => "simple-convnet",
            ModelSpec::DeepConvNet => "deep-convnet",
            ModelSpec::Net(_) => "net",
        }
    }

    /// The net for examples of `features` values (square images for the
    /// book's convnets) and `classes` classes, without weight decay. Fails
    /// with [`TrainError::Data`] when the model does not fit those sizes,
    /// [`TrainError::InvalidSetting`] for an mlp without hidden layers, and
    /// [`TrainError::Layer`] for mlp options the network refuses.
    pub fn net(&self, features: usize, classes: usize) -> Result<NetSpec, TrainError> {
        let side = (features as f64).sqrt().round() as usize;
        let square = side * side == features;
        let misfit = || {
            TrainError::Data(format!(
                "the {} does not fit examples of {features} values and {classes} classes",
                self.name()
            ))
        };
        Ok(match self {
            ModelSpec::Mlp(options) => {
                if options.hidden.is_empty() {
                    return Err(TrainError::setting("hidden", "[]", "at least one width"));
                }
                let mut sizes = vec![features];
                sizes.extend_from_slice(&options.hidden);
                sizes.push(classes);
                let mlp = Mlp::new(&sizes)
                    .activation(options.activation)
                    .init(options.init)
                    .batch_norm(options.batch_norm)
                    .dropout(options.dropout);
                mlp.validate()?;
                mlp.net()
            }
            ModelSpec::SimpleConvNet if square => SimpleConvNet {
                input: (1, side, side),
                classes,
                ..SimpleConvNet::default()
            }
            .net(),
            ModelSpec::DeepConvNet if features == 784 && classes == 10 => NetSpec::deep_convnet(),
            ModelSpec::Net(net) => {
                if net.input_size() != features {
                    return Err(TrainError::Data(format!(
                        "the net takes examples of shape {:?} ({} values) but the data has {features} values per example",
                        net.input,
                        net.input_size()
                    )));
                }
                net.clone()
            }
            _ => return Err(misfit()),
        })
    }
}

/// The recipe of a run: the model, and everything about training it, once.
/// [`TrainConfig::default`] is the book's chapter 5: 784-50-10 with ReLU,
/// `W ~ 0.01 N(0,1)`, SGD at 0.1, batches of 100 drawn with replacement,
/// 10000 iterations, evaluation once per epoch.
///
/// ```
/// use layers::{NetSpec, OptimizerConfig, OptimizerKind};
/// use train::{ModelSpec, TrainConfig};
///
/// let config = TrainConfig {
///     model: ModelSpec::Net(NetSpec::new(&[784]).affine(100).relu().affine(10)),
///     optimizer: OptimizerConfig::new(OptimizerKind::Adam),
///     epochs: Some(2),
///     ..TrainConfig::default()
/// };
/// config.validate().unwrap();
/// assert_eq!(config.iterations(60_000).unwrap(), 1200);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelSpec,
    /// L2 weight decay lambda, for every model (0: none).
    pub weight_decay: f64,
    /// The optimizer and its settings.
    pub optimizer: OptimizerConfig,
    /// Examples per step.
    pub batch_size: usize,
    /// Number of steps, unless `epochs` is given.
    pub iters: usize,
    /// Train for this many epochs instead (`epochs * iters_per_epoch` steps).
    pub epochs: Option<usize>,
    /// Train on the first this-many training examples only.
    pub train_size: Option<usize>,
    /// Evaluate train and test accuracy every this many iterations; `None`
    /// means once per epoch, as the book does.
    pub eval_every: Option<usize>,
    /// Measure the training accuracy on the first this-many training examples
    /// only (`None`: all of them); the test accuracy always uses the whole test set.
    pub eval_train_size: Option<usize>,
    /// Seeds the weights (stream 0), the batch draws (stream 1) and Dropout's masks (stream 2).
    pub seed: u64,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// How the optimizer's learning rate changes over the run.
    pub lr_schedule: LrSchedule,
    /// Random small affine distortions of each training image as its batch
    /// is gathered (`None`: the images as they are, the book's recipes).
    pub augment: Option<Augment>,
}

/// How the learning rate changes over a run of `T` steps, from the
/// optimizer's rate `lr` (chapter 8 names learning-rate decay; the book's
/// recipes keep it constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LrSchedule {
    /// `lr` at every step: the book's recipes.
    #[default]
    Constant,
    /// `lr` for the first half of the run, `lr / 10` to three quarters,
    /// `lr / 100` after (the step decay of the ResNet papers, in halves and
    /// quarters of the run rather than fixed epochs).
    Step,
    /// Half a cosine from `lr` towards 0: `lr (1 + cos(pi t / T)) / 2` at
    /// step `t` (never 0: the last step is `t = T - 1`).
    Cosine,
}

impl LrSchedule {
    /// The rate at step `step` (from 0) of `steps`, from the optimizer's `base`.
    pub fn rate(self, base: f64, step: usize, steps: usize) -> f64 {
        let steps = steps.max(1);
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Step => {
                // In whole steps, so that the switch is exact: 2 * step >= steps.
                if 4 * step >= 3 * steps {
                    base / 100.0
                } else if 2 * step >= steps {
                    base / 10.0
                } else {
                    base
                }
            }
            LrSchedule::Cosine => {
                let progress = step.min(steps) as f64 / steps as f64;
                base * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Step => "step",
            LrSchedule::Cosine => "cosine",
        })
    }
}

impl std::str::FromStr for LrSchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "constant" => Ok(LrSchedule::Constant),
            "step" => Ok(LrSchedule::Step),
            "cosine" => Ok(LrSchedule::Cosine),
            other => Err(format!("unknown schedule '{other}'; use constant, step or cosine")),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelSpec::default(),
            weight_decay: 0.0,
            optimizer: OptimizerConfig::new(OptimizerKind::Sgd).with_learning_rate(0.1),
            batch_size: 100,
            iters: 10_000,
            epochs: None,
            train_size: None,
            eval_every: None,
            eval_train_size: None,
            seed: 42,
            threads: 0,
            lr_schedule: LrSchedule::Constant,
            augment: None,
        }
    }
}

impl TrainConfig {
    /// The model's net for `features` inputs and `classes` outputs, with the
    /// run's weight decay. Fails as [`ModelSpec::net`] does.
    pub fn net(&self, features: usize, classes: usize) -> Result<NetSpec, TrainError> {
        Ok(self.model.net(features, classes)?.weight_decay(self.weight_decay))
    }

    /// The seeded network for examples of `features` values and `classes`
    /// classes (weights from stream 0 of [`TrainConfig::seed`]). Fails as
    /// [`TrainConfig::net`] does, or with [`TrainError::Layer`] when the
    /// network cannot be built.
    pub fn build_model<T: Element>(&self, features: usize, classes: usize) -> Result<Sequential<T>, TrainError> {
        Ok(self.net(features, classes)?.build(self.seed)?)
    }

    /// Roughly how many bytes a run needs for its model and buffers (the
    /// data set not counted), from the net's layers: every parameter as
    /// value, gradient, and spare value and state for the divergence guard
    /// (none for SGD, one tensor for Momentum, Nesterov, AdaGrad and RMSprop,
    /// two for Adam: each twice); every layer's output (and a convolution's
    /// unfolded input) for a batch and its gradient, plus one evaluation
    /// chunk of outputs per thread. Counted in f32, 4 bytes a value. Fails
    /// as [`TrainConfig::net`] does.
    pub fn memory_estimate(&self, features: usize, classes: usize, threads: usize) -> Result<f64, TrainError> {
        let net = self.net(features, classes)?;
        let cost = ModelCost::of(&net.input, &net.layer_specs()?, classes)?;
        let state = match self.optimizer.kind {
            OptimizerKind::Sgd => 0.0,
            OptimizerKind::Adam => 2.0,
            _ => 1.0,
        };
        let params = 4.0 * cost.params as f64 * (3.0 + 2.0 * state);
        let eval_rows = crate::evaluate::chunk_rows(cost.widest) * threads.max(1);
        Ok(params + cost.batch_bytes(self.batch_size, 2.0) + cost.batch_bytes(eval_rows, 1.0))
    }

    /// Refuses settings that cannot train, before any work starts: a
    /// [`TrainError::InvalidSetting`] naming the first field out of range, or
    /// a [`TrainError::Layer`] for model or optimizer settings the network
    /// refuses. An mlp's widths are checked for MNIST-sized data here, and
    /// again for the data's sizes when the model is built.
    pub fn validate(&self) -> Result<(), TrainError> {
        let setting =
            |field, value: &dyn fmt::Display, expected: String| Err(TrainError::setting(field, value, expected));
        match &self.model {
            // Widths, init and dropout as the network checks them, for
            // MNIST-sized data (the trainer checks again with the data's sizes).
            ModelSpec::Mlp(_) => drop(self.model.net(784, 10)?),
            ModelSpec::Net(net) => {
                if net.weight_decay != 0.0 {
                    return setting(
                        "model weight_decay",
                        &net.weight_decay,
                        "0: a run's weight decay is TrainConfig::weight_decay".into(),
                    );
                }
                net.layer_specs()?;
            }
            ModelSpec::SimpleConvNet | ModelSpec::DeepConvNet => {}
        }
        // Finite in f32 too, where training runs: 1e300 is infinite there.
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0 && (self.weight_decay as f32).is_finite()) {
            return setting(
                "weight_decay",
                &layers::readable(self.weight_decay),
                "a number >= 0 (below 3.4e38, f32's largest)".into(),
            );
        }
        self.optimizer.validate()?;
        if let Some(augment) = &self.augment {
            augment.validate()?;
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return setting("batch_size", &self.batch_size, format!("between 1 and {MAX_BATCH}"));
        }
        if self.iters == 0 || self.iters > MAX_ITERS {
            return setting("iters", &self.iters, format!("between 1 and {MAX_ITERS}"));
        }
        let at_least_one = [
            ("epochs", self.epochs),
            ("train_size", self.train_size),
            ("eval_every", self.eval_every),
            ("eval_train_size", self.eval_train_size),
        ];
        if let Some((field, _)) = at_least_one.iter().find(|(_, value)| *value == Some(0)) {
            return setting(field, &0, "at least 1".into());
        }
        if self.threads > MAX_THREADS {
            return setting(
                "threads",
                &self.threads,
                format!("at most {MAX_THREADS} (0 uses every core)"),
            );
        }
        Ok(())
    }

    /// Steps per epoch for a training set of `train_len` images: the book's
    /// `max(train_size / batch_size, 1)`.
    pub fn iters_per_epoch(&self, train_len: usize) -> usize {
        (train_len / self.batch_size.max(1)).max(1)
    }

    /// The number of steps for a training set of `train_len` examples:
    /// `iters`, or `epochs` epochs. Fails with [`TrainError::InvalidSetting`]
    /// on `epochs` when they come to more than [`MAX_ITERS`] steps.
    pub fn iterations(&self, train_len: usize) -> Result<usize, TrainError> {
        let Some(epochs) = self.epochs else {
            return Ok(self.iters);
        };
        epochs
            .checked_mul(self.iters_per_epoch(train_len))
            .filter(|&n| n <= MAX_ITERS)
            .ok_or_else(|| {
                TrainError::setting(
                    "epochs",
                    epochs,
                    format!(
                        "at most {} ({} steps each, {MAX_ITERS} iterations in all)",
                        MAX_ITERS / self.iters_per_epoch(train_len),
                        self.iters_per_epoch(train_len)
                    ),
                )
            })
    }

    /// Iterations between evaluations for a training set of `train_len`
    /// examples: `eval_every`, or one epoch.
    pub fn eval_interval(&self, train_len: usize) -> usize {
        self.eval_every.unwrap_or(self.iters_per_epoch(train_len))
    }

    /// The settings as JSON, for the run folder: the resolved step count,
    /// training set size and evaluation interval for `train_len` training
    /// examples, and the model's own settings (an mlp's options, a net's text form).
    pub fn to_json(&self, train_len: usize) -> serde_json::Value {
        let mut json = serde_json::json!({
            "model": self.model.name(),
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer.kind.to_string(),
            "learning_rate": self.optimizer.learning_rate,
            "lr_schedule": self.lr_schedule.to_string(),
            "augment": self.augment.map(|a| serde_json::json!({"shift": a.shift, "rotate": a.rotate, "scale": a.scale})),
            "momentum": self.optimizer.momentum,
            "decay_rate": self.optimizer.decay_rate,
            "beta1": self.optimizer.beta1,
            "beta2": self.optimizer.beta2,
            "batch_size": self.batch_size,
            "iters": self.iterations(train_len).unwrap_or(self.iters),
            "epochs": self.epochs,
            "train_size": train_len,
            "eval_every": self.eval_interval(train_len),
            "eval_train_size": self.eval_train_size,
            "seed": self.seed,
            "threads": self.threads,
        });
        match &self.model {
            ModelSpec::Mlp(mlp) => {
                json["hidden"] = serde_json::json!(mlp.hidden);
                json["activation"] = serde_json::json!(mlp.activation.to_string());
                json["init"] = serde_json::json!(mlp.init.to_string());
                json["batch_norm"] = serde_json::json!(mlp.batch_norm);
                json["dropout"] = serde_json::json!(mlp.dropout);
            }
            ModelSpec::Net(net) => json["net"] = serde_json::json!(net.to_string()),
            ModelSpec::SimpleConvNet | ModelSpec::DeepConvNet => {}
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp(options: MlpOptions) -> TrainConfig {
        TrainConfig {
            model: ModelSpec::Mlp(options),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_books_and_valid() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        assert_eq!(c.eval_interval(60000), 600);
        assert_eq!(c.net(784, 10).unwrap(), NetSpec::two_layer_net(784, 50, 10));
        assert_eq!(c.iterations(60000).unwrap(), 10_000);
        let by_epochs = TrainConfig { epochs: Some(201), ..c };
        // The book's overfitting run: 300 images, batches of 100, 3 steps an epoch.
        assert_eq!(by_epochs.iterations(300).unwrap(), 603);
        assert_eq!(by_epochs.iters_per_epoch(50), 1);
    }

    #[test]
    fn every_model_is_a_net_of_the_data_sizes() {
        let net = NetSpec::new(&[1, 28, 28]).conv(4, 5).relu().pool(2).affine(10);
        let config = TrainConfig {
            model: ModelSpec::Net(net.clone()),
            weight_decay: 0.5,
            ..TrainConfig::default()
        };
        assert_eq!(config.net(784, 10).unwrap(), net.weight_decay(0.5));
        assert!(matches!(config.net(100, 10), Err(TrainError::Data(_))));
        let simple = TrainConfig {
            model: ModelSpec::SimpleConvNet,
            ..TrainConfig::default()
        };
        assert_eq!(simple.net(64, 3).unwrap().input, vec![1, 8, 8]);
        assert!(matches!(simple.net(63, 3), Err(TrainError::Data(_))));
        // Weight decay is the run's: a net that sets its own is refused.
        let twice = TrainConfig {
            model: ModelSpec::Net(NetSpec::new(&[4]).affine(2).weight_decay(0.1)),
            ..TrainConfig::default()
        };
        assert!(matches!(
            twice.validate(),
            Err(TrainError::InvalidSetting {
                field: "model weight_decay",
                ..
            })
        ));
    }

    #[test]
    fn memory_estimate_counts_parameters_state_and_batches() {
        let book = TrainConfig::default();
        let params = (784 * 50 + 50 + 50 * 10 + 10) as f64;
        // SGD: value, gradient, spare; outputs of Affine, ReLU, Affine and
        // the softmax for a batch and its gradient, and one chunk per thread.
        let rows = (100 * 2 + 500) as f64;
        let widths = (50 * 2 + 10 * 2) as f64;
        let estimate = |c: &TrainConfig, threads| c.memory_estimate(784, 10, threads).unwrap();
        assert_eq!(estimate(&book, 1), 4.0 * (params * 3.0 + rows * widths));
        let adam = TrainConfig {
            optimizer: OptimizerConfig::new(OptimizerKind::Adam),
            ..TrainConfig::default()
        };
        assert_eq!(estimate(&adam, 1) - estimate(&book, 1), 4.0 * params * 4.0);
        let huge = TrainConfig {
            batch_size: 65536,
            ..mlp(MlpOptions {
                hidden: vec![65536],
                ..MlpOptions::default()
            })
        };
        assert!(estimate(&huge, 2) > 30e9, "the batch of 65536 x 65536 outputs");
        // A convnet counts its outputs and its unfolded inputs: a batch of
        // 65536 for SimpleConvNet is tens of GB, refused before the work.
        let convnet = TrainConfig {
            model: ModelSpec::SimpleConvNet,
            ..TrainConfig::default()
        };
        let big_convnet = TrainConfig {
            batch_size: 65536,
            ..convnet.clone()
        };
        assert!(estimate(&convnet, 2) > 5e7);
        assert!(estimate(&big_convnet, 2) > 2.5e10);
    }

    #[test]
    fn every_bad_value_is_refused_naming_its_field() {
        type Spoil = fn(&mut TrainConfig);
        fn with_mlp(c: &mut TrainConfig, change: fn(&mut MlpOptions)) {
            if let ModelSpec::Mlp(options) = &mut c.model {
                change(options);
            }
        }
        let cases: [(Spoil, &str); 16] = [
            (|c| with_mlp(c, |m| m.hidden.clear()), "hidden"),
            (|c| with_mlp(c, |m| m.hidden = vec![50, 0]), "between 1 and"),
            (|c| with_mlp(c, |m| m.hidden = vec![1 << 40]), "between 1 and"),
            (|c| c.optimizer.learning_rate = -0.1, "learning_rate"),
            (|c| c.optimizer.learning_rate = f64::NAN, "learning_rate"),
            (|c| c.optimizer.beta1 = 1.0, "beta1"),
            (|c| c.batch_size = 0, "batch_size"),
            (|c| c.batch_size = 1 << 30, "batch_size"),
            (|c| c.iters = 0, "iters"),
            (|c| c.iters = usize::MAX, "iters"),
            (|c| c.eval_every = Some(0), "eval_every"),
            (|c| with_mlp(c, |m| m.init = Init::Std(0.0)), "std"),
            (|c| with_mlp(c, |m| m.dropout = Some(1.5)), "dropout"),
            (|c| c.weight_decay = f64::NAN, "weight_decay"),
            (|c| c.threads = 100_000, "threads"),
            (|c| c.epochs = Some(0), "epochs"),
        ];
        for (spoil, needle) in cases {
            let mut c = TrainConfig::default();
            spoil(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let too_long = TrainConfig {
            epochs: Some(usize::MAX / 2),
            ..TrainConfig::default()
        };
        assert!(too_long.iterations(60000).is_err());
    }

    #[test]
    fn schedules_start_at_the_rate_and_fall_as_they_say() {
        let steps = 1000;
        for schedule in [LrSchedule::Constant, LrSchedule::Step, LrSchedule::Cosine] {
            assert_eq!(schedule.rate(0.1, 0, steps), 0.1, "{schedule}");
            assert_eq!(schedule.to_string().parse::<LrSchedule>(), Ok(schedule));
            // Positive at every step: a valid learning rate throughout.
            assert!((0..steps).all(|t| schedule.rate(0.1, t, steps) > 0.0), "{schedule}");
        }
        assert_eq!(LrSchedule::Constant.rate(0.1, 999, steps), 0.1);
        let step = |t| LrSchedule::Step.rate(0.1, t, steps);
        assert_eq!((step(499), step(500), step(749), step(750)), (0.1, 0.01, 0.01, 0.001));
        let cosine = |t| LrSchedule::Cosine.rate(0.1, t, steps);
        assert!((cosine(500) - 0.05).abs() < 1e-15);
        assert!(cosine(999) < 1e-6 && cosine(999) > 0.0);
        assert!((1..steps).all(|t| cosine(t) < cosine(t - 1)), "falls at every step");
        assert!("linear".parse::<LrSchedule>().unwrap_err().contains("cosine"));
    }
}
