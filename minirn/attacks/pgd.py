"""Projected gradient descent (Madry et al. 2018), the reference first-order attack, and BIM, PGD without a random start.

One PGD step reads :math:`x' \\leftarrow \\Pi(x' + \\alpha\\, s(\\nabla_{x'} J))`: ``objective.input_gradient``
gives :math:`\\nabla_{x'} J`, ``geometry.steepest_ascent`` the direction s and ``geometry.project`` the
projection :math:`\\Pi` onto the ε-ball ∩ box.  The step size α follows one of three named rules below.
"""
from __future__ import annotations

from minirn import backend
from minirn.attacks import checks, geometry, losses, objective


# ----------------------------------------------------------------------------
# step-size rules: α as a function of the budget ε (and of the number of steps)
# ----------------------------------------------------------------------------
def paper_step_size(eps):
    """α = ε/10: the paper's protocol (the authors' code runs 20 iterations of ε/10).

    The default of :func:`~minirn.attacks.evaluate` and :func:`~minirn.attacks.sanity_checks`.
    """
    return eps / 10


def madry_step_size(eps, steps):
    """α = 2.5 ε / steps (Madry et al. 2018): the steps add up to 2.5 ε, so the iterate can cross
    the ball and still come back to its boundary.  ``python -m minirn reproduce`` uses it with 10 steps."""
    return 2.5 * eps / steps


def adversarial_training_step_size(eps):
    """α = ε/4: the step of the PGD that generates the training examples in adversarial training
    (the authors' choice; :class:`minirn.train.AdversarialTraining`)."""
    return eps / 4


# ----------------------------------------------------------------------------
# the attacks
# ----------------------------------------------------------------------------
def pgd(model, x, y, eps, alpha, steps, *, norm="linf", random_start=True, restarts=1, targeted=False,
        clip=(0.0, 1.0), seed=None, projection="ball_then_box", loss="ce", loss_history=None):
    """Projected gradient ascent on the loss inside the ε-ball (Madry et al. 2018).

    .. math::
        x^{0} = x + \\delta_0, \\qquad
        x^{t+1} = \\Pi_{B_\\epsilon(x) \\cap [lo, hi]^d}\\big(x^{t} + \\alpha\\, s(\\nabla_{x} J(x^{t}))\\big)

    with :math:`s(g) = \\mathrm{sign}(g)` for ``norm="linf"`` and :math:`s(g) = g/\\max(\\|g\\|_2, 10^{-12})`
    per example for ``norm="l2"``; :math:`J` is the cross-entropy (untargeted) or minus the
    cross-entropy to the target labels (``targeted=True``: ``y`` holds the targets), or the loss named by
    ``loss``: the objective J, ``"ce"`` (cross-entropy, the default), ``"margin"`` (CW margin) or ``"dlr"``
    (see :mod:`minirn.attacks.losses`; the margin losses keep their gradient where the softmax saturates).
    :math:`\\delta_0` is uniform in the ε-ball when ``random_start`` (for L2 truly uniform:
    Gaussian direction times :math:`\\epsilon u^{1/d}`), else 0.  The L∞ projection clips to
    :math:`[x-\\epsilon, x+\\epsilon]` then to the box; the L2 one is ``projection="ball_then_box"``
    (scale δ onto the ball, then clip: standard, feasible) or ``"exact"`` (the nearest point of
    ball ∩ box, by bisection; see :func:`minirn.attacks.geometry.project_l2_exact`).

    Within a run the last iterate is kept.  With ``restarts`` > 1 the runs are combined per
    example: the first run that succeeds, otherwise the run with the highest loss.

    The whole batch is attacked jointly through exactly the function the model computes:
    with batch statistics (train mode, or eval with ``eval_mean/eval_scale="batch"``) the
    gradient flows through the batch mean/variance/range, so the result, and the accuracy
    measured on it, depends on the batch size and composition.  (The per-example choice among
    restarts is then made on the batches each run evaluated.)

    model: maps (N, C, H, W) -> logits (N, K).  x: (N, C, H, W) array or Tensor in ``clip``.
    y: (N,) integer labels.  eps, alpha: budget and step size (≥ 0); steps ≥ 1.  The step-size rules
    are named above: the paper's protocol is 20 steps of :func:`paper_step_size` (ε/10, the authors'
    code); ``python -m minirn reproduce`` takes 10 steps of :func:`madry_step_size` (2.5 ε / steps);
    adversarial training attacks with :func:`adversarial_training_step_size` (ε/4).
    seed: int, ``numpy.random.Generator`` or None (the global generator) for the random start.
    loss_history: optional list; each step appends the batch mean of J at the current iterate, the
    restarts one after another (``steps`` entries per run; for the gradient-masking checks; one device
    synchronisation per run).
    Returns x' with the kind, shape and dtype of x.
    """
    return _projected_gradient_ascent("pgd", model, x, y, eps, alpha, steps, norm, random_start, restarts, targeted,
                                      clip, seed, projection, loss, loss_history)


def bim(model, x, y, eps, alpha, steps, *, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None, loss="ce"):
    """Basic iterative method (Kurakin et al. 2017): FGSM steps of size α, projected each time.

    .. math:: x^{0} = x, \\qquad
              x^{t+1} = \\mathrm{clip}_{[lo,hi]}\\big(\\mathrm{clip}_{[x-\\epsilon,\\,x+\\epsilon]}
              (x^{t} + \\alpha\\,\\mathrm{sign}(\\nabla_x J(x^{t})))\\big)

    This is :func:`pgd` without random start and with one run (its errors name ``bim``).
    x: (N, C, H, W); y: (N,).  Returns x' with the kind, shape and dtype of x.
    """
    return _projected_gradient_ascent("bim", model, x, y, eps, alpha, steps, norm, False, 1, targeted, clip, seed,
                                      "ball_then_box", loss, None)


def _projected_gradient_ascent(name, model, x, y, eps, alpha, steps, norm, random_start, restarts, targeted, clip,
                               seed, projection, loss, loss_history):
    """The loop of :func:`pgd` (and :func:`bim`); ``name`` prefixes the argument errors."""
    x, labels, was_tensor, (low, high) = checks.prepare(name, x, y, clip, eps, alpha, steps, norm)
    restarts = checks.check_int(f"{name}: restarts", restarts)
    losses.check_loss(loss)
    if projection not in checks.PROJECTIONS:
        raise ValueError(f"{name}: projection must be 'ball_then_box' or 'exact', got {projection!r}")
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    generator = backend.rng(seed)
    best = None
    with objective.model_untouched(model):
        for _ in range(restarts):
            x_adv = geometry.random_start(x, eps, norm, generator, low, high) if random_start else x
            mean_losses = []   # the batch means of J, kept on the device until the run ends
            for _ in range(steps):
                grad, j, _ = objective.input_gradient(model, x_adv, labels, targeted, loss)
                if loss_history is not None:
                    mean_losses.append(backend.array_namespace(j).mean(j))
                x_adv = x_adv + alpha * geometry.steepest_ascent(grad, norm)
                x_adv = geometry.project(x_adv, x, eps, low, high, norm, projection)
            if loss_history is not None:
                loss_history.extend(objective.to_list(backend.array_namespace(x).stack(mean_losses)))
            if restarts == 1:
                best = (x_adv, None, None)
                break
            candidate = (x_adv, *objective.evaluate_objective(model, x_adv, labels, targeted, loss))
            best = candidate if best is None else objective.keep_worst(best, candidate)
    return checks.finish(best[0], was_tensor)

