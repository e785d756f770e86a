//! `cargo xtask fetch`: get the four files, verify them, write them atomically.
//!
//! For each file: a copy already in the target folder whose decompressed
//! SHA-256 matches is kept. Otherwise each source is tried in order; the bytes
//! stream into a hidden temporary file beside the target (`.NAME.part-PID`),
//! are verified, and only then renamed into place, so an interrupted or bad
//! transfer never leaves a file that passes as valid. Downloads must match the
//! pinned `.gz` hash where one is known; every source must match the pinned
//! hash of the decompressed IDX bytes.

use crate::dataset::{find_file, DatasetFile};
use crate::idx::decompress;
use crate::{hex, Dataset, MnistError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Where files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local folder holding the files (`NAME.gz` or raw `NAME`).
    Dir(PathBuf),
    /// An `http://` or `https://` base URL; `NAME.gz` is appended.
    Url(String),
}

impl Source {
    /// A directory path, a `file://` URL, or an `http(s)://` base URL.
    pub fn parse(text: &str) -> Result<Source, MnistError> {
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Source::Dir(PathBuf::from(path)));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            let base = if text.ends_with('/') {
                text.to_string()
            } else {
                format!("{text}/")
            };
            return Ok(Source::Url(base));
        }
        if text.contains("://") {
            return Err(MnistError::BadSource(text.to_string()));
        }
        Ok(Source::Dir(PathBuf::from(text)))
    }

    fn describe(&self) -> String {
        match self {
            Source::Dir(dir) => dir.display().to_string(),
            Source::Url(url) => url.clone(),
        }
    }
}

/// Hooks for showing a transfer (a progress bar in `cargo xtask fetch`).
pub trait FetchProgress {
    /// A transfer of `file` from `source` begins; `total` bytes if known.
    fn start(&mut self, _file: &str, _source: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of the current transfer have arrived.
    fn advance(&mut self, _bytes: u64) {}
    /// The transfer ended (successfully or not).
    fn finish(&mut self) {}
    /// A line for the person watching (a source failed, a file was kept...).
    fn note(&mut self, _message: &str) {}
}

/// Progress hooks that show nothing.
pub struct NoProgress;
impl FetchProgress for NoProgress {}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Already present and verified; not fetched again.
    AlreadyValid(PathBuf),
    /// Fetched from `source` and verified.
    Fetched {
        /// Where the file now is.
        path: PathBuf,
        /// The source it came from: a folder or a base URL.
        source: String,
    },
}

/// Makes `target` hold the four verified files of `dataset`.
///
/// `sources` are tried in order for each file; when empty, the data set's
/// system folder (if installed) and its public mirrors are used.
pub fn fetch(
    dataset: Dataset,
    target: &Path,
    sources: &[Source],
    progress: &mut dyn FetchProgress,
) -> Result<Vec<FetchOutcome>, MnistError> {
    let mut defaults = Vec::new();
    let sources = if sources.is_empty() {
        if let Some(dir) = dataset.system_dir().filter(|d| Path::new(d).is_dir()) {
            defaults.push(Source::Dir(PathBuf::from(dir)));
        }
        defaults.extend(dataset.mirrors().iter().map(|m| Source::Url(m.to_string())));
        &defaults[..]
    } else {
        sources
    };
    // The folders this fetch creates (the target and its missing parents,
    // deepest first): a fetch that fails removes those it left empty, so a
    // source with nothing to give leaves no empty data/mnist behind.
    let created: Vec<PathBuf> = target
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(target).map_err(|e| MnistError::io(target, e))?;
    remove_stale_parts(target);
    let outcomes: Result<Vec<FetchOutcome>, MnistError> = dataset
        .files()
        .iter()
        .map(|file| fetch_file(file, target, sources, dataset.env_var(), progress))
        .collect();
    if outcomes.is_err() {
        for dir in &created {
            // remove_dir removes only an empty folder: files fetched before
            // the failure are kept, and so are their folders.
            let _ = std::fs::remove_dir(dir);
        }
    }
    outcomes
}

/// Deletes the `.NAME.part-PID` files that fetches killed before their
/// rename left behind: those whose process is gone. Only where `/proc` tells
/// which processes live (Linux); elsewhere nothing is deleted.
fn remove_stale_parts(target: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(target) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .starts_with('.')
            .then(|| name.rsplit_once(".part-"))
            .flatten()
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn fetch_file(
    file: &DatasetFile,
    target: &Path,
    sources: &[Source],
    var: &'static str,
    progress: &mut dyn FetchProgress,
) -> Result<FetchOutcome, MnistError> {
    let existing = find_file(target, file.name, var).ok();
    if let Some(path) = &existing {
        match verify_local(path, file) {
            Ok(()) => return Ok(FetchOutcome::AlreadyValid(path.clone())),
            Err(e) => progress.note(&format!("{e}\nreplacing it")),
        }
    }
    let mut attempts = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        match fetch_from(file, target, source, var, progress) {
            Ok(path) => {
                // A stale file under the other container name must not shadow the new one.
                if let Some(old) = existing.filter(|old| *old != path) {
                    let _ = std::fs::remove_file(old);
                }
                return Ok(FetchOutcome::Fetched {
                    path,
                    source: source.describe(),
                });
            }
            Err(e) => {
                // The final error lists every attempt; say so only when there is a next one.
                if i + 1 < sources.len() {
                    progress.note(&format!("{}: {e}; trying the next source", source.describe()));
                }
                attempts.push((source.describe(), e.to_string()));
            }
        }
    }
    Err(MnistError::AllSourcesFailed {
        file: format!("{}.gz", file.name),
        var,
        attempts,
    })
}

