"""Learning-rate schedules, PyTorch style: call ``scheduler.step()`` once per epoch, after ``optimizer.step()``.

A scheduler counts epochs in ``last_epoch`` (0 right after construction)
and writes each group's learning rate :math:`\\eta_t` into
``optimizer.param_groups[i]["lr"]``.  The rate each group started with is
kept in the group as ``"initial_lr"`` (the base rate :math:`\\eta_0`).
"""
from __future__ import annotations

import math
import numbers

from minirn.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses implement :meth:`get_lr`, the rates for epoch ``last_epoch``.

    ``last_epoch=-1`` starts a new schedule; another value resumes one, and
    then every group must already hold ``"initial_lr"``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a scheduler needs a minirn Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise ValueError(f"param group {i} has no 'initial_lr', which resuming (last_epoch != -1) needs")
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self.step()

    def get_lr(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set every group's learning rate."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The learning rate of each group set by the last :meth:`step`."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Everything but the optimizer (which has its own ``state_dict``)."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        unknown = set(state_dict) - set(self.state_dict())
        if unknown:
            raise ValueError(f"not a {type(self).__name__} state_dict: unknown entries {sorted(unknown)}")
        self.__dict__.update(state_dict)


class MultiStepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at each milestone epoch.

    .. math:: \eta_t = \eta_0\, \gamma^{\,|\{m \in \text{milestones} : m \le t\}|}

    computed, like PyTorch, by multiplying the current rate at each
    milestone (a milestone listed twice multiplies by :math:`\gamma^2`).
    The paper's CIFAR schedule: ``MultiStepLR(opt, milestones=[80, 120], gamma=0.1)``.
    """

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        milestones = list(milestones)
        if not all(isinstance(m, numbers.Integral) and not isinstance(m, bool) and m >= 0 for m in milestones):
            raise ValueError(f"milestones must be non-negative integers, got {milestones!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma > 0:
            raise ValueError(f"invalid gamma: {gamma!r} (expected a number > 0)")
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        factor = self.gamma ** self.milestones.count(self.last_epoch)
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base rate :math:`\eta_0` to ``eta_min`` over ``T_max`` epochs (SGDR without restarts).

    .. math:: \eta_t = \eta_{\min} + \tfrac{1}{2}\,(\eta_0 - \eta_{\min})
              \Big(1 + \cos\frac{\pi\, t}{T_{\max}}\Big)

    PyTorch's closed form; past ``T_max`` the rate rises again along the
    same cosine, as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral) or T_max <= 0:
            raise ValueError(f"invalid T_max: {T_max!r} (expected a positive integer)")
        if isinstance(eta_min, bool) or not isinstance(eta_min, numbers.Real) or not eta_min >= 0:
            raise ValueError(f"invalid eta_min: {eta_min!r} (expected a number >= 0)")
        self.T_max = int(T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list:
        cosine = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]
