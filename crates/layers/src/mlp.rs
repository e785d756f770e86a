//! The book's fully connected networks as a builder over [`Sequential`]:
//! `TwoLayerNet` (chapter 5), `MultiLayerNet` and `MultiLayerNetExtend`
//! (chapter 6).
//!
//! For widths `input, h1, ..., hk, output` the layers are, for each hidden
//! width, `Affine -> [BatchNorm] -> activation -> [Dropout]`, then a last
//! `Affine`, as `MultiLayerNetExtend` orders them. Weights are drawn in the
//! order W1, W2, ... from one ChaCha8 stream seeded by the caller; biases
//! start at 0, BatchNorm's scale at 1 and shift at 0.

use crate::net::check_weight_decay;
use crate::{Activation, LayerError, LayerSpec, NetSpec, Sequential, MAX_PARAMS, MAX_WIDTH};
use std::fmt;
use std::str::FromStr;
use tensor::Element;

/// The most hidden layers a recipe may have (the book's deepest has 6).
pub const MAX_HIDDEN_LAYERS: usize = 100;

/// How initial weights are drawn: `std * N(0, 1)`, with `std` fixed or
/// depending on the layer's number of inputs `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// A fixed standard deviation: the book's `weight_init_std=0.01`.
    Std(f64),
    /// `sqrt(1 / n)`: Xavier's, the book's choice for sigmoid.
    Xavier,
    /// `sqrt(2 / n)`: He's, the book's choice for ReLU.
    He,
}

/// The book's default, `Std(0.01)`.
impl Default for Init {
    fn default() -> Self {
        Init::Std(0.01)
    }
}

impl Init {
    /// The standard deviation for a layer with `fan_in` inputs.
    pub fn std(self, fan_in: usize) -> f64 {
        match self {
            Init::Std(std) => std,
            Init::Xavier => (1.0 / fan_in as f64).sqrt(),
            Init::He => (2.0 / fan_in as f64).sqrt(),
        }
    }

    /// Refuses, with a [`LayerError::InvalidSetting`] on `init std`, a
    /// fixed `std` that is not a finite number of at least `f32`'s smallest
    /// normal (1.18e-38; zero and negatives included), below which every
    /// weight would round to 0.
    pub fn validate(self) -> Result<(), LayerError> {
        match self {
            // Below f32's smallest normal number the weights would all round to 0.
            Init::Std(std) if !(std.is_finite() && std >= f32::MIN_POSITIVE as f64) => {
                Err(LayerError::InvalidSetting {
                    field: "init std",
                    value: std,
                    expected: "a positive number of at least 1e-37",
                })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Std(std) => write!(f, "std:{std}"),
            Init::Xavier => f.write_str("xavier"),
            Init::He => f.write_str("he"),
        }
    }
}

impl FromStr for Init {
    type Err = String;
    /// `std:0.01` (or just `0.01`), `xavier` (or the book's `sigmoid`), `he` (or `relu`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let init = match s.as_str() {
            "xavier" | "sigmoid" => Init::Xavier,
            "he" | "relu" => Init::He,
            _ => {
                let number = s.strip_prefix("std:").unwrap_or(&s);
                Init::Std(
                    number
                        .parse::<f64>()
                        .map_err(|_| format!("unknown initializer '{s}'; use std:S (e.g. std:0.01), xavier or he"))?,
                )
            }
        };
        init.validate().map_err(|e| e.to_string())?;
        Ok(init)
    }
}

/// A fully connected network's recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Widths: input, hidden..., output.
    pub sizes: Vec<usize>,
    /// The nonlinearity after every hidden Affine (or BatchNorm) layer.
    pub activation: Activation,
    /// How every Affine layer's initial weights are drawn.
    pub init: Init,
    /// A BatchNorm after every hidden Affine layer.
    pub batch_norm: bool,
    /// A Dropout of this ratio after every hidden activation.
    pub dropout: Option<f64>,
    /// L2 weight decay lambda (0: none).
    pub weight_decay: f64,
}

impl Mlp {
    /// ReLU, weights `0.01 * N(0, 1)`, no BatchNorm, Dropout or weight decay.
    pub fn new(sizes: &[usize]) -> Self {
        Mlp {
            sizes: sizes.to_vec(),
            activation: Activation::Relu,
            init: Init::default(),
            batch_norm: false,
            dropout: None,
            weight_decay: 0.0,
        }
    }

