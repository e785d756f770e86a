"""An independent check of backprop-rs's first training steps: the book's
NumPy layers (float64) start from the initial weights that
`cargo xtask train --export-golden N` saved, take the same optimizer's steps
on the same batches, and must find the same losses.

    python golden_check.py RUN_DIR MNIST_DIR

RUN_DIR holds initial.safetensors and golden.json (the batches' training
image indices, the losses backprop-rs computed, the learning rate, the
optimizer), and config.json (read for Adam's beta1 and beta2, the book's
0.9 and 0.999 when it is missing; a run with weight decay or dropout is
refused, as is any network other than the two below).

The network is read off the tensors in initial.safetensors:
  - W1 b1 ... Wk bk, all W 2-D: the book's chapter-5 MLP (Affine - Relu -
    ... - Affine - SoftmaxWithLoss, book_two_layer_net.py);
  - W1 4-D [FN, C, FH, FW] then W2 W3 2-D: the chapter-7 SimpleConvNet
    (Convolution(stride 1, pad 0) - Relu - Pooling(2x2, stride 2) - Affine -
    Relu - Affine - SoftmaxWithLoss, book_simple_convnet.py), the images
    shaped [N, 1, 28, 28].
The optimizer is golden.json's: sgd (the book's SGD) or adam (the book's
Adam: lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t), m += (1 - beta1)(g - m),
v += (1 - beta2)(g^2 - v), p -= lr_t * m / (sqrt(v) + 1e-7)).

Exits 1 when a loss differs from backprop-rs's by more than 1e-6 relative.
The loss compared is the exact mean cross-entropy of the book's logits
(cross_entropy below), as backprop-rs computes it; the book's
SoftmaxWithLoss, which adds 1e-7 inside its log, still drives the backward
pass (the 1e-7 changes nothing there).

N and the tolerance, measured (seed 42, real MNIST; backprop-rs trains in
f32, this replay runs in f64). Largest relative loss difference over the
first N steps:

    steps N                       10       20       30       50       100
    mlp + sgd                   5.2e-8   5.3e-8   5.3e-8   5.9e-8   7.9e-8
    simple-convnet + adam       4.4e-8   5.7e-8   4.8e-7   8.2e-6   4.3e-4
    same, NumPy f32 vs f64      8e-10    6.5e-8   5.3e-7   8.1e-6   4.3e-4

Up to about step 20 the differences are the f32 rounding of the loss value
itself (an f32 ulp is 6e-8 relative). After that the convnet's f32 and f64
trajectories part (Adam divides each gradient by its own running size, so
rounding errors in small gradients are not kept small by it). The last row
shows that this is f32 arithmetic, not backprop-rs: the same NumPy layers
run in f32 drift from the f64 replay by the same amounts at every N. Hence CI replays 100 steps of
the mlp but 20 of the convnet, and the tolerance 1e-6 is 12 times the
largest difference seen in those (7.9e-8) and still twice the convnet's at 30
steps. Wrong replays of the convnet's 20 steps all fail, by 3.5 to 2000
times the tolerance: learning rate x1.01 (6.7e-6 at step 1), beta2 0.9989
for 0.999 (3.7e-6 at step 1), beta1 0.89 (3.5e-6 at step 2), one image of
the first batch moved by one index (3.4e-5 at step 1), of the tenth batch
(batch 10: 4.3e-4), of the last (2.1e-3); the mlp's lr x1.01 shows 3.5e-6 at step 1.
(With the book's 1e-7 in the log, the convnet would differ by 4e-7 from the
first step and by 2e-2 at step 64, a batch holding a confidently wrong
image.)
"""

import json
import os
import struct
import sys

import numpy as np

import book_simple_convnet as cnn
from book_two_layer_net import Affine, Relu, SoftmaxWithLoss, load_mnist

# The relative loss difference allowed (see the docstring).
TOLERANCE = 1e-6


