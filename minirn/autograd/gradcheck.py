"""Gradient checking by central finite differences of a random projection.

To check the backward pass of :math:`y = f(x_1, \\dots, x_k)` we pick a fixed
random direction :math:`u` with the shape of y and compare, for each input
element, the analytic gradient of the scalar

.. math::  \\phi(x) = \\langle f(x), u \\rangle = \\sum_j f(x)_j\\, u_j

(obtained with one ``backward(u)``: a vector-Jacobian product) with the
central difference :math:`(\\phi(x + h e_i) - \\phi(x - h e_i)) / 2h`.

Why a random u and not ``f(x).sum()``?  Because the sum is blind to whole
classes of bugs.  For a normalisation layer
:math:`\\sum_i \\hat x_i = 0` for every input, so the gradient of the sum is 0
whatever the backward computes: a BatchNorm that forgets the term through the
variance passes a sum-based check and fails this one (see the tests).
"""
from __future__ import annotations

import numpy as np

from minirn import backend
from minirn.autograd.grad_mode import freeze_running_stats, no_grad
from minirn.autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _projection(output: Tensor, u) -> float:
    xp = output.xp
    return float(backend.to_host(xp.sum(output.data * u)))


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-4, atol=1e-6, seed=0, max_elements=None) -> bool:
    """Check ``fn``'s backward against finite differences; raise :class:`GradcheckError` if they differ.

    fn: callable taking the tensors of ``inputs`` and returning one tensor.
    inputs: tensors; those with ``requires_grad=True`` are checked (they may be
        parameters that ``fn`` also uses through a module).  All must be float64.
    eps: the finite-difference step h.  rtol, atol: an element passes when
        ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed: seeds the projection direction u and the element sample.
    max_elements: check at most this many randomly chosen elements per input.

    Nothing is changed: ``.grad`` of every input is restored, and norm layers
    do not update their running statistics while the check runs.
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype_name != "float64":
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype_name}; finite differences need float64 (.double())")
    generator = np.random.default_rng(seed)
    saved_grads = [inputs[i].grad for i in checked]
    try:
        with freeze_running_stats():
            for i in checked:
                inputs[i].grad = None
            output = fn(*inputs)
            if output.dtype_name != "float64":
                raise ValueError(f"gradcheck: fn returned {output.dtype_name}; make every parameter float64 too")
            u = backend.normal(generator, output.shape, dtype="float64", device=output.device)
            output.backward(u)
            analytic = {i: inputs[i].grad for i in checked}
            for i in checked:
                _compare(fn, inputs, i, analytic[i], u, eps, rtol, atol, generator, max_elements)
    finally:
        for i, grad in zip(checked, saved_grads):
            inputs[i].grad = grad
    return True


def _compare(fn, inputs, i, analytic, u, eps, rtol, atol, generator, max_elements):
    x = inputs[i]
    original = x.data
    host = np.array(backend.to_host(original), copy=True)
    analytic_host = np.zeros(host.shape) if analytic is None else backend.to_host(analytic)
    positions = np.arange(host.size)
    if max_elements is not None and host.size > max_elements:
        positions = np.sort(generator.choice(host.size, size=max_elements, replace=False))
    try:
        for flat in positions:
            index = np.unravel_index(flat, host.shape)
            values = []
            for step in (eps, -eps):
                perturbed = host.copy()
                perturbed[index] += step
                x.data = backend.to_device(perturbed, backend.device_of(original))
                with no_grad():
                    values.append(_projection(fn(*inputs), u))
            numeric = (values[0] - values[1]) / (2 * eps)
            got = float(analytic_host[index])
            if not abs(got - numeric) <= atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradcheck: input {i} (shape {tuple(host.shape)}), element {tuple(int(k) for k in index)}: "
                    f"analytic gradient {got:.10g} != numerical {numeric:.10g} "
                    f"(difference {abs(got - numeric):.3g}, tolerance {atol + rtol * abs(numeric):.3g})"
                )
    finally:
        x.data = original
