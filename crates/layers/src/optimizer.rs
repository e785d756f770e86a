//! Optimizers: the book's `common/optimizer.py`, with its formulas and defaults.
//!
//! For a parameter `p` with gradient `g` (`lr` the learning rate):
//! * [`Sgd`]: `p -= lr * g`
//! * [`Momentum`] (0.9): `v = momentum * v - lr * g`, `p += v`
//! * [`Nesterov`] (0.9, the book's form): `v = momentum * v - lr * g`,
//!   `p += momentum^2 * v - (1 + momentum) * lr * g`
//! * [`AdaGrad`]: `h += g^2`, `p -= lr * g / (sqrt(h) + 1e-7)`
//! * [`RmsProp`] (decay 0.99): `h = decay * h + (1 - decay) * g^2`,
//!   `p -= lr * g / (sqrt(h) + 1e-7)`
//! * [`Adam`] (beta1 0.9, beta2 0.999): `t += 1`,
//!   `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)` (the bias correction),
//!   `m += (1 - beta1) * (g - m)`, `v += (1 - beta2) * (g^2 - v)`,
//!   `p -= lr_t * m / (sqrt(v) + 1e-7)`
//!
//! An optimizer is built from the parameters it will update (a
//! [`Sequential`], or any [`Parameters`]): it records their shapes and
//! allocates its state (`v`, `h`, `m`) then. It owns that state;
//! [`Optimizer::step`] updates every parameter in place from the gradients
//! the last backward pass left, allocating nothing. Given parameters of other
//! shapes than it was built for (another model: a programming error, not bad
//! data) a step or an undo panics before it writes anything.
//!
//! **Taking a step back** is opt-in ([`Optimizer::keep_previous`]): the
//! optimizer then holds a spare set of parameters and state, each step writes
//! the new values beside the old ones and swaps them in, and
//! [`Optimizer::undo`] swaps back. The traffic is the same as an update in
//! place; the memory is one more copy of the parameters and the state. An
//! optimizer that was not asked keeps nothing.
//!
//! ```
//! use layers::{Adam, AdamConfig, LayerRng, NetSpec, Optimizer, Target};
//! use rand::SeedableRng;
//! use tensor::Tensor;
//!
//! let mut model = NetSpec::new(&[4]).affine(8).relu().affine(3).build::<f32>(42).unwrap();
//! let mut adam = Adam::new(AdamConfig::default(), &model).unwrap();
//! let x = Tensor::from_vec(vec![0.5f32; 8], &[2, 4]).unwrap();
//! let mut rng = LayerRng::seed_from_u64(0);
//! let first = model.gradient(&x, Target::Labels(&[0, 2]), &mut rng).unwrap();
//! adam.step(&mut model);
//! for _ in 0..50 {
//!     model.gradient(&x, Target::Labels(&[0, 2]), &mut rng).unwrap();
//!     adam.step(&mut model);
//! }
//! let last = model.loss(&x, Target::Labels(&[0, 2])).unwrap();
//! assert!(last < first);
//! ```

use crate::{LayerError, ParamMut, Sequential};
use std::fmt;
use std::str::FromStr;
use tensor::{Element, Tensor};

/// Added to the denominators of AdaGrad, RmsProp and Adam (the book's 1e-7).
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

/// What an optimizer updates: a list of parameters, each a value with its
/// gradient, in a fixed order. [`Sequential`] is one; [`ParamList`] is a
/// plain list for parameters that live outside a model.
pub trait Parameters<T: Element> {
    /// Calls `f(index, param)` for every parameter, in order.
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(usize, ParamMut<'_, T>));

    /// The shape of every parameter, in order.
    fn param_shapes(&self) -> Vec<Vec<usize>>;
}

impl<T: Element> Parameters<T> for Sequential<T> {
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(usize, ParamMut<'_, T>)) {
        Sequential::visit_params_mut(self, f)
    }

    fn param_shapes(&self) -> Vec<Vec<usize>> {
        Sequential::param_shapes(self)
    }
}

/// Parameters outside a model: `(value, gradient)` pairs of equal shapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamList<T> {
    /// The values and their gradients, in order.
    pub pairs: Vec<(Tensor<T>, Tensor<T>)>,
}

impl<T: Element> Parameters<T> for ParamList<T> {
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(usize, ParamMut<'_, T>)) {
        for (index, (value, grad)) in self.pairs.iter_mut().enumerate() {
            f(
                index,
                ParamMut {
                    kind: "p",
                    value,
                    grad,
                    decays: false,
                },
            );
        }
    }

    fn param_shapes(&self) -> Vec<Vec<usize>> {
        self.pairs.iter().map(|(value, _)| value.shape().to_vec()).collect()
    }
}

