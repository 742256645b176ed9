"""Auto-PGD (Croce & Hein 2020): PGD whose step size tunes itself, and its targeted DLR form APGD-T.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (ICML 2020), Algorithm 1.  PGD with a fixed step is either too timid
(small α: it stops short of the boundary) or too jumpy (large α: it oscillates); APGD starts
with a large step and halves it, per example, whenever progress stalls:

* **step with momentum** (α = 0.75 after the first step):

  .. math::
      z^{k+1} = \\Pi\\big(x^{k} + \\eta^{k} s(\\nabla J(x^{k}))\\big), \\qquad
      x^{k+1} = \\Pi\\big(x^{k} + \\alpha (z^{k+1} - x^{k}) + (1 - \\alpha)(x^{k} - x^{k-1})\\big)

  with :math:`\\eta^0 = 2\\epsilon`, s the steepest-ascent direction of the norm (sign for L∞,
  g/‖g‖₂ for L2) and Π the projection onto the ε-ball ∩ box;
* **checkpoints** :math:`w_0 = 0, w_1 = 0.22 N_{iter}`, then periods shrinking by
  :math:`0.03 N_{iter}` down to :math:`0.06 N_{iter}` (:func:`checkpoints`);
* at each checkpoint the step of an example is **halved** when (1) the loss rose on fewer than
  ρ = 75% of the steps since the last checkpoint, or (2) the step was not halved at the last
  checkpoint and the best loss has not improved since; a halved example **restarts from its
  best point** (the highest loss seen), with no momentum;
* the result keeps, per example, the **best point** (an iterate that fooled the model, else the
  highest-loss iterate), never just the last iterate.

APGD-T (:func:`apgd_targeted`) runs APGD with the targeted DLR loss once for each of the
``n_targets`` classes the clean image ranks highest after its true class, and keeps the first
target that fools the model: success is any misclassification, as in AutoAttack.
"""
from __future__ import annotations

from minirn import backend
from minirn.attacks import checks, geometry, losses, objective

#: APGD's constants (Croce & Hein 2020, Section 3): first step 2ε, momentum 0.75, ρ = 0.75.
INITIAL_STEP_FACTOR = 2.0
MOMENTUM = 0.75
RHO = 0.75


def checkpoints(steps):
    """The iterations (1-based, increasing) after which APGD checks its step size.

    The first period is :math:`\\lfloor 0.22 N \\rfloor`; each next one is 0.03 N shorter, never below
    0.06 N (all at least one iteration, so short runs still check), as in the authors' code.
    """
    period = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, at = [], period
    while at <= steps:
        out.append(at)
        period = max(period - shrink, shortest)
        at += period
    return out


def apgd(model, x, y, eps, steps=100, *, norm="linf", loss="ce", targeted=False, restarts=1, rho=RHO,
         clip=(0.0, 1.0), seed=None, loss_history=None):
    """Auto-PGD with the objective ``loss`` ("ce", "margin" or "dlr"; see :mod:`.losses`).

    x: (N, C, H, W) array or Tensor in ``clip``; y: (N,) labels (targets when ``targeted``).
    eps: budget in ``norm`` ("linf" or "l2"); steps ≥ 1 gradient steps per run; ``restarts`` runs
    from random starts, combined per example (first success, else highest loss).  ``rho``: the
    share of improving steps below which the step is halved.  seed: int, Generator or None.
    loss_history: optional list; each step appends the batch mean of J (one device synchronisation per run).
    As with :func:`~minirn.attacks.pgd.pgd`, the batch is attacked jointly through whatever
    statistics the model uses.  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("apgd", x, y, clip, eps, None, steps, norm)
    losses.check_loss(loss)
    restarts = checks.check_int("apgd: restarts", restarts)
    checks.check_number("apgd: rho", rho)
    if not rho <= 1:
        raise ValueError(f"apgd: rho is a share of the steps, at most 1, got {rho}")
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    generator = backend.rng(seed)

    def objective_fn(logits):
        return losses.attack_loss(logits, labels, targeted, loss)

    best = None
    with objective.model_untouched(model):
        for _ in range(restarts):
            start = geometry.random_start(x, eps, norm, generator, low, high)
            candidate = apgd_run(model, x, start, labels, targeted, objective_fn, eps, steps, norm, low, high, rho,
                                 loss_history)
            best = candidate if best is None else objective.keep_worst(best, candidate)
    return checks.finish(best[0], was_tensor)


def apgd_targeted(model, x, y, eps, steps=100, *, n_targets=9, norm="linf", restarts=1, rho=RHO,
                  clip=(0.0, 1.0), seed=None):
    """APGD-T: APGD on the targeted DLR loss toward each of the top ``n_targets`` other classes.

    For each example the targets are the classes with the highest clean logits other than y
    (the 2nd, 3rd, ... most likely for a correctly classified image), ranked once on the clean
    batch.  Target r runs on every example of the batch (a fixed batch, so models with batch
    statistics see the same batch throughout); per example the result is the first target run
    that misclassifies it, else the run with the highest loss.  Success means
    :math:`\\arg\\max z \\ne y` (not necessarily the target).  K classes allow at most K − 1 targets;
    the targeted DLR needs K ≥ 4.  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("apgd_targeted", x, y, clip, eps, None, steps, norm)
    n_targets = checks.check_int("apgd_targeted: n_targets", n_targets)
    restarts = checks.check_int("apgd_targeted: restarts", restarts)
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    generator = backend.rng(seed)
    with objective.model_untouched(model):
        clean_logits = objective.logits_of(model, x)
        num_classes = clean_logits.shape[1]
        if num_classes < 4:
            raise ValueError(f"apgd_targeted: the targeted DLR loss needs at least 4 classes, got {num_classes}")
        ranked = losses.ranked_other_classes(clean_logits, labels)  # by decreasing clean logit, y last
        best = None
        for rank in range(min(n_targets, num_classes - 1)):
            targets = ranked[:, rank]

            def objective_fn(logits, targets=targets):
                return losses.dlr(logits, targets, targeted=True, true_labels=labels)

            for _ in range(restarts):
                start = geometry.random_start(x, eps, norm, generator, low, high)
                candidate = apgd_run(model, x, start, labels, False, objective_fn, eps, steps, norm, low, high, rho)
                best = candidate if best is None else objective.keep_worst(best, candidate)
    return checks.finish(best[0], was_tensor)


