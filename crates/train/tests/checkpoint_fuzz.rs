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
