"""Tests of minirn/experiments/norm_stats.py: recording norm-layer inputs and the clean/adversarial statistics shift."""
import json

import numpy as np
import pytest

import minirn
from minirn import backend, nn
from minirn.experiments.norm_stats import (
    SHIFT_KEYS,
    norm_input_statistics,
    random_sign_noise,
    record_norm_inputs,
    statistics_shift,
    statistics_shift_with_control,
)
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


# --- Finding 1 with its control: attack vs random ±ε noise, in the clean batch's std ---------------------
def test_random_sign_noise_moves_every_pixel_by_eps_inside_the_box(device):
    x = backend.to_device(np.random.default_rng(1).uniform(0, 1, (8, 2, 5, 5)).astype("float32"), device)
    noise = to_numpy(random_sign_noise(x, 0.1, seed=3))
    x = to_numpy(x)
    assert noise.dtype == x.dtype and noise.min() >= 0 and noise.max() <= 1
    inside = (x > 0.1) & (x < 0.9)
    np.testing.assert_allclose(np.abs(noise - x)[inside], 0.1, rtol=1e-5)  # exactly ±ε where not clipped
    assert 0.4 < np.mean((noise > x)[inside]) < 0.6  # both signs, about equally often
    np.testing.assert_array_equal(to_numpy(random_sign_noise(x, 0.1, seed=3)), noise)  # seeded
    assert not np.array_equal(to_numpy(random_sign_noise(x, 0.1, seed=4)), noise)


def test_statistics_shift_with_control_is_zero_for_noise_of_zero_size():
    model, x = model_and_batch()
    x_host = backend.to_host(x)
    result = statistics_shift_with_control(model, x_host, np.clip(x_host + 0.05, 0, 1), eps=0.0, seed=0)
    assert [(row["layer"], row["kind"]) for row in result["layers"]] == [("1", "BatchNorm2d"), ("4", "RobustNorm2d")]
    for row in result["layers"]:
        for key in SHIFT_KEYS:
            assert row["noise"][key] == 0 and row["noise"]["per_channel"][key] == [0.0] * len(row["noise"]
                                                                                             ["per_channel"][key])
        assert row["attack"]["mean_shift"] > 0.01
    assert result["summary"]["noise"] == {key: 0.0 for key in SHIFT_KEYS}
    assert result["summary"]["attack"]["mean_shift"] > 0.01
    json.dumps(result)  # plain Python types


def test_statistics_shift_with_control_measures_the_mean_shift_in_clean_standard_deviations():
    """A norm layer on the input itself: moving channel 0 by 0.05 is a shift of 0.05/std_0, channel 1 unmoved."""
    g = np.random.default_rng(2)
    x = g.uniform(0.2, 0.8, (64, 2, 8, 8)).astype("float32")
    x_adversarial = x.copy()
    x_adversarial[:, 0] += 0.05
    for norm in (nn.BatchNorm2d(2), nn.RobustNorm2d(2, p=0.5)):
        model = nn.Sequential(norm, nn.GlobalAvgPool2d(), nn.Linear(2, 3, generator=g))
        result = statistics_shift_with_control(model, x, x_adversarial, eps=0.1, seed=0)
        (row,) = result["layers"]
        std = np.sqrt(x.astype(np.float64).var(axis=(0, 2, 3)) + 1e-5)
        np.testing.assert_allclose(row["attack"]["per_channel"]["mean_shift"], [0.05 / std[0], 0], rtol=1e-4,
                                   atol=1e-6)
        assert row["attack"]["mean_shift"] == pytest.approx(0.05 / std[0] / 2, rel=1e-4)
        np.testing.assert_allclose(row["attack"]["per_channel"]["std_change"], 0, atol=1e-5)  # a shift, same spread
        np.testing.assert_allclose(row["attack"]["per_channel"]["own_scale_change"], 0, atol=1e-5)
        assert result["summary"]["attack"]["mean_shift"] == row["attack"]["mean_shift"]  # one layer
        # the control is random_sign_noise(x, eps, seed): its statistics, by hand
        noise = random_sign_noise(x, 0.1, seed=0).astype(np.float64)
        np.testing.assert_allclose(row["noise"]["per_channel"]["mean_shift"],
                                   np.abs(noise.mean(axis=(0, 2, 3)) - x.mean(axis=(0, 2, 3))) / std, rtol=1e-3)
        np.testing.assert_allclose(row["noise"]["per_channel"]["std_change"],
                                   np.sqrt(noise.var(axis=(0, 2, 3)) + 1e-5) / std - 1, rtol=1e-4)
        # ±0.1 noise (never clipped here) adds about 0.01 to the variance, and its signs average out
        np.testing.assert_allclose(row["noise"]["per_channel"]["std_change"], np.sqrt(1 + 0.01 / std**2) - 1, rtol=0.1)
        assert row["noise"]["mean_shift"] < 0.02


def test_batchnorm_and_robustnorm_on_the_same_input_report_the_same_std_unit_shift():
    x = np.random.default_rng(3).uniform(0, 1, (16, 1, 8, 8)).astype("float32")
    x_adversarial = np.clip(x + 0.1 * np.sign(np.sin(np.arange(x.size))).reshape(x.shape), 0, 1).astype("float32")
    results = {}
    for norm in (nn.BatchNorm2d(3), nn.RobustNorm2d(3)):
        g = np.random.default_rng(0)  # the same convolution in both models
        model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, generator=g), norm, nn.ReLU(), nn.GlobalAvgPool2d(),
                              nn.Linear(3, 2, generator=g))
        results[type(norm).__name__] = statistics_shift_with_control(model, x, x_adversarial, 0.1, seed=5)
    bn, rn = results["BatchNorm2d"]["layers"][0], results["RobustNorm2d"]["layers"][0]
    for source in ("attack", "noise"):
        for key in ("mean_shift", "std_change"):
            np.testing.assert_allclose(bn[source]["per_channel"][key], rn[source]["per_channel"][key], rtol=1e-6)
            assert bn[source][key] > 0
        # what each layer divides by moves differently: the std for BatchNorm, range^0.2 for RobustNorm
        assert bn[source]["own_scale_change"] == pytest.approx(bn[source]["std_change"], rel=1e-3)
        assert rn[source]["own_scale_change"] != pytest.approx(rn[source]["std_change"], rel=1e-2)


def test_statistics_shift_with_control_leaves_the_model_alone():
    model, x = model_and_batch()
    model.train()
    before = state(model)
    x_host = backend.to_host(x)
    result = statistics_shift_with_control(model, x_host, np.clip(x_host + 0.1, 0, 1), eps=0.1, seed=0)
    assert model.training and result["eps"] == 0.1
    for key, value in state(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    with pytest.raises(ValueError, match="no BatchNorm2d/RobustNorm2d"):
        statistics_shift_with_control(nn.Sequential(nn.GlobalAvgPool2d()), x_host, x_host, 0.1)
