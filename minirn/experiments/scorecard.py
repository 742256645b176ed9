"""The scorecard: each of the paper's four claims against what a reproduction measured.

:func:`scorecard` reads a ``results.json`` (``python -m minirn reproduce``) and returns one row per claim:
the claim in the paper's words, the setting the paper tested it in, this run's number(s) with a 95%
interval, a verdict and the main caveat.  :func:`scorecard_markdown` prints it as a table (it opens the
README and closes notebook 07).

The verdicts follow fixed rules written below, applied to *paired* differences over seeds (seed s of
one network against seed s of the other, same test images): the mean difference and the half-width of
its 95% t-interval, :math:`t_{0.975,n-1}\\,s_d/\\sqrt n` with the sample standard deviation (ddof = 1).
An interval that contains 0 is "inconclusive": no difference within noise.  With 3 seeds the t
quantile is 4.3, so only large, consistent differences count.
"""
from __future__ import annotations

import numpy as np

from minirn.experiments.report import interval_95

#: The verdicts, from the strongest support to none.
VERDICTS = ("reproduced", "partly", "inconclusive", "not supported")

#: The paper's claims in its own words (Awais, Shamshad & Bae 2020), and the setting it tested them in.
CLAIMS = {
    1: "BatchNorm makes networks more vulnerable to adversarial attacks",
    2: "adversarial images shift BatchNorm's input distribution, so the running mean and variance are "
       "inaccurate for them",
    3: "with the inference batch's own statistics, BatchNorm's adversarial vulnerability disappears",
    4: "RobustNorm is more robust than BatchNorm while retaining all the benefits of BatchNorm",
}
PAPER_SETTING = ("CIFAR-10 ResNet-20, MNIST ResNet-8; FGSM, PGD-20 and others at ε 0.004–0.02 in "
                 "mean/std-normalised units (about 0.001–0.006 in pixels)")


def paired_difference(a: dict, b: dict) -> tuple[float, float, int]:
    """``(mean of a[s] - b[s], 95% half-width, n)`` over the seeds s that both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common: cannot pair the two networks")
    d = [a[s] - b[s] for s in seeds]
    return float(np.mean(d)), interval_95(d), len(seeds)


def _verdict(mean: float, half: float) -> str:
    """reproduced if the interval lies above 0, not supported if below, inconclusive if it holds 0."""
    if mean - half > 0:
        return "reproduced"
    if mean + half < 0:
        return "not supported"
    return "inconclusive"


class _Run:
    """Per-seed numbers of one results.json, by variant label (``"bn / running"``) and column."""

    def __init__(self, results: dict):
        self.results = results
        self.rows = {row["variant"]: row for row in results["summary"]}
        suite_budgets = [b["eps"] for b in results["budgets"] if b.get("suite")]
        # the headline budget (the run's results.json names it; older runs attacked the suite at one ε, their largest)
        self.eps = results.get("headline_eps") or (max(suite_budgets) if suite_budgets else
                                                   max(b["eps"] for b in results["budgets"]))
        self.column = f"suite@{self.eps:g}" if suite_budgets else f"worst@{self.eps:g}"
        self.small_eps = min(b["eps"] for b in results["budgets"])
        normalised = {b["eps"]: b.get("normalised") for b in results["budgets"]}
        self.normalised = normalised[self.eps]

    def per_seed(self, variant: str, column: str | None = None) -> dict:
        row = self.rows[variant]
        return dict(zip(row["seed_ids"], row["per_seed"][column or self.column]))

    def mean(self, variant: str, column: str | None = None) -> float:
        return float(np.mean(list(self.per_seed(variant, column).values())))

    def shift(self, source: str, key: str = "mean_shift") -> dict:
        """BatchNorm's per-seed statistics shift (mean over layers) under the attack or the noise control."""
        return {r["seed"]: r["statistics_shift"]["summary"][source][key]
                for r in self.results["runs"] if r["norm"] == "bn" and "statistics_shift" in r}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _points(mean: float, half: float) -> str:
    return f"{100 * mean:+.1f} ± {100 * half:.1f} points"


