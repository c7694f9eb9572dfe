"""Compile filterbank's CPU kernels into numba's on-disk cache before their first use.

A process whose numba cache is empty compiles each kernel on its first call:
seconds per kernel on a small machine (the README's lfilter table gives the
first forward and backward here). Running :func:`precompile` once where the
cache is kept (a container image's build step, a CI cache, a fresh install)
moves that cost out of the first training step or extraction: later
processes load the kernels instead. The cache is numba's: ``NUMBA_CACHE_DIR``
when set, else ``__pycache__`` beside the installed package (or numba's
user-wide folder when that is not writable), so run it as the user and with
the environment that will run the work.

Each family of kernels is compiled in a process of its own, ``jobs`` at a
time, so that a machine with several cores compiles them side by side
(numba compiles one function at a time in a process). A family runs its
operations forward and backward once on tiny inputs, through the public API,
so that it compiles exactly the specialisations real calls use:

* ``filter``: ``lfilter``/``sosfilt`` (any order, any number of sections);
* ``front-end``: ``FrontEnd`` training (the fused filter-and-frame forward and
  its backward), inference, ``stream`` and the unfused frame energies;
* ``banded``: ``banded_recurrence``, ``BandedRNN``, ``CascadeFilterbank``;
* ``sparse``: ``sparse_recurrence`` with one matrix for the batch and with one
  per sequence, ``SparseRNN``.

float16 and bfloat16 compute in float32 kernels.

    python -m filterbank compile [--dtype float32 float64] [--family filter ...] [--jobs N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional

import torch

from . import _checks

__all__ = ["FAMILIES", "DTYPES", "precompile", "warm", "cache_location"]

# Longest to compile first (measured), so that with several jobs the last to start is a short one.
FAMILIES = ("front-end", "filter", "banded", "sparse")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _backward(*outputs) -> None:
    """Backpropagate a random gradient through ``outputs`` (tensors or tuples of them)."""
    tensors = []
    for output in outputs:
        tensors.extend(output if isinstance(output, (tuple, list)) else [output])
    tensors = [t for t in tensors if t.requires_grad]
    torch.autograd.backward(tensors, [torch.randn_like(t) for t in tensors])


def _filter(dtype: torch.dtype) -> None:
    from . import functional

    x = torch.randn(2, 3, 300, dtype=dtype, requires_grad=True)
    b = torch.tensor([[0.2, 0.1, -0.1], [0.5, 0.0, 0.0], [0.1, 0.2, 0.1]], dtype=dtype, requires_grad=True)
    a = torch.tensor([[1.0, -0.5, 0.2], [1.0, 0.3, 0.0], [1.0, -1.2, 0.5]], dtype=dtype, requires_grad=True)
    _backward(functional.lfilter(b, a, x))
    zi = torch.zeros(3, 2, dtype=dtype, requires_grad=True)
    _backward(functional.lfilter(b, a, x, zi=zi))
    sos = torch.cat([b, a], -1).detach().requires_grad_(True)
    _backward(functional.sosfilt(sos, x[:, :1]))


def _front_end(dtype: torch.dtype) -> None:
    from . import features
    from .nn import BiquadFilterbank, FrontEnd

    bank = BiquadFilterbank(4, 16000, kind="bandpass", learn=("frequency", "q"), dtype=dtype)
    front_end = FrontEnd(sample_rate=16000, hop_length=160, filterbank=bank, compression="log", dtype=dtype)
    x = torch.randn(2, 1600, dtype=dtype)
    _backward(front_end(x))
    _backward(front_end(x, lengths=torch.tensor([1600, 1000])))
    with torch.no_grad():
        front_end(x)
        _, state = front_end.stream(x[0, :160])
        _, state = front_end.stream(x[0, 160:480], state)
        front_end.finish(state)
    bands = torch.randn(2, 4, 800, dtype=dtype, requires_grad=True)
    _backward(features.frame_energy(bands, 160))


def _banded(dtype: torch.dtype) -> None:
    from . import coupled
    from .nn import BandedRNN, CascadeFilterbank

    u = torch.randn(3, 8, 40, dtype=dtype, requires_grad=True)
    band = (0.1 * torch.randn(8, 4, dtype=dtype)).requires_grad_(True)
    for nonlinearity in ("identity", "tanh", "relu"):
        _backward(coupled.banded_recurrence(u, band, (2, 1), nonlinearity=nonlinearity))
    per_sequence = (0.1 * torch.randn(3, 8, 4, dtype=dtype)).requires_grad_(True)
    h0 = torch.zeros(3, 8, dtype=dtype, requires_grad=True)
    _backward(coupled.banded_recurrence(u, per_sequence, (2, 1), h0=h0))
    _backward(BandedRNN(5, 16, 2, dtype=dtype)(torch.randn(30, 4, 5, dtype=dtype)))
    _backward(CascadeFilterbank(4, 16000, dtype=dtype)(torch.randn(2, 400, dtype=dtype)))


def _sparse(dtype: torch.dtype) -> None:
    from . import coupled
    from .nn import SparseRNN

    n_channels = 12
    pattern = torch.rand(n_channels, n_channels, generator=torch.Generator().manual_seed(0)) < 0.3
    crow = torch.zeros(n_channels + 1, dtype=torch.int64)
    crow[1:] = pattern.sum(1).cumsum(0)
    col = pattern.nonzero()[:, 1].contiguous()
    u = torch.randn(4, n_channels, 30, dtype=dtype, requires_grad=True)
    for values in (torch.randn(1, col.shape[0], dtype=dtype), torch.randn(4, col.shape[0], dtype=dtype)):
        values = (0.2 * values).requires_grad_(True)
        for nonlinearity in ("identity", "tanh", "relu"):
            _backward(coupled.sparse_recurrence(u, (crow, col, values), nonlinearity=nonlinearity))
    _backward(SparseRNN(5, 32, density=0.2, dtype=dtype)(torch.randn(20, 4, 5, dtype=dtype)))


_WORK = {"filter": _filter, "front-end": _front_end, "banded": _banded, "sparse": _sparse}


def warm(family: str, dtype: str = "float32") -> None:
    """Run ``family``'s CPU kernels once in this process, compiling (or loading) them: see the module's list."""
    _checks.choice("family", family, FAMILIES)
    _checks.choice("dtype", dtype, tuple(DTYPES))
    _WORK[family](DTYPES[dtype])


def cache_location() -> str:
    """Where numba keeps the compiled kernels of this installation, in words."""
    import numba

    if numba.config.CACHE_DIR:
        return f"{numba.config.CACHE_DIR} (NUMBA_CACHE_DIR)"
    kernels = Path(__file__).resolve().parent / "kernels" / "__pycache__"
    if os.access(kernels.parent, os.W_OK):
        return f"{kernels} (beside the package)"
    return "numba's user-wide cache folder (the package's folder is not writable)"


def precompile(families: Optional[Iterable[str]] = None, dtypes: Iterable[str] = ("float32",),
               jobs: Optional[int] = None, report=None) -> dict[tuple[str, str], float]:
    """Compile the kernels of ``families`` (default all) for ``dtypes`` into numba's cache.

    Args:
        families: names out of :data:`FAMILIES`.
        dtypes: ``"float32"`` and/or ``"float64"``.
        jobs: processes at a time (default: the cores this process may use).
        report: called as ``report(family, dtype, seconds)`` as each finishes.

    Returns:
        ``{(family, dtype): seconds}``, the wall time of each family's process.

    Raises:
        RuntimeError: a family's process failed (its output is in the message).
    """
    chosen = frozenset(FAMILIES) if families is None else _checks.names("families", families, FAMILIES)
    kinds = tuple(d for d in DTYPES if d in _checks.names("dtypes", dtypes, tuple(DTYPES)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cores if jobs is None else _checks.integer("jobs", jobs, 1)
    # The children import this very package: its folder goes on their path unless it is on ours already
    # (an installed package's site-packages stays where it is in the path's order).
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    if root not in {str(Path(p).resolve()) for p in sys.path if p}:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)

    def compile_one(task: tuple[str, str]) -> tuple[tuple[str, str], float]:
        family, dtype = task
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", f"from filterbank import precompile; "
                               f"precompile.warm({family!r}, {dtype!r})"], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"compiling the {family} kernels ({dtype}) failed:\n{done.stdout}{done.stderr}")
        if report is not None:
            report(family, dtype, seconds)
        return task, seconds

    tasks = [(f, d) for f in FAMILIES if f in chosen for d in kinds]
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tasks)))) as pool:
        return dict(pool.map(compile_one, tasks))
