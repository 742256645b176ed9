"""PyTorch as an independent oracle for the layers with the most index bookkeeping.

Forward values and input gradients under a random upstream gradient, in
float64, to about 1e-10 relative.  Skipped when PyTorch is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

import minirn.nn.functional as F
from minirn import backend
from tests.conftest import make_tensor, to_numpy

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

RTOL, ATOL = 1e-10, 1e-12


def compare_with_torch(device, ours, theirs, arrays, seed=0):
    """Run ``ours`` (minirn) and ``theirs`` (torch) on the same float64 arrays, backprop one random upstream gradient."""
    mine = [make_tensor(a, device, requires_grad=True) for a in arrays]
    ref = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, expected = ours(*mine), theirs(*ref)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg="forward")
    upstream = np.random.default_rng(seed).standard_normal(tuple(expected.shape))
    out.backward(backend.to_device(upstream, device))
    expected.backward(torch.tensor(upstream))
    for i, (m, r) in enumerate(zip(mine, ref)):
        np.testing.assert_allclose(to_numpy(m.grad), r.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"gradient of input {i}")


@pytest.mark.parametrize(
    ("stride", "padding", "kernel"),
    [(1, 0, (3, 3)), (1, 1, (3, 3)), (2, 1, (3, 3)), (2, 0, (2, 2)), ((2, 1), (0, 1), (2, 3)), (3, 2, (3, 3))],
)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d(device, rng, stride, padding, kernel, bias):
    arrays = [rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, *kernel))]
    if bias:
        arrays.append(rng.standard_normal(4))
    compare_with_torch(
        device,
        lambda *t: F.conv2d(*t, stride=stride, padding=padding),
        lambda *t: torch.nn.functional.conv2d(*t, stride=stride, padding=padding),
        arrays,
    )


@pytest.mark.parametrize("bias", [False, True])
def test_linear(device, rng, bias):
    arrays = [rng.standard_normal((5, 4)), rng.standard_normal((3, 4))] + ([rng.standard_normal(3)] if bias else [])
    compare_with_torch(device, F.linear, torch.nn.functional.linear, arrays)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(device, rng, reduction):
    labels = np.array([0, 4, 2, 2, 1, 3])
    compare_with_torch(
        device,
        lambda z: F.cross_entropy(z, backend.to_device(labels, device), reduction=reduction),
        lambda z: torch.nn.functional.cross_entropy(z, torch.tensor(labels), reduction=reduction),
        [3 * rng.standard_normal((6, 5))],
    )


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, None, 0), (3, 1, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (3, None, 1)]
)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling(device, rng, mode, kernel, stride, padding):
    ours = F.max_pool2d if mode == "max" else F.avg_pool2d
    theirs = torch.nn.functional.max_pool2d if mode == "max" else torch.nn.functional.avg_pool2d
    compare_with_torch(
        device,
        lambda x: ours(x, kernel, stride, padding),
        lambda x: theirs(x, kernel, stride, padding),
        [rng.standard_normal((2, 3, 7, 8))],
    )


@pytest.mark.parametrize("axis", [1, 0, -1])
def test_log_softmax(device, rng, axis):
    compare_with_torch(
        device,
        lambda z: F.log_softmax(z, axis=axis),
        lambda z: torch.log_softmax(z, dim=axis),
        [5 * rng.standard_normal((4, 6))],
    )
