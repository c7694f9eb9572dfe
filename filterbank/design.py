"""Differentiable filter design: coefficient formulas as plain tensor functions.

Every function takes tensors or Python numbers that broadcast against each
other, returns float tensors in the dtype of its tensor arguments (float32
when all are numbers) and is differentiable in its continuous parameters.
Biquads come out as ``(b, a)``, each ``(..., 3)``; cascades as ``sos`` of shape
``(..., n_sections, 6)``, rows ``[b0, b1, b2, 1, a1, a2]`` (what
:func:`filterbank.sosfilt` takes).

Contents:

* RBJ audio-EQ-cookbook biquads: :func:`lowpass_biquad`, :func:`highpass_biquad`,
  :func:`bandpass_biquad` (0 dB peak), :func:`bandpass_skirt_biquad` (peak gain
  Q), :func:`notch_biquad`, :func:`allpass_biquad`, :func:`peaking_biquad`,
  :func:`lowshelf_biquad`, :func:`highshelf_biquad`, and
  :func:`q_from_bandwidth` (bandwidth in octaves to Q).
* Classical designs as second-order sections, matching scipy's
  ``butter``/``cheby1``/``cheby2`` with ``output="sos"``: :func:`butter_sos`,
  :func:`cheby1_sos`, :func:`cheby2_sos`.
* Auditory filters: :func:`gammatone_sos` (scipy's 4th-order IIR gammatone as
  four biquads) and :func:`erb_bandwidth`.
* Frequency scales: :func:`hz_to_mel`/:func:`mel_to_hz` (Slaney or HTK),
  :func:`hz_to_erb_rate`/:func:`erb_rate_to_hz`, :func:`hz_to_bark`/
  :func:`bark_to_hz`, and :func:`centre_frequencies` (points equally spaced on
  a scale).
* Responses: :func:`freqz` and :func:`sosfreqz`, on scipy's grid or at given
  frequencies.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from ._shapes import broadcast_shapes

__all__ = [
    "lowpass_biquad", "highpass_biquad", "bandpass_biquad", "bandpass_skirt_biquad", "notch_biquad",
    "allpass_biquad", "peaking_biquad", "lowshelf_biquad", "highshelf_biquad", "q_from_bandwidth",
    "butter_sos", "cheby1_sos", "cheby2_sos",
    "gammatone_sos", "erb_bandwidth",
    "hz_to_mel", "mel_to_hz", "hz_to_erb_rate", "erb_rate_to_hz", "hz_to_bark", "bark_to_hz",
    "centre_frequencies",
    "freqz", "sosfreqz",
]

Number = Union[float, int, Tensor]


# --------------------------------------------------------------------------
# Argument checking, shared by every public function.


def _checking() -> bool:
    # Data-dependent checks synchronise and break graphs; skip them when compiled.
    return not torch.compiler.is_compiling()


def _check_sample_rate(sample_rate) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)):
        raise TypeError(f"sample_rate must be a positive number of Hz (an int or a float); "
                        f"got {type(sample_rate).__name__}")
    if not (sample_rate > 0 and math.isfinite(sample_rate)):
        raise ValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    return float(sample_rate)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def _floats(arguments: dict, dtype: Optional[torch.dtype] = None, broadcast: bool = True) -> list[Tensor]:
    """Tensors for ``{name: value}``: one floating dtype and device, broadcastable shapes.

    Python numbers take the dtype and device of the tensor arguments, or
    ``dtype`` (float32 by default) when there are none. Mixed dtypes or devices
    are refused rather than cast. ``broadcast=False`` leaves the shape check
    to the caller.
    """
    reference = None
    for name, value in arguments.items():
        if isinstance(value, Tensor):
            if not value.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor or a number; got {value.dtype}")
            if reference is None:
                reference = (name, value)
            elif (value.dtype, value.device) != (reference[1].dtype, reference[1].device):
                raise TypeError(f"{name} is {value.dtype} on {value.device} but {reference[0]} is "
                                f"{reference[1].dtype} on {reference[1].device}; pass tensors of one dtype and device")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a floating-point tensor or a number; got {type(value).__name__}")
    if reference is not None and dtype is not None and reference[1].dtype != dtype:
        raise TypeError(f"{reference[0]} is {reference[1].dtype} but dtype is {dtype}; pass dtype={reference[1].dtype} "
                        f"or tensors of dtype {dtype}")
    dtype = reference[1].dtype if reference is not None else (dtype or torch.float32)
    device = reference[1].device if reference is not None else None
    tensors = [value if isinstance(value, Tensor) else torch.tensor(float(value), dtype=dtype, device=device)
               for value in arguments.values()]
    if broadcast:
        try:
            broadcast_shapes(*(tensor.shape for tensor in tensors))
        except RuntimeError:
            shapes = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in zip(arguments, tensors))
            raise ValueError(f"shapes do not broadcast: {shapes}") from None
    return tensors


def _range(x: Tensor) -> str:
    return f"[{float(x.min()):g}, {float(x.max()):g}]"


def _check_frequency(name: str, x: Tensor, nyquist: float) -> None:
    # Written as "not inside" so that NaN fails too.
    if _checking() and bool((~((x > 0) & (x < nyquist))).any()):
        raise ValueError(f"{name} must lie in (0, {nyquist:g}) Hz (sample_rate / 2); got values in {_range(x)}")


def _check_positive(name: str, x: Tensor) -> None:
    if _checking():
        if bool((~(x > 0)).any()):
            raise ValueError(f"{name} must be > 0; got a minimum of {float(x.min()):g}")
        if bool(torch.isinf(x).any()):
            raise ValueError(f"{name} must be finite; got values in {_range(x)}")


def _check_finite(name: str, x: Tensor) -> None:
    if _checking() and bool((~torch.isfinite(x)).any()):
        raise ValueError(f"{name} must be finite; got values in {_range(x)}")


def _check_interval(name: str, x: Tensor, low: float, high: float, what: str) -> None:
    """``low <= x < high`` (``high`` may be inf, which then excludes inf)."""
    if _checking() and bool((~((x >= low) & (x < high))).any()):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}) {what}; got values in {_range(x)}")


# --------------------------------------------------------------------------
# Frequency scales. The private versions take checked tensors; the
# public ones check, then call them.

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
    if not isinstance(htk, bool):
        raise TypeError(f"htk must be a bool; got {type(htk).__name__}")
    (f,) = _floats({"f": f})
    _check_interval("f", f, 0.0, math.inf, "Hz")
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
    if not isinstance(htk, bool):
        raise TypeError(f"htk must be a bool; got {type(htk).__name__}")
    (m,) = _floats({"m": m})
    _check_interval("m", m, 0.0, math.inf, "mel")
    return _mel_htk_inverse(m) if htk else _mel_slaney_inverse(m)


def hz_to_erb_rate(f: Number) -> Tensor:
    """Frequency in Hz to ERB-number (Cams), after Glasberg & Moore (1990).

    ``E = 21.4 log10(1 + 0.00437 f)``: the number of ERBs below ``f``.

    Args:
        f: (...) frequencies in Hz, >= 0.

    Returns:
        (...) ERB-numbers.
    """
    (f,) = _floats({"f": f})
    _check_interval("f", f, 0.0, math.inf, "Hz")
    return _erb_rate(f)


def erb_rate_to_hz(e: Number) -> Tensor:
    """ERB-number to Hz, the inverse of :func:`hz_to_erb_rate`: ``f = (10^(E / 21.4) - 1) / 0.00437``.

    Args:
        e: (...) ERB-numbers, >= 0.

    Returns:
        (...) frequencies in Hz.
    """
    (e,) = _floats({"e": e})
    _check_interval("e", e, 0.0, math.inf, "(ERB-number)")
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
    (f,) = _floats({"f": f})
    _check_interval("f", f, 0.0, math.inf, "Hz")
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
    (z,) = _floats({"z": z})
    _check_interval("z", z, _BARK_AT_0_HZ, _BARK_LIMIT, "Bark (the image of [0, inf) Hz)")
    return _bark_inverse(z)


def erb_bandwidth(centre_hz: Number) -> Tensor:
    """Equivalent rectangular bandwidth of the auditory filter at ``centre_hz`` (Glasberg & Moore, 1990).

    ``ERB = 24.7 (4.37 f / 1000 + 1)`` Hz.

    Args:
        centre_hz: (...) Hz, >= 0.

    Returns:
        (...) bandwidths in Hz.
    """
    (centre,) = _floats({"centre_hz": centre_hz})
    _check_interval("centre_hz", centre, 0.0, math.inf, "Hz")
    return 24.7 * (4.37 * centre / 1000 + 1)


_SCALES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "mel": (_mel_slaney, _mel_slaney_inverse),
    "mel_htk": (_mel_htk, _mel_htk_inverse),
    "erb": (_erb_rate, _erb_rate_inverse),
    "bark": (_bark, _bark_inverse),
    "linear": (lambda f: f, lambda f: f),
    "log": (torch.log, torch.exp),
}


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
    _check_int("n_filters", n_filters, 1)
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {', '.join(_SCALES)}; got {scale!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    f_min, f_max = _floats({"f_min": f_min, "f_max": f_max}, dtype=dtype)
    if scale == "log":
        _check_positive("f_min", f_min)
    else:
        _check_interval("f_min", f_min, 0.0, math.inf, "Hz")
    _check_finite("f_max", f_max)
    if _checking() and bool((~(f_min < f_max)).any()):
        raise ValueError(f"f_min must be < f_max; got f_min in {_range(f_min)} and f_max in {_range(f_max)}")
    forward, inverse = _SCALES[scale]
    f_min, f_max = torch.broadcast_tensors(f_min, f_max)
    if n_filters == 1:
        return f_min.unsqueeze(-1)
    low, high = forward(f_min).unsqueeze(-1), forward(f_max).unsqueeze(-1)
    steps = torch.linspace(0, 1, n_filters, dtype=f_min.dtype, device=f_min.device)
    inside = inverse(low + (high - low) * steps[1:-1])
    return torch.cat([f_min.unsqueeze(-1), inside, f_max.unsqueeze(-1)], dim=-1)


# --------------------------------------------------------------------------
# RBJ audio-EQ-cookbook biquads (Robert Bristow-Johnson's cookbook): each is
# the bilinear transform, prewarped at w0, of a normalised analog
# prototype H(s); s = (1 - z^-1) / (tan(w0 / 2) (1 + z^-1)).


def _cookbook(frequency_name: str, frequency: Number, q: Number, sample_rate: float,
              gain_db: Optional[Number] = None) -> dict[str, Tensor]:
    """Checked arguments -> cos(w0), sin(w0), alpha = sin(w0) / (2 q) and, with a gain, A = 10^(gain_db / 40)."""
    sample_rate = _check_sample_rate(sample_rate)
    arguments = {frequency_name: frequency, "q": q}
    if gain_db is not None:
        arguments["gain_db"] = gain_db
    tensors = _floats(arguments)
    frequency, q = tensors[:2]
    _check_frequency(frequency_name, frequency, sample_rate / 2)
    _check_positive("q", q)
    w0 = 2 * math.pi * frequency / sample_rate
    terms = {"w0": w0, "cos": torch.cos(w0), "sin": torch.sin(w0), "alpha": torch.sin(w0) / (2 * q)}
    if gain_db is not None:
        _check_finite("gain_db", tensors[2])
        terms["A"] = torch.pow(10.0, tensors[2] / 40)
    return terms


def _biquad(b0, b1, b2, a0, a1, a2) -> tuple[Tensor, Tensor]:
    """Stack the six coefficients into ``(b, a)`` divided by ``a0``."""
    b0, b1, b2, a0, a1, a2 = torch.broadcast_tensors(b0, b1, b2, a0, a1, a2)
    b = torch.stack([b0 / a0, b1 / a0, b2 / a0], dim=-1)
    a = torch.stack([torch.ones_like(a0), a1 / a0, a2 / a0], dim=-1)
    return b, a


def lowpass_biquad(cutoff_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook low-pass biquad: ``H(s) = 1 / (s^2 + s / q + 1)``.

    ``b = [1, 2, 1] (1 - cos w0) / 2``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``
    with ``w0 = 2 pi cutoff_hz / sample_rate``, ``alpha = sin(w0) / (2 q)``;
    unit gain at DC, ``q`` at the cut-off, 0 at Nyquist. Differentiable in
    ``cutoff_hz`` and ``q``.

    Args:
        cutoff_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``cutoff_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("cutoff_hz", cutoff_hz, q, sample_rate)
    # (1 - cos w0) / 2 = sin^2(w0 / 2) without the cancellation at low w0
    half = torch.sin(t["w0"] / 2).square()
    return _biquad(half, 2 * half, half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


def highpass_biquad(cutoff_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook high-pass biquad: ``H(s) = s^2 / (s^2 + s / q + 1)``.

    ``b = [1, -2, 1] (1 + cos w0) / 2``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``;
    0 at DC, ``q`` at the cut-off, unit gain at Nyquist. Differentiable in
    ``cutoff_hz`` and ``q``.

    Args:
        cutoff_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``cutoff_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("cutoff_hz", cutoff_hz, q, sample_rate)
    half = torch.cos(t["w0"] / 2).square()  # (1 + cos w0) / 2
    return _biquad(half, -2 * half, half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


def bandpass_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook band-pass biquad with a constant 0 dB peak gain.

    ``H(z) = (alpha - alpha z^-2) / ((1 + alpha) - 2 cos(w0) z^-1 + (1 - alpha) z^-2)``
    with ``w0 = 2 pi centre_hz / sample_rate`` and ``alpha = sin(w0) / (2 q)``;
    the gain at ``centre_hz`` is exactly 1. Differentiable in ``centre_hz`` and ``q``.

    Args:
        centre_hz: (...) centre frequencies in Hz, in (0, sample_rate / 2).
        q: (...) quality factors (> 0), broadcasting against ``centre_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for Python numbers).

    Example:
        >>> b, a = bandpass_biquad(torch.tensor([500.0, 1000.0]), 4.0, 16000.0)
        >>> b.shape, a.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """
    t = _cookbook("centre_hz", centre_hz, q, sample_rate)
    alpha = t["alpha"]
    return _biquad(alpha, torch.zeros_like(alpha), -alpha, 1 + alpha, -2 * t["cos"], 1 - alpha)


