//! Data augmentation (chapter 8): each training image, as its batch is
//! gathered, moved by a small random affine map — a shift of a pixel or
//! two, a rotation of some degrees, a change of scale of some percent —
//! resampled bilinearly, so that the net sees a slightly different digit at
//! every step.
//!
//! The maps are drawn one image after another from their own stream of the
//! run's seed (stream 3), on the training loop's thread; the resampling is
//! then spread over the threads, each image's from its own map. So a run is
//! bit-identical for any `--threads`.
//!
//! The map sends an input point `q` to `p = s R(theta) (q - c) + c + t` (`c`
//! the image's centre). Each output pixel is read from the input at
//! `q = R(-theta) (p - c - t) / s + c`, between the four nearest pixels,
//! weighted by nearness; outside the image the input is 0, MNIST's
//! background.

use crate::TrainError;
use rand::Rng;
use rayon::prelude::*;
use tensor::Element;

/// How far the random maps of [`crate::TrainConfig::augment`] may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// The largest shift along each axis, in pixels.
    pub shift: f64,
    /// The largest rotation either way, in degrees.
    pub rotate: f64,
    /// The largest change of scale either way, as a fraction (0.1: from 90%
    /// to 110%).
    pub scale: f64,
}

impl Augment {
    /// The distortions of strength 1 (a shift of up to 2 pixels, a rotation
    /// of up to 10 degrees, a scale from 90% to 110%), each times `strength`.
    pub fn with_strength(strength: f64) -> Self {
        Augment {
            shift: 2.0 * strength,
            rotate: 10.0 * strength,
            scale: 0.1 * strength,
        }
    }

    /// Refuses bounds that are not finite, negative, or large enough to
    /// move a digit out of its image (a shift of more than 14 pixels, a
    /// turn past 180 degrees, a scale of 0 or below).
    pub fn validate(&self) -> Result<(), TrainError> {
        let check = |field: &'static str, value: f64, most: f64| {
            if value.is_finite() && (0.0..=most).contains(&value) {
                Ok(())
            } else {
                Err(TrainError::setting(
                    field,
                    layers::readable(value),
                    format!("between 0 and {most}"),
                ))
            }
        };
        check("augment shift", self.shift, 14.0)?;
        check("augment rotate", self.rotate, 180.0)?;
        check("augment scale", self.scale, 0.9)
    }

    /// One image's map, drawn from `rng`: shift, angle and scale each
    /// uniform within the bounds.
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> Warp {
        let mut within = |bound: f64| {
            if bound > 0.0 {
                rng.random_range(-bound..=bound)
            } else {
                0.0
            }
        };
        let (tx, ty) = (within(self.shift), within(self.shift));
        let theta = within(self.rotate).to_radians();
        let scale = 1.0 + within(self.scale);
        // The inverse map's matrix: R(-theta) / s.
        let (sin, cos) = theta.sin_cos();
        Warp {
            inverse: [cos / scale, sin / scale, -sin / scale, cos / scale],
            shift: [tx, ty],
        }
    }
}

/// One image's map, as its inverse: output pixel to input point.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Warp {
    /// `R(-theta) / s`, row-major.
    inverse: [f64; 4],
    /// `t`, in pixels (x, y).
    shift: [f64; 2],
}

/// The images' layout: channels of `height x width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// From a network's input shape: `[C, H, W]`, or `[F]` for a square
    /// image of one channel (the mlp's 784 = 28 x 28). `None` otherwise.
    pub(crate) fn of_input(input: &[usize]) -> Option<Self> {
        match *input {
            [channels, height, width] => Some(ImageShape {
                channels,
                height,
                width,
            }),
            [features] => {
                let side = (features as f64).sqrt().round() as usize;
                (side * side == features && side > 1).then_some(ImageShape {
                    channels: 1,
                    height: side,
                    width: side,
                })
            }
            _ => None,
        }
    }

    fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Resamples every image of `batch` (rows of `shape.len()` values) by its
/// map into the same row of `out`. Images are spread over rayon; each is
/// computed the same way on any thread.
pub(crate) fn warp_batch<T: Element>(batch: &[T], out: &mut [T], warps: &[Warp], shape: ImageShape) {
    let len = shape.len();
    batch
        .par_chunks(len)
        .zip(out.par_chunks_mut(len))
        .zip(warps.par_iter())
        .for_each(|((image, warped), warp)| warp_image(image, warped, warp, shape));
}

