"""Drop-in replacements for other libraries' filtering APIs.

* ``filterbank.compat.torchaudio``: ``torchaudio.functional``'s ``lfilter``,
  ``filtfilt``, ``biquad`` and ``*_biquad`` helpers.

scipy's ``lfilter``, ``sosfilt``, ``filtfilt``, ``sosfiltfilt``, ``lfilter_zi``,
``sosfilt_zi`` and ``lfiltic`` are in the main API (``filterbank.functional``).
"""
