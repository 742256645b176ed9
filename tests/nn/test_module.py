"""Tests of minirn/nn/module.py: Module, Parameter, Sequential, Identity (PyTorch semantics)."""
import numpy as np
import pytest

import minirn
from minirn import backend, nn
from tests.conftest import make_tensor, to_numpy


class Scale(nn.Module):
    """y = w * x + b with one parameter pair, one buffer and one child."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(minirn.tensor([2.0, 3.0]))
        self.b = nn.Parameter(minirn.tensor([0.5, -0.5]))
        self.register_buffer("count", backend.namespace("cpu").zeros((2,), dtype=backend.namespace("cpu").float32))
        self.inner = nn.Sequential(nn.Identity(), nn.ReLU())

    def forward(self, x):
        return self.inner(x * self.w + self.b)


def conv_bn():
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.ReLU(), nn.Flatten()))


# --- calling, registration, traversal ------------------------------------------------
def test_call_runs_forward(device):
    module = Scale().to(device)
    x = make_tensor([[1.0, 1.0], [-4.0, 2.0]], device, dtype="float32")
    np.testing.assert_allclose(to_numpy(module(x)), [[2.5, 2.5], [0.0, 5.5]])


def test_parameters_buffers_and_children_are_kept_apart():
    module = Scale()
    assert [name for name, _ in module.named_parameters()] == ["w", "b"]
    assert [name for name, _ in module.named_buffers()] == ["count"]
    assert list(module.parameters()) == [module.w, module.b]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in module.parameters())
    assert [b.shape for b in module.buffers()] == [(2,)]
    assert list(module.children()) == [module.inner]
    assert [name for name, _ in module.named_children()] == ["inner"]


def test_named_modules_dotted_and_preorder():
    model = conv_bn()
    names = [name for name, _ in model.named_modules()]
    assert names == ["", "0", "1", "2", "2.0", "2.1"]
    assert list(model.modules())[0] is model
    assert [type(m).__name__ for m in model.children()] == ["Conv2d", "BatchNorm2d", "Sequential"]


def test_batchnorm_parameters_and_buffers_are_disjoint():
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var"]
    assert not any(isinstance(b, minirn.Tensor) for b in bn.buffers())


def test_shared_parameter_listed_once():
    a = nn.Linear(3, 3)
    b = nn.Linear(3, 3)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    assert len(list(model.parameters())) == 3
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_reassigning_a_buffer_keeps_it_a_buffer():
    bn = nn.BatchNorm2d(2)
    xp = backend.namespace("cpu")
    bn.running_mean = xp.asarray([1.0, 2.0], dtype=xp.float32)
    assert "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(to_numpy(bn.state_dict()["running_mean"]), [1.0, 2.0])


def test_parameter_data_is_assignable_but_not_the_parameter_itself():
    lin = nn.Linear(2, 1)
    xp = backend.namespace("cpu")
    lin.weight.data = xp.asarray([[4.0, 5.0]], dtype=xp.float32)
    out = lin(minirn.tensor([[1.0, 1.0]]))
    np.testing.assert_allclose(out.numpy(), [[9.0 + to_numpy(lin.bias)[0]]], rtol=1e-6)
    with pytest.raises(TypeError, match="weight"):
        lin.weight = minirn.tensor([[1.0, 2.0]])
    lin.bias = None  # removing a parameter is allowed, like PyTorch
    assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]


def test_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(minirn.tensor([1.0]))

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_missing_attribute_error_names_it():
    with pytest.raises(AttributeError, match="nonexistent"):
        nn.ReLU().nonexistent  # noqa: B018


# --- modes ----------------------------------------------------------------------------
def test_train_eval_return_module_and_propagate():
    model = conv_bn()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    assert model.train(False) is model
    assert not model[2][1].training


def test_zero_grad_clears_every_parameter(device):
    model = conv_bn().double().to(device)
    x = make_tensor(np.random.default_rng(0).normal(size=(2, 2, 4, 4)), device)
    model(x).backward(make_tensor(np.ones((2, 12)), device))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --- devices and dtypes -------------------------------------------------------------------
def test_to_device_moves_parameters_and_buffers(device):
    model = conv_bn()
    assert model.to(device) is model
    assert all(p.device == device for p in model.parameters())
    assert all(backend.device_of(b) == device for b in model.buffers())
    assert model.device == device
    out = model(make_tensor(np.ones((2, 2, 4, 4)), device, dtype="float32"))
    assert out.device == device and out.shape == (2, 12)


def test_to_dtype_casts_parameters_and_float_buffers(device):
    model = conv_bn().to(device)
    assert model.double() is model
    assert all(p.dtype_name == "float64" for p in model.parameters())
    assert all(backend.dtype_name(b.dtype) == "float64" for b in model.buffers())
    model.to(dtype="float32")
    assert all(p.dtype_name == "float32" for p in model.parameters())
    assert all(backend.dtype_name(b.dtype) == "float32" for b in model.buffers())


def test_to_keeps_values():
    model = conv_bn()
    before = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    model.double().to("strict" if backend.device_available("strict") else "cpu").float()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), before[key])


# --- state_dict -----------------------------------------------------------------------------
def test_state_dict_names_and_order_like_pytorch():
    model = conv_bn()
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
    ]
    resnet_keys = list(minirn.models.resnet(8, width=4).state_dict())
    assert resnet_keys[:4] == ["stem.weight", "stem_norm.weight", "stem_norm.bias", "stem_norm.running_mean"]
    assert "blocks.1.shortcut.0.weight" in resnet_keys and "blocks.1.shortcut.1.running_var" in resnet_keys


def test_load_state_dict_round_trip(device):
    rng = np.random.default_rng(1)
    source, target = conv_bn(), conv_bn()
    state = {key: rng.normal(size=tuple(value.shape)) for key, value in source.state_dict().items()}  # float64, host
    target.to(device)
    assert target.load_state_dict(state) == ([], [])
    for key, value in target.state_dict().items():
        assert backend.device_of(value) == device and backend.dtype_name(value.dtype) == "float32"
        np.testing.assert_array_equal(to_numpy(value), state[key].astype(np.float32))
    # Tensors are accepted as values too
    tensors = {k: minirn.tensor(v, dtype="float32") for k, v in state.items()}
    conv_bn().load_state_dict(tensors)


def test_load_state_dict_strict_reports_missing_and_unexpected():
    model = conv_bn()
    state = dict(model.state_dict())
    del state["1.running_var"]
    state["1.num_batches_tracked"] = np.zeros(())
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\].*unexpected keys \['1.num_batches_tracked'\]"):
        model.load_state_dict(state)
    assert model.load_state_dict(state, strict=False) == (["1.running_var"], ["1.num_batches_tracked"])


def test_load_state_dict_non_strict_loads_what_it_has():
    model = conv_bn()
    old_var = to_numpy(model[1].running_var).copy()
    missing, unexpected = model.load_state_dict({"1.running_mean": np.full(3, 7.0)}, strict=False)
    assert unexpected == [] and "1.running_var" in missing and "0.weight" in missing
    np.testing.assert_array_equal(to_numpy(model[1].running_mean), [7.0, 7.0, 7.0])
    np.testing.assert_array_equal(to_numpy(model[1].running_var), old_var)


def test_load_state_dict_shape_mismatch_is_clear_and_changes_nothing():
    model = conv_bn()
    before = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    state = {k: np.zeros(tuple(v.shape), dtype=np.float32) for k, v in model.state_dict().items()}
    state["1.running_var"] = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"'1.running_var' has shape \(4,\) in the state but \(3,\) in the model"):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(value), before[key])


# --- Sequential and Identity -------------------------------------------------------------
def test_sequential_indexing_and_iteration():
    model = conv_bn()
    assert len(model) == 3
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Sequential)
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head[1] is model[1]  # a slice shares the modules
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.Sequential]
    with pytest.raises(IndexError):
        model[3]


def test_sequential_applies_in_order(device):
    lin = nn.Linear(2, 2)
    xp = backend.namespace("cpu")
    lin.weight.data = xp.asarray([[1.0, 0.0], [0.0, -1.0]], dtype=xp.float32)
    lin.bias.data = xp.asarray([0.0, 0.0], dtype=xp.float32)
    model = nn.Sequential(lin, nn.ReLU()).to(device)
    out = model(make_tensor([[3.0, 2.0]], device, dtype="float32"))
    np.testing.assert_array_equal(to_numpy(out), [[3.0, 0.0]])  # ReLU after, not before, the linear map


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="argument 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_identity_returns_its_input():
    x = minirn.tensor([1.0, -2.0])
    assert nn.Identity(16, anything=True)(x) is x
    assert list(nn.Identity().parameters()) == []
