r"""BatchNorm and RobustNorm as pure math, plus the batch-independent norms.

Both batch norms normalise each channel over the n values it has on the batch
and spatial axes (N, H, W) of x: (N, C, H, W) (over N for x: (N, C)), centre
on the mean :math:`\mu_B = \frac1n\sum_i x_i` and end with :math:`y = \gamma\hat x + \beta`.
They differ only in the scale:

================  ===================================  =======================================
                  BatchNorm (Ioffe & Szegedy 2015)     RobustNorm (Awais, Shamshad & Bae 2020)
================  ===================================  =======================================
statistic         variance :math:`\sigma_B^2`          range :math:`r_B = \max x - \min x`
denominator       :math:`\sqrt{\sigma^2 + \epsilon}`   :math:`r^{\,p} + \epsilon`
running estimate  ``running_var`` (unbiased variance)  ``running_range`` (the range itself)
================  ===================================  =======================================

The forward and backward equations sit in :class:`BatchNorm` and
:class:`RobustNorm`, beside the lines that compute them.

The functions take the statistics to *use*: ``mean=None`` means "the batch
mean :math:`\mu_B`, differentiated through"; an array means "this fixed
estimate" (a running average, no gradient).  Likewise ``var=None`` /
``value_range=None``.  This one switch expresses every variant of the paper
(running vs inference-batch statistics); the layers in :mod:`minirn.nn.norm`
own the running estimates and choose what to pass.

Sources: Ioffe & Szegedy 2015, "Batch Normalization" (Algorithm 1, Section 3);
Awais, Shamshad & Bae 2020, "Towards an Adversarially Robust Normalization
Approach", https://arxiv.org/abs/2006.11007 (its RobustNorm section; the
equation is cited by section, as docs/paper_map.md does for every equation),
and the authors' code,
https://github.com/awaisrauf/RobustNorm, whose RobustNorm layer fixes the
details the text leaves open (ε added after the power, the range itself as the
running estimate).  docs/paper_map.md maps every equation and variant to the code.
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


def _batch_and_spatial_axes(x):
    """The axes a batch norm sums over: (0,) for x: (N, C), (0, 2, 3) for x: (N, C, H, W)."""
    if x.ndim not in (2, 4):
        raise ValueError(f"expected input of shape (N, C) or (N, C, H, W), got {tuple(x.shape)}")
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _values_per_channel(x, axes):
    """n = N H W (or N): how many values of x each channel's statistics are taken over."""
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


def _reshape_to_broadcast(v, x):
    """(C,) -> (1, C) or (1, C, 1, 1), so that v broadcasts against x."""
    xp = backend.array_namespace(v)
    return xp.reshape(v, (1, -1) if x.ndim == 2 else (1, -1, 1, 1))


def _per_channel(op, x, v, out=None):
    """``op(x, v)`` with v: (C,), (1, C) or (1, C, 1, 1), one value per channel; the same as ``op`` with
    broadcasting, on long rows where NumPy would loop over C values at a time (:func:`minirn.backend.channelwise`)."""
    return backend.channelwise(op, x, v, out=out)


def _x_hat(x, mean, inv_scale, x_minus_mean=None):
    r""":math:`\hat x = (x - \mu)\,s`.  ``x_minus_mean``: :math:`x - \mu` if the caller has it already; it
    becomes :math:`\hat x` in place (it is needed no more, and its memory is still in the cache)."""
    xp = backend.array_namespace(x)
    if x_minus_mean is None:
        x_minus_mean = _per_channel(xp.subtract, x, mean)                           # x - mu
    return _per_channel(xp.multiply, x_minus_mean, inv_scale, out=x_minus_mean)     # (x - mu) s


def _sum_per_channel(x, y=None):
    r""":math:`\sum x` (or :math:`\sum x y`) over (N, H, W) per channel, kept as (1, C, 1, 1) / (1, C)."""
    return _reshape_to_broadcast(backend.channel_sums(x, y), x)


