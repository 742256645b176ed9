"""``evaluate``: robust accuracy of a model under several attacks and budgets, with every setting recorded.

Accuracy under batch statistics (train mode, or eval with ``eval_mean``/``eval_scale="batch"``)
depends on the batch: each example is attacked *and* classified together with the others of
its batch, so the batch size and composition are part of the result.  ``evaluate`` cuts the data
into consecutive batches of ``batch_size`` (no shuffling) and records both.
"""
from __future__ import annotations

import functools
import inspect
import numbers
import warnings

from tqdm.auto import tqdm

from minirn.attacks import checks, geometry, objective
from minirn.attacks.apgd import apgd, apgd_targeted
from minirn.attacks.cw import cw_l2
from minirn.attacks.fgsm import fgsm
from minirn.attacks.mim import mim
from minirn.attacks.pgd import bim, paper_step_size, pgd
from minirn.attacks.square import square
from minirn.autograd.tensor import Tensor
from minirn.nn.norm import get_norm_eval_stats, norm_layers

ATTACKS = {"fgsm": fgsm, "bim": bim, "mim": mim, "pgd": pgd, "cw": cw_l2,
           "apgd-ce": functools.partial(apgd, loss="ce"), "apgd-dlr": functools.partial(apgd, loss="dlr"),
           "apgd-t": apgd_targeted, "square": square}

#: ``attacks="suite"`` expands to AutoAttack's three attacks (see :mod:`.suite` for the efficient ensemble).
SUITE_NAMES = ("apgd-ce", "apgd-t", "square")

#: α = alpha_factor·ε; the paper's rule α = ε/10 is linear in ε, so its factor is its value at ε = 1 (0.1).
_PAPER_ALPHA_FACTOR = paper_step_size(1.0)

#: The paper's protocol: iterative attacks take 20 steps of ε/10 (:func:`~minirn.attacks.pgd.paper_step_size`
#: as ``alpha_factor``; an explicit ``alpha`` overrides it), PGD starts at a random point, all attacks are untargeted.
DEFAULTS = {
    "fgsm": {},
    "bim": {"steps": 20, "alpha_factor": _PAPER_ALPHA_FACTOR},
    "mim": {"steps": 20, "alpha_factor": _PAPER_ALPHA_FACTOR, "decay": 1.0},
    "pgd": {"steps": 20, "alpha_factor": _PAPER_ALPHA_FACTOR, "random_start": True, "restarts": 1},
    "cw": {"c": 1.0, "kappa": 0.0, "steps": 100, "lr": 0.05, "binary_search_steps": 5},
    # AutoAttack's budgets (Croce & Hein 2020): APGD 100 iterations, APGD-T 9 targets, Square 5000 queries
    "apgd-ce": {"steps": 100},
    "apgd-dlr": {"steps": 100},
    "apgd-t": {"steps": 100, "n_targets": 9},
    "square": {"queries": 5000},
}


def resolve_attacks(attacks):
    """``attacks`` -> list of (name, function, settings).

    Accepts a name (``"fgsm"``, ``"bim"``, ``"mim"``, ``"pgd"``, ``"cw"``), a callable
    ``fn(model, x, y, eps) -> x_adv``, a list of those, or a dict ``{name: overrides}`` whose values
    are dicts of hyper-parameters replacing the defaults (``{"pgd": {"steps": 40}}``), ``None``
    (defaults) or a callable.  An attack named for its loss (``"apgd-ce"``, ``"apgd-dlr"``) refuses a
    ``loss`` setting that names another loss.
    """
    if attacks == "suite":
        attacks = list(SUITE_NAMES)
    if isinstance(attacks, str) or callable(attacks):
        attacks = [attacks]
    items = attacks.items() if isinstance(attacks, dict) else [(a, None) for a in attacks]
    resolved, names = [], set()
    for key, value in items:
        if callable(value) or (value is None and callable(key)):
            function = value if callable(value) else key
            name = key if isinstance(key, str) else getattr(function, "__name__", "attack")
            resolved.append((name, function, None))
        else:
            if key not in ATTACKS:
                raise ValueError(f"evaluate: unknown attack {key!r}; expected one of {', '.join(ATTACKS)} or a callable")
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"evaluate: settings for {key!r} must be a dict, got {type(value).__name__}")
            allowed = set(inspect.signature(ATTACKS[key]).parameters) - {"model", "x", "y", "eps", "norm", "clip", "seed", "loss_history"}
            unknown = sorted(set(value or {}) - allowed - {"alpha_factor"})
            if unknown:
                raise ValueError(f"evaluate: unknown settings {unknown} for {key!r}; it accepts {sorted(allowed)} "
                                 "(and alpha_factor: alpha = alpha_factor * eps)")
            _refuse_another_loss(key, value or {})
            settings = {**DEFAULTS[key], **(value or {})}
            resolved.append((key, ATTACKS[key], settings))
        if resolved[-1][0] in names:
            raise ValueError(f"evaluate: attack {resolved[-1][0]!r} appears twice; name callables with a dict "
                             "{name: callable}")
        names.add(resolved[-1][0])
    if not resolved:
        raise ValueError("evaluate: no attacks given")
    return resolved


