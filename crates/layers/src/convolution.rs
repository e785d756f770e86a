//! Convolution (the book's `Convolution`, section 7.4), as im2col and
//! GEMMs, or, with stride 1 over several channels, as products that read the
//! padded image in place.
//!
//! Shapes: `x` is `[N, C, H, W]`; the filters `W` are `[FN, C, FH, FW]`
//! (seen as an `FN x K` matrix, `K = C * FH * FW`); `b` is `[FN]`; `y` is
//! `[N, FN, OH, OW]` with `OH = (H + 2 pad - FH) / stride + 1` (and `OW`
//! likewise). Per image `n`, with `col_n = im2col(x_n)` (`[K, OH * OW]`, one
//! column per output position; see [`tensor::conv`]) and `G_n = dL/dy_n`
//! seen as `[FN, OH * OW]`:
//! * forward: `y_n = W col_n + b` (one GEMM, already in image layout);
//! * backward: `dL/dW = sum_n G_n col_n^T`, `dL/db = sum_n` (row sums of
//!   `G_n`), `dL/dx_n = col2im(W^T G_n)`.
//!
//! With stride 1 and more than one channel (and a pad smaller than the
//! filter: every convolution of the book's nets but the first) `col_n` is
//! never written: each of its rows is the padded image shifted,
//! and the products of [`tensor::shifted`] read it there (`ShiftedLayout`
//! below has the layout and the input gradient's form). `im2col` wrote `K`
//! copies of the image and the GEMM packed them again: DeepConvNet's 100
//! training steps went from 7.1 to 4.3-4.8 s.
//!
//! On that route a 3x3 filter over channels and filters in whole vectors
//! (multiples of 16: every convolution of DeepConvNet but the first) with
//! an even output goes forward by Winograd's F(2x2, 3x3) instead
//! ([`tensor::winograd`]): 4 multiply-adds for each output and channel
//! where the products take 9, each image laid out channels last first. Its
//! input gradient, a 3x3 convolution of the padded `G` by the turned
//! filters, goes the same way (but see below). DeepConvNet's five such
//! layers went forward in 6.6 ms a batch rather than 10.2 (two threads),
//! its 100 training steps from 2.66-2.81 s to 2.24-2.28 s, and 6% less with
//! the input gradient. For finite values the result differs from the
//! direct sums by rounding only (the tests compare them).
//!
//! Off the shifted route (one channel, or a pad at least as wide as the
//! filter),
//! with stride 1, a convolution followed by a ReLU and the book's 2x2 max
//! pool of stride 2 (SimpleConvNet's) takes those two on
//! ([`Layer::forward_relu_pool`]): the direct sums of [`tensor::direct`],
//! each 2x2 block of outputs through the ReLU and the pool in registers,
//! only the pooled values written (and a byte each: which pixel won). Its
//! backward sums `dL/dW` over the winners only, from each image's windows
//! laid out as rows, without `G`; an input gradient, where one is asked
//! for, goes by the `im2col` route over `G` written out. SimpleConvNet's
//! epoch went from 1.91-2.22 s to 1.20-1.58 s (two threads); the pooled
//! values are the three layers' up to rounding (the sums go in another
//! order than the GEMM's). Where Winograd serves the forward pass, it takes
//! the ReLU and the pool on too, and the ReLU before the layer (DeepConvNet's
//! second, fourth and sixth convolutions): the pool reads the outputs
//! channels last, in cache, and only its quarter is transposed; backward
//! writes `G` from the winners and goes the shifted route's way, the four
//! layers' bits.
//!
//! The work is split over rayon by images, in tasks of a fixed
//! [`IMAGES_PER_TASK`] images: a task's products run whole on one thread,
//! where its `col`s or padded images stay in cache (the shifted forward
//! pads a task's images side by side, one product for them, or by Winograd
//! takes them one at a time). Backward sums
//! `dL/dW` and `dL/db` a task at a time, and the tasks' shares are added in
//! task order, so the result is the same for any thread count. The tasks
//! run in a few runs a thread, each run's work in its own scratch (`Runs`).
//! Training keeps nothing of the batch: backward makes each image's `col`
//! or padded copy again from the layer's input (see
//! `forward_train_shifted`). Buffers are reused from step to step;
//! inference keeps a task's per thread, allocated per call.
//!
//! Behind a ReLU and a max pool, `G` is mostly zeros (DeepConvNet's second,
//! fourth and sixth layers: 13-20% nonzero in training), and the shifted
//! route's backward then goes over its nonzero values only, channels last
//! ([`tensor::sparse_backward`]); so does a layer of 32 channels or more
//! behind a ReLU alone (DeepConvNet's fifth, about half nonzero). The route
//! is chosen by counting them ([`tensor::sparse_backward::pays_at`]), the
//! same way for any thread count. Where Winograd serves, the input gradient
//! goes by it on either route, but for a layer of 32 channels or more
//! whose `G` is at most [`SPARSE_INPUT_GRADIENT_MAX_SHARE`] nonzero (there
//! the nonzero values' work is less). Differences show with infinite
//! values: where an input value is infinite and `G` is 0 at every window
//! over it, the dense products give NaN (`0 * inf`) and the route over the
//! nonzero values leaves the gradient finite; and Winograd's transforms
//! turn some infinite outputs into NaN (`inf - inf`).

use crate::layer::{visit_weight_and_bias, visit_weight_and_bias_mut};
use crate::relu::{relu, relu_grad};
use crate::{Layer, LayerError, LayerRng, LayerSpec, Param, ParamMut};
use rayon::prelude::*;
use tensor::conv::{col2im_image, im2col_image, ConvGeometry};
use tensor::direct::{self, DirectFilters, DirectOutput, DirectShape};
use tensor::row_products::row_products;
use tensor::shifted::{gradient_scratch_len, shifted_gradient, shifted_product, ShiftedPanels};
use tensor::sparse_backward::{self, to_channels_last, transpose, InputGradient};
use tensor::winograd::{self, WinogradFilters, WinogradShape};
use tensor::{gemm, Element, MatMut, MatRef, Tensor};

/// Images per task: enough work per task to pay for its scheduling, and
/// enough tasks (20 for a batch of 100) to share out over the threads in
/// runs. Fixed, because it sets the order of the sums over the batch; it is
/// also the images the shifted forward pass pads side by side.
pub const IMAGES_PER_TASK: usize = 5;

/// The convolution layer: filters, bias, their gradients, stride and padding.
///
/// [`Layer::forward`] maps `[N, C, H, W]` to `[N, FN, OH, OW]`; it panics
/// when the input is not 4-D or its channels or size do not fit the filters (a
/// [`crate::Sequential`] checks the shapes first).
#[derive(Debug, Clone)]
pub struct Convolution<T> {
    /// The filters `W`, `[FN, C, FH, FW]`.
    pub w: Tensor<T>,
    /// The bias `b`, one per filter, `[FN]`.
    pub b: Tensor<T>,
    /// `dL/dW = sum_n G_n col_n^T`, `[FN, C, FH, FW]`, from the last backward pass.
    pub grad_w: Tensor<T>,
    /// `dL/db`, `G` summed over images and positions, `[FN]`, from the last
    /// backward pass.
    pub grad_b: Tensor<T>,
    stride: usize,
    pad: usize,
    /// Per task, its images' share of `dL/dW` (`FN * K` values) then of
    /// `dL/db` (`FN`); over `G`'s nonzero values, the shares start on cache
    /// lines, a stride apart, `dL/dW` channels last (`backward_nonzeros`).
    partials: Tensor<T>,
    /// Per run ([`Runs`]), its scratch: on the `im2col` route a task's
    /// `col`s, or `dL/d col` of an image; on the shifted route its padded
    /// images and the products' work (over `G`'s nonzero values, also the
    /// shares' sum at the end), or an image channels last and Winograd's
    /// work (with a pool taken on, also the pooled values channels last);
    /// on the direct route an image padded and its outputs channels last,
    /// or its windows as rows (`col_t`).
    scratch: Tensor<T>,
    /// The filters packed for the shifted products, from the last forward
    /// pass that took them (not by Winograd).
    panels: ShiftedPanels<T>,
    /// The filters transformed for the Winograd forward (3x3 filters), from
    /// the last training forward pass.
    winograd: WinogradFilters<T>,
    /// The turned filters transformed for the input gradient by Winograd,
    /// from the last backward pass (room made by the training forward pass).
    turned_winograd: WinogradFilters<T>,
    /// The filters turned for the input gradient (`[C, FN * FH * FW]`), packed.
    turned: ShiftedPanels<T>,
    /// Per tap, where its values start in a padded image (the dense
    /// backward's weight gradient), and in the padded output gradient (the
    /// input gradient's product).
    offsets: Vec<usize>,
    turned_offsets: Vec<usize>,
    /// Per tap, where its values start in a group's padded images (the
    /// forward pass's, `ShiftedLayout::pad_group`).
    group_offsets: Vec<usize>,
    /// The filters channels last, `[FN, FH, FW, C]`, for the backward over
    /// `G`'s nonzero values (from the first cache line's start in it).
    filters_last: Tensor<T>,
    /// The filters and bias laid out for the direct sums, from the last
    /// training forward pass that took on a ReLU and a pool on the direct
    /// route.
    direct: DirectFilters<T>,
    /// The last training forward pass that took on a ReLU and a pool: which
    /// pixel of each pool window won, per image `[OH/2 OW/2, FN']` on the
    /// direct route ([`tensor::direct::DirectOutput::Pooled`]), `[OH/2
    /// OW/2, FN]` by Winograd.
    pool_codes: Vec<u8>,
    /// `G` written out from the pool's gradient and the winners: for an
    /// input gradient behind the direct route, and for the whole backward
    /// behind Winograd.
    pooled_grad: Tensor<T>,
    /// The last training forward pass's batch: its shape, and whether it
    /// went in through a ReLU, or on through a ReLU and a pool. Nothing of
    /// the batch is kept but the pool's winners, so backward checks that
    /// it is given a batch of that shape, the same way; behind a pool it
    /// must be the very batch (the winners are its own).
    trained: Trained,
}

/// What [`Convolution`]'s backward checks against the last training
/// forward pass ([`Convolution::check_backward`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Trained {
    /// `[N, C, H, W]`.
    shape: [usize; 4],
    relu_first: bool,
    /// Whether the pass took on a ReLU and a 2x2 pool after the layer.
    pooled: bool,
}

impl Trained {
    /// The record of a batch `input` (4-D: the layer has checked its
    /// geometry), taken in through a ReLU or not.
    fn of<T: Element>(input: &Tensor<T>, relu_first: bool) -> Self {
        Trained {
            shape: std::array::from_fn(|i| input.shape().get(i).copied().unwrap_or(0)),
            relu_first,
            pooled: false,
        }
    }

    /// The record of a batch `input` (taken in through a ReLU or not)
    /// whose output went on through a ReLU and a pool taken on.
    fn pooled<T: Element>(input: &Tensor<T>, relu_first: bool) -> Self {
        Trained {
            pooled: true,
            ..Trained::of(input, relu_first)
        }
    }
}

/// How a task's share of `dL/dW` is laid out in `partials`.
#[derive(Debug, Clone, Copy)]
enum ShareLayout {
    /// `[FN, K]`, as `W`.
    Filters,
    /// `[K, FN]`: the `dW^T` of the shifted route's dense products.
    Transposed,
    /// `[FN, FH, FW, C]`: the backward over `G`'s nonzero values.
    ChannelsLast,
}

impl<T: Element> Convolution<T> {
    /// A layer with filters `w` (`[FN, C, FH, FW]`) and bias `b` (`[FN]`).
    ///
    /// # Panics
    /// When `w` is not 4-D, `b` does not have `FN` elements, or `stride` is 0
    /// ([`LayerSpec::validate`] refuses all of these first).
    pub fn new(w: Tensor<T>, b: Tensor<T>, stride: usize, pad: usize) -> Self {
        assert_eq!(
            w.shape().len(),
            4,
            "Convolution: W must be [FN, C, FH, FW], got {:?}",
            w.shape()
        );
        assert_eq!(
            b.numel(),
            w.shape()[0],
            "Convolution: b {:?} does not fit W {:?}",
            b.shape(),
            w.shape()
        );
        assert!(stride > 0, "Convolution: stride 0");
        let grad_w = Tensor::zeros(w.shape());
        let grad_b = Tensor::zeros(b.shape());
        Convolution {
            w,
            b,
            grad_w,
            grad_b,
            stride,
            pad,
            partials: Tensor::zeros(&[0]),
            scratch: Tensor::zeros(&[0]),
            panels: ShiftedPanels::new(),
            winograd: WinogradFilters::new(),
            turned_winograd: WinogradFilters::new(),
            turned: ShiftedPanels::new(),
            offsets: Vec::new(),
            turned_offsets: Vec::new(),
            group_offsets: Vec::new(),
            filters_last: Tensor::zeros(&[0]),
            direct: DirectFilters::new(),
            pool_codes: Vec::new(),
            pooled_grad: Tensor::zeros(&[0]),
            trained: Trained::default(),
        }
    }

    /// `FN`: the number of filters, the output's channels.
    pub fn filters(&self) -> usize {
        self.w.shape()[0]
    }

    /// `C`: the input channels each filter spans.
    pub fn channels(&self) -> usize {
        self.w.shape()[1]
    }

    /// The window over one example of shape `[C, H, W]`.
    fn geometry(&self, example: &[usize]) -> Result<ConvGeometry, LayerError> {
        self.spec().window_geometry(example)
    }

    /// The shifted route's layout for this batch, where it serves.
    fn shifted_layout(&self, input: &Tensor<T>) -> Option<ShiftedLayout> {
        ShiftedLayout::new(self.batch_geometry(input), self.filters())
    }

    /// The shifted route's layout for this batch, with `output` resized to
    /// its shape; `None` (`output` untouched) where the route does not serve.
    fn shifted_output(&self, input: &Tensor<T>, output: &mut Tensor<T>) -> Option<ShiftedLayout> {
        let layout = self.shifted_layout(input)?;
        let g = layout.g;
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        Some(layout)
    }

    /// The geometry of a batch the model has already checked.
    fn batch_geometry(&self, input: &Tensor<T>) -> ConvGeometry {
        self.geometry(&input.shape()[1..])
            .unwrap_or_else(|e| panic!("Convolution on {:?}: {e}", input.shape()))
    }

    /// Backward's inputs against forward's: `dL/dy` shaped as the output,
    /// and `input` of the last training forward pass's shape, taken through
    /// a ReLU or not as then (`relu_first`). Backward makes what it needs
    /// of the images again from `input`; given another batch of that shape,
    /// it gives that batch's gradients.
    fn check_backward(&self, input: &Tensor<T>, grad_output: &Tensor<T>, g: &ConvGeometry, relu_first: bool) {
        assert_eq!(
            grad_output.shape(),
            [input.rows(), self.filters(), g.out_h(), g.out_w()],
            "Convolution backward: dL/dy does not fit the output"
        );
        assert_eq!(
            self.trained,
            Trained::of(input, relu_first),
            "Convolution backward without forward_train on this batch"
        );
    }