/// An update rule that owns its per-parameter state.
///
/// Built from the parameters it will update (`Adam::new(config, &model)`),
/// then [`Optimizer::step`] after every backward pass.
///
/// ```
/// use layers::{Adam, AdamConfig, Optimizer, ParamList, Tensor};
///
/// // L(p) = sum(p^2) / 2, so dL/dp = p.
/// let p = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).unwrap();
/// let mut params = ParamList { pairs: vec![(p.clone(), p)] };
/// let loss = |params: &ParamList<f64>| params.pairs[0].0.as_slice().iter().map(|v| v * v / 2.0).sum::<f64>();
/// let mut adam = Adam::new(AdamConfig::default(), &params).unwrap();
/// adam.keep_previous();
///
/// let before = loss(&params);
/// adam.step(&mut params);
/// // Adam's first step moves each value by lr = 0.001 against the sign of its
/// // gradient (m / sqrt(v) = g / |g| once bias-corrected).
/// let moved = params.pairs[0].0.as_slice();
/// assert!((moved[0] - 0.999).abs() < 1e-6 && (moved[1] - -1.999).abs() < 1e-6, "{moved:?}");
/// assert!(loss(&params) < before);
///
/// // The step taken back: the parameters (and Adam's moments) as they were.
/// assert!(adam.undo(&mut params));
/// assert_eq!(params.pairs[0].0.as_slice(), &[1.0, -2.0]);
/// assert_eq!(adam.steps(), 0);
/// ```
pub trait Optimizer<T: Element>: Send {
    /// Updates every parameter from its gradient, in place.
    ///
    /// # Panics
    /// When `params` are not the parameters (in count and shape) the
    /// optimizer was built for.
    fn step(&mut self, params: &mut dyn Parameters<T>);

    /// From now on keep what each step replaces, so that [`Optimizer::undo`]
    /// can take the last step back exactly. Allocates the spare set once.
    fn keep_previous(&mut self);

    /// Puts the parameters and the state back to what they were before the
    /// last step. `false` (and nothing changed) when there is no step to take
    /// back: [`Optimizer::keep_previous`] was not called before it, or it was
    /// already undone.
    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool;

    /// The learning rate the next step uses.
    fn learning_rate(&self) -> f64;

    /// Sets the learning rate of the steps from now on (a schedule's): the
    /// state (momenta, moments, step count) is kept. The caller passes a
    /// positive, finite rate.
    fn set_learning_rate(&mut self, learning_rate: f64);
}

/// One parameter's value and its `S` state tensors, as a spare set holds them.
type SpareSlot<T, const S: usize> = (Tensor<T>, [Tensor<T>; S]);

/// The per-parameter state of an optimizer: `S` tensors per parameter, and
/// with [`Optimizer::keep_previous`] a spare set that steps write into.
#[derive(Debug, Clone)]
struct Slots<T, const S: usize> {
    shapes: Vec<Vec<usize>>,
    /// `state[i][k]`: the `k`-th state tensor of parameter `i`.
    state: Vec<[Tensor<T>; S]>,
    /// The spare parameter and state buffers, when steps keep what they replace.
    spare: Option<Vec<SpareSlot<T, S>>>,
    /// Whether `spare` holds the values from before the last step.
    can_undo: bool,
}

impl<T: Element, const S: usize> Slots<T, S> {
    fn new(params: &dyn Parameters<T>) -> Self {
        let shapes = params.param_shapes();
        let state = shapes
            .iter()
            .map(|shape| std::array::from_fn(|_| Tensor::zeros(shape)))
            .collect();
        Slots {
            shapes,
            state,
            spare: None,
            can_undo: false,
        }
    }

    fn keep_previous(&mut self) {
        if self.spare.is_none() {
            let spare = self
                .shapes
                .iter()
                .map(|shape| (Tensor::zeros(shape), std::array::from_fn(|_| Tensor::zeros(shape))))
                .collect();
            self.spare = Some(spare);
        }
    }

    /// Panics, before anything is written, unless `params` are the ones
    /// this state was built for: as many, each value and gradient of the
    /// recorded shape.
    fn check(&self, params: &mut dyn Parameters<T>, what: &str) {
        let mut count = 0;
        let mut mismatch = None;
        params.visit_params_mut(&mut |index, param| {
            count += 1;
            let expected = self.shapes.get(index).map(Vec::as_slice);
            if mismatch.is_none()
                && (expected != Some(param.value.shape()) || param.grad.shape() != param.value.shape())
            {
                mismatch = Some((index, param.value.shape().to_vec(), param.grad.shape().to_vec()));
            }
        });
        if let Some((index, value, grad)) = mismatch {
            panic!(
                "optimizer {what}: parameter {index} has shape {value:?} (gradient {grad:?}), not the {:?} the optimizer was built for",
                self.shapes.get(index)
            );
        }
        assert_eq!(
            count,
            self.shapes.len(),
            "optimizer {what}: {count} parameters, but the optimizer was built for {}",
            self.shapes.len()
        );
    }

