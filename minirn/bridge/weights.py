"""minirn <-> ``.safetensors`` in PyTorch's layout, with no pickle (the first half of :mod:`minirn.bridge`).

:func:`save_weights` / :func:`load_weights` write and read a ``.safetensors`` file whose keys,
shapes and dtypes are those of the PyTorch twin of the same network
(:mod:`minirn.bench.torch_twins`): ``twin.load_state_dict(safetensors.torch.load_file(path))``
loads it with ``strict=True``.  PyTorch's BatchNorm keeps a counter ``num_batches_tracked``
(int64, shape ()) that minirn does not; it is written as 0 and ignored on reading.  The file's
metadata holds ``"format": "pt"`` (the Hugging Face convention for a PyTorch state dict) and
``"minirn"``: the JSON model description (:data:`minirn.serialization.MODEL_META`: model, norm, p,
in_channels, num_classes, dataset; plus the BatchNorm formula, the eval statistics and the input
normalisation, :class:`minirn.nn.Normalize`, which has no weights), so :func:`minirn.load_model`
rebuilds the model from a ``.safetensors`` file as from an ``.npz``, and
:func:`minirn.bench.torch_twins.from_description` builds its twin.

Every failure is a :class:`~minirn.serialization.CheckpointError` of one line, raised before the
model is touched, so nothing is ever half-loaded.  docs/pytorch_bridge.md walks through both directions.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from minirn import backend, models
from minirn.nn import BatchNorm2d, Normalize, get_norm_eval_stats, set_norm_eval_stats
from minirn.serialization import MODEL_META, CheckpointError

__all__ = ["build", "load_model", "load_weights", "read_weights", "save_weights"]

METADATA_KEY = "minirn"
FORMAT_NAME = "minirn-weights"
FORMAT_VERSION = 1
#: PyTorch's BatchNorm counter, which minirn does not keep.
BATCHES_TRACKED = "num_batches_tracked"


def _safetensors():
    """``(safe_open, save_file)`` of the safetensors package, imported only when a file is read or written,
    so that ``import minirn`` works where it is missing (a requirement, but e.g. an offline GPU machine)."""
    try:
        from safetensors import safe_open  # noqa: PLC0415
        from safetensors.numpy import save_file  # noqa: PLC0415
    except ImportError:
        raise CheckpointError(".safetensors files need the safetensors package, which is not installed: "
                              "pip install safetensors") from None
    return safe_open, save_file


def _batch_norm_prefixes(model) -> list[str]:
    """``"blocks.0.norm1."`` for every BatchNorm2d of ``model``: where the twin has a ``num_batches_tracked``."""
    return [f"{name}." if name else "" for name, module in model.named_modules() if isinstance(module, BatchNorm2d)]


def _settings(model) -> dict:
    """What a model's layers are set to beyond its weights: the BatchNorm formula, the eval statistics and
    the input normalisation (``{"mean": [...], "std": [...]}`` of its Normalize layer, or None)."""
    formulas = {m.formula for m in model.modules() if isinstance(m, BatchNorm2d)}
    if len(formulas) > 1:
        raise ValueError(f"the model's BatchNorm layers use different formulas {sorted(formulas)}; save_weights "
                         "records one")
    normalizations = [m for m in model.modules() if isinstance(m, Normalize)]
    if len(normalizations) > 1:
        raise ValueError("the model has more than one Normalize layer; save_weights records one, its first layer")
    stats = get_norm_eval_stats(model)
    return {"batch_norm_formula": formulas.pop() if formulas else "standard",
            "eval_mean": stats[0] if stats else "running", "eval_scale": stats[1] if stats else "running",
            "input_normalization": ({"mean": list(normalizations[0].mean), "std": list(normalizations[0].std)}
                                    if normalizations else None)}


def _check_meta(meta, where: str) -> dict:
    """``meta`` if it describes a model :func:`build` can make (the file may come from anyone)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: the model description is a {type(meta).__name__}, not a dict")
    for key, kind in MODEL_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{where}: the model description's {key!r} is {meta.get(key)!r}")
    normalization = meta.get("input_normalization")
    if normalization is not None and not (
            isinstance(normalization, dict) and set(normalization) == {"mean", "std"}
            and all(isinstance(v, list) and len(v) == meta["in_channels"] for v in normalization.values())):
        raise CheckpointError(f"{where}: the model description's 'input_normalization' is {normalization!r}, not "
                              f"{{'mean': [...], 'std': [...]}} with {meta['in_channels']} number(s) each")
    return meta


def build(meta: dict, device="cpu"):
    """The model ``meta`` describes, in eval mode: its network (:func:`minirn.models.build`), input
    normalisation, BatchNorm formula and eval statistics.  ValueError if ``meta`` asks for what minirn has not."""
    model = models.build(meta["model"], meta["norm"], meta["p"], in_channels=meta["in_channels"],
                         num_classes=meta["num_classes"], device=device,
                         input_normalization=meta.get("input_normalization"))
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = meta.get("batch_norm_formula", "standard")
    set_norm_eval_stats(model, meta.get("eval_mean", "running"), meta.get("eval_scale", "running"))
    return model.eval()


