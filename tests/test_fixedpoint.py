"""Decimal text <-> integer ticks, lots and units: what is accepted, why the rest is refused, round trips."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import fixedpoint
from common.config import default_config, default_document, parse_config
from common.fixedpoint import (
    INT64_MAX,
    MAX_TEXT_LENGTH,
    FixedPointError,
    Refusal,
    Step,
    amount_to_units,
    format_scaled,
    lots_to_qty,
    notional_units,
    parse_order_values,
    price_to_ticks,
    qty_to_lots,
    ticks_to_price,
    units_to_amount,
)

CONFIG = default_config()
BTC_USDT = CONFIG.symbol("BTC-USDT")  # tick 0.1, lot 0.0001, 10 USDT units per tick-lot
ETH_USDT = CONFIG.symbol("ETH-USDT")  # tick 0.01, lot 0.0001
ETH_BTC = CONFIG.symbol("ETH-BTC")  # tick 0.00001, lot 0.001
USDT = CONFIG.asset("USDT")  # 6 decimals
BTC = CONFIG.asset("BTC")  # 8 decimals

def _nickel_config():
    """A symbol whose tick (0.05) and lot (0.2) are not powers of ten; a tick-lot is 1 cent."""
    document = default_document()
    document["assets"] = [{"name": "XYZ", "decimals": 3}, {"name": "USD", "decimals": 2}]
    document["symbols"] = [{
        "name": "XYZ-USD", "base": "XYZ", "quote": "USD", "tick_size": "0.05", "lot_size": "0.2",
        "min_qty": "0.2", "max_qty": "1000", "min_notional": "1", "price_min": "0.05", "price_max": "1000",
    }]
    return parse_config(document, source="<tests.test_fixedpoint>")


NICKEL_CONFIG = _nickel_config()
XYZ_USD = NICKEL_CONFIG.symbol("XYZ-USD")  # tick 0.05, lot 0.2: not powers of ten; a tick-lot is 1 cent


def refusal_of(parse, text) -> Refusal:
    with pytest.raises(FixedPointError) as info:
        parse(text)
    return info.value.reason


def price(text):
    return price_to_ticks(text, BTC_USDT)


def qty(text):
    return qty_to_lots(text, BTC_USDT)


def amount(text):
    return amount_to_units(text, USDT)


PARSERS = pytest.mark.parametrize("parse", [price, qty, amount], ids=["price", "qty", "amount"])


# --- accepted forms -----------------------------------------------------------------------------------


class TestPlainDecimalsAreAccepted:
    @pytest.mark.parametrize(
        "text, lots",
        [("1", 10_000), ("1.50", 15_000), ("0.001", 10), ("007", 70_000), ("0.0001", 1), ("1000", 10_000_000)],
    )
    def test_a_quantity_becomes_a_whole_number_of_lots(self, text, lots):
        assert qty_to_lots(text, BTC_USDT) == lots

    @pytest.mark.parametrize(
        "text, ticks", [("1", 10), ("1.50", 15), ("50000.1", 500_001), ("007", 70), ("0.1", 1)]
    )
    def test_a_price_becomes_a_whole_number_of_ticks(self, text, ticks):
        assert price_to_ticks(text, BTC_USDT) == ticks

    def test_a_price_is_counted_in_its_own_symbols_ticks(self):
        assert price_to_ticks("0.001", ETH_BTC) == 100
        assert refusal_of(lambda t: price_to_ticks(t, ETH_USDT), "0.001") is Refusal.TOO_MANY_DECIMALS
        assert price_to_ticks("1.50", ETH_USDT) == 150

    @pytest.mark.parametrize(
        "text, units", [("1", 1_000_000), ("1.50", 1_500_000), ("0.001", 1_000), ("007", 7_000_000), ("0.000001", 1)]
    )
    def test_an_amount_becomes_a_whole_number_of_the_assets_smallest_units(self, text, units):
        assert amount_to_units(text, USDT) == units

    def test_an_amount_is_counted_in_its_own_assets_units(self):
        assert amount_to_units("0.00000001", BTC) == 1
        assert amount_to_units("1", BTC) == 100_000_000

    def test_trailing_zeros_beyond_the_step_do_not_matter(self):
        assert price_to_ticks("1.10000000000", BTC_USDT) == 11
        assert amount_to_units("2.5000000000", USDT) == 2_500_000

    @pytest.mark.parametrize("text, ticks", [("0.05", 1), ("1.05", 21), ("1.1", 22), ("1.10", 22), ("7", 140)])
    def test_a_multiple_of_a_tick_that_is_not_a_power_of_ten_is_accepted(self, text, ticks):
        assert price_to_ticks(text, XYZ_USD) == ticks

    @pytest.mark.parametrize("text, lots", [("0.2", 1), ("0.4", 2), ("1.4", 7), ("10", 50)])
    def test_a_multiple_of_a_lot_that_is_not_a_power_of_ten_is_accepted(self, text, lots):
        assert qty_to_lots(text, XYZ_USD) == lots

    def test_the_largest_int64_count_is_accepted(self):
        assert Step("1").count(str(INT64_MAX)) == INT64_MAX
        assert Step("0.001").count("9223372036854775.807") == INT64_MAX

    def test_zero_is_accepted_only_when_allowed(self):
        assert Step("0.01").count("0.00", allow_zero=True) == 0
        assert Step("0.01").count("0", allow_zero=True) == 0


# --- refusals -----------------------------------------------------------------------------------------


class TestEachRefusalHasItsReason:
    @PARSERS
    def test_empty_text_is_refused_as_empty(self, parse):
        assert refusal_of(parse, "") is Refusal.EMPTY

    @PARSERS
    @pytest.mark.parametrize("value", [None, 1, 1.5, Decimal("1"), b"1", ["1"], True])
    def test_anything_but_a_string_is_refused_as_not_a_string(self, parse, value):
        assert refusal_of(parse, value) is Refusal.NOT_A_STRING

    @PARSERS
    @pytest.mark.parametrize(
        "text",
        ["abc", "1.2.3", " 1", "1 ", "1,5", "+1", ".5", "5.", ".", "-", "--1", "1_000", "0x10", "١", "1\n", "½"],
    )
    def test_text_that_is_not_a_plain_decimal_is_refused_as_not_a_number(self, parse, text):
        assert refusal_of(parse, text) is Refusal.NOT_A_NUMBER

    @PARSERS
    @pytest.mark.parametrize("text", ["NaN", "nan", "-nan", "+NaN", "sNaN", "qNaN"])
    def test_nan_is_refused_as_nan(self, parse, text):
        assert refusal_of(parse, text) is Refusal.NAN

    @PARSERS
    @pytest.mark.parametrize("text", ["inf", "Inf", "-inf", "+inf", "Infinity", "-Infinity", "INFINITY"])
    def test_infinity_is_refused_as_infinity(self, parse, text):
        assert refusal_of(parse, text) is Refusal.INFINITY

    @PARSERS
    @pytest.mark.parametrize("text", ["1e5", "1E-3", "2.5e+3", "1e0", "-1e5", ".5e1"])
    def test_an_exponent_is_refused_as_exponent(self, parse, text):
        assert refusal_of(parse, text) is Refusal.EXPONENT

    @PARSERS
    @pytest.mark.parametrize("text", ["-1", "-0.1", "-0", "-007"])
    def test_a_minus_sign_is_refused_as_negative(self, parse, text):
        assert refusal_of(parse, text) is Refusal.NEGATIVE

    @PARSERS
    @pytest.mark.parametrize("text", ["0", "0.000", "00", "0.0000000000"])
    def test_zero_is_refused_as_zero(self, parse, text):
        assert refusal_of(parse, text) is Refusal.ZERO

    def test_more_decimals_than_the_step_is_refused_as_too_many_decimals(self):
        assert refusal_of(price, "1.05") is Refusal.TOO_MANY_DECIMALS  # tick 0.1
        assert refusal_of(qty, "0.00001") is Refusal.TOO_MANY_DECIMALS  # lot 0.0001
        assert refusal_of(amount, "0.0000001") is Refusal.TOO_MANY_DECIMALS  # USDT: 6 decimals
        assert refusal_of(lambda t: price_to_ticks(t, XYZ_USD), "1.001") is Refusal.TOO_MANY_DECIMALS

    def test_too_many_decimals_wins_even_when_the_value_rounds_to_zero(self):
        assert refusal_of(price, "0.01") is Refusal.TOO_MANY_DECIMALS

    @pytest.mark.parametrize("text", ["1.01", "1.03", "0.07", "0.04", "0.12", "999.99"])
    def test_a_price_between_ticks_of_a_non_power_of_ten_tick_is_refused_as_not_a_multiple(self, text):
        assert refusal_of(lambda t: price_to_ticks(t, XYZ_USD), text) is Refusal.NOT_A_MULTIPLE

    @pytest.mark.parametrize("text", ["0.1", "0.3", "1.1"])
    def test_a_quantity_between_lots_of_a_non_power_of_ten_lot_is_refused_as_not_a_multiple(self, text):
        assert refusal_of(lambda t: qty_to_lots(t, XYZ_USD), text) is Refusal.NOT_A_MULTIPLE

    def test_a_whole_number_that_is_not_a_multiple_of_a_step_above_one_is_refused(self):
        assert refusal_of(Step("100").count, "250") is Refusal.NOT_A_MULTIPLE
        assert Step("100").count("300") == 3

    @PARSERS
    def test_a_count_beyond_int64_is_refused_as_overflow(self, parse):
        assert refusal_of(parse, "9" * 40) is Refusal.OVERFLOW

    def test_one_more_than_the_largest_int64_count_is_refused_as_overflow(self):
        assert refusal_of(Step("1").count, str(INT64_MAX + 1)) is Refusal.OVERFLOW
        assert refusal_of(Step("0.001").count, "9223372036854775.808") is Refusal.OVERFLOW

    @PARSERS
    def test_over_long_text_is_refused_as_overflow_without_being_converted(self, parse):
        assert refusal_of(parse, "1" * (MAX_TEXT_LENGTH + 1)) is Refusal.OVERFLOW
        assert refusal_of(parse, "1" * 10_000_000) is Refusal.OVERFLOW

    def test_over_long_text_is_refused_even_when_it_has_a_small_value(self):
        text = "0." + "0" * MAX_TEXT_LENGTH + "1"
        assert refusal_of(amount, text) is Refusal.OVERFLOW

    def test_text_of_exactly_the_maximum_length_is_parsed(self):
        text = "1." + "0" * (MAX_TEXT_LENGTH - 2)
        assert len(text) == MAX_TEXT_LENGTH
        assert amount(text) == 1_000_000

    def test_the_error_is_a_value_error_whose_message_names_what_was_parsed(self):
        with pytest.raises(ValueError, match="^price"):
            price("abc")
        with pytest.raises(FixedPointError, match="^quantity"):
            qty("-1")
        with pytest.raises(FixedPointError, match="^amount"):
            amount("")

    def test_refusal_codes_are_the_lower_case_names_of_the_reasons(self):
        assert {reason.value for reason in Refusal} == {reason.name.lower() for reason in Refusal}
        assert Refusal.NOT_A_MULTIPLE == "not_a_multiple"


class TestNotional:
    def test_notional_units_is_price_times_quantity_in_quote_units(self):
        # 50000.5 USDT x 0.25 BTC = 12500.125 USDT = 12_500_125_000 micro-USDT.
        assert parse_order_values("50000.5", "0.25", BTC_USDT) == (500_005, 2_500, 12_500_125_000)

    def test_notional_units_of_a_non_power_of_ten_symbol(self):
        # 1.05 USD x 0.6 XYZ = 0.63 USD: 21 ticks x 3 lots x 1 cent per tick-lot.
        assert XYZ_USD.quote_units_per_tick_lot == 1
        assert parse_order_values("1.05", "0.6", XYZ_USD) == (21, 3, 63)

    def test_notional_units_at_the_int64_limit_is_accepted(self):
        assert notional_units(INT64_MAX, 1, ETH_USDT) == INT64_MAX  # one unit per tick-lot

    def test_notional_units_beyond_int64_is_refused_as_overflow(self):
        with pytest.raises(FixedPointError) as info:
            notional_units(INT64_MAX, 2, ETH_USDT)
        assert info.value.reason is Refusal.OVERFLOW
        with pytest.raises(FixedPointError) as info:
            notional_units(INT64_MAX // 10 + 1, 1, BTC_USDT)  # ten units per tick-lot
        assert info.value.reason is Refusal.OVERFLOW

    def test_parse_order_values_reports_the_price_refusal_first(self):
        with pytest.raises(FixedPointError, match="^price") as info:
            parse_order_values("abc", "-1", BTC_USDT)
        assert info.value.reason is Refusal.NOT_A_NUMBER

    def test_parse_order_values_reports_the_quantity_refusal(self):
        with pytest.raises(FixedPointError, match="^quantity") as info:
            parse_order_values("1", "0", BTC_USDT)
        assert info.value.reason is Refusal.ZERO

    def test_parse_order_values_refuses_an_overflowing_notional(self):
        with pytest.raises(FixedPointError) as info:
            parse_order_values("900000000000000000", "1000", BTC_USDT)
        assert info.value.reason is Refusal.OVERFLOW


# --- steps --------------------------------------------------------------------------------------------


class TestStep:
    @pytest.mark.parametrize(
        "text, mantissa, exponent",
        [
            ("0.01", 1, 2),
            ("0.0100", 1, 2),
            ("0.05", 5, 2),
            ("0.25", 25, 2),
            ("1", 1, 0),
            ("100", 100, 0),
            ("1.5", 15, 1),
            ("007", 7, 0),
        ],
    )
    def test_a_step_is_held_as_an_integer_mantissa_and_decimal_exponent(self, text, mantissa, exponent):
        for step in (Step(text), Step.parse(text), Step(Decimal(text))):
            assert (step.mantissa, step.exponent) == (mantissa, exponent)

    def test_a_step_with_a_positive_decimal_exponent_becomes_a_whole_number(self):
        assert (Step(Decimal("1E+3")).mantissa, Step(Decimal("1E+3")).exponent) == (1000, 0)

    def test_a_step_keeps_every_digit_beyond_the_default_decimal_precision(self):
        text = "1.0000000000000000000000000000001"  # 32 significant digits; Decimal's default is 28
        step = Step.parse(text)
        assert step.text == text
        assert (step.mantissa, step.exponent) == (10**31 + 1, 31)
        assert step.count("2.0000000000000000000000000000002") == 2
        assert Step(text) == step

    @pytest.mark.parametrize("decimals", [0, 1, 6, 8, 18])
    def test_from_decimals_is_the_smallest_unit_of_an_asset(self, decimals):
        step = Step.from_decimals(decimals)
        assert (step.mantissa, step.exponent) == (1, decimals)

    def test_equal_steps_compare_and_hash_equal(self):
        assert Step("0.10") == Step.parse("0.1") == Step(Decimal("0.1000"))
        assert hash(Step("0.10")) == hash(Step("0.1"))
        assert Step("0.1") != Step("0.01")
        assert Step("1") != 1

    @pytest.mark.parametrize("value", ["0", "-1", "NaN", "Infinity", Decimal("-0.01"), 0])
    def test_a_step_must_be_positive_and_finite(self, value):
        with pytest.raises(ValueError):
            Step(value)

    @pytest.mark.parametrize(
        "text, reason",
        [("0", Refusal.ZERO), ("0.00", Refusal.ZERO), ("1e-2", Refusal.EXPONENT), ("-0.1", Refusal.NEGATIVE),
         ("abc", Refusal.NOT_A_NUMBER), ("NaN", Refusal.NAN), ("", Refusal.EMPTY), (0.01, Refusal.NOT_A_STRING)],
    )
    def test_parsing_a_step_follows_the_same_rules_as_values(self, text, reason):
        assert refusal_of(Step.parse, text) is reason

    def test_a_step_formats_counts_as_plain_text(self):
        assert Step("0.05").format(3) == "0.15"
        assert Step("0.1").format(10) == "1"
        assert Step("0.25").format(7) == "1.75"
        assert Step("0.2").format(7) == "1.4"
        assert Step("100").format(3) == "300"
        assert Step("0.01").format(0) == "0"

    def test_a_step_shows_itself_by_its_text(self):
        assert repr(Step("0.050")) == "Step('0.05')"
        assert Step("0.050").text == "0.05"


class TestFormatScaled:
    @pytest.mark.parametrize(
        "scaled, exponent, text",
        [
            (1500, 3, "1.5"),
            (1, 8, "0.00000001"),
            (123_456_789, 4, "12345.6789"),
            (100, 2, "1"),
            (0, 2, "0"),
            (0, 0, "0"),
            (5, 0, "5"),
            (5, -2, "500"),
            (-1500, 3, "-1.5"),
            (-5, 2, "-0.05"),
            (INT64_MAX, 18, "9.223372036854775807"),
        ],
    )
    def test_examples(self, scaled, exponent, text):
        assert format_scaled(scaled, exponent) == text


# --- round trips --------------------------------------------------------------------------------------


steps = st.builds(
    lambda mantissa, exponent: Step(Decimal(mantissa).scaleb(-exponent)),
    st.integers(min_value=1, max_value=99_999),
    st.integers(min_value=0, max_value=18),
)
counts = st.integers(min_value=1, max_value=INT64_MAX)


class TestRoundTrips:
    @given(step=steps, count=counts)
    def test_formatting_a_count_then_parsing_it_gives_the_count_back(self, step, count):
        assert step.count(step.format(count)) == count

    @given(step=steps, count=counts)
    def test_formatted_text_is_plain_and_canonical(self, step, count):
        text = step.format(count)
        assert len(text) <= MAX_TEXT_LENGTH
        assert not text.startswith("0") or text.startswith("0.")
        assert not ("." in text and text.endswith("0"))
        assert Decimal(text) == count * Decimal(step.text)

    @given(step=steps)
    def test_a_step_parses_back_from_its_own_text(self, step):
        assert Step.parse(step.text) == step
        assert step.count(step.text) == 1

    @given(ticks=st.integers(min_value=1, max_value=INT64_MAX))
    def test_prices_round_trip_through_text_in_every_default_symbol(self, ticks):
        for symbol in (*CONFIG.symbols, XYZ_USD):
            assert price_to_ticks(ticks_to_price(ticks, symbol), symbol) == ticks

    @given(lots=st.integers(min_value=1, max_value=INT64_MAX))
    def test_quantities_round_trip_through_text_in_every_default_symbol(self, lots):
        for symbol in (*CONFIG.symbols, XYZ_USD):
            assert qty_to_lots(lots_to_qty(lots, symbol), symbol) == lots

    @given(units=st.integers(min_value=1, max_value=INT64_MAX))
    def test_amounts_round_trip_through_text_in_every_default_asset(self, units):
        for asset in CONFIG.assets:
            assert amount_to_units(units_to_amount(units, asset), asset) == units

    def test_formatting_examples(self):
        assert ticks_to_price(500_001, BTC_USDT) == "50000.1"
        assert lots_to_qty(15_000, BTC_USDT) == "1.5"
        assert units_to_amount(1, BTC) == "0.00000001"
        assert units_to_amount(5_000_000, USDT) == "5"
        assert ticks_to_price(21, XYZ_USD) == "1.05"


class TestMemo:
    """Steps remember what they parsed and formatted; the answers never change because of it."""

    def test_a_remembered_text_is_counted_the_same_and_zero_is_still_refused(self):
        step = Step("0.01")
        assert step.count("1.50") == 150
        assert step.count("1.50") == 150
        assert step.count("0", allow_zero=True) == 0
        with pytest.raises(FixedPointError) as refused:
            step.count("0")  # remembered as 0 just above, but refused without allow_zero
        assert refused.value.reason is Refusal.ZERO

    def test_a_refused_text_is_refused_every_time_with_its_reason(self):
        step = Step("0.01")
        for _ in range(2):
            with pytest.raises(FixedPointError) as refused:
                step.count("1.005")
            assert refused.value.reason is Refusal.TOO_MANY_DECIMALS

    def test_the_memo_is_bounded(self, monkeypatch):
        monkeypatch.setattr(fixedpoint, "MEMO_ENTRIES", 8)
        step = Step("0.1")
        for count in range(100):
            assert step.format(count) == fixedpoint.format_scaled(count, 1)
            assert step.count(step.format(count), allow_zero=True) == count
        assert len(step._formatted) <= 8 and len(step._counted) <= 8
