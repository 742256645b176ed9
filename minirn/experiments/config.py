"""The settings of ``minirn reproduce``, ``minirn train`` and ``minirn attack``, in one place.

:class:`ReproduceConfig` holds every setting of a reproduction run; its defaults
are the command line's; its training recipe is each norm's tuned one
(:mod:`minirn.experiments.tune`), which any recipe field given overrides.
:func:`attack_settings` is the attack protocol that ``reproduce`` and
``attack`` share.  This module only describes runs; running them is
:mod:`minirn.experiments.reproduce` (or :mod:`minirn.cli` for one model), so the
``train`` and ``attack`` commands do not need the experiment pipeline.
"""
from __future__ import annotations

import dataclasses
import sys

from minirn import backend, models, nn
from minirn.attacks import SUITES, madry_step_size
from minirn.attacks.checks import budget_hint
from minirn.attacks.evaluate import SUITE_NAMES
from minirn.bridge.authors import authors_input_normalization
from minirn.experiments.tune import tuned_recipe
from minirn.experiments.workers import default_workers

#: The fields of :class:`minirn.train.Recipe` that a run can override.
RECIPE_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "init")
ATTACKS = ("fgsm", "pgd", "bim", "mim", "cw", "apgd-ce", "apgd-dlr", "apgd-t", "square", "suite")


#: What ``--full`` changes: the whole protocol (every test image, more budgets, AutoAttack's budgets, every variant).
FULL = dict(eval_examples=1000, eps=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1), suite_eps=None, batch_suite_eps=None,
            suite="standard", batch_suite=None, eval_variants=("running", "batch", "running-mean"), sanity_examples=256,
            sanity_square_queries=1000, curve_examples=500)


