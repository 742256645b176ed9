"""Tests of minirn/experiments/norm_stats.py: recording norm-layer inputs and the clean/adversarial statistics shift."""
import numpy as np
import pytest

import minirn
from minirn import backend, nn
from minirn.experiments.norm_stats import norm_input_statistics, record_norm_inputs, statistics_shift
from tests.conftest import to_numpy


def model_and_batch(device="cpu"):
    """conv → BatchNorm → ReLU → conv → RobustNorm → ReLU → pool → linear, and a batch (16, 1, 8, 8)."""
    g = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False, generator=g), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 2, 3, stride=2, padding=1, generator=g), nn.RobustNorm2d(2), nn.ReLU(),
        nn.GlobalAvgPool2d(), nn.Linear(2, 4, generator=g),
    ).to(device)
    x = backend.to_device(g.uniform(0, 1, (16, 1, 8, 8)).astype("float32"), device)
    return model, x


def state(model):
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_record_norm_inputs_records_the_true_statistics_and_restores_forward(device):
    model, x = model_and_batch(device)
    model.eval()
    with minirn.no_grad():
        first = to_numpy(model[0](minirn.tensor(x))).astype(np.float64)  # input of the BatchNorm, by hand
        second = to_numpy(model[3](model[2](model[1](model[0](minirn.tensor(x)))))).astype(np.float64)
    with minirn.no_grad(), record_norm_inputs(model) as records:
        assert "forward" in model[1].__dict__  # the recording forward shadows the class's
        model(minirn.tensor(x))
    assert set(records) == {"1", "4"}
    for name, h in (("1", first), ("4", second)):
        np.testing.assert_allclose(records[name]["mean"], h.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(records[name]["var"], h.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)  # biased
        np.testing.assert_allclose(records[name]["range"], h.max(axis=(0, 2, 3)) - h.min(axis=(0, 2, 3)), rtol=1e-5)
    for layer in (model[1], model[4]):
        assert "forward" not in layer.__dict__
        assert layer.forward.__func__ is type(layer).forward


def test_record_norm_inputs_restores_forward_after_an_error():
    model, _ = model_and_batch()
    with pytest.raises(ValueError), record_norm_inputs(model):
        model(minirn.tensor(np.zeros((2, 5, 8, 8), "float32")))  # 5 channels into a 1-channel conv
    assert "forward" not in model[1].__dict__ and "forward" not in model[4].__dict__


def test_statistics_shift_is_zero_when_running_statistics_are_the_batch_statistics():
    model, x = model_and_batch()
    x_host = backend.to_host(x)
    # the batch statistics of every norm input, as the layers see them when they normalise with them
    model.train()
    with minirn.freeze_running_stats():
        batch_stats = norm_input_statistics(model, x)
    for name, layer in (("1", model[1]), ("4", model[4])):
        layer.running_mean = backend.to_device(batch_stats[name]["mean"], "cpu")
        if name == "1":
            layer.running_var = backend.to_device(batch_stats[name]["var"], "cpu")
        else:
            layer.running_range = backend.to_device(batch_stats[name]["range"], "cpu")
    before = state(model)
    x_adversarial = np.clip(x_host * 0.5 + 0.4, 0, 1)  # a batch with other statistics
    rows = statistics_shift(model, x_host, x_adversarial)
    assert [(r["layer"], r["kind"]) for r in rows] == [("1", "var"), ("4", "range")]
    for row in rows:
        assert row["clean_mean_shift"] == pytest.approx(0, abs=1e-4)
        assert row["clean_scale_ratio"] == pytest.approx(1, abs=1e-4)
    # the other batch is seen as shifted by the first layer (later ones get inputs normalised by it)
    assert rows[0]["adversarial_mean_shift"] > 0.1
    assert rows[0]["adversarial_scale_ratio"] < 0.8  # half the contrast: about a quarter of the variance (+ padding)
    # eval mode inside, the model's mode and state untouched afterwards
    assert model.training
    after = state(model)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_statistics_shift_measures_in_running_standard_deviations():
    model, x = model_and_batch()
    model.eval()
    x_host = backend.to_host(x)
    with minirn.no_grad():
        h = to_numpy(model[0](minirn.tensor(x_host))).astype(np.float64)
    # running mean = batch mean - 2 running std and running var = batch var / 4: a shift of 2 std, variance ratio 4
    model[1].running_var = backend.to_device((h.var(axis=(0, 2, 3)) / 4).astype("float32"), "cpu")
    model[1].running_mean = backend.to_device((h.mean(axis=(0, 2, 3)) - np.sqrt(h.var(axis=(0, 2, 3)) / 4) * 2)
                                              .astype("float32"), "cpu")
    row = statistics_shift(model, x_host, x_host)[0]
    assert row["clean_mean_shift"] == pytest.approx(2, rel=1e-4)
    assert row["clean_scale_ratio"] == pytest.approx(4, rel=1e-4)
    assert row["adversarial_mean_shift"] == row["clean_mean_shift"]
