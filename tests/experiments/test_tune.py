"""Tests of minirn/experiments/tune.py: each norm's recipe is chosen on validation accuracy, never on the test split.

Most tests replace ``train_model`` (and ``models.build``) with fakes whose validation accuracies the test
chooses, so that what is checked is the selection rule itself; one tiny real run on the 8x8 digits proves
that the real path works end to end.
"""
import json

import numpy as np
import pytest

from minirn import models
from minirn.data import Dataset, load_dataset
from minirn.experiments import tune as tune_module
from minirn.experiments.tune import MIN_GAIN, tune, tuned_recipe
from minirn.train import Recipe

N_TRAIN, N_CLASSES, VALIDATION = 60, 3, 12


def training_only_dataset(name="fake"):
    """A Dataset without a test split (x_test = y_test = None): touching it would raise a TypeError.

    Image i is filled with the value i, so an image's identity can be read back from any split.
    """
    x = np.broadcast_to(np.arange(N_TRAIN, dtype=np.float32)[:, None, None, None], (N_TRAIN, 1, 4, 4)).copy()
    y = np.arange(N_TRAIN, dtype=np.int64) % N_CLASSES
    return Dataset(x, y, None, None, name, N_CLASSES, (1, 4, 4), ("a", "b", "c"), "made up for the tests")


#: The fake's final validation accuracy per (norm, lr, init, epochs): one value per seed (seeds 0 and 1).
#: bn:   the best single seed (0.9 at lr 0.1, worst seed 0.5) loses to the best *worst seed* (0.75 at lr 0.2, torch);
#:       12 epochs gain less than MIN_GAIN, so 8 stay.
#: none: lr 0.5 with he wins; 12 epochs gain more than MIN_GAIN, so 12 are chosen.
#: rn:   lr 0.1/he and lr 0.2/torch have the same mean (0.5, exact in binary), but lr 0.1/he leaves one seed at
#:       0.25: the worst-seed rule takes lr 0.2/torch (a mean rule would have taken the first in the grid, lr 0.1).
#: Batches of 32 add BATCH_32_BONUS[norm] to every accuracy of the table: only "none" gains from them.
GRID = {"lr": (0.1, 0.2, 0.5), "init": ("torch", "he"), "batch_size": (32, 128)}
BATCH_32_BONUS = {"bn": -0.05, "none": 0.125, "rn": -0.25}
EPOCHS = (8, 12)
STAGE1 = {
    "bn": {(0.1, "torch"): (0.9, 0.5), (0.1, "he"): (0.6, 0.6), (0.2, "torch"): (0.75, 0.75),
           (0.2, "he"): (0.7, 0.7), (0.5, "torch"): (0.1, 0.1), (0.5, "he"): (0.2, 0.3)},
    "none": {(0.1, "torch"): (0.1, 0.1), (0.1, "he"): (0.3, 0.2), (0.2, "torch"): (0.1, 0.2),
             (0.2, "he"): (0.4, 0.5), (0.5, "torch"): (0.1, 0.1), (0.5, "he"): (0.6, 0.7)},
    "rn": {(0.1, "torch"): (0.25, 0.25), (0.1, "he"): (0.75, 0.25), (0.2, "torch"): (0.5, 0.5),
           (0.2, "he"): (0.2, 0.2), (0.5, "torch"): (0.3, 0.3), (0.5, "he"): (0.1, 0.1)},
}
#: Stage 2: how much the 12-epoch run of the stage-1 winner gains on each seed.
GAIN_AT_12 = {"bn": MIN_GAIN / 2, "none": 4 * MIN_GAIN, "rn": 0.0}
#: (lr, init, batch size, epochs) of each norm's chosen recipe.
WINNER = {"bn": (0.2, "torch", 128, 8), "none": (0.5, "he", 32, 12), "rn": (0.2, "torch", 128, 8)}


def fake_accuracy(norm, lr, init, batch_size, epochs, seed):
    """The final validation accuracy the fake reports (a stage-2 budget only for that norm's stage-1 winner)."""
    accuracy = STAGE1[norm][(lr, init)][seed] + (BATCH_32_BONUS[norm] if batch_size == 32 else 0.0)
    if epochs == EPOCHS[0]:
        return accuracy
    assert (lr, init, batch_size) == WINNER[norm][:3], f"stage 2 ran {norm} lr {lr} {init} {batch_size}, not the winner"
    return accuracy + GAIN_AT_12[norm]


