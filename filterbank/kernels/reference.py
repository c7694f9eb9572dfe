"""Pure-torch reference for a cascade of IIR sections: slow, obviously right.

This is the ground truth the fast kernels are tested against. It runs scipy's
transposed direct form II literally, one time step at a time, vectorised only
across channels, and is differentiable by plain autograd (used by the tests to
check the hand-written backward kernels).

All kernels share one signature (see ``filterbank/_ops.py``)::

    y, zf = iir_cascade(x, x_index, b, a, zi)

    x:       (rows, time)             distinct input signals
    x_index: (channels,) int64        row of ``x`` each channel reads
    b, a:    (channels, sections, order + 1)   raw coefficients, a[..., 0] != 0
    zi:      (channels, sections, order)       initial TDF-II state per section
    y:       (channels, time)         output of the last section
    zf:      (channels, sections, order)       final state per section
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["iir_cascade", "iir_cascade_backward"]


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Filter each channel through its cascade of sections (TDF-II, as scipy).

    Equivalent Python loop, per channel and section (coefficients divided by a[0])::

        y[t] = b[0] x[t] + z[0]
        z[i] = z[i + 1] + b[i + 1] x[t] - a[i + 1] y[t]   (z[order] = 0)

    Args:
        x: (rows, time) float tensor.
        x_index: (channels,) int64, the row of ``x`` each channel reads.
        b, a: (channels, sections, order + 1), same dtype as ``x``.
        zi: (channels, sections, order), same dtype as ``x``.

    Returns:
        ``(y, zf)`` with y: (channels, time) and zf: (channels, sections, order).
    """
    compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    b = b.to(compute_dtype)
    a = a.to(compute_dtype)
    zi = zi.to(compute_dtype)
    signal = x.to(compute_dtype)[x_index]
    n_sections, order = b.shape[1], b.shape[2] - 1
    b = b / a[..., :1]
    a = a / a[..., :1]
    final_states = []
    for s in range(n_sections):
        z = zi[:, s, :]
        outputs = []
        for t in range(signal.shape[-1]):
            xt = signal[:, t]
            if order == 0:
                outputs.append(b[:, s, 0] * xt)
                continue
            yt = b[:, s, 0] * xt + z[:, 0]
            shifted = torch.cat([z[:, 1:], torch.zeros_like(z[:, :1])], dim=1)
            z = shifted + b[:, s, 1:] * xt[:, None] - a[:, s, 1:] * yt[:, None]
            outputs.append(yt)
        signal = torch.stack(outputs, dim=-1) if outputs else signal[:, :0]
        final_states.append(z)
    zf = torch.stack(final_states, dim=1)
    return signal.to(x.dtype), zf.to(x.dtype)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``iir_cascade`` by autograd through the reference loop.

    Args:
        grad_y: (channels, time); grad_zf: (channels, sections, order); the rest
            as in :func:`iir_cascade`.

    Returns:
        ``(grad_x, grad_b, grad_a, grad_zi)`` shaped like ``x, b, a, zi``.
    """
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (x, b, a, zi)]
        y, zf = iir_cascade(inputs[0], x_index, *inputs[1:])
        grads = torch.autograd.grad((y, zf), inputs, (grad_y, grad_zf), allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs))
