"""filterbank: fast, exact, differentiable IIR filters and filterbanks for PyTorch.

Contents, from the top:

* ``filterbank.functional`` - :func:`lfilter`, :func:`sosfilt`, zero-phase
  :func:`filtfilt`/:func:`sosfiltfilt` and the state helpers :func:`lfilter_zi`,
  :func:`sosfilt_zi`, :func:`lfiltic` (re-exported here).
* ``filterbank.coupled`` - recurrences whose channels are coupled through a
  banded or sparse (CSR) state matrix: :func:`banded_recurrence`,
  :func:`sparse_recurrence` (re-exported here).
* ``filterbank.design`` - differentiable filter design: frequency scales, RBJ
  biquads, Butterworth/Chebyshev sections, gammatone, ``freqz``/``sosfreqz``.
* ``filterbank.nn`` - learnable filterbanks, the raw-waveform ``FrontEnd``
  and the recurrent layers ``BandedRNN``/``SparseRNN``.
* ``filterbank.features`` - frame energies (of band signals, or of a bank's
  bands in one pass) and compression (log, power, PCEN).
* ``filterbank.plotting`` - ``plot_responses`` (needs matplotlib).
* ``filterbank.streaming`` - the state protocol (``State``); ``filterbank.tbptt``
  - truncated backpropagation over long signals.
* ``filterbank.resample`` - rational resampling (polyphase windowed sinc).
* ``filterbank.compat.torchaudio`` - drop-ins for ``torchaudio.functional``'s filters.
* ``filterbank.cli`` - the ``filterbank`` command (extract, filter, response, bench, compile).
* ``filterbank.precompile`` - the CPU kernels compiled into numba's cache ahead of
  use (a container image's build, a CI cache), each family in its own process.
* :func:`empty_cache` - return the CPU output cache's free buffers to the system.

Internals: ``filterbank._ops`` and ``filterbank._coupled_ops`` (the
``torch.library`` custom ops every filter and recurrence runs on),
``filterbank.kernels`` (their kernels: ``reference``, ``cpu``, ``cuda``),
``filterbank._checks`` (every argument check). docs/design.md in the
repository describes the layers and the maths.
"""

from . import coupled, design, features, nn, streaming, tbptt  # noqa: F401 (subpackages, as attributes)
from .coupled import banded_recurrence, sparse_recurrence
from .functional import filtfilt, lfilter, lfilter_zi, lfiltic, sosfilt, sosfilt_zi, sosfiltfilt
from .kernels._memory import empty_cache

__version__ = "0.1.0"

__all__ = [
    "lfilter", "sosfilt", "filtfilt", "sosfiltfilt", "lfilter_zi", "sosfilt_zi", "lfiltic", "banded_recurrence",
    "sparse_recurrence", "empty_cache", "__version__",
]
