"""PyTorch twins of minirn's RobustNorm and networks: the benchmark's opponents and the tests' oracles.

Needs ``torch``, which minirn does not: the benchmark imports this module only
when PyTorch is installed, the tests only after ``pytest.importorskip("torch")``.

Not part of minirn's math.  PyTorch has no RobustNorm, so :func:`robust_norm`
writes the paper's equation with torch operations and torch's autograd
differentiates it (its ``amax``/``amin`` split the gradient equally between
ties, like minirn).  The networks use PyTorch's own Conv2d, BatchNorm2d and
Linear, with minirn's attribute names and layer order, so that a minirn state
dict loads into its twin (:func:`load_minirn_state`) and a twin's loads into
minirn once its BatchNorm ``num_batches_tracked`` entries are dropped.

The twins:

* :func:`robust_norm` of :func:`minirn.nn.functional.robust_norm`;
* :class:`RobustNorm2d` of :class:`minirn.nn.RobustNorm2d` (with ``eval_mean`` / ``eval_scale``);
* :func:`make_norm` of :func:`minirn.models.make_norm`, for the short names;
* :func:`small_cnn` of :func:`minirn.models.small_cnn`, and :func:`conv_net` of any such
  conv → norm → ReLU stack (the attack tests' tiny CNN);
* :class:`ResNet` and :class:`BasicBlock` of :class:`minirn.models.ResNet` and :class:`~minirn.models.BasicBlock`.
"""
from __future__ import annotations

import torch
from torch import nn

from minirn import backend


def robust_norm(x, weight, bias, mean=None, value_range=None, p=0.2, eps=1e-5):
    """:math:`y = \\gamma (x-\\mu)/(r^{\\,p}+\\epsilon) + \\beta` for x (N, C, H, W) or (N, C).

    mean, value_range: (C,) tensors, or None for the batch's :math:`\\mu_B` and
    :math:`r_B = \\max x - \\min x` over (N, H, W) (over N for (N, C)); weight, bias: γ, β (C,).
    """
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    view = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(dim=axes) if mean is None else mean
    r = x.amax(dim=axes) - x.amin(dim=axes) if value_range is None else value_range
    x_hat = (x - mu.reshape(view)) / (r.reshape(view) ** p + eps)
    return weight.reshape(view) * x_hat + bias.reshape(view)


class RobustNorm2d(nn.Module):
    """The twin of :class:`minirn.nn.RobustNorm2d`: same parameters, buffers, running update and eval switch.

    Training: batch mean and range, and ``running = (1 - momentum) running + momentum batch``.
    Eval: ``eval_mean`` and ``eval_scale``, each ``"running"`` (default) or ``"batch"``.
    """

    def __init__(self, num_features, p=0.2, eps=1e-5, momentum=0.1):
        super().__init__()
        self.p, self.eps, self.momentum = p, eps, momentum
        self.eval_mean = self.eval_scale = "running"
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_range", torch.ones(num_features))

    def forward(self, x):
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        batch_mean = self.training or self.eval_mean == "batch"
        batch_scale = self.training or self.eval_scale == "batch"
        mean = x.mean(dim=axes) if batch_mean else self.running_mean
        value_range = x.amax(dim=axes) - x.amin(dim=axes) if batch_scale else self.running_range
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_range.mul_(1 - self.momentum).add_(self.momentum * value_range)
        return robust_norm(x, self.weight, self.bias, mean, value_range, self.p, self.eps)


class GlobalAvgPool2d(nn.Module):
    """(N, C, H, W) -> (N, C), the mean over (H, W): minirn's GlobalAvgPool2d, one layer like it."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def make_norm(norm, num_channels, p=0.2):
    """The twin of ``minirn.models.make_norm(norm, num_channels, p)`` for the short names of minirn.models.NORMS."""
    if norm == "none":
        return nn.Identity()
    if norm == "bn":
        return nn.BatchNorm2d(num_channels)
    if norm == "rn":
        return RobustNorm2d(num_channels, p=p)
    if norm == "gn":
        return nn.GroupNorm(max(1, num_channels // 4) if num_channels % 4 == 0 else 1, num_channels)
    if norm == "ln":
        return nn.GroupNorm(1, num_channels)
    raise ValueError(f"unknown norm {norm!r}")


#: minirn.models.small_cnn's convolutions: (output channels, stride) of each conv3x3.
SMALL_CNN_LAYERS = ((32, 1), (64, 2), (64, 2))


def conv_net(layers, norm="bn", in_channels=1, num_classes=10, p=0.2):
    """conv3x3 → norm → ReLU for each (channels, stride) of ``layers``, global average pool, Linear.

    Convolutions have a bias only with ``norm="none"``, as in minirn.models.
    """
    bias = norm == "none"
    modules, c_in = [], in_channels
    for c_out, stride in layers:
        modules += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias), make_norm(norm, c_out, p), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*modules, GlobalAvgPool2d(), nn.Linear(c_in, num_classes))


def small_cnn(norm="bn", in_channels=1, num_classes=10, p=0.2):
    """The twin of :func:`minirn.models.small_cnn`."""
    return conv_net(SMALL_CNN_LAYERS, norm, in_channels, num_classes, p)


class BasicBlock(nn.Module):
    """The twin of :class:`minirn.models.BasicBlock`: relu(norm(conv(relu(norm(conv x)))) + shortcut x)."""

    def __init__(self, c_in, c_out, stride, norm="bn", p=0.2):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.norm1 = make_norm(norm, c_out, p)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.norm2 = make_norm(norm, c_out, p)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias), make_norm(norm, c_out, p))

    def forward(self, x):
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """The twin of :class:`minirn.models.ResNet` (depth 6n+2, option-B shortcuts)."""

    def __init__(self, depth=20, norm="bn", in_channels=3, num_classes=10, width=16, p=0.2):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none")
        self.stem_norm = make_norm(norm, width, p)
        blocks, channels = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(channels, c_out, 2 if stage > 0 and i == 0 else 1, norm, p))
                channels = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = self.blocks(torch.relu(self.stem_norm(self.stem(x))))
        return self.fc(self.pool(out))


def torch_model(arch, norm, in_channels):
    """The benchmark's twin of ``minirn.models.small_cnn`` (arch "small_cnn") or ``resnet(20)`` ("resnet20")."""
    if arch == "small_cnn":
        return small_cnn(norm, in_channels)
    return ResNet(20, norm, in_channels)


def load_minirn_state(twin, module, strict=False):
    """Copy ``module``'s (a minirn Module's) parameters and buffers into its ``twin``, by name, in the twin's dtypes.

    strict=False by default: the twin's BatchNorm ``num_batches_tracked`` has no minirn counterpart.
    Returns ``twin``.
    """
    own = twin.state_dict()
    state = {key: torch.as_tensor(backend.to_host(value), dtype=own[key].dtype) for key, value in module.state_dict().items()}
    twin.load_state_dict(state, strict=strict)
    return twin
