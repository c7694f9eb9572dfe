"""Frame energy kernels: a windowed sum of band energies once per hop.

    E[p, f] = sum_i window[i] * e(y[p, f * hop - offset + i])   (zero outside [0, T))
    e(v) = v^2 (square) or |v| (abs)

``reference`` (pure torch, any device, differentiable, also in ``window``) and
``cpu`` (numba: reads ``y`` once forward and once backward, and stores nothing
of full size but the gradient) share one signature:

    energy = frame_energy(y, window, hop, offset, n_frames, square)
    grad_y = frame_energy_backward(grad, y, window, hop, offset, square)

y: (P, T); window: (W,); energy, grad: (P, n_frames).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import prange
from torch import Tensor

from ._memory import empty as _empty

__all__ = ["reference_frame_energy", "cpu_frame_energy", "cpu_frame_energy_backward"]

# Reassociation lets the window sums vectorise; they are short (2 x hop terms).
_JIT = dict(nogil=True, cache=True, fastmath={"contract", "reassoc"}, boundscheck=False)


def reference_frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """Pure torch, obviously right: unfold the padded energies into frames."""
    length = window.shape[0]
    n_time = y.shape[-1]
    power = y.square() if square else y.abs()
    right = max(0, (n_frames - 1) * hop - offset + length - n_time)
    padded = F.pad(power, (offset, right))
    frames = padded.unfold(-1, length, hop)[..., :n_frames, :]  # (P, n_frames, W)
    return frames @ window


# Each channel's energies go through a zero-padded buffer (a row of a few
# tens of KB, in L1/L2), so that every frame is a fixed-length dot product
# with the window that LLVM vectorises: no bounds inside the loops.


@numba.njit(parallel=True, **_JIT)
def _forward(y, window, hop, offset, square, out):
    n_channels, n_time = y.shape
    n_frames = out.shape[1]
    length = window.shape[0]
    padded = (n_frames - 1) * hop + length
    stop = min(n_time, padded - offset)
    for p in prange(n_channels):
        row = y[p]
        buffer = np.zeros(padded, y.dtype)
        if square:
            for t in range(stop):
                v = row[t]
                buffer[offset + t] = v * v
        else:
            for t in range(stop):
                buffer[offset + t] = abs(row[t])
        for f in range(n_frames):
            segment = buffer[f * hop : f * hop + length]
            total = window[0] - window[0]  # zero in the window's dtype, so the sum stays in it
            for i in range(length):
                total += window[i] * segment[i]
            out[p, f] = total


@numba.njit(parallel=True, **_JIT)
def _backward(grad, y, window, hop, offset, square, grad_y):
    n_channels, n_time = y.shape
    n_frames = grad.shape[1]
    length = window.shape[0]
    padded = max((n_frames - 1) * hop + length, offset + n_time)
    for p in prange(n_channels):
        # d E[f] / d e(y[t]) = window[t - f hop + offset]: spread each frame's
        # gradient over its window, then the chain rule through e.
        buffer = np.zeros(padded, y.dtype)
        for f in range(n_frames):
            segment = buffer[f * hop : f * hop + length]
            g = grad[p, f]
            for i in range(length):
                segment[i] += window[i] * g
        values = y[p]
        row = grad_y[p]
        if square:
            for t in range(n_time):
                row[t] = 2 * values[t] * buffer[offset + t]
        else:
            for t in range(n_time):
                row[t] = np.sign(values[t]) * buffer[offset + t]


def _compute(tensor: Tensor) -> Tensor:
    dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    return tensor.to(dtype).contiguous()


def cpu_frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """numba forward; float16/bfloat16 computed in float32."""
    yc, wc = _compute(y), _compute(window)
    out = torch.empty((y.shape[0], n_frames), dtype=yc.dtype)
    if y.shape[0]:
        _forward(yc.numpy(), wc.numpy(), hop, offset, square, out.numpy())
    return out.to(y.dtype)


def cpu_frame_energy_backward(grad: Tensor, y: Tensor, window: Tensor, hop: int, offset: int, square: bool) -> Tensor:
    """numba backward: the gradient for ``y`` (P, T)."""
    yc, wc, gc = _compute(y), _compute(window), _compute(grad)
    grad_y = _empty(tuple(y.shape), yc.dtype)
    if y.shape[0]:
        _backward(gc.numpy(), yc.numpy(), wc.numpy(), hop, offset, square, grad_y.numpy())
    return grad_y.to(y.dtype)

