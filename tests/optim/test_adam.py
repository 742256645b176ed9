"""Adam: closed-form steps on every device, and five steps against torch.optim.Adam."""
import numpy as np
import pytest

import minirn
from minirn import backend
from minirn.optim import Adam
from tests.conftest import to_numpy
from tests.optim import least_squares as ls

CASES = {
    "default": dict(lr=0.1),
    "betas_eps": dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3),
    "weight_decay": dict(lr=0.05, weight_decay=0.1),
}


@pytest.mark.parametrize("hyper", CASES.values(), ids=CASES.keys())
def test_matches_torch(hyper, device):
    torch = pytest.importorskip("torch")
    params = ls.minirn_params(device)
    optimizer = Adam(params, **hyper)
    ours = ls.minirn_steps(optimizer, params, 5)
    torch_params = ls.torch_params(torch)
    torch_optimizer = torch.optim.Adam(torch_params, **hyper)
    theirs = ls.torch_steps(torch_optimizer, torch_params, 5)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for p, q in zip(params, torch_params):
        assert optimizer.state[p]["step"] == int(torch_optimizer.state[q]["step"]) == 5
        for name in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(
                to_numpy(optimizer.state[p][name]), torch_optimizer.state[q][name].numpy(), rtol=1e-12, atol=1e-15
            )


def _param(values, device, dtype="float64"):
    return minirn.tensor(np.asarray(values), requires_grad=True, dtype=dtype, device=device)


def _set_grad(p, values):
    p.grad = backend.to_device(np.asarray(values), p.device, dtype=p.dtype)


W = np.array([1.0, -2.0, 0.5, 3.0])
G = np.array([0.3, -1e-3, -40.0, 2.0])


def test_first_step_moves_each_weight_by_lr_times_sign_of_gradient(device):
    # m_1 / (1 - beta1) = g and sqrt(v_1 / (1 - beta2)) = |g|, so the step is lr g / (|g| + eps)
    w = _param(W, device)
    _set_grad(w, G)
    Adam([w], lr=0.01).step()
    np.testing.assert_allclose(to_numpy(w) - W, -0.01 * np.sign(G), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(w), W - 0.01 * G / (np.abs(G) + 1e-8), rtol=1e-13)


def test_constant_gradient_gives_constant_steps(device):
    # with g_t = g for all t the bias-corrected moments are exactly g and g^2
    w = _param(W, device)
    optimizer = Adam([w], lr=0.02, betas=(0.5, 0.75), eps=1e-2)
    for _ in range(4):
        _set_grad(w, G)
        optimizer.step()
    np.testing.assert_allclose(to_numpy(w), W - 4 * 0.02 * G / (np.abs(G) + 1e-2), rtol=1e-12)


def test_weight_decay_is_added_to_the_gradient_not_decoupled(device):
    w = _param(W, device)
    _set_grad(w, G)
    Adam([w], lr=0.01, weight_decay=0.5, eps=0.1).step()
    g = G + 0.5 * W  # L2 decay (torch.optim.Adam); AdamW would instead shrink w by lr * 0.5 * w
    np.testing.assert_allclose(to_numpy(w), W - 0.01 * g / (np.abs(g) + 0.1), rtol=1e-13)


def test_float32_stays_float32_with_numpy_float64_hyperparameters(device):
    w = _param(W, device, dtype="float32")
    optimizer = Adam([w], lr=np.float64(0.1), betas=(np.float64(0.9), np.float64(0.99)),
                     eps=np.float64(1e-8), weight_decay=np.float64(0.01))
    for _ in range(2):
        _set_grad(w, G)
        optimizer.step()
    assert backend.dtype_name(w.data.dtype) == "float32"
    for name in ("exp_avg", "exp_avg_sq"):
        assert backend.dtype_name(optimizer.state[w][name].dtype) == "float32"


def test_params_without_grad_are_skipped_and_get_no_state(device):
    a, frozen = _param(W, device), _param(W, device)
    optimizer = Adam([a, frozen], lr=0.1)
    _set_grad(a, G)
    optimizer.step()
    np.testing.assert_array_equal(to_numpy(frozen), W)
    assert optimizer.state[a]["step"] == 1
    assert not optimizer.state.get(frozen)
    assert len(optimizer.state_dict()["state"]) == 1


@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=-1e-3),
        dict(eps=-1e-8),
        dict(weight_decay=-0.1),
        dict(betas=(1.0, 0.999)),
        dict(betas=(0.9, -0.1)),
        dict(betas=0.9),
        dict(betas=(0.9, 0.99, 0.999)),
    ],
)
def test_invalid_hyperparameters(hyper):
    with pytest.raises(ValueError):
        Adam([_param(W, "cpu")], **hyper)
