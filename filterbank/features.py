"""Front-end maths on band signals: frame energies and compression.

Plain functions of tensors that ``filterbank.nn.FrontEnd`` strings together
after a filterbank:

* :func:`frame_energy`: the band energy (square or magnitude) smoothed by a
  low-pass window and taken once every ``hop_length`` samples. The window is
  an FIR low-pass (Hann by default, ``2 * hop_length`` long) evaluated at the
  frame rate only, by a kernel that reads the bands once and stores nothing
  of full size (the op ``filterbank::frame_energy``): one frame per hop,
  centred on samples ``0, hop, 2 hop, ...`` with zeros beyond the ends,
  ``1 + time // hop_length`` frames, the framing of
  ``torchaudio.transforms.MelSpectrogram(center=True)``.
* :func:`band_energy`: the frame energies of every band of a filterbank
  (``sosfilt`` then :func:`frame_energy`); on the CPU in one pass that never
  stores the band signals, forward and backward. :func:`zero_after` masks the
  padded tail of a zero-padded batch.
* :func:`log_compress`, :func:`power_compress`, :func:`pcen`: compression of
  the energies (PCEN: per-channel energy normalisation, Wang et al. 2017,
  with its smoother run by ``filterbank.lfilter``, so it is exact and
  differentiable in every parameter).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from . import _checks, _ops
from .functional import lfilter, sosfilt

__all__ = ["frame_energy", "band_energy", "zero_after", "smoothing_window", "log_compress", "power_compress", "pcen"]

ENERGIES = ("square", "abs")
WINDOWS = ("hann", "box")
COMPRESSIONS = ("log", "power", "pcen")


def smoothing_window(hop_length: int, *, kind: str = "hann", dtype=torch.float32, device=None) -> Tensor:
    """The low-pass window of :func:`frame_energy`, summing to 1.

    Args:
        hop_length: samples between frames.
        kind: ``"hann"`` (length ``2 * hop_length``, the default) or ``"box"``
            (length ``hop_length``: the mean over the hop).

    Returns:
        (window_length,) tensor.
    """
    _checks.integer("hop_length", hop_length, 1)
    if _checks.choice("kind", kind, WINDOWS) == "hann":
        window = torch.hann_window(2 * hop_length + 1, periodic=False, dtype=dtype, device=device)[1:]
    else:
        window = torch.ones(hop_length, dtype=dtype, device=device)
    return window / window.sum()


def frame_energy(
    bands: Tensor, hop_length: int, *, energy: str = "square", window: Optional[Tensor] = None,
    offset: Optional[int] = None, n_frames: Optional[int] = None,
) -> Tensor:
    """Smoothed band energy, one value per hop.

    ``E[..., f] = sum_i window[i] * e(bands[..., f * hop_length - offset + i])``
    with ``e(v) = v ** 2`` (``energy="square"``) or ``|v|`` (``"abs"``), zero
    outside the signal.

    Args:
        bands: (..., time) band signals (any leading shape).
        hop_length: samples between frames.
        energy: ``"square"`` or ``"abs"``.
        window: (W,) low-pass window, the dtype and device of ``bands``;
            default :func:`smoothing_window`.
        offset: how many samples before ``f * hop_length`` frame ``f``'s
            window starts; default ``W // 2`` (frames centred on their hop).
        n_frames: how many frames; default ``1 + time // hop_length``.

    Returns:
        (..., n_frames) frame energies.
    """
    _check_frames("bands", bands, hop_length, energy, window)
    if window is None:
        window = smoothing_window(hop_length, dtype=bands.dtype, device=bands.device)
    leading, n_time = bands.shape[:-1], bands.shape[-1]
    offset = window.shape[0] // 2 if offset is None else _checks.integer("offset", offset, 0)
    n_frames = 1 + n_time // hop_length if n_frames is None else _checks.integer("n_frames", n_frames, 0)
    energies = _ops.call_frame_energy(bands.reshape(math.prod(leading), n_time), window, hop_length, offset, n_frames,
                                      energy == "square")
    return energies.reshape(leading + (n_frames,))


def _check_frames(name: str, signals: Tensor, hop_length: int, energy: str, window: Optional[Tensor]) -> None:
    """The checks of :func:`frame_energy` and :func:`band_energy`; ``signals`` is what the window runs over."""
    _checks.signal(name, signals)
    _checks.integer("hop_length", hop_length, 1)
    _checks.choice("energy", energy, ENERGIES)
    if window is not None:
        _checks.tensor("window", window, signals, name)
        if window.ndim != 1 or window.shape[0] == 0:
            raise ValueError(f"window must have shape (W,) with W >= 1; got {tuple(window.shape)}")


def zero_after(values: Tensor, lengths: Tensor) -> Tensor:
    """``values`` (batch, ..., time) with ``values[i, ..., lengths[i]:]`` zero; lengths: (batch,) int64.

    Without a gradient to keep, in place, writing the tails alone.
    """
    n_time = values.shape[-1]
    if torch.is_grad_enabled() and values.requires_grad:
        keep = torch.arange(n_time, device=values.device) < lengths.unsqueeze(-1)   # (batch, time)
        return values * keep.reshape(keep.shape[:1] + (1,) * (values.ndim - 2) + keep.shape[1:])
    for index, length in enumerate(lengths.tolist()):
        if length < n_time:
            values[index, ..., length:] = 0
    return values


def band_energy(
    sos: Tensor, x: Tensor, hop_length: int, *, energy: str = "square", window: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
) -> Tensor:
    """Frame energies of every band of a filterbank: ``frame_energy(sosfilt(sos, x.unsqueeze(-2)), ...)``.

    On the CPU this runs one kernel that filters and takes the energies in
    one pass, so the (..., n_filters, time) band signals are never stored;
    with gradients it also saves the filters' states every few hundred
    samples, and the backward recomputes the bands block by block from them
    (memory of the order of the input and the energies). Elsewhere, or with a learnable
    ``window``, it is that composition.

    Args:
        sos: (n_filters, n_sections, 6) the bank's cascades.
        x: (..., time) signals, the dtype and device of ``sos``.
        hop_length, energy, window: as for :func:`frame_energy` (centred frames).
        lengths: for a zero-padded batch ``x`` of shape (batch, ..., time),
            (batch,) the real samples of each signal: the bands of ``x[i]``
            count as zero from ``lengths[i]`` on.

    Returns:
        (..., n_filters, 1 + time // hop_length) frame energies.
    """
    _check_frames("x", x, hop_length, energy, window)
    _checks.sos(sos, like=x)
    if sos.ndim != 3:
        raise ValueError(f"sos must have shape (n_filters, n_sections, 6); got {tuple(sos.shape)}")
    if lengths is not None:
        lengths = _checks.lengths(lengths, x)
    if window is None:
        window = smoothing_window(hop_length, dtype=x.dtype, device=x.device)
    offset = window.shape[0] // 2
    if not _ops.fuses_band_energy(x.device, 2, window, hop_length, offset):
        bands = sosfilt(sos, x.unsqueeze(-2))                       # (..., n_filters, time)
        if lengths is not None:
            bands = zero_after(bands, lengths)
        return frame_energy(bands, hop_length, energy=energy, window=window)
    _checks.nonzero("sos", sos, 3, kernel_reports=True)
    n_time = x.shape[-1]
    rows = x.reshape(math.prod(x.shape[:-1]), n_time)                 # (R, time)
    n_rows, n_filters, n_sections = rows.shape[0], sos.shape[0], sos.shape[1]
    x_index = torch.arange(n_rows).repeat_interleave(n_filters)       # channel r * F + f reads row r
    sos = sos.expand(n_rows, n_filters, n_sections, 6).reshape(n_rows * n_filters, n_sections, 6)
    if lengths is None:
        limits = torch.full((n_rows * n_filters,), n_time, dtype=torch.int64)
    else:
        rows_per_signal = n_rows // x.shape[0] if x.shape[0] else 0    # channels of (batch, channels, time)
        limits = lengths.repeat_interleave(rows_per_signal * n_filters)
    energies = _ops.call_band_energy(
        rows, x_index, sos[..., :3], sos[..., 3:], rows.new_zeros((n_rows * n_filters, n_sections, 2)), window,
        hop_length, offset, 1 + n_time // hop_length, energy == "square", limits)
    return energies.reshape(x.shape[:-1] + (n_filters, energies.shape[-1]))


def streams_in_one_call(sos: Tensor, x: Tensor) -> bool:
    """Whether :func:`stream_band_energy` serves a streaming step: plain inference on the CPU, one dtype."""
    return x.device.type == "cpu" and x.dtype == sos.dtype and _ops.plain_inference(x, sos)


def stream_band_energy(sos: Tensor, x: Tensor, zi: Tensor, history: Tensor, window: Tensor, hop_length: int,
                       n_frames: int, energy: str = "square", compression: Optional[str] = None, floor: float = 1e-6,
                       power: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """A streaming front-end's step in one kernel call (inference; ``FrontEnd.stream`` uses it).

    Its arguments are a front-end's own state, checked there, not here.

    Args:
        sos: (n_filters, n_sections, 6) the bank.
        x: (..., time) the next samples of each signal.
        zi: (..., n_filters, n_sections, 2) the filters' states (scipy's TDF-II).
        history: (..., n_filters, kept) band signals kept from the previous step.
        window: (W,) smoothing window; frame ``j`` sums ``window[i] e(bands[..., j hop_length + i])``
            over the band signals from ``history[..., 0]`` on.
        n_frames: frames to emit now.
        compression: None, ``"log"`` (:func:`log_compress`) or ``"power"``
            (:func:`power_compress`), applied in the same call.

    Returns:
        ``(features, zf, bands)``: (..., n_filters, n_frames), the filters'
        states after the block, and the band signals the next step needs
        (..., n_filters, kept + time - n_frames * hop_length).
    """
    return _ops.stream_band_energy(x, sos, zi, history, window, hop_length, n_frames, energy == "square",
                                   compression, floor, power)


def log_compress(energy: Tensor, floor: float = 1e-6) -> Tensor:
    """``log(energy + floor)``: floor > 0 keeps the log and its gradient finite."""
    _checks.number("floor", floor, 0.0)
    return torch.log(energy + floor)


def power_compress(energy: Tensor, power: float = 0.3, floor: float = 1e-6) -> Tensor:
    """``(energy + floor) ** power``, a cube-root-like loudness compression."""
    _checks.number("power", power, 0.0, 1.0, closed=(False, True))
    _checks.number("floor", floor, 0.0)
    return (energy + floor) ** power


def pcen(
    energy: Tensor, smooth: Tensor, alpha: Tensor, delta: Tensor, root: Tensor, floor: float = 1e-6,
    zi: Optional[Tensor] = None,
):
    """Per-channel energy normalisation (Wang et al., 2017).

    ``M[t] = (1 - s) M[t-1] + s E[t]`` (started at steady state on ``E[0]``,
    or from ``zi``), then ``(E / (floor + M) ** alpha + delta) ** root - delta ** root``.

    Args:
        energy: (..., n_filters, frames) non-negative energies.
        smooth, alpha, delta, root: (n_filters,) parameters: the smoother's
            coefficient s in (0, 1), the gain exponent alpha in [0, 1], the
            bias delta > 0 and the root in (0, 1].
        floor: small positive constant.
        zi: (..., n_filters, 1) the smoother's state (scipy's lfilter state) to
            continue from, e.g. the ``zf`` of the previous chunk.

    Returns:
        ``(pcen, zf)``: (..., n_filters, frames) and the smoother's final
        state (..., n_filters, 1).
    """
    _checks.tensor("energy", energy)
    _checks.number("floor", floor, 0.0)
    if energy.ndim < 2:
        raise ValueError(f"energy must have shape (..., n_filters, frames); got {tuple(energy.shape)}")
    n_filters = energy.shape[-2]
    for name, value in (("smooth", smooth), ("alpha", alpha), ("delta", delta), ("root", root)):
        _checks.tensor(name, value, energy, "energy")
        _checks.shape(name, value, (n_filters,), "one per filter")
    b = smooth.unsqueeze(-1)                                      # (n_filters, 1)
    a = torch.stack([torch.ones_like(smooth), smooth - 1], -1)    # (n_filters, 2)
    if zi is None:
        # Steady state on the first frame: M[-1] = E[0], so zi = (1 - s) E[0].
        zi = ((1 - smooth).unsqueeze(-1) * energy[..., :1]) if energy.shape[-1] else energy[..., :1].new_zeros(
            energy.shape[:-1] + (1,))
    smoothed, zf = lfilter(b, a, energy, zi=zi)
    gained = energy / (floor + smoothed) ** alpha.unsqueeze(-1)
    return (gained + delta.unsqueeze(-1)) ** root.unsqueeze(-1) - delta.unsqueeze(-1) ** root.unsqueeze(-1), zf