class _BatchStatisticsNorm(Function):
    """What BatchNorm and RobustNorm share: the input check, the axes and n, the affine gradients."""

    def _check_input_and_save_layout(self, x, weight):
        """Check x: (N, C) or (N, C, H, W) against γ: (C,); save the axes, n and γ for ``backward``."""
        self.axes = _batch_and_spatial_axes(x)
        if weight.shape[0] != x.shape[1]:
            raise ValueError(f"input has {x.shape[1]} channels but the norm expects {weight.shape[0]}")
        backend.array_namespace(x, weight)  # raises if x and γ live on different backends
        self.n = _values_per_channel(x, self.axes)
        self.weight = weight

    def _affine_forward(self, x, mean, inv_scale, weight, bias, statistics_fixed, x_minus_mean=None):
        r""":math:`y = \gamma\hat x + \beta` with :math:`\hat x = (x-\mu)\,s` (s: 1/σ or 1/d), saving what backward needs.

        With both statistics fixed (eval mode with running estimates) y is an affine function of x,
        :math:`y = x\,(\gamma s) + (\beta - \mu\gamma s)`: two passes over x instead of four, and
        :math:`\hat x` is not stored (backward recomputes it if :math:`\partial L/\partial\gamma` is wanted).
        ``statistics_fixed``: whether both statistics are fixed arrays; ``x_minus_mean``: :math:`x-\mu`
        if the caller has it already (it becomes :math:`\hat x`, in place).
        """
        self.x, self.mean_used, self.inv_scale = x, mean, inv_scale
        xp = backend.array_namespace(x)
        weight, bias = _reshape_to_broadcast(weight, x), _reshape_to_broadcast(bias, x)
        if statistics_fixed:
            scale = weight * inv_scale                                              # gamma s
            self.x_hat = None
            y = _per_channel(xp.multiply, x, scale)                                 # y = x gamma s
            return _per_channel(xp.add, y, bias - mean * scale, out=y)              #   + beta - mu gamma s
        self.x_hat = _x_hat(x, mean, inv_scale, x_minus_mean)                       # x_hat = (x - mu) s
        y = _per_channel(xp.multiply, self.x_hat, weight)                           # y = gamma x_hat
        return _per_channel(xp.add, y, bias, out=y)                                 #   + beta (in place: y is ours)

    def _sums_for_backward(self, g, batch_scale):
        r"""The per-channel sums the wanted gradients need, :math:`\sum_i g_i` and :math:`\sum_i g_i\hat x_i`
        (as (1, C, 1, 1) / (1, C), or None where no wanted gradient uses them).  ``batch_scale``: whether
        the scale is the batch's (then dL/dx needs :math:`\sum g\hat x`)."""
        wants = tuple(self.needs_input_grad) + (False,) * 3
        sum_g = _sum_per_channel(g) if wants[2] or (wants[0] and self.mean is None) else None
        sum_g_x_hat = None
        if wants[1] or (wants[0] and batch_scale):
            x_hat = self.x_hat if self.x_hat is not None else _x_hat(self.x, self.mean_used, self.inv_scale)
            sum_g_x_hat = _sum_per_channel(g, x_hat)
        return sum_g, sum_g_x_hat

    def _affine_parameter_gradients(self, sum_g, sum_g_x_hat):
        r""":math:`\partial L/\partial\gamma = \sum_i g_i\hat x_i` and :math:`\partial L/\partial\beta = \sum_i g_i`
        as (C,) arrays (None where not wanted)."""
        wants = tuple(self.needs_input_grad) + (False,) * 3
        g_weight = backend.array_namespace(sum_g_x_hat).reshape(sum_g_x_hat, (-1,)) if wants[1] else None
        g_bias = backend.array_namespace(sum_g).reshape(sum_g, (-1,)) if wants[2] else None
        return g_weight, g_bias


