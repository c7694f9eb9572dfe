"""numba kernels of the coupled recurrences ``h[t] = f(A h[t-1] + u[t])``, A banded or CSR.

Tasks of sequences (rows) on numba's threads (``_threads.py``), each in
time order; within a step the work runs along the channels, contiguous in
memory:

* banded: the band is stored diagonal-major, ``band_t[m, d, i] = A[i, i + d -
  lower]``, so ``A h`` is ``W`` shifted, contiguous vector multiply-adds over
  the channels, and ``A^T delta`` is the same loop gathering from ``i - (d -
  lower)``: the transpose needs no copy. Four rows of one band step together
  (``SEQUENCES``), each lane group of the band serving all four;
* CSR: each row's non-zeros gather from the previous state; ``A^T delta``
  runs over the transposed pattern (``crow_t, col_t``, values ``values_t``),
  built once per call by the caller. With one matrix for the whole batch,
  the sequences are laid out in lane tiles (G, T, C, L) and each non-zero is
  one vector multiply-add across L sequences (``csr_tiles``).

The backward is the reverse-time recursion of docs/design.md ("Coupled
recurrences"): ``delta[t] = f'(z[t]) (g[t] + A^T delta[t+1])`` with ``f'``
from the saved output, ``dL/dA`` on the structure only, summed per row into
``grad_band_rows`` / ``grad_values_rows`` (the caller adds the rows that share
a matrix), and ``dL/dh0 = A^T delta[0]``.

Shapes as in ``filterbank.kernels.reference``, with ``band_t`` (M, W, C).
Nonlinearity codes: 0 identity, 1 tanh, 2 relu.
"""

from __future__ import annotations

import numba
import numpy as np

from ._simd import (
    borrow, group_width, vadd, vclamp, vdiv, vfma, vfnma, vload, vmax, vmul, vsplat, vstore, vsum, vwhere_positive,
)
from ._threads import array3, compiled, launch, matrix, pack, slots_of, tiles_of, value, vector
from ._tiles import JIT, block_to_rows, rows_to_block

__all__ = ["NONLINEARITIES", "band_layout", "banded_forward", "banded_backward", "csr_forward", "csr_backward",
           "csr_lanes_forward", "csr_lanes_backward"]

NONLINEARITIES = {"identity": 0, "tanh": 1, "relu": 2}


@numba.njit(inline="always", **JIT)
def _activate(z, kind):
    """``z <- f(z)`` over one step's channels."""
    if kind == 1:
        for i in range(z.shape[0]):
            z[i] = np.tanh(z[i])
    elif kind == 2:
        for i in range(z.shape[0]):
            z[i] = max(z[i], z[i] - z[i])


@numba.njit(inline="always", **JIT)
def _adjoint_step(delta, grad, out, carry, kind):
    """``delta = f'(z) (grad + carry)``, ``f'`` from the output ``out = f(z)``."""
    if kind == 1:
        for i in range(delta.shape[0]):
            total = grad[i] + carry[i]
            delta[i] = total - total * out[i] * out[i]
    elif kind == 2:
        for i in range(delta.shape[0]):
            delta[i] = grad[i] + carry[i] if out[i] > 0 else out[i] - out[i]
    else:
        for i in range(delta.shape[0]):
            delta[i] = grad[i] + carry[i]


# --------------------------------------------------------------------------
# Banded.


@numba.njit(inline="always", **JIT)
def _load(matrix, row, i0, n_channels, spare):
    """Lanes ``matrix[row, i0 : i0 + G]``, zero past ``n_channels`` (the last group goes through ``spare``)."""
    if i0 + spare.shape[1] <= n_channels:
        return vload(matrix, row, i0)
    for c in range(spare.shape[1]):
        spare[0, c] = matrix[row, i0 + c] if i0 + c < n_channels else 0.0
    return vload(spare, 0, 0)


@numba.njit(inline="always", **JIT)
def _store(matrix, row, i0, n_channels, spare, value):
    """``matrix[row, i0 : i0 + G] = value``, the lanes before ``n_channels`` only."""
    if i0 + spare.shape[1] <= n_channels:
        vstore(matrix, row, i0, value)
        return
    vstore(spare, 0, 0, value)
    for c in range(n_channels - i0):
        matrix[row, i0 + c] = spare[0, c]


# tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 9 (beyond, tanh rounds to +-1 in
# float32): a (4, 4) rational fit of least maximum relative error, 2e-8 in
# exact arithmetic, 6 ulp at most when evaluated in float32 (measured on 2e6
# points). float64 keeps libm's tanh.
_TANH_P = (9.9999997947041641e-01, 1.3381026708432986e-01, 3.4955893847092453e-03, 2.0609102271919471e-05,
           1.3354687458382554e-08)
_TANH_Q = (1.0, 4.6714342302493300e-01, 2.5876987018008332e-02, 3.2856368453223507e-04, 7.7765693004066608e-07)


@numba.njit(inline="always", **JIT)
def _vtanh(z):
    """Lane-wise tanh of a float32 lane vector."""
    x = vclamp(z, 9.0)
    s = vmul(x, x)
    p = vfma(vfma(vfma(vfma(vsplat(z, _TANH_P[4]), s, vsplat(z, _TANH_P[3])), s, vsplat(z, _TANH_P[2])),
                  s, vsplat(z, _TANH_P[1])), s, vsplat(z, _TANH_P[0]))
    q = vfma(vfma(vfma(vfma(vsplat(z, _TANH_Q[4]), s, vsplat(z, _TANH_Q[3])), s, vsplat(z, _TANH_Q[2])),
                  s, vsplat(z, _TANH_Q[1])), s, vsplat(z, _TANH_Q[0]))
    return vclamp(vdiv(vmul(x, p), q), 1.0)


