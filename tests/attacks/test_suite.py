"""minirn/attacks/suite.py: the ensemble's per-example worst case, broken_by, and fixed batches under batch statistics."""
import copy
import json
import warnings

import numpy as np
import pytest

from minirn import attacks, backend, nn
from minirn.attacks.suite import SUITES, suite_attacks
from tests.attacks import images, labels, predictions, tiny_cnn, trained_digits
from tests.conftest import to_numpy

EPS = 0.1
#: Deterministic members (no random start): re-running one on a subset of the batch is exact.
DETERMINISTIC = {"fgsm": {"loss": "margin"}, "bim": {"steps": 10}, "mim": {"steps": 10}}

#: The same attacks called by hand, with evaluate's defaults (α = ε/10, MIM's decay 1) and 10 steps.
MEMBERS = {
    "fgsm": lambda model, x, y, eps: attacks.fgsm(model, x, y, eps, loss="margin"),
    "bim": lambda model, x, y, eps: attacks.bim(model, x, y, eps, eps / 10, 10),
    "mim": lambda model, x, y, eps: attacks.mim(model, x, y, eps, eps / 10, 10),
}


# --- which attacks ---------------------------------------------------------------------------------------
def test_suite_attacks_names_the_ensemble_in_order():
    assert list(suite_attacks("standard")) == ["apgd-ce", "apgd-t", "square"]
    assert suite_attacks("fast") == SUITES["fast"]
    assert list(suite_attacks("fast", ["fgsm", "pgd"])) == ["fgsm", "pgd", "apgd-ce", "apgd-t", "square"]
    custom = suite_attacks({"apgd-ce": {"steps": 3}}, {"apgd-ce": {"steps": 7}})   # the extra attack's settings win
    assert custom == {"apgd-ce": {"steps": 7}}
    for bad in ("strongest", 3):
        with pytest.raises(ValueError, match="suite"):
            suite_attacks(bad)


# --- batch-independent models: the worst case of the members -----------------------------------------------
@pytest.fixture(scope="module")
def digits64():
    """The trained digits MLP in float64 (a copy: the cached model stays float32), 80 test images."""
    model, x, y = trained_digits()
    return copy.deepcopy(model).double(), x[:80].astype("float64"), y[:80]


def member_correct(model, x, y, name, batch_size):
    """Per example: still correct after ``name`` alone, run on the consecutive batches."""
    attack = MEMBERS[name]
    return np.concatenate([predictions(model, attack(model, x[s : s + batch_size], y[s : s + batch_size], EPS))
                           == y[s : s + batch_size] for s in range(0, len(y), batch_size)])


def test_the_ensemble_is_never_weaker_than_any_member(digits64):
    """Robust under the ensemble ⇔ clean-correct and robust under each member alone (exact: the members are
    deterministic and the model does not look across the batch)."""
    model, x, y = digits64
    result = attacks.robust_accuracy(model, x, y, EPS, suite=DETERMINISTIC, batch_size=32, keep_per_example=True)
    robust = np.array(result["per_example"][0])
    clean = predictions(model, x) == y
    correct = {name: member_correct(model, x, y, name, 32) for name in MEMBERS}
    for name in MEMBERS:
        assert not np.any(robust & ~correct[name]), name      # robust under the ensemble ⇒ robust under each
    np.testing.assert_array_equal(robust, clean & correct["fgsm"] & correct["bim"] & correct["mim"])
    assert robust.sum() < min(c.sum() for c in correct.values())   # no member alone finds the worst case here
    assert result["robust_accuracy"] == [pytest.approx(robust.mean())]


def test_broken_by_counts_each_example_once_at_the_first_attack_that_breaks_it(digits64):
    model, x, y = digits64
    result = attacks.robust_accuracy(model, x, y, [0.05, EPS], suite=DETERMINISTIC, batch_size=32,
                                     keep_per_example=True)
    n, clean_correct = len(y), round(result["clean_accuracy"] * len(y))
    for k, broken in enumerate(result["broken_by"]):
        assert sum(broken.values()) == clean_correct - sum(result["per_example"][k])
        assert sum(result["per_example"][k]) == round(result["robust_accuracy"][k] * n)
    clean = predictions(model, x) == y
    fgsm_correct = member_correct(model, x, y, "fgsm", 32)
    assert result["broken_by"][1]["fgsm"] == int(np.sum(clean & ~fgsm_correct))


