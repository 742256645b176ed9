"""minirn/attacks/geometry.py: projections onto ball ∩ box and the random start."""
import numpy as np
import pytest

from minirn import backend
from minirn.attacks import geometry
from tests.conftest import to_numpy


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
    z = geometry.project_l2_exact(v, x, eps, 0.0, 1.0)
    assert feasible(z, x, eps)
    g = np.random.default_rng(1)
    for _ in range(200):   # random feasible points w of ball ∩ box
        direction = g.normal(size=x.shape)
        w = geometry.project_l2_ball_then_box(x + direction * g.uniform(0, 2 * eps, (len(x), 1)), x, eps, 0.0, 1.0)
        assert np.all(np.sum((v - z) * (w - z), axis=1) <= 1e-9)
    naive = geometry.project_l2_ball_then_box(v, x, eps, 0.0, 1.0)
    assert feasible(naive, x, eps)
    exact_distance, naive_distance = np.linalg.norm(v - z, axis=1), np.linalg.norm(v - naive, axis=1)
    assert np.all(exact_distance <= naive_distance + 1e-9)
    assert np.any(exact_distance < naive_distance - 1e-3)   # the two differ when the box cuts the ball


def test_projections_agree_when_the_box_is_not_active():
    x = np.full((5, 4), 0.5)
    v = x + np.random.default_rng(2).normal(0, 0.3, (5, 4))
    expected = x + (v - x) * np.minimum(1, 0.2 / np.linalg.norm(v - x, axis=1))[:, None]
    np.testing.assert_allclose(geometry.project_l2_ball_then_box(v, x, 0.2, 0.0, 1.0), expected, atol=1e-12)
    np.testing.assert_allclose(geometry.project_l2_exact(v, x, 0.2, 0.0, 1.0), expected, atol=1e-9)


def test_exact_projection_by_hand():
    """x = (0.9, 0.5), v = x + (1, 1), ε = 0.5: the box stops the first coordinate at 1, the ball the second."""
    x, v = np.array([[0.9, 0.5]]), np.array([[1.9, 1.5]])
    z = geometry.project_l2_exact(v, x, 0.5, 0.0, 1.0)
    np.testing.assert_allclose(z, [[1.0, 0.5 + np.sqrt(0.25 - 0.01)]], atol=1e-9)
    naive = geometry.project_l2_ball_then_box(v, x, 0.5, 0.0, 1.0)
    np.testing.assert_allclose(naive, [[1.0, 0.5 + 0.5 / np.sqrt(2)]], atol=1e-12)


def test_linf_projection(device):
    x = backend.to_device(np.array([[0.05, 0.5, 0.95]]), device)
    v = backend.to_device(np.array([[-0.5, 0.52, 2.0]]), device)
    np.testing.assert_allclose(to_numpy(geometry.project_linf(v, x, 0.1, 0.0, 1.0)), [[0.0, 0.52, 1.0]])


def test_exact_projection_on_strict_device_matches_cpu():
    x, v = random_points(3, n=8)
    expected = geometry.project_l2_exact(v, x, 0.4, 0.0, 1.0)
    got = geometry.project_l2_exact(backend.to_device(v, "strict"), backend.to_device(x, "strict"), 0.4, 0.0, 1.0)
    np.testing.assert_allclose(to_numpy(got), expected, atol=1e-12)


# --- random start -------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 8])
def test_l2_random_start_is_uniform_in_the_ball(d):
    """Uniform in the d-ball: P(‖δ‖ ≤ sε) = s^d, and the direction has no preferred side."""
    n, eps = 20000, 0.4
    x = np.full((n, d), 0.5)
    delta = geometry.random_start(x, eps, "l2", backend.rng(0), 0.0, 1.0) - x
    radius = np.linalg.norm(delta, axis=1)
    assert radius.max() <= eps * (1 + 1e-12)
    for s in (0.5, 0.8, 0.95):
        assert abs(np.mean(radius <= s * eps) - s**d) < 0.015
    np.testing.assert_allclose(delta.mean(axis=0), 0.0, atol=0.01)
    # the biased variant ε·u·g/‖g‖ puts half the points inside s = 0.5 instead of 0.5^d
    assert abs(0.5 - 0.5**d) > 0.2


def test_linf_random_start_is_uniform_in_the_cube():
    x = np.full((5000, 10), 0.5)
    delta = geometry.random_start(x, 0.2, "linf", backend.rng(0), 0.0, 1.0) - x
    assert np.abs(delta).max() <= 0.2
    np.testing.assert_allclose(np.abs(delta).mean(), 0.1, atol=0.002)   # E|U(-ε, ε)| = ε/2
    np.testing.assert_allclose(np.mean(delta < 0), 0.5, atol=0.01)
