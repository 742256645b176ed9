"""Tests of minirn/train.py: determinism, resuming, adversarial training, accuracy/predict, and real learning."""
import numpy as np
import pytest

import minirn
from minirn import backend, models, optim
from minirn.data import DataLoader, load_dataset
from minirn.serialization import CheckpointError
from minirn.train import AdversarialTraining, Recipe, accuracy, fit, predict, train_model
from tests.conftest import to_numpy


@pytest.fixture(scope="module")
def digits():
    """A small slice of sklearn's 8x8 digits: 256 train and 64 test images (host arrays)."""
    data = load_dataset("digits")
    return data.x_train[:256], data.y_train[:256], data.x_test[:64], data.y_test[:64]


def train(digits, epochs, *, init_seed=0, seed=0, total_epochs=None, adversarial=None, checkpoint=None, resume=False):
    """A small_cnn with BatchNorm, SGD with momentum and a cosine schedule over ``total_epochs``; fit ``epochs``."""
    x, y, x_test, y_test = digits
    minirn.manual_seed(init_seed)
    model = models.small_cnn(norm="bn")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=total_epochs or epochs)
    history = fit(model, (x, y), epochs, optimizer, scheduler, adversarial, seed, test_data=(x_test, y_test),
                  batch_size=64, checkpoint=checkpoint, resume=resume, progress=False)
    return model, history


def test_train_model_is_seed_build_sgd_cosine_fit(digits):
    x, y, x_test, y_test = digits
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1)
    model, history = train_model(lambda: models.small_cnn(norm="bn"), recipe, (x, y), seed=3,
                                 test_data=(x_test, y_test), progress=False)
    minirn.manual_seed(3)
    expected = models.small_cnn(norm="bn")
    optimizer = optim.SGD(expected.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=2)
    fit(expected, (x, y), 2, optimizer, scheduler, seed=3, batch_size=64, progress=False)
    assert_same_weights(model, expected)
    assert [h["lr"] for h in history] == [0.1, 0.05] and all("test_acc" in h for h in history)


def weights(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# --- determinism and resuming -----------------------------------------------------------------------------
def test_fit_is_bit_for_bit_repeatable(digits, tmp_path):
    first, history = train(digits, 2)
    # resume=True without a checkpoint on disk starts from scratch; writing checkpoints changes nothing
    second, history_again = train(digits, 2, checkpoint=tmp_path / "new.npz", resume=True)
    assert_same_weights(first, second)
    assert without_seconds(history) == without_seconds(history_again)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert minirn.load(tmp_path / "new.npz")["epoch"] == 2
    other, _ = train(digits, 2, seed=1)  # another batch order: other weights
    assert not np.array_equal(weights(first)["0.weight"], weights(other)["0.weight"])


@pytest.mark.parametrize("adversarial, total", [(None, 3), (AdversarialTraining(eps=0.1, steps=2), 2)],
                         ids=["clean", "adversarial"])
def test_resumed_run_equals_uninterrupted_run(digits, tmp_path, adversarial, total):
    killed_after = 1
    uninterrupted, history = train(digits, total, adversarial=adversarial, seed=3)
    checkpoint = tmp_path / "run.npz"
    # the killed run: its scheduler was made for all epochs, but it stopped after the first one
    _, partial = train(digits, killed_after, total_epochs=total, adversarial=adversarial, seed=3, checkpoint=checkpoint)
    assert len(partial) == killed_after
    # a fresh process: other initial weights, new optimizer and scheduler, all replaced by the checkpoint
    resumed, resumed_history = train(digits, total, init_seed=99, adversarial=adversarial, seed=3,
                                     checkpoint=checkpoint, resume=True)
    assert_same_weights(uninterrupted, resumed)
    assert without_seconds(resumed_history) == without_seconds(history)
    assert resumed_history[0]["seconds"] == partial[0]["seconds"]  # epoch 1 comes from the checkpoint


def test_resume_refuses_a_checkpoint_of_another_run(digits, tmp_path):
    checkpoint = tmp_path / "run.npz"
    train(digits, 1, total_epochs=2, checkpoint=checkpoint)
    minirn.manual_seed(0)
    model = models.small_cnn(norm="bn")
    before = weights(model)
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="seed"):
        fit(model, digits[:2], 2, optimizer, seed=1, checkpoint=checkpoint, resume=True, progress=False)
    train(digits, 2, checkpoint=checkpoint)  # now it holds 2 epochs
    with pytest.raises(CheckpointError, match="2 epochs"):
        fit(model, digits[:2], 1, optimizer, seed=0, checkpoint=checkpoint, resume=True, progress=False)
    minirn.manual_seed(0)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):  # a model of another shape
        other = models.small_cnn(norm="bn", num_classes=3)
        fit(other, digits[:2], 3, optim.SGD(other.parameters(), lr=0.1), checkpoint=checkpoint, resume=True,
            progress=False)
    for key, value in weights(model).items():  # refused before anything was loaded
        np.testing.assert_array_equal(value, before[key])


# --- adversarial training ----------------------------------------------------------------------------------
def running_stats(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items() if "running" in k}


