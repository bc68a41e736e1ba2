"""``at(records, i)``: a reference to element ``i`` of a 1-D record array (``at2(records, i, j)`` for a 2-D
one), without Python's negative-index wrap-around.

Numba indexes arrays with Python semantics: a negative index counts from the end, which costs a few
instructions on every access whose index it cannot prove non-negative. The kernels index their record
tables (orders, levels, the id index, the event buffer) with slots they have already checked, dozens of
times per command, so they use this instead. Like Numba's own indexing (with bounds checks off, the
default), it trusts the index; writes through the reference land in the array.
"""

from __future__ import annotations

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