    /// `dL/dW` and `dL/db`: the `tasks` shares in `partials` (`stride`
    /// values apart from `start`, each `dW` laid out as `layout` says, then
    /// `db`) added in task order as they lie, a vector at a time, so the
    /// sums do not depend on the threads; then `dW` laid out as `W`.
    fn add_shares(&mut self, layout: ShareLayout, (start, stride, tasks): (usize, usize, usize)) {
        // `W` is `[FN, C, FH, FW]`: a window is its last three dimensions.
        let (filters, channels, weights_len) = (self.filters(), self.channels(), self.w.numel());
        let (window_len, taps) = (weights_len / filters.max(1), weights_len / (filters * channels).max(1));
        if !matches!(layout, ShareLayout::Filters) {
            grow(&mut self.scratch, weights_len);
        }
        let Convolution {
            grad_w,
            grad_b,
            partials,
            scratch,
            ..
        } = self;
        let (grad_w, grad_b) = (grad_w.as_mut_slice(), grad_b.as_mut_slice());
        let add = |sums_w: &mut [T], grad_b: &mut [T]| {
            sums_w.fill(T::ZERO);
            grad_b.fill(T::ZERO);
            for share in partials.as_slice()[start..].chunks(stride).take(tasks) {
                let (share_w, share_b) = share[..weights_len + filters].split_at(weights_len);
                for (sum, &value) in sums_w.iter_mut().zip(share_w) {
                    *sum += value;
                }
                for (sum, &value) in grad_b.iter_mut().zip(share_b) {
                    *sum += value;
                }
            }
        };
        // Laid out as `W` already, the sums go straight to `grad_w`; else
        // to `scratch` (free by now), then to `grad_w` transposed.
        if let ShareLayout::Filters = layout {
            return add(grad_w, grad_b);
        }
        let sums_w = &mut scratch.as_mut_slice()[..weights_len];
        add(sums_w, grad_b);
        if let ShareLayout::Transposed = layout {
            return transpose((sums_w, filters), (window_len, filters), (grad_w, window_len));
        }
        for (grad_f, sums_f) in grad_w.chunks_exact_mut(window_len).zip(sums_w.chunks_exact(window_len)) {
            // `[FH FW, C]` to `[C, FH FW]`.
            transpose((sums_f, channels), (taps, channels), (grad_f, taps));
        }
    }

    /// `dL/dx_n = col2im(W^T G_n)` for every image on the `im2col` route,
    /// `grad_output` holding `G` (`[N, FN, OH, OW]`).
    fn grad_input_im2col(
        &mut self,
        g: &ConvGeometry,
        input: &Tensor<T>,
        grad_output: &[T],
        grad_input: &mut Tensor<T>,
    ) {
        let (filters, windows, window_len, col_len) = (self.filters(), g.windows(), g.window_len(), g.col_len());
        let runs = Runs::new(input.rows());
        let scratch_len = IMAGES_PER_TASK * col_len;
        grow(&mut self.scratch, runs.slots * scratch_len);
        grad_input.resize(input.shape());
        let w = filter_matrix(&self.w);
        for_each_image_in_runs(
            runs,
            (grad_output, filters * windows),
            (grad_input.as_mut_slice(), (input.as_slice(), false), g.image_len()),
            (self.scratch.as_mut_slice(), scratch_len),
            |grad_y, grad_x, scratch| {
                let grad_col = &mut scratch[..col_len];
                gemm(
                    T::ONE,
                    w.t(),
                    MatRef::row_major(grad_y, filters, windows),
                    T::ZERO,
                    MatMut::row_major(grad_col, window_len, windows),
                )
                .expect("buffers sized from the geometry");
                col2im_image(grad_col, g, grad_x);
            },
        );
    }

    /// The direct sums' shape for this batch, where they take on a ReLU and
    /// a 2x2 pool after the layer: off the shifted route (one channel, or a
    /// pad as wide as the filter), stride 1, an output of 2x2 or more.
    fn direct_shape(&self, input: &Tensor<T>) -> Option<DirectShape> {
        if self.shifted_layout(input).is_some() {
            return None;
        }
        let shape = DirectShape {
            geometry: self.batch_geometry(input),
            filters: self.filters(),
        };
        shape.fits().then_some(shape)
    }

    /// A task's scratch on the direct route: the image padded (where there
    /// is a pad), then `rest` values.
    fn direct_scratch_len(shape: &DirectShape, rest: usize) -> usize {
        let padding = if shape.geometry.pad > 0 { shape.padded_len() } else { 0 };
        padding + rest
    }

