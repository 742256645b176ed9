"""The objectives an attack can ascend: cross-entropy, the CW margin and the DLR loss.

Every loss maps logits z: (N, K) and labels (N,) to a per-example objective J: (N,) that
the attacker *maximises*; an example is fooled once :math:`\\arg\\max_j z_j \\ne y`.
With ``targeted=True`` the labels are the targets t and J rises as z_t overtakes the rest.

=========  ==========================================================  =====================================
``loss``   untargeted J                                                 targeted J (labels = targets t)
=========  ==========================================================  =====================================
``"ce"``   :math:`\\ell_{CE}(z, y) = \\log\\sum_j e^{z_j} - z_y`           :math:`-\\ell_{CE}(z, t)`
``"margin"`` :math:`\\max_{j \\ne y} z_j - z_y` (clamped at κ if given)    :math:`z_t - \\max_{j \\ne t} z_j`
``"dlr"``  :math:`-\\dfrac{z_y - \\max_{j\\ne y} z_j}{z_{\\pi_1} - z_{\\pi_3} + 10^{-12}}`
                                                                        :math:`-\\dfrac{z_y - z_t}{z_{\\pi_1} - \\tfrac12(z_{\\pi_3} + z_{\\pi_4}) + 10^{-12}}`
=========  ==========================================================  =====================================

(π sorts the logits in decreasing order, so :math:`z_{\\pi_1}` is the largest.)

**Why the margin losses do not saturate.**  The cross-entropy's gradient with respect to the
logits is :math:`\\mathrm{softmax}(z) - e_y`; once the model is confident, :math:`p_y \\to 1` and the
whole gradient shrinks like :math:`e^{-(z_y - \\max_{j\\ne y} z_j)}`, until, through the network's
float32 backward pass, it underflows and the attack stops moving.  The margin's gradient is
:math:`e_{j^*} - e_y` (j* the best other class) whatever the confidence, and DLR's is the same
divided by the spread of the top logits: both give a full-size direction at every point.
DLR is also invariant to shifting and rescaling the logits (Croce & Hein 2020), so a model
cannot hide behind large or small logit scales.

The differentiable pieces are *gathers*: :math:`z_{n, c_n}` for class indices c chosen on the
data (``argsort``/``argmax``, not differentiated), so the gradient reaches exactly the logits
the formula names (for ties: the first index in the sort, like ``torch.max``).
"""
from __future__ import annotations

from minirn import backend
from minirn.nn import functional as F

LOSSES = ("ce", "margin", "dlr")

#: DLR's guard against a zero spread of the top logits (Croce & Hein 2020).
DLR_EPS = 1e-12


def check_loss(loss):
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected 'ce', 'margin' or 'dlr'")
    return loss


def logit_of(logits, classes):
    """:math:`z_{n, c_n}`: one logit per example, as a (N,) Tensor the gradient flows through."""
    return F.sum(logits * F.one_hot(classes, logits.shape[1], logits.dtype), axis=1)


def _without_label(z, labels):
    """z with each row's label entry replaced by the row's minimum minus one (not -inf, which some
    array libraries' arg-max mishandles), so that no ranking ever picks it."""
    xp = backend.array_namespace(z)
    is_label = labels[:, None] == xp.arange(z.shape[1], device=z.device)[None, :]
    return xp.where(is_label, xp.min(z, axis=1, keepdims=True) - 1.0, z)


def best_other_class(z, labels):
    """:math:`\\arg\\max_{j \\ne y_n} z_{nj}` on the data z: (N, K) -> (N,) class indices."""
    return backend.array_namespace(z).argmax(_without_label(z, labels), axis=1)


def ranked_other_classes(z, labels):
    """The classes other than y_n by decreasing logit: (N, K) -> (N, K); column K-1 is y_n itself."""
    return ranked_classes(_without_label(z, labels))


def ranked_classes(z):
    """Class indices by decreasing logit, π: (N, K) -> (N, K); ``[:, 0]`` is the top class."""
    return backend.array_namespace(z).argsort(z, axis=1, descending=True, stable=True)


def cross_entropy(logits, labels, targeted=False):
    """:math:`J = \\ell_{CE}(z, y)`, or :math:`-\\ell_{CE}(z, t)` when targeted.  (N, K) -> (N,)."""
    losses = F.cross_entropy(logits, labels, reduction="none")
    return -losses if targeted else losses


def margin(logits, labels, targeted=False, kappa=None):
    """The Carlini–Wagner margin: :math:`J = \\max_{j\\ne y} z_j - z_y` (untargeted) or
    :math:`J = z_t - \\max_{j\\ne t} z_j` (targeted); J > 0 exactly when the attack has succeeded.

    ``kappa`` (optional, ≥ 0) clamps the objective at :math:`\\min(J, \\kappa)`: the attacker stops
    pushing an example once it is misclassified with margin κ (CW's :math:`\\max(\\cdot, -\\kappa)`
    seen from the attacker's side).  (N, K) -> (N,).
    """
    other = logit_of(logits, best_other_class(logits.data, labels))
    own = logit_of(logits, labels)
    j = own - other if targeted else other - own
    return j if kappa is None else F.clip(j, None, float(kappa))


def dlr(logits, labels, targeted=False, true_labels=None):
    """The difference-of-logits-ratio loss (Croce & Hein 2020, Section 3.2). (N, K) -> (N,).

    Untargeted (K ≥ 3): :math:`J = -(z_y - \\max_{j\\ne y} z_j) / (z_{\\pi_1} - z_{\\pi_3} + 10^{-12})`.

    Targeted (K ≥ 4; labels = targets t):
    :math:`J = -(z_y - z_t) / (z_{\\pi_1} - \\tfrac12(z_{\\pi_3} + z_{\\pi_4}) + 10^{-12})` with y the
    ``true_labels``; without them :math:`z_y` is replaced by :math:`\\max_{j\\ne t} z_j` (the same
    while the true class leads the other classes).
    """
    k = logits.shape[1]
    if k < (4 if targeted else 3):
        raise ValueError(f"the {'targeted ' if targeted else ''}DLR loss needs at least "
                         f"{4 if targeted else 3} classes, got {k}")
    ranked = ranked_classes(logits.data)
    top, third = logit_of(logits, ranked[:, 0]), logit_of(logits, ranked[:, 2])
    if not targeted:
        other = logit_of(logits, best_other_class(logits.data, labels))
        return (other - logit_of(logits, labels)) / (top - third + DLR_EPS)
    reference = true_labels if true_labels is not None else best_other_class(logits.data, labels)
    fourth = logit_of(logits, ranked[:, 3])
    return (logit_of(logits, labels) - logit_of(logits, reference)) / (top - (third + fourth) * 0.5 + DLR_EPS)


def attack_loss(logits, labels, targeted=False, loss="ce", kappa=None):
    """The objective named ``loss`` (see the module table); ``kappa`` applies to ``"margin"`` only."""
    if loss == "ce":
        return cross_entropy(logits, labels, targeted)
    if loss == "margin":
        return margin(logits, labels, targeted, kappa)
    if loss == "dlr":
        return dlr(logits, labels, targeted)
    raise ValueError(f"unknown loss {loss!r}; expected 'ce', 'margin' or 'dlr'")
