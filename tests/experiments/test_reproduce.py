"""``minirn reproduce --quick`` end to end (minirn/experiments/reproduce.py): outputs, records, summary,
sanity checks on every model and variant, worker processes, ``--resume`` and a refused folder."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from scipy import stats

from minirn import cli, runs, serialization
from minirn.attacks import madry_step_size, pgd
from minirn.attacks.suite import stronger_suite
from minirn.data import load_dataset
from minirn.experiments import report, reproduce
from minirn.experiments.config import ReproduceConfig, quick_config
from minirn.experiments.norm_stats import statistics_shift_with_control
from minirn.nn import Linear, set_norm_eval_stats

# --suite-eps 0.3: the suite attacks one budget, so the 0.1 columns come from the plain evaluation ("others")
# --sanity-examples 24: fewer than the 48 attacked images, so the sanity checks' own sample size is visible
ARGV = ["reproduce", "--quick", "--seeds", "2", "--epochs", "1", "--eval-examples", "48", "--sanity-examples", "24",
        "--suite-eps", "0.3", "--no-progress"]
QUICK = dict(seeds=2, epochs=1, eval_examples=48, sanity_examples=24, suite_eps=(0.3,), progress=False)
#: eval statistics -> the label's second half, written out here rather than taken from report.EVAL_LABELS
LABELS = {None: "-", ("running", "running"): "running", ("batch", "batch"): "batch"}
EXPECTED_VARIANTS = {"none": [None], "bn": [["running", "running"], ["batch", "batch"]],
                     "rn": [["running", "running"], ["batch", "batch"]]}


def _run(out, *extra):
    assert cli.main([*ARGV, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def _mtimes(out):
    folder = out / "checkpoints"
    return {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}


def _label(run, variant):
    stats_ = None if variant["eval_stats"] is None else tuple(variant["eval_stats"])
    return f"{run['norm']} / {LABELS[stats_]}"


def _variants(results):
    return [(run, variant) for run in results["runs"] for variant in run["variants"]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished quick run in one process: (output folder, results.json, the config it should record)."""
    out = tmp_path_factory.mktemp("reproduce-w1")
    results = _run(out, "--workers", "1")
    return out, results, quick_config(**QUICK, workers=1, out=str(out))


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """The same run in two worker processes."""
    return _run(tmp_path_factory.mktemp("reproduce-w2"), "--workers", "2")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# --- outputs --------------------------------------------------------------------------------------------------
