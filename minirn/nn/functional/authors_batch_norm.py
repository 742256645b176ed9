r"""The authors' BatchNorm: the function their trained networks compute, beside the standard one.

The authors' code (https://github.com/awaisrauf/RobustNorm, ``models/norm.py``, class ``BatchNorm``)
does not call PyTorch's BatchNorm; it writes its own, which differs from Ioffe & Szegedy's in two places:

* batch variance: biased, :math:`\frac1n\sum_i (x_i-\mu_B)^2`, in the standard
  :class:`~minirn.nn.functional.normalization.BatchNorm`; *unbiased*,
  :math:`\frac1{n-1}\sum_i (x_i-\mu_B)^2`, in theirs (PyTorch's ``Tensor.var`` default);
* denominator: :math:`\sqrt{\sigma^2+\epsilon}` in the standard one; :math:`\sqrt{\sigma^2}+\epsilon`
  (ε outside the root) in theirs;
* the running estimate is the same in both: a moving average of the unbiased variance, ``running_var``.

So a network trained with their code computes a slightly different function from minirn's
BatchNorm2d with the same weights; ``BatchNorm2d(formula="authors")`` computes theirs, and
``minirn convert --from authors`` selects it.  docs/paper_map.md lists both.

Built from differentiable primitives (mean, var, sqrt, division), like
:func:`~minirn.nn.functional.group_norm`: its gradient is the chain rule through them.  Written
out, with :math:`g_i = \partial L/\partial y_i`, :math:`\hat g_i = \gamma g_i`, :math:`\sigma` the
standard deviation used and :math:`d = \sigma + \epsilon`, over the channel's n positions:

.. math::
    \frac{\partial L}{\partial x_i} = \frac{\hat g_i}{d}
      \;\underbrace{-\; \frac{1}{n d}\sum_j \hat g_j}_{\text{if } \mu = \mu_B}
      \;\underbrace{-\; \frac{x_i-\mu_B}{(n-1)\,\sigma\, d}\sum_j \hat g_j \hat x_j}_{\text{if } \sigma^2 = \sigma_B^2},
    \qquad
    \frac{\partial L}{\partial \gamma} = \sum_i g_i\hat x_i, \qquad
    \frac{\partial L}{\partial \beta} = \sum_i g_i,

since :math:`\partial d/\partial \sigma^2 = 1/(2\sigma)` and
:math:`\partial \sigma^2_B/\partial x_i = 2(x_i-\mu_B)/(n-1)`.  tests/nn/functional/test_authors_batch_norm.py
checks it numerically along a random direction.
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Tensor


def authors_batch_norm(x, weight=None, bias=None, mean=None, var=None, eps=1e-5, return_stats=False):
    r"""The authors' BatchNorm over (N, H, W) per channel:

    .. math::
        \mu_B = \frac1n\sum_i x_i, \quad
        \sigma_B^2 = \frac1{n-1}\sum_i (x_i-\mu_B)^2, \quad
        \hat x_i = \frac{x_i-\mu}{\sqrt{\sigma^2}+\epsilon}, \quad
        y_i = \gamma\,\hat x_i + \beta,

    where :math:`\mu` is :math:`\mu_B` or the fixed ``mean`` and :math:`\sigma^2` is
    :math:`\sigma_B^2` or the fixed ``var`` (their ``running_var``).

    x: (N, C, H, W) or (N, C) Tensor; weight γ, bias β: (C,) tensors or None (γ = 1, β = 0);
    mean, var: (C,) arrays to use instead of the batch statistics, or None.
    Returns y (the shape of x), or ``(y, batch_mean, batch_var)`` with ``return_stats=True``
    (the *unbiased* batch variance, which their running average tracks; (C,) arrays, None where not computed).
    """
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"expected input of shape (N, C) or (N, C, H, W), got {tuple(x.shape)}")
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    view = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    n = 1
    for a in axes:
        n *= x.shape[a]
    if var is None and n < 2:
        raise ValueError(f"authors_batch_norm: the unbiased variance needs more than 1 value per channel, "
                         f"got input of shape {tuple(x.shape)}")
    xp = backend.array_namespace(x.data)
    batch_mean = x.mean(axis=axes, keepdims=True)                                     # mu_B
    mu = batch_mean if mean is None else xp.reshape(mean, view)                       # mu
    batch_var = x.var(axis=axes, keepdims=True, correction=1) if var is None else None  # sigma_B^2 (unbiased)
    sigma_squared = batch_var if var is None else xp.reshape(var, view)                # sigma^2
    std = sigma_squared.sqrt() if isinstance(sigma_squared, Tensor) else xp.sqrt(sigma_squared)  # sqrt(sigma^2)
    x_hat = (x - mu) / (std + eps)                                                    # x_hat = (x - mu) / (sigma + eps)
    y = x_hat
    if weight is not None:
        y = y * weight.reshape(view)                                                  # gamma x_hat
    if bias is not None:
        y = y + bias.reshape(view)                                                    # + beta
    if not return_stats:
        return y
    stats = [None if s is None else xp.reshape(s.data, (-1,)) for s in (batch_mean, batch_var)]
    return (y, *stats)
