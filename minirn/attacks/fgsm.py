"""The fast gradient sign method and its iterated variants: FGSM, BIM, MIM."""
from __future__ import annotations

from minirn import backend
from minirn.attacks import common
from minirn.attacks.pgd import pgd


def fgsm(model, x, y, eps, *, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ε.

    .. math:: x' = \\mathrm{clip}_{[lo, hi]}\\big(x + \\epsilon\\, \\mathrm{sign}(\\nabla_x J(x))\\big)

    ``norm="l2"`` takes the normalised step :math:`\\epsilon\\, g/\\max(\\|g\\|_2, 10^{-12})` instead
    (the "fast gradient method").  :math:`J` is the cross-entropy, or its negative toward the
    targets ``y`` when ``targeted``.  With batch statistics the gradient flows through them.

    x: (N, C, H, W) array or Tensor in ``clip``; y: (N,) labels; eps ≥ 0.  ``seed`` is accepted
    for a uniform signature (FGSM draws nothing).  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = common.prepare("fgsm", x, y, clip, eps, norm=norm)
    if eps == 0:
        return common.finish(common.copy(x), was_tensor)
    with common.model_untouched(model):
        grad, _, _ = common.input_gradient(model, x, labels, targeted)
    return common.finish(common.clip_box(x + eps * common.steepest_ascent(grad, norm), low, high), was_tensor)


def bim(model, x, y, eps, alpha, steps, *, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None):
    """Basic iterative method (Kurakin et al. 2017): FGSM steps of size α, projected each time.

    .. math:: x^{0} = x, \\qquad
              x^{t+1} = \\mathrm{clip}_{[lo,hi]}\\big(\\mathrm{clip}_{[x-\\epsilon,\\,x+\\epsilon]}
              (x^{t} + \\alpha\\,\\mathrm{sign}(\\nabla_x J(x^{t})))\\big)

    This is :func:`~minirn.attacks.pgd.pgd` without random start and with one run.
    x: (N, C, H, W); y: (N,).  Returns x' with the kind, shape and dtype of x.
    """
    return pgd(model, x, y, eps, alpha, steps, norm=norm, random_start=False, restarts=1,
               targeted=targeted, clip=clip, seed=seed)


def mim(model, x, y, eps, alpha, steps, *, decay=1.0, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None):
    """Momentum iterative FGSM (Dong et al. 2018): accumulate L1-normalised gradients, step on their sign.

    .. math::
        g^{t+1} = \\mu\\, g^{t} + \\frac{\\nabla_x J(x^{t})}{\\|\\nabla_x J(x^{t})\\|_1}, \\qquad
        x^{t+1} = \\Pi_{B_\\epsilon(x)\\cap[lo,hi]^d}\\big(x^{t} + \\alpha\\, \\mathrm{sign}(g^{t+1})\\big)

    with :math:`g^0 = 0`, :math:`x^0 = x`, decay :math:`\\mu` (1.0 by default) and the L1 norm per
    example.  ``norm="l2"`` steps along :math:`g/\\|g\\|_2` and projects onto the L2 ball (ball, then box).
    x: (N, C, H, W); y: (N,).  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = common.prepare("mim", x, y, clip, eps, alpha, steps, norm)
    common.check_number("mim: decay", decay)
    if eps == 0:
        return common.finish(common.copy(x), was_tensor)
    xp = backend.array_namespace(x)
    x_adv, momentum = x, xp.zeros_like(x)
    with common.model_untouched(model):
        for _ in range(steps):
            grad, _, _ = common.input_gradient(model, x_adv, labels, targeted)
            l1 = xp.clip(common.norm_per_example(grad, "l1"), 1e-12, None)
            momentum = decay * momentum + grad / common.per_example(l1, grad.ndim)
            x_adv = x_adv + alpha * common.steepest_ascent(momentum, norm)
            x_adv = common.project(x_adv, x, eps, low, high, norm)
    return common.finish(x_adv, was_tensor)