    /// Image `x` as the direct sums read it: itself without a pad, else
    /// padded into the start of `scratch`; and the rest of `scratch`.
    fn direct_padded<'a>(shape: &DirectShape, x: &'a [T], scratch: &'a mut [T]) -> (&'a [T], &'a mut [T]) {
        let g = &shape.geometry;
        if g.pad == 0 {
            return (x, scratch);
        }
        let (padded, rest) = scratch.split_at_mut(shape.padded_len());
        pad_planes(x, (g.height, g.width), (g.pad, g.pad), shape.padded(), padded, false);
        (padded, rest)
    }

    /// The layer, a ReLU and a 2x2 pool of stride 2 over images `x` into
    /// `pooled`, by the direct sums, each image's winners into `codes`.
    fn forward_direct_pooled(
        (filters, shape): (&DirectFilters<T>, &DirectShape),
        x: &[T],
        (pooled, codes): (&mut [T], &mut [u8]),
        scratch: &mut [T],
    ) {
        let g = &shape.geometry;
        let (out_len, codes_len) = (shape.filters * shape.positions(true), shape.codes_len());
        let images = x.chunks_exact(g.image_len()).zip(pooled.chunks_exact_mut(out_len));
        for ((x, y), codes) in images.zip(codes.chunks_exact_mut(codes_len)) {
            let (padded, rest) = Self::direct_padded(shape, x, scratch);
            direct::forward(filters, padded, DirectOutput::Pooled { y, codes }, rest);
        }
    }

    /// Backward after [`Layer::forward_train_relu_pool`]: `dL/dW` and
    /// `dL/db` a task at a time over the pool's winners (a task's images'
    /// windows laid out by [`direct::window_columns`], then
    /// [`direct::pooled_filter_gradient`]), the shares added in task order;
    /// and, asked for, the input gradient by the `im2col` route's products
    /// over `G` written out (each pooled gradient at its winner, through
    /// the ReLU).
    fn backward_direct_pooled(
        &mut self,
        shape: DirectShape,
        input: &Tensor<T>,
        (pooled, grad_pooled): (&Tensor<T>, &Tensor<T>),
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let g = shape.geometry;
        self.check_pooled_backward((input, false), (pooled, grad_pooled), &g);
        let (filters, weights_len) = (self.filters(), self.w.numel());
        let (out_len, codes_len) = (filters * shape.positions(true), shape.codes_len());
        let runs = Runs::new(input.rows());
        let share_len = weights_len + filters;
        let scratch_len = Self::direct_scratch_len(&shape, shape.col_t_len());
        grow(&mut self.partials, runs.tasks * share_len);
        grow(&mut self.scratch, runs.slots * scratch_len);
        let image_len = g.image_len();
        let codes = &self.pool_codes[..];
        grad_pooled
            .as_slice()
            .par_chunks(runs.chunk(out_len))
            .zip(pooled.as_slice().par_chunks(runs.chunk(out_len)))
            .zip(codes.par_chunks(runs.chunk(codes_len)))
            .zip(input.as_slice().par_chunks(runs.chunk(image_len)))
            .zip(self.partials.as_mut_slice().par_chunks_mut(runs.per_run * share_len))
            .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
            .for_each(|(((((grads, values), codes), x), shares), scratch)| {
                let tasks = grads
                    .chunks(IMAGES_PER_TASK * out_len)
                    .zip(values.chunks(IMAGES_PER_TASK * out_len))
                    .zip(codes.chunks(IMAGES_PER_TASK * codes_len))
                    .zip(x.chunks(IMAGES_PER_TASK * image_len));
                for ((((grads, values), codes), x), share) in tasks.zip(shares.chunks_mut(share_len)) {
                    share.fill(T::ZERO);
                    let (grad_w, grad_b) = share.split_at_mut(weights_len);
                    let images = grads
                        .chunks_exact(out_len)
                        .zip(values.chunks_exact(out_len))
                        .zip(codes.chunks_exact(codes_len))
                        .zip(x.chunks_exact(image_len));
                    for (((grads, values), codes), x) in images {
                        let (padded, col_t) = Self::direct_padded(&shape, x, scratch);
                        let col_t = &mut col_t[..shape.col_t_len()];
                        direct::window_columns(&shape, padded, col_t);
                        direct::pooled_filter_gradient(&shape, col_t, (values, grads), codes, (grad_w, grad_b));
                    }
                }
            });
        self.add_shares(ShareLayout::Filters, (0, share_len, runs.tasks));
        if let Some(grad_input) = grad_input {
            let mut grad_output = std::mem::replace(&mut self.pooled_grad, Tensor::zeros(&[0]));
            self.scatter_pooled_grad((&g, shape.filter_lanes()), (pooled, grad_pooled), &mut grad_output);
            self.grad_input_im2col(&g, input, grad_output.as_slice(), grad_input);
            self.pooled_grad = grad_output;
        }
    }

    /// `G = dL/dy` behind the ReLU and pool taken on, written out: each
    /// pooled value's gradient at its winner, through the ReLU's gradient
    /// (the pool's backward, then the ReLU's), zeros elsewhere.
    fn scatter_pooled_grad(
        &self,
        (g, filter_lanes): (&ConvGeometry, usize),
        (pooled, grad_pooled): (&Tensor<T>, &Tensor<T>),
        grad_output: &mut Tensor<T>,
    ) {
        // The winners' codes, `[OH/2 OW/2, filter_lanes]` an image.
        let (filters, (ph, pw)) = (self.filters(), (g.out_h() / 2, g.out_w() / 2));
        let (out_len, codes_len) = (filters * ph * pw, ph * pw * filter_lanes);
        let (windows, out_w) = (g.windows(), g.out_w());
        grad_output.resize(&[pooled.rows(), filters, g.out_h(), out_w]);
        grad_output
            .as_mut_slice()
            .par_chunks_mut(filters * windows)
            .zip(grad_pooled.as_slice().par_chunks(out_len))
            .zip(pooled.as_slice().par_chunks(out_len))
            .zip(self.pool_codes.par_chunks(codes_len))
            .for_each(|(((grad_y, grads), values), codes)| {
                grad_y.fill(T::ZERO);
                let planes = grad_y.chunks_exact_mut(windows);
                let pooled_planes = grads.chunks_exact(ph * pw).zip(values.chunks_exact(ph * pw));
                for (f, (plane, (grads, values))) in planes.zip(pooled_planes).enumerate() {
                    let positions = (0..ph).flat_map(|py| (0..pw).map(move |px| (py, px)));
                    for (p, ((py, px), (&grad, &value))) in positions.zip(grads.iter().zip(values)).enumerate() {
                        let code = usize::from(codes[p * filter_lanes + f] & 3);
                        let pixel = (2 * py + code / 2) * out_w + 2 * px + code % 2;
                        // The ReLU's gradient at the winner's output `y`,
                        // read at the pooled value `relu(y)`: both are
                        // above 0 (or NaN) together.
                        plane[pixel] = relu_grad(value, grad);
                    }
                }
            });
    }

    /// A backward behind a ReLU and a pool taken on, against its forward
    /// pass: that pass on a batch of `input`'s shape (through the ReLU
    /// before the layer or not, as `relu_first`), and the pool's output and
    /// gradient of its shape.
    fn check_pooled_backward(
        &self,
        (input, relu_first): (&Tensor<T>, bool),
        (pooled, grad_pooled): (&Tensor<T>, &Tensor<T>),
        g: &ConvGeometry,
    ) {
        assert_eq!(
            self.trained,
            Trained::pooled(input, relu_first),
            "Convolution backward without forward_train_relu_pool on this batch"
        );
        let pooled_shape = [input.rows(), self.filters(), g.out_h() / 2, g.out_w() / 2];
        assert_eq!(
            pooled.shape(),
            pooled_shape,
            "Convolution backward: the pool's output does not fit"
        );
        assert_eq!(
            grad_pooled.shape(),
            pooled_shape,
            "Convolution backward: the pool's gradient does not fit its output"
        );
    }

    /// The shifted route's layout and Winograd's shape for this batch,
    /// where Winograd serves the forward pass (its output is even: a 2x2
    /// pool after it drops nothing).
    fn winograd_layout(&self, input: &Tensor<T>) -> Option<(ShiftedLayout, WinogradShape)> {
        let layout = self.shifted_layout(input)?;
        Some((layout, layout.winograd?))
    }

    /// A Winograd task's forward through a ReLU and a 2x2 pool taken on:
    /// per image, padded channels last (through the ReLU before the layer
    /// with `relu_first`), then [`winograd::forward_pooled`]. `scratch`
    /// holds an image, the image padded channels last and
    /// [`WinogradShape::pooled_scratch_len`] values.
    fn forward_winograd_pooled(
        (layout, shape, filters, b): (&ShiftedLayout, &WinogradShape, &WinogradFilters<T>, &[T]),
        x: &[T],
        (pooled, codes): (&mut [T], &mut [u8]),
        scratch: &mut [T],
        relu_first: bool,
    ) {
        let image_len = layout.g.image_len();
        let (staging, rest) = scratch.split_at_mut(image_len);
        let (padded, work) = rest.split_at_mut(shape.padded_len());
        let pooled_len = shape.pooled_len();
        let images = x.chunks_exact(image_len).zip(pooled.chunks_exact_mut(pooled_len));
        for ((image, y), codes) in images.zip(codes.chunks_exact_mut(pooled_len)) {
            layout.pad_channels_last(image, staging, padded, relu_first);
            winograd::forward_pooled(filters, shape, (padded, Some(b)), (y, codes), work);
        }
    }

    /// Backward after [`Layer::forward_train_relu_pool`] by Winograd: `G`
    /// written out from the pool's gradient and the winners, then the
    /// shifted route's backward over it, as after the three layers (with
    /// the ReLU before the layer, `relu_first`).
    fn backward_winograd_pooled(
        &mut self,
        layout: ShiftedLayout,
        (input, relu_first): (&Tensor<T>, bool),
        (pooled, grad_pooled): (&Tensor<T>, &Tensor<T>),
        grad_input: Option<&mut Tensor<T>>,
    ) {
        let g = layout.g;
        self.check_pooled_backward((input, relu_first), (pooled, grad_pooled), &g);
        let pooled_record = self.trained;
        let mut grad_output = std::mem::replace(&mut self.pooled_grad, Tensor::zeros(&[0]));
        self.scatter_pooled_grad((&g, self.filters()), (pooled, grad_pooled), &mut grad_output);
        // The shifted backward checks for its own forward pass's record:
        // the one this pass would have left, but for the pool. (A panic in
        // it leaves that record; the layer is then not used again.)
        self.trained = Trained::of(input, relu_first);
        self.backward_shifted(layout, input, &grad_output, grad_input, relu_first);
        self.trained = pooled_record;
        self.pooled_grad = grad_output;
    }

    /// [`Layer::forward`] on the shifted route; with `relu_first`, `input`
    /// is a ReLU's input, padded through the ReLU.
    fn forward_shifted(&self, layout: ShiftedLayout, input: &Tensor<T>, output: &mut Tensor<T>, relu_first: bool) {
        let g = &layout.g;
        let out_len = self.filters() * g.windows();
        // A task's padded images and their wide output for each piece of
        // the batch rayon splits off (a few a thread), allocated per call.
        let mut panels = ShiftedPanels::new();
        let mut offsets = Vec::new();
        let mut winograd = WinogradFilters::new();
        layout.pack_forward(&self.w, (&mut panels, &mut offsets), &mut winograd);
        let weights = (&panels, &offsets[..], &winograd, self.b.as_slice());
        input
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * g.image_len())
            .zip(output.as_mut_slice().par_chunks_mut(IMAGES_PER_TASK * out_len))
            .for_each_init(
                || vec![T::ZERO; layout.forward_scratch_len()],
                |scratch, (x, y)| layout.forward_task(weights, x, y, scratch, relu_first),
            );
    }

    /// [`Layer::forward_train`] on the shifted route: each task's images
    /// padded side by side into its run's scratch, their product read in
    /// place there; or by Winograd, each image channels last there
    /// (`ShiftedLayout::forward_task`).
    /// With `relu_first`, `input` is a ReLU's input, and each image is
    /// padded through the ReLU ([`Layer::forward_train_after_relu`]).
    ///
    /// The padded images are not kept: backward pads them again from
    /// `input`. Kept, they were written to memory here
    /// (DeepConvNet's 15 MB a step) and read back from it there, where
    /// `input` (smaller, and read there anyway for a ReLU's gradient) comes
    /// back at the same cost.
    fn forward_train_shifted(
        &mut self,
        layout: ShiftedLayout,
        input: &Tensor<T>,
        output: &mut Tensor<T>,
        relu_first: bool,
    ) {
        let g = &layout.g;
        let (filters, rows) = (self.filters(), input.rows());
        let (out_len, scratch_len) = (filters * g.windows(), layout.run_scratch_len());
        let runs = Runs::new(rows);
        grow(&mut self.scratch, runs.slots * scratch_len);
        layout.pack_forward(&self.w, (&mut self.panels, &mut self.group_offsets), &mut self.winograd);
        // The dense backward's products read one image padded at a time.
        layout.fill_offsets(&mut self.offsets);
        let weights = (&self.panels, &self.group_offsets[..], &self.winograd, self.b.as_slice());
        input
            .as_slice()
            .par_chunks(runs.chunk(g.image_len()))
            .zip(output.as_mut_slice().par_chunks_mut(runs.chunk(out_len)))
            .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
            .for_each(|((x, y), scratch)| {
                let groups = x.chunks(IMAGES_PER_TASK * g.image_len());
                for (x, y) in groups.zip(y.chunks_mut(IMAGES_PER_TASK * out_len)) {
                    layout.forward_task(weights, x, y, scratch, relu_first);
                }
            });
        self.trained = Trained::of(input, relu_first);
        self.reserve_shifted_backward(layout, runs);
    }

    /// Room for either backward route of the shifted route: the choice
    /// follows `G`'s share of nonzero values, and a switch between steps
    /// must not allocate. (The turned filters are packed again by each
    /// dense backward; here only their buffers are sized, once.)
    fn reserve_shifted_backward(&mut self, layout: ShiftedLayout, runs: Runs) {
        let g = &layout.g;
        let filters = self.filters();
        let scratch_len = layout.run_scratch_len();
        let taps = g.filter_h * g.filter_w;
        if self.turned.rows() != g.channels || self.turned.steps() != filters * taps {
            layout.pack_turned(&self.w, &mut self.turned);
            layout.fill_turned_offsets(&mut self.turned_offsets);
        }
        if let Some(shape) = layout.winograd_grad {
            self.turned_winograd.reserve(&shape);
        }
        let tasks = runs.tasks;
        let (_, nonzero_partials, nonzero_scratch) = layout.nonzero_buffers::<T>(tasks);
        let weights_len = self.w.numel();
        grow(
            &mut self.partials,
            nonzero_partials.max(tasks * (weights_len + filters)),
        );
        grow(&mut self.scratch, runs.slots * nonzero_scratch.max(scratch_len));
        grow(&mut self.filters_last, weights_len + ALIGN_SLACK);
    }

    /// [`Layer::backward`] on the shifted route: over `G`'s nonzero values
    /// where they are few enough ([`sparse_backward::pays_at`]), else by the
    /// dense products; the input gradient by Winograd where it serves
    /// (`ShiftedLayout::grad_input_by_winograd`), after the filters'.
    ///
    /// With `relu_first`, `input` is a ReLU's input and the input gradient
    /// goes on through the ReLU, image by image while it is in cache
    /// ([`Layer::backward_after_relu`]).
    fn backward_shifted(
        &mut self,
        layout: ShiftedLayout,
        input: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
        relu_first: bool,
    ) {
        let share = sparse_backward::nonzero_share(grad_output.as_slice());
        // The input gradient by Winograd where it serves, after `dW`.
        let (route_grad_input, winograd_grad_input) = match (layout.grad_input_by_winograd(share), grad_input) {
            (Some(shape), Some(grad_input)) => (None, Some((shape, grad_input))),
            (_, grad_input) => (grad_input, None),
        };
        // `pays_at` is false for an empty batch, which has no task to sum in.
        if sparse_backward::pays_at(share, layout.g.channels) {
            self.backward_nonzeros(layout, input, grad_output, route_grad_input, relu_first);
        } else {
            self.backward_dense(layout, input, grad_output, route_grad_input, relu_first);
        }
        if let Some((shape, grad_input)) = winograd_grad_input {
            self.grad_input_winograd(layout, shape, (input, grad_output), grad_input, relu_first);
        }
    }

    /// The input gradient as a Winograd forward pass
    /// ([`tensor::winograd`]): per image, `G` padded by `FH - 1 - P` and laid out
    /// channels last, the turned filters' 3x3 convolution over it (`FN`
    /// channels in, `C` out), then through the ReLU's gradient with
    /// `relu_first`.
    fn grad_input_winograd(
        &mut self,
        layout: ShiftedLayout,
        shape: WinogradShape,
        (input, grad_output): (&Tensor<T>, &Tensor<T>),
        grad_input: &mut Tensor<T>,
        relu_first: bool,
    ) {
        let g = layout.g;
        let (filters, channels) = (self.filters(), g.channels);
        let out_len = filters * g.windows();
        let runs = Runs::new(input.rows());
        let scratch_len = layout.run_scratch_len();
        grow(&mut self.scratch, runs.slots * scratch_len);
        grad_input.resize(input.shape());
        // Filter `c` over channel `f` of the input gradient's convolution is
        // `W[f, c]` turned half a circle: its 9 values backwards.
        let w = self.w.as_slice();
        self.turned_winograd.pack_from(&shape, |c, f| {
            std::array::from_fn(|k| w[(f * channels + c) * 9 + 8 - k])
        });
        let turned = &self.turned_winograd;
        // `G` padded by `FH - 1 - P` (`ShiftedLayout::grad_padded`).
        let border = g.filter_h - 1 - g.pad;
        for_each_image_in_runs(
            runs,
            (grad_output.as_slice(), out_len),
            (grad_input.as_mut_slice(), (input.as_slice(), relu_first), g.image_len()),
            (self.scratch.as_mut_slice(), scratch_len),
            |grad_y, grad_x, scratch| {
                let (staging, rest) = scratch.split_at_mut(out_len);
                let (padded, work) = rest.split_at_mut(shape.padded_len());
                let grad_shape = (filters, g.out_h(), g.out_w());
                pad_planes_last(grad_y, grad_shape, border, shape.padded(), staging, padded, false);
                winograd::forward(turned, &shape, padded, None, grad_x, work);
            },
        );
    }

    /// [`Self::backward_shifted`] by the dense products: per task, its
    /// images' `G` laid out wide and `dW^T = sum_n col_n G_n^T` read from
    /// the padded images; then, per image, the input gradient as the turned
    /// filters' product over the padded `G`.
    fn backward_dense(
        &mut self,
        layout: ShiftedLayout,
        input: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
        relu_first: bool,
    ) {
        let g = &layout.g;
        let (filters, windows) = (self.filters(), g.windows());
        let (out_len, weights_len) = (filters * windows, filters * g.window_len());
        let (padded_len, scratch_len) = (layout.padded_len(), layout.run_scratch_len());
        self.check_backward(input, grad_output, g, relu_first);
        let runs = Runs::new(input.rows());
        let tasks = runs.tasks;
        let share_len = weights_len + filters;
        grow(&mut self.partials, tasks * share_len);
        grow(&mut self.scratch, runs.slots * scratch_len);
        let n = layout.wide_windows();
        let wide_len = filters * n;
        let offsets = &self.offsets[..];
        // One task: its images' share of `dW^T` and `db`.
        let task = |grad_y: &[T], x: &[T], partial: &mut [T], scratch: &mut [T]| {
            let images = grad_y.len() / out_len;
            // The task's images padded again, as the forward pass padded them.
            let (padded, rest) = scratch.split_at_mut(IMAGES_PER_TASK * padded_len);
            for (x, padded) in x.chunks_exact(g.image_len()).zip(padded.chunks_exact_mut(padded_len)) {
                layout.pad(x, padded, relu_first);
            }
            let (wide_g, rest) = rest.split_at_mut(IMAGES_PER_TASK * wide_len);
            let (grad_w, grad_b) = partial.split_at_mut(weights_len);
            grad_b.fill(T::ZERO);
            for (grad_y, wide) in grad_y.chunks_exact(out_len).zip(wide_g.chunks_exact_mut(wide_len)) {
                layout.widen_grad(grad_y, wide);
                for (sum, plane) in grad_b.iter_mut().zip(grad_y.chunks_exact(windows)) {
                    *sum += sum_of(plane);
                }
            }
            grad_w.fill(T::ZERO);
            shifted_gradient(
                (padded, padded_len),
                (wide_g, wide_len),
                images,
                offsets,
                (filters, n),
                grad_w,
                rest,
            );
        };
        for_each_task_in_runs(
            runs,
            (grad_output.as_slice(), out_len),
            (input.as_slice(), g.image_len()),
            (self.partials.as_mut_slice(), share_len),
            (self.scratch.as_mut_slice(), scratch_len),
            task,
        );
        self.add_shares(ShareLayout::Transposed, (0, share_len, tasks));
        let Some(grad_input) = grad_input else {
            return;
        };
        grad_input.resize(input.shape());
        layout.pack_turned(&self.w, &mut self.turned);
        layout.fill_turned_offsets(&mut self.turned_offsets);
        let turned = (&self.turned, &self.turned_offsets[..]);
        let (grad_padded_len, grad_wide_len) = (layout.grad_padded_len(), g.channels * layout.grad_wide_windows());
        for_each_image_in_runs(
            runs,
            (grad_output.as_slice(), out_len),
            (grad_input.as_mut_slice(), (input.as_slice(), relu_first), g.image_len()),
            (self.scratch.as_mut_slice(), scratch_len),
            |grad_y, grad_x, scratch| {
                let (grad_padded, rest) = scratch.split_at_mut(grad_padded_len);
                layout.grad_input_image(turned, grad_y, (grad_padded, &mut rest[..grad_wide_len]), grad_x);
            },
        );
    }

    /// [`Self::backward_shifted`] over `G`'s nonzero values
    /// ([`tensor::sparse_backward`]): per task, each image's padded copy
    /// laid out channels last, `dW` (channels last, in the task's share) and
    /// the padded input gradient (channels last) summed over the image's
    /// nonzero values of `G`, and the input gradient's middle taken back to
    /// `[C, H, W]`.
    fn backward_nonzeros(
        &mut self,
        layout: ShiftedLayout,
        input: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
        relu_first: bool,
    ) {
        let g = layout.g;
        let (filters, channels, windows) = (self.filters(), g.channels, g.windows());
        let window = layout.conv_shape();
        let (out_len, weights_len) = (filters * windows, filters * window.filter_len());
        self.check_backward(input, grad_output, &g, relu_first);
        let runs = Runs::new(input.rows());
        let tasks = runs.tasks;
        let (stride, partials_len, scratch_len) = layout.nonzero_buffers::<T>(tasks);
        let share_len = weights_len + filters;
        grow(&mut self.partials, partials_len);
        let last_len = window.padded_len();
        grow(&mut self.scratch, runs.slots * scratch_len);
        // `[FN, FH, FW, C]`, from a cache line's start.
        grow(&mut self.filters_last, weights_len + ALIGN_SLACK);
        let taps = g.filter_h * g.filter_w;
        let (w_last, _) = split_aligned(self.filters_last.as_mut_slice(), weights_len);
        let w_rows = self.w.as_slice().chunks_exact(window.filter_len());
        for (w_last, w) in w_last.chunks_exact_mut(window.filter_len()).zip(w_rows) {
            to_channels_last(w, (channels, taps), w_last);
        }
        let w_last = &*w_last;
        // One task: its images' share of `dW` and `db`, and with `grad_x`,
        // their input gradients.
        let task = |grad_y: &[T], partial: &mut [T], scratch: &mut [T], x: &[T], mut grad_x: Option<&mut [T]>| {
            let (grad_w, grad_b) = partial[..share_len].split_at_mut(weights_len);
            grad_w.fill(T::ZERO);
            grad_b.fill(T::ZERO);
            let (x_last, scratch) = split_aligned(scratch, last_len);
            let (grad_x_last, scratch) = split_aligned(scratch, last_len);
            let (grad_y_last, _) = split_aligned(scratch, window.grad_len());
            for (n, grad_y) in grad_y.chunks_exact(out_len).enumerate() {
                for (sum, plane) in grad_b.iter_mut().zip(grad_y.chunks_exact(windows)) {
                    *sum += sum_of(plane);
                }
                let image = n * g.image_len()..(n + 1) * g.image_len();
                // `grad_x_last` is free until the input gradient starts.
                layout.pad_channels_last(&x[image.clone()], grad_x_last, x_last, relu_first);
                let Some(grad_x) = grad_x.as_deref_mut() else {
                    sparse_backward::backward_image(&window, grad_y, x_last, w_last, grad_w, None);
                    continue;
                };
                grad_x_last.fill(T::ZERO);
                let input = InputGradient {
                    grad_x: &mut *grad_x_last,
                    grad_y_last: &mut *grad_y_last,
                };
                sparse_backward::backward_image(&window, grad_y, x_last, w_last, grad_w, Some(input));
                // `x_last` is free now.
                let relu_input = relu_first.then(|| &x[image.clone()]);
                layout.unpad_channels_last(grad_x_last, x_last, &mut grad_x[image], relu_input);
            }
        };
        let (shares, _) = split_aligned(self.partials.as_mut_slice(), tasks * stride);
        let (task_y, task_x) = (IMAGES_PER_TASK * out_len, IMAGES_PER_TASK * g.image_len());
        let per_run = grad_output
            .as_slice()
            .par_chunks(runs.chunk(out_len))
            .zip(shares.par_chunks_mut(runs.per_run * stride))
            .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
            .zip(input.as_slice().par_chunks(runs.chunk(g.image_len())));
        match grad_input {
            Some(grad_input) => {
                grad_input.resize(input.shape());
                per_run
                    .zip(grad_input.as_mut_slice().par_chunks_mut(runs.chunk(g.image_len())))
                    .for_each(|((((grad_y, shares), scratch), x), grad_x)| {
                        let tasks = grad_y
                            .chunks(task_y)
                            .zip(shares.chunks_mut(stride))
                            .zip(x.chunks(task_x))
                            .zip(grad_x.chunks_mut(task_x));
                        for (((grad_y, partial), x), grad_x) in tasks {
                            task(grad_y, partial, scratch, x, Some(grad_x));
                        }
                    });
            }
            None => per_run.for_each(|(((grad_y, shares), scratch), x)| {
                let tasks = grad_y
                    .chunks(task_y)
                    .zip(shares.chunks_mut(stride))
                    .zip(x.chunks(task_x));
                for ((grad_y, partial), x) in tasks {
                    task(grad_y, partial, scratch, x, None);
                }
            }),
        }
        let start = aligned_start(self.partials.as_slice());
        self.add_shares(ShareLayout::ChannelsLast, (start, stride, tasks));
    }
}

