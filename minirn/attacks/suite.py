"""``robust_accuracy``: an AutoAttack-style ensemble, reported as the per-example worst case.

One attack, however strong, has blind spots: cross-entropy PGD stalls where the softmax
saturates, a fixed step size over- or under-shoots, a model can hide its gradients.  AutoAttack
(Croce & Hein 2020) therefore runs *diverse* attacks one after the other and counts an example as
robust only if it survives all of them:

==============  ==========================================================  =====================
attack          why it is in the suite                                      file
==============  ==========================================================  =====================
``apgd-ce``     APGD on cross-entropy: the strong default first-order attack  :mod:`.apgd`
``apgd-t``      APGD on the targeted DLR loss, top classes: scale-invariant,   :mod:`.apgd`
                does not saturate, finds the boundary to a *specific* class
``square``      random search, no gradients: catches gradient masking         :mod:`.square`
==============  ==========================================================  =====================

:math:`\\mathrm{robust}(x_n) = \\mathbb{1}[f(x_n) = y_n] \\prod_a \\mathbb{1}[f(A_a(x_n)) = y_n]`,
and the robust accuracy is its mean.  Budgets: ``suite="standard"`` is AutoAttack's (APGD 100
iterations, APGD-T 9 targets, Square 5000 queries); ``"fast"`` is a cheaper screen (APGD-CE 20
iterations, APGD-T 2 targets × 10 iterations, Square 100 queries: what the default CPU run can afford); ``"smoke"`` only exercises the code; a dict
``{name: settings}`` gives your own (names and settings as in :func:`~minirn.attacks.evaluate`).

**Batch statistics.**  AutoAttack attacks and classifies only the examples that are still robust,
re-batched.  For a model whose outputs depend on the batch (train mode, or
``eval_mean/eval_scale="batch"``) that silently changes its predictions, so here such a model keeps
every example in its original, fixed batch: every attack perturbs and classifies the whole batch,
and an example counts as broken if it is misclassified in any attack's batch.  That per-example
worst case mixes examples from *different* adversarial batches, which no single batch an
attacker submits realises; so the result also gives the **realisable** accuracy: per batch, the
fewest correct predictions over the batches an attacker could submit (the clean batch, each
attack's batch, and the batch assembled from every example's worst case).  For models independent
of the batch the two are equal, and attacks run on the still-robust examples only (cheaper).
"""
from __future__ import annotations

import math
import numbers

from tqdm.auto import tqdm

from minirn import backend
from minirn.attacks import checks, geometry, objective
from minirn.attacks.evaluate import call_attack, resolve_attacks, uses_batch_statistics
from minirn.autograd.tensor import Tensor

#: The ensembles, in the order they run (cheap and strong first, as in AutoAttack).
SUITES = {
    "standard": {"apgd-ce": {"steps": 100}, "apgd-t": {"steps": 100, "n_targets": 9}, "square": {"queries": 5000}},
    "fast": {"apgd-ce": {"steps": 20}, "apgd-t": {"steps": 10, "n_targets": 2}, "square": {"queries": 100}},
    "smoke": {"apgd-ce": {"steps": 4}, "apgd-t": {"steps": 4, "n_targets": 2}, "square": {"queries": 20}},  # tests only
}


