"""The autograd engine: Tensor, graph recording, backward, conversions and the dtype policy."""
from __future__ import annotations

import numpy as np
import pytest

import minirn
import minirn.nn.functional as F
from minirn import backend
from tests.conftest import make_tensor, to_numpy


def on(device, array):
    return backend.to_device(np.asarray(array, dtype=np.float64), device)


# --- gradients through the graph ---------------------------------------------------------
def test_broadcast_gradient_is_summed_back_to_each_input_shape(device, rng):
    a_host, b_host, u = rng.standard_normal((3, 1)), rng.standard_normal((2, 1, 4)), rng.standard_normal((2, 3, 4))
    c_host = rng.standard_normal(())
    a, b, c = (make_tensor(h, device, requires_grad=True) for h in (a_host, b_host, c_host))
    (a * b + c).backward(on(device, u))
    assert a.grad.shape == (3, 1) and b.grad.shape == (2, 1, 4) and c.grad.shape == ()
    np.testing.assert_allclose(to_numpy(a.grad), (u * b_host).sum(axis=(0, 2))[:, None], rtol=1e-12)
    np.testing.assert_allclose(to_numpy(b.grad), (u * a_host).sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(c.grad), u.sum(), rtol=1e-12)


def test_tensor_used_twice(device):
    x = make_tensor([1.0, -2.0, 3.0], device, requires_grad=True)
    (x * x).backward(on(device, [1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, -4.0, 6.0])
    x.grad = None
    (x + x).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, 2.0, 2.0])
    x.grad = None
    y = x * 3.0  # an intermediate used on two paths: its gradients must add before flowing on
    (y * y + y).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), 3.0 * (2.0 * 3.0 * np.array([1.0, -2.0, 3.0]) + 1.0))


def test_backward_does_not_modify_the_upstream_gradient(device):
    """Add returns the same array for both inputs; accumulating with += would corrupt it."""
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    upstream = on(device, [1.0, 10.0])
    y = x * 1.0
    (y + y).backward(upstream)
    np.testing.assert_array_equal(to_numpy(upstream), [1.0, 10.0])
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, 20.0])


def test_noncontiguous_numpy_data(device, rng):
    base = rng.standard_normal((4, 6))
    data = base.T[::2]  # (3, 4) strided view: transposed and sliced
    assert not data.flags.c_contiguous and not data.flags.f_contiguous
    w_host = rng.standard_normal((4, 2))
    x = make_tensor(data, device, requires_grad=True)
    w = make_tensor(w_host, device)
    out = (x @ w).tanh()
    np.testing.assert_allclose(out.numpy(), np.tanh(data @ w_host), rtol=1e-12)
    u = rng.standard_normal((3, 2))
    out.backward(on(device, u))
    np.testing.assert_allclose(to_numpy(x.grad), (u * (1 - np.tanh(data @ w_host) ** 2)) @ w_host.T, rtol=1e-12)
    assert minirn.gradcheck(lambda t: (t @ w).tanh(), [make_tensor(data, device, requires_grad=True)])


def test_deep_graph_does_not_hit_the_recursion_limit(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [1.0, 1.0])
    np.testing.assert_array_equal(y.numpy(), [5001.0, 5002.0])


def test_backward_twice_accumulates_like_pytorch(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    loss.backward()  # the graph is kept; d loss/dx = 2x is added twice
    np.testing.assert_array_equal(to_numpy(x.grad), [4.0, 8.0])
    x.zero_grad()
    assert x.grad is None
    loss.backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, 4.0])


