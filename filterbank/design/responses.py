"""Frequency responses of filters and cascades, like scipy's ``freqz`` and ``sosfreqz`` (batched, differentiable).

The positional arguments follow scipy's order (``b, a, worN, whole``; ``sos,
worN, whole``); the sample rate (scipy's ``fs``) and explicit frequencies
are keyword arguments.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional

import torch
from torch import Tensor

from .. import _checks
from ._arguments import GRID_ARGUMENTS, RESPONSE_RETURNS, documented

__all__ = ["freqz", "sosfreqz"]


def _angular(n_frequencies: int, sample_rate: Optional[float], whole: bool, frequencies: Optional[Tensor],
             like: Tensor) -> tuple[Tensor, Tensor]:
    """(frequencies to return, radians per sample)."""
    if frequencies is None:
        # scipy's grid: linspace(0, pi or 2 pi, n, endpoint=False)
        last = 2 * math.pi if whole else math.pi
        w = torch.arange(n_frequencies, dtype=like.dtype, device=like.device) * (last / n_frequencies)
        return (w if sample_rate is None else w * (sample_rate / (2 * math.pi))), w
    return frequencies, (frequencies if sample_rate is None else frequencies * (2 * math.pi / sample_rate))


def _polynomial(coefficients: Tensor, w: Tensor) -> Tensor:
    """sum_k c[..., k] e^(-j w k): (..., K) and (..., F) -> (..., F), complex."""
    k = torch.arange(coefficients.shape[-1], dtype=w.dtype, device=w.device)
    angle = w.unsqueeze(-1) * k  # (..., F, K)
    powers = torch.complex(torch.cos(angle), -torch.sin(angle))
    return (coefficients.to(powers.dtype).unsqueeze(-2) @ powers.mT).squeeze(-2)


def _old_positions(function: str, whole, legacy: tuple, sample_rate):
    """``(whole, sample_rate)`` from a call in the old order ``(..., n_frequencies, sample_rate, whole)``.

    Until this release the fourth positional argument was ``sample_rate``;
    it is now ``whole``, as in scipy. A call in the old order still works,
    with a warning.
    """
    old_order = bool(legacy) or whole is None or (isinstance(whole, numbers.Real) and not isinstance(whole, bool))
    if not old_order:
        return whole, sample_rate
    if len(legacy) > 1 or sample_rate is not None:
        raise TypeError(f"{function}() takes sample_rate by keyword and at most one argument after whole")
    warnings.warn(f"{function}(..., n_frequencies, sample_rate, whole) is the old argument order; the fourth "
                  f"positional argument is now whole, as in scipy: pass sample_rate=... by keyword",
                  DeprecationWarning, stacklevel=3)
    return (legacy[0] if legacy else False), whole


def _check_grid(n_frequencies, sample_rate, whole, frequencies, like_name: str, like: Tensor,
                batch_shapes: dict) -> Optional[float]:
    """Checks shared by freqz and sosfreqz; returns the sample rate as a float (or None)."""
    if sample_rate is not None:
        sample_rate = _checks.sample_rate(sample_rate)
    _checks.boolean("whole", whole)
    if frequencies is None:
        _checks.integer("n_frequencies", n_frequencies, 1)
        return sample_rate
    if whole:
        raise ValueError("whole=True asks for scipy's grid; it cannot be combined with explicit frequencies")
    _checks.tensor("frequencies", frequencies, like, like_name)
    if frequencies.ndim == 0:
        raise ValueError("frequencies must have shape (..., n_frequencies); got a 0-d tensor")
    _checks.broadcast_to({**batch_shapes, "frequencies": frequencies.shape[:-1]}, "the batch dimensions")
    _checks.finite("frequencies", frequencies)
    return sample_rate


@documented(grid=GRID_ARGUMENTS, returns=RESPONSE_RETURNS)
def freqz(b: Tensor, a: Tensor, n_frequencies: int = 512, whole: bool = False, *legacy,
          sample_rate: Optional[float] = None, frequencies: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Frequency response of ``b / a``, like ``scipy.signal.freqz`` (batched and differentiable).

    ``H(e^jw) = sum_k b[k] e^(-jwk) / sum_k a[k] e^(-jwk)``, at scipy's grid
    ``w = pi k / n_frequencies`` (``2 pi k / n_frequencies`` when ``whole``),
    ``k = 0 .. n_frequencies - 1``, or at ``frequencies``. Differentiable in
    ``b``, ``a`` (and ``frequencies``): a loss on ``response.abs()``
    backpropagates to the coefficients.

    Args:
        b: (..., M + 1) numerators.
        a: (..., N + 1) denominators, ``a[..., 0] != 0``; batch dimensions
            broadcast against ``b``'s; same dtype and device.
        {grid}
        frequencies: (..., F) explicit frequencies (batch dimensions broadcast
            against the filters'), keyword only; replaces the grid
            (``n_frequencies`` is then ignored).

    Returns:
        {returns}

    Example:
        >>> w, h = freqz(torch.tensor([1.0, 1.0]), torch.tensor([2.0]), 4)
        >>> h.abs()
        tensor([1.0000, 0.9239, 0.7071, 0.3827])
    """
    whole, sample_rate = _old_positions("freqz", whole, legacy, sample_rate)
    _checks.coefficients("b", b)
    _checks.coefficients("a", a, b, "b")
    batch = {"b": b.shape[:-1], "a": a.shape[:-1]}
    _checks.broadcast_to(batch, "the batch dimensions")
    sample_rate = _check_grid(n_frequencies, sample_rate, whole, frequencies, "b", b, batch)
    _checks.nonzero("a", a, 0)
    returned, w = _angular(n_frequencies, sample_rate, whole, frequencies, b)
    return returned, _polynomial(b, w) / _polynomial(a, w)