/// Values a buffer may need to skip to start on a cache line (64 bytes):
/// at most 15 of f32 or 7 of f64, so 64 covers any element type.
const ALIGN_SLACK: usize = 64;

/// The first `len` values of `scratch` from its first cache line's start
/// (a vector load or store across two lines costs two), and the rest.
fn split_aligned<T>(scratch: &mut [T], len: usize) -> (&mut [T], &mut [T]) {
    let (_, rest) = scratch.split_at_mut(aligned_start(scratch));
    rest.split_at_mut(len)
}

/// Where `buffer`'s first cache line (64 bytes) starts, in values.
fn aligned_start<T>(buffer: &[T]) -> usize {
    buffer.as_ptr().align_offset(64).min(ALIGN_SLACK)
}

/// At least `len` values in `buffer` (a scratch or shares buffer of the
/// shifted route, used by the length each pass needs): grown, never shrunk.
/// Resized to each pass's length, a buffer that two passes (forward and
/// backward, or the two backward routes) size differently would be filled
/// with zeros up to the larger length at every step.
fn grow<T: Element>(buffer: &mut Tensor<T>, len: usize) {
    if buffer.numel() < len {
        buffer.resize(&[len]);
    }
}

/// The batch's tasks cut into runs of whole tasks over rayon, one run per
/// scratch slot: a run's tasks reuse its slot while it is in cache. With a
/// slot per task (20 for a batch of 100, up to a few hundred KB each),
/// every task started on memory that the rest of the step had left cold.
/// Which run a task is in changes nothing it computes: the shares of
/// `dL/dW` are still per task, added in task order.
#[derive(Debug, Clone, Copy)]
struct Runs {
    /// The batch's tasks (none for no images).
    tasks: usize,
    /// Tasks in a run (fewer in the last).
    per_run: usize,
    /// Runs, and so scratch slots (at least one).
    slots: usize,
}

impl Runs {
    /// Two runs a thread of the current pool (where another process slows
    /// one thread, the other has a run to take from it), at most one a task.
    fn new(images: usize) -> Self {
        let tasks = images.div_ceil(IMAGES_PER_TASK);
        let runs = (2 * rayon::current_num_threads()).clamp(1, tasks.max(1));
        let per_run = tasks.max(1).div_ceil(runs);
        Runs {
            tasks,
            per_run,
            slots: tasks.max(1).div_ceil(per_run),
        }
    }

    /// A run's values of a buffer of `len` values an image.
    fn chunk(&self, len: usize) -> usize {
        self.per_run * IMAGES_PER_TASK * len
    }
}

/// `task(grad_y, x, share, scratch)` for every task of the batch, in
/// `runs` over rayon: `grad_y` the task's `out_len` values of `dL/dy` an
/// image, `x` its input (`image_len` values an image), `share` its
/// `share_len` values of `shares`, `scratch` its run's `scratch_len` values
/// of `scratch`, reused task to task.
fn for_each_task_in_runs<T: Element>(
    runs: Runs,
    (grad_output, out_len): (&[T], usize),
    (input, image_len): (&[T], usize),
    (shares, share_len): (&mut [T], usize),
    (scratch, scratch_len): (&mut [T], usize),
    task: impl Fn(&[T], &[T], &mut [T], &mut [T]) + Sync,
) {
    grad_output
        .par_chunks(runs.chunk(out_len))
        .zip(input.par_chunks(runs.chunk(image_len)))
        .zip(shares.par_chunks_mut(runs.per_run * share_len))
        .zip(scratch.par_chunks_mut(scratch_len))
        .for_each(|(((grad_y, x), shares), scratch)| {
            let tasks = grad_y
                .chunks(IMAGES_PER_TASK * out_len)
                .zip(x.chunks(IMAGES_PER_TASK * image_len))
                .zip(shares.chunks_mut(share_len));
            for ((grad_y, x), share) in tasks {
                task(grad_y, x, share, &mut *scratch);
            }
        });
}

/// `image(grad_y, grad_x, scratch)` for every image of the batch, in
/// `runs` over rayon: `grad_y` an image's `out_len` values of `dL/dy`,
/// `grad_x` its `image_len` values of `dL/dx`, `scratch` its run's
/// `scratch_len` values of `scratch`, reused image to image. With
/// `relu_first`, `input` is a ReLU's input, and each image's `dL/dx` goes
/// on through the ReLU's gradient while it is in cache.
fn for_each_image_in_runs<T: Element>(
    runs: Runs,
    (grad_output, out_len): (&[T], usize),
    (grad_input, (input, relu_first), image_len): (&mut [T], (&[T], bool), usize),
    (scratch, scratch_len): (&mut [T], usize),
    image: impl Fn(&[T], &mut [T], &mut [T]) + Sync,
) {
    grad_output
        .par_chunks(runs.chunk(out_len))
        .zip(grad_input.par_chunks_mut(runs.chunk(image_len)))
        .zip(input.par_chunks(runs.chunk(image_len)))
        .zip(scratch.par_chunks_mut(scratch_len))
        .for_each(|(((grad_y, grad_x), x), scratch)| {
            let images = grad_y.chunks_exact(out_len).zip(grad_x.chunks_exact_mut(image_len));
            for ((grad_y, grad_x), x) in images.zip(x.chunks_exact(image_len)) {
                image(grad_y, grad_x, &mut *scratch);
                if relu_first {
                    through_relu_grad(grad_x, x);
                }
            }
        });
}

/// An image's input gradient on through the ReLU before the layer, whose
/// input was `x` (`relu.rs`'s backward): kept where `x > 0` (or NaN). A
/// select, not a conditional store: it vectorizes, where a branch on the
/// sign mispredicts half the time.
fn through_relu_grad<T: Element>(grad_x: &mut [T], x: &[T]) {
    for (grad, &x) in grad_x.iter_mut().zip(x) {
        *grad = relu_grad(x, *grad);
    }
}

/// The filters `[FN, C, FH, FW]` as the `[FN, K]` matrix of the GEMMs.
fn filter_matrix<T: Element>(w: &Tensor<T>) -> MatRef<'_, T> {
    let filters = w.shape()[0];
    MatRef::row_major(w.as_slice(), filters, w.numel() / filters)
}

/// One image: `col = im2col(x)`, then `y = W col + b` (`[FN, OH * OW]`).
fn forward_image<T: Element>((w, b): (&Tensor<T>, &Tensor<T>), g: &ConvGeometry, x: &[T], col: &mut [T], y: &mut [T]) {
    im2col_image(x, g, col);
    for (plane, &bias) in y.chunks_exact_mut(g.windows()).zip(b.as_slice()) {
        plane.fill(bias);
    }
    gemm(
        T::ONE,
        filter_matrix(w),
        MatRef::row_major(col, g.window_len(), g.windows()),
        T::ONE,
        MatMut::row_major(y, b.numel(), g.windows()),
    )
    .expect("buffers sized from the geometry");
}

/// The sum of `values`, kept in 8 interleaved partial sums: one running sum
/// is a chain of dependent adds (one per 4 cycles), which the compiler may
/// not reorder, and a bias gradient sums 57600 values a batch.
fn sum_of<T: Element>(values: &[T]) -> T {
    let (chunks, rest) = values.as_chunks::<8>();
    let mut lanes = [T::ZERO; 8];
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    rest.iter()
        .fold(((a + b) + (c + d)) + ((e + f) + (g + h)), |acc, &v| acc + v)
}

/// `dst = src` for an image's short rows (8 to 28 values in the book's
/// nets): whole 8-value blocks, the last one overlapping the one before,
/// inline. `copy_from_slice` calls `memmove` once per row, which costs more
/// than such a copy (a DeepConvNet step copies about 900 000 rows).
#[inline(always)]
fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    const BLOCK: usize = 8;
    let len = dst.len();
    assert_eq!(len, src.len(), "copy_row: rows of different lengths");
    if len < BLOCK {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
        return;
    }
    let mut start = 0;
    while start < len {
        let at = start.min(len - BLOCK);
        let block: [T; BLOCK] = src[at..at + BLOCK].try_into().expect("BLOCK values");
        dst[at..at + BLOCK].copy_from_slice(&block);
        start += BLOCK;
    }
}

/// Values read past a padded image's last window by a shifted product's
/// whole tiles (at most 32 columns), beyond the filter's width: with them
/// every tile reads in place (see [`tensor::shifted`]).
const SHIFTED_SLACK: usize = 32;

/// The largest share of nonzero values of `G` at which the input gradient
/// of a layer of [`sparse_backward::WIDE_CHANNELS`] channels or more goes
/// over them rather than by Winograd. DeepConvNet's fourth and sixth
/// layers (32 and 64 channels, behind a pool: 13-20% nonzero) took 2.45
/// and 2.00 ms a batch backward over the nonzero values, 2.58 and 2.47
/// with the input gradient by Winograd (two threads); its fifth (32
/// channels, about half nonzero) 2.68 against 2.06; the second and third
/// (16 channels) were faster by Winograd at any share.
const SPARSE_INPUT_GRADIENT_MAX_SHARE: f64 = 0.3;

/// `planes` (`[count, h, w]`) into the middle of planes of `hp x wp`
/// (`top` rows and `left` columns of zeros before each plane's values, as
/// many after) in `padded`, zero past them: the forward's padded image and
/// the input gradient's padded `G`. Every value of `padded` is written once
/// (not the whole buffer zeroed, then most of it copied over). With
/// `relu_first`, the values go in through the ReLU (`relu.rs`'s rule).
fn pad_planes<T: Element>(
    planes: &[T],
    (h, w): (usize, usize),
    (top, left): (usize, usize),
    (hp, wp): (usize, usize),
    padded: &mut [T],
    relu_first: bool,
) {
    let count = planes.len() / (h * w);
    let (body, slack) = padded.split_at_mut(count * hp * wp);
    slack.fill(T::ZERO);
    for (plane, out) in planes.chunks_exact(h * w).zip(body.chunks_exact_mut(hp * wp)) {
        let (above, rest) = out.split_at_mut(top * wp);
        let (middle, below) = rest.split_at_mut(h * wp);
        above.fill(T::ZERO);
        below.fill(T::ZERO);
        for (row, out_row) in plane.chunks_exact(w).zip(middle.chunks_exact_mut(wp)) {
            let (before, rest) = out_row.split_at_mut(left);
            let (values, after) = rest.split_at_mut(w);
            // The borders are a few values (`pad`, or `FW - 1 - pad` for
            // `G`): a loop, not a `memset` call each.
            for zero in before.iter_mut().chain(after) {
                *zero = T::ZERO;
            }
            if relu_first {
                for (value, &x) in values.iter_mut().zip(row) {
                    *value = relu(x);
                }
            } else {
                copy_row(values, row);
            }
        }
    }
}

/// `planes` (`[C, H, W]`) with `border` zeros around each, laid out
/// channels last: `[Hp, Wp, C]` in `padded` (its first `Hp Wp C` values),
/// through the ReLU with `relu_first`. `staging` (at least `C H W` values)
/// holds the planes channels last on the way: one transpose of whole
/// planes, in 8 x 8 blocks, and a copy of its rows (a transpose a row at a
/// time is mostly the edges past the last whole block, a value at a time,
/// in 14-wide images).
fn pad_planes_last<T: Element>(
    planes: &[T],
    (channels, h, w): (usize, usize, usize),
    border: usize,
    (hp, wp): (usize, usize),
    staging: &mut [T],
    padded: &mut [T],
    relu_first: bool,
) {
    let staging = &mut staging[..channels * h * w];
    to_channels_last(&planes[..channels * h * w], (channels, h * w), staging);
    let (left, run) = (border * channels, w * channels);
    for (y, out_row) in padded[..hp * wp * channels].chunks_exact_mut(wp * channels).enumerate() {
        let Some(row) = y.checked_sub(border).filter(|&row| row < h) else {
            out_row.fill(T::ZERO);
            continue;
        };
        let (before, rest) = out_row.split_at_mut(left);
        let (values, after) = rest.split_at_mut(run);
        before.fill(T::ZERO);
        after.fill(T::ZERO);
        let source = &staging[row * run..][..run];
        if relu_first {
            for (value, &x) in values.iter_mut().zip(source) {
                *value = relu(x);
            }
        } else {
            values.copy_from_slice(source);
        }
    }
}

/// The shifted route of a convolution of stride 1 (`tensor::shifted`): the
/// images padded once, the products read them in place, no `im2col`.
///
/// Forward, an image padded to `[C, Hp, Wp]` gives `y` laid out `Wp` wide,
/// `n = OH * Wp` windows (the last `Wp - OW` of each row wrap around and are
/// dropped): `y[f, p] = sum_k W[f, k] x[offset_k + p]`. (The forward pass
/// pads a group of images side by side, `Ws` wide, sharing their padding
/// columns, and drops fewer: see `group_width`.) The filters'
/// gradient reads the padded images: `dW^T[k, f] = sum_p x[offset_k +
/// p] G[f, p]`, with `G` laid out `Wp` wide and zero in the dropped columns.
/// The input gradient is a forward pass over `G` padded by `FH - 1 - P`
/// (`FW - 1 - P`) with the filters turned half a circle and their two first
/// axes swapped: `dx[c, i, j] = sum_{f,u,v} W[f, c, FH-1-u, FW-1-v]
/// Gpad[f, i + u, j + v]`, laid out `Wg` wide.
///
/// With 3x3 filters over whole vectors of channels and filters, the forward
/// pass and that input gradient go by Winograd instead (`winograd`,
/// `winograd_grad`): the same padded image, or padded `G`, channels last.
#[derive(Debug, Clone, Copy)]
struct ShiftedLayout {
    g: ConvGeometry,
    filters: usize,
    /// `Hp`, `Wp`: the padded image.
    padded: (usize, usize),
    /// `Hg`, `Wg`: the padded output gradient.
    grad_padded: (usize, usize),
    /// The Winograd forward's shape, where it serves: 3x3 filters, and
    /// channels, filters and outputs that fit its vectors and blocks.
    winograd: Option<WinogradShape>,
    /// The input gradient's, as a Winograd forward over the padded `G`
    /// with the turned filters: `FN` channels in, `C` out, `H x W`.
    winograd_grad: Option<WinogradShape>,
}

impl ShiftedLayout {
    /// The layout, where the shifted route serves: stride 1, padding
    /// smaller than the filter (so that `G`'s is not negative), and more
    /// than one channel. With one, `col` is `K` copies of a 3 KB image that
    /// stay in cache, and `im2col` is ahead or close behind, with less kept
    /// for backward (batch 100, 2 threads): DeepConvNet's first layer 0.97
    /// ms forward and backward by `im2col`, 1.17 shifted; SimpleConvNet's
    /// 0.78 + 1.18 ms by `im2col` (its weight gradient by `row_products`),
    /// 0.86 + 1.43 shifted.
    fn new(g: ConvGeometry, filters: usize) -> Option<Self> {
        let fits = g.stride == 1 && g.pad < g.filter_h && g.pad < g.filter_w && g.channels > 1;
        let winograd = WinogradShape {
            channels: g.channels,
            filters,
            out: (g.out_h(), g.out_w()),
        };
        let three_by_three = g.filter_h == 3 && g.filter_w == 3;
        let winograd_grad = WinogradShape {
            channels: filters,
            filters: g.channels,
            out: (g.height, g.width),
        };
        fits.then(|| ShiftedLayout {
            g,
            filters,
            padded: (g.height + 2 * g.pad, g.width + 2 * g.pad),
            grad_padded: (
                g.out_h() + 2 * (g.filter_h - 1 - g.pad),
                g.out_w() + 2 * (g.filter_w - 1 - g.pad),
            ),
            winograd: (three_by_three && winograd.fits()).then_some(winograd),
            winograd_grad: (three_by_three && winograd_grad.fits()).then_some(winograd_grad),
        })
    }