def _build(meta: dict, where: str, device="cpu"):
    """:func:`build`, with what it refuses as one CheckpointError naming ``where``."""
    try:
        return build(meta, device)
    except ValueError as exc:
        raise CheckpointError(f"{where}: the model description cannot be built: {exc}") from None


def save_weights(model, path, meta: dict) -> None:
    """Write ``model``'s weights to ``path`` (``.safetensors``) in its PyTorch twin's layout, atomically.

    meta: the model's description, with at least the entries of :data:`minirn.serialization.MODEL_META`
    (``minirn.serialization.read_model(path)[1]`` of a trained model has them); the model must be the
    network it describes.  The BatchNorm formula, the eval statistics and the input normalisation are
    read from ``model``.
    """
    description = {**json.loads(json.dumps(meta)), **_settings(model),
                   "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    _check_meta(description, "save_weights")
    reference = build(description)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if own != {k: tuple(v.shape) for k, v in reference.state_dict().items()}:
        raise ValueError(f"save_weights: the model is not the {meta['model']} with norm {meta['norm']!r} that meta "
                         "describes (its parameter names or shapes differ)")
    tensors = {key: np.ascontiguousarray(backend.to_host(value)) for key, value in model.state_dict().items()}
    for prefix in _batch_norm_prefixes(model):
        tensors[prefix + BATCHES_TRACKED] = np.array(0, dtype=np.int64)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _, save_file = _safetensors()
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp_path, metadata={"format": "pt", METADATA_KEY: json.dumps(description)})
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _read(path) -> tuple[dict, dict | None]:
    """``(tensors, description or None)`` of a ``.safetensors`` file; CheckpointError if it cannot be parsed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no weights at {path!r}: the file does not exist")
    safe_open, _ = _safetensors()
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # any parse failure of an untrusted file: header length, JSON, offsets
        raise CheckpointError(f"{path!r} is not a readable .safetensors file: {_first_line(exc)}") from None
    if METADATA_KEY not in metadata:
        return tensors, None
    try:
        description = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path!r} is damaged: its {METADATA_KEY!r} metadata is not JSON ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path!r} has {METADATA_KEY!r} metadata of an unknown format")
    version = description.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path!r} has weights format version {version!r}; this minirn reads 1 to {FORMAT_VERSION}")
    return tensors, _check_meta(description, f"{path!r} is damaged")


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _fit(model, tensors: dict, path: str, meta: dict | None) -> dict:
    """``tensors`` as a minirn state dict for ``model``: keys, shapes and dtypes checked, the counters dropped."""
    where = f"{path!r}" + (f" ({meta['model']}, norm {meta['norm']!r})" if meta else "")
    counters = {prefix + BATCHES_TRACKED for prefix in _batch_norm_prefixes(model)}
    own = model.state_dict()
    state = {}
    for key, value in tensors.items():
        if key in counters:
            if value.dtype != np.int64 or value.ndim != 0:
                raise CheckpointError(f"{where} does not fit the model: {key!r} should be an int64 scalar, "
                                      f"got {value.dtype} of shape {value.shape}")
            continue
        state[key] = value
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{where} does not fit the model: " + "; ".join(
            f"{len(keys)} {what} key{'s' * (len(keys) > 1)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys))
    for key, target in own.items():
        value = state[key]
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"{where} does not fit the model: {key!r} has shape {tuple(value.shape)} "
                                  f"in the file, {tuple(target.shape)} in the model")
        if backend.dtype_name(value.dtype) != backend.dtype_name(target.dtype):
            raise CheckpointError(f"{where} does not fit the model: {key!r} is {value.dtype} in the file, "
                                  f"{backend.dtype_name(target.dtype)} in the model")
    return state


def load_weights(model, path):
    """Copy the weights of ``path`` (``.safetensors``, e.g. written by :func:`save_weights` or by
    ``safetensors.torch.save_file(twin.state_dict(), path)``) into ``model``; returns ``model``.

    Keys, shapes and dtypes must be exactly the model's (``num_batches_tracked`` aside); every check
    runs before anything is copied, so a refused file leaves the model as it was.  Only the weights
    are loaded: the layers' BatchNorm formula and eval statistics stay as they are
    (:func:`load_model` applies the file's).
    """
    path = os.fspath(path)
    tensors, meta = _read(path)
    model.load_state_dict(_fit(model, tensors, path, meta))
    return model


def read_weights(path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a ``.safetensors`` file of :func:`save_weights` (as
    :func:`minirn.serialization.read_model` gives them for an ``.npz``); CheckpointError for anything else."""
    path = os.fspath(path)
    tensors, meta = _read(path)
    if meta is None:
        raise CheckpointError(f"{path!r} has no minirn model description in its metadata; build the model yourself "
                              "and load it with minirn.bridge.load_weights(model, path)")
    return {k: v for k, v in tensors.items() if not k.endswith("." + BATCHES_TRACKED)}, meta


def load_model(path, device: str = "cpu"):
    """The model of ``path`` (``.safetensors`` of :func:`save_weights`), on ``device``, in eval mode, with the
    BatchNorm formula and eval statistics it was saved with."""
    path = os.fspath(path)
    tensors, meta = _read(path)
    if meta is None:
        read_weights(path)  # raises its one-line error
    model = _build(meta, f"{path!r} is damaged", device)
    model.load_state_dict(_fit(model, tensors, path, meta))
    return model
