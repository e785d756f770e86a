//! Hostile checkpoints as a tester crafts them, given to `eval` and
//! `predict`: refused before the work (or the allocation) they ask for, in
//! one line that says why. And the numbers the commands print: `eval`'s
//! accuracy from its one pass, a divergence's learning rate.

use crate::common;

use common::{command, text};
use std::path::Path;
use std::process::{Command, Output};

/// Asserts that `output` is a failure with exit code 1 saying `needle` on
/// stderr, in one line, without a panic; returns stderr.
#[track_caller]
fn refused(output: &Output, needle: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "should say {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

/// Runs `cargo xtask TASK --model MODEL` (with `--index 0` for predict)
/// where there is no data: a refusal of the model comes before the data is
/// looked for.
fn on_model(task: &str, model: &Path) -> Output {
    let mut args = vec![task, "--model", model.to_str().unwrap(), "--data-dir", "/nonexistent"];
    if task == "predict" {
        args.extend_from_slice(&["--index", "0"]);
    }
    command(&args, None).output().expect("xtask runs")
}

/// A tensor of a crafted checkpoint: name, dtype, shape, bytes per value.
/// Every value is 0.01 in F32, zero bytes in another dtype.
type Tensor = (&'static str, &'static str, Vec<usize>, usize);

/// A safetensors file of these tensors with `layers` (JSON) on images of
/// `input_shape`, as a tester writes one.
fn write_checkpoint(path: &Path, tensors: &[Tensor], input_shape: &str, layers: &str) {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "backprop-rs/2", "input_shape": input_shape, "layers": layers}),
    );
    let mut body = Vec::new();
    for (name, dtype, shape, width) in tensors {
        let count: usize = shape.iter().product();
        let start = body.len();
        if *dtype == "F32" {
            for _ in 0..count {
                body.extend_from_slice(&0.01f32.to_le_bytes());
            }
        } else {
            body.resize(start + count * width, 0);
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, body.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&body);
    std::fs::write(path, bytes).unwrap();
}

/// The tester's pooling-heavy file: a 1x1 convolution to `maps` maps padded
/// by 64, then a 64x64 max pool of stride 1 padded by 64 (4096 comparisons
/// for each of its maps x 221 x 221 outputs), a 64x64 pool of stride 64, and
/// an affine to 10 scores.
fn write_pool_heavy(path: &Path, maps: usize) {
    let layers = serde_json::json!([
        {"type": "convolution", "channels": 1, "filters": maps, "filter_h": 1, "filter_w": 1, "stride": 1, "pad": 64},
        {"type": "pooling", "pool_h": 64, "pool_w": 64, "stride": 1, "pad": 64},
        {"type": "pooling", "pool_h": 64, "pool_w": 64, "stride": 64, "pad": 0},
        {"type": "affine", "inputs": maps * 9, "outputs": 10},
    ]);
    let tensors = [
        ("W1", "F32", vec![maps, 1, 1, 1], 4),
        ("b1", "F32", vec![maps], 4),
        ("W2", "F32", vec![maps * 9, 10], 4),
        ("b2", "F32", vec![10], 4),
    ];
    write_checkpoint(path, &tensors, "1,28,28", &layers.to_string());
}

#[test]
fn a_pool_whose_windows_cost_hours_is_refused_with_its_estimate() {
    // Counted at one operation per output, these 74 kB and 15 kB files were
    // 2e7 and 4e6 operations per image, and eval ran for hours. Each tap of
    // a window counts 16 (see train's cost.rs): 4e10 taps are 6.4e11.
    let dir = tempfile::tempdir().unwrap();
    for (maps, per_image) in [(200, "6.4e11 per image"), (40, "1.3e11 per image")] {
        let path = dir.path().join(format!("pool{maps}.safetensors"));
        write_pool_heavy(&path, maps);
        let stderr = refused(&on_model("eval", &path), per_image);
        for needle in [
            "floating-point operations",
            "scoring 10000 images",
            "not a model this project trains",
        ] {
            assert!(stderr.contains(needle), "{needle:?}: {stderr}");
        }
    }
    // One image of the larger took predict 17 s: over the bound by itself.
    refused(
        &on_model("predict", &dir.path().join("pool200.safetensors")),
        "6.4e11 per image",
    );
}

#[test]
fn a_checkpoint_deeper_than_a_net_file_may_be_is_refused() {
    // An affine and 60000 ReLUs in 960 kB of JSON (under the 1 MiB a
    // metadata value may have) loaded, took 2.3 GB and scored.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.safetensors");
    let mut layers = vec![serde_json::json!({"type": "affine", "inputs": 784, "outputs": 10})];
    layers.extend(std::iter::repeat_n(serde_json::json!({"type": "relu"}), 60_000));
    let tensors = [("W1", "F32", vec![784, 10], 4), ("b1", "F32", vec![10], 4)];
    write_checkpoint(&path, &tensors, "784", &serde_json::Value::Array(layers).to_string());
    for task in ["eval", "predict"] {
        let stderr = refused(
            &on_model(task, &path),
            "not a usable checkpoint: the number of layers must be between 1 and 1000, got 60001",
        );
        assert!(stderr.contains("deep.safetensors"), "{stderr}");
    }
}

