"""The one module that knows which array library runs the math.

Every other module in minirn writes its numerics once, against the Python
Array API standard: it calls ``xp = array_namespace(x)`` and then only ``xp.``
functions.  This file maps minirn's three *devices* onto array libraries and
holds the few helpers the standard does not provide.

======== ====================== ==========================================
device   library                purpose
======== ====================== ==========================================
"cpu"    NumPy                  the default
"gpu"    CuPy (imported lazily) NVIDIA GPUs; ``pip install cupy-cuda12x``
"strict" array-api-strict       tests only: refuses anything the standard
                                does not promise, which proves that the
                                code would run on any conforming library
======== ====================== ==========================================

Helpers the standard lacks, each with a NumPy fast path and a generic path:

* random numbers (:func:`uniform`, :func:`normal`): drawn on the host by a
  seeded NumPy ``Generator`` and copied to the device, so one seed gives the
  same numbers on every device;
* :func:`scatter_add` (the gradient of integer-array indexing);
* :func:`sliding_windows` (the patches a convolution or pooling sees);
* :func:`batch_blocks` (cache-sized blocks of a batch for the CPU);
* :func:`channel_sums`, :func:`channel_extrema` (the per-channel statistics of the batch norms);
* host transfer (:func:`to_host`, :func:`to_device`).
"""
from __future__ import annotations

import importlib
import math

import array_api_compat
import numpy as np

DEVICES = ("cpu", "gpu", "strict")
DEFAULT_DEVICE = "cpu"


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


# ----------------------------------------------------------------------------
# devices and namespaces
# ----------------------------------------------------------------------------
def check_device(device: str) -> str:
    """Return ``device`` if it names a minirn device, else raise ``ValueError``."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return device


def _import_cupy():
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceError(
            "device 'gpu' needs CuPy, which is not installed "
            "(install the wheel for your CUDA version, e.g. `pip install cupy-cuda12x`)"
        ) from exc
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise DeviceError("device 'gpu' needs a CUDA GPU, but CuPy sees none")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        raise DeviceError(f"device 'gpu' needs a working CUDA GPU: {exc}") from exc
    return cupy


def _import_strict():
    try:
        return importlib.import_module("array_api_strict")
    except ImportError as exc:
        raise DeviceError(
            "device 'strict' needs array-api-strict (`pip install -r requirements-dev.txt`)"
        ) from exc


def device_available(device: str) -> bool:
    """Whether ``device`` can be used on this machine (never raises)."""
    try:
        namespace(device)
    except (DeviceError, ValueError):
        return False
    return True


def namespace(device: str = DEFAULT_DEVICE):
    """The Array API namespace (``xp``) that computes on ``device``."""
    check_device(device)
    if device == "cpu":
        return array_api_compat.array_namespace(np.empty(0))
    if device == "strict":
        return _import_strict()
    cupy = _import_cupy()
    return array_api_compat.array_namespace(cupy.empty(0))


def array_namespace(*arrays):
    """The namespace of ``arrays`` (None and Python scalars are ignored)."""
    return array_api_compat.array_namespace(
        *[a for a in arrays if a is not None and not isinstance(a, (bool, int, float))]
    )


def device_of(array) -> str:
    """The minirn device name (``"cpu"``, ``"gpu"`` or ``"strict"``) of ``array``."""
    if isinstance(array, (np.ndarray, np.generic)):
        return "cpu"
    if array_api_compat.is_cupy_array(array):
        return "gpu"
    if type(array).__module__.startswith("array_api_strict"):
        return "strict"
    raise TypeError(f"not a minirn array: {type(array).__name__}")


def is_array(obj) -> bool:
    """Whether ``obj`` is an array of one of minirn's devices."""
    try:
        device_of(obj)
    except TypeError:
        return False
    return True


