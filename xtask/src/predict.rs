//! `cargo xtask predict`: classify one image and draw it in the terminal.

use crate::common::{Result, SavedModelArgs, XtaskError};
use mnist::Split;
use std::process::ExitCode;
use tensor::Tensor;
use train::{Dataset as _, ImageData};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    saved: SavedModelArgs,
    /// Index of the image in the split.
    #[arg(long, allow_negative_numbers = true, value_parser = crate::common::parse_count::<0>)]
    index: usize,
    /// Which split to take the image from: test or train.
    #[arg(long, default_value = "test", value_parser = ["test", "train"])]
    split: String,
}

/// Darkest to brightest, two characters per pixel keep the aspect ratio.
const SHADES: &[u8] = b" .:-=+*#%@";

pub fn run(args: Args) -> Result<ExitCode> {
    let split = if args.split == "train" {
        Split::Train
    } else {
        Split::Test
    };
    let (checkpoint, dataset, set) = args.saved.load(split, 1, 1)?;
    if args.index >= set.len() {
        return Err(XtaskError::Usage(format!(
            "--index {} is outside the {} {} images",
            args.index,
            set.len(),
            args.split
        )));
    }
    let image = set.image(args.index);
    let data = ImageData::new(&set.images, &set.labels, set.pixels())?;
    let (mut x, mut labels) = (Tensor::<f32>::zeros(&[0]), Vec::new());
    data.gather(&[args.index], &mut x, &mut labels);
    let mut net = checkpoint.model;
    net.shape_batch(&mut x)?;
    let logits = net.predict(&x)?;
    if logits.row(0).iter().any(|v| !v.is_finite()) {
        return Err(train::TrainError::NonFiniteOutput { examples: 1, of: 1 }.into());
    }
    let lse = logits.row_log_sum_exp(0);
    let probs: Vec<f32> = logits.row(0).iter().map(|&z| (z - lse).exp()).collect();
    let predicted = logits.row_argmax(0);

    for row in image.chunks(set.cols) {
        let line: String = row
            .iter()
            .map(|&b| SHADES[b as usize * (SHADES.len() - 1) / 255] as char)
            .flat_map(|c| [c, c])
            .collect();
        say!("  |{line}|");
    }
    let names = dataset.class_names();
    let label = set.labels[args.index] as usize;
    say!(
        "{} image {}: predicted {} ({:.1}%), true label {}{}",
        args.split,
        args.index,
        names.get(predicted).unwrap_or(&"?"),
        probs[predicted] * 100.0,
        names.get(label).unwrap_or(&"?"),
        if predicted == label { "" } else { "  (wrong)" }
    );
    for (class, p) in probs.iter().enumerate() {
        let bar = "#".repeat((p * 40.0).round() as usize);
        say!("  {:>11} {:>6.2}% {bar}", names.get(class).unwrap_or(&"?"), p * 100.0);
    }
    Ok(ExitCode::SUCCESS)
}