def suite_attacks(suite="standard", attacks=None) -> dict:
    """``{name: settings}``: the named suite (or a dict), preceded by the extra ``attacks`` (names or a dict)."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)} or a dict")
        suite = SUITES[suite]
    if not isinstance(suite, dict):
        raise ValueError(f"suite must be a name or a dict {{attack: settings}}, got {type(suite).__name__}")
    extra = {}
    if attacks is not None:
        extra = dict(attacks) if isinstance(attacks, dict) else {a: None for a in ([attacks] if isinstance(attacks, str) else attacks)}
    return {**extra, **{k: v for k, v in suite.items() if k not in extra}}


def robust_accuracy(model, x, y, eps, *, suite="standard", attacks=None, norm="linf", batch_size=128,
                    clip=(0.0, 1.0), seed=0, progress=False, keep_per_example=False):
    """Accuracy under the per-example worst case of an attack ensemble, at each ε.

    x: (N, C, H, W) images in ``clip``; y: (N,) labels; eps: a budget or a list of budgets in
    ``norm``.  suite: ``"standard"``, ``"fast"`` or ``{name: settings}``; attacks: extra attacks run
    first (e.g. ``["fgsm", "pgd"]`` or ``{"pgd": {"loss": "margin"}}``).  Consecutive batches of
    ``batch_size``; attack a on batch b is seeded with ``seed + b``.

    Returns a dict of plain Python types: ``clean_accuracy``; ``eps``; ``robust_accuracy[k]`` (per-example
    worst case); ``realisable_accuracy[k]`` (see the module docstring; equal to the former for
    batch-independent models); ``broken_by[k][name]`` (examples this attack broke first);
    ``attack_accuracy[name][k]`` (each attack's own accuracy on every example: batch-dependent
    models only, else None, since later attacks see only survivors); ``config``; and, with
    ``keep_per_example``, ``per_example[k]`` (robust flags).
    """
    x, labels, _, (low, high) = checks.prepare("robust_accuracy", x, y, clip, norm=norm)
    batch_size = checks.check_int("robust_accuracy: batch_size", batch_size)
    eps_list = [eps] if isinstance(eps, numbers.Real) else list(eps)
    eps_list = [checks.check_number("robust_accuracy: eps", e) for e in eps_list]
    if not eps_list:
        raise ValueError("robust_accuracy: eps is empty")
    for e in eps_list:
        checks.warn_if_budget_covers_range("robust_accuracy", e, norm, low, high)
    resolved = resolve_attacks(suite_attacks(suite, attacks))
    batch_dependent = uses_batch_statistics(model)
    xp = backend.array_namespace(x)
    n = x.shape[0]
    batches = [(x[s : s + batch_size, ...], labels[s : s + batch_size]) for s in range(0, n, batch_size)]
    clean = [_to_list(objective.predict(model, xb) == yb) for xb, yb in batches]

    bar = tqdm(total=len(eps_list) * len(batches) * len(resolved), disable=not progress, desc="robust_accuracy")
    robust_all, realisable_all, broken_all, per_example = [], [], [], []
    attack_accuracy = {name: [] for name, _, _ in resolved} if batch_dependent else None
    for eps in eps_list:
        broken_by = {name: 0 for name, _, _ in resolved}
        robust, realisable = [], 0
        correct_per_attack = {name: [] for name, _, _ in resolved}
        for b, (xb, yb) in enumerate(batches):
            alive = list(clean[b])
            batch_seed = None if seed is None else seed + b
            if batch_dependent:
                x_worst, fewest = xb, sum(alive)
                for name, function, settings in resolved:
                    x_adv = _array(call_attack(name, function, settings, model, xb, yb, eps, norm, (low, high), batch_seed))
                    ok = _to_list(objective.predict(model, x_adv) == yb)
                    correct_per_attack[name] += ok
                    fewest = min(fewest, sum(ok))
                    newly = [a and not o for a, o in zip(alive, ok)]
                    broken_by[name] += sum(newly)
                    mask = backend.to_device([bool(v) for v in newly], backend.device_of(xb))
                    x_worst = xp.where(geometry.per_example(mask, xb.ndim), x_adv, x_worst)
                    alive = [a and o for a, o in zip(alive, ok)]
                    bar.update(1)
                assembled = sum(_to_list(objective.predict(model, x_worst) == yb))
                realisable += min(fewest, assembled)
            else:
                for name, function, settings in resolved:
                    index = [i for i, a in enumerate(alive) if a]
                    if index:
                        rows = backend.to_device(index, backend.device_of(xb))
                        xs, ys = xp.take(xb, rows, axis=0), xp.take(yb, rows, axis=0)
                        x_adv = _array(call_attack(name, function, settings, model, xs, ys, eps, norm, (low, high),
                                                   batch_seed))
                        ok = _to_list(objective.predict(model, x_adv) == ys)
                        for i, o in zip(index, ok):
                            if not o:
                                alive[i] = False
                                broken_by[name] += 1
                    bar.update(1)
                realisable += sum(alive)
            robust += alive
        robust_all.append(_mean(robust))
        realisable_all.append(realisable / n)
        broken_all.append(broken_by)
        if batch_dependent:
            for name in attack_accuracy:
                attack_accuracy[name].append(_mean(correct_per_attack[name]))
        if keep_per_example:
            per_example.append([bool(v) for v in robust])
    bar.close()

    result = {
        "clean_accuracy": _mean([v for c in clean for v in c]),
        "eps": eps_list,
        "robust_accuracy": robust_all,
        "realisable_accuracy": realisable_all,
        "broken_by": broken_all,
        "attack_accuracy": attack_accuracy,
        "config": {
            "attacks": {name: (settings if settings is not None else {"callable": getattr(function, "__qualname__", "?")})
                        for name, function, settings in resolved},
            "n_examples": n, "batch_size": batch_size, "seed": seed, "norm": norm, "clip": [low, high],
            "batch_statistics": batch_dependent,
            "note": ("batch-dependent model: every attack perturbs and classifies whole fixed batches; "
                     "robust_accuracy is the per-example worst case, realisable_accuracy the per-batch worst "
                     "submitted batch" if batch_dependent else
                     "batch-independent model: each attack runs on the examples still robust"),
        },
    }
    if keep_per_example:
        result["per_example"] = per_example
    return result


def _array(x):
    return x.data if isinstance(x, Tensor) else x


def _to_list(array):
    return [bool(v) for v in backend.to_host(array).tolist()]


def _mean(values):
    return math.fsum(float(v) for v in values) / len(values) if values else float("nan")
