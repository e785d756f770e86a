//! Training the models of `layers` on classification data: the book's loop
//! with any optimizer, evaluation spread over the cores, checkpoints, and the
//! run's records (CSV, plots).
//!
//! A run is a [`TrainConfig`] (the model, as one of the book's nets or any
//! [`layers::NetSpec`], and the training settings, each once) and two
//! [`Dataset`]s; [`Trainer`] runs it. Data comes in as bytes ([`ImageData`]:
//! `u8` pixels, MNIST's fast path, normalized to `[0, 1]` while a batch is
//! gathered) or as numbers ([`ArrayData`]); this crate does not depend on
//! where it was loaded from. See [`Trainer`] for a whole run in a few lines.

#![warn(missing_docs)]

mod augment;
mod busy;
mod checkpoint;
mod config;
mod cost;
mod data;
mod error;
mod evaluate;
mod precision;
pub mod report;
mod trainer;

pub use augment::Augment;
pub use busy::{with_busy_workers, Helpers};
pub use checkpoint::{load_checkpoint, remove_stale_temp_files, save_checkpoint, write_atomic, Checkpoint};
pub use config::{LrSchedule, MlpOptions, ModelSpec, TrainConfig, MAX_BATCH, MAX_ITERS, MAX_THREADS};
pub use cost::ModelCost;
pub use data::{ArrayData, Dataset, ImageData};
pub use error::TrainError;
pub use evaluate::{
    accuracy, argmax_rows, checked_accuracy, checked_confusion_matrix, checked_probabilities, checked_probabilities_in,
    chunk_images, confusion_matrix, matrix_accuracy, EVAL_CHUNK,
};
pub use precision::Precision;
pub use trainer::{EvalRecord, Observer, Summary, Trainer};
