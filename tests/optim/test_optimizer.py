"""What every optimizer shares: parameter groups, zero_grad, input checks, and checkpoints that resume exactly."""
import numpy as np
import pytest

import minirn
from minirn import backend
from minirn.optim import SGD, Adam
from minirn.serialization import load, save
from tests.optim import least_squares as ls

OPTIMIZERS = {
    "sgd_nesterov": lambda params: SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "sgd_dampening": lambda params: SGD(params, lr=0.05, momentum=0.9, dampening=0.2),
    "adam": lambda params: Adam(params, lr=0.05, betas=(0.8, 0.9), weight_decay=1e-2),
    "adam_groups": lambda params: Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.2}], lr=0.05),
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_state_dict_through_a_checkpoint_continues_identically(make, device, tmp_path):
    params = ls.minirn_params(device)
    uninterrupted = ls.minirn_steps(make(params), params, 5)

    params = ls.minirn_params(device)
    optimizer = make(params)
    ls.minirn_steps(optimizer, params, 3)
    save({"weights": [p.data for p in params], "optimizer": optimizer.state_dict()}, tmp_path / "ckpt.npz")
    del optimizer, params

    checkpoint = load(tmp_path / "ckpt.npz")
    params = [minirn.tensor(w, requires_grad=True, device=device) for w in checkpoint["weights"]]
    optimizer = make(params)
    optimizer.load_state_dict(checkpoint["optimizer"])
    resumed = ls.minirn_steps(optimizer, params, 2)
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(a, b)  # bit for bit
    for state in optimizer.state.values():
        for value in state.values():
            if not isinstance(value, int):
                assert backend.device_of(value) == device


def test_state_dict_maps_parameters_by_index_like_pytorch():
    params = ls.minirn_params()
    optimizer = SGD([{"params": [params[1]]}, {"params": [params[0]], "lr": 0.5}], lr=0.1, momentum=0.9)
    ls.minirn_steps(optimizer, params, 1)
    state = optimizer.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [[0], [1]]
    assert [g["lr"] for g in state["param_groups"]] == [0.1, 0.5]
    assert sorted(state["state"]) == [0, 1]
    np.testing.assert_array_equal(state["state"][0]["momentum_buffer"], optimizer.state[params[1]]["momentum_buffer"])


def test_load_state_dict_restores_hyperparameters_and_casts_state_to_the_parameter_dtype():
    params = ls.minirn_params(dtype="float64")
    optimizer = Adam(params, lr=0.1)
    ls.minirn_steps(optimizer, params, 1)
    saved = optimizer.state_dict()
    saved["param_groups"][0]["lr"] = 0.025

    params32 = ls.minirn_params(dtype="float32")
    restored = Adam(params32, lr=0.1)
    restored.load_state_dict(saved)
    assert restored.param_groups[0]["lr"] == 0.025
    assert restored.param_groups[0]["params"][0] is params32[0]
    assert restored.state[params32[0]]["exp_avg"].dtype == np.float32
    assert restored.state[params32[0]]["step"] == 1


def test_load_state_dict_rejects_a_mismatched_optimizer():
    params = ls.minirn_params()
    saved = SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameters"):
        SGD(params[:1], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="state_dict"):
        SGD(params, lr=0.1).load_state_dict({"param_groups": []})


def test_zero_grad_sets_every_gradient_to_none():
    params = ls.minirn_params()
    optimizer = SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    for p in params:
        p.grad = p.data * 1.0
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_runs_the_closure_and_returns_its_loss():
    w = minirn.tensor(np.array([2.0, -1.0]), requires_grad=True)
    optimizer = SGD([w], lr=0.25)

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert loss.item() == pytest.approx(5.0)
    np.testing.assert_allclose(w.numpy(), [2.0 - 0.25 * 4.0, -1.0 + 0.25 * 2.0])


@pytest.mark.parametrize(
    "params, error",
    [
        ([], ValueError),
        (minirn.tensor([1.0], requires_grad=True), TypeError),  # a single tensor, not an iterable of them
        ([np.ones(3)], TypeError),
        ([{"params": [1.0]}], TypeError),
    ],
    ids=["empty", "single_tensor", "numpy_array", "number_in_group"],
)
def test_bad_params(params, error):
    with pytest.raises(error):
        SGD(params, lr=0.1)


def test_a_parameter_may_appear_only_once():
    w = minirn.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="more than once"):
        SGD([w, w], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        SGD([{"params": [w]}, {"params": [w]}], lr=0.1)


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1), lambda p: Adam(p)], ids=["sgd", "adam"])
def test_a_gradient_of_the_wrong_shape_or_dtype_is_an_error(make):
    w = minirn.tensor(np.ones((2, 3)), requires_grad=True)
    optimizer = make([w])
    w.grad = np.ones((3,))  # would broadcast silently
    with pytest.raises(ValueError, match="shape"):
        optimizer.step()
    w.grad = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="dtype"):
        optimizer.step()
