//! Training from the page: one run at a time, on its own thread, watched by
//! polling; stopped from the page or by Ctrl-C as `train`'s runs are (its
//! files kept), and then offered to the other panels.

use super::http::Response;
use super::models::ServedModel;
use super::State;
use crate::common::{available_memory, timestamp, ModelKind, RunDir};
use crate::train::{first_filters, write_run, RunRecord};
use layers::{OptimizerConfig, OptimizerKind};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use train::{report, EvalRecord, ImageData, Observer, TrainConfig, TrainError, Trainer};

/// The most epochs a run from the page may take (DeepConvNet: ~40 s each).
pub const MAX_EPOCHS: usize = 50;
/// The most loss points a status carries: the curve's shape, not every step.
const MAX_CURVE_POINTS: usize = 1000;
/// A run from the page uses the book's batch and this seed, as `train` does by default.
const SEED: u64 = 42;

/// Where a run from the page is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// No run started since the server started.
    Idle,
    /// A run is going.
    Running,
    /// The last run went to its end, and is saved.
    Finished,
    /// The last run was stopped (the page's Stop, or Ctrl-C), and is saved.
    Stopped,
    /// The last run failed; `Status::error` says why.
    Failed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Finished => "finished",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

/// The last (or current) run from the page, as `/api/train` reports it.
pub struct Status {
    phase: Phase,
    settings: Option<serde_json::Value>,
    iteration: usize,
    iterations: usize,
    /// `(iteration, loss)` of every step so far.
    losses: Vec<(usize, f32)>,
    evals: Vec<EvalRecord>,
    run_dir: Option<String>,
    model_id: Option<usize>,
    error: Option<String>,
    /// The run's thread, which shutdown waits for.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Status {
    /// No run yet.
    pub fn idle() -> Self {
        Status {
            phase: Phase::Idle,
            settings: None,
            iteration: 0,
            iterations: 0,
            losses: Vec::new(),
            evals: Vec::new(),
            run_dir: None,
            model_id: None,
            error: None,
            thread: None,
        }
    }

    /// Whether a run is going.
    pub fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The thread of the last run started, to wait for at shutdown.
    pub fn take_thread(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.thread.take()
    }

    /// The last run's folder.
    pub fn run_dir(&self) -> Option<&str> {
        self.run_dir.as_deref()
    }

    /// The status as JSON, the loss curve thinned to at most
    /// [`MAX_CURVE_POINTS`] evenly spaced steps (and the last one).
    pub fn to_json(&self) -> serde_json::Value {
        let stride = self.losses.len().div_ceil(MAX_CURVE_POINTS).max(1);
        let mut curve: Vec<(usize, f32)> = self.losses.iter().copied().step_by(stride).collect();
        if let (Some(last), Some(shown)) = (self.losses.last(), curve.last()) {
            if last.0 != shown.0 {
                curve.push(*last);
            }
        }
        let evals: Vec<serde_json::Value> = self
            .evals
            .iter()
            .map(|e| {
                serde_json::json!({
                    "iteration": e.iteration,
                    "epoch": e.epoch,
                    "train_accuracy": e.train_accuracy,
                    "test_accuracy": e.test_accuracy,
                })
            })
            .collect();
        serde_json::json!({
            "state": self.phase.name(),
            "settings": self.settings,
            "iteration": self.iteration,
            "iterations": self.iterations,
            "losses": curve,
            "evals": evals,
            "run_dir": self.run_dir,
            "model_id": self.model_id,
            "error": self.error,
        })
    }
}

/// What the page asked for, checked.
struct Request {
    kind: ModelKind,
    optimizer: OptimizerKind,
    lr: f64,
    epochs: usize,
}

impl Request {
    fn parse(body: &serde_json::Value) -> Result<Self, String> {
        let text = |key: &str| {
            body.get(key)
                .and_then(|v| v.as_str())
                .ok_or(format!("\"{key}\" is missing or not a string"))
        };
        let kind: ModelKind = text("model")?.parse().map_err(|e| format!("\"model\": {e}"))?;
        let optimizer: OptimizerKind = text("optimizer")?.parse().map_err(|e| format!("\"optimizer\": {e}"))?;
        let lr = body
            .get("lr")
            .and_then(|v| v.as_f64())
            .ok_or("\"lr\" is missing or not a number")?;
        // A rate that f32 rounds to 0 or a subnormal learns nothing.
        if !(lr > 0.0 && (lr as f32).is_normal() && lr <= 10.0) {
            return Err(format!(
                "\"lr\" {} is not a learning rate between 0 and 10",
                layers::readable(lr)
            ));
        }
        let epochs = body
            .get("epochs")
            .and_then(|v| v.as_u64())
            .filter(|&e| (1..=MAX_EPOCHS as u64).contains(&e))
            .ok_or(format!("\"epochs\" must be a whole number from 1 to {MAX_EPOCHS}"))?;
        Ok(Request {
            kind,
            optimizer,
            lr,
            epochs: epochs as usize,
        })
    }

