"""torchaudio's filtering functions on filterbank's kernels: a one-line switch.

    import filterbank.compat.torchaudio as F      # instead of: import torchaudio.functional as F
    y = F.lowpass_biquad(waveform, 16000, 1000.0)

Same names, signatures, defaults, output shapes and error classes as
``torchaudio.functional`` 2.11 for ``lfilter``, ``filtfilt``, ``biquad`` and the
``*_biquad`` helpers; the coefficients are computed as torchaudio computes
them (in the waveform's dtype, SoX's and the audio-EQ cookbook's formulas), so
results agree to rounding, and gradients flow to the waveform and to every
tensor-valued parameter as in torchaudio.

Differences on purpose:

* Tensor-valued (batched) parameters. torchaudio's helpers take one filter;
  here ``central_freq``, ``Q``, ``gain`` (and ``biquad``'s coefficients) may be
  tensors of shape ``(n_filters,)`` (or anything that broadcasts), and the
  output gains a filter axis: ``(..., n_filters, time)``, the waveform read
  once for all filters.
* ``lfilter(..., batching=False)`` with 2-D coefficients does not copy the
  waveform once per filter (torchaudio stacks it); the result is the same.
* Like torchaudio, ``clamp=True`` (the default of ``lfilter`` and ``filtfilt``,
  and what every ``*_biquad`` helper uses) clips the output to [-1, 1];
  ``filterbank.lfilter`` itself never clips.
* float16/bfloat16 waveforms are computed in float32 (torchaudio computes in
  the waveform's dtype).
* Errors: torchaudio's own rules (coefficient sizes, batching) raise its
  errors with its messages; beyond them filterbank's checks apply, so an
  integer waveform is a ``TypeError`` (torchaudio: a ``RuntimeError`` from
  its kernel) and ``a0 == 0`` a ``ValueError`` (torchaudio divides by it and
  returns inf/NaN).
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

from .. import functional

__all__ = [
    "lfilter", "filtfilt", "biquad", "allpass_biquad", "band_biquad", "bandpass_biquad", "bandreject_biquad",
    "bass_biquad", "treble_biquad", "equalizer_biquad", "highpass_biquad", "lowpass_biquad", "deemph_biquad",
    "riaa_biquad",
]

Number = Union[float, int, Tensor]


def _torchaudio_coefficient_rule(a_coeffs: Tensor, b_coeffs: Tensor) -> None:
    """torchaudio's own rule and messages (scripts match on them); filterbank's checks follow in ``lfilter``."""
    if a_coeffs.size() != b_coeffs.size():
        raise ValueError("Expected coeffs to be the same size. "
                         f"Found: a_coeffs size: {a_coeffs.size()}, b_coeffs size: {b_coeffs.size()}")
    if a_coeffs.ndim > 2:
        raise ValueError(f"Expected coeffs to have at most 2 dimensions. Found: {a_coeffs.ndim}")


def lfilter(waveform: Tensor, a_coeffs: Tensor, b_coeffs: Tensor, clamp: bool = True, batching: bool = True) -> Tensor:
    """``torchaudio.functional.lfilter``: note the order (waveform, a, b).

    Args:
        waveform: (..., time).
        a_coeffs, b_coeffs: (order + 1) or (num_filters, order + 1), same size.
        clamp: clip the output to [-1, 1].
        batching: with 2-D coefficients, True filters ``waveform[..., i, :]`` by
            filter i (``waveform.shape[-2] == num_filters``); False filters the
            whole waveform by every filter, adding a filter axis.

    Returns:
        (..., time) for 1-D coefficients; (..., num_filters, time) for 2-D.
    """
    _torchaudio_coefficient_rule(a_coeffs, b_coeffs)
    if a_coeffs.ndim == 2:
        if batching:
            if waveform.ndim < 2 or waveform.shape[-2] != a_coeffs.shape[0]:
                found = waveform.shape[-2] if waveform.ndim >= 2 else None
                raise ValueError("Expected number of batches in waveform and coeffs to be the same. "
                                 f"Found: coeffs batches: {a_coeffs.shape[0]}, waveform batches: {found}")
        else:
            waveform = waveform.unsqueeze(-2)  # read once by every filter, not stacked
    output = functional.lfilter(b_coeffs, a_coeffs, waveform)
    return torch.clamp(output, min=-1.0, max=1.0) if clamp else output


def filtfilt(waveform: Tensor, a_coeffs: Tensor, b_coeffs: Tensor, clamp: bool = True) -> Tensor:
    """``torchaudio.functional.filtfilt``: forwards, then backwards, from rest (no padding).

    Unlike scipy's ``filtfilt`` (``filterbank.filtfilt``), torchaudio neither
    extends the signal nor starts from a steady state; this follows torchaudio.
    """
    forward = lfilter(waveform, a_coeffs, b_coeffs, clamp=False, batching=True)
    return lfilter(forward.flip(-1), a_coeffs, b_coeffs, clamp=clamp, batching=True).flip(-1)


def _as_tensor(value: Number, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def biquad(waveform: Tensor, b0: Number, b1: Number, b2: Number, a0: Number, a1: Number, a2: Number) -> Tensor:
    """``torchaudio.functional.biquad``: one biquad (or, with tensor coefficients, a bank), output clamped.

    Returns:
        (..., time), or (..., n_filters, time) when the coefficients are
        tensors with a shape (n_filters,).
    """
    values = [_as_tensor(value, waveform) for value in (b0, b1, b2, a0, a1, a2)]
    values = torch.broadcast_tensors(*values)
    b = torch.stack(values[:3], dim=-1)
    a = torch.stack(values[3:], dim=-1)
    signal = waveform if b.ndim == 1 else waveform.unsqueeze(-2)
    return torch.clamp(functional.lfilter(b, a, signal), min=-1.0, max=1.0)


def _w0_alpha(sample_rate: float, frequency: Number, Q: Number, like: Tensor):
    w0 = 2 * math.pi * _as_tensor(frequency, like) / sample_rate
    return w0, torch.sin(w0) / 2 / _as_tensor(Q, like)


def allpass_biquad(waveform: Tensor, sample_rate: int, central_freq: Number, Q: Number = 0.707) -> Tensor:
    """Two-pole all-pass (SoX ``allpass``).

    Not ``filterbank.design.allpass_biquad``, which returns the coefficients ``(b, a)``
    of filterbank's own (RBJ cookbook) design: this filters ``waveform`` with
    torchaudio's signature and coefficients, and clamps to [-1, 1].
    """
    w0, alpha = _w0_alpha(sample_rate, central_freq, Q, waveform)
    cosine = torch.cos(w0)
    return biquad(waveform, 1 - alpha, -2 * cosine, 1 + alpha, 1 + alpha, -2 * cosine, 1 - alpha)


def band_biquad(waveform: Tensor, sample_rate: int, central_freq: Number, Q: Number = 0.707,
                noise: bool = False) -> Tensor:
    """Two-pole band filter (SoX ``band``; ``noise`` for un-pitched audio)."""
    frequency = _as_tensor(central_freq, waveform)
    w0 = 2 * math.pi * frequency / sample_rate
    bandwidth = frequency / _as_tensor(Q, waveform)
    a2 = torch.exp(-2 * math.pi * bandwidth / sample_rate)
    a1 = -4 * a2 / (1 + a2) * torch.cos(w0)
    b0 = torch.sqrt(1 - a1 * a1 / (4 * a2)) * (1 - a2)
    if noise:
        b0 = b0 * torch.sqrt(((1 + a2) * (1 + a2) - a1 * a1) * (1 - a2) / (1 + a2)) / b0
    return biquad(waveform, b0, 0.0, 0.0, 1.0, a1, a2)


def bandpass_biquad(waveform: Tensor, sample_rate: int, central_freq: Number, Q: Number = 0.707,
                    const_skirt_gain: bool = False) -> Tensor:
    """Two-pole band-pass: constant 0 dB peak, or constant skirt gain (peak gain Q).

    Not ``filterbank.design.bandpass_biquad``, which returns the coefficients ``(b, a)``
    of filterbank's own (RBJ cookbook) design: this filters ``waveform`` with
    torchaudio's signature and coefficients, and clamps to [-1, 1].
    """
    w0, alpha = _w0_alpha(sample_rate, central_freq, Q, waveform)
    numerator = torch.sin(w0) / 2 if const_skirt_gain else alpha
    return biquad(waveform, numerator, 0.0, -numerator, 1 + alpha, -2 * torch.cos(w0), 1 - alpha)


def bandreject_biquad(waveform: Tensor, sample_rate: int, central_freq: Number, Q: Number = 0.707) -> Tensor:
    """Two-pole band-reject (notch)."""
    w0, alpha = _w0_alpha(sample_rate, central_freq, Q, waveform)
    cosine = torch.cos(w0)
    return biquad(waveform, 1.0, -2 * cosine, 1.0, 1 + alpha, -2 * cosine, 1 - alpha)


def _shelf(waveform: Tensor, sample_rate: int, gain: Number, central_freq: Number, Q: Number, sign: int) -> Tensor:
    """Cookbook shelving filter; sign -1: low shelf (bass), +1: high shelf (treble)."""
    w0, alpha = _w0_alpha(sample_rate, central_freq, Q, waveform)
    A = torch.exp(_as_tensor(gain, waveform) / 40 * math.log(10))
    cosine = torch.cos(w0)
    root = 2 * torch.sqrt(A) * alpha
    shift, spread = (A - 1) * cosine, (A + 1) * cosine
    b0 = A * ((A + 1) + sign * shift + root)
    b1 = -sign * 2 * A * ((A - 1) + sign * spread)
    b2 = A * ((A + 1) + sign * shift - root)
    a0 = (A + 1) - sign * shift + root
    a1 = sign * 2 * ((A - 1) - sign * spread)
    a2 = (A + 1) - sign * shift - root
    if sign < 0:
        # torchaudio normalises the bass shelf by a0 before filtering (the treble not).
        return biquad(waveform, b0 / a0, b1 / a0, b2 / a0, a0 / a0, a1 / a0, a2 / a0)
    return biquad(waveform, b0, b1, b2, a0, a1, a2)


def bass_biquad(waveform: Tensor, sample_rate: int, gain: Number, central_freq: Number = 100,
                Q: Number = 0.707) -> Tensor:
    """Bass tone control: a low shelf of ``gain`` dB."""
    return _shelf(waveform, sample_rate, gain, central_freq, Q, -1)


def treble_biquad(waveform: Tensor, sample_rate: int, gain: Number, central_freq: Number = 3000,
                  Q: Number = 0.707) -> Tensor:
    """Treble tone control: a high shelf of ``gain`` dB."""
    return _shelf(waveform, sample_rate, gain, central_freq, Q, 1)


def equalizer_biquad(waveform: Tensor, sample_rate: int, center_freq: Number, gain: Number,
                     Q: Number = 0.707) -> Tensor:
    """Peaking equaliser of ``gain`` dB at ``center_freq``."""
    w0, alpha = _w0_alpha(sample_rate, center_freq, Q, waveform)
    A = torch.exp(_as_tensor(gain, waveform) / 40.0 * math.log(10))
    cosine = torch.cos(w0)
    return biquad(waveform, 1 + alpha * A, -2 * cosine, 1 - alpha * A, 1 + alpha / A, -2 * cosine, 1 - alpha / A)


def highpass_biquad(waveform: Tensor, sample_rate: int, cutoff_freq: Number, Q: Number = 0.707) -> Tensor:
    """Two-pole high-pass.

    Not ``filterbank.design.highpass_biquad``, which returns the coefficients ``(b, a)``
    of filterbank's own (RBJ cookbook) design: this filters ``waveform`` with
    torchaudio's signature and coefficients, and clamps to [-1, 1].
    """
    w0, alpha = _w0_alpha(sample_rate, cutoff_freq, Q, waveform)
    cosine = torch.cos(w0)
    return biquad(waveform, (1 + cosine) / 2, -1 - cosine, (1 + cosine) / 2, 1 + alpha, -2 * cosine, 1 - alpha)


def lowpass_biquad(waveform: Tensor, sample_rate: int, cutoff_freq: Number, Q: Number = 0.707) -> Tensor:
    """Two-pole low-pass.

    Not ``filterbank.design.lowpass_biquad``, which returns the coefficients ``(b, a)``
    of filterbank's own (RBJ cookbook) design: this filters ``waveform`` with
    torchaudio's signature and coefficients, and clamps to [-1, 1].
    """
    w0, alpha = _w0_alpha(sample_rate, cutoff_freq, Q, waveform)
    cosine = torch.cos(w0)
    return biquad(waveform, (1 - cosine) / 2, 1 - cosine, (1 - cosine) / 2, 1 + alpha, -2 * cosine, 1 - alpha)


# ISO 908 CD de-emphasis shelf (SoX): centre Hz, width slope, gain dB per rate.
_DEEMPHASIS = {44100: (5283, 0.4845, -9.477), 48000: (5356, 0.479, -9.62)}
# RIAA playback: zeros and poles per rate (SoX's table).
_RIAA = {
    44100: ((-0.2014898, 0.9233820), (0.7083149, 0.9924091)),
    48000: ((-0.1766069, 0.9321590), (0.7396325, 0.9931330)),
    88200: ((-0.1168735, 0.9648312), (0.8590646, 0.9964002)),
    96000: ((-0.1141486, 0.9676817), (0.8699137, 0.9966946)),
}


def deemph_biquad(waveform: Tensor, sample_rate: int) -> Tensor:
    """ISO 908 CD de-emphasis (44.1 or 48 kHz only, as torchaudio)."""
    if sample_rate not in _DEEMPHASIS:
        raise ValueError("Sample rate must be 44100 (audio-CD) or 48000 (DAT)")
    centre, slope, gain = _DEEMPHASIS[sample_rate]
    w0 = 2 * math.pi * centre / sample_rate
    A = math.exp(gain / 40.0 * math.log(10))
    alpha = math.sin(w0) / 2 * math.sqrt((A + 1 / A) * (1 / slope - 1) + 2)
    root, shift, spread = 2 * math.sqrt(A) * alpha, (A - 1) * math.cos(w0), (A + 1) * math.cos(w0)
    return biquad(waveform, A * ((A + 1) + shift + root), -2 * A * ((A - 1) + spread), A * ((A + 1) + shift - root),
                  (A + 1) - shift + root, 2 * ((A - 1) - spread), (A + 1) - shift - root)


def riaa_biquad(waveform: Tensor, sample_rate: int) -> Tensor:
    """RIAA vinyl playback equalisation, 0 dB at 1 kHz (44.1, 48, 88.2 or 96 kHz)."""
    if sample_rate not in _RIAA:
        raise ValueError("Sample rate must be 44.1k, 48k, 88.2k, or 96k")
    (z0, z1), (p0, p1) = _RIAA[sample_rate]
    b = [1.0, -(z0 + z1), z0 * z1]
    a = [1.0, -(p0 + p1), p0 * p1]
    # Gain that makes |H| = 1 at 1 kHz.
    w = 2 * math.pi * 1000 / sample_rate
    numerator = complex(sum(c * math.cos(-k * w) for k, c in enumerate(b)), sum(c * math.sin(-k * w)
                                                                               for k, c in enumerate(b)))
    denominator = complex(sum(c * math.cos(-k * w) for k, c in enumerate(a)), sum(c * math.sin(-k * w)
                                                                                 for k, c in enumerate(a)))
    gain = 1 / abs(numerator / denominator)
    return biquad(waveform, gain * b[0], gain * b[1], gain * b[2], a[0], a[1], a[2])