@numba.njit(inline="always", **JIT)
def _tanh_row(matrix, row, start, n_channels, spare):
    """``matrix[row, start : start + n_channels] = tanh(...)``: lane groups in float32, libm in float64."""
    if matrix.itemsize == 4:
        for i0 in range(0, n_channels, spare.shape[1]):
            # The lanes past n_channels hold zeros or padding; tanh keeps zeros zero.
            vstore(matrix, row, start + i0, _vtanh(vload(matrix, row, start + i0)))
    else:
        for c in range(n_channels):
            matrix[row, start + c] = np.tanh(matrix[row, start + c])


@numba.njit(inline="always", **JIT)
def _band_times(band, state, row, at, lower, total):
    """``total + sum_d band[d, at] state[row, at + d - lower]``: row ``at - pad`` of ``A h`` for one lane group,
    in four interleaved partial sums (one sum's multiply-adds wait for each other; four keep the FMA units busy)."""
    width = band.shape[0]
    zero = vsplat(total, 0.0)
    s1, s2, s3 = zero, zero, zero
    d = 0
    while d + 4 <= width:
        column = at + d - lower
        total = vfma(vload(band, d, at), vload(state, row, column), total)
        s1 = vfma(vload(band, d + 1, at), vload(state, row, column + 1), s1)
        s2 = vfma(vload(band, d + 2, at), vload(state, row, column + 2), s2)
        s3 = vfma(vload(band, d + 3, at), vload(state, row, column + 3), s3)
        d += 4
    while d < width:
        total = vfma(vload(band, d, at), vload(state, row, at + d - lower), total)
        d += 1
    return vadd(vadd(total, s1), vadd(s2, s3))


@numba.njit(inline="always", **JIT)
def _activate_lanes(z, kind, single):
    """``f(z)`` for one lane group (``single``: float32); float64's tanh is left to :func:`_tanh_row` (libm,
    lane by lane)."""
    if kind == 2:
        return vmax(z, vsplat(z, 0.0))
    if kind == 1 and single:
        return _vtanh(z)
    return z


# Sequences per task. Four that share one band run their steps together: each
# lane group of the band (it does not fit in L1 at 1024 channels) is loaded
# once for four sequences, and the band gradient is read and written once for
# four (measured on the 2-core machine: forward 1.5x, backward 1.3x faster).
SEQUENCES = 4


@numba.njit(inline="always", **JIT)
def _task_rows(g, per_task, band_index, n_rows):
    """``(first, count, shared)``: task g's rows ``first .. first + count - 1``, and whether they are
    ``SEQUENCES`` rows of one band."""
    first = g * per_task
    count = min(per_task, n_rows - first)
    shared = count == SEQUENCES
    for s in range(1, count):
        shared = shared and band_index[first + s] == band_index[first]
    return first, count, shared


@numba.njit(**JIT)
def _forward_tail(n, t, u, band, h, state, before, now, lower, pad, kind, spare):
    """Step t of row n past its whole lane groups: the last, partial group, libm's tanh (float64), and the
    output's channels there."""
    n_channels = u.shape[2]
    group = spare.shape[1]
    whole = n_channels - n_channels % group
    hn = borrow(h, n)
    if whole < n_channels:
        z = _band_times(band, state, before, pad + whole, lower, _load(borrow(u, n), t, whole, n_channels, spare))
        vstore(state, now, pad + whole, _activate_lanes(z, kind, u.itemsize == 4))
    if kind == 1 and u.itemsize == 8:
        _tanh_row(state, now, pad, n_channels, spare)
        for i0 in range(0, whole, group):
            vstore(hn, t, i0, vload(state, now, pad + i0))
    for c in range(whole, n_channels):
        hn[t, c] = state[now, pad + c]


# The per-task functions below are called, not inlined, and their loops over
# the lane groups run the band's multiply-adds in their own body, with plain
# vector loads and stores, leaving the last, partial group to the per-step
# tail: an array handed to an inlined helper with a loop or a branch inside
# (``_band_times``, ``_load`` and its ``spare``) is reference-counted around
# it, which numba does not prune, and each lane group then paid two to four
# calls into its runtime (measured: the forward 2.5-3.5x slower).


