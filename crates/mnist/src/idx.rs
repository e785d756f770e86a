//! The IDX format (LeCun et al.): a big-endian header, then raw values.
//!
//! ```text
//! magic: u32   0x00000803 for images (ubyte, 3 dims), 0x00000801 for labels (ubyte, 1 dim)
//!              (bytes: 0, 0, type 0x08 = unsigned byte, number of dimensions)
//! dims:  u32 x ndim, big-endian
//! data:  product(dims) bytes, row-major
//! ```
//!
//! Files may be gzip-compressed (detected by the `1f 8b` signature) or raw.
//! The careful path decompresses the whole file first, with a hard cap, and
//! then checks the header against the bytes that really exist, so a header
//! that claims more data than the file holds never causes a large
//! allocation. Image files that are well formed take a faster path
//! ([`read_images_in_place`]): the header first, then the payload read
//! straight into its final place, within the same bounds.

use crate::MnistError;
use crate::Pixels;
use byteorder::{BigEndian, ReadBytesExt};
use flate2::bufread::GzDecoder;
use flate2::read::MultiGzDecoder;
use std::io::{BufRead, Read};
use std::path::Path;

/// The most bytes one load (both splits of a data set, on two threads) may
/// hold: ten times the four MNIST files decompressed, far below what would
/// hurt the machine, so a gzip bomb or a huge raw file fails fast whatever
/// the number of files loaded at once.
pub const MAX_LOADED: u64 = 512 << 20;

/// What is left of [`MAX_LOADED`] for one load, shared by its threads: every
/// file's bytes (as read, then decompressed) are taken from it before they
/// are held.
#[derive(Debug)]
pub(crate) struct LoadBudget(std::sync::atomic::AtomicU64);

impl LoadBudget {
    pub(crate) fn new() -> Self {
        LoadBudget(std::sync::atomic::AtomicU64::new(MAX_LOADED))
    }

    fn remaining(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns `bytes` taken for a read that did not keep them.
    fn give_back(&self, bytes: u64) {
        self.0.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes `bytes` from the budget, or says how much was left.
    fn take(&self, path: &Path, bytes: u64, what: &str) -> Result<(), MnistError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.0
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(bytes))
            .map(|_| ())
            .map_err(|left| MnistError::BadHeader {
                path: path.to_path_buf(),
                detail: format!(
                    "{what} {bytes} bytes, more than the {left} left of the {MAX_LOADED} bytes a load may hold; this is no MNIST-format file"
                ),
            })
    }
}

/// Which of the two IDX layouts a file must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    /// Magic 2051, three dimensions: count x rows x cols.
    Images,
    /// Magic 2049, one dimension: count.
    Labels,
}

impl IdxKind {
    fn magic(self) -> u32 {
        match self {
            IdxKind::Images => 2051,
            IdxKind::Labels => 2049,
        }
    }

    const fn ndim(self) -> usize {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }

    /// The magic number and one u32 per dimension.
    const fn header_len(self) -> usize {
        4 + 4 * self.ndim()
    }

    fn what(self) -> &'static str {
        match self {
            IdxKind::Images => "an IDX image file",
            IdxKind::Labels => "an IDX label file",
        }
    }
}

/// A parsed IDX file: its dimensions and its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header: `[count, rows, cols]` or `[count]`.
    pub dims: Vec<usize>,
    /// The payload, row-major, without the header.
    pub data: Vec<u8>,
}

/// Reads a file's bytes, gunzipping when it starts with the gzip signature.
/// Every member of the stream is read (RFC 1952 allows several, `cat a.gz
/// b.gz` makes them) and each trailer (CRC and length) checked; bytes after
/// the last member that do not start another one are an error.
pub(crate) fn read_decompressed(path: &Path, budget: &LoadBudget) -> Result<Vec<u8>, MnistError> {
    // The file's size is checked before a byte of it is read.
    let size = std::fs::metadata(path).map_err(|e| MnistError::io(path, e))?.len();
    budget.take(path, size, "the file holds")?;
    let raw = std::fs::read(path).map_err(|e| MnistError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let out = decompress_within(path, &raw, budget.remaining())?;
    budget.take(path, out.len() as u64, "it decompresses to")?;
    Ok(out)
}

/// Gunzips `raw` (as [`read_decompressed`]) if it is gzip, within a fresh budget.
pub(crate) fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, MnistError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    decompress_within(path, &raw, MAX_LOADED)
}

