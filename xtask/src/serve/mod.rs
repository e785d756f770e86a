//! `cargo xtask serve`: a local page to see backprop work — draw a digit and
//! watch the net read it, step through the test set's mistakes, edit the
//! book's apple graph and see its derivatives, and train a net live.
//!
//! The page (`page.html`, embedded) talks to a small JSON API. The server
//! binds to loopback, answers only requests that name it in their `Host`
//! (a page of another site that rebinds its name to 127.0.0.1 is refused)
//! and, for POSTs, come from its own page (`Origin`, and a JSON body, which
//! another site cannot send without asking first); every request is bounded
//! in size and time before it is read, and the page never names a file: it
//! picks models by their index in the list the server made.

mod http;
mod models;
mod training;

use crate::common::{project_root, DataArgs, Result, StopSignal, XtaskError};
use http::{Request, Response};
use mnist::{Dataset, Mnist};
use models::ServedModel;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The page: HTML, CSS and script in one file, nothing fetched from outside.
const PAGE: &str = include_str!("page.html");

/// Requests answered at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 32;

/// `cargo xtask serve`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// A model.safetensors written by `cargo xtask train` to offer (repeat
    /// for several); the project's runs/ are offered too, newest first.
    #[arg(long, value_name = "PATH")]
    model: Vec<PathBuf>,
    /// A run folder of `cargo xtask train`, whose model to offer first (repeatable).
    #[arg(long, value_name = "DIR")]
    run: Vec<PathBuf>,
    /// Folder of runs: those in it are offered (newest first), and the
    /// page's training runs are written into it [default: runs/ of the project].
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Address to listen on. Loopback (the default) keeps the page to this
    /// machine; any other address lets others reach it, and train on it.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[command(flatten)]
    data: DataArgs,
}

/// What every request shares.
pub struct State {
    dataset: Dataset,
    data: Mnist,
    data_dir: PathBuf,
    /// Where the page's training runs go.
    runs_dir: PathBuf,
    /// `Host` values that name this server: `127.0.0.1:8000`, `localhost:8000`.
    hosts: Vec<String>,
    models: RwLock<Vec<Arc<ServedModel>>>,
    /// The model panels 1 and 2 start with: the last trained, or the first offered.
    selected: Mutex<Option<usize>>,
    training: Mutex<training::Status>,
    /// Set by the page's stop button; the run checks it after every step.
    stop_training: AtomicBool,
    /// Ctrl-C or SIGTERM: the server stops, and so does a run.
    signal: StopSignal,
    /// The test panel's first scoring of a model runs here: on the global
    /// pool it would queue the drawings' predictions behind it.
    scoring: rayon::ThreadPool,
}

impl State {
    /// Adds a model to the list and chooses it; returns its id.
    fn add_model(&self, model: ServedModel) -> usize {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        models.push(Arc::new(model));
        let id = models.len() - 1;
        *self.selected.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
        id
    }

    fn model(&self, id: Option<&serde_json::Value>) -> std::result::Result<Arc<ServedModel>, Response> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let id = id
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Response::error(400, "\"model\" must be the id of a model from /api/models"))?;
        usize::try_from(id)
            .ok()
            .and_then(|id| models.get(id))
            .cloned()
            .ok_or_else(|| Response::error(404, format!("there is no model {id}; /api/models lists them")))
    }
}

