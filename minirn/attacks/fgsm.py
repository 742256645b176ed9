"""The fast gradient sign method (Goodfellow et al. 2015): one step of size ε along the gradient's sign."""
from __future__ import annotations

from minirn.attacks import checks, geometry, losses, objective


def fgsm(model, x, y, eps, *, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None, loss="ce"):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ε.

    .. math:: x' = \\mathrm{clip}_{[lo, hi]}\\big(x + \\epsilon\\, \\mathrm{sign}(\\nabla_x J(x))\\big)

    ``norm="l2"`` takes the normalised step :math:`\\epsilon\\, g/\\max(\\|g\\|_2, 10^{-12})` instead
    (the "fast gradient method").  :math:`J` is the cross-entropy, or its negative toward the
    targets ``y`` when ``targeted``, or the loss named by ``loss``: the objective J, ``"ce"`` (cross-entropy, the default), ``"margin"`` (CW margin) or ``"dlr"``
    (see :mod:`minirn.attacks.losses`; the margin losses keep their gradient where the softmax saturates).
    With batch statistics the gradient flows through them.

    x: (N, C, H, W) array or Tensor in ``clip``; y: (N,) labels; eps ≥ 0.  ``seed`` is accepted
    for a uniform signature (FGSM draws nothing).  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("fgsm", x, y, clip, eps, norm=norm)
    losses.check_loss(loss)
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    with objective.model_untouched(model):
        grad, _, _ = objective.input_gradient(model, x, labels, targeted, loss)
    return checks.finish(geometry.clip_box(x + eps * geometry.steepest_ascent(grad, norm), low, high), was_tensor)
