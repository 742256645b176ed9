"""Attacks on a 2-class linear model against closed-form answers.

For logits z = W x + b with two classes, the margin of example n is
m(x) = w_n · x + c_n with w_n = W_{y_n} - W_{1-y_n}.  The cross-entropy gradient is
-(1 - p_{y_n}) w_n, so every gradient step moves along -sign(w_n) (L∞) or -w_n/‖w_n‖ (L2), and
while no pixel hits the [0, 1] box the best perturbation of budget ε lowers the margin by exactly

    ε ‖w_n‖₁ (L∞)        ε ‖w_n‖₂ (L2)

and the smallest L2 perturbation that flips the class has length m(x) / ‖w_n‖₂.
The images lie in [0.3, 0.7] and ε ≤ 0.1, so the box never interferes.
"""
import numpy as np
import pytest

import minirn
from minirn import attacks, backend, nn
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