/// Serves the page until Ctrl-C or SIGTERM (exit status 130 or 143), a
/// training run in progress stopped and written first.
pub fn run(args: Args) -> Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; `cargo xtask` runs the release profile, use it for real runs");
    }
    let signal = StopSignal::install()?;
    let host = args.host.to_canonical();
    if host.is_unspecified() {
        return Err(XtaskError::Usage(format!(
            "--host {host} listens on every address, but the page answers only requests that name the address given; give the address others will use (--host 192.168.1.5, say), or leave the default 127.0.0.1"
        )));
    }
    if host.is_multicast() || matches!(host, IpAddr::V4(ip) if ip.is_broadcast()) {
        return Err(XtaskError::Usage(format!(
            "--host {host} is a multicast or broadcast address; give one of this machine's addresses (the default: 127.0.0.1)"
        )));
    }
    let runs_dir = args.runs.clone().unwrap_or_else(|| project_root().join("runs"));
    if runs_dir.exists() && !runs_dir.is_dir() {
        return Err(XtaskError::Usage(format!(
            "{} is not a folder; give --runs the folder of runs (it is made at the first training)",
            runs_dir.display()
        )));
    }
    let dataset = args.data.dataset;
    let given: Vec<PathBuf> = args
        .run
        .iter()
        .map(|dir| dir.join("model.safetensors"))
        .chain(args.model.iter().cloned())
        .collect();
    for path in &given {
        if !path.is_file() {
            return Err(XtaskError::Usage(format!(
                "{} is not a file; give --model a model.safetensors written by `cargo xtask train`, or --run its folder",
                path.display()
            )));
        }
    }
    let (data, data_dir, _) = args.data.load()?;
    let models = models::initial_models(&given, &runs_dir, dataset, data.test.labels.len())?;
    let listener = TcpListener::bind(SocketAddr::new(host, args.port)).map_err(|e| {
        XtaskError::Usage(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "port {} is taken on {host}; give another --port (0 picks a free one)",
                args.port
            ),
            _ => format!("cannot listen on {host} port {} ({e})", args.port),
        })
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| XtaskError::Failed(format!("cannot read the address listened on ({e})")))?;
    let port = address.port();
    let shown = match address.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{ip}:{port}"),
    };
    // The names a request may give for this server: the address it listens
    // on, and on loopback the usual names of this machine.
    let mut hosts = vec![shown.clone()];
    if host.is_loopback() {
        for name in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ] {
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
    }
    let selected = (!models.is_empty()).then_some(0);
    let state = Arc::new(State {
        dataset,
        data,
        data_dir,
        runs_dir,
        hosts,
        models: RwLock::new(models.into_iter().map(Arc::new).collect()),
        selected: Mutex::new(selected),
        training: Mutex::new(training::Status::idle()),
        stop_training: AtomicBool::new(false),
        signal: signal.clone(),
        scoring: crate::common::thread_pool(0)?,
    });

    say!("serving on http://{shown}/");
    if !host.is_loopback() {
        eprintln!(
            "warning: listening on {host}: anyone who can reach this machine there can use the page and start training; the page is made for loopback"
        );
    }
    {
        let models = state.models.read().unwrap_or_else(|e| e.into_inner());
        match models.len() {
            0 => say!("  no model yet: train one from the page, or give --model"),
            n => say!(
                "  {n} model{} of {dataset}, first {}",
                if n == 1 { "" } else { "s" },
                models[0].name
            ),
        }
    }
    say!("  Ctrl-C stops the server (and a training run, keeping it)");
    {
        use std::io::Write as _;
        crate::stdout_result(std::io::stdout().flush());
    }

    // Connections are taken on their own thread, blocking in accept (a
    // listener polled with sleeps between tries would add up to a sleep to
    // every request); this one waits for Ctrl-C. At exit that thread is
    // simply left behind.
    let accepting = Arc::clone(&state);
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_connections(&listener, &accepting))
        .map_err(|e| XtaskError::Failed(format!("cannot start the server's thread ({e})")))?;
    while !signal.requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A run going on stops at its next step (it checks the signal) and
    // writes its folder; wait for that.
    let running = state.training.lock().unwrap_or_else(|e| e.into_inner()).take_thread();
    if let Some(handle) = running {
        let _ = handle.join();
        let status = state.training.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = status.run_dir() {
            eprintln!("the page's last training run is in {dir}");
        }
    }
    eprintln!("stopped ({})", signal.cause());
    Ok(signal.exit_code())
}

