use crate::TrainError;
use tensor::{Element, Tensor};

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
            for (row, &i) in rows.chunks_exact_mut(self.features).zip(rows_indices) {
                for (value, &byte) in row.iter_mut().zip(self.image(i)) {
                    *value = T::from_pixel(byte);
                }
            }
        };
        rayon::join(|| fill(top, top_indices), || fill(bottom, bottom_indices));
    }

    /// Rows `start..start + count` (clamped to the end), as [`ImageData::gather`] builds them.
    pub fn gather_range<T: Element>(&self, start: usize, count: usize, x: &mut Tensor<T>, labels: &mut Vec<usize>) {
        let end = start.saturating_add(count).min(self.len());
        let start = start.min(end);
        x.resize(&[end - start, self.features]);
        x.as_mut_slice()
            .iter_mut()
            .zip(&self.pixels[start * self.features..end * self.features])
            .for_each(|(value, &byte)| *value = T::from_pixel(byte));
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
    fn normalization_is_the_books_division() {
        for byte in 0..=255u8 {
            assert_eq!(f32::from_pixel(byte), byte as f32 / 255.0);
            assert_eq!(f64::from_pixel(byte), byte as f64 / 255.0);
        }
        assert_eq!((f32::from_pixel(0), f32::from_pixel(255)), (0.0, 1.0));
    }
}
