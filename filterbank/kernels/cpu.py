"""numba CPU kernels: every operation of ``filterbank.kernels.reference``, with its signature.

``iir_cascade``/``iir_cascade_backward`` filter tiles of channels
(``_cascade.py``, on the tile machinery of ``_tiles.py``), ``frame_energy``/
``frame_energy_backward`` take windowed band energies once per hop
(``_frames.py``), and ``iir_cascade_frame_energy`` does both in one pass
without storing the band signals (``_fused.py``); ``stream_band_energy``
is one streaming step of the front-end in one call (``_stream.py``). These functions move
tensors in and out; the numba code is in those files (docs/design.md, "CPU
kernels"). float16/bfloat16 are computed in float32.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from . import _cascade, _coupled, _frames, _fused, _stream
from ._dtypes import compute, compute_dtype
from ._memory import empty
from ._tiles import block_length, plan, tile_width
from .reference import band_columns, transposed_pattern

__all__ = ["iir_cascade", "iir_cascade_backward", "frame_energy", "frame_energy_backward", "iir_cascade_frame_energy",
           "band_energy", "band_energy_backward", "stream_band_energy", "banded_recurrence",
           "banded_recurrence_backward", "csr_recurrence", "csr_recurrence_backward", "fits_window",
           "checkpoint_block", "supports"]

fits_window = _frames.fits  # (window length, hop, offset) -> whether the frame kernels take that window
checkpoint_block = block_length  # order -> the kernels' block; band_energy's checkpoints are multiples of it


def supports(op: str, order: int) -> bool:
    """Whether the CPU kernel of ``op`` takes sections of ``order`` (the streaming step: biquads only)."""
    return op != "stream_band_energy" or order == 2  # sos rows of six


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Forward; see ``filterbank.kernels.reference.iir_cascade``."""
    dtype = compute_dtype(x.dtype)
    xc, bc, ac, zc = (t.to(dtype).contiguous() for t in (x, b, a, zi))
    n_channels, n_sections, order = b.shape[0], b.shape[1], b.shape[2] - 1
    y = empty((n_channels, x.shape[-1]), dtype)
    zf = torch.empty((n_channels, n_sections, order), dtype=dtype)
    if n_channels:
        width = tile_width(n_channels, y.element_size())
        lane_channel, lane_row, _, _, _, tile_kind, tile_first = plan(x_index.numpy(), width)
        _cascade.forward(xc.numpy(), lane_channel, lane_row, tile_kind, tile_first, bc.numpy(), ac.numpy(),
                         zc.numpy(), y.numpy(), zf.numpy(), width, block_length(order))
    return y.to(x.dtype), zf.to(x.dtype)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward; see ``filterbank.kernels.reference.iir_cascade_backward``."""
    dtype = compute_dtype(x.dtype)
    xc, bc, ac, zc, gzf = (t.to(dtype).contiguous() for t in (x, b, a, zi, grad_zf))
    gy = grad_y.to(dtype)
    if not gy.is_contiguous():
        # E.g. the expanded gradient of a sum: copy into a (recycled) huge-page buffer.
        gy = empty(tuple(gy.shape), dtype).copy_(gy)
    n_channels, order = b.shape[0], b.shape[2] - 1
    n_rows, n_time = x.shape
    grad_b, grad_a, grad_zi = torch.empty_like(bc), torch.empty_like(ac), torch.empty_like(zc)
    if not n_channels:
        return torch.zeros_like(x), grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)
    width = tile_width(n_channels, gy.element_size())
    lane_channel, lane_row, lane_part, run_start, part_row, tile_kind, tile_first = plan(x_index.numpy(), width)
    # One partial row per run of lanes sharing an input row; when each input
    # row has exactly one run, in order, the partial rows are grad_x itself.
    direct = part_row.shape[0] == n_rows and bool(np.all(part_row == np.arange(n_rows)))
    grad_x_part = empty((part_row.shape[0], n_time), dtype)
    _cascade.backward(gy.numpy(), gzf.numpy(), xc.numpy(), lane_channel, lane_row, lane_part, run_start, tile_kind,
                      tile_first, bc.numpy(), ac.numpy(), zc.numpy(), grad_x_part.numpy(), grad_b.numpy(),
                      grad_a.numpy(), grad_zi.numpy(), width, block_length(order))
    if direct:
        grad_x = grad_x_part
    else:
        grad_x = torch.zeros((n_rows, n_time), dtype=dtype)
        grad_x.index_add_(0, torch.from_numpy(part_row), grad_x_part)
    return grad_x.to(x.dtype), grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)


def frame_energy(y: Tensor, window: Tensor, hop: int, offset: int, n_frames: int, square: bool) -> Tensor:
    """Forward; see ``filterbank.kernels.reference.frame_energy``."""
    yc, wc = compute(y), compute(window)
    out = torch.zeros((y.shape[0], n_frames), dtype=yc.dtype)
    if y.shape[0] and y.shape[1]:
        kernels, d_first = _frames.block_kernels(wc.numpy(), hop, offset)
        _frames.forward(yc.numpy(), kernels, d_first, square, out.numpy())
    return out.to(y.dtype)


def frame_energy_backward(grad: Tensor, y: Tensor, window: Tensor, hop: int, offset: int, square: bool) -> Tensor:
    """The gradient for ``y``; see ``filterbank.kernels.reference.frame_energy_backward``."""
    yc, wc, gc = compute(y), compute(window), compute(grad)
    grad_y = empty(tuple(y.shape), yc.dtype)
    if y.shape[0] and y.shape[1]:
        kernels, d_first = _frames.block_kernels(wc.numpy(), hop, offset)
        _frames.backward(gc.numpy(), yc.numpy(), kernels, d_first, square, grad_y.numpy())
    return grad_y.to(y.dtype)


def iir_cascade_frame_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor,
) -> Tensor:
    """Filter and take frame energies in one pass; see ``filterbank.kernels.reference.iir_cascade_frame_energy``."""
    return band_energy(x, x_index, b, a, zi, window, hop, offset, n_frames, square, limits, 0)[0]


def band_energy(
    x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, window: Tensor, hop: int, offset: int,
    n_frames: int, square: bool, limits: Tensor, spacing: int,
) -> tuple[Tensor, Tensor]:
    """Frame energies and the backward's checkpoints; see ``filterbank.kernels.reference.band_energy``.

    ``spacing``: 0 (no checkpoints) or a multiple of :func:`checkpoint_block`.
    """
    n_channels, n_sections, order = b.shape[0], b.shape[1], b.shape[2] - 1
    assert limits.shape == (n_channels,), "one limit per channel"
    n_time = x.shape[-1]
    dtype = compute_dtype(x.dtype)
    xc, bc, ac, zc, wc = (t.to(dtype).contiguous() for t in (x, b, a, zi, window))
    energy = torch.zeros((n_channels, n_frames), dtype=dtype)
    block = block_length(order)
    assert spacing % block == 0, "checkpoints at block starts"
    n_saved = -(-n_time // spacing) if spacing else 0
    checkpoints = torch.zeros((n_saved, n_sections, order, n_channels), dtype=dtype)
    if n_channels and n_frames and n_time:
        kernels, d_first = _frames.block_kernels(wc.numpy(), hop, offset)
        width = tile_width(n_channels, energy.element_size())
        lane_channel, lane_row, _, _, _, tile_kind, tile_first = plan(x_index.numpy(), width)
        _fused.forward(xc.numpy(), lane_channel, lane_row, tile_kind, tile_first, bc.numpy(), ac.numpy(), zc.numpy(),
                       kernels, d_first, square, limits.to(torch.int64).contiguous().numpy(), energy.numpy(),
                       checkpoints.numpy(), spacing, width, block)
    return energy.to(x.dtype), checkpoints.to(x.dtype)


def band_energy_backward(
    grad: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor, checkpoints: Tensor, window: Tensor,
    hop: int, offset: int, square: bool, limits: Tensor, spacing: int, want_grad_x: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`band_energy`'s energies; see ``filterbank.kernels.reference.band_energy_backward``."""
    dtype = compute_dtype(x.dtype)
    xc, bc, ac, zc, wc, gc, cc = (t.to(dtype).contiguous() for t in (x, b, a, zi, window, grad, checkpoints))
    n_channels, order = b.shape[0], b.shape[2] - 1
    n_rows, n_time = x.shape
    grad_b, grad_a, grad_zi = torch.zeros_like(bc), torch.zeros_like(ac), torch.zeros_like(zc)
    if not (n_channels and n_time and grad.shape[-1]):
        grad_x = torch.zeros_like(x) if want_grad_x else x.new_empty(0)
        return grad_x, grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)
    block = block_length(order)
    assert spacing % block == 0 and checkpoints.shape[0] in (0, -(-n_time // spacing)), "checkpoints every spacing"
    kernels, d_first = _frames.block_kernels(wc.numpy(), hop, offset)
    if not kernels[2].any():
        kernels = np.ascontiguousarray(kernels[:2])  # a window over two hop blocks: one product less per sample
    width = tile_width(n_channels, gc.element_size())
    lane_channel, lane_row, lane_part, run_start, part_row, tile_kind, tile_first = plan(x_index.numpy(), width)
    direct = part_row.shape[0] == n_rows and bool(np.all(part_row == np.arange(n_rows)))
    grad_x_part = empty((part_row.shape[0] if want_grad_x else 0, n_time), dtype)
    _cascade.backward_from_energy(xc.numpy(), lane_channel, lane_row, lane_part, run_start, tile_kind, tile_first,
                                  bc.numpy(), ac.numpy(), zc.numpy(), grad_x_part.numpy(), grad_b.numpy(),
                                  grad_a.numpy(), grad_zi.numpy(), width, block, cc.numpy(), spacing, gc.numpy(),
                                  kernels, d_first, square, limits.to(torch.int64).contiguous().numpy(), want_grad_x)
    if not want_grad_x:
        grad_x = x.new_empty(0)
    elif direct:
        grad_x = grad_x_part.to(x.dtype)
    else:
        grad_x = torch.zeros((n_rows, n_time), dtype=dtype)
        grad_x.index_add_(0, torch.from_numpy(part_row), grad_x_part)
    return grad_x.to(x.dtype), grad_b.to(b.dtype), grad_a.to(a.dtype), grad_zi.to(zi.dtype)


# The streaming step's compressions, as the kernel numbers them.
STREAM_COMPRESSIONS = {None: 0, "log": 1, "power": 2}


def stream_band_energy(x: Tensor, sos: Tensor, zi: Tensor, history: Tensor, window: Tensor, hop: int,
                       n_frames: int, square: bool, compression: Optional[str] = None, floor: float = 0.0,
                       power: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """One streaming step in one kernel call; see ``filterbank.kernels.reference.stream_band_energy``."""
    dtype = compute_dtype(x.dtype)
    # Per 10 ms block every microsecond counts: convert only what needs it,
    # allocate in numpy and flatten the batch there, where each costs less.
    xc, sc, zc, hc, wc = (t if t.dtype == dtype and t.is_contiguous() else t.to(dtype).contiguous()
                          for t in (x, sos, zi, history, window))
    batch, n_time = x.shape[:-1], x.shape[-1]
    n_filters, n_sections = sos.shape[0], sos.shape[1]
    n_rows, kept = math.prod(batch), history.shape[-1] + n_time - n_frames * hop
    np_dtype = xc.numpy().dtype
    energy = np.empty((n_rows, n_filters, n_frames), np_dtype)
    zf = np.empty((n_rows, n_filters, n_sections, 2), np_dtype)
    bands = np.empty((n_rows, n_filters, kept), np_dtype)
    bad = _stream.step(xc.numpy().reshape(n_rows, n_time), sc.numpy(),
                       zc.numpy().reshape(n_rows, n_filters, n_sections, 2),
                       hc.numpy().reshape(n_rows, n_filters, history.shape[-1]), wc.numpy(), hop, square,
                       STREAM_COMPRESSIONS[compression], floor, power, zf, bands, energy)
    if bad:
        raise ValueError(f"a[..., 0] must be non-zero; got 0 in filter {bad - 1}")
    out = (torch.from_numpy(energy.reshape(batch + (n_filters, n_frames))),
           torch.from_numpy(zf.reshape(batch + (n_filters, n_sections, 2))),
           torch.from_numpy(bands.reshape(batch + (n_filters, kept))))
    return out if dtype == x.dtype else tuple(t.to(x.dtype) for t in out)


# --------------------------------------------------------------------------
# Coupled recurrences.


def _matrix_index(index: Tensor, n_matrices: int) -> np.ndarray:
    """``index`` (rows,) int64 as numpy, every entry a matrix (the kernels index with it unchecked)."""
    assert index.dtype == torch.int64 and (index.numel() == 0 or 0 <= int(index.min()) <= int(index.max())
                                           < n_matrices), "matrix indices in range"
    return index.contiguous().numpy()


def _gradient_buffer(grad_h: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(grad, grad_u)``: the incoming gradient contiguous in ``dtype``, and where grad_u goes.

    Where the gradient needs a copy (an expanded one, as ``sum()`` sends, or
    another dtype), the copy is this call's own and the kernels write grad_u
    over it (each step after reading it): one output-sized buffer less.
    Otherwise grad_u gets a buffer of its own.
    """
    if grad_h.dtype == dtype and grad_h.is_contiguous():
        return grad_h, empty(tuple(grad_h.shape), dtype)
    grad = empty(tuple(grad_h.shape), dtype)
    grad.copy_(grad_h)
    return grad, grad


def _sum_rows(per_row: Tensor, index: Tensor, n_matrices: int) -> Tensor:
    """(M, ...) the per-row gradients ``per_row`` (N, ...) summed over the rows that share a matrix."""
    if n_matrices == per_row.shape[0] and bool(torch.equal(index, torch.arange(n_matrices))):
        return per_row
    return per_row.new_zeros((n_matrices,) + per_row.shape[1:]).index_add_(0, index, per_row)


def _padded_band(band: Tensor, lower: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """``(band_t, pad)``: ``band`` (M, C, W) in the kernels' layout (M, W, pad + Cp + pad), diagonal-major,
    channel i at column ``pad + i``, zero where an entry's column falls outside the matrix."""
    n_matrices, n_channels, width = band.shape
    itemsize = torch.empty((), dtype=dtype).element_size()
    pad, padded = _coupled.band_layout(n_channels, lower, width - 1 - lower, itemsize)
    _, inside = band_columns(n_channels, width, lower)
    band_t = torch.zeros((n_matrices, width, padded), dtype=dtype)
    band_t[:, :, pad : pad + n_channels] = (band.to(dtype) * inside).transpose(1, 2)
    return band_t, pad


def banded_recurrence(u: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                      nonlinearity: str) -> Tensor:
    """Forward; see ``filterbank.kernels.reference.banded_recurrence``."""
    dtype = compute_dtype(u.dtype)
    band_t, pad = _padded_band(band, lower, dtype)
    h = empty(tuple(u.shape), dtype)
    if h.numel():
        _coupled.banded_forward(compute(u).numpy(), band_t.numpy(), _matrix_index(band_index, band.shape[0]),
                                compute(h0).numpy(), h.numpy(), lower, pad, _coupled.NONLINEARITIES[nonlinearity])
    return h.to(u.dtype)


def banded_recurrence_backward(grad_h: Tensor, h: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients; see ``filterbank.kernels.reference.banded_recurrence_backward``."""
    dtype = compute_dtype(h.dtype)
    n_rows, _, n_channels = h.shape
    band_t, pad = _padded_band(band, lower, dtype)
    grad, grad_u = _gradient_buffer(grad_h, dtype)
    grad_rows = torch.zeros((n_rows,) + band_t.shape[1:], dtype=dtype)
    grad_h0 = torch.zeros((n_rows, n_channels), dtype=dtype)
    if n_rows and n_channels:
        _coupled.banded_backward(grad.numpy(), compute(h).numpy(), band_t.numpy(),
                                 _matrix_index(band_index, band.shape[0]), compute(h0).numpy(), lower, pad,
                                 _coupled.NONLINEARITIES[nonlinearity], grad_u.numpy(), grad_rows.numpy(),
                                 grad_h0.numpy())
    else:
        grad_u.zero_()
    grad_band = _sum_rows(grad_rows[:, :, pad : pad + n_channels], band_index, band.shape[0]).transpose(1, 2)
    return grad_u.to(h.dtype), grad_band.to(band.dtype).contiguous(), grad_h0.to(h0.dtype)


def _int32(indices: Tensor) -> np.ndarray:
    """CSR indices as int32 (half the bytes the lane kernels stream each step; sizes are checked below 2^31)."""
    return indices.to(torch.int32).contiguous().numpy()


def _shared_matrix(values: Tensor, n_rows: int) -> bool:
    """Whether every row uses the one CSR matrix and there are rows enough to fill lanes (the tile kernels)."""
    return values.shape[0] == 1 and n_rows > 1 and values.shape[-1] < 2**31


def csr_recurrence(u: Tensor, crow: Tensor, col: Tensor, values: Tensor, values_index: Tensor, h0: Tensor,
                   nonlinearity: str) -> Tensor:
    """Forward; see ``filterbank.kernels.reference.csr_recurrence``."""
    dtype = compute_dtype(u.dtype)
    kind = _coupled.NONLINEARITIES[nonlinearity]
    index = _matrix_index(values_index, values.shape[0])
    if not u.numel():
        return torch.zeros(u.shape, dtype=u.dtype)
    if _shared_matrix(values, u.shape[0]):
        n_rows, n_time, n_channels = u.shape
        h = empty(tuple(u.shape), dtype)
        _coupled.csr_lanes_forward(compute(u).reshape(n_rows, n_time * n_channels).numpy(), _int32(crow), _int32(col),
                                   compute(values[0]).numpy(), compute(h0).numpy(),
                                   h.reshape(n_rows, n_time * n_channels).numpy(), n_channels, kind)
        return h.to(u.dtype)
    h = empty(tuple(u.shape), dtype)
    _coupled.csr_forward(compute(u).numpy(), crow.contiguous().numpy(), col.contiguous().numpy(),
                         compute(values).numpy(), index, compute(h0).numpy(), h.numpy(), kind)
    return h.to(u.dtype)


def csr_recurrence_backward(grad_h: Tensor, h: Tensor, crow: Tensor, col: Tensor, values: Tensor,
                            values_index: Tensor, h0: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients; see ``filterbank.kernels.reference.csr_recurrence_backward``."""
    dtype = compute_dtype(h.dtype)
    n_rows, _, n_channels = h.shape
    kind = _coupled.NONLINEARITIES[nonlinearity]
    index = _matrix_index(values_index, values.shape[0])
    crow_t, col_t, order = transposed_pattern(crow, col)
    values_t = values.to(dtype)[:, order].contiguous()
    if not (n_rows and n_channels):
        return torch.zeros_like(h), torch.zeros_like(values), torch.zeros_like(h0)
    if _shared_matrix(values, n_rows):
        n_time = h.shape[1]
        lanes = 64 // torch.empty((), dtype=dtype).element_size()
        grad, grad_u = _gradient_buffer(grad_h, dtype)
        grad_values_t = torch.empty((-(-n_rows // lanes), col.shape[0]), dtype=dtype)
        grad_h0 = torch.empty((n_rows, n_channels), dtype=dtype)
        flat = (n_rows, n_time * n_channels)
        _coupled.csr_lanes_backward(grad.reshape(flat).numpy(), compute(h).reshape(flat).numpy(), _int32(crow),
                                    _int32(col), values_t[0].numpy(), _int32(crow_t), _int32(col_t),
                                    compute(h0).numpy(), n_channels, kind, grad_u.reshape(flat).numpy(),
                                    grad_values_t.numpy(), grad_h0.numpy())
        grad_values = grad_values_t.sum(0, keepdim=True)
        return grad_u.to(h.dtype), grad_values.to(values.dtype), grad_h0.to(h0.dtype)
    grad_u = empty(tuple(h.shape), dtype)
    grad_rows = torch.zeros((n_rows, values.shape[-1]), dtype=dtype)
    grad_h0 = torch.zeros((n_rows, n_channels), dtype=dtype)
    _coupled.csr_backward(compute(grad_h).numpy(), compute(h).numpy(), crow.contiguous().numpy(),
                          col.contiguous().numpy(), values_t.numpy(), crow_t.numpy(), col_t.numpy(), index,
                          compute(h0).numpy(), kind, grad_u.numpy(), grad_rows.numpy(), grad_h0.numpy())
    grad_values = _sum_rows(grad_rows, values_index, values.shape[0])
    return grad_u.to(h.dtype), grad_values.to(values.dtype), grad_h0.to(h0.dtype)