/// Gunzips every member of `raw`, refusing to produce more than `limit` bytes.
///
/// The members are read one at a time (`bufread::GzDecoder` over a slice
/// consumes exactly its member), so bytes after the last one that start no
/// other are reported as such, not as the end of file a multi-member
/// decoder would report for them.
fn decompress_within(path: &Path, raw: &[u8], limit: u64) -> Result<Vec<u8>, MnistError> {
    let gzip_error = |source| MnistError::Gzip {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let mut member = GzDecoder::new(rest);
        let room = (limit + 1).saturating_sub(out.len() as u64);
        (&mut member).take(room).read_to_end(&mut out).map_err(gzip_error)?;
        if out.len() as u64 > limit {
            return Err(MnistError::BadHeader {
                path: path.to_path_buf(),
                detail: format!("decompresses to more than the {limit} bytes a load may still hold"),
            });
        }
        rest = member.into_inner();
        if rest.is_empty() {
            return Ok(out);
        }
        if !rest.starts_with(&[0x1f, 0x8b]) {
            return Err(gzip_error(std::io::Error::other(format!(
                "{} bytes after the end of the compressed data start no other gzip member",
                rest.len()
            ))));
        }
    }
}

/// Reads and validates an IDX file of the given kind.
pub fn read_idx(path: &Path, kind: IdxKind) -> Result<Idx, MnistError> {
    parse_idx(path, read_decompressed(path, &LoadBudget::new())?, kind)
}

/// Checks the header at the start of `bytes` (magic and dimensions) and
/// returns the dimensions and the payload length they announce.
fn parse_header(path: &Path, bytes: &[u8], kind: IdxKind) -> Result<(Vec<usize>, u64), MnistError> {
    let header_len = kind.header_len();
    let mut header = bytes;
    let short = |found: usize| MnistError::Truncated {
        path: path.to_path_buf(),
        expected: header_len as u64,
        found: found as u64,
    };
    let magic = header.read_u32::<BigEndian>().map_err(|_| short(bytes.len()))?;
    if magic != kind.magic() {
        return Err(MnistError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: kind.magic(),
            what: kind.what(),
        });
    }
    let mut dims = Vec::with_capacity(kind.ndim());
    for _ in 0..kind.ndim() {
        let dim = header.read_u32::<BigEndian>().map_err(|_| short(bytes.len()))?;
        dims.push(dim as usize);
    }
    if kind == IdxKind::Images && (dims[1] == 0 || dims[2] == 0) {
        return Err(MnistError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("image size {}x{} is empty", dims[1], dims[2]),
        });
    }
    match dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)) {
        Some(payload) => Ok((dims, payload)),
        None => Err(MnistError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("dimensions {dims:?} overflow"),
        }),
    }
}

