"""minirn/attacks/losses.py: cross-entropy, the CW margin and DLR against NumPy references of their formulas.

The references below are written from the equations (Croce & Hein 2020, Section 3.2; Carlini &
Wagner 2017), with NumPy's sort and arg-max, not from the module's gathers.
"""
import numpy as np
import pytest

from minirn import attacks, backend, nn
from minirn.attacks import losses, objective
from tests.attacks import images, labels, tiny_cnn
from tests.conftest import make_tensor, to_numpy


# --- NumPy references ------------------------------------------------------------------------------
def ref_cross_entropy(z, y):
    top = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - top).sum(axis=1)) + top[:, 0] - z[np.arange(len(y)), y]


def ref_best_other(z, y):
    masked = z.copy()
    masked[np.arange(len(y)), y] = -np.inf
    return masked.max(axis=1)


def ref_margin(z, y, targeted=False):
    own = z[np.arange(len(y)), y]
    return own - ref_best_other(z, y) if targeted else ref_best_other(z, y) - own


def ref_dlr(z, y):
    s = -np.sort(-z, axis=1)   # decreasing
    return -(z[np.arange(len(y)), y] - ref_best_other(z, y)) / (s[:, 0] - s[:, 2] + 1e-12)


def ref_dlr_targeted(z, t, y):
    s = -np.sort(-z, axis=1)
    rows = np.arange(len(t))
    return -(z[rows, y] - z[rows, t]) / (s[:, 0] - 0.5 * (s[:, 2] + s[:, 3]) + 1e-12)


def random_logits(n=6, k=5, seed=0, scale=2.0):
    g = np.random.default_rng(seed)
    return g.normal(0, scale, (n, k)), g.integers(0, k, n)


def loss_value(function, z, y, device="cpu", **kwargs):
    return to_numpy(function(make_tensor(z, device), backend.to_device(y, device), **kwargs).data)


# --- values ----------------------------------------------------------------------------------------
VALUE_CASES = {
    "ce": (losses.cross_entropy, {}, lambda z, y: ref_cross_entropy(z, y)),
    "ce_targeted": (losses.cross_entropy, {"targeted": True}, lambda z, y: -ref_cross_entropy(z, y)),
    "margin": (losses.margin, {}, lambda z, y: ref_margin(z, y)),
    "margin_targeted": (losses.margin, {"targeted": True}, lambda z, y: ref_margin(z, y, targeted=True)),
    "margin_kappa": (losses.margin, {"kappa": 0.5}, lambda z, y: np.minimum(ref_margin(z, y), 0.5)),
    "dlr": (losses.dlr, {}, ref_dlr),
}


@pytest.mark.parametrize("name", list(VALUE_CASES))
def test_loss_values_match_the_formula(name, device):
    function, kwargs, reference = VALUE_CASES[name]
    z, y = random_logits()
    np.testing.assert_allclose(loss_value(function, z, y, device, **kwargs), reference(z, y), rtol=1e-12, atol=1e-12)


def test_kappa_actually_clamps_some_examples():
    """The margin_kappa case above is only a test if some margins exceed κ and some do not."""
    z, y = random_logits()
    m = ref_margin(z, y)
    assert np.any(m > 0.5) and np.any(m < 0.5)


def test_targeted_dlr_matches_the_formula(device):
    z, t = random_logits(seed=1)
    y = (t + 1) % z.shape[1]
    value = loss_value(losses.dlr, z, t, device, targeted=True, true_labels=backend.to_device(y, device))
    np.testing.assert_allclose(value, ref_dlr_targeted(z, t, y), rtol=1e-12)


@pytest.mark.parametrize("loss", ["ce", "margin", "dlr"])
@pytest.mark.parametrize("targeted", [False, True])
def test_attack_loss_dispatches_by_name(loss, targeted):
    z, y = random_logits(seed=2)
    direct = {"ce": losses.cross_entropy, "margin": losses.margin, "dlr": losses.dlr}[loss]
    np.testing.assert_array_equal(loss_value(losses.attack_loss, z, y, targeted=targeted, loss=loss),
                                  loss_value(direct, z, y, targeted=targeted))


def test_unknown_loss_is_refused():
    z, y = random_logits()
    for function in (losses.check_loss, lambda name: losses.attack_loss(make_tensor(z, "cpu"), y, loss=name)):
        with pytest.raises(ValueError, match="unknown loss 'hinge'"):
            function("hinge")


