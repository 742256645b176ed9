"""Projected gradient descent (Madry et al. 2018), the reference first-order attack."""
from __future__ import annotations

from minirn import backend
from minirn.attacks import common


def pgd(model, x, y, eps, alpha, steps, *, norm="linf", random_start=True, restarts=1, targeted=False,
        clip=(0.0, 1.0), seed=None, projection="ball_then_box", loss_history=None):
    """Projected gradient ascent on the loss inside the ε-ball (Madry et al. 2018).

    .. math::
        x^{0} = x + \\delta_0, \\qquad
        x^{t+1} = \\Pi_{B_\\epsilon(x) \\cap [lo, hi]^d}\\big(x^{t} + \\alpha\\, s(\\nabla_{x} J(x^{t}))\\big)

    with :math:`s(g) = \\mathrm{sign}(g)` for ``norm="linf"`` and :math:`s(g) = g/\\max(\\|g\\|_2, 10^{-12})`
    per example for ``norm="l2"``; :math:`J` is the cross-entropy (untargeted) or minus the
    cross-entropy to the target labels (``targeted=True``: ``y`` holds the targets).
    :math:`\\delta_0` is uniform in the ε-ball when ``random_start`` (for L2 truly uniform:
    Gaussian direction times :math:`\\epsilon u^{1/d}`), else 0.  The L∞ projection clips to
    :math:`[x-\\epsilon, x+\\epsilon]` then to the box; the L2 one is ``projection="ball_then_box"``
    (scale δ onto the ball, then clip: standard, feasible) or ``"exact"`` (the nearest point of
    ball ∩ box, by bisection; see :func:`minirn.attacks.common.project_l2_exact`).

    Within a run the last iterate is kept.  With ``restarts`` > 1 the runs are combined per
    example: the first run that succeeds, otherwise the run with the highest loss.

    The whole batch is attacked jointly through exactly the function the model computes:
    with batch statistics (train mode, or eval with ``eval_mean/eval_scale="batch"``) the
    gradient flows through the batch mean/variance/range, so the result, and the accuracy
    measured on it, depends on the batch size and composition.  (The per-example choice among
    restarts is then made on the batches each run evaluated.)

    model: maps (N, C, H, W) -> logits (N, K).  x: (N, C, H, W) array or Tensor in ``clip``.
    y: (N,) integer labels.  eps, alpha: budget and step size (≥ 0); steps ≥ 1.
    seed: int, ``numpy.random.Generator`` or None (the global generator) for the random start.
    loss_history: optional list; each step appends the batch mean of J at the current iterate
    (for the gradient-masking checks; each entry costs a device synchronisation).
    Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = common.prepare("pgd", x, y, clip, eps, alpha, steps, norm)
    restarts = common.check_int("pgd: restarts", restarts)
    if projection not in common.PROJECTIONS:
        raise ValueError(f"pgd: projection must be 'ball_then_box' or 'exact', got {projection!r}")
    if eps == 0:
        return common.finish(common.copy(x), was_tensor)
    generator = backend.rng(seed)
    best = None
    with common.model_untouched(model):
        for _ in range(restarts):
            x_adv = common.random_start(x, eps, norm, generator, low, high) if random_start else x
            for _ in range(steps):
                grad, j, _ = common.input_gradient(model, x_adv, labels, targeted)
                if loss_history is not None:
                    loss_history.append(float(backend.array_namespace(j).mean(j)))
                x_adv = x_adv + alpha * common.steepest_ascent(grad, norm)
                x_adv = common.project(x_adv, x, eps, low, high, norm, projection)
            if restarts == 1:
                best = (x_adv, None, None)
                break
            candidate = (x_adv, *common.evaluate_objective(model, x_adv, labels, targeted))
            best = candidate if best is None else common.keep_worst(best, candidate)
    return common.finish(best[0], was_tensor)
