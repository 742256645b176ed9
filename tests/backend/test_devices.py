"""minirn.backend.devices: devices, namespaces, host transfer and dtypes by name."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from minirn import backend


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
