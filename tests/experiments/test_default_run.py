"""The default run's shipped models (docs/default-run/models) are the ones its results.json describes."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import serialization
from minirn.data import load_dataset
from minirn.experiments import default_model_file, default_models, default_results
from minirn.experiments.config import ReproduceConfig
from minirn.experiments.reproduce import _train_job
from minirn.experiments.workers import map_jobs
from minirn.train import predict


@pytest.fixture(scope="module")
def results():
    return default_results()


def test_every_run_of_results_json_has_its_model_and_nothing_else(results):
    config = results["config"]
    assert {(r["norm"], r["seed"]) for r in results["runs"]} == {
        (norm, seed) for norm in config["norms"] for seed in range(config["seeds"])}
    models = default_models()
    assert list(models) == config["norms"] and all(len(m) == config["seeds"] for m in models.values())
    for run in results["runs"]:
        _, meta = serialization.read_model(default_model_file(run["norm"], run["seed"]))
        assert (meta["norm"], meta["seed"], meta["model"], meta["dataset"]) == (
            run["norm"], run["seed"], config["model"], config["dataset"])
        assert (meta["lr"], meta["epochs"], meta["init"]) == (run["recipe"]["lr"], run["recipe"]["epochs"], run["recipe"]["init"])


def test_each_shipped_model_has_the_test_accuracy_results_json_records(results):
    data = load_dataset(results["config"]["dataset"])
    models = default_models()
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


def test_unknown_norms_and_seeds_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"no model for \['gn', 5\]"):
        default_models(norms=["gn"], seeds=[5])
