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
and the robust accuracy is its mean.  Budgets (:data:`SUITES`): ``suite="standard"`` is AutoAttack's
(APGD 100 iterations, APGD-T 9 targets × 100 iterations, Square 5000 queries); ``"medium"`` keeps
APGD-CE's 100 iterations but gives APGD-T 3 targets × 50 iterations and Square 100 queries (the
default run's suite for batch-independent models: on its small CNNs it comes within 2 points of
torchattacks' full AutoAttack, see ``benchmarks/autoattack_check.py``); ``"fast"`` is a cheaper
screen (APGD-CE 20 iterations, APGD-T 2 targets × 10 iterations, Square 100 queries: what the
default run affords for batch-statistics models, where every attack perturbs whole batches);
``"smoke"`` only exercises the code; a dict ``{name: settings}`` gives your own (names and
settings as in :func:`~minirn.attacks.evaluate`).

**Extra attacks.**  ``attacks=["fgsm", "pgd"]`` (or a dict of settings) runs the named attacks before
the suite, each on *every* example of each batch, exactly as :func:`~minirn.attacks.evaluate` runs
them: their own accuracies (``attack_accuracy``) and their per-example worst case
(``extra_worst_accuracy``) are therefore evaluate's figures, and one call gives both tables.

**Batch statistics.**  AutoAttack attacks and classifies only the examples that are still robust,
re-batched.  For a model whose outputs depend on the batch (train mode, or
``eval_mean/eval_scale="batch"``) that silently changes its predictions, so here such a model keeps
every example in its original, fixed batch: every attack perturbs and classifies the whole batch,
and an example counts as broken if it is misclassified in any attack's batch.  That per-example
worst case mixes examples from *different* adversarial batches, which no single batch an
attacker submits realises; so the result also gives the **realisable** accuracy: per batch, the
fewest correct predictions over the batches an attacker could submit (the clean batch, each
attack's batch, and the batch assembled from every example's worst case).  For models independent
of the batch the two are equal, and the suite's attacks run on the still-robust examples only (cheaper).
"""
from __future__ import annotations

import numbers

from tqdm.auto import tqdm

from minirn import backend
from minirn.attacks import checks, geometry, objective
from minirn.attacks.evaluate import call_attack, resolve_attacks, uses_batch_statistics
from minirn.attacks.objective import mean, to_list
from minirn.autograd.tensor import Tensor

#: The ensembles, in the order they run (cheap and strong first, as in AutoAttack).
SUITES = {
    "standard": {"apgd-ce": {"steps": 100}, "apgd-t": {"steps": 100, "n_targets": 9}, "square": {"queries": 5000}},
    "strong": {"apgd-ce": {"steps": 100}, "apgd-t": {"steps": 100, "n_targets": 9}, "square": {"queries": 1000}},
    "medium": {"apgd-ce": {"steps": 100}, "apgd-t": {"steps": 50, "n_targets": 3}, "square": {"queries": 100}},
    "fast": {"apgd-ce": {"steps": 20}, "apgd-t": {"steps": 10, "n_targets": 2}, "square": {"queries": 100}},
    "smoke": {"apgd-ce": {"steps": 4}, "apgd-t": {"steps": 4, "n_targets": 2}, "square": {"queries": 20}},  # tests only
}


#: The next stronger ensemble of each, which :func:`minirn.attacks.sanity_checks` re-attacks with to ask whether a
#: reported suite evaluation has converged; the standard suite's is itself with two restarts and twice Square's queries.
#: ``strong`` has AutoAttack's APGD budgets and a fifth of its Square queries: the medium suite's check, cheap enough
#: for the default run (the gradient-free side has its own check, ``gradient_free_not_stronger``).
STRONGER = {"smoke": "fast", "fast": "medium", "medium": "strong", "strong": "standard"}


def stronger_suite(suite):
    """The ensemble that checks ``suite`` (a name of :data:`SUITES`) for convergence: :data:`STRONGER`'s, or for
    ``"standard"`` the standard suite with every APGD run restarted twice and 10,000 Square queries."""
    if suite in STRONGER:
        return STRONGER[suite]
    if suite != "standard":
        raise ValueError(f"no stronger suite is defined for {suite!r}; expected one of {', '.join(SUITES)}")
    return {name: ({"queries": 2 * settings["queries"]} if name == "square" else {**settings, "restarts": 2})
            for name, settings in SUITES["standard"].items()}


def suite_attacks(suite="standard", attacks=None) -> dict:
    """``{name: settings}``: the named suite (or a dict), preceded by the extra ``attacks`` (names or a dict)."""
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; expected one of {', '.join(SUITES)} or a dict")
        suite = SUITES[suite]
    if not isinstance(suite, dict):
        raise ValueError(f"suite must be a name or a dict {{attack: settings}}, got {type(suite).__name__}")
    extra = _extra_attacks(attacks)
    return {**extra, **{k: v for k, v in suite.items() if k not in extra}}


def _extra_attacks(attacks) -> dict:
    """The extra ``attacks`` (None, a name, a list of names or callables, or a dict) as ``{name: settings}``."""
    if attacks is None:
        return {}
    if isinstance(attacks, dict):
        return dict(attacks)
    return {a: None for a in ([attacks] if isinstance(attacks, str) else attacks)}


def robust_accuracy(model, x, y, eps, *, suite="standard", attacks=None, norm="linf", batch_size=128,
                    clip=(0.0, 1.0), seed=0, progress=False, keep_per_example=False):
    """Accuracy under the per-example worst case of an attack ensemble, at each ε.

    x: (N, C, H, W) images in ``clip``; y: (N,) labels; eps: a budget or a list of budgets in
    ``norm``.  suite: a name of :data:`SUITES` (``"standard"``, ``"medium"``, ``"fast"``) or ``{name: settings}``; attacks: extra attacks run
    first (e.g. ``["fgsm", "pgd"]`` or ``{"pgd": {"loss": "margin"}}``; an extra attack named like a
    suite member replaces it).  Consecutive batches of ``batch_size``; attack a on batch b is seeded
    with ``seed + b``.

    Every extra attack perturbs and classifies every example of each batch, exactly as
    :func:`~minirn.attacks.evaluate` runs it, so its own accuracy is known for every model; the suite's
    attacks then run, for a batch-independent model, on the still-robust examples only.

    Returns a dict of plain Python types:

    * ``clean_accuracy``; ``eps`` (the list);
    * ``robust_accuracy[k]``: the per-example worst case over the extra and the suite's attacks,
      :math:`\\frac1N \\sum_n \\mathbb{1}[f(x_n) = y_n] \\prod_a \\mathbb{1}[f(A_a(x_n)) = y_n]`;
    * ``realisable_accuracy[k]``: see the module docstring; equal to the former for batch-independent models;
    * ``broken_by[k][name]``: the examples this attack broke first (in the order the attacks run);
    * ``attack_accuracy[name][k]``: attack ``name``'s own accuracy on every example,
      :math:`\\frac1N \\sum_n \\mathbb{1}[f(A_{name}(x_n)) = y_n]` (evaluate's ``accuracy[name][k]``), for each
      extra attack, and for the suite's attacks of a batch-dependent model; ``None`` for the suite's attacks of a
      batch-independent model (they see only survivors);
    * ``extra_worst_accuracy[k]``: the per-example worst case over the extra attacks only,
      :math:`\\frac1N \\sum_n \\min_{a \\in extra} \\mathbb{1}[f(A_a(x_n)) = y_n]` (evaluate's
      ``worst_case_accuracy[k]`` for the same attacks); ``None`` without extra attacks;
    * ``config`` (settings, batches, seed; ``extra_attacks``: the names of the extra attacks, in order);
    * with ``keep_per_example``: ``per_example[k]`` (robust flags, (N,)) and ``attack_per_example[name][k]``
      (attack ``name``'s correctness flags, (N,), wherever ``attack_accuracy[name]`` is not ``None``, else ``None``).
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
    extra_names = [name for name, _, _ in resolved[: len(_extra_attacks(attacks))]]   # the extras come first
    batch_dependent = uses_batch_statistics(model)
    # the attacks that perturb and classify every example of each batch (the others: the still-robust ones)
    whole_batch = [name for name, _, _ in resolved if batch_dependent or name in extra_names]
    xp = backend.array_namespace(x)
    n = x.shape[0]
    batches = [(x[s : s + batch_size, ...], labels[s : s + batch_size]) for s in range(0, n, batch_size)]
    clean = [to_list(objective.predict(model, xb) == yb) for xb, yb in batches]

    bar = tqdm(total=len(eps_list) * len(batches) * len(resolved), disable=not progress, desc="robust_accuracy")
    robust_all, realisable_all, broken_all, per_example = [], [], [], []
    attack_flags = {name: [] for name in whole_batch}          # attack_flags[name][k]: (N,) correct under name
    for eps in eps_list:
        broken_by = {name: 0 for name, _, _ in resolved}
        robust, realisable = [], 0
        correct_per_attack = {name: [] for name in whole_batch}
        for b, (xb, yb) in enumerate(batches):
            alive = list(clean[b])
            batch_seed = None if seed is None else seed + b
            x_worst, fewest = xb, sum(alive)
            for name, function, settings in resolved:
                if name in whole_batch:
                    x_adv = _array(call_attack(name, function, settings, model, xb, yb, eps, norm, (low, high),
                                               batch_seed))
                    ok = to_list(objective.predict(model, x_adv) == yb)
                    correct_per_attack[name] += ok
                    newly = [a and not o for a, o in zip(alive, ok)]
                    if batch_dependent:   # the batches an attacker could submit, for the realisable accuracy
                        fewest = min(fewest, sum(ok))
                        mask = backend.to_device([bool(v) for v in newly], backend.device_of(xb))
                        x_worst = xp.where(geometry.per_example(mask, xb.ndim), x_adv, x_worst)
                else:
                    newly = _break_survivors(name, function, settings, model, xb, yb, alive, eps, norm, (low, high),
                                             batch_seed)
                broken_by[name] += sum(newly)
                alive = [a and not v for a, v in zip(alive, newly)]
                bar.update(1)
            if batch_dependent:
                assembled = sum(to_list(objective.predict(model, x_worst) == yb))
                realisable += min(fewest, assembled)
            else:
                realisable += sum(alive)
            robust += alive
        robust_all.append(mean(robust))
        realisable_all.append(realisable / n)
        broken_all.append(broken_by)
        for name in whole_batch:
            attack_flags[name].append(correct_per_attack[name])
        if keep_per_example:
            per_example.append([bool(v) for v in robust])
    bar.close()

    attack_accuracy = {name: [mean(flags) for flags in attack_flags[name]] if name in attack_flags else None
                       for name, _, _ in resolved}
    extra_worst = None
    if extra_names:
        extra_worst = [mean([all(attack_flags[name][k][i] for name in extra_names) for i in range(n)])
                       for k in range(len(eps_list))]
    result = {
        "clean_accuracy": mean([v for c in clean for v in c]),
        "eps": eps_list,
        "robust_accuracy": robust_all,
        "realisable_accuracy": realisable_all,
        "broken_by": broken_all,
        "attack_accuracy": attack_accuracy,
        "extra_worst_accuracy": extra_worst,
        "config": {
            "attacks": {name: (settings if settings is not None else {"callable": getattr(function, "__qualname__", "?")})
                        for name, function, settings in resolved},
            "extra_attacks": extra_names,
            "n_examples": n, "batch_size": batch_size, "seed": seed, "norm": norm, "clip": [low, high],
            "batch_statistics": batch_dependent,
            "note": ("batch-dependent model: every attack perturbs and classifies whole fixed batches; "
                     "robust_accuracy is the per-example worst case, realisable_accuracy the per-batch worst "
                     "submitted batch" if batch_dependent else
                     "batch-independent model: the extra attacks run on every example, each suite attack on "
                     "the examples still robust"),
        },
    }
    if keep_per_example:
        result["per_example"] = per_example
        result["attack_per_example"] = {name: attack_flags.get(name) for name, _, _ in resolved}
    return result


def _break_survivors(name, function, settings, model, xb, yb, alive, eps, norm, clip, seed):
    """Attack only the still-robust examples of a batch (re-batched, AutoAttack's way); (N_b,) newly broken flags."""
    index = [i for i, a in enumerate(alive) if a]
    newly = [False] * len(alive)
    if not index:
        return newly
    xp = backend.array_namespace(xb)
    rows = backend.to_device(index, backend.device_of(xb))
    xs, ys = xp.take(xb, rows, axis=0), xp.take(yb, rows, axis=0)
    x_adv = _array(call_attack(name, function, settings, model, xs, ys, eps, norm, clip, seed))
    for i, o in zip(index, to_list(objective.predict(model, x_adv) == ys)):
        newly[i] = not o
    return newly


def _array(x):
    return x.data if isinstance(x, Tensor) else x