def bandpass_skirt_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook band-pass biquad with constant skirt gain (peak gain ``q``): ``H(s) = s / (s^2 + s / q + 1)``.

    ``b = [sin(w0) / 2, 0, -sin(w0) / 2]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``.
    Differentiable in ``centre_hz`` and ``q``.

    Args:
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``centre_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("centre_hz", centre_hz, q, sample_rate)
    half = t["sin"] / 2
    return _biquad(half, torch.zeros_like(half), -half, 1 + t["alpha"], -2 * t["cos"], 1 - t["alpha"])


def notch_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook notch biquad: ``H(s) = (s^2 + 1) / (s^2 + s / q + 1)``.

    ``b = [1, -2 cos w0, 1]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``: zero
    gain at ``centre_hz``, unit gain at DC and Nyquist. Differentiable in
    ``centre_hz`` and ``q``.

    Args:
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``centre_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("centre_hz", centre_hz, q, sample_rate)
    cos = -2 * t["cos"]
    return _biquad(torch.ones_like(cos), cos, torch.ones_like(cos), 1 + t["alpha"], cos, 1 - t["alpha"])


def allpass_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook all-pass biquad: ``H(s) = (s^2 - s / q + 1) / (s^2 + s / q + 1)``.

    ``b = [1 - alpha, -2 cos w0, 1 + alpha]``, ``a = [1 + alpha, -2 cos w0, 1 - alpha]``:
    unit magnitude everywhere, phase -pi at ``centre_hz``. Differentiable in
    ``centre_hz`` and ``q``.

    Args:
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``centre_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("centre_hz", centre_hz, q, sample_rate)
    alpha, cos = t["alpha"], -2 * t["cos"]
    return _biquad(1 - alpha, cos, 1 + alpha, 1 + alpha, cos, 1 - alpha)


