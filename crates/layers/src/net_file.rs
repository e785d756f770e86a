//! A network as a text file: one item per line, parsed into a [`NetSpec`]
//! (`text.parse::<NetSpec>()`) and written back by its `Display`.
//!
//! ```text
//! # LeNet-5 on 28x28 MNIST
//! input 1 28 28        # one example's shape: C H W, or a single width
//! init he
//! conv 6 5 pad=2
//! relu
//! pool 2
//! affine 10
//! ```
//!
//! | item | meaning | default |
//! |------|---------|---------|
//! | `input D1 [D2 D3]` | one example's shape, `784` or `C H W`; exactly once, the first item | |
//! | `init std=S \| xavier \| he` | the rule for the initial weights ([`Init`]); at most once | `std=0.01` |
//! | `weight_decay LAMBDA` | L2 weight decay; at most once | `0` |
//! | `affine N` | a fully connected layer of `N` units | |
//! | `conv FILTERS SIZE [stride=S] [pad=P]` | a convolution; `SIZE` is `5` or `5x3` (height x width) | stride 1, pad 0 |
//! | `pool SIZE [stride=S] [pad=P]` | a max pool; `SIZE` as for `conv` | stride = the window's height, pad 0 |
//! | `relu`, `sigmoid` | an activation | |
//! | `batchnorm [momentum=M] [eps=E]` (or `batch_norm`) | batch normalization | [`BATCH_NORM_MOMENTUM`], [`BATCH_NORM_EPS`] |
//! | `dropout RATIO` | drops each value with probability `RATIO` in training | |
//!
//! Every layer line also takes `name=NAME` (`conv 6 5 pad=2 name=c1`), which
//! names that layer: its tensors become `NAME.W`, `NAME.b`, ... instead of
//! the book's numbered `W1 b1` (see [`NetSpec::name`]), so that inserting a
//! named layer later renames nothing else. `relu name=r` is allowed but
//! names no tensor. A name is a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`,
//! case kept) of at most [`MAX_LAYER_NAME_LEN`](crate::MAX_LAYER_NAME_LEN)
//! characters that does not read as a book name (`W2`), and is used by one
//! layer only; a bad or repeated name is an error on its line.
//!
//! `#` starts a comment, on its own line or after an item; blank lines are
//! ignored; keywords and option names are case-insensitive (a name's value
//! is not); `\r\n` line ends are fine. Numbers come first, then `key=value`
//! options in any order. The softmax-with-loss at the end is implied.
//!
//! The file is untrusted: text over 1 MiB or with more than [`MAX_LAYERS`]
//! layers is refused before the layers are collected. Parsing checks the
//! syntax and each value's own range (a width between 1 and [`MAX_WIDTH`], a
//! dropout ratio in `[0, 1)`); whether the sizes chain from layer to layer is
//! [`NetSpec::layer_specs`]'s check, as for a net made with the builder. A
//! malformed line gives [`LayerError::NetFile`] with its line number and the
//! form that was expected.
//!
//! ```
//! use layers::NetSpec;
//!
//! let text = "
//!     input 1 8 8
//!     init he
//!     conv 4 3      # 4 filters of 3x3 leave 4x6x6
//!     batchnorm
//!     relu
//!     pool 2        # 4x3x3
//!     affine 3
//! ";
//! let spec: NetSpec = text.parse().unwrap();
//! let model = spec.build::<f32>(42).unwrap();
//! assert_eq!(model.summary(), "Conv(4x3x3 s1 p0) BatchNorm Relu Pool(2x2 s2 p0) Affine(36x3)");
//! // Display writes the same format back, options only where not default.
//! assert_eq!(spec.to_string(), "input 1 8 8\ninit he\nconv 4 3\nbatchnorm\nrelu\npool 2\naffine 3\n");
//! assert_eq!(spec.to_string().parse::<NetSpec>(), Ok(spec));
//!
//! // A named layer writes its name back.
//! let named: NetSpec = "input 784\naffine 50 name=hidden\nrelu\naffine 10\n".parse().unwrap();
//! assert_eq!(named.build::<f32>(1).unwrap().param_names(), ["hidden.W", "hidden.b", "W1", "b1"]);
//! assert_eq!(named.to_string(), "input 784\naffine 50 name=hidden\nrelu\naffine 10\n");
//!
//! let err = "input 784\naffine 12x\n".parse::<NetSpec>().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "line 2 ('affine 12x'): the number of outputs '12x' is not a whole number; expected `affine N`"
//! );
//! ```

