"""What every attack shares: argument checks, the untouched-model guard, the input gradient, projections.

Conventions used by all attacks (x: (N, C, H, W) images, or (N, D) vectors;
:math:`\\delta = x' - x`; norms are per example, over every axis but the first):

* the *objective* an attack ascends is :math:`J = \\ell_{CE}(f(x'), y)` (untargeted)
  or :math:`J = -\\ell_{CE}(f(x'), t)` (targeted: ``y`` holds the targets ``t``);
* :math:`\\Pi_{\\infty}` (``project_linf``) clips to :math:`[x-\\epsilon, x+\\epsilon]`, then to the box;
* :math:`\\Pi_2` is either "ball then box" (scale :math:`\\delta` onto the ball, then clip;
  the standard choice, feasible but not always the nearest point) or the exact Euclidean
  projection onto ball ∩ box, found by bisection (:func:`project_l2_exact`).
"""
from __future__ import annotations

import contextlib
import numbers

from minirn import backend
from minirn.autograd.grad_mode import enable_grad, freeze_running_stats, no_grad
from minirn.autograd.tensor import Tensor
from minirn.nn import functional as F

NORMS = ("linf", "l2")
PROJECTIONS = ("ball_then_box", "exact")


# ----------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------
def check_number(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}")
    return float(value)


def check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected 'linf' or 'l2'")
    return norm


def prepare(name, x, y, clip, eps=None, alpha=None, steps=None, norm="linf"):
    """Validate an attack's arguments; return ``(x_array, labels, x_was_tensor, (low, high))``.

    x: (N, ...) floating array or Tensor inside ``clip``; y: (N,) integers (array, Tensor or list),
    moved to x's device.  Raises ``ValueError`` naming the attack and the bad argument.
    """
    try:
        if eps is not None:
            check_number("eps", eps)
        if alpha is not None:
            check_number("alpha (step size)", alpha)
        if steps is not None:
            check_int("steps", steps)
        check_norm(norm)
        if not (isinstance(clip, (tuple, list)) and len(clip) == 2):
            raise ValueError(f"clip must be a pair (low, high), got {clip!r}")
        low, high = (float(_check_real("clip", c)) for c in clip)
        if not low < high:
            raise ValueError(f"clip must satisfy low < high, got {clip!r}")
        was_tensor = isinstance(x, Tensor)
        x = x.data if was_tensor else x
        if not backend.is_array(x) or not backend.is_floating(x.dtype):
            raise ValueError(f"x must be a floating-point array or Tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
        xp = backend.array_namespace(x)
        x_min, x_max = float(xp.min(x)), float(xp.max(x))
        if x_min < low or x_max > high:
            raise ValueError(f"x must lie in the clip range [{low}, {high}], but its values span [{x_min}, {x_max}]")
        labels = labels_for(y, x)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return x, labels, was_tensor, (low, high)


def _check_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"{name} values must be real numbers, got {value!r}")
    return value


def labels_for(y, x):
    """y (array, Tensor or list of N integers) as a (N,) integer array on x's device; ValueError otherwise."""
    y = y.data if isinstance(y, Tensor) else y
    try:
        labels = y if backend.is_array(y) else backend.to_device(y, backend.device_of(x))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be integer labels, got {type(y).__name__}") from exc
    if backend.device_of(labels) != backend.device_of(x):
        labels = backend.to_device(labels, backend.device_of(x))
    if labels.ndim != 1 or backend.is_floating(labels.dtype) or backend.dtype_name(labels.dtype) == "bool":
        raise ValueError(f"y must be a 1-D array of integer labels, got {backend.dtype_name(labels.dtype)} "
                         f"of shape {tuple(labels.shape)}")
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"y has {labels.shape[0]} labels but x holds a batch of {x.shape[0]} examples")
    return labels


def finish(x_adv, was_tensor):
    """Return the result in the kind of the input: a detached Tensor or a backend array."""
    return Tensor(x_adv) if was_tensor else x_adv


def copy(x):
    """A fresh array equal to x (what ε = 0 returns)."""
    return backend.array_namespace(x).asarray(x, copy=True)


