"""The dtype every kernel computes in: float16/bfloat16 in float32, float32 and float64 as they are."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compute_dtype", "compute"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # numba has no half-precision arithmetic, and half-precision recurrences lose too much.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def compute(tensor: Tensor) -> Tensor:
    """``tensor`` in its compute dtype, contiguous (a no-op when it already is)."""
    return tensor.to(compute_dtype(tensor.dtype)).contiguous()
