"""The tile machinery the numba CPU kernels share: lanes, tiles, time blocks and one section's recurrence.

The design document (docs/design.md, "CPU kernels") describes the layout:

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
  ``y[t] += zi[t]`` for ``t < order``.

Loops count upwards: a numba ``range`` with a negative step hides the
direction from LLVM, whose alias checks then fail and leave loops scalar.
numba's cache keys each kernel on its own file only: after changing this
file, clear the cached kernels (the ``*.nbi``/``*.nbc`` files in
``__pycache__`` or ``NUMBA_CACHE_DIR``) of the files that use it.
"""

from __future__ import annotations

import numba
import numpy as np

from ._simd import (
    block_from_rows, borrow, group_width, prefetch, rows_from_block, vadd, vector_width, vfma, vfnma, vload, vmul,
    vsplat, vstore,
)

__all__ = [
    "JIT", "LANE_WIDTH", "BLOCK", "MIXED", "SHARED", "DISTINCT", "rows_to_block", "block_to_rows", "prefetch_rows",
    "load_coefficients", "biquad_one", "biquad_two", "section", "run_sections", "shift_history", "load_input",
    "input_value", "plan", "tile_width", "block_length",
]

# FMA contraction is the only relaxation: no reassociation, so each
# recurrence is evaluated in the order written.
JIT = dict(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False)

# Lanes per tile (at most): four float32 lane groups, or four float64 ones.
LANE_WIDTH = {4: 64, 8: 32}
# Samples per time block: the backward's buffers for a biquad tile stay in L2.
BLOCK = 128
# Tile kinds: how the lanes of a tile map to input rows.
MIXED, SHARED, DISTINCT = 0, 1, 2


# --------------------------------------------------------------------------
# Moving data between channel rows and time-major tile buffers.


@numba.njit(**JIT)
def rows_to_block(src, row_ids, first, n, t0, length, buffer, r0):
    """``buffer[r0 + t, c] = src[row_ids[first + c], t0 + t]``."""
    v = vector_width(buffer.itemsize)
    n_vec = n - n % v
    l_vec = length - length % v
    for cv in range(0, n_vec, v):
        for tv in range(0, l_vec, v):
            block_from_rows(buffer, r0 + tv, cv, src, row_ids, first + cv, t0 + tv)
        for c in range(cv, cv + v):
            row = borrow(src, row_ids[first + c])
            for t in range(l_vec, length):
                buffer[r0 + t, c] = row[t0 + t]
    for c in range(n_vec, n):
        row = borrow(src, row_ids[first + c])
        for t in range(length):
            buffer[r0 + t, c] = row[t0 + t]


@numba.njit(**JIT)
def block_to_rows(buffer, r0, dst, row_ids, first, n, t0, length):
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
            row = borrow(dst, row_ids[first + c])
            for t in range(l_vec, length):
                row[t0 + t] = buffer[r0 + t, c]
    for c in range(n_vec, n):
        row = borrow(dst, row_ids[first + c])
        for t in range(length):
            row[t0 + t] = buffer[r0 + t, c]


@numba.njit(**JIT)
def prefetch_rows(src, row_ids, first, n, t0, length):
    """Prefetch ``src[row_ids[first + c], t0 : t0 + length]`` for c < n.

    The backward reads its gradient rows a block at a time, backwards in time:
    the hardware prefetcher, seeing each short run ascend, fetches the lines
    after it, which were read already (measured: the block gather at twice the
    cost of a plain read of the same bytes).
    """
    line = 64 // src.itemsize
    for c in range(n):
        row = row_ids[first + c]
        for t in range(0, length, line):
            prefetch(src, row, t0 + t)


@numba.njit(**JIT)
def load_coefficients(b, a, zi, lane_channel, first, n, width):
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


@numba.njit(**JIT)
def biquad_one(inp, xs, shared_input, out, bs, as_, zs, t0, length, cg):
    """:func:`section` for a biquad, lane group ``cg``."""
    b0, b1, b2 = vload(bs, 0, cg), vload(bs, 1, cg), vload(bs, 2, cg)
    a1, a2 = vload(as_, 1, cg), vload(as_, 2, cg)
    y1, y2 = vload(out, 1, cg), vload(out, 0, cg)
    if shared_input:
        x1, x2 = xs[1], xs[0]
        for t in range(length):
            x0 = xs[2 + t]
            v = vfma(b0, vsplat(b0, x0), vfma(b1, vsplat(b0, x1), vmul(b2, vsplat(b0, x2))))
            v = vfnma(a1, y1, vfnma(a2, y2, v))
            if t0 + t < 2:
                v = vadd(v, vload(zs, t0 + t, cg))
            vstore(out, 2 + t, cg, v)
            y2, y1, x2, x1 = y1, v, x1, x0
    else:
        x1, x2 = vload(inp, 1, cg), vload(inp, 0, cg)
        for t in range(length):
            x0 = vload(inp, 2 + t, cg)
            v = vfma(b0, x0, vfma(b1, x1, vmul(b2, x2)))
            v = vfnma(a1, y1, vfnma(a2, y2, v))
            if t0 + t < 2:
                v = vadd(v, vload(zs, t0 + t, cg))
            vstore(out, 2 + t, cg, v)
            y2, y1, x2, x1 = y1, v, x1, x0


