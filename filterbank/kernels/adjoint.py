"""The backward of a cascade composed from a forward: the reverse-time recursion.

For one section ``out = lfilter(b, a, inp, zi)`` with gradient ``g`` on ``out``
(docs/design.md, "The backward"), the adjoint of the
all-pole input solves the same recurrence backwards in time,
``u[t] = g[t] - sum_{k>=1} a_k u[t+k]``, and

    d/d inp[t] = sum_k b_k u[t+k]     d/d b_k = sum_t u[t] inp[t-k]
    d/d a_k    = -sum_t u[t] out[t-k] d/d zi[t] = u[t]  (t < order)

with a gradient on ``zf`` entering at the last ``order`` samples. Cascades
chain the sections backwards.

:func:`backward` builds this from the forward it is given: the op layer's
double-backward path passes the differentiable ``filterbank::iir_cascade``
op, so the backward is itself differentiable (the kernels' own backwards are
fused: ``cpu.py``, ``cuda.py``).

Shapes as in ``filterbank.kernels.reference``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["backward", "correlate_torch"]


def _ahead(signal: Tensor, k: int) -> Tensor:
    """``signal[..., t + k]``, zero past the end. signal: (..., time)."""
    if k == 0:
        return signal
    n_time = signal.shape[-1]
    if k >= n_time:
        return torch.zeros_like(signal)
    return F.pad(signal[..., k:], (0, k))


def _behind(signal: Tensor, k: int) -> Tensor:
    """``signal[..., t - k]``, zero before the start. signal: (..., time)."""
    if k == 0:
        return signal
    n_time = signal.shape[-1]
    if k >= n_time:
        return torch.zeros_like(signal)
    return F.pad(signal[..., : n_time - k], (k, 0))


def correlate_torch(u: Tensor, inp: Tensor, inp_index: Tensor, out: Tensor, bn: Tensor):
    """The sums of one section's backward, with torch ops (differentiable).

    Args:
        u: (P, time) adjoint of the all-pole input.
        inp: (rows, time) input rows; channel p reads ``inp[inp_index[p]]``.
        out: (P, time) output.
        bn: (P, order + 1) normalised numerator.

    Returns:
        ``(in_sums, out_sums, grad_in)``: ``in_sums[:, k] = sum_t u[t] inp[t-k]``
        (k = 0..order), ``out_sums[:, k-1] = sum_t u[t] out[t-k]`` (k = 1..order),
        ``grad_in[:, t] = sum_k bn_k u[t+k]``.
    """
    order = bn.shape[-1] - 1
    signal = inp[inp_index]
    in_sums = torch.stack([(u * _behind(signal, k)).sum(-1) for k in range(order + 1)], dim=-1)
    out_sums = torch.stack([(u * _behind(out, k)).sum(-1) for k in range(1, order + 1)], dim=-1) if order else \
        u.new_zeros((u.shape[0], 0))
    grad_in = sum(bn[:, k : k + 1] * _ahead(u, k) for k in range(order + 1))
    return in_sums, out_sums, grad_in


def _reversed_allpole(forward: Callable, g: Tensor, an: Tensor) -> Tensor:
    """``u[t] = g[t] - sum_k an_k u[t+k]``: the forward on the time-reversed g."""
    n_channels, order = an.shape[0], an.shape[1] - 1
    impulse = torch.zeros_like(an)
    impulse[:, 0] = 1
    rows = torch.arange(n_channels, device=g.device)
    u_reversed, _ = forward(g.flip(-1), rows, impulse[:, None], an[:, None], g.new_zeros((n_channels, 1, order)))
    return u_reversed.flip(-1)


def _section_adjoint(
    forward: Callable, grad_out: Tensor, grad_zf: Tensor, inp: Tensor, inp_index: Tensor, out: Tensor, b: Tensor, a: Tensor,
):
    """Adjoint of one section ``out = lfilter(b, a, inp[inp_index], zi)`` (zi enters linearly).

    grad_out, out: (P, time); inp: (rows, time); grad_zf: (P, K); b, a: (P, K + 1) raw.
    Returns the gradients of the channels' inputs (P, time), ``b``, ``a`` and ``zi``.
    """
    n_channels, n_time = grad_out.shape
    order = b.shape[-1] - 1
    a0 = a[:, :1]
    bn, an = b / a0, a / a0
    # zf[i] = sum_{k>i} bn_k inp[T+i-k] - an_k out[T+i-k] (+ zi[T+i] if T+i < K):
    # its gradient reaches the last K samples.
    zf_terms = [(i, k, n_time + i - k) for i in range(order) for k in range(i + 1, order + 1)
                if n_time + i - k >= 0]
    g = grad_out
    extra_in = None
    if zf_terms:
        where = torch.tensor([tau for _, _, tau in zf_terms], device=g.device)
        out_terms = torch.stack([-an[:, k] * grad_zf[:, i] for i, k, _ in zf_terms], dim=1)
        in_terms = torch.stack([bn[:, k] * grad_zf[:, i] for i, k, _ in zf_terms], dim=1)
        g = g.index_add(1, where, out_terms)
        extra_in = torch.zeros_like(g).index_add(1, where, in_terms)
    u = _reversed_allpole(forward, g, an)
    in_sums, out_sums, grad_in = correlate_torch(u, inp, inp_index, out, bn)
    if extra_in is not None:
        grad_in = grad_in + extra_in
    grad_bn = in_sums
    grad_an = torch.cat([torch.zeros_like(in_sums[:, :1]), -out_sums], dim=-1)
    for i, k, tau in zf_terms:
        hot = F.one_hot(torch.tensor(k, device=u.device), order + 1).to(u)
        grad_bn = grad_bn + hot * (grad_zf[:, i] * inp[:, tau][inp_index])[:, None]
        grad_an = grad_an - hot * (grad_zf[:, i] * out[:, tau])[:, None]
    grad_zi = u[:, :order] if n_time >= order else F.pad(u, (0, order - n_time))
    for i in range(order):
        if n_time + i < order:
            hot = F.one_hot(torch.tensor(n_time + i, device=u.device), order).to(u)
            grad_zi = grad_zi + hot * grad_zf[:, i : i + 1]
    grad_b = grad_bn / a0
    grad_a0 = -((grad_bn * bn).sum(-1, keepdim=True) + (grad_an[:, 1:] * an[:, 1:]).sum(-1, keepdim=True)) / a0
    grad_a = torch.cat([grad_a0, grad_an[:, 1:] / a0], dim=-1)
    return grad_in, grad_b, grad_a, grad_zi


def backward(
    forward: Callable, grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor,
    zi: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of a cascade for ``x, b, a, zi`` given those of ``y, zf``.

    Args:
        forward: ``(x, x_index, b, a, zi) -> (y, zf)`` for one section
            (b, a: (P, 1, K + 1)); runs each section again and the adjoint
            recursion (on the time-reversed gradient).
        grad_y: (P, time); grad_zf: (P, S, K); the rest as in ``iir_cascade``.

    Returns:
        ``(grad_x, grad_b, grad_a, grad_zi)`` shaped like ``x, b, a, zi``.
    """
    n_channels, n_sections = b.shape[0], b.shape[1]
    rows = torch.arange(n_channels, device=x.device)
    inputs = [(x, x_index)]
    outputs = []
    for s in range(n_sections):
        signal, index = inputs[-1]
        y_s, _ = forward(signal, index, b[:, s : s + 1], a[:, s : s + 1], zi[:, s : s + 1])
        outputs.append(y_s)
        inputs.append((y_s, rows))
    grad = grad_y
    grads_b, grads_a, grads_zi = [None] * n_sections, [None] * n_sections, [None] * n_sections
    for s in reversed(range(n_sections)):
        signal, index = inputs[s]
        grad, grads_b[s], grads_a[s], grads_zi[s] = _section_adjoint(
            forward, grad, grad_zf[:, s], signal, index, outputs[s], b[:, s], a[:, s]
        )
    grad_x = torch.zeros_like(x).index_add(0, x_index, grad.to(x.dtype))
    return grad_x, torch.stack(grads_b, 1), torch.stack(grads_a, 1), torch.stack(grads_zi, 1)
