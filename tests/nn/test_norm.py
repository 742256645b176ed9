"""Tests of minirn/nn/norm.py: BatchNorm2d, RobustNorm2d, the eval-statistics switch, GroupNorm, LayerNorm.

Forward values are compared with NumPy references written from the paper's
equations (``bn_reference``/``rn_reference`` in tests/references.py).
"""
import numpy as np
import pytest

import minirn
from minirn import backend, models, nn
from tests.conftest import make_tensor, to_numpy
from tests.references import bn_reference, reduce_axes, rn_reference

NORMS = {
    "bn": lambda c, **kw: nn.BatchNorm2d(c, **kw),
    "rn": lambda c, **kw: nn.RobustNorm2d(c, p=0.5, **kw),
}
# (eval_mean, eval_scale): the paper's three variants (minirn.nn.EVAL_STATISTICS) and the fourth mix
EVAL_STATS = [*(variant.setting for variant in nn.EVAL_STATISTICS), ("batch", "running")]


def reference(kind, x, gamma, beta, mean=None, scale=None, eps=1e-5):
    if kind == "bn":
        return bn_reference(x, gamma, beta, mean, scale, eps)
    return rn_reference(x, gamma, beta, mean, scale, p=0.5, eps=eps)


def scale_buffer(kind):
    return "running_var" if kind == "bn" else "running_range"


def randomize(layer, rng, device):
    """Random γ, β and running statistics (float64) on ``device``; returns them as NumPy arrays."""
    c = layer.num_features
    values = {
        "weight": rng.uniform(0.5, 2.0, c), "bias": rng.normal(size=c),
        "running_mean": rng.normal(size=c), scale_buffer("bn" if isinstance(layer, nn.BatchNorm2d) else "rn"):
        rng.uniform(0.5, 3.0, c),
    }
    layer.double().to(device).load_state_dict(values)
    return values


def snapshot(module):
    return {k: to_numpy(v).copy() for k, v in module.state_dict().items()}


# --- construction -------------------------------------------------------------------------------
def test_defaults_like_pytorch():
    bn = nn.BatchNorm2d(3)
    assert (bn.eps, bn.momentum, bn.affine, bn.eval_mean, bn.eval_scale) == (1e-5, 0.1, True, "running", "running")
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(3))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(3))
    np.testing.assert_array_equal(to_numpy(bn.running_mean), np.zeros(3))
    np.testing.assert_array_equal(to_numpy(bn.running_var), np.ones(3))
    rn = nn.RobustNorm2d(3)
    assert (rn.p, rn.eps, rn.momentum, rn.affine) == (0.2, 1e-5, 0.1, True)
    assert list(rn.state_dict()) == ["weight", "bias", "running_mean", "running_range"]
    np.testing.assert_array_equal(to_numpy(rn.running_range), np.ones(3))


def test_positional_arguments_follow_the_signature():
    bn = nn.BatchNorm2d(4, 1e-3, 0.25, False)
    assert (bn.num_features, bn.eps, bn.momentum, bn.affine) == (4, 1e-3, 0.25, False)
    assert list(bn.parameters()) == [] and bn.weight is None
    rn = nn.RobustNorm2d(4, 1.0, 1e-3, 0.25, False)
    assert (rn.p, rn.eps, rn.momentum, rn.affine) == (1.0, 1e-3, 0.25, False)


@pytest.mark.parametrize("p", [0, 0.0, -0.2, "0.2", None])
def test_robust_norm_p_must_be_positive(p):
    with pytest.raises(ValueError, match="p must be a positive number"):
        nn.RobustNorm2d(3, p=p)


@pytest.mark.parametrize("kind", NORMS)
def test_bad_hyper_parameters(kind):
    for momentum in (1.5, -0.1, None):  # None (PyTorch's cumulative average) is not supported
        with pytest.raises(ValueError, match="momentum must lie in"):
            NORMS[kind](3, momentum=momentum)
    with pytest.raises(ValueError, match="eps"):
        NORMS[kind](3, eps=-1.0)
    with pytest.raises(ValueError, match="num_features"):
        NORMS[kind](0)


@pytest.mark.parametrize("kind", NORMS)
def test_eval_statistics_must_be_running_or_batch(kind):
    layer = NORMS[kind](3)
    with pytest.raises(ValueError, match="eval_mean must be 'running' or 'batch'"):
        layer.eval_mean = "population"
    with pytest.raises(ValueError, match="eval_scale"):
        layer.eval_scale = None
    assert (layer.eval_mean, layer.eval_scale) == ("running", "running")


