"""SIMD building blocks for the numba CPU kernels.

**Transposed block moves** between time-major tile buffers and channel rows.

The CPU kernels keep a tile of channels in time-major buffers (lanes
contiguous, so the recurrence vectorises across channels), while inputs and
outputs are channel rows (time contiguous). Moving data between the two is a
transpose. Element by element it costs more than the filtering itself, so
these numba intrinsics move one square block of ``V x V`` values (``V`` = 8
float32 or 4 float64 values, one AVX2 register) with vector loads, an
in-register transpose (shufflevector) and vector stores. Stores to channel
rows are non-temporal when the address allows it: the output is written once
and not read back soon, so it should not evict the working buffers or be read
from memory before it is overwritten.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model
from numba.np.arrayobj import populate_array

__all__ = [
    "vector_width", "rows_from_block", "block_from_rows", "LaneVector", "group_width",
    "unowned_array", "borrow", "vload", "vstore", "prefetch", "vsplat", "vadd", "vmul", "vdiv", "vmax", "vmin",
    "vclamp", "vwhere_positive", "vfma", "vfnma", "vabs", "vsum",
    "flush_subnormals", "restore_subnormals",
]

_REGISTER_BYTES = 32  # AVX2


@numba.njit(cache=True)
def vector_width(itemsize: int) -> int:
    """Values per register for an element size in bytes (also callable from numba)."""
    return 32 // itemsize


def _transpose(builder, vectors):
    """Transpose V vectors of V lanes (V = 4 or 8) with two-input shuffles."""
    n = len(vectors)

    def shuffle(a, b, mask):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))

    if n == 8:
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = []
        for i in range(0, 8, 2):
            t += [shuffle(vectors[i], vectors[i + 1], lo), shuffle(vectors[i], vectors[i + 1], hi)]
        even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        s = []
        for base in (0, 4):
            a0, a1, b0, b1 = t[base], t[base + 1], t[base + 2], t[base + 3]
            s += [shuffle(a0, b0, even), shuffle(a0, b0, odd), shuffle(a1, b1, even), shuffle(a1, b1, odd)]
        first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        out = [None] * 8
        for j in range(4):
            out[j] = shuffle(s[j], s[j + 4], first)
            out[j + 4] = shuffle(s[j], s[j + 4], second)
        return out
    if n == 4:
        t0 = shuffle(vectors[0], vectors[1], [0, 4, 2, 6])
        t1 = shuffle(vectors[0], vectors[1], [1, 5, 3, 7])
        t2 = shuffle(vectors[2], vectors[3], [0, 4, 2, 6])
        t3 = shuffle(vectors[2], vectors[3], [1, 5, 3, 7])
        return [
            shuffle(t0, t2, [0, 1, 4, 5]),
            shuffle(t1, t3, [0, 1, 4, 5]),
            shuffle(t0, t2, [2, 3, 6, 7]),
            shuffle(t1, t3, [2, 3, 6, 7]),
        ]
    raise AssertionError(f"no transpose for {n} lanes")


def _pointer(context, builder, array, array_type, i, j):
    """Address of ``array[i, j]`` for a 2-D array (strides in bytes)."""
    stride = cgutils.unpack_tuple(builder, array.strides, 2)[0]
    itemsize = context.get_constant(types.intp, array_type.dtype.bitwidth // 8)
    offset = builder.add(builder.mul(i, stride), builder.mul(j, itemsize))
    base = builder.ptrtoint(array.data, ir.IntType(64))
    return builder.add(base, offset)


def _valid(buffer, dst, rows):
    return (
        isinstance(buffer, types.Array)
        and buffer.ndim == 2
        and buffer.dtype in (types.float32, types.float64)
        and isinstance(dst, types.Array)
        and dst.ndim == 2
        and dst.dtype == buffer.dtype
        and isinstance(rows, types.Array)
        and rows.ndim == 1
        and isinstance(rows.dtype, types.Integer)
    )


def _codegen(to_rows):
    def codegen(context, builder, signature, args):
        buffer_type, _, _, rows_array_type, row_ids_type = signature.args[:5]
        buffer = context.make_array(buffer_type)(context, builder, args[0])
        rows_array = context.make_array(rows_array_type)(context, builder, args[3])
        row_ids = context.make_array(row_ids_type)(context, builder, args[4])
        r0, c0, j0, t = (
            context.cast(builder, value, value_type, types.intp)
            for value, value_type in zip((args[1], args[2], args[5], args[6]),
                                         (signature.args[1], signature.args[2], signature.args[5], signature.args[6]))
        )
        element = context.get_data_type(buffer_type.dtype)
        itemsize = buffer_type.dtype.bitwidth // 8
        width = _REGISTER_BYTES // itemsize
        vector = ir.VectorType(element, width)
        vector_pointer = vector.as_pointer()
        rows = []
        for j in range(width):
            index = builder.add(j0, context.get_constant(types.intp, j))
            row = builder.load(cgutils.gep(builder, row_ids.data, index))
            rows.append(context.cast(builder, row, row_ids_type.dtype, types.intp))

        def load(address):
            return builder.load(builder.inttoptr(address, vector_pointer), align=itemsize)

        if to_rows:
            # buffer[r0 + i, c0 : c0 + V] -> rows_array[rows[j0 + j], t : t + V],
            # for i < 2V: two squares, so each row gets one whole 64-byte line
            # in back-to-back stores (a write-combining buffer fills at once).
            halves = []
            for half in range(2):
                loaded = [
                    load(_pointer(context, builder, buffer, buffer_type,
                                  builder.add(r0, context.get_constant(types.intp, half * width + i)), c0))
                    for i in range(width)
                ]
                halves.append(_transpose(builder, loaded))
            nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
            step = ir.Constant(ir.IntType(64), _REGISTER_BYTES)
            for j in range(width):
                address = _pointer(context, builder, rows_array, rows_array_type, rows[j], t)
                misaligned = builder.and_(address, ir.Constant(ir.IntType(64), _REGISTER_BYTES - 1))
                aligned = builder.icmp_unsigned("==", misaligned, ir.Constant(ir.IntType(64), 0))
                pointers = [builder.inttoptr(address, vector_pointer),
                            builder.inttoptr(builder.add(address, step), vector_pointer)]
                with builder.if_else(aligned, likely=True) as (then, otherwise):
                    with then:
                        for half in range(2):
                            store = builder.store(halves[half][j], pointers[half], align=_REGISTER_BYTES)
                            store.set_metadata("nontemporal", nontemporal)
                    with otherwise:
                        for half in range(2):
                            builder.store(halves[half][j], pointers[half], align=itemsize)
        else:
            # rows_array[rows[j0 + j], t : t + V] -> buffer[r0 + i, c0 : c0 + V]
            loaded = [load(_pointer(context, builder, rows_array, rows_array_type, rows[j], t)) for j in range(width)]
            for i, value in enumerate(_transpose(builder, loaded)):
                address = _pointer(context, builder, buffer, buffer_type,
                                   builder.add(r0, context.get_constant(types.intp, i)), c0)
                builder.store(value, builder.inttoptr(address, vector_pointer), align=itemsize)
        return context.get_dummy_value()

    return codegen


@intrinsic
def rows_from_block(typingctx, buffer, r0, c0, dst, row_ids, j0, t):
    """``dst[row_ids[j0 + j], t + i] = buffer[r0 + i, c0 + j]`` for i < 2V, j < V.

    ``buffer`` and ``dst`` are 2-D arrays of one float dtype with unit inner
    stride; V is :func:`vector_width` of that dtype.
    """
    if not _valid(buffer, dst, row_ids):
        return None
    return types.void(buffer, r0, c0, dst, row_ids, j0, t), _codegen(to_rows=True)


@intrinsic
def block_from_rows(typingctx, buffer, r0, c0, src, row_ids, j0, t):
    """``buffer[r0 + i, c0 + j] = src[row_ids[j0 + j], t + i]`` for i, j < V."""
    if not _valid(buffer, src, row_ids):
        return None
    return types.void(buffer, r0, c0, src, row_ids, j0, t), _codegen(to_rows=False)


# --------------------------------------------------------------------------
# Lane vectors: a group of 64 bytes of lanes (16 float32 or 8 float64) held
# as one LLVM vector, which the backend splits into two AVX2 registers. The
# kernels keep recurrence state and a biquad's coefficients in these values
# across time steps, so they stay in registers, and no loop depends on the
# auto-vectoriser (whose alias checks give up on loops that touch many arrays;
# measured 2-3x slower). Two registers per value keep two independent FMA
# chains in flight per time step; wider groups spill the coefficients.

GROUP_BYTES = 64


class LaneVector(types.Type):
    """numba type of a group of lanes of one float dtype."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.count = GROUP_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"LaneVector({dtype})")


