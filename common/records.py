"""Record layouts shared by the wire, the journal and the engine, and their named integer codes.

Commands and events are numpy structured records of fixed size, defined here and nowhere else. The
engine's Numba kernels read and write them in place; the journal stores their bytes; the wire carries
them between processes. Fields are ordered widest first so that every field is naturally aligned.

Quantities are integers: ``price`` in ticks of the symbol, ``qty`` in lots of the symbol, ``amount``,
``available``, ``frozen`` and fees in the smallest unit of their asset (see ``common.fixedpoint``).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class CommandKind(IntEnum):
    """What a command asks the engine to do. Every kind changes state, so every kind is journaled."""

    NEW = 1  # place an order; its order id is the command's sequence number
    CANCEL = 2  # cancel one open order of the account
    CANCEL_REPLACE = 3  # change an open order's price and/or total quantity
    CANCEL_ALL = 4  # cancel every open order of the account (in one symbol, or all: symbol = -1)
    DEPOSIT = 5  # credit an account (admin)
    WITHDRAW = 6  # debit an account's available balance (admin)
    CREATE_ACCOUNT = 7  # open an account (admin); orders and deposits need one


# Kinds whose commands change engine state and are therefore written to the journal. Queries, which
# arrive with the order-entry issue, will not be in this set.
STATE_CHANGING_KINDS = frozenset(CommandKind)


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    MARKET = 1  # takes liquidity at any price; never rests
    LIMIT = 2  # trades at its price or better; may rest


class TimeInForce(IntEnum):
    GTC = 1  # good till cancelled: the remainder rests on the book
    IOC = 2  # immediate or cancel: the remainder is cancelled
    FOK = 3  # fill or kill: fills completely at once, or nothing happens
    POST_ONLY = 4  # rests without trading; refused if it would trade on arrival


class SelfTradePrevention(IntEnum):
    """What happens when an order would trade against an order of the same account (config)."""

    OFF = 0  # the trade happens
    CANCEL_TAKER = 1  # the incoming order's remainder is cancelled; the resting order stays
    CANCEL_MAKER = 2  # the resting order is cancelled; the incoming order goes on matching
    CANCEL_BOTH = 3  # both are cancelled


class EventKind(IntEnum):
    ACCEPTED = 1  # a NEW order passed every check and is live (it may trade at once)
    REJECTED = 2  # a command was refused; nothing changed; ``reason`` is a RejectReason
    TRADE = 3  # a fill between a taker (order_*) and a maker (maker_*)
    CANCELLED = 4  # an order left the book or ended unfilled; ``reason`` is a CancelReason
    REPLACED = 5  # an open order now has a new price and/or quantity
    BALANCE = 6  # an account's available and frozen amounts of one asset, after a change
    ACCOUNT_CREATED = 7  # an account exists from now on
    MASS_CANCELLED = 8  # a CANCEL_ALL finished; ``qty`` is how many orders it cancelled


class RejectReason(IntEnum):
    NONE = 0
    UNKNOWN_COMMAND = 1  # the command kind is not one of CommandKind
    UNKNOWN_ACCOUNT = 2  # no such account (or the id is out of range)
    UNKNOWN_SYMBOL = 3
    UNKNOWN_ASSET = 4
    UNKNOWN_ORDER = 5  # no open order with that id belongs to the account
    INVALID_SIDE = 6
    INVALID_ORDER_TYPE = 7  # not MARKET or LIMIT, or a MARKET sell by quote amount
    INVALID_TIME_IN_FORCE = 8  # unknown, or GTC/POST_ONLY on a MARKET order
    PRICE_OUT_OF_BAND = 9  # a limit price outside the symbol's [price_min, price_max]
    INVALID_QUANTITY = 10  # outside [min_qty, max_qty], not above what is already filled, or both
    # quantity and quote amount given
    BELOW_MIN_NOTIONAL = 11  # price x quantity (or the quote amount) under the symbol's min_notional
    INVALID_AMOUNT = 12  # a deposit, withdrawal or quote amount that is not positive
    INSUFFICIENT_FUNDS = 13  # the available balance cannot cover what the command must freeze or debit
    ORDER_TABLE_FULL = 14  # an order that could rest, with max_open_orders orders already resting
    POST_ONLY_WOULD_CROSS = 15  # a post-only order (or a replace of one) would trade on arrival
    INVALID_ORDER_ID = 16  # the sequence number cannot be a new order id (not positive, or in use)
    ACCOUNT_EXISTS = 17  # CREATE_ACCOUNT for an account that already exists
    BALANCE_OVERFLOW = 18  # a deposit that would take the asset's total past int64
    # Not from the engine's core: the sequencer could not journal the command (the disk, or the
    # journal's configured size, is full). It was given no seq and changed nothing.
    JOURNAL_UNAVAILABLE = 19


class CancelReason(IntEnum):
    NONE = 0
    USER = 1  # CANCEL or CANCEL_ALL
    IOC_REMAINDER = 2  # what an IOC order could not fill at once
    FOK = 3  # a FOK order that could not fill completely; it never touched the book or the balances
    SELF_TRADE = 4  # self-trade prevention
    MARKET_REMAINDER = 5  # what a market order could not fill (book exhausted, or its budget spent)


ALL_SYMBOLS = -1  # CANCEL_ALL's symbol when it covers every symbol

# Command record: 80 bytes.
COMMAND_DTYPE = np.dtype(
    [
        ("seq", "<i8"),  # global sequence number, given by the sequencer
        ("ts", "<i8"),  # timestamp (ns since the Unix epoch), given by the sequencer, never decreasing
        ("order_id", "<i8"),  # CANCEL, CANCEL_REPLACE: the target order
        ("client_order_id", "<i8"),  # the client's id for the order (NEW) or its new id (CANCEL_REPLACE)
        ("price", "<i8"),  # ticks; LIMIT and CANCEL_REPLACE
        ("qty", "<i8"),  # lots; NEW (not for a market buy by quote) and CANCEL_REPLACE (new total)
        ("amount", "<i8"),  # asset units: DEPOSIT, WITHDRAW; quote units: MARKET buy by quote amount
        ("symbol", "<i4"),
        ("account", "<i4"),
        ("asset", "<i4"),  # DEPOSIT, WITHDRAW
        ("origin", "<i4"),  # routing tag of the front door that sent it; the engine ignores it
        ("kind", "u1"),  # CommandKind
        ("side", "u1"),  # Side
        ("order_type", "u1"),  # OrderType
        ("tif", "u1"),  # TimeInForce
        ("reserved", "u1", (4,)),  # spare, zero
    ]
)

# Event record: 160 bytes. Which fields a kind fills is documented in docs/engine.md; the rest are zero.
EVENT_DTYPE = np.dtype(
    [
        ("seq", "<i8"),  # the sequence number of the command that caused it
        ("ts", "<i8"),  # that command's timestamp
        ("order_id", "<i8"),  # the order (the taker, for a trade)
        ("client_order_id", "<i8"),
        ("price", "<i8"),  # ticks: the order's limit, or the trade price
        ("qty", "<i8"),  # lots: the order's quantity, or the traded quantity
        ("leaves", "<i8"),  # lots still open on the order after this event
        ("filled", "<i8"),  # lots filled on the order so far
        ("amount", "<i8"),  # quote units of a trade; the amount frozen or released; a deposit's amount
        ("maker_order_id", "<i8"),
        ("maker_client_order_id", "<i8"),
        ("maker_leaves", "<i8"),
        ("maker_filled", "<i8"),
        ("maker_fee", "<i8"),  # quote units, paid by the maker to the fee account
        ("taker_fee", "<i8"),  # quote units, paid by the taker to the fee account
        ("available", "<i8"),  # BALANCE: after the change
        ("frozen", "<i8"),  # BALANCE: after the change
        ("symbol", "<i4"),
        ("account", "<i4"),  # the order's account (the taker, for a trade), or the balance's
        ("maker_account", "<i4"),
        ("asset", "<i4"),
        ("kind", "u1"),  # EventKind
        ("reason", "u1"),  # RejectReason for REJECTED, CancelReason for CANCELLED
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("reserved", "u1", (3,)),
    ]
)

# Book level record: 24 bytes. The total quantity resting at one price of one side of a symbol's book
# after a batch, published with the batch's trades for quotation (common/reports.py); 0 = no level.
BOOK_LEVEL_DTYPE = np.dtype(
    [
        ("price", "<i8"),  # ticks
        ("qty", "<i8"),  # lots resting at that price on that side
        ("side", "u1"),  # Side
        ("reserved", "u1", (7,)),
    ]
)

assert COMMAND_DTYPE.itemsize == 80
assert EVENT_DTYPE.itemsize == 160
assert BOOK_LEVEL_DTYPE.itemsize == 24


def empty_commands(count: int) -> np.ndarray:
    return np.zeros(count, dtype=COMMAND_DTYPE)


def empty_events(count: int) -> np.ndarray:
    return np.zeros(count, dtype=EVENT_DTYPE)


def command(kind: CommandKind, **fields: int) -> np.ndarray:
    """One command record (a 1-element array) with the given fields; the rest are zero."""
    record = np.zeros(1, dtype=COMMAND_DTYPE)
    record["kind"] = kind
    for name, value in fields.items():
        record[name] = value
    return record


def event_to_dict(event: np.void) -> dict[str, int]:
    """The fields of one event record as plain ints, with the codes named (for logs and test output)."""
    out = {name: int(event[name]) for name in EVENT_DTYPE.names if name != "reserved"}
    kind = EventKind(out["kind"])
    out["kind"] = kind.name
    if kind is EventKind.REJECTED:
        out["reason"] = RejectReason(out["reason"]).name
    elif kind is EventKind.CANCELLED:
        out["reason"] = CancelReason(out["reason"]).name
    return out


def owned_copy(records: np.ndarray) -> np.ndarray:
    """A writable, aligned, contiguous copy of a record array. ``ndarray.copy`` copies a structured dtype
    field by field: 3.5 us for one command record, 5.6 us for three events; through its bytes, 0.5 us."""
    return np.frombuffer(bytearray(records.tobytes()), dtype=records.dtype)