@numba.njit(**JIT)
def _forward_one(n, u, band_t, band_index, h0, h, lower, pad, kind, state, spare):
    """Row n: the state of step t - 1 in ``state[t % 2]``."""
    n_time, n_channels = u.shape[1], u.shape[2]
    width = band_t.shape[1]
    group = spare.shape[1]
    whole = n_channels - n_channels % group
    single = u.itemsize == 4
    direct = single or kind != 1  # else libm's tanh runs after the loop
    # A call per step costs where steps are short: only when a step has a partial group or libm's tanh.
    tail = not direct or whole < n_channels
    band, un, hn = borrow(band_t, band_index[n]), borrow(u, n), borrow(h, n)
    for c in range(n_channels):
        state[0, pad + c] = h0[n, c]
    for t in range(n_time):
        before, now = t % 2, 1 - t % 2
        for i0 in range(0, whole, group):
            at = pad + i0
            z = vload(un, t, i0)
            y = vsplat(z, 0.0)
            d = 0
            while d + 2 <= width:  # two multiply-add chains in flight
                column = at + d - lower
                z = vfma(vload(band, d, at), vload(state, before, column), z)
                y = vfma(vload(band, d + 1, at), vload(state, before, column + 1), y)
                d += 2
            if d < width:
                z = vfma(vload(band, d, at), vload(state, before, at + d - lower), z)
            z = _activate_lanes(vadd(z, y), kind, single)
            vstore(state, now, at, z)
            if direct:
                vstore(hn, t, i0, z)
        if tail:
            _forward_tail(n, t, u, band, h, state, before, now, lower, pad, kind, spare)


@numba.njit(**JIT)
def _forward_four(first, u, band, h0, h, lower, pad, kind, state, spare):
    """Rows ``first .. first + 3``, of one band, step by step together: the state of row ``first + s`` at
    step t - 1 in ``state[(t % 2) * 4 + s]``. Each lane group of the band is loaded once for the four."""
    n_time, n_channels = u.shape[1], u.shape[2]
    width = band.shape[0]
    group = spare.shape[1]
    whole = n_channels - n_channels % group
    single = u.itemsize == 4
    direct = single or kind != 1
    tail = not direct or whole < n_channels  # as in _forward_one
    u0, u1, u2, u3 = borrow(u, first), borrow(u, first + 1), borrow(u, first + 2), borrow(u, first + 3)
    h_0, h_1, h_2, h_3 = borrow(h, first), borrow(h, first + 1), borrow(h, first + 2), borrow(h, first + 3)
    for s in range(4):
        for c in range(n_channels):
            state[s, pad + c] = h0[first + s, c]
    for t in range(n_time):
        r0 = (t % 2) * 4
        now = 4 - r0
        for i0 in range(0, whole, group):
            at = pad + i0
            z0, z1, z2, z3 = vload(u0, t, i0), vload(u1, t, i0), vload(u2, t, i0), vload(u3, t, i0)
            y0 = vsplat(z0, 0.0)
            y1, y2, y3 = y0, y0, y0
            d = 0
            while d + 2 <= width:  # eight multiply-add chains in flight
                column = at + d - lower
                b, c = vload(band, d, at), vload(band, d + 1, at)
                z0 = vfma(b, vload(state, r0, column), z0)
                y0 = vfma(c, vload(state, r0, column + 1), y0)
                z1 = vfma(b, vload(state, r0 + 1, column), z1)
                y1 = vfma(c, vload(state, r0 + 1, column + 1), y1)
                z2 = vfma(b, vload(state, r0 + 2, column), z2)
                y2 = vfma(c, vload(state, r0 + 2, column + 1), y2)
                z3 = vfma(b, vload(state, r0 + 3, column), z3)
                y3 = vfma(c, vload(state, r0 + 3, column + 1), y3)
                d += 2
            if d < width:
                column = at + d - lower
                b = vload(band, d, at)
                z0 = vfma(b, vload(state, r0, column), z0)
                z1 = vfma(b, vload(state, r0 + 1, column), z1)
                z2 = vfma(b, vload(state, r0 + 2, column), z2)
                z3 = vfma(b, vload(state, r0 + 3, column), z3)
            z0, z1 = _activate_lanes(vadd(z0, y0), kind, single), _activate_lanes(vadd(z1, y1), kind, single)
            z2, z3 = _activate_lanes(vadd(z2, y2), kind, single), _activate_lanes(vadd(z3, y3), kind, single)
            vstore(state, now, at, z0)
            vstore(state, now + 1, at, z1)
            vstore(state, now + 2, at, z2)
            vstore(state, now + 3, at, z3)
            if direct:
                vstore(h_0, t, i0, z0)
                vstore(h_1, t, i0, z1)
                vstore(h_2, t, i0, z2)
                vstore(h_3, t, i0, z3)
        if tail:
            for s in range(4):
                _forward_tail(first + s, t, u, band, h, state, r0 + s, now + s, lower, pad, kind, spare)


@numba.njit(inline="always", **JIT)
def banded_rows(tasks, per_task, u, band_t, band_index, h0, h, lower, pad, kind):
    """Forward: ``h[n, t] = f(A h[n, t-1] + u[n, t])``; task g runs rows ``g * per_task`` onwards
    (``per_task`` 1 or ``SEQUENCES``).

    ``band_t`` (M, W, pad + Cp + pad): diagonal d of channel i at column
    ``pad + i``, zero where ``i + d - lower`` is outside the matrix and past
    C (Cp: C rounded up to whole lane groups). The states of the step before
    sit in a buffer of the same padding (zeros outside the C channels: f
    keeps zeros zero), so a diagonal is one shifted vector load and a
    multiply-add per lane group.
    """
    n_rows = u.shape[0]
    states = np.zeros((1, 2 * SEQUENCES, band_t.shape[2]), u.dtype)
    spares = np.zeros((1, 1, group_width(u.itemsize)), u.dtype)
    for g in tasks:
        # Borrowed views, as in banded_backward_rows.
        state, spare = borrow(states, 0), borrow(spares, 0)
        first, count, shared = _task_rows(g, per_task, band_index, n_rows)
        if shared:
            _forward_four(first, u, borrow(band_t, band_index[first]), h0, h, lower, pad, kind, state, spare)
        else:
            for n in range(first, first + count):
                _forward_one(n, u, band_t, band_index, h0, h, lower, pad, kind, state, spare)


