"""The op layer of the coupled recurrences: ``h[t] = f(A h[t-1] + u[t])`` with A banded or CSR.

``filterbank::banded_recurrence`` and ``filterbank::csr_recurrence`` run the
recurrence; their backwards (``..._backward``) run the reverse-time
recursion with ``A^T`` (docs/design.md, "Coupled recurrences"), from the
saved output alone: ``f'`` is a function of ``h = f(z)`` for every
nonlinearity taken. ``filterbank::input_projection`` is the RNN layers'
input-to-hidden term for every time step at once. All have fake
implementations for ``torch.compile``.
When a graph of the backward is asked for (double backward), the backward
is the reference's recursion written in torch operations, differentiable
by autograd. The storage conversions ``band_to_dense``/``dense_to_band`` are
the reference's, for the layers above.

Kernels are chosen by ``filterbank._ops``'s one backend function. Shapes
(channels-last, one row per sequence; ``filterbank.kernels.reference``):

    u, h: (rows, time, C)   h0: (rows, C)   band: (M, C, W)   values: (M, nnz)
    crow: (C + 1,) int64    col: (nnz,) int64   band_index, values_index: (rows,) int64
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _checks
from ._ops import _backend
from .kernels import _memory
from .kernels import reference as _reference
from .kernels.reference import band_to_dense, dense_to_band

__all__ = ["banded_recurrence", "banded_recurrence_backward", "csr_recurrence", "csr_recurrence_backward",
           "input_projection", "band_to_dense", "dense_to_band"]


# --------------------------------------------------------------------------
# Banded.


@torch.library.custom_op("filterbank::banded_recurrence", mutates_args=())
def banded_recurrence(u: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                      nonlinearity: str) -> Tensor:
    """``h[n, t] = f(A h[n, t-1] + u[n, t])``, ``A[i, i + d - lower] = band[band_index[n], i, d]``;
    h (rows, time, C)."""
    return _backend("banded_recurrence", u.device).banded_recurrence(u, band, band_index, h0, lower, nonlinearity)


@banded_recurrence.register_fake
def _(u, band, band_index, h0, lower, nonlinearity):
    return u.new_empty(u.shape)


@torch.library.custom_op("filterbank::banded_recurrence_backward", mutates_args=())
def banded_recurrence_backward(grad_h: Tensor, h: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_band, grad_h0)`` for a gradient ``grad_h`` on :func:`banded_recurrence`'s output ``h``."""
    backend = _backend("banded_recurrence_backward", h.device)
    return backend.banded_recurrence_backward(grad_h, h, band, band_index, h0, lower, nonlinearity)


@banded_recurrence_backward.register_fake
def _(grad_h, h, band, band_index, h0, lower, nonlinearity):
    return h.new_empty(h.shape), band.new_empty(band.shape), h0.new_empty(h0.shape)


def _banded_setup_context(ctx, inputs, output):
    u, band, band_index, h0, lower, nonlinearity = inputs
    ctx.save_for_backward(output, band, band_index, h0)
    ctx.options = (lower, nonlinearity)


def _banded_backward(ctx, grad_h):
    h, band, band_index, h0 = ctx.saved_tensors
    lower, nonlinearity = ctx.options
    if torch.is_grad_enabled():
        grads = _reference.banded_recurrence_backward(grad_h, h, band, band_index, h0, lower, nonlinearity)
    else:
        # grad_h as it comes (sum() sends an expanded one): the kernels copy it where they must, into a
        # buffer they then reuse for grad_u.
        grads = banded_recurrence_backward(grad_h, h, band, band_index, h0, lower, nonlinearity)
    grad_u, grad_band, grad_h0 = grads
    needs = ctx.needs_input_grad
    return (grad_u if needs[0] else None, grad_band if needs[1] else None, None, grad_h0 if needs[3] else None,
            None, None)


banded_recurrence.register_autograd(_banded_backward, setup_context=_banded_setup_context)


# --------------------------------------------------------------------------
# CSR.


