//! `cargo xtask eval`: test accuracy and confusion matrix of a saved model,
//! or of several averaged (an ensemble), and the figure of the test images
//! it gets wrong (the book's figure 8-6).

use crate::common::{
    check_inference_cost, load_model, load_split, parse_dataset, write_failure, JsonArg, Result, ThreadsArg, XtaskError,
};
use mnist::{Dataset, Split};
use std::path::PathBuf;
use std::process::ExitCode;
use train::{argmax_rows, checked_probabilities_in, matrix_accuracy, report, ImageData, Precision};

#[derive(clap::Args)]
pub struct Args {
    /// A model.safetensors written by `cargo xtask train`; repeat it to
    /// average several models' probabilities (an ensemble).
    #[arg(long = "model", value_name = "MODEL", required = true)]
    models: Vec<PathBuf>,
    /// Data set of the images [default: the one the models were trained on].
    #[arg(long, value_parser = parse_dataset)]
    dataset: Option<Dataset>,
    /// Folder holding the four files [default: $MNIST_DIR (or $FASHION_MNIST_DIR), else data/<dataset>, fetched on first use].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also draw the test images the model (or ensemble) gets wrong, with
    /// their true and predicted labels, to this PNG (the first 100).
    #[arg(long, value_name = "FILE.png")]
    misclassified: Option<PathBuf>,
    /// Run the model in this format: f32, or f16 / bf16 with its weights,
    /// input and every layer's output rounded to it (the book's
    /// half_float_network.py).
    #[arg(long, default_value = "f32", value_name = "f32|f16|bf16")]
    precision: Precision,
    #[command(flatten)]
    threads: ThreadsArg,
    #[command(flatten)]
    json: JsonArg,
}

/// The most models one `eval` averages: each is scored in full.
const MAX_MODELS: usize = 16;

pub fn run(args: Args) -> Result<ExitCode> {
    let pool = args.threads.pool()?;
    if args.models.len() > MAX_MODELS {
        return Err(XtaskError::Usage(format!(
            "{} models is more than the {MAX_MODELS} an ensemble may average; give fewer --model",
            args.models.len()
        )));
    }
    // Every model is read and checked (its cost included) before any data
    // is looked for; they must agree on the data set.
    let mut models: Vec<(PathBuf, Dataset, train::Checkpoint<f32>)> = Vec::new();
    for path in &args.models {
        let (checkpoint, dataset) = load_model(path, args.dataset)?;
        check_inference_cost(path, &checkpoint.model, 10_000, args.threads.count())?;
        if let Some((first, first_dataset, _)) = models.first() {
            if dataset != *first_dataset {
                return Err(XtaskError::Usage(format!(
                    "{} was trained on {dataset}, {} on {first_dataset}; an ensemble scores one data set: give --dataset, or models of one data set",
                    path.display(),
                    first.display()
                )));
            }
        }
        models.push((path.clone(), dataset, checkpoint));
    }
    let dataset = models[0].1;
    // Only the test split is scored, so only it is read.
    let split = load_split(dataset, args.data_dir.as_deref(), Split::Test)?;
    let test = ImageData::new(&split.images, &split.labels, split.pixels())?;
    if test.is_empty() {
        return Err(XtaskError::Usage(format!("the {dataset} test split holds no images")));
    }
    let classes = models[0].2.model.output_size();
    let labels: Vec<usize> = split.labels.iter().map(|&l| usize::from(l)).collect();
    let accuracy_of = |predicted: &[usize]| {
        predicted.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
    };

    // One pass a model; probabilities that are not finite give no accuracy:
    // refused, with the likely cause. The ensemble averages them.
    let mut mean = vec![0.0f64; test.len() * classes];
    let mut each = Vec::new();
    for (path, _, checkpoint) in &models {
        let probabilities = pool.install(|| checked_probabilities_in(&checkpoint.model, &test, args.precision))?;
        each.push((path, accuracy_of(&argmax_rows(&probabilities, classes))));
        for (m, p) in mean.iter_mut().zip(&probabilities) {
            *m += p / models.len() as f64;
        }
    }
    let predicted = argmax_rows(&mean, classes);
    let mut matrix = vec![vec![0usize; classes]; classes];
    for (&p, &l) in predicted.iter().zip(&labels) {
        if l < classes {
            matrix[l][p] += 1;
        }
    }
    let acc = matrix_accuracy(&matrix, test.len());
    let name = if models.len() == 1 {
        models[0].0.display().to_string()
    } else {
        for (path, model_acc) in &each {
            say!("{}: test accuracy {model_acc:.4}", path.display());
        }
        format!("the mean of these {} models' probabilities", models.len())
    };
    let format = match args.precision {
        Precision::F32 => String::new(),
        p => format!(" (weights, input and every layer's output in {p})"),
    };
    say!("{name}: {} images, test accuracy {acc:.4}{format}", test.len());
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

    if let Some(out) = &args.misclassified {
        let wrong: Vec<usize> = (0..labels.len()).filter(|&i| predicted[i] != labels[i]).collect();
        let side = split.rows;
        let digits: Vec<(&[u8], String)> = wrong
            .iter()
            .take(report::MAX_DIGITS)
            .map(|&i| {
                let image = &split.images[i * side * side..(i + 1) * side * side];
                (image, format!("{} -> {}", labels[i], predicted[i]))
            })
            .collect();
        let title = format!(
            "{} of {} test images misclassified (true -> predicted){}",
            wrong.len(),
            test.len(),
            if wrong.len() > digits.len() {
                format!(", the first {}", digits.len())
            } else {
                String::new()
            }
        );
        report::plot_digits(out, &title, &digits, side).map_err(|e| match e {
            train::TrainError::Io { .. } | train::TrainError::NotAFolder { .. } => XtaskError::Failed(format!(
                "cannot write {}: {}; give --misclassified a path you can write",
                out.display(),
                write_failure(&e)
            )),
            e => e.into(),
        })?;
        say!("{title}: drawn to {}", out.display());
    }

    let models_json: Vec<serde_json::Value> = each
        .iter()
        .map(|(path, a)| serde_json::json!({"model": path.display().to_string(), "test_accuracy": a}))
        .collect();
    args.json.print(&serde_json::json!({
        "test_accuracy": acc,
        "confusion_matrix": matrix,
        "models": models_json,
        "precision": args.precision.to_string(),
    }));
    Ok(ExitCode::SUCCESS)
}
