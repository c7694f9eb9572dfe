"""Functional API: ``lfilter`` and ``sosfilt`` on torch tensors, with state;
scipy's state helpers (``lfilter_zi``, ``sosfilt_zi``, ``lfiltic``) and
zero-phase filtering (``filtfilt``, ``sosfiltfilt``), batched and differentiable.

Plain functions of tensors that check their arguments, broadcast them, and
call the op layer (``filterbank._ops``). Coefficient tensors broadcast
against the input's dimensions other than ``axis``; a bank of ``n`` filters
over one signal is ``lfilter(b, a, x.unsqueeze(-2))`` with ``b``, ``a`` of shape
``(n, order + 1)``, and the input is read, never copied ``n`` times.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from . import _checks, _ops

__all__ = ["lfilter", "sosfilt", "lfilter_zi", "sosfilt_zi", "lfiltic", "filtfilt", "sosfiltfilt"]

# --------------------------------------------------------------------------
# The shared path: broadcast, flatten to channels, call the op, restore shapes.


def _filter(x: Tensor, axis: int, b: Tensor, a: Tensor, zi: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Run cascades ``b, a: (..., S, K + 1)`` (zi: (..., S, K) or None) along ``axis``.

    Returns ``y`` with the broadcast batch shape and the time axis at ``axis``
    (counted from the end), and ``zf: (batch..., S, K)``.
    """
    n_sections, order = b.shape[-2], b.shape[-1] - 1
    from_end = axis - x.ndim
    signal = x.movedim(axis, -1)
    n_time = signal.shape[-1]
    shapes = {"x": signal.shape[:-1], "b": b.shape[:-2], "a": a.shape[:-2]}
    if zi is not None:
        shapes["zi"] = zi.shape[:-2]
    batch = _checks.broadcast_to(shapes, "the batch dimensions", " (x without its time axis; coefficients and zi "
                                 "without their trailing coefficient/state dimensions)")
    n_channels = math.prod(batch)

    # Dimensions along which x is already expanded (stride 0) are read as one
    # row, so an expanded input is never materialised.
    for dim in range(signal.ndim - 1):
        if signal.stride(dim) == 0 and signal.shape[dim] > 1:
            signal = signal.narrow(dim, 0, 1)
    rows = signal.reshape(math.prod(signal.shape[:-1]), n_time)
    x_index = (
        torch.arange(rows.shape[0], device=x.device).reshape(signal.shape[:-1]).expand(batch).reshape(n_channels)
    )
    b = b.expand(batch + b.shape[-2:]).reshape(n_channels, n_sections, order + 1)
    a = a.expand(batch + a.shape[-2:]).reshape(n_channels, n_sections, order + 1)
    if zi is None:
        zi = x.new_zeros((n_channels, n_sections, order))
    else:
        zi = zi.expand(batch + zi.shape[-2:]).reshape(n_channels, n_sections, order)
    y, zf = _ops.call_iir_cascade(rows, x_index, b, a, zi)
    y = y.reshape(batch + (n_time,)).movedim(-1, from_end)
    return y, zf.reshape(batch + (n_sections, order))


