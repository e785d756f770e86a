//! The data sets, their files and pinned checksums, and the loaded images.

use crate::idx::{parse_idx, read_decompressed, read_images_in_place, IdxKind, LoadBudget};
use crate::{MnistError, Pixels};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One of the four files of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetFile {
    /// Base name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// Images or labels: the IDX layout the file must have.
    pub kind: IdxKind,
    /// SHA-256 of the `.gz` file the mirrors serve, where known.
    pub gz_sha256: Option<&'static str>,
    /// SHA-256 of the decompressed IDX file: holds whatever the container.
    pub idx_sha256: &'static str,
}

/// A data set in MNIST's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataset {
    /// The handwritten digits of LeCun, Cortes and Burges (the book's data set).
    #[default]
    Mnist,
    /// Zalando's Fashion-MNIST: ten classes of clothing, same format and sizes.
    FashionMnist,
}

const MNIST_FILES: [DatasetFile; 4] = [
    DatasetFile {
        name: "train-images-idx3-ubyte",
        kind: IdxKind::Images,
        gz_sha256: Some("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        idx_sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    DatasetFile {
        name: "train-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        gz_sha256: Some("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        idx_sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    DatasetFile {
        name: "t10k-images-idx3-ubyte",
        kind: IdxKind::Images,
        gz_sha256: Some("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        idx_sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    DatasetFile {
        name: "t10k-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        gz_sha256: Some("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        idx_sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

// Only the decompressed hashes are pinned for Fashion-MNIST: recompressed
// copies (Debian's package among them) have other .gz bytes.
const FASHION_FILES: [DatasetFile; 4] = [
    DatasetFile {
        name: "train-images-idx3-ubyte",
        kind: IdxKind::Images,
        gz_sha256: None,
        idx_sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    DatasetFile {
        name: "train-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        gz_sha256: None,
        idx_sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    DatasetFile {
        name: "t10k-images-idx3-ubyte",
        kind: IdxKind::Images,
        gz_sha256: None,
        idx_sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    DatasetFile {
        name: "t10k-labels-idx1-ubyte",
        kind: IdxKind::Labels,
        gz_sha256: None,
        idx_sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
];

impl Dataset {
    /// The name used on the command line and for the default folder `data/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        }
    }

    /// The name people write: "MNIST", "Fashion-MNIST".
    pub fn title(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST",
            Dataset::FashionMnist => "Fashion-MNIST",
        }
    }

    /// The environment variable that names a folder holding the files.
    pub fn env_var(self) -> &'static str {
        match self {
            Dataset::Mnist => "MNIST_DIR",
            Dataset::FashionMnist => "FASHION_MNIST_DIR",
        }
    }

    /// Pixels per image: both sets hold 28 x 28 images.
    pub fn pixels(self) -> usize {
        28 * 28
    }

    /// The four files: training images, training labels, test images, test labels.
    pub fn files(self) -> &'static [DatasetFile; 4] {
        match self {
            Dataset::Mnist => &MNIST_FILES,
            Dataset::FashionMnist => &FASHION_FILES,
        }
    }

    /// Public mirrors, tried in order. MNIST: the S3 mirror torchvision and
    /// the book's code use, the CVDF mirror, then the original site.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            Dataset::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        }
    }

    /// Where the Debian package `dataset-fashion-mnist` puts its files.
    pub fn system_dir(self) -> Option<&'static str> {
        match self {
            Dataset::Mnist => None,
            Dataset::FashionMnist => Some("/usr/share/datasets/fashion-mnist"),
        }
    }

    /// Class names, for reports.
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            Dataset::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            Dataset::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(Dataset::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashion" => Ok(Dataset::FashionMnist),
            other => Err(format!("unknown dataset '{other}'; use mnist or fashion-mnist")),
        }
    }
}

/// The path of `name` in `dir`: `name.gz` if present, else the raw `name`.
/// Says what is wrong when the folder is not one, or when something other
/// than a regular file stands where a file should be; `var` is the data
/// set's environment variable, for the advice.
pub(crate) fn find_file(dir: &Path, name: &'static str, var: &'static str) -> Result<PathBuf, MnistError> {
    if !dir.is_dir() {
        let what = match std::fs::metadata(dir) {
            Ok(_) => "not a folder",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
            Err(_) => "cannot be read",
        };
        return Err(MnistError::NotAFolder {
            dir: dir.to_path_buf(),
            what,
            var,
        });
    }
    for path in [dir.join(format!("{name}.gz")), dir.join(name)] {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => return Ok(path),
            Ok(meta) => {
                let what = if meta.is_dir() {
                    "a folder"
                } else {
                    "a device or other special file"
                };
                return Err(MnistError::NotAFile { path, what });
            }
            // ELOOP: a symbolic link that leads back to itself.
            Err(e) if e.raw_os_error() == Some(40) => {
                return Err(MnistError::NotAFile {
                    path,
                    what: "a symbolic link loop",
                })
            }
            Err(_) => {}
        }
    }
    Err(MnistError::MissingFile {
        dir: dir.to_path_buf(),
        name,
        var,
    })
}

/// Images and labels of one split, kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `len * rows * cols` pixels, row-major, 0 (background) to 255 (ink).
    pub images: Pixels,
    /// One class per image, each below [`CLASSES`].
    pub labels: Vec<u8>,
    /// Height of each image in pixels (28 in both data sets).
    pub rows: usize,
    /// Width of each image in pixels (28 in both data sets).
    pub cols: usize,
}

