"""Scatter-add: the adjoint of integer-array indexing.

The gradient of ``y = x[index]`` adds each row of the upstream gradient back
into the row of ``x`` it came from, summing rows whose index repeats.  The
Array API standard has integer-array indexing but no in-place scatter with
accumulation (NumPy's ``np.add.at``; CuPy removed ``cupy.scatter_add``), so the
one helper here does it with a NumPy fast path and a generic one-hot product.
"""
from __future__ import annotations

import math

import numpy as np

from minirn.backend.devices import array_namespace


def scatter_add(shape, index, values):
    """``out = zeros(shape); out[index] += values`` with repeated indices summed.

    ``index`` is an integer array selecting along axis 0 (``x[index]``);
    ``values`` has shape ``index.shape + shape[1:]``.  NumPy uses ``np.add.at``;
    other libraries multiply by a one-hot matrix,
    :math:`\\mathrm{out} = \\mathrm{onehot}(index)^\\top \\, values`.
    """
    xp = array_namespace(values)
    if isinstance(values, np.ndarray):
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, np.asarray(index), values)
        return out
    index = xp.reshape(index, (-1,))
    flat = xp.reshape(values, (index.shape[0], math.prod(shape[1:])))  # not -1: index may be empty
    onehot = xp.astype(index[:, None] == xp.arange(shape[0], device=values.device)[None, :], values.dtype)
    return xp.reshape(xp.matmul(xp.permute_dims(onehot, (1, 0)), flat), tuple(shape))
