"""numba kernels for a cascade of IIR sections over tiles of channels, forward and backward.

On the tile machinery of ``_tiles.py`` (docs/design.md, "CPU kernels"):

* **Forward.** Each tile runs every section block by block and writes the
  last section's output once; ``zf[i] = sum_{k>i} b_k in[T+i-k] - a_k
  y[T+i-k]`` (plus ``zi[T+i]`` when ``T + i < order``) is read off the last
  ``order`` samples, which the history rows always hold.
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
* **Threads.** ``forward_tiles``/``backward_tiles`` are serial over their
  tiles; :func:`forward`, :func:`backward` and :func:`backward_from_energy`
  run them on numba's threads through ``_threads.py``.
"""

from __future__ import annotations

import numba
import numpy as np

from ._simd import (
    borrow, flush_subnormals, group_width, prefetch, restore_subnormals, vadd, vfma, vfnma, vload, vmul, vsplat, vstore,
    vsum,
)
from ._tiles import (
    DISTINCT, JIT, SHARED, block_to_rows, input_value, load_coefficients, load_input, prefetch_rows, rows_to_block,
    run_sections, shift_history,
)
from ._threads import array3, array4, compiled, launch, matrix, pack, slots_of, tiles_of, value, vector

__all__ = ["forward", "backward", "backward_from_energy", "forward_tiles", "backward_tiles"]


# --------------------------------------------------------------------------
# The adjoint of one section over one block.


@numba.njit(inline="always", **JIT)
def _frame_weights(lane_grad, frame, cg):
    """Rows ``frame - k`` (k = 0, 1, 2) of ``lane_grad`` for the lane group at ``cg``, its zero last row for
    frames that do not exist."""
    n_frames = lane_grad.shape[0] - 1
    w0 = vload(lane_grad, frame if 0 <= frame < n_frames else n_frames, cg)
    w1 = vload(lane_grad, frame - 1 if 0 <= frame - 1 < n_frames else n_frames, cg)
    w2 = vload(lane_grad, frame - 2 if 0 <= frame - 2 < n_frames else n_frames, cg)
    return w0, w1, w2


@numba.njit(inline="always", **JIT)
def _store_input_adjoint(g_in, lane_sum, sum_lanes, first_group, t, cg, w):
    """The input's adjoint ``w`` of sample ``t``, lane group ``cg``: into ``g_in``, or summed over the groups into
    ``lane_sum`` when the lanes share one input."""
    if not sum_lanes:
        vstore(g_in, t, cg, w)
    elif first_group:
        vstore(lane_sum, t, 0, w)
    else:
        vstore(lane_sum, t, 0, vadd(vload(lane_sum, t, 0), w))


