"""``Tensor``, ``Function`` and reverse-mode differentiation.

A :class:`Tensor` wraps a backend array (``.data``) and, when it takes part in
differentiation, remembers the :class:`Function` that created it
(``.creator``).  The functions and tensors form a directed acyclic graph;
:meth:`Tensor.backward` walks it from the output to the leaves in reverse
topological order and applies the chain rule

.. math::  \\frac{\\partial L}{\\partial x} = \\sum_{f \\,:\\, x \\in \\mathrm{inputs}(f)}
           \\Big(\\frac{\\partial f}{\\partial x}\\Big)^{\\!\\top} \\frac{\\partial L}{\\partial f}

one function at a time: each ``Function.backward`` receives
:math:`\\partial L/\\partial y` for its output :math:`y` and returns
:math:`\\partial L/\\partial x` for each input (a vector-Jacobian product).

Rules of the engine (each is tested):

* the walk is iterative, so deep graphs never hit Python's recursion limit;
* gradients are accumulated out of place (``g = g + gx``), never with ``+=``,
  because two edges may share one array;
* a gradient whose shape differs from its input's because the forward
  broadcast the input is reduced back with :func:`sum_to`;
* only leaves (tensors made by the user, parameters) keep ``.grad``; the
  graph is kept after ``backward()``, so a second call accumulates into
  ``.grad`` again, like PyTorch with ``retain_graph=True``.  Set
  ``t.grad = None`` (or call ``zero_grad()``) to clear it.
"""
from __future__ import annotations

import numpy as np

from minirn import backend
from minirn.autograd.grad_mode import is_grad_enabled


class Function:
    """One differentiable operation.

    Subclasses implement ``forward(*arrays) -> array`` and
    ``backward(grad_output) -> grad_input or tuple of them`` (``None`` for an
    input that needs no gradient), side by side.  Anything ``backward``
    needs is saved on ``self`` by ``forward``.  Non-tensor arguments
    (axes, strides, ...) go to ``__init__``.

    Calling the function (``Mul()(a, b)``) converts the inputs, runs
    ``forward`` and, if any input requires grad and grad mode is on, links
    the output into the graph.  ``self.needs_input_grad`` tells ``backward``
    which gradients are wanted, so it can skip expensive ones.
    """

    inputs: tuple = ()
    needs_input_grad: tuple = ()

    def __call__(self, *inputs) -> Tensor:
        reference = next((i for i in inputs if isinstance(i, Tensor)), None)
        tensors = tuple(_as_operand(i, reference) for i in inputs)
        output = backend.ensure_array(self.forward(*(t.data for t in tensors)))
        requires_grad = is_grad_enabled() and any(t.requires_grad for t in tensors)
        result = Tensor._wrap(output, requires_grad)
        if requires_grad:
            self.inputs = tensors
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            result.creator = self
        return result

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_output):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def _as_operand(value, reference):
    """Turn a Function argument into a Tensor.

    A Python or NumPy scalar becomes a 0-d array with the *reference
    tensor's* dtype and device, so ``float32_tensor * np.float64(2.0)`` stays
    float32 (NumPy 2 / NEP 50 would otherwise promote it to float64).
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float, np.generic)):
        if reference is None:
            return tensor(value)
        if isinstance(value, (float, np.floating)) and not backend.is_floating(reference.dtype):
            raise TypeError(
                f"cannot combine a {reference.dtype_name} tensor with the float {value!r} (it would be "
                "truncated); convert the tensor first with .float() or .double()"
            )
        xp = reference.xp
        return Tensor._wrap(xp.asarray(value, dtype=reference.data.dtype, device=reference.data.device), False)
    if backend.is_array(value):
        return Tensor._wrap(value, False)
    raise TypeError(f"cannot use a {type(value).__name__} as a tensor operand")


def sum_to(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``.

    The adjoint of ``broadcast_to``: if :math:`y = \\mathrm{broadcast}(x)` then
    :math:`\\partial L/\\partial x = \\sum_{\\text{broadcast axes}} \\partial L/\\partial y`.
    """
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    xp = backend.array_namespace(grad)
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, size in enumerate(shape) if size == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = xp.sum(grad, axis=axes, keepdims=True)
    return xp.reshape(grad, shape)


