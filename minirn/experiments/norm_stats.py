"""Finding 1 of the paper: adversarial inputs shift the statistics that BatchNorm normalises with.

:func:`record_norm_inputs` records, for every BatchNorm2d/RobustNorm2d layer,
the per-channel mean and variance of the layer's *input* on one batch.
:func:`statistics_shift` compares clean and adversarial batches with the
running estimates the layer uses at inference:

* mean shift :math:`\\frac1C\\sum_c |\\mu_c - \\bar\\mu_c| / \\sqrt{\\bar\\sigma^2_c}`
  (in units of the running standard deviation);
* variance ratio :math:`\\frac1C\\sum_c \\sigma^2_c / \\bar\\sigma^2_c`.

For a RobustNorm layer the running "variance" is not tracked; its range is
compared instead (batch range over running range).
"""
from __future__ import annotations

import contextlib

import numpy as np

from minirn import backend
from minirn.autograd.grad_mode import freeze_running_stats, no_grad
from minirn.autograd.tensor import Tensor
from minirn.nn.norm import BatchNorm2d, RobustNorm2d


@contextlib.contextmanager
def record_norm_inputs(model):
    """Inside the block, each norm layer's input statistics of the latest forward pass land in the yielded dict.

    ``records[layer_name] = {"mean": (C,), "var": (C,), "range": (C,)}`` (host NumPy arrays).
    """
    records = {}
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (BatchNorm2d, RobustNorm2d))]
    for name, layer in layers:
        original = layer.forward

        def recording_forward(x, _name=name, _original=original):
            data = x.data if isinstance(x, Tensor) else x
            xp = backend.array_namespace(data)
            axes = (0, 2, 3) if data.ndim == 4 else (0,)
            records[_name] = {
                "mean": backend.to_host(xp.mean(data, axis=axes)),
                "var": backend.to_host(xp.var(data, axis=axes)),
                "range": backend.to_host(xp.max(data, axis=axes) - xp.min(data, axis=axes)),
            }
            return _original(x)

        object.__setattr__(layer, "forward", recording_forward)  # shadows the class's forward
    try:
        yield records
    finally:
        for _, layer in layers:
            layer.__dict__.pop("forward", None)


def norm_input_statistics(model, x) -> dict:
    """Per-layer input statistics of the norm layers for the batch x (N, C, H, W), in the model's current mode
    (running statistics are never updated, even in training mode)."""
    with no_grad(), freeze_running_stats(), record_norm_inputs(model) as records:
        model(x)
    return dict(records)


def _running(layer):
    mean = backend.to_host(layer.running_mean)
    if isinstance(layer, BatchNorm2d):
        return mean, backend.to_host(layer.running_var), "var"
    return mean, backend.to_host(layer.running_range), "range"


def statistics_shift(model, x_clean, x_adversarial) -> list:
    """For each norm layer: how far clean and adversarial input statistics are from the running ones.

    Returns a list of dicts (one per layer, in forward order) with keys ``layer``,
    ``kind`` ("var" or "range"), ``clean_mean_shift``, ``adversarial_mean_shift``,
    ``clean_scale_ratio``, ``adversarial_scale_ratio`` (Python floats).
    The model is evaluated in eval mode; its state is unchanged.
    """
    was_training = model.training
    model.eval()
    try:
        clean = norm_input_statistics(model, x_clean)
        adversarial = norm_input_statistics(model, x_adversarial)
    finally:
        model.train(was_training)
    layers = dict(model.named_modules())
    rows = []
    for name in clean:
        running_mean, running_scale, kind = _running(layers[name])
        std = np.sqrt(np.maximum(running_scale if kind == "var" else running_scale**2, 1e-12))
        row = {"layer": name, "kind": kind}
        for label, stats in (("clean", clean[name]), ("adversarial", adversarial[name])):
            row[f"{label}_mean_shift"] = float(np.mean(np.abs(stats["mean"] - running_mean) / std))
            row[f"{label}_scale_ratio"] = float(np.mean(stats[kind] / np.maximum(running_scale, 1e-12)))
        rows.append(row)
    return rows
