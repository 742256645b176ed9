"""Global switches: is the graph recorded, may norm layers update running statistics?"""
from __future__ import annotations

import contextlib
import functools

_state = {"grad_enabled": True, "running_stats_frozen": False}


def is_grad_enabled() -> bool:
    """Whether operations on tensors that require grad record the graph."""
    return _state["grad_enabled"]


def running_stats_frozen() -> bool:
    """Whether norm layers in training mode must leave their running buffers alone."""
    return _state["running_stats_frozen"]


class _Switch(contextlib.ContextDecorator):
    """Set one flag of ``_state`` inside a ``with`` block (or a decorated function)."""

    def __init__(self, key: str, value: bool):
        self.key, self.value = key, value

    def __enter__(self):
        self.previous = _state[self.key]
        _state[self.key] = self.value
        return self

    def __exit__(self, *exc):
        _state[self.key] = self.previous
        return False


def no_grad():
    """Context manager (and decorator) in which no graph is recorded, like ``torch.no_grad``."""
    return _Switch("grad_enabled", False)


def enable_grad():
    """Context manager that records the graph again inside a ``no_grad`` block."""
    return _Switch("grad_enabled", True)


def freeze_running_stats():
    """Context manager in which BatchNorm/RobustNorm layers never update running buffers.

    The gradient checker and every attack run inside it, so that evaluating a
    model in training mode (batch statistics) leaves its state untouched.
    """
    return _Switch("running_stats_frozen", True)


def with_frozen_running_stats(fn):
    """Decorator form of :func:`freeze_running_stats`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with freeze_running_stats():
            return fn(*args, **kwargs)

    return wrapper
