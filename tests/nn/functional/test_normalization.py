"""Tests of minirn/nn/functional/normalization.py: batch_norm and robust_norm as pure math.

The NumPy references (tests/references.py) are written from the equations (PAPER.md and the
docstrings of ``BatchNorm`` and ``RobustNorm``), not from minirn's code; ``tests/nn/test_norm.py`` uses them too.
Every eval variant of the paper is one choice of ``mean`` / ``var`` (or
``value_range``): ``None`` means the batch statistic, an array a fixed estimate.
"""
import numpy as np
import pytest

import minirn
import minirn.nn.functional as F
from minirn import backend
from tests.conftest import make_tensor, to_numpy
from tests.references import bn_reference, reduce_axes, rn_reference

# (mean fixed?, scale fixed?): training is (False, False); the paper's eval variants are the rest
VARIANTS = {
    "batch-batch": (False, False),
    "running-batch": (True, False),
    "batch-running": (False, True),
    "running-running": (True, True),
}
SHAPES = {"NCHW": (3, 2, 3, 3), "NC": (6, 3)}


def _data(rng, shape):
    c = shape[1]
    x = rng.normal(size=shape) * 1.5 + 0.7
    gamma, beta = rng.uniform(0.5, 2.0, size=c), rng.normal(size=c)
    running_mean, running_scale = rng.normal(size=c), rng.uniform(0.5, 3.0, size=c)
    return x, gamma, beta, running_mean, running_scale


# --- forward values --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS.keys())
def test_batch_norm_forward(variant, shape, device, rng):
    fix_mean, fix_var = VARIANTS[variant]
    x, gamma, beta, mean, var = _data(rng, shape)
    y, batch_mean, batch_var = F.batch_norm(
        make_tensor(x, device), make_tensor(gamma, device), make_tensor(beta, device),
        mean=backend.to_device(mean, device) if fix_mean else None,
        var=backend.to_device(var, device) if fix_var else None,
        return_stats=True,
    )
    expected = bn_reference(x, gamma, beta, mean if fix_mean else None, var if fix_var else None)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(batch_mean), x.mean(axis=reduce_axes(x)), rtol=1e-12)
    if fix_var:
        assert batch_var is None
    else:
        np.testing.assert_allclose(to_numpy(batch_var), x.var(axis=reduce_axes(x)), rtol=1e-12)


@pytest.mark.parametrize("p", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS.keys())
def test_robust_norm_forward(variant, shape, p, device, rng):
    fix_mean, fix_range = VARIANTS[variant]
    x, gamma, beta, mean, value_range = _data(rng, shape)
    y, batch_mean, batch_range = F.robust_norm(
        make_tensor(x, device), make_tensor(gamma, device), make_tensor(beta, device),
        mean=backend.to_device(mean, device) if fix_mean else None,
        value_range=backend.to_device(value_range, device) if fix_range else None,
        p=p, return_stats=True,
    )
    expected = rn_reference(x, gamma, beta, mean if fix_mean else None, value_range if fix_range else None, p)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(batch_mean), x.mean(axis=reduce_axes(x)), rtol=1e-12)
    if fix_range:
        assert batch_range is None
    else:
        axes = reduce_axes(x)
        np.testing.assert_allclose(to_numpy(batch_range), x.max(axis=axes) - x.min(axis=axes), rtol=1e-12)


def test_no_affine_means_gamma_one_beta_zero(device, rng):
    x = rng.normal(size=(4, 3, 2, 2))
    ones, zeros = np.ones(3), np.zeros(3)
    np.testing.assert_allclose(to_numpy(F.batch_norm(make_tensor(x, device))), bn_reference(x, ones, zeros), rtol=1e-10)
    np.testing.assert_allclose(
        to_numpy(F.robust_norm(make_tensor(x, device), p=0.5)), rn_reference(x, ones, zeros, p=0.5), rtol=1e-10
    )


def test_float32_stays_float32(device, rng):
    x = make_tensor(rng.normal(size=(4, 3)), device, dtype="float32")
    assert F.batch_norm(x).dtype_name == "float32"
    assert F.robust_norm(x).dtype_name == "float32"