# ----------------------------------------------------------------------------
# leave the model as it was
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def model_untouched(model):
    """Run an attack without side effects on ``model``.

    Inside: running statistics are frozen (a model in train mode is attacked
    through its batch statistics but never updates its buffers), parameters
    do not require grad (so no gradient is computed for or left on them).
    Afterwards every module's train/eval flag, every parameter's
    ``requires_grad`` and ``.grad`` are what they were before.
    """
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    saved = [(p, p.grad, p.requires_grad) for p in params]
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    try:
        for p in params:
            p.requires_grad = False
        with freeze_running_stats():
            yield
    finally:
        for p, grad, requires_grad in saved:
            p.grad, p.requires_grad = grad, requires_grad
        for m, training in modes:
            object.__setattr__(m, "training", training)


# ----------------------------------------------------------------------------
# the objective and its gradient with respect to the input
# ----------------------------------------------------------------------------
def objective(logits, labels, targeted):
    """Per-example :math:`J`: cross-entropy (untargeted) or its negative (targeted). logits: (N, K) -> (N,)."""
    losses = F.cross_entropy(logits, labels, reduction="none")
    return -losses if targeted else losses


def input_gradient(model, x_adv, labels, targeted):
    """:math:`\\nabla_{x'} \\sum_n J_n` and the per-example :math:`J` at x'.

    The whole batch goes through the model at once, so with batch statistics the
    gradient includes their dependence on x'.  The sum (not the mean) keeps each
    example's gradient unscaled by 1/N.  Returns (grad (N, ...), J (N,), logits (N, K)).
    """
    xt = Tensor(x_adv, requires_grad=True)
    with enable_grad():
        logits = model(xt)
        j = objective(logits, labels, targeted)
        j.sum().backward()
    grad = xt.grad
    if grad is None:  # the model ignores its input
        xp = backend.array_namespace(x_adv)
        grad = xp.zeros(x_adv.shape, dtype=x_adv.dtype, device=x_adv.device)
    return grad, j.data, logits.data


def predict(model, x):
    """Predicted classes (N,) for x (N, ...): no graph, running statistics frozen."""
    with no_grad(), freeze_running_stats():
        logits = model(Tensor(x))
    return backend.array_namespace(logits.data).argmax(logits.data, axis=1)


def evaluate_objective(model, x_adv, labels, targeted):
    """(J (N,), success (N,) bool) at x' without a graph: success = fooled (or target hit)."""
    with no_grad():
        logits = model(Tensor(x_adv))
        j = objective(logits, labels, targeted).data
    xp = backend.array_namespace(logits.data)
    predicted = xp.argmax(logits.data, axis=1)
    success = (predicted == labels) if targeted else (predicted != labels)
    return j, success


# ----------------------------------------------------------------------------
# per-example norms, steps and projections
# ----------------------------------------------------------------------------
def per_example(v, ndim):
    """(N,) -> (N, 1, ..., 1) to broadcast against an (N, ...) array."""
    return backend.array_namespace(v).reshape(v, (v.shape[0],) + (1,) * (ndim - 1))


def norm_per_example(a, norm):
    """‖a_n‖ over all axes but the first: ``"linf"``, ``"l2"`` or ``"l1"``; a: (N, ...) -> (N,)."""
    xp = backend.array_namespace(a)
    flat = xp.reshape(a, (a.shape[0], -1))
    if norm == "linf":
        return xp.max(xp.abs(flat), axis=1)
    if norm == "l1":
        return xp.sum(xp.abs(flat), axis=1)
    return xp.sqrt(xp.sum(flat * flat, axis=1))


def steepest_ascent(grad, norm):
    """The unit-norm ascent direction: sign(g) for L∞, :math:`g/\\max(\\|g\\|_2, 10^{-12})` for L2."""
    xp = backend.array_namespace(grad)
    if norm == "linf":
        return xp.sign(grad)
    return grad / per_example(xp.clip(norm_per_example(grad, "l2"), 1e-12, None), grad.ndim)


def clip_box(x_adv, low, high):
    return backend.array_namespace(x_adv).clip(x_adv, low, high)


def project_linf(x_adv, x, eps, low, high):
    """:math:`\\mathrm{clip}_{[lo,hi]}(\\mathrm{clip}_{[x-\\epsilon, x+\\epsilon]}(x'))`; x, x': (N, ...)."""
    xp = backend.array_namespace(x)
    return clip_box(xp.minimum(xp.maximum(x_adv, x - eps), x + eps), low, high)


