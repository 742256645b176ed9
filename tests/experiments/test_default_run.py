"""The committed runs' shipped models (docs/default-run/models, and the ResNet-8 preset's in
docs/authors-mnist/models) are the ones their results.json describe."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import serialization
from minirn.data import load_dataset
from minirn.experiments import default_model_file, default_models, default_results
from minirn.experiments.config import ReproduceConfig, preset_config
from minirn.experiments.reproduce import _train_job
from minirn.experiments.workers import map_jobs
from minirn.train import predict

RUNS = ["default", "authors-mnist"]


@pytest.fixture(scope="module")
def results():
    return default_results()


@pytest.mark.parametrize("name", RUNS)
def test_every_run_of_results_json_has_its_model_and_nothing_else(name):
    results = default_results(name)
    config = results["config"]
    assert {(r["norm"], r["seed"]) for r in results["runs"]} == {
        (norm, seed) for norm in config["norms"] for seed in range(config["seeds"])}
    models = default_models(run=name)
    assert list(models) == config["norms"] and all(len(m) == config["seeds"] for m in models.values())
    for run in results["runs"]:
        _, meta = serialization.read_model(default_model_file(run["norm"], run["seed"], name))
        assert (meta["norm"], meta["seed"], meta["model"], meta["dataset"]) == (
            run["norm"], run["seed"], config["model"], config["dataset"])
        assert (meta["lr"], meta["epochs"], meta["init"]) == (run["recipe"]["lr"], run["recipe"]["epochs"], run["recipe"]["init"])


@pytest.mark.parametrize("name", RUNS)
def test_each_shipped_model_has_the_test_accuracy_results_json_records(name):
    results = default_results(name)
    data = load_dataset(results["config"]["dataset"])
    models = default_models(run=name)
    for run in results["runs"]:
        model = models[run["norm"]][run["seed"]]
        accuracy = float(np.mean(predict(model, data.x_test) == data.y_test))
        assert accuracy == run["test_acc"], (run["norm"], run["seed"])


def test_retraining_a_shipped_model_through_reproduce_gives_the_same_weights(tmp_path, results):
    """reproduce's own training job, in a worker process as in the run, rebuilds bn seed 1 bit for bit."""
    config = ReproduceConfig(out=str(tmp_path))
    assert list(config.norms) == results["config"]["norms"] and config.seeds == results["config"]["seeds"]
    (state, record), = map_jobs(_train_job, [(config, "bn", 1, config.recipe("bn"))], workers=1)
    shipped, _ = serialization.read_model(default_model_file("bn", 1))
    assert sorted(state) == sorted(shipped)
    for name in shipped:
        np.testing.assert_array_equal(state[name], shipped[name], err_msg=name)
    assert record["test_acc"] == next(r["test_acc"] for r in results["runs"] if (r["norm"], r["seed"]) == ("bn", 1))


def test_the_authors_preset_models_are_resnet8_on_standardised_pixels_and_retrain_bit_for_bit(tmp_path):
    """The preset's BatchNorm seed 0, retrained by reproduce's own job in a worker process: the same weights."""
    results = default_results("authors-mnist")
    assert (results["config"]["preset"], results["config"]["model"]) == ("authors-mnist", "resnet8")
    _, meta = serialization.read_model(default_model_file("bn", 0, "authors-mnist"))
    assert meta["input_normalization"] == {"mean": [0.1307], "std": [0.3081]}
    config = preset_config("authors-mnist", out=str(tmp_path))
    (state, record), = map_jobs(_train_job, [(config, "bn", 0, config.recipe("bn"))], workers=1)
    shipped, _ = serialization.read_model(default_model_file("bn", 0, "authors-mnist"))
    assert sorted(state) == sorted(shipped)
    for name in shipped:
        np.testing.assert_array_equal(state[name], shipped[name], err_msg=name)
    assert record["test_acc"] == next(r["test_acc"] for r in results["runs"] if (r["norm"], r["seed"]) == ("bn", 0))


def test_every_authors_preset_model_reached_95_percent_or_is_flagged():
    results = default_results("authors-mnist")
    below = [f"{r['norm']} seed {r['seed']}" for r in results["runs"] if r["test_acc"] < 0.95]
    assert [line.split(":")[0] for line in results["not_converged"]] == below


def test_unknown_norms_and_seeds_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"no model for \['gn', 5\]"):
        default_models(norms=["gn"], seeds=[5])
