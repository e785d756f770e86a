use std::path::PathBuf;
use thiserror::Error;

/// Everything training, checkpointing and reporting can refuse or fail at.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    #[error("the loss became {loss} at iteration {iteration} (learning rate {learning_rate}); {}", match last_good {
        Some(good) => format!(
            "training diverged: try a lower --lr{}. The weights kept are those of iteration {good}",
            if *weight_decay > 0.0 { " or a lower --weight-decay" } else { "" }
        ),
        None => "the initial weights already give a non-finite loss: try a smaller --init std".to_string(),
    })]
    NonFiniteLoss {
        iteration: usize,
        loss: f64,
        learning_rate: f64,
        weight_decay: f64,
        /// The iteration whose parameters were kept; `None` when the first loss was already non-finite.
        last_good: Option<usize>,
    },
    #[error("interrupted after {iterations} iterations; the weights and records so far are kept")]
    Interrupted { iterations: usize },
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    #[error("{}: {source}; check that the folder exists and is writable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a usable checkpoint: {detail}; give a model.safetensors written by `cargo xtask train`", path.display())]
    Checkpoint { path: PathBuf, detail: String },
    #[error("{}: could not draw the plot: {detail}", path.display())]
    Plot { path: PathBuf, detail: String },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
