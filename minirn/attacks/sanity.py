"""``sanity_checks``: is the robustness we measure real, or are the gradients masked?

The checks follow Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of
Security", and Carlini et al. (2019), "On Evaluating Adversarial Robustness".  A model that
resists PGD but fails one of these checks is more likely to hide its gradients than to be robust:

========================================  ===================================================
check                                     passes when
========================================  ===================================================
``model_is_alive``                        clean accuracy above 1.5/K (K classes, from the logits)
                                          and more than one class predicted (else the network
                                          is dead and every other check is void)
``accuracy_decreases_with_eps``           PGD accuracy is non-increasing along ε (± tolerance)
``large_eps_reaches_zero``                the strong attack with a budget covering the box gives 0% accuracy
``pgd_at_least_as_strong_as_fgsm``        at most ``tolerance``·N examples fooled by FGSM survive PGD
``more_steps_and_restarts_change_little`` 2× the steps and one more restart lower accuracy by ≤ tolerance
                                          (without a reported suite evaluation; with one, a finding)
``suite_converged``                       a stronger suite lowers the *reported* robust accuracy (the
                                          suite's, given as ``reported_robust``) by ≤ tolerance
``loss_increases``                        the PGD loss rises on most steps, and overall
``stronger_than_random_noise``            PGD beats ``noise_draws`` random perturbations of norm ε
``stronger_than_transfer``                white-box PGD beats PGD transferred from ``transfer_model``
``zero_input_gradients``                  at most ``tolerance``·N examples have an all-zero input gradient
``deterministic_forward``                 two forward passes give bit-identical logits
``gradient_free_not_stronger``            at most ``tolerance``·N examples fooled by Square survive the
                                          white-box attacks (else the gradients are masked)
========================================  ===================================================

The *strong attack* is the per-example worst case of PGD with the cross-entropy, PGD with the CW
margin and APGD with the DLR loss (``steps`` steps each, random starts): cross-entropy alone
stalls where the softmax saturates (at a budget covering the box a confident model gives it a
vanishing gradient), which would make ``large_eps_reaches_zero`` fail for a reason that is the
attack's, not the model's.  The white-box side of ``gradient_free_not_stronger`` is the same
strong attack at ε (with APGD-CE added).

**Which convergence check.**  A reported number must be checked with the attack it came from.  When
``reported_robust`` (the per-example result of a suite evaluation on these images, in these batches) and
``stronger`` (a stronger ensemble, :func:`~minirn.attacks.suite.stronger_suite`) are given,
``suite_converged`` re-attacks with the stronger ensemble and fails if it lowers the reported accuracy by
more than ``tolerance``; PGD's own convergence (``more_steps_and_restarts_change_little``) then goes to
``findings``, with PGD's gap to the suite: how far ``steps``-step PGD alone is from the reported number is a
fact about PGD, not a fault of the evaluation.  Without them, the PGD check is the convergence check.

Each attack runs once and its result is reused: the base PGD at ε is also the strong attack's
PGD-CE at ε and, on the first batch, gives the loss per step for ``loss_increases``; the clean
logits give the clean accuracy, ``model_is_alive`` and the first pass of ``deterministic_forward``.
"""
from __future__ import annotations

import math

from tqdm.auto import tqdm

from minirn import backend
from minirn.attacks import geometry, objective
from minirn.attacks.apgd import apgd
from minirn.attacks.checks import check_int, prepare
from minirn.attacks.evaluate import uses_batch_statistics
from minirn.attacks.fgsm import fgsm
from minirn.attacks.objective import mean, to_list
from minirn.attacks.pgd import paper_step_size, pgd
from minirn.attacks.square import square
from minirn.attacks.suite import robust_accuracy

#: A live model's clean accuracy is above this many times chance (1 / classes).
ALIVE_ABOVE_CHANCE = 1.5


def is_alive(accuracy, distinct_classes, num_classes) -> bool:
    """Did a model learn anything: accuracy above ``ALIVE_ABOVE_CHANCE / num_classes`` and more than one
    class predicted.  A dead network (one class for every image, zero input gradients) fails both."""
    return accuracy > ALIVE_ABOVE_CHANCE / num_classes and distinct_classes > 1


