"""The paper's networks: a small CNN for MNIST and the CIFAR ResNet (He et al. 2016).

``norm`` picks the normalization after every convolution, by its short name in :data:`NORMS`:

======== =====================================================
"none"   no normalization (:class:`~minirn.nn.Identity`); convolutions get a bias
"bn"     :class:`~minirn.nn.BatchNorm2d`
"rn"     :class:`~minirn.nn.RobustNorm2d` (power ``p``, 0.2 by default)
"gn"     :class:`~minirn.nn.GroupNorm` with groups of 4 channels (see :func:`group_norm`)
"ln"     LayerNorm over (C, H, W): ``GroupNorm(1, C)``
======== =====================================================

or by any callable ``factory(num_channels) -> Module``, e.g.
``functools.partial(nn.RobustNorm2d, p=0.5)``.  ``p=`` on the constructors is a
shorthand for that partial with ``norm="rn"``; the layer checks its own ``p``.

:func:`build` makes a network from its name (``"small-cnn"``, ``"resnet20"``,
``"resnetN"``), as ``minirn train`` and ``minirn reproduce`` spell it.

``input_normalization={"mean": [...], "std": [...]}`` (one number per input channel) puts an
:class:`~minirn.nn.Normalize` first, for weights trained on standardised images (the authors'
checkpoints, :mod:`minirn.bridge`): the network then takes pixels in [0, 1].  None (the default):
the network takes its inputs as they are.
"""
from __future__ import annotations

import functools

from minirn import backend, nn
from minirn.nn import functional as F


def no_norm(num_channels: int) -> nn.Module:
    """No normalization: the identity (convolutions followed by it get a bias)."""
    return nn.Identity()


def group_norm(num_channels: int) -> nn.Module:
    """GroupNorm with groups of 4 channels where possible (``num_channels // 4`` groups; 16 channels -> 4 groups),
    a common choice for these small widths; one group if ``num_channels`` is not a multiple of 4."""
    return nn.GroupNorm(max(1, num_channels // 4) if num_channels % 4 == 0 else 1, num_channels)


def layer_norm(num_channels: int) -> nn.Module:
    """LayerNorm over (C, H, W): one group of all channels."""
    return nn.GroupNorm(1, num_channels)


#: The short names of the norms, each with its factory ``factory(num_channels) -> Module``.
NORMS = {"none": no_norm, "bn": nn.BatchNorm2d, "rn": nn.RobustNorm2d, "gn": group_norm, "ln": layer_norm}


def norm_factory(norm, p=None):
    """``factory(num_channels) -> Module`` for ``norm``: a short name of :data:`NORMS`, or a factory (returned as is).

    p: RobustNorm's power, a shorthand for ``functools.partial(nn.RobustNorm2d, p=p)``; it applies to
    ``norm="rn"`` only (None: the layer's default) and is checked by the layer, not here.
    """
    if callable(norm):
        return norm
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)} or a factory function")
    if norm == "rn" and p is not None:
        return functools.partial(nn.RobustNorm2d, p=p)
    return NORMS[norm]


def make_norm(norm, channels: int, p=None) -> nn.Module:
    """The normalization layer ``norm`` (a short name or a factory) for ``channels`` channels."""
    return norm_factory(norm, p)(channels)


def _has_bias(factory) -> bool:
    """Convolutions get a bias only when no normalization (with its own β) follows them."""
    return factory is no_norm


def input_layer(input_normalization) -> nn.Module:
    """:class:`~minirn.nn.Normalize` of ``input_normalization`` (``{"mean": [...], "std": [...]}``), or the identity for None."""
    if input_normalization is None:
        return nn.Identity()
    return nn.Normalize(input_normalization["mean"], input_normalization["std"])


