//! Training on a data set of one's own: two interleaved spirals of points in
//! the plane (no MNIST), learned by a small net with the same trainer the
//! MNIST runs use, then drawn as a map of the predicted class.
//!
//! `cargo run --release -p train --example own_data`

use layers::{Init, NetSpec, OptimizerConfig, OptimizerKind, Tensor};
use train::{ArrayData, ModelSpec, TrainConfig, Trainer};

/// `count` points on each of two spirals, turning `turns` times, as rows
/// `(x, y)` in about [-1, 1] and labels 0 and 1.
fn two_spirals(count: usize, turns: f32) -> (Vec<f32>, Vec<usize>) {
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    for i in 0..count {
        let t = i as f32 / count as f32; // 0 at the centre, 1 at the rim
        let angle = t * turns * std::f32::consts::TAU;
        for class in 0..2 {
            // The second spiral is the first turned half a circle.
            let phase = class as f32 * std::f32::consts::PI;
            points.extend([t * (angle + phase).cos(), t * (angle + phase).sin()]);
            labels.push(class);
        }
    }
    (points, labels)
}

fn main() -> Result<(), train::TrainError> {
    let (points, labels) = two_spirals(1000, 1.5);
    let (test_points, test_labels) = two_spirals(250, 1.5);
    let train_set = ArrayData::new(&points, &labels, 2)?;
    let test_set = ArrayData::new(&test_points, &test_labels, 2)?;

    let net = NetSpec::new(&[2])
        .affine(64)
        .relu()
        .affine(64)
        .relu()
        .affine(2)
        .init(Init::He);
    let config = TrainConfig {
        model: ModelSpec::Net(net),
        optimizer: OptimizerConfig::new(OptimizerKind::Adam).with_learning_rate(0.01),
        batch_size: 50,
        iters: 3000,
        eval_every: Some(500),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::<f32, _>::new(config, train_set, test_set, 2)?;
    let summary = trainer.run(&mut ())?;
    for e in trainer.evals() {
        println!(
            "iter {:>5}  train acc {:.4}  test acc {:.4}",
            e.iteration, e.train_accuracy, e.test_accuracy
        );
    }
    println!(
        "{} parameters; {:.2} s",
        trainer.model().num_params(),
        summary.seconds_total
    );

    // The plane as the net sees it: each character is the class predicted at
    // that point ('.' spiral 0, '#' spiral 1), a training point drawn as 'o'/'x'.
    let (width, height) = (64, 28);
    let mut grid = Vec::with_capacity(width * height * 2);
    for row in 0..height {
        for col in 0..width {
            let x = col as f32 / (width - 1) as f32 * 2.2 - 1.1;
            let y = 1.1 - row as f32 / (height - 1) as f32 * 2.2;
            grid.extend([x, y]);
        }
    }
    let grid = Tensor::from_vec(grid, &[width * height, 2]).expect("width * height rows of 2");
    let mut model = trainer.model().clone();
    let scores = model.predict(&grid)?;
    let mut map: Vec<Vec<char>> = (0..height)
        .map(|row| {
            (0..width)
                .map(|col| ['.', '#'][scores.row_argmax(row * width + col)])
                .collect()
        })
        .collect();
    for (point, &label) in points.chunks_exact(2).zip(&labels).step_by(5) {
        let col = ((point[0] + 1.1) / 2.2 * (width - 1) as f32).round() as usize;
        let row = ((1.1 - point[1]) / 2.2 * (height - 1) as f32).round() as usize;
        map[row.min(height - 1)][col.min(width - 1)] = ['o', 'x'][label];
    }
    for line in map {
        println!("  {}", line.into_iter().collect::<String>());
    }
    println!("test accuracy {:.4}", summary.test_accuracy);
    Ok(())
}