class FakeTraining:
    """Stands in for ``train_model`` (and ``models.build``): records each call, reports fake_accuracy."""

    def __init__(self):
        self.calls = []

    def build(self, name, norm="bn", p=None, *, in_channels, num_classes, device="cpu", init="torch",
              input_normalization=None):
        return {"name": name, "norm": norm, "p": p, "in_channels": in_channels, "num_classes": num_classes}

    def train_model(self, build, recipe, train_data, seed=0, adversarial=None, **fit_options):
        assert "test_data" not in fit_options, "tune passed the test split to training"
        spec = build()
        x_train, y_train = train_data
        x_val, y_val = fit_options["val_data"]
        self.calls.append({"spec": spec, "recipe": recipe, "seed": seed, "train_ids": x_train[:, 0, 0, 0].copy(),
                           "val_ids": x_val[:, 0, 0, 0].copy(), "y_train": y_train, "y_val": y_val})
        final = fake_accuracy(spec["norm"], recipe.lr, recipe.init, recipe.batch_size, recipe.epochs, seed)
        # the earlier epochs report more than the final one, so a rule that read them would choose differently
        history = [{"epoch": e + 1, "val_acc": 0.99} for e in range(recipe.epochs - 1)]
        history.append({"epoch": recipe.epochs, "val_acc": final})
        return None, history


