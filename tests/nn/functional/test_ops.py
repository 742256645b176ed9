"""Every elementwise, reduction, shape and activation op of ``minirn.nn.functional``.

One table of cases and one parametrised test (tinygrad's ``helper_test_op``
style).  Each :class:`Case` runs three checks on every device:

1. forward values against a NumPy reference written here (independently of
   minirn's code), in float64 and float32;
2. output dtype: float32 in gives float32 out, float64 in gives float64 out;
3. a random-projection gradient check with :func:`minirn.gradcheck` in float64.

``Case`` and :func:`check_case` are reused by ``test_conv.py``.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import minirn
import minirn.nn.functional as F
from minirn import backend
from tests.conftest import make_tensor, to_numpy


@dataclass
class Case:
    """fn: minirn tensors -> tensor; reference: NumPy float64 arrays -> array; inputs: rng -> NumPy arrays."""

    name: str
    fn: Callable
    reference: Callable
    inputs: Callable
    max_elements: int | None = None


def check_case(case: Case, device: str) -> None:
    """Forward values and dtypes against ``case.reference``, then ``minirn.gradcheck`` in float64."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    arrays = [np.asarray(a, dtype=np.float64) for a in case.inputs(rng)]
    for dtype, rtol, atol in (("float64", 1e-10, 1e-12), ("float32", 1e-5, 1e-5)):
        tensors = [make_tensor(a, device, dtype=dtype) for a in arrays]
        out = case.fn(*tensors)
        assert isinstance(out, minirn.Tensor)
        assert out.device == device
        assert out.dtype_name == dtype, f"{case.name}: {dtype} in gave {out.dtype_name} out"
        # the reference sees the inputs exactly as the op saw them (rounded to float32 if so)
        expected = np.asarray(case.reference(*[a.astype(dtype).astype(np.float64) for a in arrays]))
        got = out.numpy()
        assert got.shape == expected.shape, f"{case.name}: shape {got.shape} != reference {expected.shape}"
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"{case.name} ({dtype})")
    tensors = [make_tensor(a, device, requires_grad=True) for a in arrays]
    assert minirn.gradcheck(case.fn, tensors, max_elements=case.max_elements)