def _topological_order(root: Function) -> list:
    """Functions reachable from ``root``, each after every function that feeds it.

    Iterative depth-first search: a function is appended (post-order) once
    all the functions that produced its inputs have been appended.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if fn in visited:
            continue
        visited.add(fn)
        stack.append((fn, True))
        for x in fn.inputs:
            if x.creator is not None and x.creator not in visited:
                stack.append((x.creator, False))
    return order


class Tensor:
    """An array that can record the operations applied to it.

    Attributes: ``data`` (the backend array), ``grad`` (backend array or
    None), ``requires_grad``, ``creator`` (the Function that produced it, or
    None for a leaf).  Create tensors with :func:`minirn.tensor`.
    """

    __array_priority__ = 1000  # NumPy defers `ndarray * Tensor` to Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            data = _from_python(data, None, backend.DEFAULT_DEVICE)
        self.data = data
        self.grad = None
        self.creator = None
        self.requires_grad = False
        self.requires_grad_(requires_grad)

    @classmethod
    def _wrap(cls, data, requires_grad: bool) -> Tensor:
        """Fast internal constructor: ``data`` is already a backend array."""
        t = cls.__new__(cls)
        t.data, t.grad, t.creator, t.requires_grad = data, None, None, requires_grad
        return t

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not backend.is_floating(self.data.dtype):
            raise ValueError(
                f"only floating-point tensors can require gradients; this tensor is {self.dtype_name}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    # --- basic properties ------------------------------------------------
    @property
    def xp(self):
        """The Array API namespace of ``data``."""
        return backend.array_namespace(self.data)

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def dtype_name(self) -> str:
        return backend.dtype_name(self.data.dtype)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), precision=4, threshold=20, prefix="tensor(")
        extra = f", device={self.device!r}" if self.device != "cpu" else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}, dtype={self.dtype_name}{extra})"

    __hash__ = object.__hash__

    # --- conversion -----------------------------------------------------
    def numpy(self) -> np.ndarray:
        """An explicit host copy as a NumPy array (on every device)."""
        return np.array(backend.to_host(self.data), copy=True)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number (a device sync on GPUs)."""
        if self.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph (``requires_grad=False``)."""
        return Tensor._wrap(self.data, False)

    def to(self, device=None, dtype=None) -> Tensor:
        """A copy on ``device`` and/or with ``dtype`` (differentiable for dtype changes)."""
        out = self
        if dtype is not None and backend.dtype_name(dtype) != self.dtype_name:
            out = F.astype(out, dtype)
        if device is not None and backend.check_device(device) != out.device:
            moved = Tensor._wrap(backend.to_device(out.data, device), False)
            moved.requires_grad = out.requires_grad and out.is_leaf
            out = moved
        return out

    def float(self) -> Tensor:
        return self.to(dtype="float32")

    def double(self) -> Tensor:
        return self.to(dtype="float64")

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad = None``)."""
        self.grad = None

    # --- differentiation ------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate :math:`\\partial(\\text{self})/\\partial x` into ``x.grad`` for every leaf ``x``.

        ``grad`` is the upstream gradient :math:`\\partial L/\\partial\\,\\text{self}`
        (same shape as ``self``); it may be omitted only for a one-element
        tensor, where it defaults to 1.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        xp = self.xp
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs an upstream "
                    "gradient of the same shape: call backward(grad)"
                )
            grad = xp.ones(self.data.shape, dtype=self.data.dtype, device=self.data.device)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if not backend.is_array(grad) or backend.device_of(grad) != self.device:
                grad = backend.to_device(grad, self.device, self.data.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(
                    f"backward(grad): grad has shape {tuple(grad.shape)} but the tensor has shape {self.shape}"
                )
        if self.creator is None:
            self._accumulate(grad)
            return
        grads = {self.creator: grad}
        for fn in reversed(_topological_order(self.creator)):
            grad_output = grads.pop(fn, None)
            if grad_output is None:
                continue
            grad_inputs = fn.backward(grad_output)
            if not isinstance(grad_inputs, tuple):
                grad_inputs = (grad_inputs,)
            for x, gx in zip(fn.inputs, grad_inputs):
                if gx is None or not x.requires_grad:
                    continue
                gx = sum_to(backend.ensure_array(gx), x.shape)
                if x.creator is None:
                    x._accumulate(gx)
                else:
                    previous = grads.get(x.creator)
                    grads[x.creator] = gx if previous is None else previous + gx

    def _accumulate(self, gx) -> None:
        if gx.dtype != self.data.dtype:
            gx = self.xp.astype(gx, self.data.dtype)
        self.grad = gx if self.grad is None else self.grad + gx  # out of place

    # --- operators (each dispatches to minirn.nn.functional) -------------
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __pow__(self, exponent):
        return F.pow(self, exponent)

    def __neg__(self):
        return F.neg(self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    # comparisons give plain backend arrays: they are not differentiable
    def __lt__(self, other):
        return self.data < _data(other)

    def __le__(self, other):
        return self.data <= _data(other)

    def __gt__(self, other):
        return self.data > _data(other)

    def __ge__(self, other):
        return self.data >= _data(other)

    def __eq__(self, other):
        return self.data == _data(other)

    def __ne__(self, other):
        return self.data != _data(other)

    # --- methods mirroring NumPy / PyTorch ---------------------------------
    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, correction=0):
        return F.var(self, axis, keepdims, correction)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return F.min(self, axis, keepdims)

    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def permute(self, *axes):
        return F.permute(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)

    def transpose(self, dim0=-2, dim1=-1):
        """Swap two axes (PyTorch's ``transpose(dim0, dim1)``; the last two by default)."""
        return F.transpose(self, dim0, dim1)

    @property
    def T(self):
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0):
        return F.flatten(self, start_dim)

    def broadcast_to(self, shape):
        return F.broadcast_to(self, shape)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def abs(self):
        return F.abs(self)

    def relu(self):
        return F.relu(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def tanh(self):
        return F.tanh(self)

    def clip(self, min=None, max=None):  # noqa: A002 - NumPy/PyTorch names
        return F.clip(self, min, max)

    clamp = clip

    def argmax(self, axis=None):
        """Indices of the maxima (a plain array; not differentiable)."""
        return self.xp.argmax(self.data, axis=axis)


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def _from_python(data, dtype, device):
    """Python numbers/lists -> backend array; floats default to float32, like PyTorch."""
    host = np.asarray(data)
    if dtype is None:
        if host.dtype == np.float64 and not isinstance(data, np.ndarray):
            dtype = "float32"
        elif host.dtype.kind == "O":
            raise TypeError(f"cannot make a tensor from {type(data).__name__}")
    return backend.to_device(host, device, dtype)


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Create a leaf tensor.

    data: a backend array, NumPy array, Python number or nested list.
    Python floats become float32 (like PyTorch); arrays keep their dtype
    unless ``dtype`` is given.  The data is always copied (like ``torch.tensor``).  ``device`` defaults to the array's own device,
    else ``"cpu"``.
    """
    if isinstance(data, Tensor):
        data = data.data
    if device is None:
        device = backend.device_of(data) if backend.is_array(data) else backend.DEFAULT_DEVICE
    if backend.is_array(data) or isinstance(data, np.ndarray):
        array = backend.to_device(data, device, dtype)
        if array is data or backend.device_of(data) == device:
            array = backend.array_namespace(array).asarray(array, copy=True)  # a copy, like torch.tensor
    else:
        array = _from_python(data, dtype, device)
    return Tensor(array, requires_grad=requires_grad)


def zeros(shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros."""
    xp = backend.namespace(device or backend.DEFAULT_DEVICE)
    return Tensor(xp.zeros(tuple(shape), dtype=backend.as_dtype(dtype, xp)), requires_grad)


def ones(shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """A tensor of ones."""
    xp = backend.namespace(device or backend.DEFAULT_DEVICE)
    return Tensor(xp.ones(tuple(shape), dtype=backend.as_dtype(dtype, xp)), requires_grad)


# The operators above dispatch to the functional ops, which themselves build on
# Function and Tensor; importing them last breaks the cycle.
from minirn.nn import functional as F  # noqa: E402
