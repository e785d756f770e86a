//! `cargo xtask eval`: test accuracy and confusion matrix of a saved model.

use crate::common::{JsonArg, Result, SavedModelArgs, ThreadsArg, XtaskError};
use mnist::Split;
use std::process::ExitCode;
use train::{checked_confusion_matrix, matrix_accuracy, ImageData};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    saved: SavedModelArgs,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    json: JsonArg,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let pool = args.threads.pool()?;
    // Only the test split is scored, so only it is read.
    // The test splits hold 10000 images.
    let (checkpoint, dataset, split) = args.saved.load(Split::Test, 10_000, args.threads.count())?;
    let test = ImageData::new(&split.images, &split.labels, split.pixels())?;
    let net = &checkpoint.model;
    if test.is_empty() {
        return Err(XtaskError::Usage(format!("the {dataset} test split holds no images")));
    }
    let classes = net.output_size();
    // One pass over the test set; scores that are not finite give no
    // accuracy: refused, with the likely cause.
    let matrix = pool.install(|| checked_confusion_matrix(net, &test, classes))?;
    let acc = matrix_accuracy(&matrix, test.len());
    say!(
        "{}: {} images, test accuracy {:.4}",
        args.saved.model.display(),
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
    args.json
        .print(&serde_json::json!({"test_accuracy": acc, "confusion_matrix": matrix}));
    Ok(ExitCode::SUCCESS)
}
