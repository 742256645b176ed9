"""minirn.backend.channels: the per-channel statistics of the batch norms, fast paths against references."""
from __future__ import annotations

import numpy as np
import pytest

from minirn import backend


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
