"""``python -m minirn tune``: choose each norm's training recipe on validation data.

One recipe for every norm is not fair: a learning rate that suits BatchNorm can leave an
unnormalised network dead.  So each norm gets its own, chosen on images held out from the
*training* split (:func:`minirn.data.validation_split`); the test split is never loaded into the
search, so no choice can look at it.

The search, for each norm, on ``seeds`` seeds::

    stage 1: every (lr, init, batch size) of GRID, trained for EPOCHS[0] epochs
             -> the pair with the highest mean validation accuracy
    stage 2: that pair trained for each longer budget of EPOCHS
             -> the longer budget only if it gains more than MIN_GAIN (every epoch costs run time)

The chosen recipes, with every validation accuracy seen, go to ``recipes.json`` next to this
module, which ``minirn reproduce`` reads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

import minirn
from minirn import models
from minirn.data import load_dataset, validation_split
from minirn.experiments.workers import default_workers, map_jobs
from minirn.train import Recipe, train_model

#: The file ``reproduce`` reads its per-norm recipes from.
RECIPES_PATH = os.path.join(os.path.dirname(__file__), "recipes.json")
#: Stage 1 of the search: learning rates (the authors' 0.1 and a larger one), initialisations, and batch
#: sizes (on 3,500 images, 128 gives only 27 steps an epoch: too few for a network without normalization).
GRID = {"lr": (0.1, 0.2), "init": models.INITS, "batch_size": (32, 128)}
#: Stage 2: epoch budgets (the first is stage 1's).
EPOCHS = (8, 12)
#: A longer budget must beat the shorter one by more than this (validation accuracy, fraction).
MIN_GAIN = 0.005


def tune(norms=("none", "bn", "rn"), *, dataset="mnist-5k", model="small-cnn", p=0.2, seeds=2, grid=None,
         epochs=EPOCHS, validation=500, data=None, out=RECIPES_PATH, log=print, workers=None,
         command="python -m minirn tune") -> dict:
    """Search each norm's recipe on validation accuracy; write and return the recipes file's contents.

    data: a :class:`~minirn.data.Dataset` (default: ``load_dataset(dataset)``); only its training
    images are used.  grid: some of :data:`GRID`'s entries (``{"lr": (...), "init": (...), "batch_size": (...)}``;
    the others are GRID's); epochs: the
    stage-1 budget, then the longer ones tried in stage 2.  out: where to write (None: nowhere).
    workers: processes training the seeds of a trial in parallel (default: 2 on a CPU).
    """
    workers = default_workers() if workers is None else workers
    unknown = set(grid or {}) - set(GRID)
    if unknown:
        raise ValueError(f"unknown grid entries {sorted(unknown)}; expected some of {', '.join(GRID)}")
    grid = {**GRID, **(grid or {})}  # entries not given: the default grid's
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

    def trial(norm, lr, init, batch_size, n_epochs):
        recipe = Recipe(epochs=n_epochs, lr=lr, init=init, batch_size=batch_size)
        jobs = [(model, norm, p, recipe, seed, (x_train, y_train), (x_val, y_val), data.num_classes)
                for seed in range(seeds)]
        found = map_jobs(_trial, jobs, workers)
        trials.extend(found)
        accs = [t["val_acc"] for t in found]
        log(f"  {norm:>4} lr {lr:<4g} init {init:<5} batch {batch_size:<3} {n_epochs:>2} epochs: validation "
            + ", ".join(f"{100 * a:.1f}%" for a in accs))
        return float(np.mean(accs)), recipe

    for norm in norms:
        scored = [trial(norm, lr, init, batch_size, epochs[0])
                  for lr in grid["lr"] for init in grid["init"] for batch_size in grid["batch_size"]]
        best_score, best = max(scored, key=lambda pair: pair[0])  # first of equals: the grid's order
        for n_epochs in epochs[1:]:
            score, recipe = trial(norm, best.lr, best.init, best.batch_size, n_epochs)
            if score > best_score + MIN_GAIN:
                best_score, best = score, recipe
        recipes[norm] = {"lr": best.lr, "init": best.init, "epochs": best.epochs, "momentum": best.momentum,
                         "weight_decay": best.weight_decay, "batch_size": best.batch_size,
                         "mean_val_acc": best_score}
        log(f"  -> {norm}: lr {best.lr:g}, init {best.init}, batch {best.batch_size}, {best.epochs} epochs "
            f"(validation {100 * best_score:.1f}%)")
    result = {
        "chosen_on": "validation",
        "rule": (f"stage 1: highest mean validation accuracy over {seeds} seeds among lr x init x batch size at "
                 f"{epochs[0]} epochs; stage 2: a longer budget only if it gains more than {100 * MIN_GAIN:g} points"),
        "dataset": data.name, "model": model, "p": p, "validation_examples": len(x_val),
        "train_examples": len(x_train), "seeds": list(range(seeds)),
        "grid": {**{key: list(values) for key, values in grid.items()}, "epochs": list(epochs)},
        "recipes": recipes, "trials": trials,
        "minirn": minirn.__version__, "command": command,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if out is not None:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        log(f"wrote {out} in {result['seconds']:.0f} s")
    return result


def _trial(model, norm, p, recipe, seed, train_data, val_data, num_classes):
    """Train one (recipe, seed) on the training images; its validation accuracy per epoch (a worker job)."""
    start = time.perf_counter()
    _, history = train_model(
        lambda: models.build(model, norm, p, in_channels=train_data[0].shape[1], num_classes=num_classes),
        recipe, train_data, seed, val_data=val_data, progress=False)
    return {"norm": norm, **dataclasses.asdict(recipe), "seed": seed, "val_acc": history[-1]["val_acc"],
            "val_acc_per_epoch": [h["val_acc"] for h in history], "train_seconds": round(time.perf_counter() - start, 1)}


def load_recipes(path=RECIPES_PATH) -> dict:
    """The recipes file's contents (``{}`` if there is none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def tuned_recipe(norm, dataset, model, p, path=RECIPES_PATH):
    """``(Recipe, source)``: the tuned recipe for this norm, or the defaults with the reason why."""
    tuned = load_recipes(path)
    if not tuned:
        return Recipe(), f"defaults: no {os.path.basename(path)}"
    for key, value in (("dataset", dataset), ("model", model)):
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
