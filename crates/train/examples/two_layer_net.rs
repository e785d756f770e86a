//! The book's `ch05/train_neuralnet.py`, line for line: TwoLayerNet
//! (784-50-10, ReLU, `W ~ 0.01 N(0, 1)`), SGD at 0.1 on batches of 100 drawn
//! with replacement, train and test accuracy once an epoch. The loop is
//! written out, as the book writes it (evaluating after the epoch's first
//! step, where `train::Trainer` evaluates before it); the steps are the same,
//! and so are the final numbers.
//!
//! `MNIST_DIR=../shared/data/mnist cargo run --release -p train --example two_layer_net [ITERS]`

use layers::{layer_stream, NetSpec, Optimizer, Sgd, SgdConfig, Target, Tensor};
use mnist::{Dataset, Mnist};
use rand::{Rng, SeedableRng};
use train::{accuracy, Dataset as _, ImageData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("MNIST_DIR").ok_or("set MNIST_DIR to the folder of the MNIST files")?;
    let mnist = Mnist::load(dir.as_ref(), Dataset::Mnist)?;
    let train_set = ImageData::new(&mnist.train.images, &mnist.train.labels, 784)?;
    let test_set = ImageData::new(&mnist.test.images, &mnist.test.labels, 784)?;

    let mut network = NetSpec::two_layer_net(784, 50, 10).build::<f32>(42)?;
    let mut optimizer = Sgd::new(SgdConfig { learning_rate: 0.1 }, &network)?;

    let iters_num: usize = std::env::args().nth(1).map_or(Ok(10_000), |n| n.parse())?;
    let (train_size, batch_size) = (mnist.train.len(), 100);
    let iter_per_epoch = (train_size / batch_size).max(1);

    // The batches of `cargo xtask train`'s default run (seed 42, stream 1):
    // this loop ends with its very numbers.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    rng.set_stream(1);
    // No Dropout here: the layers' random stream is never drawn from.
    let mut layer_rng = layer_stream(0);
    let mut batch_mask = vec![0; batch_size];
    let (mut x_batch, mut t_batch) = (Tensor::<f32>::zeros(&[batch_size, 784]), Vec::new());
    let mut train_loss_list = Vec::with_capacity(iters_num);
    for i in 0..iters_num {
        for index in &mut batch_mask {
            *index = rng.random_range(0..train_size);
        }
        train_set.gather(&batch_mask, &mut x_batch, &mut t_batch);
        // Backprop leaves the gradients in the network; the optimizer reads them.
        let loss = network.gradient(&x_batch, Target::Labels(&t_batch), &mut layer_rng)?;
        optimizer.step(&mut network);
        train_loss_list.push(loss);
        if i % iter_per_epoch == 0 {
            let (train_acc, test_acc) = (accuracy(&network, &train_set), accuracy(&network, &test_set));
            println!("train acc, test acc | {train_acc:.4}, {test_acc:.4}");
        }
    }
    let tail = &train_loss_list[train_loss_list.len().saturating_sub(100)..];
    println!(
        "after {iters_num} iterations: loss {:.4} (mean of the last {}), test acc {:.4}",
        tail.iter().sum::<f32>() / tail.len().max(1) as f32,
        tail.len(),
        accuracy(&network, &test_set)
    );
    Ok(())
}