    /// Applies `rule(p, g, state) -> p'` (which updates `state`) to every
    /// element of every parameter.
    fn step(&mut self, params: &mut dyn Parameters<T>, rule: &(impl Fn(T, T, &mut [T; S]) -> T + Sync)) {
        self.check(params, "step");
        let (state, spare) = (&mut self.state, &mut self.spare);
        params.visit_params_mut(&mut |index, param| {
            let grad = param.grad.as_slice();
            match spare {
                None => {
                    let state = state[index].each_mut().map(|t| t.as_mut_slice());
                    update(param.value.as_mut_slice(), grad, state, None, rule);
                }
                Some(spare) => {
                    // Write p' and the new state into the spare buffers, then
                    // swap them in: the spares then hold what the step replaced.
                    let (spare_value, spare_state) = &mut spare[index];
                    let old = Old {
                        value: param.value.as_slice(),
                        state: state[index].each_ref().map(|t| t.as_slice()),
                    };
                    let new_state = spare_state.each_mut().map(|t| t.as_mut_slice());
                    update(spare_value.as_mut_slice(), grad, new_state, Some(old), rule);
                    std::mem::swap(param.value, spare_value);
                    for (spare, current) in spare_state.iter_mut().zip(&mut state[index]) {
                        std::mem::swap(spare, current);
                    }
                }
            }
        });
        self.can_undo = self.spare.is_some();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        if self.spare.is_none() || !self.can_undo {
            return false;
        }
        self.check(params, "undo");
        let Some(spare) = &mut self.spare else {
            return false;
        };
        params.visit_params_mut(&mut |index, param| {
            let (spare_value, spare_state) = &mut spare[index];
            std::mem::swap(param.value, spare_value);
            for (spare, current) in spare_state.iter_mut().zip(&mut self.state[index]) {
                std::mem::swap(spare, current);
            }
        });
        self.can_undo = false;
        true
    }
}

/// The values a step reads when it writes beside them: a parameter and its
/// state before the step.
#[derive(Clone, Copy)]
struct Old<'a, T, const S: usize> {
    value: &'a [T],
    state: [&'a [T]; S],
}

impl<'a, T, const S: usize> Old<'a, T, S> {
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (value_low, value_high) = self.value.split_at(mid);
        let low = Old {
            value: value_low,
            state: self.state.map(|s| &s[..mid]),
        };
        let high = Old {
            value: value_high,
            state: self.state.map(|s| &s[mid..]),
        };
        (low, high)
    }
}

/// `p[i] = rule(p[i], g[i], state[..][i])` for every element (reading `old`
/// instead of what `value` and `state` hold, when given), split over the
/// threads for large tensors as [`Tensor::zip_from`] is: each element is the
/// same arithmetic on whichever thread computes it, so results do not
/// depend on the thread count.
fn update<T: Element, const S: usize>(
    value: &mut [T],
    grad: &[T],
    state: [&mut [T]; S],
    old: Option<Old<'_, T, S>>,
    rule: &(impl Fn(T, T, &mut [T; S]) -> T + Sync),
) {
    let piece = tensor::parallel_piece(value.len()).unwrap_or(value.len());
    update_split(value, grad, state, old, piece, rule);
}

/// Halves the work until pieces are at most `piece` long, the halves on two threads.
fn update_split<T: Element, const S: usize>(
    value: &mut [T],
    grad: &[T],
    state: [&mut [T]; S],
    old: Option<Old<'_, T, S>>,
    piece: usize,
    rule: &(impl Fn(T, T, &mut [T; S]) -> T + Sync),
) {
    if value.len() <= piece {
        return match old {
            None => update_in_place(value, grad, state, rule),
            Some(old) => update_beside(value, grad, state, old, rule),
        };
    }
    let mid = value.len().div_ceil(2);
    let (value_low, value_high) = value.split_at_mut(mid);
    let (grad_low, grad_high) = grad.split_at(mid);
    let (old_low, old_high) = match old.map(|old| old.split_at(mid)) {
        Some((low, high)) => (Some(low), Some(high)),
        None => (None, None),
    };
    let mut state_high: [Option<&mut [T]>; S] = std::array::from_fn(|_| None);
    let mut halves = state.map(|s| Some(s.split_at_mut(mid)));
    let state_low: [&mut [T]; S] = std::array::from_fn(|k| {
        let (low, high) = halves[k].take().expect("each state tensor is split once");
        state_high[k] = Some(high);
        low
    });
    let state_high = state_high.map(|h| h.expect("set with its low half"));
    rayon::join(
        || update_split(value_low, grad_low, state_low, old_low, piece, rule),
        || update_split(value_high, grad_high, state_high, old_high, piece, rule),
    );
}