    /// The book's `TwoLayerNet(input_size, hidden_size, output_size)`:
    /// Affine-Relu-Affine with weights `0.01 * N(0, 1)`.
    pub fn two_layer_net(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        Mlp::new(&[input_size, hidden_size, output_size])
    }

    /// The recipe with this hidden-layer nonlinearity.
    pub fn activation(self, activation: Activation) -> Self {
        Mlp { activation, ..self }
    }

    /// The recipe with this weight initialization.
    pub fn init(self, init: Init) -> Self {
        Mlp { init, ..self }
    }

    /// The recipe with (`true`) or without a BatchNorm after every hidden
    /// Affine layer.
    pub fn batch_norm(self, batch_norm: bool) -> Self {
        Mlp { batch_norm, ..self }
    }

    /// The recipe with a Dropout of this ratio (in `[0, 1)`) after every
    /// hidden activation, or none.
    pub fn dropout(self, dropout: Option<f64>) -> Self {
        Mlp { dropout, ..self }
    }

    /// The recipe with this L2 weight decay `lambda` (`>= 0`; 0 is none).
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        Mlp { weight_decay, ..self }
    }

    /// Refuses recipes no network can be built from, before any allocation.
    pub fn validate(&self) -> Result<(), LayerError> {
        if self.sizes.len() < 2 {
            return Err(LayerError::OutOfRange {
                what: "an mlp's number of widths (input, hidden..., output)",
                value: self.sizes.len(),
                min: 2,
                max: MAX_HIDDEN_LAYERS + 2,
            });
        }
        if let Some(&value) = self.sizes.iter().find(|&&s| !(1..=MAX_WIDTH).contains(&s)) {
            return Err(LayerError::OutOfRange {
                what: "an mlp's layer widths",
                value,
                min: 1,
                max: MAX_WIDTH,
            });
        }
        if self.sizes.len() > MAX_HIDDEN_LAYERS + 2 {
            return Err(LayerError::OutOfRange {
                what: "an mlp's number of hidden layers",
                value: self.sizes.len() - 2,
                min: 0,
                max: MAX_HIDDEN_LAYERS,
            });
        }
        // W and b of every Affine, gamma and beta of every BatchNorm.
        let params = self.sizes.windows(2).fold(0usize, |total, pair| {
            let affine = pair[0].saturating_mul(pair[1]).saturating_add(pair[1]);
            let batch_norm = if self.batch_norm { 2 * pair[1] } else { 0 };
            total.saturating_add(affine).saturating_add(batch_norm)
        });
        if params > MAX_PARAMS {
            return Err(LayerError::TooManyParams {
                params,
                max: MAX_PARAMS,
            });
        }
        self.init.validate()?;
        if let Some(ratio) = self.dropout {
            LayerSpec::Dropout { ratio }.validate()?;
        }
        check_weight_decay(self.weight_decay)
    }

    /// The recipe as a [`NetSpec`]: for each hidden width `Affine ->
    /// [BatchNorm] -> activation -> [Dropout]`, then the last `Affine`.
    pub fn net(&self) -> NetSpec {
        let mut net = NetSpec::new(&self.sizes[..1.min(self.sizes.len())])
            .init(self.init)
            .weight_decay(self.weight_decay);
        let hidden = self.sizes.len().saturating_sub(2);
        for (i, &outputs) in self.sizes.iter().skip(1).enumerate() {
            net = net.affine(outputs);
            if i == hidden {
                break;
            }
            if self.batch_norm {
                net = net.batch_norm();
            }
            net = net.layer(self.activation.def());
            if let Some(ratio) = self.dropout {
                net = net.dropout(ratio);
            }
        }
        net
    }

    /// The network, with weights drawn from the stream seeded by `seed`.
    pub fn build<T: Element>(&self, seed: u64) -> Result<Sequential<T>, LayerError> {
        self.validate()?;
        self.net().build(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{mean_abs_diff, numerical_gradient, relative_error};
    use crate::{LayerRng, Target};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tensor::Tensor;

    fn toy_batch(rows: usize, cols: usize, seed: u64) -> Tensor<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor::randn(&[rows, cols], 1.0, &mut rng)
    }

    /// Backprop against the numerical gradient of the whole model, every parameter.
    fn check_model(model: &mut Sequential<f64>, x: &Tensor<f64>, labels: &[usize], tolerance: f64) {
        let seed = 77;
        model
            .gradient(x, Target::Labels(labels), &mut crate::layer_stream(seed))
            .unwrap();
        let numerical = numerical_gradient(model, x, Target::Labels(labels), 1e-5, seed).unwrap();
        for (param, (name, num)) in model.params().iter().zip(&numerical) {
            assert_eq!(param.name, name);
            let (bp, nu) = (param.grad.as_slice(), num.as_slice());
            let magnitude = bp.iter().chain(nu).fold(0.0f64, |m, v| m.max(v.abs()));
            // A bias right before a BatchNorm has gradient 0 (the mean removes
            // it); there the relative error only measures rounding noise.
            if magnitude > 1e-9 {
                let err = relative_error(bp, nu);
                assert!(err < tolerance, "{name}: relative error {err}");
            }
            assert!(mean_abs_diff(param.grad.as_slice(), num.as_slice()) < 1e-8, "{name}");
        }
    }

    #[test]
    fn backprop_matches_numerical_gradient_for_every_recipe() {
        let x = toy_batch(5, 12, 12);
        let labels = [1usize, 3, 0, 2, 3];
        let recipes = [
            Mlp::new(&[12, 7, 5, 4]).init(Init::Std(0.5)),
            Mlp::new(&[12, 7, 5, 4])
                .activation(Activation::Sigmoid)
                .init(Init::Xavier),
            Mlp::new(&[12, 7, 5, 4]).init(Init::He).batch_norm(true),
            Mlp::new(&[12, 7, 5, 4]).init(Init::He).dropout(Some(0.3)),
            Mlp::new(&[12, 7, 5, 4]).init(Init::He).weight_decay(0.1),
            Mlp::new(&[12, 7, 5, 4])
                .init(Init::He)
                .batch_norm(true)
                .dropout(Some(0.2))
                .weight_decay(0.05),
        ];
        for recipe in recipes {
            let mut model = recipe.build::<f64>(11).unwrap();
            check_model(&mut model, &x, &labels, 1e-6);
        }
    }

    #[test]
    fn names_follow_the_book() {
        let plain = Mlp::new(&[6, 5, 4, 3]).build::<f32>(0).unwrap();
        assert_eq!(plain.param_names(), ["W1", "b1", "W2", "b2", "W3", "b3"]);
        let extended = Mlp::new(&[6, 5, 4, 3])
            .batch_norm(true)
            .dropout(Some(0.5))
            .build::<f32>(0)
            .unwrap();
        assert_eq!(
            extended.param_names(),
            ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
        );
        let buffers: Vec<&str> = extended.buffers().iter().map(|b| b.0).collect();
        assert_eq!(
            buffers,
            ["running_mean1", "running_var1", "running_mean2", "running_var2"]
        );
        assert_eq!(
            extended.summary(),
            "Affine(6x5) BatchNorm Relu Dropout(0.5) Affine(5x4) BatchNorm Relu Dropout(0.5) Affine(4x3)"
        );
        // The weights do not depend on BatchNorm being there: same stream, same draws.
        assert_eq!(plain.params()[2].value, extended.params()[4].value);
    }

    #[test]
    fn seeded_init_is_reproducible_and_follows_the_book() {
        let book = Mlp::two_layer_net(784, 50, 10);
        let a = book.build::<f32>(42).unwrap();
        let b = book.build::<f32>(42).unwrap();
        let c = book.build::<f32>(43).unwrap();
        assert_eq!(a.params()[0].value, b.params()[0].value);
        assert_ne!(a.params()[0].value, c.params()[0].value);
        assert_eq!(a.params()[0].value.shape(), &[784, 50]);
        assert!(
            a.params()[1].value.as_slice().iter().all(|&v| v == 0.0),
            "biases start at zero"
        );
        assert_eq!(a.num_params(), 784 * 50 + 50 + 50 * 10 + 10);
        // Xavier and He scale with the fan-in: sample std of W1 (784 inputs) and W2 (50).
        let sample_std = |t: &Tensor<f64>| {
            let n = t.numel() as f64;
            (t.as_slice().iter().map(|v| v * v).sum::<f64>() / n).sqrt()
        };
        for (init, factor) in [(Init::Xavier, 1.0), (Init::He, 2.0)] {
            let model = Mlp::new(&[784, 50, 10]).init(init).build::<f64>(1).unwrap();
            let params = model.params();
            let (s1, s2) = (sample_std(params[0].value), sample_std(params[2].value));
            assert!((s1 / (factor / 784.0f64).sqrt() - 1.0).abs() < 0.02, "{init}: {s1}");
            assert!((s2 / (factor / 50.0f64).sqrt() - 1.0).abs() < 0.1, "{init}: {s2}");
        }
    }

    #[test]
    fn weight_decay_adds_to_loss_and_weight_gradients_only() {
        let x = toy_batch(4, 6, 3);
        let labels = [0usize, 1, 2, 1];
        let plain = Mlp::new(&[6, 5, 3]).init(Init::Std(0.5));
        let mut without = plain.build::<f64>(5).unwrap();
        let mut with = plain.clone().weight_decay(0.1).build::<f64>(5).unwrap();
        let rng = || LayerRng::seed_from_u64(0);
        let l0 = without.gradient(&x, Target::Labels(&labels), &mut rng()).unwrap();
        let l1 = with.gradient(&x, Target::Labels(&labels), &mut rng()).unwrap();
        let sum_sq: f64 = without
            .params()
            .iter()
            .filter(|p| p.name.starts_with('W'))
            .map(|p| p.value.as_slice().iter().map(|v| v * v).sum::<f64>())
            .sum();
        assert!((l1 - l0 - 0.05 * sum_sq).abs() < 1e-12);
        for (a, b) in without.params().iter().zip(with.params()) {
            let expected: Vec<f64> = if a.name.starts_with('W') {
                a.grad
                    .as_slice()
                    .iter()
                    .zip(a.value.as_slice())
                    .map(|(g, w)| g + 0.1 * w)
                    .collect()
            } else {
                a.grad.as_slice().to_vec()
            };
            assert_eq!(b.grad.as_slice(), &expected[..], "{}", a.name);
        }
    }

    #[test]
    fn bad_recipes_are_typed_errors() {
        // What each refusal names: the count or setting, and the value of a count.
        let named = |err: LayerError| match err {
            LayerError::OutOfRange { what, value, .. } => format!("{what} = {value}"),
            LayerError::InvalidSetting { field, .. } => field.to_string(),
            LayerError::TooManyParams { params, max } if params > max => "too many parameters".to_string(),
            other => format!("{other:?}"),
        };
        for (recipe, expected) in [
            (
                Mlp::new(&[4]),
                "an mlp's number of widths (input, hidden..., output) = 1",
            ),
            (Mlp::new(&[4, 0, 2]), "an mlp's layer widths = 0"),
            (Mlp::new(&[4, 1 << 20, 2]), "an mlp's layer widths = 1048576"),
            (Mlp::new(&[4, 2]).init(Init::Std(f64::NAN)), "init std"),
            (Mlp::new(&[4, 3, 2]).dropout(Some(1.0)), "dropout ratio"),
            (Mlp::new(&[4, 2]).weight_decay(-1.0), "weight_decay"),
            (Mlp::new(&[784, 65536, 65536, 10]), "too many parameters"),
            (Mlp::new(&[5; 103]), "an mlp's number of hidden layers = 101"),
            (Mlp::new(&[4, 2]).init(Init::Std(1e-50)), "init std"),
        ] {
            assert_eq!(named(recipe.build::<f32>(0).unwrap_err()), expected, "{recipe:?}");
        }
        let err = Mlp::new(&[5; 103]).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "an mlp's number of hidden layers must be at most 100, got 101"
        );
        assert_eq!("std:0.01".parse::<Init>().unwrap(), Init::Std(0.01));
        assert_eq!("0.05".parse::<Init>().unwrap(), Init::Std(0.05));
        assert_eq!("He".parse::<Init>().unwrap(), Init::He);
        assert_eq!("sigmoid".parse::<Init>().unwrap(), Init::Xavier);
        assert!("std:-1".parse::<Init>().is_err());
        assert!("lecun".parse::<Init>().unwrap_err().contains("xavier"));
    }
}
