use crate::TrainError;
use layers::{Activation, Init, Mlp, NetSpec, OptimizerConfig, OptimizerKind, Sequential, SimpleConvNet};
use std::fmt;
use std::str::FromStr;
use tensor::Element;

/// Largest batch size accepted: far beyond anything useful here, small
/// enough that a typo cannot ask for terabytes.
pub const MAX_BATCH: usize = 1 << 16;

/// Most iterations a run may have (the loss of every one is kept: 40 MB).
pub const MAX_ITERS: usize = 10_000_000;

/// Most worker threads: beyond any machine this runs on, small enough that
/// a typo does not spawn threads for minutes.
pub const MAX_THREADS: usize = 256;

/// Which network a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// A fully connected network from the config's widths and chapter-6 options.
    #[default]
    Mlp,
    /// The book's `SimpleConvNet` (chapter 7).
    SimpleConvNet,
    /// The book's `DeepConvNet` (chapter 8).
    DeepConvNet,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Mlp => "mlp",
            ModelKind::SimpleConvNet => "simple-convnet",
            ModelKind::DeepConvNet => "deep-convnet",
        })
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mlp" => Ok(ModelKind::Mlp),
            "simple-convnet" => Ok(ModelKind::SimpleConvNet),
            "deep-convnet" => Ok(ModelKind::DeepConvNet),
            other => Err(format!(
                "unknown model '{other}'; use mlp, simple-convnet or deep-convnet"
            )),
        }
    }
}

/// The recipe of a run. [`TrainConfig::default`] is the book's chapter 5:
/// 784-50-10 with ReLU, `W ~ 0.01 N(0,1)`, SGD at 0.1, batches of 100 drawn
/// with replacement, 10000 iterations, evaluation once per epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The network; the fields up to `weight_decay` shape an [`ModelKind::Mlp`] only.
    pub model: ModelKind,
    /// Hidden layer widths; `[50]` is the book's two-layer net, `[100, 100]` is deeper.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub init: Init,
    /// A BatchNorm after every hidden Affine layer.
    pub batch_norm: bool,
    /// A Dropout of this ratio after every hidden activation.
    pub dropout: Option<f64>,
    /// L2 weight decay lambda.
    pub weight_decay: f64,
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    /// Number of steps, unless `epochs` is given.
    pub iters: usize,
    /// Train for this many epochs instead (`epochs * iters_per_epoch` steps).
    pub epochs: Option<usize>,
    /// Train on the first this-many training images only.
    pub train_size: Option<usize>,
    /// Evaluate train and test accuracy every this many iterations; `None`
    /// means once per epoch, as the book does.
    pub eval_every: Option<usize>,
    /// Measure the training accuracy on the first this-many training images
    /// only (`None`: all of them); the test accuracy always uses the whole test set.
    pub eval_train_size: Option<usize>,
    /// Seeds the weights (stream 0), the batch draws (stream 1) and Dropout's masks (stream 2).
    pub seed: u64,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::Mlp,
            hidden: vec![50],
            activation: Activation::Relu,
            init: Init::Std(0.01),
            batch_norm: false,
            dropout: None,
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
        }
    }
}

impl TrainConfig {
    /// The network recipe for `input` features and `output` classes.
    pub fn mlp(&self, input: usize, output: usize) -> Mlp {
        let mut sizes = vec![input];
        sizes.extend_from_slice(&self.hidden);
        sizes.push(output);
        Mlp::new(&sizes)
            .activation(self.activation)
            .init(self.init)
            .batch_norm(self.batch_norm)
            .dropout(self.dropout)
            .weight_decay(self.weight_decay)
    }

