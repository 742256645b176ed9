"""NumPy references of the normalizations, written from the equations (PAPER.md and the docstrings of
``BatchNorm`` and ``RobustNorm`` in minirn/nn/functional/normalization.py), not from minirn's code.

Used by tests/nn/functional/test_normalization.py (the functions) and tests/nn/test_norm.py (the layers).
x: (N, C, H, W) or (N, C); statistics are per channel over (N, H, W) (over N for (N, C)); ``mean``,
``var`` / ``value_range`` of None mean the batch statistic, an array (C,) a fixed estimate.
"""
import numpy as np


def channel_view(v, ndim):
    """(C,) -> (1, C) or (1, C, 1, 1)."""
    return np.reshape(v, (1, -1) + (1,) * (ndim - 2))


def reduce_axes(x):
    return (0,) if x.ndim == 2 else (0, 2, 3)


def bn_reference(x, gamma, beta, mean=None, var=None, eps=1e-5):
    """y = γ (x − μ) / sqrt(σ² + ε) + β with μ_B, biased σ_B² over (N, H, W) unless given."""
    axes = reduce_axes(x)
    mu = x.mean(axis=axes) if mean is None else mean
    sigma2 = x.var(axis=axes) if var is None else var  # np.var is biased and centred on the batch mean
    x_hat = (x - channel_view(mu, x.ndim)) / np.sqrt(channel_view(sigma2, x.ndim) + eps)
    return channel_view(gamma, x.ndim) * x_hat + channel_view(beta, x.ndim)


def rn_reference(x, gamma, beta, mean=None, value_range=None, p=0.2, eps=1e-5):
    """y = γ (x − μ) / (r^p + ε) + β with μ_B and r_B = max − min over (N, H, W) unless given."""
    axes = reduce_axes(x)
    mu = x.mean(axis=axes) if mean is None else mean
    r = x.max(axis=axes) - x.min(axis=axes) if value_range is None else value_range
    x_hat = (x - channel_view(mu, x.ndim)) / (channel_view(r, x.ndim) ** p + eps)
    return channel_view(gamma, x.ndim) * x_hat + channel_view(beta, x.ndim)
