"""Activations, softmax and the cross-entropy loss."""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


class ReLU(Function):
    """:math:`y = \\max(x, 0)`;  :math:`\\partial L/\\partial x = g\\,[x > 0]` (0 at x = 0, like PyTorch)."""

    def forward(self, x):
        self.positive = x > 0
        return backend.channelwise(backend.array_namespace(x).maximum, x, 0.0)  # max(x, 0), on long rows on NumPy

    def backward(self, g):
        xp = backend.array_namespace(g)
        return g * xp.astype(self.positive, g.dtype)  # a product: several times faster than where() on NumPy


class Sigmoid(Function):
    """:math:`y = 1/(1+e^{-x})`;  :math:`\\partial L/\\partial x = g\\,y(1-y)`."""

    def forward(self, x):
        xp = backend.array_namespace(x)
        # two branches so that exp never overflows
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self.y

    def backward(self, g):
        return g * self.y * (1.0 - self.y)


class Tanh(Function):
    """:math:`y = \\tanh x`;  :math:`\\partial L/\\partial x = g\\,(1-y^2)`."""

    def forward(self, x):
        self.y = backend.array_namespace(x).tanh(x)
        return self.y

    def backward(self, g):
        return g * (1.0 - self.y * self.y)


def _log_softmax(z, axis):
    """:math:`z - \\log\\sum_j e^{z_j}`, shifted by the maximum so that no exp overflows."""
    xp = backend.array_namespace(z)
    shifted = z - xp.max(z, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


class LogSoftmax(Function):
    """:math:`y_i = z_i - \\log\\sum_j e^{z_j}`;  :math:`\\partial L/\\partial z_i = g_i - \\mathrm{softmax}(z)_i \\sum_j g_j`."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, z):
        self.y = _log_softmax(z, self.axis)
        return self.y

    def backward(self, g):
        xp = backend.array_namespace(g)
        return g - xp.exp(self.y) * xp.sum(g, axis=self.axis, keepdims=True)


class Softmax(Function):
    """:math:`y_i = e^{z_i}/\\sum_j e^{z_j}`;  :math:`\\partial L/\\partial z_i = y_i\\,(g_i - \\sum_j g_j y_j)`."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, z):
        self.y = backend.array_namespace(z).exp(_log_softmax(z, self.axis))
        return self.y

    def backward(self, g):
        xp = backend.array_namespace(g)
        return self.y * (g - xp.sum(g * self.y, axis=self.axis, keepdims=True))


def one_hot(labels, num_classes: int, dtype):
    """(N,) integer labels -> (N, num_classes) array with a single 1 per row."""
    xp = backend.array_namespace(labels)
    return xp.astype(labels[:, None] == xp.arange(num_classes, device=labels.device)[None, :], dtype)


class CrossEntropy(Function):
    """Softmax cross-entropy of logits z (N, C) against integer labels y (N,).

    :math:`\\ell_n = -\\log \\mathrm{softmax}(z_n)_{y_n} = \\log\\sum_j e^{z_{nj}} - z_{n y_n}`;
    reduction ``"mean"`` (default) :math:`L = \\frac1N\\sum_n \\ell_n`, ``"sum"``, or ``"none"`` (the vector ℓ).

    :math:`\\partial \\ell_n/\\partial z_{nj} = p_{nj} - [j = y_n]` with :math:`p_n = \\mathrm{softmax}(z_n)`.

    **Computed without cancellation.**  For the true class the formula is :math:`p_{ny} - 1`; once the
    model is confident, :math:`p_{ny}` rounds to exactly 1 (in float32 at a logit lead of about 16.6,
    :math:`e^{-16.6} \\approx 2^{-24}`), and :math:`p_{ny} - 1` becomes exactly 0 although the true
    derivative, :math:`-(1 - p_{ny})`, is tiny but not zero.  Gradient ascent on the loss (an attack)
    would then only push the other logits up.  Because the probabilities sum to one,
    :math:`p_{ny} - 1 = -\\sum_{j \\ne y} p_{nj}`, a sum of small, accurately computed terms
    (each :math:`p_{nj} = e^{\\log p_{nj}}` from the log-softmax), so that is what ``backward`` uses.
    (PyTorch's float32 ``cross_entropy`` has the cancellation.)
    """

    def __init__(self, labels, reduction="mean"):
        self.labels, self.reduction = labels, reduction

    def forward(self, z):
        xp = backend.array_namespace(z)
        log_p = _log_softmax(z, axis=1)
        self.onehot = one_hot(self.labels, z.shape[1], z.dtype)
        self.p = xp.exp(log_p)
        losses = -xp.sum(log_p * self.onehot, axis=1)
        if self.reduction == "mean":
            return xp.mean(losses)
        if self.reduction == "sum":
            return xp.sum(losses)
        return losses

    def backward(self, g):
        xp = backend.array_namespace(g)
        p_others = self.p * (1.0 - self.onehot)  # p_j for j != y, and 0 at the true class
        grad = p_others - self.onehot * xp.sum(p_others, axis=1, keepdims=True)  # true class: -sum_{j != y} p_j
        if self.reduction == "mean":
            return grad * (g / grad.shape[0])
        if self.reduction == "sum":
            return grad * g
        return grad * g[:, None]


def relu(x) -> Tensor:
    return ReLU()(x)


def sigmoid(x) -> Tensor:
    return Sigmoid()(x)


def tanh(x) -> Tensor:
    return Tanh()(x)


def log_softmax(x, axis=-1) -> Tensor:
    return LogSoftmax(axis)(x)


def softmax(x, axis=-1) -> Tensor:
    return Softmax(axis)(x)


def cross_entropy(logits, labels, reduction="mean") -> Tensor:
    """Mean (or summed, or per-example) softmax cross-entropy; ``labels`` are class indices.

    logits: (N, C) tensor; labels: (N,) integers in [0, C) (a Tensor, array or list).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (N, C), got {logits.shape}")
    labels = labels.data if isinstance(labels, Tensor) else labels
    if not backend.is_array(labels) or backend.device_of(labels) != logits.device:
        labels = backend.to_device(labels, logits.device)
    xp = logits.xp
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"cross_entropy: labels must have shape ({logits.shape[0]},) to match logits {logits.shape}, "
            f"got {tuple(labels.shape)}"
        )
    if backend.is_floating(labels.dtype) or backend.dtype_name(labels.dtype) == "bool":
        raise ValueError(f"cross_entropy: labels must be integers, got {backend.dtype_name(labels.dtype)}")
    num_classes = logits.shape[1]
    if labels.shape[0] and bool(xp.any((labels < 0) | (labels >= num_classes))):
        low, high = int(xp.min(labels)), int(xp.max(labels))
        raise ValueError(f"cross_entropy: labels must lie in [0, {num_classes}), got values in [{low}, {high}]")
    return CrossEntropy(labels, reduction)(logits)
