"""Which price levels of a ladder hold orders: a three-layer bitmap with O(1) next/previous lookups.

Layer 0 has one bit per level, layer 1 one bit per non-zero word of layer 0, layer 2 one bit per non-zero
word of layer 1. Finding the nearest non-empty level above or below a price looks at one word per layer
(and, only for ladders of more than 2**18 levels, scans the few words of layer 2). This is what keeps the
best bid and ask exact in constant time when a level empties, however sparse the book.

All arithmetic on words is uint64; indices are int64. These kernels do no I/O and allocate nothing.
"""

from __future__ import annotations

import numpy as np
from engine.jit import kernel
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_SIX = np.uint64(6)
_LOW6 = np.uint64(63)


@kernel(inline=True)
def _lowest(word):
    return np.int64(trailing_zeros(word))


@kernel(inline=True)
def _highest(word):
    return np.int64(63) - np.int64(leading_zeros(word))


@kernel(inline=True)
def _top_words(levels):
    """Words in layer 2 of a ladder of ``levels`` levels."""
    return (((((levels + 63) >> 6) + 63) >> 6) + 63) >> 6


@kernel(inline=True)
def _bit(index):
    return _ONE << np.uint64(index & 63)


@kernel
def bit_set(bits, base0, base1, base2, index):
    """Mark level ``index`` non-empty."""
    word0 = index >> 6
    before = bits[base0 + word0]
    bits[base0 + word0] = before | _bit(index)
    if before == _ZERO:
        word1 = word0 >> 6
        before1 = bits[base1 + word1]
        bits[base1 + word1] = before1 | _bit(word0)
        if before1 == _ZERO:
            word2 = word1 >> 6
            bits[base2 + word2] = bits[base2 + word2] | _bit(word1)


@kernel
def bit_clear(bits, base0, base1, base2, index):
    """Mark level ``index`` empty."""
    word0 = index >> 6
    after = bits[base0 + word0] & ~_bit(index)
    bits[base0 + word0] = after
    if after == _ZERO:
        word1 = word0 >> 6
        after1 = bits[base1 + word1] & ~_bit(word0)
        bits[base1 + word1] = after1
        if after1 == _ZERO:
            word2 = word1 >> 6
            bits[base2 + word2] = bits[base2 + word2] & ~_bit(word1)


@kernel
def next_set(bits, base0, base1, base2, levels, index):
    """The smallest non-empty level >= ``index`` of a ladder of ``levels`` levels, or -1."""
    if index >= levels:
        return -1
    if index < 0:
        index = 0
    words2 = _top_words(levels)
    word0 = index >> 6
    word1 = word0 >> 6
    word2 = word1 >> 6
    masked = bits[base0 + word0] & (_ALL << np.uint64(index & 63))
    if masked != _ZERO:
        return (word0 << 6) + _lowest(masked)
    shift1 = (word0 & 63) + 1
    masked = bits[base1 + word1] & (_ALL << np.uint64(shift1)) if shift1 < 64 else _ZERO
    if masked == _ZERO:
        shift2 = (word1 & 63) + 1
        masked = bits[base2 + word2] & (_ALL << np.uint64(shift2)) if shift2 < 64 else _ZERO
        while masked == _ZERO:
            word2 += 1
            if word2 >= words2:
                return -1
            masked = bits[base2 + word2]
        word1 = (word2 << 6) + _lowest(masked)
        masked = bits[base1 + word1]
    word0 = (word1 << 6) + _lowest(masked)
    return (word0 << 6) + _lowest(bits[base0 + word0])


@kernel
def prev_set(bits, base0, base1, base2, levels, index):
    """The largest non-empty level <= ``index`` of a ladder of ``levels`` levels, or -1."""
    if index < 0:
        return -1
    if index >= levels:
        index = levels - 1
    word0 = index >> 6
    word1 = word0 >> 6
    word2 = word1 >> 6
    masked = bits[base0 + word0] & (_ALL >> np.uint64(63 - (index & 63)))
    if masked != _ZERO:
        return (word0 << 6) + _highest(masked)
    shift1 = word0 & 63
    masked = bits[base1 + word1] & ((_ONE << np.uint64(shift1)) - _ONE) if shift1 > 0 else _ZERO
    if masked == _ZERO:
        shift2 = word1 & 63
        masked = bits[base2 + word2] & ((_ONE << np.uint64(shift2)) - _ONE) if shift2 > 0 else _ZERO
        if masked == _ZERO:
            return _prev_from_layer2(bits, base0, base1, base2, word2 - 1)
        word1 = (word2 << 6) + _highest(masked)
        masked = bits[base1 + word1]
    word0 = (word1 << 6) + _highest(masked)
    return (word0 << 6) + _highest(bits[base0 + word0])


@kernel
def _prev_from_layer2(bits, base0, base1, base2, word2):
    """The largest non-empty level in layer-2 words ``word2`` and below, or -1."""
    while word2 >= 0:
        masked = bits[base2 + word2]
        if masked != _ZERO:
            word1 = (word2 << 6) + _highest(masked)
            word0 = (word1 << 6) + _highest(bits[base1 + word1])
            return (word0 << 6) + _highest(bits[base0 + word0])
        word2 -= 1
    return -1
