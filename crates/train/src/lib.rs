//! Training the models of `layers` on image classification data: the book's
//! loop with any optimizer, evaluation spread over the cores, checkpoints,
//! and the run's records (CSV, plots).
//!
//! The data comes in as bytes ([`ImageData`]: `u8` pixels and labels), so
//! this crate does not depend on where it was loaded from; mini-batches are
//! normalized to `[0, 1]` while they are gathered into a reused buffer.

mod busy;
mod checkpoint;
mod config;
mod data;
mod error;
mod evaluate;
pub mod report;
mod trainer;

pub use busy::with_busy_workers;
pub use checkpoint::{load_checkpoint, remove_stale_temp_files, save_checkpoint, write_atomic, Checkpoint};
pub use config::{ModelKind, TrainConfig, MAX_BATCH, MAX_ITERS, MAX_THREADS};
pub use data::ImageData;
pub use error::TrainError;
pub use evaluate::{accuracy, confusion_matrix, EVAL_CHUNK};
pub use trainer::{EvalRecord, Observer, Summary, Trainer};
