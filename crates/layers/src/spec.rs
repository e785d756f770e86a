//! What a layer is, without its values: the architecture a checkpoint
//! records, one entry per layer, as JSON
//! (`[{"type":"affine","inputs":784,"outputs":50},{"type":"relu"},...]`).
//!
//! Specs come from files, so they are untrusted: [`LayerSpec::validate`]
//! bounds every size before [`LayerSpec::build`] allocates anything.

use crate::{Affine, BatchNorm, Convolution, Dropout, Layer, LayerError, Pooling, Relu, Sigmoid};
use serde::{Deserialize, Serialize};
use tensor::conv::ConvGeometry;
use tensor::{Element, Tensor};

/// The largest width of a layer (inputs, outputs, features) accepted from
/// a flag or a file: far beyond anything useful here, small enough that a
/// typo cannot ask for terabytes.
pub const MAX_WIDTH: usize = 1 << 16;

/// The largest number of scalar parameters a model may have (2^28: 1 GiB in
/// f32), checked before anything is allocated.
pub const MAX_PARAMS: usize = 1 << 28;

/// The largest filter or pool side, stride and pad accepted.
pub const MAX_WINDOW: usize = 64;

/// One layer's kind and sizes, without its values; in JSON an object whose
/// `"type"` is the variant's name in snake case (`"batch_norm"`), with the
/// fields beside it and no others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// An [`Affine`] layer, `W` of `[inputs, outputs]`.
    Affine {
        /// `D`: values per example (a `[C, H, W]` input counts `C*H*W`).
        inputs: usize,
        /// `M`: outputs per example.
        outputs: usize,
    },
    /// A [`Relu`] layer.
    Relu,
    /// A [`Sigmoid`] layer.
    Sigmoid,
    /// A [`BatchNorm`] layer.
    BatchNorm {
        /// D of `[N, D]` input, C of `[N, C, H, W]`.
        features: usize,
        /// The running statistics' momentum, in `[0, 1)` (the book's 0.9).
        momentum: f64,
        /// Added to the variance under the square root, `> 0` (the book's 1e-6).
        eps: f64,
    },
    /// A [`Dropout`] layer.
    Dropout {
        /// The probability that a value is dropped in training, in `[0, 1)`.
        ratio: f64,
    },
    /// A [`Convolution`] layer, `W` of `[filters, channels, filter_h, filter_w]`.
    Convolution {
        /// `C`: the input's channels.
        channels: usize,
        /// `FN`: the number of filters, the output's channels.
        filters: usize,
        /// `FH`: the filter's height, in pixels.
        filter_h: usize,
        /// `FW`: the filter's width, in pixels.
        filter_w: usize,
        /// The step between windows, in pixels (`>= 1`).
        stride: usize,
        /// Zeros added on each side of the image, in pixels.
        pad: usize,
    },
    /// A max [`Pooling`] layer.
    Pooling {
        /// `PH`: the window's height, in pixels.
        pool_h: usize,
        /// `PW`: the window's width, in pixels.
        pool_w: usize,
        /// The step between windows, in pixels (`>= 1`).
        stride: usize,
        /// Zeros added on each side of the image, in pixels.
        pad: usize,
    },
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
                    return Err(LayerError::InvalidSetting {
                        field: "dropout ratio",
                        value: ratio,
                        expected: "in [0, 1)",
                    });
                }
            }
            LayerSpec::Convolution {
                channels,
                filters,
                filter_h,
                filter_w,
                stride,
                pad,
            } => {
                if !width_ok(channels) || !width_ok(filters) {
                    return bad(format!(
                        "convolution of {channels} channels into {filters} filters: both must be between 1 and {MAX_WIDTH}"
                    ));
                }
                window_ok("convolution", filter_h, filter_w, stride, pad)?;
            }
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            } => window_ok("pooling", pool_h, pool_w, stride, pad)?,
            LayerSpec::Relu | LayerSpec::Sigmoid => {}
        }
        Ok(())
    }

    /// The shape of one example's output for one example's `input` shape
    /// (batch dimension left out), or why that input does not fit: what
    /// every layer's [`crate::Layer::output_shape`] answers, and what the
    /// builder infers a net's sizes from without allocating anything.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError> {
        match *self {
            LayerSpec::Affine { inputs, outputs } => {
                // An Affine layer flattens whatever it is given: [C, H, W] is C*H*W inputs.
                let features = input.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
                if features != Some(inputs) {
                    return Err(LayerError::Config(format!(
                        "an Affine layer of {inputs} inputs cannot take inputs of shape {input:?} ({} values)",
                        features.map_or("too many".to_string(), |f| f.to_string())
                    )));
                }
                Ok(vec![outputs])
            }
            LayerSpec::BatchNorm { features, .. } => {
                if input.first() != Some(&features) || !(input.len() == 1 || input.len() == 3) {
                    return Err(LayerError::Config(format!(
                        "a BatchNorm over {features} features takes [{features}] or [{features}, H, W] per example, not {input:?}"
                    )));
                }
                Ok(input.to_vec())
            }
            LayerSpec::Convolution { filters, .. } => {
                let g = self.window_geometry(input)?;
                Ok(vec![filters, g.out_h(), g.out_w()])
            }
            LayerSpec::Pooling { .. } => {
                let g = self.window_geometry(input)?;
                Ok(vec![input[0], g.out_h(), g.out_w()])
            }
            LayerSpec::Relu | LayerSpec::Sigmoid | LayerSpec::Dropout { .. } => Ok(input.to_vec()),
        }
    }

    /// Where a Convolution's filters (or a Pooling layer's windows) slide
    /// over one example of shape `[C, H, W]`. Errors for other layers.
    pub(crate) fn window_geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        let [channels, height, width] = example[..] else {
            return Err(LayerError::Config(format!(
                "a {} takes [C, H, W] per example, not {example:?}",
                self.kind_name()
            )));
        };
        // A pool slides over each channel's plane alone: a geometry of one channel.
        let (what, window, stride, pad, plane_channels) = match *self {
            LayerSpec::Convolution {
                channels: expected,
                filter_h,
                filter_w,
                stride,
                pad,
                ..
            } => {
                if channels != expected {
                    return Err(LayerError::Config(format!(
                        "a Convolution over {expected} channels cannot take {channels}"
                    )));
                }
                ("filter", (filter_h, filter_w), stride, pad, channels)
            }
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            } => ("pool", (pool_h, pool_w), stride, pad, 1),
            _ => return Err(LayerError::Config(format!("a {} has no window", self.kind_name()))),
        };
        if channels == 0 {
            return Err(LayerError::Config(format!(
                "a {} cannot take 0 channels",
                self.kind_name()
            )));
        }
        ConvGeometry::new((plane_channels, height, width), window, stride, pad).map_err(|_| {
            LayerError::Config(format!(
                "a {}x{} {what} with pad {pad} does not fit a {height}x{width} input (stride {stride})",
                window.0, window.1
            ))
        })
    }

    /// The layer's name in messages: `Affine`, `Convolution`, ...
    pub fn kind_name(&self) -> &'static str {
        match self {
            LayerSpec::Affine { .. } => "Affine",
            LayerSpec::Relu => "Relu",
            LayerSpec::Sigmoid => "Sigmoid",
            LayerSpec::BatchNorm { .. } => "BatchNorm",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Convolution { .. } => "Convolution",
            LayerSpec::Pooling { .. } => "Pooling layer",
        }
    }

    /// Scalar parameters of the layer (buffers not counted).
    pub fn num_params(&self) -> usize {
        match *self {
            LayerSpec::Affine { inputs, outputs } => inputs.saturating_mul(outputs).saturating_add(outputs),
            LayerSpec::BatchNorm { features, .. } => 2 * features,
            LayerSpec::Convolution {
                channels,
                filters,
                filter_h,
                filter_w,
                ..
            } => filters
                .saturating_mul(channels)
                .saturating_mul(filter_h)
                .saturating_mul(filter_w)
                .saturating_add(filters),
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
            LayerSpec::Convolution {
                channels,
                filters,
                filter_h,
                filter_w,
                stride,
                pad,
            } => Box::new(Convolution::new(
                Tensor::zeros(&[filters, channels, filter_h, filter_w]),
                Tensor::zeros(&[filters]),
                stride,
                pad,
            )),
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            } => Box::new(Pooling::new(pool_h, pool_w, stride, pad)),
        })
    }
}

