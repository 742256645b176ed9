"""SGD: closed-form steps on every device, and five steps against torch.optim.SGD."""
import numpy as np
import pytest

import minirn
from minirn import backend
from minirn.optim import SGD
from tests.conftest import to_numpy
from tests.optim import least_squares as ls

CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.1),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "all": dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
}


@pytest.mark.parametrize("hyper", CASES.values(), ids=CASES.keys())
def test_matches_torch(hyper, device):
    torch = pytest.importorskip("torch")
    params = ls.minirn_params(device)
    optimizer = SGD(params, **hyper)
    ours = ls.minirn_steps(optimizer, params, 5)
    torch_params = ls.torch_params(torch)
    torch_optimizer = torch.optim.SGD(torch_params, **hyper)
    theirs = ls.torch_steps(torch_optimizer, torch_params, 5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    if hyper.get("momentum"):
        for p, q in zip(params, torch_params):
            np.testing.assert_allclose(
                to_numpy(optimizer.state[p]["momentum_buffer"]),
                torch_optimizer.state[q]["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-14,
            )


def _param(values, device, dtype="float64"):
    return minirn.tensor(np.asarray(values), requires_grad=True, dtype=dtype, device=device)


def _set_grad(p, values):
    p.grad = backend.to_device(np.asarray(values), p.device, dtype=p.dtype)


W = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.3, 0.1, -0.4])
G2 = np.array([-0.2, 0.6, 0.1])


@pytest.mark.parametrize(
    "hyper, expected",
    [
        (dict(lr=0.1), W - 0.1 * G1),
        (dict(lr=0.1, weight_decay=0.5), W - 0.1 * (G1 + 0.5 * W)),
        (dict(lr=0.1, momentum=0.9), W - 0.1 * G1),  # first buffer is g itself
        (dict(lr=0.1, momentum=0.9, dampening=0.5), W - 0.1 * G1),  # no dampening on the first step
        (dict(lr=0.1, momentum=0.9, nesterov=True), W - 0.1 * 1.9 * G1),
    ],
    ids=["plain", "weight_decay", "momentum", "dampening", "nesterov"],
)
def test_one_step_closed_form(hyper, expected, device):
    w = _param(W, device)
    _set_grad(w, G1)
    SGD([w], **hyper).step()
    np.testing.assert_allclose(to_numpy(w), expected, rtol=1e-14)


def test_two_momentum_steps_closed_form(device):
    mu, tau, lr = 0.9, 0.25, 0.1
    w = _param(W, device)
    optimizer = SGD([w], lr=lr, momentum=mu, dampening=tau)
    _set_grad(w, G1)
    optimizer.step()
    _set_grad(w, G2)
    optimizer.step()
    buffer = mu * G1 + (1 - tau) * G2
    np.testing.assert_allclose(to_numpy(w), W - lr * G1 - lr * buffer, rtol=1e-14)
    np.testing.assert_allclose(to_numpy(optimizer.state[w]["momentum_buffer"]), buffer, rtol=1e-14)


def test_momentum_buffer_is_a_copy_of_the_first_gradient():
    w = _param(W, "cpu")
    w.grad = G1.copy()
    optimizer = SGD([w], lr=0.1, momentum=0.9)
    optimizer.step()
    w.grad[...] = 100.0  # a caller scribbling on the gradient must not change the optimizer's state
    np.testing.assert_array_equal(optimizer.state[w]["momentum_buffer"], [0.3, 0.1, -0.4])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_float32_stays_float32_with_numpy_float64_hyperparameters(momentum, device):
    w = _param(W, device, dtype="float32")
    # np.float64 hyper-parameters would promote float32 arrays to float64 under NEP 50
    optimizer = SGD([w], lr=np.float64(0.1), momentum=np.float64(momentum), weight_decay=np.float64(0.01))
    for _ in range(2):
        _set_grad(w, G1)
        optimizer.step()
    assert w.dtype_name == "float32"
    assert backend.dtype_name(w.data.dtype) == "float32"
    if momentum:
        assert backend.dtype_name(optimizer.state[w]["momentum_buffer"].dtype) == "float32"


def test_lr_of_each_group_and_skipping_params_without_grad(device):
    a, b, frozen = _param(W, device), _param(W, device), _param(W, device)
    optimizer = SGD([{"params": [a]}, {"params": [b, frozen], "lr": 0.01}], lr=0.1, momentum=0.5)
    assert optimizer.param_groups[0]["lr"] == 0.1 and optimizer.param_groups[1]["lr"] == 0.01
    assert optimizer.param_groups[1]["momentum"] == 0.5  # filled from the defaults
    _set_grad(a, G1)
    _set_grad(b, G1)
    optimizer.step()
    np.testing.assert_allclose(to_numpy(a), W - 0.1 * G1, rtol=1e-14)
    np.testing.assert_allclose(to_numpy(b), W - 0.01 * G1, rtol=1e-14)
    np.testing.assert_array_equal(to_numpy(frozen), W)
    assert frozen not in optimizer.state or not optimizer.state[frozen]


@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=-0.1),
        dict(lr=0.1, momentum=-0.5),
        dict(lr=0.1, weight_decay=-1e-4),
        dict(lr=0.1, dampening=-0.1),
        dict(lr=0.1, nesterov=True),  # needs momentum
        dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),  # needs dampening 0
        dict(lr="0.1"),
        dict(lr=float("nan")),
    ],
)
def test_invalid_hyperparameters(hyper):
    with pytest.raises(ValueError):
        SGD([_param(W, "cpu")], **hyper)
