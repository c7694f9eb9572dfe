"""Output buffers for the CPU kernels: large ones on huge pages, recycled.

A filterbank's output is large (the seed workload writes 262 MB) and freshly
allocated on every call. Measured on the 2-core CI machine, writing 262 MB
costs 16 ms into memory that is already mapped, 23-28 ms into fresh 2 MiB
pages and about 110-130 ms into fresh 4 KiB pages: the kernel would spend
most of its time in page faults and in the operating system zeroing pages.
So large buffers are

* mapped here with transparent huge pages (``madvise``; torch's allocator
  does this only when ``THP_MEM_ALLOC_ENABLE=1`` is set before it starts,
  which a library cannot arrange), and
* recycled: when the last tensor viewing a buffer is freed, its mapping goes
  to a small cache and the next output of the same size reuses it, already
  faulted in, as CUDA's caching allocator does. At most
  ``FILTERBANK_CPU_CACHE_MB`` (default 1024; 0 turns caching off) stay
  cached; :func:`empty_cache` returns them to the system.

Everywhere else (small buffers, other systems, THP switched off) this is
plain ``torch.empty``.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor

__all__ = ["empty", "empty_cache", "cached_bytes"]

_HUGE_PAGE = 2 << 20
# Below this the faults are cheap and the up-to-one-huge-page slack is not.
_THRESHOLD = 8 << 20
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _huge_pages_available() -> bool:
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
            return "[never]" not in setting.read()
    except OSError:
        return False


def _cache_limit() -> int:
    text = os.environ.get("FILTERBANK_CPU_CACHE_MB", "1024")
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"FILTERBANK_CPU_CACHE_MB must be a number of megabytes; got {text!r}") from None
    if megabytes < 0:
        raise ValueError(f"FILTERBANK_CPU_CACHE_MB must be >= 0; got {text!r}")
    return int(megabytes * 2**20)


_HUGE_PAGES = _huge_pages_available()
_CACHE_LIMIT = _cache_limit()
_lock = threading.Lock()
# Free mappings, least recently freed first: id -> (length, mapping).
_free: OrderedDict[int, tuple[int, mmap.mmap]] = OrderedDict()
_free_bytes = 0


def _take(length: int):
    global _free_bytes
    with _lock:
        for key, (size, mapping) in _free.items():
            if size == length:
                del _free[key]
                _free_bytes -= size
                return mapping
    return None


def _give_back(length: int, mapping: mmap.mmap) -> None:
    """Called when the last array viewing ``mapping`` is freed."""
    global _free_bytes
    with _lock:
        if length > _CACHE_LIMIT:
            return  # dropped: the mapping is unmapped when its last reference goes
        _free[id(mapping)] = (length, mapping)
        _free_bytes += length
        while _free_bytes > _CACHE_LIMIT:
            _, (size, _) = _free.popitem(last=False)
            _free_bytes -= size


def empty_cache() -> None:
    """Return the cached free CPU output buffers to the system (``filterbank.empty_cache``).

    Buffers still viewed by a live tensor are untouched; like
    ``torch.cuda.empty_cache``, this frees memory the cache holds, never
    memory in use.
    """
    global _free_bytes
    with _lock:
        _free.clear()
        _free_bytes = 0


def cached_bytes() -> int:
    """Bytes held in the cache of free buffers."""
    return _free_bytes


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised contiguous CPU tensor; huge-page backed and recycled when large.

    Args:
        shape: the tensor's shape.
        dtype: float32 or float64 for the huge-page path; other dtypes, small
            sizes or systems without THP get ``torch.empty``.
    """
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _HUGE_PAGES or nbytes < _THRESHOLD or dtype not in _NUMPY_DTYPES:
        return torch.empty(shape, dtype=dtype)
    # One huge page more than needed, so that the buffer can start on a
    # huge-page boundary (only 2 MiB-aligned ranges get huge pages); untouched
    # slack costs address space, not memory. Private: a shared anonymous map
    # is shmem, which THP's madvise mode does not cover.
    length = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE + _HUGE_PAGE
    mapping = _take(length)
    if mapping is None:
        mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mapping.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    offset = -raw.ctypes.data % _HUGE_PAGE
    array = raw[offset : offset + nbytes].view(_NUMPY_DTYPES[dtype]).reshape(shape)
    # The tensor holds ``array``; when torch frees it, the mapping goes back.
    weakref.finalize(array, _give_back, length, mapping)
    return torch.from_numpy(array)