/// Checks the decompressed SHA-256 of a file already on disk.
pub(crate) fn verify_local(path: &Path, file: &DatasetFile) -> Result<(), MnistError> {
    let bytes = std::fs::read(path).map_err(|e| MnistError::io(path, e))?;
    verify_bytes(path, file, bytes, false)
}

/// Checks the container hash (downloads, when pinned) and the IDX hash.
fn verify_bytes(path: &Path, file: &DatasetFile, bytes: Vec<u8>, downloaded: bool) -> Result<(), MnistError> {
    if let (true, Some(expected)) = (downloaded, file.gz_sha256) {
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(MnistError::Checksum {
                path: path.to_path_buf(),
                what: "downloaded .gz",
                expected: expected.to_string(),
                actual,
            });
        }
    }
    let idx = decompress(path, bytes)?;
    let actual = hex(&Sha256::digest(&idx));
    if actual != file.idx_sha256 {
        return Err(MnistError::Checksum {
            path: path.to_path_buf(),
            what: "decompressed IDX",
            expected: file.idx_sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Streams one file from `source` into a temporary file, verifies it, and
/// renames it into place. Returns the final path.
fn fetch_from(
    file: &DatasetFile,
    target: &Path,
    source: &Source,
    var: &'static str,
    progress: &mut dyn FetchProgress,
) -> Result<PathBuf, MnistError> {
    // `origin`: where the bytes came from, which errors name (never the temporary file).
    let (reader, total, final_name, downloaded, origin): (Box<dyn Read>, Option<u64>, String, bool, PathBuf) =
        match source {
            Source::Dir(dir) => {
                let path = find_file(dir, file.name, var)?;
                let handle = File::open(&path).map_err(|e| MnistError::io(&path, e))?;
                let total = handle.metadata().ok().map(|m| m.len());
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Box::new(handle), total, name, false, path)
            }
            Source::Url(base) => {
                let url = format!("{base}{}.gz", file.name);
                let download = CurlDownload::start(&url)?;
                (
                    Box::new(download),
                    None,
                    format!("{}.gz", file.name),
                    true,
                    PathBuf::from(url),
                )
            }
        };
    let final_path = target.join(&final_name);
    let temp_path = target.join(format!(".{final_name}.part-{}", std::process::id()));
    progress.start(&final_name, &source.describe(), total);
    let result = copy_to(reader, &temp_path, progress)
        .and_then(|bytes| verify_bytes(&origin, file, bytes, downloaded))
        .map_err(|e| in_source_terms(source, e))
        .and_then(|()| std::fs::rename(&temp_path, &final_path).map_err(|e| MnistError::io(&final_path, e)));
    progress.finish();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp_path);
        return Err(e);
    }
    Ok(final_path)
}

/// A local source's file that does not decompress is reported as the
/// source's to replace: the usual advice (delete it and fetch again) would
/// send the user back to this same folder.
fn in_source_terms(source: &Source, e: MnistError) -> MnistError {
    match (source, e) {
        (Source::Dir(_), MnistError::Gzip { path, source }) => MnistError::CorruptSource {
            path,
            detail: format!("not a valid gzip stream ({source})"),
        },
        (Source::Dir(_), MnistError::BadHeader { path, detail }) => MnistError::CorruptSource { path, detail },
        (_, e) => e,
    }
}

/// The most a download may bring: four times the largest known file, enough
/// for any honest mirror, and a bound on what a dishonest one can make us hold.
const MAX_DOWNLOAD: u64 = 128 << 20;

/// A download by the system's `curl`, read from its standard output as it
/// arrives. `curl` brings HTTPS (TLS, certificates, proxies from the usual
/// variables) without a TLS stack in this project's build, where one took a
/// third of the data crate's compile time; it is on nearly every machine
/// Rust is installed on (rustup's own installer runs it).
struct CurlDownload {
    url: String,
    child: Child,
    stdout: ChildStdout,
    read: u64,
}

/// Why a download failed, carried through `Read` to [`copy_to`].
#[derive(Debug)]
struct DownloadFailed {
    url: String,
    reason: String,
}

impl std::fmt::Display for DownloadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.url, self.reason)
    }
}

impl std::error::Error for DownloadFailed {}

