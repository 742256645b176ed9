"""Shared attack machinery: input gradients, projections, the random start, worst-case selection."""
import numpy as np
import pytest

import minirn
from minirn import attacks, backend, nn
from minirn.attacks import common
from minirn.nn import functional as F
from tests.attacks import cross_entropy, images, labels, predictions, tiny_cnn, trained_digits
from tests.conftest import to_numpy

NORM_MODES = {
    "train": lambda m: m.train(),
    "eval_batch_stats": lambda m: nn.set_norm_eval_stats(m.eval(), "batch", "batch"),
    "eval_running_stats": lambda m: m.eval(),
}


# --- the gradient the attacks follow ---------------------------------------------------
@pytest.mark.parametrize("mode", list(NORM_MODES))
@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_input_gradient_through_norm_layers_gradcheck(device, norm, mode):
    """Autograd's d(loss)/d(input) through BatchNorm/RobustNorm, incl. through batch statistics."""
    model = NORM_MODES[mode](tiny_cnn(norm, device=device).double())
    x = minirn.tensor(images(3, (1, 6, 6), device=device, dtype="float64"), requires_grad=True)
    y = labels(3, device=device)
    minirn.gradcheck(lambda t: F.cross_entropy(model(t), y, reduction="none"), [x], max_elements=40)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("mode", list(NORM_MODES))
def test_input_gradient_is_the_directional_derivative_of_the_objective(mode, targeted):
    """⟨∇J, v⟩ equals (ΣJ(x + hv) - ΣJ(x - hv)) / 2h: the attack follows the function that is evaluated."""
    model = NORM_MODES[mode](tiny_cnn("rn").double())
    x = images(4, (1, 6, 6), dtype="float64", low=0.2, high=0.8)
    y = labels(4)
    with common.model_untouched(model):
        grad, j, _ = common.input_gradient(model, x, y, targeted)
    sign = -1.0 if targeted else 1.0
    np.testing.assert_allclose(j, sign * cross_entropy(model, x, y), rtol=1e-12)
    v = np.random.default_rng(5).normal(size=x.shape)
    h = 1e-6
    numeric = sign * (cross_entropy(model, x + h * v, y).sum() - cross_entropy(model, x - h * v, y).sum()) / (2 * h)
    np.testing.assert_allclose((grad * v).sum(), numeric, rtol=1e-5)


def test_input_gradient_of_a_model_that_ignores_its_input_is_zero():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(np.array([[1.0, 2.0]], dtype="float32"))

        def forward(self, x):
            return self.logits * minirn.ones((x.shape[0], 1))

    x = images(3)
    grad, _, _ = common.input_gradient(Constant(), x, np.array([0, 1, 0]), False)
    assert grad.shape == x.shape and not np.any(grad)


# --- projections -------------------------------------------------------------------------
def random_points(seed, n=64, d=6, spread=1.5):
    g = np.random.default_rng(seed)
    x = g.uniform(0.0, 1.0, (n, d))
    return x, x + g.normal(0.0, spread, (n, d)) * g.uniform(0.0, 1.0, (n, 1))


def feasible(z, x, eps, norm="l2"):
    size = np.abs(z - x).max(axis=1) if norm == "linf" else np.linalg.norm(z - x, axis=1)
    return np.all(size <= eps * (1 + 1e-9)) and z.min() >= 0.0 and z.max() <= 1.0


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.2])
def test_exact_l2_projection_is_the_nearest_point(eps):
    """The projection P(v) onto a convex set C satisfies ⟨v - P(v), w - P(v)⟩ ≤ 0 for every w in C."""
    x, v = random_points(0)
    z = common.project_l2_exact(v, x, eps, 0.0, 1.0)
    assert feasible(z, x, eps)
    g = np.random.default_rng(1)
    for _ in range(200):   # random feasible points w of ball ∩ box
        direction = g.normal(size=x.shape)
        w = common.project_l2_ball_then_box(x + direction * g.uniform(0, 2 * eps, (len(x), 1)), x, eps, 0.0, 1.0)
        assert np.all(np.sum((v - z) * (w - z), axis=1) <= 1e-9)
    naive = common.project_l2_ball_then_box(v, x, eps, 0.0, 1.0)
    assert feasible(naive, x, eps)
    exact_distance, naive_distance = np.linalg.norm(v - z, axis=1), np.linalg.norm(v - naive, axis=1)
    assert np.all(exact_distance <= naive_distance + 1e-9)
    assert np.any(exact_distance < naive_distance - 1e-3)   # the two differ when the box cuts the ball


def test_projections_agree_when_the_box_is_not_active():
    x = np.full((5, 4), 0.5)
    v = x + np.random.default_rng(2).normal(0, 0.3, (5, 4))
    expected = x + (v - x) * np.minimum(1, 0.2 / np.linalg.norm(v - x, axis=1))[:, None]
    np.testing.assert_allclose(common.project_l2_ball_then_box(v, x, 0.2, 0.0, 1.0), expected, atol=1e-12)
    np.testing.assert_allclose(common.project_l2_exact(v, x, 0.2, 0.0, 1.0), expected, atol=1e-9)


