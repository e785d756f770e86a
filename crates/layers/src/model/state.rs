//! A model's state and its names: every trainable parameter with its
//! gradient, and every buffer (saved, not trained: BatchNorm's running mean
//! and variance).
//!
//! **One walk.** [`Sequential::visit_state`] goes through the layers in
//! order and, in each, through its parameters and then its buffers
//! ([`Layer::visit_params`], [`Layer::visit_buffers`]);
//! [`Sequential::visit_state_mut`] is its writable twin. A parameter's index
//! counts parameters only and a buffer's counts buffers only, so each is the
//! position in [`Sequential::param_names`] or in the buffer names. Every
//! accessor below (the optimizers' walk, the snapshots, loading by name, the
//! numerical gradient's perturbation) is a few lines over it, so none of
//! them can disagree with another about the order.
//!
//! **Names.** A layer may be given a name ([`Sequential::with_layer_names`],
//! [`NetSpec::name`](crate::NetSpec::name)):
//!
//! * a named layer's tensors are `{name}.{kind}`: `stem.W`, `stem.b`,
//!   `bn.gamma`, `bn.running_mean`;
//! * an unnamed layer's are `{kind}{number}`, as the book numbers them:
//!   Affine and Convolution start a new number (`W1 b1`, then `W2 b2`), and
//!   a layer that does not (BatchNorm) takes the number of the last unnamed
//!   one that did (`gamma1 beta1`, `running_mean1 running_var1`). Named
//!   layers take no number, so the unnamed ones keep the book's numbering
//!   among themselves.
//!
//! Why names: a checkpoint is loaded by tensor name. Inserting an unnamed
//! Affine or Convolution shifts every number after it, so `W2` then names
//! another tensor, and an old checkpoint no longer loads (or, where the
//! shapes happen to agree, loads the wrong weights). Inserting a named layer
//! changes no other name.
//!
//! A layer name is a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`) of at most
//! [`MAX_LAYER_NAME_LEN`] characters, used once in the model. The `.` keeps a
//! chosen name apart from a counted one; names that read as a book name
//! (`W2`, `gamma1`, `running_var3`) are refused as well, so that a list of
//! tensor names shows at a glance which were chosen.

use super::Sequential;
#[cfg(doc)]
use crate::Layer;
use crate::{LayerError, Param, ParamMut};
use std::collections::HashMap;
use tensor::{Element, Tensor};

/// The longest layer name, in characters (identifiers are ASCII: bytes).
pub const MAX_LAYER_NAME_LEN: usize = 32;

/// The kinds of tensor this crate's layers have: one followed by digits is
/// a book name (`W2`), which a layer name must not read as.
const BOOK_KINDS: [&str; 6] = ["W", "b", "gamma", "beta", "running_mean", "running_var"];

/// A parameter with its model-wide name.
pub struct NamedParam<'a, T> {
    /// `W1`, `b1`, `gamma1`, ... or, in a named layer, `stem.W`, `stem.b`, ...
    pub name: &'a str,
    /// The parameter's current value.
    pub value: &'a Tensor<T>,
    /// `dL/d(value)` from the last backward pass (weight decay's
    /// `lambda * W` included); the value's shape.
    pub grad: &'a Tensor<T>,
    /// Whether weight decay applies (weight matrices only).
    pub decays: bool,
}

/// One tensor of the state as [`Sequential::visit_state`] shows it. `layer`
/// is the position of its layer in the model; `index` its position among
/// the parameters (or among the buffers), and so of its name in
/// `param_names` (or `buffer_names`).
pub(super) enum State<'a, T> {
    /// A trainable parameter with its gradient.
    Param {
        layer: usize,
        index: usize,
        param: Param<'a, T>,
    },
    /// A saved, untrained tensor; `kind` is the name without its number.
    Buffer {
        layer: usize,
        index: usize,
        kind: &'static str,
        value: &'a Tensor<T>,
    },
}