impl DownloadFailed {
    fn of(e: &std::io::Error) -> Option<&DownloadFailed> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

impl CurlDownload {
    /// Starts `curl` on `url`: redirects followed (HTTP and HTTPS only), an
    /// error status a failure (`--fail`), 15 s to connect, 10 minutes in all.
    fn start(url: &str) -> Result<Self, MnistError> {
        let failed = |reason: String| MnistError::Download {
            url: url.to_string(),
            reason,
        };
        let mut child = Command::new("curl")
            .args(["--fail", "--location", "--silent", "--show-error"])
            .args(["--proto", "=http,https", "--proto-redir", "=http,https"])
            .args(["--connect-timeout", "15", "--max-time", "600"])
            .args(["--max-filesize", &MAX_DOWNLOAD.to_string()])
            .arg("--")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                failed(if e.kind() == std::io::ErrorKind::NotFound {
                    "the `curl` program, which downloads, is not installed: install curl".to_string()
                } else {
                    format!("could not start curl: {e}")
                })
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("curl gave no output".into()))?;
        Ok(CurlDownload {
            url: url.to_string(),
            child,
            stdout,
            read: 0,
        })
    }

    fn failure(&self, reason: String) -> std::io::Error {
        std::io::Error::other(DownloadFailed {
            url: self.url.clone(),
            reason,
        })
    }
}

impl Read for CurlDownload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stdout.read(buf)?;
        self.read += n as u64;
        if self.read > MAX_DOWNLOAD {
            return Err(self.failure(format!(
                "it sent more than the {MAX_DOWNLOAD} bytes a data file may have"
            )));
        }
        if n == 0 {
            // The stream ended: whole only if curl says so.
            let status = self.child.wait()?;
            if !status.success() {
                let mut said = String::new();
                if let Some(mut stderr) = self.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut said);
                }
                // "curl: (7) Failed to connect ...": the reason, without the
                // program's name and its error number.
                let said = said.trim().trim_start_matches("curl: ");
                let said = match said.split_once(") ") {
                    Some((code, reason)) if code.starts_with('(') => reason,
                    _ => said,
                }
                .to_string();
                return Err(self.failure(if said.is_empty() {
                    format!("curl ended with {status}")
                } else {
                    said
                }));
            }
        }
        Ok(n)
    }
}

impl Drop for CurlDownload {
    /// A download given up on (a write failed, a checksum will not match)
    /// does not leave curl running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies `reader` into a new file at `path` (synced to disk), returning the bytes.
fn copy_to(mut reader: Box<dyn Read>, path: &Path, progress: &mut dyn FetchProgress) -> Result<Vec<u8>, MnistError> {
    let mut out = File::create(path).map_err(|e| MnistError::io(path, e))?;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| match DownloadFailed::of(&e) {
            Some(failed) => MnistError::Download {
                url: failed.url.clone(),
                reason: failed.reason.clone(),
            },
            None => MnistError::io(path, e),
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&chunk[..n]).map_err(|e| MnistError::io(path, e))?;
        bytes.extend_from_slice(&chunk[..n]);
        progress.advance(n as u64);
    }
    out.sync_all().map_err(|e| MnistError::io(path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod stale_parts_tests {
    use super::*;

    #[test]
    fn parts_of_dead_fetches_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".t10k-images-idx3-ubyte.gz.part-999999999");
        let ours = dir.path().join(format!(".x.gz.part-{}", std::process::id()));
        let kept = dir.path().join("t10k-images-idx3-ubyte.gz");
        for path in [&stale, &ours, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        remove_stale_parts(dir.path());
        assert_eq!(stale.exists(), !Path::new("/proc/self").exists());
        assert!(ours.exists() && kept.exists());
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    /// A gzip member of nothing (deflate's empty final block, CRC 0, length 0).
    const EMPTY_GZIP: [u8; 20] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn a_source_file_that_does_not_decompress_is_the_sources_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let mut bytes = EMPTY_GZIP.to_vec();
        bytes.extend_from_slice(b"JUNK");
        std::fs::write(source.join("train-images-idx3-ubyte.gz"), &bytes).unwrap();
        let target = dir.path().join("data").join("mnist");
        let err = fetch(Dataset::Mnist, &target, &[Source::Dir(source)], &mut NoProgress).unwrap_err();
        let MnistError::AllSourcesFailed { attempts, .. } = &err else {
            panic!("unexpected {err}");
        };
        let reason = &attempts[0].1;
        assert!(reason.contains("not a valid gzip stream (4 bytes after"), "{reason}");
        assert!(
            reason.contains("in the source folder is corrupt: replace it"),
            "{reason}"
        );
        assert!(!reason.contains("fetch the files again"), "{reason}");
        // Neither the target nor the parent this fetch made is left behind.
        assert!(!dir.path().join("data").exists());
    }

    #[test]
    fn a_failed_fetch_removes_only_the_empty_folders_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing");
        std::fs::create_dir_all(&existing).unwrap();
        let nowhere = Source::Dir(dir.path().join("nowhere"));
        for target in [existing.clone(), existing.join("a").join("b")] {
            assert!(fetch(Dataset::Mnist, &target, std::slice::from_ref(&nowhere), &mut NoProgress).is_err());
        }
        assert!(existing.is_dir(), "a folder the fetch did not make was removed");
        assert!(!existing.join("a").exists(), "the folders the fetch made stayed");
    }
}
