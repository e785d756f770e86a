//! Checkpoints are untrusted input: random bytes and random mutations of
//! valid checkpoints (an mlp with BatchNorm, a convnet, and a net with
//! named layers, whose names are in the metadata) always end in a
//! typed error or a model, never a panic, a hang, or an outsized allocation
//! (the loader bounds every size before allocating). A bounded number of
//! cases, so it runs in CI with the other tests.

use layers::{Mlp, NetSpec, SimpleConvNet};
use proptest::prelude::*;
use train::{load_checkpoint, save_checkpoint};

fn valid_checkpoints() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mlp = Mlp::new(&[6, 5, 4, 3])
        .batch_norm(true)
        .dropout(Some(0.5))
        .build::<f32>(1)
        .unwrap();
    let convnet = SimpleConvNet::gradient_check().build::<f32>(2).unwrap();
    let named = NetSpec::new(&[1, 6, 6])
        .conv(2, 3)
        .name("stem")
        .batch_norm()
        .name("stem_bn")
        .relu()
        .affine(3)
        .build::<f32>(3)
        .unwrap();
    let paths = [dir.path().join("a"), dir.path().join("b"), dir.path().join("c")];
    save_checkpoint(&paths[0], &mlp, &[("dataset", "mnist".into())]).unwrap();
    save_checkpoint(&paths[1], &convnet, &[]).unwrap();
    save_checkpoint(&paths[2], &named, &[]).unwrap();
    paths.iter().map(|path| std::fs::read(path).unwrap()).collect()
}

/// Loads `bytes` as a checkpoint file: Ok or a typed error, whatever they are.
fn load(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    load_checkpoint::<f32>(&path).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        load(&bytes);
    }

    #[test]
    fn mutated_checkpoints_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_checkpoints().swap_remove(which);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        load(&bytes);
    }
}

#[test]
fn the_valid_ones_load() {
    for bytes in valid_checkpoints() {
        assert!(load(&bytes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The convnet's checkpoint with its layers' geometry replaced by random
    /// numbers, absurd ones included (filters, windows, strides, paddings,
    /// channels): a typed error or a model, never a panic or a model larger
    /// than the file.
    #[test]
    fn random_convnet_geometries_are_bounded(
        filters in prop_oneof![0usize..64, any::<u32>().prop_map(|n| n as usize)],
        channels in prop_oneof![0usize..4, any::<u32>().prop_map(|n| n as usize)],
        size in prop_oneof![0usize..8, 0usize..200],
        stride in prop_oneof![0usize..4, 0usize..100],
        pad in prop_oneof![0usize..4, any::<u16>().prop_map(|n| n as usize)],
        pool in prop_oneof![0usize..4, 0usize..200],
        width in prop_oneof![1usize..64, any::<u32>().prop_map(|n| n as usize)],
    ) {
        let layers = serde_json::json!([
            {"type": "convolution", "channels": channels, "filters": filters, "filter_h": size,
             "filter_w": size, "stride": stride, "pad": pad},
            {"type": "relu"},
            {"type": "pooling", "pool_h": pool, "pool_w": pool, "stride": pool, "pad": 0},
            {"type": "affine", "inputs": width, "outputs": 10},
        ]);
        let bytes = with_layers(&valid_checkpoints()[1], &layers.to_string());
        if let Some(model) = load_model(&bytes) {
            prop_assert!(model.num_params() * 4 <= bytes.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The mlp's checkpoint with any number of ReLUs appended to its layers
    /// (a few bytes of JSON each): it loads up to layers::MAX_LAYERS layers,
    /// as a --net file does, and is refused beyond, saying why.
    #[test]
    fn depth_is_bounded_as_in_a_net_file(relus in prop_oneof![0usize..50, 990usize..1010, 0usize..5000]) {
        let checkpoint = &valid_checkpoints()[0];
        let n = u64::from_le_bytes(checkpoint[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&checkpoint[8..8 + n]).unwrap();
        let text = header["__metadata__"]["layers"].as_str().unwrap();
        let mut layers: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
        layers.extend(std::iter::repeat_n(serde_json::json!({"type": "relu"}), relus));
        let depth = layers.len();
        let bytes = with_layers(checkpoint, &serde_json::Value::Array(layers).to_string());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        match load_checkpoint::<f32>(&path) {
            Ok(loaded) => prop_assert!(depth <= layers::MAX_LAYERS && loaded.model.specs().len() == depth),
            Err(err) => {
                prop_assert!(depth > layers::MAX_LAYERS, "{}", err);
                prop_assert!(err.to_string().contains("the number of layers must be between 1 and 1000"), "{}", err);
            }
        }
    }

    /// A valid checkpoint whose first 8 bytes (the header's length) are
    /// replaced by any number: a typed error unless it is the true length,
    /// the header never read past the file.
    #[test]
    fn any_header_length_is_bounded_by_the_file(which in 0usize..3, length in prop_oneof![any::<u64>(), 0u64..4096]) {
        let mut bytes = valid_checkpoints().swap_remove(which);
        let true_length = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        let loads = load(&bytes);
        prop_assert_eq!(loads, length == true_length);
    }
}

/// `checkpoint` with its metadata's `layers` replaced by `layers`.
fn with_layers(checkpoint: &[u8], layers: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(checkpoint[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&checkpoint[8..8 + n]).unwrap();
    header["__metadata__"]["layers"] = serde_json::Value::String(layers.to_string());
    let mut text = header.to_string();
    // safetensors pads the header to 8 bytes with spaces.
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&checkpoint[8 + n..]);
    out
}

/// The model in `bytes`, if they load.
fn load_model(bytes: &[u8]) -> Option<layers::Sequential<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    load_checkpoint::<f32>(&path).ok().map(|c| c.model)
}