def _refuse_another_loss(name, settings):
    """An attack named for its loss ("apgd-ce", "apgd-dlr") runs that loss only: a different ``loss`` is refused.

    Otherwise ``{"apgd-ce": {"loss": "dlr"}}`` would report a DLR attack under the name of the CE one.
    """
    named_loss = getattr(ATTACKS[name], "keywords", {}).get("loss")
    asked = settings.get("loss", named_loss)
    if named_loss is None or asked == named_loss:
        return
    same = [other for other, function in ATTACKS.items() if getattr(function, "keywords", {}).get("loss") == asked]
    hint = f"use {same[0]!r} for APGD on that loss" if same else f"give a callable that runs apgd(..., loss={asked!r})"
    raise ValueError(f"evaluate: attack {name!r} is APGD on the loss {named_loss!r}, but its settings ask for "
                     f"loss={asked!r}; {hint}")


def call_attack(name, function, settings, model, x, y, eps, norm, clip, seed):
    """Run one attack on one batch; named attacks get their settings, α = alpha_factor·ε unless given."""
    if settings is None:
        return function(model, x, y, eps)
    kwargs = {k: v for k, v in settings.items() if k != "alpha_factor"}
    if "alpha_factor" in settings and "alpha" not in settings:
        kwargs["alpha"] = settings["alpha_factor"] * eps
    if name != "cw":  # CW draws nothing
        kwargs["seed"] = seed
    return function(model, x, y, eps=eps, norm=norm, clip=clip, **kwargs)


def uses_batch_statistics(model) -> bool:
    """Whether the model's outputs depend on the other examples of the batch."""
    layers = norm_layers(model) if hasattr(model, "modules") else []
    return any(m.training or "batch" in (m.eval_mean, m.eval_scale) for m in layers)


