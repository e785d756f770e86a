use crate::TrainError;
use tensor::{Element, Tensor};

/// Images a batch gather reads side by side (see [`ImageData::gather`]).
const GATHER_GROUP: usize = 4;
/// Bytes of one image the gather converts before it turns to the next: a
/// cache line's worth.
const PIECE_BYTES: usize = 64;

/// `values[i] = bytes[i] / 255` ([`Element::from_pixel`]).
fn to_values<T: Element>(values: &mut [T], bytes: &[u8]) {
    for (value, &byte) in values.iter_mut().zip(bytes) {
        *value = T::from_pixel(byte);
    }
}

/// A labelled data set the trainer draws batches from: `len` examples of
/// `features` values each, with a class label each. [`ImageData`] holds
/// images as bytes (MNIST, Fashion-MNIST), [`ArrayData`] any numbers; a
/// data set of one's own implements these few methods.
///
/// Implementations are cheap to clone (borrowed slices): the trainer keeps
/// the training set's first `train_size` examples as a data set of its own.
pub trait Dataset: Clone + Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;

    /// `true` when there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per example: the model's input size.
    fn features(&self) -> usize;

    /// The class of example `i` (`i < len`).
    fn label(&self, i: usize) -> usize;

    /// The largest label plus one (0 when empty).
    fn classes(&self) -> usize {
        (0..self.len())
            .map(|i| self.label(i).saturating_add(1))
            .max()
            .unwrap_or(0)
    }

    /// The first `count` examples (all of them if there are fewer).
    fn first(&self, count: usize) -> Self;

    /// Writes examples `indices` into `x` as rows (`[indices.len(),
    /// features]`, reusing its allocation) and their labels into `labels`:
    /// the one way a training batch is built. Indices are in range (the
    /// trainer draws them).
    fn gather<T: Element>(&self, indices: &[usize], x: &mut Tensor<T>, labels: &mut Vec<usize>);

    /// Examples `start..start + count` (clamped to the end), as
    /// [`Dataset::gather`] builds them: the evaluation's chunks.
    fn gather_range<T: Element>(&self, start: usize, count: usize, x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        let end = start.saturating_add(count).min(self.len());
        let indices: Vec<usize> = (start.min(end)..end).collect();
        self.gather(&indices, x, labels);
    }
}

/// A labelled data set of numbers, borrowed: `len` rows of `features`
/// values (any [`Element`], converted to the model's when gathered) and one
/// label per row. A user's own data trains through it as MNIST does:
///
/// ```
/// use train::{ArrayData, Dataset};
///
/// // Two examples of three features: classes 0 and 1.
/// let values = [0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0];
/// let labels = [0, 1];
/// let data = ArrayData::new(&values, &labels, 3).unwrap();
/// assert_eq!((data.len(), data.features(), data.classes()), (2, 3, 2));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ArrayData<'a, V> {
    values: &'a [V],
    labels: &'a [usize],
    features: usize,
}

impl<'a, V: Element> ArrayData<'a, V> {
    /// `values` holds `labels.len()` rows of `features` values, row after row.
    /// Refuses ([`TrainError::Data`]) values that do not make whole rows,
    /// `features == 0`, and values that are not finite.
    pub fn new(values: &'a [V], labels: &'a [usize], features: usize) -> Result<Self, TrainError> {
        if features == 0 || values.len() != labels.len().saturating_mul(features) {
            return Err(TrainError::Data(format!(
                "{} values do not make {} rows of {features} features",
                values.len(),
                labels.len()
            )));
        }
        // A label is a class index: one past the widest output a model can
        // have is no class of any model (and `label + 1` stays far from overflow).
        if let Some(at) = labels.iter().position(|&label| label >= layers::MAX_WIDTH) {
            return Err(TrainError::Data(format!(
                "label {} of row {at} is not a class index (0 to {})",
                labels[at],
                layers::MAX_WIDTH - 1
            )));
        }
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(TrainError::Data(format!(
                "value {at} (row {}) is {}; a data set must hold finite numbers",
                at / features,
                values[at]
            )));
        }
        Ok(ArrayData {
            values,
            labels,
            features,
        })
    }

    /// Row `i`'s values. Panics if `i >= len`.
    pub fn row(&self, i: usize) -> &'a [V] {
        &self.values[i * self.features..(i + 1) * self.features]
    }

    /// Number of rows (also [`Dataset::len`], here without the trait in scope).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per row.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Row `i`'s class. Panics if `i >= len`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }
}

