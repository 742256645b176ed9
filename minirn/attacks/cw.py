"""The Carlini–Wagner L2 attack (Carlini & Wagner 2017)."""
from __future__ import annotations

from minirn import backend
from minirn.attacks import checks, geometry, objective
from minirn.autograd.grad_mode import enable_grad
from minirn.autograd.tensor import Tensor
from minirn.nn import functional as F
from minirn.optim import Adam

_NO_UPPER_BOUND = 1e10


def cw_l2(model, x, y, *, eps=None, c=1.0, kappa=0.0, steps=100, lr=0.05, binary_search_steps=5,
          targeted=False, clip=(0.0, 1.0), norm="l2", seed=None):
    """Carlini–Wagner L2: the smallest perturbation that crosses the decision boundary.

    Change of variables (the box :math:`[lo, hi]` holds for every w):

    .. math:: x'(w) = lo + \\tfrac{hi - lo}{2}\\,(\\tanh w + 1)

    and, per example n with constant :math:`c_n`, minimise with Adam (learning rate ``lr``,
    ``steps`` steps, w initialised at :math:`x'(w) = x`; Carlini & Wagner use lr 0.01 with up to
    10 000 steps, minirn's defaults of 0.05 and 100 steps trade precision for speed):

    .. math::
        \\|x'(w) - x\\|_2^2 + c_n\\, f(x'(w)), \\qquad
        f(x') = \\max\\big(Z_y(x') - \\max_{j \\ne y} Z_j(x'),\\; -\\kappa\\big)

    (Z the logits; targeted: :math:`f = \\max(\\max_{j \\ne t} Z_j - Z_t, -\\kappa)` with the targets t in
    ``y``).  Binary search on :math:`c_n` (``binary_search_steps`` rounds starting from ``c``): after a
    round that found an adversarial example the upper bound becomes :math:`c_n`, otherwise the lower
    bound, and :math:`c_n` moves to the midpoint (×10 while there is no upper bound yet).  The result is,
    per example, the successful iterate with the smallest L2 distance, or x where none succeeded.

    ``eps`` (optional) is a budget in ``norm`` ("l2" or "linf"): the result is then projected onto the
    ε-ball (ball, then box), so it can be compared with the other attacks at the same ε.  The batch is
    optimised jointly; with batch statistics the logits of each example depend on the whole batch.

    x: (N, C, H, W) array or Tensor in ``clip``; y: (N,) labels.  ``seed`` is accepted for a uniform
    signature (the attack is deterministic).  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("cw_l2", x, y, clip, eps, None, steps, norm)
    checks.check_number("cw_l2: c", c, positive=True)
    checks.check_number("cw_l2: lr (step size)", lr)
    checks.check_number("cw_l2: kappa", kappa)
    checks.check_int("cw_l2: binary_search_steps", binary_search_steps)
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    xp = backend.array_namespace(x)
    n, half = x.shape[0], (high - low) / 2.0
    w_start = xp.atanh(xp.clip((x - low) / half - 1.0, -1.0 + 1e-6, 1.0 - 1e-6))
    full = lambda value: xp.full((n,), value, dtype=x.dtype, device=x.device)  # noqa: E731
    c_now, c_low, c_high = full(float(c)), full(0.0), full(_NO_UPPER_BOUND)
    best_adv, best_distance = x, full(float("inf"))
    with objective.model_untouched(model):
        for _ in range(binary_search_steps):
            w = Tensor(w_start, requires_grad=True)
            optimizer = Adam([w], lr=lr)
            found = xp.zeros((n,), dtype=xp.bool, device=x.device)
            for _ in range(steps):
                with enable_grad():
                    x_adv = low + half * (F.tanh(w) + 1.0)
                    margin = _margin(model(x_adv), labels, targeted)
                    diff = x_adv - x
                    distance = F.sum(diff * diff, axis=tuple(range(1, x.ndim)))
                    (distance + F.maximum(margin, -float(kappa)) * c_now).sum().backward()
                success = (margin.data < 0.0) & (margin.data <= -float(kappa))
                better = success & (distance.data < best_distance)
                best_distance = xp.where(better, distance.data, best_distance)
                best_adv = xp.where(geometry.per_example(better, x.ndim), x_adv.data, best_adv)
                found = found | success
                optimizer.step()
                optimizer.zero_grad()
            c_high = xp.where(found, xp.minimum(c_high, c_now), c_high)
            c_low = xp.where(found, c_low, xp.maximum(c_low, c_now))
            c_now = xp.where(c_high < _NO_UPPER_BOUND, (c_low + c_high) / 2.0, c_now * 10.0)
    best_adv = geometry.clip_box(best_adv, low, high)
    if eps is not None:
        best_adv = geometry.project(best_adv, x, eps, low, high, norm)
    return checks.finish(best_adv, was_tensor)


def _margin(logits, labels, targeted):
    """:math:`Z_y - \\max_{j\\ne y} Z_j` (untargeted) or :math:`\\max_{j\\ne t} Z_j - Z_t` (targeted); (N, K) -> (N,).

    Negative means the attack succeeded.
    """
    onehot = F.one_hot(labels, logits.shape[1], logits.dtype)
    true = F.sum(logits * onehot, axis=1)
    other = F.max(logits - onehot * 1e4, axis=1)
    return other - true if targeted else true - other
