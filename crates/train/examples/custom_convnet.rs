//! A convolutional net of one's own on MNIST, from Rust: the builder infers
//! every size from the input shape and draws He weights, Adam owns its
//! state, the trainer runs the book's loop.
//!
//! `MNIST_DIR=../shared/data/mnist cargo run --release -p train --example custom_convnet [EPOCHS]`
//! (`cargo xtask fetch` puts the files in `data/mnist`.)

use layers::{Init, NetSpec, OptimizerConfig, OptimizerKind};
use mnist::{Dataset, Mnist};
use train::{ImageData, ModelSpec, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("MNIST_DIR").ok_or("set MNIST_DIR to the folder of the MNIST files")?;
    let mnist = Mnist::load(dir.as_ref(), Dataset::Mnist)?;
    let train_set = ImageData::new(&mnist.train.images, &mnist.train.labels, 784)?;
    let test_set = ImageData::new(&mnist.test.images, &mnist.test.labels, 784)?;

    // conv -> BatchNorm -> ReLU -> pool: 16x24x24, then 16x12x12; an affine layer scores 10 classes.
    let features = NetSpec::new(&[1, 28, 28]).conv(16, 5).batch_norm().relu().pool(2);
    let config = TrainConfig {
        model: ModelSpec::Net(features.affine(10).init(Init::He)),
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        epochs: Some(std::env::args().nth(1).map_or(Ok(1), |n| n.parse())?),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::<f32, _>::new(config, train_set, test_set, 10)?;
    let summary = trainer.run(&mut ())?;
    for e in trainer.evals() {
        let (epoch, train, test) = (e.epoch, e.train_accuracy, e.test_accuracy);
        println!("epoch {epoch:.0}: train acc {train:.4}, test acc {test:.4}");
    }
    println!("{} in {:.1} s", trainer.model().summary(), summary.seconds_total);
    Ok(())
}
