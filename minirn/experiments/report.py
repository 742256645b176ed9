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


def columns(attacks, eps_list, table=False) -> list:
    """Column keys: ``"clean"``, ``"<attack>@<eps>"`` for each attack and ε, then per ε the worst case over
    the attacks (``worst``), over the attacks and the suite (``suite``) and its realisable form (``realisable``).

    ``table=True``: the columns of the Markdown table (``worst`` is dropped: ``suite`` includes it).
    """
    cols = ["clean"] + [f"{a}@{e:g}" for a in attacks for e in eps_list]
    if not table:
        cols += [f"worst@{e:g}" for e in eps_list]
    cols += [f"suite@{e:g}" for e in eps_list]
    if not table:
        cols += [f"realisable@{e:g}" for e in eps_list]
    return cols


def summarize(runs, attacks, eps_list, model_name) -> list:
    """Aggregate per-seed accuracies into rows ``{"model", "variant", "seeds", col: [mean, std]}``."""
    rows, order = {}, []
    for run in runs:
        for variant in run["variants"]:
            label = variant_label(run["norm"], variant["eval_stats"])
            if label not in rows:
                # only the columns this evaluation has (a run without the suite has no suite@ columns)
                present = [c for c in columns(attacks, eps_list) if c in variant["accuracy"]]
                rows[label], order = {c: [] for c in present}, [*order, label]
            for col in rows[label]:
                rows[label][col].append(variant["accuracy"][col])
    summary = []
    for label in order:
        row = {"model": model_name, "variant": label, "seeds": len(rows[label]["clean"])}
        for col, values in rows[label].items():
            row[col] = [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]
        summary.append(row)
    return summary


def markdown_table(summary, attacks, eps_list, batch_size, suite="") -> str:
    """The summary as Markdown tables of accuracies in % (mean ± sample std over seeds).

    The first table has one row per model/norm/eval statistics; the second, for the rows whose
    predictions use batch statistics, sets the per-example worst case beside the realisable one.
    """
    cols = [c for c in columns(attacks, eps_list, table=True) if all(c in row for row in summary)]
    if not any(c.startswith("suite@") for c in cols):  # no suite: show the attacks' own worst case instead
        cols += [c for c in (f"worst@{e:g}" for e in eps_list) if len(attacks) > 1 and all(c in row for row in summary)]
    header = "| model | norm / eval statistics | " + " | ".join(cols) + " |"
    lines = [header, "|" + "---|" * (len(cols) + 2)]
    for row in summary:
        cells = [f"{100 * row[c][0]:.1f} ± {100 * row[c][1]:.1f}" for c in cols]
        lines.append(f"| {row['model']} | {row['variant']} | " + " | ".join(cells) + " |")
    seeds = max((row["seeds"] for row in summary), default=0)
    lines.append("")
    lines.append(
        f"Accuracy (%) on the attacked test examples, mean ± sample std (ddof = 1) over {seeds} seed(s). "
        f"'batch' rows normalise with the statistics of the inference batch "
        f"(batch size {batch_size}; the whole batch is attacked jointly), so they depend on the batch size "
        f"and composition."
        + (f" 'suite' is the per-example worst case over the attacks of the suite ({suite})." if suite else "")
    )
    batch_rows = [row for row in summary if "batch" in row["variant"] and f"realisable@{eps_list[0]:g}" in row]
    if batch_rows:
        pairs = [c for e in eps_list for c in (f"suite@{e:g}", f"realisable@{e:g}")]
        lines += ["", "| model | norm / eval statistics | " + " | ".join(pairs) + " |", "|" + "---|" * (len(pairs) + 2)]
        for row in batch_rows:
            lines.append(f"| {row['model']} | {row['variant']} | "
                         + " | ".join(f"{100 * row[c][0]:.1f} ± {100 * row[c][1]:.1f}" for c in pairs) + " |")
        lines += ["", "With batch statistics the per-example worst case ('suite') combines examples from different "
                      "adversarial batches, which no single batch an attacker submits realises; 'realisable' is, per "
                      "batch, the worst batch actually submitted (the clean batch, one attack's, or the batch "
                      "assembled from each example's worst case). The first table uses the per-example figure."]
    return "\n".join(lines)
