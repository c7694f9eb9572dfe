"""CUDA kernels for a cascade of IIR sections, forward and backward.

Same contract as ``filterbank.kernels.reference`` (see there for shapes). The
kernels live in ``csrc/`` (``iir_scan.cu``: a time-parallel chunked scan per
section, and the backward's fused reductions) and are compiled on first use
with ``torch.utils.cpp_extension`` into torch's extension cache, so later
processes load them in a moment. Build ahead of time with

    python -m filterbank.kernels.cuda

Environment (the README's table lists these too):

* ``FILTERBANK_CUDA=0``: do not build; CUDA tensors use the pure-torch
  reference (correct, slow).
* ``FILTERBANK_CSRC``: where the CUDA sources are (default: the copy inside
  the installed package, or the checkout's ``csrc/``; see :func:`source_folder`).
* torch's own ``TORCH_CUDA_ARCH_LIST``, ``TORCH_EXTENSIONS_DIR``, ``CUDA_HOME``
  and ``MAX_JOBS`` steer the build.

If the build fails, one warning says why and the op layer falls back to the
reference. A cascade of S sections runs S scans; float16/bfloat16 are
computed in float32; orders above ``MAX_ORDER`` use the reference.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from . import adjoint
from ._dtypes import compute_dtype

__all__ = ["available", "supports", "iir_cascade", "iir_cascade_backward", "MAX_ORDER", "build", "sources",
           "source_folder"]

MAX_ORDER = 8  # kMaxOrder in csrc/iir_scan.h
_extension = None
_failure: Optional[str] = None


SOURCES = ("binding.cpp", "iir_scan.cu")


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


def build(verbose: bool = False):
    """Compile (or load from torch's cache) the extension; raises on failure."""
    global _extension
    if _extension is None:
        from torch.utils import cpp_extension

        files = sources()
        missing = [str(p) for p in files if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"the CUDA sources are missing: {', '.join(missing)} (reinstall filterbank, or point FILTERBANK_CSRC "
                "at a folder holding them)")
        _extension = cpp_extension.load(
            name="filterbank_cuda",
            sources=[str(p) for p in files],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", "-std=c++17"],
            verbose=verbose,
        )
    return _extension


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


def _final_state(inp: Tensor, inp_index: Tensor, out: Tensor, bn: Tensor, an: Tensor, zi: Tensor) -> Tensor:
    """scipy's TDF-II state after the last sample, from the last ``K`` samples.

    ``zf[i] = sum_{k>i} bn_k inp[T+i-k] - an_k out[T+i-k]`` (+ ``zi[T+i]`` when
    ``T + i < K``). inp: (rows, T); out: (P, T); bn, an: (P, K + 1); zi: (P, K).
    """
    order = bn.shape[-1] - 1
    n_time = out.shape[-1]
    # The last K samples, zero before the start: tail[:, j] = signal[:, T - K + j].
    inp_tail = torch.nn.functional.pad(inp[:, max(0, n_time - order):], (max(0, order - n_time), 0))[inp_index]
    out_tail = torch.nn.functional.pad(out[:, max(0, n_time - order):], (max(0, order - n_time), 0))
    zf = torch.zeros_like(zi)
    for i in range(order):
        for k in range(i + 1, order + 1):
            j = order + i - k
            zf[:, i] += bn[:, k] * inp_tail[:, j] - an[:, k] * out_tail[:, j]
        if n_time + i < order:
            zf[:, i] += zi[:, n_time + i]
    return zf


def _section(inp: Tensor, inp_index: Tensor, bn: Tensor, an: Tensor, zi: Optional[Tensor], reverse: bool) -> Tensor:
    """One section over every channel by the chunked scan. inp: (rows, T) -> (P, T)."""
    out = torch.empty((bn.shape[0], inp.shape[-1]), dtype=inp.dtype, device=inp.device)
    if bn.shape[-1] == 1:  # order 0: a gain
        return torch.mul(inp[inp_index], bn, out=out)
    build().section_scan(inp, inp_index, bn, an, zi, out, reverse)
    return out


def _prepare(x: Tensor, b: Tensor, a: Tensor):
    dtype = compute_dtype(x.dtype)
    rows = x.to(dtype).contiguous()  # the kernels read time with unit stride
    b, a = b.to(dtype), a.to(dtype)  # normalise in the compute dtype, not in float16
    return rows, b / a[..., :1], a / a[..., :1]


def _forward(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """The cascade in the compute dtype: (y (P, T), zf (P, S, K))."""
    rows, bn, an = _prepare(x, b, a)
    zi = zi.to(rows.dtype)
    n_channels, n_sections = b.shape[0], b.shape[1]
    channels = torch.arange(n_channels, device=x.device)
    signal, index = rows, x_index.contiguous()
    final_states = []
    for s in range(n_sections):
        b_s, a_s, zi_s = bn[:, s].contiguous(), an[:, s].contiguous(), zi[:, s].contiguous()
        out = _section(signal, index, b_s, a_s, zi_s, reverse=False)
        final_states.append(_final_state(signal, index, out, b_s, a_s, zi_s))
        signal, index = out, channels
    return signal, torch.stack(final_states, dim=1)


def iir_cascade(x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor) -> tuple[Tensor, Tensor]:
    """Forward kernel; see ``filterbank.kernels.reference.iir_cascade``."""
    y, zf = _forward(x, x_index, b, a, zi)
    return y.to(x.dtype), zf.to(x.dtype)


def _correlate(u: Tensor, inp: Tensor, inp_index: Tensor, out: Tensor, bn: Tensor):
    """``adjoint.correlate_torch`` by the fused kernel: no per-sample products stored."""
    order = bn.shape[-1] - 1
    if order == 0:
        return adjoint.correlate_torch(u, inp, inp_index, out, bn)
    sums = torch.zeros((bn.shape[0], 2 * order + 1), dtype=torch.float64, device=u.device)
    grad_in = torch.empty_like(u)
    build().correlate(u.contiguous(), inp, inp_index.contiguous(), out.contiguous(), bn.contiguous(), grad_in, sums)
    sums = sums.to(u.dtype)
    return sums[:, : order + 1], sums[:, order + 1 :], grad_in


def _reversed_allpole(g: Tensor, an: Tensor) -> Tensor:
    """``u[t] = g[t] - sum_k an_k u[t+k]``: the scan run backwards in time."""
    impulse = torch.zeros_like(an)
    impulse[:, 0] = 1
    channels = torch.arange(an.shape[0], device=g.device)
    return _section(g.contiguous(), channels, impulse, an.contiguous(), None, reverse=True)


def iir_cascade_backward(
    grad_y: Tensor, grad_zf: Tensor, x: Tensor, x_index: Tensor, b: Tensor, a: Tensor, zi: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Backward kernel; see ``filterbank.kernels.reference.iir_cascade_backward``.

    Recomputes each section's output with the scan, runs the adjoint
    recursion as the same scan backwards in time, and reduces the coefficient
    sums and the input gradient in one fused kernel per section.
    """
    dtype = compute_dtype(x.dtype)
    rows = x.to(dtype).contiguous()
    with torch.no_grad():
        grads = adjoint.backward(
            _forward, grad_y.to(dtype), grad_zf.to(dtype), rows, x_index, b.to(dtype), a.to(dtype),
            zi.to(dtype), correlate=_correlate, reversed_allpole=_reversed_allpole,
        )
    return tuple(g.to(t.dtype) for g, t in zip(grads, (x, b, a, zi)))


if __name__ == "__main__":
    extension = build(verbose=True)
    print(f"filterbank CUDA kernels built and loaded: {extension.__file__}")
