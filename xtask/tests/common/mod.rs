//! What every test of the binary needs: running `cargo xtask` with a chosen
//! data folder, reading what it printed. (Each test file is its own crate
//! and uses some of these.)
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output};

/// `cargo xtask ARGS` as a command, with `MNIST_DIR` set to `mnist_dir`, or,
/// for `None`, with neither data-set variable of the test's own environment.
pub fn command(args: &[&str], mnist_dir: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    match mnist_dir {
        Some(dir) => command.env("MNIST_DIR", dir),
        None => command.env_remove("MNIST_DIR").env_remove("FASHION_MNIST_DIR"),
    };
    command
}

/// Runs `cargo xtask ARGS` to the end (see [`command`]).
pub fn run(args: &[&str], mnist_dir: Option<&Path>) -> Output {
    command(args, mnist_dir).output().expect("xtask runs")
}

/// Bytes a command printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON summary on the last line of stdout.
pub fn last_json(output: &Output) -> serde_json::Value {
    let stdout = text(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {stdout}"))
}

/// Reads a child's stdout lines until one starts with `prefix` (after
/// spaces); returns the reader, to keep the pipe open.
pub fn read_until(child: &mut Child, prefix: &str) -> std::io::BufReader<ChildStdout> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    while reader.read_line(&mut line).expect("stdout readable") > 0 {
        if line.trim_start().starts_with(prefix) {
            return reader;
        }
        line.clear();
    }
    panic!("no line starting with {prefix:?}");
}
