"""Butterworth and Chebyshev (type I and II) filters as second-order sections, matching scipy.

They follow ``scipy.signal.iirfilter``'s route: analog prototype ->
frequency transformation at the prewarped edges -> bilinear transform ->
``zpk2sos``'s pairing and ordering. Computed in complex128 whatever the
input dtype (pole positions near z = 1 and the pairing decisions need it),
rounded once at the end. :data:`CLASSIC` lists the families by scipy's
names, with the name of each one's extra argument.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .. import _checks
from ._arguments import Number, classic_arguments, classic_returns, documented

__all__ = ["butter_sos", "cheby1_sos", "cheby2_sos", "BTYPES", "CLASSIC", "ClassicDesign"]

BTYPES = ("lowpass", "highpass", "bandpass")


def _prototype(family: str, order: int, parameter: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Analog low-pass prototype with cut-off 1 rad/s: zeros (B, n_z), poles (B, order), gain (B,).

    ``parameter`` (B,) float64 is the ripple (cheby1) or attenuation (cheby2) in dB.
    """
    batch, device = parameter.shape[0], parameter.device
    m = torch.arange(-order + 1, order, 2, dtype=torch.float64, device=device)
    theta = math.pi * m / (2 * order)
    if family == "butter":
        # -exp(j theta): the middle pole of an odd order is exactly -1
        poles = torch.complex(-torch.cos(theta), -torch.sin(theta)).expand(batch, order)
        zeros = torch.zeros(batch, 0, dtype=torch.complex128, device=device)
        return zeros, poles, torch.ones(batch, dtype=torch.float64, device=device)
    # 10^(dB / 10) - 1, accurately for small dB
    excess = torch.expm1(parameter * (math.log(10) / 10))
    if family == "cheby1":
        eps = torch.sqrt(excess)
        mu = (torch.asinh(1 / eps) / order).unsqueeze(-1)
        # -sinh(mu + j theta): poles on an ellipse
        poles = torch.complex(-torch.sinh(mu) * torch.cos(theta), -torch.cosh(mu) * torch.sin(theta))
        gain = torch.prod(-poles, dim=-1).real
        if order % 2 == 0:
            gain = gain / torch.sqrt(1 + excess)  # even orders start the pass band at -ripple dB
        zeros = torch.zeros(batch, 0, dtype=torch.complex128, device=device)
        return zeros, poles, gain
    # cheby2: poles -1 / sinh(mu + j theta), zeros j / sin(m pi / (2 order)) for m != 0
    mu = (torch.asinh(torch.sqrt(excess)) / order).unsqueeze(-1)
    poles = -1 / torch.complex(torch.sinh(mu) * torch.cos(theta), torch.cosh(mu) * torch.sin(theta))
    m_zeros = m[m != 0]
    zeros = torch.complex(torch.zeros_like(m_zeros), 1 / torch.sin(m_zeros * math.pi / (2 * order)))
    zeros = zeros.expand(batch, zeros.shape[0])
    gain = (torch.prod(-poles, dim=-1) / torch.prod(-zeros, dim=-1)).real
    return zeros, poles, gain