@torch.library.custom_op("filterbank::csr_recurrence", mutates_args=())
def csr_recurrence(u: Tensor, crow: Tensor, col: Tensor, values: Tensor, values_index: Tensor, h0: Tensor,
                   nonlinearity: str) -> Tensor:
    """``h[n, t] = f(A h[n, t-1] + u[n, t])``, A the CSR matrix ``(crow, col, values[values_index[n]])``."""
    # The functional API checks the pattern with the caller's names; this is
    # the backstop for direct op calls: the kernels index with it unchecked.
    _checks.csr_pattern(crow, col, u.shape[-1])
    backend = _backend("csr_recurrence", u.device)
    return backend.csr_recurrence(u, crow, col, values, values_index, h0, nonlinearity)


@csr_recurrence.register_fake
def _(u, crow, col, values, values_index, h0, nonlinearity):
    return u.new_empty(u.shape)


@torch.library.custom_op("filterbank::csr_recurrence_backward", mutates_args=())
def csr_recurrence_backward(grad_h: Tensor, h: Tensor, crow: Tensor, col: Tensor, values: Tensor,
                            values_index: Tensor, h0: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_u, grad_values, grad_h0)`` for a gradient ``grad_h`` on :func:`csr_recurrence`'s output ``h``."""
    backend = _backend("csr_recurrence_backward", h.device)
    return backend.csr_recurrence_backward(grad_h, h, crow, col, values, values_index, h0, nonlinearity)


@csr_recurrence_backward.register_fake
def _(grad_h, h, crow, col, values, values_index, h0, nonlinearity):
    return h.new_empty(h.shape), values.new_empty(values.shape), h0.new_empty(h0.shape)


def _csr_setup_context(ctx, inputs, output):
    u, crow, col, values, values_index, h0, nonlinearity = inputs
    ctx.save_for_backward(output, crow, col, values, values_index, h0)
    ctx.nonlinearity = nonlinearity


def _csr_backward(ctx, grad_h):
    h, crow, col, values, values_index, h0 = ctx.saved_tensors
    if torch.is_grad_enabled():
        grads = _reference.csr_recurrence_backward(grad_h, h, crow, col, values, values_index, h0, ctx.nonlinearity)
    else:
        grads = csr_recurrence_backward(grad_h, h, crow, col, values, values_index, h0, ctx.nonlinearity)
    grad_u, grad_values, grad_h0 = grads
    needs = ctx.needs_input_grad
    return (grad_u if needs[0] else None, None, None, grad_values if needs[3] else None, None,
            grad_h0 if needs[5] else None, None)


csr_recurrence.register_autograd(_csr_backward, setup_context=_csr_setup_context)


# --------------------------------------------------------------------------
# The input-to-hidden term of the RNN layers.
#
# ``x W^T + b`` for every time step, one matrix product. On the CPU the
# output goes into a recycled huge-page buffer (``kernels/_memory.py``): it
# is as large as the layer's output and freed after the recurrence reads it,
# and into fresh memory the product spent as long in page faults as in the
# arithmetic (measured at 32000 x 64 -> 1024: 47 ms against 25 ms). The
# weight's gradient is taken as ``(x^T g)^T``, the operand order the CPU's
# BLAS runs faster here (22 ms against 33 ms for ``g^T x``).


@torch.library.custom_op("filterbank::input_projection", mutates_args=())
def input_projection(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """(R, H) ``x @ weight.T + bias`` for ``x`` (R, I), ``weight`` (H, I), ``bias`` (H,) or None."""
    if x.device.type != "cpu":
        return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
    out = _memory.empty((x.shape[0], weight.shape[0]), x.dtype)
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


@input_projection.register_fake
def _(x, weight, bias):
    return x.new_empty((x.shape[0], weight.shape[0]))


def _projection_setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)


def _projection_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad_x = grad @ weight if needs[0] else None
    grad_weight = (x.t() @ grad).t() if needs[1] else None
    grad_bias = grad.sum(0) if needs[2] else None
    return grad_x, grad_weight, grad_bias


input_projection.register_autograd(_projection_backward, setup_context=_projection_setup_context)
