"""minirn/attacks/objective.py: the input gradient the attacks follow, and the worst case across restarts."""
import numpy as np
import pytest

import minirn
from minirn import attacks, nn
from minirn.attacks import objective
from minirn.nn import functional as F
from tests.attacks import cross_entropy, images, labels, predictions, tiny_cnn, trained_digits

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
    with objective.model_untouched(model):
        grad, j, _ = objective.input_gradient(model, x, y, targeted)
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
    grad, _, _ = objective.input_gradient(Constant(), x, np.array([0, 1, 0]), False)
    assert grad.shape == x.shape and not np.any(grad)


# --- worst case across restarts ----------------------------------------------------------
def test_keep_worst_prefers_first_success_then_highest_loss():
    x_a, x_b = np.zeros((4, 1)), np.ones((4, 1))
    best = (x_a, np.array([1.0, 1.0, 5.0, 1.0]), np.array([True, False, False, False]))
    candidate = (x_b, np.array([9.0, 0.5, 2.0, 3.0]), np.array([True, True, False, False]))
    x, j, success = objective.keep_worst(best, candidate)
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