class BatchNorm(_BatchStatisticsNorm):
    """BatchNorm (Ioffe & Szegedy 2015) of x: (N, C, H, W) or (N, C), with γ, β: (C,).

    ``mean``/``var``: None for the batch statistic, or a fixed (C,) array.
    """

    def __init__(self, mean=None, var=None, eps=1e-5):
        self.mean, self.var, self.eps = mean, var, eps

    def forward(self, x, weight, bias):
        r"""Ioffe & Szegedy 2015, Algorithm 1 (their m is our n = N H W), per channel:

        .. math::
            \mu_B = \frac1n\sum_i x_i, \quad
            \sigma_B^2 = \frac1n\sum_i (x_i-\mu_B)^2, \quad
            s = \frac{1}{\sqrt{\sigma^2+\epsilon}}, \quad
            \hat x_i = (x_i-\mu)\,s, \quad
            y_i = \gamma\,\hat x_i + \beta,

        where :math:`\mu` is :math:`\mu_B` or the fixed ``mean``, and :math:`\sigma^2`
        is :math:`\sigma_B^2` or the fixed ``var``.  Each line below is marked with its symbol.
        """
        self._check_input_and_save_layout(x, weight)
        xp = backend.array_namespace(x)
        if self.var is None and self.n < 2:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel to compute batch statistics, "
                f"got input of shape {tuple(x.shape)}"
            )
        self.batch_mean = _sum_per_channel(x) / self.n                              # mu_B
        mean = self.batch_mean if self.mean is None else _reshape_to_broadcast(self.mean, x)  # mu
        if self.var is None:
            x_minus_batch_mean = _per_channel(xp.subtract, x, self.batch_mean)      # x - mu_B
            self.batch_var = _sum_per_channel(x_minus_batch_mean, x_minus_batch_mean) / self.n  # sigma_B^2
            var = self.batch_var
        else:
            self.batch_var, var = None, _reshape_to_broadcast(self.var, x)
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)                               # s
        fixed = self.mean is not None and self.var is not None
        x_minus_mean = x_minus_batch_mean if self.mean is None and self.var is None else None  # x - mu, if computed
        y = self._affine_forward(x, mean, self.inv_std, weight, bias, fixed, x_minus_mean)  # x_hat = (x - mu) s, y = gamma x_hat + beta
        if self.var is None:  # (x - mu_B) s, what the gradient through sigma_B^2 needs (= x_hat if mu = mu_B)
            self.x_hat_batch = self.x_hat if self.mean is None else _x_hat(x, self.batch_mean, self.inv_std, x_minus_batch_mean)
        return y

    def backward(self, g):
        r"""With :math:`g_i = \partial L/\partial y_i` and :math:`\hat g_i = \gamma g_i = \partial L/\partial\hat x_i`,
        sums over the channel's n positions (the chain rule of Ioffe & Szegedy 2015, Section 3,
        below Algorithm 1, collected into one line; notebook 03 derives it):

        .. math::
            \frac{\partial L}{\partial x_i} = s\,\hat g_i
              \;\underbrace{-\; \frac{s}{n}\sum_j \hat g_j}_{\text{if } \mu = \mu_B}
              \;\underbrace{-\; \frac{s^2}{n}\,(x_i-\mu_B)\sum_j \hat g_j \hat x_j}_{\text{if } \sigma^2 = \sigma_B^2},
            \qquad
            \frac{\partial L}{\partial \gamma} = \sum_i g_i\hat x_i, \qquad
            \frac{\partial L}{\partial \beta} = \sum_i g_i .

        A fixed statistic is a constant, so its term is absent.  With both batch statistics
        this is the familiar :math:`s(\hat g_i - \overline{\hat g} - \hat x_i\overline{\hat g\hat x})`.
        """
        xp = backend.array_namespace(g)
        sum_g, sum_g_x_hat = self._sums_for_backward(g, batch_scale=self.var is None)  # sum g, sum g x_hat
        g_x = None
        if self.needs_input_grad[0]:
            scale = _reshape_to_broadcast(self.weight, g) * self.inv_std  # gamma s
            g_x = _per_channel(xp.multiply, g, scale)  # s hat_g: a new array, updated in place below
            if self.mean is None:
                g_x = _per_channel(xp.subtract, g_x, scale * sum_g / self.n, out=g_x)  # - (s/n) sum hat_g
            if self.var is None:
                g_x -= _per_channel(xp.multiply, self.x_hat_batch, scale * sum_g_x_hat / self.n)  # - (s^2/n) (x - mu_B) sum hat_g x_hat
        return (g_x, *self._affine_parameter_gradients(sum_g, sum_g_x_hat))