/// Number of classes every MNIST-format set has.
pub const CLASSES: u8 = 10;

/// Checks decompressed IDX bytes against the pinned SHA-256 of `file` of
/// `dataset`; on a mismatch, says which pinned file they are, if any.
fn verify_idx(path: &Path, bytes: &[u8], dataset: Dataset, file: &DatasetFile) -> Result<(), MnistError> {
    verify_digest(path, crate::sha256_hex(bytes), dataset, file)
}

/// [`verify_idx`] for bytes whose SHA-256 (hex) is `actual`.
fn verify_digest(path: &Path, actual: String, dataset: Dataset, file: &DatasetFile) -> Result<(), MnistError> {
    if actual == file.idx_sha256 {
        return Ok(());
    }
    let looks_like = [Dataset::Mnist, Dataset::FashionMnist].into_iter().find_map(|other| {
        other
            .files()
            .iter()
            .find(|f| f.idx_sha256 == actual)
            .map(|f| format!("{}'s {}", other.title(), f.name))
    });
    Err(MnistError::NotTheDataset(Box::new(crate::error::NotTheDataset {
        path: path.to_path_buf(),
        dataset: dataset.title(),
        cli_name: dataset.name(),
        name: file.name,
        var: dataset.env_var(),
        expected: file.idx_sha256,
        actual,
        looks_like,
    })))
}

impl ImageSet {
    /// Loads and cross-checks an image file and a label file.
    pub fn load(images_path: &Path, labels_path: &Path) -> Result<Self, MnistError> {
        Self::load_checked(images_path, labels_path, None, &LoadBudget::new())
    }

    /// [`ImageSet::load`] that also checks each file's decompressed bytes
    /// against the pinned checksums of the given files of `dataset`.
    fn load_checked(
        images_path: &Path,
        labels_path: &Path,
        pinned: Option<(Dataset, &DatasetFile, &DatasetFile)>,
        budget: &LoadBudget,
    ) -> Result<Self, MnistError> {
        let read = |path: &Path, kind: IdxKind, file: Option<(Dataset, &DatasetFile)>| {
            let bytes = read_decompressed(path, budget)?;
            if let Some((dataset, file)) = file {
                verify_idx(path, &bytes, dataset, file)?;
            }
            parse_idx(path, bytes, kind)
        };
        let pinned_images = pinned.map(|(d, images, _)| (d, images));
        // The usual case reads the pixels in place (into huge pages); a
        // file that is not well formed goes the careful way, which names
        // what is wrong.
        let (images_dims, images) = match read_images_in_place(images_path, budget)? {
            Some(streamed) => {
                if let Some((dataset, file)) = pinned_images {
                    verify_digest(images_path, streamed.sha256, dataset, file)?;
                }
                (streamed.dims, streamed.pixels)
            }
            None => {
                let idx = read(images_path, IdxKind::Images, pinned_images)?;
                (idx.dims, Pixels::from(idx.data))
            }
        };
        if images_dims[0] == 0 {
            return Err(MnistError::EmptySplit {
                path: images_path.to_path_buf(),
            });
        }
        let labels = read(labels_path, IdxKind::Labels, pinned.map(|(d, _, labels)| (d, labels)))?;
        if images_dims[0] != labels.dims[0] {
            return Err(MnistError::CountMismatch {
                images_path: images_path.to_path_buf(),
                labels_path: labels_path.to_path_buf(),
                images: images_dims[0],
                labels: labels.dims[0],
            });
        }
        if let Some((index, &label)) = labels.data.iter().enumerate().find(|(_, &l)| l >= CLASSES) {
            return Err(MnistError::LabelOutOfRange {
                path: labels_path.to_path_buf(),
                index,
                label,
                classes: CLASSES,
            });
        }
        Ok(ImageSet {
            images,
            labels: labels.data,
            rows: images_dims[1],
            cols: images_dims[2],
        })
    }

    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images; never the case for a loaded split
    /// ([`MnistError::EmptySplit`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (784 for MNIST).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.pixels()..(i + 1) * self.pixels()]
    }
}