# --- input makers -------------------------------------------------------------
def normal(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def positive(*shapes):
    return lambda rng: [rng.uniform(0.5, 2.0, s) for s in shapes]


def nonzero(*shapes):
    """|x| in [0.3, 1.5] with random signs: away from the kink of abs/sign and from division by 0."""
    return lambda rng: [rng.choice([-1.0, 1.0], s) * rng.uniform(0.3, 1.5, s) for s in shapes]


def spread(*shapes):
    """Distinct values k/10 + 0.05 in random order: no ties, nothing within 0.05 of 0 or of a multiple of 0.1."""

    def make(rng):
        out = []
        for s in shapes:
            n = int(np.prod(s))
            out.append(((rng.permutation(n) - n // 2) * 0.1 + 0.05).reshape(s))
        return out

    return make


def const(array, like):
    """A constant (non-differentiable) NumPy array on the device of tensor ``like``."""
    return backend.to_device(np.asarray(array), like.device)


# --- NumPy references ---------------------------------------------------------
def softmax_ref(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_ref(z, labels, reduction):
    losses = np.array([-np.log(softmax_ref(z[n])[labels[n]]) for n in range(z.shape[0])])
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


WHERE_MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, False]])
REPEATED_ROWS = np.array([2, 0, 2, 1, 2])
LABELS = np.array([0, 2, 1, 2])

CASES = [
    # arithmetic, including broadcasting (the engine sums the gradient back to each input's shape)
    Case("add", F.add, np.add, normal((3, 4), (3, 4))),
    Case("add_broadcast_vector", F.add, np.add, normal((2, 3, 4), (4,))),
    Case("add_broadcast_both", F.add, np.add, normal((3, 1), (1, 4))),
    Case("add_python_scalar", lambda x: x + 1.5, lambda x: x + 1.5, normal((3, 4))),
    Case("sub", F.sub, np.subtract, normal((3, 4), (3, 1))),
    Case("rsub_python_scalar", lambda x: 2.0 - x, lambda x: 2.0 - x, normal((2, 3))),
    Case("mul", F.mul, np.multiply, normal((3, 4), (4,))),
    Case("mul_numpy_scalar", lambda x: x * np.float64(2.5), lambda x: x * 2.5, normal((2, 3))),
    Case("div", F.div, np.divide, lambda rng: [rng.standard_normal((3, 4)), *nonzero((1, 4))(rng)]),
    Case("rdiv_python_scalar", lambda x: 1.0 / x, lambda x: 1.0 / x, nonzero((2, 3))),
    Case("neg", F.neg, np.negative, normal((2, 3))),
    Case("pow_fractional", lambda x: F.pow(x, 2.5), lambda x: x**2.5, positive((2, 3))),
    Case("pow_integer_operator", lambda x: x**3, lambda x: x**3, normal((2, 3))),
    Case("exp", F.exp, np.exp, normal((2, 3))),
    Case("log", F.log, np.log, positive((2, 3))),
    Case("sqrt", F.sqrt, np.sqrt, positive((2, 3))),
    Case("abs", F.abs, np.abs, nonzero((2, 3))),
    Case("sign", F.sign, np.sign, nonzero((2, 3))),
    Case("maximum", F.maximum, np.maximum, lambda rng: spread((6,))(rng) + spread((6,))(rng)),
    Case("maximum_broadcast", F.maximum, np.maximum, lambda rng: [spread((2, 3))(rng)[0], spread((3,))(rng)[0] + 0.02]),
    Case("minimum", F.minimum, np.minimum, lambda rng: spread((2, 3))(rng) + spread((2, 3))(rng)),
    Case("where", lambda a, b: F.where(const(WHERE_MASK, a), a, b), lambda a, b: np.where(WHERE_MASK, a, b),
         normal((3, 4), (3, 4))),
    Case("where_comparison_broadcast", lambda a, b: F.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b),
         lambda rng: [*nonzero((3, 4))(rng), rng.standard_normal((4,))]),
    Case("clip", lambda x: F.clip(x, -0.3, 0.3), lambda x: np.clip(x, -0.3, 0.3), spread((3, 4))),
    Case("clip_min_only", lambda x: x.clip(min=0.2), lambda x: np.maximum(x, 0.2), spread((3, 4))),
    Case("clip_max_only", lambda x: x.clamp(max=-0.2), lambda x: np.minimum(x, -0.2), spread((3, 4))),
    # matrix products: 2-D, 1-D on either side, batched, broadcast batch axes
    Case("matmul", F.matmul, np.matmul, normal((3, 4), (4, 2))),
    Case("matmul_vector_matrix", F.matmul, np.matmul, normal((4,), (4, 3))),
    Case("matmul_matrix_vector", F.matmul, np.matmul, normal((3, 4), (4,))),
    Case("matmul_vector_vector", F.matmul, np.matmul, normal((4,), (4,))),
    Case("matmul_batched", F.matmul, np.matmul, normal((2, 3, 4), (2, 4, 2))),
    Case("matmul_broadcast_batch", F.matmul, np.matmul, normal((2, 1, 3, 4), (3, 4, 2))),
    Case("matmul_batched_vector", F.matmul, np.matmul, normal((2, 3, 4), (4,))),
    Case("matmul_operator", lambda a, b: a @ b, np.matmul, normal((2, 3), (3, 2))),
    # reductions
    Case("sum_all", F.sum, np.sum, normal((2, 3, 4))),
    Case("sum_axis_keepdims", lambda x: F.sum(x, axis=1, keepdims=True), lambda x: x.sum(1, keepdims=True),
         normal((2, 3, 4))),
    Case("sum_axes_tuple", lambda x: x.sum(axis=(0, 2)), lambda x: x.sum((0, 2)), normal((2, 3, 4))),
    Case("mean_all", F.mean, np.mean, normal((3, 4))),
    Case("mean_negative_axis", lambda x: x.mean(axis=-1), lambda x: x.mean(-1), normal((2, 3, 4))),
    Case("mean_axes_keepdims", lambda x: x.mean(axis=(0, 2), keepdims=True), lambda x: x.mean((0, 2), keepdims=True),
         normal((2, 3, 4))),
    Case("var_all", F.var, np.var, normal((3, 4))),
    Case("var_unbiased_keepdims", lambda x: F.var(x, axis=0, keepdims=True, correction=1),
         lambda x: x.var(0, keepdims=True, ddof=1), normal((4, 3))),
    Case("var_axes", lambda x: x.var(axis=(0, 2)), lambda x: x.var((0, 2)), normal((2, 3, 4))),
    Case("max_all", F.max, np.max, spread((3, 4))),
    Case("max_axis_keepdims", lambda x: x.max(axis=1, keepdims=True), lambda x: x.max(1, keepdims=True),
         spread((2, 3, 4))),
    Case("max_axes", lambda x: F.max(x, axis=(0, 2)), lambda x: x.max((0, 2)), spread((2, 3, 4))),
    Case("min_all", F.min, np.min, spread((3, 4))),
    Case("min_axis", lambda x: x.min(axis=0), lambda x: x.min(0), spread((3, 4))),
    Case("min_axes_keepdims", lambda x: x.min(axis=(1, 2), keepdims=True), lambda x: x.min((1, 2), keepdims=True),
         spread((2, 3, 4))),
    # shape
    Case("reshape", lambda x: F.reshape(x, (4, 6)), lambda x: x.reshape(4, 6), normal((2, 3, 4))),
    Case("reshape_infer", lambda x: x.reshape(-1, 2), lambda x: x.reshape(-1, 2), normal((2, 3, 2))),
    Case("flatten", lambda x: F.flatten(x, 1), lambda x: x.reshape(2, -1), normal((2, 3, 2))),
    Case("permute", lambda x: F.permute(x, (2, 0, 1)), lambda x: x.transpose(2, 0, 1), normal((2, 3, 4))),
    Case("transpose", lambda x: F.transpose(x, 0, 2), lambda x: np.swapaxes(x, 0, 2), normal((2, 3, 4))),
    Case("transpose_T", lambda x: x.T, lambda x: x.T, normal((2, 3))),
    Case("broadcast_to", lambda x: F.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4)),
         normal((3, 1))),
    Case("getitem_slices", lambda x: x[1:, ::2], lambda x: x[1:, ::2], normal((3, 5))),
    Case("getitem_int", lambda x: x[1], lambda x: x[1], normal((3, 4))),
    Case("getitem_numpy_int", lambda x: x[np.int64(2), 1:], lambda x: x[2, 1:], normal((3, 4))),
    Case("getitem_numpy_int_alone", lambda x: x[np.int64(-1)], lambda x: x[-1], normal((3, 4))),
    Case("getitem_ellipsis_int", lambda x: x[..., -1], lambda x: x[..., -1], normal((2, 3, 4))),
    Case("getitem_newaxis", lambda x: x[None, 0, 1:3], lambda x: x[None, 0, 1:3], normal((3, 4))),
    Case("getitem_int_array_repeats", lambda x: x[const(REPEATED_ROWS, x)], lambda x: x[REPEATED_ROWS],
         normal((3, 4))),
    Case("concat", lambda a, b: F.concat([a, b], axis=1), lambda a, b: np.concatenate([a, b], 1),
         normal((2, 3), (2, 2))),
    Case("concat_three", lambda a, b, c: F.concat([a, b, c]), lambda a, b, c: np.concatenate([a, b, c]),
         normal((1, 3), (2, 3), (1, 3))),
    Case("stack", lambda a, b: F.stack([a, b]), lambda a, b: np.stack([a, b]), normal((2, 3), (2, 3))),
    Case("stack_last_axis", lambda a, b, c: F.stack([a, b, c], axis=-1), lambda a, b, c: np.stack([a, b, c], -1),
         normal((2, 3), (2, 3), (2, 3))),
    Case("pad", lambda x: F.pad(x, [(1, 0), (2, 1)], value=0.5),
         lambda x: np.pad(x, [(1, 0), (2, 1)], constant_values=0.5), normal((2, 3))),
    # activations, softmax, loss
    Case("relu", F.relu, lambda x: np.maximum(x, 0.0), spread((3, 4))),
    Case("sigmoid", F.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), lambda rng: [4 * rng.standard_normal((3, 4))]),
    Case("tanh", F.tanh, np.tanh, normal((3, 4))),
    Case("softmax", F.softmax, softmax_ref, normal((3, 4))),
    Case("softmax_axis0", lambda x: F.softmax(x, axis=0), lambda x: softmax_ref(x, 0), normal((3, 4))),
    Case("log_softmax", F.log_softmax, lambda x: np.log(softmax_ref(x)), normal((3, 4))),
    Case("log_softmax_axis0", lambda x: F.log_softmax(x, axis=0), lambda x: np.log(softmax_ref(x, 0)),
         normal((3, 4))),
    *[
        Case(f"cross_entropy_{r}", lambda z, r=r: F.cross_entropy(z, const(LABELS, z), reduction=r),
             lambda z, r=r: cross_entropy_ref(z, LABELS, r), normal((4, 3)))
        for r in ("mean", "sum", "none")
    ],
    Case("cross_entropy_list_labels", lambda z: F.cross_entropy(z, [0, 2, 1, 2]),
         lambda z: cross_entropy_ref(z, LABELS, "mean"), normal((4, 3))),
    # a small composite graph: a tensor used along several paths
    Case("composite", lambda x, w: (F.tanh(x @ w) * x[:, :2]).sum(axis=1) / (1.0 + x.abs().sum(axis=1)),
         lambda x, w: (np.tanh(x @ w) * x[:, :2]).sum(1) / (1.0 + np.abs(x).sum(1)),
         lambda rng: [*nonzero((3, 4))(rng), rng.standard_normal((4, 2))]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_op(case, device):
    check_case(case, device)


def test_every_public_op_has_a_case():
    """Guard against new ops without a table entry (normalisations are tested in their own files:
    test_normalization.py, test_authors_batch_norm.py)."""
    from tests.nn.functional.test_conv import CASES as CONV_CASES

    names = [c.name for c in CASES + CONV_CASES]
    untested = {"batch_norm", "robust_norm", "group_norm", "layer_norm", "authors_batch_norm", "one_hot", "astype"}
    missing = [op for op in F.__all__ if op not in untested and not any(n == op or n.startswith(op + "_") for n in names)]
    assert not missing, f"ops without a gradient-check case: {missing}"


# --- rules the table cannot express ---------------------------------------------
def test_max_min_ties_share_the_gradient_equally(device):
    x = make_tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], device, requires_grad=True)
    x.max(axis=1).backward(const([1.0, 6.0], x))
    np.testing.assert_allclose(to_numpy(x.grad), [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0]])
    y = make_tensor([[1.0, 3.0], [1.0, 2.0]], device, requires_grad=True)
    y.min().backward()
    np.testing.assert_allclose(to_numpy(y.grad), [[0.5, 0.0], [0.5, 0.0]])
    y.grad = None
    y.min(axis=0, keepdims=True).backward(const([[4.0, 1.0]], y))
    np.testing.assert_allclose(to_numpy(y.grad), [[2.0, 0.0], [2.0, 1.0]])


