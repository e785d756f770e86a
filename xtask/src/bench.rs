//! `cargo xtask bench`: run the criterion benchmarks, then print one table
//! from criterion's saved estimates, with the backprop/numerical ratio.

use crate::common::{project_root, Result, XtaskError};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    /// Only benchmarks whose name matches this regular expression (criterion's filter).
    filter: Option<String>,
    /// Print the table from the last run's results without running anything.
    #[arg(long)]
    report_only: bool,
}

/// One benchmark's result as criterion saved it.
struct Row {
    id: String,
    mean_seconds: f64,
    elements: Option<f64>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !args.report_only {
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
            return Err(XtaskError::Failed("cargo bench failed; see its output above".into()));
        }
    }
    let root = project_root().join("target").join("criterion");
    let mut rows = Vec::new();
    collect(&root, &mut rows);
    if rows.is_empty() {
        return Err(XtaskError::Failed(format!(
            "no criterion results under {}; run `cargo xtask bench` first",
            root.display()
        )));
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    say!("{:<62} {:>12} {:>10}", "benchmark", "mean", "GFLOP/s");
    for row in &rows {
        let rate = row
            .elements
            .map(|e| format!("{:.1}", e / row.mean_seconds / 1e9))
            .unwrap_or_default();
        say!("{:<62} {:>12} {:>10}", row.id, human(row.mean_seconds), rate);
    }
    let find = |id: &str| rows.iter().find(|r| r.id == id).map(|r| r.mean_seconds);
    if let (Some(numerical), Some(backprop)) = (
        find("gradient/numerical f64 batch 3"),
        find("gradient/backprop f64 batch 3"),
    ) {
        say!(
            "backprop is {:.0}x faster than the numerical gradient (f64, 3 images, same network)",
            numerical / backprop
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.3} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} us", seconds * 1e6)
    }
}

/// Every `<dir>/new/benchmark.json` (+ `estimates.json`) below `dir`.
fn collect(dir: &Path, rows: &mut Vec<Row>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(row) = read_row(&path) {
                rows.push(row);
            }
        } else if path
            .file_name()
            .is_some_and(|n| n != "report" && n != "base" && n != "change")
        {
            collect(&path, rows);
        }
    }
}

fn read_row(dir: &Path) -> Option<Row> {
    let benchmark: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("benchmark.json")).ok()?).ok()?;
    let estimates: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("estimates.json")).ok()?).ok()?;
    Some(Row {
        id: benchmark["full_id"].as_str()?.to_string(),
        mean_seconds: estimates["mean"]["point_estimate"].as_f64()? * 1e-9,
        elements: benchmark["throughput"]["Elements"].as_f64(),
    })
}
