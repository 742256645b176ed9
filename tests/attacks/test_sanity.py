"""minirn/attacks/sanity.py: model_is_alive, and the reuse of one attack's result across checks.

(The gradient-masking checks on a trained and a masked model are in test_trained.py.)
"""
import numpy as np
import pytest

from minirn import attacks, backend, nn
from minirn.attacks import sanity
from tests.attacks import predictions, trained_digits

N = 60
#: The cheapest settings that still run every check.
CHEAP = {"steps": 2, "noise_draws": 1, "square_queries": 5}


@pytest.fixture(scope="module")
def digits():
    model, x, y = trained_digits()
    return model, x[:N], y[:N]


def dead_network(bias_class=None):
    """A digits MLP whose last Linear has zero weights (and zero bias, or a bias toward ``bias_class``)."""
    g = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, generator=g), nn.ReLU(), nn.Linear(16, 10, generator=g))
    last = model[3]
    bias = np.zeros(10, dtype="float32")
    if bias_class is not None:
        bias[bias_class] = 1.0
    last.weight.data = backend.to_device(np.zeros((10, 16), dtype="float32"), "cpu")
    last.bias.data = backend.to_device(bias, "cpu")
    return model.eval()


@pytest.mark.parametrize("bias_class", [None, 3])
def test_a_dead_network_fails_model_is_alive(digits, bias_class):
    """Constant logits: one predicted class for every image (class 0 for all-zero logits, else the bias's)."""
    _, x, y = digits
    report = attacks.sanity_checks(dead_network(bias_class), x, y, 0.1, **CHEAP)
    alive = report["checks"]["model_is_alive"]
    assert alive["passed"] is False and report["passed"] is False
    assert alive["distinct_predicted_classes"] == 1 and alive["num_classes"] == 10
    assert alive["clean_accuracy"] == pytest.approx(np.mean(y == (bias_class or 0)))
    assert report["checks"]["zero_input_gradients"]["passed"] is False    # the other net-is-dead symptom


def test_a_network_at_chance_fails_model_is_alive_even_with_many_classes(digits):
    """The trained model graded against shifted labels: many classes predicted, accuracy ≤ 1.5/K."""
    model, x, y = digits
    report = attacks.sanity_checks(model, x, (y + 1) % 10, 0.1, **CHEAP)
    alive = report["checks"]["model_is_alive"]
    assert alive["passed"] is False and alive["distinct_predicted_classes"] > 1
    assert alive["clean_accuracy"] <= alive["required_accuracy_above"] == pytest.approx(0.15)


def test_a_trained_network_passes_model_is_alive(digits):
    model, x, y = digits
    alive = attacks.sanity_checks(model, x, y, 0.1, **CHEAP)["checks"]["model_is_alive"]
    assert alive["passed"] is True and alive["distinct_predicted_classes"] == 10
    assert alive["clean_accuracy"] == pytest.approx(np.mean(predictions(model, x) == y))
    assert alive["chance_accuracy"] == pytest.approx(0.1)


@pytest.mark.parametrize("restarts", [1, 2])
def test_loss_increases_reads_the_base_pgds_first_run_on_the_first_batch(digits, restarts):
    """The loss per step comes from the base PGD (no separate run) and equals a one-run PGD on batch 0."""
    model, x, y = digits
    eps, alpha, steps = 0.1, 0.025, 4
    report = attacks.sanity_checks(model, x, y, eps, alpha=alpha, steps=steps, restarts=restarts, batch_size=25,
                                   seed=3, noise_draws=1, square_queries=5)
    history = []
    attacks.pgd(model, x[:25], y[:25], eps, alpha, steps, seed=3, loss_history=history)
    assert report["checks"]["loss_increases"]["loss_per_step"] == history


def test_the_white_box_side_reuses_the_base_pgd(digits, monkeypatch):
    """No PGD runs twice with the same settings: record every call's (model, budget, step, steps, restarts, loss,
    seed); the strong attack at ε used to re-run the base PGD."""
    calls = []
    real = sanity.pgd

    def counting(model, x, y, eps, alpha, steps, **kwargs):
        calls.append((id(model), eps, alpha, steps, kwargs["restarts"], kwargs["loss"], kwargs["seed"]))
        return real(model, x, y, eps, alpha, steps, **kwargs)

    monkeypatch.setattr(sanity, "pgd", counting)
    model, x, y = digits
    attacks.sanity_checks(model, x, y, 0.1, batch_size=30, **CHEAP)
    assert len(calls) == len(set(calls))