def read_safetensors(path):
    """{name: float64 array} from a safetensors file (F32 or F64 tensors)."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F64": np.float64}[info["dtype"]]
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"]).astype(np.float64)
    return tensors


def cross_entropy(z, t):
    """The mean cross-entropy of softmax(z) for labels t, exactly: log-sum-exp
    minus the target's logit. backprop-rs reports this; the book's
    SoftmaxWithLoss.forward adds 1e-7 inside its log, which changes the loss
    by about 1e-7 / y per image (4e-7 relative at the start, 2e-2 on a batch
    that holds one confidently wrong image) and nothing in the backward pass."""
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(lse - z[np.arange(z.shape[0]), t]))


def network_kind(params):
    """'mlp' or 'simple-convnet' from the tensors' names and shapes; exits on anything else."""
    count = len(params) // 2
    expected = {f"{p}{i}" for i in range(1, count + 1) for p in "Wb"}
    if set(params) != expected:
        sys.exit(f"golden_check knows W1 b1 ... Wk bk only; the run saved {sorted(params)}")
    dims = [params[f"W{i}"].ndim for i in range(1, count + 1)]
    if all(d == 2 for d in dims):
        return "mlp"
    if dims == [4, 2, 2]:
        fn, c, fh, fw = params["W1"].shape
        pooled = fn * ((28 - fh + 1) // 2) * ((28 - fw + 1) // 2)
        if c == 1 and params["W2"].shape[0] == pooled:
            return "simple-convnet"
    shapes = {k: list(v.shape) for k, v in params.items()}
    sys.exit(f"golden_check knows the mlp and SimpleConvNet; these tensors are neither: {shapes}")


def build(kind, params):
    """The book's layers on the current weights, and for each parameter name a
    function returning its gradient after the backward pass."""
    if kind == "mlp":
        count = len(params) // 2
        affines = [Affine(params[f"W{i}"], params[f"b{i}"]) for i in range(1, count + 1)]
        layers = []
        for i, affine in enumerate(affines):
            layers.append(affine)
            if i + 1 < count:
                layers.append(Relu())
        grads = {}
        for i, affine in enumerate(affines, start=1):
            grads[f"W{i}"] = lambda a=affine: a.dW
            grads[f"b{i}"] = lambda a=affine: a.db
        return layers, grads
    conv = cnn.Convolution(params["W1"], params["b1"], stride=1, pad=0)
    affine1 = cnn.Affine(params["W2"], params["b2"])
    affine2 = cnn.Affine(params["W3"], params["b3"])
    layers = [conv, Relu(), cnn.Pooling(2, 2, 2), affine1, Relu(), affine2]
    grads = {}
    for i, layer in ((1, conv), (2, affine1), (3, affine2)):
        grads[f"W{i}"] = lambda l=layer: l.dw
        grads[f"b{i}"] = lambda l=layer: l.db
    return layers, grads


class SGD:
    """The book's SGD."""

    def __init__(self, lr):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] = params[key] - self.lr * grads[key]


class Adam:
    """The book's Adam (common/optimizer.py), eps 1e-7 inside the denominator."""

    def __init__(self, lr, beta1, beta2):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] = params[key] - lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


def optimizer(golden, settings):
    kind, lr = golden["optimizer"], golden["learning_rate"]
    if kind == "sgd":
        return SGD(lr)
    if kind == "adam":
        return Adam(lr, golden.get("beta1", settings.get("beta1", 0.9)),
                    golden.get("beta2", settings.get("beta2", 0.999)))
    sys.exit(f"golden_check replays sgd and adam; this run used {kind}")


def replay(run_dir, mnist_dir):
    """(network kind, optimizer, iterator of (step, NumPy loss, backprop-rs
    loss)) for the run in run_dir; the steps are replayed as they are read."""
    golden = json.load(open(os.path.join(run_dir, "golden.json")))
    settings = {}
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(config_path):
        settings = json.load(open(config_path)).get("settings", {})
    for key in ("weight_decay", "dropout"):
        if settings.get(key):
            sys.exit(f"golden_check replays runs without {key}; this run has {settings[key]}")
    params = read_safetensors(os.path.join(run_dir, "initial.safetensors"))
    kind = network_kind(params)
    if kind == "mlp" and settings.get("activation", "relu") != "relu":
        sys.exit(f"golden_check replays the mlp with relu; this run used {settings['activation']}")
    opt = optimizer(golden, settings)
    (x_train, t_train), _ = load_mnist(mnist_dir)
    if kind == "simple-convnet":
        x_train = x_train.reshape(-1, 1, 28, 28)

    def steps():
        for step, (batch, ours) in enumerate(zip(golden["batches"], golden["losses"])):
            layers, grads = build(kind, params)
            last = SoftmaxWithLoss()
            out = x_train[batch].astype(np.float64)
            for layer in layers:
                out = layer.forward(out)
            last.forward(out, t_train[batch])
            loss = cross_entropy(out, t_train[batch])
            dout = last.backward()
            for layer in reversed(layers):
                dout = layer.backward(dout)
            opt.update(params, {k: grad() for k, grad in grads.items()})
            yield step, loss, ours

    return kind, golden["optimizer"], steps()


def main():
    run_dir, mnist_dir = sys.argv[1], sys.argv[2]
    kind, opt, steps = replay(run_dir, mnist_dir)
    worst, count = 0.0, 0
    for step, loss, ours in steps:
        error = abs(loss - ours) / abs(loss)
        worst, count = max(worst, error), count + 1
        if error > TOLERANCE:
            sys.exit(f"{kind} + {opt}, step {step}: NumPy loss {loss:.7f}, backprop-rs {ours:.7f} "
                     f"(relative difference {error:.2e} > {TOLERANCE:.0e})")
    if count == 0:
        sys.exit("golden.json records no steps")
    print(f"{kind} + {opt}, {count} steps: the book's NumPy layers agree with backprop-rs "
          f"(largest relative difference {worst:.2e}, tolerance {TOLERANCE:.0e})")


if __name__ == "__main__":
    main()