def ensure_array(value):
    """NumPy reductions return scalars (``np.float64``); make them 0-d arrays like every other backend."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def to_host(array) -> np.ndarray:
    """``array`` as a NumPy array (works on every device; a copy except on the CPU)."""
    device = device_of(array)
    if device == "cpu":
        return np.asarray(array)
    if device == "gpu":
        return array.get()
    return np.from_dlpack(array)


def to_device(data, device: str, dtype=None):
    """``data`` (array, NumPy array, nested lists or scalar) as an array on ``device``.

    ``dtype`` may be a dtype of any namespace or a name such as ``"float32"``.
    """
    check_device(device)
    if is_array(data) and device_of(data) != device:
        data = to_host(data)
    xp = namespace(device)
    return xp.asarray(data, dtype=None if dtype is None else as_dtype(dtype, xp))


_DTYPE_NAMES = ("float32", "float64", "float16", "int64", "int32", "int16", "uint8", "int8", "bool")  # uint8 before int8


def _dtype_name(dtype) -> str:
    text = dtype.__name__ if isinstance(dtype, type) else str(dtype)  # NumPy's xp.float32 is a class
    for name in _DTYPE_NAMES:
        if text.endswith(name):
            return name
    raise ValueError(f"unsupported dtype {dtype!r}")


def as_dtype(dtype, xp):
    """``dtype`` (a name, NumPy dtype or another namespace's dtype) in namespace ``xp``."""
    return getattr(xp, _dtype_name(dtype))


def dtype_name(dtype) -> str:
    """A dtype's plain name, e.g. ``"float32"``, whatever its namespace."""
    return _dtype_name(dtype)


def is_floating(dtype) -> bool:
    return _dtype_name(dtype).startswith("float")


# ----------------------------------------------------------------------------
# random numbers: drawn on the host, then moved to the device
# ----------------------------------------------------------------------------
_global_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the global generator that layer initialisation draws from (like ``torch.manual_seed``)."""
    global _global_generator
    _global_generator = np.random.default_rng(seed)


def rng(seed=None) -> np.random.Generator:
    """A host random generator: ``seed`` may be an int, a Generator, or None for the global one."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return _global_generator
    return np.random.default_rng(seed)


def uniform(generator, shape, low=0.0, high=1.0, dtype="float32", device=DEFAULT_DEVICE):
    """Samples of U(low, high) with ``shape`` on ``device``."""
    sample = rng(generator).uniform(low, high, size=shape).astype(_dtype_name(dtype))
    return to_device(sample, device)


def normal(generator, shape, mean=0.0, std=1.0, dtype="float32", device=DEFAULT_DEVICE):
    """Samples of N(mean, std²) with ``shape`` on ``device``."""
    sample = rng(generator).normal(mean, std, size=shape).astype(_dtype_name(dtype))
    return to_device(sample, device)


def permutation(generator, n: int) -> np.ndarray:
    """A random permutation of ``range(n)`` as a host int64 array."""
    return rng(generator).permutation(n).astype(np.int64)


# ----------------------------------------------------------------------------
# scatter-add: the adjoint of integer-array indexing
# ----------------------------------------------------------------------------
def scatter_add(shape, index, values):
    """``out = zeros(shape); out[index] += values`` with repeated indices summed.

    ``index`` is an integer array selecting along axis 0 (``x[index]``);
    ``values`` has shape ``index.shape + shape[1:]``.  NumPy uses ``np.add.at``;
    other libraries multiply by a one-hot matrix,
    :math:`\\mathrm{out} = \\mathrm{onehot}(index)^\\top \\, values`.
    """
    xp = array_namespace(values)
    if isinstance(values, np.ndarray):
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, np.asarray(index), values)
        return out
    index = xp.reshape(index, (-1,))
    flat = xp.reshape(values, (index.shape[0], math.prod(shape[1:])))  # not -1: index may be empty
    onehot = xp.astype(index[:, None] == xp.arange(shape[0], device=values.device)[None, :], values.dtype)
    return xp.reshape(xp.matmul(xp.permute_dims(onehot, (1, 0)), flat), tuple(shape))


# ----------------------------------------------------------------------------
# sliding windows: what a convolution or pooling window sees
# ----------------------------------------------------------------------------
# Windows are taken from *channels-last* images (N, H, W, C): each window is
# then a (kh, kw, C) block whose C values are contiguous in memory, so the
# im2col matrix of a convolution is one plain reshape of the windows.


def sliding_windows(x, kernel_size, stride):
    """The (kh, kw) windows of the channels-last images ``x`` taken every ``stride`` pixels.

    x: (N, H, W, C) -> windows: (N, H_out, W_out, kh, kw, C), with
    ``windows[n, i, j, a, b, c] = x[n, i*sh + a, j*sw + b, c]`` and
    :math:`H_{out} = \\lfloor (H - k_h)/s_h \\rfloor + 1`.

    NumPy returns a read-only strided *view* (no copy); other libraries use
    :func:`sliding_windows_reference` (one copy).  Both give equal values.
    """
    if isinstance(x, np.ndarray):
        kh, kw = kernel_size
        sh, sw = stride
        n, h, w, c = x.shape
        h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
        s = x.strides
        return np.lib.stride_tricks.as_strided(
            x, (n, h_out, w_out, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1], s[2], s[3]), writeable=False
        )
    return sliding_windows_reference(x, kernel_size, stride)


def sliding_windows_reference(x, kernel_size, stride):
    """The textbook path of :func:`sliding_windows`: one strided slice per kernel offset, stacked."""
    xp = array_namespace(x)
    kh, kw = kernel_size
    sh, sw = stride
    n, h, w, c = x.shape
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    patches = [
        x[:, a : a + sh * (h_out - 1) + 1 : sh, b : b + sw * (w_out - 1) + 1 : sw, :]
        for a in range(kh)
        for b in range(kw)
    ]
    return xp.reshape(xp.stack(patches, axis=3), (n, h_out, w_out, kh, kw, c))


