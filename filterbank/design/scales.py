"""Frequency scales: mel (Slaney or HTK), ERB-number, Bark, and points equally spaced on a scale.

The private ``_forward``/``_inverse`` maps take checked tensors; the public
functions check their arguments, then call them. :data:`SCALES` names the
scales :func:`centre_frequencies` (and every module and command that places
filters) accepts.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .. import _checks
from ._arguments import Number

__all__ = ["hz_to_mel", "mel_to_hz", "hz_to_erb_rate", "erb_rate_to_hz", "hz_to_bark", "bark_to_hz",
           "erb_bandwidth", "centre_frequencies", "SCALES"]

# Slaney's mel (the Auditory Toolbox, librosa's default): linear below
# 1 kHz at 3 mel per 200 Hz, logarithmic above, 27 mel per factor 6.4.
_MEL_HZ_PER_MEL = 200.0 / 3
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL  # computed as librosa does, not the literal 15
_MEL_LOG_STEP = math.log(6.4) / 27.0

# Traunmüller (1990): z' = 26.81 f / (1960 + f) - 0.53, then z = z' + 0.15 (2 - z')
# below 2 Bark and z = z' + 0.22 (z' - 20.1) above 20.1 Bark.
_BARK_AT_0_HZ = 0.85 * -0.53 + 0.3
_BARK_LIMIT = 1.22 * 26.28 - 0.22 * 20.1  # the value as f -> inf


def _mel_slaney(f: Tensor) -> Tensor:
    # clamp keeps the unused branch finite, so its zero gradient is not NaN
    log_part = _MEL_BREAK + torch.log(f.clamp(min=_MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return torch.where(f >= _MEL_BREAK_HZ, log_part, f / _MEL_HZ_PER_MEL)


def _mel_slaney_inverse(m: Tensor) -> Tensor:
    log_part = _MEL_BREAK_HZ * torch.exp(_MEL_LOG_STEP * (m.clamp(min=_MEL_BREAK) - _MEL_BREAK))
    return torch.where(m >= _MEL_BREAK, log_part, _MEL_HZ_PER_MEL * m)


def _mel_htk(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_htk_inverse(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _erb_rate(f: Tensor) -> Tensor:
    return (21.4 / math.log(10)) * torch.log1p(0.00437 * f)


def _erb_rate_inverse(e: Tensor) -> Tensor:
    return torch.expm1(e * (math.log(10) / 21.4)) / 0.00437


def _bark(f: Tensor) -> Tensor:
    z = 26.81 * f / (1960.0 + f) - 0.53
    return torch.where(z < 2, z + 0.15 * (2 - z), torch.where(z > 20.1, z + 0.22 * (z - 20.1), z))


def _bark_inverse(z: Tensor) -> Tensor:
    z = torch.where(z < 2, (z - 0.3) / 0.85, torch.where(z > 20.1, (z + 0.22 * 20.1) / 1.22, z))
    return 1960.0 * (z + 0.53) / (26.28 - z)


def hz_to_mel(f: Number, htk: bool = False) -> Tensor:
    """Frequency in Hz to mel, Slaney's scale by default, HTK's with ``htk=True``.

    Slaney (librosa's default): ``m = 3 f / 200`` below 1 kHz and
    ``m = 15 + 27 ln(f / 1000) / ln(6.4)`` above. HTK: ``m = 2595 log10(1 + f / 700)``.
    Both follow librosa's ``hz_to_mel`` numerically.

    Args:
        f: (...) frequencies in Hz, >= 0.
        htk: use the HTK formula.

    Returns:
        (...) mel.

    Example:
        >>> hz_to_mel(torch.tensor([440.0, 1000.0, 6400.0]))
        tensor([ 6.6000, 15.0000, 42.0000])
    """
    _checks.boolean("htk", htk)
    (f,) = _checks.floats({"f": f})
    _checks.from_up_to("f", f, 0.0, math.inf, "Hz")
    return _mel_htk(f) if htk else _mel_slaney(f)


def mel_to_hz(m: Number, htk: bool = False) -> Tensor:
    """Mel to Hz, the inverse of :func:`hz_to_mel`.

    Slaney: ``f = 200 m / 3`` below 15 mel, ``f = 1000 * 6.4^((m - 15) / 27)``
    above. HTK: ``f = 700 (10^(m / 2595) - 1)``.

    Args:
        m: (...) mel, >= 0.
        htk: use the HTK formula.

    Returns:
        (...) frequencies in Hz.
    """
    _checks.boolean("htk", htk)
    (m,) = _checks.floats({"m": m})
    _checks.from_up_to("m", m, 0.0, math.inf, "mel")
    return _mel_htk_inverse(m) if htk else _mel_slaney_inverse(m)


def hz_to_erb_rate(f: Number) -> Tensor:
    """Frequency in Hz to ERB-number (Cams), after Glasberg & Moore (1990).

    ``E = 21.4 log10(1 + 0.00437 f)``: the number of ERBs below ``f``.

    Args:
        f: (...) frequencies in Hz, >= 0.

    Returns:
        (...) ERB-numbers.
    """
    (f,) = _checks.floats({"f": f})
    _checks.from_up_to("f", f, 0.0, math.inf, "Hz")
    return _erb_rate(f)


def erb_rate_to_hz(e: Number) -> Tensor:
    """ERB-number to Hz, the inverse of :func:`hz_to_erb_rate`: ``f = (10^(E / 21.4) - 1) / 0.00437``.

    Args:
        e: (...) ERB-numbers, >= 0.

    Returns:
        (...) frequencies in Hz.
    """
    (e,) = _checks.floats({"e": e})
    _checks.from_up_to("e", e, 0.0, math.inf, "(ERB-number)")
    return _erb_rate_inverse(e)


def hz_to_bark(f: Number) -> Tensor:
    """Frequency in Hz to Bark, by Traunmüller's (1990) formula with its end corrections.

    ``z = 26.81 f / (1960 + f) - 0.53``, then ``z + 0.15 (2 - z)`` where
    ``z < 2`` and ``z + 0.22 (z - 20.1)`` where ``z > 20.1``. Inverts in
    closed form (:func:`bark_to_hz`); 0 Hz is -0.1505 Bark.

    Args:
        f: (...) frequencies in Hz, >= 0.

    Returns:
        (...) Bark.
    """
    (f,) = _checks.floats({"f": f})
    _checks.from_up_to("f", f, 0.0, math.inf, "Hz")
    return _bark(f)


def bark_to_hz(z: Number) -> Tensor:
    """Bark to Hz, the inverse of :func:`hz_to_bark`.

    Undo the end corrections (``(z - 0.3) / 0.85`` below 2, ``(z + 4.422) / 1.22``
    above 20.1), then ``f = 1960 (z + 0.53) / (26.28 - z)``.

    Args:
        z: (...) Bark, in [-0.1505, 27.6396): the image of [0, inf) Hz.

    Returns:
        (...) frequencies in Hz.
    """
    (z,) = _checks.floats({"z": z})
    _checks.from_up_to("z", z, _BARK_AT_0_HZ, _BARK_LIMIT, "Bark (the image of [0, inf) Hz)")
    return _bark_inverse(z)


def erb_bandwidth(centre_hz: Number) -> Tensor:
    """Equivalent rectangular bandwidth of the auditory filter at ``centre_hz`` (Glasberg & Moore, 1990).

    ``ERB = 24.7 (4.37 f / 1000 + 1)`` Hz.

    Args:
        centre_hz: (...) Hz, >= 0.

    Returns:
        (...) bandwidths in Hz.
    """
    (centre,) = _checks.floats({"centre_hz": centre_hz})
    _checks.from_up_to("centre_hz", centre, 0.0, math.inf, "Hz")
    return 24.7 * (4.37 * centre / 1000 + 1)


_SCALES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "mel": (_mel_slaney, _mel_slaney_inverse),
    "mel_htk": (_mel_htk, _mel_htk_inverse),
    "erb": (_erb_rate, _erb_rate_inverse),
    "bark": (_bark, _bark_inverse),
    "linear": (lambda f: f, lambda f: f),
    "log": (torch.log, torch.exp),
}
SCALES: tuple[str, ...] = tuple(_SCALES)


def centre_frequencies(n_filters: int, f_min: Number, f_max: Number, scale: str = "mel",
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """``n_filters`` frequencies equally spaced on ``scale`` from ``f_min`` to ``f_max`` inclusive, in Hz.

    ``f_k = inverse(forward(f_min) + k / (n - 1) * (forward(f_max) - forward(f_min)))``;
    the end points are ``f_min`` and ``f_max`` exactly. Differentiable in
    ``f_min`` and ``f_max`` when they are tensors.

    Args:
        n_filters: number of frequencies (>= 1; one gives ``f_min``).
        f_min, f_max: (...) Hz, ``0 <= f_min < f_max`` (``f_min > 0`` for ``log``).
        scale: ``mel`` (Slaney), ``mel_htk``, ``erb`` (ERB-number), ``bark``
            (Traunmüller), ``linear`` or ``log``.
        dtype: of the result when ``f_min`` and ``f_max`` are numbers; tensors
            must have this dtype.

    Returns:
        (..., n_filters) increasing frequencies in Hz.

    Example:
        >>> centre_frequencies(4, 100.0, 800.0, scale="log").round()
        tensor([100., 200., 400., 800.])
    """
    _checks.integer("n_filters", n_filters, 1)
    _checks.choice("scale", scale, SCALES)
    _checks.floating_dtype("dtype", dtype)
    f_min, f_max = _checks.floats({"f_min": f_min, "f_max": f_max}, dtype=dtype)
    if scale == "log":
        _checks.positive("f_min", f_min)
    else:
        _checks.from_up_to("f_min", f_min, 0.0, math.inf, "Hz")
    _checks.finite("f_max", f_max)
    _checks.below("f_min", f_min, "f_max", f_max)
    forward, inverse = _SCALES[scale]
    f_min, f_max = torch.broadcast_tensors(f_min, f_max)
    if n_filters == 1:
        return f_min.unsqueeze(-1)
    low, high = forward(f_min).unsqueeze(-1), forward(f_max).unsqueeze(-1)
    steps = torch.linspace(0, 1, n_filters, dtype=f_min.dtype, device=f_min.device)
    inside = inverse(low + (high - low) * steps[1:-1])
    return torch.cat([f_min.unsqueeze(-1), inside, f_max.unsqueeze(-1)], dim=-1)
