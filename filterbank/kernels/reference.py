"""Pure-torch reference for every kernel operation: slow where it must be, obviously right.

This is the ground truth the fast kernels are tested against; ``cpu.py`` and
``cuda.py`` implement the same operations under the same names and
signatures. The cascade runs scipy's transposed direct form II literally,
one time step at a time, vectorised only across channels; everything is
differentiable by plain autograd (used by the tests to check the
hand-written backward kernels, and by the op layer for double backward of
the frame energies).

    y, zf = iir_cascade(x, x_index, b, a, zi)
    grad_x, grad_b, grad_a, grad_zi = iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    energy = frame_energy(y, window, hop, offset, n_frames, square)
    grad_y = frame_energy_backward(grad, y, window, hop, offset, square)
    energy = iir_cascade_frame_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits)
    energy, checkpoints = band_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, spacing)
    grad_x, grad_b, grad_a, grad_zi = band_energy_backward(grad, x, x_index, b, a, zi, checkpoints, window, hop,
                                                           offset, square, limits, spacing, want_grad_x)
    energy, zf, bands = stream_band_energy(x, sos, zi, history, window, hop, n_frames, square)
    h = banded_recurrence(u, band, band_index, h0, lower, nonlinearity)
    grad_u, grad_band, grad_h0 = banded_recurrence_backward(grad_h, h, band, band_index, h0, lower, nonlinearity)
    h = csr_recurrence(u, crow, col, values, values_index, h0, nonlinearity)
    grad_u, grad_values, grad_h0 = csr_recurrence_backward(grad_h, h, crow, col, values, values_index, h0,
                                                           nonlinearity)

    x:       (rows, time)             distinct input signals
    x_index: (channels,) int64        row of ``x`` each channel reads
    b, a:    (channels, sections, order + 1)   raw coefficients, a[..., 0] != 0
    zi:      (channels, sections, order)       initial TDF-II state per section
    y:       (channels, time)         output of the last section
    zf:      (channels, sections, order)       final state per section
    window:  (W,)                     frame ``f`` sums ``window[i] e(y[f hop - offset + i])``,
                                      ``e(v) = v^2`` (square) or ``|v|``, zero outside [0, time)
    energy:  (channels, n_frames)
    limits:  (channels,) int64        samples at or past ``limits[p]`` count as zero
    checkpoints: (ceil(time / spacing), sections, order, channels)
             checkpoints[j, s, h, p] is section s's output at time j spacing - order + h (zero before 0)

The coupled recurrences ``h[t] = f(A h[t-1] + u[t])`` are channels-last, one
row per sequence (``f``: "identity", "tanh" or "relu"):

    u, h:    (rows, time, C)          input and output; h0: (rows, C)
    band:    (matrices, C, W)         band[m, i, d] = A_m[i, i + d - lower], W = lower + upper + 1
                                      (entries whose column falls outside [0, C) are not read)
    crow:    (C + 1,) int64, col: (nnz,) int64   one CSR pattern, columns sorted within each row
    values:  (matrices, nnz)          A_m's non-zeros in that order
    band_index, values_index: (rows,) int64      the matrix each row uses

The streaming step has its own shapes (one bank of filters over every row):

    x: (..., time)   sos: (filters, sections, 6)   zi, zf: (..., filters, sections, 2)
    history: (..., filters, kept)    band signals from before this block
    energy: (..., filters, n_frames)   frame j over the band signals from history[..., j hop]
    bands: (..., filters, kept + time - n_frames hop)   what the next block needs
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._dtypes import compute_dtype

__all__ = ["iir_cascade", "iir_cascade_backward", "frame_energy", "frame_energy_backward", "iir_cascade_frame_energy",
           "band_energy", "band_energy_backward", "stream_band_energy", "banded_recurrence",
           "banded_recurrence_backward", "csr_recurrence", "csr_recurrence_backward", "band_columns",
           "band_to_dense", "dense_to_band", "transposed_pattern", "csr_to_dense", "ACTIVATIONS"]


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Filter each channel through its cascade of sections (TDF-II, as scipy).

    Equivalent Python loop, per channel and section (coefficients divided by a[0])::

        y[t] = b[0] x[t] + z[0]
        z[i] = z[i + 1] + b[i + 1] x[t] - a[i + 1] y[t]   (z[order] = 0)

    Args:
        x: (rows, time) float tensor.
        x_index: (channels,) int64, the row of ``x`` each channel reads.
        b, a: (channels, sections, order + 1), same dtype as ``x``.
        zi: (channels, sections, order), same dtype as ``x``.

    Returns:
        ``(y, zf)`` with y: (channels, time) and zf: (channels, sections, order).
    """
    dtype = compute_dtype(x.dtype)
    b, a, zi = b.to(dtype), a.to(dtype), zi.to(dtype)
    signal = x.to(dtype)[x_index]
    n_sections, order = b.shape[1], b.shape[2] - 1
    b = b / a[..., :1]
    a = a / a[..., :1]
    final_states = []
    for s in range(n_sections):
        z = zi[:, s, :]
        outputs = []
        for t in range(signal.shape[-1]):
            xt = signal[:, t]
            if order == 0:
                outputs.append(b[:, s, 0] * xt)
                continue
            yt = b[:, s, 0] * xt + z[:, 0]
            shifted = torch.cat([z[:, 1:], torch.zeros_like(z[:, :1])], dim=1)
            z = shifted + b[:, s, 1:] * xt[:, None] - a[:, s, 1:] * yt[:, None]
            outputs.append(yt)
        signal = torch.stack(outputs, dim=-1) if outputs else signal[:, :0]
        final_states.append(z)
    zf = torch.stack(final_states, dim=1)
    return signal.to(x.dtype), zf.to(x.dtype)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``iir_cascade`` by autograd through the reference loop.

    Args:
        grad_y: (channels, time); grad_zf: (channels, sections, order); the rest
            as in :func:`iir_cascade`.

    Returns:
        ``(grad_x, grad_b, grad_a, grad_zi)`` shaped like ``x, b, a, zi``.
    """
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (x, b, a, zi)]
        y, zf = iir_cascade(inputs[0], x_index, *inputs[1:])
        grads = torch.autograd.grad((y, zf), inputs, (grad_y, grad_zf), allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs))


def frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """Frame energies of ``y`` (P, time) -> (P, n_frames): unfold the zero-padded energies into frames."""
    length = window.shape[0]
    n_time = y.shape[-1]
    power = y.square() if square else y.abs()
    right = max(0, (n_frames - 1) * hop - offset + length - n_time)
    padded = F.pad(power, (offset, right))
    frames = padded.unfold(-1, length, hop)[..., :n_frames, :]  # (P, n_frames, W)
    return frames @ window


def frame_energy_backward(grad: Tensor, y: Tensor, window: Tensor, hop: int, offset: int, square: bool) -> Tensor:
    """The gradient of :func:`frame_energy` for ``y``, by autograd; grad: (P, n_frames)."""
    with torch.enable_grad():
        leaf = y.detach().requires_grad_(True)
        energy = frame_energy(leaf, window, hop, offset, grad.shape[-1], square)
        return torch.autograd.grad(energy, leaf, grad)[0]


def iir_cascade_frame_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor,
) -> Tensor:
    """Frame energies of the filtered channels, samples past ``limits`` zero: (P, n_frames)."""
    y, _ = iir_cascade(x, x_index, b, a, zi)
    keep = torch.arange(y.shape[-1], device=y.device) < limits.unsqueeze(-1)
    return frame_energy(y * keep, window, hop, offset, n_frames, square)


def band_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor, spacing: int,
) -> tuple[Tensor, Tensor]:
    """:func:`iir_cascade_frame_energy` and the checkpoints its backward restarts from (none when ``spacing`` is 0).

    Returns:
        ``(energy, checkpoints)``: (P, n_frames) and (ceil(time / spacing), S, K, P).
    """
    n_channels, n_sections, order = b.shape[0], b.shape[1], b.shape[2] - 1
    n_time = x.shape[-1]
    n_saved = -(-n_time // spacing) if spacing else 0
    checkpoints = x.new_zeros((n_saved, n_sections, order, n_channels))
    signal, state = x, zi
    for s in range(n_sections):
        # Section s alone, on the previous section's output.
        rows = torch.arange(n_channels, device=x.device) if s else x_index
        signal, _ = iir_cascade(signal, rows, b[:, s : s + 1], a[:, s : s + 1], state[:, s : s + 1])
        for j in range(n_saved):
            for h in range(order):
                t = j * spacing - order + h
                if t >= 0:
                    checkpoints[j, s, h] = signal[:, t]
    # The last section's output is the cascade's: its energies as in iir_cascade_frame_energy.
    keep = torch.arange(n_time, device=x.device) < limits.unsqueeze(-1)
    return frame_energy(signal * keep, window, hop, offset, n_frames, square), checkpoints


def band_energy_backward(
    grad: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, checkpoints: Tensor, window: Tensor,
    hop: int, offset: int, square: bool, limits: Tensor, spacing: int, want_grad_x: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`band_energy`'s energies (grad: (P, n_frames)) by autograd through the reference.

    ``checkpoints`` and ``spacing`` are not needed here.

    Returns:
        ``(grad_x, grad_b, grad_a, grad_zi)`` shaped like ``x, b, a, zi``; without
        ``want_grad_x``, ``grad_x`` is empty, shape (0,) (a training step's waveform
        needs no gradient, and a zero one would cost a full-size fill).
    """
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (x, b, a, zi)]
        energy = iir_cascade_frame_energy(inputs[0], x_index, *inputs[1:], window, hop, offset, grad.shape[-1],
                                          square, limits)
        grads = torch.autograd.grad(energy, inputs, grad, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]
    if not want_grad_x:
        grads[0] = x.new_empty(0)
    return tuple(grads)


