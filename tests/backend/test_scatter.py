"""minirn.backend.scatter: scatter-add, the adjoint of integer-array indexing."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import backend
from tests.conftest import to_numpy


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