def test_batch_independent_models_report_equal_realisable_accuracy(digits64):
    model, x, y = digits64
    suite = {"apgd-ce": {"steps": 5}, "apgd-t": {"steps": 5, "n_targets": 2}, "square": {"queries": 30}}
    result = attacks.robust_accuracy(model, x[:40], y[:40], [0.0, EPS], suite=suite, batch_size=20)
    assert result["config"]["batch_statistics"] is False
    assert result["attack_accuracy"] == {"apgd-ce": None, "apgd-t": None, "square": None}   # they see survivors only
    assert result["extra_worst_accuracy"] is None and result["config"]["extra_attacks"] == []
    assert result["realisable_accuracy"] == result["robust_accuracy"]
    assert result["robust_accuracy"][0] == result["clean_accuracy"]       # ε = 0 breaks nothing
    assert result["robust_accuracy"][1] < result["clean_accuracy"]
    assert list(result["config"]["attacks"]) == ["apgd-ce", "apgd-t", "square"]
    assert json.loads(json.dumps(result)) == result


# --- extra attacks: every example, evaluate's figures ----------------------------------------------------------
EXTRA = {"fgsm": {}, "pgd": {"steps": 5}}      # PGD with a random start: its draw depends on the batch it is given
SMALL_SUITE = {"apgd-ce": {"steps": 3}, "square": {"queries": 20}}


def test_extra_attacks_give_evaluates_accuracies_for_a_batch_independent_model(digits64):
    """The extra attacks run on every example of each fixed batch with evaluate's seeds, so their accuracies,
    flags and worst case are evaluate's to the bit; the suite's worst case is never above any of them."""
    model, x, y = digits64
    eps = [0.05, EPS]
    result = attacks.robust_accuracy(model, x, y, eps, suite=SMALL_SUITE, attacks=EXTRA, batch_size=32, seed=4,
                                     keep_per_example=True)
    reference = attacks.evaluate(model, x, y, EXTRA, eps, batch_size=32, seed=4, progress=False, keep_per_example=True)
    assert result["config"]["batch_statistics"] is False and result["config"]["extra_attacks"] == ["fgsm", "pgd"]
    for name in EXTRA:
        assert result["attack_accuracy"][name] == reference["accuracy"][name]
        assert result["attack_per_example"][name] == reference["per_example"][name]
    assert result["extra_worst_accuracy"] == reference["worst_case_accuracy"]
    for name in SMALL_SUITE:   # the suite's own attacks still see only the survivors
        assert result["attack_accuracy"][name] is None and result["attack_per_example"][name] is None
    for k in range(len(eps)):
        assert result["robust_accuracy"][k] <= result["extra_worst_accuracy"][k]
        assert all(result["robust_accuracy"][k] <= result["attack_accuracy"][name][k] for name in EXTRA)
        robust = np.array(result["per_example"][k])
        for name in EXTRA:   # robust under the ensemble ⇒ correct under each extra attack
            assert not np.any(robust & ~np.array(result["attack_per_example"][name][k])), name
    assert result["robust_accuracy"][1] < result["extra_worst_accuracy"][1]   # the suite finds more here
    assert json.loads(json.dumps(result)) == result


def test_extra_attacks_give_evaluates_accuracies_for_a_batch_dependent_model():
    model = batch_mean_model()
    x, y = batch_data()
    result = attacks.robust_accuracy(model, x, y, EPS, suite={"square": {"queries": 10}}, attacks=EXTRA,
                                     batch_size=4, keep_per_example=True)
    reference = attacks.evaluate(model, x, y, EXTRA, [EPS], batch_size=4, seed=0, progress=False,
                                 keep_per_example=True)
    assert result["config"]["batch_statistics"] is True
    for name in EXTRA:
        assert result["attack_accuracy"][name] == reference["accuracy"][name]
        assert result["attack_per_example"][name] == reference["per_example"][name]
    assert result["extra_worst_accuracy"] == reference["worst_case_accuracy"]
    assert len(result["attack_per_example"]["square"][0]) == len(y)   # fixed batches: every attack sees all


