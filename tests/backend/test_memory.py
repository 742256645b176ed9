"""retain_freed_memory: freed arrays stay in the process (glibc only), checked in fresh subprocesses."""
from __future__ import annotations

import subprocess
import sys

import pytest

# Allocate and touch a 16 MiB array, free it, and print how much of it the process still holds.
PROGRAM = """
import numpy as np
from minirn import backend
if {retain}:
    assert backend.retain_freed_memory() is True
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
before = rss()
a = np.ones(4 * 2**20, dtype=np.float32)  # 16 MiB, above glibc's default mmap threshold
del a
print((rss() - before) / 2**20)
"""


def _retained_mib(retain):
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(retain=retain)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux)")
def test_freed_arrays_stay_in_the_process_only_when_asked():
    from minirn import backend

    if not backend.retain_freed_memory():
        pytest.skip("the C library is not glibc")
    assert _retained_mib(retain=False) < 4  # the default: a 16 MiB array goes back to the OS when freed
    assert _retained_mib(retain=True) > 12  # retained: the freed array's pages stay, ready for the next one
