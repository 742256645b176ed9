"""Normalization layers: BatchNorm2d, RobustNorm2d (the paper's), GroupNorm, LayerNorm.

The equations and their derivatives live in
:mod:`minirn.nn.functional.normalization`; these classes own γ, β, the
running estimates and the choice of statistics.

Which statistics a batch norm layer uses (the paper's central experiment):
in training mode always the batch's; in eval mode the choice of ``eval_mean``
and ``eval_scale``, each ``"running"`` or ``"batch"``.  The three choices the
paper compares, with the paper's names for them, are :data:`EVAL_STATISTICS`,
the one table of them that the CLI, ``minirn reproduce`` and the tests read.

In training mode the running estimates follow an exponential moving average,
``running = (1 - momentum) * running + momentum * batch``, except inside
:func:`minirn.freeze_running_stats` (gradient checks, attacks).  Evaluation
never updates them, whatever statistics it uses.
"""
from __future__ import annotations

from dataclasses import dataclass

from minirn import backend
from minirn.autograd.grad_mode import running_stats_frozen
from minirn.nn import functional as F
from minirn.nn.layers import check_positive_int
from minirn.nn.module import Module, Parameter

STATISTICS = ("running", "batch")

#: BatchNorm2d's ``formula``: the standard BatchNorm (Ioffe & Szegedy; PyTorch) or the authors' variant.
FORMULAS = ("standard", "authors")


@dataclass(frozen=True)
class EvalStats:
    """One choice of statistics for BatchNorm2d / RobustNorm2d in eval mode, with the paper's names for it.

    name: minirn's name (``minirn attack --eval-stats``); mean, scale: ``"running"`` or ``"batch"``, the
    arguments of :func:`set_norm_eval_stats`; paper_bn, paper_rn: what the paper (PAPER.md, "Variants in
    the authors' code") calls this choice for BatchNorm and for RobustNorm.
    """

    name: str
    mean: str
    scale: str
    paper_bn: str
    paper_rn: str
    description: str

    @property
    def setting(self) -> tuple:
        """``(mean, scale)``, as :func:`set_norm_eval_stats` and :func:`get_norm_eval_stats` take and give them."""
        return (self.mean, self.scale)


#: The eval-statistics variants the paper compares (the default first).  The fourth mix, batch mean with
#: running scale, is allowed by :func:`set_norm_eval_stats` but is none of the paper's.
EVAL_STATISTICS = (
    EvalStats("running", "running", "running", paper_bn="BN", paper_rn="RNT",
              description="running estimates from training (the default)"),
    EvalStats("batch", "batch", "batch", paper_bn="BN without tracking", paper_rn="RN",
              description="the inference batch's mean and scale (the paper's hypothesis test)"),
    EvalStats("running-mean", "running", "batch", paper_bn="BN, tracked mean only", paper_rn="RNM",
              description="running mean, the inference batch's scale"),
)


def eval_statistics(name: str) -> EvalStats:
    """The entry of :data:`EVAL_STATISTICS` called ``name`` ("running", "batch" or "running-mean")."""
    for variant in EVAL_STATISTICS:
        if variant.name == name:
            return variant
    raise ValueError(f"unknown eval statistics {name!r}; expected one of {', '.join(v.name for v in EVAL_STATISTICS)}")