def sanity_checks(model, x, y, eps, *, norm="linf", steps=20, alpha=None, restarts=1, batch_size=None,
                  seed=0, transfer_model=None, noise_draws=20, tolerance=0.02, square_queries=1000, clip=(0.0, 1.0),
                  progress=False, reported_robust=None, stronger=None):
    """Run the gradient-masking checks at budget ``eps`` and report each with its numbers.

    x: (N, C, H, W) in ``clip``; y: (N,) labels.  PGD uses ``steps`` steps of ``alpha`` (by default
    ε/10, :func:`~minirn.attacks.pgd.paper_step_size`) with a random start and ``restarts`` runs.
    Batches of ``batch_size`` (all of x by default) are attacked and classified together, as in :func:`~minirn.attacks.evaluate`.
    ``square_queries``: the budget of the Square attack in ``gradient_free_not_stronger`` (L∞ only;
    for L2 that check is skipped).
    ``transfer_model``: a second, independently trained model; without it that check is skipped
    (``passed: None`` with a note).  Returns ``{"passed": bool, "checks": {name: {"passed": ...,
    numbers...}}, "findings": {...}, "config": {...}}`` of plain Python types; ``passed`` is True when no check failed.
    reported_robust: (N,) booleans, the reported suite evaluation's per-example result on x (same order and
    batches), and stronger: the ensemble to re-attack with (a name of :data:`~minirn.attacks.SUITES` or a dict):
    both or neither (see the module docstring).
    """
    x, labels, _, (low, high) = prepare("sanity_checks", x, y, clip, eps, alpha, steps, norm)
    seed = check_int("sanity_checks: seed", seed, minimum=0)
    n = x.shape[0]
    batch_size = n if batch_size is None else check_int("sanity_checks: batch_size", batch_size)
    alpha = paper_step_size(eps) if alpha is None else alpha
    batches = [(x[s : s + batch_size, ...], labels[s : s + batch_size]) for s in range(0, n, batch_size)]
    if (reported_robust is None) != (stronger is None):
        raise ValueError("sanity_checks: give reported_robust and stronger together (the suite's convergence check)")
    if reported_robust is not None and len(reported_robust) != n:
        raise ValueError(f"sanity_checks: reported_robust has {len(reported_robust)} entries for {n} examples")
    bar = tqdm(total=12, disable=not progress, desc="sanity checks")

    def robust(attack, target=model):
        """Per example: still correctly classified by ``target`` after ``attack(batch_x, batch_y, b)``?"""
        out = []
        for b, (xb, yb) in enumerate(batches):
            out += to_list(objective.predict(target, attack(xb, yb, b)) == yb)
        return out

    def pgd_attack(budget, step, steps_=steps, restarts_=restarts, source=model, loss="ce", first_batch_history=None):
        """PGD on each batch; ``first_batch_history`` (a list) receives the loss per step on batch 0."""
        return lambda xb, yb, b: pgd(source, xb, yb, budget, step, steps_, norm=norm, restarts=restarts_,
                                     clip=(low, high), seed=seed + b, loss=loss,
                                     loss_history=first_batch_history if b == 0 else None)

    def apgd_attack(budget, loss):
        return lambda xb, yb, b: apgd(model, xb, yb, budget, steps, norm=norm, loss=loss, clip=(low, high),
                                      seed=seed + b)

    def strong(budget, step, pgd_ce=None):
        """Per example: robust to PGD-CE, PGD-margin and APGD-DLR at ``budget`` (the strong attack).

        pgd_ce: the PGD-CE flags at (budget, step) when they are already computed (then not re-run).
        """
        pgd_ce = robust(pgd_attack(budget, step)) if pgd_ce is None else pgd_ce
        runs = [pgd_ce, robust(pgd_attack(budget, step, loss="margin")), robust(apgd_attack(budget, "dlr"))]
        return [all(r) for r in zip(*runs)]

    checks = {}
    clean_logits = [objective.logits_of(model, xb) for xb, _ in batches]          # (N_b, K) per batch
    xp = backend.array_namespace(clean_logits[0])
    predicted = [xp.argmax(logits, axis=1) for logits in clean_logits]
    clean = mean([v for p, (_, yb) in zip(predicted, batches) for v in to_list(p == yb)])
    num_classes = clean_logits[0].shape[1]
    distinct = len({c for p in predicted for c in to_list(p)})
    checks["model_is_alive"] = {
        "passed": is_alive(clean, distinct, num_classes), "clean_accuracy": clean, "num_classes": num_classes,
        "chance_accuracy": 1.0 / num_classes, "required_accuracy_above": ALIVE_ABOVE_CHANCE / num_classes,
        "distinct_predicted_classes": distinct}
    bar.update(1)

    first_batch_losses = []                        # the base PGD's loss per step on batch 0 (all its restarts)
    base = robust(pgd_attack(eps, alpha, first_batch_history=first_batch_losses))
    base_acc = mean(base)

    grid = [0.0, eps / 4, eps / 2, eps, 2 * eps]
    accs = [clean, *(mean(robust(pgd_attack(e, alpha * e / eps if eps else 0.0))) for e in grid[1:3]), base_acc,
            mean(robust(pgd_attack(grid[4], 2 * alpha)))]
    checks["accuracy_decreases_with_eps"] = {
        "passed": all(b <= a + tolerance for a, b in zip(accs, accs[1:])), "eps": grid, "pgd_accuracy": accs}
    bar.update(1)

    large = (high - low) * (1.0 if norm == "linf" else math.sqrt(_dimension(x)))
    large_acc = mean(strong(large, paper_step_size(large)))
    checks["large_eps_reaches_zero"] = {"passed": large_acc == 0.0, "eps": large, "strong_attack_accuracy": large_acc,
                                        "attack": "worst case of PGD-CE, PGD-margin, APGD-DLR"}
    bar.update(1)

    fgsm_correct = robust(lambda xb, yb, b: fgsm(model, xb, yb, eps, norm=norm, clip=(low, high)))
    missed = sum(1 for f, p in zip(fgsm_correct, base) if not f and p)
    checks["pgd_at_least_as_strong_as_fgsm"] = {
        "passed": missed <= tolerance * n and base_acc <= mean(fgsm_correct),
        "fgsm_accuracy": mean(fgsm_correct), "pgd_accuracy": base_acc, "fooled_by_fgsm_not_pgd": missed}
    bar.update(1)

    strong_acc = mean(robust(pgd_attack(eps, alpha, 2 * steps, restarts + 1)))
    pgd_convergence = {
        "passed": base_acc - strong_acc <= tolerance, "pgd_accuracy": base_acc,
        "stronger_pgd_accuracy": strong_acc, "stronger_steps": 2 * steps, "stronger_restarts": restarts + 1}
    findings = {}
    if reported_robust is None:
        checks["more_steps_and_restarts_change_little"] = pgd_convergence
    else:
        checks["suite_converged"] = _suite_converged(model, x, labels, eps, [bool(v) for v in reported_robust],
                                                     stronger, norm, (low, high), batch_size, seed, tolerance)
        reported = checks["suite_converged"]["reported_accuracy"]
        findings["pgd_against_the_suite"] = {
            **{k: v for k, v in pgd_convergence.items() if k != "passed"}, "eps": eps, "steps": steps, "restarts": restarts,
            "more_steps_and_restarts_lower_pgd_by": base_acc - strong_acc, "suite_accuracy": reported,
            "pgd_above_suite_by": base_acc - reported}
    bar.update(1)

    history = first_batch_losses[:steps]           # its first run: exactly a one-run PGD on batch 0 with seed
    rises = sum(1 for a, b in zip(history, history[1:]) if b > a)
    share = rises / max(len(history) - 1, 1)
    checks["loss_increases"] = {
        "passed": share >= 0.5 and history[-1] > history[0], "share_of_steps_increasing": share,
        "first_loss": history[0], "last_loss": history[-1], "loss_per_step": history}
    bar.update(1)

    noise_acc = mean(robust(_noise_attack(eps, norm, noise_draws, seed, low, high, model)))
    checks["stronger_than_random_noise"] = {
        "passed": base_acc <= noise_acc, "pgd_accuracy": base_acc, "noise_accuracy": noise_acc, "draws": noise_draws}
    bar.update(1)

    if transfer_model is None:
        checks["stronger_than_transfer"] = {"passed": None, "note": "skipped: no transfer_model given"}
    else:
        transfer_acc = mean(robust(pgd_attack(eps, alpha, source=transfer_model)))
        checks["stronger_than_transfer"] = {
            "passed": base_acc <= transfer_acc, "pgd_accuracy": base_acc, "transfer_accuracy": transfer_acc}
    bar.update(1)

    checks["zero_input_gradients"] = _zero_gradients(model, batches, n, tolerance)
    bar.update(1)

    first, second = clean_logits[0], objective.logits_of(model, batches[0][0])  # the clean pass of batch 0, again
    difference = float(xp.max(xp.abs(first - second)))
    checks["deterministic_forward"] = {"passed": difference == 0.0, "max_abs_difference": difference}
    bar.update(1)

    if norm != "linf":
        checks["gradient_free_not_stronger"] = {"passed": None, "note": "skipped: Square is implemented for L-inf only"}
    else:
        white_box = [a and b for a, b in zip(strong(eps, alpha, pgd_ce=base), robust(apgd_attack(eps, "ce")))]
        square_correct = robust(lambda xb, yb, b: square(model, xb, yb, eps, square_queries, clip=(low, high),
                                                         seed=seed + b))
        missed = sum(1 for s, w in zip(square_correct, white_box) if not s and w)
        checks["gradient_free_not_stronger"] = {
            "passed": missed <= tolerance * n, "square_accuracy": mean(square_correct),
            "white_box_accuracy": mean(white_box), "fooled_by_square_not_white_box": missed,
            "square_queries": square_queries}
    bar.update(1)
    bar.close()

    return {
        "passed": all(c["passed"] is not False for c in checks.values()),
        "checks": checks,
        "findings": findings,
        "config": {"eps": eps, "norm": norm, "steps": steps, "alpha": alpha, "restarts": restarts,
                   "batch_size": batch_size, "seed": seed, "n_examples": n, "tolerance": tolerance,
                   "square_queries": square_queries,
                   "clean_accuracy": clean},
    }


