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
* :class:`AuthorsBatchNorm2d` of ``minirn.nn.BatchNorm2d(formula="authors")`` (with ``eval_mean`` /
  ``eval_scale``); ``formula="standard"`` is PyTorch's own BatchNorm2d;
* :class:`Normalize` of :class:`minirn.nn.Normalize`, the input standardisation;
* :func:`make_norm` of :func:`minirn.models.make_norm`, for the short names;
* :func:`small_cnn` of :func:`minirn.models.small_cnn`, and :func:`conv_net` of any such
  conv → norm → ReLU stack (the attack tests' tiny CNN);
* :class:`ResNet` and :class:`BasicBlock` of :class:`minirn.models.ResNet` and :class:`~minirn.models.BasicBlock`;
* :func:`from_description`: the twin of the model a ``.safetensors`` file of :func:`minirn.save_weights`
  describes, with its input normalisation, BatchNorm formula and eval statistics.
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


class AuthorsBatchNorm2d(nn.BatchNorm2d):
    """The twin of ``minirn.nn.BatchNorm2d(formula="authors")``: y = γ (x - μ)/(sqrt(σ²) + ε) + β.

    Training: batch mean and the *unbiased* batch variance σ², and ``running = (1 - momentum) running +
    momentum batch`` for both (as PyTorch's BatchNorm2d tracks them).  Eval: ``eval_mean`` and
    ``eval_scale``, each ``"running"`` (default) or ``"batch"``.  A subclass of BatchNorm2d only for its
    parameters and buffers (``num_batches_tracked`` included, left at 0), so the state dict is PyTorch's.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.eval_mean = self.eval_scale = "running"

    def forward(self, x):
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        view = (1, -1) + (1,) * (x.ndim - 2)
        batch_mean = self.training or self.eval_mean == "batch"
        batch_scale = self.training or self.eval_scale == "batch"
        mean = x.mean(dim=axes) if batch_mean else self.running_mean
        var = x.var(dim=axes, correction=1) if batch_scale else self.running_var
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
        x_hat = (x - mean.reshape(view)) / (var.reshape(view).sqrt() + self.eps)
        return self.weight.reshape(view) * x_hat + self.bias.reshape(view)


class Normalize(nn.Module):
    """The twin of :class:`minirn.nn.Normalize`: (x - mean)/std per channel, constants outside the state dict."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def input_layer(input_normalization):
    """The twin of :func:`minirn.models.input_layer`: Normalize, or the identity for None."""
    if input_normalization is None:
        return nn.Identity()
    return Normalize(input_normalization["mean"], input_normalization["std"])


class GlobalAvgPool2d(nn.Module):
    """(N, C, H, W) -> (N, C), the mean over (H, W): minirn's GlobalAvgPool2d, one layer like it."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def make_norm(norm, num_channels, p=0.2, formula="standard"):
    """The twin of ``minirn.models.make_norm(norm, num_channels, p)`` for the short names of minirn.models.NORMS;
    formula: BatchNorm's, "standard" (PyTorch's BatchNorm2d) or "authors" (:class:`AuthorsBatchNorm2d`)."""
    if norm == "none":
        return nn.Identity()
    if norm == "bn":
        return AuthorsBatchNorm2d(num_channels) if formula == "authors" else nn.BatchNorm2d(num_channels)
    if norm == "rn":
        return RobustNorm2d(num_channels, p=p)
    if norm == "gn":
        return nn.GroupNorm(max(1, num_channels // 4) if num_channels % 4 == 0 else 1, num_channels)
    if norm == "ln":
        return nn.GroupNorm(1, num_channels)
    raise ValueError(f"unknown norm {norm!r}")


#: minirn.models.small_cnn's convolutions: (output channels, stride) of each conv3x3.
SMALL_CNN_LAYERS = ((32, 1), (64, 2), (64, 2))


def conv_net(layers, norm="bn", in_channels=1, num_classes=10, p=0.2, formula="standard", input_normalization=None):
    """conv3x3 → norm → ReLU for each (channels, stride) of ``layers``, global average pool, Linear;
    with ``input_normalization``, a :class:`Normalize` first.

    Convolutions have a bias only with ``norm="none"``, as in minirn.models.
    """
    bias = norm == "none"
    modules, c_in = [] if input_normalization is None else [input_layer(input_normalization)], in_channels
    for c_out, stride in layers:
        modules += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias), make_norm(norm, c_out, p, formula), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*modules, GlobalAvgPool2d(), nn.Linear(c_in, num_classes))


def small_cnn(norm="bn", in_channels=1, num_classes=10, p=0.2, formula="standard", input_normalization=None):
    """The twin of :func:`minirn.models.small_cnn`."""
    return conv_net(SMALL_CNN_LAYERS, norm, in_channels, num_classes, p, formula, input_normalization)


class BasicBlock(nn.Module):
    """The twin of :class:`minirn.models.BasicBlock`: relu(norm(conv(relu(norm(conv x)))) + shortcut x)."""

    def __init__(self, c_in, c_out, stride, norm="bn", p=0.2, formula="standard"):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.norm1 = make_norm(norm, c_out, p, formula)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.norm2 = make_norm(norm, c_out, p, formula)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=bias),
                                          make_norm(norm, c_out, p, formula))

    def forward(self, x):
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """The twin of :class:`minirn.models.ResNet` (depth 6n+2, option-B shortcuts)."""

    def __init__(self, depth=20, norm="bn", in_channels=3, num_classes=10, width=16, p=0.2, formula="standard",
                 input_normalization=None):
        super().__init__()
        n = (depth - 2) // 6
        self.normalize = input_layer(input_normalization)
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm == "none")
        self.stem_norm = make_norm(norm, width, p, formula)
        blocks, channels = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(channels, c_out, 2 if stage > 0 and i == 0 else 1, norm, p, formula))
                channels = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = self.blocks(torch.relu(self.stem_norm(self.stem(self.normalize(x)))))
        return self.fc(self.pool(out))


def torch_model(arch, norm, in_channels):
    """The benchmark's twin of ``minirn.models.small_cnn`` (arch "small_cnn") or ``resnet(20)`` ("resnet20")."""
    if arch == "small_cnn":
        return small_cnn(norm, in_channels)
    return ResNet(20, norm, in_channels)


