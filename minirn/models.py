"""The paper's networks: a small CNN for MNIST and the CIFAR ResNet (He et al. 2016).

``norm`` picks the normalization after every convolution:

======== =====================================================
"none"   no normalization (:class:`~minirn.nn.Identity`); convolutions get a bias
"bn"     :class:`~minirn.nn.BatchNorm2d`
"rn"     :class:`~minirn.nn.RobustNorm2d` with power ``p``
"gn"     :class:`~minirn.nn.GroupNorm` with groups of 4 channels (see :func:`make_norm`)
"ln"     LayerNorm over (C, H, W): ``GroupNorm(1, C)``
======== =====================================================

or a callable ``factory(num_channels) -> Module``.
"""
from __future__ import annotations

from minirn import nn
from minirn.nn import functional as F

NORMS = ("none", "bn", "rn", "gn", "ln")


def make_norm(norm, channels: int, p: float = 0.2) -> nn.Module:
    """The normalization layer named ``norm`` for ``channels`` channels (see the module docstring).

    GroupNorm uses groups of 4 channels where possible (``channels // 4`` groups; 16 channels -> 4 groups),
    a common choice for these small widths.
    """
    if callable(norm):
        return norm(channels)
    if norm == "none":
        return nn.Identity()
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "rn":
        return nn.RobustNorm2d(channels, p=p)
    if norm == "gn":
        return nn.GroupNorm(max(1, channels // 4) if channels % 4 == 0 else 1, channels)
    if norm == "ln":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)} or a factory function")


def _check_norm(norm):
    if not callable(norm) and norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)} or a factory function")


def small_cnn(norm="bn", p=0.2, in_channels=1, num_classes=10) -> nn.Sequential:
    """The MNIST workhorse of the notebooks and the benchmark.

    conv3x3(in→32) → norm → ReLU → conv3x3(32→64, stride 2) → norm → ReLU →
    conv3x3(64→64, stride 2) → norm → ReLU → global average pool → Linear(64→classes).
    Convolutions have a bias only when ``norm="none"``.  x: (N, in_channels, H, W) -> logits (N, num_classes).
    """
    _check_norm(norm)
    bias = norm == "none"
    layers = []
    for c_in, c_out, stride in ((in_channels, 32, 1), (32, 64, 2), (64, 64, 2)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias), make_norm(norm, c_out, p), nn.ReLU()]
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(64, num_classes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection: :math:`y = \\mathrm{relu}(F(x) + S(x))`.

    F = conv → norm → ReLU → conv → norm; the shortcut S is the identity, or a
    1x1 convolution + norm when the stride or the width changes (He et al.'s option B).
    """

    def __init__(self, in_channels, out_channels, stride=1, norm="bn", p=0.2):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = make_norm(norm, out_channels, p)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=bias)
        self.norm2 = make_norm(norm, out_channels, p)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), make_norm(norm, out_channels, p)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2: a stem, three stages of n BasicBlocks (width, 2·width, 4·width
    channels; the 2nd and 3rd start with stride 2), global average pooling and a linear classifier.
    x: (N, in_channels, H, W) -> logits (N, num_classes)."""

    def __init__(self, depth=20, norm="bn", p=0.2, in_channels=3, num_classes=10, width=16):
        super().__init__()
        _check_norm(norm)
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=norm == "none")
        self.stem_norm = make_norm(norm, width, p)
        blocks, channels = [], width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, norm, p))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.relu(self.stem_norm(self.stem(x)))
        return self.fc(self.pool(self.blocks(out)))


def resnet(depth=20, norm="bn", p=0.2, in_channels=3, num_classes=10, width=16) -> ResNet:
    """The CIFAR ResNet (ResNet-20 by default, the authors' main CIFAR model)."""
    return ResNet(depth, norm, p, in_channels, num_classes, width)
