"""The book's chapter 7 SimpleConvNet in NumPy, written from its description,
for timing one epoch against backprop-rs on the same machine in the same run.

conv 30 filters 5x5 (stride 1, pad 0) - Relu - max pool 2x2 (stride 2) -
Affine 100 - Relu - Affine 10 - SoftmaxWithLoss, weights 0.01 * N(0, 1),
Adam (lr 0.001), batches of 100 drawn with replacement, 600 steps (one
epoch); then the test accuracy over the 10000 test images in batches of
100. Convolution and pooling go through im2col / col2im as in the book.
Images are float32 in [0, 1], weights float64, as the book's.

Prints one JSON object: seconds_epoch, seconds_eval, test_accuracy.
An optional second argument sets the number of steps (a smoke test).
"""

import json
import sys
import time

import numpy as np

from book_two_layer_net import Relu, load_mnist


def im2col(x, fh, fw, stride, pad):
    """[N, C, H, W] -> [N * OH * OW, C * FH * FW], one row per window."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.empty((n, c, fh, fw, oh, ow), dtype=x.dtype)
    for i in range(fh):
        for j in range(fw):
            col[:, :, i, j, :, :] = img[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, shape, fh, fw, stride, pad):
    """The adjoint of im2col: every column value added back to its pixel."""
    n, c, h, w = shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1))
    for i in range(fh):
        for j in range(fw):
            img[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += col[:, :, i, j, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


class Convolution:
    def __init__(self, w, b, stride=1, pad=0):
        self.w, self.b, self.stride, self.pad = w, b, stride, pad

    def forward(self, x):
        fn, _, fh, fw = self.w.shape
        n, _, h, w = x.shape
        oh, ow = (h + 2 * self.pad - fh) // self.stride + 1, (w + 2 * self.pad - fw) // self.stride + 1
        self.x, self.col = x, im2col(x, fh, fw, self.stride, self.pad)
        self.col_w = self.w.reshape(fn, -1).T
        out = self.col @ self.col_w + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, c, fh, fw = self.w.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        self.dw = (self.col.T @ dout).transpose(1, 0).reshape(fn, c, fh, fw)
        return col2im(dout @ self.col_w.T, self.x.shape, fh, fw, self.stride, self.pad)


class Pooling:
    def __init__(self, ph, pw, stride):
        self.ph, self.pw, self.stride = ph, pw, stride

    def forward(self, x):
        n, c, h, w = x.shape
        oh, ow = (h - self.ph) // self.stride + 1, (w - self.pw) // self.stride + 1
        col = im2col(x, self.ph, self.pw, self.stride, 0).reshape(-1, self.ph * self.pw)
        self.x, self.arg_max = x, np.argmax(col, axis=1)
        return np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        size = self.ph * self.pw
        dmax = np.zeros((dout.size, size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dcol = dmax.reshape(dout.shape + (size,)).reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x.shape, self.ph, self.pw, self.stride, 0)


class Affine:
    def __init__(self, w, b):
        self.w, self.b = w, b

    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.w + self.b

    def backward(self, dout):
        self.dw, self.db = self.x.T @ dout, dout.sum(axis=0)
        return (dout @ self.w.T).reshape(self.shape)


def softmax_loss(z, t):
    z = z - z.max(axis=1, keepdims=True)
    y = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = z.shape[0]
    loss = -np.log(y[np.arange(n), t] + 1e-7).sum() / n
    dz = y.copy()
    dz[np.arange(n), t] -= 1
    return loss, dz / n


def main():
    (x_train, t_train), (x_test, t_test) = load_mnist(sys.argv[1])
    x_train, x_test = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(42)
    std = 0.01
    conv = Convolution(std * rng.standard_normal((30, 1, 5, 5)), np.zeros(30))
    affine1 = Affine(std * rng.standard_normal((30 * 12 * 12, 100)), np.zeros(100))
    affine2 = Affine(std * rng.standard_normal((100, 10)), np.zeros(10))
    layers = [conv, Relu(), Pooling(2, 2, 2), affine1, Relu(), affine2]
    params = [(conv, "w", "dw"), (conv, "b", "db"), (affine1, "w", "dw"), (affine1, "b", "db"),
              (affine2, "w", "dw"), (affine2, "b", "db")]
    # Adam, the book's formulas and defaults.
    lr, beta1, beta2 = 0.001, 0.9, 0.999
    m = [np.zeros_like(getattr(layer, name)) for layer, name, _ in params]
    v = [np.zeros_like(getattr(layer, name)) for layer, name, _ in params]

    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = rng.choice(x_train.shape[0], 100)
        out = x_train[batch]
        for layer in layers:
            out = layer.forward(out)
        _, dout = softmax_loss(out, t_train[batch])
        for layer in reversed(layers):
            dout = layer.backward(dout)
        lr_t = lr * np.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
        for k, (layer, name, grad_name) in enumerate(params):
            grad = getattr(layer, grad_name)
            m[k] += (1 - beta1) * (grad - m[k])
            v[k] += (1 - beta2) * (grad ** 2 - v[k])
            setattr(layer, name, getattr(layer, name) - lr_t * m[k] / (np.sqrt(v[k]) + 1e-7))
    seconds_epoch = time.perf_counter() - start

    start = time.perf_counter()
    correct = 0
    for i in range(0, x_test.shape[0], 100):
        out = x_test[i:i + 100]
        for layer in layers:
            out = layer.forward(out)
        correct += int((out.argmax(axis=1) == t_test[i:i + 100]).sum())
    seconds_eval = time.perf_counter() - start
    print(json.dumps({
        "seconds_epoch": seconds_epoch,
        "seconds_eval": seconds_eval,
        "test_accuracy": correct / x_test.shape[0],
    }))


if __name__ == "__main__":
    main()
