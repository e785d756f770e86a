//! Optimizers: the book's `common/optimizer.py`, with its formulas and defaults.
//!
//! For a parameter `p` with gradient `g` (`lr` the learning rate):
//! * SGD: `p -= lr * g`
//! * Momentum (0.9): `v = momentum * v - lr * g`, `p += v`
//! * Nesterov (0.9, the book's form): `v = momentum * v - lr * g`,
//!   `p += momentum^2 * v - (1 + momentum) * lr * g`
//! * AdaGrad: `h += g^2`, `p -= lr * g / (sqrt(h) + 1e-7)`
//! * RMSprop (decay 0.99): `h = decay * h + (1 - decay) * g^2`,
//!   `p -= lr * g / (sqrt(h) + 1e-7)`
//! * Adam (beta1 0.9, beta2 0.999): `t += 1`,
//!   `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)` (the bias correction),
//!   `m += (1 - beta1) * (g - m)`, `v += (1 - beta2) * (g^2 - v)`,
//!   `p -= lr_t * m / (sqrt(v) + 1e-7)`
//!
//! An optimizer works on any list of tensors; [`crate::Sequential::step`]
//! applies one to a model. State (`v`, `h`, `m`) is allocated once by
//! [`Optimizer::init`]; a step allocates nothing. Each state tensor is
//! double-buffered like the parameters in [`crate::Sequential::step`]: the new state is written beside the
//! old and swapped in, so [`Optimizer::undo_step`] can put back the state of
//! before the last step when the divergence guard takes that step back.

use crate::LayerError;
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;
use tensor::{Element, Tensor};

/// Added to the denominators of AdaGrad, RMSprop and Adam (the book's 1e-7).
const DENOMINATOR_EPS: f64 = 1e-7;

/// `x`, or 0 when it is subnormal (nonzero and below `T::MIN_POSITIVE`,
/// 1.2e-38 in f32), as a CPU in flush-to-zero mode would give it.
///
/// Why: late in training many gradients are tiny (~1e-20, from confident
/// predictions), so their squares and the decaying averages built on them
/// fall into the subnormal range, where every operation on x86 takes a
/// microcode assist of ~100 cycles. In SimpleConvNet's 20-epoch run Adam went
/// from 4% of the time in the first epoch to 19% in the fourth, and epochs
/// from 5 s to 7 s. Values that small cannot change a step: the denominator
/// holds `eps = 1e-7`, and a momentum that small moves no weight.
#[inline(always)]
fn flush_subnormal<T: Element>(x: T) -> T {
    if x.abs() < T::MIN_POSITIVE {
        T::ZERO
    } else {
        x
    }
}

/// `g * g`, or 0 when that square would be subnormal (`|g| < tiny`, with
/// `tiny = sqrt(T::MIN_POSITIVE)`): the multiply itself would take the assist.
#[inline(always)]
fn square_flushed<T: Element>(g: T, tiny: T) -> T {
    let g = if g.abs() < tiny { T::ZERO } else { g };
    g * g
}

/// An update rule with per-parameter state.
pub trait Optimizer<T: Element>: Send {
    /// Allocates the state (zeros) for parameters of these shapes, in the
    /// order `update` will see them ([`crate::Sequential::param_shapes`]);
    /// [`OptimizerConfig::build`] calls it, and calling it again starts over.
    fn init(&mut self, shapes: &[Vec<usize>]);

    /// Called once at the start of every step, before the updates.
    fn begin_step(&mut self) {}

    /// Writes the updated parameter `index` into `new_value` (same shape),
    /// reading its current `value` and `grad`, and advances its state.
    fn update(&mut self, index: usize, value: &Tensor<T>, grad: &Tensor<T>, new_value: &mut Tensor<T>);

    /// Puts the state back to what it was before the last step.
    fn undo_step(&mut self) {}
}

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    #[default]
    Sgd,
    Momentum,
    Nesterov,
    AdaGrad,
    RmsProp,
    Adam,
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 6] = [
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Nesterov,
        OptimizerKind::AdaGrad,
        OptimizerKind::RmsProp,
        OptimizerKind::Adam,
    ];

    /// The book's default learning rate of each class (`SGD(lr=0.01)`, ..., `Adam(lr=0.001)`).
    pub fn default_learning_rate(self) -> f64 {
        match self {
            OptimizerKind::Adam => 0.001,
            _ => 0.01,
        }
    }

    /// The name the book's figures use: `SGD`, `Momentum`, ..., `Adam`.
    pub fn book_name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Momentum => "Momentum",
            OptimizerKind::Nesterov => "Nesterov",
            OptimizerKind::AdaGrad => "AdaGrad",
            OptimizerKind::RmsProp => "RMSprop",
            OptimizerKind::Adam => "Adam",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.book_name().to_ascii_lowercase())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.to_string() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown optimizer '{s}'; use sgd, momentum, nesterov, adagrad, rmsprop or adam"))
    }
}

