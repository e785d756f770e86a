use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong reading or fetching a data set. Every message names the
/// file and ends with what to do about it.
#[derive(Debug, Error)]
pub enum MnistError {
    #[error("{}: {source}; check the path and permissions", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: download failed ({reason}); check the network, or use --from DIR / MNIST_DIR offline")]
    Download { url: String, reason: String },
    #[error("{}: not a valid gzip stream ({source}); the file is corrupt or not gzip: delete it and run `cargo xtask fetch`", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: wrong magic number {found:#010x} (expected {expected:#010x}, {what}); is this the right file? run `cargo xtask fetch` to get a fresh copy", path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error("{}: bad header: {detail}; the file is damaged: delete it and run `cargo xtask fetch`", path.display())]
    BadHeader { path: PathBuf, detail: String },
    #[error("{}: truncated: the header promises {expected} bytes of data but only {found} are there; delete it and run `cargo xtask fetch`", path.display())]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error("{}: {extra} unexpected bytes after the {expected} bytes of data the header describes; delete it and run `cargo xtask fetch`", path.display())]
    TrailingBytes { path: PathBuf, expected: u64, extra: u64 },
    #[error("{}: label {label} at index {index} is outside 0..{classes}; the file is damaged or not a label file", path.display())]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: u8,
    },
    #[error("{} has {images} images but {} has {labels} labels; the two files come from different data sets, fetch them again together", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
    #[error("{}: SHA-256 {actual} does not match the pinned {expected} ({what}): a damaged copy or not the real file (an HTML error page?); nothing was kept, fetch it from another source", path.display())]
    Checksum {
        path: PathBuf,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    NotTheDataset(Box<NotTheDataset>),
    #[error("{}: no {name}[.gz] here; run `cargo xtask fetch`, or set {var} (or --data-dir) to a folder with the four files", dir.display())]
    MissingFile {
        dir: PathBuf,
        name: &'static str,
        var: &'static str,
    },
    #[error("{}: {what}; set {var} (or --data-dir) to a folder with the four files, or run `cargo xtask fetch`", dir.display())]
    NotAFolder {
        dir: PathBuf,
        what: &'static str,
        var: &'static str,
    },
    #[error("{}: {what} where a data file should be; put the file there, or run `cargo xtask fetch`", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("{}: holds no images; a data set's split cannot be empty: fetch the files again", path.display())]
    EmptySplit { path: PathBuf },
    #[error("could not get {file} from any source:\n{}\nto continue offline, copy the four files from a machine that has them and run `cargo xtask fetch --from DIR`, or set {var} to that folder", attempts.iter().map(|(s, r)| format!("  - {s}: {r}")).collect::<Vec<_>>().join("\n"))]
    AllSourcesFailed {
        file: String,
        var: &'static str,
        attempts: Vec<(String, String)>,
    },
    #[error("unsupported source '{0}': give a directory, a file:// URL or an https:// URL")]
    BadSource(String),
}

impl MnistError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MnistError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A file whose bytes are not the pinned ones of the data set it stands for.
#[derive(Debug, Error)]
#[error("{}: not {dataset}'s {name}: its decompressed SHA-256 is {actual}, not the pinned {expected}{}; point {var} (or --data-dir) at a folder with the real files, or run `cargo xtask fetch --dataset {cli_name}`", path.display(), looks_like.as_ref().map(|other| format!(" (it is {other})")).unwrap_or_default())]
pub struct NotTheDataset {
    pub path: PathBuf,
    /// "MNIST", "Fashion-MNIST".
    pub dataset: &'static str,
    /// "mnist", "fashion-mnist".
    pub cli_name: &'static str,
    pub name: &'static str,
    pub var: &'static str,
    pub expected: &'static str,
    pub actual: String,
    /// The pinned file it matches instead, as "Fashion-MNIST's t10k-images-idx3-ubyte".
    pub looks_like: Option<String>,
}
