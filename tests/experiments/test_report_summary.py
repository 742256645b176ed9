"""Tests of minirn/experiments/report.py: seeds that did not learn are left out (and named), per-seed values and
95% t-intervals, and the whole Markdown report of a reproduce run (results_markdown) from a hand-made results dict.
"""
import numpy as np
import pytest

from minirn.attacks import SUITES
from minirn.experiments import report

RUNNING = ["running", "running"]


def accuracy(clean, pgd, suite):
    return {"clean": clean, "pgd@0.1": pgd, "worst@0.1": pgd, "suite@0.1": suite, "realisable@0.1": suite}


def run(norm, seed, acc, learned=True, **extra):
    record = {"norm": norm, "seed": seed, "variants": [{"eval_stats": RUNNING, "accuracy": acc}],
              "learned": {"passed": learned}}
    record.update(extra)
    return record


#: bn: seeds 0-2 learned, seed 3 did not (its 0.1 accuracies would drag the mean down if averaged in);
#: rn: no seed learned.
BN_CLEAN, BN_PGD, BN_SUITE = [0.9, 0.8, 0.7], [0.5, 0.3, 0.4], [0.25, 0.1, 0.4]
RUNS = [run("bn", s, accuracy(BN_CLEAN[s], BN_PGD[s], BN_SUITE[s])) for s in range(3)]
RUNS += [run("bn", 3, accuracy(0.1, 0.1, 0.1), learned=False)]
RUNS += [run("rn", s, accuracy(0.11, 0.1, 0.09), learned=False) for s in range(2)]


@pytest.fixture
def rows():
    return {row["variant"]: row for row in report.summarize(RUNS, ["pgd"], [0.1], "small-cnn")}


def test_summarize_leaves_out_the_seeds_that_did_not_learn(rows):
    bn = rows["bn / running"]
    assert bn["seeds"] == 3 and bn["seed_ids"] == [0, 1, 2] and bn["excluded"] == [3]
    for col, values in (("clean", BN_CLEAN), ("pgd@0.1", BN_PGD), ("suite@0.1", BN_SUITE)):
        assert bn[col] == pytest.approx([np.mean(values), np.std(values, ddof=1)]), col
        assert bn["per_seed"][col] == pytest.approx(values), col
    assert bn["clean"][1] == pytest.approx(0.1)  # 0.9, 0.8, 0.7: deviations ±0.1, sum of squares 0.02 over n - 1 = 2


def test_ci95_is_the_t_interval_half_width(rows):
    bn = rows["bn / running"]
    t_975_two_degrees_of_freedom = 4.303  # Student t quantile 0.975 with n - 1 = 2 (statistical tables)
    for col, values in (("clean", BN_CLEAN), ("pgd@0.1", BN_PGD), ("suite@0.1", BN_SUITE)):
        expected = t_975_two_degrees_of_freedom * np.std(values, ddof=1) / np.sqrt(len(values))
        assert bn["ci95"][col] == pytest.approx(expected, rel=1e-12), col
    assert bn["ci95"]["clean"] == pytest.approx(0.248434, abs=1e-6)  # 4.303 * 0.1 / sqrt(3)


def test_a_row_whose_every_seed_is_excluded_has_no_numbers(rows):
    rn = rows["rn / running"]
    assert rn["seeds"] == 0 and rn["seed_ids"] == [] and rn["excluded"] == [0, 1]
    for col in ("clean", "pgd@0.1", "worst@0.1", "suite@0.1", "realisable@0.1"):
        assert rn[col] is None, col
        assert rn["per_seed"][col] == [] and rn["ci95"][col] == 0.0, col


def test_markdown_table_prints_n_a_and_names_the_excluded_seeds(rows):
    table = report.markdown_table(list(rows.values()), ["pgd"], [0.1], batch_size=100)
    lines = table.splitlines()
    (rn_line,) = [line for line in lines if line.startswith("| small-cnn | rn / running |")]
    assert rn_line == "| small-cnn | rn / running | n/a | n/a | n/a |"
    (bn_line,) = [line for line in lines if line.startswith("| small-cnn | bn / running |")]
    assert bn_line == "| small-cnn | bn / running | 80.0 ± 10.0 | 40.0 ± 10.0 | 25.0 ± 15.0 |"
    assert "Left out because the model did not learn: bn / running seed(s) 3; rn / running seed(s) 0, 1." in table
    assert "over 3 seed(s)" in table and "nan" not in table.lower()


def test_runs_without_a_learned_check_are_kept():
    runs = [{"norm": "bn", "seed": s, "variants": [{"eval_stats": RUNNING, "accuracy": {"clean": 0.5 + 0.1 * s}}]}
            for s in range(2)]
    runs.append(run("bn", 2, {"clean": 0.7}, learned=True))
    (row,) = report.summarize(runs, ["pgd"], [0.1], "small-cnn")
    assert row["seed_ids"] == [0, 1, 2] and row["excluded"] == []
    assert row["clean"] == pytest.approx([0.6, 0.1])
    assert "Left out" not in report.markdown_table([row], ["pgd"], [0.1], batch_size=100)