def test_exact_projection_by_hand():
    """x = (0.9, 0.5), v = x + (1, 1), ε = 0.5: the box stops the first coordinate at 1, the ball the second."""
    x, v = np.array([[0.9, 0.5]]), np.array([[1.9, 1.5]])
    z = common.project_l2_exact(v, x, 0.5, 0.0, 1.0)
    np.testing.assert_allclose(z, [[1.0, 0.5 + np.sqrt(0.25 - 0.01)]], atol=1e-9)
    naive = common.project_l2_ball_then_box(v, x, 0.5, 0.0, 1.0)
    np.testing.assert_allclose(naive, [[1.0, 0.5 + 0.5 / np.sqrt(2)]], atol=1e-12)


def test_linf_projection(device):
    x = backend.to_device(np.array([[0.05, 0.5, 0.95]]), device)
    v = backend.to_device(np.array([[-0.5, 0.52, 2.0]]), device)
    np.testing.assert_allclose(to_numpy(common.project_linf(v, x, 0.1, 0.0, 1.0)), [[0.0, 0.52, 1.0]])


def test_exact_projection_on_strict_device_matches_cpu():
    x, v = random_points(3, n=8)
    expected = common.project_l2_exact(v, x, 0.4, 0.0, 1.0)
    got = common.project_l2_exact(backend.to_device(v, "strict"), backend.to_device(x, "strict"), 0.4, 0.0, 1.0)
    np.testing.assert_allclose(to_numpy(got), expected, atol=1e-12)


# --- random start -------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 8])
def test_l2_random_start_is_uniform_in_the_ball(d):
    """Uniform in the d-ball: P(‖δ‖ ≤ sε) = s^d, and the direction has no preferred side."""
    n, eps = 20000, 0.4
    x = np.full((n, d), 0.5)
    delta = common.random_start(x, eps, "l2", backend.rng(0), 0.0, 1.0) - x
    radius = np.linalg.norm(delta, axis=1)
    assert radius.max() <= eps * (1 + 1e-12)
    for s in (0.5, 0.8, 0.95):
        assert abs(np.mean(radius <= s * eps) - s**d) < 0.015
    np.testing.assert_allclose(delta.mean(axis=0), 0.0, atol=0.01)
    # the biased variant ε·u·g/‖g‖ puts half the points inside s = 0.5 instead of 0.5^d
    assert abs(0.5 - 0.5**d) > 0.2


def test_linf_random_start_is_uniform_in_the_cube():
    x = np.full((5000, 10), 0.5)
    delta = common.random_start(x, 0.2, "linf", backend.rng(0), 0.0, 1.0) - x
    assert np.abs(delta).max() <= 0.2
    np.testing.assert_allclose(np.abs(delta).mean(), 0.1, atol=0.002)   # E|U(-ε, ε)| = ε/2
    np.testing.assert_allclose(np.mean(delta < 0), 0.5, atol=0.01)


# --- worst case across restarts ----------------------------------------------------------
def test_keep_worst_prefers_first_success_then_highest_loss():
    x_a, x_b = np.zeros((4, 1)), np.ones((4, 1))
    best = (x_a, np.array([1.0, 1.0, 5.0, 1.0]), np.array([True, False, False, False]))
    candidate = (x_b, np.array([9.0, 0.5, 2.0, 3.0]), np.array([True, True, False, False]))
    x, j, success = common.keep_worst(best, candidate)
    # 0: first success kept; 1: success beats a failure; 2: higher loss kept; 3: higher loss taken
    np.testing.assert_array_equal(x[:, 0], [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(j, [1.0, 0.5, 5.0, 3.0])
    np.testing.assert_array_equal(success, [True, True, False, False])


def test_restarts_are_at_least_as_strong_per_example():
    """The first of 4 restarts is the single run (same seed), so per example nothing gets worse."""
    model, x, y = trained_digits()
    x, y = x[:100], y[:100]
    eps, alpha = 0.1, 0.02   # a weak attack (3 short steps), so that restarts matter
    single = attacks.pgd(model, x, y, eps, alpha, 3, seed=7)
    multi = attacks.pgd(model, x, y, eps, alpha, 3, restarts=4, seed=7)
    fooled_single, fooled_multi = predictions(model, single) != y, predictions(model, multi) != y
    assert np.all(fooled_multi >= fooled_single)
    assert fooled_multi.sum() > fooled_single.sum()
    unfooled = ~fooled_multi
    assert np.all(cross_entropy(model, multi, y)[unfooled] >= cross_entropy(model, single, y)[unfooled] - 1e-6)
