"""Broadcasting of shapes without ``torch.broadcast_shapes``.

``torch.broadcast_shapes`` imports torch's symbolic-shape machinery (and
sympy) on first use, about a second of start-up for a process that only
filters; the rule itself is short.
"""

from __future__ import annotations

import torch

__all__ = ["broadcast_shapes"]


def broadcast_shapes(*shapes) -> torch.Size:
    """The shape that ``shapes`` broadcast to; RuntimeError, as torch's, when they do not."""
    if torch.compiler.is_compiling():
        return torch.broadcast_shapes(*shapes)  # symbolic sizes; the import is paid by compiling anyway
    ndim = max([len(shape) for shape in shapes] + [0])
    result = [1] * ndim
    for shape in shapes:
        for index, size in enumerate(shape, start=ndim - len(shape)):
            size = int(size)
            if size < 0:
                raise RuntimeError(f"broadcast_shapes: negative size {size} in {tuple(shape)}")
            if result[index] == 1:
                result[index] = size
            elif size != 1 and size != result[index]:
                raise RuntimeError(f"shape mismatch: {tuple(shape)} does not broadcast with size {result[index]} "
                                   f"at dimension {index - ndim}")
    return torch.Size(result)
