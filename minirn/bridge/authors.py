"""The authors' checkpoints as minirn models (the second half of :mod:`minirn.bridge`).

:func:`convert_authors` reads a checkpoint of the authors' code (https://github.com/awaisrauf/RobustNorm,
``train_cifar.py`` / ``train_mnist.py``) and returns the minirn model that computes the same function;
``python -m minirn convert --from authors CHECKPOINT --model resnet20 --norm RNT --out model.safetensors``
writes it with :func:`minirn.bridge.save_weights`.

Their checkpoints hold four traps, each handled in one place here:
``torch.save`` of ``{'state_dict': ..., 'epoch': ..., 'optimizer': ...}`` from an ``nn.DataParallel``
model, so every key starts with ``module.`` (:func:`_authors_state_dict`); their RobustNorm subclasses
BatchNorm2d and keeps its running *range* in ``running_var``, and their no-norm layer keeps unused
BatchNorm parameters (:func:`_authors_key_map`); their BatchNorm divides by the root of the unbiased
variance plus ε (``BatchNorm2d(formula="authors")``, set by :func:`convert_authors`); their models
take standardised images (x - m)/s (their ``utils/data.py``), so the converted model starts with
:class:`minirn.nn.Normalize` (:data:`AUTHORS_INPUT_NORMALIZATION`) and takes pixels in [0, 1].

Reading a ``.pth`` needs PyTorch (optional) and uses ``torch.load(..., weights_only=True)`` only: a
file whose pickle would run code is refused before anything runs.  Every failure is a
:class:`ConversionError` (a :class:`~minirn.serialization.CheckpointError`) of one line.
"""
from __future__ import annotations

import os
import re

import numpy as np

from minirn import models
from minirn.bridge.weights import BATCHES_TRACKED, _build, _first_line, _fit
from minirn.nn import eval_statistics
from minirn.serialization import CheckpointError

__all__ = ["AUTHORS_INPUT_NORMALIZATION", "AUTHORS_NORMS", "ConversionError", "authors_input_normalization",
           "convert_authors"]


class ConversionError(CheckpointError):
    """A checkpoint of another code cannot be mapped onto a minirn model."""


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

#: How their scripts standardise inputs (``utils/data.py``, ``transforms.Normalize(mean, std)``), by minirn's
#: dataset name: their models expect (x - mean) / std.  MNIST's values serve their Fashion-MNIST too.
_MNIST_NORMALIZATION = {"mean": [0.1307], "std": [0.3081]}
AUTHORS_INPUT_NORMALIZATION = {
    "mnist": _MNIST_NORMALIZATION, "mnist-5k": _MNIST_NORMALIZATION, "fashion-mnist": _MNIST_NORMALIZATION,
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
}


def authors_input_normalization(dataset: str) -> dict:
    """``{"mean": [...], "std": [...]}`` that their script for ``dataset`` standardises inputs with."""
    if dataset not in AUTHORS_INPUT_NORMALIZATION:
        raise ConversionError(f"the authors' scripts do not train on {dataset!r} (they train on "
                              f"{', '.join(AUTHORS_INPUT_NORMALIZATION)}); give the input normalisation their "
                              "model was trained with")
    return AUTHORS_INPUT_NORMALIZATION[dataset]


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


def convert_authors(path, model: str, norm: str, p: float = 0.2, dataset: str | None = None,
                    input_normalization="authors"):
    """``(minirn model, meta)`` computing what the authors' checkpoint ``path`` computes.

    path: a ``.pth``/``.pth.tar`` of their ``train_cifar.py`` / ``train_mnist.py`` (``torch.save`` of a dict
    with ``state_dict``, keys under ``module.``), or of a bare state dict; read with
    ``torch.load(weights_only=True)``.  model: ``"resnet20"`` (CIFAR), ``"resnet8"`` (their MNIST default)
    or any ``"resnetN"`` with basic blocks; it must be the network the file holds.
    norm: their ``--norm`` (:data:`AUTHORS_NORMS`), which sets minirn's norm, BatchNorm formula and eval
    statistics (the file does not record it); p: their ``--norm_power`` for RobustNorm (not recorded either;
    0.2 is their default, and their MNIST scripts always use it).  dataset: minirn's name of the data,
    for the description (default: "mnist" for one input channel, "cifar10" for three).
    input_normalization: ``"authors"`` (the default), the standardisation of their script for ``dataset``
    (:data:`AUTHORS_INPUT_NORMALIZATION`); ``{"mean": [...], "std": [...]}`` for another; None for a
    model that was fed raw pixels.  It becomes the model's first layer, :class:`minirn.nn.Normalize`,
    so the converted model takes pixels in [0, 1].

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
    dataset = dataset or ("mnist" if in_channels == 1 else "cifar10")
    if input_normalization == "authors":
        input_normalization = authors_input_normalization(dataset)
    meta = {"dataset": dataset, "model": model, "norm": minirn_norm,
            "p": float(p), "in_channels": in_channels, "num_classes": num_classes,
            "batch_norm_formula": "authors" if minirn_norm == "bn" else "standard",
            "eval_mean": eval_statistics(stats).mean if stats else "running",
            "eval_scale": eval_statistics(stats).scale if stats else "running",
            "source": {"code": "https://github.com/awaisrauf/RobustNorm", "norm": norm,
                       "checkpoint": os.path.basename(path)},
            "input_normalization": input_normalization}
    result = _build(meta, f"{path!r}")
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