fn update_in_place<T: Element, const S: usize>(
    value: &mut [T],
    grad: &[T],
    state: [&mut [T]; S],
    rule: &impl Fn(T, T, &mut [T; S]) -> T,
) {
    let n = value.len();
    let grad = &grad[..n];
    let state = state.map(|s| &mut s[..n]);
    for i in 0..n {
        let mut element: [T; S] = std::array::from_fn(|k| state[k][i]);
        value[i] = rule(value[i], grad[i], &mut element);
        for k in 0..S {
            state[k][i] = element[k];
        }
    }
}

fn update_beside<T: Element, const S: usize>(
    value: &mut [T],
    grad: &[T],
    state: [&mut [T]; S],
    old: Old<'_, T, S>,
    rule: &impl Fn(T, T, &mut [T; S]) -> T,
) {
    let n = value.len();
    let (grad, old_value) = (&grad[..n], &old.value[..n]);
    let old_state = old.state.map(|s| &s[..n]);
    let state = state.map(|s| &mut s[..n]);
    for i in 0..n {
        let mut element: [T; S] = std::array::from_fn(|k| old_state[k][i]);
        value[i] = rule(old_value[i], grad[i], &mut element);
        for k in 0..S {
            state[k][i] = element[k];
        }
    }
}

/// `learning_rate` must be a positive number.
fn check_learning_rate(learning_rate: f64) -> Result<(), LayerError> {
    // Finite in f32 too, where training runs: 1e308 is infinite there.
    if learning_rate.is_finite() && learning_rate > 0.0 && (learning_rate as f32).is_finite() {
        Ok(())
    } else {
        Err(LayerError::InvalidSetting {
            field: "learning_rate",
            value: learning_rate,
            expected: "a positive number (below 3.4e38, f32's largest)",
        })
    }
}

/// A rate of decay (momentum, beta) must be in `[0, 1)`.
fn check_rate(field: &'static str, value: f64) -> Result<(), LayerError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(LayerError::InvalidSetting {
            field,
            value,
            expected: "in [0, 1)",
        })
    }
}

/// [`Sgd`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// The book's default is 0.01 (`SGD(lr=0.01)`).
    pub learning_rate: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { learning_rate: 0.01 }
    }
}

/// Stochastic gradient descent: `p -= lr * g`.
#[derive(Debug, Clone)]
pub struct Sgd<T> {
    config: SgdConfig,
    slots: Slots<T, 0>,
}

