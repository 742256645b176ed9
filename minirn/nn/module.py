"""``Module`` and ``Parameter``: the bookkeeping around the functional ops, PyTorch style.

A module owns *parameters* (tensors the optimizer trains), *buffers*
(arrays that are state but not trained, such as BatchNorm's running
statistics) and *child modules*; assigning an attribute registers it in the
right table.  ``state_dict()`` maps dotted names to arrays, exactly like
PyTorch, so weights can be ported one to one.
"""
from __future__ import annotations

from collections import OrderedDict

from minirn import backend
from minirn.autograd.tensor import Tensor


class Parameter(Tensor):
    """A tensor that a module trains: ``requires_grad=True``; ``.data`` may be reassigned."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models.

    Subclasses call ``super().__init__()``, assign parameters, buffers
    (:meth:`register_buffer`) and sub-modules as attributes, and implement
    ``forward``.  ``module(x)`` calls ``forward(x)``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration -------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning {name!r}")
        if isinstance(value, (Parameter, Module)):
            for table in (self._parameters, self._buffers, self._modules):
                table.pop(name, None)
            self.__dict__.pop(name, None)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._buffers:
            self._buffers[name] = value  # re-assigning a buffer keeps it a buffer
        elif name in self._parameters and value is None:
            self._parameters[name] = None  # removing a parameter (``conv.bias = None``), like PyTorch
        elif name in self._parameters:
            raise TypeError(
                f"cannot assign a {type(value).__name__} to parameter {name!r}: assign a Parameter, "
                f"or set {name}.data to change its values"
            )
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """Register a backend array as state that is saved but not trained (e.g. ``running_mean``)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    # --- calling --------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    # --- traversal ------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """Yield ``(dotted_name, module)`` for this module and every descendant (each once)."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child) for child_name, child in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self):
        """Yield ``(dotted_name, parameter)``, each parameter once."""
        seen = set()
        for prefix, module in self.named_modules():
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self):
        return (param for _, param in self.named_parameters())

    def named_buffers(self):
        """Yield ``(dotted_name, array)`` for every buffer."""
        for prefix, module in self.named_modules():
            for name, array in module._buffers.items():
                if array is not None:
                    yield (f"{prefix}.{name}" if prefix else name), array

    def buffers(self):
        return (array for _, array in self.named_buffers())

    # --- modes and devices ---------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch statistics, running-statistic updates) on every sub-module."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode on every sub-module (``train(False)``)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad = None``)."""
        for param in self.parameters():
            param.grad = None

    def to(self, device=None, dtype=None) -> Module:
        """Move parameters and floating-point buffers to ``device`` and/or cast them to ``dtype``; returns self."""
        for module in self.modules():
            for param in module._parameters.values():
                param.data = _convert(param.data, device, dtype)
                param.grad = None if param.grad is None else _convert(param.grad, device, dtype)
            for name, array in module._buffers.items():
                if array is not None:
                    cast = dtype if backend.is_floating(array.dtype) else None
                    module._buffers[name] = _convert(array, device, cast)
        return self

    def double(self) -> Module:
        return self.to(dtype="float64")

    def float(self) -> Module:
        return self.to(dtype="float32")

    @property
    def device(self) -> str:
        """The device of the first parameter (or buffer); "cpu" for a module without state."""
        for array in (*[p.data for p in self.parameters()], *self.buffers()):
            return backend.device_of(array)
        return backend.DEFAULT_DEVICE

    # --- state ------------------------------------------------------------------
    def _state_entries(self):
        """``(dotted_name, module, attribute, is_parameter)`` for every entry of the state, in PyTorch's order:
        each module's parameters, then its buffers, then its children's entries."""
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, module, name, True
            for name, array in module._buffers.items():
                if array is not None:
                    yield dot + name, module, name, False

    def state_dict(self) -> OrderedDict[str, object]:
        """Parameters' data and buffers by dotted name (backend arrays, not copies), ordered like PyTorch's."""
        return OrderedDict(
            (key, module._parameters[name].data if is_parameter else module._buffers[name])
            for key, module, name, is_parameter in self._state_entries()
        )

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` (any device, e.g. NumPy from :func:`minirn.load`) into this module.

        Shapes must match; every shape is checked before anything is copied, so a
        failed load leaves the module unchanged.  With ``strict`` the keys must
        match exactly; otherwise missing and unexpected keys are returned, like
        PyTorch.  Values are converted to each parameter's or buffer's device and dtype.
        """
        entries = list(self._state_entries())
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}"
            )
        updates = []
        for key, module, name, is_parameter in entries:
            if key not in state:
                continue
            value = state[key].data if isinstance(state[key], Tensor) else state[key]
            target = own[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"load_state_dict: {key!r} has shape {tuple(value.shape)} in the state but {tuple(target.shape)} in the model"
                )
            converted = backend.to_device(value, backend.device_of(target), target.dtype)
            if converted is value:  # same device and dtype: copy, so the module never shares the caller's array
                converted = backend.array_namespace(converted).asarray(converted, copy=True)
            updates.append((module, name, is_parameter, converted))
        for module, name, is_parameter, converted in updates:
            if is_parameter:
                module._parameters[name].data = converted
            else:
                module._buffers[name] = converted
        return missing, unexpected

    # --- printing -----------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _convert(array, device, dtype):
    if device is not None and backend.device_of(array) != device:
        array = backend.to_device(array, device)
    if dtype is not None and backend.dtype_name(array.dtype) != backend.dtype_name(dtype):
        xp = backend.array_namespace(array)
        array = xp.astype(array, backend.as_dtype(dtype, xp))
    return array


class Sequential(Module):
    """Apply modules one after another; indexable and iterable like ``torch.nn.Sequential``."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Identity(Module):
    """:math:`y = x` (the "no normalization" baseline uses it in place of a norm layer)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