    /// The input gradient's Winograd shape, where it serves and beats the
    /// backward over `G`'s nonzero values: not where that has
    /// [`sparse_backward::WIDE_CHANNELS`] channels or more and a share of
    /// nonzero values `share` up to [`SPARSE_INPUT_GRADIENT_MAX_SHARE`].
    fn grad_input_by_winograd(&self, share: Option<f64>) -> Option<WinogradShape> {
        let sparse_wins = self.g.channels >= sparse_backward::WIDE_CHANNELS
            && share.is_some_and(|share| share <= SPARSE_INPUT_GRADIENT_MAX_SHARE);
        self.winograd_grad.filter(|_| !sparse_wins)
    }

    /// A task's forward scratch: the group's padded images and their wide
    /// output, or, by Winograd, one image channels last (and on its way
    /// there) and the transforms' work.
    fn forward_scratch_len(&self) -> usize {
        match self.winograd {
            Some(shape) => self.g.image_len() + shape.padded_len() + shape.scratch_len(),
            None => self.group_padded_len() + self.filters * self.group_wide_windows(),
        }
    }

    /// Packs what the forward pass needs of the filters: the Winograd
    /// forward's transformed filters, or the shifted product's panels and
    /// the group's offsets.
    fn pack_forward<T: Element>(
        &self,
        w: &Tensor<T>,
        (panels, offsets): (&mut ShiftedPanels<T>, &mut Vec<usize>),
        winograd: &mut WinogradFilters<T>,
    ) {
        match self.winograd {
            Some(shape) => winograd.pack(w.as_slice(), &shape),
            None => {
                self.pack_filters(w, panels);
                self.fill_group_offsets(offsets);
            }
        }
    }

    /// A task's forward: `y = W x + b` for its images (`x`, `[C, H, W]`
    /// each; `y`, `[FN, OH, OW]` each), by Winograd's F(2x2, 3x3) an image
    /// at a time where the layout has its shape, else by one shifted
    /// product over the images padded side by side. `scratch` holds
    /// [`ShiftedLayout::forward_scratch_len`] values.
    fn forward_task<T: Element>(
        &self,
        (panels, offsets, winograd_filters, b): (&ShiftedPanels<T>, &[usize], &WinogradFilters<T>, &[T]),
        x: &[T],
        y: &mut [T],
        scratch: &mut [T],
        relu_first: bool,
    ) {
        let g = &self.g;
        let Some(shape) = self.winograd else {
            let (padded, rest) = scratch.split_at_mut(self.group_padded_len());
            let wide = &mut rest[..self.filters * self.group_wide_windows()];
            self.pad_group(x, padded, relu_first);
            return self.forward_group((panels, offsets, b), padded, wide, y);
        };
        let (turned, rest) = scratch.split_at_mut(g.image_len());
        let (padded, work) = rest.split_at_mut(shape.padded_len());
        for (image, y) in x.chunks_exact(g.image_len()).zip(y.chunks_exact_mut(shape.out_len())) {
            self.pad_channels_last(image, turned, padded, relu_first);
            winograd::forward(winograd_filters, &shape, padded, Some(b), y, work);
        }
    }

    /// Values of a padded image, with the slack its last tiles read.
    fn padded_len(&self) -> usize {
        self.g.channels * self.padded.0 * self.padded.1 + self.g.filter_w + SHIFTED_SLACK
    }

    /// Windows of an image's products in the dense backward (its `G` laid
    /// out wide), `OH` rows `Wp` wide.
    fn wide_windows(&self) -> usize {
        self.g.out_h() * self.padded.1
    }

    /// Values of the padded output gradient, with slack.
    fn grad_padded_len(&self) -> usize {
        self.filters * self.grad_padded.0 * self.grad_padded.1 + self.g.filter_w + SHIFTED_SLACK
    }

    /// Windows of the input gradient's product, `H` rows `Wg` wide.
    fn grad_wide_windows(&self) -> usize {
        self.g.height * self.grad_padded.1
    }

    /// A run's scratch in training: a group's padded images and their
    /// wide output, or an image channels last and Winograd's work
    /// (forward); backward, its padded images, their wide `G`, `G`'s
    /// transpose, one padded `G` and one wide input gradient, or for the
    /// input gradient by Winograd, one `G` padded channels last and its work.
    fn run_scratch_len(&self) -> usize {
        let wide_g = self.filters * self.wide_windows();
        let forward = self.forward_scratch_len();
        // Backward's is the larger (it holds `IMAGES_PER_TASK` padded images
        // and wide `G`s, each `Wp >= Ws / IMAGES_PER_TASK` wide); the `max`
        // only keeps that from being assumed.
        let dense = forward.max(IMAGES_PER_TASK * (self.padded_len() + wide_g))
            + gradient_scratch_len(self.filters, self.wide_windows())
            + self.grad_padded_len()
            + self.g.channels * self.grad_wide_windows();
        dense.max(self.winograd_grad.map_or(0, |shape| {
            self.filters * self.g.windows() + shape.padded_len() + shape.scratch_len()
        }))
    }

    /// The convolution as [`tensor::sparse_backward`] sees it.
    fn conv_shape(&self) -> sparse_backward::ConvShape {
        sparse_backward::ConvShape {
            channels: self.g.channels,
            filters: self.filters,
            filter: (self.g.filter_h, self.g.filter_w),
            padded: self.padded,
        }
    }

    /// The backward over `G`'s nonzero values' buffers for `tasks` tasks:
    /// the stride of the tasks' shares in `partials` (each `dW` channels
    /// last then `db`, from a cache line's start, a whole number of lines
    /// apart), the length of `partials`, and a run's scratch (the image,
    /// its gradient and `G` channels last, each from a cache line's start;
    /// at least a share, for the shares' sum at the end).
    fn nonzero_buffers<T>(&self, tasks: usize) -> (usize, usize, usize) {
        let shape = self.conv_shape();
        let share_len = shape.filters * shape.filter_len() + shape.filters;
        let stride = share_len.next_multiple_of((64 / size_of::<T>()).max(1));
        let scratch_len = (2 * shape.padded_len() + shape.grad_len() + 3 * ALIGN_SLACK).max(share_len);
        (stride, tasks * stride + ALIGN_SLACK, scratch_len)
    }

    /// `Ws`, the width of a group's padded images (forward): the group's
    /// [`IMAGES_PER_TASK`] images side by side, each `W + P` columns (its
    /// values, then `P` zeros that are its right padding and the next
    /// one's left), after `P` zeros. Padded one at a time (`Wp = W + 2P`
    /// each), a product's windows over an 8-wide image with `P = 1` are 10
    /// a row for 8 outputs; side by side, 9.
    fn group_width(&self) -> usize {
        IMAGES_PER_TASK * (self.g.width + self.g.pad) + self.g.pad
    }

    /// Values of a group's padded images, `[C, Hp, Ws]`, with the slack
    /// its last tiles read.
    fn group_padded_len(&self) -> usize {
        self.g.channels * self.padded.0 * self.group_width() + self.g.filter_w + SHIFTED_SLACK
    }

    /// Windows of a group's forward product, `OH` rows `Ws` wide: image
    /// `k`'s output `(r, c)` is window `r Ws + k (W + P) + c`; the others
    /// straddle two images, or wrap, and are dropped.
    fn group_wide_windows(&self) -> usize {
        self.g.out_h() * self.group_width()
    }

    /// Per tap `(c, i, j)`, where its values start in a group's padded images.
    fn fill_group_offsets(&self, offsets: &mut Vec<usize>) {
        let (hp, ws) = (self.padded.0, self.group_width());
        offsets.clear();
        for c in 0..self.g.channels {
            for i in 0..self.g.filter_h {
                offsets.extend((0..self.g.filter_w).map(|j| (c * hp + i) * ws + j));
            }
        }
    }

    /// Up to [`IMAGES_PER_TASK`] images (`[C, H, W]` each) padded side by
    /// side into `padded` (`[C, Hp, Ws]`, zero past it and where an image
    /// is missing); with `relu_first`, through the ReLU. Every value is
    /// written once.
    fn pad_group<T: Element>(&self, images: &[T], padded: &mut [T], relu_first: bool) {
        let g = &self.g;
        let (hp, ws, width, pad) = (self.padded.0, self.group_width(), g.width, g.pad);
        let (image_len, plane_len) = (g.image_len(), g.height * g.width);
        let count = images.len() / image_len;
        let (body, slack) = padded.split_at_mut(g.channels * hp * ws);
        slack.fill(T::ZERO);
        for (c, plane) in body.chunks_exact_mut(hp * ws).enumerate() {
            for (r, row) in plane.chunks_exact_mut(ws).enumerate() {
                let Some(y) = r.checked_sub(pad).filter(|&y| y < g.height) else {
                    row.fill(T::ZERO);
                    continue;
                };
                let (left, slots) = row.split_at_mut(pad);
                for zero in left.iter_mut() {
                    *zero = T::ZERO;
                }
                for (k, slot) in slots.chunks_exact_mut(width + pad).enumerate() {
                    let (values, gap) = slot.split_at_mut(width);
                    for zero in gap.iter_mut() {
                        *zero = T::ZERO;
                    }
                    if k >= count {
                        values.fill(T::ZERO);
                        continue;
                    }
                    let source = &images[k * image_len + c * plane_len + y * width..][..width];
                    if relu_first {
                        for (value, &x) in values.iter_mut().zip(source) {
                            *value = relu(x);
                        }
                    } else {
                        copy_row(values, source);
                    }
                }
            }
        }
    }

    /// A group's forward: `y = W x + b` for each of its images (`y` holds
    /// their outputs, `[FN, OH, OW]` each), through their padded images
    /// side by side.
    fn forward_group<T: Element>(
        &self,
        (panels, offsets, b): (&ShiftedPanels<T>, &[usize], &[T]),
        padded: &[T],
        wide: &mut [T],
        y: &mut [T],
    ) {
        let n = self.group_wide_windows();
        shifted_product(panels, padded, offsets, n, wide, n);
        let (out_h, out_w, ws) = (self.g.out_h(), self.g.out_w(), self.group_width());
        let step = self.g.width + self.g.pad;
        let out_len = b.len() * out_h * out_w;
        for (k, image) in y.chunks_exact_mut(out_len).enumerate() {
            for ((plane, wide_plane), &bias) in image.chunks_exact_mut(out_h * out_w).zip(wide.chunks_exact(n)).zip(b) {
                for (row, wide_row) in plane.chunks_exact_mut(out_w).zip(wide_plane.chunks_exact(ws)) {
                    for (out, &sum) in row.iter_mut().zip(&wide_row[k * step..]) {
                        *out = sum + bias;
                    }
                }
            }
        }
    }

    /// Per tap `(c, i, j)`, where its values start in a padded image.
    fn fill_offsets(&self, offsets: &mut Vec<usize>) {
        let (hp, wp) = self.padded;
        offsets.clear();
        for c in 0..self.g.channels {
            for i in 0..self.g.filter_h {
                offsets.extend((0..self.g.filter_w).map(|j| (c * hp + i) * wp + j));
            }
        }
    }

    /// Per tap `(f, u, v)` of the turned filters, where its values start in
    /// the padded output gradient.
    fn fill_turned_offsets(&self, offsets: &mut Vec<usize>) {
        let (hg, wg) = self.grad_padded;
        offsets.clear();
        for f in 0..self.filters {
            for u in 0..self.g.filter_h {
                offsets.extend((0..self.g.filter_w).map(|v| (f * hg + u) * wg + v));
            }
        }
    }

    /// The filters `[FN, C, FH, FW]` packed as the `[FN, K]` matrix.
    fn pack_filters<T: Element>(&self, w: &Tensor<T>, panels: &mut ShiftedPanels<T>) {
        let (w, taps) = (w.as_slice(), self.g.window_len());
        panels.pack(self.filters, taps, |f, k| w[f * taps + k]);
    }

    /// The filters turned: `[C, FN * FH * FW]`, element `(c, (f, u, v))` =
    /// `W[f, c, FH-1-u, FW-1-v]`, packed.
    fn pack_turned<T: Element>(&self, w: &Tensor<T>, panels: &mut ShiftedPanels<T>) {
        let (fh, fw, channels) = (self.g.filter_h, self.g.filter_w, self.g.channels);
        let w = w.as_slice();
        panels.pack(channels, self.filters * fh * fw, |c, t| {
            let (f, u, v) = (t / (fh * fw), t / fw % fh, t % fw);
            w[((f * channels + c) * fh + (fh - 1 - u)) * fw + (fw - 1 - v)]
        });
    }

    /// `image` (`[C, H, W]`) into the middle of `padded`, zero around it.
    /// With `relu_first`, `relu(image)`.
    fn pad<T: Element>(&self, image: &[T], padded: &mut [T], relu_first: bool) {
        let g = &self.g;
        pad_planes(
            image,
            (g.height, g.width),
            (g.pad, g.pad),
            self.padded,
            padded,
            relu_first,
        );
    }

    /// One image's `G` (`[FN, OH, OW]`) laid out `Wp` wide, zero in the wrapped columns.
    fn widen_grad<T: Element>(&self, grad_y: &[T], wide: &mut [T]) {
        let (out_w, wp) = (self.g.out_w(), self.padded.1);
        for (row, wide_row) in grad_y.chunks_exact(out_w).zip(wide.chunks_exact_mut(wp)) {
            copy_row(&mut wide_row[..out_w], row);
            wide_row[out_w..].fill(T::ZERO);
        }
    }

    /// One image's input gradient: `G` padded, the turned filters' product,
    /// its `W` first columns of each row into `grad_x`.
    fn grad_input_image<T: Element>(
        &self,
        (turned, offsets): (&ShiftedPanels<T>, &[usize]),
        grad_y: &[T],
        (grad_padded, grad_wide): (&mut [T], &mut [T]),
        grad_x: &mut [T],
    ) {
        let g = &self.g;
        let wg = self.grad_padded.1;
        let border = (g.filter_h - 1 - g.pad, g.filter_w - 1 - g.pad);
        pad_planes(
            grad_y,
            (g.out_h(), g.out_w()),
            border,
            self.grad_padded,
            grad_padded,
            false,
        );
        let n = self.grad_wide_windows();
        shifted_product(turned, grad_padded, offsets, n, grad_wide, n);
        for (row, wide_row) in grad_x.chunks_exact_mut(g.width).zip(grad_wide.chunks_exact(wg)) {
            copy_row(row, &wide_row[..g.width]);
        }
    }

    /// `image` (`[C, H, W]`) padded and laid out channels last,
    /// `[Hp, Wp, C]`, in `padded` ([`sparse_backward::ConvShape::padded_len`]
    /// values), through the ReLU with `relu_first`; `staging` (at least
    /// `C H W` values) holds it on the way ([`pad_planes_last`]).
    fn pad_channels_last<T: Element>(&self, image: &[T], staging: &mut [T], padded: &mut [T], relu_first: bool) {
        let g = &self.g;
        let planes = (g.channels, g.height, g.width);
        pad_planes_last(image, planes, g.pad, self.padded, staging, padded, relu_first);
    }

