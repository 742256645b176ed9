"""Checkpoints: nested dicts of arrays in one ``.npz`` file, with nothing pickled.

:func:`save` writes a *tree*: a dict whose keys are ``str`` (or ``int``,
as in an optimizer's ``state_dict``) and whose leaves are

* arrays of any minirn device (copied to the host with
  :func:`minirn.backend.to_host`), NumPy arrays and NumPy scalars,
  and :class:`~minirn.autograd.tensor.Tensor` objects (saved as their ``data``);
* Python ``int``, ``float``, ``bool``, ``str`` and ``None``;
* lists, tuples and dicts of the above, nested to any depth.

The file is an ordinary NumPy ``.npz`` archive (``np.load(path,
allow_pickle=False)`` opens it):

=============================  =============================================
entry                          content
=============================  =============================================
``__minirn_checkpoint__``      uint8 array: UTF-8 JSON with the format name,
                               the format version and the tree's structure
                               (containers, key types, scalar values, and
                               for each array leaf the name of its entry)
``arrays/<k1>/<k2>/...``       one entry per array leaf; each key is
                               percent-encoded (``/`` becomes ``%2F``), so
                               the names are unique and readable
                               (``arrays/model/conv1.weight``)
=============================  =============================================

A *model checkpoint* is a tree with two entries more: ``model`` (the
``state_dict``) and ``meta`` (:func:`minirn.runs.model_meta`: architecture,
norm, p, dataset, input shape, classes, and the run that trained it).
``minirn train``'s model, its per-epoch training checkpoint and
``minirn reproduce``'s checkpoints are all model checkpoints, so
:func:`load_model` (``minirn.load_model(path)``) and ``minirn attack`` read
any of them.

Loading parses JSON and ``.npy`` headers only, so an untrusted file can
never run code.  :func:`load` returns NumPy arrays (move them to a device
yourself) inside the original containers.

:func:`save` is atomic: it writes a temporary file in the target's
directory and renames it over the target with :func:`os.replace`, so a
crash leaves either the old checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from urllib.parse import quote

import numpy as np

from minirn import backend, models
from minirn.autograd.tensor import Tensor

FORMAT_NAME = "minirn-checkpoint"
FORMAT_VERSION = 1
STRUCTURE_KEY = "__minirn_checkpoint__"
ARRAY_PREFIX = "arrays"
#: Files with this suffix hold weights in PyTorch's layout (:mod:`minirn.bridge`), not a minirn checkpoint.
SAFETENSORS_SUFFIX = ".safetensors"

__all__ = ["CheckpointError", "FORMAT_VERSION", "MODEL_META", "load", "load_model", "read_model", "save"]

#: The entries of a model checkpoint's ``meta`` that rebuild its model, with their types.
MODEL_META = {"dataset": str, "model": str, "norm": str, "p": (int, float), "in_channels": int, "num_classes": int}


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or was not written by :func:`save`."""


# ----------------------------------------------------------------------------
# saving: tree -> (structure, {entry name: NumPy array})
# ----------------------------------------------------------------------------
def _encode(obj, name: str, arrays: dict, where: str):
    """The JSON node for ``obj``; array leaves are added to ``arrays`` under ``name``."""
    if isinstance(obj, (Tensor, np.ndarray, np.generic)) or backend.is_array(obj):  # np.float64 is a float too
        data = obj.data if isinstance(obj, Tensor) else obj
        host = np.asarray(data) if isinstance(data, np.generic) else backend.to_host(data)
        if host.dtype.hasobject:
            raise TypeError(f"cannot save {where}: arrays of Python objects cannot be stored without pickling")
        arrays[name] = host
        return {"type": "numpy_scalar" if isinstance(data, np.generic) else "array", "entry": name}
    if obj is None or isinstance(obj, (bool, str)):
        return {"type": "none" if obj is None else type(obj).__name__, "value": obj}
    if isinstance(obj, int):
        return {"type": "int", "value": int(obj)}
    if isinstance(obj, float):
        return {"type": "float", "value": float(obj)}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{name}/{i}", arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"type": type(obj).__name__, "items": items}
    if isinstance(obj, dict):
        items, seen = [], set()
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"cannot save {where}: dict keys must be str or int, got {type(key).__name__} {key!r}")
            if str(key) in seen:
                raise ValueError(f"cannot save {where}: it has both {key!r} and {str(key)!r} as keys")
            seen.add(str(key))
            child = _encode(value, f"{name}/{quote(str(key), safe='')}", arrays, f"{where}[{key!r}]")
            items.append([key, child])
        return {"type": "dict", "items": items}
    raise TypeError(
        f"cannot save {where}: a {type(obj).__name__} is not an array, Tensor, int, float, bool, str, None, "
        "list, tuple or dict"
    )