def stream_band_energy(x: Tensor, sos: Tensor, zi: Tensor, history: Tensor, window: Tensor, hop: int,
                       n_frames: int, square: bool, compression: Optional[str] = None, floor: float = 0.0,
                       power: float = 1.0, cascade=None, frames=None) -> tuple[Tensor, Tensor, Tensor]:
    """One streaming step of a front-end: ``(energy, zf, bands)`` (shapes in the module docstring).

    The block through every filter (from ``zi``), appended to ``history``;
    the first ``n_frames`` frames of those band signals (windows starting at
    0, hop, ...), compressed (``"log"``: ``log(e + floor)``, ``"power"``:
    ``(e + floor) ** power``, None: as they are); the band signals from
    ``n_frames * hop`` on kept.
    ``cascade`` and ``frames`` replace :func:`iir_cascade` and
    :func:`frame_energy` (the op layer passes its own, which choose kernels).
    """
    cascade = cascade or iir_cascade
    frames = frames or frame_energy
    batch, n_time = x.shape[:-1], x.shape[-1]
    rows = x.reshape(-1, n_time)
    n_rows, (n_filters, n_sections) = rows.shape[0], sos.shape[:2]
    b, a = sos[..., :3], sos[..., 3:]
    x_index = torch.arange(n_rows, device=x.device).repeat_interleave(n_filters)
    y, zf = cascade(rows, x_index, b.repeat(n_rows, 1, 1), a.repeat(n_rows, 1, 1),
                    zi.reshape(n_rows * n_filters, n_sections, 2))
    buffer = torch.cat([history.reshape(n_rows * n_filters, -1), y], dim=-1)
    energy = frames(buffer, window, hop, 0, n_frames, square) if n_frames else buffer.new_zeros((buffer.shape[0], 0))
    if compression == "log":
        energy = torch.log(energy + floor)
    elif compression == "power":
        energy = (energy + floor) ** power
    return (energy.reshape(batch + (n_filters, n_frames)), zf.reshape(batch + (n_filters, n_sections, 2)),
            buffer[:, n_frames * hop :].reshape(batch + (n_filters, -1)))


