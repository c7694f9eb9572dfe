"""filterbank: fast, exact, differentiable IIR filters and filterbanks for PyTorch.

Contents, from the top:

* ``filterbank.functional`` - :func:`lfilter`, :func:`sosfilt`, zero-phase
  :func:`filtfilt`/:func:`sosfiltfilt` and the state helpers :func:`lfilter_zi`,
  :func:`sosfilt_zi`, :func:`lfiltic` (re-exported here).
* ``filterbank.design`` - differentiable filter design: RBJ biquads, Butterworth/
  Chebyshev sections, gammatone, frequency scales, ``freqz``/``sosfreqz``.
* ``filterbank.nn`` - learnable filterbanks and the raw-waveform ``FrontEnd``.
* ``filterbank.features`` - frame energies and compression (log, power, PCEN).
* ``filterbank.plotting`` - ``plot_responses`` (needs matplotlib).
* ``filterbank.streaming`` - the state protocol (``State``); ``filterbank.tbptt``
  - truncated backpropagation over long signals.
* ``filterbank.resample`` - rational resampling (polyphase windowed sinc).
* ``filterbank.compat.torchaudio`` - drop-ins for ``torchaudio.functional``'s filters.
* ``filterbank.cli`` - the ``filterbank`` command (extract, filter, response, bench).
* ``filterbank._ops`` - the ``torch.library`` custom ops every filter runs on.
* ``filterbank.kernels`` - the kernels behind the ops: ``reference`` (pure
  torch, the ground truth), ``cpu`` (numba), ``cuda`` (``csrc/``), ``frames``
  (frame energies) and ``fused`` (filtering and frame energies in one pass).
"""

from . import design, features, nn, streaming, tbptt
from .functional import filtfilt, lfilter, lfilter_zi, lfiltic, sosfilt, sosfilt_zi, sosfiltfilt

__version__ = "0.1.0"

__all__ = [
    "lfilter", "sosfilt", "filtfilt", "sosfiltfilt", "lfilter_zi", "sosfilt_zi", "lfiltic", "__version__",
]