def test_only_leaves_keep_gradients(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    hidden = x * 2.0
    hidden.sum().backward()
    assert x.is_leaf and not hidden.is_leaf
    assert hidden.grad is None
    assert x.grad is not None


def test_inputs_without_requires_grad_get_no_gradient(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    c = make_tensor([3.0, 4.0], device)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(to_numpy(x.grad), [3.0, 4.0])


def test_no_grad_records_no_graph(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    with minirn.no_grad():
        assert not minirn.is_grad_enabled()
        y = x * 2.0 + 1.0
        with minirn.enable_grad():
            z = x * 2.0
    assert minirn.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()

    @minirn.no_grad()
    def double(t):
        return t * 2.0

    assert not double(x).requires_grad
    assert minirn.is_grad_enabled()


def test_detach_cuts_the_graph(device):
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.creator is None
    np.testing.assert_array_equal(d.numpy(), x.numpy())
    (d * x).sum().backward()  # only the non-detached factor is differentiated: grad = d = x, not 2x
    np.testing.assert_array_equal(to_numpy(x.grad), [1.0, 2.0])


# --- conversions ---------------------------------------------------------------------------
def test_numpy_returns_an_independent_host_copy(device):
    x = make_tensor([1.0, 2.0], device)
    host = x.numpy()
    assert isinstance(host, np.ndarray) and host.dtype == np.float64
    host[0] = 100.0
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])


def test_to_moves_between_devices_and_casts(device):
    x = make_tensor([[1.0, 2.0]], device, requires_grad=True)
    on_cpu = x.to("cpu")
    assert on_cpu.device == "cpu" and isinstance(on_cpu.data, np.ndarray)
    back = on_cpu.to(device)
    assert back.device == device
    np.testing.assert_array_equal(back.numpy(), [[1.0, 2.0]])
    assert x.to(device) is x
    single = x.to(dtype="float32")
    assert single.dtype_name == "float32" and single.device == device
    single.sum().backward()  # a dtype change is differentiable; the gradient comes back as float64
    assert backend.dtype_name(x.grad.dtype) == "float64"
    np.testing.assert_array_equal(to_numpy(x.grad), [[1.0, 1.0]])
    assert x.float().dtype_name == "float32" and x.float().double().dtype_name == "float64"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        x.to("tpu")


def test_item(device):
    assert make_tensor(2.5, device).item() == 2.5
    assert isinstance(make_tensor([[3.0]], device).item(), float)
    assert make_tensor([[3.0]], device).item() == 3.0
    with pytest.raises(ValueError, match=r"item\(\) needs a one-element tensor, got shape \(2,\)"):
        make_tensor([1.0, 2.0], device).item()


def test_indexing_and_shape_properties(device):
    x = make_tensor(np.arange(24.0).reshape(2, 3, 4), device)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.size == 24 and len(x) == 2
    np.testing.assert_array_equal(x[1].numpy(), np.arange(12.0, 24.0).reshape(3, 4))
    np.testing.assert_array_equal(x[0, 2].numpy(), [8.0, 9.0, 10.0, 11.0])
    np.testing.assert_array_equal(x[:, 1:, -1].numpy(), [[7.0, 11.0], [19.0, 23.0]])
    index = minirn.tensor(np.array([1, 0, 1]), device=device)
    np.testing.assert_array_equal(x[index][:, 0, 0].numpy(), [12.0, 0.0, 12.0])


def test_comparisons_return_plain_arrays(device):
    x = make_tensor([1.0, 2.0, 3.0], device, requires_grad=True)
    y = make_tensor([3.0, 2.0, 1.0], device)
    results = {
        "<": (x < 2.0, [True, False, False]), "<=": (x <= y, [True, True, False]),
        ">": (x > y, [False, False, True]), ">=": (x >= 2.0, [False, True, True]),
        "==": (x == y, [False, True, False]), "!=": (x != 2.0, [True, False, True]),
    }
    for op, (got, expected) in results.items():
        assert not isinstance(got, minirn.Tensor), op
        assert backend.device_of(got) == device, op
        np.testing.assert_array_equal(to_numpy(got), expected, err_msg=op)
    assert {x: 1}[x] == 1  # tensors stay hashable despite __eq__


def test_repr_shows_values_dtype_and_grad(device):
    text = repr(make_tensor([1.5, 2.0], device, requires_grad=True, dtype="float32"))
    assert "1.5" in text and "float32" in text and "requires_grad=True" in text
    assert ("strict" in text) == (device == "strict")


# --- dtype policy ------------------------------------------------------------------------
def test_python_floats_become_float32_and_arrays_keep_their_dtype(device):
    assert minirn.tensor([1.0, 2.0], device=device).dtype_name == "float32"
    assert minirn.tensor(3.0, device=device).dtype_name == "float32"
    assert minirn.tensor([1, 2], device=device).dtype_name == "int64"
    assert minirn.tensor(np.array([1.0, 2.0]), device=device).dtype_name == "float64"
    assert minirn.tensor(np.array([1.0], dtype=np.float32), device=device).dtype_name == "float32"
    assert minirn.tensor([1.0], dtype="float64", device=device).dtype_name == "float64"
    assert minirn.zeros((2,), device=device).dtype_name == "float32"
    assert minirn.ones((2,), dtype="float64", device=device).dtype_name == "float64"


def test_scalars_never_promote_float32(device):
    x = make_tensor([1.0, 2.0], device, dtype="float32")
    for result in (x * np.float64(2.0), np.float64(2.0) * x, x + 1.5, 2 * x, x / np.float64(3.0), x**2.0, 1.0 - x):
        assert result.dtype_name == "float32"
        assert result.device == device
    np.testing.assert_allclose((x * np.float64(2.0)).numpy(), [2.0, 4.0])


def test_integer_tensor_with_float_scalar_is_a_clear_error(device):
    labels = minirn.tensor([1, 2], device=device)
    np.testing.assert_array_equal((labels * 2).numpy(), [2, 4])
    with pytest.raises(TypeError, match=r"int64 tensor with the float 2.5.*\.float\(\)"):
        labels * 2.5


def test_tensor_from_unsupported_python_object():
    with pytest.raises(TypeError, match="cannot make a tensor from dict"):
        minirn.tensor({"a": 1})
    with pytest.raises(TypeError, match="cannot use a str as a tensor operand"):
        minirn.tensor([1.0]) + "a"


# --- clear errors -----------------------------------------------------------------------
def test_integer_tensor_cannot_require_grad(device):
    with pytest.raises(ValueError, match="only floating-point tensors can require gradients; this tensor is int64"):
        minirn.tensor([1, 2], requires_grad=True, device=device)
    with pytest.raises(ValueError, match="floating-point"):
        minirn.tensor([1, 2], device=device).requires_grad_()


def test_backward_on_non_scalar_needs_an_upstream_gradient(device):
    y = make_tensor([1.0, 2.0], device, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"backward\(\) on a non-scalar tensor of shape \(2,\) needs an upstream gradient"):
        y.backward()


def test_backward_with_a_wrong_shaped_gradient(device):
    y = make_tensor([1.0, 2.0], device, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        y.backward(on(device, [1.0, 1.0, 1.0]))


def test_backward_accepts_host_gradients_and_leaf_tensors(device):
    """The upstream gradient may be a list or a NumPy array even when the tensor lives on another device."""
    x = make_tensor([1.0, 2.0], device, requires_grad=True)
    (x * 2.0).backward(np.array([1.0, 3.0]))
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, 6.0])
    assert backend.device_of(x.grad) == device
    x.grad = None
    x.backward([1.0, 1.0])  # a leaf receives the upstream gradient directly
    np.testing.assert_array_equal(to_numpy(x.grad), [1.0, 1.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        make_tensor([1.0], device).backward()


def test_custom_function_forward_and_backward(device):
    class Cube(minirn.Function):
        """y = x^3; dL/dx = 3 x^2 g."""

        def forward(self, x):
            self.x = x
            return x * x * x

        def backward(self, g):
            return 3.0 * self.x * self.x * g

    x = make_tensor([1.0, -2.0], device, requires_grad=True)
    y = Cube()(x)
    assert y.creator is not None and y.requires_grad
    y.backward(on(device, [1.0, 1.0]))
    np.testing.assert_array_equal(to_numpy(x.grad), [3.0, 12.0])
    assert F.sum(Cube()(make_tensor([2.0], device))).requires_grad is False