    /// The seeded network for examples of `features` values (square images
    /// for the convolutional nets) and `classes` classes.
    pub fn build_model<T: Element>(&self, features: usize, classes: usize) -> Result<Sequential<T>, TrainError> {
        let side = (features as f64).sqrt().round() as usize;
        let square = side * side == features;
        let model = match self.model {
            ModelKind::Mlp => self.mlp(features, classes).build(self.seed)?,
            ModelKind::SimpleConvNet if square => SimpleConvNet {
                input: (1, side, side),
                classes,
                ..SimpleConvNet::default()
            }
            .build(self.seed)?,
            ModelKind::DeepConvNet if features == 784 && classes == 10 => NetSpec::deep_convnet().build(self.seed)?,
            kind => {
                return Err(TrainError::InvalidConfig(format!(
                    "{kind} does not fit images of {features} pixels and {classes} classes"
                )))
            }
        };
        Ok(model.with_weight_decay(self.weight_decay)?)
    }

    /// Roughly how many bytes an mlp run needs for its model and buffers
    /// (the data set not counted): every parameter as value, gradient, spare
    /// and optimizer state (two tensors for Momentum-like optimizers, four for
    /// Adam: double-buffered), and every layer's output and gradient for a
    /// batch, plus one evaluation chunk of outputs per thread. The
    /// convolutional nets are the book's, of fixed size (under 1 GiB); this
    /// counts their flag-independent part as 0.
    pub fn memory_estimate(&self, features: usize, classes: usize, threads: usize) -> f64 {
        if self.model != ModelKind::Mlp {
            return 0.0;
        }
        let sizes = self.mlp(features, classes).sizes;
        let params: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
        let state = match self.optimizer.kind {
            OptimizerKind::Sgd => 0.0,
            OptimizerKind::Adam => 4.0,
            _ => 2.0,
        };
        // Affine, BatchNorm, activation, Dropout outputs per hidden width.
        let per_width = 2.0 + f64::from(u8::from(self.batch_norm)) + f64::from(u8::from(self.dropout.is_some()));
        let widths: f64 = sizes[1..].iter().map(|&w| w as f64 * per_width).sum();
        let rows = self.batch_size as f64 * 2.0 + crate::EVAL_CHUNK as f64 * threads.max(1) as f64;
        let element = 4.0;
        element * (params * (3.0 + state) + rows * widths)
    }