def test_extra_attacks_see_every_example_and_the_suite_only_survivors(digits64):
    """Spies (return x unchanged) record the batch sizes they are given: an extra one after FGSM sees whole
    batches, a suite one after it only the examples still robust."""
    sizes = {"extra": [], "suite": []}

    def spy(kind):
        def attack(model, xb, yb, eps):
            sizes[kind].append(xb.shape[0])
            return xb
        return attack

    model, x, y = digits64
    x, y = x[:40], y[:40]
    attacks.robust_accuracy(model, x, y, EPS, suite={"suite_spy": spy("suite")},
                            attacks={"fgsm": {}, "extra_spy": spy("extra")}, batch_size=20)
    alive = (predictions(model, x) == y) & (predictions(model, attacks.fgsm(model, x, y, EPS)) == y)
    assert sizes["extra"] == [20, 20]
    assert sizes["suite"] == [int(alive[:20].sum()), int(alive[20:].sum())] and alive.sum() < 40


# --- batch-dependent models: fixed batches -------------------------------------------------------------
D = 16


def batch_mean_model(seed=0):
    """logits = W (x - mean over the batch) + b: a BatchNorm in eval mode that subtracts the *batch* mean and
    divides by a running variance of 1 (γ = 1, β = 0), before a linear layer."""
    g = np.random.default_rng(seed)
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm2d(D), nn.Linear(D, 3, generator=g)).double().eval()
    return nn.set_norm_eval_stats(model, "batch", "running")


def batch_data(n=12, seed=3):
    g = np.random.default_rng(seed)
    return g.uniform(0, 1, (n, 1, 4, 4)), g.integers(0, 3, n)