impl<V: Element> Dataset for ArrayData<'_, V> {
    fn len(&self) -> usize {
        ArrayData::len(self)
    }

    fn features(&self) -> usize {
        ArrayData::features(self)
    }

    fn label(&self, i: usize) -> usize {
        ArrayData::label(self, i)
    }

    fn first(&self, count: usize) -> Self {
        let count = count.min(self.len());
        ArrayData {
            values: &self.values[..count * self.features],
            labels: &self.labels[..count],
            features: self.features,
        }
    }

    fn gather<T: Element>(&self, indices: &[usize], x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        x.resize(&[indices.len(), self.features]);
        labels.clear();
        labels.extend(indices.iter().map(|&i| self.labels[i]));
        for (row, &i) in x.as_mut_slice().chunks_exact_mut(self.features).zip(indices) {
            for (value, &v) in row.iter_mut().zip(self.row(i)) {
                *value = T::from_f64(v.to_f64());
            }
        }
    }

    fn gather_range<T: Element>(&self, start: usize, count: usize, x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        let end = start.saturating_add(count).min(self.len());
        let start = start.min(end);
        x.resize(&[end - start, self.features]);
        for (value, &v) in x
            .as_mut_slice()
            .iter_mut()
            .zip(&self.values[start * self.features..end * self.features])
        {
            *value = T::from_f64(v.to_f64());
        }
        labels.clear();
        labels.extend_from_slice(&self.labels[start..end]);
    }
}

/// A labelled image set, borrowed as bytes: `len` images of `features`
/// pixels (0..=255) and one label per image.
#[derive(Debug, Clone, Copy)]
pub struct ImageData<'a> {
    pixels: &'a [u8],
    labels: &'a [u8],
    features: usize,
}