def scorecard(results: dict) -> list[dict]:
    """One row per claim: ``{"claim", "paper", "paper_setting", "measured", "difference", "verdict",
    "caveat"}``, with ``difference = (mean, 95% half-width, seeds)`` of the paired difference the
    verdict rests on (a fraction, not percent)."""
    run = _Run(results)
    setting = f"ε = {run.eps:g}" + (f" ({run.normalised:g} normalised)" if run.normalised else "")
    rows = []

    # Claim 1: no normalization against BatchNorm with running statistics, under the strongest attack.
    d = paired_difference(run.per_seed("none / -"), run.per_seed("bn / running"))
    loss = [run.mean(v, "clean") - run.mean(v, f"worst@{run.small_eps:g}") for v in ("none / -", "bn / running")]
    rows.append({
        "claim": 1, "difference": d, "verdict": _verdict(d[0], d[1]),
        "measured": f"{setting}: no norm {_pct(run.mean('none / -'))}, BatchNorm {_pct(run.mean('bn / running'))}; "
                    f"difference {_points(d[0], d[1])} ({d[2]} seeds)",
        "caveat": f"at ε = {run.small_eps:g} (the authors' scale) both lose only "
                  f"{100 * min(loss):.1f}–{100 * max(loss):.1f} points: nothing to explain there",
    })

    # Claim 2: the attack shifts BatchNorm's input statistics, but does it shift them more than noise?
    attack, noise = run.shift("attack"), run.shift("noise")
    d = paired_difference(attack, noise)
    rows.append({
        "claim": 2, "difference": d,
        "verdict": "reproduced" if d[0] - d[1] > 0 else "partly",
        "measured": f"{setting}: channel means move {np.mean(list(attack.values())):.2f} clean-batch std under "
                    f"attack, {np.mean(list(noise.values())):.2f} under random ±ε noise; "
                    f"difference {d[0]:+.3f} ± {d[1]:.3f} ({d[2]} seeds)",
        "caveat": "the shift is real but random noise of the same size moves the statistics about as much "
                  "and costs far less accuracy: the shift alone does not explain the vulnerability",
    })

    # Claim 3: BatchNorm with the inference batch's statistics against no normalization.
    gap = paired_difference(run.per_seed("none / -"), run.per_seed("bn / batch"))  # how far below no norm it stays
    gain = paired_difference(run.per_seed("bn / batch"), run.per_seed("bn / running"))
    realisable = f"realisable@{run.eps:g}"
    rows.append({
        "claim": 3, "difference": gap,
        "verdict": _verdict(-gap[0], gap[1]),  # "disappears": batch statistics reach no norm's robustness
        "measured": f"{setting}: BatchNorm with batch statistics {_pct(run.mean('bn / batch'))} "
                    f"(realisable {_pct(run.mean('bn / batch', realisable))}) against running "
                    f"{_pct(run.mean('bn / running'))}: gain {_points(gain[0], gain[1])}; "
                    f"still {_points(gap[0], gap[1])} below no norm",
        "caveat": f"PGD with cross-entropy alone suggests a large gain ({_pct(run.mean('bn / batch', f'pgd@{run.eps:g}'))} "
                  f"vs {_pct(run.mean('bn / running', f'pgd@{run.eps:g}'))}): a weak attack through batch "
                  "statistics; the batch rows' suite has the shorter 'fast' budgets",
    })

    # Claim 4: RobustNorm against BatchNorm, both with running statistics: robustness and clean accuracy.
    robust = paired_difference(run.per_seed("rn / running"), run.per_seed("bn / running"))
    clean = paired_difference(run.per_seed("rn / running", "clean"), run.per_seed("bn / running", "clean"))
    verdict = _verdict(robust[0], robust[1])
    if verdict == "reproduced" and clean[0] + clean[1] < 0:
        verdict = "partly"  # more robust, but it does not retain BatchNorm's clean accuracy
    rows.append({
        "claim": 4, "difference": robust, "verdict": verdict,
        "measured": f"{setting}: RobustNorm {_pct(run.mean('rn / running'))}, BatchNorm "
                    f"{_pct(run.mean('bn / running'))}: {_points(robust[0], robust[1])}; clean "
                    f"{_pct(run.mean('rn / running', 'clean'))} vs {_pct(run.mean('bn / running', 'clean'))} "
                    f"({_points(clean[0], clean[1])})",
        "caveat": f"far below no normalization's {_pct(run.mean('none / -'))}; at matched clean accuracy "
                  "only one seed was compared (the report's robustness over training)",
    })
    for row in rows:
        row["paper"] = CLAIMS[row["claim"]]
        row["paper_setting"] = PAPER_SETTING
    return rows


def _architecture(results: dict) -> str:
    """``"small-cnn on mnist-5k, 500 test images, 3 seeds"``: what one run measured on."""
    config = results["config"]
    return f"{config['model']} on {config['dataset']}, {results['eval_examples']} test images, {config['seeds']} seeds"


def scorecard_markdown(results: dict, *more: dict) -> str:
    """The scorecard as a Markdown table, with a line on how to read it.

    more: other runs' results (e.g. the authors' ResNet-8, ``reproduce --preset authors-mnist``), each given its
    own measured and verdict columns beside the first's, claim by claim; a sentence below the table names
    every claim whose verdicts differ between the architectures.
    """
    runs = [results, *more]
    cards = [scorecard(r) for r in runs]
    if not more:
        lines = ["| # | the paper's claim | this reproduction: " f"{_architecture(results)} | verdict | main caveat |",
                 "|---|---|---|---|---|"]
        for row in cards[0]:
            lines.append(f"| {row['claim']} | {row['paper']} | {row['measured']} | **{row['verdict']}** | {row['caveat']} |")
    else:
        header = " | ".join(f"{_architecture(r)} | verdict" for r in runs)
        lines = [f"| # | the paper's claim | {header} | main caveat ({results['config']['model']}) |",
                 "|---|---|" + "---|---|" * len(runs) + "---|"]
        for rows in zip(*cards):
            cells = " | ".join(f"{row['measured']} | **{row['verdict']}**" for row in rows)
            lines.append(f"| {rows[0]['claim']} | {rows[0]['paper']} | {cells} | {rows[0]['caveat']} |")
    lines.append("")
    lines.append(f"The paper tested these on {PAPER_SETTING}. Differences are paired over seeds, mean ± the "
                 "half-width of the 95% t-interval (ddof = 1); an interval holding 0 is 'inconclusive' (no "
                 "difference within noise).")
    if more:
        disagree = [rows for rows in zip(*cards) if len({row["verdict"] for row in rows}) > 1]
        if disagree:
            models = [r["config"]["model"] for r in runs]
            lines.append("")
            lines.append("The architectures disagree on " + "; ".join(
                f"claim {rows[0]['claim']} (" + ", ".join(f"{m}: {row['verdict']}" for m, row in zip(models, rows)) + ")"
                for rows in disagree) + ".")
        else:
            lines += ["", "The architectures agree on every verdict."]
    return "\n".join(lines)
