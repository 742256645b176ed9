"""The paper-style table: one row per model/norm/eval statistics, mean ± std over seeds."""
from __future__ import annotations

import numpy as np

EVAL_LABELS = {
    ("running", "running"): "running",
    ("batch", "batch"): "batch",
    ("running", "batch"): "running mean, batch scale",
}


def variant_label(norm: str, eval_stats) -> str:
    """A row label such as ``"bn / batch"``; norms without running statistics get ``"-"``."""
    return f"{norm} / {EVAL_LABELS[tuple(eval_stats)] if eval_stats else '-'}"


def columns(attacks, eps_list) -> list:
    """Column keys: ``"clean"``, then ``"<attack>@<eps>"`` for each attack and ε, then the worst case per ε."""
    cols = ["clean"] + [f"{a}@{e:g}" for a in attacks for e in eps_list]
    if len(attacks) > 1:
        cols += [f"worst@{e:g}" for e in eps_list]
    return cols


def summarize(runs, attacks, eps_list, model_name) -> list:
    """Aggregate per-seed accuracies into rows ``{"model", "variant", "seeds", col: [mean, std]}``."""
    rows, order = {}, []
    for run in runs:
        for variant in run["variants"]:
            label = variant_label(run["norm"], variant["eval_stats"])
            if label not in rows:
                rows[label], order = {c: [] for c in columns(attacks, eps_list)}, [*order, label]
            for col in rows[label]:
                rows[label][col].append(variant["accuracy"][col])
    summary = []
    for label in order:
        row = {"model": model_name, "variant": label, "seeds": len(rows[label]["clean"])}
        for col, values in rows[label].items():
            row[col] = [float(np.mean(values)), float(np.std(values))]
        summary.append(row)
    return summary


def markdown_table(summary, attacks, eps_list, batch_size) -> str:
    """The summary as a Markdown table of accuracies in % (mean ± std over seeds)."""
    cols = columns(attacks, eps_list)
    header = "| model | norm / eval statistics | " + " | ".join(cols) + " |"
    lines = [header, "|" + "---|" * (len(cols) + 2)]
    for row in summary:
        cells = [f"{100 * row[c][0]:.1f} ± {100 * row[c][1]:.1f}" for c in cols]
        lines.append(f"| {row['model']} | {row['variant']} | " + " | ".join(cells) + " |")
    seeds = max((row["seeds"] for row in summary), default=0)
    lines.append("")
    lines.append(
        f"Accuracy (%) on the attacked test examples, mean ± std over {seeds} seed(s). "
        f"'batch' rows normalise with the statistics of the inference batch "
        f"(batch size {batch_size}; the whole batch is attacked jointly), so they depend on the batch size "
        f"and composition. 'worst' is the per-example worst case over the attacks."
    )
    return "\n".join(lines)
