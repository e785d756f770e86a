//! Model checkpoints as safetensors, and atomic file writes.
//!
//! A checkpoint holds every parameter (`W1 b1 ...`, `gamma1 beta1 ...`) and
//! buffer (`running_mean1 running_var1 ...`) under its name in the model
//! (`stem.W`, `bn.running_var` for layers given a name) as a row-major
//! little-endian F32 or F64 tensor (readable by Python's
//! `safetensors.numpy.load_file`) and, in the header's metadata, what
//! rebuilds the model: `layers` (a JSON list of layer specs), `input_shape`
//! (`"784"`), `weight_decay`, `layer_names` when some layer has a name (one
//! entry per layer, comma-separated, empty for an unnamed layer:
//! `"stem,stem_bn,,,"`), plus whatever the caller adds (data set, seed). A
//! model without layer names is written without the key, exactly as before
//! names existed, and a file without it loads unnamed. Files of the first
//! format (`sizes` = `"784,50,10"` and `activation`, tensors `W1 b1 W2 b2`)
//! load too.
//!
//! A checkpoint is untrusted input: its size, its metadata and the
//! architecture are bounded before anything is allocated, and the tensors
//! must match the architecture exactly (names, dtypes, shapes, finite values).

use crate::TrainError;
use layers::{Activation, LayerSpec, Sequential};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use tensor::Element;

/// A hidden temporary path in `path`'s folder (created if needed), ending
/// like `path` (image encoders pick the format from the extension). Renaming
/// it over `path` is atomic because both are on the same file system.
pub(crate) fn temp_beside(path: &Path) -> Result<std::path::PathBuf, TrainError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.exists() && !dir.is_dir() {
        return Err(TrainError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!(".tmp-{}-{name}", std::process::id())))
}

