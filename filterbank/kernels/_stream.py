"""numba kernel for one streaming step of the front-end: filter a block, take the frames it completes.

Inference only, one call per block, so that a 10 ms block costs what its
arithmetic costs rather than a chain of small calls. For every row: the
block through every filter's cascade (transposed direct form II, time outer
and filters inner, so that the filters' independent recursions vectorise),
appended to the band signals kept from before; the frames whose windows now
lie inside them; the samples the next frame still needs kept.
"""

from __future__ import annotations

import numba
import numpy as np

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
def step(x, b, a, zi, history, window, hop, square, zf, bands, energy):
    """One block for every row; returns 1 + the first filter whose a[0] is 0 (nothing computed), else 0.

    x: (R, T); b, a: (F, S, 3) raw; zi: (R, F, S, 2); history: (R, F, H);
    window: (W,); out: zf (R, F, S, 2), bands (R, F, H + T - n hop) and
    energy (R, F, n), n frames.
    """
    n_rows, n_time = x.shape
    n_filters, n_sections = b.shape[0], b.shape[1]
    kept = history.shape[2]
    for f in range(n_filters):
        for s in range(n_sections):
            if a[f, s, 0] == 0:
                return f + 1
    dtype = x.dtype
    bn = np.empty((n_sections, 3, n_filters), dtype)
    an = np.empty((n_sections, 3, n_filters), dtype)
    for f in range(n_filters):
        for s in range(n_sections):
            a0 = a[f, s, 0]
            for k in range(3):
                bn[s, k, f] = b[f, s, k] / a0
                an[s, k, f] = a[f, s, k] / a0
    z = np.empty((n_sections, 2, n_filters), dtype)
    buffer = np.empty((n_filters, kept + n_time), dtype)
    consumed = energy.shape[2] * hop
    for r in range(n_rows):
        for f in range(n_filters):
            for s in range(n_sections):
                z[s, 0, f] = zi[r, f, s, 0]
                z[s, 1, f] = zi[r, f, s, 1]
            for h in range(kept):
                buffer[f, h] = history[r, f, h]
        _filter_row(x[r], bn, an, z, buffer, kept)
        _frames_row(buffer, window, hop, square, energy[r])
        for f in range(n_filters):
            for s in range(n_sections):
                zf[r, f, s, 0] = z[s, 0, f]
                zf[r, f, s, 1] = z[s, 1, f]
            for h in range(bands.shape[2]):
                bands[r, f, h] = buffer[f, consumed + h]
    return 0
