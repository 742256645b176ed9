"""``minirn reproduce --quick`` end to end, and ``--resume`` of a finished run (minirn/experiments/reproduce.py)."""
import dataclasses
import json
import os

import pytest

import minirn
from minirn import cli
from minirn.experiments import report
from minirn.experiments.reproduce import EVAL_VARIANTS, ReproduceConfig
from minirn.nn import EVAL_STATISTICS

ARGV = ["reproduce", "--quick", "--seeds", "1", "--epochs", "1", "--eval-examples", "48", "--no-progress"]
FIGURES = ["accuracy_vs_eps.png", "training_curves.png", "statistics_shift.png", "examples.png"]
HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished quick run: (output folder, results.json, {checkpoint: mtime})."""
    out = tmp_path_factory.mktemp("reproduce")
    assert cli.main([*ARGV, "--out", str(out)]) == 0
    checkpoints = out / "checkpoints"
    mtimes = {name: os.stat(checkpoints / name).st_mtime_ns for name in os.listdir(checkpoints)}
    return out, json.loads((out / "results.json").read_text()), mtimes


def test_every_promised_output_exists(finished):
    out, results, mtimes = finished
    for name in ["results.json", "results.md", *FIGURES]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert sorted(mtimes) == ["bn-seed0.npz", "none-seed0.npz", "rn-seed0.npz"]
    assert sorted(os.path.basename(p) for p in results["figures"]) == sorted(FIGURES)


def test_results_json_records_the_configuration_and_versions(finished):
    _, results, _ = finished
    config = results["config"]
    assert set(config) == {f.name for f in dataclasses.fields(ReproduceConfig)}  # every hyper-parameter
    assert config["quick"] is True and config["dataset"] == "digits" and config["seeds"] == 1
    assert config["eval_examples"] == 48 and config["eps"] == [0.1, 0.3] and config["epochs"] == 1
    for key in ("lr", "momentum", "weight_decay", "batch_size", "p", "attacks", "norms"):  # not changed by --quick
        assert config[key] == json.loads(json.dumps(getattr(ReproduceConfig(), key))), key
    assert config["pgd_steps"] >= 1 and config["eval_batch_size"] >= 1 and config["sanity_examples"] >= 1
    assert results["versions"]["minirn"] == minirn.__version__
    assert {"python", "numpy", "platform"} <= set(results["versions"])
    assert results["eval_examples"] == 48 and results["eval_batch_size"] == config["eval_batch_size"]
    assert results["seconds"] > 0


def test_runs_hold_history_and_every_evaluation_variant(finished):
    _, results, _ = finished
    config = results["config"]
    columns = report.columns(config["attacks"], config["eps"])
    assert [(r["norm"], r["seed"]) for r in results["runs"]] == [("none", 0), ("bn", 0), ("rn", 0)]
    for run in results["runs"]:
        assert [h["epoch"] for h in run["history"]] == [1]
        assert all(set(h) == HISTORY_KEYS for h in run["history"])
        chosen = [v for v in EVAL_STATISTICS if v.name in config["eval_variants"]]
        expected = [None] if run["norm"] == "none" else [list(v.setting) for v in chosen]
        assert EVAL_VARIANTS == tuple(v.setting for v in EVAL_STATISTICS)
        assert [v["eval_stats"] for v in run["variants"]] == expected
        for variant in run["variants"]:
            assert list(variant["accuracy"]) == columns
            evaluation = variant["evaluation"]
            assert evaluation["config"]["batch_size"] == config["eval_batch_size"]
            assert evaluation["config"]["n_examples"] == 48
            assert evaluation["config"]["norm_eval_stats"] == variant["eval_stats"]
            assert variant["accuracy"]["clean"] == evaluation["clean_accuracy"]
            assert variant["accuracy"]["pgd@0.3"] == evaluation["accuracy"]["pgd"][1]
            for eps in config["eps"]:  # the suite's worst case is never weaker than the attacks it contains
                acc = variant["accuracy"]
                assert acc[f"suite@{eps:g}"] <= acc[f"worst@{eps:g}"] <= min(acc[f"{a}@{eps:g}"] for a in config["attacks"])
                assert acc[f"worst@{eps:g}"] <= acc["clean"]
            suite = variant["suite"]
            assert suite["config"]["batch_statistics"] == (variant["eval_stats"] == ["batch", "batch"])
            if not suite["config"]["batch_statistics"]:
                assert suite["realisable_accuracy"] == suite["robust_accuracy"]
        if run["norm"] == "none":
            assert "statistics_shift" not in run
        else:  # finding 1: one row per norm layer of small_cnn
            assert len(run["statistics_shift"]) == 3
            assert {"layer", "kind", "clean_mean_shift", "adversarial_mean_shift", "clean_scale_ratio",
                    "adversarial_scale_ratio"} <= set(run["statistics_shift"][0])
        assert run["train_seconds"] > 0 and run["eval_seconds"] > 0


def test_summary_rows_and_sanity_checks(finished):
    _, results, _ = finished
    config = results["config"]
    columns = report.columns(config["attacks"], config["eps"])
    summary = results["summary"]
    names = {"running": "running", "batch": "batch", "running-mean": "running mean, batch scale"}
    labels = ["none / -"] + [f"{norm} / {names[v]}" for norm in ("bn", "rn") for v in config["eval_variants"]]
    assert [row["variant"] for row in summary] == labels
    variants = [(run, v) for run in results["runs"] for v in run["variants"]]
    for row, (_, variant) in zip(summary, variants):
        assert row["seeds"] == 1 and row["model"] == "small-cnn"
        for col in columns:
            assert row[col] == [variant["accuracy"][col], 0.0]  # one seed: mean = the value, std = 0
    assert set(results["sanity_checks"]) == {"none", "bn", "rn"}
    for checks in results["sanity_checks"].values():
        assert isinstance(checks["passed"], bool) and checks["checks"]


def test_markdown_table_has_one_row_per_variant(finished):
    out, results, _ = finished
    lines = (out / "results.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| small-cnn |")][: len(results["summary"])]
    assert [r.split("|")[2].strip() for r in rows] == [row["variant"] for row in results["summary"]]
    header = next(line for line in lines if line.startswith("| model |"))
    assert header.count("|") - 1 == 2 + len(report.columns(results["config"]["attacks"], results["config"]["eps"], table=True))
    assert all(r.count("±") == header.count("|") - 3 for r in rows)


def test_resume_of_a_finished_run_reuses_its_checkpoints(finished, tmp_path):
    out, results, mtimes = finished
    assert cli.main([*ARGV, "--out", str(out), "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    for name, mtime in mtimes.items():  # no epoch was trained again, so no checkpoint was rewritten
        assert os.stat(out / "checkpoints" / name).st_mtime_ns == mtime
    for before, after in zip(results["runs"], resumed["runs"]):
        assert after["history"] == before["history"]  # seconds included: read from the checkpoint
        assert after["train_seconds"] < before["train_seconds"]
    assert resumed["summary"] == results["summary"]