def test_interval_95():
    assert report.interval_95([0.7]) == 0.0
    assert report.interval_95([]) == 0.0
    values = [0.2, 0.4]  # s = sqrt(0.02), t_{0.975, 1} = 12.706
    assert report.interval_95(values) == pytest.approx(12.706 * np.sqrt(0.02) / np.sqrt(2))
    assert report.interval_95([0.3, 0.3, 0.3]) == 0.0


def test_the_t_table_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for degrees, t in report.T_975.items():
        assert t == pytest.approx(stats.t.ppf(0.975, degrees), abs=6e-4), degrees


# ---------------------------------------------------------------------------
# results_markdown: the whole report from a results.json's contents
# ---------------------------------------------------------------------------
def shift(mean_attack, mean_noise, std_attack, std_noise):
    return {"summary": {"attack": {"mean_shift": mean_attack, "std_change": std_attack},
                        "noise": {"mean_shift": mean_noise, "std_change": std_noise}}}


def curve(*points):
    return [{"epoch": i + 1, "curve_clean_acc": c, "curve_robust_acc": r} for i, (c, r) in enumerate(points)]


def results(not_learned=None, sanity_failures=None):
    runs = [
        run("bn", 0, accuracy(0.9, 0.5, 0.25), history=curve((0.5, 0.25), (0.75, None)),
            statistics_shift=shift(0.5, 0.1, 0.2, 0.02)),
        run("bn", 1, accuracy(0.8, 0.3, 0.1), history=curve((0.4, 0.2), (0.7, 0.3)),
            statistics_shift=shift(0.7, 0.3, 0.4, 0.04)),
        run("rn", 0, accuracy(0.1, 0.1, 0.1), learned=False, history=[{"epoch": 1, "train_loss": 2.3}]),
    ]
    config = {"dataset": "digits", "model": "small-cnn", "attacks": ["pgd"], "suite": "fast", "eps": [0.1],
              "eval_batch_size": 250}
    return {
        "config": config,
        "recipes": {"bn": {"lr": 0.2, "init": "he", "batch_size": 32, "epochs": 12, "source": "tuned on validation (recipes.json)"},
                    "rn": {"lr": 0.1, "init": "torch", "batch_size": 128, "epochs": 8, "source": "defaults: no recipes.json"}},
        "budgets": [{"eps": 0.1, "normalised": 0.3246, "suite": True}],
        "eval_batch_size": 250,
        "eval_examples": 200,
        "runs": runs,
        "not_learned": ["rn seed 0"] if not_learned is None else not_learned,
        "summary": report.summarize(runs, config["attacks"], config["eps"], config["model"]),
        "sanity_failures": ["bn seed 1 / running: clean accuracy 0.8 below 0.9"] if sanity_failures is None
        else sanity_failures,
        "seconds": 12.3,
    }