@numba.njit(inline="always", **JIT)
def _adjoint_lanes(grad, carry, out, kind):
    """``delta = f'(z) (grad + carry)`` for one lane group, ``f'`` from the output ``out = f(z)``."""
    total = vadd(grad, carry)
    if kind == 1:
        return vfnma(vmul(total, out), out, total)
    if kind == 2:
        return vwhere_positive(out, total)
    return total


@numba.njit(**JIT)
def _adjoint_row(n, s, t, grad_h, h, h0, grad_u, delta, carry, before, pad, kind, spare):
    """Step t of row n (row s of the buffers): ``delta = f'(z) (grad + carry)``, written to ``grad_u`` too,
    and the state before the step into ``before``."""
    n_channels = h.shape[2]
    group = spare.shape[1]
    whole = n_channels - n_channels % group
    gn, hn, dn = borrow(grad_h, n), borrow(h, n), borrow(grad_u, n)
    for i0 in range(0, whole, group):
        total = _adjoint_lanes(vload(gn, t, i0), vload(carry, s, pad + i0), vload(hn, t, i0), kind)
        vstore(delta, s, pad + i0, total)
        vstore(dn, t, i0, total)
        vstore(before, s, pad + i0, vload(hn, t - 1, i0) if t > 0 else vload(h0, n, i0))
    if whole < n_channels:
        total = _adjoint_lanes(_load(gn, t, whole, n_channels, spare), vload(carry, s, pad + whole),
                               _load(hn, t, whole, n_channels, spare), kind)
        vstore(delta, s, pad + whole, total)
        _store(dn, t, whole, n_channels, spare, total)
        vstore(before, s, pad + whole, _load(hn, t - 1, whole, n_channels, spare) if t > 0 else
               _load(h0, n, whole, n_channels, spare))


@numba.njit(**JIT)
def _backward_one(n, grad_h, h, band_t, band_index, h0, lower, pad, kind, grad_u, grad_band_rows, grad_h0, delta,
                  carry, before, spare):
    """Row n, in row 0 of the buffers."""
    n_time, n_channels = h.shape[1], h.shape[2]
    width, padded = band_t.shape[1], band_t.shape[2]
    group = spare.shape[1]
    band, grad_band = borrow(band_t, band_index[n]), borrow(grad_band_rows, n)
    for c in range(padded):
        carry[0, c] = 0.0
    for d in range(width):
        for c in range(padded):
            grad_band[d, c] = 0.0
    for tt in range(n_time):
        t = n_time - 1 - tt
        _adjoint_row(n, 0, t, grad_h, h, h0, grad_u, delta, carry, before, pad, kind, spare)
        for i0 in range(0, n_channels, group):
            at = pad + i0
            now = vload(delta, 0, at)
            z = vsplat(now, 0.0)
            y = z
            for d in range(width):
                vstore(grad_band, d, at, vfma(now, vload(before, 0, at + d - lower), vload(grad_band, d, at)))
            d = 0
            while d + 2 <= width:  # A^T delta, two chains
                column = at - d + lower
                z = vfma(vload(band, d, column), vload(delta, 0, column), z)
                y = vfma(vload(band, d + 1, column - 1), vload(delta, 0, column - 1), y)
                d += 2
            if d < width:
                column = at - d + lower
                z = vfma(vload(band, d, column), vload(delta, 0, column), z)
            vstore(carry, 0, at, vadd(z, y))
    for c in range(n_channels):
        grad_h0[n, c] = carry[0, pad + c]


@numba.njit(**JIT)
def _backward_four(first, grad_h, h, band, h0, lower, pad, kind, grad_u, grad_band, grad_h0, delta, carry, before,
                   spare):
    """Rows ``first .. first + 3``, of one band, step by step together (row s of the buffers for row
    ``first + s``); their band gradients summed into ``grad_band``. Each lane group of the band and of its
    gradient is loaded once for the four."""
    n_time, n_channels = h.shape[1], h.shape[2]
    width, padded = band.shape[0], band.shape[1]
    group = spare.shape[1]
    for c in range(padded):
        for s in range(4):
            carry[s, c] = 0.0
        for d in range(width):
            grad_band[d, c] = 0.0
    for tt in range(n_time):
        t = n_time - 1 - tt
        for s in range(4):
            _adjoint_row(first + s, s, t, grad_h, h, h0, grad_u, delta, carry, before, pad, kind, spare)
        for i0 in range(0, n_channels, group):
            at = pad + i0
            now0, now1, now2, now3 = vload(delta, 0, at), vload(delta, 1, at), vload(delta, 2, at), vload(delta, 3, at)
            for d in range(width):
                column = at + d - lower
                total = vfma(now0, vload(before, 0, column), vload(grad_band, d, at))
                total = vfma(now1, vload(before, 1, column), total)
                total = vfma(now2, vload(before, 2, column), total)
                vstore(grad_band, d, at, vfma(now3, vload(before, 3, column), total))
            z0 = vsplat(now0, 0.0)
            z1, z2, z3, y0, y1, y2, y3 = z0, z0, z0, z0, z0, z0, z0
            d = 0
            while d + 2 <= width:  # A^T delta, eight chains
                column = at - d + lower
                b, c = vload(band, d, column), vload(band, d + 1, column - 1)
                z0 = vfma(b, vload(delta, 0, column), z0)
                y0 = vfma(c, vload(delta, 0, column - 1), y0)
                z1 = vfma(b, vload(delta, 1, column), z1)
                y1 = vfma(c, vload(delta, 1, column - 1), y1)
                z2 = vfma(b, vload(delta, 2, column), z2)
                y2 = vfma(c, vload(delta, 2, column - 1), y2)
                z3 = vfma(b, vload(delta, 3, column), z3)
                y3 = vfma(c, vload(delta, 3, column - 1), y3)
                d += 2
            if d < width:
                column = at - d + lower
                b = vload(band, d, column)
                z0 = vfma(b, vload(delta, 0, column), z0)
                z1 = vfma(b, vload(delta, 1, column), z1)
                z2 = vfma(b, vload(delta, 2, column), z2)
                z3 = vfma(b, vload(delta, 3, column), z3)
            vstore(carry, 0, at, vadd(z0, y0))
            vstore(carry, 1, at, vadd(z1, y1))
            vstore(carry, 2, at, vadd(z2, y2))
            vstore(carry, 3, at, vadd(z3, y3))
    for s in range(4):
        for c in range(n_channels):
            grad_h0[first + s, c] = carry[s, pad + c]


