"""minirn/bridge/ against PyTorch: the authors' checkpoints converted, and minirn <-> twin round trips.

The authors' networks (:mod:`minirn.bench.authors_network`, written from their equations, with their
module layout and key names) get random weights and running statistics and are saved as their scripts
save them.  Their networks take standardised inputs (x - m)/s; the converted ones take pixels x.
Skipped without torch.
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
authors_network = pytest.importorskip("minirn.bench.authors_network")
from safetensors import safe_open  # noqa: E402  (a dependency of minirn; after the skips, beside its torch half)

pytestmark = pytest.mark.torch

def their_checkpoint(tmp_path, model="resnet20", norm="RNT", p=0.2, seed=0):
    """Their network with random weights and statistics, saved as their train_*.py save it; (network, path)."""
    path = tmp_path / f"{model}-{norm}.pth.tar"
    return authors_network.synthetic_checkpoint(path, model, norm, p, seed), path


def logits_difference(network, model, x, normalization=None):
    """max |their logits on (x - m)/s - minirn's on x| for the pixels x (a NumPy float32 array in [0, 1]);
    normalization: ``{"mean": m, "std": s}`` of their inputs, or None for x itself."""
    standardised = x
    if normalization is not None:
        m, s = (np.asarray(normalization[k], dtype=np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
        standardised = (x - m) / s
    with torch.no_grad():
        theirs = network(torch.from_numpy(standardised)).numpy()
    with minirn.no_grad():
        ours = model(minirn.tensor(x)).numpy()
    return float(np.abs(theirs - ours).max()), float(np.abs(theirs).max())


def pixels(channels, n=8, size=32, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, channels, size, size)).astype(np.float32)


# --- the authors' checkpoints -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["resnet8", "resnet20"])
@pytest.mark.parametrize("norm", list(bridge.AUTHORS_NORMS))
def test_converted_checkpoint_predicts_what_theirs_predicts(model, norm, tmp_path):
    """The converted model fed pixels x gives their network's logits on (x - m)/s, their script's m and s."""
    p = 0.5 if norm.startswith("RN") else 0.2  # a non-default power, which the file does not record
    network, path = their_checkpoint(tmp_path, model, norm, p)
    out = tmp_path / "model.safetensors"
    assert cli.main(["convert", "--from", "authors", str(path), "--model", model, "--norm", norm,
                     "--p", str(p), "--out", str(out)]) == 0
    converted = minirn.load_model(out)
    normalization = bridge.AUTHORS_INPUT_NORMALIZATION["mnist" if model == "resnet8" else "cifar10"]
    difference, scale = logits_difference(network, converted, pixels(network.conv1.in_channels), normalization)
    print(f"{model} {norm}: max |logit difference| {difference:.2e} (logits up to {scale:.2f})")
    assert scale > 0.1 and difference <= 1e-5, (difference, scale)


@pytest.mark.parametrize("flag, normalization", [
    ("authors", {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}),
    ("0.5,0.4,0.3/0.25,0.2,0.3", {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}),
    ("none", None),
])
def test_input_normalization_is_the_first_layer_and_recorded(flag, normalization, tmp_path):
    network, path = their_checkpoint(tmp_path, "resnet20", "BN")
    out = tmp_path / "model.safetensors"
    assert cli.main(["convert", "--from", "authors", str(path), "--model", "resnet20", "--norm", "BN",
                     "--input-normalization", flag, "--out", str(out)]) == 0
    _, meta = minirn.serialization.read_model(out)
    assert meta["input_normalization"] == normalization
    converted = minirn.load_model(out)
    assert isinstance(converted.normalize, minirn.nn.Normalize if normalization else minirn.nn.Identity)
    assert logits_difference(network, converted, pixels(3), normalization)[0] <= 1e-5


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
    model, meta = bridge.convert_authors(path, "resnet8", "BNwoT")
    x = pixels(1)
    assert logits_difference(network, model, x, meta["input_normalization"])[0] <= 1e-5
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = "standard"
    assert logits_difference(network, model, x, meta["input_normalization"])[0] > 1e-3


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


# --- the twins of the authors' BatchNorm and of the input normalisation ---------------------------------------
@pytest.mark.parametrize("stats", [("running", "running"), ("batch", "batch"), ("running", "batch")])
def test_the_authors_batch_norm_twin_computes_minirns_formula(stats, tmp_path):
    """Train mode (logits and the running update after one step) and eval mode with each of their statistics."""
    model = _random_minirn_model("resnet8", "bn", seed=4)
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = "authors"
    minirn.nn.set_norm_eval_stats(model, *stats)
    meta = {"dataset": "mnist", "model": "resnet8", "norm": "bn", "p": 0.2, "in_channels": 1, "num_classes": 10}
    path = tmp_path / "model.safetensors"
    minirn.save_weights(model, path, meta)
    twin = torch_twins.from_description(minirn.serialization.read_model(path)[1])
    twin.load_state_dict(safetensors_torch.load_file(path), strict=True)
    assert isinstance(twin.stem_norm, torch_twins.AuthorsBatchNorm2d)
    x = pixels(1, size=12)
    for mode in ("eval", "train"):
        model.train(mode == "train")
        twin.train(mode == "train")
        with torch.no_grad():
            theirs = twin(torch.from_numpy(x)).numpy()
        with minirn.no_grad():
            ours = model(minirn.tensor(x)).numpy()
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5, err_msg=f"{mode} {stats}")
    np.testing.assert_allclose(twin.stem_norm.running_var.numpy(), model.stem_norm.running_var, rtol=1e-5)


@pytest.mark.parametrize("norm", ["BN", "BNwoT", "BNM", "RNM"])
def test_a_converted_model_exports_to_its_twin_for_torchattacks(norm, tmp_path):
    """Their checkpoint -> minirn -> .safetensors -> twin: the twin takes pixels, gives minirn's logits and
    input gradients, and torchattacks attacks it in pixel units."""
    network, path = their_checkpoint(tmp_path, "resnet8", norm)
    out = tmp_path / "model.safetensors"
    assert cli.main(["convert", "--from", "authors", str(path), "--model", "resnet8", "--norm", norm,
                     "--out", str(out)]) == 0
    model = minirn.load_model(out)
    twin = torch_twins.from_description(minirn.serialization.read_model(out)[1])
    twin.load_state_dict(safetensors_torch.load_file(out), strict=True)
    x, y = pixels(1, size=28), np.arange(8) % 10
    x_torch = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.cross_entropy(twin(x_torch), torch.from_numpy(y)).backward()
    x_minirn = minirn.tensor(x, requires_grad=True)
    minirn.nn.functional.cross_entropy(model(x_minirn), minirn.tensor(y)).backward()
    np.testing.assert_allclose(x_torch.grad.numpy(), np.asarray(x_minirn.grad), rtol=1e-4, atol=1e-6)
    torchattacks = pytest.importorskip("torchattacks")
    adversarial = torchattacks.FGSM(twin, eps=0.1)(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert np.abs(adversarial - x).max() <= 0.1 + 1e-6 and adversarial.min() >= 0 and adversarial.max() <= 1


@pytest.mark.parametrize("name", ["small-cnn", "resnet8"])
@pytest.mark.parametrize("norm, formula", [("bn", "authors"), ("rn", "standard"), ("none", "standard")])
def test_round_trip_with_input_normalization_is_bit_exact(name, norm, formula, tmp_path):
    normalization = {"mean": [0.1307], "std": [0.3081]}
    source = _random_minirn_model(name, norm, seed=5)
    model = models.build(name, norm, 0.5 if norm == "rn" else None, in_channels=1, num_classes=10,
                         input_normalization=normalization)
    model.load_state_dict({key: value for key, value in zip(model.state_dict(), source.state_dict().values())})
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = formula
    model.eval()
    meta = {"dataset": "mnist", "model": name, "norm": norm, "p": 0.5, "in_channels": 1, "num_classes": 10}
    first, second = tmp_path / "minirn.safetensors", tmp_path / "twin.safetensors"
    minirn.save_weights(model, first, meta)
    with safe_open(first, framework="pt") as opened:
        metadata = opened.metadata()
    twin = torch_twins.from_description(minirn.serialization.read_model(first)[1])
    twin.load_state_dict(safetensors_torch.load_file(first), strict=True)
    safetensors_torch.save_file(twin.state_dict(), second, metadata=metadata)

    back = minirn.load_model(second)
    assert isinstance(back.normalize if name == "resnet8" else back[0], minirn.nn.Normalize)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)
    x = pixels(1, n=4, size=12)
    with minirn.no_grad():
        ours = model(minirn.tensor(x)).numpy()
        np.testing.assert_array_equal(back(minirn.tensor(x)).numpy(), ours)
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(x)).numpy(), ours, rtol=1e-4, atol=1e-4)