@documented(returns=RESPONSE_RETURNS)
def sosfreqz(sos: Tensor, n_frequencies: int = 512, whole: bool = False, *legacy,
             sample_rate: Optional[float] = None, frequencies: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Frequency response of cascaded second-order sections, like ``scipy.signal.sosfreqz``.

    ``H = prod_s (b0 + b1 z^-1 + b2 z^-2) / (a0 + a1 z^-1 + a2 z^-2)`` over
    the sections ``[b0, b1, b2, a0, a1, a2]``, on the grid of :func:`freqz` or
    at ``frequencies``. Differentiable in ``sos`` (and ``frequencies``).

    Args:
        sos: (..., n_sections, 6), ``sos[..., 3] != 0``.
        n_frequencies, whole, sample_rate: as for :func:`freqz`.
        frequencies: (..., F), keyword only; batch dimensions broadcast
            against ``sos.shape[:-2]`` (e.g. (n_filters, 1) for one frequency
            per filter).

    Returns:
        {returns}

    Example:
        >>> sos = torch.tensor([[[1.0, 0.0, 0.0, 1.0, -0.5, 0.0]] * 2])   # (1 filter, 2 sections, 6)
        >>> f, h = sosfreqz(sos, 256, sample_rate=8000.0)
        >>> f.shape, h.shape, float(h[0, 0].real)
        (torch.Size([256]), torch.Size([1, 256]), 4.0)
    """
    whole, sample_rate = _old_positions("sosfreqz", whole, legacy, sample_rate)
    _checks.sos(sos)
    sample_rate = _check_grid(n_frequencies, sample_rate, whole, frequencies, "sos", sos, {"sos": sos.shape[:-2]})
    _checks.nonzero("sos", sos, 3)
    returned, w = _angular(n_frequencies, sample_rate, whole, frequencies, sos)
    if w.ndim > 1:
        w = w.unsqueeze(-2)  # a section axis to broadcast against
    sections = _polynomial(sos[..., :3], w) / _polynomial(sos[..., 3:], w)
    response = sections[..., 0, :]
    for s in range(1, sections.shape[-2]):
        response = response * sections[..., s, :]
    return returned, response
