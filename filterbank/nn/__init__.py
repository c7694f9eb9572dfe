"""Learnable filterbanks and a raw-waveform front-end, as ``torch.nn`` modules.

Modules are shells: each holds parameters, maps them to coefficients
through a parametrisation that keeps every filter stable and its frequency
inside (0, Nyquist) whatever the optimiser does, and calls
``filterbank.design``, ``filterbank.functional`` and ``filterbank.features``.
Each takes ``learn``, the names of the parameters it learns (the others are
buffers: they move with the module but are not trained).

* ``filterbanks``: :class:`BiquadFilterbank` (RBJ biquads with learnable
  centre frequency, Q and gain, optionally cascaded), :class:`GammatoneFilterbank`
  (4th-order gammatones with learnable centre frequencies), :class:`IIRFilterbank`
  (even-order IIR filters learnt through their poles and zeros), and their
  base :class:`Filterbank`.
* ``cascade``: :class:`CascadeFilterbank`, resonators in series (each stage
  fed by the previous one's output delayed by a sample) with learnable
  frequencies and dampings, all stages run at once as one banded recurrence.
* ``rnn``: :class:`BandedRNN` and :class:`SparseRNN`, Elman RNNs with
  ``torch.nn.RNN``'s interface whose hidden-to-hidden matrix is banded or
  sparse, on the kernels of ``filterbank.coupled``.
* ``frontend``: :class:`FrontEnd`: filterbank -> energy -> smoothing low-pass
  -> decimation by ``hop_length`` -> compression (log, power law or learnable
  PCEN), shaped like ``torchaudio.transforms.MelSpectrogram``'s output.

Every module streams (``filterbank.streaming``): ``y, state = module.stream(x,
state)`` continues exactly where the last call stopped.

Input shapes: ``(time)``, ``(batch, time)`` or ``(batch, channels, time)``.
A filterbank's output puts a filter axis before time: ``(n_filters, time)``,
``(batch, n_filters, time)``, ``(batch, channels, n_filters, time)``.
"""

from .cascade import CascadeFilterbank
from .filterbanks import BiquadFilterbank, Filterbank, GammatoneFilterbank, IIRFilterbank
from .frontend import FrontEnd
from .rnn import BandedRNN, SparseRNN

__all__ = ["Filterbank", "BiquadFilterbank", "GammatoneFilterbank", "IIRFilterbank", "CascadeFilterbank", "FrontEnd",
           "BandedRNN", "SparseRNN"]
