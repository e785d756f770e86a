//! What a layer is, without its values: the architecture a checkpoint
//! records, one entry per layer, as JSON
//! (`[{"type":"affine","inputs":784,"outputs":50},{"type":"relu"},...]`).
//!
//! Specs come from files, so they are untrusted: [`LayerSpec::validate`]
//! bounds every size before [`LayerSpec::build`] allocates anything.

use crate::{Affine, BatchNorm, Convolution, Dropout, Layer, LayerError, Pooling, Relu, Sigmoid, Takes};
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
        match *self {
            LayerSpec::Affine { inputs, outputs } => {
                width("an Affine layer's widths", inputs)?;
                width("an Affine layer's widths", outputs)?;
            }
            LayerSpec::BatchNorm {
                features,
                momentum,
                eps,
            } => {
                width("a BatchNorm's features", features)?;
                if !(0.0..1.0).contains(&momentum) {
                    return Err(LayerError::InvalidSetting {
                        field: "batch norm momentum",
                        value: momentum,
                        expected: "in [0, 1)",
                    });
                }
                // Positive in f32 too, where training runs: 1e-50 is 0 there,
                // and a variance of 0 then divides by 0.
                if !(eps.is_finite() && eps > 0.0 && (eps as f32) > 0.0) {
                    return Err(LayerError::InvalidSetting {
                        field: "batch norm eps",
                        value: eps,
                        expected: "a positive number (at least 1e-45, f32's smallest)",
                    });
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
                width("a Convolution's channels", channels)?;
                width("a Convolution's filters", filters)?;
                window_ok(
                    ("a Convolution's filter sides and stride", "a Convolution's pad"),
                    [filter_h, filter_w, stride],
                    pad,
                )?;
            }
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            } => window_ok(
                ("a Pooling layer's window sides and stride", "a Pooling layer's pad"),
                [pool_h, pool_w, stride],
                pad,
            )?,
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
                    return Err(LayerError::InputMisfit {
                        layer: "Affine",
                        input: input.to_vec(),
                        takes: Takes::Values(inputs),
                    });
                }
                Ok(vec![outputs])
            }
            LayerSpec::BatchNorm { features, .. } => {
                if input.first() != Some(&features) || !(input.len() == 1 || input.len() == 3) {
                    return Err(LayerError::InputMisfit {
                        layer: "BatchNorm",
                        input: input.to_vec(),
                        takes: Takes::Features(features),
                    });
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
    /// over one example of shape `[C, H, W]`. Only for those two layers.
    pub(crate) fn window_geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        // A pool slides over each channel's plane alone: a geometry of one channel.
        let (layer, channels, window, stride, pad) = match *self {
            LayerSpec::Convolution {
                channels,
                filter_h,
                filter_w,
                stride,
                pad,
                ..
            } => ("Convolution", Some(channels), (filter_h, filter_w), stride, pad),
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            } => ("Pooling", None, (pool_h, pool_w), stride, pad),
            _ => unreachable!(
                "only a Convolution or a Pooling layer has a window, not a {}",
                self.kind_name()
            ),
        };
        let misfit = |takes| LayerError::InputMisfit {
            layer,
            input: example.to_vec(),
            takes,
        };
        let [given, height, width] = example[..] else {
            return Err(misfit(Takes::Image { channels }));
        };
        if given == 0 || channels.is_some_and(|expected| given != expected) {
            return Err(misfit(Takes::Image { channels }));
        }
        let plane_channels = channels.unwrap_or(1);
        ConvGeometry::new((plane_channels, height, width), window, stride, pad)
            .map_err(|_| misfit(Takes::Window { window, stride, pad }))
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

/// A width (inputs, outputs, features, channels, filters) in `1..=MAX_WIDTH`.
fn width(what: &'static str, value: usize) -> Result<(), LayerError> {
    if !(1..=MAX_WIDTH).contains(&value) {
        return Err(LayerError::OutOfRange {
            what,
            value,
            min: 1,
            max: MAX_WIDTH,
        });
    }
    Ok(())
}

/// A window's height, width and stride in `1..=MAX_WINDOW`, its pad in
/// `0..=MAX_WINDOW`; `what` names the first three and the pad in the error.
fn window_ok(what: (&'static str, &'static str), sides_and_stride: [usize; 3], pad: usize) -> Result<(), LayerError> {
    if let Some(&value) = sides_and_stride.iter().find(|&&v| !(1..=MAX_WINDOW).contains(&v)) {
        return Err(LayerError::OutOfRange {
            what: what.0,
            value,
            min: 1,
            max: MAX_WINDOW,
        });
    }
    if pad > MAX_WINDOW {
        return Err(LayerError::OutOfRange {
            what: what.1,
            value: pad,
            min: 0,
            max: MAX_WINDOW,
        });
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
        let conv = |filters, stride| LayerSpec::Convolution {
            channels: 1,
            filters,
            filter_h: 5,
            filter_w: 5,
            stride,
            pad: 0,
        };
        let batch_norm = |momentum, eps| LayerSpec::BatchNorm {
            features: 3,
            momentum,
            eps,
        };
        // Each refusal names what is out of range and the value given.
        for (spec, name, given) in [
            (
                LayerSpec::Affine {
                    inputs: usize::MAX,
                    outputs: 10,
                },
                "an Affine layer's widths",
                usize::MAX as f64,
            ),
            (
                LayerSpec::Affine { inputs: 0, outputs: 10 },
                "an Affine layer's widths",
                0.0,
            ),
            (batch_norm(1.5, 1e-6), "batch norm momentum", 1.5),
            (batch_norm(0.9, -1.0), "batch norm eps", -1.0),
            // Positive in f64, 0 in f32 where it runs.
            (batch_norm(0.9, 1e-50), "batch norm eps", 1e-50),
            (LayerSpec::Dropout { ratio: 1.0 }, "dropout ratio", 1.0),
            (conv(30, 0), "a Convolution's filter sides and stride", 0.0),
            (conv(usize::MAX, 1), "a Convolution's filters", usize::MAX as f64),
            (
                LayerSpec::Pooling {
                    pool_h: 2,
                    pool_w: 1000,
                    stride: 2,
                    pad: 0,
                },
                "a Pooling layer's window sides and stride",
                1000.0,
            ),
            (
                LayerSpec::Pooling {
                    pool_h: 2,
                    pool_w: 2,
                    stride: 2,
                    pad: 65,
                },
                "a Pooling layer's pad",
                65.0,
            ),
        ] {
            match spec.build::<f32>() {
                Err(LayerError::OutOfRange { what, value, .. }) => assert_eq!((what, value as f64), (name, given)),
                Err(LayerError::InvalidSetting { field, value, .. }) => assert_eq!((field, value), (name, given)),
                other => panic!("{spec:?}: {:?}", other.err()),
            }
        }
        for spec in [batch_norm(0.9, f64::NAN), LayerSpec::Dropout { ratio: f64::NAN }] {
            assert!(
                matches!(spec.validate(), Err(LayerError::InvalidSetting { value, .. }) if value.is_nan()),
                "{spec:?}"
            );
        }
        let err = conv(30, 1).validate().and(conv(0, 1).validate()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a Convolution's filters must be between 1 and 65536, got 0"
        );
        let err = LayerSpec::Pooling {
            pool_h: 2,
            pool_w: 2,
            stride: 2,
            pad: 65,
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.to_string(), "a Pooling layer's pad must be at most 64, got 65");
    }

    #[test]
    fn inputs_that_do_not_fit_say_what_the_layer_takes() {
        let conv = LayerSpec::Convolution {
            channels: 3,
            filters: 4,
            filter_h: 5,
            filter_w: 5,
            stride: 1,
            pad: 1,
        };
        let pool = LayerSpec::Pooling {
            pool_h: 2,
            pool_w: 2,
            stride: 2,
            pad: 0,
        };
        let cases = [
            (
                LayerSpec::Affine { inputs: 10, outputs: 2 },
                vec![2, 2, 2],
                Takes::Values(10),
                "an Affine layer of 10 inputs cannot take inputs of shape [2, 2, 2] (8 values)",
            ),
            (
                LayerSpec::BatchNorm {
                    features: 4,
                    momentum: 0.9,
                    eps: 1e-6,
                },
                vec![4, 2],
                Takes::Features(4),
                "a BatchNorm over 4 features takes [4] or [4, H, W] per example, not [4, 2]",
            ),
            (
                conv.clone(),
                vec![300],
                Takes::Image { channels: Some(3) },
                "a Convolution takes [C, H, W] per example, not [300]; put convolutions before the first Affine layer",
            ),
            (
                conv.clone(),
                vec![1, 10, 10],
                Takes::Image { channels: Some(3) },
                "a Convolution over 3 channels cannot take 1 channels ([1, 10, 10])",
            ),
            (
                conv,
                vec![3, 2, 9],
                Takes::Window {
                    window: (5, 5),
                    stride: 1,
                    pad: 1,
                },
                "a 5x5 Convolution window with pad 1 does not fit a 2x9 input (stride 1)",
            ),
            (
                pool.clone(),
                vec![0, 4, 4],
                Takes::Image { channels: None },
                "a Pooling layer cannot take 0 channels ([0, 4, 4])",
            ),
            (
                pool,
                vec![3, 1, 4],
                Takes::Window {
                    window: (2, 2),
                    stride: 2,
                    pad: 0,
                },
                "a 2x2 Pooling window with pad 0 does not fit a 1x4 input (stride 2)",
            ),
        ];
        for (spec, input, expected, message) in cases {
            let err = spec.output_shape(&input).unwrap_err();
            assert_eq!(err.to_string(), message);
            let LayerError::InputMisfit {
                layer,
                input: at,
                takes,
            } = err
            else {
                panic!("{err:?}")
            };
            // The kind as the spec's variant names it.
            assert!(format!("{spec:?}").starts_with(layer), "{spec:?}: {layer}");
            assert_eq!((at, takes), (input, expected));
        }
    }
}
