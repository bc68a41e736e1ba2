"""Record layouts: fixed sizes, natural alignment, unique one-byte codes, helpers, and byte round trips."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pytest

from common.records import (
    ALL_SYMBOLS,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    STATE_CHANGING_KINDS,
    CancelReason,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    command,
    empty_commands,
    empty_events,
    event_to_dict,
    owned_copy,
)

DTYPES = pytest.mark.parametrize("dtype", [COMMAND_DTYPE, EVENT_DTYPE], ids=["command", "event"])
ENUMS = [CommandKind, Side, OrderType, TimeInForce, EventKind, RejectReason, CancelReason]
CODE_FIELDS = {  # u1 fields that carry an enum's code
    "kind": (CommandKind, EventKind),
    "side": (Side,),
    "order_type": (OrderType,),
    "tif": (TimeInForce,),
    "reason": (RejectReason, CancelReason),
}


def fields_by_offset(dtype: np.dtype) -> list[tuple[int, str, np.dtype]]:
    return sorted((offset, name, field_dtype) for name, (field_dtype, offset, *_) in dtype.fields.items())


def random_records(dtype: np.dtype, count: int, seed: int) -> np.ndarray:
    """``count`` records whose bytes are random: every field, including extremes and the spare bytes."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).copy()


# --- layout -------------------------------------------------------------------------------------------


class TestLayout:
    def test_a_command_record_is_80_bytes(self):
        assert COMMAND_DTYPE.itemsize == 80

    def test_an_event_record_is_160_bytes(self):
        assert EVENT_DTYPE.itemsize == 160

    @DTYPES
    def test_every_field_is_naturally_aligned(self, dtype):
        for offset, name, field_dtype in fields_by_offset(dtype):
            assert offset % field_dtype.base.itemsize == 0, f"{name} at offset {offset}"

    @DTYPES
    def test_fields_are_packed_without_gaps_or_overlaps(self, dtype):
        end = 0
        for offset, name, field_dtype in fields_by_offset(dtype):
            assert offset == end, f"{name} starts at {offset}, the previous field ends at {end}"
            end = offset + field_dtype.itemsize
        assert end == dtype.itemsize

    @DTYPES
    def test_the_record_size_is_a_multiple_of_eight_so_arrays_stay_aligned(self, dtype):
        assert dtype.itemsize % 8 == 0

    @DTYPES
    def test_numpys_aligned_layout_is_the_same_layout(self, dtype):
        aligned = np.dtype(dtype.descr, align=True)
        assert aligned.itemsize == dtype.itemsize
        assert {name: aligned.fields[name][1] for name in dtype.names} == {
            name: dtype.fields[name][1] for name in dtype.names
        }

    @DTYPES
    def test_every_field_is_little_endian_or_a_single_byte(self, dtype):
        for name in dtype.names:
            base = dtype.fields[name][0].base
            assert base.byteorder in ("<", "|") or (base.byteorder == "=" and np.little_endian), name

    @DTYPES
    def test_every_field_is_an_integer(self, dtype):
        for name in dtype.names:
            assert dtype.fields[name][0].base.kind in "iu", name

    @DTYPES
    def test_code_fields_are_single_bytes(self, dtype):
        for name in CODE_FIELDS:
            if name in dtype.names:
                assert dtype.fields[name][0] == np.dtype("u1"), name

    def test_commands_and_events_share_their_leading_identity_fields(self):
        shared = ["seq", "ts", "order_id", "client_order_id", "price", "qty"]
        for name in shared:
            assert COMMAND_DTYPE.fields[name][:2] == EVENT_DTYPE.fields[name][:2], name


# --- codes --------------------------------------------------------------------------------------------


