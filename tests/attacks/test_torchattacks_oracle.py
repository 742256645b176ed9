"""Optional oracle: APGD-CE, APGD-DLR and Square reach the robust accuracy torchattacks' implementations reach.

The trained digits MLP (BatchNorm, running statistics) is copied into its PyTorch twin; both libraries attack the
same 200 test images at the same ε.  The attacks are random (start points, squares) and the two libraries draw
different numbers, so the accuracies agree statistically, not bit for bit: the tolerance is 4 points (8 of 200
images), a few times the spread between seeds of either library (about 1 to 2 points here).

torchattacks' Square draws a window corner with ``random_int(0, h - s)``, which never returns h - s: its windows
never reach the last row and column, which on 8x8 digits leaves a 1x1 window unable to touch 15 of the 64 pixels
(7 to 12 points weaker here at 300 to 1000 queries).  minirn draws every corner, so the comparison patches that draw to include h - s.
"""
import numpy as np
import pytest

import minirn
from minirn import attacks
from tests.attacks import predictions, trained_digits

torch = pytest.importorskip("torch")
torchattacks = pytest.importorskip("torchattacks")
torch_twins = pytest.importorskip("minirn.bench.torch_twins")
pytestmark = pytest.mark.torch

N, EPS, STEPS, QUERIES = 200, 0.1, 25, 300
TOLERANCE = 0.04


@pytest.fixture(scope="module")
def twins():
    model, x, y = trained_digits()
    x, y = x[:N], y[:N]
    nn = torch.nn
    twin = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    twin = torch_twins.load_minirn_state(twin, model).eval()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad(), minirn.no_grad():   # the same function in both libraries
        np.testing.assert_allclose(twin(tx).numpy(), model(minirn.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)
    return model, x, y, twin, tx, ty


def with_every_window_corner(attack):
    """torchattacks' Square with its corner draw covering [low, high] instead of [low, high)."""
    attack.random_int = lambda low=0, high=1, shape=(1,): (low + (high - low + 1) * torch.rand(shape)).long()
    return attack


CASES = {
    "apgd_ce": (lambda m, x, y: attacks.apgd(m, x, y, EPS, STEPS, loss="ce", seed=0),
                lambda t: torchattacks.APGD(t, norm="Linf", eps=EPS, steps=STEPS, loss="ce", seed=0)),
    "apgd_dlr": (lambda m, x, y: attacks.apgd(m, x, y, EPS, STEPS, loss="dlr", seed=0),
                 lambda t: torchattacks.APGD(t, norm="Linf", eps=EPS, steps=STEPS, loss="dlr", seed=0)),
    "square": (lambda m, x, y: attacks.square(m, x, y, EPS, QUERIES, seed=0),
               lambda t: with_every_window_corner(torchattacks.Square(t, norm="Linf", eps=EPS, n_queries=QUERIES,
                                                                      seed=0))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_robust_accuracy_matches_torchattacks(twins, name):
    model, x, y, twin, tx, ty = twins
    ours, theirs = CASES[name]
    clean = (predictions(model, x) == y).mean()
    our_accuracy = (predictions(model, ours(model, x, y)) == y).mean()
    x_theirs = theirs(twin)(tx, ty).detach()
    assert float((x_theirs - tx).abs().max()) <= EPS + 1e-6
    with torch.no_grad():
        their_accuracy = (twin(x_theirs).argmax(dim=1) == ty).double().mean().item()
    assert our_accuracy < clean - 0.2                      # the comparison is made where the attacks bite
    assert abs(our_accuracy - their_accuracy) <= TOLERANCE, (our_accuracy, their_accuracy)
