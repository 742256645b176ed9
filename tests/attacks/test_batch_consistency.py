"""Batch coupling: with running statistics examples are attacked independently; with batch statistics not.

Under inference-batch statistics (the paper's hypothesis test, and RobustNorm's "RN" variant) every
example's logits depend on the other examples of its batch, so the attack, and the accuracy measured
after it, depend on the batch size and composition.  minirn attacks the whole batch jointly (the
gradient flows through the batch statistics) and records the batch size in every evaluation.
"""
import numpy as np
import pytest

from minirn import attacks, backend, nn
from tests.attacks import cross_entropy, images, labels, tiny_cnn
from tests.conftest import to_numpy

EPS = 0.1
DETERMINISTIC = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, EPS),
    "bim": lambda m, x, y: attacks.bim(m, x, y, EPS, EPS / 4, 3),
    "mim": lambda m, x, y: attacks.mim(m, x, y, EPS, EPS / 4, 3),
    "pgd_no_random_start": lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 4, 3, random_start=False, seed=0),
    "pgd_l2_no_random_start": lambda m, x, y: attacks.pgd(m, x, y, EPS, EPS / 2, 3, norm="l2", random_start=False),
    "cw": lambda m, x, y: attacks.cw_l2(m, x, y, steps=5, binary_search_steps=2, lr=0.05),
}


def one_by_one(attack, model, x, y):
    return np.concatenate([to_numpy(attack(model, x[i : i + 1, ...], y[i : i + 1])) for i in range(x.shape[0])])


@pytest.mark.parametrize("name", list(DETERMINISTIC))
@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_running_statistics_batch_equals_examples_one_by_one(device, norm, name):
    model = tiny_cnn(norm, device=device).double().eval()
    x = images(5, dtype="float64", device=device)
    y = labels(5, device=device)
    attack = DETERMINISTIC[name]
    np.testing.assert_allclose(to_numpy(attack(model, x, y)), one_by_one(attack, model, x, y), atol=1e-12)


@pytest.mark.parametrize("mode", ["train", "eval_batch_stats"])
@pytest.mark.parametrize("name", ["fgsm", "mim", "pgd_no_random_start"])
@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_batch_statistics_couple_the_examples(norm, name, mode):
    """Documented behaviour, not a bug: the joint attack differs from attacking each example alone."""
    model = tiny_cnn(norm).double()
    if mode == "train":
        model.train()
    else:
        nn.set_norm_eval_stats(model.eval(), "batch", "batch")
    x, y = images(5, dtype="float64"), labels(5)
    attack = DETERMINISTIC[name]
    assert np.abs(attack(model, x, y) - one_by_one(attack, model, x, y)).max() > 1e-4


def test_batch_statistics_make_predictions_depend_on_the_batch():
    """The same adversarial images are classified differently alone and together."""
    model = nn.set_norm_eval_stats(tiny_cnn("bn").double().eval(), "batch", "batch")
    x, y = images(8, dtype="float64"), labels(8)
    x_adv = attacks.pgd(model, x, y, 0.3, 0.05, 5, seed=0)
    joint = cross_entropy(model, x_adv, y)
    alone = np.concatenate([cross_entropy(model, x_adv[i : i + 1, ...], y[i : i + 1]) for i in range(8)])
    assert np.abs(joint - alone).max() > 1e-3


def test_strict_device_batch_statistics_are_coupled_too():
    model = nn.set_norm_eval_stats(tiny_cnn("rn", device="strict").eval(), "batch", "batch")
    x, y = images(4, device="strict"), labels(4, device="strict")
    attack = DETERMINISTIC["fgsm"]
    assert np.abs(to_numpy(attack(model, x, y)) - one_by_one(attack, model, x, y)).max() > 1e-4
    assert backend.device_of(attack(model, x, y)) == "strict"
