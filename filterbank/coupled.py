"""Coupled recurrences: ``h[t] = f(A h[t-1] + u[t])`` with a banded or sparse state matrix ``A``.

The channels of a filterbank recurrence are independent; here each channel
is coupled to a few others through ``A``:

* :func:`banded_recurrence`: ``A`` banded with lower and upper bandwidths
  ``(kl, ku)``, given in band storage ``(..., C, kl + ku + 1)`` (diagonal
  ``d`` of row ``i`` holds ``A[i, i + d - kl]``) or dense with ``dense=True``;
* :func:`sparse_recurrence`: ``A`` a ``torch.sparse_csr_tensor`` or its
  three arrays, one pattern for the whole batch;
* :func:`band_from_dense`, :func:`dense_from_band`: between the two storages.

``f`` is ``"identity"``, ``"tanh"`` or ``"relu"``. The kernels touch the
band or the non-zeros only (docs/design.md, "Coupled recurrences"), and the
backward is the reverse-time recursion with ``A^T``, its memory that of the
output. With an initial state ``h0`` the functions return ``(h, h_last)``:
running a sequence in pieces, each piece's ``h_last`` the next one's ``h0``,
equals one pass (exact streaming and truncated backpropagation through time).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from . import _checks, _coupled_ops

__all__ = ["banded_recurrence", "sparse_recurrence", "band_from_dense", "dense_from_band", "NONLINEARITIES"]

NONLINEARITIES = ("identity", "tanh", "relu")

CSR = Union[Tensor, tuple[Tensor, Tensor, Tensor]]


def _channels_last(u: Tensor, time_axis) -> tuple[Tensor, bool]:
    """``(u as (..., time, C), whether time was last)``; ``time_axis`` is -1 (``(..., C, time)``) or -2."""
    _checks.tensor("u", u)
    if u.ndim < 2:
        raise ValueError(f"u must have shape (..., channels, time) or, with time_axis=-2, (..., time, channels); "
                         f"got {tuple(u.shape)}")
    axis = _checks.axis(time_axis, u.ndim, "time_axis")
    if axis not in (u.ndim - 1, u.ndim - 2):
        raise ValueError(f"time_axis must be -1 (u of shape (..., channels, time)) or -2 (u of shape (..., time, "
                         f"channels)); got {time_axis}")
    time_last = axis == u.ndim - 1
    return (u.transpose(-1, -2) if time_last else u), time_last


def _run(kind: str, signal: Tensor, time_last: bool, matrix_batch: torch.Size, h0: Optional[Tensor], call):
    """Broadcast, flatten to rows, run ``call(u_rows, matrix_index, h0_rows)`` and restore the layout."""
    n_time, n_channels = signal.shape[-2], signal.shape[-1]
    shapes = {"u": signal.shape[:-2], kind: matrix_batch}
    if h0 is not None:
        _checks.tensor("h0", h0, signal, "u")
        if h0.ndim == 0 or h0.shape[-1] != n_channels:
            raise ValueError(f"h0 must have shape (..., {n_channels}) (one state per channel of u); got "
                             f"{tuple(h0.shape)}")
        shapes["h0"] = h0.shape[:-1]
    batch = _checks.broadcast_to(shapes, "the batch dimensions", f" (u without its channel and time axes, {kind} "
                                 "without its matrix axes, h0 without its channel axis)")
    n_rows = math.prod(batch)
    u_rows = signal.expand(batch + signal.shape[-2:]).reshape(n_rows, n_time, n_channels)
    matrix_index = torch.arange(math.prod(matrix_batch), device=signal.device).reshape(matrix_batch)
    matrix_index = matrix_index.expand(batch).reshape(n_rows)
    if h0 is None:
        h0_rows = signal.new_zeros((n_rows, n_channels))
    else:
        h0_rows = h0.expand(batch + (n_channels,)).reshape(n_rows, n_channels)
    h_rows = call(u_rows, matrix_index, h0_rows)
    h = h_rows.reshape(batch + (n_time, n_channels))
    if time_last:
        h = h.transpose(-1, -2)
    if h0 is None:
        return h
    h_last = h_rows[:, -1] if n_time else h0_rows
    return h, h_last.reshape(batch + (n_channels,))


def banded_recurrence(
    u: Tensor, A: Tensor, bandwidths: tuple[int, int], *, h0: Optional[Tensor] = None,
    nonlinearity: str = "tanh", dense: bool = False, time_axis: int = -1,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Run ``h[t] = f(A h[t-1] + u[t])`` with a banded state matrix ``A``.

    ``A[i, j]`` is zero unless ``-kl <= j - i <= ku``. The leading dimensions
    of ``A`` and ``h0`` broadcast against those of ``u`` (one matrix for a
    whole batch is read once, never copied per sequence). Differentiable in
    ``u``, ``A`` and ``h0``; the gradient of ``A`` lives on the band.

    Args:
        u: (..., C, time), or (..., time, C) with ``time_axis=-2``; float16 and
            bfloat16 are computed in float32.
        A: (..., C, kl + ku + 1) band storage, ``A_band[..., i, d] = A[..., i, i
            + d - kl]`` (entries whose column falls outside the matrix are not
            read and get no gradient); with ``dense=True``, (..., C, C), which
            must be zero outside the band.
        bandwidths: ``(kl, ku)``, each in [0, C - 1].
        h0: (..., C) initial state; ``None`` means zeros.
        nonlinearity: ``"identity"``, ``"tanh"`` or ``"relu"``.
        dense: whether ``A`` is given as full matrices.
        time_axis: -1 or -2, where the time axis of ``u`` (and of ``h``) is.

    Returns:
        ``h`` with the broadcast batch shape in ``u``'s layout, or ``(h,
        h_last)`` when ``h0`` is given, ``h_last`` (..., C) the state after
        the last step.

    Equivalent Python loop (per sequence)::

        h = h0
        for t in range(T):
            h = f(A @ h + u[:, t])

    Example:
        >>> u = torch.randn(8, 256, 1000)                   # (batch, channels, time)
        >>> band = 0.2 * torch.randn(256, 5)                 # kl = ku = 2
        >>> banded_recurrence(u, band, (2, 2)).shape
        torch.Size([8, 256, 1000])
    """
    signal, time_last = _channels_last(u, time_axis)
    n_channels = signal.shape[-1]
    lower, upper = _checks.bandwidths(bandwidths, n_channels)
    _checks.choice("nonlinearity", nonlinearity, NONLINEARITIES)
    _checks.boolean("dense", dense)
    _checks.tensor("A", A, signal, "u")
    width = lower + upper + 1
    expected = (n_channels, n_channels) if dense else (n_channels, width)
    if A.ndim < 2 or tuple(A.shape[-2:]) != expected:
        meaning = "dense C x C" if dense else f"band storage: C rows of kl + ku + 1 = {width} diagonals"
        raise ValueError(f"A must have shape (..., {expected[0]}, {expected[1]}) ({meaning}, C = {n_channels} "
                         f"channels of u); got {tuple(A.shape)}")
    if dense:
        _checks.zero_outside_band("A", A, lower, upper)
        A = band_from_dense(A, (lower, upper))
    band = A.reshape((math.prod(A.shape[:-2]), n_channels, width))

    def call(u_rows, band_index, h0_rows):
        return _coupled_ops.banded_recurrence(u_rows, band, band_index, h0_rows, lower, nonlinearity)

    return _run("A", signal, time_last, A.shape[:-2], h0, call)