@register_model(LaneVector)
class _LaneVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


@numba.njit(cache=True)
def group_width(itemsize: int) -> int:
    """Lanes per lane vector for an element size in bytes (also callable from numba)."""
    return 64 // itemsize


def _is_float_matrix(array):
    return isinstance(array, types.Array) and array.ndim == 2 and array.dtype in (types.float32, types.float64)


# vload/vstore take the 2-D buffer and a row rather than a row view: a view
# (``buffer[t]``) is a new array whose reference count numba raises and
# drops, two atomic operations per time step where LLVM does not prune them
# (measured: a third of the backward's time in a fresh process).



def unowned_array(context, builder, array_type, data, shape, strides, itemsize):
    """Codegen: an array value of ``array_type`` over ``data`` that holds no reference (a null meminfo, which
    numba's reference counting skips); the memory must outlive it."""
    array = context.make_array(array_type)(context, builder)
    populate_array(array, data=data, shape=shape, strides=strides, itemsize=itemsize, meminfo=None)
    return array._getvalue()


@intrinsic
def borrow(typingctx, array, index):
    """``array[index]`` of a C-contiguous array, as a view that holds no reference.

    numba counts references to every view, an atomic operation on the base
    array's counter each time one is made or dropped; on an argument that
    both threads view every block the counter's cache line moves between the
    cores. A borrowed view is for a callee or a loop while ``array`` is alive.
    """
    if not (isinstance(array, types.Array) and array.layout == "C" and array.ndim >= 2
            and isinstance(index, types.Integer)):
        return None
    view_type = array.copy(ndim=array.ndim - 1, layout="C")

    def codegen(context, builder, signature, args):
        base = context.make_array(signature.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        shapes = cgutils.unpack_tuple(builder, base.shape, array.ndim)
        strides = cgutils.unpack_tuple(builder, base.strides, array.ndim)
        address = builder.add(builder.ptrtoint(base.data, ir.IntType(64)), builder.mul(i, strides[0]))
        return unowned_array(context, builder, view_type, builder.inttoptr(address, base.data.type), shapes[1:],
                             strides[1:], base.itemsize)

    return view_type(array, index), codegen

@intrinsic
def vload(typingctx, array, row, col):
    """Lanes ``array[row, col : col + count]`` of a 2-D float array with unit inner stride."""
    if not _is_float_matrix(array):
        return None
    vector_type = LaneVector(array.dtype)

    def codegen(context, builder, signature, args):
        matrix = context.make_array(signature.args[0])(context, builder, args[0])
        i, j = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:]))
        address = _pointer(context, builder, matrix, signature.args[0], i, j)
        llvm_type = context.get_value_type(vector_type)
        return builder.load(builder.inttoptr(address, llvm_type.as_pointer()), align=array.dtype.bitwidth // 8)

    return vector_type(array, row, col), codegen


@intrinsic
def vstore(typingctx, array, row, col, value):
    """``array[row, col : col + count] = value``."""
    if not (_is_float_matrix(array) and isinstance(value, LaneVector) and value.dtype == array.dtype):
        return None

    def codegen(context, builder, signature, args):
        matrix = context.make_array(signature.args[0])(context, builder, args[0])
        i, j = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:3], signature.args[1:3]))
        address = _pointer(context, builder, matrix, signature.args[0], i, j)
        llvm_type = context.get_value_type(signature.args[3])
        builder.store(args[3], builder.inttoptr(address, llvm_type.as_pointer()), align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(array, row, col, value), codegen


@intrinsic
def vsplat(typingctx, like, value):
    """A lane vector of ``like``'s dtype (an array or a lane vector) with every lane equal to ``value``.

    Inside a loop, prefer a lane vector for ``like``: an array handed to an
    inlined helper is reference-counted around the helper's body, and numba
    cannot always prune those calls into its runtime.
    """
    if not (isinstance(like, (types.Array, LaneVector)) and like.dtype in (types.float32, types.float64)):
        return None
    if not isinstance(value, (types.Float, types.Integer)):
        return None
    vector_type = LaneVector(like.dtype)

    def codegen(context, builder, signature, args):
        scalar = context.cast(builder, args[1], signature.args[1], like.dtype)
        llvm_type = context.get_value_type(vector_type)
        single = builder.insert_element(ir.Constant(llvm_type, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count)
        return builder.shuffle_vector(single, ir.Constant(llvm_type, ir.Undefined), mask)

    return vector_type(like, value), codegen


def _binary(operation):
    @intrinsic
    def impl(typingctx, left, right):
        if not (isinstance(left, LaneVector) and left == right):
            return None

        def codegen(context, builder, signature, args):
            return getattr(builder, operation)(args[0], args[1])

        return left(left, right), codegen

    return impl


vadd = _binary("fadd")
vmul = _binary("fmul")
vadd.__doc__ = "Lane-wise ``a + b``."
vmul.__doc__ = "Lane-wise ``a * b``."


vdiv = _binary("fdiv")
vdiv.__doc__ = "Lane-wise ``a / b``."


def _lanewise(name: str, doc: str):
    """A two-operand LLVM vector intrinsic ``llvm.<name>`` as a lane-wise operation."""
    @intrinsic
    def impl(typingctx, left, right):
        if not (isinstance(left, LaneVector) and left == right):
            return None

        def codegen(context, builder, signature, args):
            vector = context.get_value_type(left)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 2), f"llvm.{name}.{_llvm_suffix(left)}")
            return builder.call(function, list(args))

        return left(left, right), codegen

    impl.__doc__ = doc
    return impl


