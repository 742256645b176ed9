"""minirn.backend: devices, host transfer, random numbers, and the helpers the Array API lacks."""
from __future__ import annotations

import importlib.util

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


@pytest.mark.parametrize(
    ("shape", "index"),
    [((4, 3), [2, 0, 2, 3, 2]), ((3,), [1, 1, 1]), ((5, 2, 2), [4, 0, 4]), ((3, 2), [])],
)
def test_scatter_add_numpy_path_equals_generic_one_hot_path(rng, shape, index):
    strict = pytest.importorskip("array_api_strict")
    index = np.array(index, dtype=np.int64)
    values = rng.standard_normal((len(index), *shape[1:]))
    expected = np.zeros(shape)
    for k, i in enumerate(index):  # the definition: repeated indices add up
        expected[i] += values[k]
    fast = backend.scatter_add(shape, index, values)
    generic = backend.scatter_add(shape, strict.asarray(index), strict.asarray(values))
    assert backend.device_of(generic) == "strict"
    np.testing.assert_allclose(fast, expected, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(generic), expected, rtol=1e-12)
    assert to_numpy(generic).dtype == np.float64


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8", "int8", "bool"])
def test_to_device_to_host_round_trip(device, rng, dtype):
    host = (rng.standard_normal((2, 3)) > 0) if dtype == "bool" else (10 * rng.standard_normal((2, 3))).astype(dtype)
    on_device = backend.to_device(host, device)
    assert backend.device_of(on_device) == device
    assert backend.dtype_name(on_device.dtype) == dtype
    back = backend.to_host(on_device)
    assert isinstance(back, np.ndarray)
    assert back.dtype == host.dtype
    np.testing.assert_array_equal(back, host)


def test_to_device_between_devices_and_with_dtype(device):
    on_device = backend.to_device([[1, 2], [3, 4]], device, dtype="float64")
    assert backend.dtype_name(on_device.dtype) == "float64"
    on_cpu = backend.to_device(on_device, "cpu", dtype="float32")
    assert isinstance(on_cpu, np.ndarray) and on_cpu.dtype == np.float32
    np.testing.assert_array_equal(on_cpu, [[1, 2], [3, 4]])
    again = backend.to_device(on_cpu, device)
    assert backend.device_of(again) == device
    np.testing.assert_array_equal(backend.to_host(again), on_cpu)


def test_dtype_names_are_the_same_across_namespaces(device):
    xp = backend.namespace(device)
    for name in ("float32", "float64", "int64", "bool"):
        assert backend.dtype_name(backend.as_dtype(name, xp)) == name
        assert backend.dtype_name(backend.as_dtype(np.dtype(name), xp)) == name
    assert backend.is_floating(xp.float32) and not backend.is_floating(xp.int64)
    with pytest.raises(ValueError, match="unsupported dtype 'complex128'"):
        backend.as_dtype("complex128", xp)


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'; expected one of cpu, gpu, strict"):
        backend.namespace("tpu")
    with pytest.raises(ValueError, match="unknown device 'cuda'"):
        backend.to_device([1.0], "cuda")
    assert backend.device_available("tpu") is False


def test_device_of_rejects_foreign_objects():
    with pytest.raises(TypeError, match="not a minirn array: list"):
        backend.device_of([1.0])
    assert backend.is_array([1.0]) is False


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_without_cupy_raises_a_helpful_device_error():
    with pytest.raises(backend.DeviceError, match=r"device 'gpu' needs CuPy.*pip install cupy-cuda12x"):
        backend.namespace("gpu")
    with pytest.raises(backend.DeviceError, match="needs CuPy"):
        backend.to_device([1.0], "gpu")
    assert backend.device_available("gpu") is False


def test_cpu_and_strict_namespaces():
    assert backend.device_available("cpu")
    assert backend.device_of(backend.namespace("cpu").zeros(2)) == "cpu"
    if backend.device_available("strict"):
        assert backend.device_of(backend.namespace("strict").zeros(2)) == "strict"


def test_ensure_array_turns_numpy_scalars_into_0d_arrays():
    value = backend.ensure_array(np.sum(np.ones(3)))
    assert isinstance(value, np.ndarray) and value.shape == () and value == 3.0
    array = np.ones(2)
    assert backend.ensure_array(array) is array


