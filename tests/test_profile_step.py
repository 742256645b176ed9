"""benchmarks/profile_step.py --products: it records every matrix product a step makes (through NumPy and
through the array-API namespace minirn uses), replays exactly those shapes, and leaves NumPy as it found it."""
import importlib.util
from pathlib import Path

import array_api_compat.numpy as compat_numpy
import numpy as np

import minirn
from minirn import backend
from minirn.nn import functional as F
from minirn.nn.functional import normalization

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"


def load_script():
    spec = importlib.util.spec_from_file_location("profile_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorded_products_sees_the_layers_products_and_restores_numpy():
    profile_step = load_script()
    original, original_compat = np.matmul, compat_numpy.matmul
    x = minirn.tensor(np.ones((5, 3), dtype=np.float32), requires_grad=True)
    w = minirn.tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    calls = []
    with profile_step.recorded_products(calls):
        F.linear(x, w).sum().backward()  # x W^T, then G W and G^T x
    assert np.matmul is original and compat_numpy.matmul is original_compat  # each put back as it was
    shapes = sorted((a.shape, b.shape) for a, b in calls)
    assert shapes == sorted([((5, 3), (3, 4)), ((5, 4), (4, 3)), ((4, 5), (5, 3))])


def test_floor_replays_the_step_products_and_copies_and_counts_their_flops(monkeypatch):
    profile_step = load_script()
    monkeypatch.setattr(profile_step.bench, "SETTLE_SECONDS", 0.0)
    a, b = np.ones((64, 32), dtype=np.float32), np.ones((32, 8), dtype=np.float32)
    images = np.ones((2, 6, 6, 3), dtype=np.float32)
    steps, copied = [], []
    original_im2col = backend.im2col

    def step():
        steps.append(1)
        np.matmul(a, b)
        np.matmul(b.T, a.T)  # a transposed view: replayed in Fortran order
        backend.im2col(images, (3, 3), (1, 1))

    def counting_im2col(x, kernel, stride):
        copied.append((x.shape, kernel, stride))
        return original_im2col(x, kernel, stride)

    monkeypatch.setattr(backend, "im2col", counting_im2col)
    r = profile_step.floor(step, None, steps=2)
    assert r["count"] == 2 and r["torch"] is None and r["norm_layers"] == 0
    assert r["gflop"] == 2 * (64 * 32 * 8 + 8 * 32 * 64) / 1e9
    assert all(r[k] > 0 for k in ("products", "copies", "step"))
    assert len(steps) == 1 + 1 + 1 + 2  # warm-up, recorded, warm-up of the timing, two timed
    # the step's own copies (one per call of the step) and the replay's (1 warm-up + 2 timed), of the same images
    assert copied == [((2, 6, 6, 3), (3, 3), (1, 1))] * (len(steps) + 3)
    assert backend.im2col is counting_im2col  # the recorder put back what it found
    assert "__call__" not in vars(normalization._BatchStatisticsNorm)  # inherited from Function again
