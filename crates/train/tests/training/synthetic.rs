//! The training loop on a synthetic set: it learns, it is reproducible for
//! any thread count, it stops on divergence keeping the last good weights,
//! and it writes its records.

use crate::common;

use common::toy_set;
use layers::{Activation, Init, OptimizerConfig, OptimizerKind};
use train::{
    report, Augment, EvalRecord, ImageData, LrSchedule, MlpOptions, ModelSpec, Observer, TrainConfig, TrainError,
    Trainer,
};

/// The toy mlp: one hidden layer of 16, weights `0.1 N(0, 1)`.
fn toy_mlp() -> MlpOptions {
    MlpOptions {
        hidden: vec![16],
        init: Init::Std(0.1),
        ..MlpOptions::default()
    }
}

fn config(threads: usize) -> TrainConfig {
    TrainConfig {
        model: ModelSpec::Mlp(toy_mlp()),
        batch_size: 20,
        iters: 300,
        eval_every: Some(100),
        optimizer: OptimizerConfig::new(OptimizerKind::Sgd).with_learning_rate(0.5),
        threads,
        seed: 7,
        ..Default::default()
    }
}

#[test]
fn learns_the_toy_set_and_records_every_evaluation() {
    let (px, lb) = toy_set(1200, 1);
    let (tpx, tlb) = toy_set(1100, 2);
    let (train, test) = (
        ImageData::new(&px, &lb, 64).unwrap(),
        ImageData::new(&tpx, &tlb, 64).unwrap(),
    );
    let mut trainer = Trainer::<f32, _>::new(config(0), train, test, 10).unwrap();
    let summary = trainer.run(&mut ()).unwrap();
    assert!(summary.test_accuracy > 0.9, "{summary:?}");
    assert_eq!(trainer.losses().len(), 300);
    let iterations: Vec<usize> = trainer.evals().iter().map(|e| e.iteration).collect();
    assert_eq!(iterations, [0, 100, 200, 300]);
    assert!(trainer.evals()[0].loss.is_none() && trainer.evals()[1].loss.is_some());
    // Epochs are epochs of data (1200 images in batches of 20: 60 steps), whatever --eval-every is.
    assert_eq!(trainer.evals()[1].epoch, 100.0 / 60.0);
}

#[test]
fn same_seed_same_everything_for_any_thread_count() {
    let (px, lb) = toy_set(1200, 3);
    let (tpx, tlb) = toy_set(1000, 4);
    let run = |threads, recipe: &TrainConfig| {
        let (train, test) = (
            ImageData::new(&px, &lb, 64).unwrap(),
            ImageData::new(&tpx, &tlb, 64).unwrap(),
        );
        let mut trainer = Trainer::<f32, _>::new(
            TrainConfig {
                threads,
                ..recipe.clone()
            },
            train,
            test,
            10,
        )
        .unwrap();
        trainer.run(&mut ()).unwrap();
        let accuracies: Vec<(f64, f64)> = trainer
            .evals()
            .iter()
            .map(|e| (e.train_accuracy, e.test_accuracy))
            .collect();
        (trainer.losses().to_vec(), accuracies, trainer.model().param_buffers())
    };
    let mut recipes = vec![TrainConfig {
        model: ModelSpec::Mlp(MlpOptions {
            activation: Activation::Sigmoid,
            ..toy_mlp()
        }),
        ..config(1)
    }];
    for kind in OptimizerKind::ALL {
        recipes.push(TrainConfig {
            optimizer: OptimizerConfig::new(kind),
            ..config(1)
        });
    }
    // The convolutional net on the 8x8 toy images (conv 5x5, pool, affine).
    recipes.push(TrainConfig {
        model: ModelSpec::SimpleConvNet,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        ..config(1)
    });
    recipes.push(TrainConfig {
        model: ModelSpec::Mlp(MlpOptions {
            dropout: Some(0.2),
            batch_norm: true,
            ..toy_mlp()
        }),
        weight_decay: 0.01,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        ..config(1)
    });
    // Convolutions of several channels (the shifted route), whose backward
    // goes over `G`'s nonzero values behind the pool, and behind a ReLU alone
    // where it has 32 channels.
    recipes.push(TrainConfig {
        model: ModelSpec::Net(common::toy_channels_net()),
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        ..config(1)
    });
    for recipe in &recipes {
        let one = run(1, recipe);
        assert_eq!(one, run(2, recipe), "threads 1 vs 2: {recipe:?}");
        assert_eq!(one, run(3, recipe), "threads 1 vs 3: {recipe:?}");
    }
    // A different seed is a different run.
    let (train, test) = (
        ImageData::new(&px, &lb, 64).unwrap(),
        ImageData::new(&tpx, &tlb, 64).unwrap(),
    );
    let mut other = Trainer::<f32, _>::new(TrainConfig { seed: 8, ..config(1) }, train, test, 10).unwrap();
    other.run(&mut ()).unwrap();
    assert_ne!(other.losses(), &run(1, &config(1)).0[..]);
}

