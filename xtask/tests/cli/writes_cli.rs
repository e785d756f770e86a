//! What the commands write, and what they say when they cannot: plots in
//! read-only places, a run folder lost during training, a folder where a
//! run file goes, fetches that get nothing, and the flags that bound a run
//! before it writes anything (counts, `--max-memory`).

use crate::common;

use common::{command, read_until, run, text};
use std::path::Path;
use std::process::{Command, Output};

/// Stderr without the debug build's warning (tests run the debug binary).
fn stderr_of(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("warning: this is a debug build"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `cargo xtask ARGS` and asserts that it fails, saying `needle` on
/// stderr in plain words (no panic, no Rust `Debug` text); returns stderr.
#[track_caller]
fn fails_with(args: &[&str], mnist_dir: Option<&Path>, needle: &str) -> String {
    let out = run(args, mnist_dir);
    let stderr = stderr_of(&out);
    assert!(!out.status.success(), "{args:?} should fail: {stderr}");
    assert!(stderr.contains(needle), "{args:?} should say {needle:?}: {stderr}");
    assert_plain(&stderr);
    stderr
}

/// No panic and no Rust `Debug` text (`ImageError(IoError(Os { code: 13, .. }))`).
#[track_caller]
fn assert_plain(stderr: &str) {
    for debug in ["panicked", "Error(", "Os {", "kind:", "code:"] {
        assert!(!stderr.contains(debug), "{debug:?} in {stderr}");
    }
}

/// A checkpoint whose first layer is a convolution of `filters` 3x3 filters.
fn conv_checkpoint(path: &Path, filters: usize) {
    let net = layers::NetSpec::new(&[1, 28, 28])
        .conv(filters, 3)
        .relu()
        .pool(2)
        .affine(10);
    let model = net.build::<f32>(0).unwrap();
    train::save_checkpoint(path, &model, &[]).unwrap();
}

/// The width and height a PNG's header gives (IHDR, big-endian, bytes 16..24).
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (width, height)
}

/// A figure that cannot be written says which file and why in a few words:
/// as root a read-only folder does not refuse a write, so the refusals here
/// are a folder named like the figure and a file where its folder should be.
#[test]
fn a_filter_figure_that_cannot_be_written_says_why_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cnn.safetensors");
    conv_checkpoint(&model, 6);
    let model_arg = model.to_str().unwrap();

    let in_the_way = dir.path().join("in-the-way.png");
    std::fs::create_dir_all(in_the_way.join("keep")).unwrap();
    let stderr = fails_with(
        &["filters", "--model", model_arg, "--out", in_the_way.to_str().unwrap()],
        None,
        &format!("cannot write {}: a folder has its name", in_the_way.display()),
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(in_the_way.join("keep").is_dir());

    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, b"not a folder").unwrap();
    let under_a_file = a_file.join("filters.png");
    fails_with(
        &["filters", "--model", model_arg, "--out", under_a_file.to_str().unwrap()],
        None,
        "is a file, not a folder",
    );
    // Nothing but what the test made: no temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a-file", "cnn.safetensors", "in-the-way.png"]);
}

/// 3x3 filters make a grid 330 pixels wide; the title of 128 of 65536 is
/// wider, and the figure was cut to the grid, losing both ends of it.
#[test]
fn a_figure_of_many_small_filters_is_as_wide_as_its_title() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("many.safetensors");
    conv_checkpoint(&model, 200);
    let out = dir.path().join("filters.png");
    let done = run(
        &[
            "filters",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(done.status.success(), "{}", stderr_of(&done));
    assert!(text(&done.stdout).contains("the first 128 of 200 filters"));
    let (width, height) = png_size(&out);
    // The 8 columns of 3x3 filters at 10 pixels a cell, 10 apart, take 330.
    assert!(width > 330 + 20, "{width}x{height}: no wider than the grid");
    assert!(width < 1000, "{width}x{height}: far wider than the title");
}

/// Starts `xtask train --out run_dir` for far more steps than it will take:
/// the caller stops it with a signal once it has changed the run folder.
fn spawn_long_train(real: &Path, run_dir: &Path, temp: &Path) -> std::process::Child {
    command(
        &[
            "train",
            "--out",
            run_dir.to_str().unwrap(),
            "--iters",
            "1000000",
            "--eval-every",
            "1000000",
            "--eval-train-size",
            "100",
        ],
        Some(real),
    )
    // Where the rescue folder goes (std::env::temp_dir).
    .env("TMPDIR", temp)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("xtask starts")
}

/// Asks the run to stop (Ctrl-C) and waits for it.
fn interrupt(child: std::process::Child, reader: impl Sized) -> Output {
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    drop(reader);
    child.wait_with_output().unwrap()
}

const RUN_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "loss.csv",
    "accuracy.csv",
    "accuracy.png",
    "loss.png",
];

