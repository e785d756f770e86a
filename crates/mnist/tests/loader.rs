//! The IDX loader on synthetic files: every error kind, and never a panic.

mod common;

use common::*;
use mnist::{Dataset, ImageSet, Mnist, MnistError};
use proptest::prelude::*;

#[test]
fn loads_gzip_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_dataset(dir.path());
    let data = Mnist::load(dir.path(), Dataset::Mnist).unwrap();
    assert_eq!((data.train.len(), data.train.rows, data.train.cols), (12, 4, 3));
    assert_eq!(data.test.len(), 5);
    // Raw (uncompressed) files load the same.
    let (images, labels) = synthetic_pair(3, 2, 2);
    std::fs::write(dir.path().join("raw-images"), &images).unwrap();
    std::fs::write(dir.path().join("raw-labels"), &labels).unwrap();
    let set = ImageSet::load(&dir.path().join("raw-images"), &dir.path().join("raw-labels")).unwrap();
    assert_eq!(set.image(1), &[7, 8, 9, 10]);
    assert_eq!(set.labels, vec![0, 1, 2]);
}

fn load_pair(images: &[u8], labels: &[u8]) -> Result<ImageSet, MnistError> {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("images.gz"), dir.path().join("labels"));
    std::fs::write(&ip, images).unwrap();
    std::fs::write(&lp, labels).unwrap();
    ImageSet::load(&ip, &lp)
}

#[test]
fn each_defect_gets_its_own_error_naming_the_file() {
    let (images, labels) = synthetic_pair(4, 2, 2);
    // Swapped files: wrong magic.
    let err = load_pair(&labels, &images).unwrap_err();
    assert!(matches!(err, MnistError::BadMagic { .. }), "{err}");
    assert!(
        err.to_string().contains("images.gz") && err.to_string().contains("fetch the files"),
        "{err}"
    );
    // Truncated payload, raw and inside gzip.
    let err = load_pair(&images[..images.len() - 1], &labels).unwrap_err();
    assert!(matches!(err, MnistError::Truncated { .. }), "{err}");
    let err = load_pair(&gzip(&images[..images.len() - 3]), &labels).unwrap_err();
    assert!(matches!(err, MnistError::Truncated { .. }), "{err}");
    // A gzip stream cut short.
    let gz = gzip(&images);
    let err = load_pair(&gz[..gz.len() - 10], &labels).unwrap_err();
    assert!(matches!(err, MnistError::Gzip { .. }), "{err}");
    // Trailing bytes.
    let mut long = images.clone();
    long.push(0);
    assert!(matches!(
        load_pair(&long, &labels).unwrap_err(),
        MnistError::TrailingBytes { extra: 1, .. }
    ));
    // Counts that disagree.
    let (_, three_labels) = synthetic_pair(3, 2, 2);
    assert!(matches!(
        load_pair(&images, &three_labels).unwrap_err(),
        MnistError::CountMismatch {
            images: 4,
            labels: 3,
            ..
        }
    ));
    // A label outside 0..10.
    let bad_labels = idx_bytes(2049, &[4], &[1, 2, 10, 3]);
    assert!(matches!(
        load_pair(&images, &bad_labels).unwrap_err(),
        MnistError::LabelOutOfRange {
            index: 2,
            label: 10,
            ..
        }
    ));
    // Missing files say how to get them.
    let empty = tempfile::tempdir().unwrap();
    let err = Mnist::load(empty.path(), Dataset::Mnist).unwrap_err();
    assert!(matches!(err, MnistError::MissingFile { .. }));
    assert!(err.to_string().contains("MNIST_DIR"), "{err}");
}

