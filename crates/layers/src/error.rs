use thiserror::Error;

/// What the network refuses at its boundary: input, targets and parameters
/// that come from outside (data files, checkpoints, command lines).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LayerError {
    /// A batch (or a batch of one-hot targets) whose rows do not have the
    /// model's size or example shape.
    #[error("input has shape {got:?}, but the network expects rows of {expected} values; check that the data set matches the model")]
    InputShape {
        /// Values per row the model takes (or classes, for one-hot targets).
        expected: usize,
        /// The batch's shape, batch dimension first.
        got: Vec<usize>,
    },
    /// Not one target per input of the batch.
    #[error("{targets} targets for a batch of {batch} inputs; give one label (or one-hot row) per input")]
    BatchMismatch {
        /// Inputs in the batch.
        batch: usize,
        /// Labels or one-hot rows given.
        targets: usize,
    },
    /// A label the model has no output for.
    #[error("label {label} at position {index} is outside 0..{classes}; the data set has more classes than the model's output")]
    LabelOutOfRange {
        /// Its position in the batch, from 0.
        index: usize,
        /// The label.
        label: usize,
        /// The model's outputs: labels must be below it.
        classes: usize,
    },
    /// Values for a parameter or buffer whose shape is not the model's.
    #[error("parameter {name}: expected shape {expected:?}, found {found:?}; the checkpoint was written by a network of another architecture")]
    ParamShape {
        /// The parameter's name (`W1`, `b2`, ...).
        name: String,
        /// Its shape in the model.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A parameter or buffer name the model does not have.
    #[error("parameter {name} is missing; the checkpoint does not belong to this architecture")]
    MissingParam {
        /// The name asked for.
        name: String,
    },
    /// A setting outside its range: `field` is the library's name for it
    /// (`learning_rate`, `beta1`, `dropout ratio`), so a command line can
    /// name its own flag instead.
    #[error("{field} must be {expected}, got {value}")]
    InvalidSetting {
        /// The setting's name in the library.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The range it must be in, as words (`"in [0, 1)"`).
        expected: &'static str,
    },
    /// A layer of a net does not fit the output of the layer before it.
    #[error("layer {index} (on input {input:?}): {source}")]
    AtLayer {
        /// 1 for the first layer.
        index: usize,
        /// One example's shape where the layer was to take it.
        input: Vec<usize>,
        /// Why it does not fit.
        source: Box<LayerError>,
    },
    /// A net too large to allocate: more than [`MAX_PARAMS`](crate::MAX_PARAMS) parameters.
    #[error("the net would have {params} parameters, more than the {max} a model may have")]
    TooManyParams {
        /// Parameters counted up to the layer that crossed the limit.
        params: usize,
        /// The limit.
        max: usize,
    },
    /// A network description no model can be built from; the message says why.
    #[error("invalid network: {0}")]
    Config(String),
    /// A line of a net file (the text format [`NetSpec`](crate::NetSpec)
    /// parses from) that does not follow the format.
    #[error("line {line} ('{text}'): {detail}")]
    NetFile {
        /// 1 for the first line of the file.
        line: usize,
        /// The line's item without its comment, cut short if long.
        text: String,
        /// What is wrong, and the form that was expected.
        detail: String,
    },
}
