"""Per-channel statistics: the sums, maxima and minima the batch norms reduce to.

BatchNorm needs :math:`\\sum x` and :math:`\\sum x y` per channel, RobustNorm
also the per-channel range :math:`\\max x - \\min x`.  The standard's
``sum(x, axis=(0, 2, 3))`` computes them on every library (the ``*_reference``
functions here), but NumPy runs that reduction over minirn's channels-last
memory in short strided loops.  The standard cannot see memory layout, so the
fast paths that read channels-last memory as one (N*H*W, C) matrix live here,
each beside the reference path the tests compare it with.
"""
from __future__ import annotations

import math

import numpy as np

from minirn.backend.devices import array_namespace


def channel_sums(x, y=None):
    """Per-channel sums over every axis but axis 1: :math:`\\sum x` or, given y, :math:`\\sum x y`.

    x, y: (N, C) or (N, C, H, W) of one shape -> (C,).  The generic path is
    ``sum(x * y, axis=(0, 2, 3))``.  NumPy reduces a channels-last array
    (channels contiguous, minirn's layout) over its leading axes in short
    strided loops, so when both inputs are channels-last in memory the fast
    path hands the (N*H*W, C) matrix to BLAS instead: a product with a vector
    of ones, or a row-wise dot product.  Equal up to float rounding.
    """
    if isinstance(x, np.ndarray) and (y is None or isinstance(y, np.ndarray)):
        rows = [_channels_last_rows(a) for a in ((x,) if y is None else (x, y))]
        if all(r is not None for r in rows):
            if y is None:
                return np.ones(rows[0].shape[0], dtype=x.dtype) @ rows[0]
            return np.einsum("ij,ij->j", rows[0], rows[1])
    return channel_sums_reference(x, y)


def channel_sums_reference(x, y=None):
    """The textbook path of :func:`channel_sums`."""
    return array_namespace(x).sum(x if y is None else x * y, axis=_all_but_channels(x))


def channel_extrema(x):
    """Per-channel maximum and minimum over every axis but axis 1: x (N, C) or (N, C, H, W) -> two (C,).

    NumPy fast path, for channels-last memory: view the (M, C) rows as
    (M/k, k*C), so the first reduction runs along long rows, then reduce the
    remaining (k, C).  Exact: max and min do not round.
    """
    rows = _channels_last_rows(x) if isinstance(x, np.ndarray) else None
    if rows is not None:
        m, c = rows.shape
        k = math.gcd(m, 256)  # rows folded into one long row
        wide = rows.reshape(m // k, k * c)
        return (wide.max(axis=0).reshape(k, c).max(axis=0), wide.min(axis=0).reshape(k, c).min(axis=0))
    return channel_extrema_reference(x)


def channel_extrema_reference(x):
    """The textbook path of :func:`channel_extrema`."""
    xp = array_namespace(x)
    return xp.max(x, axis=_all_but_channels(x)), xp.min(x, axis=_all_but_channels(x))


def _all_but_channels(x):
    """The axes a per-channel statistic reduces: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _channels_last_rows(a):
    """a: (N, C) or (N, C, H, W) as an (N*H*W, C) view without copying, or None if its memory is not channels-last."""
    last = a if a.ndim == 2 else np.transpose(a, (0, 2, 3, 1))
    if not last.flags.c_contiguous:
        return None
    return last.reshape(-1, a.shape[1])
