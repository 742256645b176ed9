"""Tests of minirn/runs.py: a folder or checkpoint belongs to one configuration, and resuming keeps the run exact."""
import dataclasses
import json

import numpy as np
import pytest

import minirn
from minirn import models, runs
from minirn.data import load_dataset
from minirn.experiments.config import ReproduceConfig, quick_config
from minirn.serialization import CheckpointError
from minirn.train import AdversarialTraining, Recipe, train_model


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8x8 digits and a small slice of them: (dataset, (x, y) 256 train, (x, y) 64 test)."""
    data = load_dataset("digits")
    return data, (data.x_train[:256], data.y_train[:256]), (data.x_test[:64], data.y_test[:64])


def meta_of(data, recipe, seed=0, **overrides):
    return runs.model_meta(data, recipe, **{"model": "small-cnn", "norm": "bn", "p": 0.2, "seed": seed, **overrides})


# --- the settings a run records ------------------------------------------------------------------------------
def test_run_settings_drop_what_does_not_change_results():
    settings = runs.run_settings(ReproduceConfig(out="elsewhere", device="cpu", progress=False, resume=True))
    assert not set(runs.IGNORED) & set(settings)
    assert settings["minirn_version"] == minirn.__version__
    assert settings["norms"] == list(ReproduceConfig().norms)  # JSON values: they compare equal after a round trip
    assert settings == runs.run_settings(ReproduceConfig(out="results", progress=True, data_root="/data"))


def test_model_meta_describes_the_model_and_its_training(digits):
    data = digits[0]
    adversarial = AdversarialTraining(eps=0.1, steps=2)
    meta = meta_of(data, Recipe(epochs=3, lr=0.2), seed=4, adversarial=adversarial, validation=100)
    expected = {"dataset": "digits", "model": "small-cnn", "norm": "bn", "p": 0.2, "in_channels": 1,
                "num_classes": 10, "shape": [1, 8, 8], "seed": 4, "epochs": 3, "lr": 0.2, "validation": 100,
                "adversarial": json.loads(json.dumps(dataclasses.asdict(adversarial))),
                "minirn_version": minirn.__version__}
    assert {key: meta[key] for key in expected} == expected
    assert set(dataclasses.asdict(Recipe())) <= set(meta)  # the whole recipe, whatever fields it grows


@pytest.mark.parametrize("recorded, wanted, expected", [
    ({"epochs": 2, "lr": 0.1}, {"epochs": 2, "lr": 0.1}, []),
    ({"epochs": 2, "lr": 0.1}, {"epochs": 8, "lr": 0.1}, ["epochs 2 there, 8 here"]),
    ({"dataset": "digits"}, {"dataset": "mnist-5k"}, ['dataset "digits" there, "mnist-5k" here']),
    ({}, {"seed": 0}, ["seed (not recorded) there, 0 here"]),
    ({"history": [1], "seed": 0}, {"seed": 0}, []),  # only what the new run asks is compared
])
def test_differences(recorded, wanted, expected):
    assert runs.differences(recorded, wanted) == expected


# --- an output folder belongs to one configuration ------------------------------------------------------------
def test_a_fresh_folder_is_claimed_with_a_manifest(tmp_path):
    out = tmp_path / "results"
    settings = runs.claim_output_folder(out, ReproduceConfig())
    assert json.loads((out / runs.MANIFEST).read_text())["config"] == settings
    # the same configuration again (with other ignored settings): claimed again, to overwrite or resume
    assert runs.claim_output_folder(out, ReproduceConfig(out=str(out), progress=False)) == settings
    assert runs.claim_output_folder(out, ReproduceConfig(), resume=True) == settings


def test_the_quick_and_the_full_run_do_not_mix(tmp_path):
    assert quick_config().out != ReproduceConfig().out  # each has its own default folder
    out = tmp_path / "results"
    runs.claim_output_folder(out, ReproduceConfig())
    (out / "results.md").write_text("the full run's table")
    for resume in (False, True):
        with pytest.raises(runs.RunConflictError) as error:
            runs.claim_output_folder(out, quick_config(), resume=resume)
        message = str(error.value)
        assert "\n" not in message and str(out) in message and "--out" in message
        assert 'dataset "mnist-5k" there, "digits" here' in message and "epochs" in message
    assert (out / "results.md").read_text() == "the full run's table"
    assert json.loads((out / runs.MANIFEST).read_text())["config"]["dataset"] == "mnist-5k"


def test_a_folder_of_an_older_run_is_judged_by_its_results(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": dataclasses.asdict(ReproduceConfig(seeds=1)),
                                                       "versions": {"minirn": "0.0.1"}}))
    with pytest.raises(runs.RunConflictError, match="seeds 1 there, 3 here"):
        runs.claim_output_folder(tmp_path, ReproduceConfig())
    runs.claim_output_folder(tmp_path, ReproduceConfig(seeds=1))  # same settings, older minirn: replaced
    (tmp_path / runs.MANIFEST).unlink()
    with pytest.raises(runs.RunConflictError, match="minirn_version"):  # but an older run is never continued
        runs.claim_output_folder(tmp_path, ReproduceConfig(seeds=1), resume=True)


@pytest.mark.parametrize("left", ["checkpoints", "results.md"])
def test_a_folder_with_outputs_of_an_unknown_run_is_refused(tmp_path, left):
    (tmp_path / left).mkdir()
    with pytest.raises(runs.RunConflictError, match=f"holds {left} of a run that left no run.json"):
        runs.claim_output_folder(tmp_path, ReproduceConfig())
    (tmp_path / "other").mkdir()
    runs.claim_output_folder(tmp_path / "other", ReproduceConfig())  # files that are no run's outputs are no claim


def test_an_unreadable_manifest_is_refused(tmp_path):
    (tmp_path / runs.MANIFEST).write_text("{not json")
    with pytest.raises(runs.RunConflictError, match="cannot be read"):
        runs.claim_output_folder(tmp_path, ReproduceConfig())


def test_a_model_file_of_another_configuration_is_not_overwritten(tmp_path, digits):
    data = digits[0]
    path = tmp_path / "bn.npz"
    runs.check_output_file(path, meta_of(data, Recipe()))  # nothing there yet
    minirn.save({"model": {}, "meta": {**meta_of(data, Recipe()), "history": [], "test_accuracy": 0.5}}, path)
    runs.check_output_file(path, meta_of(data, Recipe()))  # the same configuration: replaced
    with pytest.raises(runs.RunConflictError, match="lr 0.1 there, 0.5 here.*--out"):
        runs.check_output_file(path, meta_of(data, Recipe(lr=0.5)))
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(2))
    with pytest.raises(runs.RunConflictError, match="not a minirn model"):
        runs.check_output_file(tmp_path / "foreign.npz", meta_of(data, Recipe()))


# --- checkpoints: a killed run resumed equals an uninterrupted one; another configuration is refused --------
class Killed(Exception):
    """Stands for the process being killed."""


def train(digits, recipe, checkpoint=None, resume=False, kill_in_epoch=None, seed=0, meta=None):
    data, train_data, test_data = digits

    def kill(model, record):
        if record["epoch"] == kill_in_epoch:  # the end of this epoch, before its checkpoint: killed during it
            raise Killed

    meta = meta or meta_of(data, recipe, seed)
    return train_model(lambda: models.small_cnn(norm="bn"), recipe, train_data, seed, test_data=test_data,
                       checkpoint=checkpoint, checkpoint_meta=meta, resume=resume, progress=False,
                       on_epoch_end=kill)


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_a_killed_run_resumed_equals_an_uninterrupted_one(digits, tmp_path):
    recipe = Recipe(epochs=3, batch_size=64, lr=0.1)
    uninterrupted, history = train(digits, recipe)
    checkpoint = tmp_path / "checkpoints" / "bn-seed0.npz"
    checkpoint.parent.mkdir()
    with pytest.raises(Killed):
        train(digits, recipe, checkpoint, kill_in_epoch=2)
    assert minirn.load(checkpoint)["epoch"] == 1
    resumed, resumed_history = train(digits, recipe, checkpoint, resume=True)
    assert without_seconds(resumed_history) == without_seconds(history)
    for (name, value), (_, again) in zip(uninterrupted.state_dict().items(), resumed.state_dict().items()):
        assert np.asarray(again).tobytes() == np.asarray(value).tobytes(), name
    # the finished checkpoint is a model checkpoint: load_model rebuilds the resumed model, in eval mode
    loaded = minirn.load_model(checkpoint)
    assert not loaded.training
    for (name, value), (_, again) in zip(resumed.state_dict().items(), loaded.state_dict().items()):
        assert np.asarray(again).tobytes() == np.asarray(value).tobytes(), name


@pytest.mark.parametrize("change, named", [
    (dict(recipe=Recipe(epochs=3, batch_size=64, lr=0.2)), "lr 0.1 there, 0.2 here"),
    (dict(recipe=Recipe(epochs=4, batch_size=64, lr=0.1)), "epochs 3 there, 4 here"),  # the cosine schedule differs
    (dict(dataset="mnist-5k"), 'dataset "digits" there, "mnist-5k" here'),
    (dict(seed=1), "seed"),
])
def test_resume_refuses_a_checkpoint_of_another_configuration(digits, tmp_path, change, named):
    recipe = Recipe(epochs=3, batch_size=64, lr=0.1)
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(Killed):
        train(digits, recipe, checkpoint, kill_in_epoch=2)
    new_recipe = change.get("recipe", recipe)
    seed = change.get("seed", 0)
    meta = meta_of(digits[0], new_recipe, seed)
    if "dataset" in change:
        meta["dataset"] = change["dataset"]
    with pytest.raises(CheckpointError) as error:
        train(digits, new_recipe, checkpoint, resume=True, seed=seed, meta=meta)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_resume_refuses_a_checkpoint_that_records_no_configuration(digits, tmp_path):
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    checkpoint = tmp_path / "old.npz"
    state = {"model": {}, "optimizer": {}, "scheduler": None, "history": [], "epoch": 1, "seed": 0}
    minirn.save(state, checkpoint)  # the format before checkpoints recorded their run
    with pytest.raises(CheckpointError, match="records no configuration"):
        train(digits, recipe, checkpoint, resume=True)
