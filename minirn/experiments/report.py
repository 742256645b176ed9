"""The paper-style table: one row per model/norm/eval statistics, mean ± std over seeds."""
from __future__ import annotations

import numpy as np

from minirn.attacks import SUITES

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


#: Two-sided 95% Student-t quantiles t_{0.975, ν} for ν = 1..10 degrees of freedom (no SciPy needed).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t_975(dof: int) -> float:
    """t_{0.975, ν}: the table above, then the Cornish-Fisher expansion in 1/ν (error < 1e-3 for ν > 10)."""
    if dof in T_975:
        return T_975[dof]
    z = 1.959964
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2) \
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)


def interval_95(values) -> float:
    """Half-width of the 95% t-interval of the mean: :math:`t_{0.975,n-1}\\, s / \\sqrt{n}` (0 for one value)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(t_975(n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def summarize(runs, attacks, eps_list, model_name) -> list:
    """Aggregate per-seed accuracies into rows ``{"model", "variant", "seeds", col: [mean, std], ...}``.

    ``std`` is the sample standard deviation (ddof = 1).  Each row also has ``per_seed[col]`` (the
    values, in seed order), ``ci95[col]`` (half-width of the 95% t-interval) and ``excluded``: the
    seeds whose model did not learn (``run["learned"]["passed"] is False``), which are left out of
    the mean, the std and the interval, never averaged in silently.
    """
    rows, order = {}, []
    for run in runs:
        dead = run.get("learned", {}).get("passed") is False
        for variant in run["variants"]:
            label = variant_label(run["norm"], variant["eval_stats"])
            if label not in rows:
                # only the columns this evaluation has (a run without the suite has no suite@ columns)
                present = [c for c in columns(attacks, eps_list) if c in variant["accuracy"]]
                rows[label] = {"values": {c: [] for c in present}, "seeds": [], "excluded": []}
                order.append(label)
            if dead:
                rows[label]["excluded"].append(run["seed"])
                continue
            rows[label]["seeds"].append(run["seed"])
            for col in rows[label]["values"]:
                rows[label]["values"][col].append(variant["accuracy"][col])
    summary = []
    for label in order:
        values = rows[label]["values"]
        row = {"model": model_name, "variant": label, "seeds": len(rows[label]["seeds"]),
               "seed_ids": rows[label]["seeds"], "excluded": rows[label]["excluded"], "per_seed": {}, "ci95": {}}
        for col, vals in values.items():
            if vals:
                row[col] = [float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0]
            else:
                row[col] = None  # every seed excluded
            row["per_seed"][col] = [float(v) for v in vals]
            row["ci95"][col] = interval_95(vals)
        summary.append(row)
    return summary


def markdown_table(summary, attacks, eps_list, batch_size, suite="", suite_text=None) -> str:
    """The summary as Markdown tables of accuracies in % (mean ± sample std over seeds).

    suite: the suite's name and attacks, e.g. ``"fast: fgsm, pgd, apgd-ce, apgd-t, square"``; or
    suite_text: the whole phrase after "worst case over" (:func:`suite_description`).

    The first table has one row per model/norm/eval statistics; the second, for the rows whose
    predictions use batch statistics, sets the per-example worst case beside the realisable one.
    """
    # a column any row has (the suite attacks the 'batch' rows at fewer budgets: "–" marks a budget not attacked)
    cols = [c for c in columns(attacks, eps_list, table=True) if any(c in row for row in summary)]
    if not any(c.startswith("suite@") for c in cols):  # no suite: show the attacks' own worst case instead
        cols += [c for c in (f"worst@{e:g}" for e in eps_list) if len(attacks) > 1 and all(c in row for row in summary)]
    header = "| model | norm / eval statistics | " + " | ".join(cols) + " |"
    lines = [header, "|" + "---|" * (len(cols) + 2)]
    for row in summary:
        cells = [_cell(row[c]) if c in row else NOT_ATTACKED for c in cols]
        lines.append(f"| {row['model']} | {row['variant']} | " + " | ".join(cells) + " |")
    seeds = max((row["seeds"] for row in summary), default=0)
    excluded = [f"{row['variant']} seed(s) {', '.join(map(str, row['excluded']))}" for row in summary if row.get("excluded")]
    lines.append("")
    lines.append(
        f"Accuracy (%) on the attacked test examples, mean ± sample std (ddof = 1) over {seeds} seed(s). "
        f"'batch' rows normalise with the statistics of the inference batch "
        f"(batch size {batch_size}; the whole batch is attacked jointly), so they depend on the batch size "
        f"and composition."
        + (f" 'suite' is the per-example worst case over {suite_text}." if suite_text else
           f" 'suite' is the per-example worst case over the attacks of the suite ({suite})." if suite else "")
        + (f" **Left out because the model did not learn: {'; '.join(excluded)}.**" if excluded else "")
        + (f" {NOT_ATTACKED}: not attacked at that budget." if any(c not in row for row in summary for c in cols) else "")
    )
    batch_rows = [row for row in summary if "batch" in row["variant"]]
    suite_eps = [e for e in eps_list if batch_rows and all(f"realisable@{e:g}" in row for row in batch_rows)]
    if batch_rows and suite_eps:
        pairs = [c for e in suite_eps for c in (f"suite@{e:g}", f"realisable@{e:g}")]
        lines += ["", "| model | norm / eval statistics | " + " | ".join(pairs) + " |", "|" + "---|" * (len(pairs) + 2)]
        for row in batch_rows:
            lines.append(f"| {row['model']} | {row['variant']} | "
                         + " | ".join(_cell(row[c]) for c in pairs) + " |")
        lines += ["", "With batch statistics the per-example worst case ('suite') combines examples from different "
                      "adversarial batches, which no single batch an attacker submits realises; 'realisable' is, per "
                      "batch, the worst batch actually submitted (the clean batch, one attack's, or the batch "
                      "assembled from each example's worst case). The first table uses the per-example figure."]
    return "\n".join(lines)


#: The cell of a budget a row was not attacked at.
NOT_ATTACKED = "–"


def _cell(pair) -> str:
    return "n/a" if pair is None else f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _attack_budget(settings) -> str:
    """``"100 queries"``, ``"3 targets × 50 steps"`` or ``"20 steps"`` for one suite member's settings."""
    settings = settings or {}
    if "queries" in settings:
        return f"{settings['queries']} queries"
    steps = f"{settings.get('steps', '?')} steps"
    return f"{settings['n_targets']} targets × {steps}" if "n_targets" in settings else steps


