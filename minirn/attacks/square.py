"""The Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): random search, no gradients.

Square asks the model only for its logits.  It starts from vertical stripes of ±ε and then,
query after query, proposes to redraw one random square window of the perturbation with a
fresh sign per channel, keeping the proposal for an example only if it lowers that example's
margin.  Because it never looks at a gradient, a model that *hides* its gradients (saturated
softmax, shattered or zero gradients, randomness) does not fool it: if Square finds clearly more
adversarial examples than the gradient attacks, the gradients are masked
(:func:`~minirn.attacks.sanity.sanity_checks`, ``gradient_free_not_stronger``).

L∞ version (Algorithm 1 of the paper, with the authors' schedule):

* start: :math:`x^0 = \\mathrm{clip}(x + \\epsilon\\,\\sigma)`, σ ∈ {−1, +1} drawn per (channel, column) and
  repeated down the rows;
* query i: a window of side :math:`s_i = \\max(\\mathrm{round}(\\sqrt{p_i H W}), 1)` at a uniform random
  position, per example; inside it :math:`x^{new} = \\Pi(x^{best} + 2\\epsilon\\,\\sigma_c)` with one sign
  per channel (so the window's perturbation becomes ±ε), outside it unchanged;
* :math:`p_i` is the share of pixels changed: ``p_init`` (0.8) halved at 10, 50, 200, 500, 1000, 2000,
  4000, 6000 and 8000 queries of a 10 000-query budget (rescaled to ``queries``; :func:`square_fraction`);
* accept per example when its margin objective rises (see :func:`~minirn.attacks.losses.margin`) or
  it becomes misclassified; examples already fooled are left alone.

The whole fixed batch is queried each time, so models with batch statistics are attacked and
judged on the batch they are evaluated on.  (The paper also redraws a proposal that would leave
the window unchanged; here such a proposal just spends its query.)
"""
from __future__ import annotations

import math

from minirn import backend
from minirn.attacks import checks, geometry, losses, objective
from minirn.autograd.tensor import Tensor

#: The square-size schedule of the authors' code: the share p is halved after each of these
#: query counts (out of 10 000).
HALVING_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(query, queries, p_init=0.8):
    """:math:`p_i`: the share of the image a square covers at query ``query`` of ``queries``."""
    scaled = int(query / queries * 10000)
    halvings = sum(1 for point in HALVING_POINTS if scaled > point)
    return p_init / 2**halvings


def square(model, x, y, eps, queries=5000, *, p_init=0.8, norm="linf", targeted=False, clip=(0.0, 1.0), seed=None):
    """Square Attack, L∞, with the margin loss and a budget of ``queries`` forward passes.

    x: (N, C, H, W) array or Tensor in ``clip`` (images: the squares live on the last two axes);
    y: (N,) labels (targets when ``targeted``).  eps: L∞ budget.  seed: int, Generator or None;
    one seed gives the same result on every device.  Returns x' with the kind, shape and dtype of x.
    """
    x, labels, was_tensor, (low, high) = checks.prepare("square", x, y, clip, eps, None, None, norm)
    queries = checks.check_int("square: queries", queries)
    if norm != "linf":
        raise ValueError("square: only norm='linf' is implemented")
    if x.ndim != 4:
        raise ValueError(f"square: x must be images of shape (N, C, H, W), got {tuple(x.shape)}")
    checks.check_number("square: p_init", p_init, positive=True)
    if not p_init <= 1:
        raise ValueError(f"square: p_init must be in (0, 1], got {p_init}")
    if eps == 0:
        return checks.finish(checks.copy(x), was_tensor)
    xp = backend.array_namespace(x)
    generator = backend.rng(seed)
    n, c, h, w = x.shape
    device, dtype = backend.device_of(x), backend.dtype_name(x.dtype)

    def signs(shape):
        u = backend.uniform(generator, shape, dtype=dtype, device=device)
        return xp.where(u < 0.5, -xp.ones_like(u), xp.ones_like(u))

    def margin_at(point):
        logits = objective.logits_of(model, point)
        j = losses.margin(Tensor(logits), labels, targeted).data
        return j, objective.succeeded(logits, labels, targeted)

    rows = xp.reshape(xp.arange(h, device=x.device), (1, 1, h, 1))
    cols = xp.reshape(xp.arange(w, device=x.device), (1, 1, 1, w))
    with objective.model_untouched(model):
        x_best = geometry.clip_box(x + eps * signs((n, c, 1, w)), low, high)
        j_best, found = margin_at(x_best)
        for query in range(1, queries):
            if not bool(xp.any(~found)):
                break
            side = min(max(int(round(math.sqrt(square_fraction(query, queries, p_init) * h * w))), 1), h, w)
            top = _random_offsets(generator, n, h - side + 1, device, xp)
            left = _random_offsets(generator, n, w - side + 1, device, xp)
            window = ((rows >= top) & (rows < top + side)) & ((cols >= left) & (cols < left + side))
            proposal = geometry.project_linf(x_best + 2.0 * eps * signs((n, c, 1, 1)), x, eps, low, high)
            active = geometry.per_example(~found, 4)
            x_new = xp.where(window & active, proposal, x_best)
            j_new, success_new = margin_at(x_new)
            accept = ~found & ((j_new > j_best) | success_new)
            x_best = xp.where(geometry.per_example(accept, 4), x_new, x_best)
            j_best = xp.where(accept, j_new, j_best)
            found = found | (accept & success_new)
    return checks.finish(x_best, was_tensor)


def _random_offsets(generator, n, count, device, xp):
    """(N, 1, 1, 1) integers uniform in [0, count): one window corner coordinate per example."""
    u = backend.uniform(generator, (n,), dtype="float64", device=device)
    offsets = xp.clip(xp.astype(xp.floor(u * count), xp.int64), 0, count - 1)
    return xp.reshape(offsets, (n, 1, 1, 1))
