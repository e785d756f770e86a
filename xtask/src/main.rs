//! `cargo xtask <task>`: the project's commands. This file only parses flags
//! and dispatches; each task lives in its own module.

/// `println!` that never panics: when stdout is closed (`cargo xtask train |
/// head`), what would have been printed is dropped and the work goes on, so a
/// run still finishes and keeps its files.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics; see `say!`.
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod common;
mod eval;
mod experiment;
mod fetch;
mod filters;
mod gradcheck;
mod predict;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Deep learning from scratch, chapters 5 to 8, in Rust: fetch MNIST, train
/// the book's networks or one's own (`train --net FILE`), check their
/// gradients, run the chapter-6 experiments, look at a trained model,
/// benchmark.
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
