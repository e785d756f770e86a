//! The pixel bytes of a split, in memory the kernel is asked to back with
//! 2 MiB pages.
//!
//! Training reads 100 random images a step from the 47 MB of MNIST's
//! training set, which span some 11,500 pages of 4 KiB: nearly every image
//! is a miss in the TLB, and on a virtual machine each miss is a two-level
//! page walk. In 2 MiB pages the whole set is 23 entries. With the kernel's
//! transparent huge pages in `madvise` mode (the usual default), this is
//! what asks for them; the gather of a training step went from 52 to 33 us
//! on the 2-core machine measured (`benches/examples/step_loop.rs`).
//!
//! Where the mapping or the advice is refused, or on another OS, the bytes
//! live in ordinary memory: only the speed differs.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes that read like a `[u8]` (through `Deref`).
pub struct Pixels(Backing);

enum Backing {
    Mapped(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Pixels {
    /// `len` zero bytes, in huge pages where the system gives them; `None`
    /// where the memory cannot be had at all.
    pub fn try_zeroed(len: usize) -> Option<Pixels> {
        if len == 0 {
            return Some(Pixels(Backing::Heap(Vec::new())));
        }
        match memmap2::MmapOptions::new().len(len).map_anon() {
            Ok(map) => {
                // Advice only: refused (an old kernel, huge pages off), the
                // map still works in 4 KiB pages.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                Some(Pixels(Backing::Mapped(map)))
            }
            Err(_) => {
                let mut bytes = Vec::new();
                bytes.try_reserve_exact(len).ok()?;
                bytes.resize(len, 0);
                Some(Pixels(Backing::Heap(bytes)))
            }
        }
    }

    /// A copy of `bytes`, in huge pages where the system gives them.
    ///
    /// # Panics
    /// When the memory cannot be had (as `Vec` would).
    pub fn copy_of(bytes: &[u8]) -> Pixels {
        let mut pixels = Pixels::try_zeroed(bytes.len()).expect("memory for a copy of bytes already held");
        pixels.copy_from_slice(bytes);
        pixels
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(bytes: Vec<u8>) -> Self {
        Pixels(Backing::Heap(bytes))
    }
}

impl Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Backing::Mapped(map) => map,
            Backing::Heap(bytes) => bytes,
        }
    }
}

impl DerefMut for Pixels {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Backing::Mapped(map) => map,
            Backing::Heap(bytes) => bytes,
        }
    }
}

impl Clone for Pixels {
    fn clone(&self) -> Self {
        Pixels::copy_of(self)
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Pixels {}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pixels({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_clones_and_compares_as_bytes() {
        for len in [0, 1, 4096, 3 << 20] {
            let mut pixels = Pixels::try_zeroed(len).unwrap();
            assert_eq!(pixels.len(), len);
            assert!(pixels.iter().all(|&b| b == 0));
            for (i, byte) in pixels.iter_mut().enumerate() {
                *byte = (i % 251) as u8;
            }
            let copy = pixels.clone();
            assert_eq!(copy, pixels);
            assert_eq!(Pixels::from(pixels.to_vec()), pixels);
            if len > 0 {
                pixels[len - 1] ^= 1;
                assert_ne!(copy, pixels);
            }
        }
    }
}
