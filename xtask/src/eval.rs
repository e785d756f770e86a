//! `cargo xtask eval`: test accuracy and confusion matrix of a saved model.

use crate::common::{load_model, locate_data, parse_dataset, thread_pool, Result, XtaskError};
use mnist::Dataset;
use mnist::{Mnist, Split};
use std::path::PathBuf;
use std::process::ExitCode;
use train::{accuracy, confusion_matrix, Dataset as _, ImageData};

#[derive(clap::Args)]
pub struct Args {
    /// A model.safetensors written by `cargo xtask train`.
    #[arg(long)]
    model: PathBuf,
    /// Data set to evaluate on [default: the one the model was trained on].
    #[arg(long, value_parser = parse_dataset)]
    dataset: Option<Dataset>,
    /// Folder holding the files [default: $MNIST_DIR, else data/<dataset>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print a JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let pool = thread_pool(args.threads)?;
    let (checkpoint, dataset) = load_model(&args.model, args.dataset)?;
    // Only the test split is scored, so only it is read.
    let dir = locate_data(dataset, args.data_dir)?;
    let split = Mnist::load_split_verified(&dir, dataset, Split::Test)?;
    let test = ImageData::new(&split.images, &split.labels, split.pixels())?;
    let net = &checkpoint.model;
    if test.is_empty() {
        return Err(XtaskError::Usage(format!("the {dataset} test split holds no images")));
    }
    let classes = net.output_size();
    let (acc, matrix) = pool.install(|| (accuracy(net, &test), confusion_matrix(net, &test, classes)));
    say!(
        "{}: {} images, test accuracy {:.4}",
        args.model.display(),
        test.len(),
        acc
    );
    say!("confusion matrix (rows: true label, columns: predicted)");
    say_inline!("      ");
    for j in 0..classes {
        say_inline!("{j:>6}");
    }
    say!();
    for (i, row) in matrix.iter().enumerate() {
        say_inline!("{i:>4}  ");
        for count in row {
            say_inline!("{count:>6}");
        }
        let total: usize = row.iter().sum();
        say!(
            "   {:.3} recall",
            if total == 0 { 0.0 } else { row[i] as f64 / total as f64 }
        );
    }
    if args.json {
        say!(
            "{}",
            serde_json::json!({"test_accuracy": acc, "confusion_matrix": matrix})
        );
    }
    Ok(ExitCode::SUCCESS)
}
