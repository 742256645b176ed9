"""Differentiable operations (``minirn.nn.functional``, imported as ``F``).

Every operation is one :class:`~minirn.autograd.tensor.Function` subclass
whose ``forward`` and ``backward`` sit side by side, plus a lower-case
function that applies it.  Files:

* :mod:`.arithmetic`  — + - * / ** exp log sqrt abs sign maximum minimum where clip matmul
* :mod:`.reduction`   — sum mean var max min
* :mod:`.shape`       — reshape permute transpose broadcast_to getitem concat stack pad flatten
* :mod:`.activation`  — relu sigmoid tanh softmax log_softmax cross_entropy
* :mod:`.conv`        — conv2d linear max_pool2d avg_pool2d
* :mod:`.normalization` — batch_norm robust_norm group_norm layer_norm
* :mod:`.authors_batch_norm` — authors_batch_norm (the authors' BatchNorm, ε outside the root)
"""
from minirn.nn.functional.activation import (
    cross_entropy,
    log_softmax,
    one_hot,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from minirn.nn.functional.arithmetic import (
    abs,
    add,
    astype,
    clip,
    div,
    exp,
    log,
    matmul,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sign,
    sqrt,
    sub,
    where,
)
from minirn.nn.functional.authors_batch_norm import authors_batch_norm
from minirn.nn.functional.conv import avg_pool2d, conv2d, linear, max_pool2d
from minirn.nn.functional.normalization import batch_norm, group_norm, layer_norm, robust_norm
from minirn.nn.functional.reduction import max, mean, min, sum, var
from minirn.nn.functional.shape import (
    broadcast_to,
    concat,
    flatten,
    getitem,
    pad,
    permute,
    reshape,
    stack,
    transpose,
)

__all__ = [
    "abs", "add", "astype", "authors_batch_norm", "avg_pool2d", "batch_norm", "broadcast_to", "clip", "concat", "conv2d",
    "cross_entropy", "div", "exp", "flatten", "getitem", "group_norm", "layer_norm", "linear", "log",
    "log_softmax", "matmul", "max", "max_pool2d", "maximum", "mean", "min", "minimum", "mul", "neg",
    "one_hot", "pad", "permute", "pow", "relu", "reshape", "robust_norm", "sigmoid", "sign", "softmax",
    "sqrt", "stack", "sub", "sum", "tanh", "transpose", "var", "where",
]