class TestCodes:
    @pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
    def test_codes_within_an_enum_are_unique(self, enum: type[IntEnum]):
        # An IntEnum with a repeated value silently makes an alias; __members__ lists aliases too.
        values = [member.value for member in enum.__members__.values()]
        assert len(values) == len(set(values))

    @pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
    def test_codes_fit_in_one_unsigned_byte(self, enum: type[IntEnum]):
        assert all(0 <= member.value <= 255 for member in enum)

    @pytest.mark.parametrize("enum", [CommandKind, EventKind, Side, OrderType, TimeInForce], ids=lambda e: e.__name__)
    def test_zero_is_never_a_valid_kind_side_type_or_time_in_force(self, enum: type[IntEnum]):
        # A zeroed record is therefore recognisably unset.
        assert all(member.value != 0 for member in enum)

    @pytest.mark.parametrize("enum", [RejectReason, CancelReason], ids=lambda e: e.__name__)
    def test_reason_zero_means_none(self, enum: type[IntEnum]):
        assert enum(0).name == "NONE"

    def test_every_command_kind_changes_state(self):
        assert STATE_CHANGING_KINDS == frozenset(CommandKind)

    def test_cancel_all_for_every_symbol_uses_a_symbol_no_real_symbol_has(self):
        assert ALL_SYMBOLS < 0
        assert np.iinfo(COMMAND_DTYPE.fields["symbol"][0]).min <= ALL_SYMBOLS


# --- helpers ------------------------------------------------------------------------------------------


class TestCommandHelper:
    def test_it_returns_one_record_with_the_kind_and_given_fields(self):
        record = command(CommandKind.NEW, seq=7, account=3, symbol=1, side=Side.BUY, order_type=OrderType.LIMIT,
                         tif=TimeInForce.GTC, price=500_001, qty=2_500, client_order_id=-42)
        assert record.shape == (1,)
        assert record.dtype == COMMAND_DTYPE
        assert int(record["kind"][0]) == CommandKind.NEW
        assert {name: int(record[name][0]) for name in
                ("seq", "account", "symbol", "side", "order_type", "tif", "price", "qty", "client_order_id")} == {
            "seq": 7, "account": 3, "symbol": 1, "side": Side.BUY, "order_type": OrderType.LIMIT,
            "tif": TimeInForce.GTC, "price": 500_001, "qty": 2_500, "client_order_id": -42,
        }

    def test_fields_not_given_are_zero(self):
        record = command(CommandKind.DEPOSIT, account=5, asset=2, amount=10**18)
        given = {"kind", "account", "asset", "amount"}
        for name in COMMAND_DTYPE.names:
            if name not in given:
                assert not np.any(record[name]), name

    def test_it_holds_the_full_int64_range(self):
        limit = np.iinfo(np.int64)
        record = command(CommandKind.WITHDRAW, amount=int(limit.max), order_id=int(limit.min))
        assert int(record["amount"][0]) == limit.max
        assert int(record["order_id"][0]) == limit.min

    def test_cancel_all_for_every_symbol_stores_the_negative_symbol(self):
        assert int(command(CommandKind.CANCEL_ALL, symbol=ALL_SYMBOLS)["symbol"][0]) == ALL_SYMBOLS

    def test_an_unknown_field_name_is_refused(self):
        with pytest.raises((ValueError, KeyError)):
            command(CommandKind.NEW, prise=1)

    def test_empty_arrays_are_zeroed_and_of_the_right_type(self):
        commands, events = empty_commands(3), empty_events(5)
        assert (commands.dtype, commands.shape, events.dtype, events.shape) == (COMMAND_DTYPE, (3,), EVENT_DTYPE, (5,))
        assert not any(commands.tobytes()) and not any(events.tobytes())


