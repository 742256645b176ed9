"""``evaluate``: accuracies, the per-example worst case, recorded settings, JSON, progress bar."""
import json
import warnings

import numpy as np
import pytest

from minirn import attacks, backend, nn
from tests.attacks import images, labels, predictions, tiny_cnn, trained_digits
from tests.conftest import to_numpy


class Threshold(nn.Module):
    """Class 0 when the mean pixel exceeds 0.5, else class 1 (logits ±(mean - 0.5))."""

    def forward(self, x):
        s = x.mean(axis=(1, 2, 3)) - 0.5
        return nn.functional.stack([s, -s], axis=1)


def threshold_data(n=8):
    x = np.where(np.arange(n) % 2 == 0, 0.6, 0.4).astype("float32")[:, None, None, None] * np.ones((1, 1, 2, 2),
                                                                                                   dtype="float32")
    return x, (np.arange(n) % 2).astype("int64")


def flipper(indices):
    """A fake attack that fools exactly the examples at ``indices`` (maps 0.6 <-> 0.4)."""

    def attack(model, x, y, eps):
        out = np.array(x, copy=True)
        out[list(indices)] = 1.0 - out[list(indices)]
        return out

    return attack


def test_worst_case_is_the_mean_of_the_per_example_minimum():
    x, y = threshold_data()
    result = attacks.evaluate(Threshold(), x, y, {"a": flipper([0, 1]), "b": flipper([2, 3])}, [0.1], batch_size=8,
                              progress=False, keep_per_example=True)
    assert result["clean_accuracy"] == 1.0
    assert result["accuracy"] == {"a": [0.75], "b": [0.75]}
    assert result["worst_case_accuracy"] == [0.5]   # not min(0.75, 0.75)
    assert result["per_example"]["a"][0] == [False, False] + [True] * 6
    np.testing.assert_allclose(result["perturbation"]["a"][0]["linf_max"], 0.2, rtol=1e-6)
    np.testing.assert_allclose(result["perturbation"]["a"][0]["linf_mean"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(result["perturbation"]["a"][0]["l2_max"], 0.4, rtol=1e-6)


def test_callables_may_be_given_in_a_list_and_are_named_after_the_function():
    x, y = threshold_data()

    def fool_first(model, x, y, eps):
        return flipper([0])(model, x, y, eps)

    result = attacks.evaluate(Threshold(), x, y, [fool_first], [0.0, 0.1], batch_size=4, progress=False)
    assert result["accuracy"] == {"fool_first": [0.75, 0.75]}   # called once per batch of 4: fools 2 of 8
    assert result["config"]["attacks"]["fool_first"]["callable"].endswith("fool_first")


@pytest.fixture(scope="module")
def digits():
    model, x, y = trained_digits()
    return model, x[:60], y[:60]


def test_named_attacks_follow_the_paper_protocol_and_overrides(digits):
    model, x, y = digits
    result = attacks.evaluate(model, x, y, {"fgsm": None, "pgd": {"steps": 5}, "bim": {"alpha": 0.01}},
                              [0.0, 0.1], batch_size=25, seed=3, progress=False)
    config = result["config"]
    assert config["attacks"]["pgd"]["steps"] == 5 and config["attacks"]["pgd"]["random_start"] is True
    assert config["attacks"]["pgd"]["alpha"] == [0.0, pytest.approx(0.01)]      # ε/10
    assert config["attacks"]["bim"]["steps"] == 20 and config["attacks"]["bim"]["alpha"] == 0.01
    assert config["batch_size"] == 25 and config["seed"] == 3 and config["n_examples"] == 60
    assert config["norm_eval_stats"] == ["running", "running"] and config["batch_statistics"] is False
    clean = result["clean_accuracy"]
    assert clean == pytest.approx((predictions(model, x) == y).mean())
    for name in ("fgsm", "pgd", "bim"):
        assert result["accuracy"][name][0] == clean           # ε = 0 is clean accuracy
        assert result["accuracy"][name][1] < clean
        assert result["perturbation"][name][1]["linf_max"] <= 0.1 + 1e-6
    assert result["worst_case_accuracy"][1] <= min(result["accuracy"][n][1] for n in result["accuracy"])
    assert json.loads(json.dumps(result)) == result


def test_evaluate_accuracy_matches_running_the_attack_by_hand(digits):
    model, x, y = digits
    result = attacks.evaluate(model, x, y, {"pgd": {"steps": 4}}, [0.1], batch_size=20, seed=5, progress=False)
    by_hand = np.concatenate([
        predictions(model, attacks.pgd(model, x[s : s + 20], y[s : s + 20], 0.1, 0.01, 4, seed=5 + b)) == y[s : s + 20]
        for b, s in enumerate(range(0, 60, 20))
    ])
    assert result["accuracy"]["pgd"] == [pytest.approx(by_hand.mean())]


def test_evaluate_is_reproducible_with_a_seed(digits):
    model, x, y = digits
    run = lambda: attacks.evaluate(model, x, y, {"pgd": {"steps": 3}}, [0.1], 30, seed=1, progress=False)  # noqa: E731
    assert run() == run()


def test_cw_and_l2_budgets(digits):
    model, x, y = digits
    result = attacks.evaluate(model, x[:20], y[:20], {"cw": {"steps": 20, "binary_search_steps": 2}, "pgd": {"steps": 5}},
                              [0.5], batch_size=20, norm="l2", progress=False)
    for name in ("cw", "pgd"):
        assert result["perturbation"][name][0]["l2_max"] <= 0.5 * (1 + 1e-6)
    assert result["config"]["norm"] == "l2"


def test_batch_statistics_are_recorded():
    model = nn.set_norm_eval_stats(tiny_cnn("rn").eval(), "batch", "batch")
    x, y = images(6), labels(6)
    result = attacks.evaluate(model, x, y, "fgsm", [0.1], batch_size=3, progress=False)
    config = result["config"]
    assert config["norm_eval_stats"] == ["batch", "batch"] and config["batch_statistics"] is True
    assert "batch size" in config["note"]
    with pytest.warns(UserWarning, match="training mode"):  # evaluating a model left in training mode is flagged
        assert attacks.evaluate(tiny_cnn("bn").train(), x, y, "fgsm", [0.1], 3, progress=False)["config"]["training"]


def test_evaluate_and_sanity_checks_leave_the_model_untouched():
    model = tiny_cnn("bn").train()
    x, y = images(6), labels(6)
    state = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode"), pytest.warns(UserWarning, match="CW-L2 is an L2 attack"):
        attacks.evaluate(model, x, y, {"pgd": {"steps": 2}, "cw": {"steps": 2, "binary_search_steps": 1}}, [0.1], 3,
                         progress=False)
    attacks.sanity_checks(model, x, y, 0.1, steps=2, noise_draws=2)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(v), state[k], err_msg=k)


def test_evaluate_on_every_device(device):
    model = tiny_cnn("bn", device=device).eval()
    x, y = images(4, device=device), labels(4, device=device)
    result = attacks.evaluate(model, x, y, ["fgsm", "mim"], [0.0, 0.2], batch_size=2, progress=False)
    clean = (predictions(model, x) == to_numpy(y)).mean()
    assert result["clean_accuracy"] == clean and result["accuracy"]["mim"][0] == clean
    assert backend.device_of(x) == device


def test_progress_bar_can_be_turned_off(capsys):
    x, y = threshold_data()
    attacks.evaluate(Threshold(), x, y, [flipper([0])], [0.1], batch_size=4, progress=False)
    assert capsys.readouterr().err == ""
    attacks.evaluate(Threshold(), x, y, [flipper([0])], [0.1], batch_size=4, progress=True)
    assert "evaluate" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, match", [
    ({"attacks": ["deepfool"]}, "unknown attack"),
    ({"attacks": {"pgd": 40}}, "must be a dict"),
    ({"attacks": {"fgsm": {"steps": 3}}}, "unknown settings"),
    ({"attacks": {"apgd-ce": {"loss": "dlr"}}}, r"'apgd-ce' is APGD on the loss 'ce'.*loss='dlr'.*'apgd-dlr'"),
    ({"attacks": {"apgd-dlr": {"loss": "margin"}}}, r"'apgd-dlr' is APGD on the loss 'dlr'.*loss='margin'"),
    ({"attacks": [lambda m, x, y, e: x, lambda m, x, y, e: x]}, "appears twice"),
    ({"attacks": []}, "no attacks"),
    ({"eps_list": [-0.1]}, "eps"),
    ({"eps_list": []}, "empty"),
    ({"batch_size": 0}, "batch_size"),
    ({"norm": "l1"}, "norm"),
])
def test_evaluate_rejects_bad_arguments(kwargs, match):
    x, y = threshold_data()
    args = {"attacks": ["fgsm"], "eps_list": [0.1], "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        attacks.evaluate(Threshold(), x, y, args.pop("attacks"), args.pop("eps_list"), args.pop("batch_size"),
                         progress=False, **args)


