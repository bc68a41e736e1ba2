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


def _element_pointer(context, builder, sig, args):
    """The address of ``array[i]`` / ``array[i, j]`` (args: the array, then its indices), no wrap-around."""
    array_type = sig.args[0]
    view = context.make_array(array_type)(context, builder, args[0])
    indices = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:], sig.args[1:])]
    return cgutils.get_item_pointer(context, builder, array_type, view, indices, wraparound=False)


def _is_record_array(records, ndim: int) -> bool:
    return isinstance(records, types.Array) and records.ndim == ndim and isinstance(records.dtype, types.Record)


@intrinsic
def at(typingctx, records, index):
    if not (_is_record_array(records, 1) and isinstance(index, types.Integer)):
        return None
    return records.dtype(records, index), _element_pointer


@intrinsic
def at2(typingctx, records, row, column):
    """``at`` for a 2-D record array: a reference to ``records[row, column]``."""
    if not (_is_record_array(records, 2) and isinstance(row, types.Integer) and isinstance(column, types.Integer)):
        return None
    return records.dtype(records, row, column), _element_pointer


def _prefetch_element(context, builder, sig, args):
    pointer = _element_pointer(context, builder, sig, args)
    _prefetch_line(builder, pointer)
    size = context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
    if size > 1:  # an element may straddle two lines: its last byte's line too
        last = builder.gep(builder.bitcast(pointer, ir.IntType(8).as_pointer()), [ir.IntType(64)(size - 1)])
        _prefetch_line(builder, last)
    return context.get_dummy_value()


@intrinsic
def prefetch(typingctx, records, index):
    """Ask the CPU to start loading ``records[index]`` into the caches (both lines if the element
    straddles two): a hint, with no fault and no effect on results. The index must lie inside the array."""
    if not (isinstance(records, types.Array) and records.ndim == 1 and isinstance(index, types.Integer)):
        return None
    return types.void(records, index), _prefetch_element


@intrinsic
def prefetch2(typingctx, records, row, column):
    """``prefetch`` for a 2-D array: ``records[row, column]``."""
    if not (isinstance(records, types.Array) and records.ndim == 2 and isinstance(row, types.Integer)
            and isinstance(column, types.Integer)):
        return None
    return types.void(records, row, column), _prefetch_element


def _prefetch_line(builder, pointer):
    byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32]), "llvm.prefetch.p0i8")
    builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])  # read, keep in every cache level, data
