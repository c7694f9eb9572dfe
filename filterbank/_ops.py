"""The op layer: ``torch.library`` custom ops behind every filter in filterbank.

One op does all the filtering: ``filterbank::iir_cascade`` runs a cascade of
IIR sections per channel (``lfilter`` is one section of any order, ``sosfilt``
several second-order ones). Its backward is a second op,
``filterbank::iir_cascade_backward``, which runs the reverse-time recursion
(../shared/DESIGN.md); both have fake implementations, so ``torch.compile``
traces through them without graph breaks. Kernels are picked by device: the
numba kernel on the CPU, the pure-torch reference on any other device (slow
but correct; a CUDA kernel takes its place in a later issue).

When a graph of the backward is asked for (``create_graph=True``), the
backward is instead composed from the forward op itself, time-reversed, so
derivatives of any order work.

Shapes (``P`` channels, ``G`` distinct input rows, ``S`` sections, order ``K``):

    x: (G, time)   x_index: (P,) int64   b, a: (P, S, K + 1)   zi: (P, S, K)
    y: (P, time)   zf: (P, S, K)
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .kernels import cpu as _cpu
from .kernels import reference as _reference

__all__ = ["iir_cascade", "iir_cascade_backward"]

_warned_devices: set[str] = set()


def _fallback_warning(device: torch.device) -> None:
    if device.type not in _warned_devices:
        _warned_devices.add(device.type)
        warnings.warn(
            f"filterbank has no kernel for {device.type} tensors yet; using the pure-torch reference "
            "implementation (correct, but it loops over time in Python and is slow). "
            "Move the tensors to the CPU for the fast path.",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_a0(a: Tensor) -> None:
    # The functional API checks this with the caller's indices; this is the
    # backstop for direct op calls and for code under torch.compile.
    zero = a[..., 0] == 0
    if bool(zero.any()):
        channel, section = (int(i) for i in zero.nonzero()[0])
        raise ValueError(f"a[..., 0] must be non-zero; got 0 at channel {channel}, section {section}")


@torch.library.custom_op("filterbank::iir_cascade", mutates_args=())
def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Filter each channel ``p`` of ``x[x_index[p]]`` through its cascade of sections.

    Args:
        x: (G, time), float16/bfloat16/float32/float64.
        x_index: (P,) int64, the row of ``x`` each channel reads.
        b, a: (P, S, K + 1), raw coefficients (divided by ``a[..., 0]`` here).
        zi: (P, S, K), initial state per section (scipy's TDF-II state).

    Returns:
        ``(y, zf)``: y (P, time) and zf (P, S, K), dtype of ``x``.
    """
    _check_a0(a)
    if x.device.type == "cpu":
        return _cpu.iir_cascade(x, x_index, b, a, zi)
    _fallback_warning(x.device)
    return _reference.iir_cascade(x, x_index, b, a, zi)


@iir_cascade.register_fake
def _(x, x_index, b, a, zi):
    return x.new_empty((b.shape[0], x.shape[-1])), x.new_empty(zi.shape)