impl<'a> ImageData<'a> {
    /// `pixels` holds `labels.len()` images of `features` bytes, one after
    /// another. Refuses ([`TrainError::Data`]) pixels that do not make whole
    /// images, and `features == 0`.
    pub fn new(pixels: &'a [u8], labels: &'a [u8], features: usize) -> Result<Self, TrainError> {
        if features == 0 || pixels.len() != labels.len().saturating_mul(features) {
            return Err(TrainError::Data(format!(
                "{} pixels do not make {} images of {features} pixels",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(ImageData {
            pixels,
            labels,
            features,
        })
    }

    /// Number of images (also [`Dataset::len`], here without the trait in scope).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Image `i`'s class. Panics if `i >= len`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// The largest label plus one (0 when empty).
    pub fn classes(&self) -> usize {
        self.labels.iter().copied().max().map_or(0, |m| m as usize + 1)
    }

    /// Image `i`'s pixels. Panics if `i >= len`.
    pub fn image(&self, i: usize) -> &'a [u8] {
        &self.pixels[i * self.features..(i + 1) * self.features]
    }
}

impl Dataset for ImageData<'_> {
    fn len(&self) -> usize {
        ImageData::len(self)
    }

    fn features(&self) -> usize {
        ImageData::features(self)
    }

    fn label(&self, i: usize) -> usize {
        ImageData::label(self, i)
    }

    fn classes(&self) -> usize {
        ImageData::classes(self)
    }

    fn first(&self, count: usize) -> Self {
        let count = count.min(self.len());
        ImageData {
            pixels: &self.pixels[..count * self.features],
            labels: &self.labels[..count],
            features: self.features,
        }
    }

    /// Images as `[0, 1]` values ([`Element::from_pixel`]).
    fn gather<T: Element>(&self, indices: &[usize], x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        x.resize(&[indices.len(), self.features]);
        labels.clear();
        labels.extend(indices.iter().map(|&i| self.labels[i] as usize));
        // Two halves, on two threads when the pool has them: the copy is
        // bound by cache misses into the image set and by the division, both
        // of which a second core halves.
        let half = indices.len() / 2;
        let (top, bottom) = x.as_mut_slice().split_at_mut(half * self.features);
        let (top_indices, bottom_indices) = indices.split_at(half);
        let fill = |rows: &mut [T], rows_indices: &[usize]| {
            // Images in groups, 64 bytes of each in turn: their cache misses
            // (random images in tens of MB) are then in flight together,
            // where one image at a time waits for each miss in turn.
            let mut groups = rows.chunks_exact_mut(GATHER_GROUP * self.features);
            let group_indices = rows_indices.chunks_exact(GATHER_GROUP);
            let rest_indices = group_indices.remainder();
            for (group, group_indices) in (&mut groups).zip(group_indices) {
                let images: [&[u8]; GATHER_GROUP] = std::array::from_fn(|g| self.image(group_indices[g]));
                for piece in (0..self.features).step_by(PIECE_BYTES) {
                    let end = (piece + PIECE_BYTES).min(self.features);
                    for (g, image) in images.iter().enumerate() {
                        let row = &mut group[g * self.features..(g + 1) * self.features];
                        to_values(&mut row[piece..end], &image[piece..end]);
                    }
                }
            }
            let rest = groups.into_remainder();
            for (row, &i) in rest.chunks_exact_mut(self.features).zip(rest_indices) {
                to_values(row, self.image(i));
            }
        };
        rayon::join(|| fill(top, top_indices), || fill(bottom, bottom_indices));
    }

    fn gather_range<T: Element>(&self, start: usize, count: usize, x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        let end = start.saturating_add(count).min(self.len());
        let start = start.min(end);
        x.resize(&[end - start, self.features]);
        to_values(
            x.as_mut_slice(),
            &self.pixels[start * self.features..end * self.features],
        );
        labels.clear();
        labels.extend(self.labels[start..end].iter().map(|&l| l as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_normalizes_and_reuses_the_buffer() {
        let pixels = [0u8, 255, 51, 102, 7, 8];
        let labels = [3u8, 1, 4];
        let data = ImageData::new(&pixels, &labels, 2).unwrap();
        let mut x = Tensor::<f32>::zeros(&[10, 2]);
        let before = x.as_slice().as_ptr();
        let mut t = Vec::with_capacity(10);
        data.gather(&[1, 0, 1], &mut x, &mut t);
        assert_eq!(x.shape(), &[3, 2]);
        assert_eq!(x.as_slice(), &[0.2, 0.4, 0.0, 1.0, 0.2, 0.4]);
        assert_eq!(t, vec![1, 3, 1]);
        assert_eq!(x.as_slice().as_ptr(), before);
        data.gather_range(2, 5, &mut x, &mut t);
        assert_eq!(x.shape(), &[1, 2]);
        assert_eq!(t, vec![4]);
        assert_eq!(data.classes(), 5);
        assert!(ImageData::new(&pixels, &labels, 4).is_err());
        assert_eq!(data.first(2).len(), 2);
        assert_eq!(data.first(9).len(), 3);
    }

    #[test]
    fn a_gather_in_groups_is_each_image_in_turn() {
        // Images of 150 bytes (lines of 64 and a partial one), batches that
        // fill whole groups of each half, or leave a rest, or hold no group.
        let features = 150;
        let count = 23;
        let pixels: Vec<u8> = (0..count * features).map(|i| (i * 7 % 251) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        let data = ImageData::new(&pixels, &labels, features).unwrap();
        let (mut x, mut t) = (Tensor::<f64>::zeros(&[1, features]), Vec::new());
        for batch in [1, 3, 8, 11, 19, 40] {
            let indices: Vec<usize> = (0..batch).map(|b| (b * 13 + 5) % count).collect();
            data.gather(&indices, &mut x, &mut t);
            let expected: Vec<f64> = indices
                .iter()
                .flat_map(|&i| data.image(i).iter().map(|&byte| f64::from_pixel(byte)))
                .collect();
            assert_eq!(x.shape(), &[batch, features]);
            assert_eq!(x.as_slice(), &expected[..], "batch of {batch}");
            let expected_labels: Vec<usize> = indices.iter().map(|&i| data.label(i)).collect();
            assert_eq!(t, expected_labels);
        }
    }

    #[test]
    fn array_data_refuses_what_no_model_can_take() {
        let values = [0.5f32, 1.0, -1.0, 2.0];
        assert!(ArrayData::new(&values, &[0, 1], 2).is_ok());
        // A label past any model's outputs (it would overflow `label + 1`).
        assert!(matches!(
            ArrayData::new(&values, &[0, usize::MAX], 2),
            Err(TrainError::Data(_))
        ));
        assert!(ArrayData::new(&values, &[0, 1], 3).is_err(), "rows that do not fit");
        let nan = [0.5f32, f32::NAN, 1.0, 1.0];
        assert!(ArrayData::new(&nan, &[0, 1], 2).is_err(), "a value that is not finite");
        let data = ArrayData::new(&values, &[3, 1], 2).unwrap();
        assert_eq!(
            (data.len(), data.features(), data.label(0), Dataset::classes(&data)),
            (2, 2, 3, 4)
        );
    }

    #[test]
    fn normalization_is_the_books_division() {
        for byte in 0..=255u8 {
            assert_eq!(f32::from_pixel(byte), byte as f32 / 255.0);
            assert_eq!(f64::from_pixel(byte), byte as f64 / 255.0);
        }
        assert_eq!((f32::from_pixel(0), f32::from_pixel(255)), (0.0, 1.0));
    }
}
