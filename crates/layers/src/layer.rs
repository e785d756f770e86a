use tensor::{Element, Tensor};

/// A differentiable step of a network.
///
/// Shapes: `input` is `[batch, ...]`; `forward` resizes `output` (reusing its
/// allocation) and fills it. `backward` receives the same `input` and
/// `output` as the forward pass, and `grad_output = dL/d(output)`; it writes
/// `grad_input = dL/d(input)` (skipped when `None`, as for the first layer,
/// whose input is data) and *overwrites* the layer's parameter gradients, so
/// calling it twice gives the same result. It never writes into `grad_output`
/// (the borrow is shared).
///
/// Passing the forward tensors back into `backward` (as llm.c does) instead of
/// caching them keeps layers free of hidden copies and lets one layer value
/// serve several threads in evaluation.
/// `f(name, value, grad)`, with the value writable: see [`Layer::visit_params_mut`].
pub type ParamVisitorMut<'f, T> = dyn FnMut(&'static str, &mut Tensor<T>, &Tensor<T>) + 'f;

pub trait Layer<T: Element>: Send + Sync {
    /// A short name for reports: `"Affine"`, `"Relu"`, ...
    fn name(&self) -> &'static str;

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>);

    fn backward(
        &mut self,
        input: &Tensor<T>,
        output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    );

    /// Calls `f(name, value, grad)` for each parameter ("W", "b"); none by default.
    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(&'static str, &'a Tensor<T>, &'a Tensor<T>)) {}

    /// Calls `f(name, value, grad)` with the value writable (SGD, numerical gradients, loading).
    fn visit_params_mut(&mut self, _f: &mut ParamVisitorMut<'_, T>) {}

    fn clone_box(&self) -> Box<dyn Layer<T>>;
}

impl<T: Element> Clone for Box<dyn Layer<T>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
