"""The scorecard (minirn/experiments/scorecard.py): its numbers, recomputed here from the per-seed values,
and its verdict rules on results made up so that each verdict is known."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from minirn.experiments.scorecard import CLAIMS, scorecard, scorecard_markdown

COMMITTED = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "default-run", "results.json")
T_975_TWO_DOF = 4.302653  # t quantile for 3 seeds (any statistics table)


def _paired(a, b):
    d = np.asarray(a) - np.asarray(b)
    return d.mean(), T_975_TWO_DOF * d.std(ddof=1) / np.sqrt(len(d))


@pytest.fixture(scope="module")
def committed():
    with open(COMMITTED) as f:
        return json.load(f)


def _seeds(results, variant, column="suite@0.05"):
    (row,) = [r for r in results["summary"] if r["variant"] == variant]
    return row["per_seed"][column]


def test_each_claim_once_in_the_papers_words(committed):
    rows = scorecard(committed)
    assert [r["claim"] for r in rows] == [1, 2, 3, 4]
    assert all(r["paper"] == CLAIMS[r["claim"]] for r in rows)


def test_committed_differences_recomputed_from_the_per_seed_values(committed):
    rows = {r["claim"]: r for r in scorecard(committed)}
    expected = {
        1: _paired(_seeds(committed, "none / -"), _seeds(committed, "bn / running")),
        3: _paired(_seeds(committed, "none / -"), _seeds(committed, "bn / batch")),
        4: _paired(_seeds(committed, "rn / running"), _seeds(committed, "bn / running")),
    }
    for claim, (mean, half) in expected.items():
        got_mean, got_half, n = rows[claim]["difference"]
        assert n == 3 and got_mean == pytest.approx(mean) and got_half == pytest.approx(half, rel=1e-4), claim
        assert f"{100 * mean:+.1f} ± {100 * half:.1f} points" in rows[claim]["measured"]
    shifts = [(r["statistics_shift"]["summary"]["attack"]["mean_shift"], r["statistics_shift"]["summary"]["noise"]["mean_shift"])
              for r in committed["runs"] if r["norm"] == "bn"]
    mean, half = _paired(*zip(*shifts))
    assert rows[2]["difference"][0] == pytest.approx(mean) and rows[2]["difference"][1] == pytest.approx(half, rel=1e-4)


def test_markdown_has_a_row_per_claim_with_its_verdict(committed):
    text = scorecard_markdown(committed)
    for row in scorecard(committed):
        assert f"| {row['claim']} | {row['paper']} | {row['measured']} | **{row['verdict']}** |" in text


# --- the rules, on made-up results ------------------------------------------------------------------------
def _results(none, bn_running, bn_batch, rn_running, clean_rn=(0.95,) * 3, clean_bn=(0.95,) * 3,
             attack_shift=(0.2,) * 3, noise_shift=(0.2,) * 3):
    def row(variant, suite, clean=(0.95, 0.95, 0.95)):
        per_seed = {"clean": list(clean), "suite@0.05": list(suite), "realisable@0.05": list(suite),
                    "worst@0.005": [c - 0.01 for c in clean], "pgd@0.05": list(suite)}
        return {"variant": variant, "seed_ids": [0, 1, 2], "per_seed": per_seed}

    runs = [{"norm": "bn", "seed": s, "statistics_shift": {"summary": {
        "attack": {"mean_shift": attack_shift[s]}, "noise": {"mean_shift": noise_shift[s]}}}} for s in range(3)]
    return {"config": {"model": "m", "dataset": "d", "seeds": 3}, "eval_examples": 500,
            "budgets": [{"eps": 0.005, "suite": False}, {"eps": 0.05, "suite": True}], "runs": runs,
            "summary": [row("none / -", none), row("bn / running", bn_running, clean_bn), row("bn / batch", bn_batch),
                        row("rn / running", rn_running, clean_rn)]}


def _verdicts(results):
    return {r["claim"]: r["verdict"] for r in scorecard(results)}


def test_clear_differences_give_clear_verdicts():
    v = _verdicts(_results(none=(0.40, 0.42, 0.41), bn_running=(0.02, 0.03, 0.02), bn_batch=(0.05, 0.06, 0.05),
                           rn_running=(0.10, 0.11, 0.12), attack_shift=(0.30, 0.31, 0.32), noise_shift=(0.1, 0.1, 0.11)))
    assert v == {1: "reproduced", 2: "reproduced", 3: "not supported", 4: "reproduced"}


def test_differences_within_noise_are_inconclusive_and_reversals_not_supported():
    v = _verdicts(_results(none=(0.02, 0.30, 0.10), bn_running=(0.10, 0.11, 0.12), bn_batch=(0.60, 0.85, 0.70),
                           rn_running=(0.00, 0.01, 0.00), attack_shift=(0.1, 0.3, 0.2), noise_shift=(0.2, 0.2, 0.2)))
    assert v == {1: "inconclusive", 2: "partly", 3: "reproduced", 4: "not supported"}


def test_robustness_bought_with_clean_accuracy_is_only_partly_the_claim():
    v = _verdicts(_results(none=(0.4,) * 3, bn_running=(0.02, 0.03, 0.02), bn_batch=(0.4, 0.41, 0.42),
                           rn_running=(0.10, 0.11, 0.12), clean_rn=(0.90, 0.91, 0.90), clean_bn=(0.96, 0.97, 0.96)))
    assert v[4] == "partly" and v[3] == "inconclusive"


def test_the_headline_budget_is_the_one_results_json_names():
    """A run with the suite at several budgets: the scorecard reads the headline ε, not the largest."""
    results = _results(none=(0.4,) * 3, bn_running=(0.02,) * 3, bn_batch=(0.05,) * 3, rn_running=(0.1,) * 3)
    results["budgets"].append({"eps": 0.1, "suite": True})
    results["headline_eps"] = 0.05
    assert all("ε = 0.05" in row["measured"] for row in scorecard(results))


def test_two_architectures_side_by_side_and_where_their_verdicts_differ():
    small = _results(none=(0.40, 0.42, 0.41), bn_running=(0.02, 0.03, 0.02), bn_batch=(0.05, 0.06, 0.05),
                     rn_running=(0.10, 0.11, 0.12), attack_shift=(0.30, 0.31, 0.32), noise_shift=(0.1, 0.1, 0.11))
    resnet = _results(none=(0.02, 0.30, 0.10), bn_running=(0.02, 0.03, 0.02), bn_batch=(0.05, 0.06, 0.05),
                      rn_running=(0.10, 0.11, 0.12), attack_shift=(0.30, 0.31, 0.32), noise_shift=(0.1, 0.1, 0.11))
    resnet["config"] = {**resnet["config"], "model": "resnet8"}
    text = scorecard_markdown(small, resnet)
    for a, b in zip(scorecard(small), scorecard(resnet)):
        assert (f"| {a['claim']} | {a['paper']} | {a['measured']} | **{a['verdict']}** | {b['measured']} | "
                f"**{b['verdict']}** | {a['caveat']} |") in text
    # none's robustness differs: claims 1 and 3 (both compare with no norm) change verdict, 2 and 4 do not
    assert ("disagree on claim 1 (m: reproduced, resnet8: inconclusive); claim 3 (m: not supported, resnet8: "
            "inconclusive).") in text
    assert "agree on every verdict" in scorecard_markdown(small, small)