def evaluate(model, x, y, attacks, eps_list, batch_size, *, norm="linf", clip=(0.0, 1.0), seed=0,
             progress=True, keep_per_example=False):
    """Clean and adversarial accuracy of ``model`` for every attack and every ε.

    x: (N, C, H, W) images in ``clip`` (array or Tensor); y: (N,) labels.  attacks: see
    :func:`resolve_attacks`.  eps_list: budgets in ``norm`` ("linf" or "l2"; CW's result is projected
    onto that ball).  Data go in consecutive batches of ``batch_size``; batch b of every attack is
    seeded with ``seed + b``.

    Returns a dict of plain Python types (``json.dumps`` works):

    * ``clean_accuracy``; ``eps`` (the list);
    * ``accuracy[name][k]``: accuracy under attack ``name`` at ``eps[k]``;
    * ``worst_case_accuracy[k]``: :math:`\\frac1N \\sum_n \\min_a \\mathbb{1}[\\text{n correct under } a]`,
      the share of examples that survive *every* attack (not the minimum of the accuracies);
    * ``realisable_worst_case_accuracy[k]``: per batch, the fewest correct predictions of any one batch
      the attacker could submit (the clean batch or one attack's output).  For a model with batch
      statistics the per-example worst case combines examples of *different* adversarial batches,
      which no single submitted batch realises; this figure is realisable.  Without batch
      statistics it is usually higher than the per-example worst case, which is then the one to report;
    * ``perturbation[name][k]``: mean and max of :math:`\\|\\delta\\|_\\infty` and :math:`\\|\\delta\\|_2`;
    * ``config``: batch size, seed, norm, clip, number of examples, train/eval mode, the norm
      layers' eval statistics (:func:`minirn.nn.get_norm_eval_stats`), whether predictions use
      batch statistics, and each attack's settings (with α per ε);
    * ``per_example`` (if ``keep_per_example``): correctness lists, clean and per attack per ε.
    """
    x_array, labels, _, (low, high) = checks.prepare("evaluate", x, y, clip, norm=norm)
    if getattr(model, "training", False) and norm_layers(model):
        warnings.warn(
            "evaluate: the model is in training mode, so its norm layers use batch statistics and ignore "
            "eval_mean/eval_scale; call model.eval() first unless that is what you want",
            UserWarning, stacklevel=2,
        )
    batch_size = checks.check_int("evaluate: batch_size", batch_size)
    if isinstance(eps_list, numbers.Real):
        eps_list = [eps_list]
    eps_list = [checks.check_number("evaluate: eps", e) for e in eps_list]
    if not eps_list:
        raise ValueError("evaluate: eps_list is empty")
    for e in eps_list:
        checks.warn_if_budget_covers_range("evaluate", e, norm, low, high)
    resolved = resolve_attacks(attacks)
    if norm == "linf" and any(name == "cw" for name, _, _ in resolved):
        warnings.warn(
            "evaluate: CW-L2 is an L2 attack; in an L-inf table its boundary point is projected onto the L-inf "
            "ball, which almost always undoes it, so its accuracy there is not an L-inf robustness figure "
            "(evaluate CW with norm='l2')", UserWarning, stacklevel=2)
    n = x_array.shape[0]
    starts = list(range(0, n, batch_size))
    batches = [(x_array[s : s + batch_size, ...], labels[s : s + batch_size]) for s in starts]

    bar = tqdm(total=len(batches) * (1 + len(resolved) * len(eps_list)), disable=not progress, desc="evaluate")
    clean = []
    for xb, yb in batches:
        clean += objective.to_list(objective.predict(model, xb) == yb)
        bar.update(1)
    accuracy, perturbation, correct = {}, {}, {}
    for name, function, settings in resolved:
        accuracy[name], perturbation[name], correct[name] = [], [], []
        for eps in eps_list:
            bar.set_postfix(attack=name, eps=f"{eps:.4g}")
            hits, linf, l2 = [], [], []
            for b, (xb, yb) in enumerate(batches):
                x_adv = call_attack(name, function, settings, model, xb, yb, eps, norm, (low, high),
                                    None if seed is None else seed + b)
                x_adv = x_adv.data if isinstance(x_adv, Tensor) else x_adv
                hits += objective.to_list(objective.predict(model, x_adv) == yb)
                delta = x_adv - xb
                linf += objective.to_list(geometry.norm_per_example(delta, "linf"))
                l2 += objective.to_list(geometry.norm_per_example(delta, "l2"))
                bar.update(1)
            correct[name].append(hits)
            accuracy[name].append(objective.mean(hits))
            perturbation[name].append({"linf_mean": objective.mean(linf), "linf_max": max(linf),
                                       "l2_mean": objective.mean(l2), "l2_max": max(l2)})
    bar.close()

    worst = [objective.mean([all(correct[name][k][i] for name in correct) for i in range(n)]) for k in range(len(eps_list))]
    # per batch, the worst single batch an attacker could submit (the clean one or one attack's)
    realisable = [sum(min([sum(clean[s : s + batch_size])] + [sum(correct[name][k][s : s + batch_size]) for name in correct])
                      for s in starts) / n for k in range(len(eps_list))]
    result = {
        "clean_accuracy": objective.mean(clean),
        "eps": eps_list,
        "accuracy": accuracy,
        "worst_case_accuracy": worst,
        "realisable_worst_case_accuracy": realisable,
        "perturbation": perturbation,
        "config": _config(model, resolved, eps_list, n, batch_size, seed, norm, (low, high)),
    }
    if keep_per_example:
        result["per_example"] = {"clean": clean, **correct}
    return result


def _config(model, resolved, eps_list, n, batch_size, seed, norm, clip):
    stats = get_norm_eval_stats(model) if hasattr(model, "modules") else None
    attacks = {}
    for name, function, settings in resolved:
        if settings is None:
            attacks[name] = {"callable": getattr(function, "__qualname__", repr(function))}
            continue
        entry = dict(settings)
        if "alpha_factor" in settings and "alpha" not in settings:
            entry["alpha"] = [settings["alpha_factor"] * e for e in eps_list]
        attacks[name] = entry
    batch_stats = uses_batch_statistics(model)
    return {
        "n_examples": n,
        "batch_size": batch_size,
        "seed": seed,
        "norm": norm,
        "clip": list(clip),
        "training": bool(getattr(model, "training", False)),
        "norm_eval_stats": None if stats is None else list(stats),
        "batch_statistics": batch_stats,
        "note": ("predictions use batch statistics: accuracies depend on the batch size and composition"
                 if batch_stats else "predictions are independent of the batch"),
        "attacks": attacks,
    }
