"""The reproduction's figures, drawn with matplotlib's object API (no display needed).

Each function returns a ``matplotlib.figure.Figure`` and saves it when given a path.
Every figure is meant to be read on its own: its title says what was measured on how
many seeds and images, and legends sit outside the axes, where they cover no data.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

#: One colour per norm (variants of one norm share it), one marker and line style per eval statistics.
NORM_COLORS = {"none": "tab:gray", "bn": "tab:blue", "rn": "tab:red", "gn": "tab:green", "ln": "tab:purple"}
EVAL_STYLES = {
    "running": ("o", "-"),
    "batch": ("s", "--"),
    "running mean, batch scale": ("^", ":"),
    "-": ("D", "-"),
}
_FALLBACK_COLORS = ("tab:orange", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _finish(fig, path):
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _norm_color(norm, index):
    return NORM_COLORS.get(norm, _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)])


def _variant_style(label, index):
    """(colour, marker, line style) for a summary row label such as ``"bn / batch"``."""
    norm, _, eval_stats = label.partition(" / ")
    color = _norm_color(norm, index)
    marker, linestyle = EVAL_STYLES.get(eval_stats, ("v", "-."))
    return color, marker, linestyle


def _count_phrase(seeds, examples):
    """"3 seeds, 250 test images per seed" (parts left out when unknown)."""
    parts = []
    if seeds is not None:
        parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    if examples is not None:
        parts.append(f"{examples} test images per seed")
    return ", ".join(parts)


def accuracy_vs_eps(summary, attacks, eps_list, path=None, *, seeds=None, examples=None, title=None) -> Figure:
    """One panel per attack: accuracy against ε, one line per model variant (norm / eval statistics).

    summary: rows of :func:`minirn.experiments.report.summarize` (``row[col] = [mean, std]`` over seeds);
    attacks: the column prefixes to plot (``"suite"`` for the suite's per-example worst case); eps_list: the budgets.
    seeds: number of seeds (default: the largest ``row["seeds"]``); examples: attacked test images per seed;
    title: what was run (e.g. ``"mnist-5k, small-cnn"``), put before the counts in the figure's title.

    Points are the mean over seeds and error bars ±1 sample standard deviation (ddof = 1), at the budgets
    attacked and nowhere else: no line joins them, since nothing was measured between two budgets, and the
    budgets sit at equal spacing (a categorical axis, labelled with ε), so that 0.005-0.03, where the networks
    part, is as wide as 0.03-0.1.  The variants are shifted slightly sideways and drawn with different markers
    so that none hides another.  Each row has a point at ε = 0 (the clean accuracy) and at every ε of
    ``eps_list`` that it has a column for (the suite usually runs at fewer budgets than FGSM and PGD, and at
    fewer for the 'batch' rows); a row with no column for an attack is left off that panel.
    One legend for all panels sits below them.
    """
    if seeds is None:
        seeds = max((row.get("seeds", 1) for row in summary), default=None)
    width = max(5.5, 4.6 * len(attacks) + 0.4)
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(attacks), squeeze=False, sharey=True)[0])
    eps_axis = [0.0, *eps_list]
    position = {e: i for i, e in enumerate(eps_axis)}                  # budget -> its slot on the axis
    offsets = np.linspace(-0.3, 0.3, len(summary)) if len(summary) > 1 else np.zeros(1)
    for ax, attack in zip(axes, attacks):
        attacked_at = set()
        for index, row in enumerate(summary):
            # the budgets this row was attacked at (the suite may run at fewer ε than FGSM and PGD)
            present = [(e, f"{attack}@{e:g}") for e in eps_list if f"{attack}@{e:g}" in row]
            if not present or "clean" not in row:
                continue
            attacked_at.update(e for e, _ in present)
            x = np.array([position[0.0]] + [position[e] for e, _ in present], dtype=float)
            cols = ["clean"] + [c for _, c in present]
            mean = 100 * np.array([row[c][0] for c in cols])
            std = 100 * np.array([row[c][1] for c in cols])
            color, marker, _ = _variant_style(row["variant"], index)
            ax.errorbar(x + offsets[index], mean, yerr=std, color=color, marker=marker, linestyle="none",
                        markersize=5, capsize=3, linewidth=1.4, alpha=0.9, label=row["variant"])
        name = "suite: per-example worst case" if attack == "suite" else f"{attack.upper()}"
        if attacked_at and len(attacked_at) < len(eps_list):
            name += f"\n(attacked at ε = {', '.join(f'{e:g}' for e in sorted(attacked_at))} only)"
        ax.set_title(name)
        ax.set_xlabel("ε (L∞, images in [0, 1]; budgets equally spaced)")
        ax.set_xticks(range(len(eps_axis)), [f"{e:g}" for e in eps_axis])
        ax.set_xlim(-0.6, len(eps_axis) - 0.4)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    legend = {}  # every variant once, even one drawn on some panels only
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, min(len(labels), int(width / 2.4))),
               title="norm / eval statistics (mean ± 1 std over seeds)", fontsize=9, title_fontsize=9)
    counts = _count_phrase(seeds, examples)
    spread = "one seed: no spread" if seeds == 1 else "error bars: ±1 sample std over seeds"
    heading = "Accuracy under attack" + (f": {title}" if title else "")
    fig.suptitle(f"{heading}\n{counts}{'; ' if counts else ''}{spread}" if counts or seeds else heading)
    return _finish(fig, path)


def training_curves(runs, path=None, *, title=None) -> Figure:
    """Training loss and clean accuracy per epoch for each norm (mean over seeds, the band: min to max over seeds).

    runs: records with ``"norm"`` and ``"history"`` (a list of ``{"epoch", "train_loss"[, "test_acc", "val_acc"]}``);
    title: what was run, put before the seed count in the figure's title.
    """
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    by_norm = {}
    for run in runs:
        by_norm.setdefault(run["norm"], []).append(run["history"])
    first = runs[0]["history"][0] if runs else {}
    # solid (with the band over seeds): test accuracy if it was recorded per epoch, else validation accuracy
    curves = [(key, style) for key, style in (("test_acc", "-"), ("val_acc", ":")) if key in first]
    if len(curves) == 1:
        curves = [(curves[0][0], "-")]
    names = {"test_acc": "test", "val_acc": "validation"}
    for index, (norm, histories) in enumerate(by_norm.items()):
        color = _norm_color(norm, index)
        epochs = [h["epoch"] for h in histories[0]]
        loss = np.array([[h["train_loss"] for h in hist] for hist in histories])
        loss_ax.plot(epochs, loss.mean(axis=0), marker="o", color=color, label=norm)
        loss_ax.fill_between(epochs, loss.min(axis=0), loss.max(axis=0), color=color, alpha=0.15)
        for key, style in curves:
            acc = 100 * np.array([[h[key] for h in hist] for hist in histories])
            acc_ax.plot(epochs, acc.mean(axis=0), marker="o" if style == "-" else None, linestyle=style, color=color)
            if style == "-":
                acc_ax.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=color, alpha=0.15)
    loss_ax.set_title("training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_yscale("log")
    acc_ax.set_title("clean accuracy: " + ", ".join(
        names[key] + (f" ({'solid' if style == '-' else 'dotted'})" if len(curves) > 1 else "") for key, style in curves))
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="norm")
    seeds = max((len(h) for h in by_norm.values()), default=0)
    fig.suptitle(("Training" + (f": {title}" if title else ""))
                 + f" (mean over {seeds} seed{'s' if seeds != 1 else ''}"
                 + ("; band: min to max)" if seeds > 1 else ")"))
    return _finish(fig, path)


def _seed_phrase(runs):
    seeds = sorted({run.get("seed", 0) for run in runs})
    return f"seed{'s' if len(seeds) != 1 else ''} " + ", ".join(str(s) for s in seeds)


def _annotated_epochs(count, most=5):
    """Indices of the epochs to write beside their points: the first, the last and a few evenly between."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, most))})


def clean_vs_robust(runs, path=None, *, title=None, examples=None) -> Figure:
    """Robustness at matched clean accuracy: robust against clean validation accuracy over the epochs, per norm.

    runs: records (seed 0, one per norm) with ``"norm"``, ``"seed"`` and ``"history"``, a list (one per epoch)
    of ``{"epoch", "curve_clean_acc", "curve_robust_acc", "curve_eps"}``: accuracy in [0, 1] on validation
    images, clean and under PGD with the margin loss at ε ``curve_eps``, with running statistics.
    title: what was run, put before the protocol in the figure's title; examples: validation images attacked.

    Left: one line per norm through its epochs in training order (robust y against clean x), the last epoch
    a large star, a few epochs numbered; read it vertically: at one clean accuracy, the higher line is
    the more robust norm. Right: both accuracies against the epoch (clean solid, robust dashed).
    """
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    curve_ax, epoch_ax = fig.subplots(1, 2)
    eps_values = set()
    norms_seen = [run["norm"] for run in runs]
    for index, run in enumerate(runs):
        history = [h for h in run["history"] if "curve_robust_acc" in h]
        if not history:
            continue
        color = _norm_color(run["norm"], index)
        label = run["norm"] if norms_seen.count(run["norm"]) == 1 else f"{run['norm']} seed {run.get('seed', 0)}"
        epochs = np.array([h["epoch"] for h in history])
        clean = 100 * np.array([h["curve_clean_acc"] for h in history])
        robust = 100 * np.array([h["curve_robust_acc"] for h in history])
        eps_values.update(h["curve_eps"] for h in history)
        curve_ax.plot(clean, robust, marker="o", markersize=4, color=color, linewidth=1.5, label=label)
        curve_ax.plot(clean[-1], robust[-1], marker="*", markersize=15, color=color, markeredgecolor="black",
                      linestyle="none")
        for i in _annotated_epochs(len(epochs)):
            curve_ax.annotate(f"{epochs[i]}", (clean[i], robust[i]), textcoords="offset points", xytext=(4, 5),
                              fontsize=8, color=color, bbox={"facecolor": "white", "edgecolor": "none",
                                                             "alpha": 0.7, "pad": 0.5})
        epoch_ax.plot(epochs, clean, marker="o", markersize=4, color=color, linestyle="-")
        epoch_ax.plot(epochs, robust, marker="s", markersize=4, color=color, linestyle="--")
    eps = ", ".join(f"{e:g}" for e in sorted(eps_values)) or "?"
    curve_ax.set_title("robust vs clean accuracy, one point per epoch\n(numbers: epoch; star: last epoch)",
                       fontsize=10)
    curve_ax.set_xlabel("clean validation accuracy (%)")
    curve_ax.set_ylabel(f"robust validation accuracy (%)\nPGD-margin ε={eps}")
    curve_ax.margins(0.08)
    epoch_ax.set_title("both accuracies per epoch", fontsize=10)
    epoch_ax.set_xlabel("epoch")
    epoch_ax.set_ylabel("validation accuracy (%)")
    if len(epoch_ax.lines):
        epoch_ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (curve_ax, epoch_ax):
        ax.grid(alpha=0.3)
    norm_handles, norm_labels = curve_ax.get_legend_handles_labels()
    style_handles = [
        Line2D([], [], color="black", linestyle="-", marker="o", markersize=4, label="clean (right panel)"),
        Line2D([], [], color="black", linestyle="--", marker="s", markersize=4, label=f"PGD-margin ε={eps} (right)"),
        Line2D([], [], color="gray", marker="*", markersize=12, markeredgecolor="black", linestyle="none",
               label="last epoch (left)"),
    ]
    handles = norm_handles + style_handles
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncol=min(len(handles), 6),
               title="norm (colour; eval: running statistics) and line style", fontsize=9, title_fontsize=9)
    images = f"{examples} validation images" if examples is not None else "validation images"
    heading = "Robustness at matched clean accuracy" + (f": {title}" if title else "")
    fig.suptitle(f"{heading}\n{_seed_phrase(runs)}, {images}, PGD-margin ε={eps}, running statistics")
    return _finish(fig, path)


