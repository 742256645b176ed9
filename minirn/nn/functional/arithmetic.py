"""Elementwise arithmetic and matrix products, each forward beside its derivative.

Notation: :math:`g = \\partial L/\\partial y` is the upstream gradient that
``backward`` receives; it returns :math:`\\partial L/\\partial x` for each
input.  Inputs that were broadcast get their gradient summed back to their
own shape by the engine (:func:`minirn.autograd.tensor.sum_to`).
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


class Add(Function):
    """:math:`y = a + b`;  :math:`\\partial L/\\partial a = g`, :math:`\\partial L/\\partial b = g`."""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    """:math:`y = a - b`;  :math:`\\partial L/\\partial a = g`, :math:`\\partial L/\\partial b = -g`."""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    """:math:`y = a b`;  :math:`\\partial L/\\partial a = g\\,b`, :math:`\\partial L/\\partial b = g\\,a`."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return g * self.b, g * self.a


class Div(Function):
    """:math:`y = a / b`;  :math:`\\partial L/\\partial a = g/b`, :math:`\\partial L/\\partial b = -g\\,a/b^2`."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        gb = -g * self.a / (self.b * self.b) if self.needs_input_grad[1] else None
        return g / self.b, gb


class Neg(Function):
    """:math:`y = -x`;  :math:`\\partial L/\\partial x = -g`."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """:math:`y = x^c` for a constant exponent c;  :math:`\\partial L/\\partial x = g\\,c\\,x^{c-1}`."""

    def __init__(self, exponent: float):
        self.c = float(exponent)

    def forward(self, x):
        self.x = x
        return x**self.c

    def backward(self, g):
        return g * self.c * self.x ** (self.c - 1.0)


class Exp(Function):
    """:math:`y = e^x`;  :math:`\\partial L/\\partial x = g\\,y`."""

    def forward(self, x):
        self.y = backend.array_namespace(x).exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    """:math:`y = \\ln x`;  :math:`\\partial L/\\partial x = g / x`."""

    def forward(self, x):
        self.x = x
        return backend.array_namespace(x).log(x)

    def backward(self, g):
        return g / self.x


class Sqrt(Function):
    """:math:`y = \\sqrt{x}`;  :math:`\\partial L/\\partial x = g / (2y)`."""

    def forward(self, x):
        self.y = backend.array_namespace(x).sqrt(x)
        return self.y

    def backward(self, g):
        return g / (2.0 * self.y)


class Abs(Function):
    """:math:`y = |x|`;  :math:`\\partial L/\\partial x = g\\,\\mathrm{sign}(x)` (0 at x = 0)."""

    def forward(self, x):
        self.x = x
        return backend.array_namespace(x).abs(x)

    def backward(self, g):
        return g * backend.array_namespace(g).sign(self.x)


class Sign(Function):
    """:math:`y = \\mathrm{sign}(x)`;  zero gradient almost everywhere, so
    :math:`\\partial L/\\partial x = 0` (FGSM's sign step is never differentiated)."""

    def forward(self, x):
        return backend.array_namespace(x).sign(x)

    def backward(self, g):
        return backend.array_namespace(g).zeros_like(g)


class Maximum(Function):
    """:math:`y = \\max(a, b)` elementwise.

    :math:`\\partial L/\\partial a = g\\,[a > b] + \\tfrac12 g\\,[a = b]`, and
    symmetrically for b: ties share the gradient equally (as in PyTorch).
    """

    def forward(self, a, b):
        xp = backend.array_namespace(a, b)
        self.a, self.b = a, b
        return xp.maximum(a, b)

    def backward(self, g):
        return _split_by_winner(g, self.a, self.b)


class Minimum(Function):
    """:math:`y = \\min(a, b)` elementwise; the gradient goes to the smaller input, ties share it."""

    def forward(self, a, b):
        xp = backend.array_namespace(a, b)
        self.a, self.b = a, b
        return xp.minimum(a, b)

    def backward(self, g):
        return _split_by_winner(g, self.b, self.a)


def _split_by_winner(g, winner, loser):
    """Gradient shares of (winner-side, loser-side) for max/min: 1 to the strict winner, 1/2 each on ties."""
    xp = backend.array_namespace(g)
    share = xp.astype(winner > loser, g.dtype) + 0.5 * xp.astype(winner == loser, g.dtype)
    return g * share, g * (1.0 - share)


class Where(Function):
    """:math:`y = c\\,?\\,a : b` for a boolean array c (not differentiated);
    :math:`\\partial L/\\partial a = g\\,[c]`, :math:`\\partial L/\\partial b = g\\,[\\lnot c]`."""

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        return backend.array_namespace(a, b).where(self.condition, a, b)

    def backward(self, g):
        xp = backend.array_namespace(g)
        zero = xp.zeros_like(g)
        return xp.where(self.condition, g, zero), xp.where(self.condition, zero, g)


class Clip(Function):
    """:math:`y = \\min(\\max(x, lo), hi)`;  :math:`\\partial L/\\partial x = g\\,[lo \\le x \\le hi]`
    (the boundary passes the gradient, like ``torch.clamp``)."""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def forward(self, x):
        xp = backend.array_namespace(x)
        self.x = x
        return xp.clip(x, self.low, self.high)

    def backward(self, g):
        xp = backend.array_namespace(g)
        inside = xp.ones(g.shape, dtype=xp.bool, device=g.device)
        if self.low is not None:
            inside = inside & (self.x >= self.low)
        if self.high is not None:
            inside = inside & (self.x <= self.high)
        return g * xp.astype(inside, g.dtype)


class AsType(Function):
    """:math:`y = \\mathrm{cast}(x)`;  :math:`\\partial L/\\partial x = \\mathrm{cast}^{-1}(g)`."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        xp = backend.array_namespace(x)
        self.input_dtype = x.dtype
        return xp.astype(x, backend.as_dtype(self.dtype, xp))

    def backward(self, g):
        return backend.array_namespace(g).astype(g, self.input_dtype)


class MatMul(Function):
    """:math:`Y = A B` (batched over leading axes, like ``@``).

    :math:`\\partial L/\\partial A = G B^\\top`, :math:`\\partial L/\\partial B = A^\\top G`
    (transposes over the last two axes; 1-D operands are treated as a
    row/column vector and the extra axis is removed again).
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least one dimension (use * for scalars)")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match "
                f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})"
            )
        self.a, self.b = a, b
        return backend.array_namespace(a, b).matmul(a, b)

    def backward(self, g):
        xp = backend.array_namespace(g)
        a = self.a if self.a.ndim > 1 else self.a[None, :]
        b = self.b if self.b.ndim > 1 else self.b[:, None]
        if self.b.ndim == 1:  # restore b's column axis first, so that 1-D @ 1-D (g is 0-d) works too
            g = xp.expand_dims(g, axis=-1)
        if self.a.ndim == 1:
            g = xp.expand_dims(g, axis=-2)
        ga = xp.matmul(g, xp.matrix_transpose(b)) if self.needs_input_grad[0] else None
        gb = xp.matmul(xp.matrix_transpose(a), g) if self.needs_input_grad[1] else None
        if ga is not None and self.a.ndim == 1:
            ga = ga[..., 0, :]  # leading (batch) axes are summed by the engine
        if gb is not None and self.b.ndim == 1:
            gb = gb[..., 0]
        return ga, gb


