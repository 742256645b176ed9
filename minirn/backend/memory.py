"""Keeping freed memory: the one process-wide setting minirn's own commands change.

A training or attack step allocates and frees the same large arrays (8 MB activations, 4 MB im2col
blocks) again and again.  glibc's allocator hands arrays above its *mmap threshold* straight back to
the operating system when they are freed, and trims the heap's free top above its *trim threshold*,
so every new activation costs fresh pages: a page fault and zeroing per 4 KB.  On the 2-core machine
this was a fifth of the ResNet-20 step (docs/BENCHMARKS.md).  :func:`retain_freed_memory` raises both
thresholds, so freed arrays stay in the process and are reused.

It is a process-wide setting, so minirn never changes it on import: only its own processes (the
``python -m minirn`` commands, their worker processes and ``minirn bench``) call it.  In a notebook or
your own script, call it yourself if you want the speed; the cost is that the process keeps the memory
of its largest step until it ends (its peak resident memory is about the same).  It does nothing where
the C library is not glibc (macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc accepts mmap thresholds up to 32 MiB on 64-bit machines: larger arrays still go straight to the OS.
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: the free top of the heap is returned to the OS only above this size.
TRIM_THRESHOLD_BYTES = 2**30


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed arrays up to 32 MiB for reuse; True if it agreed (False elsewhere).

    Idempotent; affects the whole process.  See the module docstring for why and when.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
