"""A bridge to PyTorch: weights as ``.safetensors`` in PyTorch's layout, and the authors' checkpoints.

Two directions, no pickle in either:

* :func:`save_weights` / :func:`load_weights` write and read a ``.safetensors`` file whose keys,
  shapes and dtypes are those of the PyTorch twin of the same network
  (:mod:`minirn.bench.torch_twins`): ``twin.load_state_dict(safetensors.torch.load_file(path))``
  loads it with ``strict=True``.  PyTorch's BatchNorm keeps a counter ``num_batches_tracked``
  (int64, shape ()) that minirn does not; it is written as 0 and ignored on reading.  The file's
  metadata holds ``"format": "pt"`` (the Hugging Face convention for a PyTorch state dict) and
  ``"minirn"``: the JSON model description (:data:`minirn.serialization.MODEL_META`: model, norm, p,
  in_channels, num_classes, dataset; plus the BatchNorm formula and the eval statistics), so
  :func:`minirn.load_model` rebuilds the model from a ``.safetensors`` file as from an ``.npz``.
* :func:`convert_authors` reads a checkpoint of the authors' code (https://github.com/awaisrauf/RobustNorm,
  ``train_cifar.py`` / ``train_mnist.py``) and returns the minirn model that computes the same function;
  ``python -m minirn convert --from authors CHECKPOINT --model resnet20 --norm RNT --out model.safetensors``
  writes it with :func:`save_weights`.  docs/pytorch_bridge.md walks through both directions.

The authors' checkpoints hold three traps, each handled in one place here:
``torch.save`` of ``{'state_dict': ..., 'epoch': ..., 'optimizer': ...}`` from an ``nn.DataParallel``
model, so every key starts with ``module.`` (:func:`_authors_state_dict`); their RobustNorm subclasses
BatchNorm2d and keeps its running *range* in ``running_var``, and their no-norm layer keeps unused
BatchNorm parameters (:func:`_authors_key_map`); their BatchNorm divides by the root of the unbiased
variance plus ε (``BatchNorm2d(formula="authors")``, set by :func:`convert_authors`).

Reading a ``.pth`` needs PyTorch (optional) and uses ``torch.load(..., weights_only=True)`` only: a
file whose pickle would run code is refused before anything runs.  Every failure is a
:class:`~minirn.serialization.CheckpointError` (or its :class:`ConversionError`) of one line, raised
before the model is touched, so nothing is ever half-loaded.
"""
from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np

from minirn import backend, models
from minirn.nn import BatchNorm2d, eval_statistics, get_norm_eval_stats, set_norm_eval_stats
from minirn.serialization import MODEL_META, CheckpointError

__all__ = ["AUTHORS_NORMS", "ConversionError", "convert_authors", "load_model", "load_weights", "read_weights",
           "save_weights"]

METADATA_KEY = "minirn"
FORMAT_NAME = "minirn-weights"
FORMAT_VERSION = 1
#: PyTorch's BatchNorm counter, which minirn does not keep.
BATCHES_TRACKED = "num_batches_tracked"


class ConversionError(CheckpointError):
    """A checkpoint of another code cannot be mapped onto a minirn model."""


# ----------------------------------------------------------------------------
# minirn <-> safetensors in the twin's layout
# ----------------------------------------------------------------------------
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
    """What a model's layers are set to beyond its weights: the BatchNorm formula and the eval statistics."""
    formulas = {m.formula for m in model.modules() if isinstance(m, BatchNorm2d)}
    if len(formulas) > 1:
        raise ValueError(f"the model's BatchNorm layers use different formulas {sorted(formulas)}; save_weights "
                         "records one")
    stats = get_norm_eval_stats(model)
    return {"batch_norm_formula": formulas.pop() if formulas else "standard",
            "eval_mean": stats[0] if stats else "running", "eval_scale": stats[1] if stats else "running"}


def _check_meta(meta, where: str) -> dict:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: the model description is a {type(meta).__name__}, not a dict")
    for key, kind in MODEL_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{where}: the model description's {key!r} is {meta.get(key)!r}")
    return meta