def _layer_label(i, channels):
    """"norm 1\\n(16 ch)" for the i-th norm layer (0-based), without the count when it is unknown."""
    return f"norm {i + 1}" + (f"\n({channels} ch)" if channels is not None else "")


def _layer_labels(rows, channels):
    return [_layer_label(i, channels[i] if channels is not None else row.get("channels")) for i, row in enumerate(rows)]


def statistics_shift(rows, title="BatchNorm input statistics vs running estimates", path=None, *,
                     channels=None, per_seed=None) -> Figure:
    """Per norm layer: mean shift and scale ratio of clean vs adversarial inputs (the paper's observation, claim 2).

    rows: one seed's :func:`minirn.experiments.norm_stats.statistics_shift` (one dict per layer, forward order);
    channels: the layers' channel counts, in the same order, for the labels "norm 1 (32 ch)" (default: each row's
    ``"channels"`` entry, if any); per_seed: optionally the rows of every seed (a list of such lists): the bars
    are then the mean over seeds and each seed is a dot. The legend sits above the panels, outside them.
    """
    runs = per_seed if per_seed else [rows]
    rows = runs[0]
    fig = Figure(figsize=(max(8.0, 2.2 * len(rows) + 4), 4.8), layout="constrained")
    shift_ax, ratio_ax = fig.subplots(1, 2)
    layers = np.arange(len(rows))
    width = 0.38
    for offset, label, color in ((-width / 2, "clean", "tab:blue"), (width / 2, "adversarial", "tab:red")):
        for ax, key in ((shift_ax, f"{label}_mean_shift"), (ratio_ax, f"{label}_scale_ratio")):
            values = np.array([[r[key] for r in run] for run in runs])
            ax.bar(layers + offset, values.mean(axis=0), width, label=label, color=color, alpha=0.85)
            if len(runs) > 1:
                for seed_values in values:
                    ax.plot(layers + offset, seed_values, "o", color="black", markersize=3,
                            label="one seed" if label == "clean" else None)
    ratio_ax.axhline(1.0, color="black", lw=1, ls="--", label="running estimate (ratio 1)")
    kind = rows[0]["kind"] if rows else "var"
    shift_ax.set_title("|batch mean − running mean| / running std")
    ratio_ax.set_title(f"batch {kind} / running {kind}")
    labels = _layer_labels(rows, channels)
    for ax in (shift_ax, ratio_ax):
        ax.set_xticks(layers, labels)
        ax.set_xlabel("norm layer, input to output")
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylabel("mean over channels")
    handles, names = ratio_ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))  # the per-seed dots appear once
    order = [n for n in ("clean", "adversarial", "one seed") if n in unique] + [n for n in unique if n not in
                                                                                 ("clean", "adversarial", "one seed")]
    unique = {n: unique[n] for n in order}
    fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncol=len(unique))
    seeds = f" (bars: mean over {len(runs)} seeds; dots: each seed)" if len(runs) > 1 else ""
    fig.suptitle(title + seeds)
    return _finish(fig, path)


