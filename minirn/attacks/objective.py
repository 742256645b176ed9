"""The objective an attack ascends, its gradient with respect to the input, and the untouched-model guard.

x: (N, C, H, W) images, or (N, D) vectors; x' is the attacked input.  The *objective* is, by default,

.. math:: J(x') = \\ell_{CE}(f(x'), y) \\quad \\text{(untargeted)}, \\qquad
          J(x') = -\\ell_{CE}(f(x'), t) \\quad \\text{(targeted; ``y`` then holds the targets t)},

per example, or the CW margin or the DLR loss (``loss="margin"``/``"dlr"``, :mod:`.losses`); :func:`input_gradient` returns :math:`\\nabla_{x'} \\sum_n J_n` through exactly the
function the model computes (batch statistics included).  Attacks run inside :func:`model_untouched`,
which leaves the model's modes, running statistics and parameter gradients as it found them.
:func:`keep_worst` combines restarts per example: first success, else the highest J.
The evaluations (:mod:`.evaluate`, :mod:`.suite`, :mod:`.sanity`) read their results back with
:func:`to_list` and average them with :func:`mean`.
"""
from __future__ import annotations

import contextlib
import math

from minirn import backend
from minirn.attacks import losses
from minirn.attacks.geometry import per_example
from minirn.autograd.grad_mode import enable_grad, freeze_running_stats, no_grad
from minirn.autograd.tensor import Tensor


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


def objective(logits, labels, targeted, loss="ce"):
    """Per-example :math:`J` for the loss named ``loss`` ("ce", "margin" or "dlr"; :mod:`.losses`).

    logits: (N, K) Tensor -> (N,) Tensor.  Cross-entropy by default: :math:`\\ell_{CE}(z, y)`, or
    :math:`-\\ell_{CE}(z, t)` when ``targeted``.
    """
    return losses.attack_loss(logits, labels, targeted, loss)


def value_and_gradient(model, x_adv, objective_fn):
    """:math:`\\nabla_{x'} \\sum_n J_n`, :math:`J` and the logits at x', for any ``objective_fn(logits) -> J (N,)``.

    The whole batch goes through the model at once, so with batch statistics the
    gradient includes their dependence on x'.  The sum (not the mean) keeps each
    example's gradient unscaled by 1/N.  Returns (grad (N, ...), J (N,), logits (N, K)).
    """
    xt = Tensor(x_adv, requires_grad=True)
    with enable_grad():
        logits = model(xt)
        j = objective_fn(logits)
        j.sum().backward()
    grad = xt.grad
    if grad is None:  # the model ignores its input
        xp = backend.array_namespace(x_adv)
        grad = xp.zeros(x_adv.shape, dtype=x_adv.dtype, device=x_adv.device)
    return grad, j.data, logits.data


def input_gradient(model, x_adv, labels, targeted, loss="ce"):
    """:math:`\\nabla_{x'} \\sum_n J_n` of :func:`objective`; returns (grad (N, ...), J (N,), logits (N, K))."""
    return value_and_gradient(model, x_adv, lambda logits: objective(logits, labels, targeted, loss))


def logits_of(model, x):
    """The logits (N, K) for x (N, ...) as an array: no graph, running statistics frozen."""
    with no_grad(), freeze_running_stats():
        return model(Tensor(x)).data


def succeeded(logits, labels, targeted):
    """(N,) bool: fooled (:math:`\\arg\\max z \\ne y`), or the target reached when ``targeted``."""
    predicted = backend.array_namespace(logits).argmax(logits, axis=1)
    return (predicted == labels) if targeted else (predicted != labels)


def predict(model, x):
    """Predicted classes (N,) for x (N, ...): no graph, running statistics frozen."""
    logits = logits_of(model, x)
    return backend.array_namespace(logits).argmax(logits, axis=1)


def evaluate_objective(model, x_adv, labels, targeted, loss="ce"):
    """(J (N,), success (N,) bool) at x' without a graph: success = fooled (or target hit)."""
    with no_grad():
        logits = model(Tensor(x_adv))
        j = objective(logits, labels, targeted, loss).data
    return j, succeeded(logits.data, labels, targeted)


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


def to_list(array):
    """A backend array as a list of Python numbers or bools (one device-to-host copy)."""
    return backend.to_host(array).tolist()


def mean(values):
    """The mean of a list of numbers or bools, summed exactly (``math.fsum``); NaN for an empty list."""
    return math.fsum(float(v) for v in values) / len(values) if values else float("nan")
