//! The book's training loop (section 5.7.4, and the `Trainer` of chapter 6):
//!
//! ```text
//! for i in 0..iters:
//!     if i % eval_every == 0: record train and test accuracy
//!     batch = batch_size indices drawn uniformly with replacement
//!     grad = model.gradient(x[batch], t[batch])        # backprop, training mode
//!     optimizer.update(params, grad)                    # SGD, Adam, ...
//! ```
//!
//! and one last evaluation after the final step. Once the first iteration has
//! sized every buffer, an iteration allocates nothing: the batch is gathered
//! into a reused tensor, layers write into their kept outputs, and the
//! optimizer writes into a spare set of parameters (and state) that is then
//! swapped in, which also keeps the previous ones for the divergence guard.

use crate::augment::{warp_batch, ImageShape, Warp};
use crate::{accuracy, with_busy_workers, Dataset, Helpers, LrSchedule, TrainConfig, TrainError};
use layers::{layer_stream, Optimizer, Sequential, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tensor::{Element, Tensor};

/// One evaluation: accuracies on the training set (or its first
/// `eval_train_size` images) and the full test set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    /// Steps taken before this evaluation.
    pub iteration: usize,
    /// `iteration / iters_per_epoch`: epochs of training data seen (the book's x axis).
    pub epoch: f64,
    /// Mean training batch loss since the previous evaluation (none before the first step).
    pub loss: Option<f64>,
    /// Fraction of the training examples (or the first `eval_train_size`) classified correctly.
    pub train_accuracy: f64,
    /// Fraction of the test examples classified correctly.
    pub test_accuracy: f64,
    /// Seconds since the run started.
    pub elapsed_seconds: f64,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Mean batch loss over the last `min(100, iters)` iterations.
    pub final_loss: f64,
    /// The last evaluation's training accuracy.
    pub train_accuracy: f64,
    /// The last evaluation's test accuracy.
    pub test_accuracy: f64,
    /// Steps taken.
    pub iterations: usize,
    /// Wall time of the loop, evaluations included.
    pub seconds_total: f64,
    /// Wall time of the loop without the evaluations.
    pub seconds_train: f64,
}

/// What a person watching sees. Called from the loop: `on_step` should be
/// cheap and should not allocate every call.
pub trait Observer: Send {
    /// The training images of the batch about to be stepped on (indices into the training set).
    fn on_batch(&mut self, _iteration: usize, _indices: &[usize]) {}
    /// The batch loss of the step just taken.
    fn on_step(&mut self, _iteration: usize, _loss: f64) {}
    /// An evaluation just recorded.
    fn on_eval(&mut self, _record: &EvalRecord) {}
    /// Asked after every step: `true` ends the run there with
    /// [`TrainError::Interrupted`] (Ctrl-C, say), keeping what was learned.
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
impl Observer for () {}

/// The book's training loop for any model of [`TrainConfig::model`] on any
/// [`Dataset`], in `T` (`f32` to train, `f64` to check).
///
/// ```
/// use train::{ArrayData, Dataset, TrainConfig, Trainer};
/// use layers::{NetSpec, OptimizerConfig, OptimizerKind};
///
/// // Is x + y above 1? 64 points on a grid: 2 features, 2 classes.
/// let mut values = Vec::new();
/// let mut labels = Vec::new();
/// for i in 0..64 {
///     let (x, y) = ((i % 8) as f32 / 7.0, (i / 8) as f32 / 7.0);
///     values.extend([x, y]);
///     labels.push(usize::from(x + y > 1.0));
/// }
/// let data = ArrayData::new(&values, &labels, 2).unwrap();
/// let config = TrainConfig {
///     model: train::ModelSpec::Net(NetSpec::new(&[2]).affine(16).relu().affine(2)),
///     optimizer: OptimizerConfig::new(OptimizerKind::Adam).with_learning_rate(0.05),
///     batch_size: 16,
///     iters: 300,
///     threads: 1,
///     ..TrainConfig::default()
/// };
/// let mut trainer = Trainer::<f32, _>::new(config, data, data, 2).unwrap();
/// let summary = trainer.run(&mut ()).unwrap();
/// assert!(summary.train_accuracy > 0.9, "{summary:?}");
/// ```
pub struct Trainer<T: Element, D: Dataset> {
    config: TrainConfig,
    model: Sequential<T>,
    optimizer: Box<dyn Optimizer<T>>,
    /// Steps of the run (`iters`, or `epochs` epochs).
    iterations: usize,
    train: D,
    test: D,
    pool: Arc<rayon::ThreadPool>,
    losses: Vec<f32>,
    evals: Vec<EvalRecord>,
}

impl<T: Element, D: Dataset> Trainer<T, D> {
    /// Validates the settings and the data, builds the seeded network of the
    /// config ([`TrainConfig::build_model`]: `train.features()` inputs,
    /// `classes` outputs), the optimizer and the thread pool. Fails as
    /// [`TrainConfig::build_model`] and [`Trainer::with_model`] do.
    pub fn new(config: TrainConfig, train: D, test: D, classes: usize) -> Result<Self, TrainError> {
        config.validate()?;
        let model = config.build_model(train.features(), classes)?;
        Self::with_model(config, model, train, test)
    }

