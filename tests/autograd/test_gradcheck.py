"""minirn.gradcheck: it must catch what a sum-based check misses, and change nothing it touches."""
from __future__ import annotations

import numpy as np
import pytest

import minirn
from minirn import backend
from minirn.autograd.grad_mode import running_stats_frozen
from tests.conftest import make_tensor, to_numpy

EPS = 1e-5


class NormalizeOverBatch(minirn.Function):
    """BatchNorm without affine over axis 0 of x: (N, C):  x̂ = (x - μ) / sqrt(σ² + ε).

    Correct backward:  ∂L/∂x = s (g - mean(g) - x̂ mean(g x̂)),  s = (σ² + ε)^(-1/2).
    ``drop_variance_term=True`` plants the classic bug: the term through σ² is forgotten.
    """

    def __init__(self, drop_variance_term=False):
        self.drop_variance_term = drop_variance_term

    def forward(self, x):
        xp = backend.array_namespace(x)
        centered = x - xp.mean(x, axis=0, keepdims=True)
        self.scale = 1.0 / xp.sqrt(xp.mean(centered * centered, axis=0, keepdims=True) + EPS)
        self.x_hat = centered * self.scale
        return self.x_hat

    def backward(self, g):
        xp = backend.array_namespace(g)
        grad = g - xp.mean(g, axis=0, keepdims=True)
        if not self.drop_variance_term:
            grad = grad - self.x_hat * xp.mean(g * self.x_hat, axis=0, keepdims=True)
        return self.scale * grad


def sum_based_check(fn, x, eps=1e-6, atol=1e-6):
    """The naive check this module warns about: compare d(sum f(x))/dx with finite differences."""
    x.grad = None
    fn(x).sum().backward()
    analytic = to_numpy(x.grad)
    host = x.numpy()
    for index in np.ndindex(host.shape):
        values = []
        for step in (eps, -eps):
            perturbed = host.copy()
            perturbed[index] += step
            values.append(fn(make_tensor(perturbed, x.device)).sum().item())
        numeric = (values[0] - values[1]) / (2 * eps)
        if abs(analytic[index] - numeric) > atol:
            return False
    return True


def test_random_projection_catches_a_bug_that_a_sum_check_misses(device, rng):
    x = make_tensor(rng.standard_normal((4, 3)), device, requires_grad=True)

    def wrong(t):
        return NormalizeOverBatch(drop_variance_term=True)(t)

    def right(t):
        return NormalizeOverBatch()(t)

    # every column of x̂ sums to 0 whatever x is, so both backwards look perfect to the sum check
    assert sum_based_check(wrong, x)
    assert sum_based_check(right, x)
    with pytest.raises(minirn.GradcheckError, match=r"input 0 \(shape \(4, 3\)\), element \(\d, \d\): analytic gradient"):
        minirn.gradcheck(wrong, [x])
    assert minirn.gradcheck(right, [x])


def test_gradcheck_names_the_failing_input(device, rng):
    class WrongSecondGradient(minirn.Function):
        """y = a * b, but ∂L/∂b is off by a factor 2."""

        def forward(self, a, b):
            self.a, self.b = a, b
            return a * b

        def backward(self, g):
            return g * self.b, 2.0 * g * self.a

    a, b = (make_tensor(rng.standard_normal(3), device, requires_grad=True) for _ in range(2))
    with pytest.raises(minirn.GradcheckError, match=r"input 1 \(shape \(3,\)\), element \(0,\)"):
        minirn.gradcheck(lambda p, q: WrongSecondGradient()(p, q), [a, b])
    # input 0 is not checked when it does not require grad, and then the bug in input 1 is still found
    constant = make_tensor(rng.standard_normal(3), device)
    with pytest.raises(minirn.GradcheckError, match="input 1"):
        minirn.gradcheck(lambda p, q: WrongSecondGradient()(p, q), [constant, b])


