"""The authors' CIFAR/MNIST ResNet in their module layout and key names, for synthetic checkpoints.

Needs ``torch``.  Written from their equations (PAPER.md, "Their checkpoints" and "Variants";
docs/pytorch_bridge.md), not copied from their code (https://github.com/awaisrauf/RobustNorm): a ResNet
``conv1, bn1, layer1-3 (conv1, bn1, conv2, bn2, downsample.0/1), avgpool, fc`` whose norm layers are
BatchNorm2d subclasses (their RobustNorm keeps its running range in ``running_var``), taking inputs
standardised as their scripts standardise them.

:func:`synthetic_checkpoint` gives it random weights and running statistics and saves it as their
``train_*.py`` save it (``torch.save`` of a dict with ``state_dict`` under ``nn.DataParallel``'s
``module.`` keys, the epoch and the optimizer's state).  The tests of :mod:`minirn.bridge` convert such
files and compare logits; ``benchmarks/make_authors_checkpoint.py`` writes one for the worked path of
docs/pytorch_bridge.md.  **Synthetic**: random weights, so a model converted from one classifies at chance.
"""
from __future__ import annotations

import torch

__all__ = ["THEIR_NORMS", "TheirBatchNorm", "TheirNoNorm", "TheirResNet", "TheirRobustNorm", "randomize",
           "synthetic_checkpoint"]


class TheirBatchNorm(torch.nn.BatchNorm2d):
    """y = γ (x - μ)/(sqrt(σ²) + ε) + β with the unbiased batch variance; eval: tracked or batch μ, σ²."""

    def __init__(self, channels, tracked_mean=True, tracked_var=True):
        super().__init__(channels)
        self.tracked_mean, self.tracked_var = tracked_mean, tracked_var

    def forward(self, x):
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=True)
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
        else:
            mean = self.running_mean if self.tracked_mean else mean
            var = self.running_var if self.tracked_var else var
        view = (1, -1, 1, 1)
        return self.weight.view(view) * (x - mean.view(view)) / (var.view(view).sqrt() + self.eps) + self.bias.view(view)


class TheirRobustNorm(torch.nn.BatchNorm2d):
    """y = γ (x - μ)/(r^p + ε) + β, r = max - min over (N, H, W); the running range lives in running_var."""

    def __init__(self, channels, tracked_mean=True, tracked_range=True, power=0.2):
        super().__init__(channels)
        self.tracked_mean, self.tracked_range, self.power = tracked_mean, tracked_range, power

    def forward(self, x):
        mean = x.mean(dim=(0, 2, 3))
        value_range = x.amax(dim=(0, 2, 3)) - x.amin(dim=(0, 2, 3))
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * value_range)
        else:
            mean = self.running_mean if self.tracked_mean else mean
            value_range = self.running_var if self.tracked_range else value_range
        view = (1, -1, 1, 1)
        return (self.weight.view(view) * (x - mean.view(view)) / (value_range.view(view) ** self.power + self.eps)
                + self.bias.view(view))


class TheirNoNorm(torch.nn.BatchNorm2d):
    """The identity, still carrying BatchNorm's (unused) parameters and buffers."""

    def forward(self, x):
        return x


#: Their --norm names -> a factory of their layer.
THEIR_NORMS = {
    "NoBN": lambda c, p: TheirNoNorm(c),
    "BN": lambda c, p: TheirBatchNorm(c, True, True),
    "BNwoT": lambda c, p: TheirBatchNorm(c, False, False),
    "BNM": lambda c, p: TheirBatchNorm(c, True, False),
    "RNT": lambda c, p: TheirRobustNorm(c, True, True, p),
    "RN": lambda c, p: TheirRobustNorm(c, False, False, p),
    "RNM": lambda c, p: TheirRobustNorm(c, True, False, p),
}


class TheirBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride, norm, p):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = THEIR_NORMS[norm](c_out, p)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = THEIR_NORMS[norm](c_out, p)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                  THEIR_NORMS[norm](c_out, p))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TheirResNet(torch.nn.Module):
    """Their CIFAR ResNet (``ResNet``) and MNIST ResNet (``ResNet_MNIST``, in_channels 1): depth 6n+2."""

    def __init__(self, depth, norm, in_channels, p=0.2, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = torch.nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = THEIR_NORMS[norm](16, p)
        channels = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(n):
                blocks.append(TheirBlock(channels, width, 2 if stage > 1 and i == 0 else 1, norm, p))
                channels = width
            setattr(self, f"layer{stage}", torch.nn.Sequential(*blocks))
        self.avgpool = torch.nn.AvgPool2d(8)  # theirs: global on the 8x8 maps of 32x32 inputs
        self.fc = torch.nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(self.avgpool(x).flatten(1))


def randomize(network, seed):
    """Random weights (He-normal convolutions, as they initialise) and random running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var"):  # a variance, or their RobustNorm's running range
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 + 0.5)
            elif tensor.ndim == 4:
                fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_out) ** 0.5)
            elif tensor.ndim == 2:  # the classifier
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor.shape[1] ** 0.5)
            else:  # γ around 1; β, the running means and the classifier's bias around 0
                is_scale = name.endswith(".weight")
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3 + (1 if is_scale else 0))
    return network


def synthetic_checkpoint(path, model="resnet20", norm="RNT", p=0.2, seed=0):
    """Their ``model`` ("resnet8": the MNIST ResNet, one channel; "resnetN": the CIFAR one, three) with
    ``norm`` (their --norm), random weights and statistics (seeded), saved at ``path`` as their
    train_*.py save it; returns the network in eval mode.  The dict's ``"synthetic"`` entry says so."""
    network = TheirResNet(int(model[len("resnet"):]), norm, 1 if model == "resnet8" else 3, p)
    parallel = torch.nn.DataParallel(network)  # on a CPU it only wraps: the keys get 'module.'
    optimizer = torch.optim.SGD(parallel.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
    parallel.train()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, network.conv1.in_channels, 32, 32, generator=generator)
    torch.nn.functional.cross_entropy(parallel(x), torch.arange(4)).backward()
    optimizer.step()  # the optimizer's state now holds momentum buffers, as a real checkpoint's does
    randomize(network, seed)
    torch.save({"epoch": 3, "state_dict": parallel.state_dict(), "acc": 51.0, "best_acc": 52.0,
                "optimizer": optimizer.state_dict(), "synthetic": "random weights, not a trained model"}, path)
    return network.eval()
