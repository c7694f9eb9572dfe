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
           "band_energy", "band_energy_backward", "stream_band_energy"]


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

    ``checkpoints`` and ``spacing`` are not needed here; ``grad_x`` is zero
    unless ``want_grad_x``.

    Returns:
        ``(grad_x, grad_b, grad_a, grad_zi)`` shaped like ``x, b, a, zi``.
    """
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (x, b, a, zi)]
        energy = iir_cascade_frame_energy(inputs[0], x_index, *inputs[1:], window, hop, offset, grad.shape[-1],
                                          square, limits)
        grads = torch.autograd.grad(energy, inputs, grad, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs)]
    if not want_grad_x:
        grads[0] = torch.zeros_like(x)
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