/// An optimizer's settings; [`OptimizerConfig::new`] gives the book's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    /// Momentum and Nesterov.
    pub momentum: f64,
    /// RMSprop's decay rate.
    pub decay_rate: f64,
    /// Adam.
    pub beta1: f64,
    pub beta2: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::new(OptimizerKind::Sgd)
    }
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            learning_rate: kind.default_learning_rate(),
            momentum: 0.9,
            decay_rate: 0.99,
            beta1: 0.9,
            beta2: 0.999,
        }
    }

    pub fn with_learning_rate(self, learning_rate: f64) -> Self {
        OptimizerConfig { learning_rate, ..self }
    }

    pub fn validate(&self) -> Result<(), LayerError> {
        let bad = |msg: String| Err(LayerError::Config(msg));
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        for (name, value) in [
            ("momentum", self.momentum),
            ("decay rate", self.decay_rate),
            ("beta1", self.beta1),
            ("beta2", self.beta2),
        ] {
            if !(0.0..1.0).contains(&value) {
                return bad(format!("{name} must be in [0, 1), got {value}"));
            }
        }
        Ok(())
    }

    /// The settings that apply to this kind, for headers: `adam lr 0.001 beta1 0.9 beta2 0.999`.
    pub fn describe(&self) -> String {
        let lr = format!("{} lr {}", self.kind, self.learning_rate);
        match self.kind {
            OptimizerKind::Momentum | OptimizerKind::Nesterov => format!("{lr} momentum {}", self.momentum),
            OptimizerKind::RmsProp => format!("{lr} decay {}", self.decay_rate),
            OptimizerKind::Adam => format!("{lr} beta1 {} beta2 {}", self.beta1, self.beta2),
            OptimizerKind::Sgd | OptimizerKind::AdaGrad => lr,
        }
    }

    /// The optimizer, its state allocated for parameters of these shapes
    /// ([`crate::Sequential::param_shapes`]).
    pub fn build<T: Element>(&self, shapes: &[Vec<usize>]) -> Result<Box<dyn Optimizer<T>>, LayerError> {
        self.validate()?;
        let lr = T::from_f64(self.learning_rate);
        let mut optimizer: Box<dyn Optimizer<T>> = match self.kind {
            OptimizerKind::Sgd => Box::new(Sgd { lr }),
            OptimizerKind::Momentum => Box::new(Momentum {
                lr,
                momentum: T::from_f64(self.momentum),
                nesterov: false,
                v: State::default(),
            }),
            OptimizerKind::Nesterov => Box::new(Momentum {
                lr,
                momentum: T::from_f64(self.momentum),
                nesterov: true,
                v: State::default(),
            }),
            OptimizerKind::AdaGrad => Box::new(Adaptive {
                lr,
                decay: None,
                h: State::default(),
            }),
            OptimizerKind::RmsProp => Box::new(Adaptive {
                lr,
                decay: Some(T::from_f64(self.decay_rate)),
                h: State::default(),
            }),
            OptimizerKind::Adam => Box::new(Adam {
                lr: self.learning_rate,
                beta1: self.beta1,
                beta2: self.beta2,
                step: 0,
                lr_t: T::ZERO,
                m: State::default(),
                v: State::default(),
            }),
        };
        optimizer.init(shapes);
        Ok(optimizer)
    }
}

/// One state tensor per parameter, double-buffered: `current[i]` is the
/// state after the last step, `previous[i]` the state before it.
#[derive(Debug, Clone, Default)]
struct State<T> {
    current: Vec<Tensor<T>>,
    previous: Vec<Tensor<T>>,
}

impl<T: Element> State<T> {
    fn init(&mut self, shapes: &[Vec<usize>]) {
        self.current = shapes.iter().map(|shape| Tensor::zeros(shape)).collect();
        self.previous = self.current.clone();
    }

