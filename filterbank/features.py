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

from . import _ops
from .functional import lfilter

__all__ = ["frame_energy", "smoothing_window", "log_compress", "power_compress", "pcen"]


def smoothing_window(hop_length: int, *, kind: str = "hann", dtype=torch.float32, device=None) -> Tensor:
    """The low-pass window of :func:`frame_energy`, summing to 1.

    Args:
        hop_length: samples between frames.
        kind: ``"hann"`` (length ``2 * hop_length``, the default) or ``"box"``
            (length ``hop_length``: the mean over the hop).

    Returns:
        (window_length,) tensor.
    """
    if isinstance(hop_length, bool) or not isinstance(hop_length, int) or hop_length < 1:
        raise ValueError(f"hop_length must be a positive int; got {hop_length!r}")
    if kind == "hann":
        window = torch.hann_window(2 * hop_length + 1, periodic=False, dtype=dtype, device=device)[1:]
    elif kind == "box":
        window = torch.ones(hop_length, dtype=dtype, device=device)
    else:
        raise ValueError(f"kind must be 'hann' or 'box'; got {kind!r}")
    return window / window.sum()


def frame_energy(
    bands: Tensor, hop_length: int, *, energy: str = "square", window: Optional[Tensor] = None
) -> Tensor:
    """Smoothed band energy, one value per hop.

    ``E[..., f] = sum_i window[i] * e(bands[..., f * hop_length - W // 2 + i])``
    with ``e(v) = v ** 2`` (``energy="square"``) or ``|v|`` (``"abs"``), zero
    outside the signal, ``W = len(window)``.

    Args:
        bands: (..., time) band signals (any leading shape).
        hop_length: samples between frames.
        energy: ``"square"`` or ``"abs"``.
        window: (W,) low-pass window; default :func:`smoothing_window`.

    Returns:
        (..., 1 + time // hop_length) frame energies.
    """
    if energy not in ("square", "abs"):
        raise ValueError(f"energy must be 'square' or 'abs'; got {energy!r}")
    if window is None:
        window = smoothing_window(hop_length, dtype=bands.dtype, device=bands.device)
    elif window.ndim != 1 or window.dtype != bands.dtype or window.device != bands.device:
        raise ValueError(f"window must be a 1-D tensor with the bands' dtype and device ({bands.dtype}, "
                         f"{bands.device}); got shape {tuple(window.shape)}, {window.dtype}, {window.device}")
    if bands.ndim == 0:
        raise ValueError("bands must have a time axis; got a 0-d tensor")
    leading, n_time = bands.shape[:-1], bands.shape[-1]
    n_frames = 1 + n_time // hop_length
    energies = _ops.call_frame_energy(bands.reshape(math.prod(leading), n_time), window, hop_length, window.shape[0] // 2, n_frames,
                                 energy == "square")
    return energies.reshape(leading + (n_frames,))


def log_compress(energy: Tensor, floor: float = 1e-6) -> Tensor:
    """``log(energy + floor)``: floor > 0 keeps the log and its gradient finite."""
    if not floor > 0:
        raise ValueError(f"floor must be > 0; got {floor!r}")
    return torch.log(energy + floor)


def power_compress(energy: Tensor, power: float = 0.3, floor: float = 1e-6) -> Tensor:
    """``(energy + floor) ** power``, a cube-root-like loudness compression."""
    if not 0 < power <= 1:
        raise ValueError(f"power must be in (0, 1]; got {power!r}")
    if not floor > 0:
        raise ValueError(f"floor must be > 0; got {floor!r}")
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
    if energy.ndim < 2:
        raise ValueError(f"energy must have shape (..., n_filters, frames); got {tuple(energy.shape)}")
    n_filters = energy.shape[-2]
    for name, value in (("smooth", smooth), ("alpha", alpha), ("delta", delta), ("root", root)):
        if value.shape != (n_filters,):
            raise ValueError(f"{name} must have shape ({n_filters},) (one per filter); got {tuple(value.shape)}")
    b = smooth.unsqueeze(-1)                                      # (n_filters, 1)
    a = torch.stack([torch.ones_like(smooth), smooth - 1], -1)    # (n_filters, 2)
    if zi is None:
        # Steady state on the first frame: M[-1] = E[0], so zi = (1 - s) E[0].
        zi = ((1 - smooth).unsqueeze(-1) * energy[..., :1]) if energy.shape[-1] else energy[..., :1].new_zeros(
            energy.shape[:-1] + (1,))
    smoothed, zf = lfilter(b, a, energy, zi=zi)
    gained = energy / (floor + smoothed) ** alpha.unsqueeze(-1)
    return (gained + delta.unsqueeze(-1)) ** root.unsqueeze(-1) - delta.unsqueeze(-1) ** root.unsqueeze(-1), zf

