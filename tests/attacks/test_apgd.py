"""minirn/attacks/apgd.py: APGD's checkpoint schedule, its best-point bookkeeping, restarts and APGD-T.

(The contract every attack keeps is in test_contract.py; APGD against closed-form optima in
test_linear_oracle.py.)
"""
from fractions import Fraction

import numpy as np
import pytest

from minirn import attacks, nn
from minirn.attacks import objective
from minirn.attacks.apgd import checkpoints
from minirn.nn import functional as F
from tests.attacks import images, labels, predictions, tiny_cnn, trained_digits
from tests.conftest import to_numpy


# --- the checkpoints -------------------------------------------------------------------------------
def paper_checkpoints(steps):
    """Croce & Hein 2020, Section 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06);
    the checkpoints are w_j = ⌈p_j N_iter⌉ (exact fractions, so 0.41·100 is 41, not 40.999…)."""
    p = [Fraction(0), Fraction(22, 100)]
    while True:
        following = p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100))
        if following * steps > steps:
            break
        p.append(following)
    return [-(-q * steps // 1) for q in p[1:]]


def test_checkpoints_for_100_steps_follow_the_paper():
    expected = paper_checkpoints(100)
    assert expected[0] == 22 and expected[-1] <= 100
    periods = np.diff([0] + expected)
    assert periods[:6].tolist() == [22, 19, 16, 13, 10, 7] and set(periods[6:]) == {6}   # shrink by 3, never below 6
    assert checkpoints(100) == expected


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7, 10, 37, 100, 250, 1000])
def test_checkpoints_are_increasing_and_inside_the_run(steps):
    points = checkpoints(steps)
    assert points, "even a short run checks its step size"
    assert points[0] == max(int(0.22 * steps), 1)
    assert all(a < b for a, b in zip(points, points[1:]))
    assert 1 <= points[0] and points[-1] <= steps
    periods = np.diff([0] + points)
    assert periods.min() >= max(int(0.06 * steps), 1)   # the shortest period
    assert all(a >= b for a, b in zip(periods, periods[1:]))   # periods never grow


# --- the best point, not the last iterate --------------------------------------------------------------
class Bump(nn.Module):
    """Two classes: z = (5, -‖x - c‖²).  Class 0 always wins, so no iterate ever succeeds; the objective
    rises toward the centre c, which the sign steps of size ~ε circle around rather than land on."""

    def __init__(self, centre):
        super().__init__()
        self.centre = centre

    def forward(self, x):
        d = x - self.centre
        z1 = -F.sum(d * d, axis=(1, 2, 3))
        return F.stack([z1 * 0.0 + 5.0, z1], axis=1)


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_apgd_returns_the_highest_objective_of_all_its_iterates(loss):
    """Per example (a batch of one, so the recorded batch mean is that example's J): J at the result equals
    the highest J recorded, which on some examples is not the last one."""
    eps, last_was_worse = 0.1, 0
    for seed in range(6):
        g = np.random.default_rng(seed)
        x = g.uniform(0.2, 0.8, (1, 1, 4, 4))
        model, y = Bump(x + g.uniform(-eps, eps, x.shape)), np.zeros(1, dtype="int64")
        history = []
        x_adv = attacks.apgd(model, x, y, eps, 6, loss=loss, seed=seed, loss_history=history)
        assert len(history) == 6 + 1                      # the start and every step
        j, success = objective.evaluate_objective(model, x_adv, y, False, loss)
        assert not success[0]
        assert float(j[0]) == pytest.approx(max(history), rel=1e-12, abs=1e-12)
        last_was_worse += history[-1] < max(history) - 1e-9
    assert last_was_worse >= 2   # otherwise returning the last iterate would pass this test too


def test_apgd_batch_objective_is_at_least_every_recorded_batch_mean():
    g = np.random.default_rng(0)
    x = g.uniform(0.2, 0.8, (5, 1, 4, 4))
    model, y = Bump(x + g.uniform(-0.1, 0.1, x.shape)), np.zeros(5, dtype="int64")
    history = []
    x_adv = attacks.apgd(model, x, y, 0.1, 8, loss="margin", seed=0, loss_history=history)
    j, _ = objective.evaluate_objective(model, x_adv, y, False, "margin")
    assert float(np.mean(to_numpy(j))) >= max(history) - 1e-12