    /// `(old state, buffer for the new state)` of parameter `index`.
    fn pair(&mut self, index: usize) -> (&Tensor<T>, &mut Tensor<T>) {
        (&self.current[index], &mut self.previous[index])
    }

    /// Makes the state just written the current one.
    fn commit(&mut self, index: usize) {
        std::mem::swap(&mut self.current[index], &mut self.previous[index]);
    }

    fn undo(&mut self) {
        for (current, previous) in self.current.iter_mut().zip(&mut self.previous) {
            std::mem::swap(current, previous);
        }
    }
}

struct Sgd<T> {
    lr: T,
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn init(&mut self, _shapes: &[Vec<usize>]) {}

    fn update(&mut self, _index: usize, value: &Tensor<T>, grad: &Tensor<T>, new_value: &mut Tensor<T>) {
        let lr = self.lr;
        new_value.zip_from(value, grad, |p, g| p - lr * g);
    }
}

/// Momentum, and Nesterov's variant of it.
struct Momentum<T> {
    lr: T,
    momentum: T,
    nesterov: bool,
    v: State<T>,
}

impl<T: Element> Optimizer<T> for Momentum<T> {
    fn init(&mut self, shapes: &[Vec<usize>]) {
        self.v.init(shapes);
    }

    fn update(&mut self, index: usize, value: &Tensor<T>, grad: &Tensor<T>, new_value: &mut Tensor<T>) {
        let (lr, momentum, nesterov) = (self.lr, self.momentum, self.nesterov);
        let (v, new_v) = self.v.pair(index);
        new_value.resize(value.shape());
        let elements = new_value
            .as_mut_slice()
            .iter_mut()
            .zip(new_v.as_mut_slice())
            .zip(value.as_slice().iter().zip(grad.as_slice()).zip(v.as_slice()));
        for ((p_new, v_new), ((&p, &g), &v)) in elements {
            *v_new = flush_subnormal(momentum * v - lr * g);
            *p_new = if nesterov {
                p + momentum * momentum * *v_new - (T::ONE + momentum) * lr * g
            } else {
                p + *v_new
            };
        }
        self.v.commit(index);
    }

    fn undo_step(&mut self) {
        self.v.undo();
    }
}

/// AdaGrad (`decay` None: `h` sums every squared gradient) and RMSprop
/// (`decay` Some: `h` forgets them geometrically).
struct Adaptive<T> {
    lr: T,
    decay: Option<T>,
    h: State<T>,
}

impl<T: Element> Optimizer<T> for Adaptive<T> {
    fn init(&mut self, shapes: &[Vec<usize>]) {
        self.h.init(shapes);
    }

    fn update(&mut self, index: usize, value: &Tensor<T>, grad: &Tensor<T>, new_value: &mut Tensor<T>) {
        let (lr, eps) = (self.lr, T::from_f64(DENOMINATOR_EPS));
        let (keep, add) = match self.decay {
            Some(decay) => (decay, T::ONE - decay),
            None => (T::ONE, T::ONE),
        };
        let tiny = T::MIN_POSITIVE.sqrt();
        let (h, new_h) = self.h.pair(index);
        new_value.resize(value.shape());
        let elements = new_value
            .as_mut_slice()
            .iter_mut()
            .zip(new_h.as_mut_slice())
            .zip(value.as_slice().iter().zip(grad.as_slice()).zip(h.as_slice()));
        for ((p_new, h_new), ((&p, &g), &h)) in elements {
            *h_new = flush_subnormal(keep * h + add * square_flushed(g, tiny));
            *p_new = p - lr * g / (h_new.sqrt() + eps);
        }
        self.h.commit(index);
    }

    fn undo_step(&mut self) {
        self.h.undo();
    }
}