@numba.njit(**JIT)
def adjoint_section(us, g, g_in, lane_sum, sum_lanes, want_input, bs, as_, inp, xs, out, sums, length, order, n,
                    kernels, fuse_energy, lane_grad, t0, d_first):
    """Backwards over one block: ``u[t] = g[t] - sum_k a_k u[t+k]`` and, when
    ``want_input``, the input's adjoint ``sum_k b_k u[t+k]``; for a biquad
    also the block's :func:`coefficient_sums` (``inp``, ``xs``, ``out``, ``sums``
    as there, ``xs`` read when ``sum_lanes``), in the same pass.

    ``us``: (block + order, width), rows ``[length, length + order)`` hold the
    adjoint of the next samples. The input's adjoint goes to ``g_in`` rows, or,
    when ``sum_lanes``, is summed over groups into ``lane_sum`` rows (block,
    group) so that one horizontal sum per sample remains.

    With ``kernels`` (None where the call has no energies) and ``fuse_energy``
    (a biquad, the last section of an energy call, every lane real over the
    block, square energies) ``g`` is not read: it is the square's gradient
    formed in the same pass, ``g[t] = (sum_k
    kernels[k, r] lane_grad[f - k]) out[t]`` at the sample's hop phase ``r`` and
    frame ``f`` (time ``t0 + t``, frames from ``d_first``), as
    :func:`energy_block_adjoint` would have written it. (A flag rather than a
    None: one compiled body serves an energy call's fused and plain blocks.)
    """
    group = group_width(us.itemsize)
    for cg in range(0, n, group):
        first_group = cg == 0
        if order == 2:
            # One pass: the recursion's chain is one FMA per sample, and the
            # five products of the coefficient sums (and the energy's
            # gradient) fill the cycles it waits.
            b0, b1, b2 = vload(bs, 0, cg), vload(bs, 1, cg), vload(bs, 2, cg)
            a1, a2 = vload(as_, 1, cg), vload(as_, 2, cg)
            u1, u2 = vload(us, length, cg), vload(us, length + 1, cg)
            c0 = vsplat(u1, 0.0)
            c1, c2, d1, d2 = c0, c0, c0, c0
            w0, w1, w2 = c0, c0, c0
            # Stretches of one frame each, last to first (one stretch, the block, when g is read).
            fused = False
            if kernels is not None:
                fused = fuse_energy
            t_end = length
            while t_end > 0:
                t_start = 0
                phase0 = 0  # the hop phase of row 0, in this stretch's frame
                if kernels is not None and fused:  # (the first test lets numba drop this where kernels is None)
                    hop = kernels.shape[1]
                    frame = (t0 + t_end - 1) // hop
                    t_start = max(0, frame * hop - t0)
                    phase0 = t0 - frame * hop
                    w0, w1, w2 = _frame_weights(lane_grad, frame - d_first, cg)
                for i in range(t_end - t_start):
                    t = t_end - 1 - i
                    if kernels is None:
                        gt = vload(g, t, cg)
                    elif fused:
                        r = np.uintp(phase0 + t)  # unsigned: no wrap-around test per sample
                        y = vload(out, t + 2, cg)
                        k2 = vmul(vsplat(y, kernels[2, r]), w2) if kernels.shape[0] == 3 else vsplat(y, 0.0)
                        gt = vmul(vfma(vsplat(y, kernels[0, r]), w0, vfma(vsplat(y, kernels[1, r]), w1, k2)), y)
                    else:
                        gt = vload(g, t, cg)
                    u = vfnma(a1, u1, vfnma(a2, u2, gt))
                    vstore(us, t, cg, u)
                    if sum_lanes:  # unsigned indices: no wrap-around test per sample (t is not negative)
                        c0 = vfma(u, vsplat(u, xs[np.uintp(t + 2)]), c0)
                        c1 = vfma(u, vsplat(u, xs[np.uintp(t + 1)]), c1)
                        c2 = vfma(u, vsplat(u, xs[np.uintp(t)]), c2)
                    else:
                        c0 = vfma(u, vload(inp, t + 2, cg), c0)
                        c1 = vfma(u, vload(inp, t + 1, cg), c1)
                        c2 = vfma(u, vload(inp, t, cg), c2)
                    d1 = vfma(u, vload(out, t + 1, cg), d1)
                    d2 = vfma(u, vload(out, t, cg), d2)
                    if want_input:
                        _store_input_adjoint(g_in, lane_sum, sum_lanes, first_group, t, cg,
                                             vfma(b0, u, vfma(b1, u1, vmul(b2, u2))))
                    u2, u1 = u1, u
                t_end = t_start
            vstore(sums, 0, cg, c0)
            vstore(sums, 1, cg, c1)
            vstore(sums, 2, cg, c2)
            vstore(sums, 3, cg, d1)
            vstore(sums, 4, cg, d2)
            continue
        for i in range(length):
            t = length - 1 - i
            u = vload(g, t, cg)
            for k in range(1, order + 1):
                u = vfnma(vload(as_, k, cg), vload(us, t + k, cg), u)
            vstore(us, t, cg, u)
            if not want_input:
                continue
            w = vmul(vload(bs, 0, cg), u)
            for k in range(1, order + 1):
                w = vfma(vload(bs, k, cg), vload(us, t + k, cg), w)
            _store_input_adjoint(g_in, lane_sum, sum_lanes, first_group, t, cg, w)
    if order != 2:
        coefficient_sums(us, inp, xs, sum_lanes, out, sums, length, order, n)


