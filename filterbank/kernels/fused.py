"""Inference kernel: filter and take frame energies in one pass, never writing the band signals.

    energy[p] = frame_energy(iir_cascade(x, ...)[0][p] masked past limits[p], window, hop, offset, n_frames)

The feature extractor's forward without gradients: the numba forward of
``cpu.py`` runs the cascade tile by tile, and each block of its output is
reduced to frame energies while still in cache (the polyphase block kernels
of ``frames.py``), so the (channels, time) band signals are never stored.
Samples at or past ``limits[p]`` count as zero (a zero-padded batch).
``reference_iir_cascade_frame_energy`` composes the two unfused kernels and is
what the tests compare with.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from . import cpu as _cpu
from . import frames as _frames
from ._simd import group_width, vabs, vfma, vload, vmul, vsplat, vstore

__all__ = ["iir_cascade_frame_energy", "reference_iir_cascade_frame_energy"]

_JIT = _cpu._JIT


@numba.njit(**_JIT)
def _flush(sums, energy, lane_channel, first, n, frame, n_frames):
    # energy[channel of lane c, frame - k] += sums[k, c] for the frames that exist.
    for k in range(3):
        f = frame - k
        if 0 <= f < n_frames:
            for c in range(n):
                energy[lane_channel[first + c], f] += sums[k, c]
        sums[k, :] = 0


@numba.njit(**_JIT)
def _accumulate(out, row, length, n, kernels, square, phase, sums):
    """Add rows [row, row + length) of the block (samples at hop phases phase + [0, length)) to sums.

    All lanes valid: the three running sums of a lane group stay in vector
    registers over the whole stretch.
    """
    group = group_width(out.itemsize)
    for cg in range(0, n, group):
        a0 = vload(sums[0], cg)
        a1 = vload(sums[1], cg)
        a2 = vload(sums[2], cg)
        for t in range(length):
            v = vload(out[row + t], cg)
            e = vmul(v, v) if square else vabs(v)
            r = phase + t
            a0 = vfma(vsplat(out, kernels[0, r]), e, a0)
            a1 = vfma(vsplat(out, kernels[1, r]), e, a1)
            a2 = vfma(vsplat(out, kernels[2, r]), e, a2)
        vstore(sums[0], cg, a0)
        vstore(sums[1], cg, a1)
        vstore(sums[2], cg, a2)


@numba.njit(**_JIT)
def _accumulate_limited(out, row, t0, length, n, kernels, square, phase, sums, limit):
    """As ``_accumulate`` (rows from ``row``, samples from time ``t0``), counting lane c's samples at or past
    ``limit[c]`` as zero (the padded tail)."""
    for t in range(length):
        now = t0 + t
        w0, w1, w2 = kernels[0, phase + t], kernels[1, phase + t], kernels[2, phase + t]
        for c in range(n):
            v = out[row + t, c]
            e = (v * v if square else abs(v)) if now < limit[c] else v - v
            sums[0, c] += w0 * e
            sums[1, c] += w1 * e
            sums[2, c] += w2 * e


@numba.njit(parallel=True, **_JIT)
def _kernel(x, lane_channel, lane_row, tile_kind, b, a, zi, kernels, d_first, square, limits, energy, width, block):
    n_channels = energy.shape[0]
    n_frames = energy.shape[1]
    n_time = x.shape[1]
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    hop = kernels.shape[1]
    n_blocks = (n_time + block - 1) // block
    for tile in prange(tile_kind.shape[0]):
        first = tile * width
        n = min(width, n_channels - first)
        shared_input = tile_kind[tile] == _cpu._SHARED
        bn, an, z = _cpu._load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), x.dtype)
        shared = np.zeros(order + block, x.dtype)
        limit = np.zeros(width, np.int64)
        all_valid = n_time  # samples before which every lane of the tile is real
        for c in range(n):
            limit[c] = limits[lane_channel[first + c]]
            all_valid = min(all_valid, limit[c])
        # The running sums of the three frames the current hop block feeds.
        sums = np.zeros((3, width), x.dtype)
        out = signals[n_sections]
        for j in range(n_blocks):
            t0 = j * block
            length = min(block, n_time - t0)
            _cpu._load_input(x, lane_row, first, n, shared_input, t0, length, order, signals[0], shared)
            _cpu._run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            # Walk the block in stretches that end at hop boundaries.
            t = 0
            while t < length:
                now = t0 + t
                phase = now % hop
                stretch = min(length - t, hop - phase)
                if now + stretch <= all_valid:
                    _accumulate(out, order + t, stretch, n, kernels, square, phase, sums)
                else:
                    _accumulate_limited(out, order + t, now, stretch, n, kernels, square, phase, sums, limit)
                t += stretch
                if phase + stretch == hop or now + stretch == n_time:
                    _flush(sums, energy, lane_channel, first, n, now // hop - d_first, n_frames)
            if j < n_blocks - 1:
                _cpu._shift_history(signals, shared, length, order)


def _check(x: Tensor, b: Tensor, limits: Tensor) -> None:
    if x.device.type != "cpu":
        raise ValueError(f"the fused kernel runs on the CPU; got a tensor on {x.device}")
    if limits.shape != (b.shape[0],):
        raise ValueError(f"limits must have shape ({b.shape[0]},) (one per channel); got {tuple(limits.shape)}")


def iir_cascade_frame_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor,
) -> Tensor:
    """Frame energies of the filtered channels, (P, n_frames); shapes as ``cpu.iir_cascade``, limits (P,) int64."""
    _check(x, b, limits)
    dtype = _cpu._compute_dtype(x.dtype)
    xc = x.to(dtype).contiguous()
    if bool((a[..., 0] == 0).any()):
        raise ValueError("a[..., 0] must be non-zero")
    bc, ac, zc = (t.to(dtype).contiguous() for t in (b, a, zi))
    n_channels, order = b.shape[0], b.shape[2] - 1
    energy = torch.zeros((n_channels, n_frames), dtype=dtype)
    if n_channels and n_frames and x.shape[-1]:
        kernels, d_first = _frames._block_kernels(window.to(dtype).contiguous().numpy(), hop, offset)
        width = _cpu._width(n_channels, energy.element_size())
        lane_channel, lane_row, _, _, _, tile_kind = _cpu._plan(x_index.numpy(), width)
        _kernel(xc.numpy(), lane_channel, lane_row, tile_kind, bc.numpy(), ac.numpy(), zc.numpy(), kernels, d_first,
                square, limits.to(torch.int64).contiguous().numpy(), energy.numpy(), width, _cpu._block(order))
    return energy.to(x.dtype)


def reference_iir_cascade_frame_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor,
) -> Tensor:
    """The same from the unfused kernels: filter, zero past the limits, frame energies."""
    _check(x, b, limits)
    y, _ = _cpu.iir_cascade(x, x_index, b, a, zi)
    keep = torch.arange(y.shape[-1]) < limits.unsqueeze(-1)
    return _frames.reference_frame_energy(y * keep, window, hop, offset, n_frames, square)
