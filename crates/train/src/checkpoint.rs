//! Model checkpoints as safetensors, and atomic file writes.
//!
//! A checkpoint holds the tensors `W1 b1 W2 b2 ...` (row-major, little-endian
//! F32 or F64, readable by Python's `safetensors.numpy.load_file`) and, in the
//! header's metadata, what is needed to rebuild the network: `sizes`
//! (`"784,50,10"`), `activation`, plus whatever the caller adds (data set, seed).

use crate::TrainError;
use layers::{Activation, Network};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
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
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!(".tmp-{}-{name}", std::process::id())))
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// synced and then renamed, so `path` is either the old file or the new one,
/// never a torn mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let temp = temp_beside(path)?;
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// A loaded checkpoint: the network and the header's metadata.
#[derive(Debug)]
pub struct Checkpoint<T: Element> {
    pub network: Network<T>,
    pub metadata: HashMap<String, String>,
}

fn dtype_of<T: Element>() -> Dtype {
    if T::NAME == "f64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// Saves `net`'s parameters and architecture (plus `extra` metadata) atomically.
pub fn save_checkpoint<T: Element>(path: &Path, net: &Network<T>, extra: &[(&str, String)]) -> Result<(), TrainError> {
    let params = net.named_params();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .map(|(name, value, _)| {
            let mut raw = Vec::with_capacity(value.numel() * std::mem::size_of::<T>());
            for &v in value.as_slice() {
                if T::NAME == "f64" {
                    raw.extend_from_slice(&v.to_f64().to_le_bytes());
                } else {
                    raw.extend_from_slice(&(v.to_f64() as f32).to_le_bytes());
                }
            }
            (name.clone(), raw, value.shape().to_vec())
        })
        .collect();
    let sizes = net.sizes().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
    let mut metadata = HashMap::from([
        ("format".to_string(), "backprop-rs/1".to_string()),
        ("sizes".to_string(), sizes),
        ("activation".to_string(), net.activation().to_string()),
    ]);
    for (k, v) in extra {
        metadata.insert(k.to_string(), v.clone());
    }
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, raw, shape)| {
            let view = TensorView::new(dtype_of::<T>(), shape.clone(), raw).map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_, TrainError>>()?;
    let serialized = safetensors::serialize(views, Some(metadata)).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    write_atomic(path, &serialized)
}

/// Loads a checkpoint written by [`save_checkpoint`], converting F32/F64 to `T`.
pub fn load_checkpoint<T: Element>(path: &Path) -> Result<Checkpoint<T>, TrainError> {
    let bad = |detail: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not safetensors ({e})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let sizes: Vec<usize> = metadata
        .get("sizes")
        .ok_or_else(|| bad("no 'sizes' in the metadata".into()))?
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("bad 'sizes' ({e})")))?;
    let activation: Activation = metadata
        .get("activation")
        .map(|a| a.parse())
        .unwrap_or(Ok(Activation::Relu))
        .map_err(bad)?;
    let mut network = Network::<T>::mlp(&sizes, activation, 0.01, 0).map_err(|e| bad(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let names: Vec<String> = network.named_params().into_iter().map(|(n, _, _)| n).collect();
    for name in names {
        let view = tensors
            .tensor(&name)
            .map_err(|_| layers::LayerError::MissingParam { name: name.clone() })?;
        let values: Vec<T> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| T::from_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| T::from_f64(f64::from_le_bytes(c.try_into().expect("chunks of 8"))))
                .collect(),
            other => return Err(bad(format!("tensor {name} has dtype {other:?}; expected F32 or F64"))),
        };
        network.set_param(&name, view.shape(), &values)?;
    }
    Ok(Checkpoint { network, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32_to_f32_and_f64() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let net = Network::<f32>::mlp(&[6, 5, 4, 3], Activation::Sigmoid, 0.3, 9).unwrap();
        save_checkpoint(&path, &net, &[("dataset", "mnist".into())]).unwrap();
        let loaded = load_checkpoint::<f32>(&path).unwrap();
        assert_eq!(loaded.network.sizes(), &[6, 5, 4, 3]);
        assert_eq!(loaded.network.activation(), Activation::Sigmoid);
        assert_eq!(loaded.metadata["dataset"], "mnist");
        assert_eq!(loaded.network.param_buffers(), net.param_buffers());
        let wide = load_checkpoint::<f64>(&path).unwrap();
        assert_eq!(
            wide.network.named_params()[0].1.as_slice()[3],
            net.named_params()[0].1.as_slice()[3] as f64
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
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
        let net = Network::<f32>::new(4, 3, 2, 0.1, 1);
        assert!(matches!(
            save_checkpoint(&target, &net, &[]),
            Err(TrainError::Io { .. })
        ));
        assert_eq!(std::fs::read(&blocker).unwrap(), b"x", "nothing overwritten");
    }

    #[test]
    fn damaged_or_foreign_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let net = Network::<f32>::new(4, 3, 2, 0.1, 1);
        save_checkpoint(&path, &net, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(matches!(
            load_checkpoint::<f32>(&path),
            Err(TrainError::Checkpoint { .. })
        ));
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let err = load_checkpoint::<f32>(&path).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        assert!(matches!(
            load_checkpoint::<f32>(&dir.path().join("none")),
            Err(TrainError::Io { .. })
        ));
        // A shape that does not match the declared architecture.
        let other = Network::<f32>::new(4, 3, 2, 0.1, 1);
        let mut renamed = HashMap::new();
        renamed.insert("sizes".to_string(), "4,7,2".to_string());
        let w: Vec<u8> = other.named_params()[0]
            .1
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::F32, vec![4, 3], &w).unwrap();
        std::fs::write(
            &path,
            safetensors::serialize(vec![("W1", view)], Some(renamed)).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            load_checkpoint::<f32>(&path),
            Err(TrainError::Layer(layers::LayerError::ParamShape { .. }))
        ));
    }
}
