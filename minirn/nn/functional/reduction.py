"""Reductions over axes: sum, mean, var, max, min.

Each takes ``axis`` (None, an int or a tuple) and ``keepdims`` like NumPy and
the Array API.  The backward pass first restores the reduced axes as size-1
axes (``_expand``) and then broadcasts.
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


def normalize_axes(axis, ndim: int) -> tuple:
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _expand(g, input_shape, axes):
    """Reshape a reduced gradient so it broadcasts against the input (size-1 reduced axes)."""
    xp = backend.array_namespace(g)
    kept = tuple(1 if i in axes else n for i, n in enumerate(input_shape))
    return xp.reshape(g, kept)


def _count(shape, axes) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Sum(Function):
    """:math:`y = \\sum_{i \\in \\text{axes}} x_i`;  :math:`\\partial L/\\partial x_i = g` (broadcast)."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape, self.axes = tuple(x.shape), normalize_axes(self.axis, x.ndim)
        return backend.array_namespace(x).sum(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        xp = backend.array_namespace(g)
        return xp.broadcast_to(_expand(g, self.shape, self.axes), self.shape)


class Mean(Function):
    """:math:`y = \\frac1n \\sum_i x_i`;  :math:`\\partial L/\\partial x_i = g / n`."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape, self.axes = tuple(x.shape), normalize_axes(self.axis, x.ndim)
        return backend.array_namespace(x).mean(x, axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        xp = backend.array_namespace(g)
        n = _count(self.shape, self.axes)
        return xp.broadcast_to(_expand(g, self.shape, self.axes) / n, self.shape)


class Var(Function):
    """:math:`y = \\frac{1}{n - c} \\sum_i (x_i - \\mu)^2` with correction c (0: biased, 1: unbiased).

    :math:`\\partial L/\\partial x_i = g\\,\\frac{2 (x_i - \\mu)}{n - c}`
    (the term through :math:`\\mu` vanishes because :math:`\\sum_i (x_i-\\mu) = 0`).
    """

    def __init__(self, axis=None, keepdims=False, correction=0):
        self.axis, self.keepdims, self.correction = axis, keepdims, correction

    def forward(self, x):
        xp = backend.array_namespace(x)
        self.shape, self.axes = tuple(x.shape), normalize_axes(self.axis, x.ndim)
        n = _count(self.shape, self.axes)
        if n - self.correction <= 0:
            raise ValueError(f"var: {n} values per reduction with correction {self.correction} leaves no degrees of freedom")
        self.centered = x - xp.mean(x, axis=self.axes, keepdims=True)
        self.denominator = n - self.correction
        return xp.sum(self.centered**2, axis=self.axes, keepdims=self.keepdims) / self.denominator

    def backward(self, g):
        return _expand(g, self.shape, self.axes) * (2.0 / self.denominator) * self.centered


class Max(Function):
    """:math:`y = \\max_{i \\in \\text{axes}} x_i`.

    The gradient goes to the arg-maximum: :math:`\\partial L/\\partial x_i = g\\,[x_i = y]/k`
    where k is the number of tied maxima (ties share the gradient equally,
    like ``torch.amax``).
    """

    reduce = "max"

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = backend.array_namespace(x)
        self.shape, self.axes = tuple(x.shape), normalize_axes(self.axis, x.ndim)
        if any(self.shape[a] == 0 for a in self.axes):
            raise ValueError(f"{self.reduce}: cannot reduce over an empty axis (shape {self.shape})")
        y = getattr(xp, self.reduce)(x, axis=self.axes, keepdims=True)
        self.x, self.y = x, y
        return y if self.keepdims else xp.reshape(y, tuple(n for i, n in enumerate(self.shape) if i not in self.axes))

    def backward(self, g):
        xp = backend.array_namespace(g)
        hit = xp.astype(self.x == self.y, g.dtype)
        ties = xp.sum(hit, axis=self.axes, keepdims=True)
        return hit * (_expand(g, self.shape, self.axes) / ties)


class Min(Max):
    """:math:`y = \\min_{i} x_i`; the gradient goes to the arg-minimum, ties share it."""

    reduce = "min"


def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - mirrors torch.sum
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False) -> Tensor:
    return Mean(axis, keepdims)(x)


def var(x, axis=None, keepdims=False, correction=0) -> Tensor:
    """Variance; ``correction=0`` is the biased (population) variance, 1 the unbiased one."""
    return Var(axis, keepdims, correction)(x)


def max(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - mirrors torch.max
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - mirrors torch.min
    return Min(axis, keepdims)(x)