/// Deletes the `.tmp-PID-NAME` files that runs killed before a rename left
/// in `dir`: those whose process is gone. Only where `/proc` tells which
/// processes live (Linux); elsewhere nothing is deleted. Best effort: a
/// folder or file that cannot be read or removed is skipped, never an error.
pub fn remove_stale_temp_files(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(".tmp-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// synced and then renamed, so `path` is either the old file or the new one,
/// never a torn mix. Creates `path`'s folder if needed. Fails with
/// [`TrainError::Io`] (the temporary file removed) when the folder cannot be
/// created or the file cannot be written or renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic_with(path, |out| out.write_all(bytes))
}

/// [`write_atomic`] of what `write` puts into the temporary file, written as
/// it comes (buffered), so that a large file is never whole in memory.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    let temp = temp_beside(path)?;
    let result = (|| {
        let mut out = BufWriter::new(File::create(&temp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// A loaded checkpoint: the model and the header's metadata.
#[derive(Debug)]
pub struct Checkpoint<T: Element> {
    /// The network the file describes, with its parameters and buffers
    /// (BatchNorm's running statistics) and weight decay, converted to `T`.
    pub model: Sequential<T>,
    /// Every key of the header's metadata as written: `format`, `layers`,
    /// `input_shape`, `weight_decay`, `layer_names` (when a layer is named)
    /// and the `extra` pairs given to [`save_checkpoint`] (`sizes` and
    /// `activation` in a file of the first format).
    pub metadata: HashMap<String, String>,
}

/// The largest checkpoint file read: the largest model in f64, the header's
/// length and the longest header.
const MAX_CHECKPOINT_BYTES: u64 = (layers::MAX_PARAMS as u64) * 8 + 8 + MAX_HEADER_BYTES;

/// The longest safetensors header read: the metadata (the layers of at most
/// [`layers::MAX_LAYERS`], their names: each value at most
/// [`MAX_METADATA_VALUE`]) and an entry of about 100 bytes for each of the
/// few thousand tensors such a model has, with room to spare.
const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The longest metadata value read (the architecture of the deepest network
/// `train` builds, 100 hidden layers with BatchNorm and Dropout, is ~20 KB).
const MAX_METADATA_VALUE: usize = 1 << 20;

/// The metadata key of the layer names (see the module doc).
const LAYER_NAMES_KEY: &str = "layer_names";

fn dtype_of<T: Element>() -> Dtype {
    if T::NAME == "f64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// Saves `model`'s parameters, buffers and architecture (plus `extra`
/// metadata, `(key, value)` pairs that override the built-in keys of the same
/// name) to `path` atomically ([`write_atomic`]), as F32 for an `f32` model
/// and F64 for an `f64` one. Fails with [`TrainError::Io`] when the file
/// cannot be written, [`TrainError::Checkpoint`] when the model cannot be
/// serialized.
///
/// ```
/// use train::{load_checkpoint, save_checkpoint};
///
/// let model = layers::NetSpec::new(&[4]).affine(3).build::<f32>(1).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("model.safetensors");
/// save_checkpoint(&path, &model, &[("dataset", "toy".to_string())]).unwrap();
/// let loaded = load_checkpoint::<f32>(&path).unwrap();
///
/// assert_eq!(loaded.model.specs(), model.specs());
/// assert_eq!(loaded.model.input_shape(), &[4]);
/// for (saved, read) in model.params().iter().zip(loaded.model.params()) {
///     assert_eq!((saved.name, saved.value.as_slice()), (read.name, read.value.as_slice()));
/// }
/// assert_eq!(loaded.metadata["dataset"], "toy");
/// ```
pub fn save_checkpoint<T: Element>(
    path: &Path,
    model: &Sequential<T>,
    extra: &[(&str, String)],
) -> Result<(), TrainError> {
    let bad = |detail: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail,
    };
    let layers = serde_json::to_string(&model.specs()).map_err(|e| bad(e.to_string()))?;
    let input_shape = model
        .input_shape()
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // serde_json's maps are ordered by key (no preserve_order feature): the
    // same model and seed give the same bytes.
    let mut metadata = serde_json::Map::new();
    let mut set = |key: &str, value: String| metadata.insert(key.to_string(), serde_json::Value::String(value));
    set("format", "backprop-rs/2".to_string());
    set("layers", layers);
    set("input_shape", input_shape);
    set("weight_decay", model.weight_decay().to_string());
    // Only when a layer is named: unnamed models' files stay as they were.
    if model.layer_names().iter().any(Option::is_some) {
        let names: Vec<&str> = model.layer_names().iter().map(|n| n.as_deref().unwrap_or("")).collect();
        set(LAYER_NAMES_KEY, names.join(","));
    }
    for (k, v) in extra {
        set(k, v.clone());
    }
    let params = model.params();
    let mut tensors: Vec<(&str, &tensor::Tensor<T>)> = params
        .iter()
        .map(|p| (p.name, p.value))
        .chain(model.buffers())
        .collect();
    // The data in safetensors::serialize's order (by dtype, here one, then by
    // name): the file is the one safetensors writes, its header's keys sorted.
    tensors.sort_by_key(|&(name, _)| name);
    let dtype = dtype_of::<T>();
    let bytes_per_value = if dtype == Dtype::F64 { 8 } else { 4 };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".to_string(), serde_json::Value::Object(metadata));
    let mut offset = 0usize;
    for &(name, value) in &tensors {
        let end = offset + value.numel() * bytes_per_value;
        let info = serde_json::json!({"dtype": dtype, "shape": value.shape(), "data_offsets": [offset, end]});
        header.insert(name.to_string(), info);
        offset = end;
    }
    let mut header = serde_json::Value::Object(header).to_string();
    // The data must start at a multiple of 8, as safetensors pads it.
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    if header.len() as u64 > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "its header would take {} bytes, more than the {MAX_HEADER_BYTES} a checkpoint's may; give it shorter metadata",
            header.len()
        )));
    }
    // Each value converted as it is written: no copy of the weights is made.
    write_atomic_with(path, |out| {
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for (_, value) in &tensors {
            for &v in value.as_slice() {
                if dtype == Dtype::F64 {
                    out.write_all(&v.to_f64().to_le_bytes())?;
                } else {
                    out.write_all(&(v.to_f64() as f32).to_le_bytes())?;
                }
            }
        }
        Ok(())
    })
}

/// A comma-separated list of sizes (`"784,50,10"`), at most `max_len` of them.
fn parse_sizes(text: &str, max_len: usize) -> Result<Vec<usize>, String> {
    let sizes = text
        .split(',')
        .map(|s| s.trim().parse::<usize>().map_err(|e| format!("'{s}': {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if sizes.is_empty() || sizes.len() > max_len {
        return Err(format!("{} sizes; expected 1 to {max_len}", sizes.len()));
    }
    Ok(sizes)
}

/// The architecture in `metadata`: `(input_shape, layers)`, from either format.
fn architecture(metadata: &HashMap<String, String>) -> Result<(Vec<usize>, Vec<LayerSpec>), String> {
    if let Some((key, _)) = metadata.iter().find(|(_, v)| v.len() > MAX_METADATA_VALUE) {
        return Err(format!("metadata '{key}' is longer than {MAX_METADATA_VALUE} bytes"));
    }
    if let Some(layers) = metadata.get("layers") {
        let specs: Vec<LayerSpec> =
            serde_json::from_str(layers).map_err(|e| format!("bad 'layers' in the metadata ({e})"))?;
        let input_shape = metadata.get("input_shape").ok_or("no 'input_shape' in the metadata")?;
        let input_shape = parse_sizes(input_shape, 3).map_err(|e| format!("bad 'input_shape' ({e})"))?;
        return Ok((input_shape, specs));
    }
    // The first format: an MLP given by its widths and activation.
    let sizes = metadata
        .get("sizes")
        .ok_or("no 'layers' (nor the older 'sizes') in the metadata")?;
    let sizes = parse_sizes(sizes, 64).map_err(|e| format!("bad 'sizes' ({e})"))?;
    if sizes.len() < 2 {
        return Err(format!("'sizes' needs an input and an output width, got {sizes:?}"));
    }
    let activation = match metadata.get("activation").map(|a| a.parse::<Activation>()) {
        None => Activation::Relu,
        Some(parsed) => parsed?,
    };
    let mut specs = Vec::new();
    for (i, pair) in sizes.windows(2).enumerate() {
        specs.push(LayerSpec::Affine {
            inputs: pair[0],
            outputs: pair[1],
        });
        if i + 2 < sizes.len() {
            specs.push(match activation {
                Activation::Relu => LayerSpec::Relu,
                Activation::Sigmoid => LayerSpec::Sigmoid,
            });
        }
    }
    Ok((sizes[..1].to_vec(), specs))
}

/// The layer names of `layer_names` (one entry per layer, comma-separated,
/// empty: unnamed) for a model of `layers` layers. The count and every
/// entry's length are checked before any name is copied; whether each is a
/// valid name is [`Sequential::with_layer_names`]'s check.
fn parse_layer_names(text: &str, layers: usize) -> Result<Vec<Option<String>>, String> {
    let count = text.split(',').count();
    if count != layers {
        return Err(format!("bad '{LAYER_NAMES_KEY}' ({count} entries for {layers} layers)"));
    }
    if text.split(',').any(|name| name.len() > layers::MAX_LAYER_NAME_LEN) {
        return Err(format!(
            "bad '{LAYER_NAMES_KEY}' (a name longer than {} characters)",
            layers::MAX_LAYER_NAME_LEN
        ));
    }
    Ok(text
        .split(',')
        .map(|name| (!name.is_empty()).then(|| name.to_string()))
        .collect())
}

/// The safetensors header of the file `file` of `size` bytes, read from
/// its start: its length (the first 8 bytes), bounded by the file and by
/// [`MAX_HEADER_BYTES`] before it is allocated, its bytes, and what they
/// say. The tensors' offsets are checked (in order, each the size of its
/// dtype and shape) and the file must be exactly the header and the data
/// they cover. The error is the detail of a [`TrainError::Checkpoint`].
fn read_header(file: &mut File, size: u64) -> Result<(Vec<u8>, Metadata), String> {
    let cannot_read = |e: std::io::Error| format!("cannot read it ({e})");
    if size < 8 {
        return Err(format!(
            "not safetensors ({size} bytes, too short for the header's length)"
        ));
    }
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(cannot_read)?;
    let header_len = u64::from_le_bytes(length);
    if header_len > size - 8 {
        return Err(format!(
            "not safetensors (its first 8 bytes give a header of {header_len} bytes, but only {} follow)",
            size - 8
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "not safetensors (a header of {header_len} bytes, more than the {MAX_HEADER_BYTES} a checkpoint's may have)"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(cannot_read)?;
    // Metadata's deserializer checks the offsets (safetensors' own validation).
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| format!("not safetensors (bad header: {e})"))?;
    let data_len = metadata.data_len() as u64;
    let after_header = size - 8 - header_len;
    if data_len != after_header {
        return Err(format!(
            "not safetensors (its header gives {data_len} bytes of tensors, but {after_header} follow it)"
        ));
    }
    Ok((header, metadata))
}

/// Loads a checkpoint written by [`save_checkpoint`] (or by the first
/// format), converting F32/F64 to `T`. Every tensor the architecture needs
/// must be there with its shape and finite values, and nothing else. Any
/// problem, reading the file included, is a [`TrainError::Checkpoint`]
/// naming `path` and what was wrong (unreadable, larger than the largest
/// model, not safetensors, no usable architecture, more than
/// [`layers::MAX_LAYERS`] layers, bad layer names, a tensor of another
/// dtype than F32 or F64, a missing, unknown, misshapen or non-finite
/// tensor, a negative running variance).
///
/// The file is read in steps, each bounded before anything is allocated:
/// the header's length, the header, the architecture it describes (checked
/// against the size of the data), and only then the data.
pub fn load_checkpoint<T: Element>(path: &Path) -> Result<Checkpoint<T>, TrainError> {
    let bad = |detail: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail,
    };
    // A file we read: its I/O errors are reasons it is not usable, not advice to write.
    let cannot_read = |e: std::io::Error| bad(format!("cannot read it ({e})"));
    // Checked before opening: opening a named pipe would wait for a writer.
    if !std::fs::metadata(path).map_err(cannot_read)?.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut file = File::open(path).map_err(cannot_read)?;
    let size = file.metadata().map_err(cannot_read)?.len();
    if size > MAX_CHECKPOINT_BYTES {
        return Err(bad(format!(
            "{size} bytes is more than the largest model ({MAX_CHECKPOINT_BYTES} bytes)"
        )));
    }
    let (header, header_info) = read_header(&mut file, size).map_err(bad)?;
    let data_len = header_info.data_len();
    let metadata = header_info.metadata().clone().unwrap_or_default();
    let (input_shape, specs) = architecture(&metadata).map_err(bad)?;
    // The depth a NetSpec may have: at a few bytes of JSON a layer, the
    // `layers` value could otherwise ask for 60000 layers, each with its
    // buffers and scratch.
    if !(1..=layers::MAX_LAYERS).contains(&specs.len()) {
        let depth = layers::LayerError::OutOfRange {
            what: "the number of layers",
            value: specs.len(),
            min: 1,
            max: layers::MAX_LAYERS,
        };
        return Err(bad(depth.to_string()));
    }
    // A checkpoint holds every parameter, 4 bytes each at the least: layers
    // claiming more than the file can hold are refused before the model is
    // allocated (a few bytes of metadata could otherwise ask for a GiB).
    // (After each layer's own checks, whose messages say more.)
    for spec in &specs {
        spec.validate().map_err(|e| bad(e.to_string()))?;
    }
    let claimed = specs.iter().fold(0usize, |n, spec| n.saturating_add(spec.num_params()));
    if claimed > layers::MAX_PARAMS {
        let too_many = layers::LayerError::TooManyParams {
            params: claimed,
            max: layers::MAX_PARAMS,
        };
        return Err(bad(too_many.to_string()));
    }
    // In offset order, so that the first one named is the same every time.
    for name in header_info.offset_keys() {
        let dtype = header_info.info(&name).map(|info| info.dtype);
        if let Some(other) = dtype.filter(|d| !matches!(d, Dtype::F32 | Dtype::F64)) {
            return Err(bad(format!("tensor {name} has dtype {other:?}; expected F32 or F64")));
        }
    }
    // The whole file, as a bound: a tensor or two short is left to the
    // check below that names the missing one.
    if claimed.saturating_mul(4) as u64 > size {
        return Err(bad(format!(
            "its layers have {claimed} parameters, more than its {size} bytes can hold at 4 bytes each (F32; F64 takes 8)"
        )));
    }
    // Every parameter and buffer (BatchNorm's running mean and variance, as
    // many as its parameters) at 8 bytes: more data than that is not this
    // architecture's, and is not read.
    let buffers = specs.iter().fold(0usize, |n, spec| match spec {
        LayerSpec::BatchNorm { features, .. } => n.saturating_add(features.saturating_mul(2)),
        _ => n,
    });
    let values = claimed.saturating_add(buffers);
    if data_len > values.saturating_mul(8) {
        return Err(bad(format!(
            "its tensors take {data_len} bytes, more than its layers' {values} values take at 8 bytes each (F64)"
        )));
    }
    // Bounded by from_specs before it allocates.
    let mut model = Sequential::<T>::from_specs(&input_shape, &specs).map_err(|e| bad(e.to_string()))?;
    if let Some(text) = metadata.get(LAYER_NAMES_KEY) {
        let names = parse_layer_names(text, specs.len()).map_err(&bad)?;
        model = model
            .with_layer_names(names)
            .map_err(|e| bad(format!("bad '{LAYER_NAMES_KEY}' ({e})")))?;
    }
    if let Some(lambda) = metadata.get("weight_decay") {
        let lambda: f64 = lambda
            .parse()
            .map_err(|_| bad(format!("bad 'weight_decay' '{lambda}'")))?;
        model = model.with_weight_decay(lambda).map_err(|e| bad(e.to_string()))?;
    }
    // Only now the data, whose size the header gave and the file matched.
    let file_len = 8 + header.len() + data_len;
    let mut bytes = Vec::with_capacity(file_len);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    drop(header);
    (&mut file)
        .take(data_len as u64)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() != file_len {
        return Err(bad("cannot read it (it became shorter while it was read)".into()));
    }
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let expected: Vec<String> = model
        .param_names()
        .iter()
        .cloned()
        .chain(model.buffers().iter().map(|(name, _)| name.to_string()))
        .collect();
    let mut found: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    found.sort();
    if let Some(unknown) = found.iter().find(|name| !expected.contains(name)) {
        return Err(bad(format!(
            "tensor '{unknown}' is not part of the architecture (expected {})",
            expected.join(" ")
        )));
    }
    for name in expected {
        let view = tensors
            .tensor(&name)
            .map_err(|_| bad(layers::LayerError::MissingParam { name: name.clone() }.to_string()))?;
        let values: Vec<T> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| T::from_f64(f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])))
                .collect(),
            other => return Err(bad(format!("tensor {name} has dtype {other:?}; expected F32 or F64"))),
        };
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds a non-finite value ({}) at element {index}",
                values[index]
            )));
        }
        // The kind: `running_var2`, or `bn.running_var` in a named layer.
        let kind = name.rsplit_once('.').map_or(name.as_str(), |(_, kind)| kind);
        if kind.starts_with("running_var") && values.iter().any(|&v| v < T::ZERO) {
            return Err(bad(format!("tensor {name} holds a negative variance")));
        }
        model
            .set_tensor(&name, view.shape(), &values)
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(Checkpoint { model, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use layers::{Mlp, Target};
    use rand::SeedableRng;
    use safetensors::tensor::TensorView;

    fn model_f32(seed: u64) -> Sequential<f32> {
        Mlp::new(&[6, 5, 4, 3])
            .activation(Activation::Sigmoid)
            .init(layers::Init::Std(0.3))
            .build(seed)
            .unwrap()
    }

    /// A tensor to write: name, shape, values.
    type RawTensor = (&'static str, Vec<usize>, Vec<f32>);
    /// A hostile file: its tensors, its metadata, what the error must say.
    type Case = (Vec<RawTensor>, Vec<(&'static str, &'static str)>, &'static str);

    /// A safetensors file with these F32 tensors and metadata.
    fn write_raw(path: &Path, tensors: &[RawTensor], metadata: &[(&str, &str)]) {
        let raw: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .iter()
            .map(|(name, shape, values)| {
                (
                    name.to_string(),
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    shape.clone(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = raw
            .iter()
            .map(|(name, bytes, shape)| (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()))
            .collect();
        let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        std::fs::write(path, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
    }

    #[test]
    fn round_trip_f32_to_f32_and_f64() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let net = model_f32(9);
        save_checkpoint(&path, &net, &[("dataset", "mnist".into())]).unwrap();
        let loaded = load_checkpoint::<f32>(&path).unwrap();
        assert_eq!(loaded.model.specs(), net.specs());
        assert_eq!(loaded.metadata["dataset"], "mnist");
        assert_eq!(loaded.model.param_buffers(), net.param_buffers());
        let wide = load_checkpoint::<f64>(&path).unwrap();
        assert_eq!(
            wide.model.params()[0].value.as_slice()[3],
            net.params()[0].value.as_slice()[3] as f64
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn the_same_model_saves_to_the_same_bytes() {
        // The metadata comes from a HashMap: its order changes between maps
        // (and runs); the file must not.
        let dir = tempfile::tempdir().unwrap();
        let net = model_f32(9);
        let extra = [("dataset", "mnist".to_string()), ("seed", "42".to_string())];
        let files: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                let path = dir.path().join(format!("m{i}.safetensors"));
                save_checkpoint(&path, &net, &extra).unwrap();
                std::fs::read(&path).unwrap()
            })
            .collect();
        assert!(files.windows(2).all(|pair| pair[0] == pair[1]));
        let loaded = load_checkpoint::<f32>(&dir.path().join("m0.safetensors")).unwrap();
        assert_eq!(loaded.model.param_buffers(), net.param_buffers());
        assert_eq!(loaded.metadata["seed"], "42");
    }

    /// The reference for [`save_checkpoint`]'s bytes: the file of
    /// `safetensors::serialize` (every tensor copied into it), its header's
    /// keys then sorted.
    fn serialized_then_sorted<T: Element>(model: &Sequential<T>, extra: &[(&str, String)]) -> Vec<u8> {
        let params = model.params();
        let tensors = params.iter().map(|p| (p.name, p.value)).chain(model.buffers());
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .map(|(name, value)| {
                let mut raw = Vec::new();
                for &v in value.as_slice() {
                    if T::NAME == "f64" {
                        raw.extend_from_slice(&v.to_f64().to_le_bytes());
                    } else {
                        raw.extend_from_slice(&(v.to_f64() as f32).to_le_bytes());
                    }
                }
                (name.to_string(), raw, value.shape().to_vec())
            })
            .collect();
        let mut metadata = HashMap::from([
            ("format".to_string(), "backprop-rs/2".to_string()),
            ("layers".to_string(), serde_json::to_string(&model.specs()).unwrap()),
            (
                "input_shape".to_string(),
                model
                    .input_shape()
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("weight_decay".to_string(), model.weight_decay().to_string()),
        ]);
        if model.layer_names().iter().any(Option::is_some) {
            let names: Vec<&str> = model.layer_names().iter().map(|n| n.as_deref().unwrap_or("")).collect();
            metadata.insert(LAYER_NAMES_KEY.to_string(), names.join(","));
        }
        for (k, v) in extra {
            metadata.insert(k.to_string(), v.clone());
        }
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(name, raw, shape)| {
                (
                    name.clone(),
                    TensorView::new(dtype_of::<T>(), shape.clone(), raw).unwrap(),
                )
            })
            .collect();
        let file = safetensors::serialize(views, Some(metadata)).unwrap();
        // The header parsed and written again: serde_json's maps are sorted by key.
        let length = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&file[8..8 + length]).unwrap();
        let mut text = header.to_string();
        while !(8 + text.len()).is_multiple_of(8) {
            text.push(' ');
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&file[8 + length..]);
        out
    }

    #[test]
    fn the_streamed_file_is_byte_for_byte_the_serialized_one() {
        use layers::NetSpec;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let extra = [("dataset", "mnist".to_string()), ("seed", "42".to_string())];
        // A named convnet with BatchNorm (buffers, names sorting among W1
        // b1), trained off its start.
        let mut named = NetSpec::new(&[1, 8, 8])
            .conv(4, 3)
            .name("stem")
            .batch_norm()
            .relu()
            .pool(2)
            .affine(6)
            .batch_norm()
            .name("bn")
            .relu()
            .affine(10)
            .build::<f32>(4)
            .unwrap();
        train_a_little(&mut named);
        save_checkpoint(&path, &named, &extra).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), serialized_then_sorted(&named, &extra));

        // An mlp, with a built-in key given again by the caller; and in f64.
        let mlp = model_f32(9);
        let overriding = [("format", "mine/1".to_string())];
        save_checkpoint(&path, &mlp, &overriding).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), serialized_then_sorted(&mlp, &overriding));
        let wide = Mlp::new(&[6, 5, 4, 3]).weight_decay(0.5).build::<f64>(2).unwrap();
        save_checkpoint(&path, &wide, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, serialized_then_sorted(&wide, &[]));
        assert!(String::from_utf8_lossy(&bytes).contains("\"dtype\":\"F64\""));
        assert_eq!(
            load_checkpoint::<f64>(&path).unwrap().model.param_buffers(),
            wide.param_buffers()
        );
    }

    #[test]
    fn batch_norm_and_dropout_models_predict_the_same_after_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut model = Mlp::new(&[6, 5, 4, 3])
            .batch_norm(true)
            .dropout(Some(0.3))
            .weight_decay(0.01)
            .init(layers::Init::He)
            .build::<f32>(4)
            .unwrap();
        // A few training passes move the running statistics off their start.
        let x = tensor::Tensor::from_vec((0..24).map(|i| (i as f32 * 0.37).sin()).collect(), &[4, 6]).unwrap();
        let mut rng = layers::LayerRng::seed_from_u64(1);
        for _ in 0..3 {
            model.gradient(&x, Target::Labels(&[0, 1, 2, 1]), &mut rng).unwrap();
        }
        save_checkpoint(&path, &model, &[]).unwrap();
        let mut loaded = load_checkpoint::<f32>(&path).unwrap().model;
        assert_eq!(loaded.weight_decay(), 0.01);
        assert_eq!(loaded.buffers().len(), 4);
        assert_eq!(loaded.buffers()[0].1, model.buffers()[0].1);
        assert_eq!(loaded.predict(&x).unwrap(), model.predict(&x).unwrap());
    }

    #[test]
    fn a_convnet_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("convnet.safetensors");
        let mut model = layers::SimpleConvNet::gradient_check().build::<f32>(5).unwrap();
        save_checkpoint(&path, &model, &[]).unwrap();
        let mut loaded = load_checkpoint::<f32>(&path).unwrap().model;
        assert_eq!(loaded.specs(), model.specs());
        assert_eq!(loaded.input_shape(), &[1, 10, 10]);
        let mut x = tensor::Tensor::from_vec((0..300).map(|i| (i as f32 * 0.1).cos()).collect(), &[3, 100]).unwrap();
        model.shape_batch(&mut x).unwrap();
        assert_eq!(loaded.predict(&x).unwrap(), model.predict(&x).unwrap());
    }

    #[test]
    fn first_format_checkpoints_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.safetensors");
        let w1: Vec<f32> = (0..12).map(|i| i as f32 * 0.1).collect();
        write_raw(
            &path,
            &[
                ("W1", vec![4, 3], w1.clone()),
                ("b1", vec![3], vec![0.5; 3]),
                ("W2", vec![3, 2], vec![1.0; 6]),
                ("b2", vec![2], vec![0.0; 2]),
            ],
            &[
                ("format", "backprop-rs/1"),
                ("sizes", "4,3,2"),
                ("activation", "sigmoid"),
            ],
        );
        let loaded = load_checkpoint::<f32>(&path).unwrap();
        assert_eq!(loaded.model.summary(), "Affine(4x3) Sigmoid Affine(3x2)");
        assert_eq!(loaded.model.params()[0].value.as_slice(), &w1[..]);
    }

    #[test]
    fn temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 999999999 (Linux pids stop at 2^22).
        let stale = dir.path().join(".tmp-999999999-model.safetensors");
        let ours = dir.path().join(format!(".tmp-{}-loss.csv", std::process::id()));
        let kept = dir.path().join("model.safetensors");
        for path in [&stale, &ours, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        remove_stale_temp_files(dir.path());
        assert_eq!(
            stale.exists(),
            !Path::new("/proc/self").exists(),
            "removed where /proc tells"
        );
        assert!(ours.exists() && kept.exists());
    }

    #[test]
    fn an_unwritable_destination_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, b"x").unwrap();
        // A folder cannot be created inside a file.
        let target = blocker.join("run").join("model.safetensors");
        let err = write_atomic(&target, b"data").unwrap_err();
        assert!(matches!(err, TrainError::Io { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");
        assert!(matches!(
            save_checkpoint(&target, &model_f32(1), &[]),
            Err(TrainError::Io { .. })
        ));
        assert_eq!(std::fs::read(&blocker).unwrap(), b"x", "nothing overwritten");
    }

    #[test]
    fn damaged_foreign_or_hostile_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save_checkpoint(&path, &model_f32(1), &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(matches!(
            load_checkpoint::<f32>(&path),
            Err(TrainError::Checkpoint { .. })
        ));
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = load_checkpoint::<f32>(&path).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        // Reading: the message says the file cannot be read, and gives no advice to write.
        for unreadable in [dir.path().join("none"), dir.path().to_path_buf()] {
            let err = load_checkpoint::<f32>(&unreadable).unwrap_err().to_string();
            assert!(
                err.contains("not a usable checkpoint") && !err.contains("writable"),
                "{err}"
            );
        }
        let w = |n: usize| vec![0.1f32; n];
        let good = || {
            vec![
                ("W1", vec![4, 3], w(12)),
                ("b1", vec![3], w(3)),
                ("W2", vec![3, 2], w(6)),
                ("b2", vec![2], w(2)),
            ]
        };
        let legacy = [("sizes", "4,3,2")];
        let mut nan = good();
        nan[2].2[4] = f32::NAN;
        let mut extra = good();
        extra.push(("W3", vec![1], w(1)));
        let mut reshaped = good();
        reshaped[0].1 = vec![3, 4];
        let cases: Vec<Case> = vec![
            (nan, legacy.to_vec(), "W2 holds a non-finite value"),
            (extra, legacy.to_vec(), "'W3' is not part of the architecture"),
            (good()[..3].to_vec(), legacy.to_vec(), "b2 is missing"),
            (reshaped, legacy.to_vec(), "expected shape [4, 3]"),
            (
                good(),
                vec![("sizes", "18446744073709551615,3,2")],
                "widths must be between",
            ),
            (good(), vec![("sizes", "784,100000000,10")], "widths must be between"),
            (good(), vec![("sizes", "4,x,2")], "bad 'sizes'"),
            (good(), vec![], "no 'layers'"),
            (
                good(),
                vec![("layers", "[{\"type\":\"conv\"}]"), ("input_shape", "4")],
                "bad 'layers'",
            ),
            (
                good(),
                vec![
                    (
                        "layers",
                        r#"[{"type":"affine","inputs":60000,"outputs":60000},{"type":"affine","inputs":60000,"outputs":10}]"#,
                    ),
                    ("input_shape", "60000"),
                ],
                "parameters is more than",
            ),
        ];
        for (tensors, metadata, needle) in cases {
            write_raw(&path, &tensors, &metadata);
            let err = load_checkpoint::<f32>(&path).unwrap_err().to_string();
            assert!(err.contains(needle), "{metadata:?}: {err} should say {needle}");
            assert!(err.starts_with(path.to_str().unwrap()), "{err} names the file");
        }
    }

    /// Every tensor of a checkpoint file as `(name, shape, values)`, read
    /// straight from the safetensors (F32), in the file's order.
    fn tensors_in(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let bytes = std::fs::read(path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        file.tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                (name, view.shape().to_vec(), values)
            })
            .collect()
    }

    /// A few SGD steps on a fixed batch of 1x8x8 images, so that no weight is at its start.
    fn train_a_little(model: &mut Sequential<f32>) {
        let mut x = tensor::Tensor::from_vec((0..128).map(|i| (i as f32 * 0.37).sin()).collect(), &[2, 64]).unwrap();
        model.shape_batch(&mut x).unwrap();
        let mut sgd = layers::OptimizerConfig::new(layers::OptimizerKind::Sgd)
            .with_learning_rate(0.1)
            .build(&*model)
            .unwrap();
        let mut rng = layers::LayerRng::seed_from_u64(3);
        for _ in 0..3 {
            model.gradient(&x, Target::Labels(&[1, 7]), &mut rng).unwrap();
            sgd.step(model);
        }
    }

    #[test]
    fn named_tensors_survive_inserting_a_named_layer() {
        use layers::NetSpec;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        // Net A: conv (named) -> relu -> pool -> affine 10, trained a little and saved.
        let stem = NetSpec::new(&[1, 8, 8]).conv(4, 3).name("stem");
        let mut a = stem.clone().relu().pool(2).affine(10).build::<f32>(1).unwrap();
        train_a_little(&mut a);
        save_checkpoint(&path, &a, &[]).unwrap();
        let saved = tensors_in(&path);
        let mut names: Vec<&str> = saved.iter().map(|(name, _, _)| name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["W1", "b1", "stem.W", "stem.b"]);

        // Net B: A with a named BatchNorm inserted after the stem. Every tensor
        // of A's file is found in B by its name, with its shape, and loads.
        let mut b = stem
            .batch_norm()
            .name("stem_bn")
            .relu()
            .pool(2)
            .affine(10)
            .build::<f32>(2)
            .unwrap();
        assert_eq!(
            b.param_names(),
            ["stem.W", "stem.b", "stem_bn.gamma", "stem_bn.beta", "W1", "b1"]
        );
        for (name, shape, values) in &saved {
            b.set_tensor(name, shape, values)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for (name, _, values) in &saved {
            let param = b.params().into_iter().find(|p| p.name == name).unwrap();
            assert_eq!(param.value.as_slice(), &values[..], "{name}");
        }
    }

    #[test]
    fn unnamed_tensors_are_renumbered_by_an_inserted_layer() {
        use layers::NetSpec;
        // Why names matter: the same nets without names. A's affine is W2;
        // insert a 1x1 convolution after the first one and that affine
        // becomes W3, while W2 now names the new filters, of another shape.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let conv = NetSpec::new(&[1, 8, 8]).conv(4, 3);
        let a = conv.clone().relu().pool(2).affine(10).build::<f32>(1).unwrap();
        assert_eq!(a.param_names(), ["W1", "b1", "W2", "b2"]);
        save_checkpoint(&path, &a, &[]).unwrap();
        let mut b = conv
            .clone()
            .conv(4, 1)
            .relu()
            .pool(2)
            .affine(10)
            .build::<f32>(2)
            .unwrap();
        assert_eq!(b.param_names(), ["W1", "b1", "W2", "b2", "W3", "b3"]);
        let saved = tensors_in(&path);
        let (_, shape, values) = saved.iter().find(|(name, _, _)| name == "W2").unwrap();
        assert_eq!(shape, &[36, 10], "A's W2 is its affine's");
        let err = b.set_tensor("W2", shape, values).unwrap_err();
        assert!(
            matches!(&err, layers::LayerError::ParamShape { expected, .. } if expected == &[4, 4, 1, 1]),
            "{err}"
        );
        // Had the inserted layer kept the shapes, W2 would have loaded into the
        // wrong layer without a word. With the inserted layer named, nothing moves.
        let mut named = conv
            .conv(4, 1)
            .name("mix")
            .relu()
            .pool(2)
            .affine(10)
            .build::<f32>(2)
            .unwrap();
        assert_eq!(named.param_names(), ["W1", "b1", "mix.W", "mix.b", "W2", "b2"]);
        for (name, shape, values) in &saved {
            named.set_tensor(name, shape, values).unwrap();
        }
    }

    #[test]
    fn a_named_model_round_trips_with_its_names() {
        use layers::NetSpec;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named.safetensors");
        let net = NetSpec::new(&[1, 8, 8])
            .conv(4, 3)
            .name("stem")
            .batch_norm()
            .name("stem_bn")
            .relu()
            .pool(2)
            .affine(6)
            .batch_norm()
            .relu()
            .affine(10)
            .name("head");
        let mut model = net.build::<f32>(4).unwrap();
        // Training moves the running statistics too.
        train_a_little(&mut model);
        save_checkpoint(&path, &model, &[]).unwrap();
        let loaded = load_checkpoint::<f32>(&path).unwrap();
        assert_eq!(loaded.metadata["layer_names"], "stem,stem_bn,,,,,,head");
        assert_eq!(loaded.model.layer_names(), model.layer_names());
        assert_eq!(loaded.model.layer_names(), net.layer_names());
        assert_eq!(
            loaded.model.param_names(),
            [
                "stem.W",
                "stem.b",
                "stem_bn.gamma",
                "stem_bn.beta",
                "W1",
                "b1",
                "gamma1",
                "beta1",
                "head.W",
                "head.b"
            ]
        );
        assert_eq!(loaded.model.param_names(), model.param_names());
        assert_eq!(loaded.model.param_buffers(), model.param_buffers());
        let buffers = |m: &Sequential<f32>| -> Vec<(String, Vec<f32>)> {
            m.buffers()
                .iter()
                .map(|(name, b)| (name.to_string(), b.as_slice().to_vec()))
                .collect()
        };
        assert_eq!(buffers(&loaded.model), buffers(&model));
        assert_eq!(buffers(&model)[1].0, "stem_bn.running_var");

        // A model without names is written without the key, as before names existed.
        let plain_path = dir.path().join("plain.safetensors");
        save_checkpoint(&plain_path, &model.with_layer_names(vec![None; 8]).unwrap(), &[]).unwrap();
        let plain = load_checkpoint::<f32>(&plain_path).unwrap();
        let mut keys: Vec<&str> = plain.metadata.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["format", "input_shape", "layers", "weight_decay"]);
        assert_eq!(plain.metadata["format"], "backprop-rs/2");
        assert!(plain.model.layer_names().iter().all(Option::is_none));
        assert_eq!(plain.model.param_names()[..4], ["W1", "b1", "gamma1", "beta1"]);
    }

    #[test]
    fn bad_layer_names_in_a_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let one = r#"[{"type":"affine","inputs":4,"outputs":2}]"#;
        let three = r#"[{"type":"affine","inputs":4,"outputs":3},{"type":"batch_norm","features":3,"momentum":0.9,"eps":1e-6},{"type":"affine","inputs":3,"outputs":2}]"#;
        let w = |n: usize| vec![0.1f32; n];
        let named_one = |name: &'static str| vec![(name, vec![4, 2], w(8))];
        let bn = |running_var: f32| {
            vec![
                ("W1", vec![4, 3], w(12)),
                ("b1", vec![3], w(3)),
                ("bn.gamma", vec![3], w(3)),
                ("bn.beta", vec![3], w(3)),
                ("bn.running_mean", vec![3], w(3)),
                ("bn.running_var", vec![3], vec![running_var; 3]),
                ("W2", vec![3, 2], w(6)),
                ("b2", vec![2], w(2)),
            ]
        };
        let meta = |layers: &'static str, names: &'static str| {
            vec![("layers", layers), ("input_shape", "4"), ("layer_names", names)]
        };
        let mut with_bias = named_one("fc.W");
        with_bias.push(("fc.b", vec![2], w(2)));
        let cases: Vec<Case> = vec![
            (
                with_bias.clone(),
                meta(one, "fc,x"),
                "bad 'layer_names' (2 entries for 1 layers)",
            ),
            (
                with_bias.clone(),
                meta(one, "abcdefghijklmnopqrstuvwxyz0123456789"),
                "a name longer than 32 characters",
            ),
            (with_bias.clone(), meta(one, "3x"), "'3x' is not a plain identifier"),
            (with_bias.clone(), meta(one, "W1"), "reads as the name"),
            (with_bias.clone(), meta(one, "fc "), "not a plain identifier"),
            (bn(1.0), meta(three, "fc,fc,"), "layers 1 and 2 are both named 'fc'"),
            // The names must be the tensors': a file named otherwise is refused.
            (
                with_bias.clone(),
                meta(one, "head"),
                "'fc.W' is not part of the architecture",
            ),
            (
                with_bias.clone(),
                vec![("layers", one), ("input_shape", "4")],
                "'fc.W' is not part of the architecture",
            ),
            (
                bn(-1.0),
                meta(three, ",bn,"),
                "bn.running_var holds a negative variance",
            ),
        ];
        for (tensors, metadata, needle) in cases {
            write_raw(&path, &tensors, &metadata);
            let err = load_checkpoint::<f32>(&path).unwrap_err().to_string();
            assert!(err.contains(needle), "{metadata:?}: {err} should say {needle}");
            assert!(err.starts_with(path.to_str().unwrap()), "{err} names the file");
        }
        // The same files with good names load, their names kept.
        write_raw(&path, &with_bias, &meta(one, "fc"));
        assert_eq!(
            load_checkpoint::<f32>(&path).unwrap().model.param_names(),
            ["fc.W", "fc.b"]
        );
        write_raw(&path, &bn(1.0), &meta(three, ",bn,"));
        let loaded = load_checkpoint::<f32>(&path).unwrap().model;
        assert_eq!(loaded.buffers()[1].0, "bn.running_var");
    }

    /// A file of `header` (JSON, as written) and `data`, as safetensors lays them out.
    fn write_file(path: &Path, header: &serde_json::Value, data: &[u8]) {
        let text = header.to_string();
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    /// The metadata of an Affine of 4 inputs to 2 scores and `relus` ReLUs after it.
    fn affine_then_relus(relus: usize) -> Vec<(&'static str, String)> {
        let mut layers = vec![serde_json::json!({"type": "affine", "inputs": 4, "outputs": 2})];
        layers.extend(std::iter::repeat_n(serde_json::json!({"type": "relu"}), relus));
        vec![
            ("layers", serde_json::Value::Array(layers).to_string()),
            ("input_shape", "4".to_string()),
        ]
    }

    #[test]
    fn more_layers_than_a_net_file_may_have_are_refused_before_building() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.safetensors");
        let tensors = [("W1", vec![4, 2], vec![0.1f32; 8]), ("b1", vec![2], vec![0.0; 2])];
        let load = |relus: usize| {
            let metadata = affine_then_relus(relus);
            let metadata: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
            write_raw(&path, &tensors, &metadata);
            load_checkpoint::<f32>(&path)
        };
        // layers::MAX_LAYERS of them load, as from a --net file.
        assert_eq!(
            load(layers::MAX_LAYERS - 1).unwrap().model.specs().len(),
            layers::MAX_LAYERS
        );
        for relus in [layers::MAX_LAYERS, 60_000] {
            let err = load(relus).unwrap_err().to_string();
            let expected = format!("the number of layers must be between 1 and 1000, got {}", relus + 1);
            assert!(err.contains(&expected), "{err}");
        }
        let err = load_empty_layers(&path);
        assert!(
            err.contains("the number of layers must be between 1 and 1000, got 0"),
            "{err}"
        );
    }

    /// The error of a checkpoint whose `layers` is an empty list.
    fn load_empty_layers(path: &Path) -> String {
        write_raw(path, &[], &[("layers", "[]"), ("input_shape", "4")]);
        load_checkpoint::<f32>(path).unwrap_err().to_string()
    }

    #[test]
    fn a_tensor_of_another_dtype_is_named_with_its_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.safetensors");
        let metadata: serde_json::Map<String, serde_json::Value> = affine_then_relus(0)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        // W1 in F16 (2 bytes a value): the file is too small for the layers'
        // 10 parameters at 4 bytes, but the dtype is what is wrong.
        for (dtype, width) in [("F16", 2), ("BF16", 2), ("I32", 4), ("F8_E4M3", 1)] {
            let w1 = 8 * width;
            let header = serde_json::json!({
                "__metadata__": metadata,
                "W1": {"dtype": dtype, "shape": [4, 2], "data_offsets": [0, w1]},
                "b1": {"dtype": "F32", "shape": [2], "data_offsets": [w1, w1 + 8]},
            });
            write_file(&path, &header, &vec![0u8; w1 + 8]);
            let err = load_checkpoint::<f32>(&path).unwrap_err().to_string();
            let expected = format!("tensor W1 has dtype {dtype}; expected F32 or F64");
            assert!(err.contains(&expected), "{err}");
        }
    }

    #[test]
    fn the_header_and_the_file_size_are_checked_before_the_data_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let error = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            load_checkpoint::<f32>(&path).unwrap_err().to_string()
        };
        // A length of 1 TiB in a file of 100 bytes.
        let mut lying = (1u64 << 40).to_le_bytes().to_vec();
        lying.resize(100, b' ');
        let err = error(&lying);
        assert!(
            err.contains("a header of 1099511627776 bytes, but only 92 follow"),
            "{err}"
        );
        assert!(error(&[1, 0, 0]).contains("3 bytes, too short"));

        // A header longer than any checkpoint's, in a (sparse) file that holds it.
        let mut file = File::create(&path).unwrap();
        file.write_all(&(MAX_HEADER_BYTES + 8).to_le_bytes()).unwrap();
        file.set_len(MAX_HEADER_BYTES + 64).unwrap();
        drop(file);
        let err = load_checkpoint::<f32>(&path).unwrap_err().to_string();
        assert!(err.contains("more than the 16777216 a checkpoint's may have"), "{err}");

        // A valid file with bytes after its data, or fewer than its header says.
        save_checkpoint(&path, &model_f32(1), &[]).unwrap();
        let saved = std::fs::read(&path).unwrap();
        let mut longer = saved.clone();
        longer.extend_from_slice(&[0; 5]);
        let data_len = saved.len() - 8 - u64::from_le_bytes(saved[..8].try_into().unwrap()) as usize;
        let err = error(&longer);
        let expected = format!("gives {data_len} bytes of tensors, but {} follow it", data_len + 5);
        assert!(err.contains(&expected), "{err}");
        let err = error(&saved[..saved.len() - 4]);
        let expected = format!("gives {data_len} bytes of tensors, but {} follow it", data_len - 4);
        assert!(err.contains(&expected), "{err}");
    }

    #[test]
    fn data_beyond_what_the_layers_hold_is_refused_unread() {
        // An affine of 4 x 2 (10 parameters) beside a tensor of 10^6 values:
        // more bytes than its layers take even in F64, refused from the header.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let metadata: serde_json::Map<String, serde_json::Value> = affine_then_relus(0)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        let header = serde_json::json!({
            "__metadata__": metadata,
            "W1": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
            "b1": {"dtype": "F32", "shape": [2], "data_offsets": [32, 40]},
            "junk": {"dtype": "F32", "shape": [1_000_000], "data_offsets": [40, 4_000_040]},
        });
        write_file(&path, &header, &vec![0u8; 4_000_040]);
        let err = load_checkpoint::<f32>(&path).unwrap_err().to_string();
        assert!(
            err.contains("its tensors take 4000040 bytes, more than its layers' 10 values take at 8 bytes each"),
            "{err}"
        );
        // A BatchNorm's running statistics count as its values too.
        let bn = r#"[{"type":"affine","inputs":4,"outputs":3},{"type":"batch_norm","features":3,"momentum":0.9,"eps":1e-6},{"type":"affine","inputs":3,"outputs":2}]"#;
        let w = |n: usize| vec![0.5f32; n];
        let tensors = [
            ("W1", vec![4, 3], w(12)),
            ("b1", vec![3], w(3)),
            ("gamma1", vec![3], w(3)),
            ("beta1", vec![3], w(3)),
            ("running_mean1", vec![3], w(3)),
            ("running_var1", vec![3], w(3)),
            ("W2", vec![3, 2], w(6)),
            ("b2", vec![2], w(2)),
        ];
        write_raw(&path, &tensors, &[("layers", bn), ("input_shape", "4")]);
        assert!(load_checkpoint::<f64>(&path).is_ok());
    }
}
