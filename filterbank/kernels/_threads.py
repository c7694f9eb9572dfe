"""Tile kernels on numba's threads without a parfor: a C callback run by the threading layer's ``parallel_for``.

A ``parallel=True`` kernel has numba compile its ``prange`` body a second
time, as a gufunc, through its parfor passes: measured on the 2-core machine,
the cascade's backward took 19 s to compile cold against 7 s for the same
code compiled serially. Here a kernel is written serially over a list of
tiles and called from one ``cfunc`` with the gufunc calling convention,
``void(char **args, intp *dims, intp *steps, void *data)`` (the forward
inlined at numba IR level; the backward called, as numba's copy of so large
a function's IR for inlining costs more than the call's second code
generation: measured 10.4 s against 8.4 s cold); the threading layer numba's parfors use (OpenMP, TBB or its
workqueue, with their threads and ``numba.set_num_threads``) calls it with
``args[0]`` pointing at the next ``dims[0]`` tile numbers. The kernel's
arguments travel in ``data``: per argument five int64 slots, an array's
address and shape (C-contiguous) or a scalar's value (:func:`pack`).

Each ``cfunc`` is compiled on first use and cached like the other kernels.
"""

from __future__ import annotations

import ctypes
import importlib

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

from ._simd import unowned_array

__all__ = ["SIGNATURE", "SLOTS", "pack", "launch", "compiled", "array_at", "tiles_of", "slots_of", "vector", "matrix",
           "array3", "array4", "value"]

# void(char **args, intp *dims, intp *steps, void *data), with the pointers typed as the kernels read them.
SIGNATURE = types.void(types.CPointer(types.CPointer(types.int64)), types.CPointer(types.intp),
                       types.CPointer(types.intp), types.CPointer(types.int64))
SLOTS = 5  # per argument: an address and up to four dimensions, or a value

_LAYERS = {"omp": "numba.np.ufunc.omppool", "tbb": "numba.np.ufunc.tbbpool", "workqueue": "numba.np.ufunc.workqueue"}
_parallel_for = None


def _threading_layer():
    """The threading layer's ``parallel_for`` (its threads started, as a parfor's first call would)."""
    global _parallel_for
    if _parallel_for is None:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        module = importlib.import_module(_LAYERS[numba.threading_layer()])
        c_intp_p = ctypes.POINTER(ctypes.c_ssize_t)
        _parallel_for = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), c_intp_p, c_intp_p,
                                         ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                         ctypes.c_int)(module.parallel_for)
    return _parallel_for


def pack(*values) -> np.ndarray:
    """The ``data`` block for ``values`` (C-contiguous numpy arrays of up to 4 dimensions, ints or bools).

    Slot 0 holds the number of slots; argument k starts at ``1 + SLOTS * k``.
    """
    slots = np.zeros(1 + SLOTS * len(values), np.int64)
    slots[0] = slots.shape[0]
    for k, value in enumerate(values):
        at = 1 + SLOTS * k
        if isinstance(value, np.ndarray):
            assert value.flags.c_contiguous and value.ndim < SLOTS, "C-contiguous arrays of up to 4 dimensions"
            slots[at] = value.ctypes.data
            slots[at + 1 : at + 1 + value.ndim] = value.shape
        else:
            slots[at] = int(value)
    return slots


def launch(kernel, n_tiles: int, data: np.ndarray) -> None:
    """Run the compiled ``cfunc`` ``kernel`` over tiles ``0 .. n_tiles - 1`` on numba's threads; ``data`` from
    :func:`pack` (its arrays must stay alive until this returns, as they do in the caller's frame)."""
    if n_tiles <= 0:
        return
    tiles = np.arange(n_tiles, dtype=np.int64)
    args = (ctypes.c_void_p * 1)(tiles.ctypes.data)
    dims = (ctypes.c_ssize_t * 2)(n_tiles, 1)
    steps = (ctypes.c_ssize_t * 1)(tiles.itemsize)
    threads = min(numba.get_num_threads(), n_tiles)
    # ctypes releases the GIL for the call; the kernel touches no Python object.
    _threading_layer()(kernel.address, args, dims, steps, data.ctypes.data, 1, 1, threads)


_compiled: dict = {}


def compiled(function):
    """``function`` (the gufunc calling convention, :data:`SIGNATURE`) as a cached ``cfunc``, compiled on first use."""
    kernel = _compiled.get(function)
    if kernel is None:
        with global_compiler_lock:
            kernel = _compiled.get(function)
            if kernel is None:
                kernel = _compiled[function] = numba.cfunc(SIGNATURE, nogil=True, cache=True)(function)
    return kernel


@numba.njit(inline="always")
def tiles_of(args, dims):
    """(count,) the tile numbers of this call."""
    return numba.carray(args[0], (dims[0],))


@numba.njit(inline="always")
def slots_of(data):
    """The ``data`` block as an int64 array."""
    return numba.carray(data, (data[0],))


@intrinsic
def array_at(typingctx, address, shape, dtype):
    """The C-contiguous array of ``dtype`` and ``shape`` (a tuple) at ``address``, holding no reference."""
    if not (isinstance(address, types.Integer) and isinstance(shape, types.UniTuple)
            and isinstance(shape.dtype, types.Integer) and isinstance(dtype, (types.NumberClass, types.DType))):
        return None
    element = dtype.instance_type if isinstance(dtype, types.NumberClass) else dtype.dtype
    array_type = types.Array(element, len(shape), "C")

    def codegen(context, builder, signature, args):
        ndim = len(shape)
        sizes = [context.cast(builder, v, shape.dtype, types.intp)
                 for v in cgutils.unpack_tuple(builder, args[1], ndim)]
        itemsize = context.get_abi_sizeof(context.get_data_type(element))
        strides, stride = [], context.get_constant(types.intp, itemsize)
        for size in reversed(sizes):
            strides.insert(0, stride)
            stride = builder.mul(stride, size)
        data_type = context.get_data_type(element).as_pointer()
        pointer = builder.inttoptr(context.cast(builder, args[0], signature.args[0], types.intp), data_type)
        return unowned_array(context, builder, array_type, pointer, sizes, strides, itemsize)

    return array_type(address, shape, dtype), codegen


# Argument k of a data block ``p`` (:func:`slots_of`), by kind.


@numba.njit(inline="always")
def vector(p, k, dtype):
    at = 1 + SLOTS * k
    return array_at(p[at], (p[at + 1],), dtype)


@numba.njit(inline="always")
def matrix(p, k, dtype):
    at = 1 + SLOTS * k
    return array_at(p[at], (p[at + 1], p[at + 2]), dtype)


@numba.njit(inline="always")
def array3(p, k, dtype):
    at = 1 + SLOTS * k
    return array_at(p[at], (p[at + 1], p[at + 2], p[at + 3]), dtype)


@numba.njit(inline="always")
def array4(p, k, dtype):
    at = 1 + SLOTS * k
    return array_at(p[at], (p[at + 1], p[at + 2], p[at + 3], p[at + 4]), dtype)


@numba.njit(inline="always")
def value(p, k):
    return p[1 + SLOTS * k]