def test_an_example_fooled_at_any_iterate_stays_fooled():
    """Per example with the margin loss: some iterate had J > 0 (fooled) exactly when the result is fooled."""
    model = tiny_cnn("bn").double().eval()
    x, y = images(8, dtype="float64"), labels(8)
    fooled_somewhere, fooled_at_end = [], []
    for i in range(8):
        history = []
        x_adv = attacks.apgd(model, x[i : i + 1], y[i : i + 1], 0.05, 8, loss="margin", seed=i, loss_history=history)
        fooled_somewhere.append(max(history) > 0)
        fooled_at_end.append(bool(predictions(model, x_adv)[0] != y[i]))
    assert fooled_somewhere == fooled_at_end
    assert 0 < sum(fooled_at_end) < 8   # both kinds occur at this budget


# --- restarts and targets ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    model, x, y = trained_digits()
    return model, x[:100], y[:100]


def test_more_restarts_never_lose_an_example(digits):
    """Restart 1 of a 2-restart run draws what a 1-restart run draws (same seed), and restarts are combined per
    example: first success, else the highest J."""
    model, x, y = digits
    one = attacks.apgd(model, x, y, 0.05, 5, loss="ce", seed=3)
    two = attacks.apgd(model, x, y, 0.05, 5, loss="ce", restarts=2, seed=3)
    fooled_one, fooled_two = predictions(model, one) != y, predictions(model, two) != y
    assert np.all(fooled_two[fooled_one])
    neither = ~fooled_one & ~fooled_two
    j_one, _ = objective.evaluate_objective(model, one, y, False, "ce")
    j_two, _ = objective.evaluate_objective(model, two, y, False, "ce")
    assert np.all(to_numpy(j_two)[neither] >= to_numpy(j_one)[neither] - 1e-6)


def test_more_targets_never_lose_an_example(digits):
    model, x, y = digits
    fooled = {n: predictions(model, attacks.apgd_targeted(model, x, y, 0.05, 5, n_targets=n, seed=1)) != y
              for n in (1, 3)}
    assert fooled[1].any() and np.all(fooled[3][fooled[1]])


def test_apgd_is_at_least_as_strong_as_pgd_at_the_same_cost(digits):
    """Croce & Hein's claim, with 20 steps each: APGD-CE's accuracy is not above PGD's (2 points of slack on
    100 examples: the comparison of two random attacks, not an identity)."""
    model, x, y = digits
    eps = 0.1
    pgd_accuracy = (predictions(model, attacks.pgd(model, x, y, eps, eps / 10, 20, seed=0)) == y).mean()
    apgd_accuracy = (predictions(model, attacks.apgd(model, x, y, eps, 20, seed=0)) == y).mean()
    assert apgd_accuracy <= pgd_accuracy + 0.02


def test_apgd_targeted_aims_at_the_classes_ranked_highest():
    """With n_targets=1 the only target is the clean runner-up class; the targeted DLR raises z_t - z_y, so the
    examples it fools are (mostly) classified as that target."""
    model, x, y = tiny_cnn("bn", num_classes=5).double().eval(), images(8, dtype="float64"), labels(8)
    x_adv = attacks.apgd_targeted(model, x, y, 0.2, 10, n_targets=1, seed=0)
    clean_logits = to_numpy(objective.logits_of(model, x))
    masked = np.where(np.arange(5) == to_numpy(y)[:, None], -np.inf, clean_logits)
    runner_up = masked.argmax(axis=1)
    predicted = predictions(model, x_adv)
    fooled = predicted != to_numpy(y)
    assert fooled.any()
    assert np.mean(predicted[fooled] == runner_up[fooled]) >= 0.75


# --- arguments --------------------------------------------------------------------------------------------
def test_apgd_rejects_bad_restarts_rho_and_loss():
    model, x, y = tiny_cnn("bn"), images(2), labels(2)
    for kwargs, match in [({"restarts": 0}, "restarts"), ({"rho": -0.5}, "rho"), ({"loss": "hinge"}, "unknown loss")]:
        with pytest.raises(ValueError, match=match):
            attacks.apgd(model, x, y, 0.1, 2, **kwargs)


def test_apgd_targeted_needs_four_classes_and_a_positive_target_count():
    x, y = images(2), labels(2)
    with pytest.raises(ValueError, match="at least 4 classes, got 3"):
        attacks.apgd_targeted(tiny_cnn("bn"), x, y, 0.1, 2)
    with pytest.raises(ValueError, match="n_targets"):
        attacks.apgd_targeted(tiny_cnn("bn", num_classes=4), x, y, 0.1, 2, n_targets=0)


def test_apgd_dlr_needs_three_classes():
    model = tiny_cnn("bn", num_classes=2)
    with pytest.raises(ValueError, match="at least 3 classes, got 2"):
        attacks.apgd(model, images(2), labels(2, num_classes=2), 0.1, 2, loss="dlr")