/// A run folder replaced by a file during training: not one of the run's
/// files can be written there. They are written to a rescue folder instead,
/// and the message says so, not that "the others are in" the lost folder.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_run_folder_lost_during_training_is_rescued_whole() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("lost");
    let mut child = spawn_long_train(&real, &run_dir, temp.path());
    // The first evaluation is printed once training is under way (the
    // signal handler installed, the folder claimed).
    let reader = read_until(&mut child, "iter ");
    std::fs::rename(&run_dir, runs.path().join("moved-away")).unwrap();
    std::fs::write(&run_dir, b"a file where the run folder was").unwrap();
    let out = interrupt(child, reader);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_plain(&stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let rescue = temp.path().join("lost-rescued");
    assert!(
        stderr.contains(&format!(
            "the run stopped but none of its 6 files could be written to {}",
            run_dir.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");
    assert!(
        stderr.contains(&format!("; they are in {} instead", rescue.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("the others are in"), "{stderr}");
    for file in RUN_FILES {
        assert!(rescue.join(file).is_file(), "{file} not rescued: {stderr}");
    }
    let checkpoint = train::load_checkpoint::<f32>(&rescue.join("model.safetensors")).unwrap();
    assert_eq!(checkpoint.model.param_names().len(), 4);
}

/// Folders made during training where two of the run's files go: those two
/// go to the rescue folder, the other four stay in the run folder, and the
/// message names which is where.
#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn files_that_cannot_be_written_go_to_a_rescue_folder_and_are_named() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let runs = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("partial");
    // A rescue folder of another run is never written into.
    std::fs::create_dir_all(temp.path().join("partial-rescued")).unwrap();
    let mut child = spawn_long_train(&real, &run_dir, temp.path());
    let reader = read_until(&mut child, "iter ");
    for name in ["model.safetensors", "accuracy.png"] {
        std::fs::create_dir_all(run_dir.join(name).join("in-the-way")).unwrap();
    }
    let out = interrupt(child, reader);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_plain(&stderr);
    let rescue = temp.path().join("partial-rescued-2");
    for needle in [
        format!(
            "2 of its 6 files could not be written to {} (model.safetensors, accuracy.png: a folder has its name), the other 4 are there",
            run_dir.display()
        ),
        format!("; they are in {} instead", rescue.display()),
    ] {
        assert!(stderr.contains(&needle), "should say {needle:?}: {stderr}");
    }
    for file in ["model.safetensors", "accuracy.png"] {
        assert!(rescue.join(file).is_file(), "{file} not rescued");
    }
    for file in ["config.json", "loss.csv", "accuracy.csv", "loss.png"] {
        assert!(run_dir.join(file).is_file(), "{file} not in the run folder");
        assert!(!rescue.join(file).exists(), "{file} rescued though written");
    }
    train::load_checkpoint::<f32>(&rescue.join("model.safetensors")).unwrap();
    let empty = std::fs::read_dir(temp.path().join("partial-rescued")).unwrap().count();
    assert_eq!(empty, 0, "another run's rescue folder was written into");
}

/// A folder where a run writes one of its files is refused before any work
/// (`--overwrite` removes files only, so the run would lose that file at
/// its end), in one line that names it.
#[test]
fn a_folder_where_a_run_file_goes_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let in_the_way = out_dir.join("model.safetensors");
    std::fs::create_dir_all(in_the_way.join("mine")).unwrap();
    let out_arg = out_dir.to_str().unwrap();
    let args = [
        "train",
        "--iters",
        "20",
        "--out",
        out_arg,
        "--overwrite",
        "--data-dir",
        "/nonexistent",
    ];
    let stderr = fails_with(
        &args,
        None,
        &format!(
            "{} is a folder, where a run writes its model.safetensors",
            in_the_way.display()
        ),
    );
    assert!(stderr.contains("move it"), "{stderr}");
    assert!(
        !stderr.contains("/nonexistent"),
        "the data was looked for first: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(in_the_way.join("mine").is_dir());
    let names: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(names.len(), 1, "the run wrote into --out: {names:?}");

    // The experiments write into run folders too.
    std::fs::remove_dir_all(&in_the_way).unwrap();
    std::fs::create_dir_all(out_dir.join("optimizers.png")).unwrap();
    fails_with(
        &["experiment", "optimizers", "--out", out_arg, "--overwrite"],
        None,
        "optimizers.png is a folder",
    );
}

/// `fetch` from a source that gives nothing leaves no folder behind, not
/// even the parents of --dir it made; a folder that was there stays.
#[test]
fn a_fetch_that_gets_nothing_leaves_no_folder_behind() {
    let dir = tempfile::tempdir().unwrap();
    let empty_source = dir.path().join("empty-source");
    std::fs::create_dir_all(&empty_source).unwrap();
    let target = dir.path().join("x").join("data").join("mnist");
    for source in [dir.path().join("nowhere"), empty_source.clone()] {
        fails_with(
            &[
                "fetch",
                "--from",
                source.to_str().unwrap(),
                "--dir",
                target.to_str().unwrap(),
            ],
            None,
            "could not get train-images-idx3-ubyte.gz",
        );
        assert!(
            !dir.path().join("x").exists(),
            "--from {} left {} behind",
            source.display(),
            dir.path().join("x").display()
        );
    }
    let existing = dir.path().join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    fails_with(
        &[
            "fetch",
            "--from",
            empty_source.to_str().unwrap(),
            "--dir",
            existing.to_str().unwrap(),
        ],
        None,
        "could not get",
    );
    assert!(existing.is_dir(), "a folder the fetch did not make was removed");
}

/// A gzip member of nothing (deflate's empty final block, CRC 0, length 0).
const EMPTY_GZIP: [u8; 20] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A damaged file in a local source is the source's to replace: the advice
/// is not to delete it and run `cargo xtask fetch`, the command that failed.
#[test]
fn a_corrupt_file_in_a_local_source_is_called_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let mut junk_after = EMPTY_GZIP.to_vec();
    junk_after.extend_from_slice(b"JUNKJUNK");
    let bad = source.join("train-images-idx3-ubyte.gz");
    std::fs::write(&bad, &junk_after).unwrap();
    let target = dir.path().join("data");
    let stderr = fails_with(
        &[
            "fetch",
            "--from",
            source.to_str().unwrap(),
            "--dir",
            target.to_str().unwrap(),
        ],
        None,
        &format!("{}: not a valid gzip stream", bad.display()),
    );
    assert!(
        stderr.contains("this copy in the source folder is corrupt: replace it"),
        "{stderr}"
    );
    assert!(!stderr.contains("delete it"), "{stderr}");
    assert!(!stderr.contains("run `cargo xtask fetch`\n"), "{stderr}");
    assert!(!target.exists(), "the failed fetch left {}", target.display());
    assert_eq!(std::fs::read(&bad).unwrap(), junk_after, "the source was changed");
}

/// Every count flag says what it takes of a negative or a word, not Rust's
/// "invalid digit found in string".
#[test]
fn a_negative_count_is_refused_saying_what_the_flag_takes() {
    let dir = tempfile::tempdir().unwrap();
    let out_arg = dir.path().join("run");
    let out_arg = out_arg.to_str().unwrap();
    let zero_or_more = "must be a whole number of 0 or more";
    let one_or_more = "must be a whole number of 1 or more";
    let cases: &[(&[&str], &str)] = &[
        (&["predict", "--model", "m.safetensors", "--index", "-1"], zero_or_more),
        (&["eval", "--model", "m.safetensors", "--threads", "-2"], zero_or_more),
        (&["train", "--epochs", "-3"], one_or_more),
        (&["train", "--iters", "-5"], one_or_more),
        (&["train", "--batch-size", "-100"], one_or_more),
        (&["train", "--train-size", "-1"], one_or_more),
        (&["train", "--eval-every", "-1"], one_or_more),
        (&["train", "--eval-train-size", "-1"], one_or_more),
        (&["train", "--export-golden", "-1"], zero_or_more),
        (&["train", "--hidden", "50,-1"], one_or_more),
        (&["train", "--batch-size", "many"], one_or_more),
        (&["train", "--iters", "99999999999999999999"], "far too large"),
        (&["gradcheck", "--samples", "-1"], one_or_more),
        (&["gradcheck", "--hidden", "-50"], one_or_more),
        (&["gradcheck", "--threads", "-1"], zero_or_more),
    ];
    for (args, needle) in cases {
        let mut full = args.to_vec();
        if args[0] == "train" {
            full.extend_from_slice(&["--out", out_arg]);
        }
        let stderr = fails_with(&full, None, needle);
        assert!(!stderr.contains("invalid digit"), "{args:?}: {stderr}");
    }
    assert!(!Path::new(out_arg).exists());
}

/// LeNet-5 on batches of 30000 was accepted at an 11.2 GiB estimate (8 GB
/// resident, 38 s for one step): above `--max-memory` (1 GiB unless
/// raised) a run is refused before any work, saying the estimate, the
/// limit and the fix. (A machine with less memory available than the
/// limit caps it, and says so instead.)
#[test]
fn a_run_above_max_memory_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out_arg = out_dir.to_str().unwrap();
    let lenet = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nets/lenet5.net");
    let train = |flags: &[&str]| -> Output {
        let mut args = vec!["train", "--data-dir", "/nonexistent", "--out", out_arg];
        args.extend_from_slice(flags);
        run(&args, None)
    };
    let refused = |out: &Output, limit: &str| {
        let stderr = stderr_of(out);
        assert!(!out.status.success(), "{stderr}");
        assert_plain(&stderr);
        assert!(stderr.contains("this run would need about"), "{stderr}");
        if !stderr.contains("this machine has available") {
            for needle in [
                &format!("more than --max-memory {limit} GiB"),
                "use a smaller --batch-size or network, or raise --max-memory",
            ] {
                assert!(stderr.contains(needle), "should say {needle:?}: {stderr}");
            }
        }
        assert!(!stderr.contains("/nonexistent"), "the data was looked for: {stderr}");
    };
    let out = train(&["--net", lenet.to_str().unwrap(), "--batch-size", "30000"]);
    refused(&out, "1");
    // SimpleConvNet on batches of 4000 is about 1.7 GiB: refused below that,
    // by default too...
    let convnet = ["--model", "simple-convnet", "--batch-size", "4000"];
    refused(&train(&convnet), "1");
    // ...and the book's largest recipe, DeepConvNet's (0.8 GiB), is not.
    let out = train(&["--model", "deep-convnet"]);
    assert!(stderr_of(&out).contains("/nonexistent"), "{}", stderr_of(&out));
    refused(&train(&[&convnet[..], &["--max-memory", "1.5"]].concat()), "1.5");
    // ...and, above it, noted and let through (to the missing data here).
    let out = train(&[&convnet[..], &["--max-memory", "2"]].concat());
    let stderr = stderr_of(&out);
    if !stderr.contains("this machine has available") {
        assert!(stderr.contains("note: this run needs about 1.7 GiB"), "{stderr}");
        assert!(stderr.contains("/nonexistent"), "{stderr}");
    }
    for bad in ["0", "-1", "nan", "inf", "lots"] {
        let out = train(&[&convnet[..], &["--max-memory", bad]].concat());
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains("must be a positive number of GiB"),
            "--max-memory {bad}: {stderr}"
        );
    }
    assert!(!out_dir.exists(), "a refused run made its folder");
}
