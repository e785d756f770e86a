//! `cargo xtask filters`: the first convolution's filters of a saved model as
//! a PNG grid (the book's figure 7-24 and `ch07/visualize_filter.py`).

use crate::common::{write_failure, Result, XtaskError};
use crate::train::first_filters;
use std::path::PathBuf;
use std::process::ExitCode;
use train::report;

#[derive(clap::Args)]
pub struct Args {
    /// A model.safetensors written by `cargo xtask train --model simple-convnet` (or deep-convnet).
    #[arg(long)]
    model: PathBuf,
    /// Where to write the PNG [default: filters.png beside the model].
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let checkpoint = train::load_checkpoint::<f32>(&args.model)?;
    let filters = first_filters(&checkpoint.model).ok_or_else(|| {
        XtaskError::Usage(format!(
            "{}: the model has no convolution ({}); train one with --model simple-convnet",
            args.model.display(),
            checkpoint.model.summary()
        ))
    })?;
    let out = args.out.unwrap_or_else(|| args.model.with_file_name("filters.png"));
    let shape = filters.shape().to_vec();
    // The figure shows the first 128 (report::plot_filters).
    let shown = match shape[0] {
        n if n > 128 => format!("the first 128 of {n}"),
        n => n.to_string(),
    };
    report::plot_filters(
        &out,
        &format!("{shown} filters of {}x{} (channel 0)", shape[2], shape[3]),
        &filters,
    )
    .map_err(|e| match e {
        // The figure is drawn; only the file is refused: say which and why
        // in a few words, and which flag picks another.
        train::TrainError::Io { .. } | train::TrainError::NotAFolder { .. } => XtaskError::Failed(format!(
            "cannot write {}: {}; give --out a path you can write",
            out.display(),
            write_failure(&e)
        )),
        e => e.into(),
    })?;
    say!(
        "{shown} filters of {}x{}x{} drawn to {}",
        shape[1],
        shape[2],
        shape[3],
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
