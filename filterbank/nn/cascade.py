"""A coupled cascade filterbank: resonators in series, all stages run at once as one banded recurrence.

* :class:`CascadeFilterbank`: ``n_filters`` two-pole resonator stages, each
  filtering the previous stage's output delayed by one sample (pole-zero
  filter cascades, cochlear models), with learnable stage frequencies and
  dampings. The cascade is ``filterbank.design.cascade_recurrence`` (a
  tridiagonal linear recurrence over the stages' states), run by
  ``filterbank.coupled.banded_recurrence``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

import torch
from torch import Tensor, nn

from .. import _checks, design
from ..coupled import banded_recurrence
from ..design.cascade import CASCADE_BANDWIDTHS
from ..streaming import State
from ._parametrise import (
    band_edges, bounded_from_raw, frequency_from_raw, learned, parameter_or_buffer, per_filter, raw_from_bounded,
    raw_from_frequency,
)

__all__ = ["CascadeFilterbank"]

# Damping bounds: at 0.01 a stage's Q is about 50 (the biquads' q_max), at 2 its poles are nearly at the origin.
DAMPING_MIN = 0.01
DAMPING_MAX = 2.0


class CascadeFilterbank(nn.Module):
    """A cascade of two-pole resonators with learnable frequencies and dampings; band k is stage k's output.

    Stage 0 filters the input and has the highest frequency; stage ``k``
    filters stage ``k - 1``'s output delayed by one sample, so frequencies
    fall along the cascade and band ``k`` has passed through every stage
    before it (``filterbank.design.cascade`` gives the equations)::

        w_k[t] = 2 r_k cos(theta_k) w_k[t-1] - r_k^2 w_k[t-2] + g_k v_k[t],   y_k[t] = w_k[t-1]
        v_0[t] = x[t],   v_k[t] = y_{k-1}[t-1],   band_k[t] = c_k y_k[t]

    with ``theta_k = 2 pi f_k / sample_rate`` and ``r_k = exp(-2 pi zeta_k f_k /
    sample_rate)``. The stacked states ``(w_k[t], w_k[t-1])`` of all stages
    (``2 n_filters`` of them) follow one tridiagonal linear recurrence, run for
    all stages at once by ``filterbank.coupled.banded_recurrence``.

    * **Parametrisation.** ``f_k = nyquist sigmoid(raw)`` (kept inside (0,
      nyquist), as in the other banks) and ``zeta_k = 0.01 + (2 - 0.01)
      sigmoid(raw)``, so every pole radius lies in (0, 1) and every stage is
      stable whatever the optimiser does.
    * **Initialisation.** Stage frequencies equally spaced on ``scale`` from
      ``f_max`` (stage 0) down to ``f_min`` (the last stage); every damping
      ``damping`` (default 0.5: each stage's Q is about 1, its selectivity comes
      from the stages before it, as in all-pole cochlear cascades).
    * **Gains.** Each stage has unit gain at DC (``g_k = |1 - r_k
      e^(j theta_k)|^2``), so what passes down the cascade below a stage's
      resonance is never attenuated and the late, low bands keep their float32
      precision; each band is then scaled (``c_k``) to gain exactly 1 at its own
      stage frequency ``f_k``, so the bands have comparable levels. Stages
      closely spaced (many per ERB, small damping) build gain just above
      ``f_k``: a band then peaks above its stage frequency, higher than 1
      (raise ``damping`` to keep the peaks near 1).

    Args:
        n_filters: number of stages (bands), >= 1.
        sample_rate: Hz.
        scale: how the initial frequencies are placed: one of ``filterbank.design.SCALES``.
        f_min, f_max: Hz (default 30 Hz and 0.95 x Nyquist): the last and the first stage's frequency.
        damping: initial damping, a number or (n_filters,), in (0.01, 2).
        learn: which of ``"frequency"`` and ``"damping"`` are learnt (default both; the rest are buffers).
        dtype: of the parameters.

    Shapes: x (time), (batch, time) or (batch, channels, time) -> (n_filters,
    time), (batch, n_filters, time), (batch, channels, n_filters, time).

    Example:
        >>> bank = CascadeFilterbank(40, 16000)
        >>> bank(torch.randn(2, 16000)).shape
        torch.Size([2, 40, 16000])
    """

    LEARNABLE = ("frequency", "damping")

    def __init__(self, n_filters: int, sample_rate: float, scale: str = "erb", f_min: Optional[float] = None,
                 f_max: Optional[float] = None, damping: Union[float, Tensor] = 0.5,
                 learn: Iterable[str] = ("frequency", "damping"), dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_filters = _checks.integer("n_filters", n_filters, 1)
        self.sample_rate = _checks.sample_rate(sample_rate)
        _checks.floating_dtype("dtype", dtype)
        learn = learned(type(self).__name__, learn, self.LEARNABLE)
        f_min, f_max = band_edges(self.sample_rate, f_min, f_max)
        # Stage 0 reads the input first: the highest frequency.
        centres = design.centre_frequencies(n_filters, f_min, f_max, scale=scale, dtype=torch.float64).flip(0)
        dampings = per_filter("damping", damping, n_filters)
        _checks.inside("damping", dampings, DAMPING_MIN, DAMPING_MAX, "", "the bounds of its parametrisation")
        parameter_or_buffer(self, "raw_frequency", raw_from_frequency(centres, self.sample_rate / 2).to(dtype),
                            "frequency" in learn)
        parameter_or_buffer(self, "raw_damping", raw_from_bounded(dampings, DAMPING_MIN, DAMPING_MAX).to(dtype),
                            "damping" in learn)

    @property
    def centre_hz(self) -> Tensor:
        """(n_filters,) each stage's pole frequency in Hz, where its band has unit gain."""
        return frequency_from_raw(self.raw_frequency, self.sample_rate / 2)

    @property
    def damping(self) -> Tensor:
        """(n_filters,) each stage's damping in [0.01, 2]: pole radius ``exp(-2 pi damping f / sample_rate)``."""
        return bounded_from_raw(self.raw_damping, DAMPING_MIN, DAMPING_MAX)

    def recurrence(self) -> design.CascadeRecurrence:
        """The cascade as a recurrence: band (2 n_filters, 3), input (2 n_filters,), readout (n_filters,)."""
        return design.cascade_recurrence(self.centre_hz, self.damping, self.sample_rate)

    def forward(self, x: Tensor, h0: Optional[Tensor] = None):
        """Filter ``x`` by the cascade; band ``k`` is stage ``k``'s output.

        Args:
            x: (time), (batch, time) or (batch, channels, time), the module's dtype.
            h0: (..., 2 n_filters) the stages' states to start from, ``(w_k[t-1],
                w_k[t-2])`` of stage k at entries ``2k, 2k + 1``; None means rest.

        Returns:
            y: (..., n_filters, time), or ``(y, h_last)`` when ``h0`` is given,
            ``h_last`` (..., 2 n_filters) the states after the last sample.
        """
        _checks.module_input(x)
        recurrence = self.recurrence()
        _checks.tensor("x", x, recurrence.band, "the filterbank's coefficients")
        # Only the first stage reads x: u[t] = b x[t], channels last (..., time, 2 n_filters).
        u = x.unsqueeze(-1) * recurrence.input
        result = banded_recurrence(u, recurrence.band, CASCADE_BANDWIDTHS, h0=h0, nonlinearity="identity",
                                   time_axis=-2)
        h = result if h0 is None else result[0]
        y = (h[..., 1::2] * recurrence.readout).transpose(-1, -2).contiguous()
        return y if h0 is None else (y, result[1])

    def stream(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """Filter the next chunk of a signal, continuing from ``state``.

        Args:
            x: (time), (batch, time) or (batch, channels, time): the next samples.
            state: what the previous call returned; None means rest.

        Returns:
            ``(y, state)``: y (..., n_filters, time), and the state after the
            last sample: ``State(h=(..., 2 n_filters))``.
        """
        _checks.module_input(x)
        dtype = self.raw_frequency.dtype
        shape = x.shape[:-1] + (2 * self.n_filters,)
        if state is None:
            h0 = torch.zeros(shape, dtype=dtype, device=x.device)
        else:
            owner = type(self).__name__
            h0 = _checks.state_entry(owner, "h", _checks.state(owner, state, ("h",))["h"], shape, dtype, x.device)
        y, h_last = self(x, h0)
        return y, State(h=h_last)

    def responses(self, n_frequencies: int = 512) -> tuple[Tensor, Tensor]:
        """Magnitude responses of the bands on scipy's grid ``[0, nyquist)``.

        Returns:
            ``(frequencies, magnitude)``: (n_frequencies,) in Hz and (n_filters, n_frequencies), linear.
        """
        _checks.integer("n_frequencies", n_frequencies, 1)
        centres = self.centre_hz
        frequencies = torch.arange(n_frequencies, dtype=centres.dtype, device=centres.device)
        frequencies = frequencies * (self.sample_rate / (2 * n_frequencies))
        response = design.cascade_response(centres, self.damping, self.sample_rate, frequencies)
        return frequencies, response.abs()

    def extra_repr(self) -> str:
        return f"n_filters={self.n_filters}, sample_rate={self.sample_rate:g}"