use crate::error::shown_name;
use crate::model::check_layer_name;
use crate::{
    Init, LayerDef, LayerError, LayerSpec, NetSpec, BATCH_NORM_EPS, BATCH_NORM_MOMENTUM, MAX_LAYERS, MAX_WIDTH,
};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The largest net file accepted: LeNet-5 takes 200 bytes, and even
/// [`MAX_LAYERS`] commented layers fit in far less.
const MAX_NET_FILE_BYTES: usize = 1 << 20;

/// The most values an item has after its keyword (`conv F S stride= pad=
/// name=` has 5); a longer line is wrong anyway, so no more are collected.
const MAX_VALUES: usize = 8;

/// How much of a bad line an error quotes.
const MAX_QUOTED_CHARS: usize = 60;

/// Every keyword and its form, as error messages quote it.
const FORMS: [(&str, &str); 11] = [
    ("input", "`input D1 [D2 D3]`"),
    ("init", "`init std=S | xavier | he`"),
    ("weight_decay", "`weight_decay LAMBDA`"),
    ("affine", "`affine N`"),
    ("conv", "`conv FILTERS SIZE [stride=S] [pad=P]` (SIZE is 5 or 5x3)"),
    ("pool", "`pool SIZE [stride=S] [pad=P]` (SIZE is 2 or 2x3)"),
    ("relu", "`relu`"),
    ("sigmoid", "`sigmoid`"),
    ("batchnorm", "`batchnorm [momentum=M] [eps=E]`"),
    ("batch_norm", "`batch_norm [momentum=M] [eps=E]`"),
    ("dropout", "`dropout RATIO`"),
];

/// What one line says.
enum Item {
    Input(Vec<usize>),
    Init(Init),
    WeightDecay(f64),
    Layer(LayerDef),
}

/// Parses the net format described in the module doc: `input`, then
/// optional `init` and `weight_decay`, then one layer per line.
impl FromStr for NetSpec {
    type Err = LayerError;

    /// The net the text describes, or the first malformed line as
    /// [`LayerError::NetFile`] (text over 1 MiB: [`LayerError::NetFileTooLarge`]).
    /// Sizes that do not chain are left to [`NetSpec::layer_specs`].
    fn from_str(text: &str) -> Result<Self, LayerError> {
        if text.len() > MAX_NET_FILE_BYTES {
            return Err(LayerError::NetFileTooLarge {
                bytes: text.len(),
                max: MAX_NET_FILE_BYTES,
            });
        }
        // Windows editors may start a UTF-8 file with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);

        let mut net: Option<NetSpec> = None;
        // Where `input`, `init` and `weight_decay` were given, to refuse a second one.
        let (mut input_line, mut init_line, mut decay_line) = (0, 0, 0);
        // Every layer name given so far and its line, to refuse a second use.
        let mut name_lines: HashMap<String, usize> = HashMap::new();
        let mut last_line = 1;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            last_line = line;
            // `split` yields at least one piece, even for an empty line.
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let error = |detail: String| LayerError::NetFile {
                line,
                text: quote(content),
                detail,
            };
            let lower = content.to_ascii_lowercase();
            let mut tokens = lower.split_whitespace();
            let keyword = tokens.next().unwrap_or_default();
            let values: Vec<&str> = tokens.take(MAX_VALUES).collect();
            let Some(&(_, form)) = FORMS.iter().find(|(name, _)| *name == keyword) else {
                let names: Vec<&str> = FORMS.iter().map(|(name, _)| *name).collect();
                return Err(error(format!(
                    "unknown item '{}'; expected one of {}",
                    quote(keyword),
                    names.join(", ")
                )));
            };
            // Any layer may be named; the other items take no `name=`.
            let (values, name) = if matches!(keyword, "input" | "init" | "weight_decay") {
                (values, None)
            } else {
                // The same tokens as written: a name keeps its case.
                let written: Vec<&str> = content.split_whitespace().skip(1).take(MAX_VALUES).collect();
                take_name(&values, &written).map_err(|problem| error(format!("{problem}; expected {form}")))?
            };
            let item = parse_item(keyword, &values).map_err(|problem| error(format!("{problem}; expected {form}")))?;
            if let Some(name) = name {
                check_layer_name(name)
                    .map_err(|reason| error(format!("the layer name '{}' {reason}", shown_name(name))))?;
                if let Some(first) = name_lines.get(name) {
                    return Err(error(format!(
                        "the name '{name}' is already the name of the layer on line {first}; layer names must be unique"
                    )));
                }
                name_lines.insert(name.to_string(), line);
            }

            if let Item::Input(shape) = item {
                if input_line != 0 {
                    return Err(error(format!(
                        "a second input (the first is on line {input_line}); a net has one input shape"
                    )));
                }
                input_line = line;
                net = Some(NetSpec::new(&shape));
                continue;
            }
            let Some(net) = net.as_mut() else {
                return Err(error(format!(
                    "'{keyword}' before the input shape; a net file starts with `input D1 [D2 D3]`"
                )));
            };
            match item {
                Item::Input(_) => unreachable!("handled above"),
                Item::Init(init) => {
                    if init_line != 0 {
                        return Err(error(format!("a second init (the first is on line {init_line})")));
                    }
                    init_line = line;
                    net.init = init;
                }
                Item::WeightDecay(weight_decay) => {
                    if decay_line != 0 {
                        return Err(error(format!(
                            "a second weight_decay (the first is on line {decay_line})"
                        )));
                    }
                    decay_line = line;
                    net.weight_decay = weight_decay;
                }
                Item::Layer(layer) => {
                    if net.layers.len() == MAX_LAYERS {
                        return Err(error(format!("more than the {MAX_LAYERS} layers a net may have")));
                    }
                    net.layers.push(layer);
                    net.names.push(name.map(str::to_string));
                }
            }
        }
        net.ok_or_else(|| LayerError::NetFile {
            line: last_line,
            text: String::new(),
            detail: "the file ends without an input shape; a net file starts with `input D1 [D2 D3]`".into(),
        })
    }
}

