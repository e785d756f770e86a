#![allow(dead_code)]
//! Synthetic IDX files for the tests.

use flate2::{write::GzEncoder, Compression};
use std::io::Write;
use std::path::Path;

pub fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// `count` images of `rows x cols` whose pixels are `(i * 7 + p) % 256`, labels `i % 10`.
pub fn synthetic_pair(count: u32, rows: u32, cols: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels = (rows * cols) as usize;
    let payload: Vec<u8> = (0..count as usize * pixels)
        .map(|k| ((k / pixels) * 7 + k % pixels) as u8)
        .collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    (
        idx_bytes(2051, &[count, rows, cols], &payload),
        idx_bytes(2049, &[count], &labels),
    )
}

/// Writes a synthetic data set (all four files, gzip) into `dir`.
pub fn write_synthetic_dataset(dir: &Path) {
    let (train_images, train_labels) = synthetic_pair(12, 4, 3);
    let (test_images, test_labels) = synthetic_pair(5, 4, 3);
    for (name, bytes) in [
        ("train-images-idx3-ubyte.gz", train_images),
        ("train-labels-idx1-ubyte.gz", train_labels),
        ("t10k-images-idx3-ubyte.gz", test_images),
        ("t10k-labels-idx1-ubyte.gz", test_labels),
    ] {
        std::fs::write(dir.join(name), gzip(&bytes)).unwrap();
    }
}
