"""numba kernel for one streaming step of the front-end: filter a block, take the frames it completes.

Inference only, one call per block, so that a 10 ms block costs what its
arithmetic costs rather than a chain of small calls. For every row: the
block through every filter's cascade (transposed direct form II, time outer
and filters inner, so that the filters' independent recursions vectorise),
appended to the band signals kept from before; the frames whose windows now
lie inside them, compressed; the samples the next frame still needs kept.
"""

from __future__ import annotations

import numba
import numpy as np

from ._simd import flush_subnormals, restore_subnormals

__all__ = ["step"]

# The recursion keeps the order written (FMA contraction only); the window
# sums may reassociate, so that they vectorise.
_RECURSION = {"nogil": True, "cache": True, "fastmath": {"contract"}, "boundscheck": False}
_SUMS = {"nogil": True, "cache": True, "fastmath": {"contract", "reassoc", "nsz"}, "boundscheck": False}


@numba.njit(**_RECURSION)
def _filter_row(x_row, bn, an, z, buffer, start):
    """x_row (T,) through every filter's cascade into buffer[:, start:start + T].

    bn, an: (S, 3, F) normalised; z: (S, 2, F) TDF-II state, updated in place.
    """
    n_sections, n_filters = bn.shape[0], bn.shape[2]
    current = np.empty(n_filters, buffer.dtype)
    for t in range(x_row.shape[0]):
        value = x_row[t]
        for f in range(n_filters):
            current[f] = value
        for s in range(n_sections):
            b0, b1, b2, a1, a2 = bn[s, 0], bn[s, 1], bn[s, 2], an[s, 1], an[s, 2]
            z0, z1 = z[s, 0], z[s, 1]
            for f in range(n_filters):
                v = current[f]
                y = b0[f] * v + z0[f]
                z0[f] = z1[f] + b1[f] * v - a1[f] * y
                z1[f] = b2[f] * v - a2[f] * y
                current[f] = y
        for f in range(n_filters):
            buffer[f, start + t] = current[f]


@numba.njit(**_SUMS)
def _frames_row(buffer, window, hop, square, energy_row):
    """energy_row[f, j] = sum_i window[i] e(buffer[f, j hop + i])."""
    for j in range(energy_row.shape[1]):
        first = j * hop
        for f in range(buffer.shape[0]):
            acc = 0.0
            if square:
                for i in range(window.shape[0]):
                    v = buffer[f, first + i]
                    acc += window[i] * v * v
            else:
                for i in range(window.shape[0]):
                    acc += window[i] * abs(buffer[f, first + i])
            energy_row[f, j] = acc


@numba.njit(**_RECURSION)
def _compress(energy_row, compression, floor, power):
    """In place: 1 = log(e + floor), 2 = (e + floor) ** power, 0 = as it is."""
    if compression == 0:
        return
    for f in range(energy_row.shape[0]):
        for j in range(energy_row.shape[1]):
            v = energy_row[f, j] + floor
            energy_row[f, j] = np.log(v) if compression == 1 else v ** power


@numba.njit(**_RECURSION)
def step(x, sos, zi, history, window, hop, square, compression, floor, power, zf, bands, energy):
    """One block for every row; returns 1 + the first filter whose a[0] is 0 (nothing computed), else 0.

    x: (R, T); sos: (F, S, 6) raw; zi: (R, F, S, 2); history: (R, F, H);
    window: (W,); compression: 0 none, 1 log, 2 power (with floor, power);
    out: zf (R, F, S, 2), bands (R, F, H + T - n hop) and energy (R, F, n),
    n frames, compressed.
    """
    n_rows, n_time = x.shape
    n_filters, n_sections = sos.shape[0], sos.shape[1]
    kept = history.shape[2]
    for f in range(n_filters):
        for s in range(n_sections):
            if sos[f, s, 3] == 0:
                return f + 1
    dtype = x.dtype
    bn = np.empty((n_sections, 3, n_filters), dtype)
    an = np.empty((n_sections, 3, n_filters), dtype)
    for f in range(n_filters):
        for s in range(n_sections):
            a0 = sos[f, s, 3]
            for k in range(3):
                bn[s, k, f] = sos[f, s, k] / a0
                an[s, k, f] = sos[f, s, 3 + k] / a0
    z = np.empty((n_sections, 2, n_filters), dtype)
    buffer = np.empty((n_filters, kept + n_time), dtype)
    consumed = energy.shape[2] * hop
    mxcsr = flush_subnormals()
    for r in range(n_rows):
        for f in range(n_filters):
            for s in range(n_sections):
                z[s, 0, f] = zi[r, f, s, 0]
                z[s, 1, f] = zi[r, f, s, 1]
            for h in range(kept):
                buffer[f, h] = history[r, f, h]
        _filter_row(x[r], bn, an, z, buffer, kept)
        _frames_row(buffer, window, hop, square, energy[r])
        _compress(energy[r], compression, floor, power)
        for f in range(n_filters):
            for s in range(n_sections):
                zf[r, f, s, 0] = z[s, 0, f]
                zf[r, f, s, 1] = z[s, 1, f]
            for h in range(bands.shape[2]):
                bands[r, f, h] = buffer[f, consumed + h]
    restore_subnormals(mxcsr)
    return 0