    /// One image's input gradient from its padded form channels last
    /// (`[Hp, Wp, C]`): the middle, `[C, H, W]`, through the ReLU's
    /// gradient where `relu_input` (the ReLU's input, `[C, H, W]`) is given.
    /// `planes` (`C Hp Wp` values) holds the padded planes on the way: one
    /// transpose in 8 x 8 blocks, then the rows' middles.
    fn unpad_channels_last<T: Element>(
        &self,
        padded: &[T],
        planes: &mut [T],
        grad_x: &mut [T],
        relu_input: Option<&[T]>,
    ) {
        let g = &self.g;
        let (channels, wp) = (g.channels, self.padded.1);
        let positions = self.padded.0 * wp;
        transpose((padded, channels), (positions, channels), (planes, positions));
        let rows = grad_x.chunks_exact_mut(g.width).enumerate();
        for (row, grad_row) in rows {
            // Row `y` of plane `c` of the input.
            let (c, y) = (row / g.height, row % g.height);
            let source = &planes[c * positions + (y + g.pad) * wp + g.pad..][..g.width];
            match relu_input {
                // The ReLU's backward (`relu.rs`): kept where x > 0 (or NaN).
                Some(x) => {
                    let x = &x[row * g.width..][..g.width];
                    for ((grad, &value), &x) in grad_row.iter_mut().zip(source).zip(x) {
                        *grad = relu_grad(x, value);
                    }
                }
                None => copy_row(grad_row, source),
            }
        }
    }
}