/// Takes connections for as long as the process lives, each on its own
/// thread, at most [`MAX_CONNECTIONS`] at once.
fn accept_connections(listener: &TcpListener, state: &Arc<State>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                    refuse_busy(stream);
                    continue;
                }
                let slot = Slot::take(&open);
                let state = Arc::clone(state);
                // Dropped when the exchange ends, a panic included, or
                // with the closure when no thread could be made.
                let _ = std::thread::Builder::new().name("request".into()).spawn(move || {
                    let _slot = slot;
                    serve_connection(&state, stream);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Out of file descriptors, say: wait for requests to finish.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] requests answered at once, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Too many requests at once: answered without reading, and closed.
fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let busy = Response::error(503, "the server is answering too many requests; try again");
    if http::write_response(&mut stream, &busy, false).is_ok() {
        // This runs on the accepting thread: what the client sent with its
        // request is read for at most 50 ms.
        drain_and_close(stream, Duration::from_millis(50));
    }
}

/// Closes a connection whose request was not read to its end. Closing with
/// unread bytes resets the connection, and the client loses the answer
/// already sent: the rest is read first, at most 1 MiB for at most `wait`.
fn drain_and_close(mut stream: TcpStream, wait: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(wait));
    let _ = std::io::copy(&mut (&mut stream).take(1 << 20), &mut std::io::sink());
}

fn serve_connection(state: &Arc<State>, mut stream: TcpStream) {
    // Each wait of the exchange is bounded.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(http::REQUEST_DEADLINE));
    match http::read_request(&mut stream, |request| check_source(state, request)) {
        Ok(request) => {
            let head_only = request.method == "HEAD";
            let _ = http::write_response(&mut stream, &route(state, &request), head_only);
        }
        Err(Some(refusal)) => {
            let _ = http::write_response(&mut stream, &refusal, false);
            drain_and_close(stream, Duration::from_secs(1));
        }
        Err(None) => {}
    }
}

/// Refuses, from its head alone, a request that does not come from the
/// page: one for another host name (DNS rebinding), one made by another
/// site's page, a POST from another origin or without a JSON body (what a
/// form of another site would send).
fn check_source(state: &State, request: &Request) -> Option<Response> {
    let ours = |host: &str| state.hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    match request.host.as_deref() {
        Some(host) if ours(host) => {}
        host => {
            return Some(Response::error(
                403,
                format!(
                    "this server answers requests for {} only, not for {}",
                    state.hosts[0],
                    host.map_or("a request without a Host".to_string(), shown)
                ),
            ))
        }
    }
    // Browsers send Sec-Fetch-Site with every request, Origin with every POST.
    if request
        .fetch_site
        .as_deref()
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site"))
    {
        return Some(Response::error(
            403,
            "requests made by another site's page are not taken; use the page itself",
        ));
    }
    if request.method == "POST" {
        if let Some(origin) = &request.origin {
            if !origin.strip_prefix("http://").is_some_and(ours) {
                return Some(Response::error(
                    403,
                    format!("requests from {} are not taken; use the page itself", shown(origin)),
                ));
            }
        }
        // The media type, without parameters (`; charset=utf-8`).
        let json = request
            .content_type
            .as_deref()
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(Response::error(
                415,
                "a POST must carry a JSON body (Content-Type: application/json)",
            ));
        }
    }
    None
}

/// A value the client sent, as an error message quotes it: at most 40
/// characters (the rest elided), so that an answer never echoes a body.
fn shown(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_string(),
    }
}

fn route(state: &Arc<State>, request: &Request) -> Response {
    let body = || -> std::result::Result<serde_json::Value, Response> {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&request.body).map_err(|e| Response::error(400, format!("the body is not JSON ({e})")))
    };
    let get = request.method == "GET" || request.method == "HEAD";
    let post = request.method == "POST";
    match request.path.as_str() {
        "/" | "/index.html" if get => Response::html(PAGE),
        "/api/models" if get => list_models(state),
        "/api/predict" if post => match body() {
            Ok(body) => predict(state, &body),
            Err(refusal) => refusal,
        },
        "/api/test" if get => test_image(state, request),
        "/api/apple" if get => apple(&serde_json::Value::Null),
        "/api/apple" if post => match body() {
            Ok(body) => apple(&body),
            Err(refusal) => refusal,
        },
        "/api/train" if get => Response::json(200, &state.training.lock().unwrap_or_else(|e| e.into_inner()).to_json()),
        "/api/train/start" if post => match body() {
            Ok(body) => training::start(state, &body),
            Err(refusal) => refusal,
        },
        "/api/train/stop" if post => training::stop(state),
        "/" | "/index.html" | "/api/models" | "/api/predict" | "/api/test" | "/api/apple" | "/api/train"
        | "/api/train/start" | "/api/train/stop" => Response::error(
            405,
            format!("{} does not take {}", request.path, shown(&request.method)),
        ),
        path => Response::error(404, format!("there is nothing at {}", shown(path))),
    }
}

