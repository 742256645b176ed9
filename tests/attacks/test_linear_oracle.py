"""Attacks on a 2-class linear model against closed-form answers.

For logits z = W x + b with two classes, the margin of example n is
m(x) = w_n · x + c_n with w_n = W_{y_n} - W_{1-y_n}.  The cross-entropy gradient is
-(1 - p_{y_n}) w_n, so every gradient step moves along -sign(w_n) (L∞) or -w_n/‖w_n‖ (L2), and
while no pixel hits the [0, 1] box the best perturbation of budget ε lowers the margin by exactly

    ε ‖w_n‖₁ (L∞)        ε ‖w_n‖₂ (L2)

and the smallest L2 perturbation that flips the class has length m(x) / ‖w_n‖₂.
The images lie in [0.3, 0.7] and ε ≤ 0.1, so the box never interferes.  The last section (APGD, APGD-T, Square)
uses images filling [0, 1], where the L∞ optimum is the corner of the ε-box clipped to [0, 1].
"""
import numpy as np
import pytest

import minirn
from minirn import attacks, backend, nn
from minirn.attacks import geometry, losses
from minirn.attacks.apgd import apgd_run
from tests.conftest import to_numpy

D = 16
EPS = 0.08


def linear_model(device, seed=0):
    g = np.random.default_rng(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 2)).double()
    model[1].weight.data = backend.to_device(g.normal(0, 0.5, (2, D)), "cpu")
    model[1].bias.data = backend.to_device(g.normal(0, 0.1, 2), "cpu")
    return model.to(device=device)


def data(device, n=6, seed=1):
    g = np.random.default_rng(seed)
    x = g.uniform(0.3, 0.7, (n, 1, 4, 4))
    return backend.to_device(x, device), g.integers(0, 2, n)


def margins(model, x, y):
    """m_n = z_{y_n} - z_{1-y_n}  (N,)."""
    with minirn.no_grad():
        z = to_numpy(model(minirn.tensor(x)))
    return z[np.arange(len(y)), y] - z[np.arange(len(y)), 1 - y]


def directions(model, y):
    """w_n = W_{y_n} - W_{1-y_n}: (N, D)."""
    weight = to_numpy(model[1].weight)
    return weight[y] - weight[1 - y]


def expected_drop(model, y, eps, norm):
    w = directions(model, y)
    return eps * (np.abs(w).sum(axis=1) if norm == "linf" else np.linalg.norm(w, axis=1))


ORACLE_CASES = {
    "fgsm_linf": ("linf", lambda m, x, y: attacks.fgsm(m, x, y, EPS)),
    "fgsm_l2": ("l2", lambda m, x, y: attacks.fgsm(m, x, y, EPS, norm="l2")),
    "fgsm_targeted": ("linf", lambda m, x, y: attacks.fgsm(m, x, 1 - y, EPS, targeted=True)),
    "bim": ("linf", lambda m, x, y: attacks.bim(m, x, y, EPS, EPS / 4, 6)),
    "mim": ("linf", lambda m, x, y: attacks.mim(m, x, y, EPS, EPS / 4, 6)),
    "pgd_linf_random_start": ("linf", lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 4, 10, seed=0)),
    "pgd_linf_restarts": ("linf", lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 4, 10, restarts=3, seed=0)),
    "pgd_l2_random_start": ("l2", lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 4, 80, norm="l2", seed=0)),
    "pgd_l2_exact": ("l2", lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 4, 80, norm="l2", projection="exact",
                                                       seed=0)),
    "pgd_l2_targeted": ("l2", lambda m, x, y: attacks.pgd(m, x, 1 - y, EPS, EPS / 4, 80, norm="l2", targeted=True,
                                                          seed=0)),
}


@pytest.mark.parametrize("name", list(ORACLE_CASES))
def test_margin_drop_equals_closed_form(name, device):
    norm, attack = ORACLE_CASES[name]
    model = linear_model(device)
    x, y = data(device)
    y_device = backend.to_device(y, device)
    x_adv = attack(model, x, y_device)
    drop = margins(model, x, y) - margins(model, x_adv, y)
    np.testing.assert_allclose(drop, expected_drop(model, y, EPS, norm), rtol=1e-6)


def test_pgd_l2_moves_along_the_weight_vector():
    """The L2 optimum is x - ε w/‖w‖: the iterate itself, not only the margin, converges to it."""
    model = linear_model("cpu")
    x, y = data("cpu")
    x_adv = attacks.pgd(model, x, y, EPS, EPS / 4, 80, norm="l2", seed=0)
    w = directions(model, y).reshape(x.shape)
    optimum = x - EPS * w / np.linalg.norm(w.reshape(len(y), -1), axis=1)[:, None, None, None]
    np.testing.assert_allclose(x_adv, optimum, atol=1e-6)


def test_pgd_linf_reaches_the_corner():
    model = linear_model("cpu")
    x, y = data("cpu")
    x_adv = attacks.pgd(model, x, y, EPS, EPS / 3, 10, seed=0)
    w = directions(model, y).reshape(x.shape)
    np.testing.assert_allclose(x_adv, x - EPS * np.sign(w), atol=1e-12)