    /// A trainer for a model the caller already has (a checkpoint, say),
    /// which must be the config's: the layers of [`TrainConfig::net`] for
    /// its sizes and the config's weight decay. Its weights are kept.
    ///
    /// Fails as [`TrainConfig::validate`] does; with
    /// [`TrainError::ModelMismatch`] for another model;
    /// [`TrainError::InvalidSetting`] for a `train_size` larger than the
    /// training set, weights that are not finite in `T`, or threads the system
    /// cannot start; and [`TrainError::Data`] for an empty set, examples of
    /// another size than the model's input, or labels beyond its outputs.
    pub fn with_model(config: TrainConfig, model: Sequential<T>, train: D, test: D) -> Result<Self, TrainError> {
        config.validate()?;
        let described = config.net(model.input_size(), model.output_size())?;
        if described.layer_specs()? != model.specs() || described.input != model.input_shape() {
            return Err(TrainError::ModelMismatch(format!(
                "its layers are {}, the config's {} has {:?}",
                model.summary(),
                config.model.name(),
                described.layer_specs()?
            )));
        }
        if described.layer_names() != model.layer_names() {
            return Err(TrainError::ModelMismatch(format!(
                "its layer names are {:?}, the config's {:?}",
                model.layer_names(),
                described.layer_names()
            )));
        }
        if model.weight_decay() != config.weight_decay {
            return Err(TrainError::ModelMismatch(format!(
                "its weight decay is {}, the config's {}",
                model.weight_decay(),
                config.weight_decay
            )));
        }
        let train = match config.train_size {
            Some(n) if n > train.len() => {
                return Err(TrainError::setting(
                    "train_size",
                    n,
                    format!("at most the {} training examples", train.len()),
                ))
            }
            Some(n) => train.first(n),
            None => train,
        };
        if train.is_empty() {
            return Err(TrainError::Data("the training set is empty".into()));
        }
        if test.is_empty() {
            return Err(TrainError::Data("the test set is empty".into()));
        }
        for (set, data) in [("training", &train), ("test", &test)] {
            if data.features() != model.input_size() {
                return Err(TrainError::Data(format!(
                    "{set} examples have {} values but the model takes {} inputs",
                    data.features(),
                    model.input_size()
                )));
            }
        }
        if config.augment.is_some() && ImageShape::of_input(model.input_shape()).is_none() {
            return Err(TrainError::setting(
                "augment",
                format!("{:?}", model.input_shape()),
                "a model whose input is images: [C, H, W], or a square [H * W]",
            ));
        }
        // The largest label, read here rather than from a data set's own
        // `classes`, which a user's type may get wrong.
        let largest = |data: &D| (0..data.len()).map(|i| data.label(i)).max().unwrap_or(0);
        let needed = largest(&train).max(largest(&test)).saturating_add(1);
        if needed > model.output_size() {
            return Err(TrainError::Data(format!(
                "labels go up to {} but the model has {} outputs",
                needed - 1,
                model.output_size()
            )));
        }
        if let Some(param) = model
            .params()
            .iter()
            .find(|p| p.value.as_slice().iter().any(|v| !v.is_finite()))
        {
            return Err(TrainError::setting(
                "init",
                format!("weights that make {} not finite in {}", param.name, T::NAME),
                "smaller initial weights",
            ));
        }
        let iterations = config.iterations(train.len())?;
        let mut optimizer = config.optimizer.build(&model)?;
        // The divergence guard takes the last step back: keep what each step replaces.
        optimizer.keep_previous();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build()
            .map_err(|e| {
                TrainError::setting(
                    "threads",
                    config.threads,
                    format!("a number of threads the system can start ({e})"),
                )
            })
            .map(Arc::new)?;
        Ok(Trainer {
            losses: Vec::with_capacity(iterations),
            evals: Vec::new(),
            config,
            model,
            optimizer,
            iterations,
            train,
            test,
            pool,
        })
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model: trained after [`Trainer::run`], or the last good one after a divergence.
    pub fn model(&self) -> &Sequential<T> {
        &self.model
    }

    /// The number of steps the run takes.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// The training set (the first `train_size` examples when that is set).
    pub fn train_set(&self) -> &D {
        &self.train
    }

    /// The batch loss of every completed iteration.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    /// Every evaluation so far, first to last.
    pub fn evals(&self) -> &[EvalRecord] {
        &self.evals
    }

    fn evaluate(
        &mut self,
        iteration: usize,
        loss: Option<f64>,
        started: Instant,
        observer: &mut dyn Observer,
    ) -> Duration {
        let t0 = Instant::now();
        let train = match self.config.eval_train_size {
            Some(n) => self.train.first(n),
            None => self.train.clone(),
        };
        let (train_accuracy, test_accuracy) = (accuracy(&self.model, &train), accuracy(&self.model, &self.test));
        let record = EvalRecord {
            iteration,
            epoch: iteration as f64 / self.config.iters_per_epoch(self.train.len()) as f64,
            loss,
            train_accuracy,
            test_accuracy,
            elapsed_seconds: started.elapsed().as_secs_f64(),
        };
        observer.on_eval(&record);
        self.evals.push(record);
        t0.elapsed()
    }

    /// Runs the configured iterations. On a non-finite loss the run stops
    /// with [`TrainError::NonFiniteLoss`] and [`Trainer::model`] holds the
    /// parameters of the last iteration whose loss was finite (the
    /// optimizer's state is put back with them).
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<Summary, TrainError> {
        // The whole loop runs on a worker of the run's pool: large products
        // and evaluations split over its threads, and (being on a worker)
        // rayon's joins need no allocation. The other workers spin between
        // the pieces of a step rather than sleep (see `busy`).
        let pool = Arc::clone(&self.pool);
        pool.install(|| with_busy_workers(|helpers| self.run_on_pool(observer, helpers)))
    }

    fn run_on_pool(&mut self, observer: &mut dyn Observer, helpers: &mut Helpers<'_>) -> Result<Summary, TrainError> {
        let config = self.config.clone();
        let eval_every = config.eval_interval(self.train.len());
        // Stream 0 of this seed drew the weights; the batches use stream 1,
        // Dropout's masks stream 2.
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(1);
        let mut layer_rng = layer_stream(config.seed);
        let mut indices = vec![0usize; config.batch_size];
        let mut x = Tensor::<T>::zeros(&[config.batch_size, self.train.features()]);
        let mut labels = Vec::with_capacity(config.batch_size);
        // Augmentation: each image's map drawn from stream 3 of the seed,
        // the batch resampled into `warped` and swapped in (both buffers
        // made here, once).
        let mut augment_rng = ChaCha8Rng::seed_from_u64(config.seed);
        augment_rng.set_stream(3);
        let augmenting = config.augment.zip(ImageShape::of_input(self.model.input_shape()));
        let mut warps = vec![Warp::default(); if augmenting.is_some() { config.batch_size } else { 0 }];
        let mut warped = Tensor::<T>::zeros(&[warps.len(), self.train.features()]);
        // Training passes also move non-trainable state (BatchNorm's running
        // statistics): `saved[i % 2]` holds it as it was before iteration i,
        // so that a divergence can put back what went with the kept weights.
        let mut saved = [Vec::new(), Vec::new()];
        let started = Instant::now();
        let mut eval_time = Duration::ZERO;
        let (mut window_sum, mut window_len) = (0.0f64, 0usize);

        for iteration in 0..self.iterations {
            if iteration % eval_every == 0 {
                let loss = (window_len > 0).then(|| window_sum / window_len as f64);
                eval_time += self.evaluate(iteration, loss, started, observer);
                (window_sum, window_len) = (0.0, 0);
            }
            for index in &mut indices {
                *index = rng.random_range(0..self.train.len());
            }
            observer.on_batch(iteration, &indices);
            if config.lr_schedule != LrSchedule::Constant {
                let rate = config
                    .lr_schedule
                    .rate(config.optimizer.learning_rate, iteration, self.iterations);
                self.optimizer.set_learning_rate(rate);
            }
            // The step is timed, for the helpers to stand aside while they
            // slow it down (see `busy`).
            let loss = helpers.timed(|| -> Result<f64, TrainError> {
                self.train.gather(&indices, &mut x, &mut labels);
                if let Some((augment, shape)) = augmenting {
                    for warp in &mut warps {
                        *warp = augment.draw(&mut augment_rng);
                    }
                    warp_batch(x.as_slice(), warped.as_mut_slice(), &warps, shape);
                    std::mem::swap(&mut x, &mut warped);
                }
                // [N, C, H, W] for a convolutional net (a reshape, never a copy).
                self.model.shape_batch(&mut x)?;
                self.model.copy_buffers_into(&mut saved[iteration % 2]);
                let loss = self
                    .model
                    .gradient_unchecked(&x, Target::Labels(&labels), &mut layer_rng)
                    .to_f64();
                if loss.is_finite() {
                    self.optimizer.step(&mut self.model);
                }
                Ok(loss)
            })?;
            if !loss.is_finite() {
                // Back to the parameters of iteration - 1, whose loss was finite
                // (nothing to undo before the first step).
                self.optimizer.undo(&mut self.model);
                // The state from before iteration - 1 (or before this first
                // one): what a run stopped after iteration - 1 steps has.
                self.model.restore_buffers(&saved[iteration.saturating_sub(1) % 2]);
                return Err(TrainError::NonFiniteLoss {
                    iteration,
                    loss,
                    learning_rate: config.optimizer.learning_rate,
                    weight_decay: config.weight_decay,
                    last_good: iteration.checked_sub(1),
                });
            }
            self.losses.push(loss as f32);
            window_sum += loss;
            window_len += 1;
            observer.on_step(iteration, loss);
            if observer.should_stop() {
                return Err(TrainError::Interrupted {
                    iterations: iteration + 1,
                });
            }
        }
        let loss = (window_len > 0).then(|| window_sum / window_len as f64);
        eval_time += self.evaluate(self.iterations, loss, started, observer);
        let seconds_total = started.elapsed().as_secs_f64();
        let tail = &self.losses[self.losses.len().saturating_sub(100)..];
        let last = self.evals.last().expect("a final evaluation was just recorded");
        Ok(Summary {
            final_loss: tail.iter().map(|&l| l as f64).sum::<f64>() / tail.len().max(1) as f64,
            train_accuracy: last.train_accuracy,
            test_accuracy: last.test_accuracy,
            iterations: self.iterations,
            seconds_total,
            seconds_train: seconds_total - eval_time.as_secs_f64(),
        })
    }
}