impl<T: Element> Layer<T> for Convolution<T> {
    fn name(&self) -> &'static str {
        "Convolution"
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Convolution {
            channels: self.channels(),
            filters: self.filters(),
            filter_h: self.w.shape()[2],
            filter_w: self.w.shape()[3],
            stride: self.stride,
            pad: self.pad,
        }
    }

    fn numbers_params(&self) -> bool {
        true
    }

    fn forward(&self, input: &Tensor<T>, output: &mut Tensor<T>) {
        let g = self.batch_geometry(input);
        let out_len = self.filters() * g.windows();
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        if let Some(layout) = self.shifted_layout(input) {
            return self.forward_shifted(layout, input, output, false);
        }
        // Inference keeps no `col`: one image's at a time per task.
        input
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * g.image_len())
            .zip(output.as_mut_slice().par_chunks_mut(IMAGES_PER_TASK * out_len))
            .for_each_init(
                || vec![T::ZERO; g.col_len()],
                |col, (x, y)| {
                    for (x, y) in x.chunks_exact(g.image_len()).zip(y.chunks_exact_mut(out_len)) {
                        forward_image((&self.w, &self.b), &g, x, col, y);
                    }
                },
            );
    }

    fn forward_train(&mut self, input: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) {
        let g = self.batch_geometry(input);
        let out_len = self.filters() * g.windows();
        output.resize(&[input.rows(), self.filters(), g.out_h(), g.out_w()]);
        if let Some(layout) = self.shifted_layout(input) {
            return self.forward_train_shifted(layout, input, output, false);
        }
        // Each run's scratch holds one image's `col` here, a task's in
        // backward (sized here, so that backward allocates nothing).
        let (runs, col_len) = (Runs::new(input.rows()), g.col_len());
        let scratch_len = IMAGES_PER_TASK * col_len;
        grow(&mut self.scratch, runs.slots * scratch_len);
        let shares_len = runs.tasks * (self.w.numel() + self.filters());
        grow(&mut self.partials, shares_len);
        let weights = (&self.w, &self.b);
        input
            .as_slice()
            .par_chunks(runs.chunk(g.image_len()))
            .zip(output.as_mut_slice().par_chunks_mut(runs.chunk(out_len)))
            .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
            .for_each(|((x, y), scratch)| {
                let col = &mut scratch[..col_len];
                for (x, y) in x.chunks_exact(g.image_len()).zip(y.chunks_exact_mut(out_len)) {
                    forward_image(weights, &g, x, col, y);
                }
            });
        self.trained = Trained::of(input, false);
    }

    fn backward(
        &mut self,
        input: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_input: Option<&mut Tensor<T>>,
    ) {
        if let Some(layout) = self.shifted_layout(input) {
            return self.backward_shifted(layout, input, grad_output, grad_input, false);
        }
        let g = self.batch_geometry(input);
        let (filters, window_len, windows) = (self.filters(), g.window_len(), g.windows());
        let out_len = filters * windows;
        let weights_len = filters * window_len;
        self.check_backward(input, grad_output, &g, false);
        let runs = Runs::new(input.rows());
        let tasks = runs.tasks;
        let (share_len, col_len) = (weights_len + filters, g.col_len());
        let scratch_len = IMAGES_PER_TASK * col_len;
        grow(&mut self.partials, tasks * share_len);
        grow(&mut self.scratch, runs.slots * scratch_len);
        // dW = sum over n of G_n col_n^T, `[FN, C*FH*FW]`: every value a dot
        // product of a row of G_n with a row of col_n, both read in place
        // along their windows (`row_products`). A GEMM would pack col_n^T by
        // a transpose, and its few columns (25 taps) fill half a tile:
        // SimpleConvNet's 25.5 us an image that way, 11.2 this (one core, f32).
        // The task's `col`s are made again, into its run's scratch: kept from
        // the forward pass, they were written to memory there and read back
        // from it here (SimpleConvNet's 5.8 MB a step).
        let task = |grad_y: &[T], x: &[T], partial: &mut [T], col: &mut [T]| {
            let images = grad_y.len() / out_len;
            for (x, col) in x.chunks_exact(g.image_len()).zip(col.chunks_exact_mut(col_len)) {
                im2col_image(x, &g, col);
            }
            let (grad_w, grad_b) = partial.split_at_mut(weights_len);
            row_products(
                (grad_y, out_len),
                (col, col_len),
                images,
                (filters, window_len, windows),
                grad_w,
            );
            grad_b.fill(T::ZERO);
            for grad_y in grad_y.chunks_exact(out_len) {
                for (sum, plane) in grad_b.iter_mut().zip(grad_y.chunks_exact(windows)) {
                    *sum += sum_of(plane);
                }
            }
        };
        for_each_task_in_runs(
            runs,
            (grad_output.as_slice(), out_len),
            (input.as_slice(), g.image_len()),
            (self.partials.as_mut_slice(), share_len),
            (self.scratch.as_mut_slice(), scratch_len),
            task,
        );
        self.add_shares(ShareLayout::Filters, (0, share_len, tasks));
        if let Some(grad_input) = grad_input {
            self.grad_input_im2col(&g, input, grad_output.as_slice(), grad_input);
        }
    }

    /// On the shifted route, each image is padded through the ReLU: the
    /// padded copy is written anyway, and the ReLU's pass over the batch
    /// (and its output) is saved. The `im2col` route does not take it.
    fn forward_after_relu(&self, pre_relu: &Tensor<T>, output: &mut Tensor<T>) -> bool {
        let Some(layout) = self.shifted_output(pre_relu, output) else {
            return false;
        };
        self.forward_shifted(layout, pre_relu, output, true);
        true
    }

    fn forward_train_after_relu(&mut self, pre_relu: &Tensor<T>, output: &mut Tensor<T>, _rng: &mut LayerRng) -> bool {
        let Some(layout) = self.shifted_output(pre_relu, output) else {
            return false;
        };
        self.forward_train_shifted(layout, pre_relu, output, true);
        true
    }

    /// Backward pads the images again through the ReLU (the ReLU's
    /// outputs, as the forward pass did) for the filters' gradient; the
    /// input gradient of each image goes on through the ReLU while in cache.
    fn backward_after_relu(
        &mut self,
        pre_relu: &Tensor<T>,
        _output: &Tensor<T>,
        grad_output: &Tensor<T>,
        grad_pre_relu: Option<&mut Tensor<T>>,
    ) -> bool {
        let Some(layout) = self.shifted_layout(pre_relu) else {
            return false;
        };
        self.backward_shifted(layout, pre_relu, grad_output, grad_pre_relu, true);
        true
    }

    /// Off the shifted route (not after a ReLU), by the direct sums
    /// ([`tensor::direct`]) with the ReLU and the pool done on each 2x2
    /// block of outputs in registers: the pooled values equal the three
    /// layers' up to rounding (the sums go in another order than the
    /// GEMM's). Where Winograd serves the forward pass, by
    /// [`winograd::forward_pooled`]: the layers' bits.
    fn forward_relu_pool(&self, input: &Tensor<T>, relu_first: bool, pooled: &mut Tensor<T>) -> bool {
        if let Some(shape) = self.direct_shape(input) {
            if relu_first {
                return false;
            }
            let (ph, pw) = shape.pooled();
            pooled.resize(&[input.rows(), self.filters(), ph, pw]);
            let mut filters = DirectFilters::new();
            filters.pack(self.w.as_slice(), self.b.as_slice(), &shape);
            let (image_len, out_len, codes_len) = (
                shape.geometry.image_len(),
                self.filters() * shape.positions(true),
                shape.codes_len(),
            );
            let scratch_len = Self::direct_scratch_len(&shape, shape.scratch_len(true));
            // A task's buffers for each piece of the batch rayon splits off,
            // allocated per call (the codes are not kept).
            input
                .as_slice()
                .par_chunks(IMAGES_PER_TASK * image_len)
                .zip(pooled.as_mut_slice().par_chunks_mut(IMAGES_PER_TASK * out_len))
                .for_each_init(
                    || (vec![T::ZERO; scratch_len], vec![0u8; IMAGES_PER_TASK * codes_len]),
                    |(scratch, codes), (x, y)| {
                        let codes = &mut codes[..x.len() / image_len * codes_len];
                        Self::forward_direct_pooled((&filters, &shape), x, (y, codes), scratch);
                    },
                );
            return true;
        }
        let Some((layout, shape)) = self.winograd_layout(input) else {
            return false;
        };
        let (ph, pw) = shape.pooled();
        pooled.resize(&[input.rows(), self.filters(), ph, pw]);
        let mut filters = WinogradFilters::new();
        filters.pack(self.w.as_slice(), &shape);
        let (image_len, pooled_len) = (layout.g.image_len(), shape.pooled_len());
        let scratch_len = image_len + shape.padded_len() + shape.pooled_scratch_len();
        let weights = (&layout, &shape, &filters, self.b.as_slice());
        input
            .as_slice()
            .par_chunks(IMAGES_PER_TASK * image_len)
            .zip(pooled.as_mut_slice().par_chunks_mut(IMAGES_PER_TASK * pooled_len))
            .for_each_init(
                || (vec![T::ZERO; scratch_len], vec![0u8; IMAGES_PER_TASK * pooled_len]),
                |(scratch, codes), (x, y)| {
                    let codes = &mut codes[..x.len() / image_len * pooled_len];
                    Self::forward_winograd_pooled(weights, x, (y, codes), scratch, relu_first);
                },
            );
        true
    }

    fn forward_train_relu_pool(
        &mut self,
        input: &Tensor<T>,
        relu_first: bool,
        pooled: &mut Tensor<T>,
        _rng: &mut LayerRng,
    ) -> bool {
        if let Some(shape) = self.direct_shape(input) {
            if relu_first {
                return false;
            }
            let (ph, pw) = shape.pooled();
            pooled.resize(&[input.rows(), self.filters(), ph, pw]);
            self.direct.pack(self.w.as_slice(), self.b.as_slice(), &shape);
            let (image_len, out_len, codes_len) = (
                shape.geometry.image_len(),
                self.filters() * shape.positions(true),
                shape.codes_len(),
            );
            self.pool_codes.resize(input.rows() * codes_len, 0);
            let runs = Runs::new(input.rows());
            let scratch_len = Self::direct_scratch_len(&shape, shape.scratch_len(true));
            grow(&mut self.scratch, runs.slots * scratch_len);
            let filters = &self.direct;
            input
                .as_slice()
                .par_chunks(runs.chunk(image_len))
                .zip(pooled.as_mut_slice().par_chunks_mut(runs.chunk(out_len)))
                .zip(self.pool_codes.par_chunks_mut(runs.chunk(codes_len)))
                .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
                .for_each(|(((x, y), codes), scratch)| {
                    Self::forward_direct_pooled((filters, &shape), x, (y, codes), scratch);
                });
            self.trained = Trained::pooled(input, false);
            return true;
        }
        let Some((layout, shape)) = self.winograd_layout(input) else {
            return false;
        };
        let (ph, pw) = shape.pooled();
        pooled.resize(&[input.rows(), self.filters(), ph, pw]);
        self.winograd.pack(self.w.as_slice(), &shape);
        let (image_len, pooled_len) = (layout.g.image_len(), shape.pooled_len());
        self.pool_codes.resize(input.rows() * pooled_len, 0);
        let runs = Runs::new(input.rows());
        // The run's scratch is sized for the backward routes too
        // (`reserve_shifted_backward`), the forward's at its start.
        let scratch_len = layout
            .run_scratch_len()
            .max(image_len + shape.padded_len() + shape.pooled_scratch_len());
        grow(&mut self.scratch, runs.slots * scratch_len);
        let weights = (&layout, &shape, &self.winograd, self.b.as_slice());
        input
            .as_slice()
            .par_chunks(runs.chunk(image_len))
            .zip(pooled.as_mut_slice().par_chunks_mut(runs.chunk(pooled_len)))
            .zip(self.pool_codes.par_chunks_mut(runs.chunk(pooled_len)))
            .zip(self.scratch.as_mut_slice().par_chunks_mut(scratch_len))
            .for_each(|(((x, y), codes), scratch)| {
                Self::forward_winograd_pooled(weights, x, (y, codes), scratch, relu_first);
            });
        layout.fill_offsets(&mut self.offsets);
        self.reserve_shifted_backward(layout, runs);
        self.trained = Trained::pooled(input, relu_first);
        true
    }

    fn backward_relu_pool(
        &mut self,
        input: &Tensor<T>,
        relu_first: bool,
        (pooled, grad_pooled): (&Tensor<T>, &Tensor<T>),
        grad_input: Option<&mut Tensor<T>>,
    ) -> bool {
        if let Some(shape) = self.direct_shape(input) {
            if relu_first {
                return false;
            }
            self.backward_direct_pooled(shape, input, (pooled, grad_pooled), grad_input);
            return true;
        }
        let Some((layout, _)) = self.winograd_layout(input) else {
            return false;
        };
        self.backward_winograd_pooled(layout, (input, relu_first), (pooled, grad_pooled), grad_input);
        true
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(Param<'a, T>)) {
        visit_weight_and_bias((&self.w, &self.grad_w), (&self.b, &self.grad_b), f);
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        visit_weight_and_bias_mut((&mut self.w, &mut self.grad_w), (&mut self.b, &mut self.grad_b), f);
    }

    fn clone_box(&self) -> Box<dyn Layer<T>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, LayerCheck};
    use rand::SeedableRng;
    use tensor::conv::conv_naive;

    fn random_layer(shape: [usize; 4], stride: usize, pad: usize, rng: &mut LayerRng) -> Convolution<f64> {
        Convolution::new(
            Tensor::randn(&shape, 0.5, rng),
            Tensor::randn(&[shape[0]], 0.5, rng),
            stride,
            pad,
        )
    }

    #[test]
    fn forward_matches_the_direct_convolution_in_both_modes() {
        let mut rng = LayerRng::seed_from_u64(1);
        // Stride 2, pad 1, a non-square filter, 3 channels; 12 images so that
        // the work goes through several tasks, the last one partial.
        let mut layer = random_layer([4, 3, 3, 2], 2, 1, &mut rng);
        let x = Tensor::<f64>::randn(&[12, 3, 7, 6], 1.0, &mut rng);
        let g = ConvGeometry::new((3, 7, 6), (3, 2), 2, 1).unwrap();
        let expected = conv_naive(x.as_slice(), &g, layer.w.as_slice(), layer.b.as_slice());
        let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        layer.forward(&x, &mut y);
        layer.forward_train(&x, &mut y_train, &mut rng);
        assert_eq!(y.shape(), &[12, 4, 4, 4]);
        assert_eq!(layer.output_shape(&[3, 7, 6]).unwrap(), vec![4, 4, 4]);
        for (got, want) in y.as_slice().iter().zip(&expected) {
            assert!((got - want).abs() < 1e-12);
        }
        assert_eq!(y, y_train);
    }

    /// Every route (`im2col`; shifted with dense products; shifted over
    /// `G`'s nonzero values; the Winograd forward) gives the same bits on
    /// pools of 1, 2, 3 and 5 threads, for a batch of 23 images (the last
    /// task and the last group partial, the runs of uneven length), in
    /// training and backward.
    #[test]
    fn every_route_gives_the_same_bits_on_any_pool() {
        let mut rng = LayerRng::seed_from_u64(17);
        // (the filters' shape, stride, pad), whether `G` is sparse, and
        // the images' height.
        let routes = [
            ([6, 1, 5, 5], 1, 0, false, 9),
            ([6, 3, 3, 3], 2, 1, false, 9),
            ([6, 4, 3, 3], 1, 1, false, 9),
            ([6, 4, 3, 3], 1, 1, true, 9),
            ([16, 16, 3, 3], 1, 1, false, 6),
        ];
        for (shape, stride, pad, sparse, height) in routes {
            let layer = random_layer(shape, stride, pad, &mut rng);
            let x = Tensor::<f64>::randn(&[23, shape[1], height, 10], 1.0, &mut rng);
            let winograd = layer.shifted_layout(&x).is_some_and(|layout| layout.winograd.is_some());
            assert_eq!(winograd, shape[0] == 16, "{shape:?}");
            let out = layer.output_shape(&[shape[1], height, 10]).unwrap();
            let dy = match sparse {
                true => sparse_grad::<f64>(&[23, out[0], out[1], out[2]], &mut rng),
                false => Tensor::randn(&[23, out[0], out[1], out[2]], 1.0, &mut rng),
            };
            assert_eq!(
                sparse,
                layer.shifted_layout(&x).is_some() && sparse_backward::pays(dy.as_slice(), shape[1])
            );
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut layer = layer.clone();
                    let (mut y, mut dx) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
                    layer.forward_train(&x, &mut y, &mut LayerRng::seed_from_u64(0));
                    layer.backward(&x, &y, &dy, Some(&mut dx));
                    (y, dx, layer.grad_w, layer.grad_b)
                })
            };
            let one = run(1);
            for threads in [2, 3, 5] {
                assert_eq!(run(threads), one, "{shape:?} on {threads} threads");
            }
        }
    }

    /// `layer`'s forward pass on `x` (stride 1, `pad`) against the direct
    /// convolution, to 1e-12, in training and inference, with and without
    /// a ReLU taken on; training and inference give the same bits.
    fn forward_matches_direct(layer: &mut Convolution<f64>, x: &Tensor<f64>, pad: usize, rng: &mut LayerRng) {
        let (shape, input_shape) = (layer.w.shape().to_vec(), x.shape().to_vec());
        let image = (input_shape[1], input_shape[2], input_shape[3]);
        let g = ConvGeometry::new(image, (shape[2], shape[3]), 1, pad).unwrap();
        for relu_first in [false, true] {
            let input: Vec<f64> = x
                .as_slice()
                .iter()
                .map(|&v| if relu_first { v.max(0.0) } else { v })
                .collect();
            let expected = conv_naive(&input, &g, layer.w.as_slice(), layer.b.as_slice());
            let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
            if relu_first {
                assert!(layer.forward_after_relu(x, &mut y));
                assert!(layer.forward_train_after_relu(x, &mut y_train, rng));
            } else {
                layer.forward(x, &mut y);
                layer.forward_train(x, &mut y_train, rng);
            }
            assert_eq!(y.numel(), expected.len());
            for (got, want) in y.as_slice().iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "{shape:?} pad {pad}: {got} vs {want}");
            }
            assert_eq!(y, y_train);
        }
    }

    /// The shifted route's forward pass, images padded side by side in
    /// groups (`pad_group`), against the direct convolution: pads 0, 1, 2
    /// and 4, filters of 3x3, 5x5 and 2x3, 7 images (a group of 5 and one
    /// of 2), in training and inference, with and without a ReLU taken on.
    #[test]
    fn the_shifted_forward_matches_the_direct_convolution() {
        let mut rng = LayerRng::seed_from_u64(9);
        let cases = [
            ([4, 3, 3, 3], 1, (8, 8)),
            ([5, 2, 3, 3], 2, (14, 14)),
            ([3, 4, 5, 5], 0, (9, 7)),
            ([6, 3, 2, 3], 1, (6, 10)),
            ([2, 2, 5, 5], 4, (5, 5)),
            // Winograd's shape but an odd output: the shifted products.
            ([16, 16, 3, 3], 1, (5, 7)),
        ];
        for (shape, pad, (h, w)) in cases {
            let mut layer = random_layer(shape, 1, pad, &mut rng);
            let channels = shape[1];
            let x = Tensor::<f64>::randn(&[7, channels, h, w], 1.0, &mut rng);
            assert!(layer.shifted_layout(&x).is_some(), "{shape:?} takes the shifted route");
            forward_matches_direct(&mut layer, &x, pad, &mut rng);
        }
    }

    /// A ReLU's forward and backward, then the convolution's, against the
    /// convolution taking the ReLU on: the same bits (shifted route).
    #[test]
    fn a_relu_taken_into_the_convolution_gives_the_same_bits() {
        let mut rng = LayerRng::seed_from_u64(21);
        let mut x = Tensor::<f64>::randn(&[7, 3, 9, 8], 1.0, &mut rng);
        for v in x.as_mut_slice().iter_mut().step_by(5) {
            *v = 0.0;
        }
        let dy = Tensor::<f64>::randn(&[7, 5, 9, 8], 1.0, &mut rng);
        let mut relu = crate::Relu::new();
        let mut conv = random_layer([5, 3, 3, 3], 1, 1, &mut rng);
        let mut taken = conv.clone();
        let (mut relu_out, mut y, mut d_relu_out, mut dx) = (
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
            Tensor::zeros(&[0]),
        );
        relu.forward_train(&x, &mut relu_out, &mut rng);
        conv.forward_train(&relu_out, &mut y, &mut rng);
        conv.backward(&relu_out, &y, &dy, Some(&mut d_relu_out));
        relu.backward(&x, &relu_out, &d_relu_out, Some(&mut dx));

        let (mut y_taken, mut y_inference, mut dx_taken) =
            (Tensor::zeros(&[0]), Tensor::zeros(&[0]), Tensor::zeros(&[0]));
        assert!(taken.forward_train_after_relu(&x, &mut y_taken, &mut rng));
        assert!(taken.backward_after_relu(&x, &y_taken, &dy, Some(&mut dx_taken)));
        assert!(taken.forward_after_relu(&x, &mut y_inference));
        let bits = |t: &Tensor<f64>| t.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y_taken), bits(&y));
        assert_eq!(bits(&y_inference), bits(&y));
        assert_eq!(bits(&dx_taken), bits(&dx));
        assert_eq!(bits(&taken.grad_w), bits(&conv.grad_w));
        assert_eq!(bits(&taken.grad_b), bits(&conv.grad_b));

        // One channel takes the im2col route, which leaves the ReLU alone.
        let mut single = random_layer([2, 1, 3, 3], 1, 1, &mut rng);
        let one = Tensor::<f64>::randn(&[2, 1, 5, 5], 1.0, &mut rng);
        assert!(!single.forward_after_relu(&one, &mut y));
        assert!(!single.forward_train_after_relu(&one, &mut y, &mut rng));
        assert!(!single.backward_after_relu(&one, &y, &y, None));
    }

    /// The Winograd forward (3x3 filters, channels and filters in whole
    /// vectors, an even output) against the direct convolution: pads 1 and
    /// 2, 16 and 32 filters, 7 images, training and inference, with and
    /// without a ReLU taken on. An odd output, or channels that are not a
    /// whole vector, take the shifted products instead.
    #[test]
    fn the_winograd_forward_matches_the_direct_convolution() {
        let mut rng = LayerRng::seed_from_u64(23);
        for (shape, pad, (h, w)) in [
            ([16, 16, 3, 3], 1, (6, 8)),
            ([32, 16, 3, 3], 2, (4, 6)),
            ([16, 32, 3, 3], 1, (2, 4)),
        ] {
            let mut layer = random_layer(shape, 1, pad, &mut rng);
            let channels = shape[1];
            let x = Tensor::<f64>::randn(&[7, channels, h, w], 1.0, &mut rng);
            assert!(layer.shifted_layout(&x).and_then(|layout| layout.winograd).is_some());
            forward_matches_direct(&mut layer, &x, pad, &mut rng);
        }
        let layer = random_layer([16, 16, 3, 3], 1, 1, &mut rng);
        let odd = Tensor::<f64>::zeros(&[1, 16, 5, 8]);
        assert!(layer
            .shifted_layout(&odd)
            .is_some_and(|layout| layout.winograd.is_none()));
        let narrow = random_layer([16, 8, 3, 3], 1, 1, &mut rng);
        let x = Tensor::<f64>::zeros(&[1, 8, 6, 8]);
        assert!(narrow
            .shifted_layout(&x)
            .is_some_and(|layout| layout.winograd.is_none()));
    }

    /// The input gradient goes by Winograd but for a layer of 32 channels
    /// or more whose `G` has few nonzero values.
    #[test]
    fn a_wide_layer_keeps_its_input_gradient_over_few_nonzero_values() {
        let layout = |channels: usize| {
            let g = ConvGeometry::new((channels, 8, 8), (3, 3), 1, 1).unwrap();
            ShiftedLayout::new(g, 32).unwrap()
        };
        assert!(layout(32).grad_input_by_winograd(Some(0.2)).is_none());
        assert!(layout(32)
            .grad_input_by_winograd(Some(SPARSE_INPUT_GRADIENT_MAX_SHARE))
            .is_none());
        assert!(layout(32).grad_input_by_winograd(Some(0.5)).is_some());
        assert!(layout(32).grad_input_by_winograd(None).is_some(), "an empty batch");
        assert!(layout(16).grad_input_by_winograd(Some(0.1)).is_some());
        assert!(
            layout(24).grad_input_by_winograd(Some(0.5)).is_none(),
            "24 channels: no whole vectors"
        );
    }

    #[test]
    fn gradient_check_by_winograd_both_ways() {
        // 16 channels and filters of 3x3, a dense `G`: the forward pass and
        // the input gradient by Winograd; 6 images, two tasks; pads 1 and 2
        // (the output gradient padded by 1 and 0).
        gradient_check(&[IMAGES_PER_TASK + 1, 16, 4, 4], [16, 16, 3, 3], (1, 1), 29);
        gradient_check(&[2, 16, 2, 4], [16, 16, 3, 3], (1, 2), 30);
    }

    #[test]
    fn the_shifted_route_matches_the_direct_convolution() {
        // Stride 1 with the pads DeepConvNet uses (1, and 2 on a 3x3 filter:
        // no padding left for the output gradient), a non-square filter, and
        // no padding; 7 images across two tasks.
        let mut rng = LayerRng::seed_from_u64(11);
        for (filters, (fh, fw), pad) in [(5, (3, 3), 1), (4, (3, 3), 2), (3, (3, 2), 1), (6, (5, 5), 0)] {
            let mut layer = random_layer([filters, 3, fh, fw], 1, pad, &mut rng);
            let x = Tensor::<f64>::randn(&[7, 3, 9, 8], 1.0, &mut rng);
            let g = ConvGeometry::new((3, 9, 8), (fh, fw), 1, pad).unwrap();
            assert!(ShiftedLayout::new(g, filters).is_some());
            let expected = conv_naive(x.as_slice(), &g, layer.w.as_slice(), layer.b.as_slice());
            let (mut y, mut y_train) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
            layer.forward(&x, &mut y);
            layer.forward_train(&x, &mut y_train, &mut rng);
            for (got, want) in y.as_slice().iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "pad {pad}: {got} vs {want}");
            }
            assert_eq!(y, y_train);
        }
    }

    /// Checks a random layer of filters `[FN, C, FH, FW]`, `stride` and
    /// `pad` against the numerical gradient on random images `x_shape`,
    /// twice (backward must overwrite, not accumulate).
    fn gradient_check(x_shape: &[usize], filters: [usize; 4], (stride, pad): (usize, usize), seed: u64) -> LayerCheck {
        let mut rng = LayerRng::seed_from_u64(seed);
        let x = Tensor::<f64>::randn(x_shape, 1.0, &mut rng);
        let mut layer = random_layer(filters, stride, pad, &mut rng);
        let report = check_layer(&mut layer, &x, 1e-5, seed + 1);
        assert!(report.worst() < 1e-8, "{report:?}");
        assert!(report.repeatable, "backward must overwrite, not accumulate");
        report
    }

    #[test]
    fn gradient_check_the_shifted_route_with_a_pad_of_two() {
        // DeepConvNet's fourth convolution: 3x3, pad 2, the output wider than the input.
        gradient_check(&[IMAGES_PER_TASK + 1, 2, 6, 5], [5, 2, 3, 3], (1, 2), 12);
    }

    #[test]
    fn gradient_check_a_pad_as_wide_as_the_filter() {
        // Pad 3 on a 3x3 filter: the output gradient would need a negative
        // pad, so this layer keeps to im2col.
        assert!(ShiftedLayout::new(ConvGeometry::new((2, 4, 4), (3, 3), 1, 3).unwrap(), 3).is_none());
        gradient_check(&[2, 2, 4, 4], [3, 2, 3, 3], (1, 3), 14);
    }

    #[test]
    fn gradient_check_the_books_input() {
        // The book checks a 1 x 10 x 10 input; two images, so the batch sums count.
        let report = gradient_check(&[2, 1, 10, 10], [3, 1, 3, 3], (1, 0), 2);
        assert_eq!(report.params.len(), 2);
    }

    #[test]
    fn gradient_check_stride_pad_and_channels() {
        gradient_check(&[2, 3, 7, 6], [4, 3, 3, 2], (2, 1), 4);
    }

    #[test]
    fn gradient_check_across_tasks() {
        // More images than one task holds, the last task partial: the shares
        // of dW and db are summed across tasks.
        gradient_check(&[IMAGES_PER_TASK + 2, 2, 5, 5], [3, 2, 3, 3], (1, 1), 6);
    }

    #[test]
    fn gradient_check_row_products_over_many_windows() {
        // 3 filters over 27 x 27 windows on the im2col route (pad 3 on a
        // 3x3 filter): dW by `row_products` along 729 windows (not a whole
        // number of vectors), its shares summed across two tasks.
        gradient_check(&[IMAGES_PER_TASK + 1, 2, 23, 23], [3, 2, 3, 3], (1, 3), 8);
    }

    /// `dy` with about four values in five zero, as behind a ReLU and a pool.
    fn sparse_grad<T: Element>(shape: &[usize], rng: &mut LayerRng) -> Tensor<T> {
        let mut dy = Tensor::<T>::randn(shape, 1.0, rng);
        for (i, v) in dy.as_mut_slice().iter_mut().enumerate() {
            if (i * 7 + 3) % 5 != 0 {
                *v = T::ZERO;
            }
        }
        dy
    }

    /// The backward over `G`'s nonzero values against the dense products:
    /// the same gradients to rounding (relative `tolerance`), with the ReLU
    /// taken or not, with the input gradient or not; and `backward` takes
    /// it for such a `G`, but for the input gradient where that goes by
    /// Winograd (16 channels and filters), which it matches to rounding.
    fn check_backward_over_nonzeros<T: Element>(tolerance: f64) {
        let mut rng = LayerRng::seed_from_u64(31);
        // DeepConvNet's shapes (pads 1 and 2; 16 channels: whole vectors),
        // odd ones (3 channels: no whole vector; 2x3 and 5x5 filters), rows
        // of 9 and 10 (whole 8x8 blocks and edges in the transposes), and
        // 70 filters of 40 channels (positions across scans; wide).
        let shapes = [
            (16, 16, (3, 3), 1, (6, 6)),
            (16, 16, (3, 3), 0, (6, 8)),
            (16, 16, (3, 3), 2, (4, 6)),
            (4, 5, (3, 3), 2, (6, 5)),
            (3, 4, (2, 3), 1, (7, 6)),
            (3, 6, (5, 5), 0, (9, 8)),
            (16, 8, (3, 3), 1, (9, 10)),
            (40, 70, (3, 3), 1, (5, 4)),
        ];
        let mut routes_differ = false;
        for (channels, filters, (fh, fw), pad, (h, w)) in shapes {
            let x = Tensor::<T>::randn(&[IMAGES_PER_TASK + 2, channels, h, w], 1.0, &mut rng);
            let mut fresh = Convolution::new(
                Tensor::<T>::randn(&[filters, channels, fh, fw], 0.5, &mut rng),
                Tensor::<T>::randn(&[filters], 0.5, &mut rng),
                1,
                pad,
            );
            let mut y = Tensor::zeros(&[0]);
            fresh.forward_train(&x, &mut y, &mut rng);
            let dy = sparse_grad::<T>(y.shape(), &mut rng);
            assert!(sparse_backward::pays(dy.as_slice(), channels));
            let layout = fresh.shifted_layout(&x).expect("the shifted route");
            for (relu_first, with_input) in [(false, true), (true, true), (false, false)] {
                // Backward pads the images again, through the ReLU where the
                // forward pass took it.
                let mut trained = fresh.clone();
                if relu_first {
                    assert!(trained.forward_train_after_relu(&x, &mut y, &mut rng));
                } else {
                    trained.forward_train(&x, &mut y, &mut rng);
                }
                let (mut dense, mut sparse, mut chosen) = (trained.clone(), trained.clone(), trained.clone());
                let (mut dx_dense, mut dx_sparse, mut dx_chosen) =
                    (Tensor::zeros(&[0]), Tensor::zeros(&[0]), Tensor::zeros(&[0]));
                dense.backward_dense(layout, &x, &dy, with_input.then_some(&mut dx_dense), relu_first);
                sparse.backward_nonzeros(layout, &x, &dy, with_input.then_some(&mut dx_sparse), relu_first);
                let close = |a: &Tensor<T>, b: &Tensor<T>, what: &str| {
                    assert_eq!(a.shape(), b.shape(), "{what}");
                    for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
                        let (u, v) = (u.to_f64(), v.to_f64());
                        assert!(
                            (u - v).abs() <= tolerance * (1.0 + u.abs()),
                            "{what} {channels}x{fh}x{fw}: {u} vs {v}"
                        );
                    }
                };
                close(&dense.grad_w, &sparse.grad_w, "dW");
                assert_eq!(dense.grad_b, sparse.grad_b, "db: the same sums");
                if with_input {
                    close(&dx_dense, &dx_sparse, "dx");
                }
                // `backward` chooses this route for such a `G`: its bits
                // (which the dense products' are not, somewhere below).
                chosen.backward_shifted(layout, &x, &dy, with_input.then_some(&mut dx_chosen), relu_first);
                assert_eq!(chosen.grad_w, sparse.grad_w);
                let share = sparse_backward::nonzero_share(dy.as_slice());
                let by_winograd = layout.grad_input_by_winograd(share).is_some();
                assert_eq!(by_winograd, channels == 16 && filters == 16, "{channels} channels");
                match by_winograd {
                    true => close(&dx_chosen, &dx_sparse, "dx by Winograd"),
                    false => assert_eq!(dx_chosen, dx_sparse),
                }
                routes_differ |= chosen.grad_w != dense.grad_w || dx_chosen != dx_dense;
            }
        }
        assert!(routes_differ, "the routes sum in other orders: some bit differs");
    }

    /// Training keeps no copy of the batch: backward pads the images again,
    /// so it must be given a batch of the last training forward pass's
    /// shape, taken through a ReLU the same way.
    #[test]
    #[should_panic(expected = "backward without forward_train on this batch")]
    fn the_shifted_backward_refuses_another_kind_of_forward() {
        let mut rng = LayerRng::seed_from_u64(5);
        let mut layer = random_layer([4, 3, 3, 3], 1, 1, &mut rng);
        let x = Tensor::randn(&[2, 3, 6, 6], 1.0, &mut rng);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut rng);
        let dy = Tensor::randn(y.shape(), 1.0, &mut rng);
        layer.backward_after_relu(&x, &y, &dy, None);
    }

    /// `got` within `tolerance` of `expected`, relative to its largest value.
    fn assert_close(what: &str, got: &Tensor<f64>, expected: &Tensor<f64>, tolerance: f64) {
        assert_eq!(got.shape(), expected.shape(), "{what}");
        let scale = expected
            .as_slice()
            .iter()
            .fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.as_slice().iter().zip(expected.as_slice()).enumerate() {
            assert!((a - b).abs() <= tolerance * scale, "{what} {i}: {a} {b}");
        }
    }

    #[test]
    fn a_relu_and_pool_taken_on_match_the_layers() {
        use crate::{Pooling, Relu};
        // The direct sums: one channel (5x5 filters, an output of odd width
        // whose last column the pool drops; 3x3 with a pad), and two
        // channels with a pad as wide as the filter (rounding apart from the
        // GEMM's). Winograd: 16 and 32 filters, pads 1 and 2, after a ReLU
        // taken on or not (the layers' bits). Batches of 7 (two tasks, the
        // second short) and none.
        let cases = [
            ([4, 1, 5, 5], 0, false, 1e-13),
            ([18, 1, 3, 3], 1, false, 1e-13),
            ([3, 2, 2, 2], 2, false, 1e-13),
            ([16, 16, 3, 3], 1, false, 0.0),
            ([16, 16, 3, 3], 1, true, 0.0),
            ([32, 16, 3, 3], 2, true, 0.0),
        ];
        for ((filters, pad, relu_first, tolerance), images) in cases.into_iter().flat_map(|case| [(case, 7), (case, 0)])
        {
            let mut rng = LayerRng::seed_from_u64(3);
            let mut fused = random_layer(filters, 1, pad, &mut rng);
            let mut alone = fused.clone();
            let (mut relu_before, mut relu, mut pool) = (Relu::new(), Relu::new(), Pooling::new(2, 2, 2, 0));
            // The direct sums' cases on an odd width (the pool drops a last
            // column), Winograd's on an even one (its outputs are whole blocks).
            let width = if tolerance == 0.0 { 12 } else { 11 };
            let x = Tensor::randn(&[images, filters[1], 12, width], 1.0, &mut rng);
            let [mut x_relu, mut y, mut r, mut p, mut pooled, mut inference] =
                std::array::from_fn(|_| Tensor::zeros(&[0]));
            relu_before.forward_train(&x, &mut x_relu, &mut rng);
            let x_in = if relu_first { &x_relu } else { &x };
            alone.forward_train(x_in, &mut y, &mut rng);
            relu.forward_train(&y, &mut r, &mut rng);
            pool.forward_train(&r, &mut p, &mut rng);
            let what = format!("{filters:?} pad {pad} relu_first {relu_first} {images} images");
            assert!(
                fused.forward_train_relu_pool(&x, relu_first, &mut pooled, &mut rng),
                "{what}"
            );
            assert_close(&format!("pooled {what}"), &pooled, &p, tolerance);
            assert!(fused.forward_relu_pool(&x, relu_first, &mut inference));
            assert_eq!(inference, pooled, "inference gives training's bits: {what}");
            let dp = Tensor::randn(p.shape(), 1.0, &mut rng);
            let [mut dr, mut dy, mut dx_in, mut dx, mut dx_fused] = std::array::from_fn(|_| Tensor::zeros(&[0]));
            pool.backward(&r, &p, &dp, Some(&mut dr));
            relu.backward(&y, &r, &dr, Some(&mut dy));
            alone.backward(x_in, &y, &dy, Some(&mut dx_in));
            match relu_first {
                true => relu_before.backward(&x, &x_relu, &dx_in, Some(&mut dx)),
                false => dx = dx_in,
            }
            assert!(fused.backward_relu_pool(&x, relu_first, (&pooled, &dp), Some(&mut dx_fused)));
            assert_close(&format!("dx {what}"), &dx_fused, &dx, tolerance);
            assert_close(&format!("dW {what}"), &fused.grad_w, &alone.grad_w, tolerance);
            assert_close(&format!("db {what}"), &fused.grad_b, &alone.grad_b, tolerance);
            // Again, and without the input gradient: the same bits.
            let (grad_w, grad_b) = (fused.grad_w.clone(), fused.grad_b.clone());
            let mut dx_again = Tensor::zeros(&[0]);
            assert!(fused.backward_relu_pool(&x, relu_first, (&pooled, &dp), Some(&mut dx_again)));
            assert_eq!(dx_again, dx_fused);
            assert!(fused.backward_relu_pool(&x, relu_first, (&pooled, &dp), None));
            assert_eq!((&fused.grad_w, &fused.grad_b), (&grad_w, &grad_b));
        }
        let mut rng = LayerRng::seed_from_u64(4);
        let mut y = Tensor::zeros(&[0]);
        // The direct sums do not take a ReLU before the layer.
        let mut direct = random_layer([4, 1, 3, 3], 1, 0, &mut rng);
        let x = Tensor::randn(&[2, 1, 6, 6], 1.0, &mut rng);
        assert!(!direct.forward_relu_pool(&x, true, &mut y));
        assert!(!direct.forward_train_relu_pool(&x, true, &mut y, &mut rng));
        // The shifted products without Winograd (2 channels) decline.
        let mut shifted = random_layer([4, 2, 3, 3], 1, 1, &mut rng);
        let x = Tensor::randn(&[2, 2, 6, 6], 1.0, &mut rng);
        assert!(!shifted.forward_relu_pool(&x, false, &mut y));
        assert!(!shifted.forward_train_relu_pool(&x, false, &mut y, &mut rng));
        assert!(!shifted.backward_relu_pool(&x, false, (&y, &y), None));
    }

    #[test]
    #[should_panic(expected = "without forward_train_relu_pool on this batch")]
    fn the_pooled_backward_refuses_another_kind_of_forward() {
        let mut rng = LayerRng::seed_from_u64(5);
        let mut layer = random_layer([4, 1, 3, 3], 1, 0, &mut rng);
        let x = Tensor::randn(&[2, 1, 6, 6], 1.0, &mut rng);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut rng);
        let pooled = Tensor::zeros(&[2, 4, 2, 2]);
        layer.backward_relu_pool(&x, false, (&pooled, &pooled), None);
    }

    /// A training forward pass on `[2, C, H, W]`, then backward on a batch
    /// of `other` (`[N, C, H', W']`) and a `dL/dy` that fits it.
    fn backward_on_another_batch(filters: [usize; 4], pad: usize, (h, w): (usize, usize), other: [usize; 4]) {
        let mut rng = LayerRng::seed_from_u64(6);
        let mut layer = random_layer(filters, 1, pad, &mut rng);
        let x = Tensor::randn(&[2, filters[1], h, w], 1.0, &mut rng);
        let mut y = Tensor::zeros(&[0]);
        layer.forward_train(&x, &mut y, &mut rng);
        let other_x = Tensor::randn(&other, 1.0, &mut rng);
        let out = layer.output_shape(&other[1..]).unwrap();
        let dy = Tensor::randn(&[other[0], out[0], out[1], out[2]], 1.0, &mut rng);
        layer.backward(&other_x, &y, &dy, None);
    }

    /// Images of as many values, turned (8x6 after 6x8): another shape.
    #[test]
    #[should_panic(expected = "backward without forward_train on this batch")]
    fn the_shifted_backward_refuses_a_batch_of_another_shape() {
        backward_on_another_batch([4, 3, 3, 3], 1, (6, 8), [2, 3, 8, 6]);
    }

    #[test]
    #[should_panic(expected = "backward without forward_train on this batch")]
    fn the_im2col_backward_refuses_a_batch_of_another_size() {
        backward_on_another_batch([4, 1, 5, 5], 0, (9, 9), [3, 1, 9, 9]);
    }

    #[test]
    fn the_backward_over_nonzeros_matches_the_dense_products() {
        check_backward_over_nonzeros::<f64>(1e-12);
        check_backward_over_nonzeros::<f32>(1e-4);
    }

    #[test]
    fn gradient_check_the_backward_over_nonzeros() {
        // conv - ReLU - conv - ReLU - pool: the second convolution's `G` is
        // at most a quarter nonzero (one value per 2x2 window), so its
        // backward always goes over the nonzero values; the first one's
        // (behind a ReLU only) about half, so it keeps the dense products.
        let mut model = crate::NetSpec::new(&[3, 6, 6])
            .conv_with(4, 3, 1, 1)
            .relu()
            .conv_with(5, 3, 1, 1)
            .relu()
            .pool(2)
            .affine(3)
            .build::<f64>(7)
            .unwrap();
        let mut rng = LayerRng::seed_from_u64(8);
        let x = Tensor::<f64>::randn(&[IMAGES_PER_TASK + 1, 3, 6, 6], 1.0, &mut rng);
        let labels = [0usize, 2, 1, 1, 0, 2];
        model.gradient(&x, crate::Target::Labels(&labels), &mut rng).unwrap();
        let numerical =
            crate::gradcheck::numerical_gradient(&model, &x, crate::Target::Labels(&labels), 1e-5, 0).unwrap();
        for (param, (name, num)) in model.params().iter().zip(&numerical) {
            let error = crate::gradcheck::relative_error(param.grad.as_slice(), num.as_slice());
            assert!(error < 1e-6, "{name}: {error}");
        }
    }

    #[test]
    fn an_empty_batch_gives_zero_gradients() {
        let mut rng = LayerRng::seed_from_u64(8);
        // The im2col route, and the shifted one by Winograd both ways.
        for (filters, channels) in [(3, 1), (16, 16)] {
            let mut layer = random_layer([filters, channels, 3, 3], 1, 0, &mut rng);
            layer.grad_w.fill(7.0);
            let x = Tensor::<f64>::zeros(&[0, channels, 6, 6]);
            let (mut y, mut dx) = (Tensor::zeros(&[0]), Tensor::zeros(&[0]));
            layer.forward_train(&x, &mut y, &mut rng);
            assert_eq!(y.shape(), &[0, filters, 4, 4]);
            layer.backward(&x, &y, &y, Some(&mut dx));
            assert_eq!(dx.shape(), x.shape());
            assert!(layer
                .grad_w
                .as_slice()
                .iter()
                .chain(layer.grad_b.as_slice())
                .all(|&g| g == 0.0));
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let mut rng = LayerRng::seed_from_u64(5);
        let layer = random_layer([2, 1, 5, 5], 1, 0, &mut rng);
        assert!(layer
            .output_shape(&[1, 4, 4])
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        assert!(layer
            .output_shape(&[2, 8, 8])
            .unwrap_err()
            .to_string()
            .contains("channels"));
        assert!(layer.output_shape(&[64]).is_err());
        assert_eq!(layer.output_shape(&[1, 28, 28]).unwrap(), vec![2, 24, 24]);
    }
}