/// [`State`] with the tensors writable ([`Sequential::visit_state_mut`]).
pub(super) enum StateMut<'a, T> {
    /// A trainable parameter, its value and gradient writable.
    Param { index: usize, param: ParamMut<'a, T> },
    /// A buffer, writable.
    Buffer { index: usize, value: &'a mut Tensor<T> },
}

// check_layer_name's reason writes the limit out: a change must change both.
const _: () = assert!(MAX_LAYER_NAME_LEN == 32);

/// Why `name` cannot name a layer (see the module doc), or `Ok`: the end
/// of a sentence that starts "the layer name 'NAME'", as
/// [`LayerError::BadLayerName`] writes it.
pub(crate) fn check_layer_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_LAYER_NAME_LEN {
        return Err("is longer than 32 characters");
    }
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err("is not a plain identifier: letters, digits and '_', not starting with a digit");
    }
    let book_name = BOOK_KINDS.iter().any(|kind| {
        name.strip_prefix(kind)
            .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
    });
    if book_name {
        return Err("reads as the name of an unnamed layer's tensor (W2, gamma1, ...); choose another, such as 'fc2'");
    }
    Ok(())
}

/// Checks every name in `names` (`names[i]` is layer `i + 1`'s, `None`:
/// unnamed) and that none repeats.
pub(crate) fn check_layer_names(names: &[Option<String>]) -> Result<(), LayerError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        check_layer_name(name).map_err(|reason| LayerError::BadLayerName {
            layer: index + 1,
            name: name.clone(),
            reason,
        })?;
        if let Some(first) = seen.insert(name, index) {
            return Err(LayerError::DuplicateLayerName {
                name: name.clone(),
                first: first + 1,
                second: index + 1,
            });
        }
    }
    Ok(())
}

impl<T: Element> Sequential<T> {
    /// The one walk over the state: for each layer in order, its parameters
    /// and then its buffers (see the module doc).
    pub(super) fn visit_state<'s>(&'s self, f: &mut dyn FnMut(State<'s, T>)) {
        let (mut params, mut buffers) = (0, 0);
        for (position, layer) in self.layers.iter().enumerate() {
            layer.visit_params(&mut |param| {
                f(State::Param {
                    layer: position,
                    index: params,
                    param,
                });
                params += 1;
            });
            layer.visit_buffers(&mut |kind, value| {
                f(State::Buffer {
                    layer: position,
                    index: buffers,
                    kind,
                    value,
                });
                buffers += 1;
            });
        }
    }

