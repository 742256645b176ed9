"""``python -m minirn reproduce``: the paper's three findings, end to end.

For each norm and seed: train a model; evaluate it clean, under each
attack and ε, and under the per-example worst case of an AutoAttack-style
suite (FGSM, PGD, APGD-CE, APGD-T, Square: :func:`minirn.attacks.robust_accuracy`,
with the realisable worst case beside it for batch statistics); for BatchNorm
and RobustNorm also with the statistics of the inference batch and with the
tracked-mean-only variant (the hypothesis test); run the gradient-masking
sanity checks; and record how adversarial inputs shift the BatchNorm input
statistics (the observation).  Writes
``results.json``, ``results.md`` and PNG figures to ``out``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

import minirn
from minirn import backend
from minirn.attacks import SUITES, evaluate, madry_step_size, pgd, robust_accuracy, sanity_checks
from minirn.data import load_dataset
from minirn.experiments import figures, report
from minirn.experiments.config import ATTACKS, ReproduceConfig, attack_settings, quick_config  # noqa: F401 (public here too)
from minirn.experiments.norm_stats import statistics_shift
from minirn.nn import EVAL_STATISTICS, eval_statistics, norm_layers, set_norm_eval_stats
from minirn.train import predict, train_model

#: ``(mean, scale)`` of the paper's eval-statistics variants, in the order of :data:`minirn.nn.EVAL_STATISTICS`.
EVAL_VARIANTS = tuple(variant.setting for variant in EVAL_STATISTICS)


def eval_variants(norm: str, names=None):
    """The eval-statistics settings worth comparing for a norm (only batch norms have running statistics).

    names: the variants' names (default: all of :data:`minirn.nn.EVAL_STATISTICS`)."""
    if norm not in ("bn", "rn"):
        return (None,)
    return EVAL_VARIANTS if names is None else tuple(eval_statistics(name).setting for name in names)


def _seconds(start):
    return round(time.perf_counter() - start, 3)


def run(config: ReproduceConfig, log=print) -> dict:
    """Run the whole reproduction; return the results dictionary (also written to ``config.out``)."""
    config.validate()
    started = time.perf_counter()
    os.makedirs(config.out, exist_ok=True)
    data = load_dataset(config.dataset, root=config.data_root, download=config.download)
    in_channels, num_classes = data.x_train.shape[1], data.num_classes
    x_eval, y_eval = data.x_test[: config.eval_examples], data.y_test[: config.eval_examples]
    log(f"minirn reproduce: {config.dataset} ({len(data.x_train)} train / {len(data.x_test)} test), "
        f"{config.model}, norms {','.join(config.norms)}, {config.seeds} seed(s), device {config.device}")
    runs, trained = [], {}
    for norm in config.norms:
        for seed in range(config.seeds):
            run_record, model = _train_and_evaluate(config, data, norm, seed, in_channels, num_classes, x_eval, y_eval, log)
            runs.append(run_record)
            trained[(norm, seed)] = model
    summary = report.summarize(runs, config.attacks, config.eps, config.model)
    suite_names = [name for name in SUITES[config.suite] if name not in config.attacks]
    results = {
        "config": dataclasses.asdict(config),
        "versions": _versions(),
        "eval_batch_size": config.eval_batch_size,
        "eval_examples": len(x_eval),
        "runs": runs,
        "summary": summary,
    }
    results["sanity_checks"] = _sanity(config, trained, x_eval, y_eval, log)
    results["figures"] = _figures(config, results, trained, x_eval, y_eval)
    results["seconds"] = _seconds(started)
    table = report.markdown_table(summary, config.attacks, config.eps, config.eval_batch_size,
                                  suite=f"{config.suite}: " + ", ".join([*config.attacks, *suite_names]))
    with open(os.path.join(config.out, "results.md"), "w") as f:
        f.write(f"# minirn reproduce: {config.dataset}, {config.model}\n\n{table}\n")
    with open(os.path.join(config.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=_json_default)
    log("\n" + table)
    log(f"\nwrote {config.out}/results.json, results.md and {len(results['figures'])} figures "
        f"in {results['seconds']:.0f} s")
    return results


def _train_and_evaluate(config, data, norm, seed, in_channels, num_classes, x_eval, y_eval, log):
    checkpoint = os.path.join(config.out, "checkpoints", f"{norm}-seed{seed}.npz")
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    start = time.perf_counter()
    model, history = train_model(
        lambda: config.build_model(norm, in_channels, num_classes), config.recipe(), (data.x_train, data.y_train),
        seed, test_data=(data.x_test, data.y_test), augment="cifar" if data.name == "cifar10" else None,
        checkpoint=checkpoint, resume=config.resume, progress=config.progress, description=f"{norm} seed {seed}",
    )
    train_seconds = _seconds(start)
    model.eval()
    record = {"norm": norm, "seed": seed, "history": history, "train_seconds": train_seconds, "variants": []}
    start = time.perf_counter()
    for eval_stats in eval_variants(norm, config.eval_variants):
        if eval_stats is not None:
            set_norm_eval_stats(model, *eval_stats)
        result = evaluate(model, x_eval, y_eval, attack_settings(config), list(config.eps),
                          batch_size=config.eval_batch_size, seed=seed, progress=False, keep_per_example=True)
        suite = robust_accuracy(model, x_eval, y_eval, list(config.eps), suite=config.suite,
                                attacks=attack_settings(config), batch_size=config.eval_batch_size, seed=seed,
                                keep_per_example=True)
        record["variants"].append(
            {"eval_stats": list(eval_stats) if eval_stats else None,
             "accuracy": _flatten_accuracy(result, suite, config), "evaluation": result, "suite": suite}
        )
    set_norm_eval_stats(model, "running", "running")
    if norm_layers(model):
        x_adv = pgd(model, x_eval[: config.eval_batch_size], y_eval[: config.eval_batch_size], max(config.eps),
                    madry_step_size(max(config.eps), config.pgd_steps), config.pgd_steps, seed=seed)
        record["statistics_shift"] = statistics_shift(model, x_eval[: config.eval_batch_size], x_adv)
    record["eval_seconds"] = _seconds(start)
    best = record["variants"][0]["accuracy"]
    log(f"  {norm:>4} seed {seed}: clean {100 * best['clean']:.1f}%, "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in best.items() if k != "clean")
        + f"  (train {train_seconds:.0f} s, eval {record['eval_seconds']:.0f} s)")
    return record, model