impl<T: Element> Sgd<T> {
    /// SGD for `params` (a model), after checking the settings.
    pub fn new(config: SgdConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        check_learning_rate(config.learning_rate)?;
        Ok(Sgd {
            config,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        let lr = T::from_f64(self.config.learning_rate);
        self.slots.step(params, &|p, g, _: &mut [T; 0]| p - lr * g);
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        self.slots.undo(params)
    }
}

/// [`Momentum`]'s and [`Nesterov`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumConfig {
    /// The book's default is 0.01.
    pub learning_rate: f64,
    /// How much of the last velocity is kept (the book's 0.9).
    pub momentum: f64,
}

impl Default for MomentumConfig {
    fn default() -> Self {
        MomentumConfig {
            learning_rate: 0.01,
            momentum: 0.9,
        }
    }
}

impl MomentumConfig {
    fn validate(&self) -> Result<(), LayerError> {
        check_learning_rate(self.learning_rate)?;
        check_rate("momentum", self.momentum)
    }
}

/// Momentum: `v = momentum * v - lr * g`, `p += v`.
#[derive(Debug, Clone)]
pub struct Momentum<T> {
    config: MomentumConfig,
    /// `v` per parameter.
    slots: Slots<T, 1>,
}

impl<T: Element> Momentum<T> {
    /// Momentum for `params`, its velocities zero.
    pub fn new(config: MomentumConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        config.validate()?;
        Ok(Momentum {
            config,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &MomentumConfig {
        &self.config
    }
}

impl<T: Element> Optimizer<T> for Momentum<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        let (lr, momentum) = (
            T::from_f64(self.config.learning_rate),
            T::from_f64(self.config.momentum),
        );
        self.slots.step(params, &|p, g, [v]: &mut [T; 1]| {
            *v = flush_subnormal(momentum * *v - lr * g);
            p + *v
        });
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        self.slots.undo(params)
    }
}

/// Nesterov's accelerated gradient in the book's form:
/// `v = momentum * v - lr * g`, `p += momentum^2 * v - (1 + momentum) * lr * g`.
#[derive(Debug, Clone)]
pub struct Nesterov<T> {
    config: MomentumConfig,
    /// `v` per parameter.
    slots: Slots<T, 1>,
}

impl<T: Element> Nesterov<T> {
    /// Nesterov for `params`, its velocities zero.
    pub fn new(config: MomentumConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        config.validate()?;
        Ok(Nesterov {
            config,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &MomentumConfig {
        &self.config
    }
}

impl<T: Element> Optimizer<T> for Nesterov<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        let (lr, momentum) = (
            T::from_f64(self.config.learning_rate),
            T::from_f64(self.config.momentum),
        );
        self.slots.step(params, &|p, g, [v]: &mut [T; 1]| {
            *v = flush_subnormal(momentum * *v - lr * g);
            p + momentum * momentum * *v - (T::ONE + momentum) * lr * g
        });
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        self.slots.undo(params)
    }
}

/// [`AdaGrad`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaGradConfig {
    /// The book's default is 0.01.
    pub learning_rate: f64,
}

impl Default for AdaGradConfig {
    fn default() -> Self {
        AdaGradConfig { learning_rate: 0.01 }
    }
}

/// AdaGrad: `h += g^2`, `p -= lr * g / (sqrt(h) + 1e-7)`.
#[derive(Debug, Clone)]
pub struct AdaGrad<T> {
    config: AdaGradConfig,
    /// `h` per parameter.
    slots: Slots<T, 1>,
}

impl<T: Element> AdaGrad<T> {
    /// AdaGrad for `params`, its sums zero.
    pub fn new(config: AdaGradConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        check_learning_rate(config.learning_rate)?;
        Ok(AdaGrad {
            config,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &AdaGradConfig {
        &self.config
    }
}

/// The step of AdaGrad (`keep = add = 1`) and RmsProp (`keep = decay`,
/// `add = 1 - decay`): `h = keep * h + add * g^2`, `p -= lr * g / (sqrt(h) + eps)`.
fn adaptive_step<T: Element>(slots: &mut Slots<T, 1>, params: &mut dyn Parameters<T>, lr: f64, keep: T, add: T) {
    let (lr, eps, tiny) = (T::from_f64(lr), T::from_f64(DENOMINATOR_EPS), T::MIN_POSITIVE.sqrt());
    slots.step(params, &|p, g, [h]: &mut [T; 1]| {
        *h = flush_subnormal(keep * *h + add * square_flushed(g, tiny));
        p - lr * g / (h.sqrt() + eps)
    });
}

impl<T: Element> Optimizer<T> for AdaGrad<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        adaptive_step(&mut self.slots, params, self.config.learning_rate, T::ONE, T::ONE);
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        self.slots.undo(params)
    }
}

/// [`RmsProp`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// The book's default is 0.01.
    pub learning_rate: f64,
    /// How much of the running mean of `g^2` is kept each step (the book's 0.99).
    pub decay_rate: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            learning_rate: 0.01,
            decay_rate: 0.99,
        }
    }
}

/// RMSprop: `h = decay * h + (1 - decay) * g^2`, `p -= lr * g / (sqrt(h) + 1e-7)`.
#[derive(Debug, Clone)]
pub struct RmsProp<T> {
    config: RmsPropConfig,
    /// `h` per parameter.
    slots: Slots<T, 1>,
}

impl<T: Element> RmsProp<T> {
    /// RMSprop for `params`, its running means zero.
    pub fn new(config: RmsPropConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        check_learning_rate(config.learning_rate)?;
        check_rate("decay_rate", config.decay_rate)?;
        Ok(RmsProp {
            config,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }
}

impl<T: Element> Optimizer<T> for RmsProp<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        let decay = T::from_f64(self.config.decay_rate);
        adaptive_step(
            &mut self.slots,
            params,
            self.config.learning_rate,
            decay,
            T::ONE - decay,
        );
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        self.slots.undo(params)
    }
}

/// [`Adam`]'s settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// The book's default is 0.001.
    pub learning_rate: f64,
    /// Decay of the running mean of `g` (0.9).
    pub beta1: f64,
    /// Decay of the running mean of `g^2` (0.999).
    pub beta2: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 0.001,
            beta1: 0.9,
            beta2: 0.999,
        }
    }
}

/// Adam with the book's bias correction folded into the learning rate.
#[derive(Debug, Clone)]
pub struct Adam<T> {
    config: AdamConfig,
    /// Steps taken: the book's `iter`.
    steps: i32,
    /// `m` and `v` per parameter.
    slots: Slots<T, 2>,
}

