"""minirn/attacks/pgd.py: the named step-size rules, and BIM's errors naming BIM.

(PGD and BIM themselves are checked in test_contract.py, test_linear_oracle.py, test_torch_oracle.py and test_trained.py.)
"""
import pytest

from minirn import attacks
from minirn.attacks.pgd import adversarial_training_step_size, madry_step_size, paper_step_size
from tests.attacks import images, labels, tiny_cnn


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 8 / 255, 2.0])
def test_step_size_rules_give_their_documented_values(eps):
    assert paper_step_size(eps) == eps / 10                       # the paper: 20 steps of ε/10
    assert madry_step_size(eps, 10) == 2.5 * eps / 10             # Madry et al.: 2.5 ε / steps
    assert madry_step_size(eps, 40) == 2.5 * eps / 40
    assert adversarial_training_step_size(eps) == eps / 4         # adversarial training: ε/4
    assert paper_step_size(0.3) == pytest.approx(0.03) and madry_step_size(0.3, 10) == pytest.approx(0.075)


def test_step_size_rules_are_exported():
    assert attacks.paper_step_size is paper_step_size and attacks.madry_step_size is madry_step_size
    assert attacks.adversarial_training_step_size is adversarial_training_step_size


@pytest.mark.parametrize("kwargs, match", [({"eps": -0.1}, "eps"), ({"alpha": -0.01}, "alpha"), ({"steps": 0}, "steps"),
                                           ({"clip": (1.0, 0.0)}, "clip"), ({"norm": "l1"}, "norm")])
def test_bim_errors_name_bim_not_pgd(kwargs, match):
    """BIM shares PGD's loop; a bad argument to it is reported as BIM's."""
    model, x, y = tiny_cnn("bn").eval(), images(2), labels(2)
    args = {"eps": 0.1, "alpha": 0.01, "steps": 2, **kwargs}
    with pytest.raises(ValueError, match=f"^bim: .*{match}"):
        attacks.bim(model, x, y, **args)
    with pytest.raises(ValueError, match=f"^pgd: .*{match}"):   # PGD itself keeps its own name
        attacks.pgd(model, x, y, **args)
