"""``at(records, i)``: a reference to element ``i`` of a 1-D record array (``at2(records, i, j)`` for a 2-D
one), without Python's negative-index wrap-around.

Numba indexes arrays with Python semantics: a negative index counts from the end, which costs a few
instructions on every access whose index it cannot prove non-negative. The kernels index their record
tables (orders, levels, the id index, the event buffer) with slots they have already checked, dozens of
times per command, so they use this instead. Like Numba's own indexing (with bounds checks off, the
default), it trusts the index; writes through the reference land in the array.

``prefetch(records, i)`` (``prefetch2`` for 2-D) asks the CPU to start loading an element it will need a
few commands later (``kernels.apply_batch``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def at(typingctx, records, index):
    if not (isinstance(records, types.Array) and records.ndim == 1 and isinstance(records.dtype, types.Record)
            and isinstance(index, types.Integer)):
        return None
    signature = records.dtype(records, index)

    def codegen(context, builder, sig, args):
        array_type, index_type = sig.args
        view = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], index_type, types.intp)
        return cgutils.get_item_pointer(context, builder, array_type, view, [position], wraparound=False)

    return signature, codegen


@intrinsic
def at2(typingctx, records, row, column):
    """``at`` for a 2-D record array: a reference to ``records[row, column]``."""
    if not (isinstance(records, types.Array) and records.ndim == 2 and isinstance(records.dtype, types.Record)
            and isinstance(row, types.Integer) and isinstance(column, types.Integer)):
        return None
    signature = records.dtype(records, row, column)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        indices = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:], sig.args[1:])]
        return cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)

    return signature, codegen


@intrinsic
def prefetch(typingctx, records, index):
    """Ask the CPU to start loading ``records[index]`` into the caches (both lines if the element
    straddles two): a hint, with no fault and no effect on results. The index must lie inside the array."""
    if not (isinstance(records, types.Array) and records.ndim == 1 and isinstance(index, types.Integer)):
        return None
    signature = types.void(records, index)

    def codegen(context, builder, sig, args):
        array_type, index_type = sig.args
        view = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], index_type, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [position], wraparound=False)
        _prefetch_line(builder, pointer)
        size = context.get_abi_sizeof(context.get_data_type(array_type.dtype))
        if size > 1:  # a record may straddle two lines: its last byte's line too
            last = builder.gep(builder.bitcast(pointer, ir.IntType(8).as_pointer()), [ir.IntType(64)(size - 1)])
            _prefetch_line(builder, last)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def prefetch2(typingctx, records, row, column):
    """``prefetch`` for a 2-D array: the line of ``records[row, column]``."""
    if not (isinstance(records, types.Array) and records.ndim == 2 and isinstance(row, types.Integer)
            and isinstance(column, types.Integer)):
        return None
    signature = types.void(records, row, column)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        indices = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:], sig.args[1:])]
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)
        _prefetch_line(builder, pointer)
        return context.get_dummy_value()

    return signature, codegen


def _prefetch_line(builder, pointer):
    byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32]), "llvm.prefetch.p0i8")
    builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])  # read, keep in every cache level, data
