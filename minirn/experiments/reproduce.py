"""``python -m minirn reproduce``: the paper's three findings, end to end, as a fair experiment.

The protocol::

    split        test images for the final numbers only; 500 training images held out for validation
    train        each norm with its own recipe, chosen on validation (minirn tune -> recipes.json), on each seed;
                 validation accuracy after every epoch, test accuracy once at the end; seed 0 also records
                 clean and PGD-margin accuracy on validation images after every epoch (robustness at matched
                 clean accuracy)
    flag         a model that did not learn (chance accuracy, one predicted class) is reported, never averaged
    attack       every model and eval-statistics variant: FGSM and PGD at each ε, and at the suite's ε the
                 per-example worst case of them and an AutoAttack-style suite (minirn.attacks.robust_accuracy):
                 ``suite`` for batch-independent models, ``batch_suite`` for batch-statistics variants
    check        the gradient-masking sanity checks on every model and variant, at the middle suite ε
    observe      how an attack shifts the norm layers' batch statistics, beside random noise of the same norm
    report       mean ± sample std (ddof = 1) over the seeds that learned, a 95% interval, the per-seed values

Writes ``results.json``, ``results.md`` and PNG figures to ``out``.  The defaults fit the 2-core CI
machine's budget; ``--full`` (:data:`~minirn.experiments.config.FULL`) runs the whole protocol.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import sys
import time

import numpy as np

import minirn
from minirn import backend, serialization
from minirn.attacks import evaluate, madry_step_size, pgd, robust_accuracy, sanity_checks
from minirn.attacks.evaluate import uses_batch_statistics
from minirn.attacks.sanity import ALIVE_ABOVE_CHANCE, is_alive
from minirn.attacks.suite import stronger_suite
from minirn.data import load_dataset, validation_split
from minirn.experiments import figures, report
from minirn.experiments.config import (  # noqa: F401 (public here too)
    ATTACKS,
    ReproduceConfig,
    attack_settings,
    full_config,
    quick_config,
)
from minirn.experiments.norm_stats import statistics_shift_with_control
from minirn.experiments.workers import map_two_stages
from minirn.nn import EVAL_STATISTICS, eval_statistics, norm_layers, set_norm_eval_stats
from minirn.runs import claim_output_folder, model_meta
from minirn.train import predict, train_model

#: where ``run`` writes each trained model alone, ``<out>/models/<norm>-seed<seed>.npz`` (a model checkpoint)
MODELS_FOLDER = "models"

#: ``(mean, scale)`` of the paper's eval-statistics variants, in the order of :data:`minirn.nn.EVAL_STATISTICS`.
EVAL_VARIANTS = tuple(variant.setting for variant in EVAL_STATISTICS)
#: The authors apply ε to mean/std-normalised MNIST (std 0.3081): ε_normalised = ε_pixel / 0.3081.
AUTHORS_PIXEL_STD = {"mnist-5k": 0.3081, "mnist": 0.3081, "fashion-mnist": 0.3530, "digits": None, "cifar10": None}


def eval_variants(norm: str, names=None):
    """The eval-statistics settings worth comparing for a norm (only batch norms have running statistics).

    names: the variants' names (default: all of :data:`minirn.nn.EVAL_STATISTICS`)."""
    if norm not in ("bn", "rn"):
        return (None,)
    return EVAL_VARIANTS if names is None else tuple(eval_statistics(name).setting for name in names)


def _seconds(start):
    return round(time.perf_counter() - start, 3)


