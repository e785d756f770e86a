"""The default run of backprop-rs (the book's train_neuralnet.py) in JAX, jit
compiled, float32 on the CPU, for timing against ours on the same machine in
the same run.

TwoLayerNet 784-50-10 (Affine, Relu, Affine, softmax with the book's
cross-entropy), weights 0.01 * N(0, 1), SGD at 0.1, batches of 100 drawn with
replacement, 10000 iterations, the accuracy on all 60000 training and 10000
test images every 600 iterations and after the last step, as
`cargo xtask train` does.

Written to be as fast as JAX allows: the images live on the device as bytes,
each step is one jitted call that gathers its batch, converts it, and updates
the parameters in place (donated buffers); an evaluation is one jitted call
per set. The functions are compiled before the clock starts.

Prints one JSON object: seconds_total, seconds_train, test_accuracy.
"""

import gzip
import json
import os
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp


def load(dir_, name, offset):
    with gzip.open(os.path.join(dir_, name + ".gz"), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def predict(params, x):
    w1, b1, w2, b2 = params
    return jnp.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def loss(params, x, t):
    y = jax.nn.softmax(predict(params, x))
    return -jnp.mean(jnp.log(y[jnp.arange(x.shape[0]), t] + 1e-7))


def pixels(images):
    return images.astype(jnp.float32) / 255.0


@jax.jit
def correct(params, images, labels):
    return jnp.sum(jnp.argmax(predict(params, pixels(images)), axis=1) == labels)


def main():
    data = sys.argv[1]
    x_train = jnp.asarray(load(data, "train-images-idx3-ubyte", 16).reshape(-1, 784))
    t_train = jnp.asarray(load(data, "train-labels-idx1-ubyte", 8).astype(np.int32))
    x_test = jnp.asarray(load(data, "t10k-images-idx3-ubyte", 16).reshape(-1, 784))
    t_test = jnp.asarray(load(data, "t10k-labels-idx1-ubyte", 8).astype(np.int32))
    iters, batch_size, lr, eval_every = 10000, 100, 0.1, 600

    @jax.jit
    def step(params, batch):
        x, t = pixels(x_train[batch]), t_train[batch]
        value, grads = jax.value_and_grad(loss)(params, x, t)
        return tuple(p - lr * g for p, g in zip(params, grads)), value

    step = jax.jit(step.__wrapped__, donate_argnums=0)

    rng = np.random.default_rng(42)
    init = lambda shape: jnp.asarray((0.01 * rng.standard_normal(shape)).astype(np.float32))
    params = (init((784, 50)), jnp.zeros(50, jnp.float32), init((50, 10)), jnp.zeros(10, jnp.float32))
    batches = rng.integers(0, x_train.shape[0], size=(iters, batch_size)).astype(np.int32)

    # Compile before the clock starts (on copies: the step donates its input).
    warm = tuple(jnp.array(p) for p in params)
    jax.block_until_ready(step(warm, batches[0]))
    jax.block_until_ready((correct(params, x_train, t_train), correct(params, x_test, t_test)))

    def evaluate(params):
        train = int(correct(params, x_train, t_train))
        test = int(correct(params, x_test, t_test))
        return train / x_train.shape[0], test / x_test.shape[0]

    eval_seconds = 0.0
    start = time.perf_counter()
    for i in range(iters):
        if i % eval_every == 0:
            t0 = time.perf_counter()
            evaluate(params)
            eval_seconds += time.perf_counter() - t0
        params, _ = step(params, batches[i])
    t0 = time.perf_counter()
    _, test_acc = evaluate(params)
    eval_seconds += time.perf_counter() - t0
    seconds_total = time.perf_counter() - start
    print(json.dumps({
        "seconds_total": seconds_total,
        "seconds_train": seconds_total - eval_seconds,
        "test_accuracy": test_acc,
    }))


if __name__ == "__main__":
    main()