def test_best_other_class_skips_the_label_and_breaks_ties_by_the_first_index():
    z = np.array([[5.0, 1.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-1.0, -2.0, -3.0, -4.0]])
    y = np.array([0, 0, 0])
    assert losses.best_other_class(z, y).tolist() == [2, 1, 1]


# --- gradients ------------------------------------------------------------------------------------
GRADIENT_CASES = {
    "margin": (losses.margin, {}),
    "margin_targeted": (losses.margin, {"targeted": True}),
    "dlr": (losses.dlr, {}),
    "dlr_targeted": (losses.dlr, {"targeted": True}),
}


@pytest.mark.parametrize("name", list(GRADIENT_CASES))
def test_gradient_matches_finite_differences(name):
    """Central differences of Σ_n u_n J_n with a random upstream u (not a plain sum)."""
    function, kwargs = GRADIENT_CASES[name]
    z, y = random_logits(seed=3)
    u = np.random.default_rng(4).normal(size=len(y))
    zt = make_tensor(z, "cpu", requires_grad=True)
    (function(zt, y, **kwargs) * make_tensor(u, "cpu")).sum().backward()

    def f(values):
        return float(u @ loss_value(function, values, y, **kwargs))

    numeric = np.zeros_like(z)
    h = 1e-6
    for index in np.ndindex(*z.shape):
        step = np.zeros_like(z)
        step[index] = h
        numeric[index] = (f(z + step) - f(z - step)) / (2 * h)
    np.testing.assert_allclose(to_numpy(zt.grad), numeric, rtol=1e-6, atol=1e-8)


def saturated_model(lead=40.0, d=8, k=3):
    """A float32 linear model whose logit for class 0 leads the others by ``lead`` at every input in [0, 1]."""
    g = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    weight = g.normal(0, 1, (k, d)).astype("float32")
    model[1].weight.data = backend.to_device(weight, "cpu")
    model[1].bias.data = backend.to_device(np.array([lead] + [0.0] * (k - 1), dtype="float32"), "cpu")
    return model, weight


def test_margin_gradient_survives_a_saturated_softmax_where_cross_entropy_vanishes():
    """At a logit lead of 40 the float32 softmax is one-hot: CE's input gradient is (almost) nothing, the
    margin's is w_{j*} - w_y, full size."""
    model, weight = saturated_model()
    x = backend.to_device(np.random.default_rng(1).uniform(0.4, 0.6, (4, 1, 2, 4)).astype("float32"), "cpu")
    y = backend.to_device(np.zeros(4, dtype="int64"), "cpu")
    logits = to_numpy(objective.logits_of(model, x))
    lead = logits[:, 0] - np.sort(logits, axis=1)[:, -2]
    assert np.all(lead > 38)    # saturated indeed

    grads = {loss: to_numpy(objective.input_gradient(model, x, y, False, loss)[0]).reshape(4, -1)
             for loss in ("ce", "margin", "dlr")}
    assert np.abs(grads["ce"]).max() < 1e-6
    other = np.argsort(logits, axis=1)[:, -2]
    np.testing.assert_allclose(grads["margin"], weight[other] - weight[0], rtol=1e-5, atol=1e-6)
    assert np.abs(grads["margin"]).max(axis=1).min() > 0.1
    # DLR: the margin's direction divided by the spread z_π1 - z_π3 (about the lead): smaller, but not vanishing
    assert np.abs(grads["dlr"]).max(axis=1).min() > 1e-3


def test_l2_margin_pgd_moves_a_saturated_example_that_l2_ce_pgd_cannot():
    """Through an attack: the L2 step g/max(‖g‖, 1e-12) is tiny when ‖g‖ is ~1e-17, full when it is ~1."""
    model, _ = saturated_model()
    x = backend.to_device(np.full((4, 1, 2, 4), 0.5, dtype="float32"), "cpu")
    y = backend.to_device(np.zeros(4, dtype="int64"), "cpu")
    moved = {}
    for loss in ("ce", "margin"):
        x_adv = attacks.pgd(model, x, y, 0.3, 0.1, 5, norm="l2", random_start=False, loss=loss)
        moved[loss] = np.linalg.norm((to_numpy(x_adv) - to_numpy(x)).reshape(4, -1), axis=1)
    assert moved["ce"].max() < 1e-3
    np.testing.assert_allclose(moved["margin"], 0.3, rtol=1e-5)   # on the boundary of the ball