def _suite_converged(model, x, labels, eps, reported, stronger, norm, clip, batch_size, seed, tolerance):
    """``suite_converged``: re-attack with the ``stronger`` ensemble; an example counts as robust only if both
    the reported evaluation and the stronger one leave it correct.  Fails if that lowers the reported accuracy
    by more than ``tolerance``.

    A batch-independent model is re-attacked on the examples reported robust only (the others are already
    counted as broken); a model with batch statistics on every example, in the reported evaluation's batches.
    The random starts are seeded apart from the reported evaluation's (``seed + 1000 + b``).
    """
    n = x.shape[0]
    if uses_batch_statistics(model):
        index = list(range(n))
    else:
        index = [i for i, r in enumerate(reported) if r]
    stronger_robust = [False] * n
    if index:
        xp = backend.array_namespace(x)
        rows = backend.to_device(index, backend.device_of(x))
        result = robust_accuracy(model, xp.take(x, rows, axis=0), xp.take(labels, rows, axis=0), eps, suite=stronger,
                                 norm=norm, batch_size=batch_size, clip=clip, seed=seed + 1000, keep_per_example=True)
        for i, r in zip(index, result["per_example"][0]):
            stronger_robust[i] = r
    both = [a and b for a, b in zip(reported, stronger_robust)]
    reported_acc, stronger_acc = mean(reported), mean(both)
    return {"passed": reported_acc - stronger_acc <= tolerance, "reported_accuracy": reported_acc,
            "stronger_accuracy": stronger_acc, "stronger_suite": stronger, "examples": n,
            "re_attacked": len(index), "lowered_by": reported_acc - stronger_acc}