def section(markdown, title):
    """The lines of the section ``## title`` (up to the next ``## ``)."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1 : end]


def test_results_markdown_has_every_section_with_its_numbers():
    markdown = report.results_markdown(results())
    assert markdown.splitlines()[0] == "# minirn reproduce: digits, small-cnn"

    recipes = section(markdown, "Recipes (chosen on validation images, never on the test split)")
    assert "| bn | 0.2 | he | 32 | 12 | tuned on validation (recipes.json) |" in recipes
    assert "| rn | 0.1 | torch | 128 | 8 | defaults: no recipes.json |" in recipes

    assert "| 0.1 | 0.3246 | pgd and the fast suite |" in section(markdown, "Budgets")

    acc = section(markdown, "Accuracy")
    clean, suite = [0.9, 0.8], [0.25, 0.1]
    cell = lambda v: f"{100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1):.1f}"  # noqa: E731
    assert f"| small-cnn | bn / running | {cell(clean)} | {cell([0.5, 0.3])} | {cell(suite)} |" in acc
    assert "| small-cnn | rn / running | n/a | n/a | n/a |" in acc
    fast = SUITES["fast"]
    assert (f"'suite' is the per-example worst case over pgd and the fast suite (apgd-ce {fast['apgd-ce']['steps']} "
            f"steps, apgd-t {fast['apgd-t']['n_targets']} targets × {fast['apgd-t']['steps']} steps, square "
            f"{fast['square']['queries']} queries)." in "\n".join(acc))
    assert "rn / running seed(s) 0" in "\n".join(acc)
    assert "200 test images attacked per model." in acc

    per_seed = section(markdown, "Per seed")
    half_width = lambda v: 12.706 * np.std(v, ddof=1) / np.sqrt(2)  # noqa: E731  (2 seeds: t_{0.975, 1})
    assert f"| bn / running | clean | s0: 90.0, s1: 80.0 | {cell(clean)} | ± {100 * half_width(clean):.1f} |" in per_seed
    assert (f"| bn / running | suite@0.1 | s0: 25.0, s1: 10.0 | {cell(suite)} | ± {100 * half_width(suite):.1f} |"
            in per_seed)
    (rn_clean,) = [line for line in per_seed if line.startswith("| rn / running | clean |")]
    assert "n/a" in rn_clean

    assert "- rn seed 0" in section(markdown, "Models that did not learn")
    assert "- FAILED bn seed 1 / running: clean accuracy 0.8 below 0.9" in section(
        markdown, "Sanity checks (every model and eval-statistics variant)")

    curves = section(markdown, "Robustness over training (seed 0, validation images, running statistics)")
    assert "| bn | 1 | 50.0 | 25.0 |" in curves and "| bn | 2 | 75.0 | n/a |" in curves
    assert not any(line.startswith("| rn |") for line in curves)  # its history has no curve
    assert not any("40.0" in line for line in curves)  # seed 1's curve is not in the seed-0 table

    shifts = section(markdown, "Statistics shift under attack vs random noise of the same L∞ norm")
    pair = lambda a, b: f"{np.mean([a, b]):.3f} ± {np.std([a, b], ddof=1):.3f}"  # noqa: E731
    assert f"| bn | {pair(0.5, 0.7)} | {pair(0.1, 0.3)} | {pair(0.2, 0.4)} | {pair(0.02, 0.04)} |" in shifts
    assert "Run time: 12 s." in markdown


def test_results_markdown_when_everything_learned_and_passed():
    markdown = report.results_markdown(results(not_learned=[], sanity_failures=[]))
    assert "None: every model learned." in section(markdown, "Models that did not learn")
    assert "All passed." in section(markdown, "Sanity checks (every model and eval-statistics variant)")
    assert "FAILED" not in markdown


def test_results_markdown_without_statistics_shift_has_no_such_section():
    data = results()
    for r in data["runs"]:
        r.pop("statistics_shift", None)
    markdown = report.results_markdown(data)
    assert "## Statistics shift" not in markdown and "## Per seed" in markdown


def test_results_markdown_names_both_suites_when_batch_rows_get_another():
    data = results()
    data["config"] = {**data["config"], "suite": "medium", "batch_suite": "fast"}
    markdown = report.results_markdown(data)
    assert "| 0.1 | 0.3246 | pgd and the medium suite (fast for 'batch' rows) |" in section(markdown, "Budgets")
    text = "\n".join(section(markdown, "Accuracy"))
    medium = SUITES["medium"]
    assert f"for models independent of the batch (no norm, running statistics), the medium suite (apgd-ce {medium['apgd-ce']['steps']} steps" in text
    assert "for 'batch' rows, where every attack perturbs every example of each fixed batch, the fast suite" in text
    data["config"]["batch_suite"] = None  # one suite for every row: named once
    text = "\n".join(section(report.results_markdown(data), "Accuracy"))
    assert "pgd and the medium suite (" in text and "fast suite" not in text


def test_results_markdown_flags_models_below_the_expected_clean_accuracy():
    data = results()
    assert "expected" not in report.results_markdown(data)  # no expectation: no section
    data["config"]["expected_clean_accuracy"] = 0.95
    data["not_converged"] = ["bn seed 1: clean 80.0% < 95%"]
    flagged = section(report.results_markdown(data), "Models below the expected 95% clean test accuracy (kept in the means, flagged)")
    assert "- bn seed 1: clean 80.0% < 95%" in flagged
    data["not_converged"] = []
    assert "None: every model reached it." in report.results_markdown(data)


def test_architectures_side_by_side_one_cell_per_run_and_a_dash_where_not_attacked():
    small, other = results(), results()
    other["config"] = {**other["config"], "model": "resnet8"}
    other["summary"] = [row for row in other["summary"] if row["variant"] != "rn / running"]  # a row only one run has
    text = report.architectures_markdown([small, other], columns=("clean", "pgd@0.1", "suite@0.3"))
    lines = text.splitlines()
    assert lines[0] == ("| norm / eval statistics | clean small-cnn | clean resnet8 | pgd@0.1 small-cnn | pgd@0.1 resnet8 "
                        "| suite@0.3 small-cnn | suite@0.3 resnet8 |")
    bn = next(line for line in lines if line.startswith("| bn / running"))
    row = next(r for r in small["summary"] if r["variant"] == "bn / running")
    clean, pgd = report._cell(row["clean"]), report._cell(row["pgd@0.1"])
    assert bn == f"| bn / running | {clean} | {clean} | {pgd} | {pgd} | – | – |"   # suite@0.3 was never attacked
    rn = next(line for line in lines if line.startswith("| rn / running"))
    assert rn.split(" | ")[2] == "–"   # the other run has no such row