@numba.njit(**JIT)
def biquad_two(inp, xs, shared_input, out, bs, as_, zs, t0, length, cg):
    """:func:`section` for a biquad, lane groups ``cg`` and the next, in one pass.

    Each group's recursion waits an FMA's latency per sample for its last
    output; two independent ones interleaved fill each other's wait.
    """
    ch = cg + group_width(out.itemsize)
    b0, b1, b2 = vload(bs, 0, cg), vload(bs, 1, cg), vload(bs, 2, cg)
    a1, a2 = vload(as_, 1, cg), vload(as_, 2, cg)
    e0, e1, e2 = vload(bs, 0, ch), vload(bs, 1, ch), vload(bs, 2, ch)
    f1, f2 = vload(as_, 1, ch), vload(as_, 2, ch)
    y1, y2 = vload(out, 1, cg), vload(out, 0, cg)
    z1, z2 = vload(out, 1, ch), vload(out, 0, ch)
    if shared_input:
        x1, x2 = vsplat(b0, xs[1]), vsplat(b0, xs[0])
        for t in range(length):
            x0 = vsplat(b0, xs[2 + t])
            v = vfma(b0, x0, vfma(b1, x1, vmul(b2, x2)))
            w = vfma(e0, x0, vfma(e1, x1, vmul(e2, x2)))
            v = vfnma(a1, y1, vfnma(a2, y2, v))
            w = vfnma(f1, z1, vfnma(f2, z2, w))
            if t0 + t < 2:
                v = vadd(v, vload(zs, t0 + t, cg))
                w = vadd(w, vload(zs, t0 + t, ch))
            vstore(out, 2 + t, cg, v)
            vstore(out, 2 + t, ch, w)
            y2, y1, z2, z1, x2, x1 = y1, v, z1, w, x1, x0
    else:
        x1, x2 = vload(inp, 1, cg), vload(inp, 0, cg)
        p1, p2 = vload(inp, 1, ch), vload(inp, 0, ch)
        for t in range(length):
            x0 = vload(inp, 2 + t, cg)
            p0 = vload(inp, 2 + t, ch)
            v = vfma(b0, x0, vfma(b1, x1, vmul(b2, x2)))
            w = vfma(e0, p0, vfma(e1, p1, vmul(e2, p2)))
            v = vfnma(a1, y1, vfnma(a2, y2, v))
            w = vfnma(f1, z1, vfnma(f2, z2, w))
            if t0 + t < 2:
                v = vadd(v, vload(zs, t0 + t, cg))
                w = vadd(w, vload(zs, t0 + t, ch))
            vstore(out, 2 + t, cg, v)
            vstore(out, 2 + t, ch, w)
            y2, y1, z2, z1, x2, x1, p2, p1 = y1, v, z1, w, x1, x0, p1, p0


@numba.njit(**JIT)
def section(inp, xs, shared_input, out, bs, as_, zs, t0, length, order, n):
    """``out[r] = sum_k b_k in[r-k] - sum_{k>=1} a_k out[r-k]`` for r in [order, order + length).

    ``inp``, ``out``: (order + block, width); ``xs``: (order + block,), the
    shared input used instead of ``inp`` when ``shared_input``.
    """
    group = group_width(out.itemsize)
    if order == 2:
        cg = 0
        while cg + group < n:
            biquad_two(inp, xs, shared_input, out, bs, as_, zs, t0, length, cg)
            cg += 2 * group
        if cg < n:
            biquad_one(inp, xs, shared_input, out, bs, as_, zs, t0, length, cg)
        return
    for cg in range(0, n, group):
        for t in range(length):
            r = order + t
            if shared_input:
                v = vmul(vload(bs, 0, cg), vsplat(out, xs[r]))
            else:
                v = vmul(vload(bs, 0, cg), vload(inp, r, cg))
            for k in range(1, order + 1):
                if shared_input:
                    v = vfma(vload(bs, k, cg), vsplat(out, xs[r - k]), v)
                else:
                    v = vfma(vload(bs, k, cg), vload(inp, r - k, cg), v)
                v = vfnma(vload(as_, k, cg), vload(out, r - k, cg), v)
            if t0 + t < order:
                v = vadd(v, vload(zs, t0 + t, cg))
            vstore(out, r, cg, v)


