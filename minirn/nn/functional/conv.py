"""Convolution, linear layers and pooling as single graph nodes.

A convolution is a matrix product in disguise ("im2col"): gather every
(kh, kw, C) patch of the padded input as one row of a matrix, multiply by the
(kh*kw*C, C_out) weight matrix, and reshape.  (With few channels a faster
path copies only (1, kw) patches and sums kh products on row-shifted views:
:func:`_correlate_by_row_offsets`.)  Its gradients are the two
matrix products of :class:`~minirn.nn.functional.arithmetic.MatMul`, followed
for the input by "col2im" (:func:`minirn.backend.fold_windows`), which adds
each patch's gradient back where the patch came from -- or, for stride 1, one
more correlation, of the output gradient with the flipped kernel.

Layout.  The public shapes are PyTorch's (N, C, H, W), but windows are cut
from a channels-last *view* (N, H, W, C) (``permute_dims`` moves no data), so
that each patch's values are contiguous.  The output is returned as an
(N, C, H, W) view of channels-last memory; elementwise ops keep that layout,
and the next convolution's channels-last view of it is free.
"""
from __future__ import annotations

from minirn import backend
from minirn.autograd.tensor import Function, Tensor


def _pair(value, name, minimum=0):
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(pair) != 2 or any(not isinstance(v, int) or v < minimum for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return pair


def _pad_hw(x, padding, value=0.0):
    """Pad the two spatial axes of channels-last images (N, H, W, C) with ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = backend.array_namespace(x)
    n, h, w, c = x.shape
    out = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype, device=x.device)
    out[:, :ph, :, :] = value  # only the border is filled: one pass over memory, not two
    out[:, ph + h :, :, :] = value
    out[:, ph : ph + h, :pw, :] = value
    out[:, ph : ph + h, pw + w :, :] = value
    out[:, ph : ph + h, pw : pw + w, :] = x
    return out


def _channels_last(x):
    """(N, C, H, W) -> (N, H, W, C), a view."""
    return backend.array_namespace(x).permute_dims(x, (0, 2, 3, 1))


def _channels_first(x):
    """(N, H, W, C) -> (N, C, H, W), a view."""
    return backend.array_namespace(x).permute_dims(x, (0, 3, 1, 2))


def _output_size(name, size, kernel, stride, padding):
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(
            f"{name}: kernel {kernel} is larger than the padded input ({size} + 2*{padding})"
        )
    return out


class Conv2d(Function):
    """2-D cross-correlation, like ``torch.nn.functional.conv2d``.

    x: (N, C, H, W), weight W: (O, C, kh, kw), bias b: (O,) -> y: (N, O, H', W') with

    .. math:: y_{n,o,i,j} = b_o + \\sum_{c,a,b'} W_{o,c,a,b'}\\; x^{pad}_{n,c,\\,i s + a,\\,j s + b'}

    As matrices: :math:`X_{col}` (N·H'·W', kh·kw·C) holds the patches (channels last),
    :math:`Y = X_{col} W_{mat}^\\top + b`.  With G the upstream gradient as a
    (N·H'·W', O) matrix:

    * :math:`\\partial L/\\partial W_{mat} = G^\\top X_{col}`
    * :math:`\\partial L/\\partial b = \\sum_{rows} G`
    * :math:`\\partial L/\\partial X_{col} = G W_{mat}`, folded back onto x (col2im,
      :meth:`_input_gradient_by_folding`).  For stride 1 the same gradient is also a correlation of G
      with the flipped, transposed kernel, which the forward pass's code computes without col2im
      (:meth:`_input_gradient_by_correlation`).  Which is faster depends on the channels
      (:func:`minirn.backend.input_gradient_by_correlation_pays`): the correlation unless the input
      has fewer channels than the output (a network's first convolution).  A test checks that the two
      agree.

    On NumPy the rows of :math:`X_{col}` are built and multiplied a block of
    images at a time (:func:`minirn.backend.batch_blocks`), so that each block
    stays in the CPU cache; the backward pass rebuilds each block's
    :math:`X_{col}` instead of keeping the whole matrix (kh·kw times the
    size of the input) alive between the two passes.

    Which path computes :math:`X_{col} W_{mat}^\top` (and :math:`G^\top X_{col}`):

    * **im2col** (:func:`_correlate`): one matrix product per block on :math:`X_{col}`; every stride,
      every device.  :func:`minirn.backend.im2col` copies each window row as one item on NumPy.
    * **row offsets** (:func:`_correlate_by_row_offsets`, :func:`_weight_gradient_by_row_offsets`):
      stride 1 with at most 16 channels in and out on NumPy (the weight gradient also with 16 to 32;
      :func:`minirn.backend.row_offsets_pay`), where copying :math:`X_{col}` costs as much as
      multiplying it: kh products on shifted views of a kw-times copy instead of one product on a
      kh·kw-times copy.  Same values up to float rounding.
    """

    def __init__(self, stride=1, padding=0):
        self.stride, self.padding = _pair(stride, "stride", 1), _pair(padding, "padding")

    def forward(self, x, weight, bias=None):
        xp = backend.array_namespace(x, weight)
        if x.ndim != 4 or weight.ndim != 4:
            raise ValueError(
                f"conv2d: expected input (N, C, H, W) and weight (O, C, kh, kw), got shapes "
                f"{tuple(x.shape)} and {tuple(weight.shape)}"
            )
        n, c, h, w = x.shape
        o, c_w, kh, kw = weight.shape
        if c != c_w:
            raise ValueError(
                f"conv2d: input has {c} channels but the weight of shape {tuple(weight.shape)} expects {c_w}"
            )
        for size, k, s, p in zip((h, w), (kh, kw), self.stride, self.padding):
            _output_size("conv2d", size, k, s, p)  # a clear error if the kernel does not fit
        self.x_shape, self.weight = tuple(x.shape), weight
        self.padded = _pad_hw(_channels_last(x), self.padding)  # (N, H+2p, W+2p, C)
        w_mat = xp.reshape(xp.permute_dims(weight, (0, 2, 3, 1)), (o, kh * kw * c))  # W_mat: (O, kh*kw*C)
        out = _correlate(self.padded, w_mat, (kh, kw), self.stride)  # Y = X_col W_mat^T, (N, H', W', O)
        if bias is not None:
            out = out + bias
        return _channels_first(out)

    def backward(self, g):
        xp = backend.array_namespace(g)
        o, c, kh, kw = self.weight.shape
        wants = tuple(self.needs_input_grad) + (False,) * (3 - len(self.needs_input_grad))
        g_last = _channels_last(g)  # G: (N, H', W', O)
        gx = gw = gb = None
        if wants[0]:
            if _transposes_as_correlation(self.stride, self.padding, (kh, kw)) and \
                    backend.input_gradient_by_correlation_pays(g_last, c):
                gx = _channels_first(self._input_gradient_by_correlation(g_last))
            else:
                gx = _channels_first(_crop(self._input_gradient_by_folding(g_last), self.x_shape, self.padding))
        if wants[1]:
            if _by_row_offsets(self.padded, (kh, kw), self.stride, o, weight_gradient=True):
                g_w_mat = _weight_gradient_by_row_offsets(self.padded, g_last, (kh, kw))
            else:
                g_w_mat = xp.zeros((o, kh * kw * c), dtype=g.dtype, device=g.device)
                for block in _blocks(self.padded, (kh, kw), self.stride):  # X_col is rebuilt block by block
                    g_mat = xp.reshape(g_last[block, ...], (-1, o))  # G's rows of these images
                    x_col = _cols(self.padded[block, ...], (kh, kw), self.stride)  # and their X_col rows
                    g_w_mat = g_w_mat + xp.matmul(xp.matrix_transpose(g_mat), x_col)  # G^T X_col
            gw = xp.permute_dims(xp.reshape(g_w_mat, (o, kh, kw, c)), (0, 3, 1, 2))
        if wants[2]:
            gb = xp.sum(g_last, axis=(0, 1, 2))  # dL/db = column sums of G
        return gx, gw, gb

    def _input_gradient_by_correlation(self, g_last):
        r"""dL/dx for stride 1: the *full* correlation of G with the flipped, transposed kernel.

        From :math:`y_{i,j} = \sum_{a,b} W_{a,b}\, x^{pad}_{i+a,\,j+b}` (channels as matrix products),
        each input pixel (u, v) of the padded grid receives :math:`\sum_{a,b} G_{u-a,\,v-b}\, W_{a,b}`.
        Substituting :math:`a' = k_h-1-a`, :math:`b' = k_w-1-b` and padding G by :math:`k-1` turns this into
        a plain correlation, :math:`\partial L/\partial x^{pad}_{u,v} = \sum_{a',b'} G^{pad}_{u+a',\,v+b'}\,
        W^\top_{k_h-1-a',\,k_w-1-b'}`.  Padding G by only :math:`k-1-p` instead computes just the pixels
        of the unpadded x, so no crop is needed.  It is the forward pass's code (:func:`_correlate`) on
        G, with no col2im: one matrix product per block instead of kh*kw thin ones and kh*kw strided additions.
        """
        xp = backend.array_namespace(g_last)
        o, c, kh, kw = self.weight.shape
        ph, pw = self.padding
        g_padded = _pad_hw(g_last, (kh - 1 - ph, kw - 1 - pw))  # (N, H'+2(k-1-p), W'+..., O)
        flipped = xp.flip(self.weight, axis=(2, 3))  # W[o, c, kh-1-a, kw-1-b]
        w_t_mat = xp.reshape(xp.permute_dims(flipped, (1, 2, 3, 0)), (c, kh * kw * o))  # (C, kh*kw*O)
        return _correlate(g_padded, w_t_mat, (kh, kw), (1, 1))  # (N, H, W, C)

    def _input_gradient_by_folding(self, g_last):
        """dL/dx for any stride, as the padded (N, H+2p, W+2p, C) gradient: dL/dX_col = G W_mat, folded
        back onto the input (col2im).  Computed offset by offset, G W_ab: (kh*kw, rows, C), so that col2im
        adds one contiguous (images, H', W', C) slab per kernel offset."""
        xp = backend.array_namespace(g_last)
        n, h_out, w_out, o = g_last.shape
        _, c, kh, kw = self.weight.shape
        w_offsets = xp.reshape(xp.permute_dims(self.weight, (2, 3, 0, 1)), (kh * kw, o, c))  # W_ab: (O, C) each
        g_padded = xp.zeros(self.padded.shape, dtype=g_last.dtype, device=g_last.device)
        for block in _blocks(self.padded, (kh, kw), self.stride):
            g_mat = xp.reshape(g_last[block, ...], (-1, o))  # G's rows of these images
            g_cols = xp.matmul(g_mat[None, ...], w_offsets)
            g_windows = xp.permute_dims(xp.reshape(g_cols, (kh, kw, -1, h_out, w_out, c)), (2, 3, 4, 0, 1, 5))
            shape = (g_windows.shape[0], *self.padded.shape[1:])
            g_padded[block, ...] = backend.fold_windows(g_windows, shape, self.stride)  # col2im
        return g_padded


def _transposes_as_correlation(stride, padding, kernel):
    """Whether dL/dx can be computed as a correlation of G (:meth:`Conv2d._input_gradient_by_correlation`):
    stride 1 and padding at most k - 1 (a larger padding would need G cropped, not padded)."""
    return stride == (1, 1) and all(p <= k - 1 for p, k in zip(padding, kernel))


def _blocks(padded, kernel, stride):
    """The blocks of images whose X_col rows are built and multiplied together (cache-sized on the CPU)."""
    n, h_pad, w_pad, c = padded.shape
    h_out = (h_pad - kernel[0]) // stride[0] + 1
    w_out = (w_pad - kernel[1]) // stride[1] + 1
    return backend.batch_blocks(padded, h_out * w_out * kernel[0] * kernel[1] * c * 4)  # float32 rows of X_col


def _cols(padded, kernel, stride):
    """X_col of the channels-last images ``padded``: (images * H' * W', kh * kw * C), one row per patch."""
    return backend.im2col(padded, kernel, stride)


def _correlate(padded, w_mat, kernel, stride):
    """The correlation at the heart of a convolution, on channels-last images: by row offsets where
    that is faster (:func:`_by_row_offsets`), else with im2col.

    padded: (N, H, W, C) (already padded), w_mat: (O, kh*kw*C) -> y: (N, H', W', O) with
    :math:`Y = X_{col} W_{mat}^\top`, one row of :math:`X_{col}` per output pixel.  On NumPy the rows
    are built and multiplied a block of images at a time (:func:`minirn.backend.batch_blocks`), so that
    each block's :math:`X_{col}` stays in the CPU cache; elsewhere the whole batch is one block.
    """
    if _by_row_offsets(padded, kernel, stride, w_mat.shape[0]):
        return _correlate_by_row_offsets(padded, w_mat, kernel)
    xp = backend.array_namespace(padded, w_mat)
    n, h_pad, w_pad, _ = padded.shape
    h_out = (h_pad - kernel[0]) // stride[0] + 1
    w_out = (w_pad - kernel[1]) // stride[1] + 1
    o = w_mat.shape[0]
    pixels = h_out * w_out  # rows of Y per image
    out = xp.empty((n * pixels, o), dtype=padded.dtype, device=padded.device)
    for block in _blocks(padded, kernel, stride):
        rows = slice(block.start * pixels, block.stop * pixels)
        backend.matmul_into(out, rows, _cols(padded[block, ...], kernel, stride), xp.matrix_transpose(w_mat))  # Y = X_col W_mat^T
    return xp.reshape(out, (n, h_out, w_out, o))


def _by_row_offsets(padded, kernel, stride, out_channels, weight_gradient=False):
    """Whether to correlate by row offsets (:func:`_correlate_by_row_offsets`, or for ``weight_gradient``
    :func:`_weight_gradient_by_row_offsets`) instead of with im2col: stride 1, a kernel taller than one
    row, and where it pays (:func:`minirn.backend.row_offsets_pay`)."""
    return stride == (1, 1) and kernel[0] > 1 and backend.row_offsets_pay(padded, out_channels, weight_gradient)


def _correlate_by_row_offsets(padded, w_mat, kernel):
    r"""The stride-1 correlation with kh matrix products on row offsets instead of one on im2col.

    im2col copies every (kh, kw, C) window: kh*kw times the input.  Copy instead only the (1, kw)
    windows of *every* padded row, :math:`X_{row}` (N·H_pad·W', kw·C), kw times the input, and split
    :math:`W_{mat}` by kernel row a into :math:`W_a` (O, kw·C).  Row r = (n, i, j) of :math:`X_{row}` is
    padded row i's window at column j, so window row a of output pixel (n, i, j) is row r + a·W' and

    .. math:: Y_r = \sum_{a} X_{row}[r + a W'] \; W_a^\top,

    each term one matrix product on a *view* of :math:`X_{row}` shifted by a·W' rows.  Rows with
    i >= H' (the last kh-1 padded rows of each image, whose windows run into the next image) are
    computed and dropped.  Equal to the im2col path up to float rounding (the kh partial sums are
    added in another order); a test compares the two.
    """
    xp = backend.array_namespace(padded, w_mat)
    n, h_pad, w_pad, c = padded.shape
    kh, kw = kernel
    h_out, w_out = h_pad - kh + 1, w_pad - kw + 1
    o = w_mat.shape[0]
    w_rows = xp.reshape(w_mat, (o, kh, kw * c))  # W_a = w_rows[:, a, :]
    out = xp.empty((n, h_out, w_out, o), dtype=padded.dtype, device=padded.device)
    for block in _blocks(padded, (1, kw), (1, 1)):  # blocks sized by X_row, the (1, kw) windows
        x_row = backend.im2col(padded[block, ...], (1, kw), (1, 1))  # X_row: (m * H_pad * W', kw * C)
        rows = x_row.shape[0] - (kh - 1) * w_out  # the rows whose kh window rows all lie in the block
        y = xp.matmul(x_row[:rows, ...], xp.matrix_transpose(w_rows[:, 0, :]))  # a = 0
        for a in range(1, kh):
            y += xp.matmul(x_row[a * w_out : a * w_out + rows, ...], xp.matrix_transpose(w_rows[:, a, :]))  # + X_row[r + a W'] W_a^T
        _drop_rows_past_the_image(y, out, block, h_pad)
    return out


def _weight_gradient_by_row_offsets(padded, g_last, kernel):
    r""":math:`\partial L/\partial W_{mat}` by row offsets, the adjoint of :func:`_correlate_by_row_offsets`:
    :math:`\partial L/\partial W_a = \sum_r G_r^\top X_{row}[r + a W']`, with G laid out on the padded-row
    grid (zeros on the rows the forward pass dropped), one matrix product per kernel row a.
    Returns (O, kh * kw * C), like the im2col path's :math:`G^\top X_{col}`.

    Each product is computed transposed, :math:`(\partial L/\partial W_a)^\top = X_{row}[r + a W']^\top G`:
    the same sum, but OpenBLAS runs the (kw·C, rows) @ (rows, O) shape on both cores and the
    (O, rows) @ (rows, kw·C) shape on one (16 channels: 0.17 vs 0.30 ms per product; docs/BENCHMARKS.md)."""
    xp = backend.array_namespace(padded, g_last)
    n, h_pad, w_pad, c = padded.shape
    kh, kw = kernel
    w_out = w_pad - kw + 1
    o = g_last.shape[-1]
    g_w_t = [xp.zeros((kw * c, o), dtype=g_last.dtype, device=g_last.device) for _ in range(kh)]  # (dL/dW_a)^T
    for block in _blocks(padded, (1, kw), (1, 1)):  # blocks sized by X_row, the (1, kw) windows
        x_row = backend.im2col(padded[block, ...], (1, kw), (1, 1))  # X_row: (m * H_pad * W', kw * C)
        rows = x_row.shape[0] - (kh - 1) * w_out
        g_grid = xp.zeros((rows, o), dtype=g_last.dtype, device=g_last.device)  # G on the padded-row grid
        _place_rows_on_the_grid(g_last[block, ...], g_grid, h_pad)
        for a in range(kh):
            g_w_t[a] += xp.matmul(xp.matrix_transpose(x_row[a * w_out : a * w_out + rows, ...]), g_grid)  # X_row[r + a W']^T G
    g_w = xp.stack([xp.matrix_transpose(t) for t in g_w_t], axis=1)  # (O, kh, kw * C)
    return xp.reshape(g_w, (o, kh * kw * c))


def _drop_rows_past_the_image(y, out, block, h_pad):
    """Copy the output pixels of y (the padded-row grid's rows of one block) into out[block]: (m, H', W', O).

    Image i's pixels are grid rows i·H_pad·W' onwards, H'·W' of them; the kh-1 rows of W' after them are
    the dropped ones.  The first m-1 images are one (m-1, H_pad, W', O) view cut to H' rows; the grid
    stops after the last image's H'-th row."""
    xp = backend.array_namespace(y)
    m = block.stop - block.start
    _, h_out, w_out, o = out.shape
    full = (m - 1) * h_pad * w_out
    out[block.start : block.stop - 1, ...] = xp.reshape(y[:full, ...], (m - 1, h_pad, w_out, o))[:, :h_out, ...]
    out[block.stop - 1 : block.stop, ...] = xp.reshape(y[full:, ...], (1, h_out, w_out, o))


def _place_rows_on_the_grid(g, grid, h_pad):
    """The inverse: g: (m, H', W', O) onto the grid's rows of output pixels (the others stay zero)."""
    xp = backend.array_namespace(g)
    m, h_out, w_out, o = g.shape
    for image in range(m):  # image i's pixels start at grid row i * H_pad * W'
        start = image * h_pad * w_out
        grid[start : start + h_out * w_out, ...] = xp.reshape(g[image, ...], (h_out * w_out, o))


class Linear(Function):
    """:math:`y = x W^\\top + b` with x: (N, in), W: (out, in), b: (out,) -> y: (N, out).

    :math:`\\partial L/\\partial x = G W`, :math:`\\partial L/\\partial W = G^\\top x`,
    :math:`\\partial L/\\partial b = \\sum_n G_n`.
    """

    def forward(self, x, weight, bias=None):
        xp = backend.array_namespace(x, weight)
        if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
            raise ValueError(
                f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                f"{tuple(weight.shape)} (expected input (N, {weight.shape[1] if weight.ndim == 2 else '?'}))"
            )
        self.x, self.weight = x, weight
        out = xp.matmul(x, xp.matrix_transpose(weight))
        return out if bias is None else out + bias

    def backward(self, g):
        xp = backend.array_namespace(g)
        gx = xp.matmul(g, self.weight) if self.needs_input_grad[0] else None
        gw = xp.matmul(xp.matrix_transpose(g), self.x) if self.needs_input_grad[1] else None
        gb = xp.sum(g, axis=0) if len(self.needs_input_grad) > 2 and self.needs_input_grad[2] else None
        return gx, gw, gb


class _Pool2d(Function):
    """What both poolings share: a (kh, kw) window every ``stride`` pixels (default: the kernel size)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel if stride is None else _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding")


class MaxPool2d(_Pool2d):
    """:math:`y_{n,c,i,j} = \\max_{a,b} x^{pad}_{n,c,\\,i s + a,\\,j s + b}` (padding with -inf).

    The gradient goes to the position of the maximum in each window (the
    first one on ties, as in PyTorch) and is folded back like a convolution's.
    """

    def forward(self, x):
        xp = backend.array_namespace(x)
        _check_pool_input("max_pool2d", x, self.kernel, self.stride, self.padding)
        padded = _pad_hw(_channels_last(x), self.padding, value=-float("inf"))
        self.x_shape, self.padded_shape = tuple(x.shape), tuple(padded.shape)
        windows = backend.sliding_windows(padded, self.kernel, self.stride)  # (N, H', W', kh, kw, C)
        flat = xp.reshape(windows, (*windows.shape[:3], -1, windows.shape[-1]))  # (N, H', W', kh*kw, C)
        self.argmax = xp.argmax(flat, axis=3)
        return _channels_first(xp.max(flat, axis=3))

    def backward(self, g):
        xp = backend.array_namespace(g)
        kh, kw = self.kernel
        k = xp.arange(kh * kw, device=g.device)[:, None]
        hit = xp.astype(self.argmax[:, :, :, None, :] == k, g.dtype)  # one-hot of the winner in each window
        g_windows = hit * _channels_last(g)[:, :, :, None, :]  # (N, H', W', kh*kw, C)
        g_windows = xp.reshape(g_windows, (*g_windows.shape[:3], kh, kw, g_windows.shape[-1]))
        g_padded = backend.fold_windows(g_windows, self.padded_shape, self.stride)
        return _channels_first(_crop(g_padded, self.x_shape, self.padding))


class AvgPool2d(_Pool2d):
    """:math:`y_{n,c,i,j} = \\frac{1}{k_h k_w}\\sum_{a,b} x^{pad}_{n,c,\\,i s+a,\\,j s+b}`
    (zero padding counts, PyTorch's ``count_include_pad=True``);
    every input of a window receives :math:`g/(k_h k_w)`."""

    def forward(self, x):
        xp = backend.array_namespace(x)
        _check_pool_input("avg_pool2d", x, self.kernel, self.stride, self.padding)
        padded = _pad_hw(_channels_last(x), self.padding)
        self.x_shape, self.padded_shape = tuple(x.shape), tuple(padded.shape)
        windows = backend.sliding_windows(padded, self.kernel, self.stride)  # (N, H', W', kh, kw, C)
        return _channels_first(xp.mean(windows, axis=(3, 4)))

    def backward(self, g):
        xp = backend.array_namespace(g)
        kh, kw = self.kernel
        share = _channels_last(g / (kh * kw))[:, :, :, None, None, :]
        g_windows = xp.broadcast_to(share, (*share.shape[:3], kh, kw, share.shape[-1]))
        g_padded = backend.fold_windows(g_windows, self.padded_shape, self.stride)
        return _channels_first(_crop(g_padded, self.x_shape, self.padding))


def _check_pool_input(name, x, kernel, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected input (N, C, H, W), got shape {tuple(x.shape)}")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {kernel}")
    for axis in (0, 1):
        _output_size(name, x.shape[2 + axis], kernel[axis], stride[axis], padding[axis])


def _crop(padded, shape, padding):
    """Cut the padding off channels-last (N, H+2p, W+2p, C) back to the (N, C, H, W) ``shape``'s H and W."""
    ph, pw = padding
    return padded[:, ph : ph + shape[2], pw : pw + shape[3], :]


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D convolution (cross-correlation); see :class:`Conv2d` for the equations and shapes."""
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(stride, padding)(*inputs)


def linear(x, weight, bias=None) -> Tensor:
    """:math:`x W^\\top + b` with weight (out, in), like ``torch.nn.functional.linear``."""
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Linear()(*inputs)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    return MaxPool2d(kernel_size, stride, padding)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    return AvgPool2d(kernel_size, stride, padding)(x)
