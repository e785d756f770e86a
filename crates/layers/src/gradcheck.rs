//! Numerical gradients and the relative error used to judge backprop.
//!
//! Central difference: `df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h`, with
//! error O(h^2). The comparison is
//! `max_i |a_i - n_i| / max(max_i |a_i| + max_i |n_i|, eps)`: a relative error
//! over the whole tensor, so tiny entries do not blow it up.
//!
//! Gradients are checked in training mode (BatchNorm on batch statistics,
//! Dropout with a mask). Every forward pass reseeds the random stream from
//! the same seed, so all the perturbed passes see the mask backprop saw.

use crate::{layer_stream, Layer, LayerError, LayerRng, Sequential, Target};
use rand::SeedableRng;
use rayon::prelude::*;
use tensor::{Element, Tensor};

/// Number of parameters one worker perturbs before taking the next chunk in
/// [`numerical_gradient`]. Fixed, so the work split (and thus the result)
/// does not depend on the thread count.
const NUMERICAL_CHUNK: usize = 64;

/// Floor of the denominator, so two all-zero gradients compare as equal.
const EPS: f64 = 1e-12;

/// `max|a - n| / max(max|a| + max|n|, eps)`.
///
/// # Panics
/// When the slices differ in length.
pub fn relative_error(analytic: &[f64], numerical: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numerical.len(), "relative_error: length mismatch");
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let max_diff = analytic
        .iter()
        .zip(numerical)
        .fold(0.0f64, |m, (a, n)| m.max((a - n).abs()));
    max_diff / (max_abs(analytic) + max_abs(numerical)).max(EPS)
}

/// Mean of `|a_i - n_i|`: the figure the book prints for its gradient check.
pub fn mean_abs_diff(analytic: &[f64], numerical: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numerical.len(), "mean_abs_diff: length mismatch");
    if analytic.is_empty() {
        return 0.0;
    }
    analytic.iter().zip(numerical).map(|(a, n)| (a - n).abs()).sum::<f64>() / analytic.len() as f64
}

