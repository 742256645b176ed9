"""Layers that own parameters (Conv2d, Linear), thin wrappers over parameter-free ops, and Normalize."""
from __future__ import annotations

import math

from minirn import backend
from minirn.autograd.tensor import Tensor
from minirn.nn import functional as F
from minirn.nn import init
from minirn.nn.module import Module, Parameter


def check_positive_int(name, value):
    """Raise ``ValueError`` unless ``value`` is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Conv2d(Module):
    """2-D convolution: x (N, C_in, H, W) -> (N, C_out, H', W'); see :func:`minirn.nn.functional.conv2d`.

    weight: (C_out, C_in, kh, kw); bias: (C_out,).  PyTorch's layout and default initialisation.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, generator=None):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(init.kaiming_uniform(shape, generator=generator))
        self.bias = Parameter(init.bias_uniform((out_channels,), shape, generator=generator)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class Linear(Module):
    """:math:`y = x W^\\top + b`: x (N, in_features) -> (N, out_features); weight (out, in), bias (out,)."""

    def __init__(self, in_features, out_features, bias=True, generator=None):
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        shape = (out_features, in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, generator=generator))
        self.bias = Parameter(init.bias_uniform((out_features,), shape, generator=generator)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """:math:`y = \\max(x, 0)`."""

    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), keeping the batch axis (``start_dim=1``)."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim)


class _Pool2d(Module):
    """What the pooling layers share: kernel size, stride (default: the kernel size) and padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over (kernel_size) windows every ``stride`` (default: the kernel size) pixels."""

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over (kernel_size) windows every ``stride`` (default: the kernel size) pixels."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean over each feature map (``AdaptiveAvgPool2d(1)`` + flatten)."""

    def forward(self, x):
        return F.mean(x, axis=(2, 3))


class AdaptiveAvgPool2d(Module):
    """PyTorch's ``AdaptiveAvgPool2d``; only ``output_size=1`` is supported: (N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self, output_size=1):
        super().__init__()
        if output_size not in (1, (1, 1)):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 is supported, got {output_size!r}")

    def forward(self, x):
        return F.mean(x, axis=(2, 3), keepdims=True)


class Normalize(Module):
    r"""Input standardisation as a layer: ``torchvision.transforms.Normalize(mean, std)`` inside the model.

    .. math::
        y_{n,c,h,w} = \frac{x_{n,c,h,w} - m_c}{s_c}, \qquad
        \frac{\partial L}{\partial x_{n,c,h,w}} = \frac{1}{s_c}\,\frac{\partial L}{\partial y_{n,c,h,w}}

    x: (N, C, H, W) pixels in [0, 1] -> (N, C, H, W); mean m, std s: one number per channel (C of each).
    A network trained on standardised images (the authors' scripts feed (x - m)/s) starts with this
    layer, so it takes pixels and an attack's ε and box [0, 1] stay in pixel units: a budget ε in
    pixels is ε/s_c in the standardised units of channel c.

    m and s are constants of the model, not weights: they are not in ``state_dict()`` (the model's
    description records them, :func:`minirn.bridge.save_weights`), and each call builds them in x's
    dtype and on x's device.  The gradient is the chain rule through the subtraction and the division.
    """

    def __init__(self, mean, std):
        super().__init__()
        mean, std = tuple(mean), tuple(std)
        numbers = [v for v in mean + std if not isinstance(v, bool) and isinstance(v, (int, float))]
        if not mean or len(mean) != len(std) or len(numbers) != 2 * len(mean):
            raise ValueError(f"Normalize: mean and std must be equally long lists of numbers, got {mean!r} and {std!r}")
        if not all(math.isfinite(v) for v in numbers) or not all(s > 0 for s in std):
            raise ValueError(f"Normalize: mean must be finite and std positive and finite, got {mean!r} and {std!r}")
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize({len(self.mean)} channels) expects input (N, {len(self.mean)}, H, W), "
                             f"got shape {tuple(x.shape)}")
        view = (1, len(self.mean), 1, 1)
        x = x if isinstance(x, Tensor) else Tensor(x)  # an array (a batch of pixels) as well as a Tensor
        xp, device, dtype = backend.array_namespace(x.data), backend.device_of(x.data), x.data.dtype
        mean = xp.reshape(backend.to_device(self.mean, device, dtype), view)  # m, in x's dtype (NEP 50)
        std = xp.reshape(backend.to_device(self.std, device, dtype), view)    # s
        return (x - mean) / std                                                # y = (x - m) / s

    def extra_repr(self):
        return f"mean={list(self.mean)}, std={list(self.std)}"
