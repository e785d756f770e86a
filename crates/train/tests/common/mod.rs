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

/// A small net of convolutions over several channels for the 8x8 toy
/// images: conv 4 - ReLU - conv 32 - ReLU - conv 32 - ReLU - conv 16 - ReLU -
/// pool - affine 10. Its last convolution's output gradient is at most a
/// quarter nonzero (behind the pool) and the third's about half (behind a
/// ReLU, 32 channels): both backward passes go over the nonzero values, but
/// for the third's input gradient, which goes by Winograd (as its forward
/// pass does: 32 channels and filters of 3x3). The last goes by Winograd
/// too, taking on the ReLU before it and the ReLU and pool after it.
pub fn toy_channels_net() -> layers::NetSpec {
    layers::NetSpec::new(&[1, 8, 8])
        .conv_with(4, 3, 1, 1)
        .relu()
        .conv_with(32, 3, 1, 1)
        .relu()
        .conv_with(32, 3, 1, 1)
        .relu()
        .conv_with(16, 3, 1, 1)
        .relu()
        .pool(2)
        .affine(10)
}