def peaking_biquad(centre_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook peaking-EQ biquad: ``H(s) = (s^2 + s A / q + 1) / (s^2 + s / (A q) + 1)``.

    ``A = 10^(gain_db / 40)``; ``b = [1 + alpha A, -2 cos w0, 1 - alpha A]``,
    ``a = [1 + alpha / A, -2 cos w0, 1 - alpha / A]``: ``gain_db`` at
    ``centre_hz``, 0 dB at DC and Nyquist. Differentiable in ``centre_hz``,
    ``q`` and ``gain_db``.

    Args:
        centre_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``centre_hz``.
        gain_db: (...) gain in dB (finite), broadcasting likewise.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("centre_hz", centre_hz, q, sample_rate, gain_db)
    alpha, A, cos = t["alpha"], t["A"], -2 * t["cos"]
    return _biquad(1 + alpha * A, cos, 1 - alpha * A, 1 + alpha / A, cos, 1 - alpha / A)


def lowshelf_biquad(cutoff_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook low-shelf biquad: ``H(s) = A (s^2 + s sqrt(A) / q + A) / (A s^2 + s sqrt(A) / q + 1)``.

    ``A = 10^(gain_db / 40)``: ``gain_db`` at DC, 0 dB at Nyquist, ``gain_db / 2``
    at ``cutoff_hz``; ``q = 1 / sqrt(2)`` is the steepest monotonic shelf.
    Coefficients as in the cookbook (``b0 = A ((A + 1) - (A - 1) cos w0 + 2 sqrt(A) alpha)``, ...).
    Differentiable in ``cutoff_hz``, ``q`` and ``gain_db``.

    Args:
        cutoff_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``cutoff_hz``.
        gain_db: (...) gain in dB (finite), broadcasting likewise.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("cutoff_hz", cutoff_hz, q, sample_rate, gain_db)
    A, cos = t["A"], t["cos"]
    root = 2 * torch.sqrt(A) * t["alpha"]
    plus, minus = A + 1, A - 1
    return _biquad(A * (plus - minus * cos + root), 2 * A * (minus - plus * cos), A * (plus - minus * cos - root),
                   plus + minus * cos + root, -2 * (minus + plus * cos), plus + minus * cos - root)


def highshelf_biquad(cutoff_hz: Number, q: Number, gain_db: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook high-shelf biquad: ``H(s) = A (A s^2 + s sqrt(A) / q + 1) / (s^2 + s sqrt(A) / q + A)``.

    ``A = 10^(gain_db / 40)``: 0 dB at DC, ``gain_db`` at Nyquist, ``gain_db / 2``
    at ``cutoff_hz``. Coefficients as in the cookbook. Differentiable in
    ``cutoff_hz``, ``q`` and ``gain_db``.

    Args:
        cutoff_hz: (...) Hz, in (0, sample_rate / 2).
        q: (...) quality factor (> 0), broadcasting against ``cutoff_hz``.
        gain_db: (...) gain in dB (finite), broadcasting likewise.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in the dtype of the tensor arguments (float32 for numbers).
    """
    t = _cookbook("cutoff_hz", cutoff_hz, q, sample_rate, gain_db)
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
    sample_rate = _check_sample_rate(sample_rate)
    bandwidth, centre = _floats({"bandwidth_octaves": bandwidth_octaves, "centre_hz": centre_hz})
    _check_positive("bandwidth_octaves", bandwidth)
    _check_frequency("centre_hz", centre, sample_rate / 2)
    w0 = 2 * math.pi * centre / sample_rate
    return 1 / (2 * torch.sinh(math.log(2) / 2 * bandwidth * w0 / torch.sin(w0)))


# --------------------------------------------------------------------------
# Butterworth and Chebyshev designs, following scipy.signal.iirfilter's
# route: analog prototype -> frequency transformation at the prewarped
# edges -> bilinear transform -> zpk2sos's pairing and ordering. Computed in
# complex128 whatever the input dtype (pole positions near z = 1 and the
# pairing decisions need it), rounded once at the end.

_BTYPES = ("lowpass", "highpass", "bandpass")


def _prototype(family: str, order: int, parameter: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Analog low-pass prototype with cut-off 1 rad/s: zeros (B, n_z), poles (B, order), gain (B,).

    ``parameter`` (B,) float64 is the ripple (cheby1) or attenuation (cheby2) in dB.
    """
    batch, device = parameter.shape[0], parameter.device
    m = torch.arange(-order + 1, order, 2, dtype=torch.float64, device=device)
    theta = math.pi * m / (2 * order)
    if family == "butter":
        # -exp(j theta): the middle pole of an odd order is exactly -1
        poles = torch.complex(-torch.cos(theta), -torch.sin(theta)).expand(batch, order)
        zeros = torch.zeros(batch, 0, dtype=torch.complex128, device=device)
        return zeros, poles, torch.ones(batch, dtype=torch.float64, device=device)
    # 10^(dB / 10) - 1, accurately for small dB
    excess = torch.expm1(parameter * (math.log(10) / 10))
    if family == "cheby1":
        eps = torch.sqrt(excess)
        mu = (torch.asinh(1 / eps) / order).unsqueeze(-1)
        # -sinh(mu + j theta): poles on an ellipse
        poles = torch.complex(-torch.sinh(mu) * torch.cos(theta), -torch.cosh(mu) * torch.sin(theta))
        gain = torch.prod(-poles, dim=-1).real
        if order % 2 == 0:
            gain = gain / torch.sqrt(1 + excess)  # even orders start the pass band at -ripple dB
        zeros = torch.zeros(batch, 0, dtype=torch.complex128, device=device)
        return zeros, poles, gain
    # cheby2: poles -1 / sinh(mu + j theta), zeros j / sin(m pi / (2 order)) for m != 0
    mu = (torch.asinh(torch.sqrt(excess)) / order).unsqueeze(-1)
    poles = -1 / torch.complex(torch.sinh(mu) * torch.cos(theta), torch.cosh(mu) * torch.sin(theta))
    m_zeros = m[m != 0]
    zeros = torch.complex(torch.zeros_like(m_zeros), 1 / torch.sin(m_zeros * math.pi / (2 * order)))
    zeros = zeros.expand(batch, zeros.shape[0])
    gain = (torch.prod(-poles, dim=-1) / torch.prod(-zeros, dim=-1)).real
    return zeros, poles, gain


def _zpk2sos(zeros: Tensor, poles: Tensor, gain: Tensor) -> Tensor:
    """scipy's ``zpk2sos(z, p, k, pairing="nearest")`` for a batch of digital filters.

    zeros, poles: (B, n) complex; gain: (B,) -> sos (B, ceil(n / 2), 6).
    The same pairing and ordering, decided per batch row on detached values
    with masks instead of deletions, so it stays batched and compiles:
    pick the remaining pole nearest the unit circle, pair it with its
    conjugate (or the real pole nearest the circle), give the section the
    nearest zeros, and fill sections from the last; the gain goes into the
    first section. Needs as many zeros as poles (true after a bilinear
    transform), so scipy's "no zeros left" branches never arise.
    """
    batch, n = poles.shape
    device = poles.device
    if n % 2:
        # an odd count gets a pole and a zero at the origin, as scipy does
        pad = torch.zeros(batch, 1, dtype=poles.dtype, device=device)
        zeros, poles = torch.cat([zeros, pad], dim=-1), torch.cat([poles, pad], dim=-1)
        n += 1
    tol = 100 * torch.finfo(torch.float64).eps

    def split(roots):
        # scipy's _cplxreal: real within tol; of a conjugate pair keep the
        # member with positive imaginary part.
        detached = roots.detach()
        real = detached.imag.abs() <= tol * detached.abs()
        values = torch.where(real, torch.complex(roots.real, torch.zeros_like(roots.real)), roots)
        return values, real, real | (detached.imag > 0)

    z_values, z_real, z_alive = split(zeros)
    p_values, p_real, p_alive = split(poles)
    distance_to_circle = (1 - p_values.detach().abs()).abs()
    index = torch.arange(n, device=device)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=device)
    nothing = torch.zeros(batch, 1, dtype=poles.dtype, device=device)

    def first_of(score, mask):
        return torch.where(mask, score, inf).argmin(dim=-1, keepdim=True)

    def count(mask):
        return mask.sum(dim=-1, keepdim=True)

    sections = []
    for _ in range(n // 2):
        i1 = first_of(distance_to_circle, p_alive)
        p1, p1_real = p_values.gather(-1, i1), p_real.gather(-1, i1)
        p_alive = p_alive & (index != i1)
        real_poles_left = p_alive & p_real
        # scipy's special case (1): the last real pole goes with a real zero
        # in a first-order section; (2): one real pole and one real zero
        # left, so a complex pole must take complex zeros.
        last_real = p1_real & (count(real_poles_left) == 0)
        complex_zeros = (~last_real & ~p1_real & (count(real_poles_left) == 1)
                         & (count(p_alive) + 1 == count(z_alive)) & (count(z_alive & z_real) == 1))
        i2 = first_of(distance_to_circle, real_poles_left)
        second_real = p1_real & ~last_real
        p2 = torch.where(last_real, nothing, torch.where(second_real, p_values.gather(-1, i2), p1.conj()))
        p_alive = p_alive & ~((index == i2) & second_real)

        z_distance = (z_values.detach() - p1.detach()).abs()
        j1 = torch.where(last_real, first_of(z_distance, z_alive & z_real),
                         torch.where(complex_zeros, first_of(z_distance, z_alive & ~z_real),
                                     first_of(z_distance, z_alive)))
        z1, z1_real = z_values.gather(-1, j1), z_real.gather(-1, j1)
        z_alive = z_alive & (index != j1)
        second_zero_real = z1_real & ~last_real
        j2 = first_of(z_distance, z_alive & z_real)
        z2 = torch.where(last_real, nothing, torch.where(second_zero_real, z_values.gather(-1, j2), z1.conj()))
        z_alive = z_alive & ~((index == j2) & second_zero_real)

        one = torch.ones(batch, 1, dtype=torch.float64, device=device)
        sections.append(torch.cat([one, -(z1 + z2).real, (z1 * z2).real, one, -(p1 + p2).real, (p1 * p2).real], -1))
    sections.reverse()  # the poles nearest the circle go last
    first = torch.cat([sections[0][:, :3] * gain.unsqueeze(-1), sections[0][:, 3:]], dim=-1)
    return torch.stack([first] + sections[1:], dim=-2)


def _iir_sos(family: str, order: int, cutoff_hz: Number, sample_rate: float, btype: str,
             parameter_name: Optional[str] = None, parameter: Optional[Number] = None) -> Tensor:
    """scipy's ``iirfilter(order, cutoff_hz, rp/rs, btype, ftype=family, fs=sample_rate, output="sos")``, batched."""
    order = _check_int("order", order, 1)
    sample_rate = _check_sample_rate(sample_rate)
    if btype not in _BTYPES:
        raise ValueError(f"btype must be one of {', '.join(_BTYPES)}; got {btype!r}")
    arguments = {"cutoff_hz": cutoff_hz}
    if parameter_name is not None:
        arguments[parameter_name] = parameter
    # a band-pass cutoff_hz has one dimension more than the batch: checked below
    tensors = _floats(arguments, broadcast=False)
    cutoff = tensors[0]
    band = btype == "bandpass"
    if band and (cutoff.ndim == 0 or cutoff.shape[-1] != 2):
        raise ValueError(f"cutoff_hz must have a last dimension of 2 (low, high) for btype='bandpass'; "
                         f"got shape {tuple(cutoff.shape)}")
    batch_shape = cutoff.shape[:-1] if band else cutoff.shape
    if parameter_name is not None:
        try:
            batch_shape = broadcast_shapes(batch_shape, tensors[1].shape)
        except RuntimeError:
            raise ValueError(f"shapes do not broadcast: cutoff_hz {tuple(cutoff.shape)}"
                             f"{' (batch ' + str(tuple(cutoff.shape[:-1])) + ')' if band else ''}, "
                             f"{parameter_name} {tuple(tensors[1].shape)}") from None
    nyquist = sample_rate / 2
    _check_frequency("cutoff_hz", cutoff, nyquist)
    if band and _checking() and bool((~(cutoff[..., 0] < cutoff[..., 1])).any()):
        raise ValueError("cutoff_hz[..., 0] (low) must be < cutoff_hz[..., 1] (high); got "
                         f"low - high in {_range(cutoff[..., 0] - cutoff[..., 1])} Hz")
    if parameter_name is not None:
        _check_positive(parameter_name, tensors[1])

    dtype = cutoff.dtype
    n_batch = math.prod(batch_shape)
    edges = cutoff.to(torch.float64).expand(batch_shape + ((2,) if band else ())).reshape(n_batch, 2 if band else 1)
    value = (tensors[1].to(torch.float64).expand(batch_shape).reshape(n_batch) if parameter_name is not None
             else torch.zeros(n_batch, dtype=torch.float64, device=cutoff.device))
    zeros, poles, gain = _prototype(family, order, value)
    # scipy's prewarping: normalise to Nyquist, then 2 fs tan(pi Wn / fs) with fs = 2
    warped = 4 * torch.tan(math.pi * (edges / nyquist) / 2)
    degree = poles.shape[-1] - zeros.shape[-1]
    if btype == "lowpass":
        zeros, poles = warped * zeros, warped * poles
        gain = gain * warped.squeeze(-1) ** degree
    elif btype == "highpass":
        gain = gain * (torch.prod(-zeros, dim=-1) / torch.prod(-poles, dim=-1)).real
        # zeros at infinity move to the origin
        zeros = torch.cat([warped / zeros, torch.zeros(n_batch, degree, dtype=zeros.dtype, device=zeros.device)], -1)
        poles = warped / poles
    else:
        width = (warped[:, 1] - warped[:, 0]).unsqueeze(-1)
        centre_squared = (warped[:, 0] * warped[:, 1]).unsqueeze(-1)

        def shift(roots):
            # each low-pass root r becomes the two roots of s^2 - r bw s + wo^2
            if roots.shape[-1] == 0:
                return roots  # (inductor cannot lower complex ops on empty tensors)
            scaled = roots * (width / 2)
            offset = torch.sqrt(scaled.square() - centre_squared)
            return torch.cat([scaled + offset, scaled - offset], dim=-1)

        zeros = torch.cat([shift(zeros), torch.zeros(n_batch, degree, dtype=zeros.dtype, device=zeros.device)], -1)
        poles = shift(poles)
        gain = gain * width.squeeze(-1) ** degree
    # bilinear transform with fs = 2: z = (4 + s) / (4 - s); zeros at infinity go to z = -1
    gain = gain * (torch.prod(4 - zeros, dim=-1) / torch.prod(4 - poles, dim=-1)).real
    missing = poles.shape[-1] - zeros.shape[-1]
    zeros = torch.cat([(4 + zeros) / (4 - zeros),
                       torch.full((n_batch, missing), -1, dtype=zeros.dtype, device=zeros.device)], dim=-1)
    poles = (4 + poles) / (4 - poles)
    sos = _zpk2sos(zeros, poles, gain)
    return sos.reshape(batch_shape + sos.shape[-2:]).to(dtype)


def butter_sos(order: int, cutoff_hz: Number, sample_rate: float, btype: str = "lowpass") -> Tensor:
    """Butterworth filter as second-order sections, like ``scipy.signal.butter(..., output="sos")``.

    ``|H(e^jw)|^2 = 1 / (1 + (tan(w / 2) / tan(wc / 2))^(2 order))`` for the
    low-pass: maximally flat, -3 dB at the cut-off. The analog prototype's
    poles ``-exp(j pi m / (2 order))``, ``m = 1 - order, 3 - order, ..., order - 1``,
    are moved to the prewarped cut-off(s), bilinear-transformed and paired
    into sections as scipy's ``zpk2sos`` does. Differentiable in ``cutoff_hz``.

    Args:
        order: the prototype's order, a Python int >= 1 (band-pass doubles it).
        cutoff_hz: (...) Hz in (0, sample_rate / 2) for ``lowpass`` and
            ``highpass``; (..., 2) ``(low, high)``, low < high, for ``bandpass``.
        sample_rate: in Hz.
        btype: ``lowpass``, ``highpass`` or ``bandpass``.

    Returns:
        sos: (..., n_sections, 6) with ``n_sections = ceil(order / 2)``
        (``order`` for band-pass), ``sos[..., 3] == 1``; float in the dtype
        of the tensor arguments (float32 for numbers). The batch dimensions
        are those of ``cutoff_hz`` (without its last for band-pass).

    Example:
        >>> butter_sos(4, torch.tensor([[300.0, 3400.0]]), 16000.0, btype="bandpass").shape
        torch.Size([1, 4, 6])
    """
    return _iir_sos("butter", order, cutoff_hz, sample_rate, btype)


def cheby1_sos(order: int, ripple_db: Number, cutoff_hz: Number, sample_rate: float,
               btype: str = "lowpass") -> Tensor:
    """Chebyshev type I filter as second-order sections, like ``scipy.signal.cheby1(..., output="sos")``.

    ``|H|^2 = 1 / (1 + eps^2 T_order(tan(w / 2) / tan(wc / 2))^2)``, ``eps^2 = 10^(ripple_db / 10) - 1``:
    equiripple pass band, the gain first leaves ``[-ripple_db, 0]`` dB at the
    cut-off. Prototype poles ``-sinh(mu + j theta_m)``, ``mu = asinh(1 / eps) / order``.
    Differentiable in ``cutoff_hz`` and ``ripple_db``.

    Args:
        order: the prototype's order, a Python int >= 1 (band-pass doubles it).
        ripple_db: (...) pass-band ripple in dB (> 0).
        cutoff_hz: (...) Hz in (0, sample_rate / 2) for ``lowpass`` and
            ``highpass``; (..., 2) ``(low, high)``, low < high, for ``bandpass``.
        sample_rate: in Hz.
        btype: ``lowpass``, ``highpass`` or ``bandpass``.

    Returns:
        sos: (..., n_sections, 6) with ``n_sections = ceil(order / 2)``
        (``order`` for band-pass), ``sos[..., 3] == 1``; float in the dtype
        of the tensor arguments (float32 for numbers). The batch dimensions
        are those of ``cutoff_hz`` (without its last for band-pass),
        broadcast against ``ripple_db``'s.
    """
    return _iir_sos("cheby1", order, cutoff_hz, sample_rate, btype, "ripple_db", ripple_db)


def cheby2_sos(order: int, attenuation_db: Number, cutoff_hz: Number, sample_rate: float,
               btype: str = "lowpass") -> Tensor:
    """Chebyshev type II filter as second-order sections, like ``scipy.signal.cheby2(..., output="sos")``.

    ``|H|^2 = 1 / (1 + 1 / (eps^2 T_order(tan(wc / 2) / tan(w / 2))^2))``,
    ``eps^2 = 1 / (10^(attenuation_db / 10) - 1)``: flat pass band, equiripple
    stop band at least ``attenuation_db`` down from the cut-off on (the cut-off
    is the stop-band edge). Prototype poles ``-1 / sinh(mu + j theta_m)``, zeros
    ``j / sin(m pi / (2 order))``. Differentiable in ``cutoff_hz`` and ``attenuation_db``.

    Args:
        order: the prototype's order, a Python int >= 1 (band-pass doubles it).
        attenuation_db: (...) stop-band attenuation in dB (> 0).
        cutoff_hz: (...) Hz in (0, sample_rate / 2) for ``lowpass`` and
            ``highpass``; (..., 2) ``(low, high)``, low < high, for ``bandpass``.
        sample_rate: in Hz.
        btype: ``lowpass``, ``highpass`` or ``bandpass``.

    Returns:
        sos: (..., n_sections, 6) with ``n_sections = ceil(order / 2)``
        (``order`` for band-pass), ``sos[..., 3] == 1``; float in the dtype
        of the tensor arguments (float32 for numbers). The batch dimensions
        are those of ``cutoff_hz`` (without its last for band-pass),
        broadcast against ``attenuation_db``'s.
    """
    return _iir_sos("cheby2", order, cutoff_hz, sample_rate, btype, "attenuation_db", attenuation_db)


# --------------------------------------------------------------------------
# Gammatone.

# The zeros of the real part of (1 - x z^-1)^4 sit at r (cos + c sin)
# with c = +-(1 + sqrt 2), +-(sqrt 2 - 1) (Slaney's four sections).
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
    sample_rate = _check_sample_rate(sample_rate)
    (centre,) = _floats({"centre_hz": centre_hz})
    _check_frequency("centre_hz", centre, sample_rate / 2)
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


# --------------------------------------------------------------------------
# Frequency responses.


def _angular(n_frequencies: int, sample_rate: Optional[float], whole: bool, frequencies: Optional[Tensor],
             like: Tensor) -> tuple[Tensor, Tensor]:
    """(frequencies to return, radians per sample)."""
    if frequencies is None:
        # scipy's grid: linspace(0, pi or 2 pi, n, endpoint=False)
        last = 2 * math.pi if whole else math.pi
        w = torch.arange(n_frequencies, dtype=like.dtype, device=like.device) * (last / n_frequencies)
        return (w if sample_rate is None else w * (sample_rate / (2 * math.pi))), w
    return frequencies, (frequencies if sample_rate is None else frequencies * (2 * math.pi / sample_rate))


def _polynomial(coefficients: Tensor, w: Tensor) -> Tensor:
    """sum_k c[..., k] e^(-j w k): (..., K) and (..., F) -> (..., F), complex."""
    k = torch.arange(coefficients.shape[-1], dtype=w.dtype, device=w.device)
    angle = w.unsqueeze(-1) * k  # (..., F, K)
    powers = torch.complex(torch.cos(angle), -torch.sin(angle))
    return (coefficients.to(powers.dtype).unsqueeze(-2) @ powers.mT).squeeze(-2)


def _check_response_arguments(n_frequencies, sample_rate, whole, frequencies, reference_name: str, reference: Tensor,
                              batch_shapes: list) -> Optional[float]:
    """Checks shared by freqz and sosfreqz; returns the sample rate as a float (or None)."""
    if sample_rate is not None:
        sample_rate = _check_sample_rate(sample_rate)
    if not isinstance(whole, bool):
        raise TypeError(f"whole must be a bool; got {type(whole).__name__}")
    if frequencies is None:
        _check_int("n_frequencies", n_frequencies, 1)
        return sample_rate
    if whole:
        raise ValueError("whole=True asks for scipy's grid; it cannot be combined with explicit frequencies")
    if not isinstance(frequencies, Tensor) or not frequencies.is_floating_point():
        what = frequencies.dtype if isinstance(frequencies, Tensor) else type(frequencies).__name__
        raise TypeError(f"frequencies must be a floating-point tensor of shape (..., n_frequencies); got {what}")
    if frequencies.ndim == 0:
        raise ValueError("frequencies must have shape (..., n_frequencies); got a 0-d tensor")
    if (frequencies.dtype, frequencies.device) != (reference.dtype, reference.device):
        raise TypeError(f"frequencies is {frequencies.dtype} on {frequencies.device} but {reference_name} is "
                        f"{reference.dtype} on {reference.device}; pass tensors of one dtype and device")
    try:
        broadcast_shapes(*batch_shapes, frequencies.shape[:-1])
    except RuntimeError:
        raise ValueError(f"the batch dimensions of frequencies {tuple(frequencies.shape[:-1])} do not broadcast "
                         f"against those of {reference_name} {tuple(batch_shapes[0])}") from None
    _check_finite("frequencies", frequencies)
    return sample_rate


def _check_coefficients(name: str, x, minimum_ndim: int, shape_hint: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        what = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a real floating-point tensor of shape {shape_hint}; got {what}")
    if x.ndim < minimum_ndim or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape {shape_hint}; got {tuple(x.shape)}")


def _check_leading(name: str, coefficients: Tensor, column: int) -> None:
    """``coefficients[..., column] != 0``, naming the first offending element."""
    leading = coefficients[..., column]
    if _checking() and bool((leading == 0).any()):
        where = torch.nonzero(leading == 0)[0].tolist() + [column]
        raise ValueError(f"{name}[..., {column}] must be non-zero; got 0 at {name}[{', '.join(map(str, where))}]")


def freqz(b: Tensor, a: Tensor, n_frequencies: int = 512, sample_rate: Optional[float] = None, whole: bool = False,
          *, frequencies: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Frequency response of ``b / a``, like ``scipy.signal.freqz`` (batched and differentiable).

    ``H(e^jw) = sum_k b[k] e^(-jwk) / sum_k a[k] e^(-jwk)``, at scipy's grid
    ``w = pi k / n_frequencies`` (``2 pi k / n_frequencies`` when ``whole``),
    ``k = 0 .. n_frequencies - 1``, or at ``frequencies``. Differentiable in
    ``b``, ``a`` (and ``frequencies``): a loss on ``response.abs()``
    backpropagates to the coefficients.

    Args:
        b: (..., M + 1) numerators.
        a: (..., N + 1) denominators, ``a[..., 0] != 0``; batch dimensions
            broadcast against ``b``'s; same dtype and device.
        n_frequencies: grid size (>= 1).
        sample_rate: Hz; frequencies (given and returned) are then in Hz,
            else in radians per sample.
        whole: grid over [0, 2 pi) instead of [0, pi).
        frequencies: (..., F) explicit frequencies (batch dimensions broadcast
            against the filters'); replaces the grid (``n_frequencies`` is
            then ignored).

    Returns:
        ``(frequencies, response)``: (n_frequencies,) (or the given
        ``frequencies``) and complex (..., n_frequencies) (or (..., F)).

    Example:
        >>> w, h = freqz(torch.tensor([1.0, 1.0]), torch.tensor([2.0]), 4)
        >>> h.abs()
        tensor([1.0000, 0.9239, 0.7071, 0.3827])
    """
    _check_coefficients("b", b, 1, "(..., M + 1)")
    _check_coefficients("a", a, 1, "(..., N + 1)")
    if (a.dtype, a.device) != (b.dtype, b.device):
        raise TypeError(f"a is {a.dtype} on {a.device} but b is {b.dtype} on {b.device}; "
                        f"pass tensors of one dtype and device")
    try:
        broadcast_shapes(b.shape[:-1], a.shape[:-1])
    except RuntimeError:
        raise ValueError(f"the batch dimensions of b {tuple(b.shape[:-1])} and a {tuple(a.shape[:-1])} "
                         f"do not broadcast") from None
    sample_rate = _check_response_arguments(n_frequencies, sample_rate, whole, frequencies, "b", b,
                                            [b.shape[:-1], a.shape[:-1]])
    _check_leading("a", a, 0)
    returned, w = _angular(n_frequencies, sample_rate, whole, frequencies, b)
    return returned, _polynomial(b, w) / _polynomial(a, w)


def sosfreqz(sos: Tensor, n_frequencies: int = 512, sample_rate: Optional[float] = None, whole: bool = False,
             *, frequencies: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Frequency response of cascaded second-order sections, like ``scipy.signal.sosfreqz``.

    ``H = prod_s (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)`` over
    the sections ``[b0, b1, b2, a0, a1, a2]``, on the grid of :func:`freqz` or
    at ``frequencies``. Differentiable in ``sos`` (and ``frequencies``).

    Args:
        sos: (..., n_sections, 6), ``sos[..., 3] != 0``.
        n_frequencies, sample_rate, whole: as for :func:`freqz`.
        frequencies: (..., F), batch dimensions broadcast against
            ``sos.shape[:-2]`` (e.g. (n_filters, 1) for one frequency per filter).

    Returns:
        ``(frequencies, response)``: (n_frequencies,) (or the given
        ``frequencies``) and complex (..., n_frequencies) (or (..., F)).

    Example:
        >>> sos = torch.tensor([[[1.0, 0.0, 0.0, 1.0, -0.5, 0.0]] * 2])   # (1 filter, 2 sections, 6)
        >>> f, h = sosfreqz(sos, 256, sample_rate=8000.0)
        >>> f.shape, h.shape, float(h[0, 0].real)
        (torch.Size([256]), torch.Size([1, 256]), 4.0)
    """
    _check_coefficients("sos", sos, 2, "(..., n_sections, 6)")
    if sos.shape[-1] != 6:
        raise ValueError(f"sos must have shape (..., n_sections, 6); got {tuple(sos.shape)}")
    if sos.shape[-2] == 0:
        raise ValueError(f"sos must have at least one section; got shape {tuple(sos.shape)}")
    sample_rate = _check_response_arguments(n_frequencies, sample_rate, whole, frequencies, "sos", sos,
                                            [sos.shape[:-2]])
    _check_leading("sos", sos, 3)
    returned, w = _angular(n_frequencies, sample_rate, whole, frequencies, sos)
    if w.ndim > 1:
        w = w.unsqueeze(-2)  # a section axis to broadcast against
    sections = _polynomial(sos[..., :3], w) / _polynomial(sos[..., 3:], w)
    response = sections[..., 0, :]
    for s in range(1, sections.shape[-2]):
        response = response * sections[..., s, :]
    return returned, response
