use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong reading or fetching a data set. Every message names the
/// file and ends with what to do about it.
#[derive(Debug, Error)]
pub enum MnistError {
    /// Opening, reading, writing, syncing or renaming a file (or creating the
    /// target folder) failed.
    #[error("{}: {source}; check the path and permissions", path.display())]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A URL source (a mirror, or one given) could not be reached, or
    /// answered with an HTTP error status.
    #[error(
        "{url}: download failed ({reason}); check the network, or fetch from a local folder or file:// source offline"
    )]
    Download {
        /// The full URL of the `.gz` file.
        url: String,
        /// The HTTP client's error, as text.
        reason: String,
    },
    /// A file starts with the gzip signature but does not decompress: a
    /// corrupt or cut-short stream, a trailer (CRC, length) that does not
    /// match, or bytes after the last member that start no other.
    #[error("{}: not a valid gzip stream ({source}); the file is corrupt or not gzip: delete it and fetch the files again", path.display())]
    Gzip {
        /// The compressed file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A file in a local source folder that does not decompress (a
    /// [`MnistError::Gzip`] or too large, found by a fetch): fetching from
    /// that folder again would copy the same bytes.
    #[error("{}: {detail}; this copy in the source folder is corrupt: replace it with a good copy, or fetch from another source or a public mirror", path.display())]
    CorruptSource {
        /// The file in the source folder.
        path: PathBuf,
        /// What is wrong with it, for the message.
        detail: String,
    },
    /// An IDX file's first four bytes are not the magic number of the
    /// expected kind (2051 for images, 2049 for labels).
    #[error("{}: wrong magic number {found:#010x} (expected {expected:#010x}, {what}); is this the right file? fetch the files again for a fresh copy", path.display())]
    BadMagic {
        /// The IDX file.
        path: PathBuf,
        /// The magic number the file has.
        found: u32,
        /// The one its kind requires.
        expected: u32,
        /// The kind expected, as "an IDX image file".
        what: &'static str,
    },
    /// An IDX header that cannot describe a data set: images of zero rows or
    /// columns, dimensions whose product overflows, or a file (or what it
    /// decompresses to) larger than what is left of [`crate::MAX_LOADED`].
    #[error("{}: bad header: {detail}; the file is damaged: delete it and fetch the files again", path.display())]
    BadHeader {
        /// The IDX file.
        path: PathBuf,
        /// What is wrong, for the message.
        detail: String,
    },
    /// An IDX file ends before its header does, or before the payload the
    /// header announces.
    #[error("{}: truncated: the header promises {expected} bytes of data but only {found} are there; delete it and fetch the files again", path.display())]
    Truncated {
        /// The IDX file.
        path: PathBuf,
        /// Bytes announced (the header's length, when the header itself is cut short).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes follow the payload the IDX header announces.
    #[error("{}: {extra} unexpected bytes after the {expected} bytes of data the header describes; delete it and fetch the files again", path.display())]
    TrailingBytes {
        /// The IDX file.
        path: PathBuf,
        /// Payload bytes the header announces.
        expected: u64,
        /// Bytes after them.
        extra: u64,
    },
    /// A label file holds a label of [`crate::CLASSES`] or more.
    #[error("{}: label {label} at index {index} is outside 0..{classes}; the file is damaged or not a label file", path.display())]
    LabelOutOfRange {
        /// The label file.
        path: PathBuf,
        /// Position of the first bad label.
        index: usize,
        /// Its value.
        label: u8,
        /// The number of classes, [`crate::CLASSES`].
        classes: u8,
    },
    /// A split's image file and label file hold different numbers of items.
    #[error("{} has {images} images but {} has {labels} labels; the two files come from different data sets, fetch them again together", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// The label file.
        labels_path: PathBuf,
        /// Images in the image file.
        images: usize,
        /// Labels in the label file.
        labels: usize,
    },
    /// During a fetch, a file's SHA-256 differs from the pinned one: a
    /// download's `.gz` bytes (where pinned), or any copy's decompressed IDX
    /// bytes. A fetched copy that fails is deleted, never renamed into place.
    #[error("{}: SHA-256 {actual} does not match the pinned {expected} ({what}): a damaged copy or not the real file (an HTML error page?); nothing was kept, fetch it from another source", path.display())]
    Checksum {
        /// Where the bytes came from (the file or the URL).
        path: PathBuf,
        /// Which bytes were hashed: "downloaded .gz" or "decompressed IDX".
        what: &'static str,
        /// The pinned SHA-256, hex.
        expected: String,
        /// The SHA-256 of the bytes, hex.
        actual: String,
    },
    /// A verified load ([`crate::Mnist::load_verified`],
    /// [`crate::Mnist::load_split_verified`]) found a file whose decompressed
    /// bytes are not the data set's pinned ones.
    #[error(transparent)]
    NotTheDataset(Box<NotTheDataset>),
    /// A folder holds neither `NAME.gz` nor `NAME` for one of the four files.
    #[error("{}: no {name}[.gz] here; fetch the files into it, or point {var} at a folder with the four files", dir.display())]
    MissingFile {
        /// The folder searched.
        dir: PathBuf,
        /// The file's base name, without `.gz`.
        name: &'static str,
        /// The data set's environment variable, for the advice.
        var: &'static str,
    },
    /// The data folder does not exist, cannot be read, or is not a folder.
    #[error("{}: {what}; point {var} at a folder with the four files, or fetch the files into it", dir.display())]
    NotAFolder {
        /// The path given as the folder.
        dir: PathBuf,
        /// What it is instead, as "does not exist".
        what: &'static str,
        /// The data set's environment variable, for the advice.
        var: &'static str,
    },
    /// A folder, a special file or a symbolic link loop stands where a data
    /// file should be.
    #[error("{}: {what} where a data file should be; put the file there, or fetch the files again", path.display())]
    NotAFile {
        /// The path of the data file.
        path: PathBuf,
        /// What stands there, as "a folder".
        what: &'static str,
    },
    /// An image file announces zero images.
    #[error("{}: holds no images; a data set's split cannot be empty: fetch the files again", path.display())]
    EmptySplit {
        /// The image file.
        path: PathBuf,
    },
    /// No source could provide a verified copy of a file during a fetch.
    #[error("could not get {file} from any source:\n{}\nto continue offline, copy the four files from a machine that has them and fetch from a local folder or file:// source, or point {var} at that folder", attempts.iter().map(|(s, r)| format!("  - {s}: {r}")).collect::<Vec<_>>().join("\n"))]
    AllSourcesFailed {
        /// The file, as `NAME.gz`.
        file: String,
        /// The data set's environment variable, for the advice.
        var: &'static str,
        /// Each source tried, with the error it gave, in order.
        attempts: Vec<(String, String)>,
    },
    /// [`crate::Source::parse`] got a URL whose scheme is neither `file`,
    /// `http` nor `https`. Holds the text given.
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
#[error("{}: not {dataset}'s {name}: its decompressed SHA-256 is {actual}, not the pinned {expected}{}; point {var} at a folder with the real files, or fetch the {cli_name} files again", path.display(), looks_like.as_ref().map(|other| format!(" (it is {other})")).unwrap_or_default())]
pub struct NotTheDataset {
    /// The file.
    pub path: PathBuf,
    /// "MNIST", "Fashion-MNIST".
    pub dataset: &'static str,
    /// "mnist", "fashion-mnist".
    pub cli_name: &'static str,
    /// The base name of the file it should be, as `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// The data set's environment variable, for the advice.
    pub var: &'static str,
    /// The pinned SHA-256 of the decompressed file, hex.
    pub expected: &'static str,
    /// The SHA-256 of its decompressed bytes, hex.
    pub actual: String,
    /// The pinned file it matches instead, as "Fashion-MNIST's t10k-images-idx3-ubyte".
    pub looks_like: Option<String>,
}