@dataclasses.dataclass
class ReproduceConfig:
    """Everything that defines a reproduction run (all of it is written to results.json).

    The training recipe (lr, epochs, init, ...) is each norm's tuned one
    (:mod:`minirn.experiments.tune`, chosen on validation data); a value given here overrides it
    for every norm.
    """

    dataset: str = "mnist-5k"
    model: str = "small-cnn"
    #: a :class:`~minirn.nn.Normalize` first layer: None, "authors" (their (x - mean) / std for the dataset) or
    #: ``{"mean": [...], "std": [...]}``; the attacks' budgets stay in pixel units of [0, 1] either way
    input_normalization: str | dict | None = None
    norms: tuple = ("none", "bn", "rn")
    p: float = 0.2
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    init: str | None = None
    seeds: int = 3
    #: training images held out for validation (the accuracy-matched curve; tuning uses the same split)
    validation: int = 500
    attacks: tuple = ("fgsm", "pgd")
    #: budgets (L∞, pixel units of [0, 1]) of ``attacks``; 0.005 is at the authors' scale (ε / σ ≈ 0.016);
    #: 0.02-0.03 is where the networks part
    eps: tuple = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1)
    #: budgets attacked by the suite too, for models independent of the batch (None: all of ``eps``); not 0.01
    #: and 0.02, where nearly every example survives, so the suite costs the most and moves FGSM's and PGD's worst
    #: case the least (0.0-0.6 points at 0.01, 0.2-2.2 at 0.02 in a run that did), to keep the default run within
    #: 15 minutes
    suite_eps: tuple | None = (0.03, 0.05, 0.075, 0.1)
    #: budgets attacked by the suite for the batch-statistics variants, whose suite attacks every example of
    #: each batch (None: ``suite_eps``); the headline budget (:meth:`headline_eps`) must be one of them
    batch_suite_eps: tuple | None = (0.03, 0.05)
    #: the headline budget: of the scorecard, the sanity checks and the robustness-over-training curve
    #: (None: the middle of the suite's budgets)
    headline: float | None = 0.05
    pgd_steps: int = 10
    #: the attack ensemble whose per-example worst case is the "suite" column (minirn.attacks.SUITES), for
    #: models whose outputs do not depend on the batch (the suite then attacks only the examples still robust);
    #: "medium" by default (APGD-CE 100 steps, APGD-T 3 x 50, Square 100), "standard" (AutoAttack's) with --full
    suite: str = "medium"
    #: the ensemble for batch-statistics variants, where every attack perturbs every example of each fixed batch
    #: (about N / survivors times the work): "fast" by default, to fit the CPU budget; None: the same as ``suite``
    batch_suite: str | None = "fast"
    #: the eval-statistics variants of the batch norms (names of minirn.nn.EVAL_STATISTICS)
    eval_variants: tuple = ("running", "batch")
    #: the Square attack's query budget in the sanity check ``gradient_free_not_stronger``
    sanity_square_queries: int = 100
    eval_examples: int = 500
    eval_batch_size: int = 128
    #: test examples of the sanity checks: the first evaluation batch, so that the suite's convergence check
    #: (``suite_converged``) re-attacks, for batch statistics, the very batch the evaluation attacked
    sanity_examples: int = 128
    #: validation images of the clean-vs-robust curve over training (seed 0 of each norm)
    curve_examples: int = 100
    device: str = "cpu"
    #: processes that train and attack models in parallel (minirn.experiments.workers); 2 on a CPU
    workers: int = dataclasses.field(default_factory=lambda: default_workers())
    out: str = "results"
    #: the clean test accuracy a trained model is expected to reach (None: no expectation); a model below it is
    #: flagged in results.json ("not_converged") and the report, and kept in the means with that flag
    expected_clean_accuracy: float | None = None
    #: the name of the preset (:data:`PRESETS`) this run started from, or None
    preset: str | None = None
    quick: bool = False
    full: bool = False
    resume: bool = False
    download: bool = False
    data_root: str | None = None
    progress: bool = dataclasses.field(default_factory=lambda: sys.stderr.isatty())

    def recipe(self, norm="bn"):
        """``(Recipe, source)``: ``norm``'s tuned recipe with this run's overrides, and where it came from."""
        recipe, source = tuned_recipe(norm, self.dataset, self.model, self.p,
                                      input_normalization=self.input_normalization_values())
        overrides = {name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) is not None}
        if overrides:
            recipe = dataclasses.replace(recipe, **overrides)
            source += "; overridden: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
        return recipe, source

    def headline_eps(self) -> float:
        """``headline``, else the middle budget of the suite's: where the sanity checks and the training curve look."""
        if self.headline is not None:
            return self.headline
        budgets = sorted(self.suite_budgets())
        return budgets[len(budgets) // 2]

    def suite_for(self, batch_dependent: bool) -> str:
        """The suite's name for a model whose outputs depend on the batch (or not)."""
        return self.batch_suite if batch_dependent and self.batch_suite is not None else self.suite

    def suite_budgets(self, batch_dependent: bool = False) -> list:
        """The budgets the suite attacks a model whose outputs depend on the batch (or not) at."""
        if batch_dependent and self.batch_suite_eps is not None:
            return list(self.batch_suite_eps)
        return list(self.eps) if self.suite_eps is None else list(self.suite_eps)

    def input_normalization_values(self) -> dict | None:
        """``{"mean": [...], "std": [...]}`` of the first layer (``input_normalization`` resolved), or None."""
        if self.input_normalization == "authors":
            return authors_input_normalization(self.dataset)
        return self.input_normalization

    def model_settings(self) -> dict:
        """What a checkpoint's metadata must add so that :func:`minirn.serialization.load_model` rebuilds the network."""
        values = self.input_normalization_values()
        return {} if values is None else {"input_normalization": values}

    def build_model(self, norm, in_channels: int, num_classes: int):
        """The run's network (``model``, RobustNorm's ``p``, ``input_normalization``) with norm ``norm``, on ``device``."""
        return models.build(self.model, norm, self.p, in_channels=in_channels, num_classes=num_classes,
                            device=self.device, input_normalization=self.input_normalization_values())

    def validate(self):
        """Raise ValueError with one clear line for any bad setting."""
        models.resnet_depth(self.model)  # an unknown model or a ResNet depth that is not 6n+2
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown --preset {self.preset!r}; expected one of {', '.join(PRESETS)}")
        self.input_normalization_values()  # "authors" on a dataset they never trained on: one clear line
        for norm in self.norms:
            if norm not in models.NORMS:
                raise ValueError(f"unknown norm {norm!r}; expected a comma-separated subset of {', '.join(models.NORMS)}")
        for attack in self.attacks:
            if attack not in ATTACKS:
                raise ValueError(f"unknown attack {attack!r}; expected a subset of {', '.join(ATTACKS)}")
        for option, suite in (("--suite", self.suite), ("--batch-suite", self.batch_suite)):
            if suite is not None and suite not in SUITES:
                raise ValueError(f"unknown {option} {suite!r}; expected one of {', '.join(SUITES)}")
        for name in self.eval_variants:
            nn.eval_statistics(name)  # names the valid choices if unknown
        for name in ("epochs", "batch_size", "seeds", "pgd_steps", "eval_examples", "eval_batch_size", "validation",
                     "sanity_examples", "curve_examples"):
            value = getattr(self, name)
            if value is None and name in RECIPE_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.eps or any(not e > 0 for e in self.eps):
            raise ValueError(f"--eps must be positive numbers, got {list(self.eps)}")
        check_budget(self.eps)
        missing = [e for e in self.suite_budgets() if e not in self.eps]
        if missing or not self.suite_budgets():
            raise ValueError(f"--suite-eps must be a non-empty subset of --eps {list(self.eps)}, got {self.suite_eps}")
        if self.headline_eps() not in self.suite_budgets():
            raise ValueError(f"the headline budget {self.headline_eps():g} must be one of the suite's, "
                             f"{self.suite_budgets()} (set --suite-eps to include it)")
        batch = self.suite_budgets(batch_dependent=True)
        if any(e not in self.eps for e in batch) or self.headline_eps() not in batch:
            raise ValueError(f"--batch-suite-eps must be a subset of --eps {list(self.eps)} that holds the headline "
                             f"budget {self.headline_eps():g}, got {self.batch_suite_eps}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.init is not None and self.init not in models.INITS:
            raise ValueError(f"unknown --init {self.init!r}; expected one of {', '.join(models.INITS)}")
        if "rn" in self.norms:
            nn.RobustNorm2d(1, p=self.p)  # the layer checks its own p: now, not after the other norms have trained
        backend.check_device(self.device)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"--workers must be a positive integer, got {self.workers!r}")
        if self.workers > 1 and self.device != "cpu":
            raise ValueError(f"--workers {self.workers}: worker processes are for the CPU; use --workers 1 on {self.device}")
        return self


def check_budget(eps_list, low=0.0, high=1.0):
    """Refuse L∞ budgets that cover the whole input range: 8 on [0, 1] images is almost surely 8/255."""
    for eps in eps_list:
        if eps >= high - low:
            raise ValueError(f"--eps {eps:g} covers the whole input range [{low:g}, {high:g}] of the images, so "
                             f"every image can be reached{budget_hint(eps)}; budgets are in pixel units of [0, 1]")


#: Named settings of ``reproduce --preset`` and ``tune --preset``.  ``authors-mnist``: the authors' MNIST
#: network (``train_mnist.py`` of awaisrauf/RobustNorm): ResNet-8 (16/32/64 channels, one basic block per
#: stage) on inputs standardised with their (0.1307, 0.3081), trained with its own recipes
#: (``recipes-resnet8.json``, from ``tune --preset authors-mnist``), on the embedded mnist-5k; each model is
#: expected to reach 95% clean test accuracy (a ResNet-8 on these digits does) and is flagged where it does not.
PRESETS = {
    "authors-mnist": dict(model="resnet8", input_normalization="authors", dataset="mnist-5k",
                          out="results-authors-mnist", expected_clean_accuracy=0.95),
}


def preset_config(name, **overrides) -> ReproduceConfig:
    """The preset ``name`` (:data:`PRESETS`) with ``overrides`` on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown --preset {name!r}; expected one of {', '.join(PRESETS)}")
    return ReproduceConfig(**{**PRESETS[name], "preset": name, **overrides})


def quick_config(**overrides) -> ReproduceConfig:
    """A tiny run for smoke tests (``--quick``): sklearn's 8x8 digits, 2 epochs, 2 seeds, few examples."""
    base = dict(dataset="digits", epochs=2, batch_size=32, lr=0.2, seeds=2, eps=(0.1, 0.3), suite_eps=None,
                batch_suite_eps=None, headline=None, pgd_steps=3, eval_examples=96,
                eval_batch_size=48, sanity_examples=48, suite="smoke", batch_suite=None, sanity_square_queries=20, validation=100,
                curve_examples=48, out="results-quick", quick=True)
    base.update(overrides)
    return ReproduceConfig(**base)


def full_config(**overrides) -> ReproduceConfig:
    """The whole protocol (``--full``): :data:`FULL` on top of the defaults."""
    return ReproduceConfig(**{**FULL, "full": True, **overrides})


def attack_settings(config: ReproduceConfig) -> dict:
    """``{attack: overrides}`` for :func:`minirn.attacks.evaluate`: iterative attacks take
    ``pgd_steps`` steps of α = 2.5 ε / steps (Madry et al.'s rule), PGD with a random start."""
    steps = config.pgd_steps
    iterative = {"steps": steps, "alpha_factor": madry_step_size(1.0, steps)}   # α = alpha_factor·ε
    settings = {"pgd": {**iterative, "random_start": True}, "bim": iterative, "mim": iterative}
    names = [n for name in config.attacks for n in (SUITE_NAMES if name == "suite" else (name,))]
    return {name: settings.get(name) for name in names}
