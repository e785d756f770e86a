use crate::MAX_LAYER_NAME_LEN;
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
    #[error("{field} must be {expected}, got {}", readable(*value))]
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
    #[error("{params} parameters is more than the {max} a model may have; use fewer or narrower layers")]
    TooManyParams {
        /// Parameters counted: the whole net's, or (in
        /// [`NetSpec::layer_specs`](crate::NetSpec::layer_specs)) those up to
        /// the layer that crossed the limit.
        params: usize,
        /// The limit.
        max: usize,
    },
    /// A size or count of the network outside its range: a layer's width
    /// (inputs, outputs, features, channels, filters), a window's side,
    /// stride or pad, an example's dimensions, the number of layers or of an
    /// mlp's widths. Checked before anything is allocated.
    #[error("{what} must be {}, got {value}", range(*min, *max))]
    OutOfRange {
        /// What was counted, as a message names it (`"an Affine layer's
        /// widths"`, `"a Convolution's filters"`, `"the number of layers"`).
        what: &'static str,
        /// The value given.
        value: usize,
        /// The smallest value allowed.
        min: usize,
        /// The largest value allowed (`usize::MAX`: no limit).
        max: usize,
    },
    /// A layer that cannot take one example of the shape the layer before
    /// it gives (or the net's input shape, for the first): an Affine layer
    /// of other inputs, a BatchNorm over other features, a Convolution or
    /// Pooling layer on input that is not `[C, H, W]`, of other channels, or
    /// smaller than its window.
    #[error("{}", misfit(layer, input, takes))]
    InputMisfit {
        /// The layer's kind: `"Affine"`, `"BatchNorm"`, `"Convolution"` or `"Pooling"`.
        layer: &'static str,
        /// One example's shape as it reached the layer, batch dimension left out.
        input: Vec<usize>,
        /// What the layer takes.
        takes: Takes,
    },
    /// The last layer does not give one score per class (`[classes]` per
    /// example), as the softmax-with-loss at the end needs.
    #[error("the last layer must give one score per class, but gives shape {output:?}; end with an Affine layer")]
    OutputNotScores {
        /// One example's shape at the last layer's output.
        output: Vec<usize>,
    },
    /// A layer name that is not a plain identifier of at most
    /// [`MAX_LAYER_NAME_LEN`](crate::MAX_LAYER_NAME_LEN) characters, or that
    /// reads as a book name (`W2`).
    #[error("layer {layer}: the layer name '{}' {reason}", shown_name(name))]
    BadLayerName {
        /// 1 for the first layer.
        layer: usize,
        /// The name given.
        name: String,
        /// Why it cannot name a layer, and what to do.
        reason: &'static str,
    },
    /// One name given to two layers.
    #[error("layers {first} and {second} are both named '{name}'; layer names must be unique")]
    DuplicateLayerName {
        /// The name.
        name: String,
        /// The first layer of that name, 1 for the first layer.
        first: usize,
        /// The second one.
        second: usize,
    },
    /// Two layers whose tensors would have the same name: two unnamed layers
    /// numbered alike (two BatchNorms after one Affine layer would both have
    /// `gamma1`).
    #[error("two tensors would be named {name}, of layers {first} and {second}; put an Affine layer between layers of the same kind, or name one of them")]
    DuplicateTensorName {
        /// The tensor name (`beta1`).
        name: String,
        /// The first layer with a tensor of that name, 1 for the first layer.
        first: usize,
        /// The second one.
        second: usize,
    },
    /// Not one layer name per layer: a list of the wrong length for
    /// [`Sequential::with_layer_names`](crate::Sequential::with_layer_names),
    /// or a [`NetSpec::name`](crate::NetSpec::name) given before any layer.
    #[error("{names} layer names for {layers} layers; give one per layer (None: unnamed). NetSpec::name names the layer added just before it: a name given before the layer it names is one too many")]
    LayerNameCount {
        /// Names given, `None`s included.
        names: usize,
        /// Layers in the model.
        layers: usize,
    },
    /// Text parsed as a net file ([`NetSpec`](crate::NetSpec)'s `FromStr`)
    /// that is longer than a net file may be; refused before it is read.
    #[error("a net file may have at most {max} bytes ({} MiB), this one has {bytes}; check that it is a net file", max >> 20)]
    NetFileTooLarge {
        /// The text's length in bytes.
        bytes: usize,
        /// The most bytes a net file may have.
        max: usize,
    },
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