    /// [`Sequential::visit_state`] with the tensors writable: the same
    /// tensors in the same order.
    pub(super) fn visit_state_mut(&mut self, f: &mut dyn FnMut(StateMut<'_, T>)) {
        let (mut params, mut buffers) = (0, 0);
        for layer in &mut self.layers {
            layer.visit_params_mut(&mut |param| {
                f(StateMut::Param { index: params, param });
                params += 1;
            });
            layer.visit_buffers_mut(&mut |_, value| {
                f(StateMut::Buffer { index: buffers, value });
                buffers += 1;
            });
        }
    }

    /// Names the layers: `names[i]` is layer `i`'s (`None`: unnamed), one
    /// per layer. Every parameter and buffer is renamed from them (see the
    /// module doc); the values are not touched. Fails with
    /// [`LayerError::LayerNameCount`] for a count that is not the layers',
    /// [`LayerError::BadLayerName`] for a name that is not a plain
    /// identifier of at most [`MAX_LAYER_NAME_LEN`] characters or reads as
    /// a book name (`W2`), [`LayerError::DuplicateLayerName`] for a name
    /// given to two layers, and [`LayerError::DuplicateTensorName`] for two
    /// unnamed layers whose tensors would share a name.
    ///
    /// ```
    /// use layers::NetSpec;
    ///
    /// let model = NetSpec::new(&[4]).affine(5).relu().affine(3).build::<f32>(1).unwrap();
    /// assert_eq!(model.param_names(), ["W1", "b1", "W2", "b2"]);
    /// let model = model.with_layer_names(vec![Some("hidden".into()), None, None]).unwrap();
    /// // The named layer takes no number: the last Affine is now the first unnamed one.
    /// assert_eq!(model.param_names(), ["hidden.W", "hidden.b", "W1", "b1"]);
    /// assert!(model.with_layer_names(vec![Some("3x".into()), None, None]).is_err());
    /// ```
    pub fn with_layer_names(mut self, names: Vec<Option<String>>) -> Result<Self, LayerError> {
        if names.len() != self.layers.len() {
            return Err(LayerError::LayerNameCount {
                names: names.len(),
                layers: self.layers.len(),
            });
        }
        check_layer_names(&names)?;
        let (param_names, buffer_names) = self.tensor_names(&names)?;
        self.param_names = param_names;
        self.buffer_names = buffer_names;
        self.layer_names = names;
        Ok(self)
    }

    /// Every parameter's and every buffer's name for these layer names (see
    /// the module doc), refusing two tensors of one name.
    fn tensor_names(&self, layer_names: &[Option<String>]) -> Result<(Vec<String>, Vec<String>), LayerError> {
        // numbers[i]: the number the tensors of layer i carry if it is unnamed.
        let mut number = 0;
        let numbers: Vec<usize> = self
            .layers
            .iter()
            .zip(layer_names)
            .map(|(layer, name)| {
                if name.is_none() && layer.numbers_params() {
                    number += 1;
                }
                number
            })
            .collect();
        let name = |layer: usize, kind: &str| match &layer_names[layer] {
            Some(name) => format!("{name}.{kind}"),
            None => format!("{kind}{}", numbers[layer]),
        };
        // Every name with its layer's position, to name both layers of a clash.
        let (mut params, mut buffers) = (Vec::new(), Vec::new());
        self.visit_state(&mut |state| match state {
            State::Param { layer, param, .. } => params.push((name(layer, param.kind), layer)),
            State::Buffer { layer, kind, .. } => buffers.push((name(layer, kind), layer)),
        });
        let mut all: Vec<&(String, usize)> = params.iter().chain(&buffers).collect();
        all.sort();
        if let Some(pair) = all.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(LayerError::DuplicateTensorName {
                name: pair[0].0.clone(),
                first: pair[0].1 + 1,
                second: pair[1].1 + 1,
            });
        }
        let (param_names, buffer_names) = (
            params.into_iter().map(|(name, _)| name).collect(),
            buffers.into_iter().map(|(name, _)| name).collect(),
        );
        Ok((param_names, buffer_names))
    }

    /// Each layer's name, in order (`None`: unnamed, its tensors numbered).
    pub fn layer_names(&self) -> &[Option<String>] {
        &self.layer_names
    }

    /// The parameters' names, in order: `W1 b1 W2 b2 ...` (`stem.W stem.b`
    /// for a layer named `stem`).
    pub fn param_names(&self) -> &[String] {
        &self.param_names
    }

    /// Calls `f(index, param)` for every parameter in order (W1 b1 ...): what
    /// optimizers, weight decay's gradient and the initial draw of the
    /// weights write through. `index` is the position in
    /// [`Sequential::param_names`].
    pub fn visit_params_mut(&mut self, f: &mut dyn FnMut(usize, ParamMut<'_, T>)) {
        self.visit_state_mut(&mut |state| {
            if let StateMut::Param { index, param } = state {
                f(index, param);
            }
        });
    }

    /// Every parameter with its name, in order.
    pub fn params(&self) -> Vec<NamedParam<'_, T>> {
        let mut out = Vec::with_capacity(self.param_names.len());
        self.visit_state(&mut |state| {
            if let State::Param { index, param, .. } = state {
                out.push(NamedParam {
                    name: &self.param_names[index],
                    value: param.value,
                    grad: param.grad,
                    decays: param.decays,
                });
            }
        });
        out
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        let mut total = 0;
        self.visit_state(&mut |state| {
            if let State::Param { param, .. } = state {
                total += param.value.numel();
            }
        });
        total
    }

