"""Optional oracle: FGSM, PGD and MIM equal the same equations computed with PyTorch on copied weights."""
import numpy as np
import pytest

import minirn
from minirn import attacks
from tests.attacks import images, labels, tiny_cnn

torch = pytest.importorskip("torch")
torch_twins = pytest.importorskip("minirn.bench.torch_twins")
pytestmark = pytest.mark.torch

EPS = 0.1


def torch_copy(model, training):
    """The tiny_cnn("bn") architecture in PyTorch (its twin), float64, with minirn's weights and buffers."""
    tm = torch_twins.conv_net(((4, 1), (4, 2)), "bn", in_channels=1, num_classes=3).double()
    return torch_twins.load_minirn_state(tm, model).train(training)


def torch_grad(tm, x, y):
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(tm(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def torch_pgd(tm, x, y, eps, alpha, steps, norm):
    x_adv = x.clone()
    for _ in range(steps):
        g = torch_grad(tm, x_adv, y)
        if norm == "linf":
            x_adv = x_adv + alpha * g.sign()
            x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0, 1)
        else:
            g_norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
            delta = x_adv + alpha * g / g_norm - x
            d_norm = delta.flatten(1).norm(dim=1)[:, None, None, None]
            x_adv = torch.clamp(x + delta * torch.clamp(eps / d_norm.clamp_min(1e-12), max=1.0), 0, 1)
    return x_adv


def torch_mim(tm, x, y, eps, alpha, steps, decay=1.0):
    x_adv, momentum = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        g = torch_grad(tm, x_adv, y)
        momentum = decay * momentum + g / g.abs().flatten(1).sum(dim=1).clamp_min(1e-12)[:, None, None, None]
        x_adv = x_adv + alpha * momentum.sign()
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0, 1)
    return x_adv


@pytest.mark.parametrize("training", [False, True], ids=["running_stats", "batch_stats"])
@pytest.mark.parametrize("name", ["fgsm", "pgd_linf", "pgd_l2", "mim"])
def test_attacks_match_pytorch(name, training):
    model = tiny_cnn("bn").double().train(training)
    tm = torch_copy(model, training)
    x, y = images(5, dtype="float64"), labels(5)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():   # same function in both libraries before attacking
        np.testing.assert_allclose(tm(tx).numpy(), _logits(model, x), rtol=1e-10, atol=1e-12)
    if name == "fgsm":
        ours = attacks.fgsm(model, x, y, EPS)
        theirs = torch.clamp(tx + EPS * torch_grad(tm, tx, ty).sign(), 0, 1)
    elif name == "mim":
        ours = attacks.mim(model, x, y, EPS, EPS / 4, 4)
        theirs = torch_mim(tm, tx, ty, EPS, EPS / 4, 4)
    else:
        norm = name.split("_")[1]
        eps = EPS if norm == "linf" else 0.5
        ours = attacks.pgd(model, x, y, eps, eps / 4, 4, norm=norm, random_start=False)
        theirs = torch_pgd(tm, tx, ty, eps, eps / 4, 4, norm)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-10)


def _logits(model, x):
    with minirn.no_grad(), minirn.freeze_running_stats():
        return model(minirn.tensor(x)).numpy()