@pytest.mark.parametrize("kind", NORMS)
def test_wrong_input_shape_is_a_clear_error(kind):
    layer = NORMS[kind](3)
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\) or \(N, 3\)"):
        layer(minirn.zeros((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="got shape"):
        layer(minirn.zeros((2, 3, 4)))


# --- forward: training and every eval variant ---------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 3)], ids=["NCHW", "NC"])
@pytest.mark.parametrize("kind", NORMS)
def test_training_forward_uses_batch_statistics(kind, shape, device, rng):
    layer = NORMS[kind](3, eps=0.1)
    values = randomize(layer, rng, device)
    x = rng.normal(size=shape) * 2.0 + 1.0
    expected = reference(kind, x, values["weight"], values["bias"], eps=0.1)
    np.testing.assert_allclose(to_numpy(layer(make_tensor(x, device))), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("eval_stats", EVAL_STATS, ids=["-".join(s) for s in EVAL_STATS])
@pytest.mark.parametrize("kind", NORMS)
def test_eval_forward_for_each_statistics_choice(kind, eval_stats, device, rng):
    layer = NORMS[kind](3)
    values = randomize(layer, rng, device)
    nn.set_norm_eval_stats(layer, mean=eval_stats[0], scale=eval_stats[1]).eval()
    x = rng.normal(size=(5, 3, 2, 3)) * 2.0 + 1.0
    expected = reference(
        kind, x, values["weight"], values["bias"],
        mean=values["running_mean"] if eval_stats[0] == "running" else None,
        scale=values[scale_buffer(kind)] if eval_stats[1] == "running" else None,
    )
    before = snapshot(layer)
    np.testing.assert_allclose(to_numpy(layer(make_tensor(x, device))), expected, rtol=1e-10, atol=1e-12)
    # evaluating never updates the running buffers, whatever statistics it uses
    for key, value in snapshot(layer).items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("kind", NORMS)
def test_eval_with_batch_statistics_equals_training_output(kind, device, rng):
    layer = NORMS[kind](3)
    randomize(layer, rng, device)
    x = make_tensor(rng.normal(size=(4, 3, 2, 2)), device)
    with minirn.freeze_running_stats():
        train_out = to_numpy(layer.train()(x))
    nn.set_norm_eval_stats(layer, "batch", "batch")
    np.testing.assert_allclose(to_numpy(layer.eval()(x)), train_out, rtol=1e-12)
    nn.set_norm_eval_stats(layer, "running", "running")
    assert not np.allclose(to_numpy(layer(x)), train_out)


# --- the switch over a whole model ---------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: models.small_cnn("bn"), lambda: models.resnet(8, "rn", width=4)])
def test_set_norm_eval_stats_switches_every_norm_layer(make):
    model = make()
    layers = nn.norm_layers(model)
    assert len(layers) >= 3 and all(isinstance(m, (nn.BatchNorm2d, nn.RobustNorm2d)) for m in layers)
    assert nn.get_norm_eval_stats(model) == ("running", "running")
    assert nn.set_norm_eval_stats(model, mean="running", scale="batch") is model
    assert all((m.eval_mean, m.eval_scale) == ("running", "batch") for m in layers)
    assert nn.get_norm_eval_stats(model) == ("running", "batch")
    nn.set_norm_eval_stats(model, "batch", "batch")
    assert nn.get_norm_eval_stats(model) == ("batch", "batch")
    layers[0].eval_mean = "running"
    with pytest.raises(ValueError, match="different eval statistics"):
        nn.get_norm_eval_stats(model)


def test_set_norm_eval_stats_rejects_unknown_values_and_ignores_other_layers():
    model = models.small_cnn("gn")
    assert nn.norm_layers(model) == [] and nn.get_norm_eval_stats(model) is None
    assert nn.set_norm_eval_stats(model, "batch", "batch") is model
    with pytest.raises(ValueError, match="mean must be 'running' or 'batch'"):
        nn.set_norm_eval_stats(models.small_cnn("bn"), mean="train")
    with pytest.raises(ValueError, match="scale"):
        nn.set_norm_eval_stats(models.small_cnn("bn"), scale="test")


# --- running statistics ----------------------------------------------------------------------------------
def closed_form_ema(initial, batch_values, momentum):
    """r_k = (1-m)^k r_0 + sum_j m (1-m)^(k-j) s_j for j = 1..k."""
    k = len(batch_values)
    return (1 - momentum) ** k * initial + sum(
        momentum * (1 - momentum) ** (k - j) * s for j, s in enumerate(batch_values, start=1)
    )


@pytest.mark.parametrize("momentum", [0.1, 0.3])
@pytest.mark.parametrize("kind", NORMS)
def test_running_statistics_follow_the_ema(kind, momentum, device, rng):
    layer = NORMS[kind](3, momentum=momentum).double().to(device)
    batches = [rng.normal(size=(4, 3, 2, 3)) * (i + 1) + i for i in range(4)]
    for x in batches:
        layer(make_tensor(x, device))
    axes = reduce_axes(batches[0])
    n = 4 * 2 * 3
    means = [x.mean(axis=axes) for x in batches]
    if kind == "bn":
        scales, initial = [x.var(axis=axes) * n / (n - 1) for x in batches], 1.0  # unbiased, like PyTorch
    else:
        scales, initial = [x.max(axis=axes) - x.min(axis=axes) for x in batches], 1.0
    np.testing.assert_allclose(to_numpy(layer.running_mean), closed_form_ema(0.0, means, momentum), rtol=1e-12)
    np.testing.assert_allclose(
        to_numpy(getattr(layer, scale_buffer(kind))), closed_form_ema(initial, scales, momentum), rtol=1e-12
    )


@pytest.mark.parametrize("kind", NORMS)
def test_freeze_running_stats_and_gradcheck_leave_buffers_alone(kind, device, rng):
    layer = NORMS[kind](3).double().to(device)
    x = make_tensor(rng.normal(size=(4, 3, 2, 2)) + 3.0, device, requires_grad=True)
    before = snapshot(layer)
    with minirn.freeze_running_stats():
        layer(x)
    assert minirn.gradcheck(lambda x, *params: layer(x), [x, *layer.parameters()], max_elements=10)
    for key, value in snapshot(layer).items():
        np.testing.assert_array_equal(value, before[key])
    layer(x)  # outside the context the training step does update them
    assert not np.array_equal(to_numpy(layer.running_mean), before["running_mean"])


@pytest.mark.parametrize("kind", NORMS)
def test_layer_gradcheck_train_and_eval(kind, device, rng):
    layer = NORMS[kind](3)
    randomize(layer, rng, device)
    x = make_tensor(rng.normal(size=(3, 3, 2, 2)), device, requires_grad=True)
    for eval_stats in [None, *EVAL_STATS]:
        if eval_stats is None:
            layer.train()
        else:
            nn.set_norm_eval_stats(layer, *eval_stats).eval()
        assert minirn.gradcheck(lambda x, *params: layer(x), [x, *layer.parameters()])


# --- edge cases ----------------------------------------------------------------------------------------
def test_batchnorm_batch_of_one_in_training_is_a_clear_error(device):
    bn = nn.BatchNorm2d(3).to(device)
    before = snapshot(bn)
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        bn(make_tensor(np.ones((1, 3)), device, dtype="float32"))
    for key, value in snapshot(bn).items():
        np.testing.assert_array_equal(value, before[key])
    # a single example is fine with running statistics in eval mode
    out = bn.eval()(make_tensor(np.full((1, 3), 2.0), device, dtype="float32"))
    np.testing.assert_allclose(to_numpy(out), np.full((1, 3), 2.0 / np.sqrt(1.0 + 1e-5)), rtol=1e-6)


@pytest.mark.parametrize("p", [0.2, 1.0])
def test_robust_norm_constant_channel_is_finite_with_documented_gradient(p, device, rng):
    """Range 0: d = 0^p + ε = ε, x̂ = 0, and ∂r^p/∂r is defined as 0 (``RobustNorm.backward``)."""
    layer = nn.RobustNorm2d(3, p=p)
    values = randomize(layer, rng, device)
    x = rng.normal(size=(4, 3, 2, 2))
    x[:, 1] = 3.0  # a constant channel (exactly representable, so its mean is exactly 3)
    u = rng.normal(size=x.shape)
    t = make_tensor(x, device, requires_grad=True)
    y = layer(t)
    y.backward(make_tensor(u, device))
    out, grad = to_numpy(y), to_numpy(t.grad)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(out[:, 1], values["bias"][1])
    assert to_numpy(layer.running_range)[1] == pytest.approx(0.9 * values["running_range"][1], rel=1e-12)
    eps = layer.eps
    np.testing.assert_allclose(grad[:, 1], values["weight"][1] * (u[:, 1] - u[:, 1].mean()) / eps, rtol=1e-10)
    assert np.all(np.isfinite(to_numpy(layer.weight.grad)))
    assert to_numpy(layer.weight.grad)[1] == 0.0
    np.testing.assert_allclose(to_numpy(layer.bias.grad)[1], u[:, 1].sum(), rtol=1e-12)
    # the other channels do not notice: channels are normalised independently
    x_other = x.copy()
    x_other[:, 1] = rng.normal(size=x[:, 1].shape)
    t_other = make_tensor(x_other, device, requires_grad=True)
    layer(t_other).backward(make_tensor(u, device))
    np.testing.assert_allclose(grad[:, [0, 2]], to_numpy(t_other.grad)[:, [0, 2]], rtol=1e-12)


def test_robust_norm_batch_of_one_is_finite(device):
    rn = nn.RobustNorm2d(2).to(device)
    t = make_tensor(np.array([[1.0, -2.0]]), device, dtype="float32", requires_grad=True)
    y = rn(t)
    y.backward(make_tensor(np.ones((1, 2)), device, dtype="float32"))
    assert np.all(np.isfinite(to_numpy(y))) and np.all(np.isfinite(to_numpy(t.grad)))


@pytest.mark.parametrize("scale", [1e4, 1e-4])
@pytest.mark.parametrize("kind", NORMS)
def test_extreme_activations_in_float32_match_float64(kind, scale, device, rng):
    x = (rng.normal(size=(8, 3, 4, 4)) + 1.0) * scale
    u = rng.normal(size=x.shape)
    results = {}
    for dtype in ("float32", "float64"):
        minirn.manual_seed(0)
        layer = NORMS[kind](3).to(device, dtype=dtype)
        t = make_tensor(x, device, dtype=dtype, requires_grad=True)
        y_train = layer(t)  # training step: batch statistics, updates the running ones
        y_train.backward(make_tensor(u, device, dtype=dtype))
        y_eval = layer.eval()(make_tensor(x, device, dtype=dtype))
        results[dtype] = [to_numpy(a).astype(np.float64) for a in (y_train, t.grad, y_eval)]
    for got, expected in zip(results["float32"], results["float64"]):
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


# --- GroupNorm and LayerNorm ---------------------------------------------------------------------------
def gn_reference(x, groups, gamma, beta, eps=1e-5):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    x_hat = ((grouped - grouped.mean(axis=2, keepdims=True)) / np.sqrt(grouped.var(axis=2, keepdims=True) + eps))
    return x_hat.reshape(x.shape) * gamma.reshape(1, c, 1, 1) + beta.reshape(1, c, 1, 1)


def ln_reference(x, ndim, gamma, beta, eps=1e-5):
    axes = tuple(range(x.ndim - ndim, x.ndim))
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return x_hat * gamma + beta


def _batch_independent_case(name):
    """(layer, its NumPy reference, input shape)."""
    if name == "gn":
        return nn.GroupNorm(2, 6), lambda x, w, b: gn_reference(x, 2, w, b), (3, 6, 2, 2)
    if name == "gn1":
        return nn.GroupNorm(1, 4), lambda x, w, b: gn_reference(x, 1, w, b), (3, 4, 2, 3)
    if name == "ln-last":
        return nn.LayerNorm(5), lambda x, w, b: ln_reference(x, 1, w, b), (3, 4, 5)
    return nn.LayerNorm((3, 2, 2)), lambda x, w, b: ln_reference(x, 3, w, b), (3, 3, 2, 2)


BATCH_INDEPENDENT = ["gn", "gn1", "ln-last", "ln-chw"]


def _randomized(name, rng, device):
    layer, ref, shape = _batch_independent_case(name)
    w, b = rng.uniform(0.5, 2.0, layer.weight.shape), rng.normal(size=layer.bias.shape)
    layer.double().to(device).load_state_dict({"weight": w, "bias": b})
    return layer, ref, shape, w, b


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_batch_independent_norm_forward(name, device, rng):
    layer, ref, shape, w, b = _randomized(name, rng, device)
    x = rng.normal(size=shape) * 3.0 + 1.0
    np.testing.assert_allclose(to_numpy(layer(make_tensor(x, device))), ref(x, w, b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_batch_independent_norm_gradcheck(name, device, rng):
    layer, _, shape, _, _ = _randomized(name, rng, device)
    x = make_tensor(rng.normal(size=shape), device, requires_grad=True)
    assert minirn.gradcheck(lambda x, *params: layer(x), [x, *layer.parameters()])


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_batch_independent_norm_ignores_the_rest_of_the_batch(name, device, rng):
    layer, _, shape, _, _ = _randomized(name, rng, device)
    x = rng.normal(size=shape)
    other = x.copy()
    other[1:] = rng.normal(size=other[1:].shape) * 10.0 + 5.0
    first = to_numpy(layer(make_tensor(x, device)))[0]
    np.testing.assert_allclose(to_numpy(layer(make_tensor(other, device)))[0], first, rtol=1e-12, atol=1e-14)
    # BatchNorm, by contrast, depends on the rest of the batch (so this test can tell them apart)
    if len(shape) == 4:
        bn = nn.BatchNorm2d(shape[1]).double().to(device)
        assert not np.allclose(to_numpy(bn(make_tensor(other, device)))[0], to_numpy(bn(make_tensor(x, device)))[0])


def test_group_norm_bad_groups():
    with pytest.raises(ValueError, match="cannot be split"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="GroupNorm"):
        nn.GroupNorm(2, 4)(minirn.zeros((2, 6, 2, 2)))


def test_layer_norm_shape_mismatch():
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(4)(minirn.zeros((2, 5)))


# --- state round trip -------------------------------------------------------------------------------------
def _trained(norm, device, rng):
    minirn.manual_seed(11)
    model = models.small_cnn(norm).to(device)
    for _ in range(3):
        model(make_tensor(rng.normal(size=(4, 1, 6, 6)) * 2.0 + 0.5, device, dtype="float32"))
    return model


@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_state_dict_round_trip_restores_outputs_bit_for_bit(norm, device, rng):
    model = _trained(norm, device, rng)
    assert not np.array_equal(to_numpy(nn.norm_layers(model)[0].running_mean), np.zeros(32))
    state = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    minirn.manual_seed(99)
    fresh = models.small_cnn(norm).to(device)
    x = make_tensor(rng.normal(size=(3, 1, 6, 6)), device, dtype="float32")
    assert not np.array_equal(to_numpy(fresh.eval()(x)), to_numpy(model.eval()(x)))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(to_numpy(fresh(x)), to_numpy(model(x)))


@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_checkpoint_round_trip_restores_outputs_bit_for_bit(norm, device, rng, tmp_path):
    serialization = pytest.importorskip("minirn.serialization")
    model = _trained(norm, device, rng).eval()
    serialization.save({"model": model.state_dict()}, tmp_path / "model.npz")
    minirn.manual_seed(99)
    fresh = models.small_cnn(norm).to(device).eval()
    fresh.load_state_dict(serialization.load(tmp_path / "model.npz")["model"])
    for key, value in fresh.state_dict().items():
        assert backend.device_of(value) == device and backend.dtype_name(value.dtype) == "float32", key
    x = make_tensor(rng.normal(size=(3, 1, 6, 6)), device, dtype="float32")
    np.testing.assert_array_equal(to_numpy(fresh(x)), to_numpy(model(x)))


# --- BatchNorm2d(formula="authors"): the function the authors' code computes --------------------------------
def authors_reference(x, gamma, beta, mean=None, var=None, eps=1e-5):
    """γ (x - μ) / (sqrt(σ²) + ε) + β, σ² the unbiased batch variance unless given (their models/norm.py)."""
    mu = x.mean(axis=(0, 2, 3)) if mean is None else mean
    sigma_squared = x.var(axis=(0, 2, 3), ddof=1) if var is None else var
    view = (1, -1, 1, 1)
    return gamma.reshape(view) * (x - mu.reshape(view)) / (np.sqrt(sigma_squared).reshape(view) + eps) + beta.reshape(view)


@pytest.mark.parametrize("eval_mean, eval_scale", EVAL_STATS)
def test_authors_formula_trains_and_evaluates_like_their_layer(eval_mean, eval_scale, rng):
    layer = nn.BatchNorm2d(3, formula="authors")
    gamma, beta = rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32)
    layer.weight.data, layer.bias.data = gamma, beta
    x = rng.normal(size=(4, 3, 5, 5)) * 2 + 1
    y = layer(minirn.tensor(x, dtype="float32"))
    np.testing.assert_allclose(y.numpy(), authors_reference(x, gamma, beta), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-7)
    layer.eval()
    layer.eval_mean, layer.eval_scale = eval_mean, eval_scale
    expected = authors_reference(x, gamma, beta, None if eval_mean == "batch" else layer.running_mean,
                                 None if eval_scale == "batch" else layer.running_var)
    np.testing.assert_allclose(layer(minirn.tensor(x, dtype="float32")).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_formula_is_checked_and_shown():
    with pytest.raises(ValueError, match="formula must be one of standard, authors"):
        nn.BatchNorm2d(3, formula="theirs")
    assert "formula='authors'" in repr(nn.BatchNorm2d(3, formula="authors"))
    assert "formula" not in repr(nn.BatchNorm2d(3))