def test_an_attack_named_for_its_loss_accepts_that_loss_only():
    """{"apgd-ce": {"loss": "ce"}} says what the name says and runs; any other loss is refused (above)."""
    x, y = threshold_data()
    result = attacks.evaluate(Threshold(), x, y, {"apgd-ce": {"loss": "ce", "steps": 1}}, [0.1], 8, progress=False)
    assert result["config"]["attacks"]["apgd-ce"]["loss"] == "ce"


def test_default_step_size_is_the_paper_rule(digits):
    """BIM, MIM and PGD default to α = ε/10 (paper_step_size); evaluate forms it as alpha_factor·ε = 0.1·ε."""
    model, x, y = digits
    eps_list = [0.05, 0.1, 0.3]
    result = attacks.evaluate(model, x[:8], y[:8], {"pgd": {"steps": 1}}, eps_list, 8, seed=0, progress=False)
    for name in ("bim", "mim", "pgd"):
        assert attacks.DEFAULTS[name]["alpha_factor"] == attacks.paper_step_size(1.0) == 0.1
    assert result["config"]["attacks"]["pgd"]["alpha"] == [pytest.approx(attacks.paper_step_size(e), rel=1e-15)
                                                           for e in eps_list]


# --- the AutoAttack names, the realisable worst case, warnings -------------------------------------------------
def test_suite_expands_to_autoattacks_three_attacks_with_their_budgets():
    model, x, y = tiny_cnn("bn", num_classes=4).eval(), images(4), labels(4, num_classes=4)
    result = attacks.evaluate(model, x, y, "suite", [0.0], batch_size=4, progress=False)   # ε = 0: nothing runs
    assert list(result["config"]["attacks"]) == ["apgd-ce", "apgd-t", "square"]
    assert result["config"]["attacks"]["apgd-ce"]["steps"] == 100
    assert result["config"]["attacks"]["apgd-t"]["n_targets"] == 9
    assert result["config"]["attacks"]["square"]["queries"] == 5000
    assert all(result["accuracy"][name] == [result["clean_accuracy"]] for name in result["accuracy"])