@pytest.fixture
def fake(monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(tune_module, "train_model", fake.train_model)
    monkeypatch.setattr(models, "build", fake.build)
    return fake


@pytest.fixture
def tuned(fake, tmp_path):
    """The result of a tune over the fake, the file it wrote, and the fake's record of calls."""
    path = tmp_path / "recipes.json"
    result = tune(("bn", "none", "rn"), dataset="fake", model="small-cnn", p=0.2, seeds=2, grid=GRID,
                  epochs=EPOCHS, validation=VALIDATION, data=training_only_dataset(), out=str(path), log=lambda *a: None,
                  workers=0)  # in this process, where the fakes are
    return result, path, fake


@pytest.mark.parametrize("norm", ["bn", "none", "rn"])
def test_tune_chooses_the_best_worst_seed_then_a_longer_budget_only_past_min_gain(tuned, norm):
    result, _, _ = tuned
    chosen = result["recipes"][norm]
    assert (chosen["lr"], chosen["init"], chosen["batch_size"], chosen["epochs"]) == WINNER[norm]
    accuracies = [fake_accuracy(norm, *WINNER[norm], seed) for seed in (0, 1)]
    assert chosen["mean_val_acc"] == pytest.approx(np.mean(accuracies))
    assert chosen["worst_seed_val_acc"] == pytest.approx(min(accuracies))
    defaults = Recipe()
    assert (chosen["momentum"], chosen["weight_decay"]) == (defaults.momentum, defaults.weight_decay)


def test_tune_trains_every_grid_point_on_every_seed_and_never_sees_the_test_split(tuned):
    result, _, fake = tuned
    # stage 1, then one run per longer budget
    per_norm = len(GRID["lr"]) * len(GRID["init"]) * len(GRID["batch_size"]) + len(EPOCHS) - 1
    assert len(fake.calls) == 3 * per_norm * 2
    for call in fake.calls:
        assert call["spec"] == {"name": "small-cnn", "norm": call["spec"]["norm"], "p": 0.2, "in_channels": 1,
                                "num_classes": N_CLASSES}
        train_ids, val_ids = call["train_ids"], call["val_ids"]
        # the validation images come out of the training split: disjoint, and together all of it, once each
        assert len(val_ids) == VALIDATION and len(train_ids) == N_TRAIN - VALIDATION
        assert sorted(np.concatenate([train_ids, val_ids]).tolist()) == list(range(N_TRAIN))
        np.testing.assert_array_equal(call["y_val"], val_ids.astype(np.int64) % N_CLASSES)
    # each configuration is trained on seeds 0 and 1
    seeds = {}
    for call in fake.calls:
        recipe = call["recipe"]
        key = (call["spec"]["norm"], recipe.lr, recipe.init, recipe.batch_size, recipe.epochs)
        seeds.setdefault(key, []).append(call["seed"])
    assert all(s == [0, 1] for s in seeds.values()) and len(seeds) == 3 * per_norm
    assert result["validation_examples"] == VALIDATION and result["train_examples"] == N_TRAIN - VALIDATION


def test_tune_writes_every_trial_and_the_recipes_to_json(tuned):
    result, path, fake = tuned
    written = json.loads(path.read_text())
    assert written == json.loads(json.dumps(result))  # the file is the returned result
    assert written["chosen_on"] == "validation"
    assert written["dataset"] == "fake" and written["model"] == "small-cnn" and written["p"] == 0.2
    assert written["seeds"] == [0, 1]
    assert {key: written["grid"][key] for key in (*GRID, "epochs")} == {
        **{key: list(values) for key, values in GRID.items()}, "epochs": list(EPOCHS)}
    assert set(written["recipes"]) == {"bn", "none", "rn"}
    assert len(written["trials"]) == len(fake.calls)
    for trial in written["trials"]:
        expected = fake_accuracy(trial["norm"], trial["lr"], trial["init"], trial["batch_size"], trial["epochs"],
                                 trial["seed"])
        assert trial["val_acc"] == pytest.approx(expected)
        assert trial["val_acc_per_epoch"] == pytest.approx([0.99] * (trial["epochs"] - 1) + [expected])
    assert not any("test" in key for trial in written["trials"] for key in trial)


@pytest.mark.parametrize("seeds", [0, 1, True, 2.0, "2"])
def test_tune_needs_at_least_two_integer_seeds(fake, tmp_path, seeds):
    path = tmp_path / "recipes.json"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        tune(("bn",), seeds=seeds, grid=GRID, data=training_only_dataset(), out=str(path), log=lambda *a: None,
             workers=0)
    assert fake.calls == [] and not path.exists()


@pytest.mark.parametrize("epochs", [(), (0,), (8, 2.5), (8, -1)])
def test_tune_rejects_bad_epoch_budgets(fake, epochs):
    with pytest.raises(ValueError, match="epochs"):
        tune(("bn",), seeds=2, grid=GRID, epochs=epochs, data=training_only_dataset(), out=None, log=lambda *a: None,
             workers=0)
    assert fake.calls == []


def test_tuned_recipe_reads_the_file(tuned):
    _, path, _ = tuned
    for norm, (lr, init, batch_size, epochs) in WINNER.items():
        recipe, source = tuned_recipe(norm, "fake", "small-cnn", 0.2, str(path))
        assert isinstance(recipe, Recipe)
        assert recipe == Recipe(epochs=epochs, lr=lr, init=init, batch_size=batch_size)  # the other fields: the defaults tune used
        assert source.startswith("tuned on validation") and "recipes.json" in source


@pytest.mark.parametrize("norm, dataset, model, p, reason", [
    ("bn", "digits", "small-cnn", 0.2, "dataset 'fake', not 'digits'"),
    ("bn", "fake", "resnet20", 0.2, "model 'small-cnn', not 'resnet20'"),
    ("rn", "fake", "small-cnn", 0.5, "p = 0.2, not 0.5"),
    ("gn", "fake", "small-cnn", 0.2, "no tuned recipe for norm 'gn'"),
])
def test_tuned_recipe_falls_back_to_the_defaults_with_a_reason(tuned, norm, dataset, model, p, reason):
    _, path, _ = tuned
    recipe, source = tuned_recipe(norm, dataset, model, p, str(path))
    assert recipe == Recipe()
    assert source.startswith("defaults") and reason in source


def test_tuned_recipe_ignores_p_for_norms_without_it(tuned):
    """p is RobustNorm's power: a BatchNorm recipe tuned at p = 0.2 still applies at another p."""
    _, path, _ = tuned
    recipe, source = tuned_recipe("bn", "fake", "small-cnn", 0.5, str(path))
    assert (recipe.lr, recipe.init, recipe.batch_size, recipe.epochs) == WINNER["bn"] and source.startswith("tuned")


def test_tuned_recipe_without_a_file_gives_the_defaults(tmp_path):
    recipe, source = tuned_recipe("bn", "mnist-5k", "small-cnn", 0.2, str(tmp_path / "missing.json"))
    assert recipe == Recipe()
    assert source == "defaults: no missing.json"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_tune_end_to_end_on_digits(digits, tmp_path):
    """A real (tiny) search: one epoch of BatchNorm small-cnn on 8x8 digits, two seeds, no test split at all."""
    data = Dataset(digits.x_train, digits.y_train, None, None, digits.name, digits.num_classes, digits.shape,
                   digits.class_names, digits.source)
    path = tmp_path / "recipes.json"
    tune(("bn",), dataset="digits", model="small-cnn", seeds=2,
         grid={"lr": (0.1,), "init": ("torch",), "batch_size": (128,)},
         epochs=(1,), validation=100, data=data, out=str(path), log=lambda *a: None, workers=0)
    written = json.loads(path.read_text())
    assert written["chosen_on"] == "validation"
    assert written["validation_examples"] == 100 and written["train_examples"] == len(digits.y_train) - 100
    accs = [t["val_acc"] for t in written["trials"]]
    assert [t["seed"] for t in written["trials"]] == [0, 1]
    # 10 balanced classes: chance is 0.1; accuracies are fractions of 100 validation images
    assert all(0.1 < a <= 1 for a in accs) and all(abs(100 * a - round(100 * a)) < 1e-9 for a in accs)
    assert written["recipes"]["bn"]["mean_val_acc"] == pytest.approx(np.mean(accs))
    recipe, source = tuned_recipe("bn", "digits", "small-cnn", 0.2, str(path))
    assert recipe == Recipe(epochs=1, lr=0.1, init="torch") and source.startswith("tuned")


def test_a_grid_of_lr_and_init_only_takes_the_other_entries_from_the_default(fake):
    result = tune(("bn",), dataset="fake", seeds=2, grid={"lr": GRID["lr"], "init": GRID["init"]}, epochs=(8,),
                  validation=VALIDATION, data=training_only_dataset(), out=None, log=lambda *a: None, workers=0)
    assert result["recipes"]["bn"]["batch_size"] in tune_module.GRID["batch_size"]


def test_tune_reads_the_trials_its_file_already_holds_and_only_those(tuned):
    result, path, fake = tuned
    trained = len(fake.calls)
    again = tune(("bn", "none", "rn"), dataset="fake", model="small-cnn", p=0.2, seeds=2, grid=GRID, epochs=EPOCHS,
                 validation=VALIDATION, data=training_only_dataset(), out=None, log=lambda *a: None, workers=0,
                 reuse=str(path))
    assert len(fake.calls) == trained  # nothing trained again: every trial was in the file
    assert again["recipes"] == result["recipes"] and again["reused_trials"] == len(result["trials"])
    # another dataset's file is not reused
    other = tune(("bn",), dataset="fake", model="small-cnn", p=0.2, seeds=2, grid=GRID, epochs=(8,),
                 validation=VALIDATION, data=training_only_dataset("other"), out=None, log=lambda *a: None, workers=0,
                 reuse=str(path))
    assert other["reused_trials"] == 0 and len(fake.calls) > trained


def test_tuned_recipe_refuses_a_file_made_for_another_input_normalization(tuned):
    _, path, _ = tuned
    recipe, source = tuned_recipe("bn", "fake", "small-cnn", 0.2, str(path),
                                  input_normalization={"mean": [0.1307], "std": [0.3081]})
    assert recipe == Recipe() and "input_normalization None" in source


def test_each_model_has_its_own_recipes_file_and_grid():
    from minirn.experiments.tune import GRID, RECIPES_PATH, RESNET_GRID, recipes_path, search_space
    assert recipes_path("small-cnn") == RECIPES_PATH and recipes_path("resnet8").endswith("recipes-resnet8.json")
    assert search_space("small-cnn")[0] is GRID and search_space("resnet8")[0] is RESNET_GRID
    # the ResNets' grid holds the authors' recipe: lr 0.1, He-normal, batch 128
    assert 0.1 in RESNET_GRID["lr"] and "he" in RESNET_GRID["init"] and 128 in RESNET_GRID["batch_size"]
    with pytest.raises(ValueError, match="unknown model"):
        recipes_path("vgg")


def test_the_committed_resnet8_recipes_were_chosen_by_the_rule_from_their_own_trials():
    """recipes-resnet8.json: each norm's recipe is the stage-1 trial set with the best worst seed (then mean),
    lengthened only if its worst seed gained more than MIN_GAIN; recomputed here from the recorded trials."""
    from minirn.experiments.tune import load_recipes, recipes_path
    tuned = load_recipes(recipes_path("resnet8"))
    assert tuned["model"] == "resnet8" and tuned["input_normalization"] == {"mean": [0.1307], "std": [0.3081]}
    first, *longer = tuned["grid"]["epochs"]
    for norm, chosen in tuned["recipes"].items():
        by_recipe = {}
        for t in tuned["trials"]:
            if t["norm"] == norm:
                by_recipe.setdefault((t["lr"], t["init"], t["batch_size"], t["epochs"]), []).append(t["val_acc"])
        stage1 = {k: v for k, v in by_recipe.items() if k[3] == first}
        assert len(stage1) == len(tuned["grid"]["lr"]) * len(tuned["grid"]["init"]) * len(tuned["grid"]["batch_size"])
        best = max(stage1, key=lambda k: (min(stage1[k]), np.mean(stage1[k])))
        winner, score = best, min(stage1[best])
        for n in longer:
            key = (*best[:3], n)
            if min(by_recipe[key]) > score + MIN_GAIN:
                winner, score = key, min(by_recipe[key])
        assert (chosen["lr"], chosen["init"], chosen["batch_size"], chosen["epochs"]) == winner, norm
        assert chosen["worst_seed_val_acc"] == score
