//! `fetch`: local folders, file:// URLs, a loopback HTTP server, and every
//! way a source can be wrong.

mod common;

use common::*;
use mnist::{fetch, Dataset, FetchOutcome, Mnist, MnistError, NoProgress, Source};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn copies_verifies_and_skips_valid_files() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let target = tempfile::tempdir().unwrap();
    let out = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::Dir(real.clone())],
        &mut NoProgress,
    )
    .unwrap();
    assert!(out.iter().all(|o| matches!(o, FetchOutcome::Fetched { .. })), "{out:?}");
    assert_eq!(
        files_in(target.path()),
        [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );
    // Byte for byte the source.
    let name = "train-labels-idx1-ubyte.gz";
    assert_eq!(
        std::fs::read(target.path().join(name)).unwrap(),
        std::fs::read(real.join(name)).unwrap()
    );

    // Second run: nothing fetched again.
    let again = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::Dir(PathBuf::from("/nonexistent"))],
        &mut NoProgress,
    )
    .unwrap();
    assert!(
        again.iter().all(|o| matches!(o, FetchOutcome::AlreadyValid(_))),
        "{again:?}"
    );

    // A damaged file is replaced, through a file:// URL this time.
    let damaged = target.path().join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let url = format!("file://{}", real.display());
    let fixed = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::parse(&url).unwrap()],
        &mut NoProgress,
    )
    .unwrap();
    assert!(matches!(fixed[3], FetchOutcome::Fetched { .. }), "{fixed:?}");
    assert!(matches!(fixed[0], FetchOutcome::AlreadyValid(_)));
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes);
    Mnist::load(target.path(), Dataset::Mnist).unwrap();
}

#[test]
fn a_checksum_mismatch_is_refused_and_leaves_nothing() {
    let source = tempfile::tempdir().unwrap();
    write_synthetic_dataset(source.path());
    // An HTML error page saved under a .gz name.
    std::fs::write(
        source.path().join("train-labels-idx1-ubyte.gz"),
        b"<html><body>404 Not Found</body></html>",
    )
    .unwrap();
    let target = tempfile::tempdir().unwrap();
    let err = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::Dir(source.path().to_path_buf())],
        &mut NoProgress,
    )
    .unwrap_err();
    match &err {
        MnistError::AllSourcesFailed { file, attempts, .. } => {
            assert_eq!(file, "train-images-idx3-ubyte.gz");
            assert_eq!(attempts.len(), 1);
            assert!(attempts[0].1.contains("SHA-256"), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("local folder or file:// source"),
        "the error says how to continue offline: {err}"
    );
    assert!(
        files_in(target.path()).is_empty(),
        "no partial or unverified file: {:?}",
        files_in(target.path())
    );
}

#[test]
fn an_interrupted_write_does_not_pass_as_valid() {
    let target = tempfile::tempdir().unwrap();
    write_synthetic_dataset(target.path());
    // What a killed transfer leaves behind: only the hidden part file.
    let real_name = target.path().join("train-images-idx3-ubyte.gz");
    std::fs::rename(&real_name, target.path().join(".train-images-idx3-ubyte.gz.part-4242")).unwrap();
    assert!(matches!(
        Mnist::load(target.path(), Dataset::Mnist),
        Err(MnistError::MissingFile { .. })
    ));
}

#[test]
fn bad_sources_are_refused() {
    assert!(matches!(
        Source::parse("ftp://example.org/mnist"),
        Err(MnistError::BadSource(_))
    ));
    assert_eq!(
        Source::parse("file:///tmp/x").unwrap(),
        Source::Dir(PathBuf::from("/tmp/x"))
    );
    assert_eq!(
        Source::parse("https://h/m").unwrap(),
        Source::Url("https://h/m/".into())
    );
    let target = tempfile::tempdir().unwrap();
    let err = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::Dir(PathBuf::from("/nonexistent"))],
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
}

/// Serves `routes` (path -> (status, body)) on a loopback port for at most
/// `connections` requests, then stops.
fn serve(routes: Vec<(String, u16, Vec<u8>)>, connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((404, b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    base
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn downloads_over_http_with_verification_and_fallback() {
    let real = mnist::test_data_dir("MNIST_DIR");
    let names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    // A broken mirror: an HTML page with status 200 for one file, 404 for the rest.
    let broken = serve(
        vec![(
            "/train-images-idx3-ubyte.gz".into(),
            200,
            b"<html>moved</html>".to_vec(),
        )],
        8,
    );
    let good = serve(
        names
            .iter()
            .map(|n| (format!("/{n}"), 200, std::fs::read(real.join(n)).unwrap()))
            .collect(),
        8,
    );
    let target = tempfile::tempdir().unwrap();
    let out = fetch(
        Dataset::Mnist,
        target.path(),
        &[Source::parse(&broken).unwrap(), Source::parse(&good).unwrap()],
        &mut NoProgress,
    )
    .unwrap();
    for o in &out {
        match o {
            FetchOutcome::Fetched { source, .. } => assert_eq!(source, &good),
            other => panic!("{other:?}"),
        }
    }
    let data = Mnist::load(target.path(), Dataset::Mnist).unwrap();
    assert_eq!(data.train.len(), 60000);
}

#[test]
fn every_source_failing_lists_each_reason() {
    let broken = serve(
        vec![(
            "/train-images-idx3-ubyte.gz".into(),
            200,
            b"<html>moved</html>".to_vec(),
        )],
        4,
    );
    let target = tempfile::tempdir().unwrap();
    let err = fetch(
        Dataset::Mnist,
        target.path(),
        &[
            Source::parse(&broken).unwrap(),
            Source::Dir(PathBuf::from("/nonexistent")),
        ],
        &mut NoProgress,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&broken) && text.contains("/nonexistent") && text.contains("SHA-256"),
        "{text}"
    );
    assert!(files_in(target.path()).is_empty());
}
