"""The one package that knows which array library runs the math.

Every other module in minirn writes its numerics once, against the Python
Array API standard: it calls ``xp = array_namespace(x)`` and then only ``xp.``
functions.  This package maps minirn's three *devices* onto array libraries and
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

One idea per file:

* :mod:`~minirn.backend.devices`: the table above, :func:`namespace` and
  :func:`array_namespace`, :func:`device_of`, host transfer
  (:func:`to_host`, :func:`to_device`), dtypes by name, :func:`versions`,
  :func:`synchronize`;
* :mod:`~minirn.backend.random`: random numbers (:func:`manual_seed`,
  :func:`rng`, :func:`uniform`, :func:`normal`, :func:`permutation`), drawn on
  the host by a seeded NumPy ``Generator`` and copied to the device, so one
  seed gives the same numbers on every device.

Helpers the standard lacks, each with a NumPy fast path and a generic path:

* :mod:`~minirn.backend.scatter`: :func:`scatter_add` (the gradient of
  integer-array indexing);
* :mod:`~minirn.backend.windows`: :func:`sliding_windows` (the patches a
  convolution or pooling sees), :func:`im2col` (the same as a matrix, one
  window per row), :func:`fold_windows` (their adjoint, col2im), :func:`batch_blocks`
  (cache-sized blocks of a batch for the CPU), :func:`matmul_into` (a block's
  product written into its rows of the result), :func:`row_offsets_pay` (which
  convolutions take the row-offset path on the CPU), :func:`input_gradient_by_correlation_pays`
  (which stride-1 input gradients are a correlation rather than col2im);
* :mod:`~minirn.backend.channels`: :func:`channel_sums`,
  :func:`channel_extrema` (the per-channel statistics of the batch norms), :func:`channelwise`
  (an elementwise operation with one value per channel, on long rows).

And one process-wide setting, :func:`~minirn.backend.memory.retain_freed_memory`
(glibc keeps freed arrays for reuse), which only minirn's own commands call.

Callers import the package, never a file in it (``from minirn import backend``,
then ``backend.to_device(...)``): this file re-exports every name.
"""
from __future__ import annotations

from minirn.backend import channels, devices, memory, random, scatter, windows  # noqa: F401 - the files, for backend.windows.X
from minirn.backend.channels import _channels_last_rows as _channels_last_rows  # the tests check the fast path
from minirn.backend.channels import (
    channel_extrema,
    channel_extrema_reference,
    channel_sums,
    channel_sums_reference,
    channelwise,
    channelwise_reference,
)
from minirn.backend.devices import (
    DEFAULT_DEVICE,
    DEVICES,
    DeviceError,
    array_namespace,
    as_dtype,
    check_device,
    device_available,
    device_of,
    dtype_name,
    ensure_array,
    is_array,
    is_floating,
    namespace,
    synchronize,
    to_device,
    to_host,
    versions,
)
from minirn.backend.memory import retain_freed_memory
from minirn.backend.random import manual_seed, normal, permutation, rng, uniform
from minirn.backend.scatter import scatter_add
from minirn.backend.windows import (
    batch_blocks,
    fold_windows,
    im2col,
    im2col_reference,
    input_gradient_by_correlation_pays,
    matmul_into,
    row_offsets_pay,
    sliding_windows,
    sliding_windows_reference,
)

__all__ = [
    "DEFAULT_DEVICE", "DEVICES", "DeviceError", "array_namespace", "as_dtype", "batch_blocks",
    "channel_extrema", "channel_extrema_reference", "channel_sums", "channel_sums_reference",
    "channelwise", "channelwise_reference",
    "check_device", "device_available", "device_of", "dtype_name", "ensure_array", "fold_windows", "im2col", "im2col_reference",
    "input_gradient_by_correlation_pays", "is_array", "is_floating", "manual_seed", "matmul_into", "namespace", "normal", "permutation", "rng",
    "retain_freed_memory", "row_offsets_pay", "scatter_add", "sliding_windows", "sliding_windows_reference", "synchronize", "to_device",
    "to_host", "uniform", "versions",
]
