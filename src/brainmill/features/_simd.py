"""Four- and eight-wide float64 vectors for the compiled kernels (numba intrinsics).

LLVM vectorises numba's loops for this machine's cores with 8-wide vectors unrolled four
times, so a loop over 22 channels (BNCI2014-001, the PhysioNet benchmark) runs 32-value
trips never, a 4-wide epilogue five times and two scalar iterations, each loop behind its
own runtime alias checks. Kernels whose short rows are their hot loops say what they mean
with these instead: a :data:`vec4` value is an LLVM ``<4 x double>``; :func:`vload` /
:func:`vstore` move four consecutive elements of a 1-D float64 array (in one vector access
where they are adjacent: known for a C-contiguous row, checked when run for any other, one
element at a time otherwise), :func:`vload_n` / :func:`vstore_n` the first ``n ≤ 4`` of them
of a C-contiguous row (masked: nothing past them is read or written), ``+``, ``−`` and ``*``
act lane by lane with IEEE semantics (no fused multiply-add, no reassociation: a kernel
written with them gives the bits of the same scalar operations), :func:`vsplat` broadcasts a
scalar, :func:`vget` reads a lane and :func:`vtranspose4` transposes a 4 × 4 block held as
four vectors.

The eight-wide :data:`vec8` (one AVX-512 register, for
:mod:`~brainmill.features._small_products`) has masked loads and stores, a broadcast and a
fused multiply-add only (see its section below).

Nothing here checks bounds: the caller's loop keeps ``idx + 4`` (or ``idx + n``) within the
array.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

__all__ = ["vec4", "vec8", "vfma8", "vget", "vload", "vload8_n", "vload_n", "vsplat", "vsplat8",
           "vstore", "vstore8_n", "vstore_n", "vtranspose4"]

_LANES = 4
_V = ir.VectorType(ir.DoubleType(), _LANES)
_I32 = ir.IntType(32)


class Vec4Type(types.Type):
    """numba type of a ``<4 x double>`` value."""

    def __init__(self):
        super().__init__(name="vec4")


#: The type of the values these intrinsics make.
vec4 = Vec4Type()


@register_model(Vec4Type)
class _Vec4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V)


def _row(arr) -> bool:
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.float64


def _c_row(arr) -> bool:
    return _row(arr) and arr.layout == "C"


def _pointer(context, builder, arr_type, arr, idx, idx_type, vector_type=_V):
    """``&arr[idx]`` as a ``<4 x double>*`` (or ``vector_type*``; ``arr``'s elements adjacent:
    see :func:`_access`)."""
    array = context.make_array(arr_type)(context, builder, arr)
    i = context.cast(builder, idx, idx_type, types.intp)
    return builder.bitcast(builder.gep(array.data, [i]), vector_type.as_pointer())


def _access(context, builder, arr_type, arr, idx, idx_type, vector, scalar, value=True):
    """``vector(pointer)`` where ``arr``'s elements are adjacent, else ``scalar(pointers)``
    (one pointer per lane, by the stride); ``value``: both give a value, merged.

    A C-contiguous row is known adjacent when compiled; any other 1-D array (a row of a
    sliced 3-D array, say) is checked when run, so the kernels compile for every layout and
    take the vector path wherever the data allow it.
    """
    if arr_type.layout == "C":
        return vector(_pointer(context, builder, arr_type, arr, idx, idx_type))
    array = context.make_array(arr_type)(context, builder, arr)
    i = context.cast(builder, idx, idx_type, types.intp)
    stride = cgutils.unpack_tuple(builder, array.strides, 1)[0]
    adjacent = builder.icmp_signed("==", stride, context.get_constant(types.intp, 8))
    first = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()),
                        [builder.mul(i, stride)])
    with builder.if_else(adjacent, likely=True) as (then, otherwise):
        with then:
            got_vector = vector(builder.bitcast(first, _V.as_pointer()))
            block_vector = builder.block  # the branch's last block: the phi's predecessor
        with otherwise:
            lanes = [builder.bitcast(builder.gep(first, [builder.mul(
                context.get_constant(types.intp, k), stride)]), ir.DoubleType().as_pointer())
                for k in range(_LANES)]
            got_scalar = scalar(lanes)
            block_scalar = builder.block
    if not value:
        return None
    merged = builder.phi(got_vector.type)
    merged.add_incoming(got_vector, block_vector)
    merged.add_incoming(got_scalar, block_scalar)
    return merged


def _lane_mask(context, builder, n, n_type, lanes=_LANES):
    """``<lanes x i1>``: lanes ``< n``."""
    n = context.cast(builder, n, n_type, types.int64)
    i64s = ir.VectorType(ir.IntType(64), lanes)
    one = builder.insert_element(ir.Constant(i64s, ir.Undefined), n, ir.Constant(_I32, 0))
    splat = builder.shuffle_vector(one, ir.Constant(i64s, ir.Undefined),
                                   ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))
    return builder.icmp_signed("<", ir.Constant(i64s, list(range(lanes))), splat)


def _masked_load(context, builder, sig, args, vector_type):
    """``llvm.masked.load`` of ``args = (arr, idx, n)``'s first ``n`` lanes, zeros elsewhere."""
    lanes = vector_type.count
    ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1], vector_type)
    mask = _lane_mask(context, builder, args[2], sig.args[2], lanes)
    fnty = ir.FunctionType(vector_type, [ptr.type, _I32, mask.type, vector_type])
    fn = cgutils.get_or_insert_function(builder.module, fnty,
                                        f"llvm.masked.load.v{lanes}f64.p0")
    return builder.call(fn, [ptr, ir.Constant(_I32, 8), mask,
                             ir.Constant(vector_type, [0.0] * lanes)])


