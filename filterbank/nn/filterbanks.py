"""Learnable filterbanks: modules that hold parameters, map them to stable cascades and filter.

* :class:`BiquadFilterbank`: RBJ biquads (band-pass, low/high-pass, notch,
  peaking, shelves ...) with learnable centre frequency, Q and gain, optionally
  cascaded ``n_sections`` times per filter (order ``2 n_sections``).
* :class:`GammatoneFilterbank`: 4th-order gammatone filters (cascades of four
  biquads) with learnable centre frequencies.
* :class:`IIRFilterbank`: general IIR filters of even order, parametrised by
  their poles (kept inside the unit circle) and zeros.

Every bank is a :class:`Filterbank`: ``sos()`` gives its cascades
``(n_filters, n_sections, 6)``, ``forward`` filters with
``filterbank.sosfilt``, ``stream`` continues from a state, and ``learn``
names the parameters that are learnt (the others are buffers).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import torch
from torch import Tensor, nn

from .. import _checks, design
from ..functional import sosfilt
from ..streaming import State
from ._parametrise import (
    Q_MIN, band_edges, bounded_from_raw, frequency_from_raw, learned, parameter_or_buffer, per_filter, raw_from_bounded,
    raw_from_frequency, spacing_q,
)

__all__ = ["Filterbank", "BiquadFilterbank", "GammatoneFilterbank", "IIRFilterbank"]


class Filterbank(nn.Module):
    """What every bank shares: ``sos()`` -> filtering, streaming, responses.

    A subclass sets ``sample_rate`` and ``n_filters`` and defines
    ``_compute_sos()``, its parameters mapped to cascades.
    """

    sample_rate: float
    n_filters: int
    LEARNABLE: tuple[str, ...] = ()

    def _compute_sos(self) -> Tensor:  # pragma: no cover - each subclass defines it
        raise NotImplementedError

    def sos(self) -> Tensor:
        """(n_filters, n_sections, 6): the bank's cascades, rows ``[b0, b1, b2, 1, a1, a2]``.

        Without autograd (and outside ``torch.compile``) the cascades are
        designed once and reused while no parameter or buffer changes: in
        10 ms streaming blocks, redesigning the same filters would cost more
        than filtering. In-place updates (optimisers, ``load_state_dict``)
        bump a tensor's version, which invalidates them.
        """
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self._compute_sos()
        # A bank without submodules (all of filterbank's) lists its own
        # tensors; parameters() walks modules, several times slower per call.
        tensors = (*self._parameters.values(), *self._buffers.values()) if not self._modules else \
            (*self.parameters(), *self.buffers())
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors if t is not None)
        cached = self.__dict__.get("_sos_cache")
        if cached is None or cached[0] != key:
            cached = (key, self._compute_sos())
            self.__dict__["_sos_cache"] = cached
        return cached[1]

    def forward(self, x: Tensor, zi: Optional[Tensor] = None):
        """Filter ``x`` by every filter of the bank.

        Args:
            x: (time), (batch, time) or (batch, channels, time), the module's dtype.
            zi: (..., n_filters, n_sections, 2) state to start from (see
                ``filterbank.sosfilt``); None means rest.

        Returns:
            y: (..., n_filters, time), or ``(y, zf)`` when ``zi`` is given.
        """
        _checks.module_input(x)
        if zi is None:
            return sosfilt(self.sos(), x.unsqueeze(-2))
        return sosfilt(self.sos(), x.unsqueeze(-2), zi=zi)

    def stream(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """Filter the next chunk of a signal, continuing from ``state``.

        Args:
            x: (time), (batch, time) or (batch, channels, time): the next samples.
            state: what the previous call returned; None means rest.

        Returns:
            ``(y, state)``: y (..., n_filters, time), and the state after the
            last sample: ``State(zi=(..., n_filters, n_sections, 2))``.
        """
        _checks.module_input(x)
        sos = self.sos()
        y, zf = sosfilt(sos, x.unsqueeze(-2), zi=self.state_zi(state, x, sos))
        return y, State(zi=zf)

    def state_zi(self, state: Optional[State], x: Tensor, sos: Tensor) -> Tensor:
        """The filters' state to continue from, (..., n_filters, n_sections, 2): zeros for None, else
        ``state['zi']`` checked against the next samples ``x`` and the bank's cascades ``sos``."""
        shape = x.shape[:-1] + sos.shape[:-1] + (2,)
        if state is None:
            return torch.zeros(shape, dtype=sos.dtype, device=x.device)
        owner = type(self).__name__
        return _checks.state_entry(owner, "zi", _checks.state(owner, state, ("zi",))["zi"], shape, sos.dtype,
                                   x.device)

    def responses(self, n_frequencies: int = 512) -> tuple[Tensor, Tensor]:
        """Magnitude responses of the bank.

        Returns:
            ``(frequencies, magnitude)``: (n_frequencies,) in Hz and
            (n_filters, n_frequencies), linear.
        """
        frequencies, response = design.sosfreqz(self.sos(), n_frequencies, sample_rate=self.sample_rate)
        return frequencies, response.abs()

    def extra_repr(self) -> str:
        return f"n_filters={self.n_filters}, sample_rate={self.sample_rate:g}"


