"""Tests of minirn/models.py: small_cnn and the CIFAR ResNet (structure, counts, end-to-end gradients)."""
import functools

import numpy as np
import pytest

import minirn
from minirn import models, nn
from tests.conftest import make_tensor, to_numpy

ALL_NORMS = ["none", "bn", "rn", "gn", "ln"]
NORM_TYPES = {"bn": nn.BatchNorm2d, "rn": nn.RobustNorm2d, "gn": nn.GroupNorm, "ln": nn.GroupNorm, "none": nn.Identity}


# --- small_cnn ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ALL_NORMS)
def test_small_cnn_output_shape(norm, device, rng):
    model = models.small_cnn(norm).to(device)
    out = model(make_tensor(rng.normal(size=(3, 1, 12, 12)), device, dtype="float32"))
    assert out.shape == (3, 10) and out.dtype_name == "float32" and out.device == device
    assert np.all(np.isfinite(to_numpy(out)))
    assert models.small_cnn(norm, in_channels=3, num_classes=4)(minirn.zeros((2, 3, 5, 5))).shape == (2, 4)


@pytest.mark.parametrize("norm", ALL_NORMS)
def test_small_cnn_exact_layer_sequence(norm):
    model = models.small_cnn(norm, p=0.5)
    layers = list(model)
    assert len(layers) == 11
    convs = [(1, 32, 1), (32, 64, 2), (64, 64, 2)]
    for i, (c_in, c_out, stride) in enumerate(convs):
        conv, norm_layer, relu = layers[3 * i : 3 * i + 3]
        assert type(conv) is nn.Conv2d
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
            c_in, c_out, (3, 3), stride, 1)
        assert conv.weight.shape == (c_out, c_in, 3, 3)
        assert (conv.bias is not None) == (norm == "none")  # a bias only without normalization
        assert type(norm_layer) is NORM_TYPES[norm]
        if norm in ("bn", "rn"):
            assert norm_layer.num_features == c_out
        if norm == "rn":
            assert norm_layer.p == 0.5
        if norm == "gn":
            assert (norm_layer.num_groups, norm_layer.num_channels) == (c_out // 4, c_out)
        if norm == "ln":
            assert (norm_layer.num_groups, norm_layer.num_channels) == (1, c_out)
        assert type(relu) is nn.ReLU
    assert type(layers[9]) is nn.GlobalAvgPool2d
    assert type(layers[10]) is nn.Linear and layers[10].weight.shape == (10, 64) and layers[10].bias is not None


def test_small_cnn_parameter_count_closed_form():
    conv = 9 * 1 * 32 + 9 * 32 * 64 + 9 * 64 * 64
    linear = 64 * 10 + 10
    norm_params = 2 * (32 + 64 + 64)
    assert sum(p.size for p in models.small_cnn("bn").parameters()) == conv + norm_params + linear
    assert sum(p.size for p in models.small_cnn("none").parameters()) == conv + (32 + 64 + 64) + linear


def test_norm_factory_and_unknown_norm():
    model = models.small_cnn(norm=lambda c: nn.GroupNorm(2, c))
    assert [m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)] == [2, 2, 2]
    assert [m.p for m in nn.norm_layers(models.small_cnn(functools.partial(nn.RobustNorm2d, p=0.5)))] == [0.5] * 3
    assert [m.p for m in nn.norm_layers(models.resnet(8, norm="rn", p=0.5))] == [0.5] * 9  # p= is that partial
    assert all(m.p == 0.2 for m in nn.norm_layers(models.small_cnn("rn")))  # the layer's default
    with pytest.raises(ValueError, match="p must be a positive number"):  # checked by the layer
        models.small_cnn("rn", p=-1.0)
    for bad in ("batchnorm", "BN", None, ""):
        with pytest.raises(ValueError, match="unknown norm"):
            models.small_cnn(bad)
        with pytest.raises(ValueError, match="unknown norm"):
            models.resnet(8, norm=bad)


# --- ResNet ---------------------------------------------------------------------------------------------
def resnet_closed_form_count(depth, width=16, in_channels=3, num_classes=10, norm="bn"):
    """Parameters of the CIFAR ResNet with option-B (1x1 conv + norm) shortcuts, counted by hand."""
    n = (depth - 2) // 6
    with_norm = norm != "none"

    def conv(c_in, c_out, k):
        return k * k * c_in * c_out + (0 if with_norm else c_out)

    def norm_params(c):
        return 2 * c if with_norm else 0

    total = conv(in_channels, width, 3) + norm_params(width)
    c_in = width
    for stage in range(3):
        c = width * 2**stage
        for i in range(n):
            total += conv(c_in, c, 3) + norm_params(c) + conv(c, c, 3) + norm_params(c)
            if i == 0 and (stage > 0 or c_in != c):
                total += conv(c_in, c, 1) + norm_params(c)
            c_in = c
    return total + 4 * width * num_classes + num_classes


def count(model):
    return sum(p.size for p in model.parameters())


def test_resnet20_parameter_count():
    # 464 (stem) + 14016 + 51648 + 205696 (stages) + 650 (classifier), option-B shortcuts
    assert count(models.resnet(20)) == 272474 == resnet_closed_form_count(20)


