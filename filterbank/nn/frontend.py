"""The raw-waveform front-end: filterbank -> energy -> smoothing -> decimation -> compression."""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from .. import _checks, features
from ..streaming import State
from ._parametrise import learned, parameter_or_buffer
from .filterbanks import BiquadFilterbank, Filterbank

__all__ = ["FrontEnd"]

_PCEN = ("smooth", "alpha", "delta", "root")
# PCEN's delta lives in [1e-3, 1e3] (log-domain tanh): exp of a raw parameter alone overflows under a wild step.
_LOG_DELTA_BOUND = math.log(1e3)
_STATE_KEYS = ("origin", "filterbank", "bands", "samples", "frames", "pcen")


def _unchanged(state: State, made_here: tuple) -> bool:
    """Whether ``state`` is what :meth:`FrontEnd._stream_in_one_call` returned to this front-end, as it was."""
    made = getattr(state, "_made", None)
    if made is None or made[0] != made_here:
        return False
    filterbank_state = state.get("filterbank")
    return (isinstance(filterbank_state, State) and filterbank_state.get("zi") is made[1]
            and state.get("bands") is made[2] and state.get("samples") == made[3] and state.get("frames") == made[4]
            and state.get("pcen") is None)


class FrontEnd(nn.Module):
    """Raw-waveform front-end: filterbank -> energy -> smoothing -> decimation -> compression.

    A drop-in for ``torchaudio.transforms.MelSpectrogram`` in a model: the
    same output layout ``(..., n_filters, frames)`` with ``frames = 1 + time //
    hop_length``, computed by learnable filters instead of an STFT. For a bank of
    independent cascades (a ``filterbank.nn.Filterbank``) the filtering and the
    frame energies are ``filterbank.features.band_energy`` (one fused pass in
    CPU inference); any other bank (a ``CascadeFilterbank``, whose stages are
    coupled) gives its band signals by its own ``forward`` and ``stream``, and
    ``filterbank.features.frame_energy`` takes their energies. The compression
    is ``filterbank.features``' ``log_compress``, ``power_compress`` or ``pcen``.

    Args:
        n_filters: bands (ignored when ``filterbank`` is given).
        sample_rate: Hz.
        hop_length: samples between frames.
        filterbank: a filterbank module (a ``filterbank.nn.Filterbank``, or
            any module with ``n_filters`` and ``sample_rate`` that maps
            (..., time) to (..., n_filters, time), and with ``stream(x, state)``
            for :meth:`stream`); default a
            :class:`BiquadFilterbank` of band-passes on the mel scale with
            learnable frequencies and Q. Its own ``learn`` says what of it is learnt.
        energy: ``"square"`` or ``"abs"`` (see ``features.frame_energy``).
        window: ``"hann"`` (2 x hop, the default) or ``"box"``: the smoothing low-pass.
        compression: ``"log"``, ``"power"``, ``"pcen"`` or None.
        floor: added before log/power, and PCEN's epsilon.
        power: exponent of ``"power"``.
        learn: which of PCEN's per-filter parameters ``"smooth"``,
            ``"alpha"``, ``"delta"``, ``"root"`` are learnt (default: all of
            them with ``compression="pcen"``; other compressions have none).
        learn_pcen: deprecated; ``learn_pcen=False`` is ``learn=()``.
        dtype: of the parameters and the smoothing window.

    Shapes: x (time), (batch, time) or (batch, channels, time) ->
    (n_filters, frames), (batch, n_filters, frames), (batch, channels, n_filters, frames).

    Example:
        >>> front_end = FrontEnd(n_filters=64, sample_rate=16000, hop_length=160)
        >>> front_end(torch.randn(8, 16000)).shape
        torch.Size([8, 64, 101])
    """

    LEARNABLE = _PCEN

    def __init__(
        self, n_filters: int = 64, sample_rate: float = 16000, hop_length: int = 160,
        filterbank: Optional[nn.Module] = None, energy: str = "square", window: str = "hann",
        compression: Optional[str] = "log", floor: float = 1e-6, power: float = 0.3,
        learn: Optional[Iterable[str]] = None, learn_pcen: Optional[bool] = None, dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.sample_rate = _checks.sample_rate(sample_rate)
        self.hop_length = _checks.integer("hop_length", hop_length, 1)
        self.energy = _checks.choice("energy", energy, features.ENERGIES)
        self.compression = _checks.choice("compression", compression, features.COMPRESSIONS + (None,))
        self.floor = _checks.number("floor", floor, 0.0)
        self.power = _checks.number("power", power, 0.0, 1.0, closed=(False, True))
        if filterbank is None:
            filterbank = BiquadFilterbank(n_filters, self.sample_rate, dtype=dtype)
        elif getattr(filterbank, "sample_rate", self.sample_rate) != self.sample_rate:
            raise ValueError(f"the filterbank's sample_rate ({filterbank.sample_rate:g}) differs from the front-end's "
                             f"({self.sample_rate:g})")
        else:
            bank_dtype = next((t.dtype for t in (*filterbank.parameters(), *filterbank.buffers())), dtype)
            if bank_dtype != dtype:
                raise TypeError(f"the filterbank computes in {bank_dtype} but dtype is {dtype}; pass dtype={bank_dtype} "
                                f"or a filterbank of {dtype} (e.g. built with dtype={dtype})")
        self.filterbank = filterbank
        pcen = compression == "pcen"
        learn = learned(type(self).__name__, _PCEN if learn is None and pcen else (learn or ()), _PCEN,
                        "learn_pcen", learn_pcen, _PCEN if pcen else ())
        if learn and not pcen:
            raise ValueError(f"compression {compression!r} has nothing to learn; got learn={sorted(learn)} "
                             "(PCEN's parameters are learnt with compression='pcen')")
        self.register_buffer("window", features.smoothing_window(self.hop_length, kind=window, dtype=dtype))
        if pcen:
            # Initial values of Wang et al. (2017) and LEAF: alpha 0.96, delta
            # 2, root 0.5; smoothing over about 25 frames.
            init = {"smooth": torch.logit(torch.tensor(0.04)), "alpha": torch.logit(torch.tensor(0.96)),
                    "delta": _LOG_DELTA_BOUND * torch.atanh(torch.tensor(math.log(2.0) / _LOG_DELTA_BOUND)),
                    "root": torch.logit(torch.tensor(0.5))}
            for name, value in init.items():
                parameter_or_buffer(self, f"raw_{name}", torch.full((self.n_filters,), float(value), dtype=dtype),
                                    name in learn)

    @property
    def n_filters(self) -> int:
        return self.filterbank.n_filters

    def pcen_parameters(self) -> dict[str, Tensor]:
        """PCEN's (n_filters,) parameters, constrained: smooth and alpha in (0, 1), delta in [1e-3, 1e3], root in (0, 1)."""
        return {"smooth": torch.sigmoid(self.raw_smooth), "alpha": torch.sigmoid(self.raw_alpha),
                "delta": torch.exp(_LOG_DELTA_BOUND * torch.tanh(self.raw_delta / _LOG_DELTA_BOUND)),
                "root": torch.sigmoid(self.raw_root)}

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Features of ``x``: (..., time) -> (..., n_filters, 1 + time // hop_length).

        Args:
            x: (time), (batch, time) or (batch, channels, time) signals.
            lengths: for a zero-padded batch, (batch,) integers: the samples of
                each signal ``x[i]`` (shape (batch, time) or (batch, channels,
                time)) that are real. Frames ``:1 + lengths[i] // hop_length``
                of ``out[i]`` then equal the features of ``x[i, ..., :lengths[i]]``
                alone (the filters' ringing past the end is not counted), and
                later frames are zero.
        """
        _checks.module_input(x)
        if lengths is not None:
            lengths = _checks.lengths(lengths, x)
        if isinstance(self.filterbank, Filterbank):
            energy = features.band_energy(self.filterbank.sos(), x, self.hop_length, energy=self.energy,
                                          window=self.window, lengths=lengths)
        else:
            # Not independent cascades (e.g. coupled stages): the bank's own band signals.
            bands = self.filterbank(x)                  # (..., n_filters, time)
            if lengths is not None:
                bands = features.zero_after(bands, lengths)
            energy = features.frame_energy(bands, self.hop_length, energy=self.energy, window=self.window)
        out = self._compress(energy, None)[0]
        if lengths is None:
            return out
        return features.zero_after(out, 1 + lengths // self.hop_length)

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

    def _origin(self) -> dict:
        """What a state records of the front-end that made it: the settings its frames depend on."""
        return {"n_filters": self.n_filters, "hop_length": self.hop_length, "window": self.window.shape[0],
                "energy": self.energy, "compression": self.compression}

    def _check_state(self, state: State, x: Optional[Tensor]):
        """``(filterbank state, pcen state, samples, frames)`` of a state given back (with the next samples
        ``x``, or None from :meth:`finish`); a mismatch is an error naming what differs."""
        owner = type(self).__name__
        if state is None:
            raise TypeError(f"{owner}.finish needs the state that stream returned; got None (nothing was streamed)")
        _checks.state(owner, state, _STATE_KEYS)
        _checks.state_origin(owner, state["origin"], self._origin())
        samples = _checks.integer(f"{owner} state['samples']", state["samples"], 0)
        frames = _checks.integer(f"{owner} state['frames']", state["frames"], 0)
        bands, pcen_state, dtype = state["bands"], state["pcen"], self.window.dtype
        if x is None:   # finish: the batch and device are the state's own
            _checks.state_entry(owner, "bands", bands, None, dtype, getattr(bands, "device", None))
            batch, device = bands.shape[:-2], bands.device
        else:
            batch, device = x.shape[:-1], x.device
        shape = batch + (self.n_filters, samples + self.window.shape[0] // 2 - frames * self.hop_length)
        _checks.state_entry(owner, "bands", bands, shape, dtype, device)
        if self.compression == "pcen" and frames and pcen_state is None:
            raise ValueError(f"{owner} state['pcen'] is None but {frames} frames were emitted: a PCEN front-end's "
                             "state holds its smoother's state")
        if pcen_state is not None:
            _checks.state_entry(owner, "pcen", pcen_state, batch + (self.n_filters, 1), dtype, device)
        return state["filterbank"], pcen_state, samples, frames

    def _frames(self, buffer: Tensor, n_frames: int) -> Tensor:
        """Frames whose windows start at buffer[..., 0], buffer[..., hop], ...: (..., n_frames)."""
        return features.frame_energy(buffer, self.hop_length, energy=self.energy, window=self.window, offset=0,
                                     n_frames=n_frames)

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
        _checks.module_input(x)
        if isinstance(self.filterbank, Filterbank) and self.compression != "pcen":
            sos = self.filterbank.sos()
            if features.streams_in_one_call(sos, x):
                return self._stream_in_one_call(x, state, sos)
        offset, hop = self.window.shape[0] // 2, self.hop_length
        if state is None:
            filterbank_state, pcen_state, samples, frames = None, None, 0, 0
            buffer = torch.zeros(x.shape[:-1] + (self.n_filters, offset), dtype=self.window.dtype, device=x.device)
        else:
            filterbank_state, pcen_state, samples, frames = self._check_state(state, x)
            buffer = state["bands"]
        bands, filterbank_state = self.filterbank.stream(x, filterbank_state)
        buffer = torch.cat([buffer, bands], dim=-1)
        samples += x.shape[-1]
        n_new = self._new_frames(samples, frames)
        energy = self._frames(buffer, n_new)
        out, pcen_state = self._compress(energy, pcen_state)
        state = State(origin=self._origin(), filterbank=filterbank_state, bands=buffer[..., n_new * hop :],
                      samples=samples, frames=frames + n_new, pcen=pcen_state)
        return out, state

    def _new_frames(self, samples: int, frames: int) -> int:
        """Frames to emit once ``samples`` have been seen, ``frames`` emitted: frame f is complete
        when f * hop - offset + length <= samples."""
        offset, length = self.window.shape[0] // 2, self.window.shape[0]
        complete = (samples + offset - length) // self.hop_length + 1 if samples + offset >= length else 0
        return max(0, complete - frames)

    def _stream_in_one_call(self, x: Tensor, state: Optional[State], sos: Tensor) -> tuple[Tensor, State]:
        """:meth:`stream` in inference on the CPU: the filtering and the frames in one kernel call.

        Same results and the same state as the general path (each can take
        the other's state); per 10 ms block it costs a fraction as much.
        """
        offset, length, hop = self.window.shape[0] // 2, self.window.shape[0], self.hop_length
        batch, n_time = x.shape[:-1], x.shape[-1]
        n_filters, n_sections = sos.shape[0], sos.shape[1]
        made_here = (id(self), n_filters, n_sections, hop, length, self.energy, self.compression, batch, sos.dtype)
        if state is None:
            samples, frames = 0, 0
            zi = x.new_zeros(batch + (n_filters, n_sections, 2))
            buffer = x.new_zeros(batch + (n_filters, offset))
        elif _unchanged(state, made_here):
            # The state this path returned last time, entries untouched: its
            # checks would only repeat what made it.
            samples, frames, zi, buffer = state["samples"], state["frames"], state["filterbank"]["zi"], state["bands"]
        else:
            filterbank_state, _, samples, frames = self._check_state(state, x)
            zi = self.filterbank.state_zi(filterbank_state, x, sos)
            buffer = state["bands"]
        samples += n_time
        n_new = self._new_frames(samples, frames)
        out, zf, kept = features.stream_band_energy(sos, x, zi, buffer, self.window, hop, n_new, self.energy,
                                                    self.compression, self.floor, self.power)
        state = State(origin=self._origin(), filterbank=State(zi=zf), bands=kept, samples=samples,
                      frames=frames + n_new, pcen=None)
        state._made = (made_here, zf, kept, samples, frames + n_new)
        return out, state

    def finish(self, state: State) -> Tensor:
        """The last frames of a streamed signal (windows reaching past its end, zero there).

        Returns:
            (..., n_filters, 1 + samples // hop_length - frames emitted so far).
        """
        _, pcen_state, samples, frames = self._check_state(state, None)
        remaining = 1 + samples // self.hop_length - frames
        energy = self._frames(state["bands"], remaining)
        return self._compress(energy, pcen_state)[0]

    def extra_repr(self) -> str:
        return f"hop_length={self.hop_length}, energy={self.energy!r}, compression={self.compression!r}"
