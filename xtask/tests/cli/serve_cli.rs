//! `cargo xtask serve` through its API, as the page uses it: a server on an
//! ephemeral port, requests over plain TCP.

use crate::common;

use common::{command, text};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server started for a test, stopped (Ctrl-C) when dropped.
struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    address: String,
}

impl Server {
    fn start(args: &[&str], mnist_dir: &Path) -> Server {
        let mut all = vec!["serve", "--port", "0"];
        all.extend_from_slice(args);
        let mut child = command(&all, Some(mnist_dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xtask serve starts");
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let Some(address) = line
            .trim()
            .strip_prefix("serving on http://")
            .and_then(|rest| rest.strip_suffix('/'))
        else {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("first line {line:?}; stderr: {stderr}");
        };
        let address = address.to_string();
        // Keep reading stdout so that the server never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Server { child, address }
    }

    /// Sends a request with these extra header lines; returns the status and body.
    fn raw(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// A request as the page makes it.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let headers = format!(
            "Host: {}\r\nOrigin: http://{}\r\nContent-Type: application/json\r\n",
            self.address, self.address
        );
        let (status, body) = self.raw(method, path, &headers, body);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status} {body}: {e}"));
        (status, json)
    }

    /// Ctrl-C; returns the exit status and what it printed on stderr.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
                return (status.code(), stderr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not stop within 60 s of Ctrl-C");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trains a small mlp into `dir` (a few seconds).
fn train_mlp(dir: &Path, mnist_dir: &Path) {
    let out = command(
        &["train", "--iters", "300", "--seed", "5", "--out", dir.to_str().unwrap()],
        Some(mnist_dir),
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A server whose runs folder is in a fresh temporary folder (kept while
/// the returned guard lives), offering, `with_model`, a small mlp trained
/// there first (`<temp>/run`). Returns the server, the folder, and MNIST's.
fn server_in_temp(with_model: bool) -> (Server, tempfile::TempDir, PathBuf) {
    let real = mnist::test_data_dir("MNIST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut args = vec!["--runs".to_string(), runs.display().to_string()];
    if with_model {
        let run = dir.path().join("run");
        train_mlp(&run, &real);
        args.extend(["--run".to_string(), run.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args, &real), dir, real)
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn the_page_predicts_as_predict_does_ranks_the_test_set_and_draws_the_apple_graph() {
    let (server, dir, real) = server_in_temp(true);
    let run = dir.path().join("run");

    let page = server.raw("GET", "/", &format!("Host: {}\r\n", server.address), "");
    assert_eq!(page.0, 200);
    assert!(
        page.1.contains("panel-draw") && !page.1.contains("src=\"http"),
        "the page is embedded and self-contained"
    );

    let (status, models) = server.request("GET", "/api/models", "");
    assert_eq!(status, 200);
    assert_eq!(models["selected"], 0);
    assert_eq!(models["models"][0]["name"], "run");
    assert_eq!(models["models"][0]["kind"], "mlp");

    // Test image 7 through the page and through `predict`: the same digit and percentage.
    let test = mnist::Mnist::load_split(&real, mnist::Dataset::Mnist, mnist::Split::Test).unwrap();
    let index = 7;
    let pixels: Vec<f64> = test.image(index).iter().map(|&b| f64::from(b) / 255.0).collect();
    let body = serde_json::json!({"model": 0, "pixels": pixels}).to_string();
    let (status, answer) = server.request("POST", "/api/predict", &body);
    assert_eq!(status, 200, "{answer}");
    let predicted = answer["predicted"].as_u64().unwrap() as usize;
    let probabilities: Vec<f64> = serde_json::from_value(answer["probabilities"].clone()).unwrap();
    assert_eq!(probabilities.len(), 10);
    assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(answer["activations"]["shape"], serde_json::json!([50]));
    assert_eq!(answer["activations"]["values"].as_array().unwrap().len(), 50);
    let model = run.join("model.safetensors");
    let out = command(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--index",
            &index.to_string(),
        ],
        Some(&real),
    )
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    let said = format!("test image {index}: predicted ");
    let (digit, percent) = stdout
        .lines()
        .find_map(|line| line.strip_prefix(&said))
        .and_then(|rest| rest.split_once(" ("))
        .and_then(|(digit, rest)| Some((digit.to_string(), rest.split_once("%)")?.0.parse::<f64>().ok()?)))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(digit, predicted.to_string(), "{stdout}");
    // predict prints one decimal of its f32 softmax.
    assert!(
        (percent - 100.0 * probabilities[predicted]).abs() <= 0.051,
        "{percent} vs {probabilities:?}"
    );

    // The test set, misclassified first: each of those is wrong, the next one right.
    let (status, first) = server.request("GET", "/api/test?model=0&position=0", "");
    assert_eq!(status, 200, "{first}");
    let wrong = first["misclassified"].as_u64().unwrap();
    assert!(wrong > 0 && wrong < 10_000, "{wrong}");
    assert_ne!(first["label"], first["predicted"]);
    let (_, next) = server.request("GET", &format!("/api/test?model=0&position={wrong}"), "");
    assert_eq!(next["label"], next["predicted"], "{next}");
    let image = next["index"].as_u64().unwrap() as usize;
    assert_eq!(next["pixels"], serde_json::json!(test.image(image)));

    // The book's apple graph, figure 5-17.
    let (status, graph) = server.request("GET", "/api/apple", "");
    assert_eq!(status, 200);
    assert!(
        (graph["forward"]["price"].as_f64().unwrap() - 715.0).abs() < 1e-9,
        "{graph}"
    );
    assert!(
        (graph["backward"]["orange_count"].as_f64().unwrap() - 165.0).abs() < 1e-9,
        "{graph}"
    );

    let (code, stderr) = server.interrupt();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("stopped (Ctrl-C)"), "{stderr}");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn bad_requests_get_a_4xx_and_a_sentence_and_the_server_goes_on() {
    let (server, _dir, _) = server_in_temp(true);
    let short = serde_json::json!({"model": 0, "pixels": vec![0.5; 783]}).to_string();
    let mut bright = vec![0.0; 784];
    bright[100] = 1.5;
    let bright = serde_json::json!({"model": 0, "pixels": bright}).to_string();
    let unknown = serde_json::json!({"model": 9, "pixels": vec![0.0; 784]}).to_string();
    let named = serde_json::json!({"model": "run/model.safetensors", "pixels": vec![0.0; 784]}).to_string();
    for (method, path, body, status, says) in [
        ("POST", "/api/predict", short.as_str(), 400, "has 783 values"),
        ("POST", "/api/predict", bright.as_str(), 400, "pixel 100 is 1.5"),
        ("POST", "/api/predict", unknown.as_str(), 404, "there is no model 9"),
        ("POST", "/api/predict", named.as_str(), 400, "must be the id of a model"),
        ("POST", "/api/predict", "{\"model\": 0, \"pixels\": [", 400, "not JSON"),
        ("GET", "/api/test?model=0&position=10000", "", 400, "from 0 to 9999"),
        ("GET", "/api/test?model=0&position=-1", "", 400, "from 0 to 9999"),
        ("POST", "/api/apple", "{\"apple_price\": 1e400}", 400, "not JSON"),
        ("POST", "/api/apple", "{\"apple_price\": \"x\"}", 400, "not a number"),
        ("POST", "/api/train/start", "{\"model\": \"mlp\"}", 400, "\"optimizer\""),
        ("POST", "/api/train/stop", "", 409, "no training run is going"),
        ("GET", "/api/predict", "", 405, "does not take GET"),
        ("GET", "/../etc/passwd", "", 404, "nothing at"),
    ] {
        let (got, answer) = server.request(method, path, body);
        let message = answer["error"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert!(message.contains(says), "{method} {path}: {message}");
    }
    let host = |h: &str| format!("Host: {h}\r\nContent-Type: application/json\r\n");
    // Another name for this address (DNS rebinding), another site's page, a form post.
    assert_eq!(server.raw("GET", "/api/models", &host("evil.example:80"), "").0, 403);
    assert_eq!(server.raw("GET", "/api/models", "", "").0, 403);
    let from_elsewhere = format!("{}Origin: http://evil.example\r\n", host(&server.address));
    assert_eq!(server.raw("POST", "/api/apple", &from_elsewhere, "{}").0, 403);
    let form = format!("Host: {}\r\nContent-Type: text/plain\r\n", server.address);
    assert_eq!(server.raw("POST", "/api/train/stop", &form, "").0, 415);
    // Made by another site's page (the browser says so), read two ways.
    let cross_site = format!("{}Sec-Fetch-Site: cross-site\r\n", host(&server.address));
    assert_eq!(
        server.raw("GET", "/api/test?model=0&position=0", &cross_site, "").0,
        403
    );
    let two_hosts = format!("{}Host: evil.example\r\n", host(&server.address));
    assert_eq!(server.raw("GET", "/api/models", &two_hosts, "").0, 400);
    let near_json = format!("Host: {}\r\nContent-Type: application/jsonx\r\n", server.address);
    assert_eq!(server.raw("POST", "/api/apple", &near_json, "{}").0, 415);
    // HEAD: the page's head, without the page.
    let (status, body) = server.raw("HEAD", "/", &host(&server.address), "");
    assert_eq!((status, body.as_str()), (200, ""));
    let huge = "x".repeat(70_000);
    assert_eq!(server.raw("POST", "/api/predict", &host(&server.address), &huge).0, 413);
    // 32 clients that say nothing hold every slot: the next one is told at once.
    let silent: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(&server.address).unwrap()).collect();
    let waited = Instant::now();
    loop {
        let (status, _) = server.raw("GET", "/api/apple", &host(&server.address), "");
        if status == 503 {
            break;
        }
        // The 32 are taken as the accepting thread gets to them.
        assert!(waited.elapsed() < Duration::from_secs(30), "never 503: {status}");
    }
    drop(silent);
    // Their slots come back as they close: still serving.
    loop {
        let (status, _) = server.raw("GET", "/api/apple", &host(&server.address), "");
        if status == 200 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no slot came back: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, stderr) = server.interrupt();
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn a_training_run_from_the_page_streams_its_losses_stops_and_becomes_the_chosen_model() {
    let (server, dir, _) = server_in_temp(false);
    let runs = dir.path().join("runs");
    let (_, models) = server.request("GET", "/api/models", "");
    assert_eq!(models["models"], serde_json::json!([]));
    assert_eq!(models["selected"], serde_json::Value::Null);

    // 50 epochs of the book's mlp: far longer than the test waits.
    let start = r#"{"model": "mlp", "optimizer": "sgd", "lr": 0.1, "epochs": 50}"#;
    let (status, answer) = server.request("POST", "/api/train/start", start);
    assert_eq!((status, answer["state"].as_str()), (202, Some("running")), "{answer}");
    let (status, second) = server.request("POST", "/api/train/start", start);
    assert_eq!(status, 409, "{second}");
    assert!(second["error"].as_str().unwrap().contains("already going"));

    // The loss curve grows while it runs.
    let curve_length = || {
        let (_, status) = server.request("GET", "/api/train", "");
        (status["losses"].as_array().unwrap().len(), status)
    };
    let waited = Instant::now();
    let (first, _) = loop {
        let (points, status) = curve_length();
        assert_eq!(status["state"], "running", "{status}");
        if points > 0 {
            break (points, status);
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no loss after 60 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let later = loop {
        let (points, status) = curve_length();
        if points > first {
            break status;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the curve stayed at {first} points: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(later["iterations"], 30_000);
    assert_eq!(later["settings"]["optimizer"], "sgd");

    let (status, _) = server.request("POST", "/api/train/stop", "");
    assert_eq!(status, 200);
    let stopped = loop {
        let (_, status) = server.request("GET", "/api/train", "");
        if status["state"] != "running" {
            break status;
        }
        assert!(waited.elapsed() < Duration::from_secs(120), "still running: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["model_id"], 0, "{stopped}");
    let run_dir = Path::new(stopped["run_dir"].as_str().unwrap());
    assert!(run_dir.starts_with(&runs), "{}", run_dir.display());
    for file in ["model.safetensors", "loss.csv", "config.json", "loss.png"] {
        assert!(run_dir.join(file).is_file(), "{file} missing in {}", run_dir.display());
    }
    let (_, models) = server.request("GET", "/api/models", "");
    assert_eq!(models["selected"], 0);
    assert_eq!(models["models"].as_array().unwrap().len(), 1);
    // The new model answers a drawing.
    let blank = serde_json::json!({"model": 0, "pixels": vec![0.0; 784]}).to_string();
    assert_eq!(server.request("POST", "/api/predict", &blank).0, 200);
    let (code, stderr) = server.interrupt();
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
#[cfg_attr(not(mnist_data), ignore = "needs MNIST_DIR")]
fn ctrl_c_stops_a_training_run_and_keeps_it() {
    let (server, dir, _) = server_in_temp(false);
    let runs = dir.path().join("runs");
    let start = r#"{"model": "mlp", "optimizer": "adam", "lr": 0.001, "epochs": 50}"#;
    assert_eq!(server.request("POST", "/api/train/start", start).0, 202);
    let waited = Instant::now();
    loop {
        let (_, status) = server.request("GET", "/api/train", "");
        if status["iteration"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = server.interrupt();
    assert_eq!(code, Some(130), "{stderr}");
    let kept: Vec<_> = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("model.safetensors").is_file());
    assert!(stderr.contains(&kept[0].display().to_string()), "{stderr}");
}

#[test]
fn a_model_that_is_not_there_and_a_bad_port_are_refused_before_serving() {
    let out = command(&["serve", "--model", "no/such/model.safetensors"], None)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no/such/model.safetensors is not a file"),
        "{}",
        text(&out.stderr)
    );
    let out = command(&["serve", "--port", "70000"], None).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--port"), "{}", text(&out.stderr));
    // Every address: requests could not name it, so the Host check would refuse them all.
    let out = command(&["serve", "--host", "0.0.0.0"], None).output().unwrap();
    assert!(
        text(&out.stderr).contains("listens on every address"),
        "{}",
        text(&out.stderr)
    );
    let out = command(&["serve", "--host", "255.255.255.255"], None).output().unwrap();
    assert!(text(&out.stderr).contains("broadcast"), "{}", text(&out.stderr));
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = command(&["serve", "--runs", file.path().to_str().unwrap()], None)
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("is not a folder"), "{}", text(&out.stderr));
}
