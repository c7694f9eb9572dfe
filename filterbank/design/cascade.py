"""Resonator cascades (pole-zero filter cascades, cochlear models) as one banded linear recurrence.

Stage ``k`` of ``K`` is a two-pole resonator with poles ``r_k e^(+-j theta_k)``,
``theta_k = 2 pi f_k / sample_rate`` and ``r_k = exp(-2 pi zeta_k f_k / sample_rate)``
(``zeta_k`` the damping: the stage's -3 dB bandwidth is about ``2 zeta_k f_k``);
stage 0 reads the input and every later stage reads the previous stage's
output delayed by one sample::

    w_k[t] = 2 r_k cos(theta_k) w_k[t-1] - r_k^2 w_k[t-2] + g_k v_k[t]
    y_k[t] = w_k[t-1]
    v_0[t] = x[t],   v_k[t] = y_{k-1}[t-1]

so ``Y_k = z^-k prod_{j<=k} H_j X`` with ``H_j(z) = g_j z^-1 / (1 - 2 r_j cos(theta_j) z^-1 + r_j^2 z^-2)``
(the numerator ``z^-1`` makes ``h_j[n]`` the sampled damped sine ``r^(n-1) sin(n theta) / sin(theta)``).

**The recurrence.** With each stage's state ``s_k[t] = (w_k[t], w_k[t-1])``
stacked stage after stage, ``S[t] = (s_0[t], ..., s_{K-1}[t])`` (``C = 2K``),
the cascade is ``S[t] = A S[t-1] + b x[t]``: row ``2k`` is the resonator,
``w_k[t] = g_k S_{2k-1}[t-1] + a1_k S_{2k}[t-1] + a2_k S_{2k+1}[t-1]``
(``S_{2k-1}[t-1] = w_{k-1}[t-2] = v_k[t]``: the one-sample delay makes the
coupling read the previous step, and the numerator ``z^-1`` puts it on the
sub-diagonal), and row ``2k + 1`` copies ``w_k``. ``A`` is tridiagonal,
bandwidths ``(1, 1)``, the least a cascade of complex-pole stages can have (a
lower-triangular ``A`` would have real poles only; coupling lies below the
diagonal). In band storage (``filterbank.coupled``)::

    band[2k]     = [g_k (0 for k = 0), 2 r_k cos(theta_k), -r_k^2]
    band[2k + 1] = [1, 0, 0]

and ``b = (g_0, 0, ..., 0)``. ``A`` is block lower-triangular, so its
eigenvalues are the stages' poles, all inside the unit circle.

**Gains.** ``g_k = 1 - 2 r_k cos(theta_k) + r_k^2`` gives each stage unit gain
at DC: what travels down the cascade below a stage's resonance passes at a
gain of at least about 1, so the low bands at the end of a long cascade are
not lost under float32 rounding (normalising each stage at its centre
instead would attenuate them by about 1/Q per stage passed). The band
outputs are then read out as ``c_k y_k`` with ``c_k = 1 / |prod_{j<=k}
H_j(e^(j theta_k))|``: every band has gain exactly 1 at its own centre
frequency ``f_k``, so the bands have comparable levels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .. import _checks
from ._arguments import Number

__all__ = ["CASCADE_BANDWIDTHS", "CascadeRecurrence", "cascade_recurrence", "cascade_response"]

CASCADE_BANDWIDTHS = (1, 1)


class CascadeRecurrence(NamedTuple):
    """The cascade as ``S[t] = A S[t-1] + b x[t]``, band ``k`` = ``readout[k] S_{2k+1}[t]``."""

    band: Tensor      # (..., 2 n_stages, 3): A in band storage, bandwidths CASCADE_BANDWIDTHS
    input: Tensor     # (..., 2 n_stages): b
    readout: Tensor   # (..., n_stages): c


def _stages(frequency_hz: Number, damping: Number, sample_rate: float):
    """Checked, broadcast ``(theta, r, 1 - r)``, each (..., n_stages)."""
    sample_rate = _checks.sample_rate(sample_rate)
    frequency, damping = _checks.floats({"frequency_hz": frequency_hz, "damping": damping})
    _checks.inside("frequency_hz", frequency, 0.0, sample_rate / 2, "Hz", "sample_rate / 2")
    _checks.positive("damping", damping)
    frequency, damping = torch.broadcast_tensors(frequency, damping)
    if frequency.ndim == 0 or frequency.shape[-1] == 0:
        raise ValueError(f"frequency_hz and damping must broadcast to (..., n_stages) with n_stages >= 1; got shape "
                         f"{tuple(frequency.shape)}")
    decay = 2 * math.pi * damping * frequency / sample_rate
    # 1 - r from expm1: near the unit circle r itself has lost the digits that matter
    return 2 * math.pi * frequency / sample_rate, torch.exp(-decay), -torch.expm1(-decay)


def _distance(r: Tensor, one_minus_r: Tensor, angle: Tensor) -> Tensor:
    """``|1 - r e^(j angle)|^2 = (1 - r)^2 + 4 r sin^2(angle / 2)``, written without cancellation."""
    return one_minus_r.square() + 4 * r * torch.sin(angle / 2).square()


def _log_stage_gains(theta: Tensor, r: Tensor, one_minus_r: Tensor, w: Tensor) -> Tensor:
    """``log |H_j(e^(j w))|``: (..., n_stages) stages and (..., F) radians -> (..., n_stages, F)."""
    theta, r, one_minus_r = theta.unsqueeze(-1), r.unsqueeze(-1), one_minus_r.unsqueeze(-1)
    w = w.unsqueeze(-2)
    # |A(e^(j w))|^2 = |1 - r e^(j(theta - w))|^2 |1 - r e^(-j(theta + w))|^2, and g = |A(1)|
    log_gain = torch.log(_distance(r, one_minus_r, theta))
    return log_gain - 0.5 * (torch.log(_distance(r, one_minus_r, w - theta))
                             + torch.log(_distance(r, one_minus_r, w + theta)))


def cascade_recurrence(frequency_hz: Number, damping: Number, sample_rate: float) -> CascadeRecurrence:
    """The resonator cascade of the module docstring as a tridiagonal linear recurrence.

    ``S[t] = A S[t-1] + b x[t]``, band ``k`` is ``readout[k] S[2k + 1, t]``;
    run it with ``filterbank.coupled.banded_recurrence(..., nonlinearity="identity")``
    and ``bandwidths=CASCADE_BANDWIDTHS``. Differentiable in both parameters.

    Args:
        frequency_hz: (..., n_stages) each stage's pole frequency in Hz, in
            (0, sample_rate / 2); stage 0 reads the input.
        damping: (..., n_stages) each stage's damping (> 0), broadcasting
            against ``frequency_hz``: pole radius ``exp(-2 pi damping f / sample_rate)``.
        sample_rate: in Hz.

    Returns:
        ``CascadeRecurrence(band, input, readout)``: ``band`` (..., 2 n_stages, 3)
        (diagonals -1, 0, +1 of each row), ``input`` (..., 2 n_stages) and
        ``readout`` (..., n_stages), in the dtype of the tensor arguments.

    Equivalent Python loop (one stage after another)::

        v = x
        for k in range(n_stages):
            y[k] = g[k] * lfilter([0, 1], [1, -2 r cos, r^2], v);  v = delay(y[k], 1)
        bands = readout[:, None] * y

    Example:
        >>> recurrence = cascade_recurrence(torch.tensor([4000.0, 2000.0, 1000.0]), 0.1, 16000)
        >>> recurrence.band.shape, recurrence.readout.shape
        (torch.Size([6, 3]), torch.Size([3]))
    """
    theta, r, one_minus_r = _stages(frequency_hz, damping, sample_rate)
    gain = _distance(r, one_minus_r, theta)                               # unit DC gain of every stage
    zeros, ones = torch.zeros_like(r), torch.ones_like(r)
    coupling = torch.cat([zeros[..., :1], gain[..., 1:]], dim=-1)         # stage 0 reads x through b instead
    resonator = torch.stack([coupling, 2 * r * torch.cos(theta), -r.square()], dim=-1)
    copy = torch.stack([ones, zeros, zeros], dim=-1)
    band = torch.stack([resonator, copy], dim=-2).flatten(-3, -2)         # rows 2k, 2k + 1
    n_states = band.shape[-2]
    b = torch.cat([gain[..., :1], gain.new_zeros(gain.shape[:-1] + (n_states - 1,))], dim=-1)
    # Band k at its centre: sum over the stages j <= k of log |H_j(e^(j theta_k))|.
    cumulative = torch.cumsum(_log_stage_gains(theta, r, one_minus_r, theta), dim=-2)
    readout = torch.exp(-torch.diagonal(cumulative, dim1=-2, dim2=-1))
    return CascadeRecurrence(band, b, readout)


def cascade_response(frequency_hz: Number, damping: Number, sample_rate: float, frequencies: Tensor) -> Tensor:
    """Complex frequency responses of the bands of :func:`cascade_recurrence` (read-out gains included).

    ``readout[k] e^(-j w k) prod_{j<=k} H_j(e^(j w))``, the ``e^(-j w k)`` the delays between the stages.

    Args:
        frequency_hz, damping, sample_rate: as for :func:`cascade_recurrence`.
        frequencies: (..., F) Hz at which to evaluate, broadcasting against the stages' batch.

    Returns:
        (..., n_stages, F) complex.
    """
    theta, r, one_minus_r = _stages(frequency_hz, damping, sample_rate)
    _checks.tensor("frequencies", frequencies, theta, "frequency_hz")
    if frequencies.ndim == 0:
        raise ValueError("frequencies must have shape (..., F); got a 0-d tensor")
    w = 2 * math.pi * frequencies / sample_rate
    log_magnitude = torch.cumsum(_log_stage_gains(theta, r, one_minus_r, w), dim=-2)
    readout = cascade_recurrence(frequency_hz, damping, sample_rate).readout
    log_magnitude = log_magnitude + torch.log(readout).unsqueeze(-1)
    # arg A_j(e^(j w)), A = 1 - 2 r cos(theta) z^-1 + r^2 z^-2; each stage adds z^-1, each coupling one more.
    w_, cos, r_ = w.unsqueeze(-2), torch.cos(theta).unsqueeze(-1), r.unsqueeze(-1)
    real = 1 - 2 * r_ * cos * torch.cos(w_) + r_.square() * torch.cos(2 * w_)
    imaginary = 2 * r_ * cos * torch.sin(w_) - r_.square() * torch.sin(2 * w_)
    delays = 2 * torch.arange(theta.shape[-1], dtype=w.dtype, device=w.device) + 1
    phase = -delays.unsqueeze(-1) * w_ - torch.cumsum(torch.atan2(imaginary, real), dim=-2)
    return torch.polar(torch.exp(log_magnitude), phase)
