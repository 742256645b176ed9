"""minirn.backend.random: random numbers drawn on the host, the same on every device."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import backend
from tests.conftest import to_numpy


@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_random_helpers_are_seeded_and_device_independent(device, draw):
    sample = getattr(backend, draw)
    a = sample(123, (3, 4), device=device)
    b = sample(123, (3, 4), device=device)
    on_cpu = sample(123, (3, 4), device="cpu")
    assert backend.device_of(a) == device
    assert backend.dtype_name(a.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(to_numpy(a), on_cpu)
    assert not np.array_equal(to_numpy(sample(124, (3, 4), device=device)), on_cpu)
    wide = sample(np.random.default_rng(5), (4,), dtype="float64", device=device)
    assert backend.dtype_name(wide.dtype) == "float64"


def test_random_helpers_respect_their_parameters():
    u = backend.uniform(0, (20000,), low=-2.0, high=3.0)
    assert u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.05
    z = backend.normal(0, (20000,), mean=1.0, std=2.0, dtype="float64")
    assert abs(z.mean() - 1.0) < 0.05 and abs(z.std() - 2.0) < 0.05


def test_manual_seed_makes_the_global_generator_reproducible(monkeypatch):
    monkeypatch.setattr(backend.random, "_global_generator", backend.random._global_generator)  # restored afterwards
    backend.manual_seed(7)
    first = backend.normal(None, (5,))
    backend.manual_seed(7)
    np.testing.assert_array_equal(backend.normal(None, (5,)), first)
    assert not np.array_equal(backend.normal(None, (5,)), first)  # the global generator advances


def test_rng_accepts_int_generator_or_none():
    generator = np.random.default_rng(1)
    assert backend.rng(generator) is generator
    assert backend.rng(None) is backend.rng(None)
    assert backend.rng(3).integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)


def test_permutation_is_a_seeded_permutation():
    p = backend.permutation(4, 10)
    assert p.dtype == np.int64
    np.testing.assert_array_equal(np.sort(p), np.arange(10))
    np.testing.assert_array_equal(p, backend.permutation(4, 10))