@pytest.mark.parametrize("attack_mode", ["eval", "train"])
def test_adversarial_training_attack_leaves_running_statistics_alone(digits, attack_mode):
    x, y = digits[0][:32], digits[1][:32]
    adversarial = AdversarialTraining(eps=0.2, steps=3, attack_mode=attack_mode)
    assert adversarial.alpha == pytest.approx(0.05)  # ε/4 by default
    seed = 7
    minirn.manual_seed(0)
    reference = models.small_cnn(norm="bn")
    initial = running_stats(reference)
    # the mode is restored, and the attack itself moves no running statistic, whatever the mode
    for training in (False, True):
        reference.train(training)
        x_adv = adversarial.perturb(reference, x, y, seed=[seed, 0, 0])  # fit's seed for epoch 0, batch 0
        assert reference.training is training
        for key, value in running_stats(reference).items():
            np.testing.assert_array_equal(value, initial[key], err_msg=key)
    x_adv = backend.to_host(x_adv)
    assert 0 < np.abs(x_adv - x).max() <= 0.2 + 1e-6
    # one training step of fit (one batch, in order) must move the statistics exactly like one clean
    # training-mode forward pass on that adversarial batch, and unlike one on the clean batch
    with minirn.no_grad():
        reference.train()
        reference(minirn.tensor(x_adv))
    expected = running_stats(reference)
    minirn.manual_seed(0)
    model = models.small_cnn(norm="bn")
    fit(model, DataLoader(x, y, batch_size=32), 1, optim.SGD(model.parameters(), lr=0.1), adversarial=adversarial,
        seed=seed, progress=False)
    got = running_stats(model)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
    minirn.manual_seed(0)
    clean = models.small_cnn(norm="bn")
    with minirn.no_grad():
        clean(minirn.tensor(x))
    assert not np.allclose(running_stats(clean)["1.running_var"], got["1.running_var"], rtol=1e-3)


@pytest.mark.parametrize("kwargs", [{"eps": 0.0}, {"eps": -0.1}, {"eps": 0.1, "attack_mode": "test"}])
def test_adversarial_training_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AdversarialTraining(**kwargs)


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_fit_rejects_bad_epochs(digits, epochs):
    model = models.small_cnn(norm="bn")
    with pytest.raises(ValueError, match="epochs"):
        fit(model, digits[:2], epochs, optim.SGD(model.parameters(), lr=0.1), progress=False)


# --- accuracy and predict ----------------------------------------------------------------------------------
def test_predict_and_accuracy_restore_the_mode(digits, device):
    x, y = digits[2][:20], digits[3][:20]
    minirn.manual_seed(0)
    model = models.small_cnn(norm="bn").to(device)
    model.train()
    with minirn.no_grad():
        model(minirn.tensor(digits[0][:64], device=device))  # non-trivial running statistics
    model.eval()
    with minirn.no_grad():
        expected = to_numpy(model(minirn.tensor(x, device=device))).argmax(axis=1)
    for training in (True, False):
        model.train(training)
        got = predict(model, x, batch_size=7)  # batches of 7, 7 and 6
        assert model.training is training
        assert got.dtype == np.int64 and got.shape == (20,)
        np.testing.assert_array_equal(got, expected)
    wrong = (expected + 1) % 10
    half = np.where(np.arange(20) < 10, expected, wrong)
    assert accuracy(model, x, expected) == 1.0
    assert accuracy(model, x, wrong) == 0.0
    model.train()
    assert accuracy(model, x, backend.to_device(half, device), batch_size=6) == 0.5
    assert model.training
    with pytest.raises(ValueError, match="no examples"):
        accuracy(model, x[:0], y[:0])


