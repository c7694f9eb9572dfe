"""CUDA kernels for a cascade of IIR sections and for the coupled recurrences, forward and backward.

Same contract as ``filterbank.kernels.reference`` (see there for shapes). The
kernels live in ``csrc/`` (``iir_scan.cu``: a group of sections in one
time-parallel pass with float64 carries, and its fused backward; see
docs/design.md, "Time-parallel scan (GPU)"; ``coupled.cu``: the recurrences
``h[t] = f(A h[t-1] + u[t])``, a block per group of rows, the state in shared
memory; docs/design.md, "Coupled recurrences on the GPU") and are compiled on
first use with ``torch.utils.cpp_extension`` into torch's extension cache, so later
processes load them in a moment. Build ahead of time with

    python -m filterbank.kernels.cuda

The same source also builds for CPU threads (:func:`build_emulated`, g++
only, tensors on the CPU; ``python -m filterbank.kernels.cuda --emulated``):
the tests run every kernel that way, and it counts the kernels'
global-memory traffic.

Environment (the README's table lists these too):

* ``FILTERBANK_CUDA=0``: do not build; CUDA tensors use the pure-torch
  reference (correct, slow).
* ``FILTERBANK_CSRC``: where the CUDA sources are (default: the copy inside
  the installed package, or the checkout's ``csrc/``; see :func:`source_folder`).
* torch's own ``TORCH_CUDA_ARCH_LIST``, ``TORCH_EXTENSIONS_DIR``, ``CUDA_HOME``
  and ``MAX_JOBS`` steer the build.

If the build fails, one warning says why and the op layer falls back to the
reference. Sections run in groups: second-order sections (and first-order
ones, padded with zero coefficients) four to a kernel launch, sections of
order 3-4 and 5-8 one to a launch (padded to order 4 or 8); the padding is
exact. float16/bfloat16 are computed in float32.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from . import reference
from ._dtypes import compute_dtype

__all__ = ["available", "supports", "iir_cascade", "iir_cascade_backward", "banded_recurrence",
           "banded_recurrence_backward", "csr_recurrence", "csr_recurrence_backward", "MAX_ORDER", "build",
           "build_emulated", "sources", "source_folder", "raise_reported"]

MAX_ORDER = 8  # kMaxOrder in csrc/iir_scan.h
_extension = None
_failure: Optional[str] = None


# What each build compiles, and every file either build reads (the build's
# name carries their digest, so an edited header rebuilds too).
SOURCES = ("binding.cpp", "iir_scan.cu", "coupled.cu")
EMULATED_SOURCES = ("binding.cpp", "emulated.cpp")
FILES = ("binding.cpp", "iir_scan.cu", "scan.cuh", "iir_scan.h", "coupled.cu", "coupled.h", "emulation.h",
         "emulated.cpp")
_emulated = None


def source_folder() -> Path:
    """Where the CUDA sources are: ``$FILTERBANK_CSRC``; else the copy an installed wheel carries
    (``filterbank/kernels/csrc/``); else, in a source checkout or an editable install, ``csrc/``."""
    if "FILTERBANK_CSRC" in os.environ:
        return Path(os.environ["FILTERBANK_CSRC"])
    here = Path(__file__).resolve().parent
    packaged = here / "csrc"
    return packaged if packaged.is_dir() else here.parents[1] / "csrc"


def sources() -> list[Path]:
    """The files the extension is built from."""
    return [source_folder() / name for name in SOURCES]


def _compile(name: str, files: tuple[str, ...], verbose: bool, **options):
    from torch.utils import cpp_extension

    folder = source_folder()
    missing = [str(folder / f) for f in FILES if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"the CUDA sources are missing: {', '.join(missing)} (reinstall filterbank, or point FILTERBANK_CSRC "
            "at a folder holding them)")
    digest = hashlib.sha256(b"".join((folder / f).read_bytes() for f in FILES)).hexdigest()[:12]
    return cpp_extension.load(name=f"{name}_{digest}", sources=[str(folder / f) for f in files], verbose=verbose,
                              **options)


def build(verbose: bool = False):
    """Compile (or load from torch's cache) the CUDA extension; raises on failure."""
    global _extension
    if _extension is None:
        _extension = _compile("filterbank_cuda", SOURCES, verbose, extra_cflags=["-O3"],
                              extra_cuda_cflags=["-O3", "-std=c++17"])
    return _extension


def build_emulated(verbose: bool = False):
    """The same kernels compiled as C++ for CPU threads (needs only g++); takes CPU tensors.

    Besides the CUDA extension's functions it has ``reset_traffic()`` and
    ``traffic() -> (bytes read, bytes written, launches)``, the kernels'
    global-memory traffic since the reset.
    """
    global _emulated
    if _emulated is None:
        flags = ["-O2", "-std=c++20", "-DFILTERBANK_EMULATE", "-pthread"]
        _emulated = _compile("filterbank_emulated", EMULATED_SOURCES, verbose, extra_cflags=flags,
                             extra_ldflags=["-pthread"])
    return _emulated


def available() -> bool:
    """Whether the CUDA kernels can run here; builds them on the first call."""
    global _failure
    if _extension is not None:
        return True
    if _failure is not None or not torch.cuda.is_available():
        return False
    if os.environ.get("FILTERBANK_CUDA", "1") == "0":
        _failure = "FILTERBANK_CUDA=0"
        return False
    try:
        build()
        return True
    except Exception as error:  # no compiler, no headers, a broken toolchain: fall back, loudly once
        _failure = f"{type(error).__name__}: {error}"
        warnings.warn(
            "filterbank could not build its CUDA kernels, so CUDA tensors use the pure-torch reference "
            f"(correct, but slow). Reason: {_failure}. Install a CUDA toolkit matching torch.version.cuda "
            f"({torch.version.cuda}) with nvcc on PATH or CUDA_HOME set, then run "
            "`python -m filterbank.kernels.cuda` to see the build log.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


def supports(order: int) -> bool:
    return 0 <= order <= MAX_ORDER


# Per device: the kernels' report of a channel with a[..., 0] == 0 (1 + the
# channel, or 0), a host copy in pinned memory, and the event after which the
# copy holds a finished call's report.
_reports: dict[torch.device, list] = {}


def raise_reported(device: Optional[torch.device] = None, wait: bool = False) -> None:
    """Raise the ``ValueError`` a kernel reported: a channel whose ``a[..., 0]`` is 0.

    The kernels do not stop for it (checking on the host before each call
    would wait for the device): that channel's outputs are not finite, and the
    report is raised by the first call into these kernels after it has
    arrived, or here. ``wait=True`` waits for the device first.
    """
    for where, entry in list(_reports.items()):
        if device is not None and where != torch.device(device):
            continue
        flag, host, event = entry
        if event is not None:
            if wait:
                event.synchronize()
            elif not event.query():
                continue
        channel = int(host[0]) if event is not None else int(flag[0])
        if channel:
            flag.zero_()
            host.zero_()
            raise ValueError(
                f"a[..., 0] must be non-zero; a CUDA kernel found 0 in channel {channel - 1} of the filter "
                "(that call's outputs are not finite)")


def _capturing(device: torch.device) -> bool:
    """Whether a CUDA graph is being captured (events cannot be queried then)."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _bad_channel(device: torch.device) -> Tensor:
    """The report slot the kernels write for ``device`` (raising an earlier call's report first)."""
    if not _capturing(device):
        raise_reported(device)
    if device not in _reports:
        on_gpu = device.type == "cuda"
        _reports[device] = [torch.zeros(1, dtype=torch.int64, device=device),
                            torch.zeros(1, dtype=torch.int64, pin_memory=on_gpu), None]
    return _reports[device][0]


def _reported(device: torch.device) -> None:
    """After a launch: copy the report home without waiting (GPU), or raise it now (CPU threads)."""
    entry = _reports[device]
    if _capturing(device):
        return  # a replayed graph's report waits in the device slot for the next call outside capture
    if device.type == "cuda":
        entry[1].copy_(entry[0], non_blocking=True)
        entry[2] = torch.cuda.Event()
        entry[2].record()
    else:
        raise_reported(device)


def _padded_order(order: int) -> int:
    """The kernel order a section of ``order`` runs as (zero coefficients above it)."""
    return 2 if order <= 2 else 4 if order <= 4 else 8


def _groups(order: int, n_sections: int) -> list[tuple[int, int, int]]:
    """``(first, count, kernel_size)`` per launch: consecutive sections, padded with unit sections."""
    largest = 4 if _padded_order(order) == 2 else 1
    groups = []
    for first in range(0, n_sections, largest):
        count = min(largest, n_sections - first)
        groups.append((first, count, 4 if count == 3 else count))
    return groups


def _pad_group(b: Tensor, a: Tensor, zi: Tensor, order: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sections (P, count, K + 1) padded to (P, size, order + 1): zero coefficients, then unit sections."""
    n_channels, count, width = b.shape
    shape = (n_channels, size, order + 1)
    b_padded, a_padded = b.new_zeros(shape), a.new_zeros(shape)
    b_padded[:, :, 0] = 1
    a_padded[:, :, 0] = 1
    b_padded[:, :count, :width] = b
    a_padded[:, :count, :width] = a
    zi_padded = zi.new_zeros((n_channels, size, order))
    zi_padded[:, :count, : width - 1] = zi
    return b_padded, a_padded, zi_padded


def _row_ranges(x_index: Optional[Tensor], n_rows: int, channels_per_block: int, device: torch.device
                ) -> tuple[Tensor, Tensor, int]:
    """The channels of each input row, without a host sync: ``(row_start, channel_order, splits)``.

    Channel ``channel_order[row_start[r] + j]`` reads row ``r``; a block takes
    one of ``splits`` slices of a row's channels. ``x_index`` None: channel
    ``p`` reads row ``p`` (a later group reading the previous one's output).
    """
    if x_index is None:
        own = torch.arange(n_rows + 1, device=device)
        return own, own[:-1], 1
    channel_order = torch.argsort(x_index, stable=True)
    boundaries = torch.arange(n_rows + 1, device=x_index.device, dtype=x_index.dtype)
    row_start = torch.searchsorted(x_index[channel_order], boundaries).to(torch.int64)
    per_row = -(-x_index.shape[0] // max(n_rows, 1))
    return row_start, channel_order, max(1, -(-per_row // channels_per_block))


def _gain(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor) -> Tensor:
    """Sections of order 0: each channel's input times the product of ``b0 / a0``."""
    return x[x_index] * (b[..., 0] / a[..., 0]).prod(-1, keepdim=True)


def _forward(extension, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor):
    """The cascade in the compute dtype: ``(y (P, T), zf (P, S, K), inputs)``, one launch per group.

    ``inputs`` lists each group's input ``(signal, index)``: x itself, then the
    previous group's output (index None: channel p reads its row p).
    """
    dtype = compute_dtype(x.dtype)
    rows = x.to(dtype).contiguous()
    b, a, zi = b.to(dtype), a.to(dtype), zi.to(dtype)
    n_channels, n_sections, width = b.shape
    order, n_time = width - 1, rows.shape[-1]
    if order == 0:
        return _gain(rows, x_index, b, a), zi.clone(), [(rows, x_index)]
    if n_time == 0 or n_channels == 0:
        return rows.new_empty((n_channels, n_time)), zi.clone(), [(rows, x_index)]
    kernel_order = _padded_order(order)
    signal, index = rows, x_index
    inputs, final_states = [], []
    for first, count, size in _groups(order, n_sections):
        group = slice(first, first + count)
        bg, ag, zig = _pad_group(b[:, group], a[:, group], zi[:, group], kernel_order, size)
        row_start, channel_order, splits = _row_ranges(index, signal.shape[0], extension.channels_per_block,
                                                       x.device)
        y = rows.new_empty((n_channels, n_time))
        zf = rows.new_empty((n_channels, size, kernel_order))
        extension.cascade_forward(signal, row_start, channel_order, bg, ag, zig, y, zf, splits, _bad_channel(x.device))
        _reported(x.device)
        inputs.append((signal, index))
        final_states.append(zf[:, :count, :order])
        signal, index = y, None
    return signal, torch.cat(final_states, dim=1), inputs


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Forward kernel; see ``filterbank.kernels.reference.iir_cascade``."""
    y, zf, _ = _forward(build(), x, x_index, b, a, zi)
    return y.to(x.dtype), zf.to(x.dtype)


def _raw_gradients(sums: Tensor, b: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of raw ``b, a`` (P, S, K + 1) from the kernel's sums for the normalised ones.

    sums: (P, S, 2K + 1) float64, ``[:K+1]`` for ``bn``, ``[K+1:]`` minus the gradient of ``an[1:]``.
    """
    order = b.shape[-1] - 1
    b, a = b.double(), a.double()
    a0 = a[..., :1]
    bn, an = b / a0, a / a0
    grad_bn = sums[..., : order + 1]
    grad_an = -sums[..., order + 1 :]
    grad_a0 = -((grad_bn * bn).sum(-1, keepdim=True) + (grad_an * an[..., 1:]).sum(-1, keepdim=True)) / a0
    return grad_bn / a0, torch.cat([grad_a0, grad_an / a0], dim=-1)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward kernel; see ``filterbank.kernels.reference.iir_cascade_backward``.

    One fused backward per group (from the last): recomputes the group's
    forward in the kernel, runs the adjoint recursion and reduces the
    coefficient sums and the input gradient inside the blocks. A cascade of
    several groups keeps the groups' inputs from one forward pass.
    """
    extension = build()
    dtype = compute_dtype(x.dtype)
    n_channels, n_sections, width = b.shape
    order, n_time = width - 1, x.shape[-1]
    bc, ac = b.to(dtype), a.to(dtype)
    grad = grad_y.to(dtype).contiguous()
    grad_zf = grad_zf.to(dtype)
    if order == 0 or n_time == 0 or n_channels == 0:
        # No kernel needed: the reference's autograd (a gain, or nothing to filter).
        return reference.iir_cascade_backward(grad_y, grad_zf.to(x.dtype), x, x_index, b, a, zi)
    if len(_groups(order, n_sections)) > 1:
        _, _, inputs = _forward(extension, x, x_index, b, a, zi)
    else:
        inputs = [(x.to(dtype).contiguous(), x_index)]
    kernel_order = _padded_order(order)
    grads_b, grads_a, grads_zi = [], [], []
    for (first, count, size), (signal, index) in reversed(list(zip(_groups(order, n_sections), inputs))):
        group = slice(first, first + count)
        bg, ag, zig = _pad_group(bc[:, group], ac[:, group], zi.to(dtype)[:, group], kernel_order, size)
        _, _, grad_zf_g = _pad_group(bc[:, group], ac[:, group], grad_zf[:, group], kernel_order, size)
        row_start, channel_order, splits = _row_ranges(index, signal.shape[0], extension.channels_per_block,
                                                       x.device)
        grad_in = signal.new_empty((splits, signal.shape[0], n_time))
        grad_zi = signal.new_empty((n_channels, size, kernel_order))
        sums = extension.cascade_backward(signal, row_start, channel_order, bg, ag, zig, grad, grad_zf_g, grad_in,
                                          grad_zi, splits, _bad_channel(x.device))
        _reported(x.device)
        grad_b, grad_a = _raw_gradients(sums.sum(1), bg, ag)
        grads_b.insert(0, grad_b[:, :count, :width])
        grads_a.insert(0, grad_a[:, :count, :width])
        grad_zi = grad_zi[:, :count, :order].clone()
        for j in range(order):
            if n_time + j < order:  # zf[j] = zi[T + j] when the signal is shorter than the state
                grad_zi[..., n_time + j] += grad_zf[:, group, j]
        grads_zi.insert(0, grad_zi)
        grad = grad_in.sum(0) if splits > 1 else grad_in[0]
    return (grad.to(x.dtype), torch.cat(grads_b, 1).to(b.dtype), torch.cat(grads_a, 1).to(a.dtype),
            torch.cat(grads_zi, 1).to(zi.dtype))


# --------------------------------------------------------------------------
# Coupled recurrences (csrc/coupled.cu): h[n, t] = f(A h[n, t-1] + u[n, t]),
# shapes as in ``filterbank.kernels.reference``:
#
#     u, h: (rows, time, C)   h0: (rows, C)   band: (M, C, W)   values: (M, nnz)
#     crow: (C + 1,) int64   col: (nnz,) int64   band_index, values_index: (rows,) int64
#
# float16/bfloat16 are computed in float32; the backward's sums per row are
# float64, reduced over the rows sharing a matrix in row order (deterministic).

NONLINEARITIES = {"identity": 0, "tanh": 1, "relu": 2}  # filterbank::Nonlinearity in csrc/coupled.h


def _fits(extension, n_channels: int, dtype: torch.dtype) -> bool:
    """Whether one row's state fits in a block's shared memory (else the reference runs)."""
    return n_channels <= extension.max_coupled_channels(torch.empty((), dtype=dtype).element_size())


def _kernel_band(band: Tensor, dtype: torch.dtype) -> Tensor:
    """``band`` (M, C, W) as the kernels read it: (M, W, C), consecutive channels adjacent."""
    return band.to(dtype).transpose(1, 2).contiguous()


def _sum_rows(extension, per_row: Tensor, index: Tensor, n_matrices: int) -> Tensor:
    """(M, E) float64: ``per_row`` (N, E) float64 summed over the rows of each matrix, in row order."""
    if n_matrices == 1:
        rows = torch.arange(per_row.shape[0], device=per_row.device)
        start = torch.tensor([0, per_row.shape[0]], device=per_row.device)
    else:
        rows = torch.argsort(index, stable=True)
        boundaries = torch.arange(n_matrices + 1, device=index.device, dtype=index.dtype)
        start = torch.searchsorted(index[rows], boundaries).to(torch.int64)
    out = per_row.new_empty((n_matrices, per_row.shape[1]))
    extension.reduce_rows(per_row, rows, start, out)
    return out


def banded_recurrence(u: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                      nonlinearity: str) -> Tensor:
    """Forward kernel; see ``filterbank.kernels.reference.banded_recurrence``.

    Args:
        u: (rows, time, C); band: (M, C, W), ``band[m, i, d] = A_m[i, i + d - lower]``;
        band_index: (rows,) int64; h0: (rows, C); lower: the band's lower bandwidth;
        nonlinearity: "identity", "tanh" or "relu".

    Returns:
        h: (rows, time, C), the dtype of ``u``.
    """
    extension = build()
    dtype = compute_dtype(u.dtype)
    if not _fits(extension, u.shape[-1], dtype):
        return reference.banded_recurrence(u, band, band_index, h0, lower, nonlinearity)
    uc = u.to(dtype).contiguous()
    h = torch.empty_like(uc)
    if h.numel():
        extension.banded_forward(uc, _kernel_band(band, dtype), band_index.contiguous(), h0.to(dtype).contiguous(),
                                 h, lower, NONLINEARITIES[nonlinearity])
    return h.to(u.dtype)


def banded_recurrence_backward(grad_h: Tensor, h: Tensor, band: Tensor, band_index: Tensor, h0: Tensor, lower: int,
                               nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """Backward kernel; see ``filterbank.kernels.reference.banded_recurrence_backward``.

    Args:
        grad_h: (rows, time, C) the gradient on ``h``; h: the forward's output; the rest as in
            :func:`banded_recurrence`.

    Returns:
        ``(grad_u (rows, time, C), grad_band (M, C, W), grad_h0 (rows, C))``; band entries whose
        column falls outside the matrix get zero.
    """
    extension = build()
    dtype = compute_dtype(h.dtype)
    n_rows, n_time, n_channels = h.shape
    n_matrices, _, width = band.shape
    if not _fits(extension, n_channels, dtype):
        return reference.banded_recurrence_backward(grad_h, h, band, band_index, h0, lower, nonlinearity)
    if not (n_rows and n_time and n_channels):
        return torch.zeros_like(h), torch.zeros_like(band), torch.zeros_like(h0)
    hc = h.to(dtype).contiguous()
    grad_u = torch.empty_like(hc)
    grad_h0 = hc.new_empty((n_rows, n_channels))
    grad_rows = torch.empty((n_rows, width * n_channels), dtype=torch.float64, device=h.device)
    extension.banded_backward(grad_h.to(dtype).contiguous(), hc, _kernel_band(band, dtype), band_index.contiguous(),
                              h0.to(dtype).contiguous(), lower, NONLINEARITIES[nonlinearity], grad_u, grad_rows,
                              grad_h0)
    grad_band = _sum_rows(extension, grad_rows, band_index, n_matrices).reshape(n_matrices, width, n_channels)
    return grad_u.to(h.dtype), grad_band.transpose(1, 2).to(band.dtype).contiguous(), grad_h0.to(h0.dtype)


def csr_recurrence(u: Tensor, crow: Tensor, col: Tensor, values: Tensor, values_index: Tensor, h0: Tensor,
                   nonlinearity: str) -> Tensor:
    """Forward kernel; see ``filterbank.kernels.reference.csr_recurrence``.

    Args:
        u: (rows, time, C); crow: (C + 1,) int64; col: (nnz,) int64, sorted within rows;
        values: (M, nnz); values_index: (rows,) int64; h0: (rows, C); nonlinearity as in
        :func:`banded_recurrence`.

    Returns:
        h: (rows, time, C), the dtype of ``u``.
    """
    extension = build()
    dtype = compute_dtype(u.dtype)
    if not _fits(extension, u.shape[-1], dtype):
        return reference.csr_recurrence(u, crow, col, values, values_index, h0, nonlinearity)
    uc = u.to(dtype).contiguous()
    h = torch.empty_like(uc)
    if h.numel():
        extension.csr_forward(uc, crow.contiguous(), col.contiguous(), values.to(dtype).contiguous(),
                              values_index.contiguous(), h0.to(dtype).contiguous(), h, NONLINEARITIES[nonlinearity])
    return h.to(u.dtype)


def csr_recurrence_backward(grad_h: Tensor, h: Tensor, crow: Tensor, col: Tensor, values: Tensor,
                            values_index: Tensor, h0: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor, Tensor]:
    """Backward kernel; see ``filterbank.kernels.reference.csr_recurrence_backward``.

    A^T's pattern is built once per call (on the device); the kernel reads
    its values in that order.

    Returns:
        ``(grad_u (rows, time, C), grad_values (M, nnz), grad_h0 (rows, C))``.
    """
    extension = build()
    dtype = compute_dtype(h.dtype)
    n_rows, n_time, n_channels = h.shape
    if not _fits(extension, n_channels, dtype):
        return reference.csr_recurrence_backward(grad_h, h, crow, col, values, values_index, h0, nonlinearity)
    if not (n_rows and n_time and n_channels):
        return torch.zeros_like(h), torch.zeros_like(values), torch.zeros_like(h0)
    crow_t, col_t, order = reference.transposed_pattern(crow, col)
    vc = values.to(dtype).contiguous()
    hc = h.to(dtype).contiguous()
    grad_u = torch.empty_like(hc)
    grad_h0 = hc.new_empty((n_rows, n_channels))
    grad_rows = torch.empty((n_rows, col.shape[0]), dtype=torch.float64, device=h.device)
    extension.csr_backward(grad_h.to(dtype).contiguous(), hc, crow.contiguous(), col.contiguous(), vc, crow_t, col_t,
                           vc[:, order].contiguous(), values_index.contiguous(), h0.to(dtype).contiguous(),
                           NONLINEARITIES[nonlinearity], grad_u, grad_rows, grad_h0)
    grad_values = _sum_rows(extension, grad_rows, values_index, values.shape[0])
    return grad_u.to(h.dtype), grad_values.to(values.dtype), grad_h0.to(h0.dtype)


if __name__ == "__main__":
    import sys

    if "--emulated" in sys.argv[1:]:
        extension = build_emulated(verbose=True)
        print(f"filterbank CUDA kernels built for CPU threads and loaded: {extension.__file__}")
    else:
        extension = build(verbose=True)
        print(f"filterbank CUDA kernels built and loaded: {extension.__file__}")