/// A layer line's values without its `name=NAME` option, and the name as
/// `written` (`written[i]` is `values[i]` before lower-casing). As every
/// option, it comes after the numbers; it may be given once.
fn take_name<'a>(values: &[&'a str], written: &[&'a str]) -> Result<(Vec<&'a str>, Option<&'a str>), String> {
    let mut rest = Vec::with_capacity(values.len());
    let mut name = None;
    for (i, value) in values.iter().enumerate() {
        if value.split_once('=').map(|(key, _)| key) != Some("name") {
            rest.push(*value);
            continue;
        }
        if let Some(number) = values[i + 1..].iter().find(|v| !v.contains('=')) {
            return Err(format!(
                "'{}' after an option; the numbers come before the options",
                quote(number)
            ));
        }
        let (_, given) = written[i].split_once('=').unwrap_or_default();
        if given.is_empty() {
            return Err("option 'name' has no value".into());
        }
        if name.replace(given).is_some() {
            return Err("option 'name' given twice".into());
        }
    }
    Ok((rest, name))
}

/// One line's item from its (lower-case) keyword and the values after it.
/// The error says what is wrong; the caller adds the expected form.
fn parse_item(keyword: &str, values: &[&str]) -> Result<Item, String> {
    // Numbers first, then `key=value` options.
    let split = values.iter().position(|v| v.contains('=')).unwrap_or(values.len());
    let (args, options) = values.split_at(split);
    let wrong_count = || "wrong number of values".to_string();
    let item = match keyword {
        "input" => {
            let [] = parse_options(options, [])?;
            if !(args.len() == 1 || args.len() == 3) {
                return Err("an input shape has 1 or 3 dimensions".into());
            }
            Item::Input(args.iter().map(|a| width(a, "a dimension")).collect::<Result<_, _>>()?)
        }
        "init" => {
            let [std] = parse_options(options, ["std"])?;
            let init = match (args, std) {
                ([], Some(std)) => Init::Std(real(std, "std")?),
                (["xavier"], None) => Init::Xavier,
                (["he"], None) => Init::He,
                ([other], None) => return Err(format!("unknown initializer '{other}'")),
                _ => return Err(wrong_count()),
            };
            // The item's own words for the library's `init std`.
            init.validate().map_err(|error| match error {
                LayerError::InvalidSetting { value, expected, .. } => {
                    format!("the initial weight std must be {expected}, got {value}")
                }
                other => other.to_string(),
            })?;
            Item::Init(init)
        }
        "weight_decay" => {
            let [] = parse_options(options, [])?;
            let [lambda] = args else { return Err(wrong_count()) };
            let lambda = real(lambda, "the weight decay")?;
            if !(lambda.is_finite() && lambda >= 0.0) {
                return Err(format!("the weight decay must be a number >= 0, got {lambda}"));
            }
            Item::WeightDecay(lambda)
        }
        "affine" => {
            let [] = parse_options(options, [])?;
            let [outputs] = args else { return Err(wrong_count()) };
            Item::Layer(LayerDef::Affine {
                outputs: width(outputs, "the number of outputs")?,
            })
        }
        "conv" => {
            let [stride, pad] = parse_options(options, ["stride", "pad"])?;
            let [filters, size] = args else {
                return Err(wrong_count());
            };
            let filters = width(filters, "the number of filters")?;
            let (filter_h, filter_w) = window(size)?;
            let stride = stride.map_or(Ok(1), |s| whole(s, "the stride"))?;
            let pad = pad.map_or(Ok(0), |p| whole(p, "the pad"))?;
            // The window's own limits; the channels come from the layer before.
            LayerSpec::Convolution {
                channels: 1,
                filters,
                filter_h,
                filter_w,
                stride,
                pad,
            }
            .validate()
            .map_err(|e| e.to_string())?;
            Item::Layer(LayerDef::Conv {
                filters,
                size: (filter_h, filter_w),
                stride,
                pad,
            })
        }
        "pool" => {
            let [stride, pad] = parse_options(options, ["stride", "pad"])?;
            let [size] = args else { return Err(wrong_count()) };
            let (pool_h, pool_w) = window(size)?;
            // As `NetSpec::pool`: by default the windows tile the input.
            let stride = stride.map_or(Ok(pool_h), |s| whole(s, "the stride"))?;
            let pad = pad.map_or(Ok(0), |p| whole(p, "the pad"))?;
            LayerSpec::Pooling {
                pool_h,
                pool_w,
                stride,
                pad,
            }
            .validate()
            .map_err(|e| e.to_string())?;
            Item::Layer(LayerDef::Pool {
                size: (pool_h, pool_w),
                stride,
                pad,
            })
        }
        "relu" | "sigmoid" => {
            let [] = parse_options(options, [])?;
            if !args.is_empty() {
                return Err(format!("{keyword} takes no values"));
            }
            Item::Layer(if keyword == "relu" {
                LayerDef::Relu
            } else {
                LayerDef::Sigmoid
            })
        }
        "batchnorm" | "batch_norm" => {
            let [momentum, eps] = parse_options(options, ["momentum", "eps"])?;
            if !args.is_empty() {
                return Err("batch norm takes only options".into());
            }
            let momentum = momentum.map_or(Ok(BATCH_NORM_MOMENTUM), |m| real(m, "the momentum"))?;
            let eps = eps.map_or(Ok(BATCH_NORM_EPS), |e| real(e, "eps"))?;
            // The features come from the layer before; 1 only to check the values.
            LayerSpec::BatchNorm {
                features: 1,
                momentum,
                eps,
            }
            .validate()
            .map_err(|e| e.to_string())?;
            Item::Layer(LayerDef::BatchNorm { momentum, eps })
        }
        "dropout" => {
            let [] = parse_options(options, [])?;
            let [ratio] = args else { return Err(wrong_count()) };
            let ratio = real(ratio, "the ratio")?;
            LayerSpec::Dropout { ratio }.validate().map_err(|e| e.to_string())?;
            Item::Layer(LayerDef::Dropout { ratio })
        }
        _ => unreachable!("the caller checks the keyword against FORMS"),
    };
    Ok(item)
}

