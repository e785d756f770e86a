#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A learnable toy set: `len` 8x8 images of noise with a bright 2x2 patch
/// whose position depends on the label (0..10).
pub fn toy_set(len: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; len * 64];
    let mut labels = vec![0u8; len];
    for i in 0..len {
        let label = rng.random_range(0..10u8);
        labels[i] = label;
        let image = &mut pixels[i * 64..(i + 1) * 64];
        for p in image.iter_mut() {
            *p = rng.random_range(0..60);
        }
        let (row, col) = ((label / 4) as usize * 2 + 1, (label % 4) as usize * 2);
        for (dr, dc) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            image[(row + dr) * 8 + col + dc] = 255;
        }
    }
    (pixels, labels)
}
