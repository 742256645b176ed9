"""Tests of minirn/experiments/report.py: the per-variant summary (mean ± sample std over seeds) and its Markdown tables."""
import math

import pytest

from minirn.experiments import report


def run(norm, seed, variants):
    return {"norm": norm, "seed": seed, "variants": [{"eval_stats": s, "accuracy": a} for s, a in variants]}


def accuracy(clean, pgd, suite, realisable=None):
    """An accuracy dict for one attack (pgd) at ε = 0.1 with the suite's columns."""
    return {"clean": clean, "pgd@0.1": pgd, "worst@0.1": pgd, "suite@0.1": suite,
            "realisable@0.1": suite if realisable is None else realisable}


ONE_ATTACK = [
    run("bn", 0, [(["running", "running"], accuracy(0.9, 0.2, 0.1)),
                  (["batch", "batch"], accuracy(0.8, 0.6, 0.3, 0.4))]),
    run("bn", 1, [(["running", "running"], accuracy(0.7, 0.4, 0.3)),
                  (["batch", "batch"], accuracy(0.8, 0.5, 0.2, 0.3))]),
    run("none", 0, [(None, accuracy(0.5, 0.25, 0.2))]),
]


def test_columns_list_attacks_then_the_worst_cases():
    assert report.columns(["pgd"], [0.1, 0.3]) == [
        "clean", "pgd@0.1", "pgd@0.3", "worst@0.1", "worst@0.3", "suite@0.1", "suite@0.3",
        "realisable@0.1", "realisable@0.3"]
    # the table drops the attacks' own worst case (the suite includes those attacks) and the realisable figure
    assert report.columns(["fgsm", "pgd"], [0.1], table=True) == ["clean", "fgsm@0.1", "pgd@0.1", "suite@0.1"]


def test_variant_labels():
    assert report.variant_label("bn", ["running", "batch"]) == "bn / running mean, batch scale"
    assert report.variant_label("rn", ("batch", "batch")) == "rn / batch"
    assert report.variant_label("none", None) == "none / -"


def test_summarize_gives_mean_and_sample_std_per_variant():
    rows = report.summarize(ONE_ATTACK, ["pgd"], [0.1], "small-cnn")
    assert [r["variant"] for r in rows] == ["bn / running", "bn / batch", "none / -"]  # first-seen order
    running, batch, none = rows
    assert running["model"] == "small-cnn" and running["seeds"] == 2 and none["seeds"] == 1
    two_point_std = math.sqrt(2 * 0.1**2 / (2 - 1))  # values m ± 0.1, ddof = 1
    assert running["clean"] == pytest.approx([0.8, two_point_std])
    assert running["pgd@0.1"] == pytest.approx([0.3, two_point_std])
    assert batch["clean"] == pytest.approx([0.8, 0.0])
    assert batch["pgd@0.1"] == pytest.approx([0.55, two_point_std / 2])
    assert batch["realisable@0.1"] == pytest.approx([0.35, two_point_std / 2])
    assert none["pgd@0.1"] == pytest.approx([0.25, 0.0])  # one seed: no spread


def test_markdown_tables():
    rows = report.summarize(ONE_ATTACK, ["pgd"], [0.1], "small-cnn")
    lines = report.markdown_table(rows, ["pgd"], [0.1], batch_size=250, suite="fast: pgd, square").splitlines()
    assert lines[0] == "| model | norm / eval statistics | clean | pgd@0.1 | suite@0.1 |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| small-cnn | bn / running | 80.0 ± 14.1 | 30.0 ± 14.1 | 20.0 ± 14.1 |"
    assert lines[3] == "| small-cnn | bn / batch | 80.0 ± 0.0 | 55.0 ± 7.1 | 25.0 ± 7.1 |"
    assert lines[4] == "| small-cnn | none / - | 50.0 ± 0.0 | 25.0 ± 0.0 | 20.0 ± 0.0 |"
    assert lines[5] == ""
    assert "2 seed(s)" in lines[6] and "batch size 250" in lines[6] and "ddof = 1" in lines[6]
    assert "fast: pgd, square" in lines[6]
    # the second table: only the batch-statistics row, per-example worst case beside the realisable one
    assert lines[8] == "| model | norm / eval statistics | suite@0.1 | realisable@0.1 |"
    assert lines[10] == "| small-cnn | bn / batch | 25.0 ± 7.1 | 35.0 ± 7.1 |"
    assert len([line for line in lines if line.startswith("| small-cnn")]) == 4


def test_runs_without_the_suite_keep_their_columns_and_no_nan():
    """An evaluation without the suite (e.g. a notebook's own table) gets no suite/realisable columns, never NaN."""
    runs = [run("bn", seed, [(["batch", "batch"], {"clean": 0.9, "pgd@0.1": 0.3 + 0.1 * seed, "worst@0.1": 0.3})])
            for seed in range(2)]
    (row,) = report.summarize(runs, ["pgd"], [0.1], "small-cnn")
    assert set(row) == {"model", "variant", "seeds", "seed_ids", "excluded", "per_seed", "ci95", "clean", "pgd@0.1", "worst@0.1"}
    assert set(row["per_seed"]) == {"clean", "pgd@0.1", "worst@0.1"}
    table = report.markdown_table([row], ["pgd"], [0.1], batch_size=128)
    assert "nan" not in table and "suite" not in table and "realisable" not in table
    assert table.splitlines()[0] == "| model | norm / eval statistics | clean | pgd@0.1 |"


def test_without_the_suite_the_table_shows_the_attacks_worst_case():
    runs = [run("rn", 0, [(["running", "running"], {"clean": 0.9, "fgsm@0.2": 0.5, "pgd@0.2": 0.3, "worst@0.2": 0.2})])]
    rows = report.summarize(runs, ["fgsm", "pgd"], [0.2], "resnet20")
    header = report.markdown_table(rows, ["fgsm", "pgd"], [0.2], batch_size=100).splitlines()[0]
    assert header.endswith("| fgsm@0.2 | pgd@0.2 | worst@0.2 |")


def test_the_realisable_table_appears_when_the_suite_attacks_only_some_budgets():
    """The default run attacks the suite at its second ε only: the batch rows still get their realisable table."""
    accuracy = {"clean": 0.9, "pgd@0.005": 0.88, "pgd@0.05": 0.3, "suite@0.05": 0.05, "realisable@0.05": 0.08}
    runs = [{"norm": "bn", "seed": s, "variants": [{"eval_stats": ["batch", "batch"], "accuracy": accuracy}]}
            for s in (0, 1)]
    rows = report.summarize(runs, ["pgd"], [0.005, 0.05], "small-cnn")
    table = report.markdown_table(rows, ["pgd"], [0.005, 0.05], batch_size=128)
    assert "| model | norm / eval statistics | suite@0.05 | realisable@0.05 |" in table
    assert "| small-cnn | bn / batch | 5.0 ± 0.0 | 8.0 ± 0.0 |" in table
