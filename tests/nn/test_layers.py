"""Tests of minirn/nn/layers.py: PyTorch layouts and initialisation, forward values, gradient checks."""
import math

import numpy as np
import pytest

import minirn
from minirn import nn
from tests.conftest import make_tensor, to_numpy


# --- NumPy references written from the definitions -------------------------------------
def conv2d_reference(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return y if b is None else y + b[None, :, None, None]


def pool_reference(x, k, stride, reduce):
    n, c, h, w = x.shape
    h_out, w_out = (h - k) // stride + 1, (w - k) // stride + 1
    y = np.zeros((n, c, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            y[:, :, i, j] = reduce(x[:, :, i * stride : i * stride + k, j * stride : j * stride + k], axis=(2, 3))
    return y


# --- layouts and initialisation -----------------------------------------------------------
def test_pytorch_weight_layouts():
    conv = nn.Conv2d(3, 5, (2, 4), stride=2, padding=1)
    assert conv.weight.shape == (5, 3, 2, 4) and conv.bias.shape == (5,)
    assert nn.Conv2d(3, 5, 3, bias=False).bias is None
    lin = nn.Linear(4, 6)
    assert lin.weight.shape == (6, 4) and lin.bias.shape == (6,)
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    assert conv.weight.dtype_name == "float32" and lin.weight.device == "cpu"


@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda: nn.Conv2d(16, 64, 3), 16 * 9),
        (lambda: nn.Conv2d(8, 128, (3, 5)), 8 * 15),
        (lambda: nn.Linear(100, 300), 100),
    ],
)
def test_default_init_is_uniform_within_one_over_sqrt_fan_in(make, fan_in):
    layer = make()
    bound = 1.0 / math.sqrt(fan_in)
    weight, bias = layer.weight.numpy(), layer.bias.numpy()
    limit = bound * (1 + 1e-6)  # float32 rounding of a sample next to the bound
    assert np.abs(weight).max() <= limit and np.abs(bias).max() <= limit
    assert np.abs(weight).max() > 0.95 * bound  # the whole interval is used, not a narrower one
    # U(-b, b) has standard deviation b / sqrt(3)
    np.testing.assert_allclose(weight.std(), bound / math.sqrt(3.0), rtol=0.05)
    assert abs(weight.mean()) < 0.1 * bound


def test_init_follows_manual_seed_and_generator():
    minirn.manual_seed(3)
    a = nn.Linear(5, 4).weight.numpy()
    minirn.manual_seed(3)
    b = nn.Linear(5, 4).weight.numpy()
    c = nn.Linear(5, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(nn.Conv2d(2, 3, 3, generator=g1).weight.numpy(), nn.Conv2d(2, 3, 3, generator=g2).weight.numpy())


@pytest.mark.parametrize(
    "make",
    [lambda: nn.Conv2d(0, 3, 3), lambda: nn.Conv2d(2, -1, 3), lambda: nn.Linear(2.5, 3), lambda: nn.Linear(3, True)],
)
def test_bad_sizes_raise_value_error(make):
    with pytest.raises(ValueError, match="positive integer"):
        make()


def test_adaptive_avg_pool_supports_only_one():
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(2)


def test_pool_layers_are_distinct_types():
    assert not isinstance(nn.AvgPool2d(2), nn.MaxPool2d)


# --- forward values against NumPy ---------------------------------------------------------------
def test_conv2d_forward_matches_reference(device, rng):
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    x = rng.normal(size=(2, 3, 7, 6))
    expected = conv2d_reference(x, conv.weight.numpy(), conv.bias.numpy(), 2, 1)
    out = conv.to(device)(make_tensor(x, device))
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-10, atol=1e-12)


