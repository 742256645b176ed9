"""Tests of minirn/experiments/report.py: the per-variant summary (mean ± std over seeds) and its Markdown table."""
import pytest

from minirn.experiments import report


def run(norm, seed, variants):
    return {"norm": norm, "seed": seed, "variants": [{"eval_stats": s, "accuracy": a} for s, a in variants]}


ONE_ATTACK = [
    run("bn", 0, [(["running", "running"], {"clean": 0.9, "pgd@0.1": 0.2}),
                  (["batch", "batch"], {"clean": 0.8, "pgd@0.1": 0.6})]),
    run("bn", 1, [(["running", "running"], {"clean": 0.7, "pgd@0.1": 0.4}),
                  (["batch", "batch"], {"clean": 0.8, "pgd@0.1": 0.5})]),
    run("none", 0, [(None, {"clean": 0.5, "pgd@0.1": 0.25})]),
]


def test_columns_have_a_worst_case_only_with_several_attacks():
    assert report.columns(["pgd"], [0.1, 0.3]) == ["clean", "pgd@0.1", "pgd@0.3"]
    assert report.columns(["fgsm", "pgd"], [0.1]) == ["clean", "fgsm@0.1", "pgd@0.1", "worst@0.1"]


def test_variant_labels():
    assert report.variant_label("bn", ["running", "batch"]) == "bn / running mean, batch scale"
    assert report.variant_label("rn", ("batch", "batch")) == "rn / batch"
    assert report.variant_label("none", None) == "none / -"


def test_summarize_gives_mean_and_population_std_per_variant():
    rows = report.summarize(ONE_ATTACK, ["pgd"], [0.1], "small-cnn")
    assert [r["variant"] for r in rows] == ["bn / running", "bn / batch", "none / -"]  # first-seen order
    running, batch, none = rows
    assert running["model"] == "small-cnn" and running["seeds"] == 2 and none["seeds"] == 1
    assert running["clean"] == pytest.approx([0.8, 0.1])  # mean of 0.9, 0.7; std sqrt(((0.1)^2 + (0.1)^2) / 2)
    assert running["pgd@0.1"] == pytest.approx([0.3, 0.1])
    assert batch["clean"] == pytest.approx([0.8, 0.0])
    assert batch["pgd@0.1"] == pytest.approx([0.55, 0.05])
    assert none["pgd@0.1"] == pytest.approx([0.25, 0.0])
    assert not any(key.startswith("worst") for row in rows for key in row)


def test_markdown_table_one_row_per_variant():
    rows = report.summarize(ONE_ATTACK, ["pgd"], [0.1], "small-cnn")
    lines = report.markdown_table(rows, ["pgd"], [0.1], batch_size=250).splitlines()
    assert lines[0] == "| model | norm / eval statistics | clean | pgd@0.1 |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| small-cnn | bn / running | 80.0 ± 10.0 | 30.0 ± 10.0 |"
    assert lines[3] == "| small-cnn | bn / batch | 80.0 ± 0.0 | 55.0 ± 5.0 |"
    assert lines[4] == "| small-cnn | none / - | 50.0 ± 0.0 | 25.0 ± 0.0 |"
    assert lines[5] == ""
    assert "2 seed(s)" in lines[6] and "batch size 250" in lines[6]


def test_worst_case_column_with_two_attacks():
    runs = [run("rn", seed, [(["running", "running"],
                              {"clean": 0.9, "fgsm@0.2": 0.5, "pgd@0.2": 0.3 + 0.1 * seed, "worst@0.2": 0.2 + 0.2 * seed})])
            for seed in range(2)]
    (row,) = report.summarize(runs, ["fgsm", "pgd"], [0.2], "resnet20")
    assert row["worst@0.2"] == pytest.approx([0.3, 0.1])
    table = report.markdown_table([row], ["fgsm", "pgd"], [0.2], batch_size=100).splitlines()
    assert table[0].endswith("| pgd@0.2 | worst@0.2 |")
    assert table[2].endswith("| 35.0 ± 5.0 | 30.0 ± 10.0 |")