    /// The book's recipe for the model, with the page's optimizer, rate and epochs.
    fn config(&self) -> TrainConfig {
        let convnet = self.kind != ModelKind::Mlp;
        let defaults = TrainConfig::default();
        TrainConfig {
            model: self.kind.spec(Default::default()),
            optimizer: OptimizerConfig {
                kind: self.optimizer,
                learning_rate: self.lr,
                ..defaults.optimizer
            },
            epochs: Some(self.epochs),
            eval_train_size: convnet.then_some(10_000),
            seed: SEED,
            threads: 0,
            ..defaults
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.kind.to_string(),
            "optimizer": self.optimizer.to_string(),
            "lr": self.lr,
            "epochs": self.epochs,
        })
    }
}

/// `POST /api/train/start`: checks the request, claims a run folder and
/// starts the run on its own thread; refused while one is running.
pub fn start(state: &Arc<State>, body: &serde_json::Value) -> Response {
    let request = match Request::parse(body) {
        Ok(request) => request,
        Err(message) => return Response::error(400, message),
    };
    let config = request.config();
    if let Err(e) = config.validate() {
        return Response::error(400, e.to_string());
    }
    // The book's recipes fit in 0.8 GiB; a small machine is told before the run.
    const GIB: f64 = (1u64 << 30) as f64;
    let needed = config
        .memory_estimate(state.dataset.pixels(), 10, rayon::current_num_threads())
        .unwrap_or(f64::INFINITY);
    if let Some(available) = available_memory().filter(|&a| needed > a) {
        return Response::error(
            503,
            format!(
                "this run needs about {:.1} GiB of memory, more than the {:.1} GiB this machine has available",
                needed / GIB,
                available / GIB
            ),
        );
    }
    let mut status = state.training.lock().unwrap_or_else(|e| e.into_inner());
    if state.signal.requested() {
        return Response::error(503, "the server is stopping");
    }
    if status.running() {
        return Response::error(
            409,
            "a training run is already going; stop it first, or wait for it to end",
        );
    }
    // Named as `train` names its runs, with a number after a name already
    // taken (two runs started within a second).
    let base = format!(
        "{}-{}-{}-seed{SEED}-{}-page",
        state.dataset,
        request.kind,
        request.optimizer,
        timestamp()
    );
    let mut claimed = None;
    for attempt in 1..=100 {
        let name = match attempt {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        };
        let run_dir = state.runs_dir.join(&name);
        if run_dir.exists() {
            continue;
        }
        match RunDir::claim(&run_dir, false) {
            Ok(claim) => {
                claimed = Some((name, run_dir, claim));
                break;
            }
            Err(_) => {
                return Response::error(
                    500,
                    format!(
                    "no folder for the run could be made in {}; restart serve with --runs naming a folder it can write",
                    state.runs_dir.display()
                ),
                )
            }
        }
    }
    let Some((name, run_dir, claim)) = claimed else {
        return Response::error(409, "a hundred runs were started within this second; wait a second");
    };
    state.stop_training.store(false, Ordering::Relaxed);
    *status = Status {
        phase: Phase::Running,
        settings: Some(request.to_json()),
        run_dir: Some(run_dir.display().to_string()),
        ..Status::idle()
    };
    let worker_state = Arc::clone(state);
    // `status` stays locked until the thread's handle is in it (the run's
    // first lock waits for that): shutdown, which takes the handle under
    // this lock, always finds the run it must wait for.
    let spawned = std::thread::Builder::new().name("page-training".into()).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train_and_save(&worker_state, config, &run_dir, &name)
        }))
        .unwrap_or_else(|_| Err("the run ended unexpectedly (a bug: the server printed what went wrong)".to_string()));
        drop(claim);
        let mut status = worker_state.training.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok((phase, model_id)) => (status.phase, status.model_id) = (phase, model_id),
            Err(message) => (status.phase, status.error) = (Phase::Failed, Some(message)),
        }
    });
    match spawned {
        Ok(handle) => {
            status.thread = Some(handle);
            Response::json(202, &status.to_json())
        }
        Err(e) => {
            (status.phase, status.error) = (Phase::Failed, Some(format!("no thread for the run: {e}")));
            Response::error(500, format!("no thread for the run: {e}"))
        }
    }
}

/// `POST /api/train/stop`: the run ends after its current step and is kept.
pub fn stop(state: &State) -> Response {
    let status = state.training.lock().unwrap_or_else(|e| e.into_inner());
    if !status.running() {
        return Response::error(409, "no training run is going");
    }
    state.stop_training.store(true, Ordering::Relaxed);
    Response::json(200, &status.to_json())
}

