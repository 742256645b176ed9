"""PyTorch twins of minirn's networks, for the benchmark and the oracle tests (needs ``torch``).

Not part of minirn's math: PyTorch has no RobustNorm, so :class:`TorchRobustNorm2d`
writes the paper's equation with torch operations (autograd differentiates it).
"""
from __future__ import annotations

import torch
from torch import nn


class TorchRobustNorm2d(nn.Module):
    """:math:`y = \\gamma (x-\\mu_B)/(r_B^{\\,p}+\\epsilon) + \\beta` in training (batch mean and range)."""

    def __init__(self, channels, p=0.2, eps=1e-5, momentum=0.1):
        super().__init__()
        self.p, self.eps, self.momentum = p, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_range", torch.ones(channels))

    def forward(self, x):
        shape = (1, -1, 1, 1)
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            value_range = x.amax(dim=(0, 2, 3)) - x.amin(dim=(0, 2, 3))
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_range.mul_(1 - self.momentum).add_(self.momentum * value_range)
        else:
            mean, value_range = self.running_mean, self.running_range
        x_hat = (x - mean.view(shape)) / (value_range.view(shape) ** self.p + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)


def _norm(norm, channels):
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "rn":
        return TorchRobustNorm2d(channels)
    return nn.Identity()


def small_cnn(norm="bn", in_channels=1, num_classes=10):
    bias = norm == "none"
    layers = []
    for c_in, c_out, stride in ((in_channels, 32, 1), (32, 64, 2), (64, 64, 2)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias), _norm(norm, c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, norm):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.norm2 = _norm(norm, c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias), _norm(norm, c_out))

    def forward(self, x):
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depth=20, norm="bn", in_channels=3, num_classes=10, width=16):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none")
        self.stem_norm = _norm(norm, width)
        blocks, channels = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(channels, c_out, 2 if stage > 0 and i == 0 else 1, norm))
                channels = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = self.blocks(torch.relu(self.stem_norm(self.stem(x))))
        return self.fc(out.mean(dim=(2, 3)))


def torch_model(arch, norm, in_channels):
    """The PyTorch twin of ``minirn.models.small_cnn`` (arch "small_cnn") or ``resnet(20)`` ("resnet20")."""
    if arch == "small_cnn":
        return small_cnn(norm, in_channels)
    return ResNet(20, norm, in_channels)