class _BatchStatNorm2d(Module):
    """What BatchNorm2d and RobustNorm2d share: γ, β, momentum, the eval-statistics switch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        check_positive_int("num_features", num_features)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        xp = backend.namespace("cpu")
        self.weight = Parameter(xp.ones((num_features,), dtype=xp.float32)) if affine else None   # γ
        self.bias = Parameter(xp.zeros((num_features,), dtype=xp.float32)) if affine else None    # β
        self.eval_mean = "running"
        self.eval_scale = "running"

    def __setattr__(self, name, value):
        if name in ("eval_mean", "eval_scale") and value not in STATISTICS:
            raise ValueError(f"{name} must be 'running' or 'batch', got {value!r}")
        super().__setattr__(name, value)

    def _use_batch_statistics(self):
        """(batch mean?, batch scale?): always in training, per ``eval_mean``/``eval_scale`` in eval."""
        if self.training:
            return True, True
        return self.eval_mean == "batch", self.eval_scale == "batch"

    def _update_running(self, name, batch_value):
        """``running = (1 - momentum) * running + momentum * batch`` in training mode (unless frozen)."""
        if self.training and not running_stats_frozen():
            running = self._buffers[name]
            self._buffers[name] = (1.0 - self.momentum) * running + self.momentum * batch_value

    def _check_input(self, x):
        shape = x.shape
        if len(shape) not in (2, 4) or shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects input (N, {self.num_features}, H, W) "
                f"or (N, {self.num_features}), got shape {tuple(shape)}"
            )

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"eval_mean={self.eval_mean!r}, eval_scale={self.eval_scale!r}"
        )


class BatchNorm2d(_BatchStatNorm2d):
    """BatchNorm (Ioffe & Szegedy 2015) with PyTorch's semantics, plus the paper's eval switch.

    x: (N, C, H, W) or (N, C).  Training: :math:`\\mu_B`, biased :math:`\\sigma_B^2` over (N, H, W),
    :math:`y = \\gamma (x-\\mu_B)/\\sqrt{\\sigma_B^2+\\epsilon} + \\beta`; buffers ``running_mean`` and
    ``running_var`` track :math:`\\mu_B` and the *unbiased* variance :math:`\\sigma_B^2\\,n/(n-1)`.
    PyTorch's state dict also holds ``num_batches_tracked``, which minirn does not keep (it always
    uses ``momentum``): :func:`minirn.bridge.save_weights` writes it, :func:`~minirn.bridge.load_weights`
    ignores it.

    formula: ``"standard"`` (the above, the default) or ``"authors"``, the function the authors'
    code computes: :math:`y = \\gamma (x-\\mu)/(\\sqrt{\\sigma^2}+\\epsilon) + \\beta`, ε outside the
    root and the *unbiased* batch variance (:func:`~minirn.nn.functional.authors_batch_norm`; the
    running estimates are the same).  ``minirn convert --from authors`` selects it, so that a
    converted network predicts what theirs predicts.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, formula="standard"):
        if formula not in FORMULAS:
            raise ValueError(f"BatchNorm2d: formula must be one of {', '.join(FORMULAS)}, got {formula!r}")
        super().__init__(num_features, eps, momentum, affine)
        self.formula = formula
        xp = backend.namespace("cpu")
        self.register_buffer("running_mean", xp.zeros((num_features,), dtype=xp.float32))
        self.register_buffer("running_var", xp.ones((num_features,), dtype=xp.float32))

    def forward(self, x):
        self._check_input(x)
        batch_mean, batch_scale = self._use_batch_statistics()
        norm = F.authors_batch_norm if self.formula == "authors" else F.batch_norm
        y, mu, var = norm(
            x, self.weight, self.bias,
            mean=None if batch_mean else self.running_mean,
            var=None if batch_scale else self.running_var,
            eps=self.eps, return_stats=True,
        )
        if self.training:
            if self.formula == "standard":  # batch_norm returns the biased variance; the running one is unbiased, like PyTorch
                n = x.shape[0] * (x.shape[2] * x.shape[3] if len(x.shape) == 4 else 1)
                var = var * (n / (n - 1))
            self._update_running("running_mean", mu)
            self._update_running("running_var", var)
        return y

    def extra_repr(self):
        return super().extra_repr() + (f", formula={self.formula!r}" if self.formula != "standard" else "")


