"""The default run's trained networks and results, shipped with the repository.

``python -m minirn reproduce`` (the default run) trains nine small CNNs: no normalization, BatchNorm and
RobustNorm, seeds 0-2, each with its recipe from ``recipes.json``.  Its ``results.json`` and the nine
models (weights only, about 0.2 MB each) are committed in ``docs/default-run/``, so the notebooks and
the README speak about the same networks: a notebook that loads them prints the README's numbers.

>>> from minirn.experiments import default_models
>>> models = default_models()            # {"none": [seed 0, 1, 2], "bn": [...], "rn": [...]}
>>> models["bn"][0]                      # BatchNorm, seed 0, in eval mode with running statistics

The authors' MNIST network (``python -m minirn reproduce --preset authors-mnist``: ResNet-8) is committed the
same way in ``docs/authors-mnist/``; every function here takes ``run="authors-mnist"`` for it.
"""
from __future__ import annotations

import json
import os

from minirn import serialization

#: the committed default run: results.json, results.md and models/<norm>-seed<seed>.npz
DEFAULT_RUN_FOLDER = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "default-run")
#: the committed runs by name: the default one, and the preset authors-mnist (ResNet-8)
COMMITTED_RUNS = {"default": DEFAULT_RUN_FOLDER,
                  "authors-mnist": os.path.join(os.path.dirname(DEFAULT_RUN_FOLDER), "authors-mnist")}


def _folder(run: str = "default") -> str:
    if run not in COMMITTED_RUNS:
        raise ValueError(f"no committed run {run!r}; expected one of {', '.join(COMMITTED_RUNS)}")
    folder = os.path.normpath(COMMITTED_RUNS[run])
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"the {run} run's files are not at {folder}: they ship with the repository (docs/), "
            "not with an installed wheel; clone the repository and 'pip install -e .'"
        )
    return folder


def default_results(run: str = "default") -> dict:
    """The default run's ``results.json`` (configuration, recipes, every model's evaluation, the summary);
    ``run="authors-mnist"``: the ResNet-8 preset's."""
    with open(os.path.join(_folder(run), "results.json")) as f:
        return json.load(f)


def default_model_file(norm: str, seed: int, run: str = "default") -> str:
    """The path of one shipped model, ``docs/default-run/models/<norm>-seed<seed>.npz`` (or the preset's)."""
    return os.path.join(_folder(run), "models", f"{norm}-seed{seed}.npz")


def default_models(norms=None, seeds=None, device: str = "cpu", run: str = "default") -> dict:
    """The default run's trained models, ``{norm: [model of seed 0, seed 1, ...]}``, in eval mode.

    norms: e.g. ``["bn", "rn"]`` (default: every norm of the run); seeds: e.g. ``[0]`` (default: every
    seed; the lists then hold only those seeds, in that order).  Each model is exactly what the run
    trained, attacked and reported: ``minirn.load_model`` of its checkpoint.
    """
    config = default_results(run)["config"]
    norms = list(config["norms"] if norms is None else norms)
    seeds = list(range(config["seeds"]) if seeds is None else seeds)
    unknown = [n for n in norms if n not in config["norms"]] + [s for s in seeds if s not in range(config["seeds"])]
    if unknown:
        raise ValueError(f"the {run} run has norms {config['norms']} and seeds 0-{config['seeds'] - 1}; "
                         f"no model for {unknown}")
    return {norm: [serialization.load_model(default_model_file(norm, seed, run), device) for seed in seeds]
            for norm in norms}