impl<T: Element> Adam<T> {
    /// Adam for `params`, its moments zero.
    pub fn new(config: AdamConfig, params: &dyn Parameters<T>) -> Result<Self, LayerError> {
        check_learning_rate(config.learning_rate)?;
        check_rate("beta1", config.beta1)?;
        check_rate("beta2", config.beta2)?;
        Ok(Adam {
            config,
            steps: 0,
            slots: Slots::new(params),
        })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Steps taken (the `t` of the bias correction).
    pub fn steps(&self) -> i32 {
        self.steps
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn learning_rate(&self) -> f64 {
        self.config.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.config.learning_rate = learning_rate;
    }

    fn step(&mut self, params: &mut dyn Parameters<T>) {
        let AdamConfig {
            learning_rate,
            beta1,
            beta2,
        } = self.config;
        self.steps = self.steps.saturating_add(1);
        let t = self.steps;
        let lr_t = T::from_f64(learning_rate * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t)));
        let (one_minus_beta1, one_minus_beta2) = (T::from_f64(1.0 - beta1), T::from_f64(1.0 - beta2));
        let (eps, tiny) = (T::from_f64(DENOMINATOR_EPS), T::MIN_POSITIVE.sqrt());
        self.slots.step(params, &|p, g, [m, v]: &mut [T; 2]| {
            *m = flush_subnormal(*m + one_minus_beta1 * (g - *m));
            *v = flush_subnormal(*v + one_minus_beta2 * (square_flushed(g, tiny) - *v));
            p - lr_t * *m / (v.sqrt() + eps)
        });
    }

    fn keep_previous(&mut self) {
        self.slots.keep_previous();
    }

    fn undo(&mut self, params: &mut dyn Parameters<T>) -> bool {
        let undone = self.slots.undo(params);
        if undone {
            self.steps -= 1;
        }
        undone
    }
}

/// Which update rule: the command line's choice, turned into an optimizer
/// by [`OptimizerConfig::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// [`Sgd`].
    #[default]
    Sgd,
    /// [`Momentum`].
    Momentum,
    /// [`Nesterov`].
    Nesterov,
    /// [`AdaGrad`].
    AdaGrad,
    /// [`RmsProp`].
    RmsProp,
    /// [`Adam`].
    Adam,
}

impl OptimizerKind {
    /// The six, in the book's order.
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

/// Any of the six optimizers' settings in one value, for a command line or
/// a run's record; [`OptimizerConfig::new`] gives the book's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    /// Which optimizer.
    pub kind: OptimizerKind,
    /// Step size.
    pub learning_rate: f64,
    /// Momentum and Nesterov.
    pub momentum: f64,
    /// RMSprop's decay rate.
    pub decay_rate: f64,
    /// Adam's decay of the mean of `g`.
    pub beta1: f64,
    /// Adam's decay of the mean of `g^2`.
    pub beta2: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::new(OptimizerKind::Sgd)
    }
}

impl OptimizerConfig {
    /// The book's defaults for `kind`.
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

    /// The same settings with another learning rate.
    pub fn with_learning_rate(self, learning_rate: f64) -> Self {
        OptimizerConfig { learning_rate, ..self }
    }

    /// Refuses settings no optimizer takes (every field, whatever the kind).
    pub fn validate(&self) -> Result<(), LayerError> {
        check_learning_rate(self.learning_rate)?;
        check_rate("momentum", self.momentum)?;
        check_rate("decay_rate", self.decay_rate)?;
        check_rate("beta1", self.beta1)?;
        check_rate("beta2", self.beta2)
    }

    /// The settings that apply to this kind, for headers: `adam lr 0.001 beta1 0.9 beta2 0.999`.
    pub fn describe(&self) -> String {
        // As a person reads them: 1e30, not thirty-one digits.
        let lr = format!("{} lr {}", self.kind, crate::readable(self.learning_rate));
        match self.kind {
            OptimizerKind::Momentum | OptimizerKind::Nesterov => {
                format!("{lr} momentum {}", crate::readable(self.momentum))
            }
            OptimizerKind::RmsProp => format!("{lr} decay {}", crate::readable(self.decay_rate)),
            OptimizerKind::Adam => format!(
                "{lr} beta1 {} beta2 {}",
                crate::readable(self.beta1),
                crate::readable(self.beta2)
            ),
            OptimizerKind::Sgd | OptimizerKind::AdaGrad => lr,
        }
    }

