"""minirn.backend.windows: sliding windows, their adjoint (fold_windows) and batch blocking."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import backend
from tests.conftest import to_numpy

WINDOW_CASES = [
    # (channels-last input shape (N, H, W, C), kernel, stride)
    ((2, 5, 5, 3), (3, 3), (1, 1)),
    ((1, 6, 7, 2), (2, 3), (2, 1)),
    ((2, 7, 5, 1), (1, 1), (3, 2)),
    ((1, 5, 5, 2), (2, 2), (2, 2)),  # the last row and column are never covered
    ((1, 4, 9, 1), (4, 2), (1, 3)),
]


def windows_by_loops(x, kernel, stride):
    """windows[n, i, j, a, b, c] = x[n, i*sh + a, j*sw + b, c], element by element."""
    (kh, kw), (sh, sw) = kernel, stride
    n, h, w, c = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    out[:, i, j, a, b, :] = x[:, i * sh + a, j * sw + b, :]
    return out


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
def test_sliding_windows_fast_path_equals_reference(rng, shape, kernel, stride):
    x = rng.standard_normal(shape)
    fast = backend.sliding_windows(x, kernel, stride)
    np.testing.assert_array_equal(fast, backend.sliding_windows_reference(x, kernel, stride))
    np.testing.assert_array_equal(fast, windows_by_loops(x, kernel, stride))
    # a non-contiguous input (a channels-last view of NCHW memory) has other strides; the view must follow them
    xt = np.asfortranarray(x)
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(backend.sliding_windows(xt, kernel, stride), windows_by_loops(x, kernel, stride))


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_im2col_fast_path_equals_the_windows_as_a_matrix(rng, shape, kernel, stride, dtype):
    """im2col's NumPy path copies each window row as one item; the matrix must be the loop windows', bit for bit."""
    x = rng.standard_normal(shape).astype(dtype)
    expected = windows_by_loops(x, kernel, stride).reshape(-1, kernel[0] * kernel[1] * shape[-1])
    fast = backend.im2col(x, kernel, stride)
    assert fast.dtype == x.dtype and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(backend.im2col_reference(x, kernel, stride), expected)
    np.testing.assert_array_equal(backend.im2col(x[1:], kernel, stride), expected[len(expected) // shape[0] :])  # a slice
    xt = np.asfortranarray(x)  # not C-contiguous: the reference path
    np.testing.assert_array_equal(backend.im2col(xt, kernel, stride), expected)


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
def test_im2col_same_on_every_device(device, rng, shape, kernel, stride):
    x = rng.standard_normal(shape)
    got = backend.im2col(backend.to_device(x, device), kernel, stride)
    assert backend.device_of(got) == device
    expected = windows_by_loops(x, kernel, stride).reshape(-1, kernel[0] * kernel[1] * shape[-1])
    np.testing.assert_array_equal(to_numpy(got), expected)


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
def test_sliding_windows_same_on_every_device(device, rng, shape, kernel, stride):
    x = rng.standard_normal(shape)
    got = backend.sliding_windows(backend.to_device(x, device), kernel, stride)
    assert backend.device_of(got) == device
    np.testing.assert_array_equal(to_numpy(got), windows_by_loops(x, kernel, stride))


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
def test_fold_windows_is_the_adjoint_of_sliding_windows(device, rng, shape, kernel, stride):
    """<fold(G), X> == <G, windows(X)> for every X and G: fold is the transpose of the linear map windows."""
    x = rng.standard_normal(shape)
    windows = windows_by_loops(x, kernel, stride)
    g = rng.standard_normal(windows.shape)
    folded = backend.fold_windows(backend.to_device(g, device), shape, stride)
    assert backend.device_of(folded) == device
    assert tuple(folded.shape) == shape
    np.testing.assert_allclose(np.sum(to_numpy(folded) * x), np.sum(g * windows), rtol=1e-12)


def test_fold_windows_adds_overlaps():
    ones = np.ones((1, 2, 2, 2, 2, 1))  # four 2x2 windows with stride 1 over a 3x3 image
    folded = backend.fold_windows(ones, (1, 3, 3, 1), (1, 1))
    np.testing.assert_array_equal(folded[0, :, :, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize(("shape", "kernel", "stride"), WINDOW_CASES)
def test_fold_windows_fast_path_equals_generic_path(rng, shape, kernel, stride):
    """NumPy adds in place; the generic path (array-api-strict) adds out of place: same numbers."""
    strict = pytest.importorskip("array_api_strict")
    windows = windows_by_loops(rng.standard_normal(shape), kernel, stride)
    fast = backend.fold_windows(windows, shape, stride)
    generic = backend.fold_windows(strict.asarray(windows), shape, stride)
    assert isinstance(fast, np.ndarray) and backend.device_of(generic) == "strict"
    np.testing.assert_array_equal(fast, to_numpy(generic))


@pytest.mark.parametrize("n, bytes_per_item, block_bytes", [(128, 1000, 4000), (5, 10, 1), (7, 3, 10**9), (0, 8, 64)])
def test_batch_blocks_cover_the_batch_in_order(n, bytes_per_item, block_bytes, monkeypatch):
    """NumPy blocks: consecutive, covering 0..n exactly once, each within the byte budget (or one item)."""
    monkeypatch.setattr(backend.windows, "CPU_BLOCK_BYTES", block_bytes)
    blocks = backend.batch_blocks(np.zeros((n, 2)), bytes_per_item)
    covered = [i for b in blocks for i in range(n)[b]]
    assert covered == list(range(n))
    assert all(len(range(n)[b]) * bytes_per_item <= block_bytes or len(range(n)[b]) == 1 for b in blocks)
    assert len(blocks) == (0 if n == 0 else -(-n // max(1, block_bytes // bytes_per_item)))


def test_batch_blocks_is_one_block_off_numpy():
    """A GPU (or any non-NumPy library) gets the whole batch at once."""
    strict = pytest.importorskip("array_api_strict")
    assert backend.batch_blocks(strict.zeros((128, 3)), bytes_per_item=10**9) == [slice(0, 128)]


def test_matmul_into_writes_exactly_the_product_into_its_rows(device, rng):
    """out[rows] = a @ b, the rest of out untouched; NumPy's out= path gives the product's bits."""
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)
    out = backend.to_device(np.full((9, 3), 7.0, dtype=np.float32), device)
    backend.matmul_into(out, slice(2, 7), backend.to_device(a, device), backend.to_device(b, device))
    got = to_numpy(out)
    np.testing.assert_array_equal(got[2:7], to_numpy(backend.to_device(a, device) @ backend.to_device(b, device)))
    np.testing.assert_array_equal(np.delete(got, np.s_[2:7], axis=0), 7.0)
    if device == "cpu":  # a transposed operand, as the convolution passes W_mat^T
        w = rng.standard_normal((3, 7)).astype(np.float32)
        backend.matmul_into(out, slice(0, 5), a, w.T)
        np.testing.assert_array_equal(out[:5], np.matmul(a, w.T))
