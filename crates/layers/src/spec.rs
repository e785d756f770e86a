//! What a layer is, without its values: the architecture a checkpoint
//! records, one entry per layer, as JSON
//! (`[{"type":"affine","inputs":784,"outputs":50},{"type":"relu"},...]`).
//!
//! Specs come from files, so they are untrusted: [`LayerSpec::validate`]
//! bounds every size before [`LayerSpec::build`] allocates anything.

use crate::{Affine, BatchNorm, Dropout, Layer, LayerError, Relu, Sigmoid};
use serde::{Deserialize, Serialize};
use tensor::{Element, Tensor};

/// The largest width of a layer (inputs, outputs, features) accepted from
/// a flag or a file: far beyond anything useful here, small enough that a
/// typo cannot ask for terabytes.
pub const MAX_WIDTH: usize = 1 << 16;

/// The largest number of scalar parameters a model may have (2^28: 1 GiB in
/// f32), checked before anything is allocated.
pub const MAX_PARAMS: usize = 1 << 28;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Affine { inputs: usize, outputs: usize },
    Relu,
    Sigmoid,
    BatchNorm { features: usize, momentum: f64, eps: f64 },
    Dropout { ratio: f64 },
}

impl LayerSpec {
    /// Refuses sizes and ratios no layer can have, before any allocation.
    pub fn validate(&self) -> Result<(), LayerError> {
        let bad = |msg: String| Err(LayerError::Config(msg));
        let width_ok = |w: usize| (1..=MAX_WIDTH).contains(&w);
        match *self {
            LayerSpec::Affine { inputs, outputs } => {
                if !width_ok(inputs) || !width_ok(outputs) {
                    return bad(format!(
                        "affine {inputs} -> {outputs}: widths must be between 1 and {MAX_WIDTH}"
                    ));
                }
            }
            LayerSpec::BatchNorm {
                features,
                momentum,
                eps,
            } => {
                if !width_ok(features) {
                    return bad(format!(
                        "batch norm over {features} features: must be between 1 and {MAX_WIDTH}"
                    ));
                }
                if !(0.0..1.0).contains(&momentum) {
                    return bad(format!("batch norm momentum must be in [0, 1), got {momentum}"));
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return bad(format!("batch norm eps must be a positive number, got {eps}"));
                }
            }
            LayerSpec::Dropout { ratio } => {
                if !(0.0..1.0).contains(&ratio) {
                    return bad(format!("the dropout ratio must be in [0, 1), got {ratio}"));
                }
            }
            LayerSpec::Relu | LayerSpec::Sigmoid => {}
        }
        Ok(())
    }

    /// Scalar parameters of the layer (buffers not counted).
    pub fn num_params(&self) -> usize {
        match *self {
            LayerSpec::Affine { inputs, outputs } => inputs.saturating_mul(outputs).saturating_add(outputs),
            LayerSpec::BatchNorm { features, .. } => 2 * features,
            _ => 0,
        }
    }

    /// The layer, with weights zero (BatchNorm's scale one), for values that
    /// are loaded or drawn afterwards.
    pub fn build<T: Element>(&self) -> Result<Box<dyn Layer<T>>, LayerError> {
        self.validate()?;
        Ok(match *self {
            LayerSpec::Affine { inputs, outputs } => Box::new(Affine::new(
                Tensor::zeros(&[inputs, outputs]),
                Tensor::zeros(&[outputs]),
            )),
            LayerSpec::Relu => Box::new(Relu),
            LayerSpec::Sigmoid => Box::new(Sigmoid),
            LayerSpec::BatchNorm {
                features,
                momentum,
                eps,
            } => Box::new(BatchNorm::new(features, momentum, eps)),
            LayerSpec::Dropout { ratio } => Box::new(Dropout::new(ratio)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_and_write_as_tagged_json() {
        let specs = vec![
            LayerSpec::Affine { inputs: 4, outputs: 3 },
            LayerSpec::BatchNorm {
                features: 3,
                momentum: 0.9,
                eps: 1e-6,
            },
            LayerSpec::Relu,
            LayerSpec::Dropout { ratio: 0.5 },
        ];
        let json = serde_json::to_string(&specs).unwrap();
        assert!(
            json.starts_with(r#"[{"type":"affine","inputs":4,"outputs":3}"#),
            "{json}"
        );
        let back: Vec<LayerSpec> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, specs);
        assert!(serde_json::from_str::<LayerSpec>(r#"{"type":"conv"}"#).is_err());
        assert!(serde_json::from_str::<LayerSpec>(r#"{"type":"affine","inputs":4,"outputs":3,"x":1}"#).is_err());
    }

    #[test]
    fn absurd_specs_are_refused_before_allocation() {
        for spec in [
            LayerSpec::Affine {
                inputs: usize::MAX,
                outputs: 10,
            },
            LayerSpec::Affine { inputs: 0, outputs: 10 },
            LayerSpec::BatchNorm {
                features: 3,
                momentum: 1.5,
                eps: 1e-6,
            },
            LayerSpec::BatchNorm {
                features: 3,
                momentum: 0.9,
                eps: f64::NAN,
            },
            LayerSpec::Dropout { ratio: 1.0 },
            LayerSpec::Dropout { ratio: f64::NAN },
        ] {
            assert!(matches!(spec.build::<f32>(), Err(LayerError::Config(_))), "{spec:?}");
        }
    }
}
