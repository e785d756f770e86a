//! Accuracy over a whole set, spread over rayon's current pool.
//!
//! The set is cut into fixed chunks (at most [`EVAL_CHUNK`] images, fewer
//! for a model with wide layer outputs; see [`chunk_images`]) whatever the
//! thread count, and each chunk's result depends only on its own rows, so the
//! counts are identical for any `--threads`. Models run in inference mode
//! (Dropout scales, BatchNorm uses its running statistics) and are shared by
//! `&` between the threads.

use crate::{Dataset, Precision, TrainError};
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
    let results = over_chunks(net, data, None, |logits, labels| {
        let mut acc = R::default();
        let scores = logits.shape()[1];
        for (row, &label) in labels.iter().enumerate() {
            let finite = logits.as_slice()[row * scores..(row + 1) * scores]
                .iter()
                .all(|v| v.is_finite());
            fold(&mut acc, logits.row_argmax(row), label, finite);
        }
        acc
    });
    results.into_iter().fold(R::default(), |a, b| a + b)
}

/// Rounds values in place to a narrower format (see [`Precision`]).
type Rounding<'a, T> = &'a (dyn Fn(&mut [T]) + Sync);

/// The network's scores for `data` in fixed chunks of [`chunk_images`]
/// examples, spread over rayon: `per_chunk(logits, labels)` for each, the
/// results in chunk order (so the same for any thread count). With `round`,
/// the input and every layer's output are rounded as they are produced.
/// The caller has checked the examples' size.
fn over_chunks<T: Element, D: Dataset, R: Send>(
    net: &Sequential<T>,
    data: &D,
    round: Option<Rounding<'_, T>>,
    per_chunk: impl Fn(&Tensor<T>, &[usize]) -> R + Sync,
) -> Vec<R> {
    let chunk_len = chunk_images(net);
    let chunks = data.len().div_ceil(chunk_len);
    // Each piece of work rayon splits off builds its own scratch, several MB
    // of fresh pages (zeroed by the kernel) for the mlp: two pieces a thread
    // keep that cost small and still balance the threads.
    let pieces = 2 * rayon::current_num_threads();
    (0..chunks)
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
                let logits = match round {
                    None => net.predict_with(&scratch.x, &mut scratch.activations),
                    Some(round) => net.predict_rounded_with(&mut scratch.x, &mut scratch.activations, round),
                }
                .expect("evaluation data has the network's input size (checked by the caller)");
                per_chunk(logits, &scratch.labels)
            },
        )
        .collect()
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
/// causes; [`TrainError::Data`] when the examples are not of the network's
/// input size.
pub fn checked_accuracy<T: Element, D: Dataset>(net: &Sequential<T>, data: &D) -> Result<f64, TrainError> {
    if data.is_empty() {
        return Ok(0.0);
    }
    check_input_size(net, data)?;
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

/// Refuses examples that are not of the network's input size, which
/// [`predictions`] would panic on.
fn check_input_size<T: Element, D: Dataset>(net: &Sequential<T>, data: &D) -> Result<(), TrainError> {
    if data.features() != net.input_size() {
        return Err(TrainError::Data(format!(
            "the examples have {} values but the model takes {} inputs",
            data.features(),
            net.input_size()
        )));
    }
    Ok(())
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
    count_predictions(net, data, classes).rows(classes)
}

/// [`confusion_matrix`] in one pass over `data` that refuses, as
/// [`checked_accuracy`] does, a model whose scores are not finite on some
/// example ([`TrainError::NonFiniteOutput`]) or examples not of its input
/// size ([`TrainError::Data`]). With labels below `classes`, the accuracy is
/// its diagonal over `data.len()` ([`matrix_accuracy`]): the number
/// [`checked_accuracy`] gives, without scoring the set a second time.
pub fn checked_confusion_matrix<T: Element, D: Dataset>(
    net: &Sequential<T>,
    data: &D,
    classes: usize,
) -> Result<Vec<Vec<usize>>, TrainError> {
    if !data.is_empty() {
        check_input_size(net, data)?;
    }
    let counts = count_predictions(net, data, classes);
    if counts.nonfinite > 0 {
        return Err(TrainError::NonFiniteOutput {
            examples: counts.nonfinite,
            of: data.len(),
        });
    }
    Ok(counts.rows(classes))
}

/// The class probabilities of every example of `data`, in order: the
/// softmax of its scores, `data.len()` rows of `classes` (the network's
/// outputs) values, row-major, in f64. One pass; refuses, as
/// [`checked_accuracy`] does, scores that are not finite and examples not of
/// the network's input size. For averaging several models (an ensemble)
/// and for looking at single predictions.
pub fn checked_probabilities<T: Element, D: Dataset>(net: &Sequential<T>, data: &D) -> Result<Vec<f64>, TrainError> {
    probabilities_rounded(net, data, None)
}

/// [`checked_probabilities`] with the model run in `precision`: its
/// weights rounded to that format once, and its input and every layer's
/// output as they are produced (see [`Precision`]). F32 is
/// [`checked_probabilities`] itself.
pub fn checked_probabilities_in<D: Dataset>(
    net: &Sequential<f32>,
    data: &D,
    precision: Precision,
) -> Result<Vec<f64>, TrainError> {
    if precision == Precision::F32 {
        return checked_probabilities(net, data);
    }
    let mut rounded = net.clone();
    rounded.visit_params_mut(&mut |_, param| precision.round_all(param.value.as_mut_slice()));
    let round = |values: &mut [f32]| precision.round_all(values);
    probabilities_rounded(&rounded, data, Some(&round))
}

/// The pass of [`checked_probabilities`], each layer's output passed
/// through `round` when there is one.
fn probabilities_rounded<T: Element, D: Dataset>(
    net: &Sequential<T>,
    data: &D,
    round: Option<Rounding<'_, T>>,
) -> Result<Vec<f64>, TrainError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    check_input_size(net, data)?;
    let classes = net.output_size();
    // Each chunk's rows, and how many of them had scores that are not finite.
    let parts: Vec<(Vec<f64>, usize)> = over_chunks(net, data, round, |logits, labels| {
        let mut rows = Vec::with_capacity(labels.len() * classes);
        let mut nonfinite = 0;
        for row in logits.as_slice().chunks_exact(classes).take(labels.len()) {
            nonfinite += usize::from(!row.iter().all(|v| v.is_finite()));
            // exp(s - max) / sum: the largest term is 1, nothing overflows.
            let max = row.iter().map(|v| v.to_f64()).fold(f64::NEG_INFINITY, f64::max);
            let start = rows.len();
            rows.extend(row.iter().map(|v| (v.to_f64() - max).exp()));
            let sum: f64 = rows[start..].iter().sum();
            rows[start..].iter_mut().for_each(|p| *p /= sum);
        }
        (rows, nonfinite)
    });
    let nonfinite: usize = parts.iter().map(|(_, n)| n).sum();
    if nonfinite > 0 {
        return Err(TrainError::NonFiniteOutput {
            examples: nonfinite,
            of: data.len(),
        });
    }
    Ok(parts.into_iter().flat_map(|(rows, _)| rows).collect())
}

