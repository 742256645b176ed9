"""minirn/attacks/square.py: the Square Attack's schedule, its ±ε vertices, accepted proposals only, determinism.

(The contract every attack keeps is in test_contract.py; Square against a closed-form optimum in
test_linear_oracle.py.)
"""
import numpy as np
import pytest

from minirn import attacks, backend, nn
from minirn.attacks import objective
from minirn.attacks.square import square_fraction
from tests.attacks import images, labels, predictions, tiny_cnn, trained_digits
from tests.attacks.test_trained import Binarized
from tests.conftest import to_numpy

EPS = 0.1

#: The authors' p-selection (Andriushchenko et al. 2020, code of Algorithm 1): the share p_init is halved
#: after each of these queries of a 10 000-query budget; (last query with this share, its divisor).
PAPER_SCHEDULE = [(10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256),
                  (10000, 512)]


def paper_fraction(query, p_init=0.8):
    """p at ``query`` of 10 000, read off the table: the first band whose last query is >= ``query``."""
    return p_init / next(divisor for last, divisor in PAPER_SCHEDULE if query <= last)


@pytest.mark.parametrize("query", [0, 1, 5, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001,
                                   6000, 6001, 8000, 8001, 9999])
def test_square_fraction_follows_the_paper_schedule(query):
    assert square_fraction(query, 10000) == paper_fraction(query)


@pytest.mark.parametrize("query, queries", [(1, 1000), (2, 1000), (5, 1000), (6, 1000), (21, 20000), (22, 20000),
                                            (3, 100), (99, 100), (250, 5000)])
def test_square_fraction_is_rescaled_to_the_budget(query, queries):
    """Query i of a budget of n behaves like query ⌊10 000 i / n⌋ of 10 000."""
    assert square_fraction(query, queries) == paper_fraction(int(query * 10000 / queries))


def test_square_fraction_scales_with_p_init():
    assert [square_fraction(q, 10000, p_init=0.3) for q in (5, 30, 100)] == [0.3, 0.15, 0.075]


# --- the result lies on the vertices of the ε-box ---------------------------------------------------------
def setup(device, n=6, **kwargs):
    model = tiny_cnn("bn", device=device, **kwargs).eval()
    return model, images(n, device=device), labels(n, device=device)


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_every_pixel_is_at_x_plus_or_minus_eps_or_at_the_box(device, eps):
    """Square only ever writes x ± ε, clipped: no pixel is strictly inside the ε-interval ∩ box."""
    model, x, y = setup(device)
    x_np = to_numpy(x)
    out = to_numpy(attacks.square(model, x, y, eps, 50, seed=0))
    delta = out - x_np
    assert np.abs(delta).max() <= eps * (1 + 1e-6) and out.min() >= 0.0 and out.max() <= 1.0
    at_vertex = np.isclose(np.abs(delta), eps, rtol=0, atol=1e-6)
    at_box = (out == 0.0) | (out == 1.0)
    assert np.all(at_vertex | at_box)
    assert np.any((x_np + eps > 1) | (x_np - eps < 0))   # the box is in play at these budgets
    both = np.isclose(delta, eps, atol=1e-6).any() and np.isclose(delta, -eps, atol=1e-6).any()
    assert both   # both signs are used


def test_multi_channel_images_get_a_sign_per_channel():
    """With C channels each pixel of each channel is still at x ± ε (or the box)."""
    g = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4, generator=g))
    x = g.uniform(0, 1, (5, 3, 6, 6)).astype("float32")
    y = g.integers(0, 4, 5)
    delta = attacks.square(model, x, y, EPS, 30, seed=1) - x
    assert np.all(np.isclose(np.abs(delta), EPS, atol=1e-6) | np.isclose(x + delta, 0) | np.isclose(x + delta, 1))


# --- accepted proposals only -----------------------------------------------------------------------------
def margin(model, x, y):
    """The attacker's objective max_{j≠y} z_j - z_y per example (NumPy)."""
    z = to_numpy(objective.logits_of(model, x))
    y = to_numpy(y)
    rows = np.arange(len(y))
    others = np.where(np.arange(z.shape[1]) == y[:, None], -np.inf, z)
    return others.max(axis=1) - z[rows, y]


def test_square_never_lowers_an_examples_objective_below_its_start(device):
    """queries=1 returns the starting stripes alone; more queries (same seed, same start) may only raise each
    example's margin objective, and leave alone the examples fooled from the start."""
    model, x, y = setup(device, n=8)
    start = attacks.square(model, x, y, EPS, 1, seed=2)
    result = attacks.square(model, x, y, EPS, 200, seed=2)
    m_start, m_result = margin(model, start, y), margin(model, result, y)
    assert np.all(m_result >= m_start)
    assert np.any(m_result > m_start)   # and it did move some
    fooled_at_start = m_start > 0
    np.testing.assert_array_equal(to_numpy(result)[fooled_at_start], to_numpy(start)[fooled_at_start])


def test_square_fools_more_with_more_queries_on_a_trained_model():
    model, x, y = trained_digits()
    x, y = x[:100], y[:100]
    accuracy = {q: (predictions(model, attacks.square(model, x, y, EPS, q, seed=0)) == y).mean() for q in (1, 300)}
    assert accuracy[300] < accuracy[1] - 0.05


def test_square_is_not_fooled_by_masked_gradients():
    """Binarizing the input zeroes every gradient: PGD stays at its random start, Square (no gradients) does
    better."""
    model, x, y = trained_digits()
    masked, x, y = Binarized(model), x[:100], y[:100]
    pgd_accuracy = (predictions(masked, attacks.pgd(masked, x, y, EPS, EPS / 4, 10, seed=0)) == y).mean()
    square_accuracy = (predictions(masked, attacks.square(masked, x, y, EPS, 300, seed=0)) == y).mean()
    assert square_accuracy < pgd_accuracy - 0.05


# --- determinism ---------------------------------------------------------------------------------------
def test_one_seed_gives_one_result_on_every_device(device):
    model, x, y = setup(device)
    on_device = to_numpy(attacks.square(model, x, y, EPS, 40, seed=5))
    np.testing.assert_array_equal(on_device, to_numpy(attacks.square(model, x, y, EPS, 40, seed=5)))
    cpu_model, cpu_x, cpu_y = setup("cpu")
    np.testing.assert_allclose(on_device, attacks.square(cpu_model, cpu_x, cpu_y, EPS, 40, seed=5), atol=1e-6)
    other_seed = attacks.square(cpu_model, cpu_x, cpu_y, EPS, 40, seed=6)
    assert np.abs(other_seed - on_device).max() > 1e-3


# --- arguments --------------------------------------------------------------------------------------------
def test_square_is_l_inf_only():
    model, x, y = setup("cpu")
    with pytest.raises(ValueError, match="square: only norm='linf'"):
        attacks.square(model, x, y, 0.5, 10, norm="l2")


@pytest.mark.parametrize("kwargs, match", [({"p_init": 0.0}, "p_init"), ({"p_init": 1.5}, "p_init"),
                                           ({"queries": 0}, ">= 1, got 0")])
def test_square_rejects_bad_settings(kwargs, match):
    model, x, y = setup("cpu")
    with pytest.raises(ValueError, match=match):
        attacks.square(model, x, y, EPS, **{"queries": 10, **kwargs})


def test_square_needs_images():
    x = backend.to_device(np.full((3, 16), 0.5, dtype="float32"), "cpu")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        attacks.square(lambda t: t, x, [0, 1, 2], EPS, 10)
