"""Training and evaluation loops: plain, readable, reproducible, resumable.

:func:`fit` is the whole training loop of the paper's experiments::

    for epoch:                       # shuffled batches, seeded by (seed, epoch)
        for x, y in batches:
            x = pgd(model, x, y)     # only with adversarial training (Madry et al.)
            loss = cross_entropy(model(x), y)
            zero_grad(); loss.backward(); optimizer.step()
        scheduler.step(); evaluate; save a checkpoint

:func:`train_model` runs the experiments' recipe around it, :class:`Recipe`:
``manual_seed(seed)`` → build the model → SGD → cosine schedule → :func:`fit`.

With a seed, a CPU run is bit-for-bit repeatable, and a run killed after
epoch k and resumed from its checkpoint ends with the same weights as one
that was never interrupted: the batch order depends only on (seed, epoch),
the checkpoint holds the model, the optimizer's momentum, the scheduler and
the history, and adversarial training draws its random starts from
(seed, epoch, batch).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from minirn import backend, models, optim, serialization
from minirn.attacks import adversarial_training_step_size, pgd
from minirn.autograd import grad_mode
from minirn.autograd.grad_mode import no_grad
from minirn.data import DataLoader
from minirn.nn import functional as F

ATTACK_MODES = ("eval", "train")


@dataclass
class AdversarialTraining:
    """PGD adversarial training (Madry et al. 2018): train on L∞ PGD examples instead of clean ones.

    eps: the L∞ budget ε; alpha: the step size (default ε/4, the authors' choice);
    steps: PGD iterations (10 in the authors' code); attack_mode: the mode the
    model is in while the attack is computed.  ``"eval"`` (minirn's default)
    attacks the model as it is evaluated, with running statistics; ``"train"``
    attacks it with batch statistics, as the authors' code does.

    update_running_stats: whether the attack's forward passes update the
    running mean/variance (range).  ``False`` (the default): they never do;
    only the training step's forward pass on the adversarial batch moves them,
    once per batch, so the running statistics estimate the statistics of the
    examples the network is trained on.  ``True`` (needs ``attack_mode="train"``)
    reproduces the authors' code, where the attack runs in PyTorch's train
    mode and so each of its ``steps`` forward passes also applies
    :math:`\\bar\\mu \\leftarrow (1 - m)\\,\\bar\\mu + m\\,\\mu_B` (likewise the variance or range), on the
    random start and the intermediate PGD iterates: per batch the statistics
    move ``steps + 1`` times instead of once, towards a mixture of iterates
    that are mostly not the batch the network is trained on.
    """

    eps: float
    alpha: float | None = None
    steps: int = 10
    attack_mode: str = "eval"
    random_start: bool = True
    update_running_stats: bool = False

    def __post_init__(self):
        if not self.eps > 0:
            raise ValueError(f"adversarial training needs eps > 0, got {self.eps}")
        if self.attack_mode not in ATTACK_MODES:
            raise ValueError(f"attack_mode must be 'eval' or 'train', got {self.attack_mode!r}")
        if self.update_running_stats and self.attack_mode != "train":
            raise ValueError("update_running_stats=True needs attack_mode='train' (eval mode never updates them)")
        if self.alpha is None:
            self.alpha = adversarial_training_step_size(self.eps)

    def perturb(self, model, x, y, seed):
        """Adversarial versions of the batch x (B, C, H, W) with labels y (B,)."""
        was_training = model.training
        model.train(self.attack_mode == "train")
        attacked = AdversarialTraining.UpdatingRunningStats(model) if self.update_running_stats else model
        try:
            return pgd(attacked, x, y, self.eps, self.alpha, self.steps, random_start=self.random_start, seed=seed)
        finally:
            model.train(was_training)

    class UpdatingRunningStats:
        """``model`` seen by an attack, except that its forward passes update the running statistics.

        Every attack freezes the running statistics around its forward passes
        (:func:`minirn.freeze_running_stats`); this wrapper lifts the freeze
        inside each call of the model, and hands the attack the model's
        ``parameters()`` and ``modules()`` so that the attack still restores
        their gradients and modes.
        """

        def __init__(self, model):
            self.model = model

        def __call__(self, x):
            with grad_mode._Switch("running_stats_frozen", False):  # the flag freeze_running_stats sets
                return self.model(x)

        def parameters(self):
            return self.model.parameters()

        def modules(self):
            return self.model.modules()


def predict(model, x, batch_size: int = 500) -> np.ndarray:
    """Predicted classes (host int64 array (N,)) for images x (N, C, H, W), in eval mode, without a graph."""
    was_training = model.training
    model.eval()
    predictions = []
    try:
        with no_grad():
            for start in range(0, len(x), batch_size):
                batch = backend.to_device(backend.to_host(x[start : start + batch_size]), model.device, "float32")
                logits = model(batch).data
                predictions.append(backend.to_host(backend.array_namespace(logits).argmax(logits, axis=1)))
    finally:
        model.train(was_training)
    return np.concatenate(predictions).astype(np.int64) if predictions else np.zeros(0, np.int64)


def accuracy(model, x, y, batch_size: int = 500) -> float:
    """Fraction of x (N, C, H, W) classified as y (N,), in eval mode."""
    if len(x) == 0:
        raise ValueError("accuracy: no examples")
    return float(np.mean(predict(model, x, batch_size) == backend.to_host(y)))


def fit(
    model,
    train_data,
    epochs: int,
    optimizer,
    scheduler=None,
    adversarial: AdversarialTraining | None = None,
    seed: int = 0,
    *,
    test_data=None,
    val_data=None,
    on_epoch_end=None,
    batch_size: int = 128,
    augment=None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_meta: dict | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "train",
) -> list:
    """Train ``model`` for ``epochs`` epochs; return the per-epoch history.

    train_data: a :class:`~minirn.data.DataLoader` or a pair ``(x, y)`` of arrays
        (then batched with ``batch_size``, shuffled with ``seed``, optionally augmented).
    optimizer: e.g. :class:`minirn.optim.SGD`; scheduler: stepped once per epoch.
    adversarial: :class:`AdversarialTraining` for PGD adversarial training.
    test_data: ``(x, y)`` for the per-epoch test accuracy (reported only: choose nothing by it).
    val_data: ``(x, y)`` held out from the training images, for the per-epoch validation accuracy.
    on_epoch_end: ``on_epoch_end(model, record)``, called after each epoch (before its checkpoint);
        it may add entries to that epoch's ``record`` (the model is put back in train mode next epoch).
    checkpoint: a ``.npz`` path written (atomically) after every epoch;
        with ``resume=True`` training continues from it if it exists.
    checkpoint_meta: what the checkpoint records about the model and its run
        (:func:`minirn.runs.model_meta`), so that :func:`minirn.load_model` can rebuild it; with
        ``resume=True`` a checkpoint that records anything else is refused, naming the difference.
    Returns a list of dicts: epoch, train_loss, train_acc, val_acc, test_acc, lr, seconds.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(train_data, DataLoader):
        loader = train_data
    else:
        x, y = train_data
        loader = DataLoader(x, y, batch_size, shuffle=True, seed=seed, augment=augment, device=model.device)
    history, start = [], 0
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        history, start = _restore(checkpoint, model, optimizer, scheduler, seed, epochs, checkpoint_meta)
    for epoch in range(start, epochs):
        history.append(_train_one_epoch(model, loader, optimizer, adversarial, seed, epoch, epochs, progress, description))
        if scheduler is not None:
            scheduler.step()
        if val_data is not None:
            history[-1]["val_acc"] = accuracy(model, *val_data)
        if test_data is not None:
            history[-1]["test_acc"] = accuracy(model, *test_data)
        if on_epoch_end is not None:
            on_epoch_end(model, history[-1])
        if checkpoint is not None:
            _save(checkpoint, model, optimizer, scheduler, history, seed, checkpoint_meta)
    return history


@dataclass(frozen=True)
class Recipe:
    """The training recipe of ``minirn train`` and ``minirn reproduce`` (its defaults are theirs).

    SGD with learning rate ``lr``, ``momentum`` and ``weight_decay``; the learning rate annealed to 0
    over ``epochs`` epochs with a cosine (:class:`~minirn.optim.CosineAnnealingLR`, stepped once per
    epoch); shuffled batches of ``batch_size``; convolutions initialised by ``init``.  Run it with
    :func:`train_model`.
    """

    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.1  # the authors'; ``minirn tune`` chooses per norm on validation data (minirn/experiments/recipes.json)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    init: str = "torch"  # or "he": He-normal fan-out convolutions, the authors' (minirn.models.he_init)

    def __post_init__(self):
        if self.init not in models.INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {', '.join(models.INITS)}")


def train_model(build, recipe: Recipe, train_data, seed: int = 0, adversarial: AdversarialTraining | None = None,
                **fit_options):
    """Train a new model with ``recipe``: seed, build, SGD and the cosine schedule, :func:`fit`.

    build: ``build() -> Module``, called right after ``minirn.manual_seed(seed)`` (then re-initialised
        if ``recipe.init == "he"``), so that the initial weights, like the batch order, depend on ``seed`` alone.
    train_data, adversarial: as for :func:`fit`; fit_options: its keyword options (test_data, augment,
        checkpoint, resume, progress, description); the batch size is the recipe's.
    Returns ``(model, history)``.
    """
    backend.manual_seed(seed)
    model = build()
    if recipe.init == "he":
        models.he_init(model)
    optimizer = optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=recipe.epochs)
    history = fit(model, train_data, recipe.epochs, optimizer, scheduler, adversarial, seed,
                  batch_size=recipe.batch_size, **fit_options)
    return model, history


def _train_one_epoch(model, loader, optimizer, adversarial, seed, epoch, epochs, progress, description):
    start = time.perf_counter()
    model.train()
    loader.set_epoch(epoch)
    # The epoch's loss sum and correct count stay on the device (float64 and int64, the sums a host loop of
    # float(loss) * len(y) would form, bit for bit): a step waits for the device only to show its loss in the
    # progress bar, so without one a GPU runs the epoch without a synchronisation.
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"{description} {epoch + 1}/{epochs}", leave=False, disable=not progress)
    for i, (x, y) in enumerate(bar):
        if adversarial is not None:
            x = adversarial.perturb(model, x, y, seed=[seed, epoch, i])
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        xp = backend.array_namespace(logits.data)
        total_loss = total_loss + xp.astype(loss.data, xp.float64) * y.shape[0]
        correct += xp.sum(xp.astype(xp.argmax(logits.data, axis=1) == y, xp.int64))
        seen += y.shape[0]  # not len(y): array-api-strict arrays have no len()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return {
        "epoch": epoch + 1,
        "train_loss": float(total_loss) / seen,
        "train_acc": int(correct) / seen,
        "lr": float(optimizer.param_groups[0]["lr"]),
        "seconds": time.perf_counter() - start,
    }