/// What a layer takes of one example (batch dimension left out), in
/// [`LayerError::InputMisfit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Takes {
    /// Any shape of this many values: an Affine layer flattens `[C, H, W]`
    /// to `C*H*W` inputs.
    Values(usize),
    /// `[features]` or `[features, H, W]`: a BatchNorm normalizes each
    /// feature (each channel).
    Features(usize),
    /// `[C, H, W]` with `C >= 1`, of these channels when given: a
    /// Convolution's (over its channels) or a Pooling layer's (any).
    Image {
        /// The channels the layer was made for (`None`: any).
        channels: Option<usize>,
    },
    /// `[C, H, W]` large enough that the window fits inside the padded
    /// image (`H + 2 pad >= window height`, `W + 2 pad >= window width`),
    /// for a stride of at least 1.
    Window {
        /// The window's height and width (a Convolution's filter, a pool).
        window: (usize, usize),
        /// The step between windows.
        stride: usize,
        /// Zeros added on each side.
        pad: usize,
    },
}

/// `min..=max` in words: "between 1 and 64", "at most 64", "at least 1", "3".
fn range(min: usize, max: usize) -> String {
    match (min, max) {
        _ if min == max => min.to_string(),
        (_, usize::MAX) => format!("at least {min}"),
        (0, _) => format!("at most {max}"),
        _ => format!("between {min} and {max}"),
    }
}

/// A layer name for a message: escaped (a name from a file may hold control
/// characters) and cut after [`MAX_LAYER_NAME_LEN`] characters.
pub(crate) fn shown_name(name: &str) -> String {
    let mut chars = name.chars();
    let start: String = chars.by_ref().take(MAX_LAYER_NAME_LEN).collect();
    let more = if chars.next().is_some() { "..." } else { "" };
    format!("{}{more}", start.escape_debug())
}

/// The message of [`LayerError::InputMisfit`].
fn misfit(layer: &str, input: &[usize], takes: &Takes) -> String {
    let a = if layer.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    // "a Pooling layer", but "a Convolution", "a BatchNorm".
    let noun = if layer == "Pooling" { "Pooling layer" } else { layer };
    match *takes {
        Takes::Values(inputs) => {
            let values = input.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            format!(
                "{a} {layer} layer of {inputs} inputs cannot take inputs of shape {input:?} ({} values)",
                values.map_or("too many".to_string(), |v| v.to_string())
            )
        }
        Takes::Features(features) => format!(
            "{a} {noun} over {features} features takes [{features}] or [{features}, H, W] per example, not {input:?}"
        ),
        Takes::Image { channels } => match (input, channels) {
            ([given, _, _], Some(expected)) if *given != expected => {
                format!("{a} {noun} over {expected} channels cannot take {given} channels ({input:?})")
            }
            ([0, _, _], _) => format!("{a} {noun} cannot take 0 channels ({input:?})"),
            _ => {
                let first = match layer {
                    "Convolution" => "; put convolutions before the first Affine layer",
                    "Pooling" => "; put pooling layers before the first Affine layer",
                    _ => "",
                };
                format!("{a} {noun} takes [C, H, W] per example, not {input:?}{first}")
            }
        },
        Takes::Window {
            window: (window_h, window_w),
            stride,
            pad,
        } => {
            let image = match input {
                [_, height, width] => format!("{height}x{width}"),
                _ => format!("{input:?}"),
            };
            format!(
                "a {window_h}x{window_w} {layer} window with pad {pad} does not fit a {image} input (stride {stride})"
            )
        }
    }
}

/// `value` as a person reads it in a message: `1e-50` rather than fifty
/// zeros, `1e300` rather than three hundred digits, `0.9` as is.
pub fn readable(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && magnitude.is_finite() && !(1e-4..1e6).contains(&magnitude) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}