/// [`warp_batch`] for one image.
fn warp_image<T: Element>(image: &[T], warped: &mut [T], warp: &Warp, shape: ImageShape) {
    let ImageShape {
        channels,
        height,
        width,
    } = shape;
    let (cx, cy) = ((width as f64 - 1.0) / 2.0, (height as f64 - 1.0) / 2.0);
    let [a, b, c, d] = warp.inverse;
    let plane = height * width;
    for y in 0..height {
        for x in 0..width {
            let (px, py) = (x as f64 - cx - warp.shift[0], y as f64 - cy - warp.shift[1]);
            let (qx, qy) = (a * px + b * py + cx, c * px + d * py + cy);
            let (x0, y0) = (qx.floor(), qy.floor());
            let (fx, fy) = (qx - x0, qy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            // The four neighbours and their weights; those outside read 0.
            let taps = [
                (x0, y0, (1.0 - fx) * (1.0 - fy)),
                (x0 + 1, y0, fx * (1.0 - fy)),
                (x0, y0 + 1, (1.0 - fx) * fy),
                (x0 + 1, y0 + 1, fx * fy),
            ];
            for channel in 0..channels {
                let source = &image[channel * plane..(channel + 1) * plane];
                let mut value = 0.0;
                for &(tx, ty, weight) in &taps {
                    if tx >= 0 && ty >= 0 && (tx as usize) < width && (ty as usize) < height {
                        value += weight * source[ty as usize * width + tx as usize].to_f64();
                    }
                }
                warped[channel * plane + y * width + x] = T::from_f64(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SHAPE: ImageShape = ImageShape {
        channels: 1,
        height: 8,
        width: 8,
    };

    fn square() -> Vec<f64> {
        // A 2x2 square of ink at columns 3-4, rows 2-3.
        (0..64)
            .map(|i| {
                if (3..5).contains(&(i % 8)) && (2..4).contains(&(i / 8)) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn the_identity_map_leaves_an_image_as_it_is() {
        let identity = Warp {
            inverse: [1.0, 0.0, 0.0, 1.0],
            shift: [0.0, 0.0],
        };
        let mut out = vec![0.0; 64];
        warp_batch(&square(), &mut out, &[identity], SHAPE);
        assert_eq!(out, square());
    }

    #[test]
    fn a_whole_pixel_shift_moves_the_ink_and_a_half_pixel_one_spreads_it() {
        let shifted = |tx: f64, ty: f64| {
            let warp = Warp {
                inverse: [1.0, 0.0, 0.0, 1.0],
                shift: [tx, ty],
            };
            let mut out = vec![0.0; 64];
            warp_batch(&square(), &mut out, &[warp], SHAPE);
            out
        };
        let moved = shifted(1.0, 2.0);
        let expected: Vec<f64> = (0..64)
            .map(|i| {
                if (4..6).contains(&(i % 8)) && (4..6).contains(&(i / 8)) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(moved, expected);
        // Half a pixel right: columns 3 and 5 half inked, column 4 whole.
        let half = shifted(0.5, 0.0);
        assert_eq!((half[2 * 8 + 3], half[2 * 8 + 4], half[2 * 8 + 5]), (0.5, 1.0, 0.5));
        assert_eq!(half.iter().sum::<f64>(), 4.0, "bilinear keeps the ink inside the image");
    }

    #[test]
    fn a_quarter_turn_about_the_centre_turns_the_image() {
        let warp = Warp {
            inverse: [0.0, 1.0, -1.0, 0.0], // R(-90 degrees)
            shift: [0.0, 0.0],
        };
        let image: Vec<f64> = (0..64).map(|i| i as f64).collect();
        let mut out = vec![0.0; 64];
        warp_batch(&image, &mut out, &[warp], SHAPE);
        // Output (x, y) reads input (y, 7 - x) about the centre (3.5, 3.5).
        for y in 0..8 {
            for x in 0..8 {
                assert!((out[y * 8 + x] - image[(7 - x) * 8 + y]).abs() < 1e-12, "({x}, {y})");
            }
        }
    }

    #[test]
    fn draws_stay_within_their_bounds_and_follow_the_seed() {
        let augment = Augment::with_strength(1.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let warps: Vec<Warp> = (0..1000).map(|_| augment.draw(&mut rng)).collect();
        for w in &warps {
            assert!(w.shift.iter().all(|t| t.abs() <= 2.0));
            // |R / s| = 1 / s, with s in [0.9, 1.1].
            let inverse_scale = (w.inverse[0].powi(2) + w.inverse[1].powi(2)).sqrt();
            assert!((1.0 / 1.1 - 1e-12..=1.0 / 0.9 + 1e-12).contains(&inverse_scale));
            let angle = w.inverse[1].atan2(w.inverse[0]).to_degrees();
            assert!(angle.abs() <= 10.0 + 1e-9, "{angle}");
        }
        let mut again = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert_eq!(warps[0], augment.draw(&mut again));
        assert!(Augment::with_strength(-1.0).validate().is_err());
        assert!(Augment::with_strength(f64::NAN).validate().is_err());
        assert!(Augment::with_strength(1.0).validate().is_ok());
        assert!(Augment::with_strength(0.0).validate().is_ok());
    }

    #[test]
    fn image_shapes_come_from_the_input() {
        assert_eq!(
            ImageShape::of_input(&[784]),
            Some(ImageShape {
                channels: 1,
                height: 28,
                width: 28
            })
        );
        assert_eq!(ImageShape::of_input(&[3, 32, 32]).map(|s| s.len()), Some(3072));
        assert_eq!(ImageShape::of_input(&[2]), None);
        assert_eq!(ImageShape::of_input(&[10, 2]), None);
    }
}