def _initial_centres(n_filters, sample_rate, scale, f_min, f_max) -> Tensor:
    """(n_filters,) float64 Hz placed on ``scale`` between the checked band edges."""
    f_min, f_max = band_edges(sample_rate, f_min, f_max)
    return design.centre_frequencies(n_filters, f_min, f_max, scale=scale, dtype=torch.float64)


class BiquadFilterbank(Filterbank):
    """A bank of RBJ-cookbook biquads with learnable frequency, Q and gain.

    Every filter is a biquad of ``kind`` (the cascade of ``n_sections`` copies
    of it: order ``2 n_sections``). Parametrisations keep the filters stable
    for any parameter values: the centre frequency is
    ``nyquist * sigmoid(raw)`` (kept inside (0, nyquist)), the gain is
    ``max_gain_db * tanh(raw / max_gain_db)`` (RBJ biquads are stable for
    every frequency in (0, nyquist) and Q > 0), and Q is
    ``0.05 + (q_max - 0.05) sigmoid(raw)``.

    Args:
        n_filters: number of filters.
        sample_rate: Hz.
        kind: a kind of ``filterbank.design.BIQUADS``: ``bandpass`` (0 dB
            peak), ``bandpass_skirt``, ``lowpass``, ``highpass``, ``notch``,
            ``allpass``, ``peaking``, ``lowshelf``, ``highshelf``.
        scale: how the initial frequencies are placed between ``f_min`` and
            ``f_max``: one of ``filterbank.design.SCALES``.
        f_min, f_max: Hz (default 30 Hz and 0.95 x Nyquist).
        q: initial Q, a number or (n_filters,); default: from the spacing of
            the centre frequencies, so that neighbours cross near -3 dB.
        gain_db: initial gain for ``peaking`` and the shelves.
        n_sections: copies of each biquad in cascade.
        learn: which of ``"frequency"``, ``"q"``, ``"gain"`` are learnt
            (the rest are buffers).
        max_gain_db: bound of the gain's parametrisation.
        q_max: bound of Q's parametrisation.
        dtype: of the parameters.

    Shapes: see :meth:`forward`; ``sos()`` is (n_filters, n_sections, 6).

    Example:
        >>> bank = BiquadFilterbank(40, 16000)
        >>> bank(torch.randn(2, 16000)).shape
        torch.Size([2, 40, 16000])
    """

    LEARNABLE = ("frequency", "q", "gain")

    def __init__(
        self, n_filters: int, sample_rate: float, kind: str = "bandpass", scale: str = "mel",
        f_min: Optional[float] = None, f_max: Optional[float] = None, q: Union[float, Tensor, None] = None,
        gain_db: Union[float, Tensor] = 0.0, n_sections: int = 1,
        learn: Iterable[str] = ("frequency", "q"), max_gain_db: float = 48.0, q_max: float = 50.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.n_filters = _checks.integer("n_filters", n_filters, 1)
        self.sample_rate = _checks.sample_rate(sample_rate)
        self.n_sections = _checks.integer("n_sections", n_sections, 1)
        self.kind = _checks.choice("kind", kind, tuple(design.BIQUADS))
        learn = learned(type(self).__name__, learn, self.LEARNABLE)
        self.has_gain = design.BIQUADS[kind].takes_gain
        if "gain" in learn and not self.has_gain:
            raise ValueError(f"kind {kind!r} has no gain to learn (peaking and the shelves do)")
        self.max_gain_db = _checks.number("max_gain_db", max_gain_db, 0.0)
        self.q_max = _checks.number("q_max", q_max, Q_MIN)
        nyquist = self.sample_rate / 2
        centres = _initial_centres(n_filters, self.sample_rate, scale, f_min, f_max)
        if q is None:
            q_values = spacing_q(centres).clamp_max(0.9 * self.q_max)
        else:
            q_values = per_filter("q", q, n_filters)
            if not bool(((q_values > Q_MIN) & (q_values < self.q_max)).all()):
                raise ValueError(f"q must lie in ({Q_MIN}, {self.q_max:g}) (q_max); got values in "
                                 f"[{float(q_values.min()):g}, {float(q_values.max()):g}]")
        gain = per_filter("gain_db", gain_db, n_filters)
        if not bool((gain.abs() < self.max_gain_db).all()):
            raise ValueError(f"gain_db must lie in (-{self.max_gain_db:g}, {self.max_gain_db:g}) dB (max_gain_db); "
                             f"got a largest magnitude of {float(gain.abs().max()):g}")
        parameter_or_buffer(self, "raw_frequency", raw_from_frequency(centres, nyquist).to(dtype), "frequency" in learn)
        parameter_or_buffer(self, "raw_q", raw_from_bounded(q_values, Q_MIN, self.q_max).to(dtype), "q" in learn)
        parameter_or_buffer(self, "raw_gain", (self.max_gain_db * torch.atanh(gain / self.max_gain_db)).to(dtype),
                            "gain" in learn)

    @property
    def centre_hz(self) -> Tensor:
        """(n_filters,) centre (or cut-off) frequencies in Hz."""
        return frequency_from_raw(self.raw_frequency, self.sample_rate / 2)

    @property
    def q(self) -> Tensor:
        """(n_filters,) quality factors."""
        return bounded_from_raw(self.raw_q, Q_MIN, self.q_max)

    @property
    def gain_db(self) -> Tensor:
        """(n_filters,) gains in dB (used by ``peaking`` and the shelves)."""
        return self.max_gain_db * torch.tanh(self.raw_gain / self.max_gain_db)

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """``(b, a)``: (n_filters, 3) each, ``a[:, 0] == 1``."""
        function, _, takes_gain = design.BIQUADS[self.kind]
        if takes_gain:
            return function(self.centre_hz, self.q, self.gain_db, self.sample_rate)
        return function(self.centre_hz, self.q, self.sample_rate)

    def _compute_sos(self) -> Tensor:
        b, a = self.coefficients()
        return torch.cat([b, a], dim=-1).unsqueeze(-2).expand(-1, self.n_sections, -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kind={self.kind!r}, n_sections={self.n_sections}"


class GammatoneFilterbank(Filterbank):
    """4th-order gammatone filters (four biquads each) with learnable centre frequencies.

    Coefficients from ``design.gammatone_sos`` (the response of
    ``scipy.signal.gammatone(ftype="iir")``), bandwidth by the ERB of each
    centre frequency; the centre frequency is parametrised as in
    :class:`BiquadFilterbank`.

    Args:
        n_filters, sample_rate, scale, f_min, f_max: as for :class:`BiquadFilterbank`
            (default scale ``erb``).
        learn: ``("frequency",)`` (the default) or ``()``.
        learn_frequency: deprecated; ``learn_frequency=False`` is ``learn=()``.
        dtype: of the parameters.

    ``sos()`` is (n_filters, 4, 6).
    """

    LEARNABLE = ("frequency",)

    def __init__(self, n_filters: int, sample_rate: float, scale: str = "erb", f_min: Optional[float] = None,
                 f_max: Optional[float] = None, learn: Iterable[str] = ("frequency",),
                 learn_frequency: Optional[bool] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_filters = _checks.integer("n_filters", n_filters, 1)
        self.sample_rate = _checks.sample_rate(sample_rate)
        learn = learned(type(self).__name__, learn, self.LEARNABLE, "learn_frequency", learn_frequency,
                        ("frequency",))
        centres = _initial_centres(n_filters, self.sample_rate, scale, f_min, f_max)
        parameter_or_buffer(self, "raw_frequency", raw_from_frequency(centres, self.sample_rate / 2).to(dtype),
                            "frequency" in learn)

    @property
    def centre_hz(self) -> Tensor:
        """(n_filters,) centre frequencies in Hz."""
        return frequency_from_raw(self.raw_frequency, self.sample_rate / 2)

    def _compute_sos(self) -> Tensor:
        return design.gammatone_sos(self.centre_hz, self.sample_rate)


class IIRFilterbank(Filterbank):
    """General IIR filters of order ``2 n_sections``, learnable through their poles, zeros and gain.

    Section k of filter n is ``c_k (1 + beta_1 z^-1 + beta_2 z^-2) / (1 - 2 r cos(theta) z^-1 + r^2 z^-2)``:

    * poles ``r e^{+-j theta}`` with ``r = max_radius * sigmoid(raw)`` (inside
      the unit circle, so every filter is stable) and ``theta`` in (0, pi) as
      the frequencies above;
    * zeros where they like: ``beta = 10 tanh(raw / 10)``;
    * ``c_k`` scales the section so that its all-pole part peaks at exactly 1
      and its numerator has unit norm, ``c_k = min_w |A_k(e^jw)| /
      sqrt(1 + beta_1^2 + beta_2^2)``: a section can never gain more than
      ``sqrt(3)``, whatever its poles and zeros;
    * the filter's gain, on the first section, is ``gain_db = max_gain_db
      tanh(raw / max_gain_db)`` dB.

    So no parameter values, however an optimiser moves them, make a filter
    unstable or its output overflow. Initialised as resonators at centre
    frequencies placed on ``scale``, with bandwidths from their spacing, zeros
    at z = +-1 and unit gain at the centre.

    Args:
        n_filters, sample_rate, scale, f_min, f_max: as for :class:`BiquadFilterbank`.
        n_sections: second-order sections per filter.
        max_radius: the largest pole radius (< 1).
        max_gain_db: bound of the gain's parametrisation (the initial gains must lie within it).
        learn: which of ``"poles"``, ``"zeros"`` and ``"gain"`` are learnt
            (default all).
        dtype: of the parameters.

    ``sos()`` is (n_filters, n_sections, 6).
    """

    LEARNABLE = ("poles", "zeros", "gain")
    _ZERO_BOUND = 10.0

    def __init__(self, n_filters: int, sample_rate: float, n_sections: int = 2, scale: str = "mel",
                 f_min: Optional[float] = None, f_max: Optional[float] = None, max_radius: float = 0.9995,
                 max_gain_db: float = 160.0, learn: Iterable[str] = ("poles", "zeros", "gain"),
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.n_filters = _checks.integer("n_filters", n_filters, 1)
        self.sample_rate = _checks.sample_rate(sample_rate)
        self.n_sections = _checks.integer("n_sections", n_sections, 1)
        self.max_radius = _checks.number("max_radius", max_radius, 0.0, 1.0)
        self.max_gain_db = _checks.number("max_gain_db", max_gain_db, 0.0)
        learn = learned(type(self).__name__, learn, self.LEARNABLE)
        nyquist = self.sample_rate / 2
        centres = _initial_centres(n_filters, self.sample_rate, scale, f_min, f_max)
        bandwidth = centres / spacing_q(centres)
        radius = torch.exp(-math.pi * bandwidth / self.sample_rate).clamp(max=0.999 * self.max_radius)
        raw_radius = raw_from_bounded(radius, 0.0, self.max_radius)[:, None].expand(n_filters, self.n_sections)
        raw_angle = raw_from_frequency(centres, nyquist)[:, None].expand(n_filters, self.n_sections)
        zeros = torch.tensor([0.0, -1.0], dtype=torch.float64).expand(n_filters, self.n_sections, 2)
        raw_numerator = self._ZERO_BOUND * torch.atanh(zeros / self._ZERO_BOUND)
        parameter_or_buffer(self, "raw_radius", raw_radius.to(dtype).clone(), "poles" in learn)
        parameter_or_buffer(self, "raw_angle", raw_angle.to(dtype).clone(), "poles" in learn)
        parameter_or_buffer(self, "raw_numerator", raw_numerator.to(dtype).clone(), "zeros" in learn)
        with torch.no_grad():
            # Unit gain at each centre frequency.
            unit = self._sections(torch.ones(n_filters, dtype=torch.float64)).double()
            _, response = design.sosfreqz(unit, sample_rate=self.sample_rate, frequencies=centres[:, None])
            gain_db = -20 * torch.log10(response.abs().squeeze(-1))
        if not bool((gain_db.abs() < 0.99 * self.max_gain_db).all()):
            raise ValueError(f"the initial gains reach {float(gain_db.abs().max()):.0f} dB, beyond max_gain_db "
                             f"({self.max_gain_db:g}); raise max_gain_db, or use fewer sections or higher f_min")
        raw_gain = self.max_gain_db * torch.atanh(gain_db / self.max_gain_db)
        parameter_or_buffer(self, "raw_gain", raw_gain.to(dtype), "gain" in learn)

    @property
    def pole_radius(self) -> Tensor:
        """(n_filters, n_sections) in (0, max_radius)."""
        return bounded_from_raw(self.raw_radius, 0.0, self.max_radius)

    @property
    def pole_angle(self) -> Tensor:
        """(n_filters, n_sections) radians in (0, pi)."""
        return math.pi * frequency_from_raw(self.raw_angle, 1.0)

    @property
    def numerator(self) -> Tensor:
        """(n_filters, n_sections, 2): ``beta_1, beta_2`` of each section's numerator ``1 + beta_1 z^-1 + beta_2 z^-2``."""
        return self._ZERO_BOUND * torch.tanh(self.raw_numerator / self._ZERO_BOUND)

    @property
    def gain_db(self) -> Tensor:
        """(n_filters,) each filter's gain in dB (the sections being scaled as above)."""
        return self.max_gain_db * torch.tanh(self.raw_gain / self.max_gain_db)

    def _sections(self, gain: Tensor) -> Tensor:
        """(n_filters, n_sections, 6) from the poles and zeros, the first section times ``gain`` (n_filters,)."""
        radius, angle = self.pole_radius, self.pole_angle
        cos = torch.cos(angle)
        a = torch.stack([torch.ones_like(radius), -2 * radius * cos, radius.square()], dim=-1)
        # min_w |A(e^jw)|: (1 - r^2) sin(theta) at the resonance when it lies inside (0, pi), else at w = 0 or pi.
        resonance_inside = (1 + radius.square()) * cos.abs() <= 2 * radius
        trough = torch.where(resonance_inside, (1 - radius.square()) * torch.sin(angle),
                             1 - 2 * radius * cos.abs() + radius.square())
        b = torch.cat([torch.ones_like(radius).unsqueeze(-1), self.numerator], dim=-1)
        scale = trough / torch.linalg.vector_norm(b, dim=-1)
        scale = torch.cat([scale[:, :1] * gain.to(scale.dtype).unsqueeze(-1), scale[:, 1:]], dim=-1)
        return torch.cat([b * scale.unsqueeze(-1), a], dim=-1)

    def _compute_sos(self) -> Tensor:
        return self._sections(torch.pow(10.0, self.gain_db / 20))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_sections={self.n_sections}"