# --- random numbers: drawn on the host, the same on every device -----------------------
@pytest.mark.parametrize("draw", ["uniform", "normal"])
def test_random_helpers_are_seeded_and_device_independent(device, draw):
    sample = getattr(backend, draw)
    a = sample(123, (3, 4), device=device)
    b = sample(123, (3, 4), device=device)
    on_cpu = sample(123, (3, 4), device="cpu")
    assert backend.device_of(a) == device
    assert backend.dtype_name(a.dtype) == "float32"
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(to_numpy(a), on_cpu)
    assert not np.array_equal(to_numpy(sample(124, (3, 4), device=device)), on_cpu)
    wide = sample(np.random.default_rng(5), (4,), dtype="float64", device=device)
    assert backend.dtype_name(wide.dtype) == "float64"


def test_random_helpers_respect_their_parameters():
    u = backend.uniform(0, (20000,), low=-2.0, high=3.0)
    assert u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < 0.05
    z = backend.normal(0, (20000,), mean=1.0, std=2.0, dtype="float64")
    assert abs(z.mean() - 1.0) < 0.05 and abs(z.std() - 2.0) < 0.05


def test_manual_seed_makes_the_global_generator_reproducible(monkeypatch):
    monkeypatch.setattr(backend, "_global_generator", backend._global_generator)  # restored afterwards
    backend.manual_seed(7)
    first = backend.normal(None, (5,))
    backend.manual_seed(7)
    np.testing.assert_array_equal(backend.normal(None, (5,)), first)
    assert not np.array_equal(backend.normal(None, (5,)), first)  # the global generator advances


def test_rng_accepts_int_generator_or_none():
    generator = np.random.default_rng(1)
    assert backend.rng(generator) is generator
    assert backend.rng(None) is backend.rng(None)
    assert backend.rng(3).integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)


def test_permutation_is_a_seeded_permutation():
    p = backend.permutation(4, 10)
    assert p.dtype == np.int64
    np.testing.assert_array_equal(np.sort(p), np.arange(10))
    np.testing.assert_array_equal(p, backend.permutation(4, 10))


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
    monkeypatch.setattr(backend, "CPU_BLOCK_BYTES", block_bytes)
    blocks = backend.batch_blocks(np.zeros((n, 2)), bytes_per_item)
    covered = [i for b in blocks for i in range(n)[b]]
    assert covered == list(range(n))
    assert all(len(range(n)[b]) * bytes_per_item <= block_bytes or len(range(n)[b]) == 1 for b in blocks)
    assert len(blocks) == (0 if n == 0 else -(-n // max(1, block_bytes // bytes_per_item)))


def test_batch_blocks_is_one_block_off_numpy():
    """A GPU (or any non-NumPy library) gets the whole batch at once."""
    strict = pytest.importorskip("array_api_strict")
    assert backend.batch_blocks(strict.zeros((128, 3)), bytes_per_item=10**9) == [slice(0, 128)]


def _in_layout(rng, shape, layout):
    """An (N, C[, H, W]) float64 array whose memory is channels-last or channels-first."""
    if len(shape) == 4 and layout == "channels_last":
        n, c, h, w = shape
        return rng.standard_normal((n, h, w, c)).transpose(0, 3, 1, 2)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 7), (2, 16, 8, 8), (3, 2, 1, 1)])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_channel_statistics_fast_paths_equal_reference(rng, shape, layout):
    """The BLAS sums and the folded max/min give the reference values in either memory layout."""
    x, y = _in_layout(rng, shape, layout), _in_layout(rng, shape, layout)
    x[0, 0] = 50.0  # one planted extreme per channel 0
    if layout == "channels_last" or len(shape) == 2:
        assert backend._channels_last_rows(x) is not None  # the fast path is the one under test
    np.testing.assert_allclose(backend.channel_sums(x), backend.channel_sums_reference(x), rtol=1e-12)
    np.testing.assert_allclose(backend.channel_sums(x, y), backend.channel_sums_reference(x, y), rtol=1e-12, atol=1e-12)
    for fast, reference in zip(backend.channel_extrema(x), backend.channel_extrema_reference(x)):
        np.testing.assert_array_equal(fast, reference)
    assert backend.channel_extrema(x)[0][0] == 50.0