#[test]
fn the_path_itself_is_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_dataset(dir.path());
    // The data set's own variable is suggested.
    let empty = tempfile::tempdir().unwrap();
    let err = Mnist::load(empty.path(), Dataset::FashionMnist)
        .unwrap_err()
        .to_string();
    assert!(err.contains("FASHION_MNIST_DIR"), "{err}");
    // A folder where a file belongs.
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::remove_file(&labels).unwrap();
    std::fs::create_dir(&labels).unwrap();
    let err = Mnist::load(dir.path(), Dataset::Mnist).unwrap_err();
    assert!(matches!(err, MnistError::NotAFile { what: "a folder", .. }), "{err}");
    std::fs::remove_dir(&labels).unwrap();
    // A symbolic link to itself.
    #[cfg(target_os = "linux")]
    {
        std::os::unix::fs::symlink(&labels, &labels).unwrap();
        let err = Mnist::load(dir.path(), Dataset::Mnist).unwrap_err();
        assert!(err.to_string().contains("symbolic link loop"), "{err}");
        std::fs::remove_file(&labels).unwrap();
    }
    // A folder that is not there, or a file in its place.
    let err = Mnist::load(&dir.path().join("nowhere"), Dataset::Mnist).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = Mnist::load(&dir.path().join("train-images-idx3-ubyte.gz"), Dataset::Mnist).unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");
    // An empty split is an error, not a set of zero images.
    let (images, labels_bytes) = synthetic_pair(0, 2, 2);
    let err = load_pair(&images, &labels_bytes).unwrap_err();
    assert!(matches!(err, MnistError::EmptySplit { .. }), "{err}");
}

#[test]
fn a_huge_raw_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_dataset(dir.path());
    // A sparse 2 GiB file takes no disk space: only its size says what it is.
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte.gz")).unwrap();
    let huge = std::fs::File::create(dir.path().join("train-images-idx3-ubyte")).unwrap();
    huge.set_len(2 << 30).unwrap();
    let err = Mnist::load(dir.path(), Dataset::Mnist).unwrap_err().to_string();
    assert!(
        err.contains("2147483648 bytes") && err.contains(&mnist::MAX_LOADED.to_string()),
        "{err}"
    );
}

#[test]
fn a_header_claiming_gigabytes_fails_fast() {
    let images = idx_bytes(2051, &[1_000_000, 28, 28], &[0; 100]);
    let (_, labels) = synthetic_pair(1, 2, 2);
    let err = load_pair(&gzip(&images), &labels).unwrap_err();
    assert!(matches!(err, MnistError::Truncated { found: 100, .. }), "{err}");
}

fn check_no_panic(images: &[u8], labels: &[u8]) {
    // Any outcome is fine as long as it is a value, and a valid set is consistent.
    if let Ok(set) = load_pair(images, labels) {
        assert_eq!(set.images.len(), set.len() * set.pixels());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), gz in any::<bool>()) {
        let (_, labels) = synthetic_pair(2, 2, 2);
        check_no_panic(&if gz { gzip(&bytes) } else { bytes.clone() }, &labels);
        // Random bytes behind a valid magic and dims exercise the length checks.
        let mut with_header = idx_bytes(2051, &[2, 2, 2], &[]);
        with_header.extend_from_slice(&bytes);
        check_no_panic(&with_header, &labels);
    }

    #[test]
    fn mutated_files_never_panic(cut in 0usize..200, flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..4), gz in any::<bool>()) {
        let (images, labels) = synthetic_pair(5, 3, 3);
        let mut file = if gz { gzip(&images) } else { images };
        for (pos, value) in flips {
            let len = file.len();
            file[pos % len] ^= value;
        }
        file.truncate(cut.max(1));
        check_no_panic(&file, &labels);
    }
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn mutated_real_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let dir = mnist::test_data_dir("MNIST_DIR");
    let images = std::fs::read(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = std::fs::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for case in 0..24 {
        let (mut img, mut lab) = (images.clone(), labels.clone());
        let target = if case % 2 == 0 { &mut img } else { &mut lab };
        match case % 3 {
            0 => target.truncate(rng.random_range(0..target.len())),
            1 => {
                let pos = rng.random_range(0..target.len());
                target[pos] ^= rng.random_range(1..=255u8);
            }
            _ => {
                // A header field of the decompressed file changed, recompressed.
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&target[..]), &mut raw).unwrap();
                let pos = rng.random_range(0..8);
                raw[pos] ^= 1 << rng.random_range(0..8);
                *target = gzip(&raw);
            }
        }
        check_no_panic(&img, &lab);
    }
}