def test_elementwise_maximum_minimum_ties_share_the_gradient(device):
    a = make_tensor([1.0, 2.0, 3.0], device, requires_grad=True)
    b = make_tensor([1.0, 5.0, 0.0], device, requires_grad=True)
    F.maximum(a, b).backward(const([2.0, 2.0, 2.0], a))
    np.testing.assert_allclose(to_numpy(a.grad), [1.0, 0.0, 2.0])
    np.testing.assert_allclose(to_numpy(b.grad), [1.0, 2.0, 0.0])
    a.grad = b.grad = None
    F.minimum(a, b).backward(const([2.0, 2.0, 2.0], a))
    np.testing.assert_allclose(to_numpy(a.grad), [1.0, 2.0, 0.0])
    np.testing.assert_allclose(to_numpy(b.grad), [1.0, 0.0, 2.0])


def test_sign_has_zero_gradient(device):
    x = make_tensor([-2.0, 0.0, 3.0], device, requires_grad=True)
    (F.sign(x) * x).sum().backward()  # d/dx [sign(x) x] = sign(x): only the product rule's other term
    np.testing.assert_array_equal(to_numpy(x.grad), [-1.0, 0.0, 1.0])


def test_integer_array_index_scatter_adds_repeated_rows(device):
    x = make_tensor(np.zeros((3, 2)), device, requires_grad=True)
    x[const(REPEATED_ROWS, x)].backward(const(np.arange(10.0).reshape(5, 2), x))
    # rows picked: 2, 0, 2, 1, 2 -> row 2 collects upstream rows 0, 2 and 4
    np.testing.assert_array_equal(to_numpy(x.grad), [[2.0, 3.0], [6.0, 7.0], [0 + 4 + 8.0, 1 + 5 + 9.0]])