def survivors_only(model, x, y, batch_size):
    """What re-batching the survivors (AutoAttack's way) would report: each attack runs on, and the model
    classifies, only the examples still robust."""
    robust = []
    for s in range(0, len(y), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        alive = predictions(model, xb) == yb
        for name in MEMBERS:
            rows = np.flatnonzero(alive)
            if rows.size:
                alive[rows] = predictions(model, MEMBERS[name](model, xb[rows], yb[rows], EPS)) == yb[rows]
        robust.append(alive)
    return np.concatenate(robust)


def test_batch_statistics_models_are_attacked_and_classified_in_their_fixed_batches():
    model = batch_mean_model()
    x, y = batch_data()
    result = attacks.robust_accuracy(model, x, y, EPS, suite=DETERMINISTIC, batch_size=4, keep_per_example=True)
    assert result["config"]["batch_statistics"] is True

    fixed_clean, fixed = [], {name: [] for name in MEMBERS}
    for s in range(0, len(y), 4):
        xb, yb = x[s : s + 4], y[s : s + 4]
        fixed_clean.append(predictions(model, xb) == yb)
        for name in MEMBERS:
            fixed[name].append(predictions(model, MEMBERS[name](model, xb, yb, EPS)) == yb)
    clean = np.concatenate(fixed_clean)
    correct = {name: np.concatenate(v) for name, v in fixed.items()}
    robust = np.array(result["per_example"][0])
    np.testing.assert_array_equal(robust, clean & correct["fgsm"] & correct["bim"] & correct["mim"])
    assert result["clean_accuracy"] == pytest.approx(clean.mean())
    for name in MEMBERS:
        assert result["attack_accuracy"][name] == [pytest.approx(correct[name].mean())]

    # the case is built so that re-batching the survivors would change the answer
    assert np.any(survivors_only(model, x, y, 4) != robust)
    # the realisable accuracy: per batch the worst batch actually submitted; never below the per-example worst
    # case, never above the clean or any single attack's accuracy
    realisable = result["realisable_accuracy"][0]
    assert realisable >= result["robust_accuracy"][0]
    assert realisable <= min([result["clean_accuracy"]] + [result["attack_accuracy"][m][0] for m in MEMBERS])


def test_batch_statistics_are_detected_in_train_mode_and_in_eval_with_batch_statistics():
    x, y = images(6), labels(6)
    suite = {"fgsm": {}}
    for model in (tiny_cnn("bn").train(), nn.set_norm_eval_stats(tiny_cnn("rn").eval(), "batch", "batch")):
        result = attacks.robust_accuracy(model, x, y, EPS, suite=suite, batch_size=3)
        assert result["config"]["batch_statistics"] is True
        assert result["realisable_accuracy"][0] >= result["robust_accuracy"][0]
    result = attacks.robust_accuracy(tiny_cnn("bn").eval(), x, y, EPS, suite=suite, batch_size=3)
    assert result["config"]["batch_statistics"] is False


def test_later_attacks_see_only_survivors_unless_the_model_uses_batch_statistics(digits64):
    """A spy attack (returns x unchanged) records the batch sizes it is given, after FGSM."""

    def run(model, x, y):
        sizes = []

        def spy(model, xb, yb, eps):
            sizes.append(xb.shape[0])
            return xb

        attacks.robust_accuracy(model, x, y, EPS, suite={"fgsm": {}, "spy": spy}, batch_size=20)
        return sizes

    model, x, y = digits64
    x, y = x[:40], y[:40]
    alive = (predictions(model, x) == y) & (predictions(model, attacks.fgsm(model, x, y, EPS)) == y)
    assert run(model, x, y) == [int(alive[:20].sum()), int(alive[20:].sum())]
    assert alive.sum() < 40
    assert run(batch_mean_model(), *batch_data(40)) == [20, 20]   # fixed batches: every example, every time


def test_robust_accuracy_leaves_the_model_untouched():
    model = tiny_cnn("bn", num_classes=4).train()
    x, y = images(6), labels(6)
    state = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    suite = {"apgd-ce": {"steps": 2}, "apgd-t": {"steps": 2, "n_targets": 1}, "square": {"queries": 3}}
    attacks.robust_accuracy(model, x, y, EPS, suite=suite, batch_size=3)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(v), state[k], err_msg=k)


# --- arguments -------------------------------------------------------------------------------------------
def test_robust_accuracy_warns_when_the_budget_covers_the_range():
    model, x, y = tiny_cnn("bn").eval(), images(2), labels(2)
    with pytest.warns(UserWarning, match="did you mean 8/255"):
        attacks.robust_accuracy(model, x, y, 8, suite={"fgsm": {}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attacks.robust_accuracy(model, x, y, EPS, suite={"fgsm": {}})


@pytest.mark.parametrize("kwargs, match", [({"eps": []}, "eps is empty"), ({"eps": -0.1}, "eps"),
                                           ({"batch_size": 0}, "batch_size"), ({"suite": "strongest"}, "unknown suite"),
                                           ({"attacks": ["fgsm"], "suite": {"fgsm": {}}}, None)])
def test_robust_accuracy_rejects_bad_arguments(kwargs, match):
    model, x, y = tiny_cnn("bn").eval(), images(2), labels(2)
    kwargs = {"eps": EPS, **kwargs}
    if match is None:   # an extra attack equal to a suite member runs once, with the extra's settings
        assert list(attacks.robust_accuracy(model, x, y, **kwargs)["config"]["attacks"]) == ["fgsm"]
        return
    with pytest.raises(ValueError, match=match):
        attacks.robust_accuracy(model, x, y, **kwargs)


def test_robust_accuracy_on_every_device(device):
    model = tiny_cnn("bn", device=device).eval()
    x, y = images(4, device=device), labels(4, device=device)
    result = attacks.robust_accuracy(model, x, y, [0.0, 0.3], suite=DETERMINISTIC, batch_size=2)
    clean = (predictions(model, x) == backend.to_host(y)).mean()
    assert result["clean_accuracy"] == clean and result["robust_accuracy"][0] == clean