#[test]
fn divergence_stops_the_run_and_keeps_the_last_good_weights() {
    let (px, lb) = toy_set(500, 5);
    let data = ImageData::new(&px, &lb, 64).unwrap();
    // Plain SGD and Adam (whose state must be put back with the parameters).
    // (BatchNorm: its running statistics must be put back too.)
    for (optimizer, batch_norm) in [
        (OptimizerConfig::new(OptimizerKind::Sgd).with_learning_rate(1e30), false),
        (
            OptimizerConfig::new(OptimizerKind::Adam).with_learning_rate(1e18),
            false,
        ),
        (
            OptimizerConfig::new(OptimizerKind::Momentum).with_learning_rate(1e16),
            true,
        ),
    ] {
        let huge_lr = TrainConfig {
            optimizer,
            model: ModelSpec::Mlp(MlpOptions {
                batch_norm,
                hidden: vec![32],
                ..toy_mlp()
            }),
            ..config(1)
        };
        let mut trainer = Trainer::<f32, _>::new(huge_lr.clone(), data, data, 10).unwrap();
        let err = trainer.run(&mut ()).unwrap_err();
        let TrainError::NonFiniteLoss {
            iteration, last_good, ..
        } = err
        else {
            panic!("{err}")
        };
        assert!(iteration >= 1, "{optimizer:?} diverged before any step");
        assert!(err.to_string().contains("lower learning rate"), "{err}");
        assert_eq!(last_good, Some(iteration - 1));
        assert_eq!(trainer.losses().len(), iteration, "every finite loss was recorded");
        // The kept weights are exactly those a run stopped after iteration - 1
        // steps ends with (the initial ones when that is 0).
        let mut shorter = Trainer::<f32, _>::new(
            TrainConfig {
                iters: (iteration - 1).max(1),
                ..huge_lr
            },
            data,
            data,
            10,
        )
        .unwrap();
        if iteration > 1 {
            shorter.run(&mut ()).unwrap();
        }
        assert_eq!(
            trainer.model().param_buffers(),
            shorter.model().param_buffers(),
            "{optimizer:?}"
        );
        let buffers = |t: &Trainer<f32, ImageData<'_>>| -> Vec<Vec<f32>> {
            t.model().buffers().iter().map(|(_, b)| b.as_slice().to_vec()).collect()
        };
        assert_eq!(
            buffers(&trainer),
            buffers(&shorter),
            "running statistics, BatchNorm {batch_norm}"
        );
        assert!(buffers(&trainer).iter().flatten().all(|v| v.is_finite()));
    }
    // Initial weights that are not finite in f32 are refused before any step.
    let overflowing = TrainConfig {
        model: ModelSpec::Mlp(MlpOptions {
            init: Init::Std(1e300),
            ..toy_mlp()
        }),
        ..config(1)
    };
    let err = Trainer::<f32, _>::new(overflowing, data, data, 10)
        .err()
        .expect("refused");
    assert!(matches!(err, TrainError::InvalidSetting { field: "init", .. }), "{err}");
    // A loss that is not finite from the start blames the initial weights.
    let wild = TrainConfig {
        model: ModelSpec::Mlp(MlpOptions {
            init: Init::Std(1e30),
            ..toy_mlp()
        }),
        ..config(1)
    };
    let err = Trainer::<f32, _>::new(wild, data, data, 10)
        .unwrap()
        .run(&mut ())
        .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { last_good: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("smaller initial weights"), "{err}");
}

#[test]
fn bad_settings_and_data_are_refused_before_work() {
    let (px, lb) = toy_set(50, 6);
    let data = ImageData::new(&px, &lb, 64).unwrap();
    assert!(matches!(
        Trainer::<f32, _>::new(
            TrainConfig {
                batch_size: 0,
                ..config(1)
            },
            data,
            data,
            10
        ),
        Err(TrainError::InvalidSetting {
            field: "batch_size",
            ..
        })
    ));
    assert!(
        matches!(
            Trainer::<f32, _>::new(config(1), data, data, 5),
            Err(TrainError::Data(_))
        ),
        "labels beyond the outputs"
    );
    let other = ImageData::new(&px[..50 * 32], &lb, 32).unwrap();
    assert!(matches!(
        Trainer::<f32, _>::new(config(1), data, other, 10),
        Err(TrainError::Data(_))
    ));
}

