"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay (PyTorch's rule)."""
from __future__ import annotations

from minirn import backend
from minirn.optim.optimizer import Optimizer, check_non_negative


class SGD(Optimizer):
    r"""Stochastic gradient descent, exactly like ``torch.optim.SGD``.

    For each parameter :math:`\theta` with gradient :math:`g_t` at step t:

    .. math::
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
            && \text{(weight decay, if } \lambda \neq 0)\\
        b_t &= \begin{cases} g_t & t = 1\\
                \mu\, b_{t-1} + (1 - \tau)\, g_t & t > 1 \end{cases}
            && \text{(momentum buffer, if } \mu \neq 0)\\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{nesterov}\\
                b_t & \text{otherwise} \end{cases}\\
        \theta_t &= \theta_{t-1} - \eta\, g_t

    with learning rate :math:`\eta` (``lr``), momentum :math:`\mu`,
    dampening :math:`\tau` and weight decay :math:`\lambda`.  The paper's
    CIFAR recipe is ``SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)``.

    params: an iterable of tensors or of parameter-group dicts.
    State per parameter: ``"momentum_buffer"`` (same shape and dtype as it).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group: dict) -> None:
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            check_non_negative(group, name)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def _update(self, p, grad, state: dict, group: dict) -> None:
        # Python floats never promote the parameter's dtype (NEP 50)
        lr, momentum, weight_decay = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        g = grad
        if weight_decay != 0.0:
            g = g + weight_decay * p.data                            # g <- g + lambda theta
        if momentum != 0.0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = backend.array_namespace(g).asarray(g, copy=True)  # b_1 = g_1
            else:
                buffer = momentum * buffer + (1.0 - float(group["dampening"])) * g  # b_t = mu b + (1 - tau) g
            state["momentum_buffer"] = buffer
            g = g + momentum * buffer if group["nesterov"] else buffer
        p.data = p.data - lr * g                                     # theta <- theta - eta g