def test_cw_finds_the_minimal_l2_distance():
    """No misclassified point is closer than m/‖w‖₂; CW should land just beyond it."""
    model = linear_model("cpu", seed=3)
    weight = to_numpy(model[1].weight)
    model[1].bias.data = backend.to_device(-0.5 * weight.sum(axis=1) + np.array([0.1, -0.1]), "cpu")  # boundary near x = 0.5
    x, _ = data("cpu", n=8, seed=4)
    with minirn.no_grad():
        y = to_numpy(model(minirn.tensor(x))).argmax(axis=1)   # attack the model's own predictions
    minimal = margins(model, x, y) / np.linalg.norm(directions(model, y), axis=1)
    assert minimal.max() < 0.3   # the optimum x - minimal·w/‖w‖ stays inside the box
    x_adv = attacks.cw_l2(model, x, y, c=1.0, steps=300, lr=0.01, binary_search_steps=8)
    distance = np.linalg.norm((x_adv - x).reshape(len(y), -1), axis=1)
    fooled = margins(model, x_adv, y) < 0
    assert fooled.all()
    assert np.all(distance >= minimal * (1 - 1e-6))
    np.testing.assert_allclose(distance, minimal, rtol=0.02)


# --- APGD and Square against the L∞ optimum over ball ∩ box ----------------------------------------------------
# Three classes, the third a fixed average of the first two pushed down by GAP:
#     z_2 = (z_0 + z_1)/2 - GAP.
# For a label y ∈ {0, 1} with o = 1 - y and the margin m = z_o - z_y = (W_o - W_y)·x + (b_o - b_y), class 2 is always
# last (GAP > |m|/2), and every objective the attacks ascend is an increasing function of m alone:
#     margin  J = m,    CE  J = log(1 + e^m + e^(m/2 - GAP)),    DLR  J = m / (|m|/2 + GAP).
# Their common maximiser over {|x' - x|_∞ ≤ ε} ∩ [0, 1]^d is, coordinate by coordinate (a linear function on a
# product of intervals), the corner  x* = clip(x + ε sign(W_o - W_y), 0, 1),
# and the example can be fooled exactly when m(x*) > 0.  Here the images fill [0, 1], so the box does clip.
GAP = 20.0
LINF_EPS = 0.1


def three_class_model(device, seed=1):
    g = np.random.default_rng(seed)
    weight, bias = g.normal(0, 0.5, (2, D)), g.normal(0, 0.1, 2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 3)).double()
    model[1].weight.data = backend.to_device(np.vstack([weight, weight.mean(axis=0)]), "cpu")
    model[1].bias.data = backend.to_device(np.array([bias[0], bias[1], bias.mean() - GAP]), "cpu")
    return model.to(device=device)


def box_data(model, n=12, seed=11):
    """Images uniform in [0, 1] (so the box clips), labelled with the model's own clean prediction."""
    x = np.random.default_rng(seed).uniform(0, 1, (n, 1, 4, 4))
    with minirn.no_grad():
        y = to_numpy(model(minirn.tensor(x))).argmax(axis=1)
    return x, y


def margin_to_other(model, x, y):
    """m = z_{1-y} - z_y (N,), positive when fooled."""
    with minirn.no_grad():
        z = to_numpy(model(minirn.tensor(x)))
    rows = np.arange(len(y))
    return z[rows, 1 - y] - z[rows, y]


def linf_optimum(model, x, y, eps=LINF_EPS):
    """x* = clip(x + ε sign(W_o - W_y), 0, 1) and its margin m(x*)."""
    weight = to_numpy(model[1].weight)
    direction = (weight[1 - y] - weight[y]).reshape(x.shape)
    corner = np.clip(x + eps * np.sign(direction), 0.0, 1.0)
    return corner, margin_to_other(model, corner, y)


def three_class_setup():
    """The oracle on the CPU: (model, x, y, x*, m(x*))."""
    model = three_class_model("cpu")
    x, y = box_data(model)
    corner, best = linf_optimum(model, x, y)
    assert set(y) <= {0, 1}
    assert np.any(best > 0) and np.any(best < 0) and np.abs(best).min() > 0.01   # some flip, some cannot
    assert np.any((corner == 0.0) | (corner == 1.0))   # the box is active
    return model, x, y, corner, best


def test_three_class_objectives_are_increasing_in_the_margin():
    """The construction's premise, checked on the losses themselves along a line of points."""
    model, x, y, corner, _ = three_class_setup()
    path = np.stack([x + t * (corner - x) for t in np.linspace(0, 1, 9)])   # (9, N, 1, 4, 4)
    for loss in ("ce", "margin", "dlr"):
        values = []
        for point in path:
            with minirn.no_grad():
                values.append(to_numpy(losses.attack_loss(model(minirn.tensor(point)), y, loss=loss)))
        margin_path = np.stack([margin_to_other(model, point, y) for point in path])
        order = np.argsort(margin_path, axis=0)
        assert np.all(np.diff(np.take_along_axis(np.stack(values), order, axis=0), axis=0) >= -1e-12), loss


