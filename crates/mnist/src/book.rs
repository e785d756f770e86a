//! The book's `load_mnist(normalize=True, flatten=True, one_hot_label=False)`.

use crate::{Dataset, ImageSet, Mnist, MnistError};
use std::path::Path;

/// The options of the book's loader, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Pixels as `[0, 1]` floats instead of `[0, 255]`.
    pub normalize: bool,
    /// Each image as 784 values (`[N, 784]`) instead of `[N, 1, 28, 28]`.
    pub flatten: bool,
    /// Labels as one-hot rows (`[N, 10]`) instead of class indices (`[N]`).
    pub one_hot_label: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            normalize: true,
            flatten: true,
            one_hot_label: false,
        }
    }
}

/// One split as float arrays with their shapes, as NumPy would hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct BookArrays {
    pub x: Vec<f32>,
    pub x_shape: Vec<usize>,
    pub t: Vec<f32>,
    pub t_shape: Vec<usize>,
}

/// `((x_train, t_train), (x_test, t_test))` as the book's `load_mnist` returns them.
///
/// This materializes float copies (188 MB for the training images); the
/// trainer keeps the bytes and converts one batch at a time instead.
pub fn load_mnist(dir: &Path, dataset: Dataset, options: LoadOptions) -> Result<(BookArrays, BookArrays), MnistError> {
    let data = Mnist::load(dir, dataset)?;
    Ok((to_arrays(&data.train, options), to_arrays(&data.test, options)))
}

fn to_arrays(set: &ImageSet, options: LoadOptions) -> BookArrays {
    let scale = if options.normalize { 1.0 / 255.0 } else { 1.0 };
    let x = set.images.iter().map(|&b| b as f32 * scale).collect();
    let x_shape = if options.flatten {
        vec![set.len(), set.pixels()]
    } else {
        vec![set.len(), 1, set.rows, set.cols]
    };
    let classes = crate::dataset::CLASSES as usize;
    let (t, t_shape) = if options.one_hot_label {
        let mut t = vec![0.0; set.len() * classes];
        for (i, &label) in set.labels.iter().enumerate() {
            t[i * classes + label as usize] = 1.0;
        }
        (t, vec![set.len(), classes])
    } else {
        (set.labels.iter().map(|&l| l as f32).collect(), vec![set.len()])
    };
    BookArrays { x, x_shape, t, t_shape }
}
