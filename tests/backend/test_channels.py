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


OPS = ["add", "subtract", "multiply", "maximum", "equal"]


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 7), (2, 16, 8, 8), (3, 2, 1, 1), (512, 16, 1, 1)])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channelwise_equals_broadcasting_bit_for_bit(rng, shape, layout, dtype):
    """op(x, v) on long rows is the broadcast op(x, v) exactly, for every op, in either layout, and keeps x's layout."""
    x = _in_layout(rng, shape, layout).astype(dtype, copy=False)
    c = shape[1]
    v = rng.standard_normal(c).astype(dtype)
    x[0, 0] = v[0]  # a tie, so that equal and maximum meet equal values
    if len(shape) == 4:
        x[-1, -1, 0, 0] = -0.0  # max(-0, 0) must come out as NumPy's broadcast makes it
    for name in OPS:
        op = getattr(np, name)
        for value in (v, v.reshape((1, c) + (1,) * (len(shape) - 2)), 0.0, 2):
            got, want = backend.channelwise(op, x, value), backend.channelwise_reference(op, x, value)
            assert got.shape == want.shape and got.dtype == want.dtype, (name, value)
            bits = [np.ascontiguousarray(a).view(np.uint8) for a in (got, want)]  # -0.0 and 0.0 differ here
            np.testing.assert_array_equal(*bits, err_msg=name)
            if backend._channels_last_rows(x) is not None:
                assert backend._channels_last_rows(got) is not None  # the result is channels-last like x


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 7), (8, 16, 4, 4)])
def test_channelwise_in_place_writes_into_out(rng, shape):
    """With out=x on channels-last memory the fast path runs in place: the result *is* x's memory."""
    x = _in_layout(rng, shape, "channels_last")
    v = rng.standard_normal(shape[1])
    want = backend.channelwise_reference(np.subtract, x, v)
    got = backend.channelwise(np.subtract, x, v, out=x)
    assert np.shares_memory(got, x)
    np.testing.assert_array_equal(x, want)


def test_channelwise_with_out_in_another_layout_still_returns_the_result(rng):
    """An out whose memory is not channels-last is not written; the returned array is still right."""
    x = _in_layout(rng, (2, 3, 4, 5), "channels_last")
    out = np.zeros((2, 3, 4, 5))  # channels-first memory
    v = rng.standard_normal(3)
    got = backend.channelwise(np.multiply, x, v, out=out)
    np.testing.assert_array_equal(got, x * v.reshape(1, 3, 1, 1))


def test_channelwise_with_a_number_promotes_like_numpy():
    """A Python number against integers gives what NumPy gives (floats for 0.0), not x's dtype."""
    x = np.arange(24).reshape(2, 3, 2, 2)
    for value in (0.0, 2):
        got = backend.channelwise(np.maximum, x, value)
        want = np.maximum(x, value)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
