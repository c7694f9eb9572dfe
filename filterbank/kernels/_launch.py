"""Running the CPU kernels on threads, and compiling them lean on first use.

The threaded kernels are plain numba functions over a range of work items
(tiles of channels, or channels), ``kernel(lo, hi, *args)``, that release
the GIL. :func:`launch` cuts the items into one contiguous range per thread,
balanced by each item's weight (its lanes), and runs the ranges on a small
thread pool, the calling thread taking the first. numba's ``parallel=True``
would split the loop the same way, but a parfor costs several times the
kernel itself to compile (the cascade backward: about 26 s cold against 9 s
serial on the 2-core CI machine), and the first call's compile is what a
fresh process, container or CI job waits for.

The first call of a kernel with a new signature compiles it with LLVM at
``-O1`` and without the loop and SLP auto-vectorisers: the kernels are
written in explicit vector intrinsics (``_simd.py``), so those passes have
nothing to vectorise, and the kernels measured no slower for it while
compiling about a fifth faster. ``NUMBA_OPT``, when set, is honoured
instead. The options are set under numba's compiler lock, so no other
compilation sees them, and restored after.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading

import numba
import numpy as np
from numba.core import config
from numba.core.compiler_lock import global_compiler_lock

__all__ = ["launch", "split", "lean_compile"]

_READY: set = set()     # (kernel, argument kinds) already compiled or loaded from the cache
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    # A forked child has the pool object but none of its threads.
    global _POOL, _POOL_WORKERS, _POOL_LOCK
    _POOL, _POOL_WORKERS, _POOL_LOCK = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _pool(n_workers: int) -> concurrent.futures.ThreadPoolExecutor:
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < n_workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = concurrent.futures.ThreadPoolExecutor(n_workers, thread_name_prefix="filterbank-kernel")
            _POOL_WORKERS = n_workers
        return _POOL


@contextlib.contextmanager
def lean_compile():
    """Compile numba code inside at ``-O1`` without auto-vectorisers (unless ``NUMBA_OPT`` is set)."""
    with global_compiler_lock:
        saved = config.OPT, config.LOOP_VECTORIZE, config.SLP_VECTORIZE
        if "NUMBA_OPT" not in os.environ:
            config.OPT, config.LOOP_VECTORIZE, config.SLP_VECTORIZE = type(config.OPT)(1), False, False
        try:
            yield
        finally:
            config.OPT, config.LOOP_VECTORIZE, config.SLP_VECTORIZE = saved


def _kinds(args: tuple) -> tuple:
    """What numba's signature for ``args`` depends on, cheaply."""
    return tuple((a.dtype.num, a.ndim, a.flags.c_contiguous, a.flags.writeable) if isinstance(a, np.ndarray)
                 else type(a) for a in args)


def split(weights: np.ndarray, n_parts: int) -> list[tuple[int, int]]:
    """Contiguous ranges ``[lo, hi)`` of the items, at most ``n_parts``, with about equal total weight each."""
    n_items = weights.shape[0]
    n_parts = max(1, min(n_parts, n_items))
    if n_parts == 1:
        return [(0, n_items)]
    boundaries = np.concatenate(([0.0], np.cumsum(weights, dtype=np.float64)))  # work before item i
    targets = boundaries[-1] * np.arange(1, n_parts) / n_parts
    above = np.clip(np.searchsorted(boundaries, targets), 1, n_items)
    nearer = np.where(boundaries[above] - targets <= targets - boundaries[above - 1], above, above - 1)
    bounds = np.unique(np.concatenate(([0], nearer, [n_items])))
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def launch(kernel, weights: np.ndarray, *args) -> None:
    """``kernel(lo, hi, *args)`` over the items ``[0, len(weights))``, one range per thread.

    ``weights``: (n_items,) each item's work (lanes per tile, or ones). The
    threads are numba's (``numba.get_num_threads()``).
    """
    key = (kernel, _kinds(args))
    if key not in _READY:
        # An empty range compiles (or loads) the kernel here, before any worker needs it.
        with lean_compile():
            kernel(0, 0, *args)
        _READY.add(key)
    ranges = split(weights, numba.get_num_threads())
    if len(ranges) == 1:
        kernel(ranges[0][0], ranges[0][1], *args)
        return
    futures = [_pool(len(ranges) - 1).submit(kernel, lo, hi, *args) for lo, hi in ranges[1:]]
    try:
        kernel(ranges[0][0], ranges[0][1], *args)
    finally:
        done, _ = concurrent.futures.wait(futures)
    for future in done:
        future.result()