@numba.njit(inline="always", **JIT)
def run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n):
    for s in range(bn.shape[0]):
        section(borrow(signals, s), shared, shared_input and s == 0, borrow(signals, s + 1),
                borrow(bn, s), borrow(an, s), borrow(z, s), t0, length, order, n)


@numba.njit(inline="always", **JIT)
def shift_history(signals, shared, length, order):
    # Rows [length, length + order) become the history rows [0, order). A short
    # block (length < order) overlaps them; copying upwards is still safe.
    for h in range(order):
        shared[h] = shared[length + h]
        for s in range(signals.shape[0]):
            for c in range(signals.shape[2]):
                signals[s, h, c] = signals[s, length + h, c]


@numba.njit(inline="always", **JIT)
def load_input(x, lane_row, first, n, shared_input, t0, length, order, signal0, shared):
    if shared_input:
        src = borrow(x, lane_row[first])
        # Unsigned indices: numba wraps each signed index that might be
        # negative, and LLVM then gathers the row instead of copying it.
        for t in range(length):
            shared[np.uintp(order + t)] = src[np.uintp(t0 + t)]
    else:
        rows_to_block(x, lane_row, first, n, t0, length, signal0, order)


@numba.njit(inline="always", **JIT)
def input_value(signals, shared, shared_input, s, r, c):
    if s == 0 and shared_input:
        return shared[r]
    return signals[s, r, c]


# --------------------------------------------------------------------------
# Plans: how channels map to lanes and tiles.


_PLANS: dict = {}


def plan(x_index: np.ndarray, width: int):
    """``_make_plan``, remembered for the last few layouts (streaming asks for the same one every block)."""
    key = (x_index.tobytes(), width)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 32:
            _PLANS.pop(next(iter(_PLANS)))
        plan = _PLANS[key] = _make_plan(x_index, width)
    return plan


def _make_plan(x_index: np.ndarray, width: int):
    """Sort channels by input row; cut tiles; describe runs of shared rows.

    A row with at least a quarter tile of channels (a bank over one signal)
    gets tiles of its own, so that they read it as one scalar stream (40
    bands: one tile of 40 lanes, not tiles mixing two rows); the channels of
    smaller rows are packed ``width`` to a tile.

    Returns per lane (sorted order): the channel, its input row, its partial
    row (one per run of equal rows within a tile) and whether it starts a run;
    per run: its input row; per tile: its kind (mixed, shared or distinct);
    and the tiles' first lanes, with the number of lanes last ((tiles + 1,)).
    """
    n_channels = x_index.shape[0]
    lane_channel = np.argsort(x_index, kind="stable").astype(np.int64)
    lane_row = np.ascontiguousarray(x_index[lane_channel], dtype=np.int64)
    lanes = np.arange(n_channels)
    row_start = np.ones(n_channels, bool)
    row_start[1:] = lane_row[1:] != lane_row[:-1]
    starts = np.flatnonzero(row_start)
    counts = np.diff(np.append(starts, n_channels))
    big = counts >= max(1, width // 4)
    # Segments: each big row alone, and each stretch of small rows between them.
    segment_start = np.zeros(n_channels, bool)
    segment_start[starts[big]] = True
    after_big = starts[1:][big[:-1] & ~big[1:]]
    segment_start[after_big] = True
    if n_channels:
        segment_start[0] = True
    first_of_segment = np.maximum.accumulate(np.where(segment_start, lanes, 0)) if n_channels else lanes
    tile_start = (lanes - first_of_segment) % width == 0
    tile_first = np.append(np.flatnonzero(tile_start), n_channels).astype(np.int64)
    run_start = tile_start | row_start
    lane_part = (np.cumsum(run_start) - 1).astype(np.int64)
    part_row = lane_row[run_start]
    runs_per_tile = np.add.reduceat(run_start.astype(np.int64), tile_first[:-1]) if n_channels else tile_first[:0]
    lanes_per_tile = np.diff(tile_first)
    tile_kind = np.full(lanes_per_tile.shape, MIXED, np.uint8)
    tile_kind[runs_per_tile == lanes_per_tile] = DISTINCT
    tile_kind[runs_per_tile == 1] = SHARED
    return lane_channel, lane_row, lane_part, run_start.astype(np.uint8), part_row, tile_kind, tile_first


def tile_width(n_channels: int, itemsize: int) -> int:
    """Lanes per tile: full tiles, or fewer so that every thread gets one."""
    group = 64 // itemsize
    per_thread = -(-n_channels // max(1, numba.get_num_threads()))
    return min(LANE_WIDTH[itemsize], max(group, -(-per_thread // group) * group))


def block_length(order: int) -> int:
    """Samples per time block: ``BLOCK``, or more for orders above 16 (whole lane groups of history)."""
    return max(BLOCK, -(-order // 16) * 16)

