"""``filterbank compile``: compile the CPU kernels into numba's cache now, so that later processes load them.

A fresh process with an empty cache compiles each kernel on its first call
(seconds each on a small machine). Run this once where the cache is kept: a
container image's build step, a CI cache, after installing. Each family of
kernels compiles in a process of its own, ``--jobs`` at a time (default: the
cores here). See ``filterbank.precompile``.
"""

from __future__ import annotations

import argparse
import time

from .. import precompile
from ._options import positive_int

__all__ = ["add_parser"]


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("compile", help="compile the CPU kernels into numba's cache ahead of use",
                                 description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", nargs="+", choices=tuple(precompile.DTYPES), default=["float32"],
                        help="compute dtypes to compile for (default float32; float16/bfloat16 compute in float32)")
    parser.add_argument("--family", nargs="+", choices=precompile.FAMILIES, default=list(precompile.FAMILIES),
                        help="kernel families (default all): filter = lfilter/sosfilt, front-end = FrontEnd "
                             "training, inference and streaming, banded = banded_recurrence/BandedRNN/"
                             "CascadeFilterbank, sparse = sparse_recurrence/SparseRNN")
    parser.add_argument("--jobs", type=positive_int, default=None, help="processes at a time (default: the cores)")
    parser.set_defaults(check=lambda args, parser: None, run=run)
    return parser


def run(args) -> int:
    start = time.perf_counter()
    print(f"compiling into {precompile.cache_location()}")
    precompile.precompile(args.family, args.dtype, args.jobs,
                          report=lambda family, dtype, seconds: print(f"  {family:9} {dtype}: {seconds:5.1f} s",
                                                                      flush=True))
    print(f"done in {time.perf_counter() - start:.1f} s; a fresh process now loads these kernels from the cache")
    return 0