/// Which half of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training images and labels (60,000 in both data sets).
    Train,
    /// The test images and labels (10,000 in both data sets).
    Test,
}

/// Both splits of a data set.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The training split.
    pub train: ImageSet,
    /// The test split.
    pub test: ImageSet,
}

impl Mnist {
    /// Loads the four files of `dataset` from `dir` (each as `name.gz` or raw `name`).
    /// Structure is validated; checksums are [`crate::fetch()`]'s business,
    /// or [`Mnist::load_verified`]'s.
    pub fn load(dir: &Path, dataset: Dataset) -> Result<Self, MnistError> {
        Self::load_both(dir, dataset, false)
    }

    /// [`Mnist::load`] that also checks every file's decompressed bytes
    /// against the data set's pinned SHA-256, so that altered or mixed-up
    /// files in a folder are refused, naming the file (and what it is
    /// instead, when it is another pinned file).
    pub fn load_verified(dir: &Path, dataset: Dataset) -> Result<Self, MnistError> {
        Self::load_both(dir, dataset, true)
    }

    /// The test split is read on a second thread while the training split
    /// is read on this one (decompressing is the whole cost, and it is
    /// serial within a gzip stream); both draw on one [`LoadBudget`].
    fn load_both(dir: &Path, dataset: Dataset, verify: bool) -> Result<Self, MnistError> {
        let budget = LoadBudget::new();
        std::thread::scope(|scope| {
            let test = scope.spawn(|| Self::load_split_checked(dir, dataset, Split::Test, verify, &budget));
            let train = Self::load_split_checked(dir, dataset, Split::Train, verify, &budget);
            // A panic on the other thread (a bug, not bad input) stays a panic.
            let test = test.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok(Mnist {
                train: train?,
                test: test?,
            })
        })
    }

    /// Loads one split of `dataset` from `dir`, checked as [`Mnist::load`] checks it.
    pub fn load_split(dir: &Path, dataset: Dataset, split: Split) -> Result<ImageSet, MnistError> {
        Self::load_split_checked(dir, dataset, split, false, &LoadBudget::new())
    }

    /// [`Mnist::load_split`] with the checksums checked, as [`Mnist::load_verified`].
    pub fn load_split_verified(dir: &Path, dataset: Dataset, split: Split) -> Result<ImageSet, MnistError> {
        Self::load_split_checked(dir, dataset, split, true, &LoadBudget::new())
    }

    fn load_split_checked(
        dir: &Path,
        dataset: Dataset,
        split: Split,
        verify: bool,
        budget: &LoadBudget,
    ) -> Result<ImageSet, MnistError> {
        let files = dataset.files();
        let (images, labels) = match split {
            Split::Train => (&files[0], &files[1]),
            Split::Test => (&files[2], &files[3]),
        };
        ImageSet::load_checked(
            &find_file(dir, images.name, dataset.env_var())?,
            &find_file(dir, labels.name, dataset.env_var())?,
            verify.then_some((dataset, images, labels)),
            budget,
        )
    }
}
