"""minirn/bridge.py against PyTorch: the authors' checkpoints converted, and minirn <-> twin round trips.

The authors' networks are written here from their equations (PAPER.md, "Their checkpoints" and
"Variants"; docs/pytorch_bridge.md), with their module layout and key names: a CIFAR ResNet
``conv1, bn1, layer1-3 (conv1, bn1, conv2, bn2, downsample.0/1), avgpool, fc`` whose norm layers are
BatchNorm2d subclasses; random weights and running statistics; saved as their scripts save them
(``torch.save`` of a dict with ``state_dict`` under ``nn.DataParallel``'s ``module.`` keys, the
epoch and the optimizer's state).  Skipped without torch.
"""
import os

import numpy as np
import pytest

import minirn
from minirn import bridge, cli, models
from minirn.nn import BatchNorm2d

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
torch_twins = pytest.importorskip("minirn.bench.torch_twins")
from safetensors import safe_open  # noqa: E402  (a dependency of minirn; after the skips, beside its torch half)

pytestmark = pytest.mark.torch

EPS = 1e-5


# --- the authors' layers, from their equations -----------------------------------------------------------
class TheirBatchNorm(torch.nn.BatchNorm2d):
    """y = γ (x - μ)/(sqrt(σ²) + ε) + β with the unbiased batch variance; eval: tracked or batch μ, σ²."""

    def __init__(self, channels, tracked_mean=True, tracked_var=True):
        super().__init__(channels)
        self.tracked_mean, self.tracked_var = tracked_mean, tracked_var

    def forward(self, x):
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
        else:
            mean = self.running_mean if self.tracked_mean else mean
            var = self.running_var if self.tracked_var else var
        view = (1, -1, 1, 1)
        return self.weight.view(view) * (x - mean.view(view)) / (var.view(view).sqrt() + self.eps) + self.bias.view(view)


class TheirRobustNorm(torch.nn.BatchNorm2d):
    """y = γ (x - μ)/(r^p + ε) + β, r = max - min over (N, H, W); the running range lives in running_var."""

    def __init__(self, channels, tracked_mean=True, tracked_range=True, power=0.2):
        super().__init__(channels)
        self.tracked_mean, self.tracked_range, self.power = tracked_mean, tracked_range, power

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        value_range = x.amax(dim=(0, 2, 3)) - x.amin(dim=(0, 2, 3))
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * value_range)
        else:
            mean = self.running_mean if self.tracked_mean else mean
            value_range = self.running_var if self.tracked_range else value_range
        view = (1, -1, 1, 1)
        return (self.weight.view(view) * (x - mean.view(view)) / (value_range.view(view) ** self.power + self.eps)
                + self.bias.view(view))


class TheirNoNorm(torch.nn.BatchNorm2d):
    """The identity, still carrying BatchNorm's (unused) parameters and buffers."""

    def forward(self, x):
        return x


#: Their --norm names -> a factory of their layer.
THEIR_NORMS = {
    "NoBN": lambda c, p: TheirNoNorm(c),
    "BN": lambda c, p: TheirBatchNorm(c, True, True),
    "BNwoT": lambda c, p: TheirBatchNorm(c, False, False),
    "BNM": lambda c, p: TheirBatchNorm(c, True, False),
    "RNT": lambda c, p: TheirRobustNorm(c, True, True, p),
    "RN": lambda c, p: TheirRobustNorm(c, False, False, p),
    "RNM": lambda c, p: TheirRobustNorm(c, True, False, p),
}


class TheirBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride, norm, p):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = THEIR_NORMS[norm](c_out, p)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = THEIR_NORMS[norm](c_out, p)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                  THEIR_NORMS[norm](c_out, p))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TheirResNet(torch.nn.Module):
    """Their CIFAR ResNet (``ResNet``) and MNIST ResNet (``ResNet_MNIST``, in_channels 1): depth 6n+2."""

    def __init__(self, depth, norm, in_channels, p=0.2, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = torch.nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = THEIR_NORMS[norm](16, p)
        channels = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(n):
                blocks.append(TheirBlock(channels, width, 2 if stage > 1 and i == 0 else 1, norm, p))
                channels = width
            setattr(self, f"layer{stage}", torch.nn.Sequential(*blocks))
        self.avgpool = torch.nn.AvgPool2d(8)  # theirs: global on the 8x8 maps of 32x32 inputs
        self.fc = torch.nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(self.avgpool(x).flatten(1))


def randomize(network, seed):
    """Random weights (He-normal convolutions, as they initialise) and random running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):  # a variance, or their RobustNorm's running range
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 + 0.5)
            elif tensor.ndim == 4:
                fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_out) ** 0.5)
            elif tensor.ndim == 2:  # the classifier
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor.shape[1] ** 0.5)
            else:  # γ around 1; β, the running means and the classifier's bias around 0
                is_scale = name.endswith(".weight")
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3 + (1 if is_scale else 0))
    return network


def their_checkpoint(tmp_path, model="resnet20", norm="RNT", p=0.2, seed=0):
    """Their network with random weights and statistics, saved as their train_*.py save it; (network, path)."""
    network = TheirResNet(int(model[6:]), norm, 1 if model == "resnet8" else 3, p)
    parallel = torch.nn.DataParallel(network)  # on a CPU it only wraps: the keys get 'module.'
    optimizer = torch.optim.SGD(parallel.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
    parallel.train()
    torch.nn.functional.cross_entropy(parallel(torch.randn(4, network.conv1.in_channels, 32, 32)),
                                      torch.arange(4)).backward()
    optimizer.step()  # the optimizer's state now holds momentum buffers, as a real checkpoint's does
    randomize(network, seed)
    path = tmp_path / f"{model}-{norm}.pth.tar"
    torch.save({"epoch": 3, "state_dict": parallel.state_dict(), "acc": 51.0, "best_acc": 52.0,
                "optimizer": optimizer.state_dict()}, path)
    return network.eval(), path


def logits_difference(network, model, x):
    """max |their logits - minirn's| on the batch x (a NumPy float32 array)."""
    with torch.no_grad():
        theirs = network(torch.from_numpy(x)).numpy()
    with minirn.no_grad():
        ours = model(minirn.tensor(x)).numpy()
    return float(np.abs(theirs - ours).max()), float(np.abs(theirs).max())


# --- the authors' checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["resnet8", "resnet20"])
@pytest.mark.parametrize("norm", list(bridge.AUTHORS_NORMS))
def test_converted_checkpoint_predicts_what_theirs_predicts(model, norm, tmp_path):
    p = 0.5 if norm.startswith("RN") else 0.2  # a non-default power, which the file does not record
    network, path = their_checkpoint(tmp_path, model, norm, p)
    out = tmp_path / "model.safetensors"
    assert cli.main(["convert", "--from", "authors", str(path), "--model", model, "--norm", norm,
                     "--p", str(p), "--out", str(out)]) == 0
    converted = minirn.load_model(out)
    x = np.random.default_rng(1).standard_normal((8, network.conv1.in_channels, 32, 32)).astype(np.float32)
    difference, scale = logits_difference(network, converted, x)
    print(f"{model} {norm}: max |logit difference| {difference:.2e} (logits up to {scale:.2f})")
    assert scale > 0.1 and difference <= 1e-5, (difference, scale)


def test_their_batch_norm_differs_from_the_standard_one(tmp_path):
    """The formula matters where a channel's standard deviation is small (ε/σ is then not negligible):
    with convolution weights scaled by 1e-2, minirn's standard BatchNorm on the same weights is off
    by far more than the authors' formula is."""
    network, path = their_checkpoint(tmp_path, "resnet8", "BNwoT")
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(1e-2)
    torch.save({"state_dict": torch.nn.DataParallel(network).state_dict()}, path)
    model, _ = bridge.convert_authors(path, "resnet8", "BNwoT")
    x = np.random.default_rng(1).standard_normal((8, 1, 32, 32)).astype(np.float32)
    assert logits_difference(network, model, x)[0] <= 1e-5
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = "standard"
    assert logits_difference(network, model, x)[0] > 1e-3


def test_conversion_maps_their_names_and_buffers(tmp_path):
    network, path = their_checkpoint(tmp_path, "resnet20", "RNT")
    model, meta = bridge.convert_authors(path, "resnet20", "RNT")
    theirs = network.state_dict()
    ours = model.state_dict()
    np.testing.assert_array_equal(ours["stem_norm.running_range"], theirs["bn1.running_var"].numpy())
    np.testing.assert_array_equal(ours["blocks.3.shortcut.0.weight"], theirs["layer2.0.downsample.0.weight"].numpy())
    np.testing.assert_array_equal(ours["blocks.8.norm2.weight"], theirs["layer3.2.bn2.weight"].numpy())
    assert meta["norm"] == "rn" and meta["in_channels"] == 3 and meta["dataset"] == "cifar10"
    assert (meta["eval_mean"], meta["eval_scale"]) == ("running", "running")


# --- bad input: one line, nothing run, nothing written -----------------------------------------------------
class _RunsCode:
    """Pickles as a call of os.makedirs(marker): what a malicious checkpoint does on torch.load without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _convert(tmp_path, path, capsys, model="resnet20", norm="BN"):
    out = tmp_path / "out.safetensors"
    status = cli.main(["convert", "--from", "authors", str(path), "--model", model, "--norm", norm, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("minirn convert: error: "), err
    assert not out.exists()
    return err


def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "the-pickle-ran"
    network, path = their_checkpoint(tmp_path, "resnet8", "BN")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["payload"] = _RunsCode(str(marker))
    torch.save(checkpoint, path)
    err = _convert(tmp_path, path, capsys, "resnet8")
    assert "weights_only" in err and not marker.exists()


def _edited_checkpoint(tmp_path, edit, model="resnet20"):
    _, path = their_checkpoint(tmp_path, model, "BN")
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint["state_dict"])
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("module.layer2.1.conv2.weight"), "missing key"),
    (lambda s: s.pop("module.fc.bias"), "missing key"),
    (lambda s: s.update({"module.extra.weight": torch.zeros(3)}), "cannot map: 'extra.weight'"),
    (lambda s: s.update({"module.layer1.0.bn1.extra": torch.zeros(3)}), "norm entry minirn cannot map"),
    (lambda s: s.update({"module.layer1.0.conv1.weight": torch.zeros(16, 16, 5, 5)}), "has shape (16, 16, 5, 5)"),
    (lambda s: s.update({"module.fc.weight": torch.zeros(10, 64, dtype=torch.float64)}), "float64"),
    (lambda s: s.update({"module.layer1.0.conv3.weight": torch.zeros(16, 16, 1, 1)}), "Bottleneck"),
    (lambda s: s.update({"layer1.0.conv1.weight": torch.zeros(16, 16, 3, 3)}), "module."),
])
def test_a_checkpoint_that_does_not_fit_is_one_line(edit, words, tmp_path, capsys):
    assert words in _convert(tmp_path, _edited_checkpoint(tmp_path, edit), capsys)


def test_a_checkpoint_of_another_architecture_is_one_line(tmp_path, capsys):
    _, path = their_checkpoint(tmp_path, "resnet8", "BN")
    assert "holds a resnet8 (1 blocks per stage), not a resnet20" in _convert(tmp_path, path, capsys, "resnet20")


@pytest.mark.parametrize("argv, words", [
    (["--model", "resnet20", "--norm", "GNR"], "invalid choice"),
    (["--model", "small-cnn", "--norm", "BN"], "no 'small-cnn'"),
    (["--norm", "BN"], "needs --model"),
])
def test_bad_options_are_one_line(argv, words, tmp_path, capsys):
    _, path = their_checkpoint(tmp_path, "resnet8", "BN")
    out = tmp_path / "out.safetensors"
    assert cli.main(["convert", "--from", "authors", str(path), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not out.exists()


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    path = tmp_path / "noise.pth"
    path.write_bytes(b"\x80\x02not really a pickle")
    assert "cannot be read with torch.load(weights_only=True)" in _convert(tmp_path, path, capsys)


# --- minirn -> safetensors -> PyTorch twin -> safetensors -> minirn ------------------------------------------
TWIN_NORMS = ("none", "bn", "rn", "gn", "ln")


def _random_minirn_model(name, norm, seed):
    minirn.manual_seed(seed)
    model = models.build(name, norm, 0.5 if norm == "rn" else None, in_channels=1, num_classes=10, init="he")
    rng = np.random.default_rng(seed)
    state = {key: (rng.uniform(0.5, 2.0, value.shape) if key.endswith(("running_var", "running_range"))
                   else rng.standard_normal(value.shape) * 0.3).astype(np.float32)
             for key, value in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval()


@pytest.mark.parametrize("name", ["small-cnn", "resnet8"])
@pytest.mark.parametrize("norm", TWIN_NORMS)
def test_round_trip_through_the_twin_is_bit_exact(name, norm, tmp_path):
    model = _random_minirn_model(name, norm, seed=3)
    meta = {"dataset": "mnist", "model": name, "norm": norm, "p": 0.5, "in_channels": 1, "num_classes": 10}
    first, second = tmp_path / "minirn.safetensors", tmp_path / "twin.safetensors"
    minirn.save_weights(model, first, meta)

    twin = (torch_twins.small_cnn(norm, 1, 10, p=0.5) if name == "small-cnn"
            else torch_twins.ResNet(8, norm, 1, 10, p=0.5))
    twin.load_state_dict(safetensors_torch.load_file(first), strict=True)  # the twin's layout, exactly
    with safe_open(first, framework="pt") as opened:  # the description travels with the weights
        metadata = opened.metadata()
    safetensors_torch.save_file(twin.state_dict(), second, metadata=metadata)

    back = minirn.load_model(second)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    with minirn.no_grad():
        np.testing.assert_array_equal(back(minirn.tensor(x)).numpy(), model(minirn.tensor(x)).numpy())
    twin.eval()
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(x)).numpy(), model(minirn.tensor(x)).numpy(), rtol=1e-4,
                                   atol=1e-4)
