"""Tests of minirn/bridge/ that need no PyTorch: .safetensors in and out, bad files, the convert command.

The PyTorch half (the authors' checkpoints, the twins) is tests/test_bridge_torch.py.
"""
import json
import struct
import sys

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import minirn
from minirn import cli, models, serialization
from minirn.nn import set_norm_eval_stats

META = {"dataset": "mnist", "model": "resnet8", "norm": "bn", "p": 0.2, "in_channels": 1, "num_classes": 10}


def random_model(name="resnet8", norm="bn", seed=0):
    model = models.build(name, norm, 0.5 if norm == "rn" else None, in_channels=1, num_classes=10)
    rng = np.random.default_rng(seed)
    model.load_state_dict({key: rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
                           for key, value in model.state_dict().items()})
    return model.eval()


def saved(tmp_path, name="resnet8", norm="bn", **settings):
    model = random_model(name, norm)
    if settings:
        set_norm_eval_stats(model, settings["eval_mean"], settings["eval_scale"])
    path = tmp_path / f"{name}-{norm}.safetensors"
    minirn.save_weights(model, path, {**META, "model": name, "norm": norm})
    return model, path


@pytest.mark.parametrize("name", ["small-cnn", "resnet8"])
@pytest.mark.parametrize("norm", ["none", "bn", "rn", "gn", "ln"])
def test_save_and_load_is_bit_exact(name, norm, tmp_path):
    model, path = saved(tmp_path, name, norm)
    back = minirn.load_model(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value, err_msg=key)
    fresh = minirn.load_weights(models.build(name, norm, 0.5 if norm == "rn" else None, in_channels=1,
                                             num_classes=10), path)
    assert all(np.array_equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_the_file_has_the_twins_layout_and_the_description(tmp_path):
    _, path = saved(tmp_path, "resnet8", "bn")
    tensors = load_file(path)
    assert tensors["stem_norm.num_batches_tracked"].dtype == np.int64
    assert tensors["stem_norm.num_batches_tracked"].shape == ()
    assert tensors["blocks.1.shortcut.0.weight"].shape == (32, 16, 1, 1)
    assert all(v.dtype == np.float32 for k, v in tensors.items() if not k.endswith("num_batches_tracked"))
    with safe_open(path, framework="np") as f:
        metadata = f.metadata()
    assert metadata["format"] == "pt"
    description = json.loads(metadata["minirn"])
    assert {k: description[k] for k in META} == META
    state, meta = serialization.read_model(path)  # what 'minirn attack' reads
    assert meta["model"] == "resnet8" and "stem_norm.num_batches_tracked" not in state


def test_eval_statistics_and_formula_travel_with_the_weights(tmp_path):
    _, path = saved(tmp_path, "resnet8", "bn", eval_mean="running", eval_scale="batch")
    model = minirn.load_model(path)
    assert minirn.nn.get_norm_eval_stats(model) == ("running", "batch")
    authors = random_model("resnet8", "bn")
    for module in authors.modules():
        if isinstance(module, minirn.nn.BatchNorm2d):
            module.formula = "authors"
    minirn.save_weights(authors, tmp_path / "authors.safetensors", META)
    loaded = minirn.load_model(tmp_path / "authors.safetensors")
    assert {m.formula for m in loaded.modules() if isinstance(m, minirn.nn.BatchNorm2d)} == {"authors"}


NORMALIZATION = {"mean": [0.1307], "std": [0.3081]}


@pytest.mark.parametrize("name", ["small-cnn", "resnet8"])
def test_input_normalization_travels_with_the_weights(name, tmp_path):
    """The Normalize layer has no weights: the description records it and load_model rebuilds it first."""
    model = models.build(name, "bn", in_channels=1, num_classes=10, input_normalization=NORMALIZATION).eval()
    path = tmp_path / "normalized.safetensors"
    minirn.save_weights(model, path, {**META, "model": name})
    assert serialization.read_model(path)[1]["input_normalization"] == NORMALIZATION
    assert not any("normalize" in key for key in load_file(path))
    back = minirn.load_model(path)
    first = back.normalize if name == "resnet8" else back[0]
    assert isinstance(first, minirn.nn.Normalize) and (first.mean, first.std) == ((0.1307,), (0.3081,))
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 12, 12)).astype(np.float32)
    with minirn.no_grad():
        np.testing.assert_array_equal(back(minirn.tensor(x)).numpy(), model(minirn.tensor(x)).numpy())
    plain = minirn.load_model(saved(tmp_path, name)[1])  # without it: no layer, as before
    assert not any(isinstance(m, minirn.nn.Normalize) for m in plain.modules())


@pytest.mark.parametrize("normalization, words", [
    ({"mean": [0.1, 0.2], "std": [0.3, 0.3]}, "1 number(s) each"),
    ({"mean": [0.1]}, "'input_normalization'"),
    ({"mean": [0.1], "std": [0.0]}, "std positive"),
])
def test_a_bad_input_normalization_in_the_file_is_one_line(normalization, words, tmp_path):
    _, path = saved(tmp_path)
    with safe_open(path, framework="np") as f:
        metadata = f.metadata()
    description = {**json.loads(metadata["minirn"]), "input_normalization": normalization}
    save_file(load_file(path), path, metadata={**metadata, "minirn": json.dumps(description)})
    with pytest.raises(minirn.CheckpointError, match="is damaged") as error:
        minirn.load_model(path)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_save_refuses_a_description_of_another_network(tmp_path):
    with pytest.raises(ValueError, match="not the resnet20"):
        minirn.save_weights(random_model("resnet8"), tmp_path / "x.safetensors", {**META, "model": "resnet20"})
    assert not (tmp_path / "x.safetensors").exists()


