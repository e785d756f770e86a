//! What a model costs before any of it is allocated or run: its parameters,
//! the values one example keeps in flight through its layers, and the
//! arithmetic of one forward pass, all from the layers' output shapes
//! ([`LayerSpec::output_shape`]). Training refuses a run that would not fit
//! in memory ([`crate::TrainConfig::memory_estimate`]); a command reading a
//! checkpoint, an untrusted file, bounds its work the same way.
//!
//! The operations are an upper bound of what the layers' forward passes do
//! (see [`ModelCost::of`] for each kind): a checkpoint's few numbers of
//! metadata (a window's side, a pad) can ask for hours of work, and a bound
//! that undercounts any layer lets such a file through.

use crate::TrainError;
use layers::LayerSpec;

/// What one tap of a max-pool window costs, in the GEMM's operations: a
/// tap is a load, a compare and the bookkeeping of where the maximum is,
/// in scalar code, and ran at about 2e9 a second on this project's machine
/// where the GEMMs of an evaluation ran at 3.7e10 operations a second.
/// Counted at 1, a checkpoint of large overlapping pools passed the bound
/// and `predict` took 17 s for one image.
const POOL_TAP_OPERATIONS: f64 = 16.0;

/// Operations of one `exp`, as libm computes it: a range reduction and a
/// polynomial of about six terms (~15 multiplies and adds), rounded up.
const EXP_OPERATIONS: f64 = 20.0;

/// Operations per value of a BatchNorm layer. Inference normalizes each
/// value with its running statistics: subtract, multiply, multiply, add (4);
/// training first takes the batch's mean (an add per value) and variance (a
/// subtract, a multiply, an add): 8 in all, the larger of the two.
const BATCH_NORM_OPERATIONS: f64 = 8.0;

/// Operations per class of the softmax at the end: the maximum, a subtract,
/// an `exp`, a sum and a divide.
const SOFTMAX_OPERATIONS: f64 = EXP_OPERATIONS + 4.0;

/// The per-example cost of a model, from its shapes alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    /// Trainable parameters.
    pub params: usize,
    /// Values one example keeps through a forward pass: every layer's
    /// output, every convolution's unfolded input (im2col, one row of
    /// `C * FH * FW` per output position) and the class probabilities.
    pub values_per_example: usize,
    /// Values in the widest single layer output of one example.
    pub widest: usize,
    /// Operations of one example's forward pass, an upper bound of the work
    /// its layers do: every multiply, add, comparison and copied value
    /// counts one (see [`ModelCost::of`] for each kind of layer).
    pub flops_per_example: f64,
}

impl ModelCost {
    /// The cost of layers `specs` on examples of shape `input`, scoring
    /// `classes` classes. Refuses layers that do not chain (the error of
    /// [`LayerSpec::output_shape`]); sums saturate, so absurd sizes stay absurd
    /// rather than wrapping around.
    ///
    /// The operations of each layer's forward pass, for one example with
    /// `out` output values:
    /// * Affine, `in` inputs: `2 * in * out` (the GEMM) `+ out` (the bias);
    /// * Convolution, `C` channels of `FH x FW` filters: the unfolded input
    ///   copied (`C * FH * FW` per output position), the bias written
    ///   (`out`), and the GEMM (`2 * C * FH * FW` per output value);
    /// * max Pooling of `PH x PW` windows: `PH * PW` taps per output value
    ///   (every tap of its window; overlapping windows read a value again
    ///   each time), each counted as 16 operations (a scalar tap is that much slower than a GEMM's multiply-add);
    /// * BatchNorm: 8 per value (the batch statistics and the normalization);
    /// * Sigmoid: an `exp`, an add and a divide per value, the `exp` counted
    ///   as 20;
    /// * ReLU (a comparison) and Dropout (a multiply at inference): 1 per value;
    /// * and the softmax over the `classes` scores at the end: 24 per class.
    pub fn of(input: &[usize], specs: &[LayerSpec], classes: usize) -> Result<Self, TrainError> {
        let mut shape = input.to_vec();
        let mut cost = ModelCost {
            params: 0,
            values_per_example: classes,
            widest: input.iter().product(),
            flops_per_example: classes as f64 * SOFTMAX_OPERATIONS,
        };
        for spec in specs {
            let output = spec.output_shape(&shape)?;
            let outputs = output
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .unwrap_or(usize::MAX);
            cost.params = cost.params.saturating_add(spec.num_params());
            cost.values_per_example = cost.values_per_example.saturating_add(outputs);
            cost.widest = cost.widest.max(outputs);
            // In f64: the products of a hostile file's sizes stay finite and ordered.
            let out = outputs as f64;
            cost.flops_per_example += match *spec {
                LayerSpec::Affine { inputs, .. } => 2.0 * inputs as f64 * out + out,
                LayerSpec::Convolution {
                    channels,
                    filter_h,
                    filter_w,
                    ..
                } => {
                    // output is [FN, OH, OW]: OH * OW rows of C * FH * FW unfolded values.
                    let unfolded = output[1]
                        .saturating_mul(output[2])
                        .saturating_mul(channels)
                        .saturating_mul(filter_h)
                        .saturating_mul(filter_w);
                    cost.values_per_example = cost.values_per_example.saturating_add(unfolded);
                    let window = channels as f64 * filter_h as f64 * filter_w as f64;
                    unfolded as f64 + out + 2.0 * window * out
                }
                LayerSpec::Pooling { pool_h, pool_w, .. } => POOL_TAP_OPERATIONS * pool_h as f64 * pool_w as f64 * out,
                LayerSpec::BatchNorm { .. } => BATCH_NORM_OPERATIONS * out,
                LayerSpec::Sigmoid => (EXP_OPERATIONS + 2.0) * out,
                LayerSpec::Relu | LayerSpec::Dropout { .. } => out,
            };
            shape = output;
        }
        Ok(cost)
    }

