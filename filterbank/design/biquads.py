"""RBJ audio-EQ-cookbook biquads (Robert Bristow-Johnson's cookbook), batched and differentiable.

Each design is the bilinear transform, prewarped at ``w0 = 2 pi f /
sample_rate``, of a normalised analog prototype ``H(s)``, with
``s = (1 - z^-1) / (tan(w0 / 2) (1 + z^-1))`` and ``alpha = sin(w0) / (2 q)``.
:data:`BIQUADS` lists them by kind: the kinds a ``BiquadFilterbank`` and the
command line take.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .. import _checks
from ._arguments import COOKBOOK_RETURNS, Number, cookbook_arguments, with_sections

__all__ = [
    "lowpass_biquad", "highpass_biquad", "bandpass_biquad", "bandpass_skirt_biquad", "notch_biquad",
    "allpass_biquad", "peaking_biquad", "lowshelf_biquad", "highshelf_biquad", "q_from_bandwidth",
    "BIQUADS", "BiquadDesign",
]


class BiquadDesign(NamedTuple):
    """A cookbook design: ``function(frequency, q, [gain_db,] sample_rate) -> (b, a)``."""

    function: Callable[..., tuple[Tensor, Tensor]]
    frequency: str      # the name of its frequency argument: "cutoff_hz" or "centre_hz"
    takes_gain: bool    # peaking and the shelves take gain_db


BIQUADS: dict[str, BiquadDesign] = {}

_NAMESAKE = ("Not to be confused with ``filterbank.compat.torchaudio.{name}``,\n"
             "which filters a waveform with torchaudio's signature; this returns the\ncoefficients.")


def _cookbook(kind: str, frequency: str, takes_gain: bool = False, namesake: bool = False) -> Callable:
    """Register a design under ``kind`` in :data:`BIQUADS` and write its shared documentation."""

    def register(function: Callable) -> Callable:
        arguments = "Args:\n" + "\n".join("    " + line for line in cookbook_arguments(frequency, takes_gain).split("\n"))
        returns = "Returns:\n" + "\n".join("    " + line for line in COOKBOOK_RETURNS.split("\n"))
        with_sections(function, _NAMESAKE.format(name=function.__name__) if namesake else "", arguments, returns)
        BIQUADS[kind] = BiquadDesign(function, frequency, takes_gain)
        return function

    return register


def _terms(frequency_name: str, frequency: Number, q: Number, sample_rate: float,
           gain_db: Optional[Number] = None) -> dict[str, Tensor]:
    """Checked arguments -> w0, cos(w0), sin(w0), alpha = sin(w0) / (2 q) and, with a gain, A = 10^(gain_db / 40)."""
    sample_rate = _checks.sample_rate(sample_rate)
    arguments = {frequency_name: frequency, "q": q}
    if gain_db is not None:
        arguments["gain_db"] = gain_db
    tensors = _checks.floats(arguments)
    frequency, q = tensors[:2]
    _checks.inside(frequency_name, frequency, 0.0, sample_rate / 2, "Hz", "sample_rate / 2")
    _checks.positive("q", q)
    w0 = 2 * math.pi * frequency / sample_rate
    terms = {"w0": w0, "cos": torch.cos(w0), "sin": torch.sin(w0), "alpha": torch.sin(w0) / (2 * q)}
    if gain_db is not None:
        _checks.finite("gain_db", tensors[2])
        terms["A"] = torch.pow(10.0, tensors[2] / 40)
    return terms


def _biquad(b0, b1, b2, a0, a1, a2) -> tuple[Tensor, Tensor]:
    """Stack the six coefficients into ``(b, a)`` divided by ``a0``."""
    b0, b1, b2, a0, a1, a2 = torch.broadcast_tensors(b0, b1, b2, a0, a1, a2)
    b = torch.stack([b0 / a0, b1 / a0, b2 / a0], dim=-1)
    a = torch.stack([torch.ones_like(a0), a1 / a0, a2 / a0], dim=-1)
    return b, a


@_cookbook("lowpass", "cutoff_hz", namesake=True)
def lowpass_biquad(cutoff_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook low-pass biquad: ``H(s) = 1 / (s^2 + s / q + 1)``.

    ``b = [1, 2, 1] (1 - cos w0) / 2``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``
    with ``w0 = 2 pi cutoff_hz / sample_rate``, ``alpha = sin(w0) / (2 q)``;
    unit gain at DC, ``q`` at the cut-off, 0 at Nyquist. Differentiable in
    ``cutoff_hz`` and ``q``.
    """
    t = _terms("cutoff_hz", cutoff_hz, q, sample_rate)
    # (1 - cos w0) / 2 = sin^2(w0 / 2) without the cancellation at low w0
    half = torch.sin(t["w0"] / 2).square()
    return _biquad(half, 2 * half, half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


@_cookbook("highpass", "cutoff_hz", namesake=True)
def highpass_biquad(cutoff_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook high-pass biquad: ``H(s) = s^2 / (s^2 + s / q + 1)``.

    ``b = [1, -2, 1] (1 + cos w0) / 2``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``;
    0 at DC, ``q`` at the cut-off, unit gain at Nyquist. Differentiable in
    ``cutoff_hz`` and ``q``.
    """
    t = _terms("cutoff_hz", cutoff_hz, q, sample_rate)
    half = torch.cos(t["w0"] / 2).square()  # (1 + cos w0) / 2
    return _biquad(half, -2 * half, half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


@_cookbook("bandpass", "centre_hz", namesake=True)
def bandpass_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook band-pass biquad with a constant 0 dB peak gain.

    ``H(z) = (alpha - alpha z^-2) / ((1 + alpha) - 2 cos(w0) z^-1 + (1 - alpha) z^-2)``
    with ``w0 = 2 pi centre_hz / sample_rate`` and ``alpha = sin(w0) / (2 q)``;
    the gain at ``centre_hz`` is exactly 1. Differentiable in ``centre_hz`` and ``q``.

    Example:
        >>> b, a = bandpass_biquad(torch.tensor([500.0, 1000.0]), 4.0, 16000.0)
        >>> b.shape, a.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """
    t = _terms("centre_hz", centre_hz, q, sample_rate)
    alpha = t["alpha"]
    return _biquad(alpha, torch.zeros_like(alpha), -alpha, 1 + alpha, -2 * t["cos"], 1 - alpha)


@_cookbook("bandpass_skirt", "centre_hz")
def bandpass_skirt_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook band-pass biquad with constant skirt gain (peak gain ``q``): ``H(s) = s / (s^2 + s / q + 1)``.

    ``b = [sin(w0) / 2, 0, -sin(w0) / 2]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``.
    Differentiable in ``centre_hz`` and ``q``.
    """
    t = _terms("centre_hz", centre_hz, q, sample_rate)
    half = t["sin"] / 2
    return _biquad(half, torch.zeros_like(half), -half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


@_cookbook("notch", "centre_hz")
def notch_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook notch biquad: ``H(s) = (s^2 + 1) / (s^2 + s / q + 1)``.

    ``b = [1, -2 cos w0, 1]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``: zero
    gain at ``centre_hz``, unit gain at DC and Nyquist. Differentiable in
    ``centre_hz`` and ``q``.
    """
    t = _terms("centre_hz", centre_hz, q, sample_rate)
    cos = -2 * t["cos"]
    return _biquad(torch.ones_like(cos), cos, torch.ones_like(cos), 1 + t["alpha"], cos, 1 - t["alpha"])


@_cookbook("allpass", "centre_hz", namesake=True)
def allpass_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook all-pass biquad: ``H(s) = (s^2 - s / q + 1) / (s^2 + s / q + 1)``.

    ``b = [1 - alpha, -2 cos w0, 1 + alpha]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``:
    unit magnitude everywhere, phase -pi at ``centre_hz``. Differentiable in
    ``centre_hz`` and ``q``.
    """
    t = _terms("centre_hz", centre_hz, q, sample_rate)
    alpha, cos = t["alpha"], -2 * t["cos"]
    return _biquad(1 - alpha, cos, 1 + alpha, 1 + alpha, cos, 1 - alpha)


@_cookbook("peaking", "centre_hz", takes_gain=True)
def peaking_biquad(centre_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook peaking-EQ biquad: ``H(s) = (s^2 + s A / q + 1) / (s^2 + s / (A q) + 1)``.

    ``A = 10^(gain_db / 40)``; ``b = [1 + alpha A, -2 cos w0, 1 - alpha A]``,
    ``a = [1 + alpha / A, -2 cos w0, 1 - alpha / A]``: ``gain_db`` at
    ``centre_hz``, 0 dB at DC and Nyquist. Differentiable in ``centre_hz``,
    ``q`` and ``gain_db``.
    """
    t = _terms("centre_hz", centre_hz, q, sample_rate, gain_db)
    alpha, A, cos = t["alpha"], t["A"], -2 * t["cos"]
    return _biquad(1 + alpha * A, cos, 1 - alpha * A, 1 + alpha / A, cos, 1 - alpha / A)


@_cookbook("lowshelf", "cutoff_hz", takes_gain=True)
def lowshelf_biquad(cutoff_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook low-shelf biquad: ``H(s) = A (s^2 + s sqrt(A) / q + A) / (A s^2 + s sqrt(A) / q + 1)``.

    ``A = 10^(gain_db / 40)``: ``gain_db`` at DC, 0 dB at Nyquist, ``gain_db / 2``
    at ``cutoff_hz``; ``q = 1 / sqrt(2)`` is the steepest monotonic shelf.
    Coefficients as in the cookbook (``b0 = A ((A + 1) - (A - 1) cos w0 + 2 sqrt(A) alpha)``, ...).
    Differentiable in ``cutoff_hz``, ``q`` and ``gain_db``.
    """
    t = _terms("cutoff_hz", cutoff_hz, q, sample_rate, gain_db)
    A, cos = t["A"], t["cos"]
    root = 2 * torch.sqrt(A) * t["alpha"]
    plus, minus = A + 1, A - 1
    return _biquad(A * (plus - minus * cos + root), 2 * A * (minus - plus * cos), A * (plus - minus * cos - root),
                   plus + minus * cos + root, -2 * (minus + plus * cos), plus + minus * cos - root)


@_cookbook("highshelf", "cutoff_hz", takes_gain=True)
def highshelf_biquad(cutoff_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook high-shelf biquad: ``H(s) = A (A s^2 + s sqrt(A) / q + 1) / (s^2 + s sqrt(A) / q + A)``.

    ``A = 10^(gain_db / 40)``: 0 dB at DC, ``gain_db`` at Nyquist, ``gain_db / 2``
    at ``cutoff_hz``. Coefficients as in the cookbook. Differentiable in
    ``cutoff_hz``, ``q`` and ``gain_db``.
    """
    t = _terms("cutoff_hz", cutoff_hz, q, sample_rate, gain_db)
    A, cos = t["A"], t["cos"]
    root = 2 * torch.sqrt(A) * t["alpha"]
    plus, minus = A + 1, A - 1
    return _biquad(A * (plus + minus * cos + root), -2 * A * (minus + plus * cos), A * (plus + minus * cos - root),
                   plus - minus * cos + root, 2 * (minus - plus * cos), plus - minus * cos - root)


def q_from_bandwidth(bandwidth_octaves: Number, centre_hz: Number, sample_rate: float) -> Tensor:
    """Q of a cookbook biquad from its bandwidth in octaves (RBJ's relation under the bilinear transform).

    ``1 / Q = 2 sinh(ln(2) / 2 * bandwidth * w0 / sin(w0))``, ``w0 = 2 pi centre_hz / sample_rate``.
    The bandwidth is between the -3 dB points for the band-passes and the
    notch, between the half-gain (in dB) points for the peaking EQ; the
    ``w0 / sin(w0)`` factor compensates the bilinear transform's compression
    of bandwidth to first order, so the match is close at low ``w0`` and
    loosens towards Nyquist. Differentiable in both arguments.

    Args:
        bandwidth_octaves: (...) > 0.
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        sample_rate: in Hz.

    Returns:
        (...) Q.

    Example:
        >>> q = q_from_bandwidth(1.0, 1000.0, 48000.0)   # one octave: Q close to sqrt(2)
        >>> round(float(q), 3)
        1.41
    """
    sample_rate = _checks.sample_rate(sample_rate)
    bandwidth, centre = _checks.floats({"bandwidth_octaves": bandwidth_octaves, "centre_hz": centre_hz})
    _checks.positive("bandwidth_octaves", bandwidth)
    _checks.inside("centre_hz", centre, 0.0, sample_rate / 2, "Hz", "sample_rate / 2")
    w0 = 2 * math.pi * centre / sample_rate
    return 1 / (2 * torch.sinh(math.log(2) / 2 * bandwidth * w0 / torch.sin(w0)))