class RobustNorm2d(_BatchStatNorm2d):
    """RobustNorm (Awais, Shamshad & Bae 2020): scale by a power of the range instead of the std.

    x: (N, C, H, W) or (N, C).  Training: :math:`\\mu_B` and :math:`r_B = \\max x - \\min x` over
    (N, H, W), :math:`y = \\gamma (x-\\mu_B)/(r_B^{\\,p}+\\epsilon) + \\beta`; buffers ``running_mean``
    and ``running_range`` (a moving average of the range itself); eval with running
    statistics divides by :math:`\\bar r^{\\,p} + \\epsilon`.  ``p`` > 0 is the paper's
    hyper-parameter (0.2 by default; the authors also use 1.0).

    Paper: https://arxiv.org/abs/2006.11007, the RobustNorm section (claim 4; cited by section, see
    docs/paper_map.md); the running range and ε after the power follow the authors' layer in
    https://github.com/awaisrauf/RobustNorm.
    """

    def __init__(self, num_features, p=0.2, eps=1e-5, momentum=0.1, affine=True):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < float("inf"):
            raise ValueError(f"RobustNorm2d: p must be a positive number, got {p!r} (finite, not a bool)")
        super().__init__(num_features, eps, momentum, affine)
        self.p = float(p)
        xp = backend.namespace("cpu")
        self.register_buffer("running_mean", xp.zeros((num_features,), dtype=xp.float32))
        self.register_buffer("running_range", xp.ones((num_features,), dtype=xp.float32))

    def forward(self, x):
        self._check_input(x)
        batch_mean, batch_scale = self._use_batch_statistics()
        y, mu, r = F.robust_norm(
            x, self.weight, self.bias,
            mean=None if batch_mean else self.running_mean,
            value_range=None if batch_scale else self.running_range,
            p=self.p, eps=self.eps, return_stats=True,
        )
        if self.training:
            self._update_running("running_mean", mu)
            self._update_running("running_range", r)
        return y

    def extra_repr(self):
        return f"p={self.p}, " + super().extra_repr()


class GroupNorm(Module):
    """GroupNorm (Wu & He 2018): per example, over groups of channels and (H, W); batch-independent."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        check_positive_int("num_groups", num_groups)
        check_positive_int("num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: {num_channels} channels cannot be split into {num_groups} groups")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        xp = backend.namespace("cpu")
        self.weight = Parameter(xp.ones((num_channels,), dtype=xp.float32)) if affine else None
        self.bias = Parameter(xp.zeros((num_channels,), dtype=xp.float32)) if affine else None

    def forward(self, x):
        if len(x.shape) < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) got input of shape {tuple(x.shape)}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(Module):
    """LayerNorm (Ba et al. 2016) over the last axes ``normalized_shape``, like ``torch.nn.LayerNorm``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        xp = backend.namespace("cpu")
        self.weight = Parameter(xp.ones(shape, dtype=xp.float32)) if elementwise_affine else None
        self.bias = Parameter(xp.zeros(shape, dtype=xp.float32)) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


def norm_layers(model):
    """The BatchNorm2d and RobustNorm2d layers of ``model`` (the ones with running statistics)."""
    return [m for m in model.modules() if isinstance(m, _BatchStatNorm2d)]


def set_norm_eval_stats(model, mean="running", scale="running"):
    """Choose the statistics every BatchNorm2d/RobustNorm2d of ``model`` uses in eval mode.

    ``mean``, ``scale``: ``"running"`` (population estimates from training) or
    ``"batch"`` (statistics of the inference batch).  Returns ``model``.
    The paper's three choices are :data:`EVAL_STATISTICS`:
    ``set_norm_eval_stats(model, *variant.setting)``.
    """
    for name, value in (("mean", mean), ("scale", scale)):
        if value not in STATISTICS:
            raise ValueError(f"set_norm_eval_stats: {name} must be 'running' or 'batch', got {value!r}")
    for layer in norm_layers(model):
        layer.eval_mean, layer.eval_scale = mean, scale
    return model


def get_norm_eval_stats(model):
    """``(mean, scale)`` shared by the model's norm layers, ``None`` if it has none; error if they differ."""
    settings = {(layer.eval_mean, layer.eval_scale) for layer in norm_layers(model)}
    if len(settings) > 1:
        raise ValueError(f"the model's norm layers use different eval statistics: {sorted(settings)}")
    return settings.pop() if settings else None