def test_every_promised_output_exists(finished):
    out, results, _ = finished
    for name in ("results.json", "results.md", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    names = [os.path.basename(path) for path in results["figures"]]
    assert {"accuracy_vs_eps.png", "training_curves.png", "examples.png"} <= set(names)
    for path in results["figures"]:
        assert os.path.dirname(path) == str(out)
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000, path
    assert sorted(_mtimes(out)) == sorted(f"{norm}-seed{seed}.npz" for norm in ("none", "bn", "rn") for seed in (0, 1))


def test_run_json_is_the_manifest_of_this_configuration(finished):
    out, _, config = finished
    manifest = json.loads((out / "run.json").read_text())
    assert manifest == {"config": runs.run_settings(config)}
    assert not set(runs.IGNORED) & set(manifest["config"]) and "out" in runs.IGNORED
    assert manifest["config"]["epochs"] == 1 and manifest["config"]["suite_eps"] == [0.3]


def test_checkpoints_record_their_model(finished):
    out, _, _ = finished
    for norm in ("none", "bn", "rn"):
        for seed in (0, 1):
            _, meta = serialization.read_model(out / "checkpoints" / f"{norm}-seed{seed}.npz")
            assert (meta["norm"], meta["seed"], meta["dataset"], meta["epochs"]) == (norm, seed, "digits", 1)
            assert meta["validation"] == 100  # quick_config's held-out images


# --- the recorded configuration ---------------------------------------------------------------------------------
def test_results_record_every_config_field_with_the_quick_values(finished):
    _, results, config = finished
    recorded = results["config"]
    assert set(recorded) == {f.name for f in dataclasses.fields(ReproduceConfig)}
    assert recorded == json.loads(json.dumps(dataclasses.asdict(config)))
    # the values --quick and the options above set, spelled out
    assert recorded["dataset"] == "digits" and recorded["quick"] is True and recorded["full"] is False
    assert (recorded["seeds"], recorded["epochs"], recorded["eval_examples"], recorded["sanity_examples"]) == (2, 1, 48, 24)
    assert recorded["eps"] == [0.1, 0.3] and recorded["suite_eps"] == [0.3] and recorded["suite"] == "smoke"
    assert recorded["workers"] == 1 and recorded["progress"] is False
    assert results["eval_examples"] == 48 and results["eval_batch_size"] == recorded["eval_batch_size"]


def test_recipes_are_recorded_per_norm_with_their_source(finished):
    _, results, config = finished
    assert list(results["recipes"]) == ["none", "bn", "rn"]
    for norm, recorded in results["recipes"].items():
        recipe, source = config.recipe(norm)
        assert recorded == {**json.loads(json.dumps(dataclasses.asdict(recipe))), "source": source}
        assert recorded["epochs"] == 1 and "overridden: epochs=1" in recorded["source"]
    for run in results["runs"]:
        assert run["recipe"] == results["recipes"][run["norm"]]


# --- budgets ----------------------------------------------------------------------------------------------------
def test_budgets_in_the_authors_units_for_mnist():
    budgets = reproduce.budgets(ReproduceConfig(eps=(0.005, 0.02, 0.05), suite_eps=(0.02, 0.05)))
    assert [b["eps"] for b in budgets] == [0.005, 0.02, 0.05]
    # ε / 0.3081 (MNIST's std): 0.016228..., 0.064914..., 0.162285...
    assert [b["normalised"] for b in budgets] == pytest.approx([0.01623, 0.06491, 0.16229], abs=1e-4)
    assert [b["suite"] for b in budgets] == [False, True, True]


def test_budgets_of_digits_have_no_authors_units():
    budgets = reproduce.budgets(ReproduceConfig(dataset="digits", eps=(0.1, 0.3), suite_eps=None, batch_suite_eps=None))
    assert budgets == [{"eps": 0.1, "normalised": None, "suite": True, "batch_suite": True},
                       {"eps": 0.3, "normalised": None, "suite": True, "batch_suite": True}]


def test_the_default_run_attacks_enough_budgets_for_a_curve():
    """FGSM and PGD at ≥ 5 budgets from 0.005 to 0.1 (0.01, 0.02, 0.03 among them), the suite at ≥ 4 for the
    batch-independent rows and ≥ 2 for the 'batch' rows, the headline 0.05 among all of them."""
    config = ReproduceConfig()
    assert len(config.eps) >= 5 and min(config.eps) == 0.005 and max(config.eps) == 0.1
    assert {0.01, 0.02, 0.03} <= set(config.eps)
    assert len(config.suite_budgets()) >= 4 and len(config.suite_budgets(batch_dependent=True)) >= 2
    assert config.headline_eps() == 0.05 and 0.05 in config.suite_budgets(batch_dependent=True)
    budgets = reproduce.budgets(config)
    assert [b["eps"] for b in budgets if b["batch_suite"]] == [0.03, 0.05]


@pytest.mark.parametrize("batch_suite_eps", [(0.03,), (0.03, 0.07)])
def test_batch_suite_budgets_must_hold_the_headline_and_be_attacked(batch_suite_eps):
    with pytest.raises(ValueError, match="--batch-suite-eps"):
        ReproduceConfig(batch_suite_eps=batch_suite_eps).validate()


def test_results_record_the_run_budgets(finished):
    _, results, _ = finished
    assert results["budgets"] == [{"eps": 0.1, "normalised": None, "suite": False, "batch_suite": False},
                                  {"eps": 0.3, "normalised": None, "suite": True, "batch_suite": True}]


# --- per variant ------------------------------------------------------------------------------------------------
def test_every_model_has_every_eval_statistics_variant(finished):
    _, results, _ = finished
    assert [(r["norm"], r["seed"]) for r in results["runs"]] == [(n, s) for n in ("none", "bn", "rn") for s in (0, 1)]
    for run in results["runs"]:
        assert [v["eval_stats"] for v in run["variants"]] == EXPECTED_VARIANTS[run["norm"]]


def test_accuracy_columns_are_the_raw_suite_and_evaluation_results(finished):
    _, results, _ = finished
    for _, variant in _variants(results):
        acc, suite, others = variant["accuracy"], variant["suite"], variant["others"]
        assert set(acc) == {"clean", "fgsm@0.1", "fgsm@0.3", "pgd@0.1", "pgd@0.3", "worst@0.1", "worst@0.3",
                            "suite@0.3", "realisable@0.3"}
        assert suite["eps"] == [0.3] and others["eps"] == [0.1]
        assert acc["clean"] == suite["clean_accuracy"] == others["clean_accuracy"]
        for attack in ("fgsm", "pgd"):
            assert acc[f"{attack}@0.3"] == suite["attack_accuracy"][attack][0]   # a suite ε
            assert acc[f"{attack}@0.1"] == others["accuracy"][attack][0]         # an ε the suite does not attack
        assert acc["worst@0.3"] == suite["extra_worst_accuracy"][0]
        assert acc["worst@0.1"] == others["worst_case_accuracy"][0]
        assert acc["suite@0.3"] == suite["robust_accuracy"][0]
        assert acc["realisable@0.3"] == suite["realisable_accuracy"][0]
        assert suite["config"]["extra_attacks"] == ["fgsm", "pgd"]


def test_worst_cases_are_never_weaker_than_the_attacks_they_contain(finished):
    _, results, _ = finished
    for run, variant in _variants(results):
        acc, where = variant["accuracy"], (run["norm"], run["seed"], variant["eval_stats"])
        for eps in ("0.1", "0.3"):
            assert acc[f"worst@{eps}"] <= min(acc[f"fgsm@{eps}"], acc[f"pgd@{eps}"]) <= acc["clean"], where
        assert acc["suite@0.3"] <= acc["worst@0.3"], where
        # the per-example worst case is at most what one submitted batch realises, at most the clean batch
        assert acc["suite@0.3"] <= acc["realisable@0.3"] <= acc["clean"], where
        # a bigger budget never helps the model
        assert acc["worst@0.3"] <= acc["worst@0.1"] + 1 / 48, where


def test_realisable_equals_robust_without_batch_statistics(finished):
    _, results, _ = finished
    for _, variant in _variants(results):
        uses_batch = variant["eval_stats"] == ["batch", "batch"]
        assert variant["suite"]["config"]["batch_statistics"] is uses_batch
        if not uses_batch:
            assert variant["suite"]["realisable_accuracy"] == variant["suite"]["robust_accuracy"]


# --- sanity checks ----------------------------------------------------------------------------------------------
def test_sanity_checks_run_on_every_model_and_variant(finished):
    _, results, config = finished
    seen = []
    for run, variant in _variants(results):
        sanity = variant["sanity"]
        seen.append((run["norm"], run["seed"], variant["eval_stats"]))
        assert sanity["config"]["eps"] == config.headline_eps() == 0.3
        assert sanity["config"]["n_examples"] == 24 and sanity["config"]["steps"] == config.pgd_steps
        assert sanity["config"]["square_queries"] == config.sanity_square_queries
        assert sanity["config"]["seed"] == run["seed"]
        assert len(sanity["checks"]) == 11
        # the convergence check tests the reported suite result (its first 24 examples at the headline ε) with the
        # next stronger suite; PGD's own convergence is a finding beside it
        check = sanity["checks"]["suite_converged"]
        k = variant["suite"]["eps"].index(0.3)
        assert check["reported_accuracy"] == pytest.approx(np.mean(variant["suite"]["per_example"][k][:24]))
        assert check["stronger_suite"] == stronger_suite(variant["suite_name"]) and check["examples"] == 24
        assert "more_steps_and_restarts_change_little" not in sanity["checks"]
        assert sanity["findings"]["pgd_against_the_suite"]["suite_accuracy"] == check["reported_accuracy"]
        transfer = sanity["checks"]["stronger_than_transfer"]   # two seeds: the other seed's model is the source
        assert transfer["passed"] is not None and "transfer_accuracy" in transfer, seen[-1]
        assert sanity["passed"] == all(c["passed"] is not False for c in sanity["checks"].values())
    assert seen == [(n, s, v) for n in ("none", "bn", "rn") for s in (0, 1) for v in EXPECTED_VARIANTS[n]]


def test_sanity_failures_list_exactly_the_variants_with_a_failed_check(finished):
    _, results, _ = finished
    expected = []
    for run, variant in _variants(results):
        failed = [name for name, check in variant["sanity"]["checks"].items() if check["passed"] is False]
        if failed:
            expected.append(f"{_label(run, variant)} seed {run['seed']}: {', '.join(failed)}")
    assert results["sanity_failures"] == expected
    markdown = (finished[0] / "results.md").read_text()
    for line in expected:
        assert f"- FAILED {line}" in markdown
    if not expected:
        assert "All passed." in markdown


# --- did the model learn ----------------------------------------------------------------------------------------
def test_a_model_that_predicts_one_class_did_not_learn(digits):
    model = ReproduceConfig(dataset="digits").build_model("bn", 1, digits.num_classes)
    last = [m for m in model.modules() if isinstance(m, Linear)][-1]
    last.weight.data = last.weight.data * 0.0
    last.bias.data = last.bias.data * 0.0           # every logit 0: argmax is class 0 for every image
    x, y = digits.x_test[:100], digits.y_test[:100]
    verdict = reproduce.learned(model.eval(), x, y, digits.num_classes)
    assert verdict["passed"] is False and verdict["predicted_classes"] == 1
    assert verdict["accuracy"] == pytest.approx(np.mean(np.asarray(y) == 0))
    assert "one class" in verdict["why"]


def test_learned_records_agree_with_the_clean_accuracy(finished):
    _, results, _ = finished
    for run in results["runs"]:
        running = run["variants"][0]          # None or ("running", "running"): the model's own eval mode
        verdict = run["learned"]
        assert verdict["accuracy"] == pytest.approx(running["accuracy"]["clean"])
        assert verdict["passed"] == (verdict["accuracy"] > 0.15 and verdict["predicted_classes"] > 1)
        assert verdict["passed"] or verdict["why"]
    assert results["not_learned"] == [f"{r['norm']} seed {r['seed']}" for r in results["runs"]
                                      if not r["learned"]["passed"]]


def _accuracy_run(norm, seed, clean, passed=True):
    return {"norm": norm, "seed": seed, "learned": {"passed": passed},
            "variants": [{"eval_stats": ["running", "running"], "accuracy": {"clean": clean, "pgd@0.1": clean / 2}}]}


def test_a_run_that_did_not_learn_is_left_out_of_the_summary():
    runs_ = [_accuracy_run("bn", 0, 0.8), _accuracy_run("bn", 1, 0.1, passed=False), _accuracy_run("bn", 2, 0.6)]
    (row,) = report.summarize(runs_, ["pgd"], [0.1], "small-cnn")
    assert row["excluded"] == [1] and row["seed_ids"] == [0, 2] and row["seeds"] == 2
    assert row["clean"] == pytest.approx([0.7, np.std([0.8, 0.6], ddof=1)])
    assert row["per_seed"]["pgd@0.1"] == pytest.approx([0.4, 0.3])
    table = report.markdown_table([row], ["pgd"], [0.1], batch_size=48)
    (line,) = [line for line in table.splitlines() if "did not learn" in line]
    assert "bn / running seed(s) 1" in line


# --- summary ----------------------------------------------------------------------------------------------------
def test_summary_is_mean_std_and_t_interval_over_the_seeds_that_learned(finished):
    _, results, _ = finished
    by_label = {}
    for run, variant in _variants(results):
        by_label.setdefault(_label(run, variant), []).append((run, variant))
    summary = results["summary"]
    assert [row["variant"] for row in summary] == list(by_label)
    for row in summary:
        members = by_label[row["variant"]]
        kept = [(r, v) for r, v in members if r["learned"]["passed"]]
        assert row["seed_ids"] == [r["seed"] for r, _ in kept] and row["seeds"] == len(kept)
        assert row["excluded"] == [r["seed"] for r, _ in members if not r["learned"]["passed"]]
        assert row["model"] == "small-cnn"
        for col in members[0][1]["accuracy"]:
            values = np.array([v["accuracy"][col] for _, v in kept])
            assert row["per_seed"][col] == pytest.approx(list(values)), (row["variant"], col)
            if len(values) == 0:
                assert row[col] is None
                continue
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            assert row[col] == pytest.approx([float(np.mean(values)), std]), (row["variant"], col)
            interval = stats.t.ppf(0.975, len(values) - 1) * std / np.sqrt(len(values)) if len(values) > 1 else 0.0
            assert row["ci95"][col] == pytest.approx(interval, rel=1e-3, abs=1e-12), (row["variant"], col)


# --- the robustness curve and the statistics shift --------------------------------------------------------------
def test_seed_0_records_the_robustness_curve_at_the_headline_eps(finished):
    _, results, config = finished
    for run in results["runs"]:
        for h in run["history"]:
            if run["seed"] == 0:
                assert h["curve_eps"] == config.headline_eps() == 0.3
                assert h["curve_robust_acc"] <= h["curve_clean_acc"]
                assert 48 * h["curve_clean_acc"] == pytest.approx(round(48 * h["curve_clean_acc"]))  # 48 images
            else:
                assert not {"curve_clean_acc", "curve_robust_acc", "curve_eps"} & set(h)
        assert [h["epoch"] for h in run["history"]] == [1]


def test_statistics_shift_only_for_norms_with_running_statistics(finished):
    _, results, _ = finished
    for run in results["runs"]:
        if run["norm"] == "none":
            assert "statistics_shift" not in run
            continue
        shift = run["statistics_shift"]
        assert set(shift) == {"eps", "layers", "summary"} and shift["eps"] == 0.3
        kind = {"bn": "BatchNorm2d", "rn": "RobustNorm2d"}[run["norm"]]
        assert shift["layers"] and all(layer["kind"] == kind for layer in shift["layers"])
        assert set(shift["summary"]) == {"attack", "noise"}


def test_statistics_shift_is_statistics_shift_with_control_of_the_checkpoint(finished, digits):
    out, results, config = finished
    (record,) = [r for r in results["runs"] if (r["norm"], r["seed"]) == ("bn", 1)]
    model = serialization.load_model(out / "checkpoints" / "bn-seed1.npz")
    set_norm_eval_stats(model, "running", "running")
    n, eps, steps = config.eval_batch_size, 0.3, config.pgd_steps
    x, y = digits.x_test[:n], digits.y_test[:n]
    x_adv = pgd(model, x, y, eps, madry_step_size(eps, steps), steps, loss="margin", seed=1)
    expected = json.loads(json.dumps(statistics_shift_with_control(model, x, x_adv, eps, seed=1)))
    for source in ("attack", "noise"):
        assert record["statistics_shift"]["summary"][source] == pytest.approx(expected["summary"][source]), source
    assert [layer["layer"] for layer in record["statistics_shift"]["layers"]] == [layer["layer"] for layer in expected["layers"]]


# --- markdown ---------------------------------------------------------------------------------------------------
def test_results_md_is_the_report_of_results_json(finished):
    out, _, _ = finished
    written = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text() == report.results_markdown(written)
    for name in written["not_learned"]:
        assert f"- {name}" in written["markdown"]


# --- worker processes -------------------------------------------------------------------------------------------
def test_two_workers_give_the_same_numbers_as_one(finished, two_workers):
    _, one, _ = finished
    assert [(r["norm"], r["seed"]) for r in two_workers["runs"]] == [(r["norm"], r["seed"]) for r in one["runs"]]
    for a, b in zip(one["runs"], two_workers["runs"]):
        drop = ("seconds",)
        assert [{k: v for k, v in h.items() if k not in drop} for h in a["history"]] == \
               [{k: v for k, v in h.items() if k not in drop} for h in b["history"]], (a["norm"], a["seed"])
        assert a["learned"] == b["learned"]
        assert a.get("statistics_shift") == b.get("statistics_shift")
        for va, vb in zip(a["variants"], b["variants"]):
            assert va["accuracy"] == vb["accuracy"], (a["norm"], a["seed"], va["eval_stats"])
            assert va["sanity"]["checks"] == vb["sanity"]["checks"], (a["norm"], a["seed"], va["eval_stats"])
    assert one["sanity_failures"] == two_workers["sanity_failures"]
    assert one["summary"] == two_workers["summary"]


# --- resume and a folder of another configuration ---------------------------------------------------------------
@pytest.fixture(scope="module")
def resumed(finished, tmp_path_factory):
    """The finished run copied (mtimes kept) and resumed: (folder, before, after, mtimes before)."""
    source, before, _ = finished
    out = tmp_path_factory.mktemp("reproduce-resume") / "run"
    shutil.copytree(source, out)
    mtimes = _mtimes(out)
    return out, before, _run(out, "--workers", "1", "--resume"), mtimes


def test_resume_of_a_finished_run_reuses_its_checkpoints(resumed):
    out, before, after, mtimes = resumed
    assert _mtimes(out) == mtimes                     # no epoch trained again, no checkpoint rewritten
    for a, b in zip(before["runs"], after["runs"]):
        assert b["history"] == a["history"]           # seconds included: read back from the checkpoint
        assert [v["accuracy"] for v in b["variants"]] == [v["accuracy"] for v in a["variants"]]
    assert after["summary"] == before["summary"]


def test_another_configuration_in_the_same_folder_is_refused(finished, tmp_path, capsys):
    source, _, _ = finished
    out = tmp_path / "run"
    shutil.copytree(source, out)
    results_before = (out / "results.json").read_bytes()
    capsys.readouterr()
    argv = list(ARGV)
    argv[argv.index("--epochs") + 1] = "2"
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("minirn reproduce: error:") and "epochs 1 there, 2 here" in err
    assert "seeds" not in err                         # only the setting that differs is named
    assert (out / "results.json").read_bytes() == results_before


@pytest.mark.parametrize("eval_stats, batch_dependent", [(("running", "running"), False), (("batch", "batch"), True)])
def test_batch_statistics_rows_are_attacked_with_the_batch_suite(monkeypatch, eval_stats, batch_dependent):
    """``suite`` for a model independent of the batch, ``batch_suite`` for one normalising with batch statistics:
    the suite actually called, and the name recorded in the variant."""
    config = quick_config(**{**QUICK, "eval_examples": 16, "sanity_examples": 8}, workers=1, suite="medium",
                          batch_suite="fast")
    data = load_dataset(config.dataset)
    state = config.build_model("bn", data.x_train.shape[1], data.num_classes).state_dict()
    called = []
    real = reproduce.robust_accuracy

    def spy(model, *args, suite, **kwargs):
        called.append(suite)
        return real(model, *args, suite="smoke", **kwargs)  # the name is what is tested; smoke keeps it quick

    monkeypatch.setattr(reproduce, "robust_accuracy", spy)
    variant, _ = reproduce._evaluate_job(config, "bn", 0, eval_stats, state, None)
    expected = "fast" if batch_dependent else "medium"
    assert called == [expected] and variant["suite_name"] == expected


def test_one_suite_for_every_row_when_batch_suite_is_none():
    config = ReproduceConfig(suite="standard", batch_suite=None)
    assert config.suite_for(True) == config.suite_for(False) == "standard"
    assert ReproduceConfig().suite_for(True) == "fast" and ReproduceConfig().suite_for(False) == "medium"


def test_test_accuracy_is_measured_once_after_training(finished):
    """No per-epoch test accuracy (nothing may be chosen by it); the final one is the saved model's, on every test image."""
    from minirn import load_model
    from minirn.train import accuracy

    out, results, config = finished
    data = load_dataset(config.dataset)
    for run in results["runs"]:
        assert all("test_acc" not in h and "val_acc" in h for h in run["history"])
        model = load_model(str(out / "checkpoints" / f"{run['norm']}-seed{run['seed']}.npz"))
        assert run["test_acc"] == accuracy(model, data.x_test, data.y_test)
