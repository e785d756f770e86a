//! What a model costs before any of it is allocated or run: its parameters,
//! the values one example keeps in flight through its layers, and the
//! arithmetic of one forward pass, all from the layers' output shapes
//! ([`LayerSpec::output_shape`]). Training refuses a run that would not fit
//! in memory ([`crate::TrainConfig::memory_estimate`]); a command reading a
//! checkpoint, an untrusted file, bounds its work the same way.

use crate::TrainError;
use layers::LayerSpec;

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
    /// Floating-point operations of one example's forward pass: `2 * in *
    /// out` for an Affine layer, `2 * OH * OW * FN * C * FH * FW` for a
    /// convolution, one per value for the rest.
    pub flops_per_example: f64,
}

impl ModelCost {
    /// The cost of layers `specs` on examples of shape `input`, scoring
    /// `classes` classes. Refuses layers that do not chain (the error of
    /// [`LayerSpec::output_shape`]); sums saturate, so absurd sizes stay absurd
    /// rather than wrapping around.
    pub fn of(input: &[usize], specs: &[LayerSpec], classes: usize) -> Result<Self, TrainError> {
        let mut shape = input.to_vec();
        let mut cost = ModelCost {
            params: 0,
            values_per_example: classes,
            widest: input.iter().product(),
            flops_per_example: 0.0,
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
            cost.flops_per_example += match *spec {
                LayerSpec::Affine { inputs, outputs } => 2.0 * inputs as f64 * outputs as f64,
                LayerSpec::Convolution {
                    channels,
                    filter_h,
                    filter_w,
                    ..
                } => {
                    let unfolded = output[1]
                        .saturating_mul(output[2])
                        .saturating_mul(channels)
                        .saturating_mul(filter_h)
                        .saturating_mul(filter_w);
                    cost.values_per_example = cost.values_per_example.saturating_add(unfolded);
                    2.0 * unfolded as f64 * output[0] as f64
                }
                _ => outputs as f64,
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
        assert_eq!(cost.flops_per_example, 2.0 * 784.0 * 50.0 + 50.0 + 2.0 * 50.0 * 10.0);

        let conv = SimpleConvNet::default().net();
        let cost = ModelCost::of(&conv.input, &conv.layer_specs().unwrap(), 10).unwrap();
        // 30 filters of 5x5 on 28x28: 30x24x24 out, 576 rows of 25 unfolded.
        let (conv_out, unfolded) = (30 * 24 * 24, 24 * 24 * 25);
        assert_eq!(cost.widest, conv_out);
        assert_eq!(
            cost.values_per_example,
            conv_out + unfolded + conv_out + 30 * 12 * 12 + 100 + 100 + 10 + 10
        );
        assert!(cost.flops_per_example > 2.0 * (unfolded * 30) as f64);
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