fn list_models(state: &State) -> Response {
    let models = state.models.read().unwrap_or_else(|e| e.into_inner());
    let list: Vec<serde_json::Value> = models
        .iter()
        .enumerate()
        .map(|(id, model)| model.describe(id, state.dataset))
        .collect();
    let selected = *state.selected.lock().unwrap_or_else(|e| e.into_inner());
    Response::json(200, &serde_json::json!({ "models": list, "selected": selected }))
}

/// `POST /api/predict`: a drawing, exactly the model's input size of
/// finite numbers in [0, 1].
fn predict(state: &State, body: &serde_json::Value) -> Response {
    let model = match state.model(body.get("model")) {
        Ok(model) => model,
        Err(refusal) => return refusal,
    };
    let expected = state.dataset.pixels();
    let Some(values) = body.get("pixels").and_then(|p| p.as_array()) else {
        return Response::error(
            400,
            format!("\"pixels\" must be an array of {expected} numbers in [0, 1]"),
        );
    };
    if values.len() != expected {
        return Response::error(
            400,
            format!(
                "\"pixels\" has {} values; a drawing is {expected} (28x28) numbers in [0, 1]",
                values.len()
            ),
        );
    }
    let mut pixels = Vec::with_capacity(expected);
    for (i, value) in values.iter().enumerate() {
        match value.as_f64() {
            Some(v) if (0.0..=1.0).contains(&v) => pixels.push(v as f32),
            _ => {
                return Response::error(
                    400,
                    format!("pixel {i} is {}, not a number in [0, 1]", shown(&value.to_string())),
                )
            }
        }
    }
    model.predict(&pixels, &state.dataset.class_names())
}

/// `GET /api/test?model=ID&position=K`: the K-th test image, misclassified first.
fn test_image(state: &State, request: &Request) -> Response {
    let id = request.query_value("model").and_then(|v| v.parse::<u64>().ok());
    let model = match state.model(id.map(serde_json::Value::from).as_ref()) {
        Ok(model) => model,
        Err(refusal) => return refusal,
    };
    let test = &state.data.test;
    let total = test.labels.len();
    let Some(position) = request
        .query_value("position")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&p| p < total)
    else {
        return Response::error(
            400,
            format!("\"position\" must be a whole number from 0 to {}", total - 1),
        );
    };
    let ranking = match model.ranking(test, &state.scoring) {
        Ok(ranking) => ranking,
        Err(e) => return Response::error(500, format!("the test set could not be scored with this model: {e}")),
    };
    let index = ranking.order[position];
    let classes = ranking.probabilities.len() / total;
    let probabilities = &ranking.probabilities[index * classes..(index + 1) * classes];
    let predicted = ranking.predicted[index];
    Response::json(
        200,
        &serde_json::json!({
            "position": position,
            "total": total,
            "misclassified": ranking.misclassified,
            "index": index,
            "pixels": test.image(index),
            "label": test.labels[index],
            "predicted": predicted,
            "probabilities": probabilities,
            "class_names": state.dataset.class_names(),
        }),
    )
}