def test_linear_forward_matches_reference(device, rng):
    lin = nn.Linear(5, 3).double()
    x = rng.normal(size=(4, 5))
    expected = x @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(to_numpy(lin.to(device)(make_tensor(x, device))), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "layer, reference",
    [
        (nn.ReLU(), lambda x: np.maximum(x, 0.0)),
        (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1)),
        (nn.MaxPool2d(2), lambda x: pool_reference(x, 2, 2, np.max)),
        (nn.MaxPool2d(3, stride=1), lambda x: pool_reference(x, 3, 1, np.max)),
        (nn.AvgPool2d(2), lambda x: pool_reference(x, 2, 2, np.mean)),
        (nn.AvgPool2d(3, stride=2), lambda x: pool_reference(x, 3, 2, np.mean)),
        (nn.GlobalAvgPool2d(), lambda x: x.mean(axis=(2, 3))),
        (nn.AdaptiveAvgPool2d(1), lambda x: x.mean(axis=(2, 3), keepdims=True)),
        (nn.AdaptiveAvgPool2d((1, 1)), lambda x: x.mean(axis=(2, 3), keepdims=True)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_parameter_free_layers_match_reference(layer, reference, device, rng):
    x = rng.normal(size=(2, 3, 5, 6))
    out = layer(make_tensor(x, device))
    expected = reference(x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-12, atol=1e-15)


def test_layers_reject_wrong_input_shapes():
    with pytest.raises(ValueError, match="channels"):
        nn.Conv2d(3, 4, 3)(minirn.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="linear"):
        nn.Linear(5, 3)(minirn.zeros((2, 4)))


# --- gradient checks (float64 via module.double()) --------------------------------------------------
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Conv2d(2, 3, 3, stride=1, padding=1), (2, 2, 4, 4)),
        (lambda: nn.Conv2d(2, 3, (3, 2), stride=2, padding=1), (2, 2, 5, 5)),
        (lambda: nn.Conv2d(2, 3, 1, bias=False), (2, 2, 3, 3)),
        (lambda: nn.Linear(4, 3), (5, 4)),
        (lambda: nn.ReLU(), (2, 3, 3, 3)),
        (lambda: nn.Flatten(), (2, 3, 2, 2)),
        (lambda: nn.MaxPool2d(2), (2, 2, 4, 4)),
        (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 5, 5)),
        (lambda: nn.AvgPool2d(2, stride=1), (2, 2, 3, 3)),
        (lambda: nn.GlobalAvgPool2d(), (2, 3, 3, 2)),
        (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 3, 2)),
    ],
    ids=["conv-s1p1", "conv-s2p1", "conv-1x1-nobias", "linear", "relu", "flatten", "maxpool", "maxpool-pad",
         "avgpool", "gap", "adaptive"],
)
def test_layer_gradcheck(make, shape, device, rng):
    layer = make().double().to(device)
    x = rng.normal(size=shape)
    x = np.where(np.abs(x) < 0.05, 0.3, x)  # keep ReLU inputs away from the kink
    inputs = [make_tensor(x, device, requires_grad=True), *layer.parameters()]
    assert minirn.gradcheck(lambda x, *params: layer(x), inputs, max_elements=40)


# --- Normalize: the input standardisation ------------------------------------------------------------------
def test_normalize_matches_reference_in_the_input_dtype(device, rng):
    layer = nn.Normalize([0.1, 0.5, -0.2], [0.2, 0.25, 2.0])
    x = rng.uniform(0.0, 1.0, size=(2, 3, 4, 5))
    expected = (x - np.array([0.1, 0.5, -0.2]).reshape(1, 3, 1, 1)) / np.array([0.2, 0.25, 2.0]).reshape(1, 3, 1, 1)
    for dtype, rtol in (("float64", 1e-12), ("float32", 1e-6)):
        out = layer(make_tensor(x, device, dtype=dtype))
        assert out.dtype_name == dtype and out.device == device
        np.testing.assert_allclose(to_numpy(out), expected, rtol=rtol, atol=rtol)
    assert layer.state_dict() == {}  # constants of the model, recorded in its description


def test_normalize_takes_a_plain_array_as_every_other_layer_does(rng):
    # training feeds batches as arrays; the layer first in a network must accept them
    layer = nn.Normalize([0.1307], [0.3081])
    x = rng.uniform(0.0, 1.0, size=(2, 1, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(layer(x)), (x - np.float32(0.1307)) / np.float32(0.3081), rtol=1e-6)


def test_normalize_gradcheck_along_a_random_direction(device, rng):
    layer = nn.Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
    x = make_tensor(rng.uniform(0.0, 1.0, size=(2, 3, 4, 4)), device, requires_grad=True)
    assert minirn.gradcheck(layer, [x])


@pytest.mark.parametrize("mean, std", [([0.1], [0.0]), ([0.1, 0.2], [0.3]), ([], []), ([float("nan")], [1.0]),
                                       (["0.1"], [1.0]), ([True], [1.0])])
def test_normalize_rejects_bad_constants(mean, std):
    with pytest.raises(ValueError, match="Normalize"):
        nn.Normalize(mean, std)


def test_normalize_rejects_the_wrong_number_of_channels():
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\)"):
        nn.Normalize([0.1] * 3, [0.2] * 3)(minirn.zeros((1, 1, 4, 4)))
