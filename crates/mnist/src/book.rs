//! The book's `load_mnist(normalize=True, flatten=True, one_hot_label=False)`.

use crate::{Dataset, ImageSet, Mnist, MnistError};
use std::path::Path;

/// The options of the book's loader, with its defaults.
///
/// ```
/// use mnist::LoadOptions;
/// // The book's defaults: normalize=True, flatten=True, one_hot_label=False.
/// let options = LoadOptions::default();
/// assert!(options.normalize && options.flatten && !options.one_hot_label);
/// // load_mnist(one_hot_label=True)
/// let one_hot = LoadOptions { one_hot_label: true, ..LoadOptions::default() };
/// assert_ne!(one_hot, options);
/// ```
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
    /// The images, row-major: `byte / 255` in `[0, 1]` with `normalize`,
    /// else the byte values `0.0..=255.0`.
    pub x: Vec<f32>,
    /// `[N, 784]` with `flatten`, else `[N, 1, 28, 28]`.
    pub x_shape: Vec<usize>,
    /// The labels: class indices as floats, or with `one_hot_label` one row
    /// of [`crate::CLASSES`] values per image, 1 at the class and 0 elsewhere.
    pub t: Vec<f32>,
    /// `[N]`, or `[N, 10]` with `one_hot_label`.
    pub t_shape: Vec<usize>,
}

/// `((x_train, t_train), (x_test, t_test))` as the book's `load_mnist` returns them.
///
/// This materializes float copies (188 MB for the training images); the
/// trainer keeps the bytes and converts one batch at a time instead.
///
/// ```no_run
/// use mnist::{load_mnist, Dataset, LoadOptions};
/// use std::path::Path;
/// // Needs the four files in the folder.
/// let (train, test) = load_mnist(Path::new("data/mnist"), Dataset::Mnist, LoadOptions::default())?;
/// assert_eq!(train.x_shape, [60_000, 784]);
/// assert_eq!(test.t_shape, [10_000]);
/// # Ok::<(), mnist::MnistError>(())
/// ```
pub fn load_mnist(dir: &Path, dataset: Dataset, options: LoadOptions) -> Result<(BookArrays, BookArrays), MnistError> {
    let data = Mnist::load(dir, dataset)?;
    Ok((to_arrays(&data.train, options), to_arrays(&data.test, options)))
}

/// A pixel byte as the book's float: `byte / 255` (one correctly rounded
/// division, as NumPy's `x / 255.0`) when normalizing, else the byte's value.
/// Multiplying by `1.0 / 255.0` instead would round twice and land 1 ulp off
/// on some bytes.
fn pixel_value(byte: u8, normalize: bool) -> f32 {
    if normalize {
        byte as f32 / 255.0
    } else {
        byte as f32
    }
}

fn to_arrays(set: &ImageSet, options: LoadOptions) -> BookArrays {
    let x = set.images.iter().map(|&b| pixel_value(b, options.normalize)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pixels;

    /// One 16 x 16 image holding every byte value once, labelled 3.
    fn every_byte() -> ImageSet {
        let bytes: Vec<u8> = (0..=255).collect();
        ImageSet {
            images: Pixels::copy_of(&bytes),
            labels: vec![3],
            rows: 16,
            cols: 16,
        }
    }

    #[test]
    fn normalize_divides_every_byte_by_255_exactly() {
        let arrays = to_arrays(&every_byte(), LoadOptions::default());
        assert_eq!(arrays.x_shape, [1, 256]);
        for (byte, &x) in (0..=255u8).zip(&arrays.x) {
            let book = byte as f32 / 255.0;
            assert_eq!(x.to_bits(), book.to_bits(), "byte {byte}: {x} != {book}");
        }
        // The product by 1 / 255 this replaced is 1 ulp off on some bytes,
        // so the comparison above can tell the two apart.
        assert!((0..=255u8).any(|b| b as f32 * (1.0f32 / 255.0) != b as f32 / 255.0));
    }

    #[test]
    fn without_normalize_pixels_keep_their_byte_value() {
        let options = LoadOptions {
            normalize: false,
            flatten: false,
            one_hot_label: true,
        };
        let arrays = to_arrays(&every_byte(), options);
        assert_eq!(arrays.x_shape, [1, 1, 16, 16]);
        assert!((0..=255u8).zip(&arrays.x).all(|(byte, &x)| x == byte as f32));
        assert_eq!(arrays.t_shape, [1, 10]);
        assert_eq!(arrays.t, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