/// The values of the `key=value` options, in the order of `keys`: each key
/// at most once, none outside `keys`.
fn parse_options<'a, const N: usize>(options: &[&'a str], keys: [&str; N]) -> Result<[Option<&'a str>; N], String> {
    let mut values = [None; N];
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "'{}' after an option; the numbers come before the options",
                quote(option)
            ));
        };
        let Some(slot) = keys.iter().position(|k| *k == key) else {
            return Err(if keys.is_empty() {
                format!("unknown option '{}'; this item takes none", quote(key))
            } else {
                format!("unknown option '{}'", quote(key))
            });
        };
        if value.is_empty() {
            return Err(format!("option '{key}' has no value"));
        }
        if values[slot].replace(value).is_some() {
            return Err(format!("option '{key}' given twice"));
        }
    }
    Ok(values)
}

/// A whole number: digits only, no sign, no fraction, nothing after.
fn whole(token: &str, what: &str) -> Result<usize, String> {
    let digits_only = token.bytes().all(|b| b.is_ascii_digit());
    match token.parse::<usize>() {
        Ok(n) if digits_only => Ok(n),
        // Digits only, and still no usize: more than 2^64 - 1.
        Err(_) if digits_only && !token.is_empty() => Err(format!("{what} '{}' is far too large", quote(token))),
        _ if token.len() > 1 && token.starts_with('-') && token[1..].bytes().all(|b| b.is_ascii_digit()) => Err(
            format!("{what} '{}' is negative; expected a whole number", quote(token)),
        ),
        _ => Err(format!("{what} '{}' is not a whole number", quote(token))),
    }
}