@numba.njit(**JIT)
def coefficient_sums(us, inp, xs, shared_input, out, sums, length, order, n):
    """Per block: ``sums[k] = sum_t u[t] in[t-k]`` (k <= order) and
    ``sums[order + k] = sum_t u[t] out[t-k]`` (1 <= k <= order), per lane (orders
    other than 2: a biquad's are summed in :func:`adjoint_section`)."""
    group = group_width(us.itemsize)
    for cg in range(0, n, group):
        zero = vsplat(us, 0.0)
        for k in range(order + 1):
            acc = zero
            for t in range(length):
                r = order + t
                u = vload(us, t, cg)
                if shared_input:
                    acc = vfma(u, vsplat(us, xs[r - k]), acc)
                else:
                    acc = vfma(u, vload(inp, r - k, cg), acc)
            vstore(sums, k, cg, acc)
            if k == 0:
                continue
            acc = zero
            for t in range(length):
                acc = vfma(vload(us, t, cg), vload(out, order + t - k, cg), acc)
            vstore(sums, order + k, cg, acc)


# --------------------------------------------------------------------------
# Forward.


@numba.njit(inline="always", **JIT)
def forward_tiles(tiles, x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, y, zf, width, block):
    n_channels, n_time = y.shape
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    n_blocks = (n_time + block - 1) // block
    for tile in tiles:
        mxcsr = flush_subnormals()
        first = tile_first[tile]
        n = tile_first[tile + 1] - first
        shared_input = tile_kind[tile] == SHARED
        bn, an, z = load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), y.dtype)
        shared = np.zeros(order + block, y.dtype)
        for j in range(n_blocks):
            t0 = j * block
            length = min(block, n_time - t0)
            load_input(x, lane_row, first, n, shared_input, t0, length, order, borrow(signals, 0), shared)
            run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            block_to_rows(borrow(signals, n_sections), order, y, lane_channel, first, n, t0, length)
            if j < n_blocks - 1:
                shift_history(signals, shared, length, order)
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
                        acc += bn[s, k, c] * input_value(signals, shared, shared_input, s, r, c)
                        acc -= an[s, k, c] * signals[s + 1, r, c]
                    if n_time + i < order:
                        acc += z[s, n_time + i, c]
                    zf[p, s, i] = acc
        restore_subnormals(mxcsr)


@numba.njit(inline="always", **JIT)
def _forward_call(args, dims, data, dtype):
    p = slots_of(data)
    forward_tiles(tiles_of(args, dims), matrix(p, 0, dtype), vector(p, 1, np.int64), vector(p, 2, np.int64),
                  vector(p, 3, np.uint8), vector(p, 4, np.int64), array3(p, 5, dtype), array3(p, 6, dtype),
                  array3(p, 7, dtype), matrix(p, 8, dtype), array3(p, 9, dtype), value(p, 10), value(p, 11))


def _forward_float32(args, dims, steps, data):
    _forward_call(args, dims, data, np.float32)


def _forward_float64(args, dims, steps, data):
    _forward_call(args, dims, data, np.float64)


_FORWARD = {np.dtype(np.float32): _forward_float32, np.dtype(np.float64): _forward_float64}


def forward(x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, y, zf, width, block):
    """Filter every tile: ``y`` (P, T) and ``zf`` (P, S, order) from ``x`` (rows, T), the plan's lane and tile
    arrays, ``b, a`` (P, S, order + 1), ``zi`` (P, S, order); numpy arrays of one float dtype, C-contiguous."""
    launch(compiled(_FORWARD[x.dtype]), tile_kind.shape[0],
           pack(x, lane_channel, lane_row, tile_kind, tile_first, b, a, zi, y, zf, width, block))


# --------------------------------------------------------------------------
# The gradient of frame energies for the last section's output, over one block.


@numba.njit(**JIT)
def energy_weights(lane_grad, frame, n, weights):
    """``weights[k] = lane_grad[frame - k]``, the zero last row for frames that do not exist."""
    n_frames = lane_grad.shape[0] - 1
    group = group_width(weights.itemsize)
    for k in range(3):
        f = frame - k
        row = f if 0 <= f < n_frames else n_frames
        for cg in range(0, n, group):
            vstore(weights, k, cg, vload(lane_grad, row, cg))