def from_description(meta):
    """The twin of the model ``meta`` describes (the ``"minirn"`` metadata of a :func:`minirn.save_weights`
    file), in eval mode, with its input normalisation, BatchNorm formula and eval statistics; its
    ``state_dict`` has the file's keys, so ``twin.load_state_dict(safetensors.torch.load_file(path))`` fills it.

    PyTorch's own BatchNorm2d has no eval switch: a standard-formula BatchNorm with batch statistics in eval
    mode is refused (ValueError); the authors' formula and RobustNorm have the switch.
    """
    norm, formula = meta["norm"], meta.get("batch_norm_formula", "standard")
    stats = (meta.get("eval_mean", "running"), meta.get("eval_scale", "running"))
    if norm == "bn" and formula == "standard" and stats != ("running", "running"):
        raise ValueError(f"torch_twins: PyTorch's BatchNorm2d has no eval statistics {stats}; only running")
    options = {"p": meta["p"], "formula": formula, "input_normalization": meta.get("input_normalization")}
    if meta["model"] == "small-cnn":
        twin = small_cnn(norm, meta["in_channels"], meta["num_classes"], **options)
    else:
        twin = ResNet(int(meta["model"][len("resnet"):]), norm, meta["in_channels"], meta["num_classes"], **options)
    for module in twin.modules():
        if isinstance(module, (RobustNorm2d, AuthorsBatchNorm2d)):
            module.eval_mean, module.eval_scale = stats
    return twin.eval()


def load_minirn_state(twin, module, strict=False):
    """Copy ``module``'s (a minirn Module's) parameters and buffers into its ``twin``, by name, in the twin's dtypes.

    strict=False by default: the twin's BatchNorm ``num_batches_tracked`` has no minirn counterpart.
    Returns ``twin``.
    """
    own = twin.state_dict()
    state = {key: torch.as_tensor(backend.to_host(value), dtype=own[key].dtype) for key, value in module.state_dict().items()}
    twin.load_state_dict(state, strict=strict)
    return twin