def _flatten_accuracy(result, suite, config) -> dict:
    """{"clean": a, "fgsm@0.1": a, ..., "worst@0.1": a, "suite@0.1": a, "realisable@0.1": a}.

    ``worst``: per-example worst case over ``config.attacks``; ``suite``: over those and the suite's
    attacks; ``realisable``: the suite's realisable worst case (equal to ``suite`` without batch statistics).
    """
    flat = {"clean": result["clean_accuracy"]}
    for attack in config.attacks:
        for k, eps in enumerate(config.eps):
            flat[f"{attack}@{eps:g}"] = result["accuracy"][attack][k]
    for k, eps in enumerate(config.eps):
        flat[f"worst@{eps:g}"] = result["worst_case_accuracy"][k]
    for k, eps in enumerate(config.eps):
        # robust under every attack of both runs: never weaker than the evaluation's own worst case
        survived = zip(suite["per_example"][k], *(result["per_example"][a][k] for a in config.attacks))
        flat[f"suite@{eps:g}"] = sum(all(flags) for flags in survived) / len(suite["per_example"][k])
    for k, eps in enumerate(config.eps):
        flat[f"realisable@{eps:g}"] = suite["realisable_accuracy"][k]
    return flat


def _sanity(config, trained, x_eval, y_eval, log) -> dict:
    """Gradient-masking checks on each norm's first model (transfer from its second seed, if any).

    At the middle budget of ``config.eps``: at the largest one a BatchNorm model is already at 0%
    accuracy, where most checks could not fail.
    """
    out = {}
    x, y = x_eval[: config.sanity_examples], y_eval[: config.sanity_examples]
    for norm in config.norms:
        model = trained[(norm, 0)]
        transfer = trained.get((norm, 1))
        eps = sorted(config.eps)[len(config.eps) // 2]
        checks = sanity_checks(model, x, y, eps, steps=config.pgd_steps, alpha=madry_step_size(eps, config.pgd_steps),
                               transfer_model=transfer, batch_size=config.eval_batch_size, seed=0, progress=False,
                               square_queries=config.sanity_square_queries)
        out[norm] = checks
        failed = [name for name, check in checks["checks"].items() if check.get("passed") is False]
        log(f"  sanity checks ({norm}, seed 0, running statistics, ε = {eps:g}): " + ("all passed" if not failed else f"FAILED: {', '.join(failed)}"))
    return out


def _figures(config, results, trained, x_eval, y_eval) -> list:
    paths = []

    def path(name):
        paths.append(os.path.join(config.out, name))
        return paths[-1]

    figures.accuracy_vs_eps(results["summary"], [*config.attacks, "suite"], config.eps, path=path("accuracy_vs_eps.png"))
    figures.training_curves(results["runs"], path=path("training_curves.png"))
    shift_runs = [r for r in results["runs"] if r.get("statistics_shift") and r["norm"] == "bn"]
    if shift_runs:
        figures.statistics_shift(shift_runs[0]["statistics_shift"],
                                 title=f"BatchNorm input statistics, clean vs PGD ε={max(config.eps):g} (seed 0)",
                                 path=path("statistics_shift.png"))
    norm = "bn" if "bn" in config.norms else config.norms[0]
    model = trained[(norm, 0)]
    set_norm_eval_stats(model, "running", "running")
    k = 8
    x, y = x_eval[:k], y_eval[:k]
    eps = max(config.eps)
    x_adv = pgd(model, x, y, eps, madry_step_size(eps, config.pgd_steps), config.pgd_steps, seed=0)
    figures.example_grid(x, backend.to_host(x_adv), y, predict(model, x), predict(model, x_adv),
                         title=f"{norm}, PGD ε={eps:g}: clean (top) vs adversarial (bottom); red = wrong",
                         path=path("examples.png"))
    return paths


def _versions() -> dict:
    return {"minirn": minirn.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            **backend.versions()}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
