"""Differentiable filter design: coefficient formulas as plain tensor functions.

So far: the RBJ audio-EQ-cookbook band-pass biquad. The learnable-filterbank
issue adds the rest of the cookbook, Butterworth/Chebyshev sections,
gammatone cascades and frequency scales here.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor

__all__ = ["bandpass_biquad"]

Number = Union[float, int, Tensor]


def bandpass_biquad(centre_hz: Number, q: Number, sample_rate: float) -> tuple[Tensor, Tensor]:
    """RBJ cookbook band-pass biquad with a constant 0 dB peak gain.

    ``H(z) = (alpha - alpha z^-2) / ((1 + alpha) - 2 cos(w0) z^-1 + (1 - alpha) z^-2)``
    with ``w0 = 2 pi centre_hz / sample_rate`` and ``alpha = sin(w0) / (2 q)``;
    the gain at ``centre_hz`` is exactly 1. Differentiable in ``centre_hz`` and ``q``.

    Args:
        centre_hz: (...) centre frequencies in Hz, in (0, sample_rate / 2).
        q: (...) quality factors (> 0), broadcasting against ``centre_hz``.
        sample_rate: in Hz.

    Returns:
        ``b, a``: (..., 3) each, normalised so that ``a[..., 0] == 1``; float
        tensors in ``centre_hz``'s dtype (float32 for Python numbers).

    Example:
        >>> b, a = bandpass_biquad(torch.tensor([500.0, 1000.0]), 4.0, 16000.0)
        >>> b.shape, a.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """
    if not isinstance(sample_rate, (int, float)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    centre = torch.as_tensor(centre_hz, dtype=centre_hz.dtype if isinstance(centre_hz, Tensor) else torch.float32)
    if not centre.is_floating_point():
        raise TypeError(f"centre_hz must be a floating-point tensor or a number; got {centre.dtype}")
    q = torch.as_tensor(q, dtype=centre.dtype, device=centre.device)
    nyquist = sample_rate / 2
    if not torch.compiler.is_compiling():
        if bool(((centre <= 0) | (centre >= nyquist)).any()):
            raise ValueError(f"centre_hz must lie in (0, {nyquist:g}) Hz (sample_rate / 2); "
                             f"got values in [{float(centre.min()):g}, {float(centre.max()):g}]")
        if bool((q <= 0).any()):
            raise ValueError(f"q must be > 0; got a minimum of {float(q.min()):g}")
    w0 = 2 * math.pi * centre / sample_rate
    alpha = torch.sin(w0) / (2 * q)
    a0 = 1 + alpha
    zero = torch.zeros_like(alpha)
    b = torch.stack([alpha, zero, -alpha], dim=-1) / a0.unsqueeze(-1)
    a = torch.stack([torch.ones_like(alpha), -2 * torch.cos(w0) / a0, (1 - alpha) / a0], dim=-1)
    return b, a
