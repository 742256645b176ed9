"""Argument checks at the attacks' boundary: every attack validates its inputs here, once.

``prepare`` turns ``(x, y, clip, eps, alpha, steps, norm)`` into a backend array, labels on x's
device and the box ``(low, high)``, or raises a ``ValueError`` naming the attack and the bad
argument; ``finish`` hands the result back in the kind of the input (array or Tensor).
"""
from __future__ import annotations

import numbers
import warnings

from minirn import backend
from minirn.autograd.tensor import Tensor

NORMS = ("linf", "l2")
PROJECTIONS = ("ball_then_box", "exact")


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
        # One device-to-host copy for the three numbers (an attack inside a training step runs this every step);
        # float64 holds the count exactly and x's extremes without rounding.
        xp = backend.array_namespace(x)
        summary = [xp.sum(xp.astype(~xp.isfinite(x), xp.int64)), xp.min(x), xp.max(x)]
        bad, x_min, x_max = backend.to_host(xp.stack([xp.astype(v, xp.float64) for v in summary])).tolist()
        if bad:
            raise ValueError(f"x holds {int(bad)} non-finite value(s) (NaN or inf); attacks need finite images")
        if x_min < low or x_max > high:
            raise ValueError(f"x must lie in the clip range [{low}, {high}], but its values span [{x_min}, {x_max}]")
        labels = labels_for(y, x)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return x, labels, was_tensor, (low, high)


def budget_hint(eps):
    """"; did you mean 8/255 ≈ 0.031?" for a whole-number budget ≥ 1 (likely typed in 0–255 units), else ""."""
    return f"; did you mean {eps:g}/255 ≈ {eps / 255:.3f}?" if eps >= 1 and float(eps).is_integer() else ""


def warn_if_budget_covers_range(name, eps, norm, low, high):
    """Warn (stderr, ``UserWarning``) when an L∞ budget is at least the whole input range.

    A budget of 8 on [0, 1] images is almost always 8/255 typed in 0–255 units: it lets the attack
    reach every image, so the "robust accuracy" it measures is meaningless.
    """
    if norm == "linf" and eps >= high - low:
        warnings.warn(f"{name}: eps = {eps:g} covers the whole input range [{low:g}, {high:g}], so every image can be "
                      f"reached{budget_hint(eps)}", UserWarning, stacklevel=3)


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