# --- functional wrappers ------------------------------------------------------
def add(a, b) -> Tensor:
    return Add()(a, b)


def sub(a, b) -> Tensor:
    return Sub()(a, b)


def mul(a, b) -> Tensor:
    return Mul()(a, b)


def div(a, b) -> Tensor:
    return Div()(a, b)


def neg(x) -> Tensor:
    return Neg()(x)


def pow(x, exponent) -> Tensor:  # noqa: A001 - mirrors torch.pow
    if isinstance(exponent, Tensor):
        raise TypeError("pow: the exponent must be a Python number (tensor exponents are not supported)")
    return Pow(exponent)(x)


def exp(x) -> Tensor:
    return Exp()(x)


def log(x) -> Tensor:
    return Log()(x)


def sqrt(x) -> Tensor:
    return Sqrt()(x)


def abs(x) -> Tensor:  # noqa: A001 - mirrors torch.abs
    return Abs()(x)


def sign(x) -> Tensor:
    return Sign()(x)


def maximum(a, b) -> Tensor:
    return Maximum()(a, b)


def minimum(a, b) -> Tensor:
    return Minimum()(a, b)


def where(condition, a, b) -> Tensor:
    """``condition ? a : b`` with a boolean array (or comparison result) ``condition``."""
    if isinstance(condition, Tensor):
        condition = condition.data
    return Where(condition)(a, b)


def clip(x, min=None, max=None) -> Tensor:  # noqa: A002 - NumPy/PyTorch names
    return Clip(min, max)(x)


def astype(x, dtype) -> Tensor:
    return AsType(dtype)(x)


def matmul(a, b) -> Tensor:
    return MatMul()(a, b)