# --------------------------------------------------------------------------
# Coupled recurrences: a plain time loop with the dense matrices.

ACTIVATIONS = {"identity": lambda z: z, "tanh": torch.tanh, "relu": torch.relu}


def band_columns(n_channels: int, width: int, lower: int, device=None) -> tuple[Tensor, Tensor]:
    """``(columns, inside)``, each (C, W): the column ``i + d - lower`` of band entry (i, d), and whether it lies
    in the C x C matrix (entries outside are not part of A)."""
    columns = torch.arange(n_channels, device=device).unsqueeze(-1) + torch.arange(width, device=device) - lower
    return columns, (columns >= 0) & (columns < n_channels)


def band_to_dense(band: Tensor, lower: int) -> Tensor:
    """(M, C, C) the matrices whose bands ``band`` (M, C, W) holds (``band[m, i, d]`` at column ``i + d - lower``)."""
    n_matrices, n_channels, width = band.shape
    columns, inside = band_columns(n_channels, width, lower, band.device)
    rows = torch.arange(n_channels, device=band.device).unsqueeze(-1).expand(n_channels, width)
    dense = band.new_zeros((n_matrices, n_channels, n_channels))
    dense[:, rows[inside], columns[inside]] = band[:, inside]
    return dense


def dense_to_band(dense: Tensor, lower: int, width: int) -> Tensor:
    """(M, C, W) the bands of ``dense`` (M, C, C), zero where a band entry falls outside the matrix."""
    n_channels = dense.shape[-1]
    columns, inside = band_columns(n_channels, width, lower, dense.device)
    return dense.gather(-1, columns.clamp(0, n_channels - 1).expand(dense.shape[0], -1, -1)) * inside