def _noise_attack(eps, norm, draws, seed, low, high, model):
    """Worst of ``draws`` random perturbations of norm ε per example: ε·sign(u) (L∞) or ε·g/‖g‖ (L2)."""

    def attack(xb, yb, b):
        generator = backend.rng(seed + 7919 * (b + 1))
        xp = backend.array_namespace(xb)
        worst = xb
        fooled = xp.zeros((xb.shape[0],), dtype=xp.bool, device=xb.device)
        for _ in range(draws):
            g = backend.normal(generator, tuple(xb.shape), dtype=backend.dtype_name(xb.dtype),
                               device=backend.device_of(xb))
            x_noisy = geometry.clip_box(xb + eps * geometry.steepest_ascent(g, norm), low, high)
            hit = (objective.predict(model, x_noisy) != yb) & ~fooled
            worst = xp.where(geometry.per_example(hit, xb.ndim), x_noisy, worst)
            fooled = fooled | hit
        return worst

    return attack


def _zero_gradients(model, batches, n, tolerance):
    zero_entries = entries = zero_examples = 0
    with objective.model_untouched(model):
        for xb, yb in batches:
            grad, _, _ = objective.input_gradient(model, xb, yb, targeted=False)
            xp = backend.array_namespace(grad)
            zero = xp.reshape(grad == 0.0, (grad.shape[0], -1))
            zero_entries += int(xp.sum(xp.astype(zero, xp.int64)))
            entries += zero.shape[0] * zero.shape[1]
            zero_examples += int(xp.sum(xp.astype(xp.all(zero, axis=1), xp.int64)))
    return {"passed": zero_examples <= tolerance * n, "share_zero_entries": zero_entries / entries,
            "share_examples_all_zero": zero_examples / n}


def _dimension(x):
    d = 1
    for size in x.shape[1:]:
        d *= size
    return d
