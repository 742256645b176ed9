"""Per-channel statistics: the sums, maxima and minima the batch norms reduce to.

BatchNorm needs :math:`\\sum x` and :math:`\\sum x y` per channel, RobustNorm
also the per-channel range :math:`\\max x - \\min x`.  The standard's
``sum(x, axis=(0, 2, 3))`` computes them on every library (the ``*_reference``
functions here), but NumPy runs that reduction over minirn's channels-last
memory in short strided loops.  The standard cannot see memory layout, so the
fast paths that read channels-last memory as one (N*H*W, C) matrix live here,
each beside the reference path the tests compare it with.

The same layout slows NumPy's *elementwise* operations with one value per
channel, such as :math:`x - \\mu`: broadcast against (1, C, 1, 1), the
innermost loop is one pixel's C values, so NumPy runs N*H*W loops of 16
values each.  :func:`channelwise` runs the same operation on long rows.
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


def channelwise(op, x, v, out=None):
    """``op(x, v)`` for an elementwise ``op`` (``xp.add``, ``xp.subtract``, ``xp.multiply``, ``xp.maximum``,
    ``xp.equal``, ...) and v one value per channel, of shape (C,), (1, C) or (1, C, 1, 1), or one
    Python number for every channel.

    x: (N, C, ...).  The result is ``op(x, v)`` with v broadcast along the channel axis (axis 1).
    NumPy fast path, for x: (N, C) or (N, C, H, W) in channels-last memory: view x's (M, C) rows as
    (M/k, k*C) and v repeated k times as one (k*C,) row, so that each inner loop runs over k*C values
    instead of C (16 channels: 0.69 -> 0.27 ms for x - mu on (128, 16, 32, 32) float32; 0.59 ->
    0.26 ms for max(x, 0), whose loop against a scalar is as slow).  Exact: every element is the same
    ``op`` on the same two values.  With ``out`` (an array of x's shape and layout, or x itself for
    in place) the fast path writes the result there; always use the return value, since the other
    paths return a new array.
    """
    if isinstance(v, (int, float)):
        if not (isinstance(x, np.ndarray) and x.ndim in (2, 4) and x.dtype.kind == "f"):
            return op(x, v)
        v = np.full((x.shape[1],), v, dtype=x.dtype)  # what NumPy makes of a Python number against floats
    fast = isinstance(x, np.ndarray) and isinstance(v, np.ndarray) and x.ndim in (2, 4) and v.size == x.shape[1]
    rows = _channels_last_rows(x) if fast else None
    out_fits = out is None or (isinstance(out, np.ndarray) and out.shape == x.shape)
    out_rows = None if out is None or rows is None or not out_fits else _channels_last_rows(out)
    if rows is None or (out is not None and out_rows is None):
        return channelwise_reference(op, x, v)
    m, c = rows.shape
    k = _rows_per_fold(m)
    wide = rows.reshape(m // k, k * c)
    result = op(wide, np.tile(v.reshape(-1), k), out=None if out is None else out_rows.reshape(m // k, k * c))
    result = result.reshape(x.shape[0], *x.shape[2:], c)  # (N, [H, W,] C)
    return result if x.ndim == 2 else np.transpose(result, (0, 3, 1, 2))


def channelwise_reference(op, x, v):
    """The textbook path of :func:`channelwise`: ``op`` with v reshaped to broadcast along axis 1."""
    if isinstance(v, (int, float)):
        return op(x, v)
    return op(x, array_namespace(v).reshape(v, (1, -1) + (1,) * (x.ndim - 2)))


def _rows_per_fold(m):
    """How many (C,) rows of an (M, C) matrix to fold into one long row: a divisor of M, at most 256."""
    return math.gcd(m, 256)


def channel_extrema(x):
    """Per-channel maximum and minimum over every axis but axis 1: x (N, C) or (N, C, H, W) -> two (C,).

    NumPy fast path, for channels-last memory: view the (M, C) rows as
    (M/k, k*C), so the first reduction runs along long rows, then reduce the
    remaining (k, C).  Exact: max and min do not round.
    """
    rows = _channels_last_rows(x) if isinstance(x, np.ndarray) else None
    if rows is not None:
        m, c = rows.shape
        k = _rows_per_fold(m)  # rows folded into one long row
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