def _pad_to_common_length(b: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """``b``, ``a`` zero-padded to ``max(M, N) + 1`` coefficients."""
    n = max(b.shape[-1], a.shape[-1])
    return torch.nn.functional.pad(b, (0, n - b.shape[-1])), torch.nn.functional.pad(a, (0, n - a.shape[-1]))


# --------------------------------------------------------------------------
# Public functions.


def lfilter(
    b: Tensor, a: Tensor, x: Tensor, *, zi: Optional[Tensor] = None, axis: int = -1
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Filter ``x`` along ``axis`` with the IIR filter ``b / a``, like ``scipy.signal.lfilter``.

    ``a[0] y[t] = sum_{k=0}^{M} b[k] x[t-k] - sum_{k=1}^{N} a[k] y[t-k]``

    Coefficients are divided by ``a[..., 0]``. The leading dimensions of ``b``,
    ``a`` and ``zi`` broadcast against the dimensions of ``x`` other than
    ``axis``: ``lfilter(b, a, x.unsqueeze(-2))`` with ``b``, ``a`` of shape
    ``(n_filters, order + 1)`` runs a bank of filters over each signal without
    copying the signal. Differentiable in ``b``, ``a``, ``x`` and ``zi``.

    Args:
        b: (..., M + 1) numerator coefficients.
        a: (..., N + 1) denominator coefficients, ``a[..., 0] != 0``.
        x: (..., time, ...) input; float16/bfloat16 are computed in float32.
            ``b``, ``a``, ``zi`` and ``x`` share one dtype and one device.
        zi: (..., max(M, N)) initial state, scipy's transposed-direct-form-II
            state (see ``scipy.signal.lfilter_zi``), state axis last. ``None``
            means rest.
        axis: the time axis of ``x``. The output keeps it at the same position
            counted from the end.

    Returns:
        ``y`` of shape ``broadcast(batch)`` with the time axis at ``axis``, or
        ``(y, zf)`` when ``zi`` is given, with zf: (broadcast batch..., max(M, N)).
        Filtering in chunks and passing ``zf`` as the next ``zi`` equals one pass.

    Equivalent Python loop (per channel, after dividing by a[0])::

        for t in range(T):
            y[t] = b[0] * x[t] + z[0]
            z[i] = z[i + 1] + b[i + 1] * x[t] - a[i + 1] * y[t]   # z[K] = 0

    Example:
        >>> x = torch.randn(2, 16000)                       # (batch, time)
        >>> b = torch.tensor([[0.2, 0.0, -0.2]] * 4)         # 4 band-pass biquads
        >>> a = torch.tensor([[1.0, -1.6, 0.8]] * 4)
        >>> lfilter(b, a, x.unsqueeze(-2)).shape            # (batch, filter, time)
        torch.Size([2, 4, 16000])
    """
    _checks.signal("x", x)
    _checks.coefficients("b", b, x)
    _checks.coefficients("a", a, x)
    axis = _checks.axis(axis, x.ndim)
    order = max(b.shape[-1], a.shape[-1]) - 1
    if zi is not None:
        _checks.tensor("zi", zi, x)
        if zi.ndim == 0 or zi.shape[-1] != order:
            raise ValueError(
                f"zi must have shape (..., {order}) (max(len(b), len(a)) - 1 = {order} state values, last); "
                f"got {tuple(zi.shape)}"
            )
    _checks.nonzero("a", a, 0, kernel_reports=True)
    b, a = _pad_to_common_length(b, a)
    y, zf = _filter(x, axis, b.unsqueeze(-2), a.unsqueeze(-2), None if zi is None else zi.unsqueeze(-2))
    return y if zi is None else (y, zf.squeeze(-2))


def sosfilt(
    sos: Tensor, x: Tensor, *, zi: Optional[Tensor] = None, axis: int = -1
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Filter ``x`` along ``axis`` with cascaded second-order sections, like ``scipy.signal.sosfilt``.

    Each section ``[b0, b1, b2, a0, a1, a2]`` is a biquad
    ``a0 y[t] = b0 x[t] + b1 x[t-1] + b2 x[t-2] - a1 y[t-1] - a2 y[t-2]``,
    and the output of one is the input of the next. The leading dimensions of
    ``sos`` and ``zi`` broadcast against the dimensions of ``x`` other than
    ``axis`` (a bank of cascades: ``sos`` of shape ``(n_filters, n_sections, 6)``
    with ``x.unsqueeze(-2)``). Differentiable in ``sos``, ``x`` and ``zi``.

    Args:
        sos: (..., n_sections, 6), ``sos[..., 3] != 0``.
        x: (..., time, ...) input, same dtype and device as ``sos``.
        zi: (..., n_sections, 2) initial TDF-II state of each section (note:
            scipy puts the section axis first; here the state axes are last).
        axis: the time axis of ``x``.

    Returns:
        ``y``, or ``(y, zf)`` with zf: (broadcast batch..., n_sections, 2) when
        ``zi`` is given.

    Example:
        >>> sos = torch.tensor([[[0.1, 0.2, 0.1, 1.0, -0.9, 0.3]] * 3] * 8)   # 8 cascades of 3 sections
        >>> sosfilt(sos, torch.randn(16000).unsqueeze(-2)).shape             # (filter, time)
        torch.Size([8, 16000])
    """
    _checks.signal("x", x)
    _checks.sos(sos, like=x)
    axis = _checks.axis(axis, x.ndim)
    n_sections = sos.shape[-2]
    if zi is not None:
        _checks.tensor("zi", zi, x)
        if zi.ndim < 2 or zi.shape[-2:] != (n_sections, 2):
            raise ValueError(f"zi must have shape (..., {n_sections}, 2); got {tuple(zi.shape)}")
    _checks.nonzero("sos", sos, 3, kernel_reports=True)
    y, zf = _filter(x, axis, sos[..., :3], sos[..., 3:], zi)
    return y if zi is None else (y, zf)


# --------------------------------------------------------------------------
# State helpers (scipy's lfilter_zi, sosfilt_zi, lfiltic).


def lfilter_zi(b: Tensor, a: Tensor) -> Tensor:
    """The initial state for which ``lfilter``'s step response is at steady state, like ``scipy.signal.lfilter_zi``.

    ``lfilter(b, a, c * ones, zi=c * lfilter_zi(b, a))`` is constant. Solves
    ``zi = A zi + B`` with A the companion matrix of ``a / a[0]``.

    Args:
        b: (..., M + 1), a: (..., N + 1); leading dimensions broadcast.

    Returns:
        zi: (broadcast batch..., max(M, N)), differentiable in ``b`` and ``a``.
        Unlike scipy, leading zeros of ``a`` are an error, as in :func:`lfilter`.
    """
    _checks.coefficients("b", b)
    _checks.coefficients("a", a, b, "b")
    _checks.broadcast_to({"b": b.shape[:-1], "a": a.shape[:-1]}, "the batch dimensions")
    _checks.nonzero("a", a, 0)
    bn, an = _pad_to_common_length(b / a[..., :1], a / a[..., :1])
    bn, an = torch.broadcast_tensors(bn, an)
    order = an.shape[-1] - 1
    if order == 0:
        return bn.new_zeros(bn.shape[:-1] + (0,))
    # I - A^T, A the companion matrix: first row -a[1:], ones below the diagonal.
    identity = torch.eye(order, dtype=an.dtype, device=an.device)
    companion_t = torch.diag_embed(torch.ones(order - 1, dtype=an.dtype, device=an.device), offset=1)
    companion_t = companion_t.expand(an.shape[:-1] + (order, order))
    first_column = torch.nn.functional.pad(-an[..., 1:].unsqueeze(-1), (0, order - 1))
    system = identity - (companion_t + first_column)
    rhs = bn[..., 1:] - an[..., 1:] * bn[..., :1]
    return torch.linalg.solve(system, rhs)


def sosfilt_zi(sos: Tensor) -> Tensor:
    """Steady-state initial state of each section for a step, like ``scipy.signal.sosfilt_zi``.

    Args:
        sos: (..., n_sections, 6).

    Returns:
        zi: (..., n_sections, 2) (the layout ``sosfilt`` takes; scipy puts the
        section axis first), differentiable in ``sos``.
    """
    _checks.sos(sos)
    _checks.nonzero("sos", sos, 3)
    states = []
    scale = torch.ones_like(sos[..., 0, :1])
    for section in range(sos.shape[-2]):
        b, a = sos[..., section, :3], sos[..., section, 3:]
        states.append(scale * lfilter_zi(b, a))
        # b.sum() / a.sum() is the section's gain at DC: its steady step response.
        scale = scale * b.sum(-1, keepdim=True) / a.sum(-1, keepdim=True)
    return torch.stack(states, dim=-2)


def lfiltic(b: Tensor, a: Tensor, y: Tensor, x: Optional[Tensor] = None) -> Tensor:
    """The state that continues from past outputs (and inputs), like ``scipy.signal.lfiltic``.

    Args:
        b: (..., M + 1), a: (..., N + 1).
        y: (..., L) past outputs, most recent first (``y[..., 0]`` is y[-1]);
            missing ones are zero, extra ones ignored.
        x: (..., L') past inputs, most recent first; None means zeros.

    Returns:
        zi: (broadcast batch..., max(M, N)) for :func:`lfilter`.
    """
    _checks.coefficients("b", b)
    _checks.coefficients("a", a, b, "b")
    _checks.nonzero("a", a, 0)
    _checks.tensor("y", y, b, "b")
    if y.ndim == 0:
        raise ValueError("y must have a last dimension of past outputs; got a 0-d tensor")
    batches = {"b": b.shape[:-1], "a": a.shape[:-1], "y": y.shape[:-1]}
    n_b, n_a = b.shape[-1] - 1, a.shape[-1] - 1
    order = max(n_b, n_a)
    if x is None:
        x = b.new_zeros(b.shape[:-1] + (n_b,))
    else:
        _checks.tensor("x", x, b, "b")
        if x.ndim == 0:
            raise ValueError("x must have a last dimension of past inputs; got a 0-d tensor")
        batches["x"] = x.shape[:-1]
    _checks.broadcast_to(batches, "the batch dimensions")

    def fit(values: Tensor, length: int) -> Tensor:
        return torch.nn.functional.pad(values, (0, max(0, length - values.shape[-1])))[..., :length]

    x, y = fit(x, n_b), fit(y, n_a)
    terms = []
    for m in range(order):
        total = 0
        if m < n_b:
            total = total + (b[..., m + 1 :] * x[..., : n_b - m]).sum(-1)
        if m < n_a:
            total = total - (a[..., m + 1 :] * y[..., : n_a - m]).sum(-1)
        terms.append(total)
    if not terms:
        return torch.broadcast_tensors(b[..., :0], a[..., :0], y[..., :0])[0]
    return torch.stack(torch.broadcast_tensors(*terms), dim=-1) / a[..., :1]


# --------------------------------------------------------------------------
# Zero-phase filtering (scipy's filtfilt and sosfiltfilt, method "pad").


def _extend(x: Tensor, edge: int, padtype: Optional[str]) -> Tensor:
    """Extend the last axis by ``edge`` samples at each end (scipy's odd/even/const_ext)."""
    if padtype is None or edge == 0:
        return x
    left, right = x[..., :1], x[..., -1:]
    left_mirror = x[..., 1 : edge + 1].flip(-1)
    right_mirror = x[..., -edge - 1 : -1].flip(-1)
    if padtype == "odd":
        return torch.cat([2 * left - left_mirror, x, 2 * right - right_mirror], dim=-1)
    if padtype == "even":
        return torch.cat([left_mirror, x, right_mirror], dim=-1)
    return torch.cat([left.expand(x.shape[:-1] + (edge,)), x, right.expand(x.shape[:-1] + (edge,))], dim=-1)


def _pad_length(padtype, padlen, n_time: int, ntaps: int) -> int:
    _checks.choice("padtype", padtype, ("even", "odd", "constant", None))
    padlen = _checks.integer("padlen", padlen, 0, optional=True)
    if padtype is None:
        edge = 0
    elif padlen is None:
        edge = 3 * ntaps
    else:
        edge = padlen
    if n_time <= edge:
        # scipy's own message, since scripts match on it.
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    return edge


def filtfilt(
    b: Tensor, a: Tensor, x: Tensor, axis: int = -1, padtype: Optional[str] = "odd", padlen: Optional[int] = None,
    method: str = "pad",
) -> Tensor:
    """Zero-phase filtering, forwards then backwards, like ``scipy.signal.filtfilt`` (method ``"pad"``).

    The signal is extended at both ends by ``padlen`` samples (default
    ``3 * max(len(a), len(b))``; odd, even or constant extension, or none),
    filtered forwards from the steady state of its first value, then the
    result backwards from the steady state of its last value, and the
    extension cut off. Coefficients broadcast as in :func:`lfilter`.

    Args:
        b: (..., M + 1), a: (..., N + 1).
        x: (..., time, ...); ``axis`` is its time axis.
        padtype: ``"odd"``, ``"even"``, ``"constant"`` or None.
        padlen: samples of extension at each end.
        method: ``"pad"`` (scipy's ``"gust"``, Gustafsson's method, is not
            implemented: ``NotImplementedError``).

    Returns:
        y: (broadcast batch...) with the time axis at ``axis`` (counted from
        the end), differentiable in ``b``, ``a`` and ``x``.
    """
    _checks.signal("x", x)
    _checks.coefficients("b", b, x)
    _checks.coefficients("a", a, x)
    if _checks.choice("method", method, ("pad", "gust")) == "gust":
        raise NotImplementedError("filtfilt(method='gust') (Gustafsson's method) is not implemented; use method='pad'")
    axis = _checks.axis(axis, x.ndim)
    _checks.broadcast_to({"x": x.movedim(axis, -1).shape[:-1], "b": b.shape[:-1], "a": a.shape[:-1]},
                         "the batch dimensions", " (x without its time axis, coefficients without their last)")
    zi = lfilter_zi(b, a)
    signal = x.movedim(axis, -1)
    edge = _pad_length(padtype, padlen, signal.shape[-1], max(b.shape[-1], a.shape[-1]))
    extended = _extend(signal, edge, padtype)
    forward, _ = lfilter(b, a, extended, zi=zi * extended[..., :1])
    reversed_ = forward.flip(-1)
    backward, _ = lfilter(b, a, reversed_, zi=zi * reversed_[..., :1])
    y = backward.flip(-1)
    if edge:
        y = y[..., edge:-edge]
    return y.movedim(-1, axis - x.ndim)


def sosfiltfilt(
    sos: Tensor, x: Tensor, axis: int = -1, padtype: Optional[str] = "odd", padlen: Optional[int] = None
) -> Tensor:
    """Zero-phase filtering with second-order sections, like ``scipy.signal.sosfiltfilt``.

    As :func:`filtfilt`; the default ``padlen`` is scipy's ``3 * (2 n_sections
    + 1 - min(#{b2 == 0}, #{a2 == 0}))``, which must then be the same for
    every cascade in a batch (give ``padlen`` otherwise).

    Args:
        sos: (..., n_sections, 6).
        x: (..., time, ...); ``axis`` is its time axis.

    Returns:
        y: (broadcast batch...) with the time axis at ``axis``.
    """
    _checks.signal("x", x)
    _checks.sos(sos, like=x)
    axis = _checks.axis(axis, x.ndim)
    _checks.broadcast_to({"x": x.movedim(axis, -1).shape[:-1], "sos": sos.shape[:-2]}, "the batch dimensions",
                         " (x without its time axis, sos without its sections)")
    zi = sosfilt_zi(sos)
    n_sections = sos.shape[-2]
    # Tensors without values (meta, fake: shapes alone) give the same output shape either way; under
    # torch.compile the count below is a graph break, as any data-dependent Python value is.
    values_known = torch.compiler.is_compiling() or not _checks.shape_only(sos)
    if padtype is not None and padlen is None and values_known:
        # scipy counts the sections that are really first order.
        first_order = torch.minimum((sos[..., 2] == 0).sum(-1), (sos[..., 5] == 0).sum(-1))
        if first_order.numel() and bool((first_order != first_order.reshape(-1)[0]).any()):
            raise ValueError("the cascades in sos have different numbers of first-order sections, so scipy's "
                             "default padlen differs between them; give padlen explicitly")
        ntaps = 2 * n_sections + 1 - (int(first_order.reshape(-1)[0]) if first_order.numel() else 0)
    else:
        ntaps = 2 * n_sections + 1
    signal = x.movedim(axis, -1)
    edge = _pad_length(padtype, padlen, signal.shape[-1], ntaps)
    extended = _extend(signal, edge, padtype)
    forward, _ = sosfilt(sos, extended, zi=zi * extended[..., :1, None])
    reversed_ = forward.flip(-1)
    backward, _ = sosfilt(sos, reversed_, zi=zi * reversed_[..., :1, None])
    y = backward.flip(-1)
    if edge:
        y = y[..., edge:-edge]
    return y.movedim(-1, axis - x.ndim)
