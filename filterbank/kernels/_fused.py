"""numba kernel that filters and takes frame energies in one pass, never writing the band signals.

    energy[p] = frame_energy(iir_cascade(x, ...)[0][p] masked past limits[p], window, hop, offset, n_frames)

For training it also saves each section's output history every ``spacing``
samples (a multiple of ``block``: ``checkpoints`` (ceil(T / spacing), S,
order, P)), from which ``_cascade.backward`` recomputes the band signals
segment by segment.

The cascade runs tile by tile as in ``_cascade.py``, and each block of its
output is reduced to frame energies while still in cache (the polyphase
block kernels of ``_frames.py``), so the (channels, time) band signals are
never stored. Samples at or past ``limits[p]`` count as zero (a zero-padded
batch). The tiles run on numba's threads through a ``cfunc``
(``_threads.py``), not a parfor: measured on the 2-core machine, a first
call with an empty cache compiled for 6.6 s against 12.2 s as a parfor.
"""

from __future__ import annotations

import numba
import numpy as np

from ._simd import borrow, flush_subnormals, group_width, restore_subnormals, vabs, vfma, vload, vmul, vsplat, vstore
from ._threads import array3, array4, compiled, launch, matrix, pack, slots_of, tiles_of, value, vector
from ._tiles import JIT, SHARED, load_coefficients, load_input, run_sections, shift_history

__all__ = ["forward"]


@numba.njit(**JIT)
def flush(sums, energy, lane_channel, first, n, frame, n_frames):
    # energy[channel of lane c, frame - k] += sums[k, c] for the frames that exist.
    for k in range(3):
        f = frame - k
        if 0 <= f < n_frames:
            for c in range(n):
                energy[lane_channel[first + c], f] += sums[k, c]
        for c in range(sums.shape[1]):
            sums[k, c] = 0


@numba.njit(**JIT)
def accumulate(out, row, length, n, kernels, square, phase, sums):
    """Add rows [row, row + length) of the block (samples at hop phases phase + [0, length)) to sums.

    All lanes valid: the three running sums of a lane group stay in vector
    registers over the whole stretch.
    """
    group = group_width(out.itemsize)
    cg = 0
    # Two lane groups per pass where there are two: each running sum waits an
    # FMA's latency per sample, and the other group's fill the wait.
    while cg + group < n:
        ch = cg + group
        a0, a1, a2 = vload(sums, 0, cg), vload(sums, 1, cg), vload(sums, 2, cg)
        c0, c1, c2 = vload(sums, 0, ch), vload(sums, 1, ch), vload(sums, 2, ch)
        for t in range(length):
            v = vload(out, row + t, cg)
            w = vload(out, row + t, ch)
            e = vmul(v, v) if square else vabs(v)
            f = vmul(w, w) if square else vabs(w)
            r = phase + t
            k0, k1, k2 = vsplat(v, kernels[0, r]), vsplat(v, kernels[1, r]), vsplat(v, kernels[2, r])
            a0, c0 = vfma(k0, e, a0), vfma(k0, f, c0)
            a1, c1 = vfma(k1, e, a1), vfma(k1, f, c1)
            a2, c2 = vfma(k2, e, a2), vfma(k2, f, c2)
        vstore(sums, 0, cg, a0)
        vstore(sums, 1, cg, a1)
        vstore(sums, 2, cg, a2)
        vstore(sums, 0, ch, c0)
        vstore(sums, 1, ch, c1)
        vstore(sums, 2, ch, c2)
        cg += 2 * group
    if cg < n:
        a0, a1, a2 = vload(sums, 0, cg), vload(sums, 1, cg), vload(sums, 2, cg)
        for t in range(length):
            v = vload(out, row + t, cg)
            e = vmul(v, v) if square else vabs(v)
            r = phase + t
            a0 = vfma(vsplat(v, kernels[0, r]), e, a0)
            a1 = vfma(vsplat(v, kernels[1, r]), e, a1)
            a2 = vfma(vsplat(v, kernels[2, r]), e, a2)
        vstore(sums, 0, cg, a0)
        vstore(sums, 1, cg, a1)
        vstore(sums, 2, cg, a2)