def _build(meta: dict, device="cpu"):
    """The model ``meta`` describes, with its BatchNorm formula and eval statistics, in eval mode."""
    model = models.build(meta["model"], meta["norm"], meta["p"], in_channels=meta["in_channels"],
                         num_classes=meta["num_classes"], device=device)
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.formula = meta.get("batch_norm_formula", "standard")
    set_norm_eval_stats(model, meta.get("eval_mean", "running"), meta.get("eval_scale", "running"))
    return model.eval()


def save_weights(model, path, meta: dict) -> None:
    """Write ``model``'s weights to ``path`` (``.safetensors``) in its PyTorch twin's layout, atomically.

    meta: the model's description, with at least the entries of :data:`minirn.serialization.MODEL_META`
    (``minirn.serialization.read_model(path)[1]`` of a trained model has them); the model must be the
    network it describes.  The BatchNorm formula and the eval statistics are read from ``model``.
    """
    _check_meta(meta, "save_weights")
    reference = models.build(meta["model"], meta["norm"], meta["p"], in_channels=meta["in_channels"],
                             num_classes=meta["num_classes"])
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if own != {k: tuple(v.shape) for k, v in reference.state_dict().items()}:
        raise ValueError(f"save_weights: the model is not the {meta['model']} with norm {meta['norm']!r} that meta "
                         "describes (its parameter names or shapes differ)")
    tensors = {key: np.ascontiguousarray(backend.to_host(value)) for key, value in model.state_dict().items()}
    for prefix in _batch_norm_prefixes(model):
        tensors[prefix + BATCHES_TRACKED] = np.array(0, dtype=np.int64)
    description = {**json.loads(json.dumps(meta)), **_settings(model),
                   "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
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
    model = _build(meta, device)
    model.load_state_dict(_fit(model, tensors, path, meta))
    return model


# ----------------------------------------------------------------------------
# the authors' checkpoints
# ----------------------------------------------------------------------------
#: The authors' ``--norm`` names (``models/norm.py``, ``select_norm``): minirn's norm and the entry of
#: :data:`minirn.nn.EVAL_STATISTICS` with the statistics their layer uses in eval mode.
AUTHORS_NORMS = {
    "NoBN": ("none", None),
    "BN": ("bn", "running"),
    "BNwoT": ("bn", "batch"),
    "BNM": ("bn", "running-mean"),
    "RNT": ("rn", "running"),
    "RN": ("rn", "batch"),
    "RNM": ("rn", "running-mean"),
}

#: Their norms with no minirn counterpart (named in their ``select_norm``), refused by name.
_UNMAPPABLE_NORMS = ("BNFT", "BNwoA", "GNR")

#: Their ResNet's names (``models/resnet.py``, ``models/cnn_mnist.py``) -> minirn.models.ResNet's, per block.
_BLOCK_LAYERS = {"conv1": "conv1", "bn1": "norm1", "conv2": "conv2", "bn2": "norm2",
                 "downsample.0": "shortcut.0", "downsample.1": "shortcut.1"}
_NORM_ENTRIES = ("weight", "bias", "running_mean", "running_var", BATCHES_TRACKED)
_KEY = re.compile(r"layer([123])\.(\d+)\.(conv1|bn1|conv2|bn2|downsample\.0|downsample\.1|conv3|bn3)\.(\w+)")

#: Where their scripts normalise inputs (``utils/data.py``): their models expect (x - mean) / std.
AUTHORS_INPUT_NORMALIZATION = {1: {"mean": [0.1307], "std": [0.3081]},
                               3: {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}}


def _torch_load(path: str):
    """The object ``torch.load(path, weights_only=True)`` gives: never runs code from the file."""
    try:
        import torch  # noqa: PLC0415  (optional: only reading .pth files needs PyTorch)
    except ImportError:
        raise ConversionError("reading a PyTorch checkpoint needs PyTorch, which is not installed: pip install torch "
                              "(CPU only: pip install torch --index-url https://download.pytorch.org/whl/cpu)") from None
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path!r}: the file does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses any pickle that would build other objects or call code
        raise ConversionError(f"{path!r} cannot be read with torch.load(weights_only=True), which refuses pickles "
                              f"that would run code: {_first_line(exc)}") from None


