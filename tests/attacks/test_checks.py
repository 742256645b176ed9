"""minirn/attacks/checks.py: the argument checks every attack runs once, at its boundary.

(Each attack's own rejection of bad arguments is in test_contract.py.)
"""
import numpy as np
import pytest

import minirn
from minirn.attacks import checks
from tests.attacks import images


@pytest.mark.parametrize("value", [-0.1, float("nan"), True, "0.1", None])
def test_check_number_rejects_non_numbers_and_negatives(value):
    with pytest.raises(ValueError, match="eps"):
        checks.check_number("eps", value)


def test_check_number_and_check_int_return_plain_python_numbers():
    assert checks.check_number("eps", np.float32(0.5)) == 0.5 and type(checks.check_number("eps", 1)) is float
    assert checks.check_number("eps", 0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        checks.check_number("c", 0, positive=True)
    assert checks.check_int("steps", np.int64(3)) == 3 and checks.check_int("seed", 0, minimum=0) == 0
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="steps"):
            checks.check_int("steps", bad)


def test_check_norm():
    assert [checks.check_norm(n) for n in checks.NORMS] == ["linf", "l2"]
    with pytest.raises(ValueError, match="unknown norm"):
        checks.check_norm("l1")


def test_prepare_returns_array_labels_kind_and_box():
    x = images(3)
    array, labels, was_tensor, box = checks.prepare("pgd", minirn.tensor(x), [0, 1, 2], (0, 1), 0.1, 0.01, 2)
    assert array is not None and np.array_equal(np.asarray(array), x)
    assert was_tensor and box == (0.0, 1.0) and labels.shape == (3,)
    with pytest.raises(ValueError, match="^pgd: clip must satisfy low < high"):
        checks.prepare("pgd", x, [0, 1, 2], (1.0, 0.0))


def test_labels_for_rejects_float_and_mismatched_labels():
    x = images(3)
    with pytest.raises(ValueError, match="integer labels"):
        checks.labels_for(np.array([0.0, 1.0, 2.0]), x)
    with pytest.raises(ValueError, match="2 labels"):
        checks.labels_for([0, 1], x)


def test_finish_and_copy():
    x = images(2)
    assert isinstance(checks.finish(x, True), minirn.Tensor) and checks.finish(x, False) is x
    c = checks.copy(x)
    assert c is not x and np.array_equal(c, x)