    /// The shape of every parameter, in order (what an optimizer allocates
    /// its state from, see [`crate::Parameters`]).
    pub fn param_shapes(&self) -> Vec<Vec<usize>> {
        self.params().iter().map(|p| p.value.shape().to_vec()).collect()
    }

    /// Copies of every parameter's value, in order: a snapshot.
    pub fn param_buffers(&self) -> Vec<Tensor<T>> {
        self.params().into_iter().map(|p| p.value.clone()).collect()
    }

    /// Every buffer (saved, not trained) with its name, in order.
    pub fn buffers(&self) -> Vec<(&str, &Tensor<T>)> {
        let mut out = Vec::with_capacity(self.buffer_names.len());
        self.visit_state(&mut |state| {
            if let State::Buffer { index, value, .. } = state {
                out.push((self.buffer_names[index].as_str(), value));
            }
        });
        out
    }

    /// Copies every buffer into `out` (same order as [`Sequential::buffers`]),
    /// reusing `out`'s allocations: a snapshot to put back with
    /// [`Sequential::restore_buffers`].
    pub fn copy_buffers_into(&self, out: &mut Vec<Tensor<T>>) {
        // An empty tensor does not allocate; `resize` only grows `out` once.
        out.resize(self.buffer_names.len(), Tensor::zeros(&[0]));
        self.visit_state(&mut |state| {
            if let State::Buffer { index, value, .. } = state {
                out[index].assign(value);
            }
        });
    }

    /// Puts back buffers copied by [`Sequential::copy_buffers_into`].
    ///
    /// # Panics
    /// When `from` does not hold one tensor of the right shape per buffer.
    pub fn restore_buffers(&mut self, from: &[Tensor<T>]) {
        assert_eq!(
            from.len(),
            self.buffer_names.len(),
            "restore_buffers: one tensor per buffer"
        );
        self.visit_state_mut(&mut |state| {
            if let StateMut::Buffer { index, value } = state {
                assert_eq!(value.shape(), from[index].shape(), "restore_buffers: shape mismatch");
                value.assign(&from[index]);
            }
        });
    }

    /// Writes `value` into element `element` of parameter `index` and
    /// returns what was there (numerical gradients).
    ///
    /// # Panics
    /// When either is out of range.
    pub fn replace_param_element(&mut self, index: usize, element: usize, value: T) -> T {
        let mut old = None;
        self.visit_state_mut(&mut |state| match state {
            StateMut::Param { index: i, param } if i == index => {
                old = Some(std::mem::replace(&mut param.value.as_mut_slice()[element], value));
            }
            _ => {}
        });
        old.unwrap_or_else(|| panic!("no parameter {index}"))
    }