vmax = _lanewise("maxnum", "Lane-wise ``max(a, b)`` (a NaN lane takes the other operand).")
vmin = _lanewise("minnum", "Lane-wise ``min(a, b)``.")


@intrinsic
def vclamp(typingctx, value, bound):
    """Lane-wise ``value`` limited to ``[-bound, bound]`` (a scalar bound); NaN lanes stay NaN."""
    if not (isinstance(value, LaneVector) and isinstance(bound, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        vector = context.get_value_type(value)
        limit = context.cast(builder, args[1], signature.args[1], value.dtype)
        high = builder.shuffle_vector(
            builder.insert_element(ir.Constant(vector, ir.Undefined), limit, ir.Constant(ir.IntType(32), 0)),
            ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), value.count),
                                                           [0] * value.count))
        low = builder.fneg(high)
        clipped = builder.select(builder.fcmp_ordered(">", args[0], high), high, args[0])
        return builder.select(builder.fcmp_ordered("<", clipped, low), low, clipped)

    return value(value, bound), codegen


@intrinsic
def vwhere_positive(typingctx, test, value):
    """Lane-wise ``value if test > 0 else 0``."""
    if not (isinstance(test, LaneVector) and test == value):
        return None

    def codegen(context, builder, signature, args):
        zero = ir.Constant(context.get_value_type(test), None)
        return builder.select(builder.fcmp_ordered(">", args[0], zero), args[1], zero)

    return test(test, value), codegen