# --- DLR's properties --------------------------------------------------------------------------------
@pytest.mark.parametrize("scale, shift", [(1.0, 7.0), (3.0, 0.0), (0.01, -2.0), (1000.0, 50.0)])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_dlr_is_invariant_to_shifting_and_scaling_the_logits(scale, shift, targeted):
    """J(a z + b) = J(z) for a > 0 (Croce & Hein 2020): no logit scale hides the model."""
    z, y = random_logits(seed=5)
    kwargs = {"targeted": True, "true_labels": (y + 1) % z.shape[1]} if targeted else {}
    np.testing.assert_allclose(loss_value(losses.dlr, scale * z + shift, y, **kwargs),
                               loss_value(losses.dlr, z, y, **kwargs), rtol=1e-8)


def test_cross_entropy_and_margin_are_not_scale_invariant():
    """The contrast that makes the DLR property meaningful."""
    z, y = random_logits(seed=5)
    for function in (losses.cross_entropy, losses.margin):
        assert np.abs(loss_value(function, 3.0 * z, y) - loss_value(function, z, y)).max() > 0.1


def test_targeted_dlr_without_true_labels_uses_the_top_non_target_class():
    """Without true labels z_y is max_{j≠t} z_j: the same value when the true class is that top class."""
    z, t = random_logits(n=8, seed=6)
    top_other = np.argmax(np.where(np.arange(z.shape[1]) == t[:, None], -np.inf, z), axis=1)
    with_labels = loss_value(losses.dlr, z, t, targeted=True, true_labels=top_other)
    np.testing.assert_allclose(loss_value(losses.dlr, z, t, targeted=True), with_labels, rtol=1e-12)
    # another true class gives another value: the agreement above is not a coincidence of the formula
    elsewhere = np.array([next(c for c in range(z.shape[1]) if c not in (a, b)) for a, b in zip(t, top_other)])
    differs = loss_value(losses.dlr, z, t, targeted=True, true_labels=elsewhere)
    assert np.all(np.abs(differs - with_labels) > 1e-6)


@pytest.mark.parametrize("k, targeted", [(2, False), (3, True), (2, True)])
def test_dlr_needs_enough_classes(k, targeted):
    z, y = random_logits(k=k)
    with pytest.raises(ValueError, match=f"at least {4 if targeted else 3} classes, got {k}"):
        losses.dlr(make_tensor(z, "cpu"), y, targeted=targeted)


@pytest.mark.parametrize("k, targeted", [(3, False), (4, True)])
def test_dlr_accepts_the_smallest_class_count(k, targeted):
    z, y = random_logits(k=k)
    assert np.all(np.isfinite(loss_value(losses.dlr, z, y, targeted=targeted)))


# --- the loss option of the gradient attacks -----------------------------------------------------------
@pytest.mark.parametrize("attack", [
    lambda m, x, y, loss: attacks.fgsm(m, x, y, 0.1, loss=loss),
    lambda m, x, y, loss: attacks.bim(m, x, y, 0.1, 0.03, 2, loss=loss),
    lambda m, x, y, loss: attacks.mim(m, x, y, 0.1, 0.03, 2, loss=loss),
    lambda m, x, y, loss: attacks.pgd(m, x, y, 0.1, 0.03, 2, loss=loss, seed=0),
    lambda m, x, y, loss: attacks.apgd(m, x, y, 0.1, 2, loss=loss, seed=0),
], ids=["fgsm", "bim", "mim", "pgd", "apgd"])
def test_gradient_attacks_take_a_loss_by_name(attack):
    model, x, y = tiny_cnn("bn").eval(), images(4), labels(4)
    results = {loss: to_numpy(attack(model, x, y, loss)) for loss in ("ce", "margin", "dlr")}
    # the option changes the objective ...
    assert np.abs(results["margin"] - results["ce"]).max() > 0 and np.abs(results["dlr"] - results["ce"]).max() > 0
    with pytest.raises(ValueError, match="unknown loss"):        # ... and is validated
        attack(model, x, y, "hinge")
