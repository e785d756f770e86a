use std::path::PathBuf;
use thiserror::Error;

/// Everything training, checkpointing and reporting can refuse or fail at.
///
/// Settings are named by their field in [`TrainConfig`](crate::TrainConfig)
/// (`batch_size`, `learning_rate`): a command line translates them to its
/// own flags.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A setting of the run outside its range.
    #[error("{field} must be {expected}, got {value}")]
    InvalidSetting {
        /// The field of [`TrainConfig`](crate::TrainConfig) (or of its optimizer).
        field: &'static str,
        /// The value given, as text.
        value: String,
        /// What the field accepts.
        expected: String,
    },
    /// The data does not fit the model or cannot be trained on.
    #[error("{0}")]
    Data(String),
    /// [`Trainer::with_model`](crate::Trainer::with_model) was given a model
    /// other than the one its config describes.
    #[error("the model given is not the config's: {0}; describe the model in TrainConfig::model (and its weight decay in TrainConfig::weight_decay)")]
    ModelMismatch(String),
    /// A model's scores were not finite (NaN or infinite) at inference.
    #[error("the model's scores are not finite (NaN or infinite) on {examples} of {of} examples, so it cannot be scored; its weights are too large for f32, or a BatchNorm's eps or running variance is 0 or negative where it runs")]
    NonFiniteOutput {
        /// Examples whose scores were not all finite.
        examples: usize,
        /// Examples scored.
        of: usize,
    },
    /// The loss was not finite: the run stopped, keeping the last good weights.
    #[error("the loss became {loss} at iteration {iteration} (learning rate {}); {}", layers::readable(*learning_rate), match last_good {
        Some(good) => format!(
            "training diverged: try a lower learning rate{}. The weights kept are those of iteration {good}",
            if *weight_decay > 0.0 { " or a lower weight decay" } else { "" }
        ),
        None if *weight_decay > 0.0 => {
            "the initial weights already give a non-finite loss: try a lower weight decay, or smaller initial weights".to_string()
        }
        None => "the initial weights already give a non-finite loss: try smaller initial weights".to_string(),
    })]
    NonFiniteLoss {
        /// The iteration whose loss was not finite.
        iteration: usize,
        /// That loss (NaN or infinite).
        loss: f64,
        /// The optimizer's learning rate.
        learning_rate: f64,
        /// The model's weight decay lambda.
        weight_decay: f64,
        /// The iteration whose parameters were kept; `None` when the first loss was already non-finite.
        last_good: Option<usize>,
    },
    /// [`Observer::should_stop`](crate::Observer::should_stop) asked the run to end.
    #[error("interrupted after {iterations} iterations; the weights and records so far are kept")]
    Interrupted {
        /// Steps completed before the stop.
        iterations: usize,
    },
    /// The network refused its description, input or parameters.
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    /// A folder was needed where a file is.
    #[error("{} is a file, not a folder; give a path in a folder", path.display())]
    NotAFolder {
        /// The file in the way.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {source}; check that the folder exists and is writable", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint that cannot be loaded.
    #[error("{}: not a usable checkpoint: {detail}; give a model saved by train::save_checkpoint (`cargo xtask train` writes one)", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// A plot that could not be drawn.
    #[error("{}: could not draw the plot: {detail}", path.display())]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What the plotting library said.
        detail: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A setting outside its range.
    pub(crate) fn setting(field: &'static str, value: impl ToString, expected: impl Into<String>) -> Self {
        TrainError::InvalidSetting {
            field,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_divergence_names_its_learning_rate_as_a_person_reads_it() {
        let diverged = |learning_rate| {
            TrainError::NonFiniteLoss {
                iteration: 3,
                loss: f64::NAN,
                learning_rate,
                weight_decay: 0.0,
                last_good: Some(2),
            }
            .to_string()
        };
        // Not thirty-one digits.
        let message = diverged(1e30);
        assert!(message.contains("(learning rate 1e30)"), "{message}");
        assert!(message.starts_with("the loss became NaN at iteration 3"), "{message}");
        assert!(diverged(0.01).contains("(learning rate 0.01)"));
    }
}
