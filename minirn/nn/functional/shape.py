"""Operations that move values around without changing them.

Their backward passes move the gradient back: reshape it back, permute it
back, sum it over broadcast axes, scatter it into the indexed positions,
split it at the concatenation points, crop away the padding.
"""
from __future__ import annotations

import numbers

from minirn import backend
from minirn.autograd.tensor import Function, Tensor, sum_to
from minirn.nn.functional.reduction import normalize_axes


class Reshape(Function):
    """:math:`y = \\mathrm{reshape}(x)`;  :math:`\\partial L/\\partial x = \\mathrm{reshape}^{-1}(g)`."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.input_shape = tuple(x.shape)
        try:
            return backend.array_namespace(x).reshape(x, self.shape)
        except ValueError as exc:
            raise ValueError(f"cannot reshape a tensor of shape {self.input_shape} into {self.shape}") from exc

    def backward(self, g):
        return backend.array_namespace(g).reshape(g, self.input_shape)


class Permute(Function):
    """:math:`y = x` with axes reordered by ``axes``;  the gradient is permuted by the inverse order."""

    def __init__(self, axes):
        self.axes = tuple(axes)

    def forward(self, x):
        if sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {self.axes} is not a permutation of the {x.ndim} axes")
        self.axes = tuple(a % x.ndim for a in self.axes)
        return backend.array_namespace(x).permute_dims(x, self.axes)

    def backward(self, g):
        inverse = tuple(sorted(range(len(self.axes)), key=self.axes.__getitem__))
        return backend.array_namespace(g).permute_dims(g, inverse)


class BroadcastTo(Function):
    """:math:`y = \\mathrm{broadcast}(x)`;  :math:`\\partial L/\\partial x = \\sum_{\\text{broadcast axes}} g`."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.input_shape = tuple(x.shape)
        return backend.array_namespace(x).broadcast_to(x, self.shape)

    def backward(self, g):
        return sum_to(g, self.input_shape)


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (numbers.Integral, slice)) for p in parts)  # NumPy ints too


class GetItem(Function):
    """:math:`y = x[\\text{index}]`.

    Basic indexing (ints, slices, ``...``, ``None``) selects each element at
    most once, so :math:`\\partial L/\\partial x` is zero with ``g`` written
    into the selected positions.  An integer-array index may select an
    element several times; its gradient is a *scatter-add*
    (:func:`minirn.backend.scatter_add`).
    """

    def __init__(self, index):
        if _is_basic(index):
            # the standard wants every axis indexed: ``x[1]`` is spelled ``x[1, ...]``
            parts = index if isinstance(index, tuple) else (index,)
            index = parts if any(p is Ellipsis for p in parts) else (*parts, Ellipsis)
        self.index = index

    def forward(self, x):
        self.shape = tuple(x.shape)
        if backend.is_array(self.index) and not _is_basic(self.index):
            # x[index] with an integer array selects along axis 0 (the standard spells it `take`)
            return backend.array_namespace(x).take(x, self.index, axis=0)
        out = x[self.index]
        if _is_basic(self.index):
            # `None` (new axes of size 1) may not appear in a standard setitem; backward writes without them
            self.target = tuple(p for p in self.index if p is not None)
            self.target_shape = tuple(out.shape if self.target == self.index else x[self.target].shape)
        return out

    def backward(self, g):
        xp = backend.array_namespace(g)
        if _is_basic(self.index):
            gx = xp.zeros(self.shape, dtype=g.dtype, device=g.device)
            gx[self.target] = xp.reshape(g, self.target_shape)
            return gx
        return backend.scatter_add(self.shape, self.index, g)


class Concat(Function):
    """:math:`y = [x_1, \\dots, x_k]` along ``axis``;  :math:`\\partial L/\\partial x_j` is g's j-th block."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.array_namespace(*xs)
        self.axis = normalize_axes(self.axis, xs[0].ndim)[0]
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concat(xs, axis=self.axis)

    def backward(self, g):
        grads, start = [], 0
        for size in self.sizes:
            index = (slice(None),) * self.axis + (slice(start, start + size), Ellipsis)
            grads.append(g[index])
            start += size
        return tuple(grads)


class Stack(Function):
    """:math:`y = \\mathrm{stack}(x_1, \\dots, x_k)` along a new ``axis``;  :math:`\\partial L/\\partial x_j = g[\\dots, j, \\dots]`."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        self.axis = self.axis % (xs[0].ndim + 1)
        return backend.array_namespace(*xs).stack(xs, axis=self.axis)

    def backward(self, g):
        count = g.shape[self.axis]
        return tuple(g[(slice(None),) * self.axis + (j, Ellipsis)] for j in range(count))


class Pad(Function):
    """Constant padding: ``pad_width[i] = (before, after)`` values added to axis i.

    :math:`\\partial L/\\partial x` is g with the padded border cropped away.
    """

    def __init__(self, pad_width, value=0.0):
        self.pad_width, self.value = [tuple(p) for p in pad_width], value

    def forward(self, x):
        xp = backend.array_namespace(x)
        if len(self.pad_width) != x.ndim or any(b < 0 or a < 0 for b, a in self.pad_width):
            raise ValueError(f"pad: need one non-negative (before, after) pair per axis of shape {tuple(x.shape)}")
        shape = tuple(n + b + a for n, (b, a) in zip(x.shape, self.pad_width))
        self.inner = tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, self.pad_width))
        out = xp.full(shape, self.value, dtype=x.dtype, device=x.device)
        out[self.inner] = x
        return out

    def backward(self, g):
        return g[self.inner]


def reshape(x, shape) -> Tensor:
    return Reshape(shape)(x)


def permute(x, axes) -> Tensor:
    return Permute(axes)(x)


def transpose(x, dim0=-2, dim1=-1) -> Tensor:
    """Swap axes ``dim0`` and ``dim1`` (PyTorch's ``transpose``)."""
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return Permute(axes)(x)


def broadcast_to(x, shape) -> Tensor:
    return BroadcastTo(shape)(x)


def getitem(x, index) -> Tensor:
    """``x[index]``; tensors inside ``index`` are used by their data (not differentiated)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def concat(tensors, axis=0) -> Tensor:
    return Concat(axis)(*tensors)


def stack(tensors, axis=0) -> Tensor:
    return Stack(axis)(*tensors)


def pad(x, pad_width, value=0.0) -> Tensor:
    """Pad with a constant; ``pad_width`` is NumPy-style: one ``(before, after)`` per axis."""
    return Pad(pad_width, value)(x)


def flatten(x, start_dim=0) -> Tensor:
    """Merge the axes from ``start_dim`` on into one (``torch.flatten``; ``nn.Flatten`` uses start_dim=1 to keep the batch axis)."""
    return Reshape(tuple(x.shape[:start_dim]) + (-1,))(x)
