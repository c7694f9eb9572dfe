"""numba CPU kernels for a cascade of IIR sections, forward and backward.

Same contract as ``filterbank.kernels.reference`` (see there for shapes).

How the work is laid out (../shared/DESIGN.md, "The maths the kernels implement"):

* **Lanes, groups and tiles.** Channels are sorted by the input row they read
  and cut into tiles of up to ``LANE_WIDTH`` lanes; one thread runs one tile.
  Within a tile, lanes are processed in groups of 16 float32 (8 float64): one
  lane vector (``_simd.py``) per group, so a time step is a handful of vector
  FMAs whose coefficients and state stay in registers, while each lane's
  recurrence stays sequential in time. A tile whose lanes all read one row (a
  filterbank over one signal) reads that row once, as a scalar stream.
* **Time blocks.** Time is walked in blocks of ``block`` samples held in
  time-major buffers of shape ``(order + block, width)``; rows ``[0, order)``
  are the history carried from the previous block. Every section of a cascade
  runs in cache and the output is written once, by transposing 8x8 (float32)
  or 4x4 (float64) squares in registers and streaming whole cache lines to
  the output rows.
* **FIR and all-pole fused.** ``y[t] = sum_k b_k in[t-k] - sum_{k>=1} a_k y[t-k]``
  is one pass per section. The TDF-II initial state enters as
  ``y[t] += zi[t]`` for ``t < order``, and ``zf[i] = sum_{k>i} b_k in[T+i-k] -
  a_k y[T+i-k]`` (plus ``zi[T+i]`` when ``T + i < order``) is read off the
  last ``order`` samples, which the history rows always hold.
* **Backward.** The adjoint ``u[t] = g[t] - sum_{k>=1} a_k u[t+k]`` runs
  backwards in time, block by block, section by section, together with the
  input's adjoint ``sum_k b_k u[t+k]``; ``d/db_k = sum_t u[t] in[t-k]`` and
  ``d/da_k = -sum_t u[t] y[t-k]`` are summed per block in the compute dtype
  and across blocks in float64. Nothing is kept from the forward: the backward
  re-runs it once to keep each block's starting history (``order`` samples
  per signal), then recomputes each block from it on the way back (measured
  cheaper than reading the output back from memory). Extra memory is
  ``(sections + 1) * order / block`` of the output's size. Lanes that share
  an input row have their input adjoints summed before writing.

Loops count upwards: a numba ``range`` with a negative step hides the
direction from LLVM, whose alias checks then fail and leave loops scalar.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from ._memory import empty as _empty
from ._simd import (
    block_from_rows, group_width, rows_from_block, vadd, vector_width,
    vfma, vfnma, vload, vmul, vsplat, vstore, vsum,
)

__all__ = ["iir_cascade", "iir_cascade_backward", "LANE_WIDTH", "BLOCK"]

# FMA contraction is the only relaxation: no reassociation, so each
# recurrence is evaluated in the order written.
_JIT = dict(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False)

# Lanes per tile (at most): four float32 lane groups, or four float64 ones.
LANE_WIDTH = {4: 64, 8: 32}
# Samples per time block: the backward's buffers for a biquad tile stay in L2.
BLOCK = 128
# Tile kinds: how the lanes of a tile map to input rows.
_MIXED, _SHARED, _DISTINCT = 0, 1, 2


# --------------------------------------------------------------------------
# Moving data between channel rows and time-major tile buffers.


@numba.njit(**_JIT)
def _rows_to_block(src, row_ids, first, n, t0, length, buffer, r0):
    """``buffer[r0 + t, c] = src[row_ids[first + c], t0 + t]``."""
    v = vector_width(buffer.itemsize)
    n_vec = n - n % v
    l_vec = length - length % v
    for cv in range(0, n_vec, v):
        for tv in range(0, l_vec, v):
            block_from_rows(buffer, r0 + tv, cv, src, row_ids, first + cv, t0 + tv)
        for c in range(cv, cv + v):
            row = src[row_ids[first + c]]
            for t in range(l_vec, length):
                buffer[r0 + t, c] = row[t0 + t]
    for c in range(n_vec, n):
        row = src[row_ids[first + c]]
        for t in range(length):
            buffer[r0 + t, c] = row[t0 + t]


@numba.njit(**_JIT)
def _block_to_rows(buffer, r0, dst, row_ids, first, n, t0, length):
    """``dst[row_ids[first + c], t0 + t] = buffer[r0 + t, c]``.

    Each group of ``v`` rows is written in time order, one 64-byte line per row
    at a time, so the streaming stores fill whole cache lines (measured: half
    lines, or rows visited in another order, run several times slower).
    """
    v = vector_width(buffer.itemsize)
    line = 2 * v
    n_vec = n - n % v
    l_vec = length - length % line
    for cv in range(0, n_vec, v):
        for tv in range(0, l_vec, line):
            rows_from_block(buffer, r0 + tv, cv, dst, row_ids, first + cv, t0 + tv)
        for c in range(cv, cv + v):
            row = dst[row_ids[first + c]]
            for t in range(l_vec, length):
                row[t0 + t] = buffer[r0 + t, c]
    for c in range(n_vec, n):
        row = dst[row_ids[first + c]]
        for t in range(length):
            row[t0 + t] = buffer[r0 + t, c]


@numba.njit(**_JIT)
def _load_coefficients(b, a, zi, lane_channel, first, n, width):
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    dtype = b.dtype
    # Normalised by a0, lanes last. Lanes past n keep zero coefficients, so
    # the padding lanes of the last group compute zeros.
    bn = np.zeros((n_sections, order + 1, width), dtype)
    an = np.zeros((n_sections, order + 1, width), dtype)
    z = np.zeros((n_sections, max(order, 1), width), dtype)
    for c in range(n):
        p = lane_channel[first + c]
        for s in range(n_sections):
            a0 = a[p, s, 0]
            for k in range(order + 1):
                bn[s, k, c] = b[p, s, k] / a0
                an[s, k, c] = a[p, s, k] / a0
            for k in range(order):
                z[s, k, c] = zi[p, s, k]
    return bn, an, z


# --------------------------------------------------------------------------
# One section over one block, every lane group.


@numba.njit(**_JIT)
def _section(inp, xs, shared_input, out, bs, as_, zs, t0, length, order, n):
    """``out[r] = sum_k b_k in[r-k] - sum_{k>=1} a_k out[r-k]`` for r in [order, order + length).

    ``inp``, ``out``: (order + block, width); ``xs``: (order + block,), the
    shared input used instead of ``inp`` when ``shared_input``.
    """
    group = group_width(out.itemsize)
    for cg in range(0, n, group):
        if order == 2:
            b0, b1, b2 = vload(bs[0], cg), vload(bs[1], cg), vload(bs[2], cg)
            a1, a2 = vload(as_[1], cg), vload(as_[2], cg)
            y1, y2 = vload(out[1], cg), vload(out[0], cg)
            if shared_input:
                x1, x2 = xs[1], xs[0]
                for t in range(length):
                    x0 = xs[2 + t]
                    v = vfma(b0, vsplat(out, x0), vfma(b1, vsplat(out, x1), vmul(b2, vsplat(out, x2))))
                    v = vfnma(a1, y1, vfnma(a2, y2, v))
                    if t0 + t < 2:
                        v = vadd(v, vload(zs[t0 + t], cg))
                    vstore(out[2 + t], cg, v)
                    y2, y1, x2, x1 = y1, v, x1, x0
            else:
                x1, x2 = vload(inp[1], cg), vload(inp[0], cg)
                for t in range(length):
                    x0 = vload(inp[2 + t], cg)
                    v = vfma(b0, x0, vfma(b1, x1, vmul(b2, x2)))
                    v = vfnma(a1, y1, vfnma(a2, y2, v))
                    if t0 + t < 2:
                        v = vadd(v, vload(zs[t0 + t], cg))
                    vstore(out[2 + t], cg, v)
                    y2, y1, x2, x1 = y1, v, x1, x0
            continue
        for t in range(length):
            r = order + t
            if shared_input:
                v = vmul(vload(bs[0], cg), vsplat(out, xs[r]))
            else:
                v = vmul(vload(bs[0], cg), vload(inp[r], cg))
            for k in range(1, order + 1):
                if shared_input:
                    v = vfma(vload(bs[k], cg), vsplat(out, xs[r - k]), v)
                else:
                    v = vfma(vload(bs[k], cg), vload(inp[r - k], cg), v)
                v = vfnma(vload(as_[k], cg), vload(out[r - k], cg), v)
            if t0 + t < order:
                v = vadd(v, vload(zs[t0 + t], cg))
            vstore(out[r], cg, v)


@numba.njit(**_JIT)
def _adjoint_section(us, g, g_in, lane_sum, sum_lanes, bs, as_, length, order, n):
    """Backwards over one block: ``u[t] = g[t] - sum_k a_k u[t+k]`` and the
    input's adjoint ``sum_k b_k u[t+k]``.

    ``us``: (block + order, width), rows ``[length, length + order)`` hold the
    adjoint of the next samples. The input's adjoint goes to ``g_in`` rows, or,
    when ``sum_lanes``, is summed over groups into ``lane_sum`` rows (block,
    group) so that one horizontal sum per sample remains.
    """
    group = group_width(us.itemsize)
    for cg in range(0, n, group):
        first_group = cg == 0
        if order == 2:
            b0, b1, b2 = vload(bs[0], cg), vload(bs[1], cg), vload(bs[2], cg)
            a1, a2 = vload(as_[1], cg), vload(as_[2], cg)
            u1, u2 = vload(us[length], cg), vload(us[length + 1], cg)
            for i in range(length):
                t = length - 1 - i
                u = vfnma(a1, u1, vfnma(a2, u2, vload(g[t], cg)))
                vstore(us[t], cg, u)
                w = vfma(b0, u, vfma(b1, u1, vmul(b2, u2)))
                if not sum_lanes:
                    vstore(g_in[t], cg, w)
                elif first_group:
                    vstore(lane_sum[t], 0, w)
                else:
                    vstore(lane_sum[t], 0, vadd(vload(lane_sum[t], 0), w))
                u2, u1 = u1, u
            continue
        for i in range(length):
            t = length - 1 - i
            u = vload(g[t], cg)
            for k in range(1, order + 1):
                u = vfnma(vload(as_[k], cg), vload(us[t + k], cg), u)
            vstore(us[t], cg, u)
            w = vmul(vload(bs[0], cg), u)
            for k in range(1, order + 1):
                w = vfma(vload(bs[k], cg), vload(us[t + k], cg), w)
            if not sum_lanes:
                vstore(g_in[t], cg, w)
            elif first_group:
                vstore(lane_sum[t], 0, w)
            else:
                vstore(lane_sum[t], 0, vadd(vload(lane_sum[t], 0), w))


@numba.njit(**_JIT)
def _coefficient_sums(us, inp, xs, shared_input, out, sums, length, order, n):
    """Per block: ``sums[k] = sum_t u[t] in[t-k]`` (k <= order) and
    ``sums[order + k] = sum_t u[t] out[t-k]`` (1 <= k <= order), per lane."""
    group = group_width(us.itemsize)
    for cg in range(0, n, group):
        zero = vsplat(us, 0.0)
        if order == 2:
            c0, c1, c2, d1, d2 = zero, zero, zero, zero, zero
            for t in range(length):
                r = 2 + t
                u = vload(us[t], cg)
                if shared_input:
                    c0 = vfma(u, vsplat(us, xs[r]), c0)
                    c1 = vfma(u, vsplat(us, xs[r - 1]), c1)
                    c2 = vfma(u, vsplat(us, xs[r - 2]), c2)
                else:
                    c0 = vfma(u, vload(inp[r], cg), c0)
                    c1 = vfma(u, vload(inp[r - 1], cg), c1)
                    c2 = vfma(u, vload(inp[r - 2], cg), c2)
                d1 = vfma(u, vload(out[r - 1], cg), d1)
                d2 = vfma(u, vload(out[r - 2], cg), d2)
            vstore(sums[0], cg, c0)
            vstore(sums[1], cg, c1)
            vstore(sums[2], cg, c2)
            vstore(sums[3], cg, d1)
            vstore(sums[4], cg, d2)
            continue
        for k in range(order + 1):
            acc = zero
            for t in range(length):
                r = order + t
                u = vload(us[t], cg)
                if shared_input:
                    acc = vfma(u, vsplat(us, xs[r - k]), acc)
                else:
                    acc = vfma(u, vload(inp[r - k], cg), acc)
            vstore(sums[k], cg, acc)
            if k == 0:
                continue
            acc = zero
            for t in range(length):
                acc = vfma(vload(us[t], cg), vload(out[order + t - k], cg), acc)
            vstore(sums[order + k], cg, acc)


@numba.njit(inline="always", **_JIT)
def _run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n):
    for s in range(bn.shape[0]):
        _section(signals[s], shared, shared_input and s == 0, signals[s + 1],
                 bn[s], an[s], z[s], t0, length, order, n)


@numba.njit(inline="always", **_JIT)
def _shift_history(signals, shared, length, order):
    # Rows [length, length + order) become the history rows [0, order). A short
    # block (length < order) overlaps them; copying upwards is still safe.
    for h in range(order):
        shared[h] = shared[length + h]
        for s in range(signals.shape[0]):
            signals[s, h, :] = signals[s, length + h, :]


@numba.njit(inline="always", **_JIT)
def _load_input(x, lane_row, first, n, shared_input, t0, length, order, signal0, shared):
    if shared_input:
        src = x[lane_row[first]]
        for t in range(length):
            shared[order + t] = src[t0 + t]
    else:
        _rows_to_block(x, lane_row, first, n, t0, length, signal0, order)


@numba.njit(inline="always", **_JIT)
def _input_value(signals, shared, shared_input, s, r, c):
    if s == 0 and shared_input:
        return shared[r]
    return signals[s, r, c]


# --------------------------------------------------------------------------
# Forward.


@numba.njit(parallel=True, **_JIT)
def _forward_kernel(x, lane_channel, lane_row, tile_kind, b, a, zi, y, zf, width, block):
    n_channels, n_time = y.shape
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    n_blocks = (n_time + block - 1) // block
    for tile in prange(tile_kind.shape[0]):
        first = tile * width
        n = min(width, n_channels - first)
        shared_input = tile_kind[tile] == _SHARED
        bn, an, z = _load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), y.dtype)
        shared = np.zeros(order + block, y.dtype)
        for j in range(n_blocks):
            t0 = j * block
            length = min(block, n_time - t0)
            _load_input(x, lane_row, first, n, shared_input, t0, length, order, signals[0], shared)
            _run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            _block_to_rows(signals[n_sections], order, y, lane_channel, first, n, t0, length)
            if j < n_blocks - 1:
                _shift_history(signals, shared, length, order)
        # zf from the last ``order`` samples: rows order + (T + i - k) - t0 of the
        # last block's buffers, history rows included (zero for t < 0).
        t0 = max(0, n_blocks - 1) * block
        for c in range(n):
            p = lane_channel[first + c]
            for s in range(n_sections):
                for i in range(order):
                    acc = 0.0
                    for k in range(i + 1, order + 1):
                        r = order + n_time + i - k - t0
                        acc += bn[s, k, c] * _input_value(signals, shared, shared_input, s, r, c)
                        acc -= an[s, k, c] * signals[s + 1, r, c]
                    if n_time + i < order:
                        acc += z[s, n_time + i, c]
                    zf[p, s, i] = acc


# --------------------------------------------------------------------------
# Backward.


@numba.njit(parallel=True, **_JIT)
def _backward_kernel(
    grad_y, grad_zf, x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind,
    b, a, zi, grad_x_part, grad_b, grad_a, grad_zi, width, block,
):
    n_channels, n_time = grad_y.shape
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    n_blocks = (n_time + block - 1) // block
    dtype = grad_y.dtype
    group = group_width(grad_y.itemsize)
    for tile in prange(tile_kind.shape[0]):
        first = tile * width
        n = min(width, n_channels - first)
        kind = tile_kind[tile]
        shared_input = kind == _SHARED
        bn, an, z = _load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), dtype)
        shared = np.zeros(order + block, dtype)

        # Pass 1: the forward again, keeping each block's starting history.
        # (Recomputing a block costs less than reading the output back.)
        hist = np.zeros((n_blocks, n_sections + 1, max(order, 1), width), dtype)
        hist_shared = np.zeros((n_blocks, max(order, 1)), dtype)
        for j in range(n_blocks - 1):
            for h in range(order):
                hist_shared[j, h] = shared[h]
                for s in range(n_sections + 1):
                    hist[j, s, h, :] = signals[s, h, :]
            t0 = j * block
            length = min(block, n_time - t0)
            _load_input(x, lane_row, first, n, shared_input, t0, length, order, signals[0], shared)
            _run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            _shift_history(signals, shared, length, order)
        for h in range(order if n_blocks else 0):
            hist_shared[n_blocks - 1, h] = shared[h]
            for s in range(n_sections + 1):
                hist[n_blocks - 1, s, h, :] = signals[s, h, :]

        # Pass 2: blocks backwards. u[s] rows [0, length) hold the adjoint of
        # section s's all-pole input over the block, rows [length, length +
        # order) that of the next ``order`` samples (zero past the end).
        u = np.zeros((n_sections, block + order, width), dtype)
        g = np.zeros((block, width), dtype)
        g_in = np.zeros((block, width), dtype)
        lane_sum = np.zeros((block, group), dtype)
        x_adjoint = np.zeros(block, dtype)
        sums = np.zeros((2 * order + 1, width), dtype)
        gbn = np.zeros((n_sections, order + 1, width), np.float64)
        gan = np.zeros((n_sections, order + 1, width), np.float64)
        gz = np.zeros((n_sections, max(order, 1), width), np.float64)
        for jj in range(n_blocks):
            j = n_blocks - 1 - jj
            t0 = j * block
            length = min(block, n_time - t0)
            for h in range(order):
                shared[h] = hist_shared[j, h]
                for s in range(n_sections + 1):
                    signals[s, h, :] = hist[j, s, h, :]
            _load_input(x, lane_row, first, n, shared_input, t0, length, order, signals[0], shared)
            _run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            _rows_to_block(grad_y, lane_channel, first, n, t0, length, g, 0)

            near_end = t0 + length > n_time - order
            for ss in range(n_sections):
                s = n_sections - 1 - ss
                us = u[s]
                out = signals[s + 1]
                sum_lanes = s == 0 and shared_input
                # A gradient on zf, zf[i] = sum_{k>i} b_k in[T+i-k] - a_k out[T+i-k],
                # reaches the samples T+i-k of this block.
                if near_end:
                    for c in range(n):
                        p = lane_channel[first + c]
                        for i in range(order):
                            gzf = grad_zf[p, s, i]
                            for k in range(i + 1, order + 1):
                                r = n_time + i - k - t0
                                if 0 <= r < length:
                                    g[r, c] -= an[s, k, c] * gzf
                                    gbn[s, k, c] += gzf * _input_value(signals, shared, shared_input, s, order + r, c)
                                    gan[s, k, c] -= gzf * out[order + r, c]
                _adjoint_section(us, g, g_in, lane_sum, sum_lanes, bn[s], an[s], length, order, n)
                _coefficient_sums(us, signals[s], shared, sum_lanes, out, sums, length, order, n)
                for c in range(n):
                    for k in range(order + 1):
                        gbn[s, k, c] += sums[k, c]
                    for k in range(1, order + 1):
                        gan[s, k, c] -= sums[order + k, c]
                for t in range(min(length, max(0, order - t0))):
                    for c in range(n):
                        gz[s, t0 + t, c] += us[t, c]
                if sum_lanes:
                    for t in range(length):
                        x_adjoint[t] = vsum(vload(lane_sum[t], 0))
                if near_end:
                    for c in range(n):
                        p = lane_channel[first + c]
                        for i in range(order):
                            gzf = grad_zf[p, s, i]
                            for k in range(i + 1, order + 1):
                                r = n_time + i - k - t0
                                if 0 <= r < length:
                                    if sum_lanes:
                                        x_adjoint[r] += bn[s, k, c] * gzf
                                    else:
                                        g_in[r, c] += bn[s, k, c] * gzf
                g, g_in = g_in, g
                # The adjoint of the next ``order`` samples, for the block before.
                if j > 0:
                    for h in range(order):
                        us[block + h, :] = us[h, :]

            # The adjoint of each lane's input: lanes of one run (same input
            # row, same tile) are summed into that run's partial row.
            if shared_input:
                dst = grad_x_part[lane_part[first]]
                for t in range(length):
                    dst[t0 + t] = x_adjoint[t]
            elif kind == _DISTINCT:
                _block_to_rows(g, 0, grad_x_part, lane_part, first, n, t0, length)
            else:
                for c in range(n):
                    lane = first + c
                    dst = grad_x_part[lane_part[lane]]
                    if lane_run_start[lane]:
                        for t in range(length):
                            dst[t0 + t] = g[t, c]
                    else:
                        for t in range(length):
                            dst[t0 + t] += g[t, c]

        # zf[i] also holds zi[T + i] when the signal is shorter than the state.
        for c in range(n):
            p = lane_channel[first + c]
            for s in range(n_sections):
                for i in range(order):
                    if n_time + i < order:
                        gz[s, n_time + i, c] += grad_zf[p, s, i]
        # Gradients of the raw coefficients from those of b / a0 and a / a0.
        for c in range(n):
            p = lane_channel[first + c]
            for s in range(n_sections):
                a0 = a[p, s, 0]
                ga0 = 0.0
                for k in range(order + 1):
                    grad_b[p, s, k] = gbn[s, k, c] / a0
                    ga0 -= gbn[s, k, c] * bn[s, k, c]
                    if k > 0:
                        grad_a[p, s, k] = gan[s, k, c] / a0
                        ga0 -= gan[s, k, c] * an[s, k, c]
                grad_a[p, s, 0] = ga0 / a0
                for k in range(order):
                    grad_zi[p, s, k] = gz[s, k, c]


# --------------------------------------------------------------------------
# Entry points (torch in, torch out).


_PLANS: dict = {}


def _plan(x_index: np.ndarray, width: int):
    """``_make_plan``, remembered for the last few layouts (streaming asks for the same one every block)."""
    key = (x_index.tobytes(), width)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 32:
            _PLANS.pop(next(iter(_PLANS)))
        plan = _PLANS[key] = _make_plan(x_index, width)
    return plan


def _make_plan(x_index: np.ndarray, width: int):
    """Sort channels by input row; describe tiles and runs of shared rows.

    Returns per lane (sorted order): the channel, its input row, its partial
    row (one per run of equal rows within a tile) and whether it starts a run;
    per run: its input row; per tile: its kind (mixed, shared or distinct).
    """
    n_channels = x_index.shape[0]
    lane_channel = np.argsort(x_index, kind="stable").astype(np.int64)
    lane_row = np.ascontiguousarray(x_index[lane_channel], dtype=np.int64)
    lanes = np.arange(n_channels)
    run_start = lanes % width == 0
    run_start[1:] |= lane_row[1:] != lane_row[:-1]
    lane_part = (np.cumsum(run_start) - 1).astype(np.int64)
    part_row = lane_row[run_start]
    tile_starts = np.arange(0, n_channels, width)
    runs_per_tile = np.add.reduceat(run_start.astype(np.int64), tile_starts)
    lanes_per_tile = np.minimum(width, n_channels - tile_starts)
    tile_kind = np.full(tile_starts.shape, _MIXED, np.uint8)
    tile_kind[runs_per_tile == lanes_per_tile] = _DISTINCT
    tile_kind[runs_per_tile == 1] = _SHARED
    return lane_channel, lane_row, lane_part, run_start.astype(np.uint8), part_row, tile_kind


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # numba has no half-precision arithmetic: float16/bfloat16 compute in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _width(n_channels: int, itemsize: int) -> int:
    """Lanes per tile: full tiles, or fewer so that every thread gets one."""
    group = 64 // itemsize
    per_thread = -(-n_channels // max(1, numba.get_num_threads()))
    return min(LANE_WIDTH[itemsize], max(group, -(-per_thread // group) * group))


def _block(order: int) -> int:
    return max(BLOCK, -(-order // 16) * 16)


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Forward kernel; see ``filterbank.kernels.reference.iir_cascade``."""
    dtype = _compute_dtype(x.dtype)
    xc = x.to(dtype).contiguous()
    bc, ac, zc = (t.to(dtype).contiguous() for t in (b, a, zi))
    n_channels, n_sections, order = b.shape[0], b.shape[1], b.shape[2] - 1
    n_time = x.shape[-1]
    y = _empty((n_channels, n_time), dtype)
    zf = torch.empty((n_channels, n_sections, order), dtype=dtype)
    if n_channels:
        width = _width(n_channels, y.element_size())
        lane_channel, lane_row, _, _, _, tile_kind = _plan(x_index.numpy(), width)
        _forward_kernel(
            xc.numpy(), lane_channel, lane_row, tile_kind,
            bc.numpy(), ac.numpy(), zc.numpy(), y.numpy(), zf.numpy(), width, _block(order),
        )
    return y.to(x.dtype), zf.to(x.dtype)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward kernel; see ``filterbank.kernels.reference.iir_cascade_backward``."""
    dtype = _compute_dtype(x.dtype)
    xc = x.to(dtype).contiguous()
    bc, ac, zc = (t.to(dtype).contiguous() for t in (b, a, zi))
    gy = grad_y.to(dtype)
    if not gy.is_contiguous():
        # E.g. the expanded gradient of a sum: copy into a (recycled) huge-page buffer.
        gy = _empty(tuple(gy.shape), dtype).copy_(gy)
    gzf = grad_zf.to(dtype).contiguous()
    n_channels = b.shape[0]
    n_sections, order = b.shape[1], b.shape[2] - 1
    n_rows, n_time = x.shape
    grad_b = torch.empty_like(bc)
    grad_a = torch.empty_like(ac)
    grad_zi = torch.empty_like(zc)
    if not n_channels:
        return torch.zeros_like(x), grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)
    width = _width(n_channels, gy.element_size())
    lane_channel, lane_row, lane_part, run_start, part_row, tile_kind = _plan(x_index.numpy(), width)
    # One partial row per run of lanes sharing an input row; when each input
    # row has exactly one run, in order, the partial rows are grad_x itself.
    direct = part_row.shape[0] == n_rows and bool(np.all(part_row == np.arange(n_rows)))
    grad_x_part = _empty((part_row.shape[0], n_time), dtype)
    _backward_kernel(
        gy.numpy(), gzf.numpy(), xc.numpy(), lane_channel, lane_row, lane_part, run_start,
        tile_kind, bc.numpy(), ac.numpy(), zc.numpy(), grad_x_part.numpy(), grad_b.numpy(),
        grad_a.numpy(), grad_zi.numpy(), width, _block(order),
    )
    if direct:
        grad_x = grad_x_part
    else:
        grad_x = torch.zeros((n_rows, n_time), dtype=dtype)
        grad_x.index_add_(0, torch.from_numpy(part_row), grad_x_part)
    return grad_x.to(x.dtype), grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)