def _suite_budgets(name) -> str:
    """``"fast suite (apgd-ce 20 steps, ...)"``: a named suite of :data:`SUITES` with its budgets."""
    settings = SUITES.get(name, {})
    if not settings:
        return name
    return f"{name} suite (" + ", ".join(f"{a} {_attack_budget(v)}" for a, v in settings.items()) + ")"


def _separate_batch_suite(config):
    """The 'batch' rows' suite when it differs from the other rows' (``config["batch_suite"]``), else None."""
    batch_suite = config.get("batch_suite")
    return None if batch_suite in (None, config["suite"]) else batch_suite


def suite_description(config) -> str:
    """Which attacks and budgets the 'suite' column used, for batch-independent and batch-statistics rows."""
    extras = ", ".join(config["attacks"])
    batch_suite = _separate_batch_suite(config)
    if batch_suite is None:
        return f"{extras} and the {_suite_budgets(config['suite'])}"
    return (f"{extras} and, for models independent of the batch (no norm, running statistics), the "
            f"{_suite_budgets(config['suite'])}, run on the examples still robust; for 'batch' rows, where every "
            f"attack perturbs every example of each fixed batch, the {_suite_budgets(batch_suite)}")


def architectures_markdown(runs, columns=("clean", "pgd@0.02", "suite@0.03", "suite@0.05", "realisable@0.05")) -> str:
    """Several runs (e.g. the small CNN's and ResNet-8's results.json) side by side: one row per norm / eval
    statistics, for each column one cell per run (mean ± sample std over seeds, %; "–" where not attacked)."""
    models = [r["config"]["model"] for r in runs]
    rows = [{row["variant"]: row for row in r["summary"]} for r in runs]
    variants = list(dict.fromkeys(v for by_variant in rows for v in by_variant))
    header = " | ".join(f"{col} {model}" for col in columns for model in models)
    lines = [f"| norm / eval statistics | {header} |", "|---|" + "---|" * (len(columns) * len(models))]
    for variant in variants:
        cells = [_cell(by_variant[variant][col]) if variant in by_variant and col in by_variant[variant] else NOT_ATTACKED
                 for col in columns for by_variant in rows]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _convergence_lines(results) -> list:
    """The suite's convergence check and PGD's distance from the suite, per row (mean over seeds), in Markdown."""
    rows = {}
    for run in results["runs"]:
        for variant in run["variants"]:
            sanity = variant.get("sanity", {})
            check = sanity.get("checks", {}).get("suite_converged")
            finding = sanity.get("findings", {}).get("pgd_against_the_suite")
            if check is None or finding is None:
                continue
            rows.setdefault(variant_label(run["norm"], variant["eval_stats"]), []).append((check, finding))
    if not rows:
        return []
    first_check, first_finding = next(iter(rows.values()))[0]
    steps, eps = first_finding["steps"], first_finding["eps"]
    lines = ["", f"### Has the reported evaluation converged? And how far is PGD-{steps} from it?", "",
             f"`suite_converged` re-attacks the reported suite result at ε = {eps:g} on the sanity checks' "
             f"{first_check['examples']} images with the next stronger suite and fails if that lowers the reported "
             f"accuracy by more than 2 points. PGD-{steps}'s distance from the reported number is a finding about "
             "PGD, not a check of the evaluation.", "",
             f"| norm / eval statistics | reported (%) | stronger suite | after it (%) | PGD-{steps} (%) | "
             f"PGD-{2 * steps}, 2 restarts (%) | PGD-{steps} above the reported (points) |",
             "|---|---|---|---|---|---|---|"]

    def avg(values):
        return f"{100 * float(np.mean(values)):.1f}"

    for label, pairs in rows.items():
        stronger = pairs[0][0]["stronger_suite"]
        lines.append(f"| {label} | {avg([c['reported_accuracy'] for c, _ in pairs])} | "
                     f"{stronger if isinstance(stronger, str) else 'standard, restarted'} | "
                     f"{avg([c['stronger_accuracy'] for c, _ in pairs])} | "
                     f"{avg([f['pgd_accuracy'] for _, f in pairs])} | {avg([f['stronger_pgd_accuracy'] for _, f in pairs])} | "
                     f"{avg([f['pgd_above_suite_by'] for _, f in pairs])} |")
    lines += ["", f"Mean over the {max(len(p) for p in rows.values())} seeds."]
    return lines


