"""Adam (Kingma & Ba 2015) with bias correction and L2 weight decay (PyTorch's rule)."""
from __future__ import annotations

import numbers

from minirn import backend
from minirn.optim.optimizer import Optimizer, check_non_negative


class Adam(Optimizer):
    r"""Adam, exactly like ``torch.optim.Adam`` (L2 weight decay, not AdamW's decoupled decay).

    For each parameter :math:`\theta` with gradient :math:`g_t` at step
    :math:`t = 1, 2, \dots`:

    .. math::
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
            && \text{(weight decay, if } \lambda \neq 0)\\
        m_t &= \beta_1\, m_{t-1} + (1 - \beta_1)\, g_t,
            \qquad m_0 = 0\\
        v_t &= \beta_2\, v_{t-1} + (1 - \beta_2)\, g_t^2,
            \qquad v_0 = 0\\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{v_t}\,/\sqrt{1 - \beta_2^t} + \epsilon}

    with learning rate :math:`\eta` (``lr``), ``betas`` :math:`(\beta_1,
    \beta_2)`, ``eps`` :math:`\epsilon` and weight decay :math:`\lambda`.
    The factors :math:`1 - \beta^t` undo the bias of :math:`m, v` towards
    their zero start, so the first step moves every weight by about
    :math:`\eta\,\mathrm{sign}(g_1)`.

    params: an iterable of tensors or of parameter-group dicts.
    State per parameter: ``"step"`` (int t), ``"exp_avg"`` (:math:`m_t`) and
    ``"exp_avg_sq"`` (:math:`v_t`), both with the parameter's shape and dtype.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_hyperparameters(self, group: dict) -> None:
        for name in ("lr", "eps", "weight_decay"):
            check_non_negative(group, name)
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, numbers.Real) and 0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"invalid betas: {betas!r} (expected two numbers in [0, 1))")

    def _update(self, p, grad, state: dict, group: dict) -> None:
        # Python floats never promote the parameter's dtype (NEP 50)
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        g = grad
        if weight_decay != 0.0:
            g = g + weight_decay * p.data                          # g <- g + lambda theta
        t = int(state.get("step", 0)) + 1
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        m = (1.0 - beta1) * g if m is None else beta1 * m + (1.0 - beta1) * g          # m_t
        v = (1.0 - beta2) * (g * g) if v is None else beta2 * v + (1.0 - beta2) * (g * g)  # v_t
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        xp = backend.array_namespace(p.data)
        denominator = xp.sqrt(v) / bias_correction2**0.5 + eps    # sqrt(v_t / (1 - beta2^t)) + eps
        p.data = p.data - (lr / bias_correction1) * (m / denominator)
        state["step"], state["exp_avg"], state["exp_avg_sq"] = t, m, v