    /// Refuses settings that cannot train, before any work starts.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::InvalidConfig(msg));
        if self.hidden.is_empty() {
            return bad("the hidden layer list is empty; give at least one width, e.g. --hidden 50".into());
        }
        if self.hidden.contains(&0) {
            return bad(format!("hidden widths must be positive, got {:?}", self.hidden));
        }
        // Widths, init, dropout and weight decay, as the network checks them,
        // for MNIST-sized data (the trainer checks again with the data's sizes).
        self.mlp(784, 10)
            .validate()
            .map_err(|e| TrainError::InvalidConfig(e.to_string()))?;
        self.optimizer
            .validate()
            .map_err(|e| TrainError::InvalidConfig(e.to_string()))?;
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return bad(format!(
                "the batch size must be between 1 and {MAX_BATCH}, got {}",
                self.batch_size
            ));
        }
        if self.iters == 0 || self.iters > MAX_ITERS {
            return bad(format!(
                "the number of iterations must be between 1 and {MAX_ITERS}, got {}",
                self.iters
            ));
        }
        if self.epochs == Some(0) {
            return bad("--epochs must be at least 1".into());
        }
        if self.train_size == Some(0) {
            return bad("--train-size must be at least 1".into());
        }
        if self.eval_every == Some(0) {
            return bad("--eval-every must be at least 1".into());
        }
        if self.eval_train_size == Some(0) {
            return bad("--eval-train-size must be at least 1".into());
        }
        if self.threads > MAX_THREADS {
            return bad(format!(
                "--threads must be at most {MAX_THREADS} (0 uses every core), got {}",
                self.threads
            ));
        }
        Ok(())
    }

    /// Steps per epoch for a training set of `train_len` images: the book's
    /// `max(train_size / batch_size, 1)`.
    pub fn iters_per_epoch(&self, train_len: usize) -> usize {
        (train_len / self.batch_size.max(1)).max(1)
    }

    /// The number of steps: `iters`, or `epochs` epochs.
    pub fn iterations(&self, train_len: usize) -> Result<usize, TrainError> {
        let Some(epochs) = self.epochs else {
            return Ok(self.iters);
        };
        epochs
            .checked_mul(self.iters_per_epoch(train_len))
            .filter(|&n| n <= MAX_ITERS)
            .ok_or_else(|| {
                TrainError::InvalidConfig(format!(
                    "{epochs} epochs of {} steps is more than {MAX_ITERS} iterations",
                    self.iters_per_epoch(train_len)
                ))
            })
    }

    /// The evaluation interval for a training set of `train_len` images.
    pub fn eval_interval(&self, train_len: usize) -> usize {
        self.eval_every.unwrap_or(self.iters_per_epoch(train_len))
    }

    /// The settings as JSON, for the run folder.
    pub fn to_json(&self, train_len: usize) -> serde_json::Value {
        serde_json::json!({
            "model": self.model.to_string(),
            "hidden": self.hidden,
            "activation": self.activation.to_string(),
            "init": self.init.to_string(),
            "batch_norm": self.batch_norm,
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
            "optimizer": self.optimizer.kind.to_string(),
            "learning_rate": self.optimizer.learning_rate,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_books_and_valid() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        assert_eq!(c.eval_interval(60000), 600);
        assert_eq!(c.mlp(784, 10).sizes, vec![784, 50, 10]);
        assert_eq!(c.iterations(60000).unwrap(), 10_000);
        let by_epochs = TrainConfig { epochs: Some(201), ..c };
        // The book's overfitting run: 300 images, batches of 100, 3 steps an epoch.
        assert_eq!(by_epochs.iterations(300).unwrap(), 603);
        assert_eq!(by_epochs.iters_per_epoch(50), 1);
    }

    #[test]
    fn memory_estimate_counts_parameters_state_and_batches() {
        let book = TrainConfig::default();
        let params = (784 * 50 + 50 + 50 * 10 + 10) as f64;
        // SGD: value, gradient, spare; outputs of Affine and ReLU (and the
        // last Affine's) for a batch and its gradient, and one chunk per thread.
        let rows = (100 * 2 + 500) as f64;
        let widths = (50 * 2 + 10 * 2) as f64;
        assert_eq!(book.memory_estimate(784, 10, 1), 4.0 * (params * 3.0 + rows * widths));
        let adam = TrainConfig {
            optimizer: OptimizerConfig::new(OptimizerKind::Adam),
            ..TrainConfig::default()
        };
        assert_eq!(
            adam.memory_estimate(784, 10, 1) - book.memory_estimate(784, 10, 1),
            4.0 * params * 4.0
        );
        let huge = TrainConfig {
            hidden: vec![65536],
            batch_size: 65536,
            ..TrainConfig::default()
        };
        assert!(
            huge.memory_estimate(784, 10, 2) > 30e9,
            "the batch of 65536 x 65536 outputs"
        );
    }

    #[test]
    fn every_bad_value_is_refused_with_a_message() {
        type Spoil = fn(&mut TrainConfig);
        let cases: [(Spoil, &str); 16] = [
            (|c| c.hidden.clear(), "empty"),
            (|c| c.hidden = vec![50, 0], "positive"),
            (|c| c.hidden = vec![1 << 40], "between 1 and"),
            (|c| c.optimizer.learning_rate = -0.1, "learning_rate"),
            (|c| c.optimizer.learning_rate = f64::NAN, "learning_rate"),
            (|c| c.optimizer.beta1 = 1.0, "beta1"),
            (|c| c.batch_size = 0, "batch size"),
            (|c| c.batch_size = 1 << 30, "batch size"),
            (|c| c.iters = 0, "iterations"),
            (|c| c.iters = usize::MAX, "iterations"),
            (|c| c.eval_every = Some(0), "eval-every"),
            (|c| c.init = Init::Std(0.0), "std"),
            (|c| c.dropout = Some(1.5), "dropout"),
            (|c| c.weight_decay = f64::NAN, "weight decay"),
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
}
