"""Shared helpers of the attack tests: tiny models, data, and a small model trained on sklearn digits."""
import functools

import numpy as np

import minirn
from minirn import backend, nn
from minirn.nn import functional as F


def tiny_cnn(norm="bn", device="cpu", seed=0, channels=4, num_classes=3):
    """A small_cnn-like model for (N, 1, H, W) inputs: conv → norm → ReLU → conv(stride 2) → norm → ReLU → pool → linear."""
    g = np.random.default_rng(seed)

    def make(c):
        return {"bn": nn.BatchNorm2d, "rn": nn.RobustNorm2d}[norm](c) if norm != "none" else nn.Identity()

    model = nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1, bias=norm == "none", generator=g), make(channels), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=norm == "none", generator=g), make(channels),
        nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(channels, num_classes, generator=g),
    )
    # non-trivial running statistics and affine parameters, so "running" differs from "batch"
    for layer in nn.norm_layers(model):
        c = layer.num_features
        layer.running_mean = backend.to_device(g.uniform(-0.2, 0.2, c).astype("float32"), "cpu")
        name = "running_var" if isinstance(layer, nn.BatchNorm2d) else "running_range"
        layer._buffers[name] = backend.to_device(g.uniform(0.5, 1.5, c).astype("float32"), "cpu")
        layer.weight.data = backend.to_device(g.uniform(0.5, 1.5, c).astype("float32"), "cpu")
        layer.bias.data = backend.to_device(g.uniform(-0.3, 0.3, c).astype("float32"), "cpu")
    return model.to(device=device)


def images(n=4, shape=(1, 8, 8), seed=0, low=0.0, high=1.0, device="cpu", dtype="float32"):
    """(n, *shape) uniform images in [low, high] as a backend array."""
    data = np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype(dtype)
    return backend.to_device(data, device)


def labels(n=4, num_classes=3, seed=1, device="cpu"):
    return backend.to_device(np.random.default_rng(seed).integers(0, num_classes, n).astype("int64"), device)


def predictions(model, x):
    with minirn.no_grad(), minirn.freeze_running_stats():
        return backend.to_host(model(minirn.tensor(x)).data).argmax(axis=1)


def cross_entropy(model, x, y):
    """Per-example cross-entropy as NumPy (N,)."""
    with minirn.no_grad(), minirn.freeze_running_stats():
        return backend.to_host(F.cross_entropy(model(minirn.tensor(x)), y, reduction="none").data)


def load_digits():
    """sklearn's 8x8 digits scaled to [0, 1]: (x (1797, 1, 8, 8) float32, y (1797,) int64)."""
    from sklearn.datasets import load_digits as load

    data = load()
    return (data.images / 16.0).astype("float32")[:, None], data.target.astype("int64")


def digits_mlp(seed):
    g = np.random.default_rng(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64, generator=g), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Linear(64, 10, generator=g))


@functools.cache
def trained_digits(seed=0, epochs=8):
    """An MLP with BatchNorm trained on the first 1200 digits with plain SGD; returns (model in eval mode, x_test, y_test).

    x_test/y_test are the last 400 digits, NumPy arrays.  Cached: one training per seed per session.
    """
    x, y = load_digits()
    x_train, y_train, x_test, y_test = x[:1200], y[:1200], x[-400:], y[-400:]
    model = digits_mlp(seed)
    order = np.random.default_rng(seed)
    lr = 0.1
    for _ in range(epochs):
        perm = order.permutation(len(x_train))
        for start in range(0, len(perm), 32):
            idx = perm[start:start + 32]
            loss = F.cross_entropy(model(minirn.tensor(x_train[idx])), y_train[idx])
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data = p.data - lr * p.grad
    model.zero_grad()
    return model.eval(), x_test, y_test