/// Asks the run to stop after a given number of steps, as Ctrl-C does.
struct StopAfter(usize, usize);
impl Observer for StopAfter {
    fn on_step(&mut self, _: usize, _: f64) {
        self.1 += 1;
    }
    fn should_stop(&self) -> bool {
        self.1 >= self.0
    }
}

#[test]
fn a_stop_request_ends_the_run_after_that_step_keeping_it() {
    let (px, lb) = toy_set(600, 9);
    let data = ImageData::new(&px, &lb, 64).unwrap();
    let mut trainer = Trainer::<f32, _>::new(config(1), data, data, 10).unwrap();
    let err = trainer.run(&mut StopAfter(37, 0)).unwrap_err();
    assert!(matches!(err, TrainError::Interrupted { iterations: 37 }), "{err}");
    assert_eq!(trainer.losses().len(), 37);
    // The kept model is exactly that of a 37-step run.
    let mut shorter = Trainer::<f32, _>::new(TrainConfig { iters: 37, ..config(1) }, data, data, 10).unwrap();
    shorter.run(&mut ()).unwrap();
    assert_eq!(trainer.model().param_buffers(), shorter.model().param_buffers());
}

struct Recorder(Vec<EvalRecord>, usize);
impl Observer for Recorder {
    fn on_step(&mut self, _: usize, _: f64) {
        self.1 += 1;
    }
    fn on_eval(&mut self, record: &EvalRecord) {
        self.0.push(record.clone());
    }
}

#[test]
fn records_and_plots_are_written() {
    let (px, lb) = toy_set(600, 7);
    let data = ImageData::new(&px, &lb, 64).unwrap();
    let mut trainer = Trainer::<f32, _>::new(config(1), data, data, 10).unwrap();
    let mut recorder = Recorder(Vec::new(), 0);
    trainer.run(&mut recorder).unwrap();
    assert_eq!(recorder.1, 300);
    assert_eq!(recorder.0, trainer.evals());
    let dir = tempfile::tempdir().unwrap();
    report::write_loss_csv(&dir.path().join("loss.csv"), trainer.losses()).unwrap();
    report::write_eval_csv(&dir.path().join("accuracy.csv"), trainer.evals()).unwrap();
    report::plot_accuracy(&dir.path().join("accuracy.png"), trainer.evals(), "toy").unwrap();
    report::plot_loss(&dir.path().join("loss.png"), trainer.losses(), "toy").unwrap();
    let csv = std::fs::read_to_string(dir.path().join("loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 301);
    let evals = std::fs::read_to_string(dir.path().join("accuracy.csv")).unwrap();
    assert_eq!(evals.lines().count(), 5);
    for png in ["accuracy.png", "loss.png"] {
        let bytes = std::fs::read(dir.path().join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png} is a PNG");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no temporary files left"
    );
}

/// A BatchNorm/Dropout/Adam net of one's own trains through the library
/// alone, saves, reloads to the same predictions, and trains on from the
/// reloaded weights; `with_model` refuses a model that is not the config's.
#[test]
fn a_net_of_ones_own_trains_saves_reloads_and_trains_on() {
    use layers::NetSpec;
    let (px, lb) = toy_set(1000, 11);
    let (tpx, tlb) = toy_set(300, 12);
    let (train, test) = (
        ImageData::new(&px, &lb, 64).unwrap(),
        ImageData::new(&tpx, &tlb, 64).unwrap(),
    );
    let net = NetSpec::new(&[1, 8, 8])
        .conv_with(4, 3, 1, 1)
        .batch_norm()
        .relu()
        .pool(2)
        .affine(32)
        .relu()
        .dropout(0.2)
        .affine(10)
        .init(Init::He);
    let config = TrainConfig {
        model: ModelSpec::Net(net.clone()),
        optimizer: OptimizerConfig::new(OptimizerKind::Adam).with_learning_rate(0.01),
        weight_decay: 0.001,
        batch_size: 50,
        iters: 200,
        eval_every: Some(100),
        threads: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::<f32, _>::new(config.clone(), train, test, 10).unwrap();
    let summary = trainer.run(&mut ()).unwrap();
    assert!(summary.test_accuracy > 0.9, "{summary:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    train::save_checkpoint(&path, trainer.model(), &[]).unwrap();
    let reloaded = train::load_checkpoint::<f32>(&path).unwrap().model;
    assert_eq!(reloaded.specs(), trainer.model().specs());
    assert_eq!(reloaded.weight_decay(), 0.001);
    // Inference mode: the running statistics came back with the weights.
    let x = {
        let mut x = layers::Tensor::zeros(&[1, 64]);
        let mut labels = Vec::new();
        train::Dataset::gather_range(&test, 0, 300, &mut x, &mut labels);
        reloaded.shape_batch(&mut x).unwrap();
        x
    };
    assert_eq!(
        reloaded.clone().predict(&x).unwrap(),
        trainer.model().clone().predict(&x).unwrap()
    );
    assert_eq!(train::accuracy(&reloaded, &test), summary.test_accuracy);

    // Training on from the reloaded weights: the first evaluation is where the run ended.
    let mut again = Trainer::with_model(config.clone(), reloaded.clone(), train, test).unwrap();
    let more = again.run(&mut ()).unwrap();
    assert_eq!(again.evals()[0].test_accuracy, summary.test_accuracy);
    assert!(more.test_accuracy > 0.9, "{more:?}");

    // The config describes the model: another weight decay or other layers are refused.
    let other_decay = TrainConfig {
        weight_decay: 0.0,
        ..config.clone()
    };
    assert!(matches!(
        Trainer::with_model(other_decay, reloaded.clone(), train, test),
        Err(TrainError::ModelMismatch(_))
    ));
    let other_net = TrainConfig {
        model: ModelSpec::Net(net.affine(10)),
        ..config
    };
    assert!(matches!(
        Trainer::with_model(other_net, reloaded, train, test),
        Err(TrainError::ModelMismatch(_))
    ));
}

/// A schedule changes the rate where it says and nowhere else: with the
/// step schedule the losses are those of the constant rate up to half the
/// run, bit for bit, and part from them at once after; the threads do not
/// change either.
#[test]
fn a_schedule_changes_the_run_from_where_it_changes_the_rate() {
    let (px, lb) = toy_set(1200, 1);
    let (tpx, tlb) = toy_set(1100, 2);
    let losses = |schedule: LrSchedule, threads: usize| {
        let (train, test) = (
            ImageData::new(&px, &lb, 64).unwrap(),
            ImageData::new(&tpx, &tlb, 64).unwrap(),
        );
        let config = TrainConfig {
            lr_schedule: schedule,
            ..config(threads)
        };
        let mut trainer = Trainer::<f32, _>::new(config, train, test, 10).unwrap();
        trainer.run(&mut ()).unwrap();
        trainer.losses().to_vec()
    };
    let constant = losses(LrSchedule::Constant, 1);
    let step = losses(LrSchedule::Step, 1);
    // Step 150's rate is lr / 10: its loss (computed before its update) is
    // still the constant run's; step 151's is not.
    assert_eq!(step[..151], constant[..151]);
    assert_ne!(step[151], constant[151]);
    assert_eq!(losses(LrSchedule::Step, 2), step, "any thread count");
    // Cosine lowers the rate from the second step on.
    let cosine = losses(LrSchedule::Cosine, 1);
    assert_eq!(cosine[..2], constant[..2]);
    assert_ne!(cosine[2..], constant[2..]);
}

/// Augmentation moves every training image by its own random map: the run
/// differs from the plain one from its first step, is the same for any
/// thread count, and still learns; a model whose input is not an image
/// cannot be augmented.
#[test]
fn augmented_runs_differ_learn_and_do_not_depend_on_the_threads() {
    let (px, lb) = toy_set(1200, 1);
    let (tpx, tlb) = toy_set(1100, 2);
    let run = |augment: Option<Augment>, threads: usize| {
        let (train, test) = (
            ImageData::new(&px, &lb, 64).unwrap(),
            ImageData::new(&tpx, &tlb, 64).unwrap(),
        );
        let config = TrainConfig {
            augment,
            ..config(threads)
        };
        let mut trainer = Trainer::<f32, _>::new(config, train, test, 10).unwrap();
        let summary = trainer.run(&mut ()).unwrap();
        (trainer.losses().to_vec(), summary.test_accuracy)
    };
    let (plain, _) = run(None, 1);
    let gentle = Some(Augment::with_strength(0.5));
    let (augmented, accuracy) = run(gentle, 1);
    assert_ne!(augmented[0], plain[0], "the first batch is already moved");
    assert_eq!(run(gentle, 2).0, augmented, "bit-identical for any thread count");
    assert!(accuracy > 0.5, "{accuracy}");
    // 64 values are an 8x8 image; 6 are not.
    let (values, labels) = (vec![0.5f32; 60], vec![0usize, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    let data = train::ArrayData::new(&values, &labels, 6).unwrap();
    let config = TrainConfig {
        model: ModelSpec::Net(layers::NetSpec::new(&[6]).affine(2)),
        augment: gentle,
        ..TrainConfig::default()
    };
    let err = Trainer::<f32, _>::new(config, data, data, 2).err().expect("refused");
    assert!(err.to_string().contains("augment"), "{err}");
}