@numba.njit(**JIT)
def lanes_of_energy_gradient(grad_energy, lane_channel, first, n, scale, lane_grad):
    """``lane_grad[f, c] = scale * grad_energy[channel of lane c, f]``, and zero in the last row and past lane
    ``n``: the tile's share of the energies' gradient, transposed once (per hop block, a gather over
    channel rows costs as much as the rest of the block's bookkeeping)."""
    n_frames = grad_energy.shape[1]
    for f in range(lane_grad.shape[0]):
        for c in range(lane_grad.shape[1]):
            lane_grad[f, c] = 0.0
    for c in range(n):
        row = borrow(grad_energy, lane_channel[first + c])
        for f in range(n_frames):
            lane_grad[f, c] = scale * row[f]


@numba.njit(**JIT)
def energy_adjoint(out, row, length, n, kernels, phase, weights, g, g_row):
    """``g[g_row + t] = (sum_k kernels[k, phase + t] weights[k]) * out[row + t]``: the square's gradient,
    every lane real over the stretch (its factor 2 is in ``weights``)."""
    group = group_width(out.itemsize)
    two = kernels.shape[0] == 2  # the window touches two hop blocks (every window of up to a hop + 1)
    for cg in range(0, n, group):
        w0, w1 = vload(weights, 0, cg), vload(weights, 1, cg)
        if two:
            for t in range(length):
                r = np.uintp(phase + t)  # unsigned: no wrap-around test per sample
                w = vfma(vsplat(w0, kernels[0, r]), w0, vmul(vsplat(w0, kernels[1, r]), w1))
                vstore(g, g_row + t, cg, vmul(w, vload(out, row + t, cg)))
            continue
        w2 = vload(weights, 2, cg)
        for t in range(length):
            r = np.uintp(phase + t)
            w = vfma(vsplat(out, kernels[0, r]), w0, vfma(vsplat(out, kernels[1, r]), w1,
                                                          vmul(vsplat(out, kernels[2, r]), w2)))
            vstore(g, g_row + t, cg, vmul(w, vload(out, row + t, cg)))


@numba.njit(**JIT)
def energy_adjoint_limited(out, row, t0, length, n, kernels, square, phase, weights, limit, g, g_row):
    """As ``energy_adjoint`` (samples from time ``t0``), for ``|v|`` too, with lane c's samples at or past
    ``limit[c]`` (the padded tail) getting no gradient."""
    for t in range(length):
        r = phase + t
        k0, k1 = kernels[0, r], kernels[1, r]
        k2 = kernels[2, r] if kernels.shape[0] == 3 else k0 - k0
        for c in range(n):
            v = out[row + t, c]
            w = k0 * weights[0, c] + k1 * weights[1, c] + k2 * weights[2, c]
            d = v if square else np.sign(v)
            g[g_row + t, c] = w * d if t0 + t < limit[c] else v - v


