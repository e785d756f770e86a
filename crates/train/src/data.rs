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

/// A labelled image set, borrowed as bytes: `len` images of `features`
/// pixels (0..=255) and one label per image.
#[derive(Debug, Clone, Copy)]
pub struct ImageData<'a> {
    pixels: &'a [u8],
    labels: &'a [u8],
    features: usize,
}

impl<'a> ImageData<'a> {
    pub fn new(pixels: &'a [u8], labels: &'a [u8], features: usize) -> Result<Self, TrainError> {
        if features == 0 || pixels.len() != labels.len() * features {
            return Err(TrainError::InvalidConfig(format!(
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

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn features(&self) -> usize {
        self.features
    }

    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    pub fn image(&self, i: usize) -> &'a [u8] {
        &self.pixels[i * self.features..(i + 1) * self.features]
    }

    /// The largest label plus one.
    pub fn classes(&self) -> usize {
        self.labels.iter().copied().max().map_or(0, |m| m as usize + 1)
    }

    /// The first `count` images (all of them if there are fewer).
    pub fn first(&self, count: usize) -> ImageData<'a> {
        let count = count.min(self.len());
        ImageData {
            pixels: &self.pixels[..count * self.features],
            labels: &self.labels[..count],
            features: self.features,
        }
    }

    /// Writes images `indices` into `x` (`[indices.len(), features]`, reusing
    /// its allocation) as `[0, 1]` values ([`Element::from_pixel`]), and
    /// their labels into `labels`: the one way a batch is built. Indices must
    /// be in range (the caller draws them).
    pub fn gather<T: Element>(&self, indices: &[usize], x: &mut Tensor<T>, labels: &mut Vec<usize>) {
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

    /// Rows `start..start + count` (clamped to the end), as [`ImageData::gather`] builds them.
    pub fn gather_range<T: Element>(&self, start: usize, count: usize, x: &mut Tensor<T>, labels: &mut Vec<usize>) {
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
    fn normalization_is_the_books_division() {
        for byte in 0..=255u8 {
            assert_eq!(f32::from_pixel(byte), byte as f32 / 255.0);
            assert_eq!(f64::from_pixel(byte), byte as f64 / 255.0);
        }
        assert_eq!((f32::from_pixel(0), f32::from_pixel(255)), (0.0, 1.0));
    }
}