#[test]
fn a_tensor_in_half_precision_is_named_with_its_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let tensors = [
        ("W1", "F16", vec![784, 50], 2),
        ("b1", "F32", vec![50], 4),
        ("W2", "F32", vec![50, 10], 4),
        ("b2", "F32", vec![10], 4),
    ];
    let layers =
        r#"[{"type":"affine","inputs":784,"outputs":50},{"type":"relu"},{"type":"affine","inputs":50,"outputs":10}]"#;
    write_checkpoint(&path, &tensors, "784", layers);
    let stderr = refused(&on_model("eval", &path), "tensor W1 has dtype F16; expected F32 or F64");
    assert!(!stderr.contains("bytes can hold"), "{stderr}");
}

/// Runs `cargo xtask eval --model MODEL` where the process may map at most
/// 1 GiB of memory (`ulimit -v`): a loader that reads a 1.9 GB file before
/// checking its header dies there instead of refusing it.
#[cfg(unix)]
fn eval_in_one_gib(model: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" eval --model "$1" --data-dir /nonexistent"#)
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .arg(model)
        .env_remove("MNIST_DIR")
        .output()
        .expect("sh runs")
}

#[test]
#[cfg(unix)]
fn a_large_file_is_refused_from_its_header_before_its_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // A sparse 1.9 GB file (no disk used) whose first 8 bytes claim a header of 1 TiB.
    let lying = dir.path().join("lying.safetensors");
    let file = std::fs::File::create(&lying).unwrap();
    std::io::Write::write_all(&mut &file, &(1u64 << 40).to_le_bytes()).unwrap();
    file.set_len(1_900_000_000).unwrap();
    refused(
        &eval_in_one_gib(&lying),
        "not safetensors (its first 8 bytes give a header of 1099511627776 bytes, but only 1899999992 follow)",
    );

    // A valid header of a 784-10 affine beside a 1.9 GB tensor the layers
    // have no use for: refused from the header, the data never read.
    let junk = dir.path().join("junk.safetensors");
    let junk_bytes = 1_900_000_000u64;
    let header = serde_json::json!({
        "__metadata__": {"input_shape": "784", "layers": r#"[{"type":"affine","inputs":784,"outputs":10}]"#},
        "W1": {"dtype": "F32", "shape": [784, 10], "data_offsets": [0, 31360]},
        "b1": {"dtype": "F32", "shape": [10], "data_offsets": [31360, 31400]},
        "junk": {"dtype": "F32", "shape": [junk_bytes / 4], "data_offsets": [31400, 31400 + junk_bytes]},
    })
    .to_string();
    let file = std::fs::File::create(&junk).unwrap();
    std::io::Write::write_all(&mut &file, &(header.len() as u64).to_le_bytes()).unwrap();
    std::io::Write::write_all(&mut &file, header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + 31400 + junk_bytes).unwrap();
    refused(
        &eval_in_one_gib(&junk),
        "its tensors take 1900031400 bytes, more than its layers' 7850 values take at 8 bytes each",
    );
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn eval_prints_the_accuracy_of_its_confusion_matrix() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let out = command(
        &[
            "train",
            "--iters",
            "30",
            "--seed",
            "3",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        Some(&real),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = command(&["eval", "--model", path.to_str().unwrap(), "--json"], Some(&real))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let matrix: Vec<Vec<u64>> = serde_json::from_value(json["confusion_matrix"].clone()).unwrap();
    let correct: u64 = (0..10).map(|i| matrix[i][i]).sum();
    assert_eq!(matrix.iter().flatten().sum::<u64>(), 10_000);
    let accuracy = json["test_accuracy"].as_f64().unwrap();
    assert_eq!(accuracy, correct as f64 / 10_000.0);
    // The library's separate pass gives the same number.
    let checkpoint = train::load_checkpoint::<f32>(&path).unwrap();
    let test = mnist::Mnist::load_split(&real, mnist::Dataset::Mnist, mnist::Split::Test).unwrap();
    let data = train::ImageData::new(&test.images, &test.labels, test.pixels()).unwrap();
    assert_eq!(accuracy, train::checked_accuracy(&checkpoint.model, &data).unwrap());
    assert!(stdout.contains(&format!("test accuracy {accuracy:.4}")), "{stdout}");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_divergence_names_its_learning_rate_as_a_person_reads_it() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("diverged");
    let out = command(
        &["train", "--lr", "1e30", "--iters", "50", "--out", run.to_str().unwrap()],
        Some(&real),
    )
    .output()
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(learning rate 1e30)"), "{stderr}");
    assert!(!stderr.contains("1000000000000000000000000000000"), "{stderr}");
}