def _masked_store(context, builder, sig, args, vector_type):
    """``llvm.masked.store`` of ``args = (arr, idx, v, n)``: ``v``'s first ``n`` lanes."""
    lanes = vector_type.count
    ptr = _pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1], vector_type)
    mask = _lane_mask(context, builder, args[3], sig.args[3], lanes)
    fnty = ir.FunctionType(ir.VoidType(), [vector_type, ptr.type, _I32, mask.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty,
                                        f"llvm.masked.store.v{lanes}f64.p0")
    builder.call(fn, [args[2], ptr, ir.Constant(_I32, 8), mask])
    return context.get_dummy_value()


def _splat(context, builder, sig, args, vector_type):
    """``args[0]`` (a float or an integer) in every lane of ``vector_type``."""
    x = context.cast(builder, args[0], sig.args[0], types.float64)
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, vector_type.count),
                                              [0] * vector_type.count))


@intrinsic
def vload(typingctx, arr, idx):
    """``arr[idx:idx + 4]`` as a :data:`vec4` (``arr``: 1-D float64)."""
    if not (_row(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        def gather(lanes):
            v = ir.Constant(_V, ir.Undefined)
            for k, ptr in enumerate(lanes):
                v = builder.insert_element(v, builder.load(ptr), ir.Constant(_I32, k))
            return v

        return _access(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                       lambda ptr: builder.load(ptr, align=8), gather)

    return vec4(arr, idx), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):
    """``arr[idx:idx + 4] = v``."""
    if not (_row(arr) and isinstance(idx, types.Integer) and v == vec4):
        return None

    def codegen(context, builder, sig, args):
        def scatter(lanes):
            for k, ptr in enumerate(lanes):
                builder.store(builder.extract_element(args[2], ir.Constant(_I32, k)), ptr)

        _access(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                lambda ptr: builder.store(args[2], ptr, align=8), scatter, value=False)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


@intrinsic
def vload_n(typingctx, arr, idx, n):
    """``arr[idx:idx + n]`` in the first ``n`` lanes (``0 ≤ n ≤ 4``), zeros in the others;
    nothing past ``arr[idx + n − 1]`` is read (``llvm.masked.load``)."""
    if not (_c_row(arr) and isinstance(idx, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _masked_load(context, builder, sig, args, _V)

    return vec4(arr, idx, n), codegen


@intrinsic
def vstore_n(typingctx, arr, idx, v, n):
    """``arr[idx:idx + n] = v[:n]`` (``0 ≤ n ≤ 4``); nothing else is written
    (``llvm.masked.store``)."""
    if not (_c_row(arr) and isinstance(idx, types.Integer) and v == vec4
            and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _masked_store(context, builder, sig, args, _V)

    return types.none(arr, idx, v, n), codegen


@intrinsic
def vsplat(typingctx, x):
    """``(x, x, x, x)``."""
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _splat(context, builder, sig, args, _V)

    return vec4(x), codegen


@intrinsic
def vget(typingctx, v, k):
    """Lane ``k`` of ``v``."""
    if not (v == vec4 and isinstance(k, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], context.cast(builder, args[1], sig.args[1],
                                                              types.int32))

    return types.float64(v, k), codegen


@intrinsic
def vtranspose4(typingctx, a, b, c, d):
    """The columns ``(a[k], b[k], c[k], d[k])``, ``k = 0 … 3``, of the block with rows
    ``a, b, c, d``: a tuple of four :data:`vec4`."""
    if not all(v == vec4 for v in (a, b, c, d)):
        return None
    ret = types.UniTuple(vec4, _LANES)

    def codegen(context, builder, sig, args):
        def mask(*lanes):
            return ir.Constant(ir.VectorType(_I32, _LANES), list(lanes))

        a, b, c, d = args
        ab_even, ab_odd = (builder.shuffle_vector(a, b, mask(0, 4, 2, 6)),
                           builder.shuffle_vector(a, b, mask(1, 5, 3, 7)))
        cd_even, cd_odd = (builder.shuffle_vector(c, d, mask(0, 4, 2, 6)),
                           builder.shuffle_vector(c, d, mask(1, 5, 3, 7)))
        columns = [builder.shuffle_vector(ab_even, cd_even, mask(0, 1, 4, 5)),
                   builder.shuffle_vector(ab_odd, cd_odd, mask(0, 1, 4, 5)),
                   builder.shuffle_vector(ab_even, cd_even, mask(2, 3, 6, 7)),
                   builder.shuffle_vector(ab_odd, cd_odd, mask(2, 3, 6, 7))]
        return context.make_tuple(builder, ret, columns)

    return ret(a, b, c, d), codegen


def _lanewise(instruction: str):
    @intrinsic
    def op(typingctx, a, b):
        if not (a == vec4 and b == vec4):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(args[0], args[1])

        return vec4(a, b), codegen

    return op


def _register_operator(pyop, lanewise) -> None:
    @overload(pyop)
    def _vector_op(a, b):
        if a == vec4 and b == vec4:
            return lambda a, b: lanewise(a, b)
        return None


for _pyop, _instruction in ((operator.add, "fadd"), (operator.sub, "fsub"),
                            (operator.mul, "fmul")):
    _register_operator(_pyop, _lanewise(_instruction))


# ------------------------------------------------------------------- eight lanes, fused
#
# For :mod:`~brainmill.features._small_products`' register kernel: an LLVM ``<8 x double>``
# (one AVX-512 register), masked loads and stores of its first ``n ≤ 8`` lanes, a broadcast
# and a fused multiply-add (the same code as the four-wide ones, at eight lanes). Unlike the four-wide operators above, :func:`vfma8` rounds once,
# as BLAS's kernels do: products made with it are not the bits of a scalar ``a·b + c``.

_V8 = ir.VectorType(ir.DoubleType(), 8)


class Vec8Type(types.Type):
    """numba type of a ``<8 x double>`` value."""

    def __init__(self):
        super().__init__(name="vec8")


#: The type of the eight-lane values.
vec8 = Vec8Type()


@register_model(Vec8Type)
class _Vec8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V8)


@intrinsic
def vload8_n(typingctx, arr, idx, n):
    """``arr[idx:idx + n]`` in the first ``n`` lanes (``0 ≤ n ≤ 8``), zeros in the others, of
    a C-contiguous 1-D float64 array; nothing past ``arr[idx + n − 1]`` is read."""
    if not (_c_row(arr) and isinstance(idx, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _masked_load(context, builder, sig, args, _V8)

    return vec8(arr, idx, n), codegen


@intrinsic
def vstore8_n(typingctx, arr, idx, v, n):
    """``arr[idx:idx + n] = v[:n]`` (``0 ≤ n ≤ 8``, ``arr`` C-contiguous); nothing else is
    written."""
    if not (_c_row(arr) and isinstance(idx, types.Integer) and v == vec8
            and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _masked_store(context, builder, sig, args, _V8)

    return types.none(arr, idx, v, n), codegen


@intrinsic
def vsplat8(typingctx, x):
    """``x`` in all eight lanes."""
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _splat(context, builder, sig, args, _V8)

    return vec8(x), codegen


@intrinsic
def vfma8(typingctx, a, b, c):
    """``a·b + c`` lane by lane, rounded once (``llvm.fma``)."""
    if not (a == vec8 and b == vec8 and c == vec8):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(_V8, [_V8, _V8, _V8]),
                                            "llvm.fma.v8f64")
        return builder.call(fn, list(args))

    return vec8(a, b, c), codegen