@numba.njit(**JIT)
def energy_block_adjoint(out, order, t0, length, n, kernels, d_first, square, lane_grad, limit, all_valid, weights,
                         g):
    """``g[t]``, t in [0, length): the gradient of the frame energies for the block's output ``out[order + t]``
    (``lane_grad`` from :func:`lanes_of_energy_gradient`)."""
    hop = kernels.shape[1]
    t = 0
    while t < length:
        now = t0 + t
        phase = now % hop
        stretch = min(length - t, hop - phase)
        energy_weights(lane_grad, now // hop - d_first, n, weights)
        if square and now + stretch <= all_valid:
            energy_adjoint(out, order + t, stretch, n, kernels, phase, weights, g, t)
        else:
            energy_adjoint_limited(out, order + t, now, stretch, n, kernels, square, phase, weights, limit, g, t)
        t += stretch


# --------------------------------------------------------------------------
# Backward.


@numba.njit(**JIT)
def backward_tiles(
    tiles, grad_y, grad_zf, x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind, tile_first,
    b, a, zi, grad_x_part, grad_b, grad_a, grad_zi, width, block,
    checkpoints, spacing, grad_energy, kernels, d_first, square, limits, want_grad_x,
):
    """The cascade's backward over ``tiles``.

    The output's gradient is ``grad_y`` (P, T) with ``grad_zf`` (P, S, order)
    on the final state, or, when ``grad_energy`` is given (both others None),
    that of frame energies of the output (``grad_energy`` (P, n_frames), the
    ``_frames`` block ``kernels``, samples past ``limits`` counting as zero),
    formed block by block from the recomputed output. ``checkpoints``
    (ceil(T / spacing), S, order, P), when it has any, holds each section's
    output history every ``spacing`` samples (a multiple of ``block``, saved
    by the forward), so that the forward is re-run over one segment between
    checkpoints at a time rather than over the whole signal first. Without
    ``want_grad_x``, ``grad_x_part`` is not written. The None arguments
    select code at compile time: each kind of call compiles only its own.
    """
    n_time = x.shape[1]
    n_sections = b.shape[1]
    order = b.shape[2] - 1
    n_blocks = (n_time + block - 1) // block
    dtype = x.dtype
    group = group_width(x.itemsize)
    # Not a literal 0: a literal would compile the block moves a second time, for that constant.
    row0 = np.intp(0)
    for tile in tiles:
        mxcsr = flush_subnormals()
        first = tile_first[tile]
        n = tile_first[tile + 1] - first
        kind = tile_kind[tile]
        shared_input = kind == SHARED
        bn, an, z = load_coefficients(b, a, zi, lane_channel, first, n, width)
        signals = np.zeros((n_sections + 1, order + block, width), dtype)
        shared = np.zeros(order + block, dtype)

        # The blocks are taken in segments, last to first: one from the start
        # without checkpoints, else one per checkpoint. A segment is first run
        # forwards from its starting history, keeping each block's (recomputing
        # costs less than reading the output back), then backwards.
        per_segment = n_blocks
        if checkpoints is not None:
            if checkpoints.shape[0] > 0:
                per_segment = min(n_blocks, spacing // block)
        hist = np.zeros((max(per_segment, 1), n_sections + 1, max(order, 1), width), dtype)
        hist_shared = np.zeros((max(per_segment, 1), max(order, 1)), dtype)
        limit = np.zeros(width, np.int64)
        all_valid = n_time  # samples before which every lane of the tile is real
        if grad_energy is not None:
            for c in range(n):
                limit[c] = limits[lane_channel[first + c]]
                all_valid = min(all_valid, limit[c])
        weights = np.zeros((3, width), dtype)
        if grad_energy is not None:
            lane_grad = np.empty((grad_energy.shape[1] + 1, width), dtype)
            lanes_of_energy_gradient(grad_energy, lane_channel, first, n, 2.0 if square else 1.0, lane_grad)
        else:
            lane_grad = np.zeros((1, width), dtype)

        # Blocks backwards. u[s] rows [0, length) hold the adjoint of
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
            if jj == 0 or j % per_segment == per_segment - 1:
                # Entering a segment: its starting history, then its blocks forwards.
                j_first = j - j % per_segment
                for h in range(order):
                    t = j_first * block - order + h
                    shared[h] = x[lane_row[first], t] if t >= 0 and n else 0.0
                    for s in range(n_sections + 1):
                        for c in range(width):
                            signals[s, h, c] = 0.0
                    if t < 0:
                        continue
                    for c in range(n):
                        signals[0, h, c] = x[lane_row[first + c], t]
                    if checkpoints is not None:  # t >= 0: a segment after the first, so there are checkpoints
                        for c in range(n):
                            for s in range(n_sections):
                                signals[s + 1, h, c] = checkpoints[j_first // per_segment, s, h,
                                                                   lane_channel[first + c]]
                        # The segment before's checkpoints and first input samples, fetched
                        # while this one is computed: going backwards, a segment apart, no
                        # line of them is in cache.
                        if j_first >= 2 * per_segment:
                            for s in range(n_sections):
                                earlier = borrow(borrow(checkpoints, j_first // per_segment - 1), s)
                                for c in range(0, n, group):
                                    prefetch(earlier, h, lane_channel[first + c])
                                prefetch(earlier, h, lane_channel[first + n - 1])
                            if h == 0:
                                prefetch_rows(x, lane_row, first, 1 if shared_input else n, t - per_segment * block,
                                              order)
                for i in range(j - j_first + 1):
                    for h in range(order):
                        hist_shared[i, h] = shared[h]
                        for s in range(n_sections + 1):
                            for c in range(width):
                                hist[i, s, h, c] = signals[s, h, c]
                    if i < j - j_first:
                        t0 = (j_first + i) * block
                        length = min(block, n_time - t0)
                        load_input(x, lane_row, first, n, shared_input, t0, length, order, borrow(signals, 0), shared)
                        run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
                        shift_history(signals, shared, length, order)
            t0 = j * block
            length = min(block, n_time - t0)
            for h in range(order):
                shared[h] = hist_shared[j % per_segment, h]
                for s in range(n_sections + 1):
                    for c in range(width):
                        signals[s, h, c] = hist[j % per_segment, s, h, c]
            load_input(x, lane_row, first, n, shared_input, t0, length, order, borrow(signals, 0), shared)
            run_sections(signals, shared, shared_input, bn, an, z, t0, length, order, n)
            # Two tests, not if/else: numba drops a branch at compile time only where its argument is None.
            # A biquad's energy gradient, every lane real, is formed in the last section's adjoint pass.
            fuse_energy = False
            if grad_energy is not None:
                fuse_energy = order == 2 and bool(square) and t0 + length <= all_valid
                if not fuse_energy:
                    energy_block_adjoint(borrow(signals, n_sections), order, t0, length, n, kernels, d_first, square,
                                         lane_grad, limit, all_valid, weights, g)
            if grad_y is not None:
                rows_to_block(grad_y, lane_channel, first, n, t0, length, g, row0)
                if j > 0:  # the block before, fetched while this one is computed
                    prefetch_rows(grad_y, lane_channel, first, n, t0 - block, block)

            near_end = t0 + length > n_time - order
            for ss in range(n_sections):
                s = n_sections - 1 - ss
                us = borrow(u, s)
                out = borrow(signals, s + 1)
                want_input = s > 0 or want_grad_x
                sum_lanes = s == 0 and shared_input
                # A gradient on zf, zf[i] = sum_{k>i} b_k in[T+i-k] - a_k out[T+i-k],
                # reaches the samples T+i-k of this block.
                if grad_zf is not None and near_end:
                    for c in range(n):
                        p = lane_channel[first + c]
                        for i in range(order):
                            gzf = grad_zf[p, s, i]
                            for k in range(i + 1, order + 1):
                                r = n_time + i - k - t0
                                if 0 <= r < length:
                                    g[r, c] -= an[s, k, c] * gzf
                                    gbn[s, k, c] += gzf * input_value(signals, shared, shared_input, s, order + r, c)
                                    gan[s, k, c] -= gzf * out[order + r, c]
                bs, as_ = borrow(bn, s), borrow(an, s)
                adjoint_section(us, g, g_in, lane_sum, sum_lanes, want_input, bs, as_, borrow(signals, s), shared, out,
                                sums, length, order, n, kernels, fuse_energy and s == n_sections - 1, lane_grad, t0,
                                d_first)
                # Lanes innermost: contiguous, so the float64 sums are vector adds.
                for k in range(order + 1):
                    for c in range(n):
                        gbn[s, k, c] += sums[k, c]
                for k in range(1, order + 1):
                    for c in range(n):
                        gan[s, k, c] -= sums[order + k, c]
                for t in range(min(length, max(0, order - t0))):
                    for c in range(n):
                        gz[s, t0 + t, c] += us[t, c]
                if sum_lanes and want_input:
                    for t in range(length):
                        x_adjoint[t] = vsum(vload(lane_sum, t, 0))
                if grad_zf is not None and near_end and want_input:
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
                        for c in range(width):
                            us[block + h, c] = us[h, c]

            # The adjoint of each lane's input: lanes of one run (same input
            # row, same tile) are summed into that run's partial row.
            if not want_grad_x:
                continue
            if shared_input:
                dst = borrow(grad_x_part, lane_part[first])
                for t in range(length):
                    dst[t0 + t] = x_adjoint[t]
            elif kind == DISTINCT:
                block_to_rows(g, row0, grad_x_part, lane_part, first, n, t0, length)
            else:
                for c in range(n):
                    lane = first + c
                    dst = borrow(grad_x_part, lane_part[lane])
                    if lane_run_start[lane]:
                        for t in range(length):
                            dst[t0 + t] = g[t, c]
                    else:
                        for t in range(length):
                            dst[t0 + t] += g[t, c]

        # zf[i] also holds zi[T + i] when the signal is shorter than the state.
        if grad_zf is not None:
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
        restore_subnormals(mxcsr)


@numba.njit(inline="always", **JIT)
def _output_call(args, dims, data, dtype):
    p = slots_of(data)
    backward_tiles(tiles_of(args, dims), matrix(p, 0, dtype), array3(p, 1, dtype), matrix(p, 2, dtype),
                   vector(p, 3, np.int64), vector(p, 4, np.int64), vector(p, 5, np.int64), vector(p, 6, np.uint8),
                   vector(p, 7, np.uint8), vector(p, 8, np.int64), array3(p, 9, dtype), array3(p, 10, dtype),
                   array3(p, 11, dtype), matrix(p, 12, dtype), array3(p, 13, dtype), array3(p, 14, dtype),
                   array3(p, 15, dtype), value(p, 16), value(p, 17), None, 0, None, None, 0, True, None, True)


@numba.njit(inline="always", **JIT)
def _energy_call(args, dims, data, dtype):
    p = slots_of(data)
    backward_tiles(tiles_of(args, dims), None, None, matrix(p, 2, dtype),
                   vector(p, 3, np.int64), vector(p, 4, np.int64), vector(p, 5, np.int64), vector(p, 6, np.uint8),
                   vector(p, 7, np.uint8), vector(p, 8, np.int64), array3(p, 9, dtype), array3(p, 10, dtype),
                   array3(p, 11, dtype), matrix(p, 12, dtype), array3(p, 13, dtype), array3(p, 14, dtype),
                   array3(p, 15, dtype), value(p, 16), value(p, 17), array4(p, 18, dtype), value(p, 19),
                   matrix(p, 20, dtype), matrix(p, 21, dtype), value(p, 22), value(p, 23), vector(p, 24, np.int64),
                   value(p, 25))


def _output_float32(args, dims, steps, data):
    _output_call(args, dims, data, np.float32)


def _output_float64(args, dims, steps, data):
    _output_call(args, dims, data, np.float64)


def _energy_float32(args, dims, steps, data):
    _energy_call(args, dims, data, np.float32)


def _energy_float64(args, dims, steps, data):
    _energy_call(args, dims, data, np.float64)


_BACKWARD = {(np.dtype(np.float32), False): _output_float32, (np.dtype(np.float64), False): _output_float64,
             (np.dtype(np.float32), True): _energy_float32, (np.dtype(np.float64), True): _energy_float64}


def backward(grad_y, grad_zf, x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind, tile_first,
             b, a, zi, grad_x_part, grad_b, grad_a, grad_zi, width, block):
    """The backward for a gradient ``grad_y`` (P, T) on the output and ``grad_zf`` (P, S, order) on the final
    state (:func:`backward_tiles`); numpy arrays of one float dtype (the plan's int64/uint8), C-contiguous."""
    launch(compiled(_BACKWARD[x.dtype, False]), tile_kind.shape[0],
           pack(grad_y, grad_zf, x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind, tile_first,
                b, a, zi, grad_x_part, grad_b, grad_a, grad_zi, width, block))


def backward_from_energy(x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind, tile_first, b, a, zi,
                         grad_x_part, grad_b, grad_a, grad_zi, width, block, checkpoints, spacing, grad_energy,
                         kernels, d_first, square, limits, want_grad_x):
    """The backward for a gradient ``grad_energy`` (P, n_frames) on frame energies of the output
    (:func:`backward_tiles`); ``checkpoints`` (n_saved, S, order, P) may have no rows."""
    # Slots 0 and 1 (grad_y, grad_zf) stay empty: this call compiles without them.
    launch(compiled(_BACKWARD[x.dtype, True]), tile_kind.shape[0],
           pack(0, 0, x, lane_channel, lane_row, lane_part, lane_run_start, tile_kind, tile_first, b, a, zi,
                grad_x_part, grad_b, grad_a, grad_zi, width, block, checkpoints, spacing, grad_energy, kernels,
                d_first, square, limits, want_grad_x))