@numba.njit(inline="always", **JIT)
def banded_backward_rows(tasks, per_task, grad_h, h, band_t, band_index, h0, lower, pad, kind, grad_u,
                         grad_band_rows, grad_h0):
    """Backward, tasks as in :func:`banded_rows`: ``grad_u`` (N, T, C), ``grad_band_rows`` (N, W, pad + Cp +
    pad) (column ``pad + i`` for channel i; four rows of one band run together and leave their sum in the
    first one's, zeros in the others'), ``grad_h0`` (N, C); ``band_t`` as in :func:`banded_rows`.

    ``A^T delta`` gathers, for channel j, diagonal d of channel ``j - (d -
    lower)``: a shifted load of the band and of the padded ``delta``.
    """
    n_rows = h.shape[0]
    padded = band_t.shape[2]
    # Rows: delta, A^T delta[t+1] (after the loop A^T delta[0]), h[t-1]; and the spare lane group.
    buffers = np.zeros((3, SEQUENCES, padded), h.dtype)
    spares = np.zeros((1, 1, group_width(h.itemsize)), h.dtype)
    for g in tasks:
        # Borrowed views, taken in the loop so that their owners live through it: arrays of their own would
        # be reference-counted (atomic operations) at every per-step call that takes them.
        delta, carry, before, spare = borrow(buffers, 0), borrow(buffers, 1), borrow(buffers, 2), borrow(spares, 0)
        first, count, shared = _task_rows(g, per_task, band_index, n_rows)
        if shared:
            for n in range(first + 1, first + count):
                grad_band = borrow(grad_band_rows, n)
                for d in range(grad_band.shape[0]):
                    for c in range(padded):
                        grad_band[d, c] = 0.0
            _backward_four(first, grad_h, h, borrow(band_t, band_index[first]), h0, lower, pad, kind, grad_u,
                           borrow(grad_band_rows, first), grad_h0, delta, carry, before, spare)
        else:
            for n in range(first, first + count):
                _backward_one(n, grad_h, h, band_t, band_index, h0, lower, pad, kind, grad_u, grad_band_rows,
                              grad_h0, delta, carry, before, spare)


# --------------------------------------------------------------------------
# CSR.


@numba.njit(**JIT)
def csr_rows(rows, u, crow, col, values, values_index, h0, h, kind):
    """Forward: ``h[n, t] = f(A h[n, t-1] + u[n, t])``, A in CSR, for the rows ``rows``."""
    n_time, n_channels = u.shape[1], u.shape[2]
    for n in rows:
        nonzeros = borrow(values, values_index[n])
        un, hn = borrow(u, n), borrow(h, n)
        for t in range(n_time):
            prev = borrow(hn, t - 1) if t > 0 else borrow(h0, n)
            now, inp = borrow(hn, t), borrow(un, t)
            for i in range(n_channels):
                total = inp[i]
                for k in range(crow[i], crow[i + 1]):
                    total += nonzeros[k] * prev[col[k]]
                now[i] = total
            _activate(now, kind)


@numba.njit(**JIT)
def csr_backward_rows(rows, grad_h, h, crow, col, values_t, crow_t, col_t, values_index, h0, kind, grad_u,
                      grad_values_rows, grad_h0):
    """Backward for the rows ``rows``: ``grad_u`` (N, T, C), ``grad_values_rows`` (N, nnz), ``grad_h0`` (N, C);
    ``crow_t, col_t, values_t`` the transposed pattern and its values."""
    n_time, n_channels = h.shape[1], h.shape[2]
    zero = np.zeros(1, h.dtype)[0]  # sums in the arrays' dtype
    for n in rows:
        nonzeros_t = borrow(values_t, values_index[n])
        gn, hn, dn = borrow(grad_h, n), borrow(h, n), borrow(grad_u, n)
        grad_values = borrow(grad_values_rows, n)
        carry = borrow(grad_h0, n)
        for i in range(n_channels):
            carry[i] = 0.0
        for k in range(grad_values.shape[0]):
            grad_values[k] = 0.0
        for tt in range(n_time):
            t = n_time - 1 - tt
            delta = borrow(dn, t)
            _adjoint_step(delta, borrow(gn, t), borrow(hn, t), carry, kind)
            prev = borrow(hn, t - 1) if t > 0 else borrow(h0, n)
            for i in range(n_channels):
                for k in range(crow[i], crow[i + 1]):
                    grad_values[k] += delta[i] * prev[col[k]]
            for j in range(n_channels):
                total = zero
                for q in range(crow_t[j], crow_t[j + 1]):
                    total += nonzeros_t[q] * delta[col_t[q]]
                carry[j] = total


