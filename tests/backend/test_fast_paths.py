"""minirn.backend's NumPy fast paths are taken for NumPy arrays only (issue 23: CuPy hazards the CPU can show).

CuPy has no ``as_strided`` view to hand out safely, no ``np.add.at`` (``cupy.scatter_add`` is gone), and
NumPy's in-place ``np.add(..., out=view)`` and BLAS products would turn a CuPy array into a host copy or fail.
Each helper of the backend must therefore pick its fast path by ``isinstance(x, np.ndarray)`` and give any
other namespace the generic path.  array-api-strict stands in for CuPy here: the test replaces the ``np``
that each backend file sees by a guard that forwards every name except the entry points of its fast
paths, which raise.  Every public dispatch function then runs on strict arrays (the generic path must
run and equal NumPy's result) and on NumPy arrays (the guard must fire, else it guards nothing: a
rewritten fast path that the guard no longer sees fails here first).
"""
from __future__ import annotations

import numpy as np
import pytest

from minirn import backend
from minirn.backend import channels, scatter, windows
from tests.conftest import to_numpy

strict = pytest.importorskip("array_api_strict")


class FastPathTaken(AssertionError):
    pass


class NumpyGuard:
    """NumPy, except that the names of a file's fast paths raise :class:`FastPathTaken`."""

    def __init__(self, module, blocked):
        self.module, self.blocked = module, blocked

    def __getattr__(self, name):
        if name in self.blocked:
            raise FastPathTaken(f"{self.module}: np.{name} (a NumPy-only fast path) was reached")
        return getattr(np, name)


#: The fast paths' NumPy entry points, per backend file (what each file's generic path never touches).
FAST_PATHS = {
    windows: {"lib", "add"},                    # as_strided view (np.lib.stride_tricks); in-place np.add into a view
    channels: {"einsum", "ones", "transpose", "tile", "full"},  # BLAS channel sums; the channels-last (M, C) view; long rows
    scatter: {"add", "zeros"},                  # np.add.at into np.zeros
}


@pytest.fixture
def guarded(monkeypatch):
    for module, blocked in FAST_PATHS.items():
        monkeypatch.setattr(module, "np", NumpyGuard(module.__name__, blocked))


def channels_last(rng, shape):
    """(N, C, H, W) values whose memory is channels-last, like minirn's activations (the fast paths' case)."""
    n, c, h, w = shape
    return np.transpose(rng.standard_normal((n, h, w, c)), (0, 3, 1, 2))


def dispatch_cases(rng):
    """(name, function, NumPy arguments): every public helper of the backend that has a NumPy fast path."""
    x = channels_last(rng, (2, 3, 4, 5))
    y = channels_last(rng, (2, 3, 4, 5))
    images = rng.standard_normal((2, 5, 6, 3))  # channels-last (N, H, W, C)
    index = np.array([2, 0, 2, 3], dtype=np.int64)
    return [
        ("sliding_windows", lambda a: backend.sliding_windows(a, (3, 2), (1, 2)), (images,)),
        ("fold_windows", lambda a: backend.fold_windows(a, (2, 5, 6, 3), (1, 2)),
         (rng.standard_normal((2, 3, 3, 3, 2, 3)),)),
        ("scatter_add", lambda i, v: backend.scatter_add((4, 3), i, v), (index, rng.standard_normal((4, 3)))),
        ("channel_sums", backend.channel_sums, (x,)),
        ("channel_sums of a product", backend.channel_sums, (x, y)),
        ("channel_extrema", backend.channel_extrema, (x,)),
        ("channelwise", lambda a, v: backend.channelwise(backend.array_namespace(a).subtract, a, v),
         (x, rng.standard_normal((1, 3, 1, 1)))),
        ("channelwise with a number", lambda a: backend.channelwise(backend.array_namespace(a).maximum, a, 0.0), (x,)),
    ]


CASES = [name for name, _, _ in dispatch_cases(np.random.default_rng(0))]


def _as_strict(a):
    return backend.to_device(np.ascontiguousarray(a), "strict")


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASES)
def test_other_namespaces_take_the_generic_path(guarded, case):
    name, function, numpy_args = dispatch_cases(np.random.default_rng(0))[case]
    with pytest.raises(FastPathTaken):   # the guard sees NumPy's fast path ...
        function(*numpy_args)
    got = function(*[_as_strict(a) for a in numpy_args])   # ... and strict arrays never reach it
    results = got if isinstance(got, tuple) else (got,)
    assert all(backend.device_of(r) == "strict" for r in results), name


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASES)
def test_generic_path_equals_the_fast_path(case):
    name, function, numpy_args = dispatch_cases(np.random.default_rng(0))[case]
    fast = function(*numpy_args)
    generic = function(*[_as_strict(a) for a in numpy_args])
    for f, g in zip(fast if isinstance(fast, tuple) else (fast,), generic if isinstance(generic, tuple) else (generic,)):
        np.testing.assert_allclose(to_numpy(g), np.asarray(f), rtol=1e-12, atol=1e-12, err_msg=name)


def test_other_namespaces_get_the_whole_batch_in_one_block():
    """batch_blocks sizes blocks for the CPU's cache; a GPU wants one large operation."""
    x = _as_strict(np.zeros((64, 1)))
    assert backend.batch_blocks(x, bytes_per_item=2**30) == [slice(0, 64)]
    assert len(backend.batch_blocks(np.zeros((64, 1)), bytes_per_item=2**20)) > 1


@pytest.mark.parametrize("norm", ["bn", "rn"])
def test_a_training_step_on_strict_arrays_reaches_no_fast_path(guarded, norm):
    """The layers' forward and backward (convolution, pooling, both norms) go through the guarded helpers."""
    import minirn
    from minirn import models
    from minirn.nn import functional as F

    rng = np.random.default_rng(0)
    x, y = rng.random((4, 1, 12, 12), dtype=np.float32), rng.integers(0, 10, 4)
    minirn.manual_seed(0)
    model = models.small_cnn(norm=norm, in_channels=1)
    with pytest.raises(FastPathTaken):
        F.cross_entropy(model(minirn.tensor(x)), y).backward()
    model = model.to("strict")
    loss = F.cross_entropy(model(minirn.tensor(x, device="strict")), backend.to_device(y, "strict"))
    loss.backward()
    assert all(backend.device_of(p.grad) == "strict" for p in model.parameters())