# --- gradient checks (random projection, float64) -----------------------------------------------
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS.keys())
def test_batch_norm_gradcheck(variant, shape, device, rng):
    fix_mean, fix_var = VARIANTS[variant]
    x, gamma, beta, mean, var = _data(rng, shape)
    mean = backend.to_device(mean, device) if fix_mean else None
    var = backend.to_device(var, device) if fix_var else None
    inputs = [make_tensor(a, device, requires_grad=True) for a in (x, gamma, beta)]
    assert minirn.gradcheck(lambda x, g, b: F.batch_norm(x, g, b, mean=mean, var=var), inputs)


@pytest.mark.parametrize("p", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS.keys())
def test_robust_norm_gradcheck(variant, shape, p, device, rng):
    fix_mean, fix_range = VARIANTS[variant]
    x, gamma, beta, mean, value_range = _data(rng, shape)
    mean = backend.to_device(mean, device) if fix_mean else None
    value_range = backend.to_device(value_range, device) if fix_range else None
    inputs = [make_tensor(a, device, requires_grad=True) for a in (x, gamma, beta)]
    assert minirn.gradcheck(
        lambda x, g, b: F.robust_norm(x, g, b, mean=mean, value_range=value_range, p=p), inputs
    )


def test_gradcheck_without_affine(device, rng):
    x = make_tensor(rng.normal(size=(3, 2, 2, 2)), device, requires_grad=True)
    assert minirn.gradcheck(lambda x: F.batch_norm(x), [x])
    assert minirn.gradcheck(lambda x: F.robust_norm(x, p=0.5), [x])


def test_robust_norm_tied_maxima_share_the_gradient(device):
    """At a tie the gradient is the mean of the one-sided gradients (each tied element made the unique max)."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(6, 2))
    base[[1, 4], 0] = base[:, 0].max() + 1.0   # two tied maxima in channel 0
    base[[0, 2, 5], 1] = base[:, 1].min() - 1.0  # three tied minima in channel 1
    u = rng.normal(size=base.shape)

    def grad_at(x):
        t = make_tensor(x, device, requires_grad=True)
        F.robust_norm(t, p=0.5).backward(make_tensor(u, device))
        return to_numpy(t.grad)

    def one_sided_mean(ties, channel, sign):
        grads = []
        for i in ties:
            nudged = base.copy()
            nudged[i, channel] += sign * 1e-9  # element i becomes the unique extreme
            grads.append(grad_at(nudged))
        return np.mean(grads, axis=0)

    got = grad_at(base)
    np.testing.assert_allclose(got[:, 0], one_sided_mean([1, 4], 0, +1)[:, 0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got[:, 1], one_sided_mean([0, 2, 5], 1, -1)[:, 1], rtol=1e-6, atol=1e-8)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, -0.5])
def test_robust_norm_p_must_be_positive(p):
    with pytest.raises(ValueError, match="p must be positive"):
        F.robust_norm(minirn.zeros((2, 3)), p=p)


def test_batch_norm_needs_two_values_per_channel_for_batch_statistics(device):
    one = make_tensor(np.ones((1, 3)), device)
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        F.batch_norm(one)
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        F.batch_norm(make_tensor(np.ones((1, 3, 1, 1)), device))
    # with a fixed variance one value is enough (eval with running statistics)
    y = F.batch_norm(one, mean=backend.to_device(np.zeros(3), device), var=backend.to_device(np.full(3, 4.0), device))
    np.testing.assert_allclose(to_numpy(y), np.full((1, 3), 1.0 / np.sqrt(4.0 + 1e-5)))


@pytest.mark.parametrize("shape", [(2, 3, 4), (6,), (2, 3, 2, 2, 2)])
def test_wrong_rank_is_a_clear_error(shape):
    x = minirn.zeros(shape)
    for norm in (F.batch_norm, F.robust_norm):
        with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
            norm(x)


def test_channel_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="channels"):
        F.batch_norm(minirn.zeros((2, 3)), minirn.ones((4,)), minirn.zeros((4,)))
