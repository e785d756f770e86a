//! `cargo xtask bench`: run the criterion benchmarks and summarize them.

use crate::common::{project_root, Result, XtaskError};
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    /// Only benchmarks whose name contains this (criterion's filter).
    filter: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(project_root())
        .args(["bench", "--package", "benches", "--"]);
    if let Some(filter) = &args.filter {
        command.arg(filter);
    }
    let status = command
        .status()
        .map_err(|e| XtaskError::Failed(format!("cannot run cargo bench: {e}")))?;
    if !status.success() {
        return Err(XtaskError::Failed("cargo bench failed".into()));
    }
    Ok(ExitCode::SUCCESS)
}