def sparse_recurrence(
    u: Tensor, A: CSR, *, h0: Optional[Tensor] = None, nonlinearity: str = "tanh", time_axis: int = -1,
) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """Run ``h[t] = f(A h[t-1] + u[t])`` with a sparse state matrix ``A`` in CSR form.

    One sparsity pattern serves the whole batch; its values may differ per
    sequence (their leading dimensions broadcast against those of ``u``).
    Differentiable in ``u``, the non-zero values of ``A`` and ``h0``.

    Args:
        u: (..., C, time), or (..., time, C) with ``time_axis=-2``.
        A: a ``torch.sparse_csr_tensor`` of shape (C, C), or its arrays
            ``(crow_indices (C + 1,), col_indices (nnz,), values (..., nnz))``;
            column indices sorted and distinct within each row.
        h0: (..., C) initial state; ``None`` means zeros.
        nonlinearity: ``"identity"``, ``"tanh"`` or ``"relu"``.
        time_axis: -1 or -2, where the time axis of ``u`` (and of ``h``) is.

    Returns:
        ``h``, or ``(h, h_last)`` when ``h0`` is given (as :func:`banded_recurrence`).

    Equivalent Python loop (per sequence)::

        h = h0
        for t in range(T):
            h = f(A @ h + u[:, t])
    """
    signal, time_last = _channels_last(u, time_axis)
    n_channels = signal.shape[-1]
    _checks.choice("nonlinearity", nonlinearity, NONLINEARITIES)
    if isinstance(A, Tensor):
        if A.layout != torch.sparse_csr or A.ndim != 2:
            raise TypeError(f"A must be a 2-D torch.sparse_csr_tensor or (crow_indices, col_indices, values); got a "
                            f"{A.ndim}-D tensor of layout {A.layout}")
        if tuple(A.shape) != (n_channels, n_channels):
            raise ValueError(f"A must be {n_channels} x {n_channels} (the channels of u); got {tuple(A.shape)}")
        crow, col, values = A.crow_indices(), A.col_indices(), A.values()
    elif isinstance(A, (tuple, list)) and len(A) == 3:
        crow, col, values = A
    else:
        raise TypeError(f"A must be a torch.sparse_csr_tensor or (crow_indices, col_indices, values); got "
                        f"{type(A).__name__}")
    _checks.csr_pattern(crow, col, n_channels)
    _checks.tensor("A's values", values, signal, "u")
    if values.ndim == 0 or values.shape[-1] != col.shape[0]:
        raise ValueError(f"A's values must have shape (..., nnz) with nnz = {col.shape[0]} (the col_indices); got "
                         f"{tuple(values.shape)}")
    if crow.device != signal.device or col.device != signal.device:
        raise ValueError(f"A's indices are on {crow.device} but u is on {signal.device}; move them to one device")
    crow, col = crow.to(torch.int64), col.to(torch.int64)
    flat_values = values.reshape((math.prod(values.shape[:-1]), col.shape[0]))

    def call(u_rows, values_index, h0_rows):
        return _coupled_ops.csr_recurrence(u_rows, crow, col, flat_values, values_index, h0_rows, nonlinearity)

    return _run("A's values", signal, time_last, values.shape[:-1], h0, call)