def results_markdown(results) -> str:
    """The whole report of a ``reproduce`` run, from its ``results.json`` contents alone."""
    config, summary = results["config"], results["summary"]
    suite_eps = [b["eps"] for b in results["budgets"] if b["suite"]]
    suite_text = suite_description(config)
    batch_suite = _separate_batch_suite(config)
    suite_label = f"{config['suite']} suite" + (f" ({batch_suite} for 'batch' rows)" if batch_suite else "")
    out = [f"# minirn reproduce: {config['dataset']}, {config['model']}", ""]
    out += ["## Recipes (chosen on validation images, never on the test split)", "",
            "| norm | lr | init | batch | epochs | source |", "|---|---|---|---|---|---|"]
    out += [f"| {norm} | {r['lr']:g} | {r['init']} | {r['batch_size']} | {r['epochs']} | {r['source']} |"
            for norm, r in results["recipes"].items()]
    out += ["", "## Budgets", "", "| ε (pixels, [0, 1]) | ε in the authors' units (÷ σ) | attacks |", "|---|---|---|"]
    for b in results["budgets"]:
        attacks = ", ".join(config["attacks"])
        batch_too = b.get("batch_suite", b["suite"])
        if b["suite"] and batch_too:
            attacks += f" and the {suite_label}"
        elif b["suite"] or batch_too:
            attacks += f" and the {suite_label}, " + ("not for 'batch' rows" if b["suite"] else "for 'batch' rows only")
        normalised = "n/a" if b["normalised"] is None else f"{b['normalised']:g}"
        out.append(f"| {b['eps']:g} | {normalised} | {attacks} |")
    out += ["", "The authors apply ε to mean/std-normalised images (their defaults 0.004 and 0.008, and 0.02 in one "
                "script, about 0.001-0.006 in pixels).", ""]
    out += ["## Accuracy", "", markdown_table(summary, config["attacks"], config["eps"], config["eval_batch_size"],
                                              suite_text=suite_text), ""]
    out += [f"{results['eval_examples']} test images attacked per model.", ""]
    cols = ["clean", *(f"suite@{e:g}" for e in suite_eps)]
    out += ["## Per seed", "", "| norm / eval statistics | column | per seed (%) | mean ± std | 95% interval |",
            "|---|---|---|---|---|"]
    for row in summary:
        for col in cols:
            if col in row.get("per_seed", {}):
                per_seed = ", ".join(f"s{s}: {100 * v:.1f}" for s, v in zip(row["seed_ids"], row["per_seed"][col]))
                interval = f"± {100 * row['ci95'][col]:.1f}" if row[col] is not None else "n/a"
                out.append(f"| {row['variant']} | {col} | {per_seed or 'n/a'} | {_cell(row[col])} | {interval} |")
    out += ["", "## Models that did not learn", ""]
    out += [f"- {name}" for name in results["not_learned"]] or ["None: every model learned."]
    expected = results["config"].get("expected_clean_accuracy")
    if expected is not None:
        out += ["", f"## Models below the expected {100 * expected:g}% clean test accuracy (kept in the means, flagged)", ""]
        out += [f"- {line}" for line in results.get("not_converged", [])] or ["None: every model reached it."]
    out += ["", "## Sanity checks (every model and eval-statistics variant)", ""]
    out += [f"- FAILED {line}" for line in results["sanity_failures"]] or ["All passed."]
    out += _convergence_lines(results)
    out += ["", "## Robustness over training (seed 0, validation images, running statistics)", "",
            "| norm | epoch | clean (%) | PGD-margin (%) |", "|---|---|---|---|"]
    for run in results["runs"]:
        if run["seed"] == 0 and "curve_robust_acc" in run["history"][0]:
            for h in run["history"]:
                out.append(f"| {run['norm']} | {h['epoch']} | {_pct(h['curve_clean_acc'])} | {_pct(h['curve_robust_acc'])} |")
    shifts = [r for r in results["runs"] if r.get("statistics_shift")]
    if shifts:
        out += ["", "## Statistics shift under attack vs random noise of the same L∞ norm", "",
                "In units of the clean batch's standard deviation for both norms (mean over layers and channels; "
                "mean ± std over seeds).", "",
                "| norm | mean shift, attack | mean shift, noise | std change, attack | std change, noise |",
                "|---|---|---|---|---|"]
        for norm in dict.fromkeys(r["norm"] for r in shifts):
            vals = [r["statistics_shift"]["summary"] for r in shifts if r["norm"] == norm]
            cells = []
            for key in ("mean_shift", "std_change"):
                for source in ("attack", "noise"):
                    v = [x[source][key] for x in vals]
                    cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}")
            out.append(f"| {norm} | " + " | ".join(cells) + " |")
    out += ["", f"Run time: {results.get('seconds', 0):.0f} s.", ""]
    return "\n".join(out)
