"""Geometry of the threat model: per-example norms, steepest-ascent steps, projections, the random start.

x: (N, C, H, W) images, or (N, D) vectors; :math:`\\delta = x' - x`; norms are per example, over
every axis but the first.  The feasible set is the ε-ball around x intersected with the box [lo, hi]:

* :math:`\\Pi_{\\infty}` (``project_linf``) clips to :math:`[x-\\epsilon, x+\\epsilon]`, then to the box;
* :math:`\\Pi_2` is either "ball then box" (scale :math:`\\delta` onto the ball, then clip;
  the standard choice, feasible but not always the nearest point) or the exact Euclidean
  projection onto ball ∩ box, found by bisection (:func:`project_l2_exact`).
"""
from __future__ import annotations

from minirn import backend


def per_example(v, ndim):
    """(N,) -> (N, 1, ..., 1) to broadcast against an (N, ...) array."""
    return backend.array_namespace(v).reshape(v, (v.shape[0],) + (1,) * (ndim - 1))


def norm_per_example(a, norm):
    """‖a_n‖ over all axes but the first: ``"linf"``, ``"l2"`` or ``"l1"``; a: (N, ...) -> (N,)."""
    xp = backend.array_namespace(a)
    flat = xp.reshape(a, (a.shape[0], -1))
    if norm == "linf":
        return xp.max(xp.abs(flat), axis=1)
    if norm == "l1":
        return xp.sum(xp.abs(flat), axis=1)
    return xp.sqrt(xp.sum(flat * flat, axis=1))


def steepest_ascent(grad, norm):
    """The unit-norm ascent direction: sign(g) for L∞, :math:`g/\\max(\\|g\\|_2, 10^{-12})` for L2."""
    xp = backend.array_namespace(grad)
    if norm == "linf":
        return xp.sign(grad)
    return grad / per_example(xp.clip(norm_per_example(grad, "l2"), 1e-12, None), grad.ndim)


def clip_box(x_adv, low, high):
    return backend.array_namespace(x_adv).clip(x_adv, low, high)


def project_linf(x_adv, x, eps, low, high):
    """:math:`\\mathrm{clip}_{[lo,hi]}(\\mathrm{clip}_{[x-\\epsilon, x+\\epsilon]}(x'))`; x, x': (N, ...)."""
    xp = backend.array_namespace(x)
    return clip_box(xp.minimum(xp.maximum(x_adv, x - eps), x + eps), low, high)


def project_l2_ball_then_box(x_adv, x, eps, low, high):
    """Scale :math:`\\delta` onto the ball, :math:`\\delta \\min(1, \\epsilon/\\|\\delta\\|_2)`, then clip to the box.

    Clipping (with x inside the box) only shrinks each :math:`|\\delta_i|`, so the
    result stays in the ball; it is not always the nearest point of ball ∩ box.
    """
    xp = backend.array_namespace(x)
    delta = x_adv - x
    length = norm_per_example(delta, "l2")
    factor = xp.minimum(xp.ones_like(length), eps / xp.clip(length, 1e-12, None))
    return clip_box(x + delta * per_example(factor, x.ndim), low, high)


def project_l2_exact(x_adv, x, eps, low, high, iterations=40):
    """The Euclidean projection of x' onto :math:`\\{z : \\|z-x\\|_2 \\le \\epsilon,\\ lo \\le z \\le hi\\}`.

    The constraints separate per coordinate once the ball gets a Lagrange multiplier
    :math:`\\lambda \\ge 0`: minimising :math:`\\tfrac12\\|z-x'\\|^2 + \\tfrac\\lambda2\\|z-x\\|^2` over the box gives

    .. math:: z(t) = \\mathrm{clip}_{[lo,hi]}\\big(x + t\\,(x'-x)\\big), \\qquad t = 1/(1+\\lambda) \\in (0, 1].

    :math:`\\|z(t)-x\\|_2` grows with t, so bisection finds the largest feasible t
    (t = 1 when the clipped point is already in the ball).  Per example; x, x': (N, ...).
    """
    xp = backend.array_namespace(x)
    delta = x_adv - x
    n = x.shape[0]

    def radius(t):
        return norm_per_example(clip_box(x + delta * per_example(t, x.ndim), low, high) - x, "l2")

    ones = xp.ones((n,), dtype=x.dtype, device=x.device)
    t_low = xp.where(radius(ones) <= eps, ones, xp.zeros_like(ones))
    t_high = ones
    for _ in range(iterations):
        middle = (t_low + t_high) / 2.0
        inside = radius(middle) <= eps
        t_low, t_high = xp.where(inside, middle, t_low), xp.where(inside, t_high, middle)
    return clip_box(x + delta * per_example(t_low, x.ndim), low, high)


def project(x_adv, x, eps, low, high, norm, projection="ball_then_box"):
    """:math:`\\Pi` onto the ε-ball of ``norm`` around x intersected with the box [low, high]."""
    if norm == "linf":
        return project_linf(x_adv, x, eps, low, high)
    if projection == "exact":
        return project_l2_exact(x_adv, x, eps, low, high)
    return project_l2_ball_then_box(x_adv, x, eps, low, high)


def random_start(x, eps, norm, generator, low, high):
    """x + δ with δ uniform in the ε-ball (then clipped to the box).

    L∞: :math:`\\delta_i \\sim U(-\\epsilon, \\epsilon)`.  L2, truly uniform in the d-dimensional ball:
    :math:`\\delta = \\epsilon\\, u^{1/d}\\, g/\\|g\\|_2` with :math:`g \\sim N(0, I_d)`, :math:`u \\sim U(0, 1)`
    (a Gaussian direction alone, or a radius :math:`\\epsilon u` without the power 1/d,
    crowds the points near the centre).  x: (N, ...), d = x[0].size.
    """
    device, dtype = backend.device_of(x), backend.dtype_name(x.dtype)
    if norm == "linf":
        delta = backend.uniform(generator, tuple(x.shape), -eps, eps, dtype=dtype, device=device)
    else:
        d = 1
        for size in x.shape[1:]:
            d *= size
        g = backend.normal(generator, tuple(x.shape), dtype=dtype, device=device)
        u = backend.uniform(generator, (x.shape[0],), dtype=dtype, device=device)
        xp = backend.array_namespace(x)
        radius = eps * u ** (1.0 / d) / xp.clip(norm_per_example(g, "l2"), 1e-12, None)
        delta = g * per_example(radius, x.ndim)
    return clip_box(x + delta, low, high)