/// A width (input dimension, outputs, filters): a whole number in `1..=MAX_WIDTH`.
fn width(token: &str, what: &str) -> Result<usize, String> {
    let n = whole(token, what)?;
    if !(1..=MAX_WIDTH).contains(&n) {
        return Err(format!("{what} must be between 1 and {MAX_WIDTH}, got {n}"));
    }
    Ok(n)
}

/// A window's height and width: `5` (square) or `5x3`. Their range is
/// [`LayerSpec::validate`]'s.
fn window(token: &str) -> Result<(usize, usize), String> {
    match token.split_once('x') {
        Some((h, w)) => Ok((whole(h, "the height")?, whole(w, "the width")?)),
        None => {
            let side = whole(token, "the size")?;
            Ok((side, side))
        }
    }
}

/// A real number, as Rust writes `f64`s (`0.5`, `1e-7`); its range is the caller's.
fn real(token: &str, what: &str) -> Result<f64, String> {
    token
        .parse::<f64>()
        .map_err(|_| format!("{what} '{}' is not a number", quote(token)))
}

/// At most [`MAX_QUOTED_CHARS`] of a line, for an error message.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// The item of one layer, as [`NetSpec`]'s text format writes it:
/// options only where they differ from the default.
impl fmt::Display for LayerDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |(h, w): (usize, usize)| if h == w { h.to_string() } else { format!("{h}x{w}") };
        match *self {
            LayerDef::Affine { outputs } => write!(f, "affine {outputs}"),
            LayerDef::Conv {
                filters,
                size: window,
                stride,
                pad,
            } => {
                write!(f, "conv {filters} {}", size(window))?;
                if stride != 1 {
                    write!(f, " stride={stride}")?;
                }
                if pad != 0 {
                    write!(f, " pad={pad}")?;
                }
                Ok(())
            }
            LayerDef::Pool {
                size: window,
                stride,
                pad,
            } => {
                write!(f, "pool {}", size(window))?;
                if stride != window.0 {
                    write!(f, " stride={stride}")?;
                }
                if pad != 0 {
                    write!(f, " pad={pad}")?;
                }
                Ok(())
            }
            LayerDef::Relu => f.write_str("relu"),
            LayerDef::Sigmoid => f.write_str("sigmoid"),
            LayerDef::BatchNorm { momentum, eps } => {
                f.write_str("batchnorm")?;
                if momentum != BATCH_NORM_MOMENTUM {
                    write!(f, " momentum={momentum}")?;
                }
                if eps != BATCH_NORM_EPS {
                    write!(f, " eps={eps}")?;
                }
                Ok(())
            }
            // `{}` writes the shortest decimal that parses back to the same f64.
            LayerDef::Dropout { ratio } => write!(f, "dropout {ratio}"),
        }
    }
}

