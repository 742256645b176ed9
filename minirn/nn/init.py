"""Weight initialisation, matching PyTorch's defaults so weights compare one to one.

PyTorch initialises ``Conv2d`` and ``Linear`` weights with
``kaiming_uniform_(w, a=sqrt(5))``, which works out to
:math:`W \\sim U(-b, b)` with :math:`b = 1/\\sqrt{\\text{fan\\_in}}`, and biases with
the same bound.  Random numbers come from the global generator
(:func:`minirn.manual_seed`) unless a generator is passed.
"""
from __future__ import annotations

import math

from minirn import backend


def fan_in(shape) -> int:
    """Inputs feeding one output unit: ``in`` for (out, in), ``in*kh*kw`` for (out, in, kh, kw)."""
    n = 1
    for size in shape[1:]:
        n *= size
    return n


def kaiming_uniform(shape, a=5.0**0.5, generator=None, dtype="float32", device="cpu"):
    """:math:`U(-b, b)` with :math:`b = \\sqrt{6 / ((1 + a^2)\\,\\text{fan\\_in})}` (PyTorch's default for a = √5)."""
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan_in(shape)))
    return backend.uniform(backend.rng(generator), shape, -bound, bound, dtype, device)


def bias_uniform(shape, weight_shape, generator=None, dtype="float32", device="cpu"):
    """PyTorch's default bias: :math:`U(-1/\\sqrt{\\text{fan\\_in}}, 1/\\sqrt{\\text{fan\\_in}})`."""
    bound = 1.0 / math.sqrt(fan_in(weight_shape))
    return backend.uniform(backend.rng(generator), shape, -bound, bound, dtype, device)


def fan_out(shape) -> int:
    """Outputs one input unit feeds: ``out`` for (out, in), ``out*kh*kw`` for (out, in, kh, kw)."""
    n = shape[0]
    for size in shape[2:]:
        n *= size
    return n


def kaiming_normal_fan_out(shape, generator=None, dtype="float32", device="cpu"):
    """He-normal in fan-out mode: :math:`W \\sim \\mathcal{N}(0, 2/\\text{fan\\_out})`.

    PyTorch's ``kaiming_normal_(w, mode="fan_out", nonlinearity="relu")``, the authors' choice for
    every convolution: it keeps the variance of the *gradients* constant through ReLU layers
    (He et al. 2015), which matters most for a network without normalization.
    """
    std = math.sqrt(2.0 / fan_out(shape))
    return backend.normal(backend.rng(generator), shape, 0.0, std, dtype, device)
