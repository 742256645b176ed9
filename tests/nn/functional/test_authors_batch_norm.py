"""The authors' BatchNorm (minirn/nn/functional/authors_batch_norm.py): a NumPy oracle of their
equation for every choice of statistics, and gradient checks along a random direction."""
import numpy as np
import pytest

import minirn
from minirn.nn import functional as F
from tests.conftest import make_tensor, to_numpy

EPS = 1e-5


def authors_oracle(x, weight, bias, mean=None, var=None, eps=EPS):
    """y = γ (x - μ) / (sqrt(σ²) + ε) + β with the *unbiased* batch variance, in NumPy (float64)."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    view = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes) if mean is None else mean
    sigma_squared = x.var(axis=axes, ddof=1) if var is None else var
    x_hat = (x - mu.reshape(view)) / (np.sqrt(sigma_squared).reshape(view) + eps)
    return weight.reshape(view) * x_hat + bias.reshape(view)


# (shape, fixed mean?, fixed var?): every choice of statistics the authors' eval modes use, on 4-d and 2-d input.
CASES = [((4, 3, 5, 5), False, False), ((4, 3, 5, 5), True, True), ((4, 3, 5, 5), True, False),
         ((4, 3, 5, 5), False, True), ((6, 3), False, False), ((6, 3), True, True)]


def _inputs(rng, shape, fixed_mean, fixed_var):
    c = shape[1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    mean = rng.standard_normal(c) if fixed_mean else None
    var = rng.uniform(0.5, 2.0, c) if fixed_var else None
    return x, weight, bias, mean, var


@pytest.mark.parametrize("shape, fixed_mean, fixed_var", CASES)
def test_matches_the_authors_equation(shape, fixed_mean, fixed_var, device, rng):
    x, weight, bias, mean, var = _inputs(rng, shape, fixed_mean, fixed_var)
    as_array = lambda a: None if a is None else make_tensor(a, device).data  # noqa: E731
    y = F.authors_batch_norm(make_tensor(x, device), make_tensor(weight, device), make_tensor(bias, device),
                             mean=as_array(mean), var=as_array(var))
    np.testing.assert_allclose(to_numpy(y), authors_oracle(x, weight, bias, mean, var), rtol=1e-12, atol=1e-12)


def test_differs_from_the_standard_batch_norm(rng):
    """ε outside the root and the unbiased variance: the same weights give another function."""
    x = minirn.tensor(rng.standard_normal((4, 3, 2, 2)))
    standard = F.batch_norm(x).numpy()
    authors = F.authors_batch_norm(x).numpy()
    assert np.abs(standard - authors).max() > 1e-3


def test_returns_the_unbiased_batch_variance(rng):
    x = rng.standard_normal((4, 3, 5, 5))
    _, mean, var = F.authors_batch_norm(minirn.tensor(x), return_stats=True)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


@pytest.mark.parametrize("shape, fixed_mean, fixed_var", CASES)
def test_gradients_along_a_random_direction(shape, fixed_mean, fixed_var, rng):
    """minirn.gradcheck projects the output on a random direction (a sum would hide a wrong backward)."""
    x, weight, bias, mean, var = _inputs(rng, shape, fixed_mean, fixed_var)
    inputs = [minirn.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    assert minirn.gradcheck(lambda x, w, b: F.authors_batch_norm(x, w, b, mean=mean, var=var), inputs, seed=1)


def test_one_value_per_channel_is_refused():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.authors_batch_norm(minirn.tensor(np.ones((1, 3))))
