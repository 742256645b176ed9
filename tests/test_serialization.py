"""Checkpoints: exact round trips, plain .npz files, clear errors, atomic writes, no code execution."""
import json
import os
import pickle

import numpy as np
import pytest

import minirn
from minirn import backend
from minirn.serialization import STRUCTURE_KEY, CheckpointError, load, save


def _tree():
    rng = np.random.default_rng(0)
    return {
        "model": {
            "conv1.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
            "bn.running_mean": np.array([-0.0, np.nan, np.inf, 1e-300]),
            "bn.num_batches_tracked": np.array(7, dtype=np.int64),
            "mask": np.array([[True, False], [False, True]]),
            "empty": np.zeros((0, 3), dtype=np.float32),
        },
        "epoch": 12,
        "big": 2**70,
        "lr": 0.1,
        "minus_zero": -0.0,
        "nan": float("nan"),
        "flag": True,
        "name": "résumé/ü",
        "nothing": None,
        "history": [1, 2.5, [np.arange(3)], ("a", None, False)],
        "betas": (0.9, 0.999),
        "count32": np.float32(1.5),
        "state": {0: {"step": 3}, 1: {"buffer": np.ones(2, dtype=np.float64)}},
    }


def assert_same_tree(loaded, original):
    """Equal structure, container and leaf types, dtypes, and bits (NaN and -0.0 included)."""
    if isinstance(original, (np.ndarray, np.generic)):
        assert type(loaded) is type(original)
        assert loaded.dtype == original.dtype and loaded.shape == original.shape
        assert np.asarray(loaded).tobytes() == np.asarray(original).tobytes()
    elif isinstance(original, dict):
        assert type(loaded) is dict and list(loaded) == list(original)
        for key in original:
            assert_same_tree(loaded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert type(loaded) is type(original) and len(loaded) == len(original)
        for a, b in zip(loaded, original):
            assert_same_tree(a, b)
    else:
        assert type(loaded) is type(original)
        if isinstance(original, float):
            assert np.float64(loaded).tobytes() == np.float64(original).tobytes()
        else:
            assert loaded == original


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(_tree(), path)
    assert_same_tree(load(path), _tree())
    assert_same_tree(load(str(path)), _tree())


def test_keys_with_the_separator_and_escape_characters_stay_distinct(tmp_path):
    tree = {"a/b": np.array([1.0]), "a": {"b": np.array([2.0])}, "a%2Fb": np.array([3.0]), "": np.array([4.0])}
    save(tree, tmp_path / "ckpt.npz")
    assert_same_tree(load(tmp_path / "ckpt.npz"), tree)


def test_the_file_is_a_plain_npz_without_pickles(tmp_path):
    tensor = minirn.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    save({"model": {"conv1.weight": tensor}, "epoch": 3}, tmp_path / "ckpt.npz")
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == [STRUCTURE_KEY, "arrays/model/conv1.weight"]
        np.testing.assert_array_equal(archive["arrays/model/conv1.weight"], tensor.numpy())
        header = archive[STRUCTURE_KEY]
        assert header.dtype == np.uint8
        structure = json.loads(header.tobytes().decode("utf-8"))
        assert structure["format"] == "minirn-checkpoint" and structure["version"] == 1
    loaded = load(tmp_path / "ckpt.npz")
    assert type(loaded["model"]["conv1.weight"]) is np.ndarray  # Tensors come back as their data


def test_arrays_of_every_device_are_saved_from_the_host(device, tmp_path):
    weight = backend.to_device(np.array([[1.5, -2.0]], dtype=np.float32), device)
    tensor = minirn.tensor(np.array([3, 4], dtype=np.int64), device=device)
    save({"weight": weight, "tensor": tensor, "list": [weight]}, tmp_path / "ckpt.npz")
    loaded = load(tmp_path / "ckpt.npz")
    assert_same_tree(loaded, {
        "weight": np.array([[1.5, -2.0]], dtype=np.float32),
        "tensor": np.array([3, 4], dtype=np.int64),
        "list": [np.array([[1.5, -2.0]], dtype=np.float32)],
    })


def test_save_replaces_an_existing_checkpoint(tmp_path):
    save({"epoch": 1}, tmp_path / "ckpt.npz")
    save({"epoch": 2}, tmp_path / "ckpt.npz")
    assert load(tmp_path / "ckpt.npz") == {"epoch": 2}
    assert os.listdir(tmp_path) == ["ckpt.npz"]


# --- atomicity ------------------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "interrupt"])
def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(failure, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    previous = {"epoch": 1, "weight": np.arange(4.0)}
    save(previous, path)

    def savez_then_crash(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half of a zip archive")
        file.flush()
        raise failure

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(type(failure)):
        save({"epoch": 2, "weight": np.zeros(4)}, path)
    monkeypatch.undo()
    assert_same_tree(load(path), previous)
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_a_failed_first_save_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        save({"bad": {1, 2}}, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


# --- bad input to save -------------------------------------------------------------
@pytest.mark.parametrize(
    "obj, error",
    [
        ([np.ones(2)], TypeError),                         # the root must be a dict
        ({"x": {1, 2}}, TypeError),                         # a set is no leaf
        ({"x": np.array([None, 1], dtype=object)}, TypeError),  # would need pickling
        ({1.5: np.ones(2)}, TypeError),                     # keys are str or int
        ({True: 1}, TypeError),
        ({"1": 1, 1: 2}, ValueError),                       # ambiguous keys
    ],
    ids=["list_root", "set", "object_array", "float_key", "bool_key", "ambiguous_keys"],
)
def test_save_rejects_what_it_cannot_store_faithfully(obj, error, tmp_path):
    with pytest.raises(error):
        save(obj, tmp_path / "ckpt.npz")


# --- bad files ---------------------------------------------------------------------
def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _header(payload) -> np.ndarray:
    return np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)


def _bad_files(tmp_path):
    good = tmp_path / "good.npz"
    save({"weight": np.arange(1000.0), "epoch": 3}, good)
    data = good.read_bytes()
    files = {
        "missing": tmp_path / "missing.npz",
        "truncated": tmp_path / "truncated.npz",
        "truncated_end": tmp_path / "truncated_end.npz",
        "empty": tmp_path / "empty.npz",
        "random_bytes": tmp_path / "random.npz",
        "foreign_npz": tmp_path / "foreign.npz",
        "npy": tmp_path / "single.npy",
        "bad_json": tmp_path / "bad_json.npz",
        "future_version": tmp_path / "future.npz",
        "missing_entry": tmp_path / "missing_entry.npz",
        "bad_node": tmp_path / "bad_node.npz",
    }
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["truncated_end"].write_bytes(data[:-10])
    files["empty"].write_bytes(b"")
    files["random_bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    _write_npz(files["foreign_npz"], weight=np.ones(3))
    np.save(files["npy"], np.ones(3))
    _write_npz(files["bad_json"], **{STRUCTURE_KEY: np.frombuffer(b"{not json", dtype=np.uint8)})
    _write_npz(files["future_version"], **{STRUCTURE_KEY: _header(
        {"format": "minirn-checkpoint", "version": 99, "tree": {"type": "dict", "items": []}})})
    _write_npz(files["missing_entry"], **{STRUCTURE_KEY: _header({
        "format": "minirn-checkpoint", "version": 1,
        "tree": {"type": "dict", "items": [["w", {"type": "array", "entry": "arrays/w"}]]}})})
    _write_npz(files["bad_node"], **{STRUCTURE_KEY: _header({
        "format": "minirn-checkpoint", "version": 1,
        "tree": {"type": "dict", "items": [["w", {"type": "int", "value": "import os"}]]}})})
    return files


BAD = ["missing", "truncated", "truncated_end", "empty", "random_bytes", "foreign_npz", "npy", "bad_json",
       "future_version", "missing_entry", "bad_node"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_raise_checkpoint_error_naming_the_path(kind, tmp_path):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as info:
        load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


def test_error_messages_say_what_is_wrong(tmp_path):
    files = _bad_files(tmp_path)
    expected = {"missing": "does not exist", "foreign_npz": "not a minirn checkpoint", "future_version": "version 99",
                "npy": "single .npy", "missing_entry": "missing array entry"}
    for kind, fragment in expected.items():
        with pytest.raises(CheckpointError, match=fragment):
            load(files[kind])


class _Trap:
    """Unpickling a _Trap would record that code ran."""

    triggered = False

    def __reduce__(self):
        return (_Trap._trigger, ())

    @staticmethod
    def _trigger():
        _Trap.triggered = True
        return 0


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=True, **{
            STRUCTURE_KEY: _header({"format": "minirn-checkpoint", "version": 1,
                                    "tree": {"type": "dict", "items": [["w", {"type": "array", "entry": "arrays/w"}]]}}),
            "arrays/w": trap,
        })
    pickle.loads(pickle.dumps(_Trap()))  # the trap works ...
    assert _Trap.triggered
    _Trap.triggered = False
    with pytest.raises(CheckpointError):
        load(path)
    assert not _Trap.triggered  # ... but load never springs it


def test_a_checkpoint_gets_a_normal_file_mode(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    save({"epoch": 1}, tmp_path / "ckpt.npz")
    assert os.stat(tmp_path / "ckpt.npz").st_mode == os.stat(tmp_path / "plain.txt").st_mode