APGD_ORACLE_CASES = {
    "apgd_ce": lambda m, x, y: attacks.apgd(m, x, y, LINF_EPS, 10, loss="ce", seed=0),
    "apgd_dlr": lambda m, x, y: attacks.apgd(m, x, y, LINF_EPS, 10, loss="dlr", seed=0),
    "apgd_margin": lambda m, x, y: attacks.apgd(m, x, y, LINF_EPS, 10, loss="margin", seed=0),
    "apgd_ce_restarts": lambda m, x, y: attacks.apgd(m, x, y, LINF_EPS, 4, loss="ce", restarts=2, seed=0),
    "square": lambda m, x, y: attacks.square(m, x, y, LINF_EPS, 200, seed=0),
}


@pytest.mark.parametrize("name", list(APGD_ORACLE_CASES))
def test_apgd_and_square_reach_the_linf_optimum(name, device):
    """Examples that cannot be fooled end exactly at the corner x*; the others are fooled (the attacks stop at their
    first success, so those need not be at the corner).  Square's random search reaches the corner too: with
    200 queries on 16 pixels its 1×1 windows propose each pixel's other sign about six times."""
    model, x, y, corner, best = three_class_setup()
    attack = APGD_ORACLE_CASES[name]
    x_adv = to_numpy(attack(three_class_model(device), backend.to_device(x, device), backend.to_device(y, device)))
    robust = best < 0
    np.testing.assert_allclose(x_adv[robust], corner[robust], rtol=0, atol=1e-12)
    assert np.all(margin_to_other(model, x_adv, y)[~robust] > 0)
    assert np.all(np.abs(x_adv - x) <= LINF_EPS + 1e-12) and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("loss", ["ce", "dlr", "margin"])
def test_apgd_best_objective_is_the_objective_at_the_optimum(loss):
    """Inside one run (apgd_run) the best J seen equals J(x*) on every example, fooled or not."""
    model, x, y, corner, _ = three_class_setup()

    def objective_fn(logits):
        return losses.attack_loss(logits, y, loss=loss)

    start = geometry.random_start(x, LINF_EPS, "linf", np.random.default_rng(0), 0.0, 1.0)
    _, j_best, _ = apgd_run(model, x, start, y, False, objective_fn, LINF_EPS, 10, "linf", 0.0, 1.0)
    with minirn.no_grad():
        j_optimum = to_numpy(objective_fn(model(minirn.tensor(corner))))
    np.testing.assert_allclose(to_numpy(j_best), j_optimum, rtol=1e-12, atol=1e-12)


def test_robust_accuracy_equals_the_accuracy_at_the_optimum():
    """Per attack (evaluate) and for the ensemble (robust_accuracy): the share of examples with m(x*) < 0."""
    model, x, y, _, best = three_class_setup()
    expected = float(np.mean(best < 0))
    settings = {"apgd-ce": {"steps": 10}, "apgd-dlr": {"steps": 10}, "square": {"queries": 200}}
    table = attacks.evaluate(model, x, y, settings, [LINF_EPS], batch_size=5, progress=False)
    assert table["clean_accuracy"] == 1.0
    assert table["accuracy"] == {name: [expected] for name in settings}
    ensemble = attacks.robust_accuracy(model, x, y, LINF_EPS, suite=settings, batch_size=5, keep_per_example=True)
    assert ensemble["robust_accuracy"] == [expected]
    assert ensemble["per_example"][0] == (best < 0).tolist()


def test_apgd_targeted_robust_accuracy_equals_the_exact_answer():
    """Four classes, generic weights: an example can be fooled exactly when some class j ≠ y can overtake y,
    i.e. max over ball ∩ box of (W_j - W_y)·x' + (b_j - b_y) > 0, attained at clip(x + ε sign(W_j - W_y)).  APGD-T
    with 3 targets tries every j ≠ y."""
    g = np.random.default_rng(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 4)).double()
    weight, bias = g.normal(0, 0.5, (4, D)), g.normal(0, 0.1, 4)
    model[1].weight.data, model[1].bias.data = weight, bias
    x = g.uniform(0, 1, (16, 1, 4, 4))
    flat = x.reshape(16, -1)
    y = (flat @ weight.T + bias).argmax(axis=1)
    best = np.full(16, -np.inf)
    for j in range(4):
        direction = weight[j] - weight[y]
        corner = np.clip(flat + LINF_EPS * np.sign(direction), 0, 1)
        gain = np.where(j == y, -np.inf, np.sum(direction * corner, axis=1) + bias[j] - bias[y])
        best = np.maximum(best, gain)
    assert np.any(best > 0) and np.any(best < 0) and np.abs(best).min() > 0.01
    x_adv = attacks.apgd_targeted(model, x, y, LINF_EPS, 10, n_targets=3, seed=0)
    with minirn.no_grad():
        fooled = to_numpy(model(minirn.tensor(x_adv))).argmax(axis=1) != y
    np.testing.assert_array_equal(fooled, best > 0)
