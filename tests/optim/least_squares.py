"""A small least-squares problem that drives minirn and torch optimizers with identical gradients.

Loss :math:`L = \\tfrac12 \\lVert X W^\\top + b - Y \\rVert^2` with X: (5, 3), Y: (5, 2),
parameters W: (2, 3) and b: (2,).  Gradients are computed on the host in NumPy
from the current weights, so both libraries receive exactly the same numbers.
"""
import numpy as np

import minirn
from minirn import backend

_data = np.random.default_rng(42)
X = _data.normal(size=(5, 3))
Y = _data.normal(size=(5, 2))
W0 = _data.normal(size=(2, 3))
B0 = _data.normal(size=(2,))


def gradients(weight: np.ndarray, bias: np.ndarray):
    """(dL/dW, dL/db) at (weight, bias), float64 NumPy."""
    residual = X @ weight.T + bias - Y  # (5, 2)
    return residual.T @ X, residual.sum(axis=0)


def minirn_params(device="cpu", dtype="float64"):
    return [minirn.tensor(a, requires_grad=True, dtype=dtype, device=device) for a in (W0, B0)]


def minirn_steps(optimizer, params, steps: int):
    """``steps`` optimizer steps on ``params`` (weight, bias); returns the final values as NumPy."""
    for _ in range(steps):
        optimizer.zero_grad()
        grads = gradients(*(backend.to_host(p.data).astype(np.float64) for p in params))
        for p, g in zip(params, grads):
            p.grad = backend.to_device(g, p.device, dtype=p.dtype)
        optimizer.step()
    return [backend.to_host(p.data) for p in params]


def torch_params(torch):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (W0, B0)]


def torch_steps(optimizer, params, steps: int):
    for _ in range(steps):
        optimizer.zero_grad()
        grads = gradients(*(p.detach().numpy() for p in params))
        for p, g in zip(params, grads):
            p.grad = p.new_tensor(g)
        optimizer.step()
    return [p.detach().numpy() for p in params]
