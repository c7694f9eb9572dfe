"""Differentiable filter design: coefficient formulas as plain tensor functions.

Every function takes tensors or Python numbers that broadcast against each
other, returns float tensors in the dtype of its tensor arguments (float32
when all are numbers) and is differentiable in its continuous parameters.
Biquads come out as ``(b, a)``, each ``(..., 3)``; cascades as ``sos`` of shape
``(..., n_sections, 6)``, rows ``[b0, b1, b2, 1, a1, a2]`` (what
:func:`filterbank.sosfilt` takes).

Contents, a file per topic:

* ``scales``: :func:`hz_to_mel`/:func:`mel_to_hz` (Slaney or HTK),
  :func:`hz_to_erb_rate`/:func:`erb_rate_to_hz`, :func:`hz_to_bark`/
  :func:`bark_to_hz`, :func:`erb_bandwidth`, and :func:`centre_frequencies`
  (points equally spaced on a scale; :data:`SCALES` names the scales).
* ``biquads``: the RBJ audio-EQ cookbook: :func:`lowpass_biquad`,
  :func:`highpass_biquad`, :func:`bandpass_biquad` (0 dB peak),
  :func:`bandpass_skirt_biquad` (peak gain Q), :func:`notch_biquad`,
  :func:`allpass_biquad`, :func:`peaking_biquad`, :func:`lowshelf_biquad`,
  :func:`highshelf_biquad` (:data:`BIQUADS` lists them by kind), and
  :func:`q_from_bandwidth`.
* ``classic``: Butterworth and Chebyshev I/II as second-order sections,
  matching scipy's ``butter``/``cheby1``/``cheby2`` with ``output="sos"``:
  :func:`butter_sos`, :func:`cheby1_sos`, :func:`cheby2_sos` (:data:`CLASSIC`).
* ``gammatone``: :func:`gammatone_sos` (scipy's 4th-order IIR gammatone as
  four biquads).
* ``cascade``: :func:`cascade_recurrence` (a cascade of two-pole resonators,
  each fed by the previous one's output delayed by a sample, as one
  tridiagonal linear recurrence for ``filterbank.coupled``; bandwidths
  :data:`CASCADE_BANDWIDTHS`) and :func:`cascade_response` (its bands'
  frequency responses).
* ``responses``: :func:`freqz` and :func:`sosfreqz`, on scipy's grid or at
  given frequencies.
"""

from .biquads import (
    BIQUADS, BiquadDesign, allpass_biquad, bandpass_biquad, bandpass_skirt_biquad, highpass_biquad, highshelf_biquad,
    lowpass_biquad, lowshelf_biquad, notch_biquad, peaking_biquad, q_from_bandwidth,
)
from .cascade import CASCADE_BANDWIDTHS, CascadeRecurrence, cascade_recurrence, cascade_response
from .classic import BTYPES, CLASSIC, ClassicDesign, butter_sos, cheby1_sos, cheby2_sos
from .gammatone import gammatone_sos
from .responses import freqz, sosfreqz
from .scales import (
    SCALES, bark_to_hz, centre_frequencies, erb_bandwidth, erb_rate_to_hz, hz_to_bark, hz_to_erb_rate, hz_to_mel,
    mel_to_hz,
)

__all__ = [
    "lowpass_biquad", "highpass_biquad", "bandpass_biquad", "bandpass_skirt_biquad", "notch_biquad",
    "allpass_biquad", "peaking_biquad", "lowshelf_biquad", "highshelf_biquad", "q_from_bandwidth",
    "butter_sos", "cheby1_sos", "cheby2_sos",
    "gammatone_sos", "erb_bandwidth",
    "cascade_recurrence", "cascade_response", "CascadeRecurrence", "CASCADE_BANDWIDTHS",
    "hz_to_mel", "mel_to_hz", "hz_to_erb_rate", "erb_rate_to_hz", "hz_to_bark", "bark_to_hz",
    "centre_frequencies",
    "freqz", "sosfreqz",
    "SCALES", "BIQUADS", "BiquadDesign", "CLASSIC", "ClassicDesign", "BTYPES",
]
