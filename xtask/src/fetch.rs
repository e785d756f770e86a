//! `cargo xtask fetch`: get the four files of a data set, verified.

use crate::common::{default_data_dir, parse_dataset, parse_source, BarProgress, Result};
use mnist::{Dataset, FetchOutcome, Source};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// mnist or fashion-mnist.
    #[arg(long, default_value = "mnist", value_parser = parse_dataset)]
    dataset: Dataset,
    /// Target folder [default: data/<dataset> under the project root].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to get the files instead of the public mirrors: a folder, a
    /// file:// URL or an http(s):// base URL. Repeat to give fallbacks.
    #[arg(long = "from", value_parser = parse_source)]
    from: Vec<Source>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| default_data_dir(args.dataset));
    if dir.exists() && !dir.is_dir() {
        return Err(crate::common::XtaskError::Usage(format!(
            "--dir {} is a file, not a folder; give a folder (it is created if missing)",
            dir.display()
        )));
    }
    let outcomes = mnist::fetch(args.dataset, &dir, &args.from, &mut BarProgress::default())?;
    for outcome in outcomes {
        match outcome {
            FetchOutcome::AlreadyValid(path) => {
                say!("ok       {} (already there, checksum verified)", path.display())
            }
            FetchOutcome::Fetched { path, source } => {
                say!("fetched  {} from {source} (checksum verified)", path.display())
            }
        }
    }
    say!("{} is ready in {}", args.dataset, dir.display());
    Ok(ExitCode::SUCCESS)
}