def fold_windows(windows, input_shape, stride):
    """The adjoint of :func:`sliding_windows` ("col2im"): add every window back into place.

    windows: (N, H_out, W_out, kh, kw, C) -> (N, H, W, C) with
    ``out[n, i*sh + a, j*sw + b, c] += windows[n, i, j, a, b, c]``.
    Overlapping windows add up, which is exactly what the gradient of a
    convolution or pooling with stride < kernel needs.  One strided slice per
    kernel offset (kh*kw additions), standard array code on every device.
    """
    xp = array_namespace(windows)
    n, h_out, w_out, kh, kw, c = windows.shape
    sh, sw = stride
    out = xp.zeros(tuple(input_shape), dtype=windows.dtype, device=windows.device)
    in_place = isinstance(out, np.ndarray)  # NumPy adds into the slice without a temporary
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + sh * (h_out - 1) + 1, sh)
            cols = slice(b, b + sw * (w_out - 1) + 1, sw)
            if in_place:
                target = out[:, rows, cols, :]
                np.add(target, windows[:, :, :, a, b, :], out=target)
            else:
                out[:, rows, cols, :] = out[:, rows, cols, :] + windows[:, :, :, a, b, :]
    return out


# A matrix product whose operands sit in the CPU's L2 cache runs several times
# faster than one streaming them from memory.  Convolutions on NumPy therefore
# work through the batch in blocks whose im2col matrix is about this size; a
# GPU wants the opposite (few, large operations), so other libraries get the
# whole batch at once.
CPU_BLOCK_BYTES = 4 * 2**20


def batch_blocks(x, bytes_per_item):
    """Slices of the batch axis (axis 0) of ``x`` to process one after another.

    ``bytes_per_item``: the workspace one item needs (for a convolution, its
    rows of the im2col matrix).  On NumPy each block needs about
    :data:`CPU_BLOCK_BYTES` (at least one item per block); on other libraries
    there is one block, the whole batch.  Results must not depend on the
    blocking: the tests compare blocked and unblocked convolutions.
    """
    n = x.shape[0]
    step = max(1, CPU_BLOCK_BYTES // max(1, bytes_per_item)) if isinstance(x, np.ndarray) else n
    return [slice(start, min(start + step, n)) for start in range(0, n, max(step, 1))]


def channel_sums(x, y=None):
    """Per-channel sums over every axis but axis 1: :math:`\\sum x` or, given y, :math:`\\sum x y`.

    x, y: (N, C) or (N, C, H, W) of one shape -> (C,).  The generic path is
    ``sum(x * y, axis=(0, 2, 3))``.  NumPy reduces a channels-last array
    (channels contiguous, minirn's layout) over its leading axes in short
    strided loops, so when both inputs are channels-last in memory the fast
    path hands the (N*H*W, C) matrix to BLAS instead: a product with a vector
    of ones, or a row-wise dot product.  Equal up to float rounding.
    """
    if isinstance(x, np.ndarray) and (y is None or isinstance(y, np.ndarray)):
        rows = [_channels_last_rows(a) for a in ((x,) if y is None else (x, y))]
        if all(r is not None for r in rows):
            if y is None:
                return np.ones(rows[0].shape[0], dtype=x.dtype) @ rows[0]
            return np.einsum("ij,ij->j", rows[0], rows[1])
    return channel_sums_reference(x, y)


def channel_sums_reference(x, y=None):
    """The textbook path of :func:`channel_sums`."""
    return array_namespace(x).sum(x if y is None else x * y, axis=_all_but_channels(x))


def channel_extrema(x):
    """Per-channel maximum and minimum over every axis but axis 1: x (N, C) or (N, C, H, W) -> two (C,).

    NumPy fast path, for channels-last memory: view the (M, C) rows as
    (M/k, k*C), so the first reduction runs along long rows, then reduce the
    remaining (k, C).  Exact: max and min do not round.
    """
    rows = _channels_last_rows(x) if isinstance(x, np.ndarray) else None
    if rows is not None:
        m, c = rows.shape
        k = math.gcd(m, 256)  # rows folded into one long row
        wide = rows.reshape(m // k, k * c)
        return (wide.max(axis=0).reshape(k, c).max(axis=0), wide.min(axis=0).reshape(k, c).min(axis=0))
    return channel_extrema_reference(x)


def channel_extrema_reference(x):
    """The textbook path of :func:`channel_extrema`."""
    xp = array_namespace(x)
    return xp.max(x, axis=_all_but_channels(x)), xp.min(x, axis=_all_but_channels(x))


def _all_but_channels(x):
    """The axes a per-channel statistic reduces: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _channels_last_rows(a):
    """a: (N, C) or (N, C, H, W) as an (N*H*W, C) view without copying, or None if its memory is not channels-last."""
    last = a if a.ndim == 2 else np.transpose(a, (0, 2, 3, 1))
    if not last.flags.c_contiguous:
        return None
    return last.reshape(-1, a.shape[1])


def versions() -> dict:
    """Versions of the array libraries minirn runs on (for results files)."""
    found = {"numpy": np.__version__, "array_api_compat": array_api_compat.__version__}
    for name in ("cupy", "array_api_strict"):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return found


def synchronize(array=None) -> None:
    """Wait for the device to finish queued work (a no-op on the CPU); for timing."""
    if array is not None and device_of(array) == "gpu":
        import cupy  # noqa: PLC0415  (only reached when CuPy arrays exist)

        cupy.cuda.get_current_stream().synchronize()