def _llvm_suffix(vector_type):
    return f"v{vector_type.count}{'f32' if vector_type.dtype == types.float32 else 'f64'}"


def _fma(context, builder, vector_type, a, b, c):
    vector = context.get_value_type(vector_type)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.{_llvm_suffix(vector_type)}")
    return builder.call(function, [a, b, c])


@intrinsic
def vfma(typingctx, a, b, c):
    """Lane-wise ``a * b + c`` with one rounding."""
    if not (isinstance(a, LaneVector) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return _fma(context, builder, a, args[0], args[1], args[2])

    return a(a, b, c), codegen


@intrinsic
def vfnma(typingctx, a, b, c):
    """Lane-wise ``c - a * b`` with one rounding."""
    if not (isinstance(a, LaneVector) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return _fma(context, builder, a, builder.fneg(args[0]), args[1], args[2])

    return a(a, b, c), codegen


@intrinsic
def vabs(typingctx, value):
    """Lane-wise ``|a|``."""
    if not isinstance(value, LaneVector):
        return None

    def codegen(context, builder, signature, args):
        vector = context.get_value_type(value)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector]), f"llvm.fabs.{_llvm_suffix(value)}")
        return builder.call(function, [args[0]])

    return value(value), codegen


@intrinsic
def vsum(typingctx, value):
    """Sum of the lanes (in an unspecified order)."""
    if not isinstance(value, LaneVector):
        return None

    def codegen(context, builder, signature, args):
        element = context.get_value_type(value.dtype)
        vector = context.get_value_type(value)
        name = f"llvm.vector.reduce.fadd.{_llvm_suffix(value)}"
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(element, [element, vector]), name)
        return builder.call(function, [ir.Constant(element, 0.0), args[0]], fastmath=("reassoc",))

    return value.dtype(value), codegen



