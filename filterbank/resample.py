"""Rational resampling with a windowed-sinc low-pass (what the CLI uses for other sample rates).

``y = resample(x, orig_rate, new_rate)``: up by L, low-pass at the lower
Nyquist, down by M (L / M the reduced ratio), computed polyphase: one strided
convolution per output phase, so nothing runs at L times the rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _checks

__all__ = ["resample"]


def _kernel(up: int, down: int, zeros: int, beta: float, dtype, device) -> Tensor:
    """Kaiser-windowed sinc at the up-sampled rate, cut-off at the lower Nyquist; gain ``up``."""
    cutoff = 1.0 / max(up, down)  # in units of the up-sampled Nyquist
    half = zeros * max(up, down)
    n = torch.arange(-half, half + 1, dtype=torch.float64)
    window = torch.special.i0(beta * torch.sqrt(torch.clamp(1 - (n / half) ** 2, min=0))) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64))
    taps = cutoff * torch.sinc(cutoff * n) * window * up
    return taps.to(dtype=dtype, device=device)


def resample(x: Tensor, orig_rate: int, new_rate: int, *, zeros: int = 16, beta: float = 8.0) -> Tensor:
    """Resample ``x`` (..., time) from ``orig_rate`` to ``new_rate`` Hz.

    Args:
        x: (..., time) float tensor.
        orig_rate, new_rate: positive ints (Hz).
        zeros: zero crossings of the sinc on each side (filter length).
        beta: Kaiser window parameter (stop-band attenuation; 8 gives about 80 dB).

    Returns:
        (..., ceil(time * new_rate / orig_rate)) in ``x``'s dtype, aligned so
        that output sample k is at time k / new_rate.
    """
    _checks.signal("x", x)
    orig_rate = _checks.integer("orig_rate", orig_rate, 1)
    new_rate = _checks.integer("new_rate", new_rate, 1)
    zeros = _checks.integer("zeros", zeros, 1)
    beta = _checks.number("beta", beta, 0.0, closed=(True, False))
    if orig_rate == new_rate:
        return x
    divisor = math.gcd(orig_rate, new_rate)
    up, down = new_rate // divisor, orig_rate // divisor
    taps = _kernel(up, down, zeros, beta, x.dtype, x.device)
    half = (taps.shape[0] - 1) // 2
    leading, n_time = x.shape[:-1], x.shape[-1]
    n_out = -(-n_time * up // down)
    signal = x.reshape(-1, 1, n_time)
    # Output k sits at up-sampled index k * down; with taps centred there, it
    # sums taps[half + k down - j up] * x[j]. Output phase p = (k down) mod up
    # uses the taps of that phase, a plain convolution over x at stride 1.
    outputs = x.new_zeros((signal.shape[0], n_out))
    for phase in range(up):
        ks = torch.arange(n_out, device=x.device)
        ks = ks[(ks * down) % up == phase]
        if ks.numel() == 0:
            continue
        # taps for this phase: indices half + phase - m * up for integer m.
        first = (half + phase) % up
        phase_taps = taps[first::up]                       # taps[first + i up], i = 0..
        offset = (half + phase - first) // up              # j = (k down - phase) / up + offset - i
        kernel = phase_taps.flip(0).view(1, 1, -1)
        padded = F.pad(signal, (kernel.shape[-1], kernel.shape[-1]))
        full = F.conv1d(padded, kernel).squeeze(1)         # full[:, s] = sum_i kernel[i] padded[s + i]
        # We need y[k] = sum_i phase_taps[i] x[(k down - phase) // up + offset - i].
        centre = (ks * down - phase) // up + offset        # index of x paired with phase_taps[0]
        # full[:, s] pairs kernel[-1] = phase_taps[0] with padded[s + len - 1] = x[s - 1].
        outputs[:, ks] = full[:, centre + 1]
    return outputs.reshape(leading + (n_out,))