def _zpk2sos(zeros: Tensor, poles: Tensor, gain: Tensor) -> Tensor:
    """scipy's ``zpk2sos(z, p, k, pairing="nearest")`` for a batch of digital filters.

    zeros, poles: (B, n) complex; gain: (B,) -> sos (B, ceil(n / 2), 6).
    The same pairing and ordering, decided per batch row on detached values
    with masks instead of deletions, so it stays batched and compiles:
    pick the remaining pole nearest the unit circle, pair it with its
    conjugate (or the real pole nearest the circle), give the section the
    nearest zeros, and fill sections from the last; the gain goes into the
    first section. Needs as many zeros as poles (true after a bilinear
    transform), so scipy's "no zeros left" branches never arise.
    """
    batch, n = poles.shape
    device = poles.device
    if n % 2:
        # an odd count gets a pole and a zero at the origin, as scipy does
        pad = torch.zeros(batch, 1, dtype=poles.dtype, device=device)
        zeros, poles = torch.cat([zeros, pad], dim=-1), torch.cat([poles, pad], dim=-1)
        n += 1
    tol = 100 * torch.finfo(torch.float64).eps

    def split(roots):
        # scipy's _cplxreal: real within tol; of a conjugate pair keep the
        # member with positive imaginary part.
        detached = roots.detach()
        real = detached.imag.abs() <= tol * detached.abs()
        values = torch.where(real, torch.complex(roots.real, torch.zeros_like(roots.real)), roots)
        return values, real, real | (detached.imag > 0)

    z_values, z_real, z_alive = split(zeros)
    p_values, p_real, p_alive = split(poles)
    distance_to_circle = (1 - p_values.detach().abs()).abs()
    index = torch.arange(n, device=device)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=device)
    nothing = torch.zeros(batch, 1, dtype=poles.dtype, device=device)

    def first_of(score, mask):
        return torch.where(mask, score, inf).argmin(dim=-1, keepdim=True)

    def count(mask):
        return mask.sum(dim=-1, keepdim=True)

    sections = []
    for _ in range(n // 2):
        i1 = first_of(distance_to_circle, p_alive)
        p1, p1_real = p_values.gather(-1, i1), p_real.gather(-1, i1)
        p_alive = p_alive & (index != i1)
        real_poles_left = p_alive & p_real
        # scipy's special case (1): the last real pole goes with a real zero
        # in a first-order section; (2): one real pole and one real zero
        # left, so a complex pole must take complex zeros.
        last_real = p1_real & (count(real_poles_left) == 0)
        complex_zeros = (~last_real & ~p1_real & (count(real_poles_left) == 1)
                         & (count(p_alive) + 1 == count(z_alive)) & (count(z_alive & z_real) == 1))
        i2 = first_of(distance_to_circle, real_poles_left)
        second_real = p1_real & ~last_real
        p2 = torch.where(last_real, nothing, torch.where(second_real, p_values.gather(-1, i2), p1.conj()))
        p_alive = p_alive & ~((index == i2) & second_real)

        z_distance = (z_values.detach() - p1.detach()).abs()
        j1 = torch.where(last_real, first_of(z_distance, z_alive & z_real),
                         torch.where(complex_zeros, first_of(z_distance, z_alive & ~z_real),
                                     first_of(z_distance, z_alive)))
        z1, z1_real = z_values.gather(-1, j1), z_real.gather(-1, j1)
        z_alive = z_alive & (index != j1)
        second_zero_real = z1_real & ~last_real
        j2 = first_of(z_distance, z_alive & z_real)
        z2 = torch.where(last_real, nothing, torch.where(second_zero_real, z_values.gather(-1, j2), z1.conj()))
        z_alive = z_alive & ~((index == j2) & second_zero_real)

        one = torch.ones(batch, 1, dtype=torch.float64, device=device)
        sections.append(torch.cat([one, -(z1 + z2).real, (z1 * z2).real, one, -(p1 + p2).real, (p1 * p2).real], -1))
    sections.reverse()  # the poles nearest the circle go last
    first = torch.cat([sections[0][:, :3] * gain.unsqueeze(-1), sections[0][:, 3:]], dim=-1)
    return torch.stack([first] + sections[1:], dim=-2)


def _iir_sos(family: str, order: int, cutoff_hz: Number, sample_rate: float, btype: str,
             parameter_name: Optional[str] = None, parameter: Optional[Number] = None) -> Tensor:
    """scipy's ``iirfilter(order, cutoff_hz, rp/rs, btype, ftype=family, fs=sample_rate, output="sos")``, batched."""
    order = _checks.integer("order", order, 1)
    sample_rate = _checks.sample_rate(sample_rate)
    _checks.choice("btype", btype, BTYPES)
    arguments = {"cutoff_hz": cutoff_hz}
    if parameter_name is not None:
        arguments[parameter_name] = parameter
    # a band-pass cutoff_hz has one dimension more than the batch: checked below
    tensors = _checks.floats(arguments, broadcast=False)
    cutoff = tensors[0]
    band = btype == "bandpass"
    if band and (cutoff.ndim == 0 or cutoff.shape[-1] != 2):
        raise ValueError(f"cutoff_hz must have a last dimension of 2 (low, high) for btype='bandpass'; "
                         f"got shape {tuple(cutoff.shape)}")
    batch_shape = cutoff.shape[:-1] if band else cutoff.shape
    if parameter_name is not None:
        label = "cutoff_hz[..., 0]" if band else "cutoff_hz"   # a band's batch is that of its low edges
        batch_shape = _checks.broadcast_to({label: batch_shape, parameter_name: tensors[1].shape})
    nyquist = sample_rate / 2
    _checks.inside("cutoff_hz", cutoff, 0.0, nyquist, "Hz", "sample_rate / 2")
    if band:
        _checks.below("cutoff_hz[..., 0] (low)", cutoff[..., 0], "cutoff_hz[..., 1] (high)", cutoff[..., 1])
    if parameter_name is not None:
        _checks.positive(parameter_name, tensors[1])

    dtype = cutoff.dtype
    n_batch = math.prod(batch_shape)
    edges = cutoff.to(torch.float64).expand(batch_shape + ((2,) if band else ())).reshape(n_batch, 2 if band else 1)
    value = (tensors[1].to(torch.float64).expand(batch_shape).reshape(n_batch) if parameter_name is not None
             else torch.zeros(n_batch, dtype=torch.float64, device=cutoff.device))
    zeros, poles, gain = _prototype(family, order, value)
    # scipy's prewarping: normalise to Nyquist, then 2 fs tan(pi Wn / fs) with fs = 2
    warped = 4 * torch.tan(math.pi * (edges / nyquist) / 2)
    degree = poles.shape[-1] - zeros.shape[-1]
    if btype == "lowpass":
        zeros, poles = warped * zeros, warped * poles
        gain = gain * warped.squeeze(-1) ** degree
    elif btype == "highpass":
        gain = gain * (torch.prod(-zeros, dim=-1) / torch.prod(-poles, dim=-1)).real
        # zeros at infinity move to the origin
        zeros = torch.cat([warped / zeros, torch.zeros(n_batch, degree, dtype=zeros.dtype, device=zeros.device)], -1)
        poles = warped / poles
    else:
        width = (warped[:, 1] - warped[:, 0]).unsqueeze(-1)
        centre_squared = (warped[:, 0] * warped[:, 1]).unsqueeze(-1)

        def shift(roots):
            # each low-pass root r becomes the two roots of s^2 - r bw s + wo^2
            if roots.shape[-1] == 0:
                return roots  # (inductor cannot lower complex ops on empty tensors)
            scaled = roots * (width / 2)
            offset = torch.sqrt(scaled.square() - centre_squared)
            return torch.cat([scaled + offset, scaled - offset], dim=-1)

        zeros = torch.cat([shift(zeros), torch.zeros(n_batch, degree, dtype=zeros.dtype, device=zeros.device)], -1)
        poles = shift(poles)
        gain = gain * width.squeeze(-1) ** degree
    # bilinear transform with fs = 2: z = (4 + s) / (4 - s); zeros at infinity go to z = -1
    gain = gain * (torch.prod(4 - zeros, dim=-1) / torch.prod(4 - poles, dim=-1)).real
    missing = poles.shape[-1] - zeros.shape[-1]
    zeros = torch.cat([(4 + zeros) / (4 - zeros),
                       torch.full((n_batch, missing), -1, dtype=zeros.dtype, device=zeros.device)], dim=-1)
    poles = (4 + poles) / (4 - poles)
    sos = _zpk2sos(zeros, poles, gain)
    return sos.reshape(batch_shape + sos.shape[-2:]).to(dtype)


@documented(arguments=classic_arguments(), returns=classic_returns())
def butter_sos(order: int, cutoff_hz: Number, sample_rate: float, btype: str = "lowpass") -> Tensor:
    """Butterworth filter as second-order sections, like ``scipy.signal.butter(..., output="sos")``.

    ``|H(e^jw)|^2 = 1 / (1 + (tan(w / 2) / tan(wc / 2))^(2 order))`` for the
    low-pass: maximally flat, -3 dB at the cut-off. The analog prototype's
    poles ``-exp(j pi m / (2 order))``, ``m = 1 - order, 3 - order, ..., order - 1``,
    are moved to the prewarped cut-off(s), bilinear-transformed and paired
    into sections as scipy's ``zpk2sos`` does. Differentiable in ``cutoff_hz``.

    Args:
        {arguments}

    Returns:
        {returns}

    Example:
        >>> butter_sos(4, torch.tensor([[300.0, 3400.0]]), 16000.0, btype="bandpass").shape
        torch.Size([1, 4, 6])
    """
    return _iir_sos("butter", order, cutoff_hz, sample_rate, btype)


@documented(arguments=classic_arguments("ripple_db: (...) pass-band ripple in dB (> 0)."),
            returns=classic_returns("ripple_db"))
def cheby1_sos(order: int, ripple_db: Number, cutoff_hz: Number, sample_rate: float,
               btype: str = "lowpass") -> Tensor:
    """Chebyshev type I filter as second-order sections, like ``scipy.signal.cheby1(..., output="sos")``.

    ``|H|^2 = 1 / (1 + eps^2 T_order(tan(w / 2) / tan(wc / 2))^2)``, ``eps^2 = 10^(ripple_db / 10) - 1``:
    equiripple pass band, the gain first leaves ``[-ripple_db, 0]`` dB at the
    cut-off. Prototype poles ``-sinh(mu + j theta_m)``, ``mu = asinh(1 / eps) / order``.
    Differentiable in ``cutoff_hz`` and ``ripple_db``.

    Args:
        {arguments}

    Returns:
        {returns}
    """
    return _iir_sos("cheby1", order, cutoff_hz, sample_rate, btype, "ripple_db", ripple_db)


@documented(arguments=classic_arguments("attenuation_db: (...) stop-band attenuation in dB (> 0)."),
            returns=classic_returns("attenuation_db"))
def cheby2_sos(order: int, attenuation_db: Number, cutoff_hz: Number, sample_rate: float,
               btype: str = "lowpass") -> Tensor:
    """Chebyshev type II filter as second-order sections, like ``scipy.signal.cheby2(..., output="sos")``.

    ``|H|^2 = 1 / (1 + 1 / (eps^2 T_order(tan(wc / 2) / tan(w / 2))^2))``,
    ``eps^2 = 1 / (10^(attenuation_db / 10) - 1)``: flat pass band, equiripple
    stop band at least ``attenuation_db`` down from the cut-off on (the cut-off
    is the stop-band edge). Prototype poles ``-1 / sinh(mu + j theta_m)``, zeros
    ``j / sin(m pi / (2 order))``. Differentiable in ``cutoff_hz`` and ``attenuation_db``.

    Args:
        {arguments}

    Returns:
        {returns}
    """
    return _iir_sos("cheby2", order, cutoff_hz, sample_rate, btype, "attenuation_db", attenuation_db)


class ClassicDesign(NamedTuple):
    """A family: ``function(order, [parameter,] cutoff_hz, sample_rate, btype) -> sos``."""

    function: Callable[..., Tensor]
    parameter: Optional[str]   # the name of its ripple or attenuation argument, if it has one


CLASSIC: dict[str, ClassicDesign] = {
    "butter": ClassicDesign(butter_sos, None),
    "cheby1": ClassicDesign(cheby1_sos, "ripple_db"),
    "cheby2": ClassicDesign(cheby2_sos, "attenuation_db"),
}