/// The class of each row of `probabilities` (rows of `classes` values): the
/// first of the largest, as [`accuracy`] takes the first of the largest
/// scores.
pub fn argmax_rows(probabilities: &[f64], classes: usize) -> Vec<usize> {
    probabilities
        .chunks_exact(classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (j, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// The fraction of `examples` on the diagonal of `matrix` (a
/// [`confusion_matrix`]: the examples predicted as their label), in `[0,
/// 1]`; 0 for no examples.
pub fn matrix_accuracy(matrix: &[Vec<usize>], examples: usize) -> f64 {
    if examples == 0 {
        return 0.0;
    }
    let correct: usize = matrix.iter().enumerate().filter_map(|(i, row)| row.get(i)).sum();
    correct as f64 / examples as f64
}

/// The counts of [`confusion_matrix`] over `data` (nothing scored for an empty set).
fn count_predictions<T: Element, D: Dataset>(net: &Sequential<T>, data: &D, classes: usize) -> Counts {
    if data.is_empty() {
        return Counts::default();
    }
    predictions(net, data, |acc: &mut Counts, predicted, label, finite| {
        if acc.matrix.is_empty() {
            acc.matrix = vec![0; classes * classes];
        }
        if predicted < classes && label < classes {
            acc.matrix[label * classes + predicted] += 1;
        }
        acc.nonfinite += usize::from(!finite);
    })
}

/// A flat `classes x classes` count matrix that adds elementwise (empty is
/// zero), and the examples whose scores were not finite.
#[derive(Default)]
struct Counts {
    matrix: Vec<usize>,
    nonfinite: usize,
}

impl Counts {
    /// The matrix as `classes` rows.
    fn rows(self, classes: usize) -> Vec<Vec<usize>> {
        let flat = if self.matrix.is_empty() {
            vec![0; classes * classes]
        } else {
            self.matrix
        };
        flat.chunks(classes.max(1)).map(|row| row.to_vec()).collect()
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, other: Counts) -> Counts {
        let nonfinite = self.nonfinite + other.nonfinite;
        let matrix = if self.matrix.is_empty() {
            other.matrix
        } else if other.matrix.is_empty() {
            self.matrix
        } else {
            self.matrix.iter().zip(&other.matrix).map(|(a, b)| a + b).collect()
        };
        Counts { matrix, nonfinite }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArrayData;
    use layers::NetSpec;

    /// 1234 examples (more than two chunks) of 6 values, labels of 3 classes.
    fn examples() -> (Vec<f32>, Vec<usize>) {
        let values = (0..1234 * 6).map(|i| (i as f32 * 0.731).sin()).collect();
        let labels = (0..1234).map(|i| (i * 7 + i / 5) % 3).collect();
        (values, labels)
    }

    #[test]
    fn one_pass_gives_the_matrix_and_the_accuracy_of_two() {
        let (values, labels) = examples();
        let data = ArrayData::new(&values, &labels, 6).unwrap();
        let net = NetSpec::new(&[6]).affine(5).relu().affine(3).build::<f32>(7).unwrap();
        let matrix = checked_confusion_matrix(&net, &data, 3).unwrap();
        assert_eq!(matrix, confusion_matrix(&net, &data, 3));
        assert_eq!(matrix.iter().flatten().sum::<usize>(), 1234);
        let acc = matrix_accuracy(&matrix, data.len());
        // The very number the separate pass gives, not merely a close one.
        assert_eq!(acc, checked_accuracy(&net, &data).unwrap());
        assert_eq!(acc, accuracy(&net, &data));
        assert!(acc > 0.0 && acc < 1.0, "{acc}: a test that can tell");
        assert_eq!(matrix_accuracy(&matrix, 0), 0.0);
        let empty = ArrayData::new(&values[..0], &labels[..0], 6).unwrap();
        assert_eq!(checked_confusion_matrix(&net, &empty, 3).unwrap(), vec![vec![0; 3]; 3]);
    }

    #[test]
    fn non_finite_scores_or_other_sizes_are_refused_as_by_checked_accuracy() {
        let (mut values, labels) = examples();
        // Rows 0, 10, 20, ... bright enough (3 x 10 x 2e37) to overflow f32; the
        // others, within 1, stay finite.
        for row in (0..1234).step_by(10) {
            values[row * 6..(row + 1) * 6].fill(10.0);
        }
        let data = ArrayData::new(&values, &labels, 6).unwrap();
        let mut net = NetSpec::new(&[6]).affine(3).build::<f32>(1).unwrap();
        let w: Vec<f32> = (0..18).map(|i| if i % 2 == 0 { 2e37 } else { 1e-3 }).collect();
        net.set_tensor("W1", &[6, 3], &w).unwrap();
        let err = checked_confusion_matrix(&net, &data, 3).unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::NonFiniteOutput {
                    examples: 124,
                    of: 1234
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), checked_accuracy(&net, &data).unwrap_err().to_string());

        let narrow = ArrayData::new(&values[..50], &labels[..10], 5).unwrap();
        let err = checked_confusion_matrix(&net, &narrow, 3).unwrap_err();
        assert!(matches!(err, TrainError::Data(_)), "{err}");
    }

    #[test]
    fn probabilities_are_a_softmax_per_example_whose_argmax_is_the_prediction() {
        let (values, labels) = examples();
        let data = ArrayData::new(&values, &labels, 6).unwrap();
        let net = NetSpec::new(&[6]).affine(5).relu().affine(3).build::<f32>(7).unwrap();
        let probabilities = checked_probabilities(&net, &data).unwrap();
        let classes = net.output_size();
        assert_eq!(probabilities.len(), data.len() * classes);
        for row in probabilities.chunks_exact(classes) {
            let sum: f64 = row.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-12 && row.iter().all(|&p| (0.0..=1.0).contains(&p)),
                "{row:?}"
            );
        }
        let predicted = argmax_rows(&probabilities, classes);
        let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let acc = correct as f64 / data.len() as f64;
        assert_eq!(acc, accuracy(&net, &data));
        assert!(acc > 0.0 && acc < 1.0, "{acc}: a test that can tell");
    }

    #[test]
    fn narrower_formats_round_the_weights_and_every_layer_output() {
        let (values, labels) = examples();
        let data = ArrayData::new(&values, &labels, 6).unwrap();
        let net = NetSpec::new(&[6]).affine(5).relu().affine(3).build::<f32>(7).unwrap();
        let exact = checked_probabilities(&net, &data).unwrap();
        assert_eq!(checked_probabilities_in(&net, &data, Precision::F32).unwrap(), exact);
        for (precision, bound) in [(Precision::F16, 1e-2), (Precision::Bf16, 5e-2)] {
            let rounded = checked_probabilities_in(&net, &data, precision).unwrap();
            let worst = rounded
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            // Close, and not the same: the rounding happened.
            assert!(worst > 0.0 && worst < bound, "{precision}: {worst}");
        }
        // The model itself is left as it was.
        assert_eq!(checked_probabilities(&net, &data).unwrap(), exact);
    }
}