def test_gradcheck_passes_correct_ops_and_returns_true(device, rng):
    x = make_tensor(rng.standard_normal((3, 4)), device, requires_grad=True)
    w = make_tensor(rng.standard_normal((4, 2)), device, requires_grad=True)
    assert minirn.gradcheck(lambda a, b: (a @ b).tanh() * a[:, :2], [x, w]) is True


def test_gradcheck_rejects_float32_and_nothing_to_check(device):
    x32 = make_tensor([1.0, 2.0], device, requires_grad=True, dtype="float32")
    with pytest.raises(ValueError, match=r"input 0 is float32; finite differences need float64 \(\.double\(\)\)"):
        minirn.gradcheck(lambda t: t * 2.0, [x32])
    x = make_tensor([1.0, 2.0], device)
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        minirn.gradcheck(lambda t: t * 2.0, [x])
    weight32 = make_tensor([1.0, 2.0], device, dtype="float32")
    with pytest.raises(ValueError, match="fn returned float32; make every parameter float64"):
        minirn.gradcheck(lambda t: t.to(dtype="float32") * weight32, [make_tensor([1.0, 2.0], device, requires_grad=True)])


def test_gradcheck_restores_grad_and_data(device, rng):
    host = rng.standard_normal((2, 3))
    x = make_tensor(host, device, requires_grad=True)
    sentinel = backend.to_device(np.full((2, 3), 7.0), device)
    x.grad = sentinel
    assert minirn.gradcheck(lambda t: (t * t).sum(axis=0), [x])
    assert x.grad is sentinel
    np.testing.assert_array_equal(x.numpy(), host)
    y = make_tensor(host, device, requires_grad=True)
    with pytest.raises(minirn.GradcheckError):
        minirn.gradcheck(lambda t: NormalizeOverBatch(drop_variance_term=True)(t), [y])
    assert y.grad is None  # restored even when the check fails
    np.testing.assert_array_equal(y.numpy(), host)


def test_max_elements_samples_that_many_elements(device, rng):
    calls = []

    def fn(t):
        calls.append(1)
        return t * 3.0

    x = make_tensor(rng.standard_normal((5, 4)), device, requires_grad=True)
    assert minirn.gradcheck(fn, [x], max_elements=3)
    assert len(calls) == 1 + 2 * 3  # one forward for the analytic gradient, two per sampled element
    calls.clear()
    assert minirn.gradcheck(fn, [x])
    assert len(calls) == 1 + 2 * 20


def test_max_elements_finds_a_bug_everywhere(device, rng):
    """A backward that is wrong for every element is still caught from a small sample."""
    x = make_tensor(rng.standard_normal((6, 5)), device, requires_grad=True)
    with pytest.raises(minirn.GradcheckError):
        minirn.gradcheck(lambda t: NormalizeOverBatch(drop_variance_term=True)(t), [x], max_elements=4)


def test_gradcheck_freezes_running_statistics(device):
    seen = []

    def fn(t):
        seen.append(running_stats_frozen())
        return t * 2.0

    assert running_stats_frozen() is False
    assert minirn.gradcheck(fn, [make_tensor([1.0, 2.0], device, requires_grad=True)])
    assert seen and all(flag is True for flag in seen)
    assert running_stats_frozen() is False
    with minirn.freeze_running_stats():
        assert running_stats_frozen() is True
    assert running_stats_frozen() is False


def test_gradcheck_seed_controls_the_projection(device, rng):
    """Different seeds give different upstream directions; the check passes for each."""
    directions = []

    class Record(minirn.Function):
        def forward(self, x):
            return x

        def backward(self, g):
            directions.append(to_numpy(g).copy())
            return g

    x = make_tensor(rng.standard_normal(4), device, requires_grad=True)
    for seed in (0, 0, 1):
        assert minirn.gradcheck(lambda t: Record()(t), [x], seed=seed)
    np.testing.assert_array_equal(directions[0], directions[1])
    assert not np.array_equal(directions[0], directions[2])
