"""Sliding windows: the patches a convolution or pooling sees, their adjoint, and batch blocking.

A convolution is a matrix product once every (kh, kw) window of the input is
one row of a matrix ("im2col"); its gradient adds every window back into place
("col2im").  The Array API standard has neither a window view (NumPy's
``as_strided``) nor a ``col2im``, so :func:`sliding_windows` and
:func:`fold_windows` build them from strided slices, with a NumPy fast path
each.  :func:`batch_blocks` decides how much of a batch one im2col matrix
covers, which the standard cannot know: it depends on the CPU's cache.

Windows are taken from *channels-last* images (N, H, W, C): each window is
then a (kh, kw, C) block whose C values are contiguous in memory, so the
im2col matrix of a convolution is one plain reshape of the windows.
"""
from __future__ import annotations

import numpy as np

from minirn.backend.devices import array_namespace


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


def im2col(x, kernel_size, stride):
    """The im2col matrix of the channels-last images ``x``: one row per window, (N*H_out*W_out, kh*kw*C).

    Row (n, i, j) holds the window ``x[n, i*sh : i*sh + kh, j*sw : j*sw + kw, :]`` in (kh, kw, C) order,
    so it is :func:`sliding_windows` reshaped into a matrix, and that is the reference path
    (:func:`im2col_reference`).  The matrix is kh*kw times the size of x, and building it is a copy.
    NumPy's fast path makes the copy in longer pieces: within a window row a, the kw*C values
    ``x[n, i*sh + a, j*sw : j*sw + kw, :]`` are contiguous in x as well as in the matrix, so each is
    copied as one (kw*C*4)-byte item (a ``void`` dtype) instead of element by element.  The values
    are the same, bit for bit.
    """
    if not (isinstance(x, np.ndarray) and x.flags.c_contiguous):
        return im2col_reference(x, kernel_size, stride)
    kh, kw = kernel_size
    sh, sw = stride
    n, h, w, c = x.shape
    h_out, w_out = (h - kh) // sh + 1, (w - kw) // sw + 1
    s = x.strides
    row = np.dtype((np.void, kw * c * x.itemsize))  # one window row: kw pixels of C values
    rows = np.ndarray((n, h_out, w_out, kh), dtype=row, buffer=x, strides=(s[0], s[1] * sh, s[2] * sw, s[1]))
    return rows.copy().view(x.dtype).reshape(n * h_out * w_out, kh * kw * c)


def im2col_reference(x, kernel_size, stride):
    """The textbook path of :func:`im2col`: the sliding windows reshaped into a matrix."""
    windows = sliding_windows(x, kernel_size, stride)  # (N, H_out, W_out, kh, kw, C)
    return array_namespace(x).reshape(windows, (-1, kernel_size[0] * kernel_size[1] * x.shape[-1]))


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


def matmul_into(out, rows, a, b):
    """``out[rows, :] = a @ b``: a block's matrix product written into its rows of a 2-D result.

    NumPy's fast path hands ``out[rows]`` (a contiguous view) to the product as its output, so the
    block's product is not made and then copied; the values are the same, bit for bit (one BLAS call
    either way).  The generic path is the assignment.
    """
    if isinstance(out, np.ndarray) and isinstance(a, np.ndarray) and out.flags.c_contiguous:
        np.matmul(a, b, out=out[rows])
    else:
        out[rows, ...] = array_namespace(a, b).matmul(a, b)


#: The row-offset correlation (``minirn.nn.functional.conv._correlate_by_row_offsets``) copies kw
#: instead of kh*kw times the input but multiplies thinner matrices.  On the 2-core CPU it pays where
#: im2col's copy costs as much as its product: stride-1 convolutions with at most this many channels in
#: and out (ResNet-20's training step 3.5 % faster, its attack step 5.5 %, in paired runs; level at 32
#: channels; the small CNN's 1 -> 32 convolution slower; docs/BENCHMARKS.md).
ROW_OFFSET_MAX_CHANNELS = 16

#: The weight gradient by row offsets (``conv._weight_gradient_by_row_offsets``, products X_row^T G that
#: OpenBLAS runs on both cores) pays further: up to this many channels in and out (ResNet-20's 32-channel
#: stage: training step 2.4 % faster in paired runs), provided the input has at least
#: :data:`ROW_OFFSET_WEIGHT_GRADIENT_MIN_INPUT_CHANNELS` (kw*C values per row of each product; the small
#: CNN's 1 -> 32 convolution is faster with im2col).  At 64 channels im2col is faster again.
ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS = 32
ROW_OFFSET_WEIGHT_GRADIENT_MIN_INPUT_CHANNELS = 16


def input_gradient_by_correlation_pays(g, in_channels):
    """Whether the input gradient of a stride-1 convolution, from the channels-last output gradient ``g``
    (N, H', W', O) back to ``in_channels`` channels, should be computed as a correlation of G with the
    flipped kernel (``conv.Conv2d._input_gradient_by_correlation``) instead of by folding G W_mat back
    onto the input (col2im, ``_input_gradient_by_folding``): unless the input has fewer channels than
    the output.  Then the correlation copies kh·kw·O values of G per pixel to compute C of them (batch
    128: MNIST's 1 -> 32 first convolution 12.3 ms against 1.1 ms folding, CIFAR's 3 -> 16 5.7 against
    4.0 ms; the small CNN's attack step 0.90 times its time in paired runs).  With as many channels in
    as out the correlation is faster or level (16 -> 16 at 32x32: 6.6 against 9.0 ms; in ResNet-20's
    training step folding at 32 and 64 channels too was 5 % slower).  Both compute the same values up
    to float rounding (a test compares them)."""
    return in_channels >= g.shape[-1]


def row_offsets_pay(x, out_channels, weight_gradient=False):
    """Whether a stride-1 convolution of the channels-last images ``x`` into ``out_channels`` channels
    should correlate by row offsets instead of with im2col: on NumPy, with at most
    :data:`ROW_OFFSET_MAX_CHANNELS` channels in and out.  For its weight gradient
    (``weight_gradient=True``) also with 16 to :data:`ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS` channels.
    Elsewhere (a GPU) never: one large im2col product is what a GPU wants.  Both paths compute the same
    values up to float rounding (a test compares them)."""
    if not isinstance(x, np.ndarray):
        return False
    channels = max(x.shape[-1], out_channels)
    if channels <= ROW_OFFSET_MAX_CHANNELS:
        return True
    return (weight_gradient and channels <= ROW_OFFSET_WEIGHT_GRADIENT_MAX_CHANNELS
            and x.shape[-1] >= ROW_OFFSET_WEIGHT_GRADIENT_MIN_INPUT_CHANNELS)
