"""Decimal strings <-> integer ticks, lots and asset units.

Money never becomes a float. Every price is an integer number of ticks of its symbol, every quantity an
integer number of lots, every balance an integer number of the asset's smallest units. This module is the
only place where the decimal text a client sends turns into those integers, and back.

A value is accepted only if it is written plainly: digits, optionally a dot and more digits (``"42"``,
``"0.015"``). Signs, exponents, ``NaN``, ``Infinity``, blanks and anything else are refused with a
:class:`FixedPointError` whose ``reason`` says why, so a gateway can pass it on to the client.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from common.config import AssetConfig, SymbolConfig

INT64_MAX = (1 << 63) - 1

# Longer text cannot be a valid int64 count of any step we allow; refusing it early keeps a hostile
# 10 MB "number" from costing a 10 MB integer conversion.
MAX_TEXT_LENGTH = 48

# Each Step remembers this many texts it parsed and counts it formatted. Prices and quantities repeat
# (a market trades near its price, orders come in round sizes), so the gateway's hot path mostly finds
# them here; a full memo is emptied and starts again, which bounds its memory.
MEMO_ENTRIES = 16_384

_PLAIN_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_EXPONENT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]*")


class Refusal(str, Enum):
    """Why a decimal string was refused. The values are stable: they travel in reject messages."""

    EMPTY = "empty"
    NOT_A_STRING = "not_a_string"
    NOT_A_NUMBER = "not_a_number"
    NAN = "nan"
    INFINITY = "infinity"
    EXPONENT = "exponent"
    NEGATIVE = "negative"
    ZERO = "zero"
    TOO_MANY_DECIMALS = "too_many_decimals"
    NOT_A_MULTIPLE = "not_a_multiple"
    OVERFLOW = "overflow"


class FixedPointError(ValueError):
    """A decimal string that cannot become an integer count. ``reason`` is a :class:`Refusal`."""

    def __init__(self, reason: Refusal, message: str):
        super().__init__(message)
        self.reason = reason


class Step:
    """A positive decimal step (tick size, lot size, or an asset's smallest unit) as integers.

    ``step == mantissa * 10**-exponent``. Parsing a value counts how many whole steps it holds.
    """

    __slots__ = ("mantissa", "exponent", "text", "_counted", "_formatted")

    def __init__(self, step: Decimal | str | int):
        value = Decimal(str(step))
        if not value.is_finite() or value <= 0:
            raise ValueError(f"a step must be a positive finite decimal, got {step!r}")
        # Exact integer arithmetic: Decimal.normalize() would round to the context's 28 digits.
        sign, digits, exponent = value.as_tuple()
        mantissa = int("".join(map(str, digits)))
        if exponent > 0:
            mantissa *= 10**exponent
            exponent = 0
        while exponent < 0 and mantissa % 10 == 0:
            mantissa //= 10
            exponent += 1
        self.mantissa = mantissa
        self.exponent = -exponent
        self.text = format_scaled(mantissa, self.exponent)
        self._counted: dict[str, int] = {}  # text -> count, for texts accepted before
        self._formatted: dict[int, str] = {}  # count -> text

    @classmethod
    def parse(cls, text: object, *, what: str = "step") -> "Step":
        """A step from strict decimal text (the same rules as values: plain digits, positive)."""
        scaled, frac_digits = _parse_plain(text, what)
        if scaled == 0:
            raise FixedPointError(Refusal.ZERO, f"{what} must be greater than zero")
        return cls(Decimal(f"{scaled}E-{frac_digits}"))  # exact; scaleb() would round to 28 digits

    @classmethod
    def from_decimals(cls, decimals: int) -> "Step":
        return cls(Decimal(1).scaleb(-decimals))

    def count(self, text: object, *, what: str = "value", allow_zero: bool = False) -> int:
        """The number of whole steps in ``text``; refuses anything else with a reason."""
        # Only texts that were accepted are memoised (as str keys: a non-str is never found), so every
        # refusal still goes through the checks below and gets its reason.
        known = self._counted.get(text) if type(text) is str else None
        if known is not None and (known or allow_zero):
            return known
        count = self._count(text, what=what, allow_zero=allow_zero)
        if len(self._counted) >= MEMO_ENTRIES:
            self._counted.clear()
        self._counted[text] = count
        return count

    def _count(self, text: object, *, what: str, allow_zero: bool) -> int:
        scaled, frac_digits = _parse_plain(text, what)
        if frac_digits > self.exponent:
            raise FixedPointError(
                Refusal.TOO_MANY_DECIMALS,
                f"{what} {text!r} has more decimals than its step {self.text} allows",
            )
        scaled *= 10 ** (self.exponent - frac_digits)
        count, remainder = divmod(scaled, self.mantissa)
        if remainder:
            raise FixedPointError(Refusal.NOT_A_MULTIPLE, f"{what} {text!r} is not a multiple of {self.text}")
        if count == 0 and not allow_zero:
            raise FixedPointError(Refusal.ZERO, f"{what} must be greater than zero")
        if count > INT64_MAX:
            raise FixedPointError(Refusal.OVERFLOW, f"{what} {text!r} is too large")
        return count

    def format(self, count: int) -> str:
        """The decimal text of ``count`` steps, without trailing zeros beyond the step's precision."""
        text = self._formatted.get(count)
        if text is None:
            text = format_scaled(count * self.mantissa, self.exponent)
            if len(self._formatted) >= MEMO_ENTRIES:
                self._formatted.clear()
            self._formatted[count] = text
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        return (self.mantissa, self.exponent) == (other.mantissa, other.exponent)

    def __hash__(self) -> int:
        return hash((self.mantissa, self.exponent))

    def __repr__(self) -> str:
        return f"Step({self.text!r})"


def _parse_plain(text: object, what: str) -> tuple[int, int]:
    """Split plain decimal text into (all digits as one integer, number of fractional digits)."""
    if not isinstance(text, str):
        raise FixedPointError(Refusal.NOT_A_STRING, f"{what} must be a decimal string, got {type(text).__name__}")
    if text == "":
        raise FixedPointError(Refusal.EMPTY, f"{what} is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise FixedPointError(Refusal.OVERFLOW, f"{what} is too long ({len(text)} characters)")
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None:
        raise FixedPointError(*_classify_refused(text, what))
    whole, fraction = match.group(1), match.group(2) or ""
    fraction = fraction.rstrip("0")
    return int(whole + fraction), len(fraction)


def _classify_refused(text: str, what: str) -> tuple[Refusal, str]:
    lowered = text.strip().lower().lstrip("+-")
    if lowered in ("nan", "snan", "qnan"):
        return Refusal.NAN, f"{what} is not a number (NaN)"
    if lowered in ("inf", "infinity"):
        return Refusal.INFINITY, f"{what} is infinite"
    if _EXPONENT.fullmatch(text.strip()):
        return Refusal.EXPONENT, f"{what} {text!r} uses an exponent; write it as plain digits"
    if text.startswith("-") and _PLAIN_DECIMAL.fullmatch(text[1:]):
        return Refusal.NEGATIVE, f"{what} must not be negative"
    return Refusal.NOT_A_NUMBER, f"{what} {text!r} is not a plain decimal number"


def format_scaled(scaled: int, exponent: int) -> str:
    """``scaled * 10**-exponent`` as plain decimal text (``format_scaled(1500, 3) == "1.5"``)."""
    if exponent <= 0:
        return str(scaled * 10**-exponent)
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(exponent + 1, "0")
    whole, fraction = digits[:-exponent], digits[-exponent:].rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


# --- per symbol and asset ---------------------------------------------------------------------------


def price_to_ticks(text: object, symbol: "SymbolConfig") -> int:
    return symbol.tick.count(text, what="price")


def qty_to_lots(text: object, symbol: "SymbolConfig") -> int:
    return symbol.lot.count(text, what="quantity")


def amount_to_units(text: object, asset: "AssetConfig") -> int:
    return asset.unit.count(text, what="amount")


def ticks_to_price(ticks: int, symbol: "SymbolConfig") -> str:
    return symbol.tick.format(ticks)


def lots_to_qty(lots: int, symbol: "SymbolConfig") -> str:
    return symbol.lot.format(lots)


def units_to_amount(units: int, asset: "AssetConfig") -> str:
    return asset.unit.format(units)


def notional_units(price_ticks: int, qty_lots: int, symbol: "SymbolConfig") -> int:
    """Quote units of ``price x quantity``; refused if the product leaves int64."""
    notional = price_ticks * qty_lots * symbol.quote_units_per_tick_lot
    if notional > INT64_MAX:
        raise FixedPointError(Refusal.OVERFLOW, "price x quantity overflows the quote amount range")
    return notional


def parse_order_values(price: object, qty: object, symbol: "SymbolConfig") -> tuple[int, int, int]:
    """Price text, quantity text -> (ticks, lots, notional units), each refused with its reason."""
    ticks = price_to_ticks(price, symbol)
    lots = qty_to_lots(qty, symbol)
    return ticks, lots, notional_units(ticks, lots, symbol)
