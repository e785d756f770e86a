//! The models the page may use, and what it asks of them: a drawing's
//! prediction with the first hidden layer's values, and the test set ranked
//! misclassified first.

use super::http::Response;
use crate::common::{check_inference_cost, load_model, Result, XtaskError};
use layers::{LayerSpec, Sequential};
use mnist::{Dataset, ImageSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tensor::Tensor;

/// Runs offered from the runs folder, newest first: enough for a person
/// to choose from, few enough to load at start.
pub const MAX_SCANNED: usize = 50;

/// A model the server holds, known to the page by its index in the list.
pub struct ServedModel {
    /// The run folder's name (or the file's, for a `--model` outside one).
    pub name: String,
    /// The network, shared read-only by every request.
    pub model: Sequential<f32>,
    /// The test set scored by this model, made on first request.
    ranking: OnceLock<std::result::Result<Ranking, String>>,
}

/// The test set as the test panel steps through it.
pub struct Ranking {
    /// Test-set indices, misclassified first, each group in test-set order.
    pub order: Vec<usize>,
    /// How many the model gets wrong (the first `misclassified` of `order`).
    pub misclassified: usize,
    /// Every image's predicted class.
    pub predicted: Vec<usize>,
    /// Every image's class probabilities, `10` per image, row-major.
    pub probabilities: Vec<f64>,
}

impl ServedModel {
    /// Reads a checkpoint that `cargo xtask train` wrote and checks, before
    /// it is offered, that it was trained on `dataset` (its metadata says;
    /// MNIST and Fashion-MNIST models have the same shapes) and that scoring
    /// the whole test set with it is bounded (it is an untrusted file).
    /// `Err` of the data set it was trained on when that is another.
    pub fn load(
        path: &Path,
        name: String,
        dataset: Dataset,
        test_len: usize,
    ) -> Result<std::result::Result<Self, Dataset>> {
        let (checkpoint, trained_on) = load_model(path, None)?;
        if trained_on != dataset {
            return Ok(Err(trained_on));
        }
        check_inference_cost(path, &checkpoint.model, test_len, rayon::current_num_threads())?;
        Ok(Ok(Self::new(name, checkpoint.model)))
    }

    /// A model just trained by the page.
    pub fn new(name: String, model: Sequential<f32>) -> Self {
        ServedModel {
            name,
            model,
            ranking: OnceLock::new(),
        }
    }

    /// "mlp" or "convnet": whether the page draws its hidden values as a
    /// strip or as feature maps.
    pub fn kind(&self) -> &'static str {
        let convolutional = self
            .model
            .specs()
            .iter()
            .any(|spec| matches!(spec, LayerSpec::Convolution { .. }));
        if convolutional {
            "convnet"
        } else {
            "mlp"
        }
    }

    /// The model as `/api/models` lists it.
    pub fn describe(&self, id: usize, dataset: Dataset) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "name": self.name,
            "kind": self.kind(),
            "dataset": dataset.name(),
            "layers": self.model.summary(),
            "parameters": self.model.num_params(),
        })
    }

    /// The answer to a drawing: `pixels` (already checked: the model's input
    /// size, each in [0, 1]) through the network once, with the
    /// probabilities and the first hidden layer's values.
    pub fn predict(&self, pixels: &[f32], class_names: &[&str]) -> Response {
        let mut x = match Tensor::from_vec(pixels.to_vec(), &[1, pixels.len()]) {
            Ok(x) => x,
            Err(e) => return Response::error(500, format!("the drawing could not be made a tensor ({e})")),
        };
        if let Err(e) = self.model.shape_batch(&mut x) {
            return Response::error(400, format!("the drawing does not fit this model ({e})"));
        }
        let mut scratch = self.model.new_scratch();
        let logits = match self.model.predict_with(&x, &mut scratch) {
            Ok(logits) => logits.row(0).to_vec(),
            Err(e) => return Response::error(400, format!("the drawing does not fit this model ({e})")),
        };
        if logits.iter().any(|v| !v.is_finite()) {
            return Response::error(
                500,
                "this model's scores are not finite numbers (weights too large or corrupt); choose another model",
            );
        }
        let probabilities = softmax(&logits);
        let predicted = train::argmax_rows(&probabilities, probabilities.len())[0];
        let activations = self.first_hidden(&scratch);
        Response::json(
            200,
            &serde_json::json!({
                "predicted": predicted,
                "probabilities": probabilities,
                "class_names": class_names,
                "activations": activations,
            }),
        )
    }

    /// The first hidden layer's values, as `predict_with` left them in
    /// `scratch` (one buffer per layer): an mlp's first activation, a
    /// convnet's feature maps (the output of its first convolution's ReLU).
    fn first_hidden(&self, scratch: &[Tensor<f32>]) -> serde_json::Value {
        let specs = self.model.specs();
        let activation = |spec: &LayerSpec| match spec {
            LayerSpec::Relu => Some("ReLU"),
            LayerSpec::Sigmoid => Some("Sigmoid"),
            _ => None,
        };
        let found = match specs.iter().position(|s| matches!(s, LayerSpec::Convolution { .. })) {
            // The ReLU right after the convolution, where there is one.
            Some(conv) => match specs.get(conv + 1).and_then(activation) {
                Some(name) => Some((conv + 1, format!("{name} after the first convolution"))),
                None => Some((conv, "the first convolution".to_string())),
            },
            None => specs
                .iter()
                .enumerate()
                .find_map(|(i, spec)| activation(spec).map(|name| (i, format!("{name} after the first Affine layer")))),
        };
        let Some((index, layer)) = found else {
            return serde_json::Value::Null;
        };
        let output = &scratch[index];
        // `[1, D]` or `[1, C, H, W]`: the example's own shape.
        let shape = &output.shape()[1..];
        serde_json::json!({ "layer": layer, "shape": shape, "values": output.as_slice() })
    }

    /// The test set ranked by this model, scored on first use (seconds for
    /// DeepConvNet, once) on `pool`, and kept.
    pub fn ranking(&self, test: &ImageSet, pool: &rayon::ThreadPool) -> std::result::Result<&Ranking, String> {
        self.ranking
            .get_or_init(|| pool.install(|| Ranking::score(&self.model, test)))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Ranking {
    fn score(model: &Sequential<f32>, test: &ImageSet) -> std::result::Result<Self, String> {
        let data = train::ImageData::new(&test.images, &test.labels, test.pixels()).map_err(|e| e.to_string())?;
        let probabilities = train::checked_probabilities(model, &data).map_err(|e| e.to_string())?;
        let classes = probabilities.len() / test.labels.len().max(1);
        let predicted = train::argmax_rows(&probabilities, classes);
        let wrong = |i: &usize| predicted[*i] != usize::from(test.labels[*i]);
        let (mut order, right): (Vec<usize>, Vec<usize>) = (0..test.labels.len()).partition(wrong);
        let misclassified = order.len();
        order.extend(right);
        Ok(Ranking {
            order,
            misclassified,
            predicted,
            probabilities,
        })
    }
}

/// The models offered at start: those given (`--model`, and `--run`'s
/// `model.safetensors`), which must load, then the project's runs newest
/// first, skipped with a note when one cannot be used.
pub fn initial_models(
    given: &[PathBuf],
    runs_dir: &Path,
    dataset: Dataset,
    test_len: usize,
) -> Result<Vec<ServedModel>> {
    let mut models = Vec::new();
    // A run given by a path of another spelling is still offered once.
    let given_files: Vec<Option<PathBuf>> = given.iter().map(|p| std::fs::canonicalize(p).ok()).collect();
    for path in given {
        match ServedModel::load(path, model_name(path), dataset, test_len)? {
            Ok(model) => models.push(model),
            Err(trained_on) => {
                return Err(XtaskError::Usage(format!(
                "{} is a model of {trained_on}; this page serves {dataset} (give --dataset {trained_on} to serve it)",
                path.display()
            )))
            }
        }
    }
    let mut runs: Vec<(std::time::SystemTime, PathBuf)> = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path().join("model.safetensors"))
            .filter(|path| path.is_file() && !given_files.contains(&std::fs::canonicalize(path).ok()))
            .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
            .collect(),
        Err(_) => Vec::new(),
    };
    runs.sort_by_key(|run| std::cmp::Reverse(run.0));
    if runs.len() > MAX_SCANNED {
        eprintln!(
            "note: {} has {} runs; offering the newest {MAX_SCANNED} (give others with --model)",
            runs_dir.display(),
            runs.len()
        );
        runs.truncate(MAX_SCANNED);
    }
    for (_, path) in runs {
        match ServedModel::load(&path, model_name(&path), dataset, test_len) {
            Ok(Ok(model)) => models.push(model),
            // A run of the other data set is not this page's.
            Ok(Err(_)) => {}
            Err(e) => eprintln!("note: not offering {}: {e}", path.display()),
        }
    }
    Ok(models)
}

/// A model's name on the page: its run folder's, or its file's.
fn model_name(path: &Path) -> String {
    let named = |p: Option<&Path>| p.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    match path.file_name().and_then(|n| n.to_str()) {
        Some("model.safetensors") => named(path.parent()).unwrap_or_else(|| "model".into()),
        _ => named(Some(path)).unwrap_or_else(|| "model".into()),
    }
}

/// Softmax of one row of scores, in f64 (the scores are checked finite).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(f64::from(z)));
    let exps: Vec<f64> = logits.iter().map(|&z| (f64::from(z) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order_of_the_scores() {
        let p = softmax(&[1.0, 3.0, 3.0, -80.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[1] - p[2]).abs() < 1e-15 && p[1] > p[0] && p[0] > p[3]);
    }

    #[test]
    fn a_model_is_named_after_its_run_folder() {
        assert_eq!(
            model_name(Path::new("runs/mnist-mlp-seed42/model.safetensors")),
            "mnist-mlp-seed42"
        );
        assert_eq!(model_name(Path::new("/tmp/best.safetensors")), "best.safetensors");
    }
}
