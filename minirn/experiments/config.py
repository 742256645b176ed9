"""The settings of ``minirn reproduce``, ``minirn train`` and ``minirn attack``, in one place.

:class:`ReproduceConfig` holds every setting of a reproduction run; its defaults
are the command line's, its training defaults are :class:`minirn.train.Recipe`'s.
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
from minirn.train import Recipe

ATTACKS = ("fgsm", "pgd", "bim", "mim", "cw", "apgd-ce", "apgd-dlr", "apgd-t", "square", "suite")


@dataclasses.dataclass
class ReproduceConfig:
    """Everything that defines a reproduction run (all of it is written to results.json)."""

    dataset: str = "mnist-5k"
    model: str = "small-cnn"
    norms: tuple = ("none", "bn", "rn")
    p: float = 0.2
    epochs: int = Recipe.epochs
    batch_size: int = Recipe.batch_size
    lr: float = Recipe.lr
    momentum: float = Recipe.momentum
    weight_decay: float = Recipe.weight_decay
    seeds: int = 3
    attacks: tuple = ("fgsm", "pgd")
    eps: tuple = (0.02, 0.05, 0.1)
    pgd_steps: int = 10
    #: the attack ensemble whose per-example worst case is the "suite" column (minirn.attacks.SUITES);
    #: "fast" by default (to fit the CPU budget), "standard" (AutoAttack's budgets) with --full-suite
    suite: str = "fast"
    #: the eval-statistics variants of the batch norms (names of minirn.nn.EVAL_STATISTICS)
    eval_variants: tuple = ("running", "batch")
    #: the Square attack's query budget in the sanity check ``gradient_free_not_stronger``
    sanity_square_queries: int = 500
    eval_examples: int = 250
    eval_batch_size: int = 128
    sanity_examples: int = 100
    device: str = "cpu"
    out: str = "results"
    quick: bool = False
    resume: bool = False
    download: bool = False
    data_root: str | None = None
    progress: bool = dataclasses.field(default_factory=lambda: sys.stderr.isatty())

    def recipe(self) -> Recipe:
        """The training recipe of this run."""
        return Recipe(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                      weight_decay=self.weight_decay)

    def build_model(self, norm, in_channels: int, num_classes: int):
        """The run's network (``model``, RobustNorm's ``p``) with norm ``norm``, on ``device``."""
        return models.build(self.model, norm, self.p, in_channels=in_channels, num_classes=num_classes,
                            device=self.device)

    def validate(self):
        """Raise ValueError with one clear line for any bad setting."""
        models.resnet_depth(self.model)  # an unknown model or a ResNet depth that is not 6n+2
        for norm in self.norms:
            if norm not in models.NORMS:
                raise ValueError(f"unknown norm {norm!r}; expected a comma-separated subset of {', '.join(models.NORMS)}")
        for attack in self.attacks:
            if attack not in ATTACKS:
                raise ValueError(f"unknown attack {attack!r}; expected a subset of {', '.join(ATTACKS)}")
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; expected one of {', '.join(SUITES)}")
        for name in self.eval_variants:
            nn.eval_statistics(name)  # names the valid choices if unknown
        for name in ("epochs", "batch_size", "seeds", "pgd_steps", "eval_examples", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.eps or any(not e > 0 for e in self.eps):
            raise ValueError(f"--eps must be positive numbers, got {list(self.eps)}")
        check_budget(self.eps)
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if "rn" in self.norms:
            nn.RobustNorm2d(1, p=self.p)  # the layer checks its own p: now, not after the other norms have trained
        backend.check_device(self.device)
        return self


def check_budget(eps_list, low=0.0, high=1.0):
    """Refuse L∞ budgets that cover the whole input range: 8 on [0, 1] images is almost surely 8/255."""
    for eps in eps_list:
        if eps >= high - low:
            raise ValueError(f"--eps {eps:g} covers the whole input range [{low:g}, {high:g}] of the images, so "
                             f"every image can be reached{budget_hint(eps)}; budgets are in pixel units of [0, 1]")


def quick_config(**overrides) -> ReproduceConfig:
    """A tiny run for smoke tests (``--quick``): sklearn's 8x8 digits, 2 epochs, 2 seeds, few examples."""
    base = dict(dataset="digits", epochs=2, seeds=2, eps=(0.1, 0.3), pgd_steps=3, eval_examples=96,
                eval_batch_size=48, sanity_examples=48, suite="smoke", sanity_square_queries=20, quick=True)
    base.update(overrides)
    return ReproduceConfig(**base)


def attack_settings(config: ReproduceConfig) -> dict:
    """``{attack: overrides}`` for :func:`minirn.attacks.evaluate`: iterative attacks take
    ``pgd_steps`` steps of α = 2.5 ε / steps (Madry et al.'s rule), PGD with a random start."""
    steps = config.pgd_steps
    iterative = {"steps": steps, "alpha_factor": madry_step_size(1.0, steps)}   # α = alpha_factor·ε
    settings = {"pgd": {**iterative, "random_start": True}, "bim": iterative, "mim": iterative}
    names = [n for name in config.attacks for n in (SUITE_NAMES if name == "suite" else (name,))]
    return {name: settings.get(name) for name in names}