/// Runs the training and writes its folder as `train` does; the model is
/// then offered (and chosen) for the other panels. Returns how the run
/// ended and the model's id, or what went wrong.
fn train_and_save(
    state: &Arc<State>,
    config: TrainConfig,
    run_dir: &std::path::Path,
    name: &str,
) -> Result<(Phase, Option<usize>), String> {
    let data = &state.data;
    let train_set =
        ImageData::new(&data.train.images, &data.train.labels, data.train.pixels()).map_err(|e| e.to_string())?;
    let test_set =
        ImageData::new(&data.test.images, &data.test.labels, data.test.pixels()).map_err(|e| e.to_string())?;
    let mut trainer = Trainer::<f32, _>::new(config, train_set, test_set, 10).map_err(|e| e.to_string())?;
    {
        let mut status = state.training.lock().unwrap_or_else(|e| e.into_inner());
        status.iterations = trainer.iterations();
        status.losses.reserve(trainer.iterations());
    }
    // The first convolution's filters before training, as `train` draws them.
    if let Some(w) = first_filters(trainer.model()) {
        let path = run_dir.join("filters-before.png");
        report::plot_filters(&path, "first-layer filters before training", &w).map_err(|e| e.to_string())?;
    }
    let result = trainer.run(&mut PageObserver { state });
    let title = format!(
        "{} {} {}",
        state.dataset,
        trainer.config().model.name(),
        trainer.config().optimizer.kind
    );
    let record = RunRecord {
        run_dir,
        dataset: state.dataset,
        data_dir: &state.data_dir,
        trainer: &trainer,
        title: &title,
        golden_json: None,
    };
    let failure = write_run(&record, result.is_ok());
    let phase = match result {
        Ok(_) => Phase::Finished,
        Err(TrainError::Interrupted { .. }) => Phase::Stopped,
        // A divergence keeps the last good weights: say where they went.
        Err(e) => return Err(failure.map_or(e.to_string(), |f| format!("{e}; {f}"))),
    };
    if let Some(failure) = failure {
        return Err(failure);
    }
    let model = ServedModel::new(name.to_string(), trainer.model().clone());
    Ok((phase, Some(state.add_model(model))))
}

/// Copies each step's loss and each evaluation into the status the page polls.
struct PageObserver<'a> {
    state: &'a State,
}

impl Observer for PageObserver<'_> {
    fn on_step(&mut self, iteration: usize, loss: f64) {
        let mut status = self.state.training.lock().unwrap_or_else(|e| e.into_inner());
        status.iteration = iteration + 1;
        // Reserved for every step at the start: no allocation here.
        status.losses.push((iteration, loss as f32));
    }

    fn on_eval(&mut self, record: &EvalRecord) {
        let mut status = self.state.training.lock().unwrap_or_else(|e| e.into_inner());
        status.evals.push(record.clone());
    }

    fn should_stop(&self) -> bool {
        self.state.stop_training.load(Ordering::Relaxed) || self.state.signal.requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_checked_field_by_field() {
        let ok = serde_json::json!({"model": "mlp", "optimizer": "sgd", "lr": 0.1, "epochs": 2});
        let request = Request::parse(&ok).unwrap();
        assert_eq!(
            (request.kind, request.optimizer, request.epochs),
            (ModelKind::Mlp, OptimizerKind::Sgd, 2)
        );
        assert_eq!(request.config().epochs, Some(2));
        request.config().validate().unwrap();
        for (field, value, says) in [
            ("model", serde_json::json!("resnet"), "\"model\""),
            (
                "optimizer",
                serde_json::json!(3),
                "\"optimizer\" is missing or not a string",
            ),
            ("lr", serde_json::json!(-1), "not a learning rate"),
            ("lr", serde_json::json!(1e-50), "not a learning rate"),
            ("lr", serde_json::json!("fast"), "\"lr\" is missing"),
            ("epochs", serde_json::json!(0), "whole number from 1 to 50"),
            ("epochs", serde_json::json!(1.5), "whole number from 1 to 50"),
            ("epochs", serde_json::json!(51), "whole number from 1 to 50"),
        ] {
            let mut body = ok.clone();
            body[field] = value;
            let message = Request::parse(&body).err().unwrap_or_default();
            assert!(message.contains(says), "{field}: {message}");
        }
    }

    #[test]
    fn the_curve_is_thinned_to_at_most_a_thousand_points_and_keeps_the_last() {
        let mut status = Status::idle();
        status.losses = (0..2501).map(|i| (i, 1.0 / (i as f32 + 1.0))).collect();
        let json = status.to_json();
        let curve = json["losses"].as_array().unwrap();
        assert!(curve.len() <= MAX_CURVE_POINTS + 1, "{}", curve.len());
        assert_eq!(curve[0][0], 0);
        assert_eq!(curve.last().unwrap()[0], 2500);
        assert_eq!(json["state"], "idle");
    }
}
