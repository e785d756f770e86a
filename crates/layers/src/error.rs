use thiserror::Error;

/// What the network refuses at its boundary: input, targets and parameters
/// that come from outside (data files, checkpoints, command lines).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LayerError {
    #[error("input has shape {got:?}, but the network expects rows of {expected} values; check that the data set matches the model")]
    InputShape { expected: usize, got: Vec<usize> },
    #[error("{targets} targets for a batch of {batch} inputs; give one label (or one-hot row) per input")]
    BatchMismatch { batch: usize, targets: usize },
    #[error("label {label} at position {index} is outside 0..{classes}; the data set has more classes than the model's output")]
    LabelOutOfRange { index: usize, label: usize, classes: usize },
    #[error("parameter {name}: expected shape {expected:?}, found {found:?}; the checkpoint was written by a network of another architecture")]
    ParamShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("parameter {name} is missing; the checkpoint does not belong to this architecture")]
    MissingParam { name: String },
    /// A setting outside its range: `field` is the library's name for it
    /// (`learning_rate`, `beta1`, `dropout ratio`), so a command line can
    /// name its own flag instead.
    #[error("{field} must be {expected}, got {value}")]
    InvalidSetting {
        field: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// A layer of a net does not fit the output of the layer before it.
    #[error("layer {index} (on input {input:?}): {source}")]
    AtLayer {
        /// 1 for the first layer.
        index: usize,
        /// One example's shape where the layer was to take it.
        input: Vec<usize>,
        source: Box<LayerError>,
    },
    #[error("the net would have {params} parameters, more than the {max} a model may have")]
    TooManyParams { params: usize, max: usize },
    #[error("invalid network: {0}")]
    Config(String),
}