@pytest.mark.parametrize("batch_size, worst, realisable", [(8, 0.5, 0.75), (4, 0.0, 0.5)])
def test_realisable_worst_case_is_the_worst_single_submitted_batch(batch_size, worst, realisable):
    """In every batch a fools its examples 0, 1 and b its examples 2, 3: per example the worst case loses all four
    of a batch of 4 (and four of a batch of 8), but any one batch an attacker submits (a's or b's) loses two."""
    x, y = threshold_data()
    result = attacks.evaluate(Threshold(), x, y, {"a": flipper([0, 1]), "b": flipper([2, 3])}, [0.1], batch_size,
                              progress=False)
    assert result["worst_case_accuracy"] == [worst]
    assert result["realisable_worst_case_accuracy"] == [realisable]


def test_realisable_worst_case_lies_between_the_worst_case_and_every_attack(digits):
    model, x, y = digits
    result = attacks.evaluate(model, x[:40], y[:40], {"fgsm": None, "pgd": {"steps": 3}, "apgd-ce": {"steps": 3}},
                              [0.05, 0.1, 0.2], batch_size=20, progress=False)
    for k in range(3):
        realisable = result["realisable_worst_case_accuracy"][k]
        assert result["worst_case_accuracy"][k] <= realisable
        assert realisable <= min(result["accuracy"][name][k] for name in result["accuracy"])


def test_cw_in_an_linf_table_is_flagged():
    x, y = threshold_data()
    settings = {"cw": {"steps": 2, "binary_search_steps": 1}}
    with pytest.warns(UserWarning, match="CW-L2 is an L2 attack"):
        attacks.evaluate(Threshold(), x, y, settings, [0.1], 8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attacks.evaluate(Threshold(), x, y, settings, [0.1], 8, norm="l2", progress=False)


@pytest.mark.parametrize("eps, clip, match", [
    (8, (0.0, 1.0), r"did you mean 8/255"),
    (1.0, (0.0, 1.0), r"covers the whole input range \[0, 1\]"),
    (2.5, (-1.0, 1.0), r"covers the whole input range \[-1, 1\]"),
    (0.1, (0.0, 1.0), None),
    (8, (0.0, 255.0), None),      # 8 in 0–255 units is a legitimate budget
])
def test_a_budget_covering_the_input_range_is_flagged(eps, clip, match):
    x, y = threshold_data()
    x = clip[0] + (clip[1] - clip[0]) * x
    if match is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            attacks.evaluate(Threshold(), x, y, "fgsm", [eps], 8, clip=clip, progress=False)
        return
    with pytest.warns(UserWarning, match=match):
        attacks.evaluate(Threshold(), x, y, "fgsm", [eps], 8, clip=clip, progress=False)