#: The statistics :func:`statistics_shift_control` draws: (key, panel title, y label).
CONTROL_PANELS = (
    ("mean_shift", "mean shift  |μ′ − μ| / σ",
     "shift of the batch mean\n(clean-batch stds, mean over channels)"),
    ("std_change", "std change  |σ′ / σ − 1|",
     "change of the batch std\n(clean-batch stds, mean over channels)"),
)


def statistics_shift_control(runs, path=None, *, title=None, attack="PGD-margin", examples=None) -> Figure:
    """Finding 1 with its control: how an attack moves each norm layer's batch statistics, beside random noise.

    runs: records with ``"norm"``, ``"seed"`` and ``"statistics_shift"``, the output of
    :func:`minirn.experiments.norm_stats.statistics_shift_with_control` (one record per norm and seed);
    title: what was run; attack: the attack's name for the labels; examples: images in the batch.

    One panel per statistic (``mean_shift``, ``std_change``), both in units of the clean batch's standard
    deviation σ for every norm, so BatchNorm and RobustNorm bars can be compared. For each layer
    ("norm 1" is the first norm layer, input to output) and norm, two bars: the attack (solid) and random
    ±ε noise of the same L∞ norm (hatched, lighter). Bars are the mean over seeds, dots each seed.
    """
    by_norm = {}
    for run in runs:
        by_norm.setdefault(run["norm"], []).append(run["statistics_shift"])
    layer_count = max((len(s["layers"]) for shifts in by_norm.values() for s in shifts), default=0)
    groups = [(norm, source) for norm in by_norm for source in ("attack", "noise")]
    width = 0.8 / max(len(groups), 1)
    layers = np.arange(layer_count)
    fig = Figure(figsize=(max(10.0, 0.8 * layer_count * len(groups) + 3), 5.2), layout="constrained")
    axes = fig.subplots(1, len(CONTROL_PANELS))
    for ax, (key, panel_title, ylabel) in zip(axes, CONTROL_PANELS):
        for g, (norm, source) in enumerate(groups):
            shifts = by_norm[norm]
            n = min(len(s["layers"]) for s in shifts)
            values = np.array([[layer[source][key] for layer in s["layers"][:n]] for s in shifts])  # (seeds, layers)
            x = layers[:n] + (g - (len(groups) - 1) / 2) * width
            color = _norm_color(norm, list(by_norm).index(norm))
            attacked = source == "attack"
            ax.bar(x, values.mean(axis=0), width, color=color, alpha=0.9 if attacked else 0.35,
                   hatch=None if attacked else "//", edgecolor=color if attacked else "black", linewidth=0.6,
                   label=f"{norm}: {attack}" if attacked else f"{norm}: random ±ε noise")
            if len(shifts) > 1:
                for seed_values in values:
                    ax.plot(x, seed_values, "o", color="black", markersize=3, label="one seed")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xticks(layers, _control_layer_labels(by_norm, layer_count))
        ax.set_xlabel("norm layer, input to output")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    legend = {}
    for handle, label in zip(*axes[0].get_legend_handles_labels()):
        legend.setdefault(label, handle)  # the per-seed dots appear once
    if "one seed" in legend:
        legend["one seed"] = legend.pop("one seed")
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncol=min(len(legend), 5), fontsize=9,
               title="μ, σ: the clean batch's per-channel mean and std; μ′, σ′: the attacked or noisy batch's",
               title_fontsize=9)
    eps = sorted({s["eps"] for shifts in by_norm.values() for s in shifts})
    seeds = max((len(shifts) for shifts in by_norm.values()), default=0)
    count = f"{seeds} seed{'s' if seeds != 1 else ''}"
    images = f", a batch of {examples} test images" if examples is not None else ""
    spread = "bars: mean over seeds, dots: each seed" if seeds > 1 else "one seed"
    heading = "Norm-layer input statistics, attacked vs noisy batch" + (f": {title}" if title else "")
    budget = ", ".join(f"{e:g}" for e in eps)
    fig.suptitle(f"{heading}\n{attack} vs random ±ε noise of the same L∞ norm, ε={budget}; "
                 f"change from the clean batch, eval mode\n{count}{images}; {spread}")
    return _finish(fig, path)


