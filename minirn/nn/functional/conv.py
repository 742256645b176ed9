"""Convolution, linear layers and pooling as single graph nodes.

A convolution is a matrix product in disguise ("im2col"): gather every
(kh, kw, C) patch of the padded input as one row of a matrix, multiply by the
(kh*kw*C, C_out) weight matrix, and reshape.  Its gradients are the two
matrix products of :class:`~minirn.nn.functional.arithmetic.MatMul`, followed
for the input by "col2im" (:func:`minirn.backend.fold_windows`), which adds
each patch's gradient back where the patch came from.

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
    out = xp.full((n, h + 2 * ph, w + 2 * pw, c), value, dtype=x.dtype, device=x.device)
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
    * :math:`\\partial L/\\partial X_{col} = G W_{mat}`, folded back onto x (col2im).

    On NumPy the rows of :math:`X_{col}` are built and multiplied a block of
    images at a time (:func:`minirn.backend.batch_blocks`), so that each block
    stays in the CPU cache; the backward pass rebuilds each block's
    :math:`X_{col}` instead of keeping the whole matrix (kh·kw times the
    size of the input) alive between the two passes.
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
        h_out = _output_size("conv2d", h, kh, self.stride[0], self.padding[0])
        w_out = _output_size("conv2d", w, kw, self.stride[1], self.padding[1])
        self.x_shape, self.weight = tuple(x.shape), weight
        self.padded = _pad_hw(_channels_last(x), self.padding)  # (N, H+2p, W+2p, C)
        self.w_mat = xp.reshape(xp.permute_dims(weight, (0, 2, 3, 1)), (o, kh * kw * c))  # W_mat
        out = xp.empty((n, h_out, w_out, o), dtype=x.dtype, device=x.device)
        for block in self._blocks():  # cache-sized blocks of images on the CPU, one block elsewhere
            y = xp.matmul(self._cols(block), xp.matrix_transpose(self.w_mat))  # Y = X_col W_mat^T
            out[block, ...] = xp.reshape(y, (-1, h_out, w_out, o))
        if bias is not None:
            out = out + bias
        return _channels_first(out)

    def _blocks(self):
        n, h_pad, w_pad, c = self.padded.shape
        o, _, kh, kw = self.weight.shape
        h_out = (h_pad - kh) // self.stride[0] + 1
        w_out = (w_pad - kw) // self.stride[1] + 1
        return backend.batch_blocks(self.padded, h_out * w_out * kh * kw * c * 4)  # float32 rows of X_col

    def _cols(self, block):
        """X_col of the images in ``block``: (images * H' * W', kh * kw * C), one row per patch."""
        xp = backend.array_namespace(self.padded)
        _, c, kh, kw = self.weight.shape
        windows = backend.sliding_windows(self.padded[block, ...], (kh, kw), self.stride)  # (n, H', W', kh, kw, C)
        return xp.reshape(windows, (-1, kh * kw * c))

    def backward(self, g):
        xp = backend.array_namespace(g)
        n, o, h_out, w_out = g.shape
        _, c, kh, kw = self.weight.shape
        wants = tuple(self.needs_input_grad) + (False,) * (3 - len(self.needs_input_grad))
        g_last = _channels_last(g)  # (N, H', W', O)
        g_padded = xp.zeros(self.padded.shape, dtype=g.dtype, device=g.device) if wants[0] else None
        g_w_mat = xp.zeros(self.w_mat.shape, dtype=g.dtype, device=g.device) if wants[1] else None
        # W_mat's column blocks, one (O, C) matrix per kernel offset (a, b): (kh*kw, O, C)
        w_offsets = xp.permute_dims(xp.reshape(self.w_mat, (o, kh * kw, c)), (1, 0, 2))
        for block in self._blocks():  # the forward pass's blocks; X_col is rebuilt, not stored
            g_mat = xp.reshape(g_last[block, ...], (-1, o))  # G
            if wants[0]:
                # dL/dX_col = G W_mat, computed offset by offset, G W_ab: (kh*kw, rows, C), so that
                # col2im adds one contiguous (images, H', W', C) slab per offset
                g_cols = xp.matmul(g_mat[None, ...], w_offsets)
                g_windows = xp.permute_dims(xp.reshape(g_cols, (kh, kw, -1, h_out, w_out, c)), (2, 3, 4, 0, 1, 5))
                shape = (g_windows.shape[0], *self.padded.shape[1:])
                g_padded[block, ...] = backend.fold_windows(g_windows, shape, self.stride)  # col2im
            if wants[1]:
                g_w_mat = g_w_mat + xp.matmul(xp.matrix_transpose(g_mat), self._cols(block))  # G^T X_col
        gx = _channels_first(_crop(g_padded, self.x_shape, self.padding)) if wants[0] else None
        gw = xp.permute_dims(xp.reshape(g_w_mat, (o, kh, kw, c)), (0, 3, 1, 2)) if wants[1] else None
        gb = xp.sum(g_last, axis=(0, 1, 2)) if wants[2] else None  # dL/db = column sums of G
        return gx, gw, gb


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