# --------------------------------------------------------------------------
# CSR with one matrix for the whole batch: lanes across sequences.
#
# A row's non-zeros gather from scattered columns of the state, which does not
# vectorise along the channels; with one matrix for every sequence the same
# gather serves a lane group of L sequences instead. Each step moves the
# group's input (and, backwards, its gradient and outputs) between the
# sequences' rows (N, T * C) and a (C, L) buffer with the transposing block
# moves of ``_tiles.py``, so each non-zero is one vector multiply-add across
# L sequences and no transposed copy of the data is ever made.


@numba.njit(inline="always", **JIT)
def _tanh_lanes(matrix, row):
    """``matrix[row, :] = tanh(...)`` for one lane vector's row of a 2-D array."""
    if matrix.itemsize == 4:
        vstore(matrix, row, 0, _vtanh(vload(matrix, row, 0)))
    else:
        for c in range(matrix.shape[1]):
            matrix[row, c] = np.tanh(matrix[row, c])


@numba.njit(inline="always", **JIT)
def _gather_row(state, crow, col, values, i, total):
    """``total + sum_k values[k] state[col[k]]`` over row i's non-zeros, in four interleaved partial sums (the
    multiply-adds of one sum wait for each other; four keep the FMA units busy)."""
    zero = vsplat(total, 0.0)
    s1, s2, s3 = zero, zero, zero
    k, stop = crow[i], crow[i + 1]
    while k + 4 <= stop:
        total = vfma(vsplat(state, values[k]), vload(state, col[k], 0), total)
        s1 = vfma(vsplat(state, values[k + 1]), vload(state, col[k + 1], 0), s1)
        s2 = vfma(vsplat(state, values[k + 2]), vload(state, col[k + 2], 0), s2)
        s3 = vfma(vsplat(state, values[k + 3]), vload(state, col[k + 3], 0), s3)
        k += 4
    while k < stop:
        total = vfma(vsplat(state, values[k]), vload(state, col[k], 0), total)
        k += 1
    return vadd(vadd(total, s1), vadd(s2, s3))


@numba.njit(**JIT)
def csr_tiles(tiles, u, rows, crow, col, values, h0, h, n_channels, kind):
    """Forward, a lane group of sequences per tile: ``u, h`` (N, T * C), ``h0`` (N, C), ``rows`` (N,) = 0..N-1,
    ``values`` (nnz,); ``crow``, ``col`` int32."""
    lanes = group_width(u.itemsize)
    n_rows, n_time = u.shape[0], u.shape[1] // n_channels
    buffers = np.zeros((3, n_channels, lanes), u.dtype)  # the input, and the states of two steps
    inp = borrow(buffers, 0)
    for g in tiles:
        first = g * lanes
        n = min(lanes, n_rows - first)
        for c in range(n_channels):
            for b in range(3):
                vstore(borrow(buffers, b), c, 0, vsplat(u, 0.0))  # lanes past n stay zero
        rows_to_block(h0, rows, first, n, 0, n_channels, borrow(buffers, 1), 0)
        for t in range(n_time):
            prev, now = borrow(buffers, 1 + t % 2), borrow(buffers, 2 - t % 2)
            rows_to_block(u, rows, first, n, t * n_channels, n_channels, inp, 0)
            for i in range(n_channels):
                z = _gather_row(prev, crow, col, values, i, vload(inp, i, 0))
                if kind == 2:
                    z = vmax(z, vsplat(u, 0.0))
                vstore(now, i, 0, z)
                if kind == 1:
                    _tanh_lanes(now, i)
            block_to_rows(now, 0, h, rows, first, n, t * n_channels, n_channels)


