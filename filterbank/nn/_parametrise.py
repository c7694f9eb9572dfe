"""What the modules share: stable parametrisations, the ``learn`` keyword, a bank's frequency range.

Parametrisations map an unconstrained ("raw") parameter to a value that
keeps every filter stable and inside (0, Nyquist) whatever the optimiser
does; ``raw_from_*`` are their inverses, used to initialise.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional

import torch
from torch import Tensor, nn

from .. import _checks

# Frequencies stay in [EDGE, 1 - EDGE] x Nyquist and Q in [Q_MIN, q_max] even
# when the sigmoids saturate: a very low, very sharp biquad has poles closer to
# the unit circle than float32 coefficients can hold (seen at 0.8 Hz, Q 184).
EDGE = 1e-3
Q_MIN = 0.05


def frequency_from_raw(raw: Tensor, nyquist: float) -> Tensor:
    """Hz in [EDGE, 1 - EDGE] x nyquist for any real ``raw``."""
    return bounded_from_raw(raw, EDGE * nyquist, (1 - EDGE) * nyquist)


def raw_from_frequency(hz: Tensor, nyquist: float) -> Tensor:
    return raw_from_bounded(hz, EDGE * nyquist, (1 - EDGE) * nyquist)


def bounded_from_raw(raw: Tensor, low: float, high: float) -> Tensor:
    """``low + (high - low) sigmoid(raw)``: in [low, high] for any real ``raw``."""
    return low + (high - low) * torch.sigmoid(raw)


def raw_from_bounded(value: Tensor, low: float, high: float) -> Tensor:
    return torch.logit((value - low) / (high - low))


def parameter_or_buffer(module: nn.Module, name: str, value: Tensor, learn: bool) -> None:
    """Register ``value`` as a learnable parameter, or as a buffer (moves with the module, not learnt)."""
    if learn:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def learned(owner: str, learn: Iterable[str], names: tuple[str, ...], old_keyword: Optional[str] = None,
            old_value: Optional[bool] = None, old_names: tuple[str, ...] = ()) -> frozenset:
    """The names in ``learn`` (each one of ``names``): which of a module's parameters are learnt.

    ``old_keyword`` is a boolean keyword this replaces (``learn_frequency``,
    ``learn_pcen``): given, it still works, with a warning, and means
    ``learn=old_names`` or ``learn=()``.
    """
    if old_value is not None:
        warnings.warn(f"{owner}({old_keyword}=...) is deprecated and will go in a later release; pass "
                      f"learn={old_names!r} or learn=() instead", DeprecationWarning, stacklevel=3)
        learn = old_names if _checks.boolean(old_keyword, old_value) else ()
    return _checks.names("learn", learn, names)


def per_filter(name: str, value, n_filters: int) -> Tensor:
    """An initial value, a number or one per filter, as (n_filters,) float64."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"{name} must be a number or a tensor of shape ({n_filters},); got {type(value).__name__}")
    values = torch.as_tensor(value, dtype=torch.float64)
    if values.shape not in ((), (n_filters,)):
        raise ValueError(f"{name} must be a number or have shape ({n_filters},) (one per filter); got shape "
                         f"{tuple(values.shape)}")
    return values.expand(n_filters).clone()


def band_edges(sample_rate: float, f_min: Optional[float], f_max: Optional[float]) -> tuple[float, float]:
    """``(f_min, f_max)`` in Hz, defaults 30 Hz and 0.95 x Nyquist, checked: ``0 < f_min < f_max < Nyquist``."""
    nyquist = sample_rate / 2
    f_min = 30.0 if f_min is None else _checks.number("f_min", f_min, unit="Hz")
    f_max = 0.95 * nyquist if f_max is None else _checks.number("f_max", f_max, unit="Hz")
    _checks.frequency_range(f_min, f_max, nyquist)
    return f_min, f_max


def spacing_q(centres: Tensor) -> Tensor:
    """Q that makes neighbouring filters cross near their half-power points; centres: (n_filters,) Hz."""
    if centres.shape[0] == 1:
        return torch.full_like(centres, 1.0)
    gaps = centres[1:] - centres[:-1]
    bandwidth = torch.cat([gaps[:1], (gaps[1:] + gaps[:-1]) / 2, gaps[-1:]])
    return (centres / bandwidth).clamp_min(0.5)