# --- real learning -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_small_cnn_learns_mnist_5k():
    """The issue's recipe (SGD lr 0.2, momentum 0.9, cosine, batch 128) passes 90% after 6 epochs (91.5% here;
    3 epochs give 73%, 5 give 89%, as with a PyTorch twin of the same model: 79% and 88%).  About 2 minutes."""
    data = load_dataset("mnist-5k")
    minirn.manual_seed(0)
    model = models.small_cnn(norm="bn")
    optimizer = optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    epochs = 6
    history = fit(model, (data.x_train, data.y_train), epochs, optimizer, optim.CosineAnnealingLR(optimizer, epochs),
                  seed=0, test_data=(data.x_test, data.y_test), batch_size=128, progress=False)
    assert history[-1]["test_acc"] > 0.90
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_adversarial_training_can_update_running_statistics_like_the_authors():
    """update_running_stats=True: each of the attack's forward passes moves the running statistics."""
    g = np.random.default_rng(0)
    x = g.uniform(0, 1, (8, 1, 6, 6)).astype("float32")
    y = np.arange(8) % 3
    def model_and_stats():
        minirn.manual_seed(0)
        model = minirn.nn.Sequential(minirn.nn.BatchNorm2d(1), minirn.nn.Conv2d(1, 3, 3), minirn.nn.GlobalAvgPool2d())
        return model, running_stats(model)

    model, initial = model_and_stats()
    model.train()
    AdversarialTraining(eps=0.1, steps=1, attack_mode="train", random_start=False).perturb(model, x, y, seed=0)
    for key, value in running_stats(model).items():  # the default: identical
        np.testing.assert_array_equal(value, initial[key], err_msg=key)
    # one step without random start: the one forward pass sees x itself, so the first BatchNorm's running
    # mean becomes (1 - 0.1) * 0 + 0.1 * mean(x) and its running variance 0.9 * 1 + 0.1 * unbiased var(x)
    AdversarialTraining(eps=0.1, steps=1, attack_mode="train", random_start=False,
                        update_running_stats=True).perturb(model, x, y, seed=0)
    got = running_stats(model)
    np.testing.assert_allclose(got["0.running_mean"], [0.1 * x.mean()], rtol=1e-5)
    np.testing.assert_allclose(got["0.running_var"], [0.9 + 0.1 * x.var(ddof=1)], rtol=1e-5)
    # steps passes: `steps` updates, and the model's mode and parameter gradients are as before
    model, initial = model_and_stats()
    model.train()
    AdversarialTraining(eps=0.1, steps=3, attack_mode="train", update_running_stats=True).perturb(model, x, y, seed=0)
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    # three updates towards the iterates' means, each within ε = 0.1 of mean(x): (1 - 0.9³) (mean(x) ± 0.1)
    running_mean = float(to_numpy(model[0].running_mean)[0])
    assert (1 - 0.9**3) * (x.mean() - 0.1) <= running_mean <= (1 - 0.9**3) * (x.mean() + 0.1)
    assert running_mean > (1 - 0.9**2) * (x.mean() + 0.1)  # more than two updates could give
    with pytest.raises(ValueError, match="attack_mode='train'"):
        AdversarialTraining(eps=0.1, update_running_stats=True)


# ---------------------------------------------------------------------------
# fit(val_data=..., on_epoch_end=...): per-epoch validation accuracy and the epoch-end callback
# ---------------------------------------------------------------------------
def _fit_with_validation(digits, epochs, on_epoch_end=None, val_data="default", **options):
    x, y, x_val, y_val = digits
    minirn.manual_seed(0)
    model = models.small_cnn(norm="bn")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=options.pop("total_epochs", epochs))
    val = (x_val, y_val) if val_data == "default" else val_data
    history = fit(model, (x, y), epochs, optimizer, scheduler, seed=0, val_data=val, on_epoch_end=on_epoch_end,
                  batch_size=64, progress=False, **options)
    return model, history


def _eval_mode_accuracy_by_hand(model, x, y):
    """The share of x whose eval-mode logits' argmax is y, without going through minirn.train.predict."""
    was_training = model.training
    model.eval()
    with minirn.no_grad():
        logits = to_numpy(model(minirn.tensor(x, dtype="float32")))
    model.train(was_training)
    return float(np.mean(logits.argmax(axis=1) == y))


def test_fit_records_the_validation_accuracy_of_each_epoch(digits):
    _, _, x_val, y_val = digits
    seen = []

    def check(model, record):
        # at the end of each epoch, the record's val_acc is the model's accuracy on the validation data now
        assert record["val_acc"] == accuracy(model, x_val, y_val)
        assert record["val_acc"] == pytest.approx(_eval_mode_accuracy_by_hand(model, x_val, y_val), abs=1e-12)
        seen.append((record["epoch"], record["val_acc"]))

    _, history = _fit_with_validation(digits, 3, on_epoch_end=check)
    assert [epoch for epoch, _ in seen] == [1, 2, 3]  # called once per epoch, in order
    assert [h["val_acc"] for h in history] == [acc for _, acc in seen]
    assert all("test_acc" not in h for h in history)  # no test data given, none reported
    assert history[-1]["val_acc"] > 0.5  # 8x8 digits, 10 classes: the model learned, so the number means something


def test_fit_without_validation_data_records_no_validation_accuracy(digits):
    _, history = _fit_with_validation(digits, 1, val_data=None)
    assert "val_acc" not in history[0]


def test_on_epoch_end_can_add_entries_to_the_history(digits):
    def add(model, record):
        record["doubled_epoch"] = 2 * record["epoch"]
        record["model_was_training"] = model.training

    _, history = _fit_with_validation(digits, 2, on_epoch_end=add)
    assert [h["doubled_epoch"] for h in history] == [2, 4]
    # the callback sees the model as the epoch left it: in train mode (accuracy restores the mode it found)
    assert [h["model_was_training"] for h in history] == [True, True]


def test_entries_added_at_epoch_end_are_in_the_checkpoint(digits, tmp_path):
    """on_epoch_end runs before the checkpoint: a resumed run's history keeps what the callback added."""
    path = tmp_path / "run.npz"

    def add(model, record):
        record["marker"] = f"epoch {record['epoch']}"

    _fit_with_validation(digits, 1, on_epoch_end=add, total_epochs=2, checkpoint=path)
    _, resumed = _fit_with_validation(digits, 2, on_epoch_end=add, total_epochs=2, checkpoint=path, resume=True)
    assert [h["marker"] for h in resumed] == ["epoch 1", "epoch 2"]
    assert all("val_acc" in h for h in resumed)