@numba.njit(**JIT)
def csr_tiles_backward(tiles, grad_h, h, rows, crow, col, values_t, crow_t, col_t, h0, n_channels, kind, grad_u,
                       grad_values_t, grad_h0):
    """Backward, a lane group per tile: ``grad_h, h, grad_u`` (N, T * C) (``grad_u`` may be ``grad_h`` itself:
    each step reads its gradient before writing it), ``grad_values_t`` (G, nnz) each tile's sum over its
    lanes, ``grad_h0`` (N, C); the patterns int32."""
    lanes = group_width(h.itemsize)
    n_rows, n_time = h.shape[0], h.shape[1] // n_channels
    # Buffers: 0 the gradient, 1 and 2 the outputs of steps t and t - 1, 3 delta, 4 A^T delta[t+1].
    buffers = np.zeros((5, n_channels, lanes), h.dtype)
    grad, delta, carry = borrow(buffers, 0), borrow(buffers, 3), borrow(buffers, 4)
    for g in tiles:
        first = g * lanes
        n = min(lanes, n_rows - first)
        grad_values = borrow(grad_values_t, g)
        for c in range(n_channels):
            for b in range(5):
                vstore(borrow(buffers, b), c, 0, vsplat(h, 0.0))
        for k in range(grad_values.shape[0]):
            grad_values[k] = 0.0
        rows_to_block(h, rows, first, n, (n_time - 1) * n_channels, n_channels, borrow(buffers, 1), 0)
        for tt in range(n_time):
            t = n_time - 1 - tt
            out, prev = borrow(buffers, 1 + tt % 2), borrow(buffers, 2 - tt % 2)
            rows_to_block(grad_h, rows, first, n, t * n_channels, n_channels, grad, 0)
            for i in range(n_channels):
                total = vadd(vload(grad, i, 0), vload(carry, i, 0))
                if kind == 1:
                    value = vload(out, i, 0)
                    total = vfnma(vmul(total, value), value, total)
                elif kind == 2:
                    total = vwhere_positive(vload(out, i, 0), total)
                vstore(delta, i, 0, total)
            block_to_rows(delta, 0, grad_u, rows, first, n, t * n_channels, n_channels)
            if t > 0:
                rows_to_block(h, rows, first, n, (t - 1) * n_channels, n_channels, prev, 0)
            else:
                rows_to_block(h0, rows, first, n, 0, n_channels, prev, 0)
            for i in range(n_channels):
                now = vload(delta, i, 0)
                for k in range(crow[i], crow[i + 1]):
                    grad_values[k] += vsum(vmul(now, vload(prev, col[k], 0)))
            for j in range(n_channels):
                vstore(carry, j, 0, _gather_row(delta, crow_t, col_t, values_t, j, vsplat(h, 0.0)))
        block_to_rows(carry, 0, grad_h0, rows, first, n, 0, n_channels)


# --------------------------------------------------------------------------
# Entry points: one cfunc per kernel and dtype (``_threads.py``), a task per row.


@numba.njit(inline="always", **JIT)
def _banded_call(args, dims, data, dtype):
    p = slots_of(data)
    banded_rows(tiles_of(args, dims), value(p, 0), array3(p, 1, dtype), array3(p, 2, dtype), vector(p, 3, np.int64),
                matrix(p, 4, dtype), array3(p, 5, dtype), value(p, 6), value(p, 7), value(p, 8))


@numba.njit(inline="always", **JIT)
def _banded_backward_call(args, dims, data, dtype):
    p = slots_of(data)
    banded_backward_rows(tiles_of(args, dims), value(p, 0), array3(p, 1, dtype), array3(p, 2, dtype),
                         array3(p, 3, dtype), vector(p, 4, np.int64), matrix(p, 5, dtype), value(p, 6), value(p, 7),
                         value(p, 8), array3(p, 9, dtype), array3(p, 10, dtype), matrix(p, 11, dtype))


@numba.njit(inline="always", **JIT)
def _csr_call(args, dims, data, dtype):
    p = slots_of(data)
    csr_rows(tiles_of(args, dims), array3(p, 0, dtype), vector(p, 1, np.int64), vector(p, 2, np.int64),
             matrix(p, 3, dtype), vector(p, 4, np.int64), matrix(p, 5, dtype), array3(p, 6, dtype), value(p, 7))


@numba.njit(inline="always", **JIT)
def _csr_backward_call(args, dims, data, dtype):
    p = slots_of(data)
    csr_backward_rows(tiles_of(args, dims), array3(p, 0, dtype), array3(p, 1, dtype), vector(p, 2, np.int64),
                      vector(p, 3, np.int64), matrix(p, 4, dtype), vector(p, 5, np.int64), vector(p, 6, np.int64),
                      vector(p, 7, np.int64), matrix(p, 8, dtype), value(p, 9), array3(p, 10, dtype),
                      matrix(p, 11, dtype), matrix(p, 12, dtype))


@numba.njit(inline="always", **JIT)
def _csr_tiles_call(args, dims, data, dtype):
    p = slots_of(data)
    csr_tiles(tiles_of(args, dims), matrix(p, 0, dtype), vector(p, 1, np.int64), vector(p, 2, np.int32),
              vector(p, 3, np.int32), vector(p, 4, dtype), matrix(p, 5, dtype), matrix(p, 6, dtype), value(p, 7),
              value(p, 8))


@numba.njit(inline="always", **JIT)
def _csr_tiles_backward_call(args, dims, data, dtype):
    p = slots_of(data)
    csr_tiles_backward(tiles_of(args, dims), matrix(p, 0, dtype), matrix(p, 1, dtype), vector(p, 2, np.int64),
                       vector(p, 3, np.int32), vector(p, 4, np.int32), vector(p, 5, dtype), vector(p, 6, np.int32),
                       vector(p, 7, np.int32), matrix(p, 8, dtype), value(p, 9), value(p, 10), matrix(p, 11, dtype),
                       matrix(p, 12, dtype), matrix(p, 13, dtype))


def _csr_tiles_float32(args, dims, steps, data):
    _csr_tiles_call(args, dims, data, np.float32)


def _csr_tiles_float64(args, dims, steps, data):
    _csr_tiles_call(args, dims, data, np.float64)


def _csr_tiles_backward_float32(args, dims, steps, data):
    _csr_tiles_backward_call(args, dims, data, np.float32)


