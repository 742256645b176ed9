"""The reproduction's figures, drawn with matplotlib's object API (no display needed).

Each function returns a ``matplotlib.figure.Figure`` and saves it when given a path.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def accuracy_vs_eps(summary, attacks, eps_list, path=None) -> Figure:
    """One panel per attack: accuracy (mean ± std over seeds) against ε, one line per model variant."""
    fig = Figure(figsize=(5.5 * len(attacks), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(attacks), squeeze=False)[0])
    eps_axis = [0.0, *eps_list]
    for ax, attack in zip(axes, attacks):
        for row in summary:
            mean = [row["clean"][0]] + [row[f"{attack}@{e:g}"][0] for e in eps_list]
            std = [row["clean"][1]] + [row[f"{attack}@{e:g}"][1] for e in eps_list]
            ax.errorbar(eps_axis, 100 * np.array(mean), yerr=100 * np.array(std), marker="o", capsize=3, label=row["variant"])
        ax.set_title("suite (per-example worst case)" if attack == "suite" else f"{attack.upper()}: accuracy under attack")
        ax.set_xlabel("ε (L∞, images in [0, 1])")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[-1].legend(title="norm / eval statistics", fontsize=8)
    return _finish(fig, path)


def training_curves(runs, path=None) -> Figure:
    """Training loss and test accuracy per epoch for each norm (mean over seeds)."""
    fig = Figure(figsize=(11, 4.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    by_norm = {}
    for run in runs:
        by_norm.setdefault(run["norm"], []).append(run["history"])
    for norm, histories in by_norm.items():
        epochs = [h["epoch"] for h in histories[0]]
        loss = np.mean([[h["train_loss"] for h in hist] for hist in histories], axis=0)
        loss_ax.plot(epochs, loss, marker="o", label=norm)
        if "test_acc" in histories[0][0]:
            acc = np.mean([[h["test_acc"] for h in hist] for hist in histories], axis=0)
            acc_ax.plot(epochs, 100 * acc, marker="o", label=norm)
    loss_ax.set_title("training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_yscale("log")
    acc_ax.set_title("clean test accuracy")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(title="norm")
    return _finish(fig, path)


def statistics_shift(rows, title="BatchNorm input statistics vs running estimates", path=None) -> Figure:
    """Per norm layer: mean shift and scale ratio of clean vs adversarial inputs (finding 1)."""
    fig = Figure(figsize=(11, 4.2))
    shift_ax, ratio_ax = fig.subplots(1, 2)
    layers = np.arange(len(rows))
    width = 0.38
    for offset, label, color in ((-width / 2, "clean", "tab:blue"), (width / 2, "adversarial", "tab:red")):
        shift_ax.bar(layers + offset, [r[f"{label}_mean_shift"] for r in rows], width, label=label, color=color)
        ratio_ax.bar(layers + offset, [r[f"{label}_scale_ratio"] for r in rows], width, label=label, color=color)
    ratio_ax.axhline(1.0, color="black", lw=1, ls="--", label="running estimate")
    kind = rows[0]["kind"] if rows else "var"
    shift_ax.set_title("|batch mean − running mean| / running std")
    ratio_ax.set_title(f"batch {kind} / running {kind}")
    for ax in (shift_ax, ratio_ax):
        ax.set_xticks(layers, [r["layer"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("norm layer")
        ax.grid(alpha=0.3, axis="y")
        ax.legend()
    shift_ax.set_ylabel("mean over channels")
    ratio_ax.set_ylabel("mean over channels")
    fig.suptitle(title)
    return _finish(fig, path)


def example_grid(clean, adversarial, labels, clean_predictions, adversarial_predictions, title="", path=None) -> Figure:
    """Clean images (top row) and their adversarial versions (bottom row) with the predicted classes.

    clean, adversarial: (K, C, H, W) host arrays in [0, 1]; labels, predictions: (K,).
    """
    k = len(clean)
    fig = Figure(figsize=(1.6 * k, 3.8))
    axes = fig.subplots(2, k, squeeze=False)
    for i in range(k):
        for row, (images, predictions, name) in enumerate(
            ((clean, clean_predictions, "clean"), (adversarial, adversarial_predictions, "adv."))
        ):
            ax = axes[row][i]
            image = np.transpose(images[i], (1, 2, 0))
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            color = "green" if predictions[i] == labels[i] else "red"
            ax.set_title(f"{name}: {predictions[i]}", color=color, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or "clean (top) and adversarial (bottom) images with predicted class (red: wrong)")
    return _finish(fig, path)
