"""Tests of He-normal fan-out initialisation: minirn.nn.init.kaiming_normal_fan_out, minirn.models.he_init,
``models.build(..., init="he")`` and ``Recipe(init="he")``.

Statistical tolerances: for n independent N(0, σ²) samples the sample standard deviation s has
standard error ≈ σ / sqrt(2n) and the sample mean σ / sqrt(n); the checks allow 5 standard errors
(a false failure about once in 10⁶ draws), and the seeds are fixed, so they are also repeatable.
"""
import math

import numpy as np
import pytest

import minirn
from minirn import models, nn
from minirn.data import load_dataset
from minirn.train import Recipe, train_model
from tests.conftest import to_numpy

SIGMAS = 5


def assert_normal_with_std(values, std, what=""):
    """values look like i.i.d. N(0, std²): mean, standard deviation, and the share within one std (68.27%)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    assert abs(values.mean()) < SIGMAS * std / math.sqrt(n), what
    assert values.std(ddof=1) == pytest.approx(std, rel=SIGMAS / math.sqrt(2 * n)), what
    inside = 0.6826894921370859  # P(|Z| < 1) for a standard normal
    share = np.mean(np.abs(values) < std)
    assert abs(share - inside) < SIGMAS * math.sqrt(inside * (1 - inside) / n), what  # a uniform would give 0.577


def conv_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_kaiming_normal_fan_out_has_the_he_std():
    shape = (256, 64, 3, 3)  # out != in, so fan-out (256*9) and fan-in (64*9) give different stds
    weight = to_numpy(nn.init.kaiming_normal_fan_out(shape, generator=0))
    assert weight.shape == shape and weight.dtype == np.float32
    assert_normal_with_std(weight, math.sqrt(2 / (256 * 3 * 3)))
    assert nn.init.fan_out(shape) == 256 * 9 and nn.init.fan_out((10, 300)) == 10


def test_kaiming_normal_fan_out_of_a_matrix_uses_its_rows():
    weight = to_numpy(nn.init.kaiming_normal_fan_out((2000, 50), generator=1))
    assert_normal_with_std(weight, math.sqrt(2 / 2000))


def test_kaiming_normal_fan_out_is_seeded():
    shape = (8, 4, 3, 3)
    a = to_numpy(nn.init.kaiming_normal_fan_out(shape, generator=3))
    np.testing.assert_array_equal(a, to_numpy(nn.init.kaiming_normal_fan_out(shape, generator=3)))
    assert not np.array_equal(a, to_numpy(nn.init.kaiming_normal_fan_out(shape, generator=4)))
    minirn.manual_seed(5)
    b = to_numpy(nn.init.kaiming_normal_fan_out(shape))  # the global generator
    minirn.manual_seed(5)
    np.testing.assert_array_equal(b, to_numpy(nn.init.kaiming_normal_fan_out(shape)))


def test_he_init_redraws_the_convolutions_and_zeroes_their_biases():
    minirn.manual_seed(0)
    model = models.small_cnn(norm="none")  # convolutions with biases
    assert models.he_init(model) is model
    convs = conv_layers(model)
    assert len(convs) == 3
    for conv in convs:
        out_channels, _, kh, kw = conv.weight.shape
        assert_normal_with_std(to_numpy(conv.weight), math.sqrt(2 / (out_channels * kh * kw)), str(conv.weight.shape))
        assert conv.bias is not None
        np.testing.assert_array_equal(to_numpy(conv.bias), 0)


def test_he_init_differs_from_the_torch_default():
    """PyTorch's default conv weight is U(±1/sqrt(fan_in)): std 1/sqrt(3 fan_in), 0.034 for conv 2, not He's 0.059."""
    minirn.manual_seed(0)
    default = models.small_cnn(norm="bn")
    second = conv_layers(default)[1]
    assert to_numpy(second.weight).std() == pytest.approx(1 / math.sqrt(3 * 32 * 9), rel=0.05)
    models.he_init(default)
    assert to_numpy(second.weight).std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)


@pytest.mark.parametrize("norm", ["none", "bn", "rn"])
def test_he_init_leaves_linear_layers_and_norms_alone(norm):
    minirn.manual_seed(1)
    default = models.small_cnn(norm=norm)
    minirn.manual_seed(1)
    he = models.he_init(models.small_cnn(norm=norm))
    before, after = default.state_dict(), he.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not np.array_equal(to_numpy(before[k]), to_numpy(after[k]))}
    # exactly the convolutions' weights (and, without a norm, their biases) change
    convs = {name: m for name, m in he.named_modules() if isinstance(m, nn.Conv2d)}
    assert changed == {f"{name}.{what}" for name, m in convs.items() for what in ("weight", "bias")
                       if getattr(m, what) is not None}
    linear = [name for name, m in he.named_modules() if isinstance(m, nn.Linear)]
    assert linear == ["10"] and {"10.weight", "10.bias"} <= before.keys() - changed


def test_build_with_he_init_is_seeded():
    def weights(seed):
        minirn.manual_seed(seed)
        model = models.build("small-cnn", "bn", in_channels=1, num_classes=10, init="he")
        return {k: to_numpy(v) for k, v in model.state_dict().items()}

    first, again, other = weights(5), weights(5), weights(6)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not np.array_equal(first["0.weight"], other["0.weight"])
    minirn.manual_seed(5)
    by_hand = models.he_init(models.small_cnn("bn", in_channels=1, num_classes=10))
    for key, value in by_hand.state_dict().items():  # build(init="he") is build, then he_init
        np.testing.assert_array_equal(to_numpy(value), first[key], err_msg=key)


def test_build_with_he_init_on_a_resnet():
    minirn.manual_seed(0)
    model = models.build("resnet8", "bn", in_channels=3, num_classes=10, init="he")
    convs = conv_layers(model)
    assert any(c.weight.shape[2] == 1 for c in convs)  # the 1x1 shortcut convolutions are included
    for conv in convs:
        out_channels, _, kh, kw = conv.weight.shape
        assert_normal_with_std(to_numpy(conv.weight), math.sqrt(2 / (out_channels * kh * kw)), str(conv.weight.shape))


def test_he_init_keeps_the_device_and_dtype(device):
    minirn.manual_seed(0)
    model = models.small_cnn(norm="none").to(device)
    models.he_init(model)
    for conv in conv_layers(model):
        assert conv.weight.device == device and conv.weight.dtype == conv.bias.dtype
        np.testing.assert_array_equal(to_numpy(conv.bias), 0)
    x = minirn.tensor(np.zeros((2, 1, 8, 8)), dtype="float32", device=device)
    assert model(x).shape == (2, 10)  # still a working model on that device


@pytest.mark.parametrize("init", ["xavier", "He", "", None])
def test_unknown_init_is_refused(init):
    assert models.INITS == ("torch", "he")
    with pytest.raises(ValueError, match="unknown init"):
        Recipe(init=init)
    with pytest.raises(ValueError, match="unknown init"):
        models.build("small-cnn", "bn", in_channels=1, num_classes=10, init=init)


def test_train_model_with_the_he_recipe_starts_from_he_weights():
    """With lr = 0 training does not move the weights, so the trained model shows its initialisation."""
    data = load_dataset("digits")
    x, y = data.x_train[:64], data.y_train[:64]
    recipe = Recipe(epochs=1, batch_size=64, lr=0.0, init="he")
    model, history = train_model(lambda: models.small_cnn(norm="none"), recipe, (x, y), seed=2, progress=False)
    assert len(history) == 1
    minirn.manual_seed(2)
    expected = models.he_init(models.small_cnn(norm="none"))
    for conv, reference in zip(conv_layers(model), conv_layers(expected)):
        np.testing.assert_array_equal(to_numpy(conv.weight), to_numpy(reference.weight))
        np.testing.assert_array_equal(to_numpy(conv.bias), 0)
        out_channels, _, kh, kw = conv.weight.shape
        assert_normal_with_std(to_numpy(conv.weight), math.sqrt(2 / (out_channels * kh * kw)))
    # the torch recipe, same seed: other convolution weights
    torch_model, _ = train_model(lambda: models.small_cnn(norm="none"), Recipe(epochs=1, batch_size=64, lr=0.0),
                                 (x, y), seed=2, progress=False)
    assert not np.array_equal(to_numpy(conv_layers(torch_model)[1].weight), to_numpy(conv_layers(model)[1].weight))