struct Adam<T> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    /// Steps taken: the book's `iter`.
    step: i32,
    /// The bias-corrected learning rate of the current step.
    lr_t: T,
    m: State<T>,
    v: State<T>,
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn init(&mut self, shapes: &[Vec<usize>]) {
        self.m.init(shapes);
        self.v.init(shapes);
        self.step = 0;
    }

    fn begin_step(&mut self) {
        self.step = self.step.saturating_add(1);
        let t = self.step;
        self.lr_t = T::from_f64(self.lr * (1.0 - self.beta2.powi(t)).sqrt() / (1.0 - self.beta1.powi(t)));
    }

    fn update(&mut self, index: usize, value: &Tensor<T>, grad: &Tensor<T>, new_value: &mut Tensor<T>) {
        let (lr_t, eps) = (self.lr_t, T::from_f64(DENOMINATOR_EPS));
        let (one_minus_beta1, one_minus_beta2) = (T::from_f64(1.0 - self.beta1), T::from_f64(1.0 - self.beta2));
        let tiny = T::MIN_POSITIVE.sqrt();
        let (m, new_m) = self.m.pair(index);
        let (v, new_v) = self.v.pair(index);
        new_value.resize(value.shape());
        // One piece of the tensors: the outputs p', m', v' from p, g, m, v.
        let update = |p_new: &mut [T], m_new: &mut [T], v_new: &mut [T], (p, g, m, v): (&[T], &[T], &[T], &[T])| {
            let outputs = p_new.iter_mut().zip(m_new.iter_mut().zip(v_new));
            let inputs = p.iter().zip(g).zip(m.iter().zip(v));
            for ((p_new, (m_new, v_new)), ((&p, &g), (&m, &v))) in outputs.zip(inputs) {
                *m_new = flush_subnormal(m + one_minus_beta1 * (g - m));
                *v_new = flush_subnormal(v + one_minus_beta2 * (square_flushed(g, tiny) - v));
                *p_new = p - lr_t * *m_new / (v_new.sqrt() + eps);
            }
        };
        let (p, g, m, v) = (value.as_slice(), grad.as_slice(), m.as_slice(), v.as_slice());
        let (p_new, m_new, v_new) = (new_value.as_mut_slice(), new_m.as_mut_slice(), new_v.as_mut_slice());
        // Split over the threads as SGD's `zip_from` is: each element is the
        // same arithmetic on whichever thread computes it.
        match tensor::parallel_piece(p_new.len()) {
            None => update(p_new, m_new, v_new, (p, g, m, v)),
            Some(piece) => p_new
                .par_chunks_mut(piece)
                .zip(m_new.par_chunks_mut(piece))
                .zip(v_new.par_chunks_mut(piece))
                .zip(p.par_chunks(piece).zip(g.par_chunks(piece)))
                .zip(m.par_chunks(piece).zip(v.par_chunks(piece)))
                .for_each(|((((p_new, m_new), v_new), (p, g)), (m, v))| update(p_new, m_new, v_new, (p, g, m, v))),
        }
        self.m.commit(index);
        self.v.commit(index);
    }

    fn undo_step(&mut self) {
        self.m.undo();
        self.v.undo();
        self.step = self.step.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, Layer, Sequential};

    /// A model with one parameter pair: W (1x1) and b (1).
    fn scalar_model(w: f64) -> Sequential<f64> {
        let affine = Affine::new(Tensor::full(&[1, 1], w), Tensor::zeros(&[1]));
        Sequential::new(&[1], vec![Box::new(affine) as Box<dyn Layer<f64>>]).unwrap()
    }

    /// Runs steps with the given W gradients (b's gradient is 0) and returns W after each.
    fn run(config: OptimizerConfig, grads: &[f64]) -> Vec<f64> {
        let mut model = scalar_model(1.0);
        let mut optimizer = config.build::<f64>(&model.param_shapes()).unwrap();
        let mut previous = model.param_buffers();
        grads
            .iter()
            .map(|&g| {
                model.visit_params_mut(&mut |i, p| p.grad.fill(if i == 0 { g } else { 0.0 }));
                model.step(optimizer.as_mut(), &mut previous);
                model.params()[0].value.as_slice()[0]
            })
            .collect()
    }

    /// Three Adam steps on one parameter of `len` elements, in a pool of
    /// `threads`; the values after the last step.
    fn adam_steps(len: usize, threads: usize) -> Vec<f32> {
        let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 25.0;
        let mut p = Tensor::from_vec((0..len).map(value).collect(), &[len]).unwrap();
        let mut optimizer = OptimizerConfig::new(OptimizerKind::Adam)
            .build::<f32>(&[vec![len]])
            .unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            for step in 0..3 {
                let grad = Tensor::from_vec((0..len).map(|i| value(i + step) * 0.1).collect(), &[len]).unwrap();
                let mut new_p = Tensor::zeros(&[len]);
                optimizer.begin_step();
                optimizer.update(0, &p, &grad, &mut new_p);
                p = new_p;
            }
        });
        p.as_slice().to_vec()
    }

    #[test]
    fn adam_split_over_threads_gives_every_element_its_own_value() {
        // Past 2^15 elements the update is cut into one piece per thread.
        let len = (1 << 15) + 7;
        let one = adam_steps(len, 1);
        assert_eq!(one, adam_steps(len, 2));
        assert_eq!(one, adam_steps(len, 3));
        // An element's value depends only on its own p and g: the first ones
        // as a short tensor, updated serially, are the same.
        assert_eq!(&one[..40], &adam_steps(40, 2)[..]);
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    // Each case: W starts at 1.0, gradients 0.5 then -0.25; the expected
    // values are worked out by hand from the formulas at the top.

    #[test]
    fn sgd_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::Sgd).with_learning_rate(0.1);
        // 1 - 0.1 * 0.5 = 0.95; 0.95 + 0.1 * 0.25 = 0.975
        assert_close(&run(config, &[0.5, -0.25]), &[0.95, 0.975]);
    }

    #[test]
    fn momentum_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::Momentum).with_learning_rate(0.1);
        // v = -0.05, W = 0.95; v = 0.9 * -0.05 + 0.025 = -0.02, W = 0.93
        assert_close(&run(config, &[0.5, -0.25]), &[0.95, 0.93]);
    }

    #[test]
    fn nesterov_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::Nesterov).with_learning_rate(0.1);
        // v = -0.05; W = 1 + 0.81 * -0.05 - 1.9 * 0.1 * 0.5 = 1 - 0.0405 - 0.095 = 0.8645
        // v = -0.045 + 0.025 = -0.02; W = 0.8645 + 0.81 * -0.02 + 1.9 * 0.025 = 0.8645 - 0.0162 + 0.0475 = 0.8958
        assert_close(&run(config, &[0.5, -0.25]), &[0.8645, 0.8958]);
    }

    #[test]
    fn adagrad_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::AdaGrad).with_learning_rate(0.1);
        // h = 0.25, W = 1 - 0.1 * 0.5 / (0.5 + 1e-7)
        let w1 = 1.0 - 0.05 / (0.5 + 1e-7);
        // h = 0.3125, W = w1 + 0.1 * 0.25 / (sqrt(0.3125) + 1e-7)
        let w2 = w1 + 0.025 / (0.3125f64.sqrt() + 1e-7);
        assert_close(&run(config, &[0.5, -0.25]), &[w1, w2]);
        assert!((w1 - 0.9).abs() < 1e-6 && (w2 - 0.944721).abs() < 1e-6);
    }

    #[test]
    fn rmsprop_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::RmsProp).with_learning_rate(0.1);
        // h = 0.01 * 0.25 = 0.0025 (sqrt 0.05), W = 1 - 0.05 / 0.05 = 0.0 (up to the 1e-7)
        let w1 = 1.0 - 0.05 / (0.05 + 1e-7);
        // h = 0.99 * 0.0025 + 0.01 * 0.0625 = 0.003100, W = w1 + 0.025 / sqrt(0.0031)
        let w2 = w1 + 0.025 / (0.0031f64.sqrt() + 1e-7);
        assert_close(&run(config, &[0.5, -0.25]), &[w1, w2]);
        assert!(w1.abs() < 1e-5 && (w2 - 0.449013).abs() < 1e-5, "{w1} {w2}");
    }

    /// Ten tiny gradients (their squares are subnormal in f32), then zeros:
    /// the optimizer's averages decay towards 0 through the subnormal range
    /// unless flushed. `state` reads them after each step.
    fn assert_state_stays_normal<O: Optimizer<f32>>(mut optimizer: O, state: impl Fn(&O) -> Vec<f32>) {
        let grads = Tensor::from_vec(vec![1e-20f32, -3e-21, 1e-30, 0.5], &[4]).unwrap();
        let zeros = Tensor::zeros(&[4]);
        let (mut value, mut new_value) = (Tensor::full(&[4], 1.0f32), Tensor::zeros(&[4]));
        optimizer.init(&[vec![4]]);
        for step in 0..3000 {
            optimizer.begin_step();
            optimizer.update(0, &value, if step < 10 { &grads } else { &zeros }, &mut new_value);
            std::mem::swap(&mut value, &mut new_value);
            let values = state(&optimizer);
            let subnormal = values.iter().find(|x| **x != 0.0 && x.abs() < f32::MIN_POSITIVE);
            assert!(subnormal.is_none(), "step {step}: {values:?}");
        }
        assert!(value.as_slice().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn state_never_holds_subnormal_values() {
        let adam = Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            step: 0,
            lr_t: 0.0,
            m: State::default(),
            v: State::default(),
        };
        assert_state_stays_normal(adam, |adam| {
            [&adam.m, &adam.v]
                .iter()
                .flat_map(|s| s.current[0].as_slice().to_vec())
                .collect()
        });
        let rmsprop = Adaptive {
            lr: 0.01,
            decay: Some(0.99),
            h: State::default(),
        };
        assert_state_stays_normal(rmsprop, |o| o.h.current[0].as_slice().to_vec());
        // A tiny learning rate, so that v = -lr g starts near the subnormal range.
        let momentum = Momentum {
            lr: 1e-30,
            momentum: 0.9,
            nesterov: false,
            v: State::default(),
        };
        assert_state_stays_normal(momentum, |o| o.v.current[0].as_slice().to_vec());
    }

    #[test]
    fn adam_two_steps() {
        let config = OptimizerConfig::new(OptimizerKind::Adam).with_learning_rate(0.1);
        // t = 1: lr_t = 0.1 * sqrt(0.001) / 0.1 = sqrt(0.001); m = 0.05, v = 0.00025 (sqrt = sqrt(0.001) / 2)
        // W = 1 - sqrt(0.001) * 0.05 / (sqrt(0.00025) + 1e-7): a step of ~lr = 0.1, as bias-corrected Adam takes.
        let lr1 = 0.001f64.sqrt();
        let w1 = 1.0 - lr1 * 0.05 / (0.00025f64.sqrt() + 1e-7);
        // t = 2: lr_t = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.81); m = 0.05 + 0.1 * (-0.25 - 0.05) = 0.02;
        // v = 0.00025 + 0.001 * (0.0625 - 0.00025) = 0.00031225
        let lr2 = 0.1 * (1.0 - 0.999f64 * 0.999).sqrt() / 0.19;
        let w2 = w1 - lr2 * 0.02 / (0.00031225f64.sqrt() + 1e-7);
        assert_close(&run(config, &[0.5, -0.25]), &[w1, w2]);
        assert!((w1 - 0.9).abs() < 1e-5, "{w1}");
    }

    #[test]
    fn undo_restores_parameters_and_state() {
        for kind in OptimizerKind::ALL {
            let config = OptimizerConfig::new(kind).with_learning_rate(0.1);
            let mut model = scalar_model(1.0);
            let mut optimizer = config.build::<f64>(&model.param_shapes()).unwrap();
            let mut previous = model.param_buffers();
            let set_grad = |model: &mut Sequential<f64>, g: f64| {
                model.visit_params_mut(&mut |_, p| p.grad.fill(g));
            };
            set_grad(&mut model, 0.5);
            model.step(optimizer.as_mut(), &mut previous);
            let after_one = model.param_buffers();
            set_grad(&mut model, -0.25);
            model.step(optimizer.as_mut(), &mut previous);
            let after_two = model.param_buffers();
            model.undo_step(optimizer.as_mut(), &mut previous);
            assert_eq!(model.param_buffers(), after_one, "{kind}");
            // Retaking the step from the restored state gives the same result.
            set_grad(&mut model, -0.25);
            model.step(optimizer.as_mut(), &mut previous);
            assert_eq!(model.param_buffers(), after_two, "{kind}: state restored too");
        }
    }

    #[test]
    fn names_and_bad_settings() {
        for kind in OptimizerKind::ALL {
            assert_eq!(kind.to_string().parse::<OptimizerKind>().unwrap(), kind);
        }
        assert_eq!("RMSprop".parse::<OptimizerKind>().unwrap(), OptimizerKind::RmsProp);
        assert!("lbfgs".parse::<OptimizerKind>().unwrap_err().contains("adam"));
        let bad = OptimizerConfig {
            beta2: 1.0,
            ..OptimizerConfig::new(OptimizerKind::Adam)
        };
        assert!(bad.build::<f32>(&[]).is_err());
        assert!(OptimizerConfig::new(OptimizerKind::Sgd)
            .with_learning_rate(f64::NAN)
            .build::<f32>(&[])
            .is_err());
        assert_eq!(
            OptimizerConfig::new(OptimizerKind::Adam).describe(),
            "adam lr 0.001 beta1 0.9 beta2 0.999"
        );
    }
}