    /// The optimizer of this kind for `params`, its state allocated.
    pub fn build<T: Element>(&self, params: &dyn Parameters<T>) -> Result<Box<dyn Optimizer<T>>, LayerError> {
        self.validate()?;
        let learning_rate = self.learning_rate;
        let momentum = MomentumConfig {
            learning_rate,
            momentum: self.momentum,
        };
        Ok(match self.kind {
            OptimizerKind::Sgd => Box::new(Sgd::new(SgdConfig { learning_rate }, params)?),
            OptimizerKind::Momentum => Box::new(Momentum::new(momentum, params)?),
            OptimizerKind::Nesterov => Box::new(Nesterov::new(momentum, params)?),
            OptimizerKind::AdaGrad => Box::new(AdaGrad::new(AdaGradConfig { learning_rate }, params)?),
            OptimizerKind::RmsProp => Box::new(RmsProp::new(
                RmsPropConfig {
                    learning_rate,
                    decay_rate: self.decay_rate,
                },
                params,
            )?),
            OptimizerKind::Adam => Box::new(Adam::new(
                AdamConfig {
                    learning_rate,
                    beta1: self.beta1,
                    beta2: self.beta2,
                },
                params,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine, Layer};

    /// A model with one parameter pair: W (1x1) and b (1).
    fn scalar_model(w: f64) -> Sequential<f64> {
        let affine = Affine::new(Tensor::full(&[1, 1], w), Tensor::zeros(&[1]));
        Sequential::new(&[1], vec![Box::new(affine) as Box<dyn Layer<f64>>]).unwrap()
    }

    fn set_grad(model: &mut Sequential<f64>, g: f64) {
        // W's gradient is g, b's is 0.
        model.visit_params_mut(&mut |i, p| p.grad.fill(if i == 0 { g } else { 0.0 }));
    }

    /// Runs steps with the given W gradients (b's gradient is 0) and returns W after each.
    fn run(config: OptimizerConfig, grads: &[f64]) -> Vec<f64> {
        let mut model = scalar_model(1.0);
        let mut optimizer = config.build::<f64>(&model).unwrap();
        grads
            .iter()
            .map(|&g| {
                set_grad(&mut model, g);
                optimizer.step(&mut model);
                model.params()[0].value.as_slice()[0]
            })
            .collect()
    }

    /// Three Adam steps on one parameter of `len` elements, in a pool of
    /// `threads`; the values after the last step.
    fn adam_steps(len: usize, threads: usize) -> Vec<f32> {
        let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 25.0;
        let p = Tensor::from_vec((0..len).map(value).collect(), &[len]).unwrap();
        let mut params = ParamList {
            pairs: vec![(p, Tensor::zeros(&[len]))],
        };
        let mut optimizer = Adam::new(AdamConfig::default(), &params).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            for step in 0..3 {
                params.pairs[0].1 =
                    Tensor::from_vec((0..len).map(|i| value(i + step) * 0.1).collect(), &[len]).unwrap();
                optimizer.step(&mut params);
            }
        });
        params.pairs[0].0.as_slice().to_vec()
    }

    #[test]
    fn a_split_over_threads_gives_every_element_its_own_value() {
        // Past 2^15 elements the update is cut into pieces for the threads.
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

    /// Ten tiny gradients (their squares are subnormal in f32), then zeros:
    /// the optimizer's averages decay towards 0 through the subnormal range
    /// unless flushed. `state` reads them after each step.
    fn assert_state_stays_normal<O: Optimizer<f32>, const S: usize>(
        mut optimizer: O,
        slots: impl Fn(&O) -> &Slots<f32, S>,
    ) {
        let grads = Tensor::from_vec(vec![1e-20f32, -3e-21, 1e-30, 0.5], &[4]).unwrap();
        let mut params = ParamList {
            pairs: vec![(Tensor::full(&[4], 1.0f32), Tensor::zeros(&[4]))],
        };
        for step in 0..3000 {
            params.pairs[0].1 = if step < 10 { grads.clone() } else { Tensor::zeros(&[4]) };
            optimizer.step(&mut params);
            let values: Vec<f32> = slots(&optimizer).state[0]
                .iter()
                .flat_map(|t| t.as_slice().to_vec())
                .collect();
            let subnormal = values.iter().find(|x| **x != 0.0 && x.abs() < f32::MIN_POSITIVE);
            assert!(subnormal.is_none(), "step {step}: {values:?}");
        }
        assert!(params.pairs[0].0.as_slice().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn state_never_holds_subnormal_values() {
        let params = ParamList {
            pairs: vec![(Tensor::<f32>::zeros(&[4]), Tensor::zeros(&[4]))],
        };
        assert_state_stays_normal(Adam::new(AdamConfig::default(), &params).unwrap(), |o| &o.slots);
        assert_state_stays_normal(RmsProp::new(RmsPropConfig::default(), &params).unwrap(), |o| &o.slots);
        // A tiny learning rate, so that v = -lr g starts near the subnormal range.
        let tiny = MomentumConfig {
            learning_rate: 1e-30,
            momentum: 0.9,
        };
        assert_state_stays_normal(Momentum::new(tiny, &params).unwrap(), |o| &o.slots);
    }

    #[test]
    fn undo_restores_parameters_and_state() {
        for kind in OptimizerKind::ALL {
            let config = OptimizerConfig::new(kind).with_learning_rate(0.1);
            let mut model = scalar_model(1.0);
            let mut optimizer = config.build::<f64>(&model).unwrap();
            assert!(!optimizer.undo(&mut model), "{kind}: nothing kept, nothing to undo");
            optimizer.keep_previous();
            set_grad(&mut model, 0.5);
            optimizer.step(&mut model);
            let after_one = model.param_buffers();
            set_grad(&mut model, -0.25);
            optimizer.step(&mut model);
            let after_two = model.param_buffers();
            assert!(optimizer.undo(&mut model));
            assert_eq!(model.param_buffers(), after_one, "{kind}");
            assert!(!optimizer.undo(&mut model), "{kind}: one step back only");
            // Retaking the step from the restored state gives the same result.
            set_grad(&mut model, -0.25);
            optimizer.step(&mut model);
            assert_eq!(model.param_buffers(), after_two, "{kind}: state restored too");
        }
    }

    #[test]
    fn keeping_the_previous_step_changes_no_number() {
        for kind in OptimizerKind::ALL {
            let config = OptimizerConfig::new(kind).with_learning_rate(0.1);
            let (mut plain, mut kept) = (scalar_model(1.0), scalar_model(1.0));
            let mut plain_optimizer = config.build::<f64>(&plain).unwrap();
            let mut kept_optimizer = config.build::<f64>(&kept).unwrap();
            kept_optimizer.keep_previous();
            for g in [0.5, -0.25, 0.125, 1.0] {
                set_grad(&mut plain, g);
                set_grad(&mut kept, g);
                plain_optimizer.step(&mut plain);
                kept_optimizer.step(&mut kept);
                assert_eq!(plain.param_buffers(), kept.param_buffers(), "{kind}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "not the")]
    fn a_model_of_other_shapes_is_refused() {
        let mut optimizer = Sgd::new(SgdConfig::default(), &scalar_model(1.0)).unwrap();
        let mut other = ParamList {
            pairs: vec![(Tensor::<f64>::zeros(&[2]), Tensor::zeros(&[2]))],
        };
        optimizer.step(&mut other);
    }

    #[test]
    fn parameters_that_do_not_fit_are_refused_before_any_write() {
        // Two parameters; the second's gradient is short. The panic comes
        // before the first parameter is touched.
        let good = || {
            (
                Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2]).unwrap(),
                Tensor::from_vec(vec![0.5, 0.5], &[2]).unwrap(),
            )
        };
        let built_for = ParamList {
            pairs: vec![good(), good()],
        };
        let mut optimizer = Sgd::new(SgdConfig::default(), &built_for).unwrap();
        let mut short_grad = ParamList {
            pairs: vec![good(), (Tensor::zeros(&[2]), Tensor::zeros(&[1]))],
        };
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optimizer.step(&mut short_grad)));
        assert!(step.is_err());
        assert_eq!(short_grad.pairs[0].0.as_slice(), &[1.0, 2.0], "nothing was written");
        // Fewer parameters than it was built for: refused too.
        let mut fewer = ParamList { pairs: vec![good()] };
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| optimizer.step(&mut fewer)));
        assert!(step.is_err());
        assert_eq!(fewer.pairs[0].0.as_slice(), &[1.0, 2.0]);
    }

    #[test]
    fn names_and_bad_settings() {
        for kind in OptimizerKind::ALL {
            assert_eq!(kind.to_string().parse::<OptimizerKind>().unwrap(), kind);
        }
        assert_eq!("RMSprop".parse::<OptimizerKind>().unwrap(), OptimizerKind::RmsProp);
        assert!("lbfgs".parse::<OptimizerKind>().unwrap_err().contains("adam"));
        let model = scalar_model(1.0);
        let bad = OptimizerConfig {
            beta2: 1.0,
            ..OptimizerConfig::new(OptimizerKind::Adam)
        };
        assert!(matches!(
            bad.build::<f64>(&model).err(),
            Some(LayerError::InvalidSetting { field: "beta2", .. })
        ));
        let nan = SgdConfig {
            learning_rate: f64::NAN,
        };
        assert!(matches!(
            Sgd::new(nan, &model).err(),
            Some(LayerError::InvalidSetting {
                field: "learning_rate",
                ..
            })
        ));
        assert_eq!(
            OptimizerConfig::new(OptimizerKind::Adam).describe(),
            "adam lr 0.001 beta1 0.9 beta2 0.999"
        );
    }
}