# --- bad files: one line, nothing half-loaded ------------------------------------------------------------
def _rewrite(path, edit):
    tensors = load_file(path)
    with safe_open(path, framework="np") as f:
        metadata = f.metadata()
    edit(tensors)
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.pop("blocks.2.conv1.weight"), "1 missing key (blocks.2.conv1.weight)"),
    (lambda t: t.update({"blocks.9.conv1.weight": np.zeros(3, np.float32)}), "1 unexpected key (blocks.9.conv1.weight)"),
    (lambda t: t.update({"fc.weight": np.zeros((10, 32), np.float32)}), "'fc.weight' has shape (10, 32)"),
    (lambda t: t.update({"fc.bias": np.zeros(10, np.float64)}), "'fc.bias' is float64"),
    (lambda t: t.update({"stem_norm.num_batches_tracked": np.zeros(2, np.int64)}), "should be an int64 scalar"),
])
def test_a_file_that_does_not_fit_is_refused_before_anything_is_copied(edit, words, tmp_path):
    model, path = saved(tmp_path)
    _rewrite(path, edit)
    target = random_model(seed=1)
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with pytest.raises(minirn.CheckpointError, match="does not fit the model") as info:
        minirn.load_weights(target, path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert all(np.array_equal(target.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(minirn.CheckpointError, match="does not fit"):
        minirn.load_model(path)


def test_a_file_of_another_architecture_is_one_line(tmp_path):
    _, path = saved(tmp_path, "resnet8", "bn")
    with pytest.raises(minirn.CheckpointError, match=r"\(resnet8, norm 'bn'\) does not fit the model: \d+ missing keys"):
        minirn.load_weights(models.build("small-cnn", "bn", in_channels=1, num_classes=10), path)


def test_a_corrupted_header_is_one_line(tmp_path):
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    data[8:12] = b"\x00\xff{["  # the JSON header, damaged
    path.write_bytes(bytes(data))
    with pytest.raises(minirn.CheckpointError, match="is not a readable .safetensors file") as info:
        minirn.load_model(path)
    assert "\n" not in str(info.value)
    path.write_bytes(struct.pack("<Q", 10**12) + bytes(data[8:header_length + 8]))  # a header longer than the file
    with pytest.raises(minirn.CheckpointError, match="is not a readable .safetensors file"):
        minirn.load_weights(random_model(), path)


def test_metadata_that_is_not_minirns(tmp_path):
    _, path = saved(tmp_path)
    tensors = load_file(path)
    save_file(tensors, path, metadata={"format": "pt"})  # e.g. safetensors.torch.save_file(twin.state_dict(), path)
    minirn.load_weights(random_model(), path)  # the weights alone load
    with pytest.raises(minirn.CheckpointError, match="no minirn model description"):
        minirn.load_model(path)
    save_file(tensors, path, metadata={"format": "pt", "minirn": "{not json"})
    with pytest.raises(minirn.CheckpointError, match="is not JSON"):
        minirn.load_model(path)


# --- the convert command ----------------------------------------------------------------------------------
def _main(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_convert_a_minirn_model(tmp_path, capsys):
    model = random_model("resnet8", "rn")
    npz = tmp_path / "model.npz"
    serialization.save({"model": dict(model.state_dict()), "meta": {**META, "norm": "rn", "p": 0.5}}, npz)
    status, out, _ = _main(capsys, "convert", "--from", "minirn", npz, "--out", tmp_path / "model.safetensors")
    assert status == 0 and "norm rn p=0.5" in out
    back = minirn.load_model(tmp_path / "model.safetensors")
    assert all(np.array_equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("argv, words", [
    (["--from", "minirn", "{npz}", "--out", "{tmp}/x.npz"], "--out must be a .safetensors file"),
    (["--from", "minirn", "{npz}", "--norm", "BN", "--out", "{tmp}/x.safetensors"], "--norm applies to --from authors"),
    (["--from", "minirn", "{tmp}/missing.npz", "--out", "{tmp}/x.safetensors"], "does not exist"),
    (["--from", "authors", "{npz}", "--model", "resnet8", "--out", "{tmp}/x.safetensors"], "needs --norm"),
    (["--from", "theirs", "{npz}", "--out", "{tmp}/x.safetensors"], "invalid choice"),
])
def test_convert_bad_input_is_one_line(argv, words, tmp_path, capsys):
    npz = tmp_path / "model.npz"
    serialization.save({"model": dict(random_model().state_dict()), "meta": META}, npz)
    argv = [a.format(npz=npz, tmp=tmp_path) for a in argv]
    status, _, err = _main(capsys, "convert", *argv)
    assert status == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_from_authors_without_torch_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    path = tmp_path / "checkpoint.pth.tar"
    path.write_bytes(b"anything")
    status, _, err = _main(capsys, "convert", "--from", "authors", path, "--model", "resnet20", "--norm", "RNT",
                           "--out", tmp_path / "x.safetensors")
    assert status == 2 and "needs PyTorch" in err and "pip install torch" in err and err.count("\n") == 1


def test_without_safetensors_import_works_and_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(minirn.CheckpointError, match="pip install safetensors"):
        minirn.save_weights(random_model(), tmp_path / "x.safetensors", META)
    assert not (tmp_path / "x.safetensors").exists()
