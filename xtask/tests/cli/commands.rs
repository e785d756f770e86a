//! The commands as a person runs them: exit codes, messages, files left behind.

use crate::common;

use common::{command, last_json, read_until, run, text};
use std::path::Path;
use std::process::{Command, Output};

/// Runs `cargo xtask ARGS` and asserts that it fails, saying `needle` on
/// stderr, without a panic; returns the output for further checks.
#[track_caller]
fn fails_with(args: &[&str], mnist_dir: Option<&Path>, needle: &str) -> Output {
    let out = run(args, mnist_dir);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail: {stderr}");
    assert!(stderr.contains(needle), "{args:?} should say {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    out
}

#[test]
fn no_arguments_lists_the_tasks_and_every_task_has_help() {
    let out = run(&[], None);
    assert!(!out.status.success());
    let help = text(&out.stderr);
    for task in [
        "fetch",
        "train",
        "gradcheck",
        "eval",
        "predict",
        "bench",
        "experiment",
        "filters",
    ] {
        assert!(help.contains(task), "{help}");
        let out = run(&[task, "--help"], None);
        assert!(out.status.success(), "{task} --help");
        assert!(
            text(&out.stdout).contains("Usage: cargo xtask"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn bad_flag_values_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out_arg = out_dir.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--lr", "-0.1"], "--lr must be"),
        (&["train", "--lr", "NaN"], "--lr must be"),
        (&["train", "--batch-size", "0"], "--batch-size must be"),
        (&["train", "--iters", "0"], "--iters must be"),
        (&["train", "--hidden", "50,0"], "between 1 and"),
        (&["train", "--eval-every", "0"], "eval-every"),
        (&["train", "--activation", "tanh"], "relu or sigmoid"),
        (&["train", "--optimizer", "lbfgs"], "adam"),
        (&["train", "--optimizer", "adam", "--beta2", "1"], "beta2"),
        (&["train", "--init", "lecun"], "xavier or he"),
        (&["train", "--init", "std:0"], "positive"),
        (&["train", "--dropout", "1"], "--dropout must be"),
        (&["train", "--weight-decay", "-1"], "--weight-decay must be"),
        (&["train", "--epochs", "0"], "epochs"),
        (&["train", "--epochs", "2", "--iters", "5"], "cannot be used with"),
        (&["train", "--train-size", "0"], "train-size"),
        (&["train", "--iters", "18446744073709551615"], "--iters must be"),
        (&["train", "--threads", "100000"], "threads"),
        (&["gradcheck", "--hidden", "100000000"], "between 1 and"),
        (&["train", "--hidden", "65536", "--batch-size", "65536"], "GiB"),
        (&["train", "--hidden", "65536,65536"], "parameters"),
        (&["train", "--model", "simple-convnet", "--batch-size", "65536"], "GiB"),
        (
            &["train", "--model", "simple-convnet", "--hidden", "50"],
            "shapes the mlp",
        ),
        (&["train", "--net", "/nonexistent.net"], "--net /nonexistent.net"),
        (
            &["train", "--net", "nets/lenet5.net", "--model", "mlp"],
            "cannot be used with",
        ),
        (&["train", "--net", "nets/lenet5.net", "--batch-norm"], "shapes the mlp"),
        (&["gradcheck", "--net", "/nonexistent.net"], "--net /nonexistent.net"),
        (&["gradcheck", "--dropout", "2"], "--dropout must be"),
        (&["train", "--dataset", "cifar"], "mnist or fashion-mnist"),
        (&["train", "--batch-size", "many"], "invalid"),
        (&["train", "--lr-schedule", "linear"], "use constant, step or cosine"),
        (&["train", "--augment", "-1"], "a strength between 0 and 7"),
        (&["train", "--augment", "nan"], "a strength between 0 and 7"),
        (&["fetch", "--from", "ftp://example.org/"], "unsupported source"),
        (&["gradcheck", "--samples", "0"], "samples"),
        (&["gradcheck", "--samples", "-1"], "invalid value '-1'"),
        (&["train", "--lr", "1e308"], "--lr must be"),
        (&["train", "--weight-decay", "1e300"], "--weight-decay must be"),
        (
            &["fetch", "--from", "/nonexistent", "--dir", "Cargo.toml"],
            "is a file, not a folder",
        ),
        (&["train", "--out", "Cargo.toml"], "is a file, not a folder"),
        (&["train", "--iters", "-5"], "invalid value '-5'"),
        (
            &["predict", "--model", "m.safetensors", "--index", "-1"],
            "invalid value '-1'",
        ),
        (&["gradcheck", "--dtype", "f16"], "f16"),
    ];
    // A --net file with a malformed line, or layers whose sizes do not chain,
    // is refused naming the line or the layer.
    let bad_line = dir.path().join("bad-line.net");
    std::fs::write(&bad_line, "input 784\naffine 100\nconv 6\naffine 10\n").unwrap();
    let bad_chain = dir.path().join("bad-chain.net");
    std::fs::write(&bad_chain, "input 784\naffine 100\nconv 6 5\naffine 10\n").unwrap();
    let too_big = dir.path().join("too-big.net");
    std::fs::write(&too_big, "input 784\naffine 60000\naffine 10\n").unwrap();
    let net_cases = [
        (bad_line.to_str().unwrap(), &["train"][..], "line 3"),
        (bad_chain.to_str().unwrap(), &["train"][..], "layer 2"),
        (bad_chain.to_str().unwrap(), &["gradcheck"][..], "layer 2"),
        (
            too_big.to_str().unwrap(),
            &["train", "--batch-size", "65536"][..],
            "GiB",
        ),
    ];
    for (file, task, needle) in net_cases {
        let mut args = task.to_vec();
        args.extend_from_slice(&["--net", file, "--data-dir", "/nonexistent", "--out", out_arg]);
        if task[0] == "gradcheck" {
            args.truncate(args.len() - 2);
        }
        fails_with(&args, None, needle);
        assert!(!out_dir.exists(), "{args:?} started work");
    }
    // An --out that holds another run's files is refused, before any work.
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("model.safetensors"), b"another run").unwrap();
    for task in ["train", "experiment"] {
        let mut args = vec![task];
        if task == "experiment" {
            args.push("optimizers");
        }
        args.extend_from_slice(&["--out", used.to_str().unwrap(), "--data-dir", "/nonexistent"]);
        fails_with(&args, None, "--overwrite");
    }
    assert_eq!(std::fs::read(used.join("model.safetensors")).unwrap(), b"another run");
    for (args, needle) in cases {
        let mut full = args.to_vec();
        full.extend_from_slice(&["--data-dir", "/nonexistent"]);
        if args[0] == "train" && !args.contains(&"--out") {
            full.extend_from_slice(&["--out", out_arg]);
        }
        if args[0] == "fetch" {
            full.truncate(args.len());
        }
        fails_with(&full, None, needle);
        assert!(!out_dir.exists(), "{args:?} started work");
    }
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn damaged_data_gets_a_one_line_error_not_a_panic() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    // MNIST_DIR set but empty is named as such, not read as the folder "".
    fails_with(&["gradcheck"], Some(Path::new("")), "MNIST_DIR is set but empty");
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(real.join(name), dir.path().join(name)).unwrap();
    }
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&labels).unwrap();
    // Truncated, then a wrong magic number (images where labels belong).
    std::fs::write(&labels, &bytes[..bytes.len() / 2]).unwrap();
    let train = ["train", "--iters", "1", "--data-dir", dir.path().to_str().unwrap()];
    let out = fails_with(&train, None, "t10k-labels-idx1-ubyte.gz");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cargo xtask fetch"), "{stderr}");
    std::fs::copy(real.join("t10k-images-idx3-ubyte.gz"), &labels).unwrap();
    let out = fails_with(&train, None, "(it is MNIST's t10k-images-idx3-ubyte)");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warning: this is a debug build"))
        .collect();
    // The folder is checked against the pinned checksums: the message says what the file is.
    assert!(
        lines.len() == 1 && lines[0].contains("(it is MNIST's t10k-images-idx3-ubyte)"),
        "{stderr}"
    );
    fails_with(
        &[
            "eval",
            "--model",
            "/nonexistent/model.safetensors",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        None,
        "/nonexistent/model.safetensors",
    );
    // Fetch from the damaged folder refuses the bad file and says how to go on.
    let target = tempfile::tempdir().unwrap();
    let out = fails_with(
        &[
            "fetch",
            "--from",
            dir.path().to_str().unwrap(),
            "--dir",
            target.path().to_str().unwrap(),
        ],
        None,
        "t10k-labels-idx1-ubyte",
    );
    assert!(text(&out.stderr).contains("--from DIR"), "{}", text(&out.stderr));
    assert!(!target.path().join("t10k-labels-idx1-ubyte.gz").exists());
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn fetch_train_eval_predict_end_to_end() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let data = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "fetch",
            "--from",
            &format!("file://{}", real.display()),
            "--dir",
            data.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("checksum verified"));

    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("short");
    let out = run(
        &[
            "train",
            "--iters",
            "300",
            "--eval-every",
            "100",
            "--seed",
            "3",
            "--json",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("seed      3"), "the header prints the seed: {stdout}");
    let json = last_json(&out);
    assert!(json["test_accuracy"].as_f64().unwrap() > 0.85, "{json}");
    assert_eq!(json["iterations"], 300);
    for key in ["train_accuracy", "final_loss", "seconds_total", "seconds_train"] {
        assert!(json[key].is_number(), "{key}: {json}");
    }
    assert_eq!(json["run_dir"].as_str().unwrap(), run_dir.to_str().unwrap());
    for file in [
        "loss.csv",
        "accuracy.csv",
        "accuracy.png",
        "loss.png",
        "config.json",
        "model.safetensors",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let model = run_dir.join("model.safetensors");

    let out = run(
        &["eval", "--model", model.to_str().unwrap(), "--json"],
        Some(data.path()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let eval = last_json(&out);
    assert_eq!(
        eval["test_accuracy"], json["test_accuracy"],
        "eval reproduces the run's test accuracy"
    );
    let matrix = eval["confusion_matrix"].as_array().unwrap();
    let total: u64 = matrix
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10000);

    let out = run(
        &["predict", "--model", model.to_str().unwrap(), "--index", "0"],
        Some(data.path()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("true label 7"), "{}", text(&out.stdout));
    fails_with(
        &["predict", "--model", model.to_str().unwrap(), "--index", "10000"],
        Some(data.path()),
        "outside",
    );
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn divergence_stops_with_advice_and_keeps_good_weights() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("diverged");
    let out = fails_with(
        &[
            "train",
            "--lr",
            "1e30",
            "--iters",
            "200",
            "--out",
            run_dir.to_str().unwrap(),
        ],
        Some(&real),
        "lower --lr",
    );
    assert!(text(&out.stderr).contains("at iteration"), "{}", text(&out.stderr));
    let checkpoint = train::load_checkpoint::<f32>(&run_dir.join("model.safetensors")).unwrap();
    for param in checkpoint.model.params() {
        assert!(param.value.as_slice().iter().all(|v| v.is_finite()), "{}", param.name);
    }
    assert!(run_dir.join("loss.csv").is_file());
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn gradcheck_reaches_the_books_figures() {
    let real = mnist::test_data_dir("MNIST_DIR");
    for activation in ["relu", "sigmoid"] {
        let out = run(&["gradcheck", "--activation", activation, "--json"], Some(&real));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json = last_json(&out);
        for name in ["W1", "b1", "W2", "b2"] {
            let diff = json["params"][name]["mean_abs_diff"].as_f64().unwrap();
            // The book reports 1e-13..1e-10 in float64.
            assert!(diff < 1e-9, "{activation} {name}: {diff}");
        }
        assert!(json["speedup"].as_f64().unwrap() > 1.0);
    }
    let out = run(&["gradcheck", "--dtype", "f32", "--json"], Some(&real));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // An impossible tolerance makes the check fail with a non-zero exit.
    fails_with(
        &["gradcheck", "--tolerance", "1e-30"],
        Some(&real),
        "gradient check failed",
    );
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_batch_norm_dropout_adam_net_trains_saves_and_reloads() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("extended");
    let out = run(
        &[
            "train",
            "--hidden",
            "100,50",
            "--batch-norm",
            "--dropout",
            "0.2",
            "--weight-decay",
            "0.0001",
            "--optimizer",
            "adam",
            "--init",
            "he",
            "--epochs",
            "1",
            "--train-size",
            "20000",
            "--json",
            "--out",
            run_dir.to_str().unwrap(),
        ],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "Affine(784x100) BatchNorm Relu Dropout(0.2) Affine(100x50) BatchNorm Relu Dropout(0.2) Affine(50x10)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("adam lr 0.001"), "{stdout}");
    let json = last_json(&out);
    assert_eq!(json["iterations"], 200, "one epoch of 20000 images in batches of 100");
    assert!(json["test_accuracy"].as_f64().unwrap() > 0.9, "{json}");
    let model = run_dir.join("model.safetensors");
    let checkpoint = train::load_checkpoint::<f32>(&model).unwrap();
    let names = checkpoint.model.param_names().join(" ");
    assert_eq!(names, "W1 b1 gamma1 beta1 W2 b2 gamma2 beta2 W3 b3");
    assert_eq!(checkpoint.model.buffers().len(), 4);

    // Inference mode reproduces the run's accuracy exactly: Dropout scales,
    // BatchNorm uses the saved running statistics.
    let out = run(&["eval", "--model", model.to_str().unwrap(), "--json"], Some(&real));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(last_json(&out)["test_accuracy"], json["test_accuracy"]);
    let out = run(
        &["predict", "--model", model.to_str().unwrap(), "--index", "0"],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("true label 7"), "{}", text(&out.stdout));
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn gradcheck_covers_batch_norm_dropout_and_weight_decay() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let out = run(
        &[
            "gradcheck",
            "--hidden",
            "20,10",
            "--batch-norm",
            "--dropout",
            "0.3",
            "--weight-decay",
            "0.1",
            "--init",
            "he",
            "--samples",
            "4",
            "--json",
        ],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = last_json(&out);
    let params = json["params"].as_object().unwrap();
    let names: Vec<&str> = params.keys().map(|k| k.as_str()).collect();
    for name in ["W1", "gamma1", "beta1", "gamma2", "beta2", "W3", "b3"] {
        assert!(names.contains(&name), "{names:?}");
        let diff = params[name]["mean_abs_diff"].as_f64().unwrap();
        assert!(diff < 1e-8, "{name}: {diff}");
    }
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn every_experiment_runs_quick_and_writes_its_figure() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let experiment = |name: &str| {
        let dir = runs.path().join(name);
        let out = run(
            &["experiment", name, "--quick", "--json", "--out", dir.to_str().unwrap()],
            Some(&real),
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let png = dir.join(format!("{name}.png"));
        assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG", "{name}");
        (last_json(&out), text(&out.stdout))
    };
    let loss = |json: &serde_json::Value, curve: &str| json[curve]["final_loss"].as_f64().unwrap();

    let (json, _) = experiment("optimizers");
    let sgd = loss(&json, "SGD");
    for faster in ["Momentum", "AdaGrad", "Adam"] {
        assert!(loss(&json, faster) < sgd / 2.0, "{faster} vs SGD: {json}");
    }

    let (json, _) = experiment("weight-init");
    assert!(loss(&json, "std=0.01") > 2.25, "std 0.01 does not learn: {json}");
    assert!(loss(&json, "He") < loss(&json, "Xavier"), "{json}");
    assert!(runs.path().join("weight-init/activations.png").is_file());

    let (json, stdout) = experiment("batch-norm");
    assert_eq!(json.as_object().unwrap().len(), 8, "4 scales x with/without: {json}");
    let ahead = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BatchNorm ahead after 3 epochs at "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(ahead >= Some(3), "BatchNorm learns faster at most scales: {stdout}");

    let (json, _) = experiment("overfit");
    let accuracy = |curve: &str, split: &str| json[curve][split].as_f64().unwrap();
    for curve in ["plain", "weight decay", "dropout"] {
        assert!(accuracy(curve, "train_accuracy") > 0.15, "{curve} learns: {json}");
    }
    assert!(
        accuracy("plain", "train_accuracy") > accuracy("plain", "test_accuracy"),
        "300 images overfit: {json}"
    );

    let (json, stdout) = experiment("hyperparameter-search");
    let best = &json["Best-1"];
    let lr = best["learning_rate"].as_f64().unwrap();
    assert!((1e-6..1e-2).contains(&lr), "{best}");
    assert!(stdout.contains("Best-1 "), "{stdout}");
    assert!(runs.path().join("hyperparameter-search/trials.csv").is_file());
}

#[test]
fn optimizer_paths_reach_the_minimum_without_data() {
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("paths");
    // No data set is read: the experiment runs on a fresh machine.
    let out = run(
        &[
            "experiment",
            "optimizer-paths",
            "--json",
            "--out",
            dir.to_str().unwrap(),
            "--data-dir",
            "/nonexistent",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = last_json(&out);
    // f(-7, 2) = 6.45; 30 steps of each optimizer end close to the minimum at (0, 0).
    for name in ["SGD", "Momentum", "AdaGrad", "Adam"] {
        let f = json[name]["final_loss"].as_f64().unwrap();
        assert!(f < 0.2, "{name}: f = {f}");
    }
    let csv = std::fs::read_to_string(dir.join("optimizer-paths.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 30);
    assert!(csv.contains("SGD,0,-7,2,6.45"), "{csv}");
    assert_eq!(&std::fs::read(dir.join("optimizer-paths.png")).unwrap()[1..4], b"PNG");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_simple_convnet_trains_reloads_and_draws_its_filters() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("cnn");
    let out = run(
        &[
            "train",
            "--model",
            "simple-convnet",
            "--iters",
            "40",
            "--eval-train-size",
            "500",
            "--json",
            "--out",
            run_dir.to_str().unwrap(),
        ],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Conv(30x5x5 s1 p0) Relu Pool(2x2 s2 p0) Affine(4320x100)"),
        "{stdout}"
    );
    assert!(stdout.contains("adam lr 0.001"), "the book's recipe: {stdout}");
    let json = last_json(&out);
    assert!(
        json["test_accuracy"].as_f64().unwrap() > 0.6,
        "40 Adam steps learn: {json}"
    );
    for png in ["filters-before.png", "filters-after.png"] {
        assert_eq!(&std::fs::read(run_dir.join(png)).unwrap()[1..4], b"PNG", "{png}");
    }
    let model = run_dir.join("model.safetensors");
    let out = run(&["eval", "--model", model.to_str().unwrap(), "--json"], Some(&real));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(last_json(&out)["test_accuracy"], json["test_accuracy"]);
    let out = run(
        &["predict", "--model", model.to_str().unwrap(), "--index", "0"],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drawn = runs.path().join("grid.png");
    let out = run(
        &[
            "filters",
            "--model",
            model.to_str().unwrap(),
            "--out",
            drawn.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("30 filters of 1x5x5"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(&std::fs::read(&drawn).unwrap()[1..4], b"PNG");
}

#[test]
fn convnet_gradient_check_and_refusals() {
    // The book's small SimpleConvNet on random inputs: no data set needed.
    let out = run(
        &["gradcheck", "--model", "simple-convnet", "--samples", "2", "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = last_json(&out);
    for name in ["W1", "b1", "W2", "b2", "W3", "b3"] {
        let diff = json["params"][name]["mean_abs_diff"].as_f64().unwrap();
        assert!(diff < 1e-9, "{name}: {diff}");
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["train", "--model", "simple-convnet", "--hidden", "50"],
            "--hidden shapes the mlp",
        ),
        (
            &["train", "--model", "deep-convnet", "--batch-norm"],
            "--batch-norm shapes the mlp",
        ),
        (&["train", "--model", "lenet"], "mlp, simple-convnet or deep-convnet"),
        (&["gradcheck", "--model", "deep-convnet"], "mlp or simple-convnet"),
    ];
    for (args, needle) in cases {
        fails_with(args, None, needle);
    }
    let dir = tempfile::tempdir().unwrap();
    let mlp = dir.path().join("mlp.safetensors");
    let model = layers::Mlp::two_layer_net(4, 3, 2).build::<f32>(0).unwrap();
    train::save_checkpoint(&mlp, &model, &[]).unwrap();
    fails_with(&["filters", "--model", mlp.to_str().unwrap()], None, "no convolution");
}

/// Starts `xtask train` with the given flags, stdout piped, reading MNIST from `real`.
fn spawn_train(real: &Path, run_dir: &Path, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["train", "--out", run_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    command(&args, Some(real))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("xtask starts")
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_closed_stdout_does_not_lose_the_run() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("piped");
    let mut child = spawn_train(&real, &run_dir, &["--iters", "300", "--eval-every", "100"]);
    // As `| head -1`: read one line, then close the pipe.
    drop(read_until(&mut child, "backprop-rs train"));
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for file in [
        "model.safetensors",
        "loss.csv",
        "accuracy.csv",
        "accuracy.png",
        "config.json",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let losses = std::fs::read_to_string(run_dir.join("loss.csv")).unwrap();
    assert_eq!(losses.lines().count(), 301, "the whole run was kept");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn ctrl_c_and_sigterm_stop_after_the_step_and_keep_the_run() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    for (signal, status, cause) in [("-INT", 130, "Ctrl-C"), ("-TERM", 143, "SIGTERM")] {
        let run_dir = runs.path().join(format!("interrupted{signal}"));
        let mut child = spawn_train(&real, &run_dir, &["--iters", "5000000", "--eval-every", "2000000"]);
        // The first evaluation is printed once training is under way.
        let reader = read_until(&mut child, "iter ");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let status_of_kill = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status_of_kill.success());
        drop(reader);
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted ({cause}) at iteration")),
            "{stderr}"
        );
        let losses = std::fs::read_to_string(run_dir.join("loss.csv")).unwrap();
        assert!(losses.lines().count() > 2, "the steps so far are recorded");
        let checkpoint = train::load_checkpoint::<f32>(&run_dir.join("model.safetensors")).unwrap();
        assert_eq!(checkpoint.model.param_names().len(), 4);
        assert!(run_dir.join("accuracy.png").is_file());
    }
}

/// A tensor of a crafted checkpoint: name, shape, the value of every element.
type Filled = (&'static str, Vec<usize>, f32);

/// A safetensors file of F32 tensors, each filled with one value, and metadata.
fn write_checkpoint(path: &Path, tensors: &[Filled], metadata: &[(&str, &str)]) {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
    );
    let mut body = Vec::new();
    for (name, shape, value) in tensors {
        let count: usize = shape.iter().product();
        let start = body.len();
        for _ in 0..count {
            body.extend_from_slice(&value.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, body.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&body);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn hostile_checkpoints_end_in_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = |outputs: usize, value: f32| {
        vec![
            ("W1", vec![784, 2], value),
            ("b1", vec![2], 0.0),
            ("W2", vec![2, outputs], 0.0),
            ("b2", vec![outputs], 0.0),
        ]
    };
    let mut extra = mlp(10, 0.0);
    extra.push(("W9", vec![1], 0.0));
    // (file, tensors, metadata, what the message must say)
    type Case = (
        &'static str,
        Vec<Filled>,
        Vec<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "huge",
            mlp(10, 0.0),
            vec![("sizes", "18446744073709551615,2,10")],
            "widths must be between",
        ),
        (
            "terabytes",
            mlp(10, 0.0),
            vec![("sizes", "784,100000000,10")],
            "widths must be between",
        ),
        (
            "nan",
            mlp(10, f32::NAN),
            vec![("sizes", "784,2,10")],
            "W1 holds a non-finite value",
        ),
        (
            "three-classes",
            mlp(3, 0.0),
            vec![("sizes", "784,2,3")],
            "scores 3 classes",
        ),
        (
            "extra",
            extra,
            vec![("sizes", "784,2,10")],
            "'W9' is not part of the architecture",
        ),
    ];
    for (name, tensors, metadata, needle) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        write_checkpoint(&path, &tensors, &metadata);
        // Both commands refuse the model before they look for any data.
        for task in ["eval", "predict"] {
            let mut args = vec![task, "--model", path.to_str().unwrap(), "--data-dir", "/nonexistent"];
            if task == "predict" {
                args.extend_from_slice(&["--index", "0"]);
            }
            let out = fails_with(&args, None, needle);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name} {task}: {stderr}");
            assert!(stderr.contains(name), "{name} {task}: {stderr}");
        }
    }
    fails_with(
        &["eval", "--model", dir.path().to_str().unwrap()],
        None,
        "not a regular file",
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5, "nothing written");

    // A 600 kB convnet whose filters ask for minutes of scoring (1.7e12
    // operations over the test set) is refused from its shapes, before the
    // data is looked for.
    let layers = r#"[{"type":"convolution","channels":1,"filters":64,"filter_h":3,"filter_w":3,"stride":1,"pad":0},
        {"type":"convolution","channels":64,"filters":256,"filter_h":3,"filter_w":3,"stride":1,"pad":0},
        {"type":"pooling","pool_h":24,"pool_w":24,"stride":24,"pad":0},
        {"type":"affine","inputs":256,"outputs":10}]"#;
    let hours = dir.path().join("hours.safetensors");
    write_checkpoint(
        &hours,
        &[
            ("W1", vec![64, 1, 3, 3], 0.0),
            ("b1", vec![64], 0.0),
            ("W2", vec![256, 64, 3, 3], 0.0),
            ("b2", vec![256], 0.0),
            ("W3", vec![256, 10], 0.0),
            ("b3", vec![10], 0.0),
        ],
        &[
            ("format", "backprop-rs/2"),
            ("input_shape", "1,28,28"),
            ("layers", layers),
        ],
    );
    let hours_arg = hours.to_str().unwrap();
    // 1024 filters padded by 64: 24 million values per image (a 200 kB
    // file), refused by predict as well as eval.
    let wide = dir.path().join("wide.safetensors");
    let wide_layers = r#"[{"type":"convolution","channels":1,"filters":1024,"filter_h":3,"filter_w":3,"stride":1,"pad":64},
        {"type":"pooling","pool_h":64,"pool_w":64,"stride":64,"pad":0},
        {"type":"affine","inputs":4096,"outputs":10}]"#;
    write_checkpoint(
        &wide,
        &[
            ("W1", vec![1024, 1, 3, 3], 0.0),
            ("b1", vec![1024], 0.0),
            ("W2", vec![4096, 10], 0.0),
            ("b2", vec![10], 0.0),
        ],
        &[
            ("format", "backprop-rs/2"),
            ("input_shape", "1,28,28"),
            ("layers", wide_layers),
        ],
    );
    let wide_arg = wide.to_str().unwrap();
    for task in [&["eval"][..], &["predict", "--index", "0"][..]] {
        let mut args = task.to_vec();
        args.extend_from_slice(&["--model", wide_arg, "--data-dir", "/nonexistent"]);
        fails_with(&args, None, "values in flight");
    }
    fails_with(
        &["eval", "--model", hours_arg, "--data-dir", "/nonexistent"],
        None,
        "floating-point operations",
    );
}

/// A model whose scores overflow f32 is not scored: eval and predict say
/// so, instead of an accuracy of 0.098 or "NaN%".
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn scores_that_are_not_finite_are_an_error_not_a_result() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overflow.safetensors");
    // Finite weights whose products with a bright image overflow f32.
    write_checkpoint(
        &path,
        &[("W1", vec![784, 10], 3e38), ("b1", vec![10], 0.0)],
        &[("sizes", "784,10")],
    );
    let model = path.to_str().unwrap();
    fails_with(&["eval", "--model", model], Some(&real), "not finite");
    fails_with(
        &["predict", "--model", model, "--index", "0"],
        Some(&real),
        "not finite",
    );
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn unverified_or_impossible_data_folders_are_refused() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let copy = || {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::copy(real.join(format!("{name}.gz")), dir.path().join(format!("{name}.gz"))).unwrap();
        }
        dir
    };
    let junk = copy();
    let labels = junk.path().join("t10k-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes.extend_from_slice(b"<html>");
    std::fs::write(&labels, bytes).unwrap();
    let folder = copy();
    let images = folder.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::remove_file(&images).unwrap();
    std::fs::create_dir(&images).unwrap();
    let huge = copy();
    std::fs::remove_file(huge.path().join("train-images-idx3-ubyte.gz")).unwrap();
    let raw = std::fs::File::create(huge.path().join("train-images-idx3-ubyte")).unwrap();
    raw.set_len(2 << 30).unwrap();
    for (dir, needle) in [
        (&junk, "not a valid gzip stream"),
        (&folder, "a folder where a data file should be"),
        (&huge, "2147483648 bytes"),
    ] {
        let runs = tempfile::tempdir().unwrap();
        let run_dir = runs.path().join("run");
        let args = [
            "train",
            "--iters",
            "1",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
        ];
        let out = fails_with(&args, None, needle);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!run_dir.exists(), "nothing written: {stderr}");
    }
}

/// A run folder is claimed by a lock file: a live run's lock refuses a
/// second run, a dead one's is taken over; `--overwrite` removes the previous
/// run's files (not others); a final write that fails keeps every other file.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn run_folders_are_claimed_overwritten_cleanly_and_kept_on_a_failed_write() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("run");
    let dir_arg = dir.to_str().unwrap();
    let short = ["train", "--iters", "20", "--eval-every", "1000", "--out", dir_arg];
    std::fs::create_dir_all(&dir).unwrap();
    let lock = dir.join(".backprop-rs.lock");

    // This test's own process holds the lock: it is alive, so the run is refused.
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    fails_with(&short, Some(&real), "another run is writing into");
    assert!(!dir.join("loss.csv").exists(), "the refused run wrote nothing");
    // A lock whose process is gone (killed outright) is taken over, and removed at the end.
    std::fs::write(&lock, "4000000000").unwrap();
    let out = run(&short, Some(&real));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("loss.csv").is_file());
    assert!(!lock.exists(), "the lock goes with the run");

    // --overwrite removes what a run writes (a convnet's filter figures
    // included), and nothing else.
    std::fs::write(dir.join("filters-before.png"), b"an old convnet run's").unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::write(dir.join("my-results.csv"), b"mine too").unwrap();
    fails_with(&short, Some(&real), "--overwrite");
    let mut again = short.to_vec();
    again.push("--overwrite");
    let out = run(&again, Some(&real));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("filters-before.png").exists());
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read(dir.join("my-results.csv")).unwrap(), b"mine too");

    // A folder where the checkpoint goes is refused before any work (the run
    // would lose its weights at its end), the previous run's files kept;
    // writes that fail during a run are tested in writes_cli.rs.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::create_dir_all(dir.join("model.safetensors").join("in-the-way")).unwrap();
    fails_with(&again, Some(&real), "model.safetensors is a folder");
    for kept in ["loss.csv", "accuracy.csv", "loss.png", "accuracy.png", "config.json"] {
        assert!(dir.join(kept).is_file(), "{kept} of the previous run was removed");
    }
}

/// An experiment stopped by a signal draws and writes the curves it has
/// (the one under way up to where it stopped) and exits 130 or 143.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_stopped_experiment_keeps_its_curves_and_figure() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let out_dir = runs.path().join("experiment");
    let mut child = command(
        &["experiment", "optimizers", "--out", out_dir.to_str().unwrap(), "--json"],
        Some(&real),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("xtask starts");
    let reader = read_until(&mut child, "run dir");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted (SIGTERM)"), "{stderr}");
    assert!(
        out_dir.join("optimizers.png").is_file(),
        "the figure of the curves so far"
    );
    let csv = std::fs::read_to_string(out_dir.join("optimizers.csv")).unwrap();
    assert!(csv.lines().count() > 2, "the losses so far: {csv}");
    assert!(!out_dir.join(".backprop-rs.lock").exists());
}

/// A stdout that cannot be written (a full disk) is an error at the end, the
/// work and its files kept; a closed one (`| head`) is not an error at all.
#[test]
fn a_full_stdout_is_reported_after_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("paths");
    let full = std::fs::File::create("/dev/full");
    let Ok(full) = full else {
        return; // not on this system
    };
    let out = command(
        &["experiment", "optimizer-paths", "--out", out_dir.to_str().unwrap()],
        None,
    )
    .stdout(full)
    .output()
    .expect("xtask runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not write the output to stdout"), "{stderr}");
    assert!(out_dir.join("optimizer-paths.png").is_file(), "the work was kept");
}

/// Downloads go through the system's `curl`: where it is missing, `fetch`
/// from a URL says so and what to install; where a mirror answers an error
/// status, curl's reason is in the message. Both leave no folder behind.
#[test]
fn a_download_names_what_went_wrong_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data");
    // Nothing listens on port 9 of the loopback in a test machine: with
    // curl found, the connection is refused; without, curl is asked for.
    let args = [
        "fetch",
        "--from",
        "http://127.0.0.1:9/mnist/",
        "--dir",
        target.to_str().unwrap(),
    ];
    let out = command(&args, None).env("PATH", dir.path()).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`curl` program"), "{stderr}");
    assert!(stderr.contains("install curl"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if Command::new("curl").arg("--version").output().is_ok() {
        let out = fails_with(&args, None, "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz");
        assert!(text(&out.stderr).contains("download failed"), "{}", text(&out.stderr));
    }
    assert!(!target.exists(), "no empty folder left");
}

/// `eval` with several `--model`s averages their probabilities: each model's
/// own accuracy is the one `eval` gives it alone, the ensemble's confusion
/// matrix covers the test set, and `--misclassified` draws the images it
/// gets wrong, saying how many.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn an_ensemble_is_scored_its_mistakes_drawn_and_half_precision_run() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let mut models = Vec::new();
    for seed in ["1", "2"] {
        let dir = runs.path().join(format!("seed{seed}"));
        let out = run(
            &[
                "train",
                "--iters",
                "150",
                "--seed",
                seed,
                "--out",
                dir.to_str().unwrap(),
            ],
            Some(&real),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        models.push(dir.join("model.safetensors"));
    }
    let alone: Vec<f64> = models
        .iter()
        .map(|m| {
            let out = run(&["eval", "--model", m.to_str().unwrap(), "--json"], Some(&real));
            assert!(out.status.success(), "{}", text(&out.stderr));
            last_json(&out)["test_accuracy"].as_f64().unwrap()
        })
        .collect();
    assert_ne!(alone[0], alone[1], "two different models");
    let figure = runs.path().join("wrong.png");
    let out = run(
        &[
            "eval",
            "--model",
            models[0].to_str().unwrap(),
            "--model",
            models[1].to_str().unwrap(),
            "--misclassified",
            figure.to_str().unwrap(),
            "--json",
        ],
        Some(&real),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = last_json(&out);
    let each: Vec<f64> = json["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["test_accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(each, alone);
    let matrix: Vec<Vec<u64>> = serde_json::from_value(json["confusion_matrix"].clone()).unwrap();
    let total: u64 = matrix.iter().flatten().sum();
    let right: u64 = (0..10).map(|i| matrix[i][i]).sum();
    assert_eq!(total, 10000);
    assert_eq!(json["test_accuracy"].as_f64().unwrap(), right as f64 / 10000.0);
    assert!(stdout.contains("the mean of these 2 models' probabilities"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} of 10000 test images misclassified", 10000 - right)),
        "{stdout}"
    );
    assert!(std::fs::read(&figure).unwrap().starts_with(b"\x89PNG"));
    // In float16 and bfloat16 (weights, input and activations rounded) the
    // accuracy moves by a few images at most, and says so.
    for precision in ["f16", "bf16"] {
        let out = run(
            &[
                "eval",
                "--model",
                models[0].to_str().unwrap(),
                "--precision",
                precision,
                "--json",
            ],
            Some(&real),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("every layer's output in {precision}")));
        let json = last_json(&out);
        assert_eq!(json["precision"], precision);
        let acc = json["test_accuracy"].as_f64().unwrap();
        assert!((acc - alone[0]).abs() <= 0.003, "{precision}: {acc} vs {}", alone[0]);
    }
    fails_with(
        &["eval", "--model", models[0].to_str().unwrap(), "--precision", "f8"],
        Some(&real),
        "use f32, f16 or bf16",
    );
    // Not PNG: refused in plain words, nothing written.
    let jpeg = runs.path().join("wrong.jpg");
    let out = fails_with(
        &[
            "eval",
            "--model",
            models[0].to_str().unwrap(),
            "--misclassified",
            jpeg.to_str().unwrap(),
        ],
        Some(&real),
        "ending in .png",
    );
    assert!(!jpeg.exists(), "{}", text(&out.stderr));
}

/// `--lr-schedule` runs, says so in the header and records it with the run.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_learning_rate_schedule_is_shown_and_recorded() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let dir = runs.path().join("cosine");
    let out = run(
        &[
            "train",
            "--iters",
            "200",
            "--lr-schedule",
            "cosine",
            "--out",
            dir.to_str().unwrap(),
        ],
        Some(&real),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("sgd lr 0.1 (cosine schedule)"),
        "{}",
        text(&out.stdout)
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["settings"]["lr_schedule"], "cosine");
    assert_eq!(
        config["settings"]["learning_rate"], 0.1,
        "the base rate, which the schedule starts from"
    );
}

/// `--augment` moves the training images: the header says so, config.json
/// records the bounds, and the run differs from the plain one.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn augmentation_is_shown_recorded_and_changes_the_run() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let losses = |flags: &[&str], name: &str| {
        let dir = runs.path().join(name);
        let mut args = vec!["train", "--iters", "50", "--out", dir.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = run(&args, Some(&real));
        assert!(out.status.success(), "{}", text(&out.stderr));
        (
            text(&out.stdout),
            std::fs::read_to_string(dir.join("loss.csv")).unwrap(),
            dir,
        )
    };
    let (_, plain, _) = losses(&[], "plain");
    let (stdout, augmented, dir) = losses(&["--augment"], "augmented");
    assert!(
        stdout.contains("augmented (shifts up to 2 px, turns up to 10 degrees, scale within 10%)"),
        "{stdout}"
    );
    assert_ne!(plain, augmented);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["settings"]["augment"]["rotate"], 10.0);
    let (_, half, _) = losses(&["--augment", "0.5"], "half");
    assert_ne!(half, augmented);
}

/// An ensemble scores one data set and a bounded number of models: models
/// of two data sets, or more than 16, are refused before any data is read.
#[test]
fn an_ensemble_of_two_data_sets_or_too_many_models_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = |name: &str, dataset: &str| {
        let path = dir.path().join(name);
        write_checkpoint(
            &path,
            &[("W1", vec![784, 10], 0.01), ("b1", vec![10], 0.0)],
            &[("sizes", "784,10"), ("dataset", dataset)],
        );
        path.to_str().unwrap().to_string()
    };
    let (digits, clothes) = (
        model("digits.safetensors", "mnist"),
        model("clothes.safetensors", "fashion-mnist"),
    );
    let out = fails_with(
        &[
            "eval",
            "--model",
            &digits,
            "--model",
            &clothes,
            "--data-dir",
            "/nonexistent",
        ],
        None,
        "an ensemble scores one data set",
    );
    assert!(!text(&out.stderr).contains("/nonexistent"), "{}", text(&out.stderr));
    let mut args = vec!["eval"];
    for _ in 0..17 {
        args.extend(["--model", digits.as_str()]);
    }
    fails_with(&args, None, "17 models is more than the 16");
}
