"""Momentum iterative FGSM (Dong et al. 2018): sign steps on an accumulated, L1-normalised gradient."""
from __future__ import annotations

from minirn import backend
from minirn.attacks import checks, geometry, losses, objective


def mim(model, x, y, eps, alpha, steps, *, decay=1.0, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None,
        loss="ce"):
    """Momentum iterative FGSM (Dong et al. 2018): accumulate L1-normalised gradients, step on their sign.

    .. math::
        g^{t+1} = \\mu\\, g^{t} + \\frac{\\nabla_x J(x^{t})}{\\|\\nabla_x J(x^{t})\\|_1}, \\qquad
        x^{t+1} = \\Pi_{B_\\epsilon(x)\\cap[lo,hi]^d}\\big(x^{t} + \\alpha\\, \\mathrm{sign}(g^{t+1})\\big)

    with :math:`g^0 = 0`, :math:`x^0 = x`, decay :math:`\\mu` (1.0 by default) and the L1 norm per
    example; ``loss``: the objective J, ``"ce"`` (cross-entropy, the default), ``"margin"`` (CW margin) or ``"dlr"``
    (see :mod:`minirn.attacks.losses`; the margin losses keep their gradient where the softmax saturates).
    ``norm="l2"`` steps along :math:`g/\\|g\\|_2` and projects onto the L2 ball (ball, then box).
    x: (N, C, H, W); y: (N,).  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("mim", x, y, clip, eps, alpha, steps, norm)
    checks.check_number("mim: decay", decay)
    losses.check_loss(loss)
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    xp = backend.array_namespace(x)
    x_adv, momentum = x, xp.zeros_like(x)
    with objective.model_untouched(model):
        for _ in range(steps):
            grad, _, _ = objective.input_gradient(model, x_adv, labels, targeted, loss)
            l1 = xp.clip(geometry.norm_per_example(grad, "l1"), 1e-12, None)
            momentum = decay * momentum + grad / geometry.per_example(l1, grad.ndim)
            x_adv = x_adv + alpha * geometry.steepest_ascent(momentum, norm)
            x_adv = geometry.project(x_adv, x, eps, low, high, norm)
    return checks.finish(x_adv, was_tensor)
