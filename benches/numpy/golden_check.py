"""An independent check of backprop-rs's first training steps: the book's
NumPy layers (book_two_layer_net.py: Affine, Relu, SoftmaxWithLoss in float64)
start from the initial weights that `cargo xtask train --export-golden N`
saved, take SGD steps on the same batches, and must find the same losses.

    python golden_check.py RUN_DIR MNIST_DIR

RUN_DIR holds initial.safetensors and golden.json (the batches' training
image indices, the losses backprop-rs computed, the learning rate). Exits 1
when a loss differs by more than 1e-4 relative (backprop-rs trains in f32;
the book's loss also adds 1e-7 inside its log).
"""

import json
import os
import struct
import sys

import numpy as np

from book_two_layer_net import Affine, Relu, SoftmaxWithLoss, load_mnist


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


def main():
    run_dir, mnist_dir = sys.argv[1], sys.argv[2]
    golden = json.load(open(os.path.join(run_dir, "golden.json")))
    if golden["optimizer"] != "sgd":
        sys.exit(f"golden_check replays SGD; this run used {golden['optimizer']}")
    params = read_safetensors(os.path.join(run_dir, "initial.safetensors"))
    names = sorted(k for k in params if k.startswith("W"))
    (x_train, t_train), _ = load_mnist(mnist_dir)
    lr = golden["learning_rate"]

    worst = 0.0
    for step, (batch, ours) in enumerate(zip(golden["batches"], golden["losses"])):
        affines = [Affine(params[w], params["b" + w[1:]]) for w in names]
        layers = []
        for i, affine in enumerate(affines):
            layers.append(affine)
            if i + 1 < len(affines):
                layers.append(Relu())
        last = SoftmaxWithLoss()
        out = x_train[batch].astype(np.float64)
        for layer in layers:
            out = layer.forward(out)
        loss = last.forward(out, t_train[batch])
        dout = last.backward()
        for layer in reversed(layers):
            dout = layer.backward(dout)
        for w, affine in zip(names, affines):
            params[w] = params[w] - lr * affine.dW
            params["b" + w[1:]] = params["b" + w[1:]] - lr * affine.db
        error = abs(loss - ours) / abs(loss)
        worst = max(worst, error)
        if error > 1e-4:
            sys.exit(f"step {step}: NumPy loss {loss:.7f}, backprop-rs {ours:.7f} (relative difference {error:.2e})")
    print(f"{len(golden['losses'])} steps: the book's NumPy layers agree with backprop-rs "
          f"(largest relative difference {worst:.2e})")


if __name__ == "__main__":
    main()