def _save(path, model, optimizer, scheduler, history, seed, meta):
    serialization.save(
        {
            "model": dict(model.state_dict()),
            "meta": meta,  # the model and its run (minirn.runs.model_meta): minirn.load_model reads it
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history,
            "epoch": len(history),
            "seed": seed,
        },
        path,
    )


def _restore(path, model, optimizer, scheduler, seed, epochs, meta):
    from minirn.runs import differences  # noqa: PLC0415  (only a resumed run compares records)

    state = serialization.load(path)
    # Checked before anything is loaded: resuming under another seed or configuration, or asking for fewer
    # epochs than the checkpoint already holds, would silently give a run that matches no uninterrupted one.
    if state.get("seed") != seed:
        raise serialization.CheckpointError(f"{path}: written by a run with seed {state.get('seed')!r}, not {seed!r}")
    if meta is not None:
        if not isinstance(state.get("meta"), dict):
            raise serialization.CheckpointError(f"{path}: records no configuration (an older minirn wrote it), so it "
                                                "cannot be resumed safely; delete it to train afresh")
        found = differences(state["meta"], meta)
        if found:
            raise serialization.CheckpointError(f"{path}: written by another configuration ({'; '.join(found)}), "
                                                "so it cannot be resumed")
    if isinstance(state.get("epoch"), int) and state["epoch"] > epochs:
        raise serialization.CheckpointError(f"{path}: already holds {state['epoch']} epochs, more than the {epochs} asked for")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        return list(state["history"]), int(state["epoch"])
    except (KeyError, ValueError, TypeError) as exc:
        raise serialization.CheckpointError(f"{path}: not a training checkpoint for this model ({exc})") from exc