def project_l2_ball_then_box(x_adv, x, eps, low, high):
    """Scale :math:`\\delta` onto the ball, :math:`\\delta \\min(1, \\epsilon/\\|\\delta\\|_2)`, then clip to the box.

    Clipping (with x inside the box) only shrinks each :math:`|\\delta_i|`, so the
    result stays in the ball; it is not always the nearest point of ball ∩ box.
    """
    xp = backend.array_namespace(x)
    delta = x_adv - x
    length = norm_per_example(delta, "l2")
    factor = xp.minimum(xp.ones_like(length), eps / xp.clip(length, 1e-12, None))
    return clip_box(x + delta * per_example(factor, x.ndim), low, high)


def project_l2_exact(x_adv, x, eps, low, high, iterations=40):
    """The Euclidean projection of x' onto :math:`\\{z : \\|z-x\\|_2 \\le \\epsilon,\\ lo \\le z \\le hi\\}`.

    The constraints separate per coordinate once the ball gets a Lagrange multiplier
    :math:`\\lambda \\ge 0`: minimising :math:`\\tfrac12\\|z-x'\\|^2 + \\tfrac\\lambda2\\|z-x\\|^2` over the box gives

    .. math:: z(t) = \\mathrm{clip}_{[lo,hi]}\\big(x + t\\,(x'-x)\\big), \\qquad t = 1/(1+\\lambda) \\in (0, 1].

    :math:`\\|z(t)-x\\|_2` grows with t, so bisection finds the largest feasible t
    (t = 1 when the clipped point is already in the ball).  Per example; x, x': (N, ...).
    """
    xp = backend.array_namespace(x)
    delta = x_adv - x
    n = x.shape[0]

    def radius(t):
        return norm_per_example(clip_box(x + delta * per_example(t, x.ndim), low, high) - x, "l2")

    ones = xp.ones((n,), dtype=x.dtype, device=x.device)
    t_low = xp.where(radius(ones) <= eps, ones, xp.zeros_like(ones))
    t_high = ones
    for _ in range(iterations):
        middle = (t_low + t_high) / 2.0
        inside = radius(middle) <= eps
        t_low, t_high = xp.where(inside, middle, t_low), xp.where(inside, t_high, middle)
    return clip_box(x + delta * per_example(t_low, x.ndim), low, high)


def project(x_adv, x, eps, low, high, norm, projection="ball_then_box"):
    """:math:`\\Pi` onto the ε-ball of ``norm`` around x intersected with the box [low, high]."""
    if norm == "linf":
        return project_linf(x_adv, x, eps, low, high)
    if projection == "exact":
        return project_l2_exact(x_adv, x, eps, low, high)
    return project_l2_ball_then_box(x_adv, x, eps, low, high)


def random_start(x, eps, norm, generator, low, high):
    """x + δ with δ uniform in the ε-ball (then clipped to the box).

    L∞: :math:`\\delta_i \\sim U(-\\epsilon, \\epsilon)`.  L2, truly uniform in the d-dimensional ball:
    :math:`\\delta = \\epsilon\\, u^{1/d}\\, g/\\|g\\|_2` with :math:`g \\sim N(0, I_d)`, :math:`u \\sim U(0, 1)`
    (a Gaussian direction alone, or a radius :math:`\\epsilon u` without the power 1/d,
    crowds the points near the centre).  x: (N, ...), d = x[0].size.
    """
    device, dtype = backend.device_of(x), backend.dtype_name(x.dtype)
    if norm == "linf":
        delta = backend.uniform(generator, tuple(x.shape), -eps, eps, dtype=dtype, device=device)
    else:
        d = 1
        for size in x.shape[1:]:
            d *= size
        g = backend.normal(generator, tuple(x.shape), dtype=dtype, device=device)
        u = backend.uniform(generator, (x.shape[0],), dtype=dtype, device=device)
        xp = backend.array_namespace(x)
        radius = eps * u ** (1.0 / d) / xp.clip(norm_per_example(g, "l2"), 1e-12, None)
        delta = g * per_example(radius, x.ndim)
    return clip_box(x + delta, low, high)


def keep_worst(best, candidate):
    """Per example, the worst case so far: the first success, else the highest objective.

    best, candidate: tuples (x' (N, ...), J (N,), success (N,) bool).
    """
    xp = backend.array_namespace(best[0])
    x_best, j_best, s_best = best
    x_new, j_new, s_new = candidate
    replace = ~s_best & (s_new | (j_new > j_best))
    return (
        xp.where(per_example(replace, x_best.ndim), x_new, x_best),
        xp.where(replace, j_new, j_best),
        s_best | s_new,
    )