def _csr_tiles_backward_float64(args, dims, steps, data):
    _csr_tiles_backward_call(args, dims, data, np.float64)


def _banded_float32(args, dims, steps, data):
    _banded_call(args, dims, data, np.float32)


def _banded_float64(args, dims, steps, data):
    _banded_call(args, dims, data, np.float64)


def _banded_backward_float32(args, dims, steps, data):
    _banded_backward_call(args, dims, data, np.float32)


def _banded_backward_float64(args, dims, steps, data):
    _banded_backward_call(args, dims, data, np.float64)


def _csr_float32(args, dims, steps, data):
    _csr_call(args, dims, data, np.float32)


def _csr_float64(args, dims, steps, data):
    _csr_call(args, dims, data, np.float64)


def _csr_backward_float32(args, dims, steps, data):
    _csr_backward_call(args, dims, data, np.float32)


def _csr_backward_float64(args, dims, steps, data):
    _csr_backward_call(args, dims, data, np.float64)


_KERNELS = {
    "banded": {np.dtype(np.float32): _banded_float32, np.dtype(np.float64): _banded_float64},
    "banded_backward": {np.dtype(np.float32): _banded_backward_float32,
                        np.dtype(np.float64): _banded_backward_float64},
    "csr": {np.dtype(np.float32): _csr_float32, np.dtype(np.float64): _csr_float64},
    "csr_backward": {np.dtype(np.float32): _csr_backward_float32, np.dtype(np.float64): _csr_backward_float64},
    "csr_tiles": {np.dtype(np.float32): _csr_tiles_float32, np.dtype(np.float64): _csr_tiles_float64},
    "csr_tiles_backward": {np.dtype(np.float32): _csr_tiles_backward_float32,
                           np.dtype(np.float64): _csr_tiles_backward_float64},
}


def _run(kernel: str, n_tasks: int, *arguments) -> None:
    """Launch ``kernel`` in the dtype of its first array argument."""
    dtype = next(argument.dtype for argument in arguments if isinstance(argument, np.ndarray))
    launch(compiled(_KERNELS[kernel][dtype]), n_tasks, pack(*arguments))


def band_layout(n_channels: int, lower: int, upper: int, itemsize: int) -> tuple[int, int]:
    """``(pad, padded)``: the padding either side and the row length of the kernels' padded band layout."""
    group = 64 // itemsize
    pad = -(-max(lower, upper, 1) // group) * group
    return pad, pad + -(-n_channels // group) * group + pad


def _sequences_per_task(n_rows: int) -> int:
    """``SEQUENCES`` when that still leaves every thread a task, else 1."""
    return SEQUENCES if n_rows >= SEQUENCES * numba.get_num_threads() else 1


def banded_forward(u, band_t, band_index, h0, h, lower, pad, kind):
    """Fill ``h`` (:func:`banded_rows`); numpy arrays of one float dtype (indices int64), C-contiguous."""
    per_task = _sequences_per_task(u.shape[0])
    _run("banded", -(-u.shape[0] // per_task), per_task, u, band_t, band_index, h0, h, lower, pad, kind)


def banded_backward(grad_h, h, band_t, band_index, h0, lower, pad, kind, grad_u, grad_band_rows, grad_h0):
    """Fill ``grad_u, grad_band_rows, grad_h0`` (:func:`banded_backward_rows`); sum ``grad_band_rows`` over
    the rows that share a band (a task's first row may hold its other rows' share)."""
    per_task = _sequences_per_task(h.shape[0])
    _run("banded_backward", -(-h.shape[0] // per_task), per_task, grad_h, h, band_t, band_index, h0, lower, pad,
         kind, grad_u, grad_band_rows, grad_h0)


def csr_forward(u, crow, col, values, values_index, h0, h, kind):
    """Fill ``h`` (:func:`csr_rows`)."""
    _run("csr", u.shape[0], u, crow, col, values, values_index, h0, h, kind)


def csr_backward(grad_h, h, crow, col, values_t, crow_t, col_t, values_index, h0, kind, grad_u, grad_values_rows,
                 grad_h0):
    """Fill ``grad_u, grad_values_rows, grad_h0`` (:func:`csr_backward_rows`)."""
    _run("csr_backward", h.shape[0], grad_h, h, crow, col, values_t, crow_t, col_t, values_index, h0, kind, grad_u,
         grad_values_rows, grad_h0)


def csr_lanes_forward(u, crow, col, values, h0, h, n_channels, kind):
    """Fill ``h`` (:func:`csr_tiles`): one matrix, sequences in lane groups; ``u, h`` (N, T * C)."""
    lanes = 64 // u.itemsize
    _run("csr_tiles", -(-u.shape[0] // lanes), u, np.arange(u.shape[0]), crow, col, values, h0, h, n_channels, kind)


def csr_lanes_backward(grad_h, h, crow, col, values_t, crow_t, col_t, h0, n_channels, kind, grad_u, grad_values_t,
                       grad_h0):
    """Fill ``grad_u, grad_values_t, grad_h0`` (:func:`csr_tiles_backward`)."""
    _run("csr_tiles_backward", grad_values_t.shape[0], grad_h, h, np.arange(h.shape[0]), crow, col, values_t,
         crow_t, col_t, h0, n_channels, kind, grad_u, grad_values_t, grad_h0)