/// The book's figure 5-17 (`POST /api/apple`; GET: its own numbers),
/// forward and backward through the project's `MulLayer` and `AddLayer`.
fn apple(body: &serde_json::Value) -> Response {
    const INPUTS: [(&str, f64); 5] = [
        ("apple_price", 100.0),
        ("apple_count", 2.0),
        ("orange_price", 150.0),
        ("orange_count", 3.0),
        ("tax", 1.1),
    ];
    let mut values = [0.0; 5];
    for (slot, (name, default)) in values.iter_mut().zip(INPUTS) {
        *slot = match body.get(name) {
            None if body.is_null() => default,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x.abs() <= 1e12 => x,
                _ => {
                    return Response::error(
                        400,
                        format!("\"{name}\" is {}, not a number of at most 1e12", shown(&v.to_string())),
                    )
                }
            },
            None => return Response::error(400, format!("\"{name}\" is missing")),
        };
    }
    let [apple_price, apple_count, orange_price, orange_count, tax] = values;
    let mut mul_apple = layers::MulLayer::new(0.0);
    let mut mul_orange = layers::MulLayer::new(0.0);
    let mut add_fruit = layers::AddLayer::new();
    let mut mul_tax = layers::MulLayer::new(0.0);
    let apple_total = mul_apple.forward(apple_price, apple_count);
    let orange_total = mul_orange.forward(orange_price, orange_count);
    let all_total = add_fruit.forward(apple_total, orange_total);
    let price = mul_tax.forward(all_total, tax);
    // Backward from d price / d price = 1, each node handing its inputs their share.
    let (d_all_total, d_tax) = mul_tax.backward(1.0);
    let (d_apple_total, d_orange_total) = add_fruit.backward(d_all_total);
    let (d_apple_price, d_apple_count) = mul_apple.backward(d_apple_total);
    let (d_orange_price, d_orange_count) = mul_orange.backward(d_orange_total);
    Response::json(
        200,
        &serde_json::json!({
            "inputs": {
                "apple_price": apple_price, "apple_count": apple_count,
                "orange_price": orange_price, "orange_count": orange_count, "tax": tax,
            },
            "forward": {
                "apple_total": apple_total, "orange_total": orange_total,
                "all_total": all_total, "price": price,
            },
            "backward": {
                "price": 1.0, "all_total": d_all_total,
                "apple_total": d_apple_total, "orange_total": d_orange_total,
                "apple_price": d_apple_price, "apple_count": d_apple_count,
                "orange_price": d_orange_price, "orange_count": d_orange_count, "tax": d_tax,
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(response: Response) -> (u16, serde_json::Value) {
        (response.status, serde_json::from_slice(&response.body).unwrap())
    }

    #[test]
    fn the_apple_graph_gives_the_books_numbers_and_follows_its_inputs() {
        let (status, graph) = json(apple(&serde_json::Value::Null));
        assert_eq!(status, 200);
        let close = |v: &serde_json::Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-9;
        assert!(close(&graph["forward"]["price"], 715.0), "{graph}");
        for (key, expected) in [
            ("apple_price", 2.2),
            ("apple_count", 110.0),
            ("orange_price", 3.3),
            ("orange_count", 165.0),
            ("tax", 650.0),
            ("all_total", 1.1),
        ] {
            assert!(close(&graph["backward"][key], expected), "{key}: {graph}");
        }
        let body = serde_json::json!({"apple_price": 100, "apple_count": 4, "orange_price": 150, "orange_count": 3, "tax": 1.1});
        let (_, graph) = json(apple(&body));
        assert!(close(&graph["forward"]["price"], 935.0), "{graph}");
        assert!(close(&graph["backward"]["apple_price"], 4.4), "{graph}");
        assert!(close(&graph["backward"]["tax"], 850.0), "{graph}");
    }

    #[test]
    fn the_apple_graph_refuses_missing_and_unbounded_inputs() {
        let mut body =
            serde_json::json!({"apple_price": 100, "apple_count": 2, "orange_price": 150, "orange_count": 3});
        let (status, answer) = json(apple(&body));
        assert_eq!((status, answer["error"].as_str()), (400, Some("\"tax\" is missing")));
        body["tax"] = serde_json::json!(1e300);
        assert_eq!(apple(&body).status, 400);
        body["tax"] = serde_json::json!("1.1");
        assert_eq!(apple(&body).status, 400);
    }
}
