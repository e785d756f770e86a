"""The book's three networks in PyTorch (eager, float32, CPU), timed the way
`cargo xtask train --json` times ours, for benches/compare_torch.sh.

    python book_nets.py MNIST_DIR default|simple-convnet|deep-convnet

- default: TwoLayerNet 784-50-10 ReLU, weights 0.01 * N(0, 1), SGD 0.1,
  10000 steps of 100 images drawn with replacement, the accuracy on all 60000
  training and 10000 test images every 600 steps and after the last
  (`cargo xtask train`).
- simple-convnet: the book's ch07 SimpleConvNet (conv 30 5x5, ReLU, pool 2,
  affine 100, ReLU, affine 10; weights 0.01 * N(0, 1)), Adam 0.001, one epoch
  of 600 steps of 100 (`train --model simple-convnet --epochs 1`).
- deep-convnet: the book's ch08 DeepConvNet (six 3x3 convolutions of 16, 16,
  32, 32, 64, 64 filters with three 2x2 pools, affine 50, dropout 0.5,
  affine 10, dropout 0.5; He initial weights), Adam 0.001, 100 steps of 100
  (`train --model deep-convnet --iters 100`).

Written as a PyTorch user would write it for speed on a CPU: the images
converted to float once, a batch gathered with index_select, torch.optim with
its fused-loop (foreach) updates, evaluation under no_grad in chunks. Two
warm-up steps run before the clock starts (oneDNN picks its kernels then).

Prints one JSON object: seconds_total, seconds_train, test_accuracy,
threads, torch.
"""

import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(dir_, name, offset):
    with gzip.open(os.path.join(dir_, name + ".gz"), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def images(dir_, name):
    pixels = load(dir_, name, 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return torch.from_numpy(pixels)


def labels(dir_, name):
    return torch.from_numpy(load(dir_, name, 8).astype(np.int64))


def normal_(layer, std):
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def two_layer_net():
    return nn.Sequential(
        nn.Flatten(),
        normal_(nn.Linear(784, 50), 0.01),
        nn.ReLU(),
        normal_(nn.Linear(50, 10), 0.01),
    )


def simple_convnet():
    return nn.Sequential(
        normal_(nn.Conv2d(1, 30, 5), 0.01),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        normal_(nn.Linear(30 * 12 * 12, 100), 0.01),
        nn.ReLU(),
        normal_(nn.Linear(100, 10), 0.01),
    )


def deep_convnet():
    def conv(c_in, c_out, pad):
        # He: std sqrt(2 / fan_in), fan_in = c_in * 3 * 3.
        return normal_(nn.Conv2d(c_in, c_out, 3, padding=pad), (2.0 / (c_in * 9)) ** 0.5)

    return nn.Sequential(
        conv(1, 16, 1), nn.ReLU(), conv(16, 16, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
        conv(16, 32, 1), nn.ReLU(), conv(32, 32, 2), nn.ReLU(), nn.MaxPool2d(2, 2),
        conv(32, 64, 1), nn.ReLU(), conv(64, 64, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        normal_(nn.Linear(64 * 4 * 4, 50), (2.0 / (64 * 4 * 4)) ** 0.5), nn.ReLU(), nn.Dropout(0.5),
        normal_(nn.Linear(50, 10), (2.0 / 50) ** 0.5), nn.Dropout(0.5),
    )


RECIPES = {
    # name: (network, optimizer, steps, evaluate every (0: before and after only), full training-set evaluations)
    "default": (two_layer_net, lambda p: torch.optim.SGD(p, lr=0.1), 10000, 600, True),
    "simple-convnet": (simple_convnet, lambda p: torch.optim.Adam(p, lr=0.001), 600, 0, False),
    "deep-convnet": (deep_convnet, lambda p: torch.optim.Adam(p, lr=0.001), 100, 0, False),
}


def main():
    data, recipe = sys.argv[1], sys.argv[2]
    make_net, make_optimizer, steps, eval_every, eval_train = RECIPES[recipe]
    torch.manual_seed(42)
    x_train, t_train = images(data, "train-images-idx3-ubyte"), labels(data, "train-labels-idx1-ubyte")
    x_test, t_test = images(data, "t10k-images-idx3-ubyte"), labels(data, "t10k-labels-idx1-ubyte")
    net = make_net()
    optimizer = make_optimizer(net.parameters())
    rng = np.random.default_rng(42)
    batches = torch.from_numpy(rng.integers(0, x_train.shape[0], size=(steps + 2, 100)))

    def step(batch):
        x, t = x_train.index_select(0, batch), t_train.index_select(0, batch)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), t)
        loss.backward()
        optimizer.step()

    def accuracy(x, t):
        net.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, x.shape[0], 1000):
                scores = net(x[start:start + 1000])
                correct += int((scores.argmax(1) == t[start:start + 1000]).sum())
        net.train()
        return correct / x.shape[0]

    def evaluate():
        if eval_train:
            accuracy(x_train, t_train)
        else:
            accuracy(x_train[:100], t_train[:100])
        return accuracy(x_test, t_test)

    # Warm-up (kernels chosen, memory pools filled) on two extra batches.
    net.train()
    for i in range(2):
        step(batches[steps + i])

    eval_seconds = 0.0
    start = time.perf_counter()
    for i in range(steps):
        if (eval_every and i % eval_every == 0) or (not eval_every and i == 0):
            t0 = time.perf_counter()
            evaluate()
            eval_seconds += time.perf_counter() - t0
        step(batches[i])
    t0 = time.perf_counter()
    test_acc = evaluate()
    eval_seconds += time.perf_counter() - t0
    seconds_total = time.perf_counter() - start
    print(json.dumps({
        "seconds_total": seconds_total,
        "seconds_train": seconds_total - eval_seconds,
        "test_accuracy": test_acc,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
