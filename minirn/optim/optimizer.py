"""``Optimizer``: parameter groups, per-parameter state and checkpoints, PyTorch style.

An optimizer holds *parameter groups*: dicts with a ``"params"`` list and
the group's hyper-parameters (``"lr"``, ...), so that, for instance, biases
can use another learning rate than weights.  Its ``state`` maps each
parameter to a dict of arrays (momentum buffers, moment estimates).

Updates replace ``parameter.data`` with a new array and never change it in
place; state arrays are replaced the same way.  So the arrays returned by
:meth:`Optimizer.state_dict` are snapshots that later steps do not alter.
"""
from __future__ import annotations

import numbers

from minirn import backend
from minirn.autograd.grad_mode import enable_grad
from minirn.autograd.tensor import Tensor


class Optimizer:
    """Base class: subclasses implement :meth:`step` and call :meth:`_parameters_with_grad`.

    params: an iterable of tensors, or of dicts ``{"params": [...], "lr": ...}``
    (one per parameter group; missing hyper-parameters take ``defaults``).
    """

    def __init__(self, params, defaults: dict):
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                "params should be an iterable of Tensors or of dicts (parameter groups), "
                f"got a single {type(params).__name__}"
            )
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters (with its own hyper-parameters) to train."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        group = dict(group)
        params = group.get("params")
        params = [params] if isinstance(params, Tensor) else list(params if params is not None else ())
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizers can only train Tensors, got a {type(p).__name__}")
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in known for p in params):
            raise ValueError("some parameters appear more than once (in one group or across groups)")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:  # pragma: no cover - overridden
        """Raise ``ValueError`` for an invalid hyper-parameter in ``group``."""

    def zero_grad(self) -> None:
        """Clear the gradients of every parameter (``grad = None``, like PyTorch's default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure=None):
        """Update the parameters once; ``closure`` (optional) recomputes and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in self._parameters_with_grad(group):
                self._update(p, p.grad, self.state.setdefault(p, {}), group)
        return loss

    def _update(self, p: Tensor, grad, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _parameters_with_grad(group: dict):
        """The parameters of ``group`` that have a gradient (the others are skipped, like PyTorch)."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if tuple(p.grad.shape) != tuple(p.data.shape) or p.grad.dtype != p.data.dtype:
                raise ValueError(
                    f"a parameter of shape {tuple(p.data.shape)} and dtype {backend.dtype_name(p.data.dtype)} has a "
                    f"gradient of shape {tuple(p.grad.shape)} and dtype {backend.dtype_name(p.grad.dtype)}"
                )
            yield p

    # --- checkpoints -----------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Parameters are numbered in order across the groups, as in PyTorch;
        only the indices are stored, never the parameters themselves.
        """
        index_of, groups = {}, []
        for group in self.param_groups:
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {
            index_of[id(p)]: dict(s) for group in self.param_groups for p in group["params"] if (s := self.state.get(p))
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict` (e.g. from :func:`minirn.load`) onto this optimizer's parameters.

        Hyper-parameters come from ``state_dict``; state arrays are moved to
        each parameter's device, and floating ones cast to its dtype.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError("an optimizer state_dict must be a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"the state_dict has {len(saved_groups)} parameter groups, this optimizer has {len(self.param_groups)}"
            )
        param_of = {}
        for group, saved in zip(self.param_groups, saved_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"a saved parameter group has {len(saved['params'])} parameters, "
                    f"the matching group of this optimizer has {len(group['params'])}"
                )
            param_of.update(zip((int(i) for i in saved["params"]), group["params"]))
        state = {}
        for index, saved_state in state_dict["state"].items():
            if int(index) not in param_of:
                raise ValueError(f"the state_dict has state for parameter {index}, which no group lists")
            p = param_of[int(index)]
            state[p] = {name: _like_parameter(value, p) for name, value in saved_state.items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {k: v for k, v in saved.items() if k != "params"}
            new_group["params"] = group["params"]
            new_groups.append(new_group)
        self.state, self.param_groups = state, new_groups

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {settings}")
        return "\n".join(lines + [")"])


def _like_parameter(value, p: Tensor):
    """A saved state value on ``p``'s device; floating arrays take ``p``'s dtype (scalars pass through)."""
    if isinstance(value, Tensor):
        value = value.data
    if not backend.is_array(value):
        return value
    dtype = p.data.dtype if backend.is_floating(value.dtype) else value.dtype
    return backend.to_device(value, p.device, dtype=dtype)


def check_non_negative(group: dict, name: str) -> None:
    """Raise ``ValueError`` unless ``group[name]`` is a real number >= 0."""
    value = group[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"invalid {name}: {value!r} (expected a number >= 0)")
