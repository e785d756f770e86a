//! The real files, from MNIST_DIR (and FASHION_MNIST_DIR). Ignored when unset;
//! a failure, never a skip, when set to a folder without the files.

use mnist::{load_mnist, Dataset, LoadOptions, Mnist};

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn mnist_has_the_published_shape_and_statistics() {
    let dir = mnist::test_data_dir("MNIST_DIR");
    let data = Mnist::load_verified(&dir, Dataset::Mnist).unwrap();
    assert_eq!((data.train.len(), data.train.rows, data.train.cols), (60000, 28, 28));
    assert_eq!((data.test.len(), data.test.rows, data.test.cols), (10000, 28, 28));
    let mut counts = [0usize; 10];
    for &l in &data.train.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    let mean = data.train.images.iter().map(|&b| b as f64).sum::<f64>() / data.train.images.len() as f64;
    assert!((mean - 33.318).abs() < 5e-4, "mean pixel {mean}");
    assert_eq!(
        data.train.labels[..5],
        [5, 0, 4, 1, 9],
        "the book's first training labels"
    );
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn book_loader_options() {
    let dir = mnist::test_data_dir("MNIST_DIR");
    let options = LoadOptions {
        normalize: true,
        flatten: false,
        one_hot_label: true,
    };
    let (train, test) = load_mnist(&dir, Dataset::Mnist, options).unwrap();
    assert_eq!(train.x_shape, vec![60000, 1, 28, 28]);
    assert_eq!(test.t_shape, vec![10000, 10]);
    assert!(train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(&train.t[..10], &[0., 0., 0., 0., 0., 1., 0., 0., 0., 0.]);
}

#[test]
#[cfg_attr(not(fashion_data), ignore = "needs FASHION_MNIST_DIR")]
fn fashion_mnist_loads_through_the_same_code() {
    let dir = mnist::test_data_dir("FASHION_MNIST_DIR");
    let data = Mnist::load(&dir, Dataset::FashionMnist).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (60000, 10000));
    let mut counts = [0usize; 10];
    for &l in &data.train.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [6000; 10], "Fashion-MNIST is balanced");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn verified_loading_refuses_altered_and_mixed_up_files() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::copy(real.join(format!("{name}.gz")), dir.path().join(format!("{name}.gz"))).unwrap();
    }
    // The test labels in place of the training labels: another pinned file.
    std::fs::copy(
        real.join("t10k-labels-idx1-ubyte.gz"),
        dir.path().join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let err = Mnist::load_verified(dir.path(), Dataset::Mnist)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train-labels-idx1-ubyte.gz: not MNIST's train-labels-idx1-ubyte"),
        "{err}"
    );
    assert!(
        err.contains("it is MNIST's t10k-labels-idx1-ubyte") && err.contains("MNIST_DIR"),
        "{err}"
    );
    // One label changed: the structure is fine, the checksum is not.
    let labels = mnist::read_idx(&real.join("t10k-labels-idx1-ubyte.gz"), mnist::IdxKind::Labels).unwrap();
    let mut raw = vec![0, 0, 8, 1, 0, 0, 0x27, 0x10];
    raw.extend_from_slice(&labels.data);
    raw[100] = (raw[100] + 1) % 10;
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &raw).unwrap();
    let err = Mnist::load_split_verified(dir.path(), Dataset::Mnist, mnist::Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not MNIST's t10k-labels-idx1-ubyte") && !err.contains("(it is"),
        "{err}"
    );
    // Structure alone (the unverified loader) accepts it.
    assert!(Mnist::load_split(dir.path(), Dataset::Mnist, mnist::Split::Test).is_ok());
}