class RobustNorm(_BatchStatisticsNorm):
    """RobustNorm (Awais, Shamshad & Bae 2020) of x: (N, C, H, W) or (N, C), with γ, β: (C,).

    Paper: https://arxiv.org/abs/2006.11007, the section that proposes RobustNorm (claim 4; no
    equation number is cited, see docs/paper_map.md); code: https://github.com/awaisrauf/RobustNorm.

    ``mean``/``value_range``: None for the batch statistic, or a fixed (C,) array; p > 0.
    """

    def __init__(self, mean=None, value_range=None, p=0.2, eps=1e-5):
        self.mean, self.value_range, self.p, self.eps = mean, value_range, p, eps

    def forward(self, x, weight, bias):
        r"""The definition of Awais, Shamshad & Bae 2020 (arXiv 2006.11007, in the section
        that proposes RobustNorm), per channel:

        .. math::
            \mu_B = \frac1n\sum_i x_i, \quad
            r_B = \max_i x_i - \min_i x_i, \quad
            d = r^{\,p} + \epsilon, \quad
            \hat x_i = \frac{x_i-\mu}{d}, \quad
            y_i = \gamma\,\hat x_i + \beta,

        where :math:`\mu` is :math:`\mu_B` or the fixed ``mean``, and :math:`r` is :math:`r_B`
        or the fixed ``value_range``; :math:`\epsilon` is added after the power, as in the
        authors' code.  Each line below is marked with its symbol.
        """
        self._check_input_and_save_layout(x, weight)
        self.batch_mean = _sum_per_channel(x) / self.n                              # mu_B
        mean = self.batch_mean if self.mean is None else _reshape_to_broadcast(self.mean, x)  # mu
        if self.value_range is None:
            self.x_max, self.x_min = (_reshape_to_broadcast(e, x) for e in backend.channel_extrema(x))  # max x, min x
            self.batch_range = self.x_max - self.x_min                              # r_B = max - min
            r = self.batch_range
        else:
            self.batch_range, r = None, _reshape_to_broadcast(self.value_range, x)
        self.r = r                                                                  # r
        self.denominator = r**self.p + self.eps                                     # d = r^p + eps
        fixed = self.mean is not None and self.value_range is not None
        return self._affine_forward(x, mean, 1.0 / self.denominator, weight, bias, fixed)  # x_hat = (x - mu) / d, y = gamma x_hat + beta

    def backward(self, g):
        r"""With :math:`g_i = \partial L/\partial y_i` and :math:`\hat g_i = \gamma g_i = \partial L/\partial\hat x_i`,
        sums over the channel's n positions (derived here from the forward equations):

        .. math::
            \frac{\partial L}{\partial x_i} = \frac{\hat g_i}{d}
              \;\underbrace{-\; \frac{1}{n d}\sum_j \hat g_j}_{\text{if } \mu = \mu_B}
              \;\underbrace{+\; \frac{\partial L}{\partial r}
                 \Big(\frac{[x_i = \max]}{k_{\max}} - \frac{[x_i = \min]}{k_{\min}}\Big)}_{\text{if } r = r_B},
            \qquad
            \frac{\partial L}{\partial r} = -\frac{p\,r^{p-1}}{d}\sum_j \hat g_j \hat x_j,

        and :math:`\partial L/\partial\gamma = \sum_i g_i\hat x_i`, :math:`\partial L/\partial\beta = \sum_i g_i`.
        The range's gradient reaches only the arg-max and arg-min positions; the
        numerics of ties and of :math:`r = 0` are explained beside the lines they concern.
        """
        xp = backend.array_namespace(g)
        sum_g, sum_g_x_hat = self._sums_for_backward(g, batch_scale=self.value_range is None)  # sum g, sum g x_hat
        g_x = None
        if self.needs_input_grad[0]:
            weight = _reshape_to_broadcast(self.weight, g)
            scale = weight / self.denominator  # gamma / d
            g_x = _per_channel(xp.multiply, g, scale)  # hat_g / d: a new array, updated in place below
            if self.mean is None:
                g_x = _per_channel(xp.subtract, g_x, scale * sum_g / self.n, out=g_x)  # - (1/(n d)) sum hat_g
            if self.value_range is None:
                # dL/dr = -(p r^(p-1) / d) sum hat_g x_hat.  At r = 0 (a constant channel) r^(p-1) is infinite
                # for p < 1; there every position is both the max and the min, so dr/dx = 1/n - 1/n = 0 (a
                # valid subgradient of the range) and the range term must vanish.  Defining p r^(p-1) := 0 at
                # r = 0 makes that term exactly 0 instead of inf - inf = NaN.
                positive = self.r > 0
                safe_r = xp.where(positive, self.r, 1.0)
                d_denominator_d_r = xp.where(positive, self.p * safe_r ** (self.p - 1.0), 0.0)  # p r^(p-1)
                g_r = -(weight * sum_g_x_hat / self.denominator) * d_denominator_d_r  # dL/dr
                # dr/dx = [x = max]/k_max - [x = min]/k_min.  Ties: the k tied positions share the gradient
                # equally (the authors' torch.max(dim) gives it all to one of them; both are valid
                # subgradients, but they differ at ties).
                for extreme, sign in ((self.x_max, 1.0), (self.x_min, -1.0)):
                    at_extreme = xp.astype(_per_channel(xp.equal, self.x, extreme), g.dtype)  # [x = extreme]
                    at_extreme = _per_channel(xp.multiply, at_extreme, sign * g_r / _sum_per_channel(at_extreme),
                                              out=at_extreme)  # dL/dr * (+-[x = extreme] / k)
                    g_x += at_extreme
        return (g_x, *self._affine_parameter_gradients(sum_g, sum_g_x_hat))


