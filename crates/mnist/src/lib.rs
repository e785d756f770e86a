//! MNIST-format data sets: a strict IDX reader and verified fetching.
//!
//! * [`ImageSet`]: images kept as `u8` (N x rows x cols) and labels as `u8`,
//!   loaded from the four IDX files (gzip or raw) with every header field,
//!   length and label checked. Training keeps the bytes and builds each
//!   normalized float batch from them (`train::ImageData`), so it never
//!   holds a float copy of the whole set.
//! * [`load_mnist`]: the book's `load_mnist(normalize, flatten, one_hot_label)`.
//! * [`fetch()`]: downloads from public mirrors (or copies from a local folder
//!   or `file://` URL), verifies SHA-256 pinned in [`Dataset`], and writes
//!   atomically.
//!
//! Every failure is a [`MnistError`] that names the file, what was wrong,
//! and what to do next.

#![warn(missing_docs)]

use std::path::PathBuf;

mod book;
mod dataset;
mod error;
mod fetch;
mod idx;
mod pixels;

pub use book::{load_mnist, BookArrays, LoadOptions};
pub use dataset::{Dataset, DatasetFile, ImageSet, Mnist, Split, CLASSES};
pub use error::{MnistError, NotTheDataset};
pub use fetch::{fetch, FetchOutcome, FetchProgress, NoProgress, Source};
pub use idx::{read_idx, IdxKind, MAX_LOADED};
pub use pixels::Pixels;

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The folder named by environment variable `var`, for tests that need real data.
///
/// Those tests are marked ignored where the variable is unset (see
/// `build/test_data.rs`), so this is only called where it is set; the folder
/// must exist, or this panics, so a run that sets it fails rather than
/// silently skipping.
///
/// # Panics
/// When `var` is unset or names no folder.
#[doc(hidden)]
pub fn test_data_dir(var: &str) -> PathBuf {
    let dir = PathBuf::from(
        std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set; point it at a folder with the four files")),
    );
    assert!(dir.is_dir(), "{var}={} is not a folder", dir.display());
    dir
}