def run(config: ReproduceConfig, log=print) -> dict:
    """Run the whole reproduction; return the results dictionary (also written to ``config.out``).

    Models train, and are then attacked (each as soon as it is trained), in ``config.workers``
    processes (:mod:`.workers`); every
    job is seeded on its own and runs with one BLAS thread, so the numbers do not depend on how many
    workers share the jobs (see :mod:`.workers`).
    """
    config.validate()
    started = time.perf_counter()
    claim_output_folder(config.out, config, config.resume)  # refuses a folder of another configuration
    data = _data(config)
    x_eval, y_eval = data.x_test[: config.eval_examples], data.y_test[: config.eval_examples]
    log(f"minirn reproduce: {config.dataset} ({len(data.x_train) - config.validation} train / {config.validation} "
        f"validation / {len(data.x_test)} test), {config.model}, norms {','.join(config.norms)}, "
        f"{config.seeds} seed(s), {len(x_eval)} attacked test images, device {config.device}, "
        f"{config.workers} worker process(es)")
    recipes = {norm: config.recipe(norm) for norm in config.norms}
    for norm, (recipe, source) in recipes.items():
        log(f"  recipe {norm}: lr {recipe.lr:g}, init {recipe.init}, batch {recipe.batch_size}, "
            f"{recipe.epochs} epochs ({source})")

    keys = [(norm, seed) for norm in config.norms for seed in range(config.seeds)]
    # each model is attacked as soon as it and its transfer source (the next seed) are trained
    jobs = [(norm, seed, eval_stats) for norm, seed in keys for eval_stats in eval_variants(norm, config.eval_variants)]
    jobs.sort(key=lambda job: job[2] is None or "batch" not in job[2])  # the slow batch-statistics jobs first
    trained, evaluated = map_two_stages(
        _train_job, {(norm, seed): (config, norm, seed, recipes[norm]) for norm, seed in keys},
        _evaluate_job, [_evaluation(config, norm, seed, eval_stats) for norm, seed, eval_stats in jobs], config.workers,
        on_first=lambda key, result: _log_training(result[1], log))
    states = {key: trained[key][0] for key in keys}
    runs = [trained[key][1] for key in keys]
    by_key = {(r["norm"], r["seed"]): r for r in runs}
    for (norm, seed, _), (variant, extra) in zip(jobs, evaluated):
        by_key[(norm, seed)]["variants"].append(variant)
        by_key[(norm, seed)].update(extra)
    order = [None, *(list(v) for v in EVAL_VARIANTS)]
    for record in runs:  # back in the order of minirn.nn.EVAL_STATISTICS, running statistics first
        record["variants"].sort(key=lambda variant: order.index(variant["eval_stats"]))
        for variant in record["variants"]:
            _log_variant(record["norm"], record["seed"], variant, log)

    summary = report.summarize(runs, config.attacks, config.eps, config.model)
    results = {
        "config": dataclasses.asdict(config),
        "versions": _versions(),
        "recipes": {norm: {**dataclasses.asdict(recipe), "source": source} for norm, (recipe, source) in recipes.items()},
        "budgets": budgets(config),
        "headline_eps": config.headline_eps(),  # of the scorecard, the sanity checks and the training curve
        "eval_batch_size": config.eval_batch_size,
        "eval_examples": len(x_eval),
        "runs": runs,
        "not_learned": [f"{r['norm']} seed {r['seed']}" for r in runs if not r["learned"]["passed"]],
        "not_converged": [f"{r['norm']} seed {r['seed']}: clean {100 * r['test_acc']:.1f}% < "
                          f"{100 * config.expected_clean_accuracy:g}%" for r in runs
                          if config.expected_clean_accuracy is not None and r["test_acc"] < config.expected_clean_accuracy],
        "summary": summary,
        "sanity_failures": _sanity_failures(runs),
    }
    models = {key: _model(config, data, key[0], state) for key, state in states.items()}
    results["figures"] = _figures(config, results, models, x_eval, y_eval)
    results["seconds"] = _seconds(started)
    results["markdown"] = report.results_markdown(results)
    with open(os.path.join(config.out, "results.md"), "w") as f:
        f.write(results["markdown"])
    with open(os.path.join(config.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=_json_default)
    log("\n" + results["markdown"])
    log(f"\nwrote {config.out}/results.json, results.md and {len(results['figures'])} figures "
        f"in {results['seconds']:.0f} s")
    return results


def _data(config):
    return _load(config.dataset, config.data_root, config.download)


@functools.lru_cache(maxsize=4)
def _load(dataset, root, download):  # once per process: every job of a worker reuses it
    return load_dataset(dataset, root=root, download=download)


def _model(config, data, norm, state):
    model = config.build_model(norm, data.x_train.shape[1], data.num_classes)
    model.load_state_dict(state)
    return model.eval()


def budgets(config) -> list:
    """Each ε in pixel units and in the authors' units (ε on mean/std-normalised images), and which rows the
    suite attacks at it (``suite``: the batch-independent ones; ``batch_suite``: the batch-statistics ones)."""
    std = AUTHORS_PIXEL_STD.get(config.dataset)
    return [{"eps": eps, "normalised": None if std is None else round(eps / std, 4), "suite": eps in config.suite_budgets(),
             "batch_suite": eps in config.suite_budgets(batch_dependent=True)}
            for eps in config.eps]


def _train_job(config, norm, seed, recipe_and_source):
    """Train one model with ``(Recipe, source)``: ``(host state_dict, record)`` (a worker-process job)."""
    data = _data(config)
    x_train, y_train, x_val, y_val = validation_split(data, config.validation)
    recipe, source = recipe_and_source
    checkpoint = os.path.join(config.out, "checkpoints", f"{norm}-seed{seed}.npz")
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    meta = model_meta(data, recipe, model=config.model, norm=norm, p=config.p, seed=seed, validation=config.validation,
                      **config.model_settings())
    curve = _robustness_curve(config, (x_val, y_val)) if seed == 0 else None  # robustness at matched accuracy
    start = time.perf_counter()
    model, history = train_model(
        lambda: config.build_model(norm, data.x_train.shape[1], data.num_classes), recipe, (x_train, y_train), seed,
        val_data=(x_val, y_val),
        augment="cifar" if data.name == "cifar10" else None, on_epoch_end=curve, checkpoint=checkpoint,
        resume=config.resume, progress=config.progress and config.workers == 1, description=f"{norm} seed {seed}",
        checkpoint_meta=meta,
    )
    model.eval()
    predictions = predict(model, data.x_test)  # every test image, in the batches of minirn.train.accuracy
    record = {"norm": norm, "seed": seed, "recipe": {**dataclasses.asdict(recipe), "source": source},
              "history": history, "train_seconds": _seconds(start), "variants": [],
              "test_acc": float(np.mean(predictions == backend.to_host(data.y_test))),  # once: nothing is chosen by it
              "learned": _learned(predictions[: config.eval_examples], data.y_test[: config.eval_examples],
                                  data.num_classes)}
    state = {name: backend.to_host(value) for name, value in model.state_dict().items()}
    # the trained model alone (no optimizer state): what docs/default-run/models ships and default_models() reads
    model_file = os.path.join(config.out, MODELS_FOLDER, f"{norm}-seed{seed}.npz")
    os.makedirs(os.path.dirname(model_file), exist_ok=True)
    serialization.save({"model": state, "meta": meta}, model_file)
    return state, record


def _log_training(record, log):
    last = record["history"][-1]
    log(f"  {record['norm']:>4} seed {record['seed']}: validation {100 * last['val_acc']:.1f}%, "
        f"test {100 * record['test_acc']:.1f}% (train {record['train_seconds']:.0f} s)"
        + ("" if record["learned"]["passed"] else "  ** DID NOT LEARN: " + record["learned"]["why"] + " **"))


def learned(model, x, y, num_classes) -> dict:
    """Did the model learn?  :func:`minirn.attacks.sanity.is_alive` on ``x``: fails at chance accuracy
    (≤ 1.5 / classes) or one predicted class, with the reason in ``why``."""
    return _learned(predict(model, x), y, num_classes)


def _learned(predictions, y, num_classes) -> dict:
    """:func:`learned` from the model's predicted classes (N,) for labels y (N,)."""
    accuracy = float(np.mean(predictions == backend.to_host(y)))
    classes = len(np.unique(predictions))
    why = []
    if accuracy <= ALIVE_ABOVE_CHANCE / num_classes:
        why.append(f"accuracy {100 * accuracy:.1f}% is chance level")
    if classes == 1:
        why.append("it predicts one class for every image")
    return {"passed": is_alive(accuracy, classes, num_classes), "accuracy": accuracy, "predicted_classes": classes,
            "why": "; ".join(why)}


def _robustness_curve(config, val_data):
    """``on_epoch_end`` that adds clean and PGD-margin accuracy on validation images (running statistics)."""
    x, y = val_data[0][: config.curve_examples], val_data[1][: config.curve_examples]
    eps = config.headline_eps()

    def on_epoch_end(model, record):
        model.eval()
        correct = 0
        for s in range(0, len(x), config.eval_batch_size):
            xb, yb = x[s : s + config.eval_batch_size], y[s : s + config.eval_batch_size]
            x_adv = pgd(model, xb, yb, eps, madry_step_size(eps, config.pgd_steps), config.pgd_steps,
                        loss="margin", seed=s)
            correct += int(np.sum(predict(model, x_adv) == backend.to_host(yb)))
        record["curve_clean_acc"] = float(np.mean(predict(model, x) == backend.to_host(y)))
        record["curve_robust_acc"] = correct / len(x)
        record["curve_eps"] = eps

    return on_epoch_end


def _evaluation(config, norm, seed, eval_stats):
    """``(needs, make_args)`` of one evaluation job for :func:`~.workers.map_two_stages`: the model and the
    next seed's (the transfer attack's source), trained."""
    source = (norm, (seed + 1) % config.seeds)

    def make_args(trained):
        return config, norm, seed, eval_stats, trained[(norm, seed)][0], trained[source][0]

    return [(norm, seed), source], make_args


def _evaluate_job(config, norm, seed, eval_stats, state, transfer_state):
    """Attack and check one model under one eval-statistics variant: ``(variant, extra record entries)``."""
    data = _data(config)
    x_eval, y_eval = data.x_test[: config.eval_examples], data.y_test[: config.eval_examples]
    start = time.perf_counter()
    model = _model(config, data, norm, state)
    transfer = None if transfer_state is None or config.seeds < 2 else _model(config, data, norm, transfer_state)
    for m in (model, transfer):
        if eval_stats is not None and m is not None:
            set_norm_eval_stats(m, *eval_stats)
    batch_dependent = uses_batch_statistics(model)
    suite_eps = config.suite_budgets(batch_dependent)
    other_eps = [e for e in config.eps if e not in suite_eps]
    suite_name = config.suite_for(batch_dependent)
    suite = robust_accuracy(model, x_eval, y_eval, suite_eps, suite=suite_name, attacks=attack_settings(config),
                            batch_size=config.eval_batch_size, seed=seed, keep_per_example=True)
    others = (evaluate(model, x_eval, y_eval, attack_settings(config), other_eps, batch_size=config.eval_batch_size,
                       seed=seed, progress=False) if other_eps else None)
    eps, k = config.headline_eps(), config.sanity_examples
    # the convergence check re-attacks the reported suite result at the headline ε with the next stronger suite
    reported = suite["per_example"][suite["eps"].index(eps)][:k]
    sanity = sanity_checks(
        model, x_eval[:k], y_eval[:k], eps, steps=config.pgd_steps,
        alpha=madry_step_size(eps, config.pgd_steps), transfer_model=transfer, batch_size=config.eval_batch_size,
        seed=seed, progress=False, square_queries=config.sanity_square_queries, reported_robust=reported,
        stronger=stronger_suite(suite_name))
    variant = {"eval_stats": list(eval_stats) if eval_stats else None, "suite_name": suite_name,
               "accuracy": _flatten_accuracy(config, suite, others), "suite": suite, "others": others,
               "sanity": sanity, "seconds": _seconds(start)}
    extra = {}
    if eval_stats in (None, ("running", "running")) and norm_layers(model):
        set_norm_eval_stats(model, "running", "running")
        n = config.eval_batch_size
        x_adv = pgd(model, x_eval[:n], y_eval[:n], eps, madry_step_size(eps, config.pgd_steps), config.pgd_steps,
                    loss="margin", seed=seed)
        extra["statistics_shift"] = statistics_shift_with_control(model, x_eval[:n], x_adv, eps, seed=seed)
    return variant, extra


def _log_variant(norm, seed, variant, log):
    failed = [name for name, check in variant["sanity"]["checks"].items() if check.get("passed") is False]
    log(f"  {report.variant_label(norm, variant['eval_stats']):>14} seed {seed}: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in variant["accuracy"].items())
        + f"; sanity {'passed' if not failed else 'FAILED: ' + ', '.join(failed)} ({variant['seconds']:.0f} s)")


def _flatten_accuracy(config, suite, others) -> dict:
    """{"clean": a, "fgsm@0.05": a, "pgd@0.05": a, ..., "suite@0.05": a, "realisable@0.05": a}.

    ``fgsm``/``pgd``: each attack's own accuracy; ``worst``: their per-example worst case; ``suite``:
    the worst case over them and the suite's attacks; ``realisable``: the suite's realisable worst case
    (equal to ``suite`` without batch statistics).
    """
    flat = {"clean": suite["clean_accuracy"]}
    for attack in config.attacks:
        for eps in config.eps:
            if eps in suite["eps"]:
                flat[f"{attack}@{eps:g}"] = suite["attack_accuracy"][attack][suite["eps"].index(eps)]
            else:
                flat[f"{attack}@{eps:g}"] = others["accuracy"][attack][others["eps"].index(eps)]
    for eps in config.eps:
        if eps in suite["eps"]:
            k = suite["eps"].index(eps)
            flat[f"worst@{eps:g}"] = suite["extra_worst_accuracy"][k]
            flat[f"suite@{eps:g}"] = suite["robust_accuracy"][k]
            flat[f"realisable@{eps:g}"] = suite["realisable_accuracy"][k]
        else:
            flat[f"worst@{eps:g}"] = others["worst_case_accuracy"][others["eps"].index(eps)]
    return flat


def _sanity_failures(runs) -> list:
    """``"bn / batch seed 1: check, check"`` for every model and variant with a failed check."""
    out = []
    for run in runs:
        for variant in run["variants"]:
            failed = [name for name, check in variant["sanity"]["checks"].items() if check.get("passed") is False]
            if failed:
                out.append(f"{report.variant_label(run['norm'], variant['eval_stats'])} seed {run['seed']}: "
                           + ", ".join(failed))
    return out


def _figures(config, results, trained, x_eval, y_eval) -> list:
    """The figures, from the results and the trained models ``{(norm, seed): model}``."""
    paths = []

    def path(name):
        paths.append(os.path.join(config.out, name))
        return paths[-1]

    what = f"{config.dataset}, {config.model}"
    summary = results["summary"]
    seeds = max((row["seeds"] for row in summary), default=config.seeds)
    figures.accuracy_vs_eps(summary, [*config.attacks, "suite"], config.eps, path=path("accuracy_vs_eps.png"),
                            seeds=seeds, examples=len(x_eval), title=what)
    figures.training_curves(results["runs"], path=path("training_curves.png"), title=what)
    curves = [r for r in results["runs"] if r["seed"] == 0 and "curve_robust_acc" in r["history"][0]]
    if curves:
        figures.clean_vs_robust(curves, path=path("clean_vs_robust.png"), title=what,
                                examples=min(config.curve_examples, config.validation))
    shift_runs = [r for r in results["runs"] if r.get("statistics_shift")]
    if shift_runs:
        figures.statistics_shift_control(shift_runs, path=path("statistics_shift.png"), title=what,
                                         examples=min(config.eval_batch_size, len(x_eval)))
    panels, k, eps = [], 8, config.headline_eps()
    x, y = x_eval[:k], y_eval[:k]
    for norm in config.norms:
        model = trained[(norm, 0)]
        set_norm_eval_stats(model, "running", "running")
        x_adv = backend.to_host(pgd(model, x, y, eps, madry_step_size(eps, config.pgd_steps), config.pgd_steps,
                                    loss="margin", seed=0))
        panels.append({"name": report.variant_label(norm, ["running", "running"] if norm_layers(model) else None),
                       "clean": backend.to_host(x), "adversarial": x_adv, "labels": backend.to_host(y),
                       "clean_predictions": predict(model, x), "adversarial_predictions": predict(model, x_adv)})
    figures.examples_by_norm(panels, attack="PGD-margin", eps=eps, title=f"{what}, seed 0", path=path("examples.png"))
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