def _affine_parameters_or_identity(x, weight, bias):
    """Fill in γ = 1 and β = 0 (constants) when the norm has no affine parameters."""
    reference = x.data if isinstance(x, Tensor) else x
    _batch_and_spatial_axes(reference)  # a clear error for a wrong rank before shape[1] is read
    xp = backend.array_namespace(reference)
    channels = reference.shape[1]
    if weight is None:
        weight = xp.ones((channels,), dtype=reference.dtype, device=reference.device)
    if bias is None:
        bias = xp.zeros((channels,), dtype=reference.dtype, device=reference.device)
    return weight, bias


def _batch_statistics_as_vectors(function, *names):
    """The named batch statistics saved by a finished norm function, as (C,) arrays (None if unused)."""
    out = []
    for name in names:
        value = getattr(function, name)
        out.append(None if value is None else backend.array_namespace(value).reshape(value, (-1,)))
    return tuple(out)


def batch_norm(x, weight=None, bias=None, mean=None, var=None, eps=1e-5, return_stats=False):
    """BatchNorm over (N, H, W) per channel (equations: :class:`BatchNorm`).

    x: (N, C, H, W) or (N, C); weight γ, bias β: (C,) tensors or None (γ=1, β=0);
    mean, var: (C,) arrays to use instead of the batch statistics, or None.
    Returns y (same shape as x), or ``(y, batch_mean, batch_var)`` with
    ``return_stats=True`` (biased batch variance; None where not computed).
    """
    function = BatchNorm(mean, var, eps)
    y = function(x, *_affine_parameters_or_identity(x, weight, bias))
    return (y, *_batch_statistics_as_vectors(function, "batch_mean", "batch_var")) if return_stats else y


def robust_norm(x, weight=None, bias=None, mean=None, value_range=None, p=0.2, eps=1e-5, return_stats=False):
    r"""RobustNorm (Awais et al. 2020) over (N, H, W) per channel (equations: :class:`RobustNorm`).

    x: (N, C, H, W) or (N, C); weight γ, bias β: (C,) tensors or None;
    mean, value_range: (C,) arrays to use instead of the batch mean and range
    :math:`r_B = \max x - \min x`, or None; p > 0: the power applied to the range.
    Returns y, or ``(y, batch_mean, batch_range)`` with ``return_stats=True``.
    """
    if not p > 0:
        raise ValueError(f"robust_norm: p must be positive, got {p}")
    function = RobustNorm(mean, value_range, p, eps)
    y = function(x, *_affine_parameters_or_identity(x, weight, bias))
    return (y, *_batch_statistics_as_vectors(function, "batch_mean", "batch_range")) if return_stats else y


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    r"""GroupNorm (Wu & He 2018): normalise each example over groups of C/G channels and (H, W).

    x: (N, C, H, W); :math:`\hat x = (x - \mu_{n,g})/\sqrt{\sigma^2_{n,g}+\epsilon}`,
    :math:`y = \gamma_c \hat x + \beta_c`.  Batch-independent: one example's output
    never depends on the others.  Built from differentiable primitives.
    """
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(f"group_norm: {c} channels cannot be split into {num_groups} groups")
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    var = grouped.var(axis=2, keepdims=True)
    x_hat = ((grouped - mean) / (var + eps).sqrt()).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)
    return x_hat


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    r"""LayerNorm (Ba et al. 2016) over the last ``len(normalized_shape)`` axes, like PyTorch.

    :math:`\hat x = (x-\mu)/\sqrt{\sigma^2+\epsilon}` per example; weight, bias have ``normalized_shape``.
    """
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(normalized_shape) :]) != normalized_shape:
        raise ValueError(f"layer_norm: input {x.shape} does not end with normalized_shape {normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    x_hat = (x - mean) / (var + eps).sqrt()
    if weight is not None:
        x_hat = x_hat * weight
    if bias is not None:
        x_hat = x_hat + bias
    return x_hat
