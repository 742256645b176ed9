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


# --- suite_converged: the convergence check of the reported (suite) evaluation ---------------------------------
def test_suite_converged_fails_when_the_reported_result_missed_what_a_stronger_suite_finds(digits):
    """Reported flags that call every correct example robust at ε = 0.1 (an evaluation that did not converge):
    the fast suite breaks many of them, so the check fails; PGD's own convergence becomes a finding."""
    model, x, y = digits
    reported = predictions(model, x) == y
    report = attacks.sanity_checks(model, x, y, 0.1, reported_robust=reported, stronger="fast", **CHEAP)
    check = report["checks"]["suite_converged"]
    assert check["passed"] is False and report["passed"] is False
    assert check["reported_accuracy"] == pytest.approx(np.mean(reported))
    assert check["lowered_by"] > 0.02 and check["re_attacked"] == int(np.sum(reported))  # the robust ones only
    assert "more_steps_and_restarts_change_little" not in report["checks"]
    finding = report["findings"]["pgd_against_the_suite"]
    assert finding["suite_accuracy"] == check["reported_accuracy"]
    assert finding["pgd_above_suite_by"] == pytest.approx(finding["pgd_accuracy"] - check["reported_accuracy"])


def test_suite_converged_passes_when_the_reported_result_is_a_stronger_suites(digits):
    """Reported flags from the medium suite itself: re-attacking them with the fast suite (weaker) finds at most
    a few more (tolerance 2 points)."""
    model, x, y = digits
    reported = attacks.robust_accuracy(model, x, y, 0.1, suite="medium", batch_size=30, keep_per_example=True)
    flags = reported["per_example"][0]
    report = attacks.sanity_checks(model, x, y, 0.1, batch_size=30, reported_robust=flags, stronger="fast", **CHEAP)
    check = report["checks"]["suite_converged"]
    assert check["passed"] is True and check["reported_accuracy"] == pytest.approx(reported["robust_accuracy"][0])
    assert check["stronger_accuracy"] <= check["reported_accuracy"]


def test_without_a_reported_suite_the_pgd_check_is_the_convergence_check(digits):
    model, x, y = digits
    report = attacks.sanity_checks(model, x, y, 0.1, **CHEAP)
    assert "more_steps_and_restarts_change_little" in report["checks"] and "suite_converged" not in report["checks"]
    assert report["findings"] == {}


def test_the_suite_check_needs_both_the_reported_result_and_the_stronger_suite(digits):
    model, x, y = digits
    with pytest.raises(ValueError, match="together"):
        attacks.sanity_checks(model, x, y, 0.1, reported_robust=[True] * len(y), **CHEAP)
    with pytest.raises(ValueError, match="entries"):
        attacks.sanity_checks(model, x, y, 0.1, reported_robust=[True], stronger="fast", **CHEAP)


def test_stronger_suite_goes_up_one_step_and_restarts_the_standard_one():
    from minirn.attacks.suite import stronger_suite
    assert [stronger_suite(s) for s in ("smoke", "fast", "medium", "strong")] == ["fast", "medium", "strong", "standard"]
    strongest = stronger_suite("standard")
    assert strongest["apgd-ce"]["restarts"] == 2 and strongest["square"]["queries"] == 10000
    with pytest.raises(ValueError, match="no stronger suite"):
        stronger_suite("nonsense")
