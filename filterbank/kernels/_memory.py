"""Output buffers for the CPU kernels: large ones backed by transparent huge pages.

A filterbank's output is large (the seed workload writes 262 MB) and freshly
allocated on every call. With 4 KiB pages the kernel spends most of its time
in page faults rather than filtering: measured on the 2-core CI machine,
allocating and writing 262 MB costs about 130 ms with 4 KiB pages against 16 ms
for writing into memory already mapped. Backing the buffer with 2 MiB pages
(Linux transparent huge pages, asked for with ``madvise``) cuts the faults by
512x. torch's own allocator does this only when ``THP_MEM_ALLOC_ENABLE=1`` is
set before torch starts, which a library cannot arrange, so large outputs are
mapped here and handed to torch without a copy.

Everywhere else (small buffers, other systems, THP switched off) this is
plain ``torch.empty``.
"""

from __future__ import annotations

import math
import mmap
import sys

import numpy as np
import torch
from torch import Tensor

__all__ = ["empty"]

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


_HUGE_PAGES = _huge_pages_available()


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised contiguous CPU tensor; huge-page backed when large.

    Args:
        shape: the tensor's shape.
        dtype: float32 or float64 for the huge-page path; other dtypes, small
            sizes or systems without THP get ``torch.empty``.
    """
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not _HUGE_PAGES or nbytes < _THRESHOLD or dtype not in _NUMPY_DTYPES:
        return torch.empty(shape, dtype=dtype)
    # Map one huge page more than needed so that the buffer can start on a
    # huge-page boundary (only 2 MiB-aligned ranges get huge pages). Untouched
    # slack costs address space, not memory. The mapping is unmapped when the
    # last tensor viewing it is freed (the tensor holds the array, the array
    # holds the map). Private: a shared anonymous map is shmem, which THP's
    # madvise mode does not cover.
    mapping = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mapping.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    offset = -raw.ctypes.data % _HUGE_PAGE
    array = raw[offset : offset + nbytes].view(_NUMPY_DTYPES[dtype]).reshape(shape)
    return torch.from_numpy(array)
