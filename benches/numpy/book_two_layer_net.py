"""The book's chapter 5 network in NumPy, written from its description, for
timing against backprop-rs on the same machine in the same run.

Layers (Affine, Relu, SoftmaxWithLoss), TwoLayerNet(784, 50, 10,
weight_init_std=0.01), numerical_gradient (central difference, h = 1e-4),
and train_neuralnet.py: SGD at 0.1, batch 100 with replacement, 10000
iterations, train and test accuracy every 600 iterations. As in the book,
images are float32 in [0, 1] and the weights float64, so the arithmetic is
float64.

Prints one JSON object: seconds_total, seconds_train, test_accuracy,
numerical_seconds, backprop_seconds.
"""

import gzip
import json
import os
import sys
import time

import numpy as np


def load(dir_, name, offset):
    with gzip.open(os.path.join(dir_, name + ".gz"), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_mnist(dir_):
    x_train = load(dir_, "train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255.0
    t_train = load(dir_, "train-labels-idx1-ubyte", 8)
    x_test = load(dir_, "t10k-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255.0
    t_test = load(dir_, "t10k-labels-idx1-ubyte", 8)
    return (x_train, t_train), (x_test, t_test)


def softmax(x):
    x = x - np.max(x, axis=1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True)


def cross_entropy_error(y, t):
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class Relu:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx


class SoftmaxWithLoss:
    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        return cross_entropy_error(self.y, t)

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(batch_size), self.t] -= 1
        return dx * dout / batch_size


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, seed=42):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }
        self.layers = [Affine(self.params["W1"], self.params["b1"]), Relu(), Affine(self.params["W2"], self.params["b2"])]
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        return np.sum(np.argmax(self.predict(x), axis=1) == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        h = 1e-4
        grads = {}
        for key, param in self.params.items():
            grad = np.zeros_like(param)
            it = np.nditer(param, flags=["multi_index"])
            while not it.finished:
                idx = it.multi_index
                original = param[idx]
                param[idx] = original + h
                plus = self.loss(x, t)
                param[idx] = original - h
                minus = self.loss(x, t)
                grad[idx] = (plus - minus) / (2 * h)
                param[idx] = original
                it.iternext()
            grads[key] = grad
        return grads

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        a1, a2 = self.layers[0], self.layers[2]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}


def main():
    (x_train, t_train), (x_test, t_test) = load_mnist(sys.argv[1])

    # Gradient check timing on the first 3 images.
    net = TwoLayerNet(784, 50, 10)
    x3, t3 = x_train[:3], t_train[:3]
    start = time.perf_counter()
    for _ in range(200):
        net.gradient(x3, t3)
    backprop_seconds = (time.perf_counter() - start) / 200
    start = time.perf_counter()
    net.numerical_gradient(x3, t3)
    numerical_seconds = time.perf_counter() - start

    # The training run.
    net = TwoLayerNet(784, 50, 10)
    rng = np.random.default_rng(42)
    iters, batch_size, lr = 10000, 100, 0.1
    iter_per_epoch = max(x_train.shape[0] // batch_size, 1)
    eval_seconds = 0.0
    start = time.perf_counter()
    for i in range(iters):
        batch_mask = rng.choice(x_train.shape[0], batch_size)
        grads = net.gradient(x_train[batch_mask], t_train[batch_mask])
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= lr * grads[key]
        if i % iter_per_epoch == 0:
            t0 = time.perf_counter()
            net.accuracy(x_train, t_train)
            test_acc = net.accuracy(x_test, t_test)
            eval_seconds += time.perf_counter() - t0
    seconds_total = time.perf_counter() - start
    print(json.dumps({
        "seconds_total": seconds_total,
        "seconds_train": seconds_total - eval_seconds,
        "test_accuracy": float(test_acc),
        "numerical_seconds": numerical_seconds,
        "backprop_seconds": backprop_seconds,
    }))


if __name__ == "__main__":
    main()
