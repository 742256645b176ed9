"""MultiStepLR and CosineAnnealingLR: closed forms, PyTorch's epoch counting, checkpoints."""
import math

import numpy as np
import pytest

import minirn
from minirn.optim import SGD, CosineAnnealingLR, MultiStepLR
from minirn.serialization import load, save


def _optimizer(lrs=(0.1,)):
    groups = [{"params": [minirn.tensor([1.0], requires_grad=True)], "lr": lr} for lr in lrs]
    return SGD(groups, lr=1.0, momentum=0.9)


def _lrs_over_epochs(scheduler, epochs):
    """The lr of every group for epochs 0 .. epochs-1 (epoch 0 = right after construction)."""
    history = [scheduler.get_last_lr()]
    for _ in range(epochs - 1):
        scheduler.optimizer.step()
        scheduler.step()
        history.append(scheduler.get_last_lr())
    return history


def test_multistep_closed_form():
    scheduler = MultiStepLR(_optimizer((0.1, 1.0)), milestones=[4, 2], gamma=0.5)
    history = _lrs_over_epochs(scheduler, 6)
    np.testing.assert_allclose(history, [[0.1, 1.0]] * 2 + [[0.05, 0.5]] * 2 + [[0.025, 0.25]] * 2, rtol=1e-15)
    assert [g["lr"] for g in scheduler.optimizer.param_groups] == history[-1]


def test_multistep_repeated_milestone_multiplies_twice():
    history = _lrs_over_epochs(MultiStepLR(_optimizer(), milestones=[3, 3], gamma=0.1), 5)
    np.testing.assert_allclose([h[0] for h in history], [0.1, 0.1, 0.1, 0.001, 0.001], rtol=1e-13)


def test_cosine_closed_form():
    eta0, eta_min, t_max = 0.1, 0.01, 8
    history = _lrs_over_epochs(CosineAnnealingLR(_optimizer((eta0,)), T_max=t_max, eta_min=eta_min), 17)
    lrs = [h[0] for h in history]
    assert lrs[0] == pytest.approx(eta0, rel=1e-15)
    assert lrs[4] == pytest.approx((eta0 + eta_min) / 2, rel=1e-14)
    assert lrs[8] == pytest.approx(eta_min, rel=1e-14)
    assert lrs[16] == pytest.approx(eta0, rel=1e-14)  # past T_max it rises again, as in PyTorch
    assert lrs[2] == pytest.approx(eta_min + (eta0 - eta_min) * (1 + math.sqrt(0.5)) / 2, rel=1e-14)
    assert all(a > b for a, b in zip(lrs[:8], lrs[1:9]))


def test_the_optimizer_uses_the_scheduled_rate():
    w = minirn.tensor(np.array([1.0]), requires_grad=True)
    optimizer = SGD([w], lr=1.0)
    scheduler = MultiStepLR(optimizer, milestones=[1], gamma=0.25)
    for _ in range(2):
        w.grad = np.array([1.0])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(w.numpy(), [1.0 - 1.0 - 0.25])


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda o: MultiStepLR(o, [3, 5, 5], gamma=0.3), lambda o, t: t.optim.lr_scheduler.MultiStepLR(o, [3, 5, 5], 0.3)),
        (lambda o: CosineAnnealingLR(o, 5, eta_min=1e-3),
         lambda o, t: t.optim.lr_scheduler.CosineAnnealingLR(o, 5, eta_min=1e-3)),
    ],
    ids=["multistep", "cosine"],
)
def test_matches_torch(ours, theirs):
    torch = pytest.importorskip("torch")
    lrs = (0.1, 0.03)
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    torch_optimizer = torch.optim.SGD(groups, lr=1.0)
    torch_scheduler = theirs(torch_optimizer, torch)
    expected = [torch_scheduler.get_last_lr()]
    for _ in range(13):
        torch_optimizer.step()
        torch_scheduler.step()
        expected.append(torch_scheduler.get_last_lr())
    np.testing.assert_allclose(_lrs_over_epochs(ours(_optimizer(lrs)), 14), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "make",
    [lambda o: MultiStepLR(o, [2, 4], gamma=0.1), lambda o: CosineAnnealingLR(o, T_max=6, eta_min=1e-3)],
    ids=["multistep", "cosine"],
)
def test_resume_from_a_checkpoint(make, tmp_path):
    uninterrupted = _lrs_over_epochs(make(_optimizer((0.1, 0.2))), 8)

    optimizer = _optimizer((0.1, 0.2))
    scheduler = make(optimizer)
    _lrs_over_epochs(scheduler, 4)
    save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "ckpt.npz")

    checkpoint = load(tmp_path / "ckpt.npz")
    optimizer = _optimizer((0.1, 0.2))
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler = make(optimizer)
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert scheduler.last_epoch == 3
    resumed = [scheduler.get_last_lr()]
    for _ in range(4):
        scheduler.step()
        resumed.append(scheduler.get_last_lr())
    assert resumed == uninterrupted[3:]


def test_resuming_without_initial_lr_is_an_error():
    with pytest.raises(ValueError, match="initial_lr"):
        MultiStepLR(_optimizer(), [2], last_epoch=5)


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda o: CosineAnnealingLR(o, T_max=0), ValueError),
        (lambda o: CosineAnnealingLR(o, T_max=10, eta_min=-1.0), ValueError),
        (lambda o: MultiStepLR(o, milestones=[-1]), ValueError),
        (lambda o: MultiStepLR(o, milestones=[2.5]), ValueError),
        (lambda o: MultiStepLR(o, milestones=[2], gamma=0.0), ValueError),
        (lambda o: MultiStepLR(object(), milestones=[2]), TypeError),
    ],
)
def test_invalid_arguments(make, error):
    with pytest.raises(error):
        make(_optimizer())


def test_load_state_dict_rejects_a_foreign_state():
    scheduler = CosineAnnealingLR(_optimizer(), T_max=4)
    with pytest.raises(ValueError, match="milestones"):
        scheduler.load_state_dict(MultiStepLR(_optimizer(), [1]).state_dict())