class TestEventToDict:
    def test_it_names_the_kind_and_a_reject_reason(self):
        events = empty_events(1)
        events[0]["kind"] = EventKind.REJECTED
        events[0]["reason"] = RejectReason.INSUFFICIENT_FUNDS
        out = event_to_dict(events[0])
        assert (out["kind"], out["reason"]) == ("REJECTED", "INSUFFICIENT_FUNDS")

    def test_it_names_a_cancel_reason(self):
        events = empty_events(1)
        events[0]["kind"] = EventKind.CANCELLED
        events[0]["reason"] = CancelReason.SELF_TRADE
        out = event_to_dict(events[0])
        assert (out["kind"], out["reason"]) == ("CANCELLED", "SELF_TRADE")

    def test_the_same_reason_code_is_named_by_the_kind_of_event(self):
        code = 4
        events = empty_events(2)
        events["kind"] = [EventKind.REJECTED, EventKind.CANCELLED]
        events["reason"] = code
        assert event_to_dict(events[0])["reason"] == RejectReason(code).name == "UNKNOWN_ASSET"
        assert event_to_dict(events[1])["reason"] == CancelReason(code).name == "SELF_TRADE"

    @pytest.mark.parametrize("kind", [k for k in EventKind if k not in (EventKind.REJECTED, EventKind.CANCELLED)])
    def test_other_kinds_keep_the_reason_as_a_number(self, kind):
        events = empty_events(1)
        events[0]["kind"] = kind
        out = event_to_dict(events[0])
        assert out["kind"] == kind.name
        assert out["reason"] == 0

    def test_it_gives_every_field_but_the_spare_bytes_as_plain_ints(self):
        events = empty_events(1)
        events[0]["kind"] = EventKind.TRADE
        events[0]["price"] = 500_001
        events[0]["maker_fee"] = -3
        events[0]["available"] = np.iinfo(np.int64).max
        out = event_to_dict(events[0])
        assert list(out) == [name for name in EVENT_DTYPE.names if name != "reserved"]
        assert (out["price"], out["maker_fee"], out["available"]) == (500_001, -3, np.iinfo(np.int64).max)
        assert all(type(value) is int for key, value in out.items() if key != "kind")

    def test_an_unknown_kind_is_refused(self):
        events = empty_events(1)
        events[0]["kind"] = 200
        with pytest.raises(ValueError):
            event_to_dict(events[0])


# --- bytes --------------------------------------------------------------------------------------------


class TestByteRoundTrip:
    @DTYPES
    def test_records_survive_tobytes_and_frombuffer_unchanged(self, dtype):
        records = random_records(dtype, 257, seed=dtype.itemsize)
        data = records.tobytes()
        assert len(data) == 257 * dtype.itemsize
        back = np.frombuffer(data, dtype=dtype)
        assert back.tobytes() == data
        for name in dtype.names:
            assert np.array_equal(back[name], records[name]), name

    def test_a_command_built_by_the_helper_round_trips(self):
        record = command(CommandKind.CANCEL_REPLACE, seq=9, order_id=4, client_order_id=11, price=123, qty=456,
                         symbol=2, account=8, origin=3)
        back = np.frombuffer(record.tobytes(), dtype=COMMAND_DTYPE)
        assert back.tobytes() == record.tobytes()
        assert {name: int(back[name][0]) for name in ("kind", "seq", "order_id", "price", "qty", "origin")} == {
            "kind": CommandKind.CANCEL_REPLACE, "seq": 9, "order_id": 4, "price": 123, "qty": 456, "origin": 3,
        }

    def test_the_byte_layout_is_little_endian_at_the_documented_offsets(self):
        record = command(CommandKind.NEW, seq=0x0102030405060708, symbol=0x0A0B0C0D)
        data = record.tobytes()
        assert data[0:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
        symbol_offset = COMMAND_DTYPE.fields["symbol"][1]
        assert data[symbol_offset:symbol_offset + 4] == bytes([0x0D, 0x0C, 0x0B, 0x0A])
        assert data[COMMAND_DTYPE.fields["kind"][1]] == CommandKind.NEW

    @DTYPES
    def test_a_buffer_that_is_not_a_whole_number_of_records_is_refused(self, dtype):
        with pytest.raises(ValueError):
            np.frombuffer(bytes(dtype.itemsize + 1), dtype=dtype)


def test_owned_copy_is_an_equal_writable_independent_array():
    source = np.frombuffer(np.arange(3 * COMMAND_DTYPE.itemsize, dtype=np.uint8).tobytes(), dtype=COMMAND_DTYPE)
    assert not source.flags.writeable
    copy = owned_copy(source[1:])
    assert copy.dtype == COMMAND_DTYPE and copy.tobytes() == source[1:].tobytes()
    assert copy.flags.writeable and copy.flags.aligned and copy.flags.c_contiguous
    copy["seq"] = 0
    assert source[1:]["seq"].tolist() != [0, 0]