    /// Bytes (f32) for a batch of `rows` examples: values kept in flight
    /// (`copies` of each: 2 for a training batch, output and gradient).
    pub fn batch_bytes(&self, rows: usize, copies: f64) -> f64 {
        4.0 * rows as f64 * copies * self.values_per_example as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers::{NetSpec, SimpleConvNet};

    #[test]
    fn the_books_nets_cost_what_their_shapes_say() {
        let mlp = NetSpec::two_layer_net(784, 50, 10);
        let cost = ModelCost::of(&mlp.input, &mlp.layer_specs().unwrap(), 10).unwrap();
        assert_eq!(cost.params, 784 * 50 + 50 + 50 * 10 + 10);
        // Affine 50, ReLU 50, Affine 10, the probabilities 10.
        assert_eq!(cost.values_per_example, 50 + 50 + 10 + 10);
        assert_eq!(cost.widest, 784);
        // Each Affine's GEMM and bias, the ReLU's comparisons, the softmax.
        let affines = (2.0 * 784.0 * 50.0 + 50.0) + (2.0 * 50.0 * 10.0 + 10.0);
        assert_eq!(cost.flops_per_example, affines + 50.0 + 10.0 * 24.0);

        let conv = SimpleConvNet::default().net();
        let cost = ModelCost::of(&conv.input, &conv.layer_specs().unwrap(), 10).unwrap();
        // 30 filters of 5x5 on 28x28: 30x24x24 out, 576 rows of 25 unfolded.
        let (conv_out, unfolded) = (30 * 24 * 24, 24 * 24 * 25);
        assert_eq!(cost.widest, conv_out);
        assert_eq!(
            cost.values_per_example,
            conv_out + unfolded + conv_out + 30 * 12 * 12 + 100 + 100 + 10 + 10
        );
        let (conv_out, unfolded) = (conv_out as f64, unfolded as f64);
        let convolution = unfolded + conv_out + 2.0 * 25.0 * conv_out;
        // Every 2x2 window's 4 taps.
        let pool = POOL_TAP_OPERATIONS * 4.0 * (30 * 12 * 12) as f64;
        let affines = (2.0 * 4320.0 * 100.0 + 100.0) + (2.0 * 100.0 * 10.0 + 10.0);
        let relus = conv_out + 100.0;
        assert_eq!(
            cost.flops_per_example,
            convolution + relus + pool + affines + 10.0 * 24.0
        );
    }

    /// One layer of `spec` after a 1x1 convolution to `[4, 8, 8]` and an
    /// affine to 10 scores: the operations `spec` adds, per output value.
    fn per_value(spec: LayerSpec, out_values: f64) -> f64 {
        let conv = LayerSpec::Convolution {
            channels: 1,
            filters: 4,
            filter_h: 1,
            filter_w: 1,
            stride: 1,
            pad: 0,
        };
        let cost = |specs: &[LayerSpec], affine_in: usize| {
            let mut all = vec![conv.clone()];
            all.extend_from_slice(specs);
            all.push(LayerSpec::Affine {
                inputs: affine_in,
                outputs: 10,
            });
            ModelCost::of(&[1, 8, 8], &all, 10).unwrap().flops_per_example
        };
        let affine = |inputs: f64| 2.0 * inputs * 10.0 + 10.0;
        let with = cost(std::slice::from_ref(&spec), out_values as usize) - affine(out_values);
        let without = cost(&[], 256) - affine(256.0);
        (with - without) / out_values
    }

    #[test]
    fn every_layer_kind_costs_its_work_per_value() {
        let pool = |side: usize, stride: usize, pad: usize| LayerSpec::Pooling {
            pool_h: side,
            pool_w: side,
            stride,
            pad,
        };
        // 4 planes of 8x8: 256 values through the elementwise layers.
        assert_eq!(per_value(LayerSpec::Relu, 256.0), 1.0);
        assert_eq!(per_value(LayerSpec::Dropout { ratio: 0.5 }, 256.0), 1.0);
        assert_eq!(per_value(LayerSpec::Sigmoid, 256.0), 22.0);
        let batch_norm = LayerSpec::BatchNorm {
            features: 4,
            momentum: 0.9,
            eps: 1e-6,
        };
        assert_eq!(per_value(batch_norm, 256.0), 8.0);
        // A pool compares every tap of its window: 2x2 tiles 4 per output (4x4x4
        // out), a 3x3 window of stride 1 padded by 1 9 per output (4x8x8 out).
        assert_eq!(per_value(pool(2, 2, 0), 64.0), 4.0 * POOL_TAP_OPERATIONS);
        assert_eq!(per_value(pool(3, 1, 1), 256.0), 9.0 * POOL_TAP_OPERATIONS);
        // A 3x3 convolution over the 4 channels, 2 filters, padded by 1 (2x8x8
        // out): 36 unfolded values per position, a bias and a GEMM of 2 * 36.
        let conv = LayerSpec::Convolution {
            channels: 4,
            filters: 2,
            filter_h: 3,
            filter_w: 3,
            stride: 1,
            pad: 1,
        };
        assert_eq!(per_value(conv, 128.0), 36.0 / 2.0 + 1.0 + 2.0 * 36.0);
    }

    #[test]
    fn a_large_overlapping_pool_costs_every_tap_of_every_window() {
        // A tester's 74 kB checkpoint: a 1x1 convolution to 200 maps padded
        // by 64 (200x156x156), a 64x64 max pool of stride 1 padded by 64
        // (200x221x221, 4096 taps each), a 64x64 pool of stride 64 (200x3x3).
        // Counted at one operation per output the pool was 1e7 per image, and
        // scoring 10000 images (4e14 comparisons) ran for hours.
        let pool = |stride, pad| LayerSpec::Pooling {
            pool_h: 64,
            pool_w: 64,
            stride,
            pad,
        };
        let specs = [
            LayerSpec::Convolution {
                channels: 1,
                filters: 200,
                filter_h: 1,
                filter_w: 1,
                stride: 1,
                pad: 64,
            },
            pool(1, 64),
            pool(64, 0),
            LayerSpec::Affine {
                inputs: 1800,
                outputs: 10,
            },
        ];
        let cost = ModelCost::of(&[1, 28, 28], &specs, 10).unwrap();
        let taps = POOL_TAP_OPERATIONS * 200.0 * 221.0 * 221.0 * 4096.0;
        assert!(cost.flops_per_example > taps, "{}", cost.flops_per_example);
        assert!(cost.flops_per_example < 1.01 * taps, "{}", cost.flops_per_example);
    }

    #[test]
    fn layers_that_do_not_chain_are_refused() {
        let specs = [LayerSpec::Pooling {
            pool_h: 2,
            pool_w: 2,
            stride: 2,
            pad: 0,
        }];
        assert!(ModelCost::of(&[784], &specs, 10).is_err());
    }
}