def save(obj, path) -> None:
    """Write ``obj`` (a nested dict, see the module docstring) to ``path`` atomically.

    The file at ``path`` is replaced only once the new one is completely
    written; if anything fails, the old file is untouched and the temporary
    file is removed.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"save expects a dict (e.g. a state_dict), got {type(obj).__name__}")
    arrays: dict = {}
    structure = _encode(obj, ARRAY_PREFIX, arrays, "checkpoint")
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tree": structure}
    arrays[STRUCTURE_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------
# loading: validate every node, since the file may come from anyone
# ----------------------------------------------------------------------------
def _decode(node, archive, path: str, where: str):
    def bad(what):
        return CheckpointError(f"{path!r} is damaged: {where} {what}")

    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise bad("is not a valid node")
    kind = node["type"]
    if kind in ("none", "bool", "int", "float", "str"):
        value = node.get("value")
        expected = {"none": type(None), "bool": bool, "int": int, "float": (int, float), "str": str}[kind]
        if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
            raise bad(f"should hold a {kind} but holds {value!r}")
        return float(value) if kind == "float" else value
    if kind in ("array", "numpy_scalar"):
        entry = node.get("entry")
        if not isinstance(entry, str) or entry == STRUCTURE_KEY or entry not in archive.files:
            raise bad(f"refers to a missing array entry {entry!r}")
        array = archive[entry]
        if kind == "numpy_scalar":
            if array.ndim != 0:
                raise bad(f"should be a 0-d array but has shape {array.shape}")
            return array[()]
        return array
    items = node.get("items")
    if not isinstance(items, list):
        raise bad(f"({kind}) has no list of items")
    if kind in ("list", "tuple"):
        values = [_decode(v, archive, path, f"{where}[{i}]") for i, v in enumerate(items)]
        return values if kind == "list" else tuple(values)
    if kind == "dict":
        out = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (str, int))):
                raise bad("has a malformed dict item")
            key = item[0]
            out[key] = _decode(item[1], archive, path, f"{where}[{key!r}]")
        return out
    raise bad(f"has unknown type {kind!r}")


def _read_header(archive, path: str) -> dict:
    if STRUCTURE_KEY not in archive.files:
        shown = ", ".join(archive.files[:5]) + (", ..." if len(archive.files) > 5 else "")
        raise CheckpointError(
            f"{path!r} is an .npz file but not a minirn checkpoint (no {STRUCTURE_KEY!r} entry; entries: {shown})"
        )
    raw = archive[STRUCTURE_KEY]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path!r} is damaged: {STRUCTURE_KEY!r} should be a 1-d uint8 array")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path!r} is damaged: its structure is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path!r} is not a minirn checkpoint (unknown format)")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has checkpoint format version {version!r}; this minirn reads versions 1 to {FORMAT_VERSION}"
        )
    return header


def load(path):
    """Read a checkpoint written by :func:`save`.

    Returns the saved tree with NumPy arrays for array leaves (Tensors come
    back as arrays).  Raises :class:`CheckpointError` naming ``path`` if the
    file is missing, truncated, or not a minirn checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}: the file does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path!r} holds a single .npy array, not a minirn checkpoint (.npz)")
        with archive:
            header = _read_header(archive, path)
            tree = _decode(header["tree"], archive, path, "checkpoint")
    except CheckpointError:
        raise
    except Exception as exc:  # any parse failure of an untrusted file: zip, npy header, truncated data
        raise CheckpointError(
            f"{path!r} is not a readable minirn checkpoint (truncated or not an .npz file): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path!r} is damaged: its root is a {type(tree).__name__}, not a dict")
    return tree


# ----------------------------------------------------------------------------
# model checkpoints: the weights and what rebuilds the model around them
# ----------------------------------------------------------------------------
def read_model(path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a model checkpoint (see the module docstring), or of a ``.safetensors``
    file of :func:`minirn.bridge.save_weights`; CheckpointError for anything else."""
    path = os.fspath(path)
    if path.endswith(SAFETENSORS_SUFFIX):
        from minirn import bridge  # noqa: PLC0415  (bridge imports this module)

        return bridge.read_weights(path)
    state = load(path)
    meta = state.get("meta")
    if not isinstance(meta, dict) or not isinstance(state.get("model"), dict):
        what = ("a training checkpoint of an older minirn, which does not record its model"
                if "optimizer" in state else "not a model checkpoint")
        raise CheckpointError(f"{path!r} is {what}: it has no 'model' and 'meta' entries "
                              "(as 'minirn train' and 'minirn reproduce' write)")
    for key, kind in MODEL_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{path!r} is damaged: meta[{key!r}] is {meta.get(key)!r}")
    return state["model"], meta


def load_model(path, device: str = "cpu"):
    """The model of checkpoint ``path`` (written by ``minirn train`` or ``minirn reproduce``), on
    ``device``, in eval mode.  Its description is ``read_model(path)[1]``.  A ``.safetensors`` file
    (:func:`minirn.bridge.save_weights`, ``minirn convert``) is read by :func:`minirn.bridge.load_model`."""
    if os.fspath(path).endswith(SAFETENSORS_SUFFIX):
        from minirn import bridge  # noqa: PLC0415  (bridge imports this module)

        return bridge.load_model(path, device)
    weights, meta = read_model(path)
    model = models.build(meta["model"], meta["norm"], meta["p"], in_channels=meta["in_channels"],
                         num_classes=meta["num_classes"], device=device,
                         input_normalization=meta.get("input_normalization"))
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r} does not fit its own metadata: {exc}") from None
    return model.eval()
