"""Learnable filterbanks and a raw-waveform front-end, as ``torch.nn`` modules.

Modules are shells: each holds parameters, maps them to coefficients
through a parametrisation that keeps every filter stable and its frequency
inside (0, Nyquist) whatever the optimiser does, and calls
``filterbank.design``, ``filterbank.functional`` and ``filterbank.features``.

* :class:`BiquadFilterbank`: RBJ biquads (band-pass, low/high-pass, notch,
  peaking, shelves ...) with learnable centre frequency, Q and gain, optionally
  cascaded ``n_sections`` times per filter (order ``2 n_sections``).
* :class:`GammatoneFilterbank`: 4th-order gammatone filters (cascades of four
  biquads) with learnable centre frequencies.
* :class:`IIRFilterbank`: general IIR filters of even order, parametrised by
  their poles (kept inside the unit circle) and zeros.
* :class:`FrontEnd`: filterbank -> energy -> smoothing low-pass -> decimation
  by ``hop_length`` -> compression (log, power law or learnable PCEN),
  shaped like ``torchaudio.transforms.MelSpectrogram``'s output.

Every module streams (``filterbank.streaming``): ``y, state = module.stream(x,
state)`` continues exactly where the last call stopped.

Input shapes: ``(time)``, ``(batch, time)`` or ``(batch, channels, time)``.
A filterbank's output puts a filter axis before time: ``(n_filters, time)``,
``(batch, n_filters, time)``, ``(batch, channels, n_filters, time)``.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _ops, design, features
from .functional import sosfilt
from .streaming import State, check_state, check_tensor

__all__ = ["BiquadFilterbank", "GammatoneFilterbank", "IIRFilterbank", "FrontEnd"]

# Frequencies stay in [EDGE, 1 - EDGE] x Nyquist and Q in [Q_MIN, q_max] even
# when the sigmoids saturate: a very low, very sharp biquad has poles closer to
# the unit circle than float32 coefficients can hold (seen at 0.8 Hz, Q 184).
_EDGE = 1e-3
_Q_MIN = 0.05

_BIQUADS = {
    "bandpass": (design.bandpass_biquad, False),
    "bandpass_skirt": (design.bandpass_skirt_biquad, False),
    "lowpass": (design.lowpass_biquad, False),
    "highpass": (design.highpass_biquad, False),
    "notch": (design.notch_biquad, False),
    "allpass": (design.allpass_biquad, False),
    "peaking": (design.peaking_biquad, True),
    "lowshelf": (design.lowshelf_biquad, True),
    "highshelf": (design.highshelf_biquad, True),
}


# --------------------------------------------------------------------------
# Parametrisations: raw (unconstrained) <-> constrained values.


def frequency_from_raw(raw: Tensor, nyquist: float) -> Tensor:
    """Hz in [EDGE, 1 - EDGE] x nyquist for any real ``raw``."""
    return nyquist * (_EDGE + (1 - 2 * _EDGE) * torch.sigmoid(raw))


def raw_from_frequency(hz: Tensor, nyquist: float) -> Tensor:
    p = (hz / nyquist - _EDGE) / (1 - 2 * _EDGE)
    return torch.log(p) - torch.log1p(-p)


def bounded_from_raw(raw: Tensor, low: float, high: float) -> Tensor:
    """``low + (high - low) sigmoid(raw)``: in [low, high] for any real ``raw``."""
    return low + (high - low) * torch.sigmoid(raw)


def raw_from_bounded(value: Tensor, low: float, high: float) -> Tensor:
    p = (value - low) / (high - low)
    return torch.log(p) - torch.log1p(-p)


def _check_input(x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim not in (1, 2, 3):
        raise ValueError(f"x must have shape (time), (batch, time) or (batch, channels, time); got {tuple(x.shape)}")


def _zero_past(values: Tensor, lengths: Tensor) -> Tensor:
    """``values`` (batch, ..., time) with ``values[i, ..., lengths[i]:]`` zero.

    Without a gradient to keep, in place and writing the tail alone.
    """
    n_time = values.shape[-1]
    if torch.is_grad_enabled() and values.requires_grad:
        keep = torch.arange(n_time, device=values.device) < lengths.unsqueeze(-1)   # (batch, time)
        return values * keep.reshape(keep.shape[:1] + (1,) * (values.ndim - 2) + keep.shape[1:])
    for index, length in enumerate(lengths.tolist()):
        if length < n_time:
            values[index, ..., length:] = 0
    return values


def _check_sample_rate(sample_rate) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    return float(sample_rate)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _band_edges(n_filters: int, sample_rate: float, f_min: Optional[float], f_max: Optional[float]):
    nyquist = sample_rate / 2
    f_min = 30.0 if f_min is None else float(f_min)
    f_max = 0.95 * nyquist if f_max is None else float(f_max)
    if not 0 < f_min < f_max < nyquist:
        raise ValueError(f"need 0 < f_min < f_max < sample_rate / 2 = {nyquist:g} Hz; got f_min={f_min:g}, "
                         f"f_max={f_max:g}")
    return f_min, f_max


def _spacing_q(centres: Tensor) -> Tensor:
    """Q that makes neighbouring filters cross near their half-power points."""
    if centres.shape[0] == 1:
        return torch.full_like(centres, 1.0)
    gaps = centres[1:] - centres[:-1]
    bandwidth = torch.cat([gaps[:1], (gaps[1:] + gaps[:-1]) / 2, gaps[-1:]])
    return (centres / bandwidth).clamp_min(0.5)


class _Filterbank(nn.Module):
    """Shared behaviour: ``sos()`` -> filtering, responses, shapes."""

    sample_rate: float

    def sos(self) -> Tensor:  # pragma: no cover - each subclass defines it
        raise NotImplementedError

    def _current_sos(self) -> Tensor:
        """``sos()``, reused while no gradient is recorded and no parameter changed.

        Streaming in 10 ms blocks would otherwise spend most of its time
        redesigning the same filters; in-place updates (optimisers, ``load_state_dict``)
        bump a tensor's version, which invalidates the cache.
        """
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.sos()
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in (*self.parameters(), *self.buffers()))
        cached = self.__dict__.get("_sos_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.sos())
            self.__dict__["_sos_cache"] = cached
        return cached[1]

    @property
    def n_filters(self) -> int:
        return self._n_filters

    def forward(self, x: Tensor, zi: Optional[Tensor] = None):
        """Filter ``x`` by every filter of the bank.

        Args:
            x: (time), (batch, time) or (batch, channels, time), the module's dtype.
            zi: (..., n_filters, n_sections, 2) state to start from (see
                ``filterbank.sosfilt``); None means rest.

        Returns:
            y: (..., n_filters, time), or ``(y, zf)`` when ``zi`` is given.
        """
        _check_input(x)
        if zi is None:
            return sosfilt(self._current_sos(), x.unsqueeze(-2))
        return sosfilt(self._current_sos(), x.unsqueeze(-2), zi=zi)

    def stream(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """Filter the next chunk of a signal, continuing from ``state``.

        Args:
            x: (time), (batch, time) or (batch, channels, time): the next samples.
            state: what the previous call returned; None means rest.

        Returns:
            ``(y, state)``: y (..., n_filters, time), and the state after the
            last sample: ``State(zi=(..., n_filters, n_sections, 2))``.
        """
        _check_input(x)
        sos = self._current_sos()
        shape = x.shape[:-1] + sos.shape[:-1] + (2,)
        if state is None:
            zi = torch.zeros(shape, dtype=sos.dtype, device=x.device)
        else:
            owner = type(self).__name__
            zi = check_tensor(owner, "zi", check_state(owner, state, ("zi",))["zi"], shape, sos.dtype, x.device)
        y, zf = sosfilt(sos, x.unsqueeze(-2), zi=zi)
        return y, State(zi=zf)

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


def _parameter_or_buffer(module: nn.Module, name: str, value: Tensor, learn: bool) -> None:
    if learn:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


class BiquadFilterbank(_Filterbank):
    """A bank of RBJ-cookbook biquads with learnable frequency, Q and gain.

    Every filter is a biquad of ``kind`` (the cascade of ``n_sections`` copies
    of it: order ``2 n_sections``). Parametrisations keep the filters stable
    for any parameter values: the centre frequency is
    ``nyquist * sigmoid(raw)`` (kept inside (0, nyquist)), the gain is ``max_gain_db * tanh(raw / max_gain_db)``
    (RBJ biquads are stable for every frequency in (0, nyquist) and Q > 0).
    Q is ``0.05 + (q_max - 0.05) sigmoid(raw)``.

    Args:
        n_filters: number of filters.
        sample_rate: Hz.
        kind: one of ``bandpass`` (0 dB peak), ``bandpass_skirt``, ``lowpass``,
            ``highpass``, ``notch``, ``allpass``, ``peaking``, ``lowshelf``,
            ``highshelf``.
        scale: how the initial frequencies are placed between ``f_min`` and
            ``f_max``: ``mel``, ``mel_htk``, ``erb``, ``bark``, ``linear``, ``log``.
        f_min, f_max: Hz (default 30 Hz and 0.95 x Nyquist).
        q: initial Q, a number or (n_filters,); default: from the spacing of
            the centre frequencies, so that neighbours cross near -3 dB.
        gain_db: initial gain for ``peaking`` and the shelves.
        n_sections: copies of each biquad in cascade.
        learn: which of ``"frequency"``, ``"q"``, ``"gain"`` are parameters
            (the rest are buffers).
        max_gain_db: bound of the gain's parametrisation.
        q_max: bound of Q's parametrisation.

    Shapes: see :meth:`forward`; ``sos()`` is (n_filters, n_sections, 6).

    Example:
        >>> bank = BiquadFilterbank(40, 16000)
        >>> bank(torch.randn(2, 16000)).shape
        torch.Size([2, 40, 16000])
    """

    def __init__(
        self, n_filters: int, sample_rate: float, kind: str = "bandpass", scale: str = "mel",
        f_min: Optional[float] = None, f_max: Optional[float] = None, q: Union[float, Tensor, None] = None,
        gain_db: Union[float, Tensor] = 0.0, n_sections: int = 1,
        learn: Iterable[str] = ("frequency", "q"), max_gain_db: float = 48.0, q_max: float = 50.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self._n_filters = _check_count("n_filters", n_filters)
        self.sample_rate = _check_sample_rate(sample_rate)
        self.n_sections = _check_count("n_sections", n_sections)
        if kind not in _BIQUADS:
            raise ValueError(f"kind must be one of {', '.join(_BIQUADS)}; got {kind!r}")
        self.kind = kind
        learn = set(learn)
        unknown = learn - {"frequency", "q", "gain"}
        if unknown:
            raise ValueError(f"learn takes 'frequency', 'q' and 'gain'; got {sorted(unknown)}")
        self.has_gain = _BIQUADS[kind][1]
        if "gain" in learn and not self.has_gain:
            raise ValueError(f"kind {kind!r} has no gain to learn (peaking and the shelves do)")
        if not max_gain_db > 0:
            raise ValueError(f"max_gain_db must be > 0; got {max_gain_db!r}")
        self.max_gain_db = float(max_gain_db)
        if not q_max > _Q_MIN:
            raise ValueError(f"q_max must be > {_Q_MIN}; got {q_max!r}")
        self.q_max = float(q_max)
        f_min, f_max = _band_edges(n_filters, self.sample_rate, f_min, f_max)
        nyquist = self.sample_rate / 2
        centres = design.centre_frequencies(n_filters, f_min, f_max, scale=scale, dtype=torch.float64)
        if q is None:
            q_values = _spacing_q(centres).clamp_max(0.9 * self.q_max)
        else:
            q_values = torch.as_tensor(q, dtype=torch.float64).expand(n_filters).clone()
            if not bool(((q_values > _Q_MIN) & (q_values < self.q_max)).all()):
                raise ValueError(f"q must lie in ({_Q_MIN}, {self.q_max:g}) (q_max); got values in "
                                 f"[{float(q_values.min()):g}, {float(q_values.max()):g}]")
        gain = torch.as_tensor(gain_db, dtype=torch.float64).expand(n_filters).clone()
        if not bool((gain.abs() < self.max_gain_db).all()):
            raise ValueError(f"gain_db must lie in (-{self.max_gain_db:g}, {self.max_gain_db:g}) dB (max_gain_db); "
                             f"got a largest magnitude of {float(gain.abs().max()):g}")
        _parameter_or_buffer(self, "raw_frequency", raw_from_frequency(centres, nyquist).to(dtype),
                             "frequency" in learn)
        _parameter_or_buffer(self, "raw_q", raw_from_bounded(q_values, _Q_MIN, self.q_max).to(dtype), "q" in learn)
        _parameter_or_buffer(self, "raw_gain", (self.max_gain_db * torch.atanh(gain / self.max_gain_db)).to(dtype),
                             "gain" in learn)

    @property
    def centre_hz(self) -> Tensor:
        """(n_filters,) centre (or cut-off) frequencies in Hz."""
        return frequency_from_raw(self.raw_frequency, self.sample_rate / 2)

    @property
    def q(self) -> Tensor:
        """(n_filters,) quality factors."""
        return bounded_from_raw(self.raw_q, _Q_MIN, self.q_max)

    @property
    def gain_db(self) -> Tensor:
        """(n_filters,) gains in dB (used by ``peaking`` and the shelves)."""
        return self.max_gain_db * torch.tanh(self.raw_gain / self.max_gain_db)

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """``(b, a)``: (n_filters, 3) each, ``a[:, 0] == 1``."""
        function, takes_gain = _BIQUADS[self.kind]
        if takes_gain:
            return function(self.centre_hz, self.q, self.gain_db, self.sample_rate)
        return function(self.centre_hz, self.q, self.sample_rate)

    def sos(self) -> Tensor:
        """(n_filters, n_sections, 6): the biquad repeated ``n_sections`` times."""
        b, a = self.coefficients()
        return torch.cat([b, a], dim=-1).unsqueeze(-2).expand(-1, self.n_sections, -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kind={self.kind!r}, n_sections={self.n_sections}"


class GammatoneFilterbank(_Filterbank):
    """4th-order gammatone filters (four biquads each) with learnable centre frequencies.

    Coefficients from ``design.gammatone_sos`` (the response of
    ``scipy.signal.gammatone(ftype="iir")``), bandwidth by the ERB of each
    centre frequency; the centre frequency is parametrised as in
    :class:`BiquadFilterbank`.

    Args:
        n_filters, sample_rate, scale, f_min, f_max: as for :class:`BiquadFilterbank`
            (default scale ``erb``).
        learn_frequency: whether the centre frequencies are parameters.

    ``sos()`` is (n_filters, 4, 6).
    """

    def __init__(self, n_filters: int, sample_rate: float, scale: str = "erb", f_min: Optional[float] = None,
                 f_max: Optional[float] = None, learn_frequency: bool = True, dtype: torch.dtype = torch.float32):
        super().__init__()
        self._n_filters = _check_count("n_filters", n_filters)
        self.sample_rate = _check_sample_rate(sample_rate)
        f_min, f_max = _band_edges(n_filters, self.sample_rate, f_min, f_max)
        centres = design.centre_frequencies(n_filters, f_min, f_max, scale=scale, dtype=torch.float64)
        _parameter_or_buffer(self, "raw_frequency", raw_from_frequency(centres, self.sample_rate / 2).to(dtype),
                             learn_frequency)

    @property
    def centre_hz(self) -> Tensor:
        return frequency_from_raw(self.raw_frequency, self.sample_rate / 2)

    def sos(self) -> Tensor:
        return design.gammatone_sos(self.centre_hz, self.sample_rate)


class IIRFilterbank(_Filterbank):
    """General IIR filters of order ``2 n_sections``, learnable through their poles and zeros.

    Section k of filter n has a conjugate pole pair ``r e^{+-j theta}`` with
    ``r = max_radius * sigmoid(raw)`` (inside the unit circle, so every
    filter is stable) and ``theta`` in (0, pi) as the frequencies above, and a
    free numerator ``[1, beta_1, beta_2]`` (zeros anywhere); the first section
    carries the filter's gain. Initialised as resonators at centre frequencies
    placed on ``scale``, with bandwidths from their spacing, zeros at z = +-1
    and unit gain at the centre.

    Args:
        n_filters, sample_rate, scale, f_min, f_max: as for :class:`BiquadFilterbank`.
        n_sections: second-order sections per filter.
        max_radius: the largest pole radius (< 1).

    ``sos()`` is (n_filters, n_sections, 6).
    """

    def __init__(self, n_filters: int, sample_rate: float, n_sections: int = 2, scale: str = "mel",
                 f_min: Optional[float] = None, f_max: Optional[float] = None, max_radius: float = 0.9995,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self._n_filters = _check_count("n_filters", n_filters)
        self.sample_rate = _check_sample_rate(sample_rate)
        self.n_sections = _check_count("n_sections", n_sections)
        if not 0 < max_radius < 1:
            raise ValueError(f"max_radius must lie in (0, 1); got {max_radius!r}")
        self.max_radius = float(max_radius)
        f_min, f_max = _band_edges(n_filters, self.sample_rate, f_min, f_max)
        nyquist = self.sample_rate / 2
        centres = design.centre_frequencies(n_filters, f_min, f_max, scale=scale, dtype=torch.float64)
        bandwidth = centres / _spacing_q(centres)
        radius = torch.exp(-math.pi * bandwidth / self.sample_rate).clamp(max=0.999 * self.max_radius)
        p = radius / self.max_radius
        raw_radius = (torch.log(p) - torch.log1p(-p))[:, None].expand(n_filters, self.n_sections)
        raw_angle = raw_from_frequency(centres, nyquist)[:, None].expand(n_filters, self.n_sections)
        numerator = torch.tensor([0.0, -1.0], dtype=torch.float64).expand(n_filters, self.n_sections, 2)
        self.raw_radius = nn.Parameter(raw_radius.to(dtype).clone())
        self.raw_angle = nn.Parameter(raw_angle.to(dtype).clone())
        self.numerator = nn.Parameter(numerator.to(dtype).clone())
        self.gain = nn.Parameter(torch.ones(n_filters, dtype=dtype))
        with torch.no_grad():
            # Unit gain at each centre frequency.
            _, response = design.sosfreqz(self.sos().double(), sample_rate=self.sample_rate,
                                          frequencies=centres[:, None])
            self.gain.copy_((1 / response.abs().squeeze(-1)).to(dtype))

    @property
    def pole_radius(self) -> Tensor:
        """(n_filters, n_sections) in (0, max_radius)."""
        return self.max_radius * torch.sigmoid(self.raw_radius)

    @property
    def pole_angle(self) -> Tensor:
        """(n_filters, n_sections) radians in (0, pi)."""
        return math.pi * frequency_from_raw(self.raw_angle, 1.0)

    def sos(self) -> Tensor:
        radius, angle = self.pole_radius, self.pole_angle
        ones = torch.ones_like(radius)
        a = torch.stack([ones, -2 * radius * torch.cos(angle), radius.square()], dim=-1)
        b = torch.cat([ones.unsqueeze(-1), self.numerator], dim=-1)
        gains = torch.cat([self.gain.unsqueeze(-1), torch.ones_like(radius[:, 1:])], dim=-1)
        return torch.cat([b * gains.unsqueeze(-1), a], dim=-1)


class FrontEnd(nn.Module):
    """Raw-waveform front-end: filterbank -> energy -> smoothing -> decimation -> compression.

    A drop-in for ``torchaudio.transforms.MelSpectrogram`` in a model: the
    same output layout ``(..., n_filters, frames)`` with ``frames = 1 + time //
    hop_length``, computed by learnable filters instead of an STFT.

    Args:
        n_filters: bands (ignored when ``filterbank`` is given).
        sample_rate: Hz.
        hop_length: samples between frames.
        filterbank: any filterbank module of this file; default a
            :class:`BiquadFilterbank` of band-passes on the mel scale with
            learnable frequencies and Q.
        energy: ``"square"`` or ``"abs"`` (see ``features.frame_energy``).
        window: ``"hann"`` (2 x hop, the default) or ``"box"``: the smoothing low-pass.
        compression: ``"log"``, ``"power"``, ``"pcen"`` or None.
        floor: added before log/power, and PCEN's epsilon.
        power: exponent of ``"power"``.
        learn_pcen: whether PCEN's parameters (per filter) are learnable.

    Shapes: x (time), (batch, time) or (batch, channels, time) ->
    (n_filters, frames), (batch, n_filters, frames), (batch, channels, n_filters, frames).

    Example:
        >>> front_end = FrontEnd(n_filters=64, sample_rate=16000, hop_length=160)
        >>> front_end(torch.randn(8, 16000)).shape
        torch.Size([8, 64, 101])
    """

    def __init__(
        self, n_filters: int = 64, sample_rate: float = 16000, hop_length: int = 160,
        filterbank: Optional[nn.Module] = None, energy: str = "square", window: str = "hann",
        compression: Optional[str] = "log", floor: float = 1e-6, power: float = 0.3, learn_pcen: bool = True,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.sample_rate = _check_sample_rate(sample_rate)
        self.hop_length = _check_count("hop_length", hop_length)
        if filterbank is None:
            filterbank = BiquadFilterbank(n_filters, self.sample_rate, dtype=dtype)
        elif getattr(filterbank, "sample_rate", self.sample_rate) != self.sample_rate:
            raise ValueError(f"the filterbank's sample_rate ({filterbank.sample_rate:g}) differs from the front-end's "
                             f"({self.sample_rate:g})")
        self.filterbank = filterbank
        if energy not in ("square", "abs"):
            raise ValueError(f"energy must be 'square' or 'abs'; got {energy!r}")
        self.energy = energy
        if compression not in ("log", "power", "pcen", None):
            raise ValueError(f"compression must be 'log', 'power', 'pcen' or None; got {compression!r}")
        self.compression = compression
        if not floor > 0:
            raise ValueError(f"floor must be > 0; got {floor!r}")
        self.floor = float(floor)
        if not 0 < power <= 1:
            raise ValueError(f"power must be in (0, 1]; got {power!r}")
        self.power = float(power)
        self.register_buffer("window", features.smoothing_window(self.hop_length, kind=window, dtype=dtype))
        n_filters = self.filterbank.n_filters
        if compression == "pcen":
            # Initial values of Wang et al. (2017) and LEAF: alpha 0.96, delta
            # 2, root 0.5; smoothing over about 25 frames.
            init = {"raw_smooth": torch.logit(torch.tensor(0.04)), "raw_alpha": torch.logit(torch.tensor(0.96)),
                    "raw_delta": torch.log(torch.tensor(2.0)), "raw_root": torch.logit(torch.tensor(0.5))}
            for name, value in init.items():
                _parameter_or_buffer(self, name, torch.full((n_filters,), float(value), dtype=dtype), learn_pcen)

    @property
    def n_filters(self) -> int:
        return self.filterbank.n_filters

    def pcen_parameters(self) -> dict[str, Tensor]:
        """PCEN's (n_filters,) parameters, constrained: smooth and alpha in (0, 1), delta > 0, root in (0, 1)."""
        return {"smooth": torch.sigmoid(self.raw_smooth), "alpha": torch.sigmoid(self.raw_alpha),
                "delta": torch.exp(self.raw_delta), "root": torch.sigmoid(self.raw_root)}

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Features of ``x``: (..., time) -> (..., n_filters, 1 + time // hop_length).

        Args:
            x: (..., time) signals.
            lengths: for a zero-padded batch, (batch,) integers: the samples of
                each signal ``x[i]`` (shape (batch, time) or (batch, channels,
                time)) that are real. Frames ``:1 + lengths[i] // hop_length``
                of ``out[i]`` then equal the features of ``x[i, ..., :lengths[i]]``
                alone (the filters' ringing past the end is not counted), and
                later frames are zero.
        """
        if lengths is not None:
            lengths = self._check_lengths(x, lengths)
        energy = self._fused_energy(x, lengths)
        if energy is None:
            bands = self.filterbank(x)                  # (..., n_filters, time)
            if lengths is not None:
                bands = _zero_past(bands, lengths)
            energy = features.frame_energy(bands, self.hop_length, energy=self.energy, window=self.window)
        out = self._compress(energy, None)[0]
        if lengths is None:
            return out
        return _zero_past(out, 1 + lengths // self.hop_length)

    def _fused_energy(self, x: Tensor, lengths: Optional[Tensor]) -> Optional[Tensor]:
        """Frame energies (..., n_filters, frames) from the fused CPU kernel, or None where it does not apply.

        It applies in plain inference on the CPU (nothing needs a gradient,
        no tracing): the band signals are then never stored, which saves
        writing them and reading them back (bench/frontend.py: the forward
        then takes less time than filtering alone). Samples at or past
        ``lengths`` count as zero, as in :meth:`forward`.
        """
        bank = self.filterbank
        if not isinstance(bank, _Filterbank) or not isinstance(x, Tensor) or x.device.type != "cpu":
            return None
        if x.ndim not in (1, 2, 3) or x.dtype not in (torch.float32, torch.float64) or self.window.dtype != x.dtype:
            return None  # the unfused path reports what is wrong
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in bank.parameters())):
            return None
        if not _ops._plain_inference(x, self.window):
            return None
        sos = bank._current_sos()                                   # (n_filters, n_sections, 6)
        if sos.dtype != x.dtype or sos.device != x.device or not _ops._plain_inference(sos):
            return None
        from .kernels import fused

        n_time = x.shape[-1]
        rows = x.reshape(math.prod(x.shape[:-1]), n_time)           # (R, time)
        n_rows, n_filters, n_sections = rows.shape[0], sos.shape[0], sos.shape[1]
        x_index = torch.arange(n_rows).repeat_interleave(n_filters)  # channel r * F + f reads row r
        sos = sos.expand(n_rows, n_filters, n_sections, 6).reshape(n_rows * n_filters, n_sections, 6)
        if lengths is None:
            limits = torch.full((n_rows * n_filters,), n_time, dtype=torch.int64)
        else:
            rows_per_signal = n_rows // x.shape[0] if x.shape[0] else 0     # channels of (batch, channels, time)
            limits = lengths.repeat_interleave(rows_per_signal * n_filters)
        energy = fused.iir_cascade_frame_energy(
            rows, x_index, sos[..., :3], sos[..., 3:], rows.new_zeros((n_rows * n_filters, n_sections, 2)),
            self.window, self.hop_length, self.window.shape[0] // 2, 1 + n_time // self.hop_length,
            self.energy == "square", limits)
        return energy.reshape(x.shape[:-1] + (n_filters, energy.shape[-1]))

    @staticmethod
    def _check_lengths(x: Tensor, lengths) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"lengths needs a batch: x must have shape (batch, time) or (batch, channels, time); "
                             f"got {tuple(x.shape)}")
        values = torch.as_tensor(lengths)
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.shape != (x.shape[0],):
            raise ValueError(f"lengths must be {x.shape[0]} integers (one per signal of the batch); got "
                             f"{values.dtype} of shape {tuple(values.shape)}")
        if bool((values < 0).any()) or bool((values > x.shape[-1]).any()):
            raise ValueError(f"lengths must be in [0, {x.shape[-1]}] (the padded length); got "
                             f"{values.min().item()} to {values.max().item()}")
        return values.to(device=x.device, dtype=torch.int64)

    def _compress(self, energy: Tensor, pcen_state: Optional[Tensor]):
        if self.compression == "log":
            return features.log_compress(energy, self.floor), None
        if self.compression == "power":
            return features.power_compress(energy, self.power, self.floor), None
        if self.compression == "pcen":
            if energy.shape[-1] == 0:
                return energy, pcen_state
            return features.pcen(energy, floor=self.floor, zi=pcen_state, **self.pcen_parameters())
        return energy, None

    def _frames(self, buffer: Tensor, n_frames: int) -> Tensor:
        """Frames whose windows start at buffer[..., 0], buffer[..., hop], ...: (..., n_frames)."""
        leading, length = buffer.shape[:-1], buffer.shape[-1]
        energy = _ops.call_frame_energy(buffer.reshape(math.prod(leading), length), self.window, self.hop_length, 0,
                                   n_frames, self.energy == "square")
        return energy.reshape(leading + (n_frames,))

    def stream(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """Features of the next chunk of a signal, continuing from ``state``.

        Emits every frame whose smoothing window lies within the samples seen
        so far; :meth:`finish` emits the rest at the end. Over any chunking,
        the streamed frames followed by ``finish`` equal :meth:`forward` on
        the whole signal.

        Args:
            x: (time), (batch, time) or (batch, channels, time): the next samples.
            state: what the previous call returned; None means the start of a signal.

        Returns:
            ``(features, state)``: (..., n_filters, frames emitted now).
        """
        _check_input(x)
        offset, length, hop = self.window.shape[0] // 2, self.window.shape[0], self.hop_length
        owner = type(self).__name__
        if state is None:
            filterbank_state, pcen_state, samples, frames = None, None, 0, 0
            buffer = torch.zeros(x.shape[:-1] + (self.n_filters, offset), dtype=self.window.dtype, device=x.device)
        else:
            check_state(owner, state, ("filterbank", "bands", "samples", "frames", "pcen"))
            filterbank_state, pcen_state = state["filterbank"], state["pcen"]
            samples, frames = int(state["samples"]), int(state["frames"])
            shape = x.shape[:-1] + (self.n_filters, samples + offset - frames * hop)
            buffer = check_tensor(owner, "bands", state["bands"], shape, self.window.dtype, x.device)
            if pcen_state is not None:
                check_tensor(owner, "pcen", pcen_state, x.shape[:-1] + (self.n_filters, 1), self.window.dtype,
                             x.device)
        bands, filterbank_state = self.filterbank.stream(x, filterbank_state)
        buffer = torch.cat([buffer, bands], dim=-1)
        samples += x.shape[-1]
        # Frames f with f * hop - offset + length <= samples are complete.
        complete = (samples + offset - length) // hop + 1 if samples + offset >= length else 0
        n_new = max(0, complete - frames)
        energy = self._frames(buffer, n_new)
        out, pcen_state = self._compress(energy, pcen_state)
        state = State(filterbank=filterbank_state, bands=buffer[..., n_new * hop :], samples=samples,
                      frames=frames + n_new, pcen=pcen_state)
        return out, state

    def finish(self, state: State) -> Tensor:
        """The last frames of a streamed signal (windows reaching past its end, zero there).

        Returns:
            (..., n_filters, 1 + samples // hop_length - frames emitted so far).
        """
        check_state(type(self).__name__, state, ("filterbank", "bands", "samples", "frames", "pcen"))
        remaining = 1 + int(state["samples"]) // self.hop_length - int(state["frames"])
        energy = self._frames(state["bands"], remaining)
        return self._compress(energy, state["pcen"])[0]

    def extra_repr(self) -> str:
        return f"hop_length={self.hop_length}, energy={self.energy!r}, compression={self.compression!r}"