/// Window sides and stride in `1..=MAX_WINDOW`, pad in `0..=MAX_WINDOW`.
fn window_ok(what: &str, height: usize, width: usize, stride: usize, pad: usize) -> Result<(), LayerError> {
    let side_ok = |v: usize| (1..=MAX_WINDOW).contains(&v);
    if !side_ok(height) || !side_ok(width) || !side_ok(stride) || pad > MAX_WINDOW {
        return Err(LayerError::Config(format!(
            "{what} window {height}x{width}, stride {stride}, pad {pad}: sides and stride must be between 1 and {MAX_WINDOW}, pad at most {MAX_WINDOW}"
        )));
    }
    Ok(())
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
            LayerSpec::Convolution {
                channels: 1,
                filters: 30,
                filter_h: 5,
                filter_w: 5,
                stride: 0,
                pad: 0,
            },
            LayerSpec::Convolution {
                channels: 1,
                filters: usize::MAX,
                filter_h: 5,
                filter_w: 5,
                stride: 1,
                pad: 0,
            },
            LayerSpec::Pooling {
                pool_h: 2,
                pool_w: 1000,
                stride: 2,
                pad: 0,
            },
        ] {
            assert!(
                matches!(
                    spec.build::<f32>(),
                    Err(LayerError::Config(_) | LayerError::InvalidSetting { .. })
                ),
                "{spec:?}"
            );
        }
    }
}
