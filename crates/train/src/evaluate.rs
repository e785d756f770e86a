//! Accuracy over a whole set, spread over rayon's current pool.
//!
//! The set is cut into fixed chunks (at most [`EVAL_CHUNK`] images, fewer
//! for a model with wide layer outputs; see [`chunk_images`]) whatever the
//! thread count, and each chunk's result depends only on its own rows, so the
//! counts are identical for any `--threads`. Models run in inference mode
//! (Dropout scales, BatchNorm uses its running statistics) and are shared by
//! `&` between the threads.

use crate::{Dataset, TrainError};
use layers::Sequential;
use rayon::prelude::*;
use tensor::{Element, Tensor};

/// Most images per evaluation chunk: large enough for an efficient GEMM, small
/// enough that two threads balance on a 10000-image test set.
pub const EVAL_CHUNK: usize = 500;

/// Most values in a chunk's widest layer output (8 MiB in f32). A chunk of
/// 500 SimpleConvNet images would hold 35 MB in each convolution output,
/// streamed through memory by every layer after it; at about 120 images the
/// outputs stay in the last-level cache, and evaluation of the test set took
/// 0.18 s instead of 0.44 s (2 threads).
const CHUNK_VALUES: usize = 1 << 21;

/// Images per evaluation chunk for `net`: [`EVAL_CHUNK`], or fewer so that
/// the widest layer output of a chunk holds at most 2^21 values (8 MiB in f32).
pub fn chunk_images<T: Element>(net: &Sequential<T>) -> usize {
    chunk_rows(net.widest_activation())
}

/// Examples per evaluation chunk for a net whose widest layer output holds
/// `widest` values per example.
pub(crate) fn chunk_rows(widest: usize) -> usize {
    (CHUNK_VALUES / widest.max(1)).clamp(1, EVAL_CHUNK)
}

/// Per-thread buffers: a chunk of input, its labels, the layer outputs.
struct Scratch<T: Element> {
    x: Tensor<T>,
    labels: Vec<usize>,
    activations: Vec<Tensor<T>>,
}

/// Runs `fold(acc, predicted, label, finite)` for every image (`finite`:
/// whether all its scores are), returning the per-chunk results summed in
/// chunk order.
fn predictions<T: Element, D: Dataset, R: Send + Default + std::ops::Add<Output = R>>(
    net: &Sequential<T>,
    data: &D,
    fold: impl Fn(&mut R, usize, usize, bool) + Sync,
) -> R {
    let chunk_len = chunk_images(net);
    let chunks = data.len().div_ceil(chunk_len);
    // Each piece of work rayon splits off builds its own scratch, several MB
    // of fresh pages (zeroed by the kernel) for the mlp: two pieces a thread
    // keep that cost small and still balance the threads.
    let pieces = 2 * rayon::current_num_threads();
    let results: Vec<R> = (0..chunks)
        .into_par_iter()
        .with_min_len(chunks.div_ceil(pieces).max(1))
        .map_init(
            || Scratch {
                x: Tensor::zeros(&[chunk_len, data.features()]),
                labels: Vec::with_capacity(chunk_len),
                activations: net.new_scratch(),
            },
            |scratch, chunk| {
                data.gather_range(chunk * chunk_len, chunk_len, &mut scratch.x, &mut scratch.labels);
                net.shape_batch(&mut scratch.x)
                    .expect("evaluation data has the network's input size (checked by the caller)");
                let logits = net
                    .predict_with(&scratch.x, &mut scratch.activations)
                    .expect("evaluation data has the network's input size (checked by the caller)");
                let mut acc = R::default();
                let scores = logits.shape()[1];
                for (row, &label) in scratch.labels.iter().enumerate() {
                    let finite = logits.as_slice()[row * scores..(row + 1) * scores]
                        .iter()
                        .all(|v| v.is_finite());
                    fold(&mut acc, logits.row_argmax(row), label, finite);
                }
                acc
            },
        )
        .collect();
    results.into_iter().fold(R::default(), |a, b| a + b)
}

/// Fraction of `data` the network classifies correctly (its arg-max
/// prediction is the label), in `[0, 1]`; 0 for an empty set. Panics if
/// `data.features()` is not the network's input size.
pub fn accuracy<T: Element, D: Dataset>(net: &Sequential<T>, data: &D) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let correct: usize = predictions(net, data, |acc: &mut usize, predicted, label, _| {
        *acc += usize::from(predicted == label)
    });
    correct as f64 / data.len() as f64
}

/// [`accuracy`] that refuses a model whose scores are not finite (NaN or
/// infinite) on some example: such a model's "accuracy" would be a number
/// with no meaning. The error counts the examples and names the likely
/// causes.
pub fn checked_accuracy<T: Element, D: Dataset>(net: &Sequential<T>, data: &D) -> Result<f64, TrainError> {
    if data.is_empty() {
        return Ok(0.0);
    }
    if data.features() != net.input_size() {
        return Err(TrainError::Data(format!(
            "the examples have {} values but the model takes {} inputs",
            data.features(),
            net.input_size()
        )));
    }
    let counts: Tally = predictions(net, data, |acc: &mut Tally, predicted, label, finite| {
        acc.correct += usize::from(predicted == label && finite);
        acc.nonfinite += usize::from(!finite);
    });
    if counts.nonfinite > 0 {
        return Err(TrainError::NonFiniteOutput {
            examples: counts.nonfinite,
            of: data.len(),
        });
    }
    Ok(counts.correct as f64 / data.len() as f64)
}

/// Examples classified correctly, and examples whose scores were not finite.
#[derive(Default, Clone, Copy)]
struct Tally {
    correct: usize,
    nonfinite: usize,
}

impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, other: Tally) -> Tally {
        Tally {
            correct: self.correct + other.correct,
            nonfinite: self.nonfinite + other.nonfinite,
        }
    }
}

/// `matrix[label][predicted]` counts over `data`, for `classes` classes:
/// `classes` rows of `classes` counts. A label or prediction of `classes` or
/// more is not counted. Panics as [`accuracy`] does.
pub fn confusion_matrix<T: Element, D: Dataset>(net: &Sequential<T>, data: &D, classes: usize) -> Vec<Vec<usize>> {
    let counts: Counts = predictions(net, data, |acc: &mut Counts, predicted, label, _| {
        if acc.0.is_empty() {
            acc.0 = vec![0; classes * classes];
        }
        if predicted < classes && label < classes {
            acc.0[label * classes + predicted] += 1;
        }
    });
    let flat = if counts.0.is_empty() {
        vec![0; classes * classes]
    } else {
        counts.0
    };
    flat.chunks(classes.max(1)).map(|row| row.to_vec()).collect()
}

/// A flat count matrix that adds elementwise (empty is zero).
#[derive(Default)]
struct Counts(Vec<usize>);

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, other: Counts) -> Counts {
        if self.0.is_empty() {
            return other;
        }
        if other.0.is_empty() {
            return self;
        }
        Counts(self.0.iter().zip(&other.0).map(|(a, b)| a + b).collect())
    }
}