def test_clip_boundary_passes_gradient_like_torch_clamp(device):
    x = make_tensor([-1.0, -0.5, 0.0, 0.5, 1.0], device, requires_grad=True)
    x.clip(-0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_relu_gradient_at_zero_is_zero(device):
    x = make_tensor([-1.0, 0.0, 2.0], device, requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [0.0, 0.0, 1.0])


def test_softmax_family_is_stable_for_huge_logits(device):
    z = make_tensor([[1000.0, 0.0, -1000.0]], device, dtype="float32")
    np.testing.assert_allclose(F.softmax(z).numpy(), [[1.0, 0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(F.log_softmax(z).numpy(), [[0.0, -1000.0, -2000.0]], rtol=1e-6)
    np.testing.assert_allclose(F.sigmoid(z).numpy(), [[1.0, 0.5, 0.0]], atol=1e-7)
    np.testing.assert_allclose(F.cross_entropy(z, [2]).item(), 2000.0, rtol=1e-6)


# --- clear errors ---------------------------------------------------------------
def test_matmul_shape_mismatch_names_both_shapes(device):
    a, b = make_tensor(np.ones((2, 3)), device), make_tensor(np.ones((4, 5)), device)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not match"):
        F.matmul(a, b)
    with pytest.raises(ValueError, match=r"\(3,\) and \(4, 5\)"):
        make_tensor(np.ones(3), device) @ b
    with pytest.raises(ValueError, match="at least one dimension"):
        F.matmul(make_tensor(2.0, device), b)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 3], r"labels must lie in \[0, 3\), got values in \[0, 3\]"),
        ([-1, 1], r"labels must lie in \[0, 3\), got values in \[-1, 1\]"),
        ([0, 1, 2], r"labels must have shape \(2,\) to match logits \(2, 3\), got \(3,\)"),
        ([[0], [1]], r"labels must have shape \(2,\)"),
        ([0.0, 1.0], "labels must be integers, got float"),
        ([True, False], "labels must be integers, got bool"),
    ],
)
def test_cross_entropy_rejects_bad_labels(labels, message, device):
    logits = make_tensor(np.zeros((2, 3)), device)
    with pytest.raises(ValueError, match=message):
        F.cross_entropy(logits, const(labels, logits))