@pytest.mark.parametrize("depth", [8, 14, 32])
@pytest.mark.parametrize("norm", ["bn", "rn", "none"])
def test_resnet_parameter_count_closed_form(depth, norm):
    assert count(models.resnet(depth, norm=norm)) == resnet_closed_form_count(depth, norm=norm)


def test_resnet_structure():
    model = models.resnet(14, width=8)
    assert model.depth == 14 and len(model.blocks) == 6
    strides = [block.conv1.stride for block in model.blocks]
    assert strides == [1, 1, 2, 1, 2, 1]
    widths = [block.conv2.out_channels for block in model.blocks]
    assert widths == [8, 8, 16, 16, 32, 32]
    assert [isinstance(block.shortcut, nn.Identity) for block in model.blocks] == [True, True, False, True, False, True]
    shortcut = model.blocks[2].shortcut
    assert shortcut[0].weight.shape == (16, 8, 1, 1) and shortcut[0].stride == 2
    assert isinstance(shortcut[1], nn.BatchNorm2d)
    # 1 stem conv + 2 per block + 2 shortcut convs + 1 linear = depth + 2 weight layers
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == 14 + 2


@pytest.mark.parametrize("norm", ALL_NORMS)
def test_resnet_output_shape(norm, device, rng):
    model = models.resnet(8, norm=norm, width=4).to(device)
    out = model(make_tensor(rng.normal(size=(2, 3, 8, 8)), device, dtype="float32"))
    assert out.shape == (2, 10) and out.device == device and np.all(np.isfinite(to_numpy(out)))


@pytest.mark.parametrize("depth", [2, 7, 9, 21, 0, -4, 20.0, "20"])
def test_resnet_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        models.resnet(depth)


def test_build_by_name():
    small = models.build("small-cnn", "rn", p=0.5, in_channels=3, num_classes=4)
    assert type(small) is nn.Sequential and small[0].in_channels == 3 and small[-1].weight.shape == (4, 64)
    assert [m.p for m in nn.norm_layers(small)] == [0.5] * 3
    deep = models.build("resnet14", "bn", in_channels=1, num_classes=10)
    assert isinstance(deep, models.ResNet) and deep.depth == 14 and deep.stem.in_channels == 1
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        models.build("vgg16", in_channels=3, num_classes=10)
    with pytest.raises(ValueError, match="resnet21.*6n\\+2"):
        models.build("resnet21", in_channels=3, num_classes=10)


# --- against the PyTorch twin of the same architecture (minirn.bench.torch_twins) ----------------------------
def test_resnet20_matches_torch_count_and_names():
    pytest.importorskip("torch")
    from minirn.bench import torch_twins

    theirs = torch_twins.ResNet(20)
    ours = models.resnet(20)
    assert count(ours) == sum(p.numel() for p in theirs.parameters())
    torch_state = {k: v for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert list(ours.state_dict()) == list(torch_state)
    assert all(tuple(ours.state_dict()[k].shape) == tuple(v.shape) for k, v in torch_state.items())


def test_resnet_with_torch_weights_gives_torch_outputs(device, rng):
    torch = pytest.importorskip("torch")
    from minirn.bench import torch_twins

    torch.manual_seed(0)
    theirs = torch_twins.ResNet(8, width=4).double()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    ours = models.resnet(8, width=4).double().to(device)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")})
    x = rng.normal(size=(2, 3, 8, 8))
    for mode in ("eval", "train"):
        getattr(ours, mode)(), getattr(theirs, mode)()
        with minirn.freeze_running_stats():
            got = to_numpy(ours(make_tensor(x, device)))
        np.testing.assert_allclose(got, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=mode)


# --- end-to-end gradient checks (float64) ---------------------------------------------------------------------
def _prepared(model, device, mode, x_shape, rng):
    """A float64 model on ``device`` whose running statistics were moved by two training steps."""
    model = model.double().to(device)
    for _ in range(2):
        model(make_tensor(rng.normal(size=x_shape) + 0.5, device))
    return model.train(mode == "train")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_small_cnn_end_to_end_gradcheck(norm, mode, device, rng):
    minirn.manual_seed(1)
    model = _prepared(models.small_cnn(norm), device, mode, (2, 1, 6, 6), rng)
    x = make_tensor(rng.normal(size=(2, 1, 6, 6)), device, requires_grad=True)
    assert minirn.gradcheck(lambda x, *params: model(x), [x, *model.parameters()], max_elements=4)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_resnet_end_to_end_gradcheck(norm, mode, device, rng):
    minirn.manual_seed(2)
    model = _prepared(models.resnet(8, norm=norm, width=4), device, mode, (2, 3, 8, 8), rng)
    x = make_tensor(rng.normal(size=(2, 3, 8, 8)), device, requires_grad=True)
    before = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    assert minirn.gradcheck(lambda x, *params: model(x), [x, *model.parameters()], max_elements=3)
    for key, value in model.state_dict().items():  # the check changed nothing, not even running statistics
        np.testing.assert_array_equal(to_numpy(value), before[key])