def transposed_pattern(crow: Tensor, col: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(crow_t, col_t, order)``: the CSR pattern of A^T (int64), and for each of its non-zeros the index of
    A's. On any device, without a host synchronisation."""
    n_channels = crow.shape[0] - 1
    rows = torch.repeat_interleave(torch.arange(n_channels, device=crow.device), crow.diff(),
                                   output_size=col.shape[0])
    order = torch.argsort(col, stable=True)
    # Row j of A^T starts where the sorted columns reach j.
    crow_t = torch.searchsorted(col[order], torch.arange(n_channels + 1, device=crow.device, dtype=col.dtype))
    return crow_t.to(torch.int64), rows[order].contiguous(), order


def csr_to_dense(crow: Tensor, col: Tensor, values: Tensor, n_channels: int) -> Tensor:
    """(M, C, C) the matrices with the CSR pattern ``crow, col`` and non-zeros ``values`` (M, nnz)."""
    rows = torch.repeat_interleave(torch.arange(n_channels, device=values.device), crow.diff())
    dense = values.new_zeros((values.shape[0], n_channels, n_channels))
    dense[:, rows, col] = values
    return dense


def _times(matrices: Tensor, index: Tensor, state: Tensor) -> Tensor:
    """(rows, C) ``matrices[index[n]] @ state[n]`` for every row, without a copy of the matrix per row."""
    if matrices.shape[0] == 1:
        return state @ matrices[0].transpose(0, 1)
    return torch.einsum("nij,nj->ni", matrices[index], state)


def _dense_recurrence(u: Tensor, matrices: Tensor, index: Tensor, h0: Tensor, nonlinearity: str) -> Tensor:
    """``h[t] = f(A h[t-1] + u[t])``, A = ``matrices[index[row]]``, one step at a time.

    Equivalent Python loop, per row::

        h = h0
        for t in range(T):
            h = f(A @ h + u[t])
    """
    dtype = compute_dtype(u.dtype)
    activate = ACTIVATIONS[nonlinearity]
    state = h0.to(dtype)
    steps = []
    for t in range(u.shape[1]):
        state = activate(_times(matrices.to(dtype), index, state) + u[:, t].to(dtype))
        steps.append(state)
    h = torch.stack(steps, 1) if steps else u.new_zeros(u.shape, dtype=dtype)
    return h.to(u.dtype)


def _slope(h: Tensor, nonlinearity: str) -> Tensor:
    """``f'(z)`` from ``h = f(z)``: 1, ``1 - h^2`` (tanh) or ``h > 0`` (relu)."""
    if nonlinearity == "tanh":
        return 1 - h * h
    if nonlinearity == "relu":
        return (h > 0).to(h.dtype)
    return torch.ones_like(h)


def _dense_backward(grad_h: Tensor, h: Tensor, matrices: Tensor, index: Tensor, h0: Tensor, nonlinearity: str
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """The reverse-time recursion with the dense matrices (docs/design.md, "Coupled recurrences"):
    ``delta[t] = f'(z[t]) (g[t] + A^T delta[t+1])``; returns ``(delta, dL/dA (M, C, C), A^T delta[0])``.
    Written in torch operations, so it is itself differentiable (double backward)."""
    dtype = compute_dtype(h.dtype)
    # A^T delta is delta A, the rows of delta times the matrices.
    transposed = matrices.to(dtype).transpose(-1, -2)
    g, out, start = grad_h.to(dtype), h.to(dtype), h0.to(dtype)
    slope = _slope(out, nonlinearity)
    carry = torch.zeros_like(start)
    deltas = [start] * h.shape[1]
    for t in reversed(range(h.shape[1])):
        deltas[t] = slope[:, t] * (g[:, t] + carry)
        carry = _times(transposed, index, deltas[t])
    if not deltas:
        return grad_h.new_zeros(h.shape), torch.zeros_like(matrices), torch.zeros_like(h0)
    delta = torch.stack(deltas, 1)
    before = torch.cat([start.unsqueeze(1), out[:, :-1]], 1)
    per_row = torch.einsum("nti,ntj->nij", delta, before)
    grad_matrices = per_row.new_zeros(matrices.shape).index_add(0, index, per_row)
    return delta.to(h.dtype), grad_matrices.to(matrices.dtype), carry.to(h0.dtype)


def banded_recurrence(u: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                      nonlinearity: str) -> Tensor:
    """``h[t] = f(A h[t-1] + u[t])`` with A banded (the shapes above); ``h`` (rows, time, C)."""
    return _dense_recurrence(u, band_to_dense(band, lower), band_index, h0, nonlinearity)


def banded_recurrence_backward(grad_h: Tensor, h: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_band, grad_h0)`` for a gradient ``grad_h`` on :func:`banded_recurrence`'s output ``h``."""
    grad_u, grad_dense, grad_h0 = _dense_backward(grad_h, h, band_to_dense(band, lower), band_index, h0,
                                                  nonlinearity)
    return grad_u, dense_to_band(grad_dense, lower, band.shape[-1]), grad_h0


def csr_recurrence(u: Tensor, crow: Tensor, col: Tensor, values: Tensor, values_index: Tensor, h0: Tensor,
                   nonlinearity: str) -> Tensor:
    """``h[t] = f(A h[t-1] + u[t])`` with A sparse (the shapes above); ``h`` (rows, time, C)."""
    return _dense_recurrence(u, csr_to_dense(crow, col, values, u.shape[-1]), values_index, h0, nonlinearity)


def csr_recurrence_backward(grad_h: Tensor, h: Tensor, crow: Tensor, col: Tensor, values: Tensor,
                            values_index: Tensor, h0: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_values, grad_h0)`` for a gradient ``grad_h`` on :func:`csr_recurrence`'s output ``h``."""
    n_channels = h.shape[-1]
    grad_u, grad_dense, grad_h0 = _dense_backward(grad_h, h, csr_to_dense(crow, col, values, n_channels),
                                                  values_index, h0, nonlinearity)
    rows = torch.repeat_interleave(torch.arange(n_channels, device=values.device), crow.diff())
    return grad_u, grad_dense[:, rows, col], grad_h0