/// The net in the text format its `FromStr` reads, one item per line;
/// every spec that parses comes back equal (`text.parse::<NetSpec>()`).
impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("input")?;
        for dim in &self.input {
            write!(f, " {dim}")?;
        }
        writeln!(f)?;
        if self.init != Init::default() {
            match self.init {
                Init::Std(std) => writeln!(f, "init std={std}")?,
                other => writeln!(f, "init {other}")?,
            }
        }
        if self.weight_decay != 0.0 {
            writeln!(f, "weight_decay {}", self.weight_decay)?;
        }
        for (index, layer) in self.layers.iter().enumerate() {
            write!(f, "{layer}")?;
            if let Some(Some(name)) = self.names.get(index) {
                write!(f, " name={name}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENET5: &str = "\
# LeNet-5 (LeCun et al. 1998) on 28x28 MNIST, with ReLU and max pooling
input 1 28 28
init he
conv 6 5 pad=2
relu
pool 2
conv 16 5
relu
pool 2
affine 120
relu
affine 84
relu
affine 10
";

    /// The error of parsing `text`, checked to name `line`.
    fn error_on_line(text: &str, line: usize) -> String {
        let err = text.parse::<NetSpec>().unwrap_err();
        assert!(
            matches!(err, LayerError::NetFile { line: l, .. } if l == line),
            "{text:?}: expected an error on line {line}, got {err:?}"
        );
        let message = err.to_string();
        assert!(message.starts_with(&format!("line {line} (")), "{message}");
        message
    }

    #[test]
    fn lenet5_text_matches_the_builder() {
        let spec: NetSpec = LENET5.parse().unwrap();
        assert_eq!(spec, crate::net::lenet5());
        assert_eq!(spec.layer_specs().unwrap().len(), 11);
        assert_eq!(spec.output_shapes().unwrap().last().unwrap(), &[10]);
    }

    #[test]
    fn display_round_trips_every_layer_and_option() {
        let spec = NetSpec::new(&[3, 32, 32])
            .init(Init::Std(0.05))
            .weight_decay(0.1 + 0.2) // 0.30000000000000004: every digit must survive
            .layer(LayerDef::Conv {
                filters: 8,
                size: (5, 3),
                stride: 2,
                pad: 1,
            })
            .conv(8, 3)
            .batch_norm()
            .layer(LayerDef::BatchNorm {
                momentum: 0.95,
                eps: 1e-5,
            })
            .relu()
            .layer(LayerDef::Pool {
                size: (3, 2),
                stride: 1,
                pad: 1,
            })
            .pool_with(2, 1, 0)
            .sigmoid()
            .affine(50)
            .dropout(0.25)
            .affine(10);
        // A real net: its sizes chain.
        assert_eq!(spec.output_shapes().unwrap().last().unwrap(), &[10]);
        let text = spec.to_string();
        for line in [
            "init std=0.05\n",
            "weight_decay 0.30000000000000004\n",
            "conv 8 5x3 stride=2 pad=1\n",
            "conv 8 3\n",
            "batchnorm\n",
            "batchnorm momentum=0.95 eps=0.00001\n",
            "pool 3x2 stride=1 pad=1\n",
            "pool 2 stride=1\n",
            "dropout 0.25\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert_eq!(text.parse::<NetSpec>(), Ok(spec));

        // The other initializers, a flat input, and a pool whose stride is its height.
        for spec in [
            NetSpec::new(&[784]).init(Init::Xavier).sigmoid().affine(10),
            NetSpec::new(&[784]).init(Init::He).affine(10),
            NetSpec::new(&[784]).init(Init::Std(1e-30)).affine(10),
            NetSpec::new(&[1, 6, 6]).layer(LayerDef::Pool {
                size: (3, 2),
                stride: 3,
                pad: 0,
            }),
        ] {
            assert_eq!(spec.to_string().parse::<NetSpec>(), Ok(spec.clone()), "{spec}");
        }
        // Defaults are not written.
        assert_eq!(NetSpec::new(&[4]).affine(2).to_string(), "input 4\naffine 2\n");
    }

    #[test]
    fn comments_blank_lines_crlf_and_case_are_accepted() {
        let text = "\u{feff}\r\n  # header\r\n\r\nINPUT 1 28 28   # images\r\nInit HE\r\n\tConv 6 5 PAD=2\r\nrelu\r\nPOOL 2\r\nconv 16 5\r\nrelu\r\npool 2\r\naffine 120 # hidden\r\nrelu\r\naffine 84\r\nrelu\r\naffine 10";
        assert_eq!(text.parse::<NetSpec>(), Ok(crate::net::lenet5()));
        // Options in any order, the alias, explicit defaults.
        let spec: NetSpec =
            "input 2 4 4\nconv 3 3 pad=1 stride=1\nbatch_norm eps=1e-6 momentum=0.9\npool 2 stride=2\naffine 2"
                .parse()
                .unwrap();
        assert_eq!(
            spec,
            NetSpec::new(&[2, 4, 4])
                .conv_with(3, 3, 1, 1)
                .batch_norm()
                .pool(2)
                .affine(2)
        );
    }

    #[test]
    fn malformed_lines_name_their_line_and_form() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "input 784\nreluu\naffine 10",
                2,
                "unknown item 'reluu'; expected one of input, init,",
            ),
            (
                "# no input\naffine 10\n",
                2,
                "a net file starts with `input D1 [D2 D3]`",
            ),
            ("input 784\ninput 784\naffine 10", 2, "the first is on line 1"),
            ("init he\ninput 784\naffine 10", 1, "'init' before the input shape"),
            (
                "input 784 1\naffine 10",
                1,
                "1 or 3 dimensions; expected `input D1 [D2 D3]`",
            ),
            ("input 0\naffine 10", 1, "between 1 and 65536, got 0"),
            (
                "input 784\naffine 12x",
                2,
                "'12x' is not a whole number; expected `affine N`",
            ),
            ("input 784\naffine -3", 2, "'-3' is negative"),
            ("input 784\naffine 1.5", 2, "'1.5' is not a whole number"),
            ("input 784\naffine 99999999999999999999999", 2, "is far too large"),
            (
                "input 784\naffine 10 10",
                2,
                "wrong number of values; expected `affine N`",
            ),
            (
                "input 1 8 8\n\nconv 6",
                3,
                "expected `conv FILTERS SIZE [stride=S] [pad=P]` (SIZE is 5 or 5x3)",
            ),
            ("input 1 8 8\nconv 6 5 pad=", 2, "option 'pad' has no value"),
            ("input 1 8 8\nconv 6 5 wat=1", 2, "unknown option 'wat'"),
            ("input 1 8 8\nconv 6 5 pad=1 pad=2", 2, "option 'pad' given twice"),
            (
                "input 1 8 8\nconv 6 5 pad=1 2",
                2,
                "the numbers come before the options",
            ),
            ("input 1 8 8\nconv 6 5x", 2, "'' is not a whole number"),
            ("input 1 8 8\nconv 6 0", 2, "sides and stride must be between 1 and 64"),
            ("input 1 8 8\npool 2 stride=0", 2, "expected `pool SIZE"),
            ("input 784\nrelu 2", 2, "relu takes no values; expected `relu`"),
            ("input 784\nsigmoid x=1", 2, "this item takes none"),
            ("input 784\nbatchnorm momentum=1", 2, "momentum must be in [0, 1)"),
            ("input 784\nbatchnorm eps=0", 2, "eps must be a positive number"),
            ("input 784\nbatchnorm eps=tiny", 2, "eps 'tiny' is not a number"),
            (
                "input 784\ndropout 1.5",
                2,
                "dropout ratio must be in [0, 1), got 1.5; expected `dropout RATIO`",
            ),
            ("input 784\ndropout nan", 2, "dropout ratio must be in [0, 1)"),
            (
                "input 784\ninit magic",
                2,
                "unknown initializer 'magic'; expected `init std=S | xavier | he`",
            ),
            (
                "input 784\ninit std=0",
                2,
                "the initial weight std must be a positive number",
            ),
            ("input 784\ninit he std=0.1", 2, "wrong number of values"),
            (
                "input 784\ninit he\ninit xavier",
                3,
                "a second init (the first is on line 2)",
            ),
            ("input 784\nweight_decay -1", 2, "weight decay must be a number >= 0"),
            (
                "input 784\nweight_decay 0.1\nweight_decay 0.1",
                3,
                "the first is on line 2",
            ),
            ("", 1, "the file ends without an input shape"),
            ("# nothing\n\n# here\n", 3, "the file ends without an input shape"),
        ];
        for &(text, line, fragment) in cases {
            let message = error_on_line(text, line);
            assert!(message.contains(fragment), "{text:?}: {message:?} lacks {fragment:?}");
        }
        // The error quotes the item without its comment, and only the start of a long one.
        let message = error_on_line("input 784\naffine x # the comment", 2);
        assert!(message.starts_with("line 2 ('affine x'):"), "{message}");
        let long = format!("input 784\naffine {}", "9".repeat(1000));
        let message = error_on_line(&long, 2);
        assert!(message.len() < 300 && message.contains("9..."), "{message}");
    }

    #[test]
    fn names_parse_on_any_layer_and_round_trip() {
        let text = "\
input 1 8 8
conv 4 3 pad=1 name=Stem   # case is kept
BatchNorm NAME=stem_bn momentum=0.95
relu name=r
pool 2 name=_pool stride=2
affine 10 name=head
dropout 0.5 name=drop
sigmoid
affine 3
";
        let spec: NetSpec = text.parse().unwrap();
        let built = NetSpec::new(&[1, 8, 8])
            .conv_with(4, 3, 1, 1)
            .name("Stem")
            .layer(LayerDef::BatchNorm {
                momentum: 0.95,
                eps: BATCH_NORM_EPS,
            })
            .name("stem_bn")
            .relu()
            .name("r")
            .pool(2)
            .name("_pool")
            .affine(10)
            .name("head")
            .dropout(0.5)
            .name("drop")
            .sigmoid()
            .affine(3);
        assert_eq!(spec, built);
        let written = spec.to_string();
        assert!(written.contains("conv 4 3 pad=1 name=Stem\n"), "{written}");
        assert!(written.contains("batchnorm momentum=0.95 name=stem_bn\n"), "{written}");
        assert!(written.contains("relu name=r\n"), "{written}");
        assert!(written.ends_with("sigmoid\naffine 3\n"), "{written}");
        assert_eq!(written.parse::<NetSpec>(), Ok(spec.clone()));
        let model = spec.build::<f32>(1).unwrap();
        assert_eq!(
            model.param_names(),
            [
                "Stem.W",
                "Stem.b",
                "stem_bn.gamma",
                "stem_bn.beta",
                "head.W",
                "head.b",
                "W1",
                "b1"
            ]
        );
    }

    #[test]
    fn bad_names_name_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "input 784\naffine 10 name=3x",
                2,
                "the layer name '3x' is not a plain identifier",
            ),
            ("input 784\naffine 10 name=a-b", 2, "not a plain identifier"),
            ("input 784\naffine 10 name=a.b", 2, "not a plain identifier"),
            ("input 784\naffine 10 name=W1", 2, "reads as the name"),
            (
                "input 784\naffine 10 name=abcdefghijklmnopqrstuvwxyz0123456789",
                2,
                "longer than 32 characters",
            ),
            (
                "input 784\naffine 20 name=fc\nrelu\n\naffine 10 name=fc",
                5,
                "the name 'fc' is already the name of the layer on line 2",
            ),
            ("input 784\naffine 10 name=", 2, "option 'name' has no value"),
            (
                "input 784\naffine 10 name=a name=b",
                2,
                "option 'name' given twice; expected `affine N`",
            ),
            (
                "input 784\naffine name=a 10",
                2,
                "'10' after an option; the numbers come before the options",
            ),
            (
                "input 784 name=x\naffine 10",
                1,
                "unknown option 'name'; this item takes none",
            ),
            ("input 784\ninit he name=x\naffine 10", 2, "unknown option 'name'"),
            (
                "input 784\nweight_decay 0.1 name=x\naffine 10",
                2,
                "unknown option 'name'",
            ),
        ];
        for &(text, line, fragment) in cases {
            let message = error_on_line(text, line);
            assert!(message.contains(fragment), "{text:?}: {message:?} lacks {fragment:?}");
        }
        // Names differ by case: two of them are two names.
        assert!("input 784\naffine 20 name=fc\naffine 10 name=FC"
            .parse::<NetSpec>()
            .is_ok());
    }

    #[test]
    fn limits_are_checked_before_the_work() {
        let mut text = String::from("input 784\n");
        text.push_str(&"relu\n".repeat(MAX_LAYERS));
        text.push_str("affine 10\n");
        let message = error_on_line(&text, MAX_LAYERS + 2);
        assert!(message.contains("more than the 1000 layers"), "{message}");

        // Over 1 MiB is refused whole, even if it is only comments.
        let text = format!("input 784\naffine 10\n{}", "#".repeat(MAX_NET_FILE_BYTES));
        let err = text.parse::<NetSpec>().unwrap_err();
        assert!(
            matches!(err, LayerError::NetFileTooLarge { bytes, max: MAX_NET_FILE_BYTES } if bytes == text.len()),
            "{err:?}"
        );
        assert!(err.to_string().contains("at most 1048576 bytes (1 MiB)"), "{err}");
    }

    #[test]
    fn sizes_that_do_not_chain_fail_in_layer_specs() {
        // Well-formed files: the parse succeeds, the builder names the layer.
        let too_small: NetSpec = "input 1 1 1\npool 2\naffine 2".parse().unwrap();
        let err = too_small.layer_specs().unwrap_err();
        assert!(matches!(err, LayerError::AtLayer { index: 1, .. }), "{err}");
        let conv_after_affine: NetSpec = "input 784\naffine 10\nconv 4 3\naffine 2".parse().unwrap();
        let err = conv_after_affine.layer_specs().unwrap_err();
        assert!(matches!(err, LayerError::AtLayer { index: 2, .. }), "{err}");
        let no_layers: NetSpec = "input 784".parse().unwrap();
        assert!(no_layers.layer_specs().is_err());
    }

    #[test]
    fn shipped_nets_parse_and_end_in_ten_outputs() {
        let lenet5: NetSpec = include_str!("../../../nets/lenet5.net").parse().unwrap();
        assert_eq!(lenet5, crate::net::lenet5());
        assert_eq!(lenet5.output_shapes().unwrap().last().unwrap(), &[10]);

        let mlp: NetSpec = include_str!("../../../nets/mlp-bn-dropout.net").parse().unwrap();
        assert_eq!(mlp.output_shapes().unwrap().last().unwrap(), &[10]);
        assert_eq!(mlp.layers.len(), 3 * 4 + 1);
        assert_eq!(mlp.layers[3], LayerDef::Dropout { ratio: 0.15 });
    }
}