def _control_layer_labels(by_norm, layer_count):
    """"norm 1\\n(16 ch)": the channel count from the first record of a norm that has the layer."""
    labels = []
    for i in range(layer_count):
        channels = next((len(s["layers"][i]["attack"]["per_channel"]["mean_shift"])
                         for shifts in by_norm.values() for s in shifts
                         if i < len(s["layers"]) and "per_channel" in s["layers"][i]["attack"]), None)
        labels.append(_layer_label(i, channels))
    return labels


def _image(ax, image):
    image = np.transpose(image, (1, 2, 0))
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


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
            _image(ax, images[i])
            color = "green" if predictions[i] == labels[i] else "red"
            ax.set_title(f"{name}: {predictions[i]}", color=color, fontsize=9)
    fig.suptitle(title or "clean (top) and adversarial (bottom) images with predicted class (red: wrong)")
    return _finish(fig, path)


def examples_by_norm(panels, attack="PGD", eps=None, title=None, path=None) -> Figure:
    """Clean vs adversarial images for each norm: one pair of rows (clean, adversarial) per model.

    panels: a list of dicts, one per model, with ``"name"`` (e.g. ``"bn / running"``), ``"clean"`` and
    ``"adversarial"`` ((K, C, H, W) host arrays in [0, 1], each model attacked on its own), ``"labels"``,
    ``"clean_predictions"`` and ``"adversarial_predictions"`` ((K,)). attack, eps: named in the row labels;
    title: what was run, put before the standard explanation in the figure's title.
    """
    k = max(len(panel["clean"]) for panel in panels)
    fig = Figure(figsize=(1.25 * k + 1.4, 2.9 * len(panels) + 0.7), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(panels), 1))
    budget = f"{attack} ε={eps:g}" if eps is not None else attack
    for subfig, panel in zip(subfigs, panels):
        axes = subfig.subplots(2, k, squeeze=False)
        labels = np.asarray(panel["labels"])
        rows = ((panel["clean"], panel["clean_predictions"], "clean"),
                (panel["adversarial"], panel["adversarial_predictions"], budget))
        counts = []
        for r, (images, predictions, name) in enumerate(rows):
            predictions = np.asarray(predictions)
            counts.append(f"{name} {int(np.sum(predictions == labels))}/{len(labels)} correct")
            for i in range(k):
                ax = axes[r][i]
                if i >= len(images):
                    ax.set_axis_off()
                    continue
                _image(ax, images[i])
                wrong = predictions[i] != labels[i]
                ax.set_title(f"pred. {predictions[i]}" + (f" (≠{labels[i]})" if wrong else ""),
                             color="red" if wrong else "green", fontsize=8)
            axes[r][0].set_ylabel(name, fontsize=9)
        subfig.suptitle(f"{panel['name']}: " + ", ".join(counts), fontsize=10, fontweight="bold")
    heading = title + ": " if title else ""
    fig.suptitle(f"{heading}clean (upper row) vs adversarial (lower row) per model; red: wrong prediction")
    return _finish(fig, path)
