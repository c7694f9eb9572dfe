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
_JIT = dict(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz"}, boundscheck=False)


def reference_frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """Pure torch, obviously right: unfold the padded energies into frames."""
    length = window.shape[0]
    n_time = y.shape[-1]
    power = y.square() if square else y.abs()
    right = max(0, (n_frames - 1) * hop - offset + length - n_time)
    padded = F.pad(power, (offset, right))
    frames = padded.unfold(-1, length, hop)[..., :n_frames, :]  # (P, n_frames, W)
    return frames @ window


# Polyphase by blocks of ``hop`` samples: with t = (f + d) hop + r, the window
# index is i = d hop + r + offset, so the window splits into D short kernels
# K[d, r] = window[d hop + r + offset] (zero outside the window), and block b
# adds dot(K[d], e(block b)) to frame b - d. Each dot product is a fixed-length
# reduction over contiguous samples, which LLVM vectorises: measured at the
# speed of reading y once (13 ms for 4096 x 16000 float32 on 2 cores, against
# 38 ms for one dot product of the whole window per frame).


def _block_kernels(window: np.ndarray, hop: int, offset: int) -> tuple[np.ndarray, int]:
    """(K (3, hop), d_first): K[k, r] = window[(d_first + k) hop + r + offset], zero elsewhere."""
    length = window.shape[0]
    d_first = -((offset + hop - 1) // hop)           # smallest d with d hop + hop - 1 + offset >= 0
    d_last = (length - 1 - offset) // hop            # largest d with d hop + offset <= length - 1
    if d_last - d_first + 1 > 3:
        raise ValueError(f"the window ({length} samples, centred) must span at most 3 hops of {hop} samples")
    index = (d_first + np.arange(3))[:, None] * hop + np.arange(hop) + offset
    inside = (index >= 0) & (index < length)
    kernels = np.where(inside, window[np.clip(index, 0, length - 1)], 0).astype(window.dtype)
    return kernels, d_first


@numba.njit(parallel=True, **_JIT)
def _forward(y, kernels, d_first, square, out):
    # kernels: (3, hop), zero rows past the window's D kernels (D <= 3: a
    # window up to about 2 hop long), so three accumulators cover every case
    # in one pass over each block.
    n_channels, n_time = y.shape
    n_frames = out.shape[1]
    hop = kernels.shape[1]
    k0, k1, k2 = kernels[0], kernels[1], kernels[2]
    n_blocks = (n_time + hop - 1) // hop
    for p in prange(n_channels):
        row = y[p]
        frames = out[p]
        frames[:] = 0
        for b in range(n_blocks):
            start = b * hop
            width = min(hop, n_time - start)
            s0 = s1 = s2 = k0[0] - k0[0]  # zeros in the data's dtype
            if square:
                for r in range(width):
                    v = row[start + r]
                    s0 += k0[r] * (v * v)
                    s1 += k1[r] * (v * v)
                    s2 += k2[r] * (v * v)
            else:
                for r in range(width):
                    e = abs(row[start + r])
                    s0 += k0[r] * e
                    s1 += k1[r] * e
                    s2 += k2[r] * e
            for k, total in ((0, s0), (1, s1), (2, s2)):
                f = b - (d_first + k)
                if 0 <= f < n_frames:
                    frames[f] += total


@numba.njit(parallel=True, **_JIT)
def _backward(grad, y, kernels, d_first, square, grad_y):
    n_channels, n_time = y.shape
    n_frames = grad.shape[1]
    hop = kernels.shape[1]
    k0, k1, k2 = kernels[0], kernels[1], kernels[2]
    n_blocks = (n_time + hop - 1) // hop
    for p in prange(n_channels):
        values = y[p]
        row = grad_y[p]
        for b in range(n_blocks):
            # d E[f] / d e(y[t]) = K[d, r] for f = b - d: the frames' gradients, weighted.
            g0 = g1 = g2 = k0[0] - k0[0]
            f = b - d_first
            if 0 <= f < n_frames:
                g0 = grad[p, f]
            if 0 <= f - 1 < n_frames:
                g1 = grad[p, f - 1]
            if 0 <= f - 2 < n_frames:
                g2 = grad[p, f - 2]
            start = b * hop
            width = min(hop, n_time - start)
            if square:
                g0, g1, g2 = 2 * g0, 2 * g1, 2 * g2
                for r in range(width):
                    row[start + r] = (k0[r] * g0 + k1[r] * g1 + k2[r] * g2) * values[start + r]
            else:
                for r in range(width):
                    row[start + r] = (k0[r] * g0 + k1[r] * g1 + k2[r] * g2) * np.sign(values[start + r])


def _compute(tensor: Tensor) -> Tensor:
    dtype = torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    return tensor.to(dtype).contiguous()


def cpu_frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """numba forward; float16/bfloat16 computed in float32."""
    yc, wc = _compute(y), _compute(window)
    out = torch.zeros((y.shape[0], n_frames), dtype=yc.dtype)
    if y.shape[0] and y.shape[1]:
        kernels, d_first = _block_kernels(wc.numpy(), hop, offset)
        _forward(yc.numpy(), kernels, d_first, square, out.numpy())
    return out.to(y.dtype)


def cpu_frame_energy_backward(grad: Tensor, y: Tensor, window: Tensor, hop: int, offset: int, square: bool) -> Tensor:
    """numba backward: the gradient for ``y`` (P, T)."""
    yc, wc, gc = _compute(y), _compute(window), _compute(grad)
    grad_y = _empty(tuple(y.shape), yc.dtype)
    if y.shape[0] and y.shape[1]:
        kernels, d_first = _block_kernels(wc.numpy(), hop, offset)
        _backward(gc.numpy(), yc.numpy(), kernels, d_first, square, grad_y.numpy())
    return grad_y.to(y.dtype)