def small_cnn(norm="bn", p=None, in_channels=1, num_classes=10, input_normalization=None) -> nn.Sequential:
    """The MNIST workhorse of the notebooks and the benchmark.

    conv3x3(in→32) → norm → ReLU → conv3x3(32→64, stride 2) → norm → ReLU →
    conv3x3(64→64, stride 2) → norm → ReLU → global average pool → Linear(64→classes).
    Convolutions have a bias only when ``norm="none"``.  x: (N, in_channels, H, W) -> logits (N, num_classes).
    norm, p, input_normalization: see the module docstring (with it, the Normalize layer comes first and
    the other layers' indices move up by one).
    """
    factory = norm_factory(norm, p)
    bias = _has_bias(factory)
    layers = [] if input_normalization is None else [input_layer(input_normalization)]
    for c_in, c_out, stride in ((in_channels, 32, 1), (32, 64, 2), (64, 64, 2)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias), factory(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Linear(64, num_classes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection: :math:`y = \\mathrm{relu}(F(x) + S(x))`.

    F = conv → norm → ReLU → conv → norm; the shortcut S is the identity, or a
    1x1 convolution + norm when the stride or the width changes (He et al.'s option B).
    """

    def __init__(self, in_channels, out_channels, stride=1, norm="bn", p=None):
        super().__init__()
        factory = norm_factory(norm, p)
        bias = _has_bias(factory)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = factory(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=bias)
        self.norm2 = factory(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), factory(out_channels)
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
    x: (N, in_channels, H, W) -> logits (N, num_classes).  norm, p, input_normalization: see the module
    docstring (``normalize`` is the identity without it)."""

    def __init__(self, depth=20, norm="bn", p=None, in_channels=3, num_classes=10, width=16, input_normalization=None):
        super().__init__()
        factory = norm_factory(norm, p)
        check_depth(depth)
        n = (depth - 2) // 6
        self.depth = depth
        self.normalize = input_layer(input_normalization)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=_has_bias(factory))
        self.stem_norm = factory(width)
        blocks, channels = [], width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, factory))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = F.relu(self.stem_norm(self.stem(self.normalize(x))))
        return self.fc(self.pool(self.blocks(out)))


def resnet(depth=20, norm="bn", p=None, in_channels=3, num_classes=10, width=16, input_normalization=None) -> ResNet:
    """The CIFAR ResNet (ResNet-20 by default, the authors' main CIFAR model)."""
    return ResNet(depth, norm, p, in_channels, num_classes, width, input_normalization)


def check_depth(depth) -> int:
    """``depth`` if it is a CIFAR ResNet depth, 6n+2 with n >= 1; else a ValueError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
    return depth


#: The names :func:`build` takes, as the command line's ``--model`` help spells them.
MODEL_NAMES = "small-cnn, resnet20 or resnetN (N = 6n+2)"


def resnet_depth(name: str) -> int | None:
    """The depth of the network called ``name``: None for "small-cnn", N for "resnetN"; ValueError otherwise."""
    if name == "small-cnn":
        return None
    if isinstance(name, str) and name.startswith("resnet") and name[6:].isdigit():
        try:
            return check_depth(int(name[6:]))
        except ValueError as exc:
            raise ValueError(f"model {name!r}: {exc}") from None
    raise ValueError(f"unknown model {name!r}; expected {MODEL_NAMES}")


#: Weight initialisations of :func:`build`: PyTorch's default, or He-normal (fan-out) as the authors use.
INITS = ("torch", "he")


def build(name: str, norm="bn", p=None, *, in_channels: int, num_classes: int, device="cpu", init="torch",
          input_normalization=None) -> nn.Module:
    """The network called ``name`` ("small-cnn" or "resnetN", see :func:`resnet_depth`) on ``device``.

    norm, p: see the module docstring; in_channels, num_classes: of the data.
    init: ``"torch"`` (PyTorch's default, as every layer is built) or ``"he"``
    (:func:`he_init`, the authors' initialisation).  input_normalization: see the module docstring.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    depth = resnet_depth(name)
    if depth is None:
        model = small_cnn(norm, p, in_channels=in_channels, num_classes=num_classes,
                          input_normalization=input_normalization)
    else:
        model = resnet(depth, norm, p, in_channels=in_channels, num_classes=num_classes,
                       input_normalization=input_normalization)
    if init == "he":
        he_init(model)
    return model.to(device)


def he_init(model: nn.Module) -> nn.Module:
    """Re-initialise every convolution as the authors do: weights He-normal in fan-out mode
    (:func:`minirn.nn.init.kaiming_normal_fan_out`), biases 0; Linear layers and the norms' affine
    parameters keep their defaults.  Draws from the global generator (:func:`minirn.manual_seed`)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight.data
            module.weight.data = nn.init.kaiming_normal_fan_out(tuple(weight.shape), dtype=backend.dtype_name(weight.dtype),
                                                                device=backend.device_of(weight))
            if module.bias is not None:
                module.bias.data = module.bias.data * 0
    return model