@torch.library.custom_op("filterbank::iir_cascade_backward", mutates_args=())
def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`iir_cascade` for ``x, b, a, zi`` given those of ``y, zf``."""
    if x.device.type == "cpu":
        return _cpu.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    _fallback_warning(x.device)
    return _reference.iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)


@iir_cascade_backward.register_fake
def _(grad_y, grad_zf, x, x_index, b, a, zi):
    return x.new_empty(x.shape), b.new_empty(b.shape), a.new_empty(a.shape), zi.new_empty(zi.shape)


def _setup_context(ctx, inputs, output):
    x, x_index, b, a, zi = inputs
    ctx.save_for_backward(x, x_index, b, a, zi)


def _backward(ctx, grad_y, grad_zf):
    x, x_index, b, a, zi = ctx.saved_tensors
    if grad_y is None:
        grad_y = x.new_zeros((b.shape[0], x.shape[-1]))
    if grad_zf is None:
        grad_zf = zi.new_zeros(zi.shape)
    if torch.is_grad_enabled():
        grads = _backward_composite(grad_y, grad_zf, x, x_index, b, a, zi)
    else:
        grads = iir_cascade_backward(grad_y, grad_zf, x, x_index, b, a, zi)
    grad_x, grad_b, grad_a, grad_zi = grads
    needs = ctx.needs_input_grad
    return (
        grad_x if needs[0] else None,
        None,
        grad_b if needs[2] else None,
        grad_a if needs[3] else None,
        grad_zi if needs[4] else None,
    )


iir_cascade.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------
# The backward as a composition of differentiable ops (for create_graph=True).


def _ahead(signal: Tensor, k: int) -> Tensor:
    """``signal[..., t + k]``, zero past the end. signal: (..., time)."""
    if k == 0:
        return signal
    n_time = signal.shape[-1]
    if k >= n_time:
        return torch.zeros_like(signal)
    return F.pad(signal[..., k:], (0, k))


def _behind(signal: Tensor, k: int) -> Tensor:
    """``signal[..., t - k]``, zero before the start. signal: (..., time)."""
    if k == 0:
        return signal
    n_time = signal.shape[-1]
    if k >= n_time:
        return torch.zeros_like(signal)
    return F.pad(signal[..., : n_time - k], (k, 0))


def _section_adjoint(grad_out: Tensor, grad_zf: Tensor, inp: Tensor, out: Tensor, b: Tensor, a: Tensor):
    """Adjoint of one section ``out = lfilter(b, a, inp, zi)`` (zi enters linearly).

    grad_out, inp, out: (P, time); grad_zf: (P, K); b, a: (P, K + 1) raw.
    Returns the gradients of ``inp, b, a, zi``.
    """
    n_channels, n_time = grad_out.shape
    order = b.shape[-1] - 1
    a0 = a[:, :1]
    bn, an = b / a0, a / a0
    # zf[i] = sum_{k>i} bn_k inp[T+i-k] - an_k out[T+i-k] (+ zi[T+i] if T+i < K).
    g = grad_out
    zf_terms = [(i, k, n_time + i - k) for i in range(order) for k in range(i + 1, order + 1)]
    extra_out = torch.zeros_like(g)
    extra_in = torch.zeros_like(g)
    for i, k, tau in zf_terms:
        if tau >= 0:
            extra_out = extra_out.index_add(1, torch.tensor([tau], device=g.device), (-an[:, k] * grad_zf[:, i])[:, None])
            extra_in = extra_in.index_add(1, torch.tensor([tau], device=g.device), (bn[:, k] * grad_zf[:, i])[:, None])
    g = g + extra_out
    # u[t] = g[t] - sum_k an_k u[t+k]: the forward op on the time-reversed g.
    impulse = torch.zeros_like(b)
    impulse[:, 0] = 1
    rows = torch.arange(n_channels, device=g.device)
    u_reversed, _ = iir_cascade(g.flip(-1), rows, impulse[:, None], an[:, None], g.new_zeros((n_channels, 1, order)))
    u = u_reversed.flip(-1)
    grad_in = sum(bn[:, k : k + 1] * _ahead(u, k) for k in range(order + 1)) + extra_in
    grad_bn = torch.stack([(u * _behind(inp, k)).sum(-1) for k in range(order + 1)], dim=-1)
    grad_an = torch.stack(
        [torch.zeros_like(u[:, 0])] + [-(u * _behind(out, k)).sum(-1) for k in range(1, order + 1)], dim=-1
    )
    for i, k, tau in zf_terms:
        if tau >= 0:
            grad_bn = grad_bn + F.one_hot(torch.tensor(k), order + 1).to(u) * (grad_zf[:, i] * inp[:, tau])[:, None]
            grad_an = grad_an - F.one_hot(torch.tensor(k), order + 1).to(u) * (grad_zf[:, i] * out[:, tau])[:, None]
    grad_zi = u[:, :order] if n_time >= order else F.pad(u, (0, order - n_time))
    for i in range(order):
        if n_time + i < order:
            grad_zi = grad_zi + F.one_hot(torch.tensor(n_time + i), order).to(u) * grad_zf[:, i : i + 1]
    grad_b = grad_bn / a0
    grad_a0 = -((grad_bn * bn).sum(-1, keepdim=True) + (grad_an[:, 1:] * an[:, 1:]).sum(-1, keepdim=True)) / a0
    grad_a = torch.cat([grad_a0, grad_an[:, 1:] / a0], dim=-1)
    return grad_in, grad_b, grad_a, grad_zi


def _backward_composite(grad_y, grad_zf, x, x_index, b, a, zi):
    """The same gradients as ``iir_cascade_backward``, built from differentiable ops."""
    n_channels, n_sections = b.shape[0], b.shape[1]
    rows = torch.arange(n_channels, device=x.device)
    signals = [x[x_index]]
    for s in range(n_sections):
        y_s, _ = iir_cascade(signals[-1], rows, b[:, s : s + 1], a[:, s : s + 1], zi[:, s : s + 1])
        signals.append(y_s)
    grad = grad_y
    grads_b, grads_a, grads_zi = [None] * n_sections, [None] * n_sections, [None] * n_sections
    for s in reversed(range(n_sections)):
        grad, grads_b[s], grads_a[s], grads_zi[s] = _section_adjoint(
            grad, grad_zf[:, s], signals[s], signals[s + 1], b[:, s], a[:, s]
        )
    grad_x = torch.zeros_like(x).index_add(0, x_index, grad.to(x.dtype))
    return grad_x, torch.stack(grads_b, 1), torch.stack(grads_a, 1), torch.stack(grads_zi, 1)
