"""Gammatone filters: scipy's 4th-order IIR gammatone as four biquads.

The zeros of the real part of ``(1 - x z^-1)^4`` sit at ``r (cos + c sin)``
with ``c = +-(1 + sqrt 2), +-(sqrt 2 - 1)`` (Slaney's four sections).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks
from ._arguments import Number

__all__ = ["gammatone_sos"]

_GAMMATONE_ZERO_OFFSETS = (1 + math.sqrt(2), -(1 + math.sqrt(2)), math.sqrt(2) - 1, -(math.sqrt(2) - 1))


def gammatone_sos(centre_hz: Number, sample_rate: float) -> Tensor:
    """4th-order IIR gammatone filter as four biquads, the response of ``scipy.signal.gammatone(f, "iir", fs=...)``.

    Slaney's (1993) implementation of the Patterson-Holdsworth filter: with
    ``theta = 2 pi f / fs``, ``b = 2 pi 1.019 ERB(f)`` (scipy's and Slaney's
    ``ERB(f) = f / 9.26449 + 24.7``, Glasberg & Moore's ERB with rounded
    constants) and ``r = exp(-b / fs)``, every section has the poles
    ``r e^(+-j theta)``: ``a = [1, -2 r cos(theta), r^2]``; section ``i`` has
    one zero at ``r (cos(theta) + c_i sin(theta))``, ``c_i = +-(1 +- sqrt 2)``:
    ``b = g_i [1, -r (cos + c_i sin), 0]``. The product of the four numerators
    is the real part of ``(1 - r e^(j theta) z^-1)^4``, as in scipy. Each
    ``g_i`` makes its section's gain exactly 1 at ``centre_hz``, which is
    scipy's normalisation of the whole filter, spread evenly. Differentiable in
    ``centre_hz``.

    Args:
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        sample_rate: in Hz.

    Returns:
        sos: (..., 4, 6), ``sos[..., 3] == 1``; float in ``centre_hz``'s dtype
        (float32 for a number).

    Example:
        >>> gammatone_sos(torch.tensor([250.0, 1000.0]), 16000.0).shape
        torch.Size([2, 4, 6])
    """
    sample_rate = _checks.sample_rate(sample_rate)
    (centre,) = _checks.floats({"centre_hz": centre_hz})
    _checks.inside("centre_hz", centre, 0.0, sample_rate / 2, "Hz", "sample_rate / 2")
    theta = 2 * math.pi * centre / sample_rate
    decay = 2 * math.pi * 1.019 * (centre / 9.26449 + 24.7) / sample_rate
    r = torch.exp(-decay)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # |A(e^j theta)| = (1 - r) |1 - r e^(-2 j theta)|, written without cancellation
    one_minus_r = -torch.expm1(-decay)
    denominator = one_minus_r * torch.sqrt(one_minus_r.square() + 4 * r * sin.square())
    ones = torch.ones_like(r)
    a = torch.stack([ones, -2 * r * cos, r.square()], dim=-1)
    sections = []
    for offset in _GAMMATONE_ZERO_OFFSETS:
        zero = r * (cos + offset * sin)
        gain = denominator / torch.sqrt((cos - zero).square() + sin.square())  # 1 / |1 - zero e^(-j theta)|
        sections.append(torch.cat([torch.stack([gain, -gain * zero, torch.zeros_like(r)], dim=-1), a], dim=-1))
    return torch.stack(sections, dim=-2)
