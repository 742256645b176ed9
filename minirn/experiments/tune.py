"""``python -m minirn tune``: choose each norm's training recipe on validation data.

One recipe for every norm is not fair: a learning rate that suits BatchNorm can leave an
unnormalised network dead.  So each norm gets its own, chosen on images held out from the
*training* split (:func:`minirn.data.validation_split`); the test split is never loaded into the
search, so no choice can look at it.

The search, for each norm, on ``seeds`` seeds::

    stage 1: every (lr, init, batch size) of GRID, trained for EPOCHS[0] epochs
             -> the one whose worst seed has the highest validation accuracy (then the best mean)
    stage 2: that one trained for each longer budget of EPOCHS
             -> the longer budget only if its worst seed gains more than MIN_GAIN (every epoch costs run time)

Ranking by the worst seed, not the mean, is what keeps a recipe that trains most seeds well but
leaves one dead (a learning rate at the edge of stability for a network without normalization)
from being chosen.  The seeds are the default run's (0, 1, 2), so the run trains the chosen trials
again (bit for bit when the training arrays, their order and the BLAS thread count are the same):
their convergence on validation images is part of the choice, their test accuracy is not.

Training is deterministic on the CPU, so a trial already in the recipes file (same dataset,
model, p, training and validation arrays in the same order -- ``split_sha256`` --, recipe, seed and
minirn version) is read from it instead of being trained again (``reuse``); the file marks such
trials.  A change that moves training's float bits within a version (a new summation order in a
convolution, say) makes the stored trials stale: tune again with ``--fresh``, which trains every trial.

The chosen recipes, with every validation accuracy seen, go to one file per model next to this
module (:func:`recipes_path`: ``recipes.json`` for the small CNN, ``recipes-resnet8.json`` for
ResNet-8, ...), which ``minirn reproduce`` reads.  Each model family has its own grid
(:func:`search_space`): the ResNets' includes the authors' recipe (lr 0.1, He-normal, batch 128).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np

import minirn
from minirn import models
from minirn.data import load_dataset, validation_split
from minirn.experiments.workers import default_workers, map_jobs
from minirn.train import Recipe, train_model

#: The file ``reproduce`` reads the small CNN's per-norm recipes from (other models: :func:`recipes_path`).
RECIPES_PATH = os.path.join(os.path.dirname(__file__), "recipes.json")
#: Stage 1 of the small CNN's search: learning rates (the authors' 0.1 and a larger one), initialisations, and
#: batch sizes (on 3,500 images, 128 gives only 27 steps an epoch: too few for a network without normalization).
GRID = {"lr": (0.1, 0.2), "init": models.INITS, "batch_size": (32, 128)}
#: Stage 2: epoch budgets (the first is stage 1's).
EPOCHS = (8, 12)
#: The ResNets' search: the authors' recipe (lr 0.1, He-normal, batch 128) and its neighbours: half the
#: learning rate (a residual network without normalization may need it), PyTorch's initialisation, batch 32
#: (the authors' 50 epochs of 60,000 images are 23,000 steps; 3,500 images in batches of 128 are 27 an epoch).
RESNET_GRID = {"lr": (0.05, 0.1), "init": models.INITS, "batch_size": (32, 128)}
RESNET_EPOCHS = (8, 16)


def search_space(model: str) -> tuple:
    """``(grid, epochs)`` of ``model``'s search: :data:`GRID`/:data:`EPOCHS` for the small CNN,
    :data:`RESNET_GRID`/:data:`RESNET_EPOCHS` for a ResNet."""
    return (GRID, EPOCHS) if models.resnet_depth(model) is None else (RESNET_GRID, RESNET_EPOCHS)


def recipes_path(model: str = "small-cnn") -> str:
    """The recipes file of ``model`` next to this module: ``recipes.json`` (small CNN) or ``recipes-<model>.json``."""
    models.resnet_depth(model)  # an unknown model name fails here, in one line
    name = "recipes.json" if model == "small-cnn" else f"recipes-{model}.json"
    return os.path.join(os.path.dirname(__file__), name)
#: A longer budget must beat the shorter one by more than this (validation accuracy, fraction).
MIN_GAIN = 0.005


def tune(norms=("none", "bn", "rn"), *, dataset="mnist-5k", model="small-cnn", p=0.2, seeds=3, grid=None,
         epochs=None, validation=500, data=None, out="default", log=print, workers=None, reuse=None,
         input_normalization=None, command="python -m minirn tune") -> dict:
    """Search each norm's recipe on validation accuracy; write and return the recipes file's contents.

    data: a :class:`~minirn.data.Dataset` (default: ``load_dataset(dataset)``); only its training
    images are used.  grid: some of the model's grid entries (``{"lr": (...), "init": (...), "batch_size": (...)}``;
    the others are :func:`search_space`'s); epochs: the
    stage-1 budget, then the longer ones tried in stage 2 (default: :func:`search_space`'s).
    out: where to write (``"default"``: :func:`recipes_path` of the model; None: nowhere).
    workers: processes training the seeds of a trial in parallel (default: 2 on a CPU).
    reuse: a recipes file whose matching trials are read instead of trained (see the module docstring).
    input_normalization: ``{"mean": [...], "std": [...]}`` of a :class:`~minirn.nn.Normalize` first layer, or None.
    """
    workers = default_workers() if workers is None else workers
    default_grid, default_epochs = search_space(model)
    unknown = set(grid or {}) - set(default_grid)
    if unknown:
        raise ValueError(f"unknown grid entries {sorted(unknown)}; expected some of {', '.join(default_grid)}")
    grid = {**default_grid, **(grid or {})}  # entries not given: the default grid's
    epochs = default_epochs if epochs is None else epochs
    out = recipes_path(model) if out == "default" else out
    if not isinstance(seeds, int) or seeds < 2:
        raise ValueError(f"tune needs at least 2 seeds (a choice made on one seed is a coin toss), got {seeds!r}")
    if not epochs or any(not isinstance(e, int) or e < 1 for e in epochs):
        raise ValueError(f"epochs must be positive integers, got {list(epochs)}")
    started = time.perf_counter()
    data = load_dataset(dataset) if data is None else data
    x_train, y_train, x_val, y_val = validation_split(data, validation)
    log(f"minirn tune: {data.name}, {model}, {len(x_train)} train / {len(x_val)} validation images "
        f"(the test split is not used), seeds 0-{seeds - 1}")
    trials, recipes = [], {}
    fingerprint = _fingerprint(x_train, y_train, x_val, y_val)
    known = _reusable_trials(reuse, data.name, model, p, fingerprint, input_normalization)

    def trials_of(norm, candidates):
        """Train (or read) every (recipe, seed) of ``candidates`` at once; [(score, recipe)] in their order."""
        recipes_ = [Recipe(epochs=n_epochs, lr=lr, init=init, batch_size=batch_size)
                    for lr, init, batch_size, n_epochs in candidates]
        keys = [[_trial_key(norm, dataclasses.asdict(recipe), seed) for seed in range(seeds)] for recipe in recipes_]
        jobs = [(model, norm, p, recipe, seed, (x_train, y_train), (x_val, y_val), data.num_classes, input_normalization)
                for recipe, row in zip(recipes_, keys) for seed, key in zip(range(seeds), row) if key not in known]
        new = iter(map_jobs(_trial, jobs, workers))  # all at once: the workers stay busy
        scored = []
        for recipe, row in zip(recipes_, keys):
            found = [{**known[key], "reused": True} if key in known else next(new) for key in row]
            trials.extend(found)
            accs = [t["val_acc"] for t in found]
            reused = sum(1 for key in row if key in known)
            log(f"  {norm:>4} lr {recipe.lr:<4g} init {recipe.init:<5} batch {recipe.batch_size:<3} {recipe.epochs:>2} "
                "epochs: validation " + ", ".join(f"{100 * a:.1f}%" for a in accs)
                + (f" ({reused} read from the recipes file)" if reused else ""))
            scored.append(((min(accs), float(np.mean(accs))), recipe))
        return scored

    for norm in norms:
        scored = trials_of(norm, [(lr, init, batch_size, epochs[0])
                                  for lr in grid["lr"] for init in grid["init"] for batch_size in grid["batch_size"]])
        best_score, best = max(scored, key=lambda pair: pair[0])  # worst seed, then mean; first of equals
        for score, recipe in trials_of(norm, [(best.lr, best.init, best.batch_size, n) for n in epochs[1:]]):
            if score[0] > best_score[0] + MIN_GAIN:
                best_score, best = score, recipe
        recipes[norm] = {"lr": best.lr, "init": best.init, "epochs": best.epochs, "momentum": best.momentum,
                         "weight_decay": best.weight_decay, "batch_size": best.batch_size,
                         "worst_seed_val_acc": best_score[0], "mean_val_acc": best_score[1]}
        log(f"  -> {norm}: lr {best.lr:g}, init {best.init}, batch {best.batch_size}, {best.epochs} epochs "
            f"(validation: worst seed {100 * best_score[0]:.1f}%, mean {100 * best_score[1]:.1f}%)")
    result = {
        "chosen_on": "validation",
        "rule": (f"stage 1: among lr x init x batch size at {epochs[0]} epochs, the highest validation accuracy of "
                 f"the worst of {seeds} seeds (then the best mean); stage 2: a longer budget only if its worst seed "
                 f"gains more than {100 * MIN_GAIN:g} points"),
        "dataset": data.name, "model": model, "p": p, "input_normalization": input_normalization,
        "validation_examples": len(x_val),
        "split_sha256": fingerprint,
        "train_examples": len(x_train), "seeds": list(range(seeds)),
        "grid": {**{key: list(values) for key, values in grid.items()}, "epochs": list(epochs)},
        "recipes": recipes, "trials": trials,
        "minirn": minirn.__version__, "command": command,
        "seconds": round(time.perf_counter() - started, 1),
        "reused_trials": sum(1 for t in trials if t.get("reused")),
        "training_seconds_all_trials": round(sum(t["train_seconds"] for t in trials), 1),
    }
    if out is not None:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"wrote {out} in {result['seconds']:.0f} s")
    return result


def _trial(model, norm, p, recipe, seed, train_data, val_data, num_classes, input_normalization=None):
    """Train one (recipe, seed) on the training images; its validation accuracy per epoch (a worker job)."""
    start = time.perf_counter()
    _, history = train_model(
        lambda: models.build(model, norm, p, in_channels=train_data[0].shape[1], num_classes=num_classes,
                             input_normalization=input_normalization),
        recipe, train_data, seed, val_data=val_data, progress=False)
    return {"norm": norm, **dataclasses.asdict(recipe), "seed": seed, "val_acc": history[-1]["val_acc"],
            "val_acc_per_epoch": [h["val_acc"] for h in history], "train_seconds": round(time.perf_counter() - start, 1)}


def _trial_key(norm, recipe: dict, seed) -> tuple:
    return (norm, seed, *(recipe[name] for name in ("lr", "init", "batch_size", "epochs", "momentum", "weight_decay")))


def _fingerprint(*arrays) -> str:
    """SHA-256 of the training and validation arrays, in order: the batches a seed draws depend on the order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _reusable_trials(path, dataset, model, p, fingerprint, input_normalization=None) -> dict:
    """``{key: trial}`` of the recipes file ``path`` if it was made on the same data (the same images in the
    same order), model, input normalization, p and minirn version; else nothing."""
    previous = load_recipes(path) if path else {}
    same = (previous.get("dataset"), previous.get("model"), previous.get("p"), previous.get("split_sha256"),
            previous.get("input_normalization"), previous.get("minirn")) == (
        dataset, model, p, fingerprint, input_normalization, minirn.__version__)
    if not same:
        return {}
    return {_trial_key(t["norm"], t, t["seed"]): {k: v for k, v in t.items() if k != "reused"}
            for t in previous.get("trials", [])}


def load_recipes(path=RECIPES_PATH) -> dict:
    """The recipes file's contents (``{}`` if there is none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def tuned_recipe(norm, dataset, model, p, path=None, input_normalization=None):
    """``(Recipe, source)``: the tuned recipe for this norm, or the defaults with the reason why.

    path: the recipes file (default :func:`recipes_path` of ``model``)."""
    path = recipes_path(model) if path is None else path
    tuned = load_recipes(path)
    if not tuned:
        return Recipe(), f"defaults: no {os.path.basename(path)}"
    for key, value in (("dataset", dataset), ("model", model),
                       ("input_normalization", input_normalization)):
        if tuned.get(key) != value:
            return Recipe(), f"defaults: the tuned recipes are for {key} {tuned.get(key)!r}, not {value!r}"
    if norm == "rn" and tuned.get("p") != p:
        return Recipe(), f"defaults: the tuned recipes are for p = {tuned.get('p')}, not {p}"
    if norm not in tuned["recipes"]:
        return Recipe(), f"defaults: no tuned recipe for norm {norm!r}"
    chosen = tuned["recipes"][norm]
    recipe = Recipe(epochs=chosen["epochs"], batch_size=chosen["batch_size"], lr=chosen["lr"],
                    momentum=chosen["momentum"], weight_decay=chosen["weight_decay"], init=chosen["init"])
    return recipe, f"tuned on validation ({os.path.basename(path)})"
