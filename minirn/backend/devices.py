"""Devices and namespaces: which array library computes on which minirn device.

This file holds the device table (:data:`DEVICES`), the lazy imports of
the optional libraries (CuPy, array-api-strict), the namespace (``xp``) of a
device or of an array, moving arrays between the host and a device, and dtypes
by name.  The Array API standard describes what a namespace can compute, not
which namespaces exist, how to pick one or how to reach the host, so this
bookkeeping is what the rest of minirn leaves to the backend.
"""
from __future__ import annotations

import importlib

import array_api_compat
import numpy as np

DEVICES = ("cpu", "gpu", "strict")
DEFAULT_DEVICE = "cpu"


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


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


# ----------------------------------------------------------------------------
# host transfer
# ----------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------
# dtypes by name, whatever their namespace
# ----------------------------------------------------------------------------
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
# library versions and device synchronisation (for results files and timing)
# ----------------------------------------------------------------------------
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