/// Central-difference gradient of `f` at `x`.
pub fn central_difference(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut point = x.to_vec();
    (0..x.len())
        .map(|i| {
            point[i] = x[i] + h;
            let plus = f(&point);
            point[i] = x[i] - h;
            let minus = f(&point);
            point[i] = x[i];
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

/// Relative errors of one layer's backward pass against central differences.
#[derive(Debug, Clone)]
pub struct LayerCheck {
    /// Error of `dL/d(input)`.
    pub input: f64,
    /// Error of each parameter gradient, by name.
    pub params: Vec<(&'static str, f64)>,
    /// Whether a second `backward` call gave bit-identical gradients.
    pub repeatable: bool,
}

impl LayerCheck {
    /// The largest of all the errors.
    pub fn worst(&self) -> f64 {
        self.params.iter().map(|p| p.1).fold(self.input, f64::max)
    }
}

/// Checks a layer's backward pass in f64, in training mode.
///
/// The scalar under test is `L = sum(forward_train(x) * w)` with fixed random
/// `w`, so `dL/d(output) = w` exercises every output element with a different
/// weight. Every training pass draws from a stream seeded with `seed`.
pub fn check_layer(layer: &mut dyn Layer<f64>, input: &Tensor<f64>, h: f64, seed: u64) -> LayerCheck {
    let stream = || LayerRng::seed_from_u64(seed);
    let mut output = Tensor::zeros(&[0]);
    layer.forward_train(input, &mut output, &mut stream());
    let mut rng = stream();
    rng.set_stream(1);
    let weights = Tensor::<f64>::randn(output.shape(), 1.0, &mut rng);
    let loss = |layer: &mut dyn Layer<f64>, x: &Tensor<f64>| {
        let mut out = Tensor::zeros(&[0]);
        layer.forward_train(x, &mut out, &mut stream());
        out.as_slice()
            .iter()
            .zip(weights.as_slice())
            .map(|(o, w)| o * w)
            .sum::<f64>()
    };

    let mut grad_input = Tensor::zeros(input.shape());
    layer.forward_train(input, &mut output, &mut stream());
    layer.backward(input, &output, &weights, Some(&mut grad_input));
    let grads_first = collect_grads(layer);
    let mut grad_input_again = Tensor::zeros(input.shape());
    layer.backward(input, &output, &weights, Some(&mut grad_input_again));
    let repeatable = grad_input_again == grad_input && collect_grads(layer) == grads_first;
    assert_eq!(
        grad_input.shape(),
        input.shape(),
        "{}: grad_input must have the input's shape",
        layer.name()
    );

    let numerical_input = central_difference(input.as_slice(), h, |values| {
        let x = Tensor::from_vec(values.to_vec(), input.shape()).expect("same shape");
        loss(layer, &x)
    });
    let input_error = relative_error(grad_input.as_slice(), &numerical_input);

    let mut params = Vec::new();
    for (index, (name, analytic)) in grads_first.iter().enumerate() {
        let values = nth_param(layer, index);
        let numerical = central_difference(&values, h, |perturbed| {
            set_nth_param(layer, index, perturbed);
            loss(layer, input)
        });
        set_nth_param(layer, index, &values);
        params.push((*name, relative_error(analytic, &numerical)));
    }
    LayerCheck {
        input: input_error,
        params,
        repeatable,
    }
}

fn collect_grads(layer: &dyn Layer<f64>) -> Vec<(&'static str, Vec<f64>)> {
    let mut grads = Vec::new();
    layer.visit_params(&mut |p| grads.push((p.kind, p.grad.as_slice().to_vec())));
    grads
}

fn nth_param(layer: &dyn Layer<f64>, n: usize) -> Vec<f64> {
    let mut found = Vec::new();
    let mut index = 0;
    layer.visit_params(&mut |p| {
        if index == n {
            found = p.value.as_slice().to_vec();
        }
        index += 1;
    });
    found
}

fn set_nth_param(layer: &mut dyn Layer<f64>, n: usize, values: &[f64]) {
    let mut index = 0;
    layer.visit_params_mut(&mut |p| {
        if index == n {
            p.value.as_mut_slice().copy_from_slice(values);
        }
        index += 1;
    });
}

/// The book's `numerical_gradient` of a whole model: for every parameter
/// `p`, `(L(p + h) - L(p - h)) / 2h` with an honest full forward pass (in
/// training mode, stream seeded with `seed`, weight decay included) for each
/// of the two perturbations; the layers' stream is [`layer_stream`]`(seed)`
/// for every pass, as backprop's must be. Returns `(name, gradient)` in the model's
/// parameter order. Spread over rayon's current pool; each worker perturbs
/// its own copy of the model, so nothing is shared or aliased.
pub fn numerical_gradient<T: Element>(
    model: &Sequential<T>,
    x: &Tensor<T>,
    target: Target<'_, T>,
    h: T,
    seed: u64,
) -> Result<Vec<(String, Tensor<T>)>, LayerError> {
    model.check_target(x, target)?;
    let params = model.params();
    // (parameter, element) for every scalar parameter.
    let flat: Vec<(usize, usize)> = params
        .iter()
        .enumerate()
        .flat_map(|(p, param)| (0..param.value.numel()).map(move |e| (p, e)))
        .collect();
    let derivatives = numerical_derivatives(model, x, target, h, seed, &flat, &|_| {});
    let mut offset = 0;
    let mut out = Vec::with_capacity(params.len());
    for param in &params {
        let n = param.value.numel();
        let grad = Tensor::from_vec(derivatives[offset..offset + n].to_vec(), param.value.shape())
            .expect("numerical gradient has the parameter's shape");
        out.push((param.name.to_string(), grad));
        offset += n;
    }
    Ok(out)
}

/// The passes of [`numerical_gradient`] for the `(parameter, element)`
/// pairs of `elements` only, in order: `(L(p + h) - L(p - h)) / 2h` each.
/// `on_chunk(n)` is called as each piece of `n` elements finishes (on the
/// worker that did it), for a progress bar. The caller has checked `x` and
/// `target` against `model` ([`Sequential::check_target`]).
pub fn numerical_derivatives<T: Element>(
    model: &Sequential<T>,
    x: &Tensor<T>,
    target: Target<'_, T>,
    h: T,
    seed: u64,
    elements: &[(usize, usize)],
    on_chunk: &(dyn Fn(usize) + Sync),
) -> Vec<T> {
    let two_h = h + h;
    elements
        .par_chunks(NUMERICAL_CHUNK)
        .map_init(
            || model.clone(),
            |model, chunk| {
                let loss = |model: &mut Sequential<T>| model.loss_train_unchecked(x, target, &mut layer_stream(seed));
                let derivatives = chunk
                    .iter()
                    .map(|&(p, e)| {
                        let original = model.replace_param_element(p, e, T::ZERO);
                        model.replace_param_element(p, e, original + h);
                        let plus = loss(model);
                        model.replace_param_element(p, e, original - h);
                        let minus = loss(model);
                        model.replace_param_element(p, e, original);
                        (plus - minus) / two_h
                    })
                    .collect::<Vec<T>>();
                on_chunk(chunk.len());
                derivatives
            },
        )
        .flatten_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_scale_free_and_zero_safe() {
        assert_eq!(relative_error(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        let e1 = relative_error(&[1.0, 2.0], &[1.0, 2.001]);
        let e2 = relative_error(&[1e-6, 2e-6], &[1e-6, 2.001e-6]);
        assert!((e1 - e2).abs() < 1e-9 && e1 > 1e-4, "{e1} {e2}");
    }

    #[test]
    fn central_difference_of_a_cubic() {
        // d/dx x^3 = 3x^2; the central difference is exact up to h^2 terms.
        let grad = central_difference(&[2.0], 1e-4, |v| v[0].powi(3));
        assert!((grad[0] - 12.0).abs() < 1e-7, "{}", grad[0]);
        assert!((mean_abs_diff(&[1.0, 2.0], &[1.5, 1.0]) - 0.75).abs() < 1e-15);
    }
}
