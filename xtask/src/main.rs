//! `cargo xtask <task>`: the project's commands. This file only parses flags
//! and dispatches; each task lives in its own module.

/// `println!` that never panics: when stdout is closed (`cargo xtask train |
/// head`), what would have been printed is dropped and the work goes on, so a
/// run still finishes and keeps its files. Any other failure to write (a full
/// disk) is remembered, and the command ends with an error saying so.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout_result(writeln!(std::io::stdout(), $($arg)*));
    }};
}

/// `print!` that never panics; see `say!`.
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout_result(write!(std::io::stdout(), $($arg)*));
    }};
}

/// The first failure to write to stdout other than a closed pipe.
static STDOUT_FAILURE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Keeps the first failure of a write to stdout, unless stdout was closed
/// (a reader that went away: the work goes on, nothing is lost).
fn stdout_result(result: std::io::Result<()>) {
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = STDOUT_FAILURE.set(e.to_string());
        }
    }
}

mod bench;
mod common;
mod eval;
mod experiment;
mod fetch;
mod filters;
mod gradcheck;
mod predict;
mod serve;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Deep learning from scratch, chapters 5 to 8, in Rust: fetch MNIST, train
/// the book's networks or one's own (`train --net FILE`), check their
/// gradients, run the chapter-6 experiments, look at a trained model, see
/// it all on a local page (`serve`), benchmark.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Download (or copy) a data set and verify its SHA-256 checksums.
    Fetch(fetch::Args),
    /// Train a network and keep the run (CSV, plots, weights).
    Train(train::Args),
    /// Compare backprop gradients with numerical ones on a few training images.
    Gradcheck(gradcheck::Args),
    /// Run one of the book's chapter-6 experiments and draw its figure.
    Experiment(experiment::Args),
    /// Test accuracy and confusion matrix of a saved model.
    Eval(eval::Args),
    /// Draw the first convolution's filters of a saved model as a PNG grid.
    Filters(filters::Args),
    /// Classify one image with a saved model and draw it in the terminal.
    Predict(predict::Args),
    /// Run the criterion benchmarks and print a summary table.
    Bench(bench::Args),
    /// Serve a local page: draw a digit, browse the test set, the apple graph, train live.
    Serve(serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Fetch(args) => fetch::run(args),
        Task::Train(args) => train::run(args),
        Task::Gradcheck(args) => gradcheck::run(args),
        Task::Experiment(args) => experiment::run(args),
        Task::Eval(args) => eval::run(args),
        Task::Filters(args) => filters::run(args),
        Task::Predict(args) => predict::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Serve(args) => serve::run(args),
    };
    {
        use std::io::Write as _;
        stdout_result(std::io::stdout().flush());
    }
    match result {
        Ok(code) => match STDOUT_FAILURE.get() {
            // The work is done (and its files written); its report is not.
            Some(e) => {
                eprintln!(
                    "error: could not write the output to stdout ({e}); the command's files, if any, are written"
                );
                ExitCode::FAILURE
            }
            None => code,
        },
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
