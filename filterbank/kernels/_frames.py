"""numba kernels for frame energies: a windowed sum of band energies once per hop, forward and backward.

    E[p, f] = sum_i window[i] * e(y[p, f * hop - offset + i])   (zero outside [0, T))
    e(v) = v^2 (square) or |v| (abs)

The forward reads ``y`` once; the backward reads it once more and writes
only the gradient.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["fits", "block_kernels", "forward", "backward"]

# Reassociation lets the window sums vectorise; they are short (2 x hop terms).
JIT = dict(nogil=True, cache=True, fastmath={"contract", "reassoc", "nsz"}, boundscheck=False)


# Polyphase by blocks of ``hop`` samples: with t = (f + d) hop + r, the window
# index is i = d hop + r + offset, so the window splits into D short kernels
# K[d, r] = window[d hop + r + offset] (zero outside the window), and block b
# adds dot(K[d], e(block b)) to frame b - d. Each dot product is a fixed-length
# reduction over contiguous samples, which LLVM vectorises: measured at the
# speed of reading y once (13 ms for 4096 x 16000 float32 on 2 cores, against
# 38 ms for one dot product of the whole window per frame).


def _span(length: int, hop: int, offset: int) -> tuple[int, int]:
    """``(d_first, d_last)``: the first and last block offsets whose kernel is not all zero."""
    d_first = -((offset + hop - 1) // hop)           # smallest d with d hop + hop - 1 + offset >= 0
    d_last = (length - 1 - offset) // hop            # largest d with d hop + offset <= length - 1
    return d_first, d_last


def fits(length: int, hop: int, offset: int) -> bool:
    """Whether a window of ``length`` samples starting ``offset`` before each frame touches at most 3 hop blocks.

    The kernels keep three running sums (a window up to about 2 hops long,
    as every front-end window is); longer windows take the reference.
    """
    d_first, d_last = _span(length, hop, offset)
    return d_last - d_first + 1 <= 3


def block_kernels(window: np.ndarray, hop: int, offset: int) -> tuple[np.ndarray, int]:
    """(K (3, hop), d_first): K[k, r] = window[(d_first + k) hop + r + offset], zero elsewhere."""
    length = window.shape[0]
    assert fits(length, hop, offset), "the window touches more than 3 hop blocks"
    d_first, _ = _span(length, hop, offset)
    index = (d_first + np.arange(3))[:, None] * hop + np.arange(hop) + offset
    inside = (index >= 0) & (index < length)
    kernels = np.where(inside, window[np.clip(index, 0, length - 1)], 0).astype(window.dtype)
    return kernels, d_first


@numba.njit(parallel=True, **JIT)
def forward(y, kernels, d_first, square, out):
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


@numba.njit(parallel=True, **JIT)
def backward(grad, y, kernels, d_first, square, grad_y):
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
