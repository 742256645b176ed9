"""conv2d, linear, max_pool2d and avg_pool2d against naive-loop NumPy references.

Same table-plus-one-test pattern as ``test_ops.py`` (forward values, output
dtype, random-projection gradient check in float64, on every device).
"""
from __future__ import annotations

import numpy as np
import pytest

import minirn.nn.functional as F
from minirn import backend
from tests.conftest import make_tensor, to_numpy
from tests.nn.functional.test_ops import Case, check_case, normal, spread


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad(x, padding, value):
    ph, pw = padding
    out = np.full((*x.shape[:2], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), value)
    out[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x
    return out


def conv2d_ref(x, w, b=None, stride=1, padding=0):
    """y[n, o, i, j] = b[o] + sum_{c, a, e} w[o, c, a, e] * xpad[n, c, i*sh + a, j*sw + e], one loop per index."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    xpad = _pad(x, (ph, pw), 0.0)
    n, c, h, wd = xpad.shape
    o, _, kh, kw = w.shape
    ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for ni in range(n):
        for oi in range(o):
            for i in range(ho):
                for j in range(wo):
                    total = 0.0 if b is None else b[oi]
                    for ci in range(c):
                        for a in range(kh):
                            for e in range(kw):
                                total += w[oi, ci, a, e] * xpad[ni, ci, i * sh + a, j * sw + e]
                    y[ni, oi, i, j] = total
    return y


def pool_ref(x, kernel, stride=None, padding=0, mode="max"):
    """Each output is the max (padding -inf) or mean (zero padding counted) of its window."""
    (kh, kw) = _pair(kernel)
    (sh, sw), (ph, pw) = _pair(stride if stride is not None else kernel), _pair(padding)
    xpad = _pad(x, (ph, pw), -np.inf if mode == "max" else 0.0)
    n, c, h, w = xpad.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, ho, wo))
    for ni in range(n):
        for ci in range(c):
            for i in range(ho):
                for j in range(wo):
                    window = xpad[ni, ci, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    y[ni, ci, i, j] = window.max() if mode == "max" else window.sum() / (kh * kw)
    return y


def linear_ref(x, w, b=None):
    y = np.array([[sum(x[n, k] * w[o, k] for k in range(x.shape[1])) for o in range(w.shape[0])]
                  for n in range(x.shape[0])])
    return y if b is None else y + b


def _conv_case(name, x_shape, w_shape, stride=1, padding=0, bias=False):
    shapes = [x_shape, w_shape] + ([(w_shape[0],)] if bias else [])
    if bias:
        def fn(x, w, b):
            return F.conv2d(x, w, b, stride=stride, padding=padding)

        def ref(x, w, b):
            return conv2d_ref(x, w, b, stride, padding)
    else:
        def fn(x, w):
            return F.conv2d(x, w, stride=stride, padding=padding)

        def ref(x, w):
            return conv2d_ref(x, w, None, stride, padding)
    return Case(name, fn, ref, normal(*shapes), max_elements=24)


def _pool_case(name, mode, x_shape, kernel, stride=None, padding=0):
    op = F.max_pool2d if mode == "max" else F.avg_pool2d
    # distinct, well-separated values: the max of each window is unique, so max pooling is differentiable
    inputs = spread(x_shape) if mode == "max" else normal(x_shape)
    return Case(name, lambda x: op(x, kernel, stride, padding), lambda x: pool_ref(x, kernel, stride, padding, mode),
                inputs, max_elements=30)


CASES = [
    _conv_case("conv2d_k3", (2, 2, 5, 5), (3, 2, 3, 3)),
    _conv_case("conv2d_k3_pad1_bias", (2, 2, 4, 4), (3, 2, 3, 3), padding=1, bias=True),
    _conv_case("conv2d_k3_stride2_pad1", (1, 2, 5, 6), (2, 2, 3, 3), stride=2, padding=1, bias=True),
    _conv_case("conv2d_nonsquare_kernel", (2, 2, 5, 4), (2, 2, 2, 3), stride=(2, 1), padding=(1, 0)),
    _conv_case("conv2d_1x1", (2, 3, 3, 3), (4, 3, 1, 1), bias=True),
    _conv_case("conv2d_stride_exceeds_kernel", (1, 1, 7, 7), (2, 1, 2, 2), stride=3),
    _conv_case("conv2d_1x1_pad1", (1, 2, 3, 2), (2, 2, 1, 1), padding=1),  # stride 1, padding > k - 1: col2im
    _conv_case("conv2d_k3_pad2", (1, 2, 3, 3), (2, 2, 3, 3), padding=(2, 1)),  # stride 1, the largest padding

    Case("linear", F.linear, linear_ref, normal((3, 4), (2, 4))),
    Case("linear_bias", F.linear, linear_ref, normal((3, 4), (2, 4), (2,))),
    _pool_case("max_pool2d_nonoverlapping", "max", (2, 2, 4, 4), 2),
    _pool_case("max_pool2d_overlapping", "max", (1, 2, 5, 5), 3, stride=1),
    _pool_case("max_pool2d_stride2_pad1", "max", (1, 2, 5, 5), 3, stride=2, padding=1),
    _pool_case("max_pool2d_nonsquare", "max", (1, 2, 4, 6), (2, 3), stride=(1, 2)),
    _pool_case("avg_pool2d_nonoverlapping", "avg", (2, 2, 4, 4), 2),
    _pool_case("avg_pool2d_overlapping_pad1", "avg", (1, 2, 5, 5), 3, stride=1, padding=1),
    _pool_case("avg_pool2d_nonsquare_truncated", "avg", (1, 2, 5, 7), (2, 3), stride=(2, 2)),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_op(case, device):
    check_case(case, device)


CONV_CASES = [c for c in CASES if c.name.startswith("conv2d")]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CONV_CASES])
def test_conv2d_in_blocks_of_one_image_matches_the_reference(case, monkeypatch):
    """On NumPy conv2d works through the batch in cache-sized blocks; with one image per block
    the values and gradients must still be those of the loop reference (the small cases above
    fit in one block, so this is the test of the blocked path)."""
    monkeypatch.setattr(backend.windows, "CPU_BLOCK_BYTES", 1)
    assert len(backend.batch_blocks(np.zeros((2, 1)), bytes_per_item=8)) == 2
    check_case(case, "cpu")


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((3, 3), (0, 0)), ((2, 3), (1, 2)), ((1, 1), (0, 0))])
def test_input_gradient_by_correlation_equals_col2im(kernel, padding, device, rng):
    """For stride 1 the input gradient is computed as a correlation of G with the flipped kernel
    (no col2im); the col2im path, which every stride can take, must give the same array."""
    from minirn.nn.functional.conv import Conv2d, _channels_last, _crop, _transposes_as_correlation

    assert _transposes_as_correlation((1, 1), padding, kernel)
    x = make_tensor(rng.standard_normal((3, 2, 5, 6)), device)
    w = make_tensor(rng.standard_normal((4, 2, *kernel)), device)
    conv = Conv2d(stride=1, padding=padding)
    y = conv.forward(x.data, w.data)
    g = _channels_last(make_tensor(rng.standard_normal(tuple(y.shape)), device).data)
    by_correlation = to_numpy(conv._input_gradient_by_correlation(g))
    by_folding = to_numpy(_crop(conv._input_gradient_by_folding(g), conv.x_shape, conv.padding))
    assert by_correlation.shape == by_folding.shape == (3, 5, 6, 2)
    np.testing.assert_allclose(by_correlation, by_folding, rtol=1e-12, atol=1e-12)


def test_input_gradient_folds_where_the_input_has_fewer_channels(device, rng, monkeypatch):
    """A stride-1 input gradient is the correlation of G unless the input has fewer channels than the
    output (a network's first convolution: 1 -> 32, 3 -> 16), where it folds; both give the loop
    reference's gradient."""
    from minirn.nn.functional import conv as conv_module

    def path(c_in, c_out):
        g = backend.to_device(np.zeros((2, 6, 6, c_out), dtype=np.float32), device)
        return "correlation" if backend.input_gradient_by_correlation_pays(g, c_in) else "folding"

    assert path(1, 32) == path(3, 16) == path(16, 32) == "folding"
    assert path(16, 16) == path(32, 32) == path(64, 64) == path(32, 16) == "correlation"

    called = []
    for method in ("_input_gradient_by_correlation", "_input_gradient_by_folding"):
        original = getattr(conv_module.Conv2d, method)
        monkeypatch.setattr(conv_module.Conv2d, method,
                            lambda self, g, _m=method, _f=original: called.append(_m) or _f(self, g))
    for c_in, c_out in ((2, 3), (3, 3)):
        x, w = rng.standard_normal((2, c_in, 5, 4)), rng.standard_normal((c_out, c_in, 3, 3))
        conv = conv_module.Conv2d(stride=1, padding=1)
        y = conv.forward(backend.to_device(x, device), backend.to_device(w, device))
        g = rng.standard_normal(tuple(y.shape))
        conv.needs_input_grad = (True, False)
        gx, _, _ = conv.backward(backend.to_device(g, device))
        np.testing.assert_allclose(to_numpy(gx), _input_gradient_reference(x, w, g), rtol=1e-12, atol=1e-12)
    assert called == ["_input_gradient_by_folding", "_input_gradient_by_correlation"]


def _input_gradient_reference(x, w, g):
    """dL/dx of a stride-1, padding-1 convolution by loops: each output pixel's gradient times the kernel,
    added onto the window it came from."""
    n, c, h, width = x.shape
    gx = np.zeros((n, c, h + 2, width + 2))
    for i in range(h):
        for j in range(width):
            gx[:, :, i : i + 3, j : j + 3] += np.einsum("no,ocab->ncab", g[:, :, i, j], w)
    return gx[:, :, 1:-1, 1:-1]


ROW_OFFSET_SHAPES = [
    # (x: (N, C, H, W), weight: (O, C, kh, kw), padding)
    ((3, 2, 5, 6), (4, 2, 3, 3), (1, 1)),
    ((2, 1, 7, 5), (3, 1, 3, 3), (0, 0)),
    ((3, 3, 6, 4), (2, 3, 2, 3), (1, 2)),  # non-square kernel, unequal padding
    ((2, 2, 4, 4), (2, 2, 4, 1), (2, 0)),  # a tall kernel: 3 rows of each image past the image
]


@pytest.mark.parametrize("x_shape, w_shape, padding", ROW_OFFSET_SHAPES)
@pytest.mark.parametrize("one_image_per_block", [False, True])
def test_row_offset_correlation_equals_im2col(rng, monkeypatch, x_shape, w_shape, padding, one_image_per_block):
    """The row-offset path (stride 1, few channels, NumPy) and im2col compute the same correlation and the
    same weight gradient up to float rounding, in one block and with one image per block (where each
    block's last image ends the row grid)."""
    from minirn.nn.functional import conv as conv_module

    if one_image_per_block:
        monkeypatch.setattr(backend.windows, "CPU_BLOCK_BYTES", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    results = {}
    for max_channels in (0, 16):  # 0: every convolution takes im2col
        monkeypatch.setattr(backend.windows, "ROW_OFFSET_MAX_CHANNELS", max_channels)
        monkeypatch.setattr(backend.windows, "ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS", max_channels)
        conv = conv_module.Conv2d(stride=1, padding=padding)
        y = conv.forward(x, w)
        g = rng.standard_normal(y.shape) if not results else results[0][2]
        conv.needs_input_grad = (True, True)
        gx, gw, _ = conv.backward(g)
        path = conv_module._by_row_offsets(conv.padded, w_shape[2:], (1, 1), w_shape[0])
        results[max_channels] = (y, gx, g, gw, path)
    assert results[16][4] and not results[0][4]  # each setting took the path it names
    for a, b in zip(results[0][:4], results[16][:4]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(results[16][0], conv2d_ref(x, w, None, 1, padding), rtol=1e-12, atol=1e-12)


def test_row_offsets_are_taken_only_where_they_pay():
    """Stride 1, a kernel taller than one row, at most 16 channels in and out, NumPy: the 16-channel stage
    of a ResNet.  Not for the small CNN's 1 -> 32 convolution, a stride 2, a 1x1 kernel or a GPU's arrays."""
    from minirn.nn.functional.conv import _by_row_offsets

    strict = pytest.importorskip("array_api_strict")
    padded = np.zeros((2, 34, 34, 16), dtype=np.float32)
    assert _by_row_offsets(padded, (3, 3), (1, 1), 16)
    assert not _by_row_offsets(padded, (3, 3), (1, 1), 32)
    assert not _by_row_offsets(np.zeros((2, 30, 30, 1)), (3, 3), (1, 1), 32)
    assert not _by_row_offsets(padded, (3, 3), (2, 2), 16)
    assert not _by_row_offsets(padded, (1, 1), (1, 1), 16)
    assert not _by_row_offsets(strict.zeros((2, 34, 34, 16)), (3, 3), (1, 1), 16)


def test_weight_gradient_takes_row_offsets_up_to_32_channels():
    """The weight gradient by row offsets also pays at 16 to 32 channels in (ResNet-20's 32-channel stage),
    not at 64 and not with fewer than 16 channels in (the small CNN's 1 -> 32), and wherever the forward
    pass takes row offsets (ResNet-20's 3 -> 16 first convolution)."""
    from minirn.nn.functional.conv import _by_row_offsets

    def takes(c_in, c_out):
        return _by_row_offsets(np.zeros((2, 18, 18, c_in), dtype=np.float32), (3, 3), (1, 1), c_out, weight_gradient=True)

    assert takes(32, 32) and takes(16, 32) and takes(16, 16) and takes(3, 16)
    assert not takes(64, 64) and not takes(1, 32) and not takes(32, 64)
    assert not _by_row_offsets(np.zeros((2, 18, 18, 32)), (3, 3), (1, 1), 32)  # the forward pass: im2col


@pytest.mark.parametrize("one_image_per_block", [False, True])
def test_weight_gradient_by_row_offsets_at_32_channels_equals_im2col(rng, monkeypatch, one_image_per_block):
    """A 16 -> 24 convolution: the forward pass and the input gradient take im2col, the weight gradient row
    offsets; every gradient equals the all-im2col computation and the loop reference's forward."""
    from minirn.nn.functional import conv as conv_module

    if one_image_per_block:
        monkeypatch.setattr(backend.windows, "CPU_BLOCK_BYTES", 1)
    x, w = rng.standard_normal((2, 16, 5, 4)), rng.standard_normal((24, 16, 3, 3))
    g = rng.standard_normal((2, 24, 5, 4))
    results = {}
    for max_channels in (0, 32):  # 0: the weight gradient takes im2col too
        monkeypatch.setattr(backend.windows, "ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS", max_channels)
        conv = conv_module.Conv2d(stride=1, padding=1)
        y = conv.forward(x, w)
        conv.needs_input_grad = (True, True)
        gx, gw, _ = conv.backward(g)
        taken = conv_module._by_row_offsets(conv.padded, (3, 3), (1, 1), 24, weight_gradient=True)
        results[max_channels] = (y, gx, gw, taken)
    assert results[32][3] and not results[0][3]
    for a, b in zip(results[0][:3], results[32][:3]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(results[32][0], conv2d_ref(x, w, None, 1, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, padding", ROW_OFFSET_SHAPES)
def test_row_offset_functions_on_every_device(device, rng, x_shape, w_shape, padding):
    """The row-offset forward and weight gradient are standard array code: on every device they give the
    loop reference's y and the im2col path's G^T X_col (computed here by loops over the windows)."""
    from minirn.nn.functional.conv import _correlate_by_row_offsets, _weight_gradient_by_row_offsets

    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    o, c, kh, kw = w_shape
    padded = _pad(x, padding, 0.0).transpose(0, 2, 3, 1)  # channels last
    w_mat = w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)
    y = _correlate_by_row_offsets(backend.to_device(padded, device), backend.to_device(w_mat, device), (kh, kw))
    expected = conv2d_ref(x, w, None, 1, padding).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(to_numpy(y), expected, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    x_col = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * c)
    g_w = _weight_gradient_by_row_offsets(backend.to_device(padded, device), backend.to_device(g, device), (kh, kw))
    np.testing.assert_allclose(to_numpy(g_w), g.reshape(-1, o).T @ x_col, rtol=1e-12, atol=1e-12)


def test_conv2d_on_noncontiguous_input(device, rng):
    """A transposed or sliced NumPy array as data must give the same result as its contiguous copy."""
    base = rng.standard_normal((2, 6, 7, 2))
    x = base.transpose(0, 3, 2, 1)[:, :, ::2, 1:]  # (2, 2, 4, 5), neither C- nor F-contiguous
    assert not x.flags.c_contiguous
    w = rng.standard_normal((3, 2, 2, 2))
    expected = conv2d_ref(x, w, None, 1, 1)
    got = F.conv2d(make_tensor(x, device), make_tensor(w, device), padding=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.max_pool2d(make_tensor(x, device), 2).numpy(), pool_ref(x, 2), rtol=1e-12)


def test_max_pool2d_tie_sends_gradient_to_one_position(device):
    """Within a window of equal values exactly one position receives the gradient (the first, like PyTorch)."""
    x = make_tensor(np.ones((1, 1, 2, 2)), device, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [[[[1.0, 0.0], [0.0, 0.0]]]])


# --- clear errors ---------------------------------------------------------------
def test_conv2d_errors_name_the_problem(device):
    x = make_tensor(np.ones((1, 2, 5, 5)), device)
    with pytest.raises(ValueError, match=r"conv2d: input has 2 channels but the weight of shape \(4, 3, 3, 3\) expects 3"):
        F.conv2d(x, make_tensor(np.ones((4, 3, 3, 3)), device))
    with pytest.raises(ValueError, match=r"expected input \(N, C, H, W\) and weight \(O, C, kh, kw\), got shapes \(2, 5, 5\)"):
        F.conv2d(make_tensor(np.ones((2, 5, 5)), device), make_tensor(np.ones((4, 2, 3, 3)), device))
    with pytest.raises(ValueError, match=r"got shapes \(1, 2, 5, 5\) and \(2, 3, 3\)"):
        F.conv2d(x, make_tensor(np.ones((2, 3, 3)), device))
    with pytest.raises(ValueError, match=r"kernel 7 is larger than the padded input \(5 \+ 2\*0\)"):
        F.conv2d(x, make_tensor(np.ones((1, 2, 7, 7)), device))
    w = make_tensor(np.ones((1, 2, 3, 3)), device)
    with pytest.raises(ValueError, match=r"stride must be an int or a pair of ints >= 1, got 1.5"):
        F.conv2d(x, w, stride=1.5)
    with pytest.raises(ValueError, match=r"stride must be an int or a pair of ints >= 1, got \(1, 0\)"):
        F.conv2d(x, w, stride=(1, 0))
    with pytest.raises(ValueError, match=r"padding must be an int or a pair of ints >= 0, got \(1, 1, 1\)"):
        F.conv2d(x, w, padding=(1, 1, 1))


def test_linear_mismatch_names_both_shapes(device):
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not match weight of shape \(4, 5\)"):
        F.linear(make_tensor(np.ones((2, 3)), device), make_tensor(np.ones((4, 5)), device))
    with pytest.raises(ValueError, match=r"input of shape \(2, 3, 5\)"):
        F.linear(make_tensor(np.ones((2, 3, 5)), device), make_tensor(np.ones((4, 5)), device))


def test_pool_errors_name_the_problem(device):
    x = make_tensor(np.ones((1, 1, 4, 4)), device)
    with pytest.raises(ValueError, match=r"max_pool2d: expected input \(N, C, H, W\), got shape \(4, 4\)"):
        F.max_pool2d(make_tensor(np.ones((4, 4)), device), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="max_pool2d: kernel 5 is larger than the padded input"):
        F.max_pool2d(x, 5)
