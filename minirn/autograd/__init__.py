"""Reverse-mode automatic differentiation: Tensor, Function, grad modes, gradient checking."""
from minirn.autograd.grad_mode import (
    enable_grad,
    freeze_running_stats,
    is_grad_enabled,
    no_grad,
    running_stats_frozen,
)
from minirn.autograd.tensor import Function, Tensor, ones, sum_to, tensor, zeros

__all__ = [
    "Function", "Tensor", "enable_grad", "freeze_running_stats", "is_grad_enabled", "no_grad",
    "ones", "running_stats_frozen", "sum_to", "tensor", "zeros",
]