@intrinsic
def prefetch(typingctx, array, row, col):
    """Ask for the cache line holding ``array[row, col]`` of a 2-D array (a hint: no fault, no effect on results)."""
    if not (isinstance(array, types.Array) and array.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        matrix = context.make_array(signature.args[0])(context, builder, args[0])
        i, j = (context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:]))
        address = _pointer(context, builder, matrix, signature.args[0], i, j)
        byte_pointer = ir.IntType(8).as_pointer()
        word = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, word, word, word]), "llvm.prefetch.p0")
        # read, keep in all cache levels, data cache
        builder.call(function, [builder.inttoptr(address, byte_pointer), ir.Constant(word, 0), ir.Constant(word, 3),
                                ir.Constant(word, 1)])
        return context.get_dummy_value()

    return types.void(array, row, col), codegen

# --------------------------------------------------------------------------
# Subnormal numbers. A recursion whose input falls silent (the zero padding of
# a batch of clips, pauses in speech) decays through the subnormal range,
# where x86 arithmetic is tens of times slower: measured 5x on a training
# step over zero-padded spoken digits. The kernels flush them to zero (MXCSR
# FTZ and DAZ, per thread, restored after each tile); values below 1e-38
# (float32) or 1e-308 (float64) carry nothing an audio signal needs.

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_FTZ_DAZ = 0x8040


def _mxcsr_call(builder, name, slot):
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(ir.IntType(8))]), name)
    builder.call(function, [builder.bitcast(slot, ir.PointerType(ir.IntType(8)))])


@intrinsic
def flush_subnormals(typingctx):
    """Set this thread's FTZ and DAZ bits; returns the previous MXCSR (0 where the CPU is not x86)."""

    def codegen(context, builder, signature, args):
        word = ir.IntType(32)
        if not _X86:
            return ir.Constant(word, 0)
        slot = cgutils.alloca_once(builder, word)
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        previous = builder.load(slot)
        builder.store(builder.or_(previous, ir.Constant(word, _FTZ_DAZ)), slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return previous

    return types.uint32(), codegen


@intrinsic
def restore_subnormals(typingctx, previous):
    """Restore the MXCSR that :func:`flush_subnormals` returned."""

    def codegen(context, builder, signature, args):
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(args[0], slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen
