//! Once warm, a training iteration allocates nothing: counted with a global
//! allocator wrapper over a few hundred steps.

mod common;

use layers::{OptimizerConfig, OptimizerKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use train::{ImageData, MlpOptions, ModelSpec, Observer, TrainConfig, Trainer};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Reads the counter at two iterations, allocating nothing itself.
struct Window {
    warm_at: usize,
    end_at: usize,
    counts: [usize; 2],
}

impl Observer for Window {
    fn on_step(&mut self, iteration: usize, _loss: f64) {
        if iteration == self.warm_at {
            self.counts[0] = ALLOCATIONS.load(Ordering::SeqCst);
        }
        if iteration == self.end_at {
            self.counts[1] = ALLOCATIONS.load(Ordering::SeqCst);
        }
    }
}

#[test]
fn a_warm_iteration_allocates_nothing() {
    let (px, lb) = common::toy_set(2000, 1);
    // MNIST-sized rows too, so that the large products split over two threads.
    let wide: Vec<u8> = (0..2000 * 784).map(|i| (i * 31 % 251) as u8).collect();
    let sgd = TrainConfig::default();
    let adam_bn_dropout = TrainConfig {
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        model: ModelSpec::Mlp(MlpOptions {
            batch_norm: true,
            dropout: Some(0.3),
            ..MlpOptions::default()
        }),
        weight_decay: 0.01,
        ..TrainConfig::default()
    };
    let convnet = TrainConfig {
        model: ModelSpec::SimpleConvNet,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        ..TrainConfig::default()
    };
    let channels = TrainConfig {
        model: ModelSpec::Net(common::toy_channels_net()),
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        ..TrainConfig::default()
    };
    let augmented = TrainConfig {
        augment: Some(train::Augment::with_strength(1.0)),
        ..convnet.clone()
    };
    let cases = [
        (&px[..], 64, vec![50], 1, &sgd),
        (&px[..], 64, vec![40, 30], 1, &sgd),
        (&wide[..], 784, vec![50], 2, &sgd),
        (&px[..], 64, vec![40, 30], 1, &adam_bn_dropout),
        (&wide[..], 784, vec![50, 20], 2, &adam_bn_dropout),
        (&px[..], 64, vec![50], 1, &convnet),
        (&wide[..], 784, vec![50], 2, &convnet),
        (&wide[..], 784, vec![50], 2, &augmented),
        (&px[..], 64, vec![50], 1, &channels),
        (&px[..], 64, vec![50], 2, &channels),
    ];
    for (pixels, features, hidden, threads, recipe) in cases {
        let data = ImageData::new(pixels, &lb, features).unwrap();
        // Evaluation only before the first and after the last step, outside the window.
        let model = match &recipe.model {
            ModelSpec::Mlp(mlp) => ModelSpec::Mlp(MlpOptions { hidden, ..mlp.clone() }),
            other => other.clone(),
        };
        let config = TrainConfig {
            model,
            iters: 250,
            eval_every: Some(1000),
            batch_size: 100,
            threads,
            ..recipe.clone()
        };
        let mut trainer = Trainer::<f32, _>::new(config, data, data, 10).unwrap();
        let mut window = Window {
            warm_at: 5,
            end_at: 249,
            counts: [0; 2],
        };
        trainer.run(&mut window).unwrap();
        // The count is 0 on a quiet machine. On a busy one a few allocations
        // per run come from the thread pools' own bookkeeping (rayon's
        // work-stealing deques resizing, worker threads of the previous
        // case's pool winding down): never one per iteration (that would be
        // 244 or more), and none of the training loop's. (250 iterations,
        // 12 epochs of the 2000 images: 400 took 30 s of a first `cargo test
        // --workspace` in the dev profile.)
        let allowed = 8;
        let allocations = window.counts[1] - window.counts[0];
        assert!(
            allocations <= allowed,
            "{allocations} allocations in 244 warm iterations ({features} features, {threads} threads, {:?} {})",
            recipe.optimizer.kind,
            recipe.model.name()
        );
    }
}
