"""Finding 1 of the paper: adversarial inputs shift the statistics that BatchNorm normalises with.

:func:`record_norm_inputs` records, for every BatchNorm2d/RobustNorm2d layer,
the per-channel mean and variance of the layer's *input* on one batch.
:func:`statistics_shift` compares clean and adversarial batches with the
running estimates the layer uses at inference:

* mean shift :math:`\\frac1C\\sum_c |\\mu_c - \\bar\\mu_c| / \\sqrt{\\bar\\sigma^2_c}`
  (in units of the running standard deviation);
* variance ratio :math:`\\frac1C\\sum_c \\sigma^2_c / \\bar\\sigma^2_c`.

For a RobustNorm layer the running "variance" is not tracked; its range is
compared instead (batch range over running range), so its numbers are in other
units than BatchNorm's and the two cannot be compared.

:func:`statistics_shift_with_control` is Finding 1 with its control: how far
an attack moves each layer's batch statistics from the clean batch's, next to
how far random ±ε noise of the same L∞ norm (:func:`random_sign_noise`) moves
them, in one unit for BatchNorm and RobustNorm (the clean batch's standard
deviation).
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


STD_FLOOR = 1e-5  # added to the variance in the std unit: BatchNorm's and RobustNorm's default ε
SHIFT_KEYS = ("mean_shift", "std_change", "own_scale_change")


def random_sign_noise(x, eps, seed, clip=(0.0, 1.0)):
    """The control perturbation: :math:`\\mathrm{clip}(x + \\epsilon\\, s)`, :math:`s_i = \\pm 1` with equal odds.

    Every pixel moves by exactly ε before clipping (a corner of the L∞ ball, like
    FGSM's), in a random direction.  x: (N, C, H, W) array; seed: int, list of ints or
    ``numpy.random.Generator``.  Returns an array of x's kind, shape and dtype.
    """
    xp = backend.array_namespace(x)
    dtype = backend.dtype_name(x.dtype)
    signs = (backend.rng(seed).integers(0, 2, size=tuple(x.shape)) * 2 - 1).astype(dtype)
    low, high = clip
    return xp.clip(x + eps * backend.to_device(signs, backend.device_of(x)), low, high)


def _own_scale(layer, stats):
    """The scale the layer divides by, from one batch's statistics (C,): BatchNorm
    :math:`\\sqrt{\\sigma^2_B + \\epsilon}`, RobustNorm :math:`r_B^{\\,p} + \\epsilon`."""
    if isinstance(layer, BatchNorm2d):
        return np.sqrt(stats["var"] + layer.eps)
    return stats["range"] ** layer.p + layer.eps


def statistics_shift_with_control(model, x, x_adversarial, eps, seed=0, clip=(0.0, 1.0)) -> dict:
    """Finding 1 with its control: the shift of every norm layer's batch statistics under the attack and under noise.

    x, x_adversarial: (N, C, H, W) clean batch and its attacked version; the control is
    :func:`random_sign_noise` (x, eps, seed, clip), random ±ε noise with the attack's L∞ norm.
    For each BatchNorm2d/RobustNorm2d layer, with :math:`\\mu_c, \\sigma^2_c` the clean batch's
    per-channel mean and (biased) variance of the layer's input and primes for the perturbed batch:

    * ``mean_shift`` :math:`|\\mu'_c - \\mu_c| / \\sqrt{\\sigma^2_c + 10^{-5}}`;
    * ``std_change`` :math:`|\\sqrt{\\sigma'^2_c + 10^{-5}} / \\sqrt{\\sigma^2_c + 10^{-5}} - 1|`;
    * ``own_scale_change`` :math:`|s'_c / s_c - 1|` for the scale s the layer divides by when it
      uses batch statistics: BatchNorm :math:`\\sqrt{\\sigma^2 + \\epsilon}`, RobustNorm
      :math:`r^{\\,p} + \\epsilon` (r = max − min).

    Units: ``mean_shift`` and ``std_change`` are in the clean batch's standard deviation for
    *both* norms, so a BatchNorm row and a RobustNorm row can be compared (two layers that receive
    the same input report the same numbers).  RobustNorm's own statistic is the range, BatchNorm's
    the std: a shift in range units cannot be compared to one in std units (a range is several
    stds and breaks down on one outlier), and ``own_scale_change`` is what each layer feels
    (RobustNorm's power p < 1 shrinks a relative change of the range), not a common unit.
    The floor :math:`10^{-5}` keeps a constant channel finite.

    Statistics are those of the batches reaching each layer with the model in eval mode (later
    layers see inputs normalised as at inference); the model's mode and state are unchanged.
    Returns plain Python types: ``{"eps", "layers", "summary"}`` with ``layers`` a list (forward
    order) of ``{"layer", "kind" ("BatchNorm2d"/"RobustNorm2d"), "attack", "noise"}``, where
    ``attack``/``noise`` hold each of ``mean_shift``, ``std_change``, ``own_scale_change`` as the
    mean over channels and ``per_channel`` lists of them; ``summary["attack"|"noise"][key]`` is the
    mean over layers of the layers' channel means.
    """
    x = x.data if isinstance(x, Tensor) else x
    x_adversarial = x_adversarial.data if isinstance(x_adversarial, Tensor) else x_adversarial
    x_noise = random_sign_noise(x, eps, seed, clip)
    was_training = model.training
    model.eval()
    try:
        clean = norm_input_statistics(model, x)
        perturbed = {"attack": norm_input_statistics(model, x_adversarial),
                     "noise": norm_input_statistics(model, x_noise)}
    finally:
        model.train(was_training)
    if not clean:
        raise ValueError("statistics_shift_with_control: the model has no BatchNorm2d/RobustNorm2d layer")
    layers = dict(model.named_modules())
    rows = []
    for name, clean_stats in clean.items():
        layer = layers[name]
        clean_stats = {k: v.astype(np.float64) for k, v in clean_stats.items()}
        clean_std = np.sqrt(clean_stats["var"] + STD_FLOOR)
        clean_scale = _own_scale(layer, clean_stats)
        row = {"layer": name, "kind": type(layer).__name__}
        for source, records in perturbed.items():
            stats = {k: v.astype(np.float64) for k, v in records[name].items()}
            per_channel = {
                "mean_shift": np.abs(stats["mean"] - clean_stats["mean"]) / clean_std,
                "std_change": np.abs(np.sqrt(stats["var"] + STD_FLOOR) / clean_std - 1.0),
                "own_scale_change": np.abs(_own_scale(layer, stats) / clean_scale - 1.0),
            }
            row[source] = {key: float(np.mean(per_channel[key])) for key in SHIFT_KEYS}
            row[source]["per_channel"] = {key: per_channel[key].tolist() for key in SHIFT_KEYS}
        rows.append(row)
    summary = {source: {key: float(np.mean([row[source][key] for row in rows])) for key in SHIFT_KEYS}
               for source in perturbed}
    return {"eps": float(eps), "layers": rows, "summary": summary}