@numba.njit(**JIT)
def accumulate_limited(out, row, t0, length, n, kernels, square, phase, sums, limit):
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


@numba.njit(inline="always", **JIT)
def forward_tiles(tiles, x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, kernels, d_first, square, limits,
                  energy, checkpoints, spacing, width, block):
    n_frames = energy.shape[1]
    n_time = x.shape[1]
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    hop = kernels.shape[1]
    n_blocks = (n_time + block - 1) // block
    save = checkpoints.shape[0] > 0
    per_checkpoint = max(1, spacing // block)
    for tile in tiles:
        mxcsr = flush_subnormals()
        first = tile_first[tile]
        n = tile_first[tile + 1] - first
        shared_input = tile_kind[tile] == SHARED
        bn, an, z = load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), x.dtype)
        shared = np.zeros(order + block, x.dtype)
        limit = np.zeros(width, np.int64)
        all_valid = n_time  # samples before which every lane of the tile is real
        for c in range(n):
            limit[c] = limits[lane_channel[first + c]]
            all_valid = min(all_valid, limit[c])
        # The running sums of the three frames the current hop block feeds.
        sums = np.zeros((3, width), x.dtype)
        out = borrow(signals, n_sections)
        for j in range(n_blocks):
            t0 = j * block
            length = min(block, n_time - t0)
            if save and j % per_checkpoint == 0:
                for c in range(n):
                    p = lane_channel[first + c]
                    for s in range(n_sections):
                        for h in range(order):
                            checkpoints[j // per_checkpoint, s, h, p] = signals[s + 1, h, c]
            load_input(x, lane_row, first, n, shared_input, t0, length, order, borrow(signals, 0), shared)
            run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            # Walk the block in stretches that end at hop boundaries.
            t = 0
            while t < length:
                now = t0 + t
                phase = now % hop
                stretch = min(length - t, hop - phase)
                if now + stretch <= all_valid:
                    accumulate(out, order + t, stretch, n, kernels, square, phase, sums)
                else:
                    accumulate_limited(out, order + t, now, stretch, n, kernels, square, phase, sums, limit)
                t += stretch
                if phase + stretch == hop or now + stretch == n_time:
                    flush(sums, energy, lane_channel, first, n, now // hop - d_first, n_frames)
            if j < n_blocks - 1:
                shift_history(signals, shared, length, order)
        restore_subnormals(mxcsr)


@numba.njit(inline="always", **JIT)
def _forward_call(args, dims, data, dtype):
    p = slots_of(data)
    forward_tiles(tiles_of(args, dims), matrix(p, 0, dtype), vector(p, 1, np.int64), vector(p, 2, np.int64),
                  vector(p, 3, np.uint8), vector(p, 4, np.int64), array3(p, 5, dtype), array3(p, 6, dtype),
                  array3(p, 7, dtype), matrix(p, 8, dtype), value(p, 9), value(p, 10) != 0, vector(p, 11, np.int64),
                  matrix(p, 12, dtype), array4(p, 13, dtype), value(p, 14), value(p, 15), value(p, 16))


def _forward_float32(args, dims, steps, data):
    _forward_call(args, dims, data, np.float32)


def _forward_float64(args, dims, steps, data):
    _forward_call(args, dims, data, np.float64)


_FORWARD = {np.dtype(np.float32): _forward_float32, np.dtype(np.float64): _forward_float64}


def forward(x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, kernels, d_first, square, limits, energy,
            checkpoints, spacing, width, block):
    """Filter every tile and add its frame energies into ``energy`` (P, n_frames), zeroed by the caller: ``x``
    (rows, T), the plan's lane and tile arrays, ``b, a`` (P, S, order + 1), ``zi`` (P, S, order), the block
    ``kernels`` (3, hop) and ``d_first`` of ``_frames.block_kernels``, ``limits`` (P,) int64, ``checkpoints``
    (n_saved, S, order, P), possibly without rows; numpy arrays of one float dtype, C-contiguous."""
    launch(compiled(_FORWARD[x.dtype]), tile_kind.shape[0],
           pack(x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, kernels, d_first, bool(square), limits,
                energy, checkpoints, spacing, width, block))