/// Validates decompressed IDX bytes: magic, dimensions, exact payload length.
pub(crate) fn parse_idx(path: &Path, mut bytes: Vec<u8>, kind: IdxKind) -> Result<Idx, MnistError> {
    let (dims, expected) = parse_header(path, &bytes, kind)?;
    let header_len = kind.header_len();
    let found = (bytes.len() - header_len) as u64;
    if found < expected {
        return Err(MnistError::Truncated {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(MnistError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            extra: found - expected,
        });
    }
    // Drop the header in place rather than copying the payload.
    bytes.drain(..header_len);
    Ok(Idx { dims, data: bytes })
}

/// A well-formed image file, read by [`read_images_in_place`].
pub(crate) struct StreamedImages {
    pub(crate) dims: Vec<usize>,
    pub(crate) pixels: Pixels,
    /// The SHA-256 of the decompressed file (header and pixels), as hex.
    pub(crate) sha256: String,
}

/// Reads a well-formed image file straight into [`Pixels`]: the header
/// first, then exactly the payload it announces, then hashes them. The
/// pixels are written once and held once, with no copy of the file beside
/// them. The budget is taken as the careful path takes it (the file, and for
/// gzip what it decompresses to), before the pixels are allocated, and is
/// given back when the file turns out not to be well formed.
///
/// `None` for a file that is not well formed: [`read_decompressed`] and
/// [`parse_idx`], which hold the whole file, then say what is wrong with it.
pub(crate) fn read_images_in_place(path: &Path, budget: &LoadBudget) -> Result<Option<StreamedImages>, MnistError> {
    use sha2::{Digest, Sha256};
    let file = std::fs::File::open(path).map_err(|e| MnistError::io(path, e))?;
    let size = file.metadata().map_err(|e| MnistError::io(path, e))?.len();
    let mut file = std::io::BufReader::new(file);
    let gzip = file
        .fill_buf()
        .map_err(|e| MnistError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut header = [0u8; IdxKind::Images.header_len()];
    if reader.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let Ok((dims, payload)) = parse_header(path, &header, IdxKind::Images) else {
        return Ok(None);
    };
    let decompressed = (header.len() as u64).saturating_add(payload);
    // A raw file is exactly header and payload. Deflate shrinks data at most
    // 1032 times, so a gzip file cannot hold more than that: a small file
    // claiming a large payload is not read into a large allocation.
    let plausible = if gzip {
        decompressed <= size.saturating_mul(1032).saturating_add(1024)
    } else {
        decompressed == size
    };
    let (Ok(payload_len), true) = (usize::try_from(payload), plausible) else {
        return Ok(None);
    };
    let taken = if gzip { size.saturating_add(decompressed) } else { size };
    if budget
        .take(path, taken, "the file and what it decompresses to hold")
        .is_err()
    {
        return Ok(None);
    }
    let mut read = || -> Option<Pixels> {
        let mut pixels = Pixels::try_zeroed(payload_len)?;
        reader.read_exact(&mut pixels).ok()?;
        // Nothing may follow the payload.
        matches!(reader.read(&mut [0u8; 1]), Ok(0)).then_some(pixels)
    };
    let Some(pixels) = read() else {
        budget.give_back(taken);
        return Ok(None);
    };
    let mut hasher = Sha256::new();
    hasher.update(header);
    hasher.update(&*pixels);
    Ok(Some(StreamedImages {
        dims,
        pixels,
        sha256: crate::hex(&hasher.finalize()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("test.idx")
    }

    pub(crate) fn idx_bytes(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn multi_member_gzip_is_read_whole_and_trailing_junk_refused() {
        let data = idx_bytes(2049, &[6], &[1, 2, 3, 4, 5, 6]);
        // Two members, as `cat a.gz b.gz` makes: the file is their concatenation.
        let mut two = gzip(&data[..7]);
        two.extend_from_slice(&gzip(&data[7..]));
        assert_eq!(decompress(&p(), two.clone()).unwrap(), data);
        // A valid stream followed by bytes that are not another member.
        for junk in [&b"<html>not gzip</html>"[..], &[0x1f, 0x8b, 0x00][..], &[0u8; 16][..]] {
            let mut damaged = gzip(&data);
            damaged.extend_from_slice(junk);
            let err = decompress(&p(), damaged).unwrap_err();
            assert!(matches!(err, MnistError::Gzip { .. }), "{junk:?} after the stream");
            if !junk.starts_with(&[0x1f, 0x8b]) {
                let message = err.to_string();
                assert!(
                    message.contains(&format!("{} bytes after the end of the compressed data", junk.len())),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn parses_a_valid_image_file() {
        let bytes = idx_bytes(2051, &[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let idx = parse_idx(&p(), bytes, IdxKind::Images).unwrap();
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.data.len(), 12);
        assert_eq!(idx.data[11], 12);
    }

    #[test]
    fn every_header_defect_is_a_typed_error() {
        let wrong_magic = parse_idx(&p(), idx_bytes(2049, &[1, 1, 1], &[0]), IdxKind::Images);
        assert!(matches!(
            wrong_magic,
            Err(MnistError::BadMagic {
                found: 2049,
                expected: 2051,
                ..
            })
        ));
        let truncated = parse_idx(&p(), idx_bytes(2051, &[2, 2, 2], &[0; 7]), IdxKind::Images);
        assert!(matches!(
            truncated,
            Err(MnistError::Truncated {
                expected: 8,
                found: 7,
                ..
            })
        ));
        let trailing = parse_idx(&p(), idx_bytes(2049, &[3], &[0; 5]), IdxKind::Labels);
        assert!(matches!(trailing, Err(MnistError::TrailingBytes { extra: 2, .. })));
        let short_header = parse_idx(&p(), vec![0, 0, 8], IdxKind::Labels);
        assert!(matches!(short_header, Err(MnistError::Truncated { .. })));
        let empty_images = parse_idx(&p(), idx_bytes(2051, &[1, 0, 28], &[]), IdxKind::Images);
        assert!(matches!(empty_images, Err(MnistError::BadHeader { .. })));
        // A header claiming 4 billion squared bytes fails without allocating them.
        let huge = parse_idx(
            &p(),
            idx_bytes(2051, &[u32::MAX, u32::MAX, u32::MAX], &[0; 4]),
            IdxKind::Images,
        );
        assert!(huge.is_err());
    }

    #[test]
    fn gzip_is_detected_and_checked() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let plain = idx_bytes(2049, &[4], &[1, 2, 3, 4]);
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&plain).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decompress(&p(), gz.clone()).unwrap(), plain);
        // Damage the CRC in the trailer: the stream must be refused.
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 0xff;
        assert!(matches!(decompress(&p(), bad_crc), Err(MnistError::Gzip { .. })));
        // Cut the stream short.
        assert!(matches!(
            decompress(&p(), gz[..gz.len() / 2].to_vec()),
            Err(MnistError::Gzip { .. })
        ));
    }

    #[test]
    fn images_read_in_place_only_when_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images");
        let payload: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8 * 7).collect();
        let good = idx_bytes(2051, &[2, 3, 4], &payload);
        let read = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            read_images_in_place(&path, &LoadBudget::new()).unwrap()
        };
        for file in [good.clone(), gzip(&good)] {
            let streamed = read(&file).expect("a well-formed file");
            assert_eq!(streamed.dims, vec![2, 3, 4]);
            assert_eq!(&*streamed.pixels, &payload[..]);
            assert_eq!(streamed.sha256, crate::sha256_hex(&good));
        }
        let mut trailing = good.clone();
        trailing.push(0);
        let huge_claim = idx_bytes(2051, &[u32::MAX, 28, 28], &payload);
        let defects = [
            good[..good.len() - 1].to_vec(),
            trailing.clone(),
            idx_bytes(2049, &[2, 3, 4], &payload),
            huge_claim.clone(),
            good[..10].to_vec(),
        ];
        for file in defects {
            assert!(read(&file).is_none(), "{} bytes", file.len());
            assert!(read(&gzip(&file)).is_none(), "gzip of {} bytes", file.len());
        }
        // A gzip file with a wrong CRC, and one followed by junk.
        let mut bad_crc = gzip(&good);
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 1;
        let mut junk_after = gzip(&good);
        junk_after.extend_from_slice(b"junk");
        for file in [bad_crc, junk_after] {
            assert!(read(&file).is_none());
        }
        // The budget is left as the careful path leaves it: taken for a
        // file read, untouched by one refused.
        for file in [good.clone(), gzip(&good), trailing.clone()] {
            std::fs::write(&path, &file).unwrap();
            let (in_place, careful) = (LoadBudget::new(), LoadBudget::new());
            let kept = read_images_in_place(&path, &in_place).unwrap().is_some();
            if kept {
                read_decompressed(&path, &careful).unwrap();
            }
            assert_eq!(in_place.remaining(), careful.remaining(), "{} bytes", file.len());
        }
        // The careful path then names the defect.
        std::fs::write(&path, &trailing).unwrap();
        assert!(matches!(
            read_idx(&path, IdxKind::Images),
            Err(MnistError::TrailingBytes { extra: 1, .. })
        ));
    }
}