def band_from_dense(matrix: Tensor, bandwidths: tuple[int, int]) -> Tensor:
    """The band storage ``(..., C, kl + ku + 1)`` of ``matrix`` (..., C, C), which must be zero outside the band.

    Entries of the storage that fall outside the matrix are zero. Differentiable.
    """
    _checks.tensor("matrix", matrix)
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"matrix must have shape (..., C, C); got {tuple(matrix.shape)}")
    n_channels = matrix.shape[-1]
    lower, upper = _checks.bandwidths(bandwidths, n_channels)
    _checks.zero_outside_band("matrix", matrix, lower, upper)
    flat = matrix.reshape((-1, n_channels, n_channels))
    return _coupled_ops.dense_to_band(flat, lower, lower + upper + 1).reshape(matrix.shape[:-1] + (lower + upper + 1,))


def dense_from_band(band: Tensor, bandwidths: tuple[int, int]) -> Tensor:
    """The matrices ``(..., C, C)`` whose bands ``band`` (..., C, kl + ku + 1) holds. Differentiable."""
    _checks.tensor("band", band)
    if band.ndim < 2:
        raise ValueError(f"band must have shape (..., C, kl + ku + 1); got {tuple(band.shape)}")
    n_channels = band.shape[-2]
    lower, upper = _checks.bandwidths(bandwidths, n_channels)
    if band.shape[-1] != lower + upper + 1:
        raise ValueError(f"band must have kl + ku + 1 = {lower + upper + 1} diagonals in its last dimension; got "
                         f"{tuple(band.shape)}")
    flat = band.reshape((-1, n_channels, band.shape[-1]))
    return _coupled_ops.band_to_dense(flat, lower).reshape(band.shape[:-1] + (n_channels,))
