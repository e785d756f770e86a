use crate::TrainError;
use layers::Activation;

/// Largest hidden width or batch size accepted: far beyond anything useful
/// here, small enough that a typo cannot ask for terabytes.
pub const MAX_SIZE: usize = 1 << 16;

/// The recipe of a run. [`TrainConfig::default`] is the book's: 784-50-10
/// with ReLU, `W ~ 0.01 N(0,1)`, SGD at 0.1, batches of 100 drawn with
/// replacement, 10000 iterations, evaluation once per epoch (600 iterations).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Hidden layer widths; `[50]` is the book's two-layer net, `[100, 100]` is deeper.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub iters: usize,
    /// Evaluate train and test accuracy every this many iterations; `None`
    /// means once per epoch, `max(train_size / batch_size, 1)` as the book does.
    pub eval_every: Option<usize>,
    /// Seeds the weights (stream 0) and the batch draws (stream 1).
    pub seed: u64,
    /// Worker threads for evaluation; 0 uses every core.
    pub threads: usize,
    pub weight_init_std: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![50],
            activation: Activation::Relu,
            learning_rate: 0.1,
            batch_size: 100,
            iters: 10_000,
            eval_every: None,
            seed: 42,
            threads: 0,
            weight_init_std: 0.01,
        }
    }
}

impl TrainConfig {
    /// Refuses settings that cannot train, before any work starts.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::InvalidConfig(msg));
        if self.hidden.is_empty() {
            return bad("the hidden layer list is empty; give at least one width, e.g. --hidden 50".into());
        }
        if self.hidden.contains(&0) {
            return bad(format!("hidden widths must be positive, got {:?}", self.hidden));
        }
        if self.hidden.iter().any(|&h| h > MAX_SIZE) {
            return bad(format!(
                "hidden widths must be at most {MAX_SIZE}, got {:?}",
                self.hidden
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_SIZE {
            return bad(format!(
                "the batch size must be between 1 and {MAX_SIZE}, got {}",
                self.batch_size
            ));
        }
        if self.iters == 0 {
            return bad("the number of iterations must be at least 1".into());
        }
        if self.eval_every == Some(0) {
            return bad("--eval-every must be at least 1".into());
        }
        if !(self.weight_init_std.is_finite() && self.weight_init_std > 0.0) {
            return bad(format!(
                "the weight init std must be a positive number, got {}",
                self.weight_init_std
            ));
        }
        Ok(())
    }

    /// The evaluation interval for a training set of `train_len` images.
    pub fn eval_interval(&self, train_len: usize) -> usize {
        self.eval_every.unwrap_or((train_len / self.batch_size.max(1)).max(1))
    }

    /// Layer widths: input, hidden..., output.
    pub fn sizes(&self, input: usize, output: usize) -> Vec<usize> {
        let mut sizes = vec![input];
        sizes.extend_from_slice(&self.hidden);
        sizes.push(output);
        sizes
    }

    /// The settings as JSON, for the run folder.
    pub fn to_json(&self, train_len: usize) -> serde_json::Value {
        serde_json::json!({
            "hidden": self.hidden,
            "activation": self.activation.to_string(),
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "iters": self.iters,
            "eval_every": self.eval_interval(train_len),
            "seed": self.seed,
            "threads": self.threads,
            "weight_init_std": self.weight_init_std,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_books_and_valid() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        assert_eq!(c.eval_interval(60000), 600);
        assert_eq!(c.sizes(784, 10), vec![784, 50, 10]);
    }

    #[test]
    fn every_bad_value_is_refused_with_a_message() {
        type Spoil = fn(&mut TrainConfig);
        let cases: [(Spoil, &str); 11] = [
            (|c| c.hidden.clear(), "empty"),
            (|c| c.hidden = vec![50, 0], "positive"),
            (|c| c.hidden = vec![1 << 40], "at most"),
            (|c| c.learning_rate = -0.1, "learning rate"),
            (|c| c.learning_rate = f64::NAN, "learning rate"),
            (|c| c.batch_size = 0, "batch size"),
            (|c| c.batch_size = 1 << 30, "batch size"),
            (|c| c.iters = 0, "iterations"),
            (|c| c.eval_every = Some(0), "eval-every"),
            (|c| c.weight_init_std = 0.0, "init std"),
            (|c| c.weight_init_std = f64::INFINITY, "init std"),
        ];
        for (spoil, needle) in cases {
            let mut config = TrainConfig::default();
            spoil(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