    /// Overwrites the parameter or buffer `name` after checking its shape:
    /// [`LayerError::MissingParam`] for a name the model does not have,
    /// [`LayerError::ParamShape`] for another shape (or a `values` of
    /// another length).
    pub fn set_tensor(&mut self, name: &str, shape: &[usize], values: &[T]) -> Result<(), LayerError> {
        // Parameter and buffer names never meet (checked when named), so at most one is found.
        let param = self.param_names.iter().position(|n| n == name);
        let buffer = self.buffer_names.iter().position(|n| n == name);
        let mut result = Err(LayerError::MissingParam { name: name.to_string() });
        self.visit_state_mut(&mut |state| {
            let tensor = match state {
                StateMut::Param { index, param: p } if param == Some(index) => p.value,
                StateMut::Buffer { index, value } if buffer == Some(index) => value,
                _ => return,
            };
            result = if tensor.shape() != shape || values.len() != tensor.numel() {
                Err(LayerError::ParamShape {
                    name: name.to_string(),
                    expected: tensor.shape().to_vec(),
                    found: shape.to_vec(),
                })
            } else {
                tensor.as_mut_slice().copy_from_slice(values);
                Ok(())
            };
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LayerSpec, Mlp, NetSpec, SimpleConvNet};

    #[test]
    fn unnamed_models_keep_the_books_names() {
        let two = NetSpec::two_layer_net(784, 50, 10).build::<f32>(42).unwrap();
        assert_eq!(two.param_names(), ["W1", "b1", "W2", "b2"]);
        assert_eq!(two.layer_names(), [None, None, None]);
        let simple = SimpleConvNet::default().build::<f32>(42).unwrap();
        assert_eq!(simple.param_names(), ["W1", "b1", "W2", "b2", "W3", "b3"]);
        // (The mlp with BatchNorm: mlp.rs's names_follow_the_book.)
        // A convolution with a BatchNorm after it: the BatchNorm takes the conv's number.
        let conv_bn = NetSpec::new(&[1, 6, 6]).conv(2, 3).batch_norm().relu().affine(3);
        let model = conv_bn.build::<f32>(1).unwrap();
        assert_eq!(model.param_names(), ["W1", "b1", "gamma1", "beta1", "W2", "b2"]);
    }

    #[test]
    fn named_layers_take_no_number() {
        let model = NetSpec::new(&[1, 6, 6])
            .conv(2, 3)
            .name("stem")
            .batch_norm()
            .name("stem_bn")
            .relu()
            .conv(2, 3)
            .batch_norm()
            .relu()
            .affine(4)
            .name("head")
            .affine(3)
            .build::<f32>(1)
            .unwrap();
        assert_eq!(
            model.param_names(),
            [
                "stem.W",
                "stem.b",
                "stem_bn.gamma",
                "stem_bn.beta",
                "W1",
                "b1",
                "gamma1",
                "beta1",
                "head.W",
                "head.b",
                "W2",
                "b2"
            ]
        );
        let buffers: Vec<&str> = model.buffers().iter().map(|b| b.0).collect();
        assert_eq!(
            buffers,
            [
                "stem_bn.running_mean",
                "stem_bn.running_var",
                "running_mean1",
                "running_var1"
            ]
        );
        assert_eq!(model.layer_names()[0].as_deref(), Some("stem"));
        assert_eq!(model.layer_names()[2], None);
        // Named tensors load like the others.
        let mut model = model;
        model.set_tensor("stem_bn.running_var", &[2], &[3.0, 4.0]).unwrap();
        assert_eq!(model.buffers()[1].1.as_slice(), &[3.0, 4.0]);
        model.set_tensor("head.b", &[4], &[1.0; 4]).unwrap();
        assert_eq!(model.params()[9].value.as_slice(), &[1.0; 4]);
    }

    #[test]
    fn naming_changes_names_not_values() {
        let spec = NetSpec::new(&[4]).affine(5).relu().affine(3);
        let plain = spec.build::<f64>(9).unwrap();
        let named = spec.clone().name("out").build::<f64>(9).unwrap();
        assert_eq!(named.param_names(), ["W1", "b1", "out.W", "out.b"]);
        assert_eq!(named.param_buffers(), plain.param_buffers(), "the same draws");
        // Renaming a built model back gives the book's names again.
        let renamed = named.with_layer_names(vec![None; 3]).unwrap();
        assert_eq!(renamed.param_names(), plain.param_names());
    }

    #[test]
    fn bad_layer_names_are_refused() {
        let model = || Sequential::<f32>::from_specs(&[4], &[LayerSpec::Affine { inputs: 4, outputs: 3 }]).unwrap();
        for (name, fragment) in [
            ("", "not a plain identifier"),
            ("3x", "not a plain identifier"),
            ("a.b", "not a plain identifier"),
            ("stem-1", "not a plain identifier"),
            ("é", "not a plain identifier"),
            (&"a".repeat(33), "longer than 32"),
            ("W2", "reads as the name"),
            ("running_var1", "reads as the name"),
            ("gamma10", "reads as the name"),
        ] {
            let err = model().with_layer_names(vec![Some(name.to_string())]).unwrap_err();
            assert!(err.to_string().contains(fragment), "{name:?}: {err}");
            assert!(err.to_string().contains("layer 1"), "{name:?}: {err}");
            assert!(
                matches!(&err, LayerError::BadLayerName { layer: 1, name: given, .. } if given == name),
                "{err:?}"
            );
        }
        for name in ["_", "W", "b", "Wide2", "bn1", "fc_2", "gamma_1", &"a".repeat(32)] {
            assert!(
                model().with_layer_names(vec![Some(name.to_string())]).is_ok(),
                "{name:?}"
            );
        }
        let err = model().with_layer_names(vec![None, None]).unwrap_err();
        assert!(err.to_string().contains("2 layer names for 1 layers"), "{err}");
        assert_eq!(err, LayerError::LayerNameCount { names: 2, layers: 1 });
        let two = Sequential::<f32>::from_specs(
            &[4],
            &[
                LayerSpec::Affine { inputs: 4, outputs: 4 },
                LayerSpec::Affine { inputs: 4, outputs: 3 },
            ],
        )
        .unwrap();
        let err = two
            .with_layer_names(vec![Some("fc".into()), Some("fc".into())])
            .unwrap_err();
        assert!(err.to_string().contains("layers 1 and 2 are both named 'fc'"), "{err}");
        assert_eq!(
            err,
            LayerError::DuplicateLayerName {
                name: "fc".into(),
                first: 1,
                second: 2
            }
        );
        // A long name with a control character is shown escaped and cut.
        let long = format!("\n{}", "a".repeat(40));
        let err = model().with_layer_names(vec![Some(long)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer 1: the layer name '\\n{}...' is longer than 32 characters",
                "a".repeat(31)
            )
        );
    }

    #[test]
    fn every_accessor_follows_the_one_walk() {
        let mut model = Mlp::new(&[3, 4, 2]).batch_norm(true).build::<f64>(2).unwrap();
        let names: Vec<&str> = model.params().iter().map(|p| p.name).collect();
        assert_eq!(names, model.param_names());
        assert_eq!(
            model.param_shapes(),
            [vec![3, 4], vec![4], vec![4], vec![4], vec![4, 2], vec![2]]
        );
        assert_eq!(model.num_params(), 12 + 4 + 4 + 4 + 8 + 2);
        let mut visited = Vec::new();
        model.visit_params_mut(&mut |index, p| visited.push((index, p.kind)));
        assert_eq!(
            visited,
            [(0, "W"), (1, "b"), (2, "gamma"), (3, "beta"), (4, "W"), (5, "b")]
        );

        // Buffers: a snapshot, a change, and the snapshot put back.
        let mut saved = Vec::new();
        model.copy_buffers_into(&mut saved);
        assert_eq!(saved.len(), 2);
        model.set_tensor("running_mean1", &[4], &[7.0; 4]).unwrap();
        assert_eq!(model.buffers()[0].1.as_slice(), &[7.0; 4]);
        model.restore_buffers(&saved);
        assert_eq!(model.buffers()[0].1, &saved[0]);

        // One element of the fourth parameter (beta1, zeros), and back.
        assert_eq!(model.replace_param_element(3, 2, 0.5), 0.0);
        assert_eq!(model.params()[3].value.as_slice(), &[0.0, 0.0, 0.5, 0.0]);
        assert_eq!(model.replace_param_element(3, 2, 0.0), 0.5);
    }
}