def apgd_run(model, x, start, labels, targeted, objective_fn, eps, steps, norm, low, high, rho=RHO,
             loss_history=None):
    """One APGD run from ``start``; returns (x' (N, ...), J at x' (N,), success (N,) bool).

    ``objective_fn(logits) -> J`` is the (N,) objective to maximise; success is judged against
    ``labels`` (fooled, or the target reached when ``targeted``).  Per example x' is the iterate
    that first succeeded, else the highest-loss iterate.
    """
    xp = backend.array_namespace(x)
    n, ndim = x.shape[0], x.ndim

    def per(v):
        return geometry.per_example(v, ndim)

    mean_losses = []   # the batch means of J for loss_history, kept on the device until the run ends

    def gradient_at(point):
        grad, j, logits = objective.value_and_gradient(model, point, objective_fn)
        if loss_history is not None:
            mean_losses.append(xp.mean(j))
        return grad, j, objective.succeeded(logits, labels, targeted)

    step = xp.full((n,), INITIAL_STEP_FACTOR * eps, dtype=x.dtype, device=x.device)
    x_now = start
    grad, j, success = gradient_at(x_now)
    x_previous = x_now
    x_best, j_best, grad_best = x_now, j, grad  # highest loss so far
    x_found, found = x_now, success  # first successful iterate
    j_last = j
    checks_at = set(checkpoints(steps))
    rises = xp.zeros((n,), dtype=x.dtype, device=x.device)
    j_best_at_check = j_best
    halved_at_check = xp.zeros((n,), dtype=xp.bool, device=x.device)
    period_start = 0
    for k in range(1, steps + 1):
        a = 1.0 if k == 1 else MOMENTUM
        z = geometry.project(x_now + per(step) * geometry.steepest_ascent(grad, norm), x, eps, low, high, norm)
        x_next = geometry.project(x_now + a * (z - x_now) + (1.0 - a) * (x_now - x_previous), x, eps, low, high, norm)
        x_previous, x_now = x_now, x_next
        grad, j, success = gradient_at(x_now)

        new = success & ~found
        x_found, found = xp.where(per(new), x_now, x_found), found | success
        rises = rises + xp.astype(j > j_last, x.dtype)
        j_last = j
        better = j > j_best
        x_best, grad_best = xp.where(per(better), x_now, x_best), xp.where(per(better), grad, grad_best)
        j_best = xp.where(better, j, j_best)

        if k in checks_at:
            too_few_rises = rises < rho * (k - period_start)
            stalled = ~halved_at_check & (j_best <= j_best_at_check)
            halve = too_few_rises | stalled
            step = xp.where(halve, step / 2.0, step)
            x_now = xp.where(per(halve), x_best, x_now)
            grad = xp.where(per(halve), grad_best, grad)
            x_previous = xp.where(per(halve), x_now, x_previous)  # restart without momentum
            halved_at_check, j_best_at_check = halve, j_best
            rises = xp.zeros_like(rises)
            period_start = k
    x_out = xp.where(per(found), x_found, x_best)
    if loss_history is not None:
        loss_history.extend(objective.to_list(xp.stack(mean_losses)))
    return x_out, j_best, found