def _authors_state_dict(checkpoint, path: str) -> dict:
    """Their ``state_dict`` as ``{key without 'module.': float32/int64 NumPy array}``."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ConversionError(f"{path!r} holds neither a state_dict nor a dict with a 'state_dict' entry")
    keys = list(checkpoint)
    if not all(isinstance(k, str) for k in keys):
        raise ConversionError(f"{path!r}: the state_dict has keys that are not strings")
    prefixed = [k.startswith("module.") for k in keys]
    if any(prefixed) and not all(prefixed):
        raise ConversionError(f"{path!r}: some keys start with 'module.' (nn.DataParallel) and others do not")
    state = {}
    for key, value in checkpoint.items():
        if not hasattr(value, "detach"):
            raise ConversionError(f"{path!r}: {key!r} is a {type(value).__name__}, not a tensor")
        state[key[len("module."):] if key.startswith("module.") else key] = value.detach().cpu().numpy()
    return state


def _authors_key_map(state: dict, depth: int, norm: str, path: str) -> dict:
    """``{their key: minirn key}`` for every key that carries a weight minirn uses (None: dropped)."""
    n = (depth - 2) // 6
    minirn_norm = AUTHORS_NORMS[norm][0]
    mapping = {}
    for key in state:
        match = _KEY.fullmatch(key)
        if key.startswith(("conv1.", "bn1.")):
            layer, entry = key.split(".", 1)
            target = ("stem" if layer == "conv1" else "stem_norm") + "." + entry
        elif match:
            stage, index, layer, entry = match.groups()
            if layer in ("conv3", "bn3"):
                raise ConversionError(f"{path!r} has Bottleneck blocks ({key!r}; their ResNets of depth 44 and more "
                                      "use them), which minirn's ResNet does not have")
            if int(index) >= n:
                raise ConversionError(f"{path!r} has more than {n} blocks per stage ({key!r}): it is not a resnet{depth}")
            target = f"blocks.{(int(stage) - 1) * n + int(index)}.{_BLOCK_LAYERS[layer]}.{entry}"
        elif key in ("fc.weight", "fc.bias"):
            target = key
        else:
            raise ConversionError(f"{path!r} has a key minirn cannot map: {key!r} (their CIFAR/MNIST ResNet has conv1, "
                                  "bn1, layer1-3 and fc)")
        is_norm = re.search(r"(^bn1|\.bn[12]|downsample\.1)\.", key) is not None
        if is_norm and target.rsplit(".", 1)[1] not in _NORM_ENTRIES:
            raise ConversionError(f"{path!r} has a norm entry minirn cannot map: {key!r}")
        if is_norm and (minirn_norm == "none" or key.endswith("." + BATCHES_TRACKED)):
            target = None  # their NoNorm keeps unused BatchNorm entries; the counter has no minirn counterpart
        elif is_norm and minirn_norm == "rn" and key.endswith(".running_var"):
            target = target[: -len("running_var")] + "running_range"  # their RobustNorm keeps the range there
        mapping[key] = target
    return mapping


def _authors_depth(state: dict, path: str) -> int:
    """The depth 6n+2 of their ResNet in ``state`` (n blocks in layer1)."""
    indices = [int(m.group(2)) for m in map(_KEY.fullmatch, state) if m and m.group(1) == "1"]
    if "conv1.weight" not in state or "fc.weight" not in state or not indices:
        raise ConversionError(f"{path!r} is not one of the authors' CIFAR/MNIST ResNets (no conv1.weight, layer1 "
                              "or fc.weight; their VGG and ImageNet ResNets have no minirn counterpart)")
    return 6 * (max(indices) + 1) + 2


def convert_authors(path, model: str, norm: str, p: float = 0.2, dataset: str | None = None):
    """``(minirn model, meta)`` computing what the authors' checkpoint ``path`` computes.

    path: a ``.pth``/``.pth.tar`` of their ``train_cifar.py`` / ``train_mnist.py`` (``torch.save`` of a dict
    with ``state_dict``, keys under ``module.``), or of a bare state dict; read with
    ``torch.load(weights_only=True)``.  model: ``"resnet20"`` (CIFAR), ``"resnet8"`` (their MNIST default)
    or any ``"resnetN"`` with basic blocks; it must be the network the file holds.
    norm: their ``--norm`` (:data:`AUTHORS_NORMS`), which sets minirn's norm, BatchNorm formula and eval
    statistics (the file does not record it); p: their ``--norm_power`` for RobustNorm (not recorded either;
    0.2 is their default, and their MNIST scripts always use it).  dataset: for the description
    (default: "mnist" for one input channel, "cifar10" for three).

    Returns the model in eval mode and its description for :func:`save_weights`.
    """
    if norm in _UNMAPPABLE_NORMS:
        raise ConversionError(f"their norm {norm!r} has no minirn counterpart; minirn converts "
                              f"{', '.join(AUTHORS_NORMS)}")
    if norm not in AUTHORS_NORMS:
        raise ConversionError(f"unknown norm {norm!r} of the authors' code; expected one of {', '.join(AUTHORS_NORMS)}")
    depth = models.resnet_depth(model)
    if depth is None:
        raise ConversionError(f"the authors have no {model!r}; their CIFAR and MNIST networks are ResNets "
                              "(resnet20, resnet8, ...)")
    path = os.fspath(path)
    state = _authors_state_dict(_torch_load(path), path)
    found = _authors_depth(state, path)
    if found != depth:
        raise ConversionError(f"{path!r} holds a resnet{found} ({(found - 2) // 6} blocks per stage), not a {model}")
    mapping = _authors_key_map(state, depth, norm, path)
    if state["conv1.weight"].ndim != 4 or state["fc.weight"].ndim != 2 or state["conv1.weight"].shape[0] != 16:
        raise ConversionError(f"{path!r}: conv1.weight {state['conv1.weight'].shape} and fc.weight "
                              f"{state['fc.weight'].shape} are not those of their 16-channel ResNet stem and classifier")
    for key, value in state.items():
        if mapping[key] is not None and value.dtype != np.float32:
            raise ConversionError(f"{path!r}: {key!r} is {value.dtype}; minirn's models hold float32")
    minirn_norm, stats = AUTHORS_NORMS[norm]
    in_channels, num_classes = int(state["conv1.weight"].shape[1]), int(state["fc.weight"].shape[0])
    meta = {"dataset": dataset or ("mnist" if in_channels == 1 else "cifar10"), "model": model, "norm": minirn_norm,
            "p": float(p), "in_channels": in_channels, "num_classes": num_classes,
            "batch_norm_formula": "authors" if minirn_norm == "bn" else "standard",
            "eval_mean": eval_statistics(stats).mean if stats else "running",
            "eval_scale": eval_statistics(stats).scale if stats else "running",
            "source": {"code": "https://github.com/awaisrauf/RobustNorm", "norm": norm,
                       "checkpoint": os.path.basename(path)},
            "input_normalization": AUTHORS_INPUT_NORMALIZATION.get(in_channels)}
    result = _build(meta)
    converted = {target: state[key] for key, target in mapping.items() if target is not None}
    own = result.state_dict()
    if minirn_norm == "none":  # their convolutions have no bias; minirn's do without a norm: zero is the same function
        for key, value in own.items():
            if key not in converted and key.endswith(".bias") and key != "fc.bias":
                converted[key] = np.zeros(tuple(value.shape), dtype=np.float32)
    try:
        result.load_state_dict(_fit(result, converted, path, None))
    except CheckpointError as exc:
        raise ConversionError(f"{exc} (after mapping the authors' names onto minirn's)") from None
    return result, meta
