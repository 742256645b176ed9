"""Shared fixtures: every test that takes ``device`` runs on NumPy and array-api-strict (and CuPy if present).

Set ``MINIRN_TEST_DEVICES=gpu`` (comma-separated) to choose the devices, e.g.
on a GPU machine.  Every test that takes ``device`` carries the marker ``device``
(and ``gpu`` on the GPU), so ``-m device`` selects exactly the device-parametrised
tests (``benchmarks/gpu_check.sh`` runs them).
"""
import os

import numpy as np
import pytest

import minirn
from minirn import backend

_ALL = ["cpu", "strict", "gpu"]
_CHOSEN = [d for d in os.environ.get("MINIRN_TEST_DEVICES", "cpu,strict,gpu").split(",") if d]


def pytest_configure(config):
    config.addinivalue_line("markers", "device: takes the device fixture (selected by benchmarks/gpu_check.sh)")


def _device_params():
    params = []
    for name in _ALL:
        if name not in _CHOSEN:
            continue
        marks = [pytest.mark.device] + ([pytest.mark.gpu] if name == "gpu" else [])
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_device_params())
def device(request):
    """A minirn device name; skipped when this machine cannot provide it."""
    if not backend.device_available(request.param):
        pytest.skip(f"device {request.param!r} is not available here")
    return request.param


@pytest.fixture
def rng():
    """A seeded NumPy generator for test data."""
    return np.random.default_rng(0)


def make_tensor(data, device, requires_grad=False, dtype="float64"):
    """A tensor on ``device`` from NumPy data (float64 by default, for gradient checks)."""
    return minirn.tensor(np.asarray(data), requires_grad=requires_grad, dtype=dtype, device=device)


def to_numpy(x):
    """A Tensor or backend array as a NumPy array."""
    if isinstance(x, minirn.Tensor):
        return x.numpy()
    return backend.to_host(x)