def test_cross_entropy_rejects_bad_reduction_and_logits(device):
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(make_tensor(np.zeros((2, 3)), device), [0, 1], reduction="avg")
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\), got \(2, 3, 1\)"):
        F.cross_entropy(make_tensor(np.zeros((2, 3, 1)), device), [0, 1])


def test_shape_op_errors_name_the_problem(device):
    x = make_tensor(np.ones((2, 3)), device)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) into \(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"\(0, 0\) is not a permutation"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor with 2 dimensions"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="one non-negative"):
        F.pad(x, [(1, 1)])
    with pytest.raises(TypeError, match="exponent must be a Python number"):
        F.pow(x, x)


@pytest.mark.parametrize("lead", [5.0, 16.0, 20.0, 30.0])
def test_cross_entropy_backward_has_no_cancellation_at_a_large_logit_lead(lead, device):
    """float32 gradient of the CE = float64's, also where p_y rounds to 1 (p_y - 1 would give exactly 0)."""
    logits = np.array([[lead, 0.0, -1.0, 2.0], [-3.0, 1.5, lead, 0.5]])
    labels = [0, 2]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    others = expected.copy()
    others[[0, 1], labels] = 0.0
    expected[[0, 1], labels] = -others.sum(axis=1)  # d/dz_y = -(1 - p_y), computed in float64
    z = make_tensor(logits, device, requires_grad=True, dtype="float32")
    F.cross_entropy(z, const(labels, z), reduction="sum").backward()
    grad = to_numpy(z.grad).astype(np.float64)
    assert np.all(grad[[0, 1], labels] < 0.0)  # the true class is always pushed down, never exactly 0
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=0.0)
