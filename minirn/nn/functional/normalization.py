"""BatchNorm and RobustNorm as pure math, plus the batch-independent norms.

Both batch norms normalise each channel c over the batch and spatial axes
(N, H, W) of x: (N, C, H, W) (or over N for x: (N, C)):

=============  ===============================================  ==============================
               BatchNorm (Ioffe & Szegedy 2015)                 RobustNorm (Awais et al. 2020)
=============  ===============================================  ==============================
centre         :math:`\\mu_B = \\frac1n\\sum_i x_i`               same
scale          :math:`\\sigma_B^2 = \\frac1n\\sum_i (x_i-\\mu_B)^2`  :math:`r_B = \\max_i x_i - \\min_i x_i`
normalise      :math:`\\hat x = (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon}`  :math:`\\hat x = (x-\\mu)/(r^{\\,p}+\\epsilon)`
affine         :math:`y = \\gamma\\hat x + \\beta`                  same
=============  ===============================================  ==============================

Here :math:`n = N H W`.  The functions take the statistics to *use*:
``mean=None`` means "the batch mean :math:`\\mu_B`, differentiated through";
an array means "this fixed estimate" (a running average, no gradient).
Likewise ``var=None`` / ``value_range=None``.  This one switch expresses every
variant of the paper (running vs inference-batch statistics); the layers in
:mod:`minirn.nn.norm` own the running estimates and choose what to pass.

Backward, with :math:`\\hat g = \\gamma\\,g` the gradient w.r.t. :math:`\\hat x`
and sums over the n positions of one channel — BatchNorm, :math:`s = (\\sigma^2+\\epsilon)^{-1/2}`:

.. math::
    \\frac{\\partial L}{\\partial x_i} = s\\,\\hat g_i
      \\;\\underbrace{-\\; \\frac{s}{n}\\sum_j \\hat g_j}_{\\text{if } \\mu = \\mu_B}
      \\;\\underbrace{-\\; \\frac{s^2}{n}\\,(x_i-\\mu_B)\\sum_j \\hat g_j \\hat x_j}_{\\text{if } \\sigma^2 = \\sigma_B^2}

(with both batch statistics this is the familiar
:math:`s(\\hat g_i - \\overline{\\hat g} - \\hat x_i\\overline{\\hat g\\hat x})`).
RobustNorm, :math:`d = r^p + \\epsilon`:

.. math::
    \\frac{\\partial L}{\\partial x_i} = \\frac{\\hat g_i}{d}
      \\;\\underbrace{-\\; \\frac{1}{n d}\\sum_j \\hat g_j}_{\\text{if } \\mu = \\mu_B}
      \\;\\underbrace{-\\; \\frac{p\\,r^{p-1}}{d}\\Big(\\sum_j \\hat g_j \\hat x_j\\Big)
         \\Big(\\frac{[x_i = \\max]}{k_{\\max}} - \\frac{[x_i = \\min]}{k_{\\min}}\\Big)}_{\\text{if } r = r_B}

The range's gradient reaches only the arg-max and arg-min (shared equally by
:math:`k` tied positions).  At :math:`r = 0` (a constant channel)
:math:`\\partial r^p/\\partial r = p\\,r^{p-1}` is infinite; minirn defines it
as 0 there.  Nothing is lost: in a constant channel :math:`\\hat x = 0`, so
the factor :math:`\\sum_j \\hat g_j\\hat x_j` it multiplies is 0 anyway, and no
NaN or inf can leak.  For both norms :math:`\\partial L/\\partial\\gamma = \\sum_i g_i\\hat x_i`
and :math:`\\partial L/\\partial\\beta = \\sum_i g_i`.
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


def _channel_axes(x):
    if x.ndim not in (2, 4):
        raise ValueError(f"expected input of shape (N, C) or (N, C, H, W), got {tuple(x.shape)}")
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v, x):
    """(C,) -> (1, C) or (1, C, 1, 1), to broadcast against x."""
    xp = backend.array_namespace(v)
    return xp.reshape(v, (1, -1) if x.ndim == 2 else (1, -1, 1, 1))


class _BatchStatNorm(Function):
    """Shared bookkeeping of BatchNorm and RobustNorm: axes, counts, the affine map."""

    def _begin(self, x, weight):
        self.axes = _channel_axes(x)
        if weight.shape[0] != x.shape[1]:
            raise ValueError(f"input has {x.shape[1]} channels but the norm expects {weight.shape[0]}")
        self.n = _count(x, self.axes)
        self.weight = weight
        return backend.array_namespace(x, weight)

    def _sums(self, g):
        """The two per-channel sums every gradient needs: :math:`\\sum g = \\partial L/\\partial\\beta`
        and :math:`\\sum g\\hat x = \\partial L/\\partial\\gamma` (kept as (1, C, 1, 1))."""
        return _channel_sums(g), _channel_sums(g, self.x_hat)

    def _affine_grads(self, sum_g, sum_g_x_hat):
        xp = backend.array_namespace(sum_g)
        wants = self.needs_input_grad
        g_weight = xp.reshape(sum_g_x_hat, (-1,)) if wants[1] else None
        g_bias = xp.reshape(sum_g, (-1,)) if wants[2] else None
        return g_weight, g_bias


def _channel_sums(x, y=None):
    """:math:`\\sum x` (or :math:`\\sum x y`) over (N, H, W) per channel, kept as (1, C, 1, 1) / (1, C)."""
    return _per_channel(backend.channel_sums(x, y), x)


def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


class BatchNorm(_BatchStatNorm):
    """:math:`y = \\gamma (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon} + \\beta`; see the module docstring.

    ``mean``/``var``: None for the batch statistic, or a fixed (C,) array.
    """

    def __init__(self, mean=None, var=None, eps=1e-5):
        self.mean, self.var, self.eps = mean, var, eps

    def forward(self, x, weight, bias):
        xp = self._begin(x, weight)
        if self.var is None and self.n < 2:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel to compute batch statistics, "
                f"got input of shape {tuple(x.shape)}"
            )
        self.batch_mean = _channel_sums(x) / self.n                               # mu_B
        mean = self.batch_mean if self.mean is None else _per_channel(self.mean, x)
        self.x_hat = x - mean                                                       # x - mu
        if self.var is None:
            around_batch_mean = self.x_hat if self.mean is None else x - self.batch_mean  # x - mu_B
            self.batch_var = _channel_sums(around_batch_mean, around_batch_mean) / self.n  # sigma_B^2
            var = self.batch_var
        else:
            self.batch_var, var = None, _per_channel(self.var, x)
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)                               # s
        self.x_hat *= self.inv_std                                                  # x_hat = (x - mu) s
        if self.var is None:  # (x - mu_B) s, what the variance's gradient needs
            self.x_hat_batch = self.x_hat if self.mean is None else around_batch_mean * self.inv_std
        y = self.x_hat * _per_channel(weight, x)                                    # y = gamma x_hat + beta
        y += _per_channel(bias, x)  # (in place: y is ours; large temporaries cost time on the CPU)
        return y

    def backward(self, g):
        sum_g, sum_g_x_hat = self._sums(g)
        g_x = None
        if self.needs_input_grad[0]:
            # dL/dx = gamma s [g - (1/n) sum g - (x - mu_B) s (1/n) sum g x_hat]; the two subtracted
            # terms flow through mu_B and sigma_B^2, so they exist only for batch statistics
            scale = _per_channel(self.weight, g) * self.inv_std  # gamma s
            g_x = g * scale  # a new array, updated in place below
            if self.mean is None:
                g_x -= scale * sum_g / self.n
            if self.var is None:
                g_x -= self.x_hat_batch * (scale * sum_g_x_hat / self.n)
        return (g_x, *self._affine_grads(sum_g, sum_g_x_hat))


class RobustNorm(_BatchStatNorm):
    """:math:`y = \\gamma (x-\\mu)/(r^{\\,p}+\\epsilon) + \\beta`; see the module docstring.

    ``mean``/``value_range``: None for the batch statistic, or a fixed (C,) array.
    """

    def __init__(self, mean=None, value_range=None, p=0.2, eps=1e-5):
        self.mean, self.value_range, self.p, self.eps = mean, value_range, p, eps

    def forward(self, x, weight, bias):
        self._begin(x, weight)
        self.batch_mean = _channel_sums(x) / self.n                                # mu_B
        mean = self.batch_mean if self.mean is None else _per_channel(self.mean, x)
        if self.value_range is None:
            self.x_max, self.x_min = (_per_channel(e, x) for e in backend.channel_extrema(x))  # max x, min x
            self.x = x
            self.batch_range = self.x_max - self.x_min                            # r_B = max - min
            r = self.batch_range
        else:
            self.batch_range, r = None, _per_channel(self.value_range, x)
        self.r = r
        self.denominator = r**self.p + self.eps                                    # d = r^p + eps
        self.x_hat = x - mean
        self.x_hat *= 1.0 / self.denominator                                       # x_hat = (x - mu) / d
        y = self.x_hat * _per_channel(weight, x)                                   # y = gamma x_hat + beta
        y += _per_channel(bias, x)
        return y

    def backward(self, g):
        xp = backend.array_namespace(g)
        sum_g, sum_g_x_hat = self._sums(g)
        g_x = None
        if self.needs_input_grad[0]:
            weight = _per_channel(self.weight, g)
            # dL/dx = (gamma/d) [g - (1/n) sum g]  +  dL/dr * dr/dx   (batch statistics only)
            scale = weight / self.denominator  # gamma / d
            g_x = g * scale  # a new array, updated in place below
            if self.mean is None:
                g_x -= scale * sum_g / self.n
            if self.value_range is None:
                # dL/dr = dL/dd * p r^(p-1), with dL/dd = -(gamma/d) sum g x_hat; p r^(p-1) := 0 at r = 0
                positive = self.r > 0
                safe_r = xp.where(positive, self.r, 1.0)
                d_denominator_d_r = xp.where(positive, self.p * safe_r ** (self.p - 1.0), 0.0)
                g_r = -(weight * sum_g_x_hat / self.denominator) * d_denominator_d_r
                # dr/dx = [x = max]/k_max - [x = min]/k_min: only the extreme positions (ties share)
                for extreme, sign in ((self.x_max, 1.0), (self.x_min, -1.0)):
                    at_extreme = xp.astype(self.x == extreme, g.dtype)
                    at_extreme *= sign * g_r / _channel_sums(at_extreme)  # dL/dr * (+-[x = extreme] / k)
                    g_x += at_extreme
        return (g_x, *self._affine_grads(sum_g, sum_g_x_hat))


def _affine_inputs(x, weight, bias):
    """Fill in γ = 1 and β = 0 (constants) when the norm has no affine parameters."""
    reference = x.data if isinstance(x, Tensor) else x
    _channel_axes(reference)  # a clear error for a wrong rank before shape[1] is read
    xp = backend.array_namespace(reference)
    channels = reference.shape[1]
    if weight is None:
        weight = xp.ones((channels,), dtype=reference.dtype, device=reference.device)
    if bias is None:
        bias = xp.zeros((channels,), dtype=reference.dtype, device=reference.device)
    return weight, bias


def _stats(function, *names):
    """The named batch statistics of a finished norm function as (C,) arrays (None if unused)."""
    out = []
    for name in names:
        value = getattr(function, name)
        out.append(None if value is None else backend.array_namespace(value).reshape(value, (-1,)))
    return tuple(out)


def batch_norm(x, weight=None, bias=None, mean=None, var=None, eps=1e-5, return_stats=False):
    """BatchNorm over (N, H, W) per channel.

    x: (N, C, H, W) or (N, C); weight γ, bias β: (C,) tensors or None (γ=1, β=0);
    mean, var: (C,) arrays to use instead of the batch statistics, or None.
    Returns y (same shape as x), or ``(y, batch_mean, batch_var)`` with
    ``return_stats=True`` (biased batch variance; None where not computed).
    """
    function = BatchNorm(mean, var, eps)
    y = function(x, *_affine_inputs(x, weight, bias))
    return (y, *_stats(function, "batch_mean", "batch_var")) if return_stats else y


def robust_norm(x, weight=None, bias=None, mean=None, value_range=None, p=0.2, eps=1e-5, return_stats=False):
    """RobustNorm (Awais et al. 2020) over (N, H, W) per channel.

    x: (N, C, H, W) or (N, C); weight γ, bias β: (C,) tensors or None;
    mean, value_range: (C,) arrays to use instead of the batch mean and range
    :math:`r_B = \\max x - \\min x`, or None; p > 0: the power applied to the range.
    Returns y, or ``(y, batch_mean, batch_range)`` with ``return_stats=True``.
    """
    if not p > 0:
        raise ValueError(f"robust_norm: p must be positive, got {p}")
    function = RobustNorm(mean, value_range, p, eps)
    y = function(x, *_affine_inputs(x, weight, bias))
    return (y, *_stats(function, "batch_mean", "batch_range")) if return_stats else y


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """GroupNorm (Wu & He 2018): normalise each example over groups of C/G channels and (H, W).

    x: (N, C, H, W); :math:`\\hat x = (x - \\mu_{n,g})/\\sqrt{\\sigma^2_{n,g}+\\epsilon}`,
    :math:`y = \\gamma_c \\hat x + \\beta_c`.  Batch-independent: one example's output
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
    """LayerNorm (Ba et al. 2016) over the last ``len(normalized_shape)`` axes, like PyTorch.

    :math:`\\hat x = (x-\\mu)/\\sqrt{\\sigma^2+\\epsilon}` per example; weight, bias have ``normalized_shape``.
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
