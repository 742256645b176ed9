"""Random numbers: drawn on the host by a seeded NumPy ``Generator``, then moved to the device.

The Array API standard has no random number generation at all, and the
generators of NumPy and CuPy differ, so one seed would give different numbers
on different devices.  minirn therefore draws every random number (layer
initialisation, data shuffling, attack starts) on the host and copies it to the
device: one seed gives the same numbers everywhere.

The global generator that :func:`manual_seed` reseeds lives here, and only here.
"""
from __future__ import annotations

import numpy as np

from minirn.backend.devices import DEFAULT_DEVICE, _dtype_name, to_device

_global_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the global generator that layer initialisation draws from (like ``torch.manual_seed``)."""
    global _global_generator
    _global_generator = np.random.default_rng(seed)


def rng(seed=None) -> np.random.Generator:
    """A host random generator: ``seed`` may be an int, a Generator, or None for the global one."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return _global_generator
    return np.random.default_rng(seed)


def uniform(generator, shape, low=0.0, high=1.0, dtype="float32", device=DEFAULT_DEVICE):
    """Samples of U(low, high) with ``shape`` on ``device``."""
    sample = rng(generator).uniform(low, high, size=shape).astype(_dtype_name(dtype))
    return to_device(sample, device)


def normal(generator, shape, mean=0.0, std=1.0, dtype="float32", device=DEFAULT_DEVICE):
    """Samples of N(mean, std²) with ``shape`` on ``device``."""
    sample = rng(generator).normal(mean, std, size=shape).astype(_dtype_name(dtype))
    return to_device(sample, device)


def permutation(generator, n: int) -> np.ndarray:
    """A random permutation of ``range(n)`` as a host int64 array."""
    return rng(generator).permutation(n).astype(np.int64)
