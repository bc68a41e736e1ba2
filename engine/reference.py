"""The reference engine: docs/engine.md in slow, plain Python.

Why it exists: it is the oracle. The fast engine (Numba kernels over preallocated arrays) is tested
against it command by command: same events, same state hash. So this module favours being obviously
right over being fast: dicts and lists, Python ints, one small method per rule of the contract, and the
checks of each command in exactly the order docs/engine.md lists them.

State:

- ``_accounts``: account id -> ``_Account`` (``available`` and ``frozen`` lists indexed by asset id);
- ``_supply``: per asset, deposits minus withdrawals;
- ``_orders``: order id -> ``_Order`` for every open (resting) order;
- ``_bids[symbol]`` / ``_asks[symbol]``: price (ticks) -> list of order ids, oldest first (FIFO).

A taker being matched is not in ``_orders`` (a NEW) or is in it but off the book (a CANCEL_REPLACE that
lost its priority); it rests (or is removed) when matching ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from common.config import BPS_DENOMINATOR, ExchangeConfig, SymbolConfig
from common.fixedpoint import INT64_MAX
from common.records import (
    ALL_SYMBOLS,
    SelfTradePrevention,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CancelReason,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from engine.digest import ORDER_ROW_FIELDS, state_digest
from engine.invariants import InvariantViolation

INT64_MIN = -(1 << 63)

_COMMAND_FIELDS = tuple(name for name in COMMAND_DTYPE.names if name != "reserved")
_EVENT_FIELDS = tuple(name for name in EVENT_DTYPE.names if name != "reserved")
_KINDS = {int(k) for k in CommandKind}
_SIDES = {int(s) for s in Side}
_ORDER_TYPES = {int(t) for t in OrderType}
_TIFS = {int(t) for t in TimeInForce}


class _Reject(Exception):
    """A check failed: the command is refused with ``reason`` and nothing changes."""

    def __init__(self, reason: RejectReason):
        super().__init__(reason.name)
        self.reason = reason


@dataclass
class _Account:
    available: list[int]
    frozen: list[int]


@dataclass
class _Order:
    order_id: int
    client_order_id: int
    account: int
    symbol: int
    side: int
    order_type: int
    tif: int
    price: int  # ticks; 0 for a market order
    qty: int  # total lots; 0 for a market buy by quote amount
    filled: int
    reserve: int  # what the order holds frozen (quote for a buy, base for a sell)
    ts: int
    limit: int | None  # the matching limit: the price, p_worst, or None (any price)
    by_amount: bool = False  # a market buy by quote amount: ``reserve`` is the unspent amount
    on_book: bool = False

    @property
    def leaves(self) -> int:
        return 0 if self.by_amount else self.qty - self.filled


_Level = tuple[int, int, int]  # (price, qty in lots, order count)
_Cmd = SimpleNamespace  # one command record, its fields as plain ints (cmd.seq, cmd.price, ...)


class ReferenceEngine:
    """The plain-Python engine (see the module docstring). Same constructor and API as ``engine.Engine``."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self._asset_count = len(config.assets)
        self._symbols: tuple[SymbolConfig, ...] = config.symbols
        self._maker_bps = config.fees.maker_bps
        self._taker_bps = config.fees.taker_bps
        self._reserve_bps = config.fees.reserve_bps
        self._fee_account = config.fees.fee_account
        self._max_accounts = config.capacity.max_accounts
        self._max_open_orders = config.capacity.max_open_orders
        self._stp = config.engine.self_trade_prevention

        self._supply = [0] * self._asset_count
        self._accounts: dict[int, _Account] = {}
        self._orders: dict[int, _Order] = {}
        self._bids: list[dict[int, list[int]]] = [{} for _ in self._symbols]
        self._asks: list[dict[int, list[int]]] = [{} for _ in self._symbols]
        self._events: list[dict[str, int]] = []
        self._cmd: _Cmd | None = None
        self._open_account(self._fee_account)

    # --- public API -------------------------------------------------------------------------------

    def apply(self, commands: np.ndarray) -> np.ndarray:
        """Run every command in order; return all their events as one EVENT_DTYPE array."""
        events: list[dict[str, int]] = []
        for record in np.asarray(commands, dtype=COMMAND_DTYPE).reshape(-1):
            events.extend(self._run_one(record))
        return _to_array(events)

    def process(self, commands: np.ndarray) -> Iterator[np.ndarray]:
        """The same as :meth:`apply`, as a generator yielding a single chunk."""
        yield self.apply(commands)

    def state_hash(self) -> str:
        supply = np.array(self._supply, dtype=np.int64)
        width = 1 + 2 * self._asset_count
        account_rows = []
        for account_id in sorted(self._accounts):
            account = self._accounts[account_id]
            row = [account_id]
            for asset in range(self._asset_count):
                row += [account.available[asset], account.frozen[asset]]
            account_rows.append(row)
        order_rows = [
            [getattr(order, name) for name in ORDER_ROW_FIELDS] for order in self._orders_in_book_order()
        ]
        return state_digest(
            supply,
            np.array(account_rows, dtype=np.int64).reshape(-1, width),
            np.array(order_rows, dtype=np.int64).reshape(-1, len(ORDER_ROW_FIELDS)),
        )

    def validate(self) -> None:
        problems = self._check_invariants()
        if problems:
            raise InvariantViolation(problems)

    def balance(self, account: int, asset: int) -> tuple[int, int]:
        """(available, frozen); (0, 0) for an account not created yet."""
        if not 0 <= account < self._max_accounts:
            raise IndexError(f"account {account} out of range")
        if not 0 <= asset < self._asset_count:
            raise IndexError(f"asset {asset} out of range")
        acc = self._accounts.get(account)
        if acc is None:
            return (0, 0)
        return (acc.available[asset], acc.frozen[asset])

    def order(self, order_id: int) -> dict[str, int] | None:
        order = self._orders.get(order_id)
        return None if order is None else _order_dict(order)

    def open_orders(self, account: int) -> list[dict[str, int]]:
        mine = sorted(oid for oid, order in self._orders.items() if order.account == account)
        return [_order_dict(self._orders[oid]) for oid in mine]

    def depth(self, symbol: int, levels: int) -> tuple[list[_Level], list[_Level]]:
        """(bids, asks), best first, at most ``levels`` each: (price, lots, order count)."""

        def side(book: dict[int, list[int]], descending: bool) -> list[_Level]:
            out = []
            for price in sorted(book, reverse=descending)[: max(levels, 0)]:
                ids = book[price]
                out.append((price, sum(self._orders[oid].leaves for oid in ids), len(ids)))
            return out

        return side(self._bids[symbol], True), side(self._asks[symbol], False)

    # --- dispatch ---------------------------------------------------------------------------------

    def _run_one(self, record: np.void) -> list[dict[str, int]]:
        self._cmd = cmd = _Cmd(**{name: int(record[name]) for name in _COMMAND_FIELDS})
        self._events = []
        handlers = {
            CommandKind.NEW: self._new,
            CommandKind.CANCEL: self._cancel,
            CommandKind.CANCEL_REPLACE: self._cancel_replace,
            CommandKind.CANCEL_ALL: self._cancel_all,
            CommandKind.DEPOSIT: self._deposit_or_withdraw,
            CommandKind.WITHDRAW: self._deposit_or_withdraw,
            CommandKind.CREATE_ACCOUNT: self._create_account,
        }
        try:
            if cmd.kind not in _KINDS:
                raise _Reject(RejectReason.UNKNOWN_COMMAND)
            handlers[CommandKind(cmd.kind)](cmd)
        except _Reject as reject:
            # Every check runs before any state change, so a reject has nothing to undo.
            assert not self._events, "a check failed after the command had already emitted events"
            self._emit(
                EventKind.REJECTED,
                reason=reject.reason,
                order_id=cmd.order_id,
                client_order_id=cmd.client_order_id,
                account=cmd.account,
                symbol=cmd.symbol,
                asset=cmd.asset,
                side=cmd.side,
                order_type=cmd.order_type,
                tif=cmd.tif,
                price=cmd.price,
                qty=cmd.qty,
                amount=cmd.amount,
            )
        events, self._events, self._cmd = self._events, [], None
        return events

    def _emit(self, kind: EventKind, **fields: int) -> None:
        assert self._cmd is not None
        event = {"seq": self._cmd.seq, "ts": self._cmd.ts, "kind": int(kind)}
        for name, value in fields.items():
            event[name] = int(value)
        for name, value in event.items():
            if not INT64_MIN <= value <= INT64_MAX:
                raise OverflowError(f"event field {name} = {value} does not fit in int64")
        self._events.append(event)

    # --- small rules ------------------------------------------------------------------------------

    def _exists(self, account: int) -> bool:
        return 0 <= account < self._max_accounts and account in self._accounts

    def _open_account(self, account: int) -> None:
        self._accounts[account] = _Account([0] * self._asset_count, [0] * self._asset_count)

    @staticmethod
    def _notional(sym: SymbolConfig, price: int, qty: int) -> int:
        return price * qty * sym.quote_units_per_tick_lot

    @staticmethod
    def _fee(notional: int, bps: int) -> int:
        return notional * bps // BPS_DENOMINATOR

    def _required(self, sym: SymbolConfig, price: int, qty: int) -> int:
        """What a buy of ``qty`` lots with limit ``price`` holds: notional plus the larger fee."""
        notional = self._notional(sym, price, qty)
        return notional + self._fee(notional, self._reserve_bps)

    def _reserve_rule(self, sym: SymbolConfig, side: int, limit: int, leaves: int) -> int:
        """The reserve of a (limit or by-quantity) order with ``leaves`` lots left."""
        if side == Side.BUY:
            return self._required(sym, limit, leaves)
        return leaves * sym.base_units_per_lot

    def _reserve_asset(self, sym: SymbolConfig, side: int) -> int:
        return sym.quote.id if side == Side.BUY else sym.base.id

    def _affordable_lots(self, sym: SymbolConfig, price: int, amount: int) -> int:
        """The largest q with notional(price, q) + taker fee <= amount (a market buy by quote amount)."""

        def cost(q: int) -> int:
            notional = self._notional(sym, price, q)
            return notional + self._fee(notional, self._taker_bps)

        low, high = 0, amount // (price * sym.quote_units_per_tick_lot)  # cost(high + 1) > amount
        while low < high:  # invariant: cost(low) <= amount, and the answer is in [low, high]
            middle = (low + high + 1) // 2
            if cost(middle) <= amount:
                low = middle
            else:
                high = middle - 1
        return low

    def _qty_in_range(self, sym: SymbolConfig, qty: int) -> bool:
        return sym.min_qty_lots <= qty <= sym.max_qty_lots

    def _price_in_band(self, sym: SymbolConfig, price: int) -> bool:
        return sym.min_price_ticks <= price <= sym.max_price_ticks

    def _opposite(self, symbol: int, side: int) -> dict[int, list[int]]:
        return self._asks[symbol] if side == Side.BUY else self._bids[symbol]

    def _own_side(self, symbol: int, side: int) -> dict[int, list[int]]:
        return self._bids[symbol] if side == Side.BUY else self._asks[symbol]

    def _best(self, book: dict[int, list[int]], side_of_book: int) -> int | None:
        if not book:
            return None
        return max(book) if side_of_book == Side.BUY else min(book)

    def _best_opposite(self, symbol: int, side: int) -> int | None:
        opposite_side = Side.SELL if side == Side.BUY else Side.BUY
        return self._best(self._opposite(symbol, side), opposite_side)

    def _levels_best_first(self, symbol: int, side_of_book: int) -> list[int]:
        book = self._bids[symbol] if side_of_book == Side.BUY else self._asks[symbol]
        return sorted(book, reverse=(side_of_book == Side.BUY))

    def _beyond_limit(self, side: int, price: int, limit: int | None) -> bool:
        if limit is None:
            return False
        return price > limit if side == Side.BUY else price < limit

    def _would_cross(self, symbol: int, side: int, price: int) -> bool:
        best = self._best_opposite(symbol, side)
        return best is not None and not self._beyond_limit(side, best, price)

    # --- balances ---------------------------------------------------------------------------------

    def _move_to_frozen(self, account: int, asset: int, amount: int) -> None:
        acc = self._accounts[account]
        acc.available[asset] -= amount
        acc.frozen[asset] += amount

    def _order_event(self, kind: EventKind, order: _Order, *, amount: int, reason: int = 0) -> None:
        """ACCEPTED, REPLACED or CANCELLED: the order's fields, and its account's balance of the
        order's reserve asset as it stands after the event."""
        asset = self._reserve_asset(self._symbols[order.symbol], order.side)
        acc = self._accounts[order.account]
        self._emit(kind, reason=reason, **_order_fields(order), amount=amount, asset=asset,
                   available=acc.available[asset], frozen=acc.frozen[asset])

    def _balance_event(self, account: int, asset: int, change: int = 0) -> None:
        acc = self._accounts[account]
        self._emit(
            EventKind.BALANCE,
            account=account,
            asset=asset,
            available=acc.available[asset],
            frozen=acc.frozen[asset],
            amount=change,
        )

    # --- book -------------------------------------------------------------------------------------

    def _rest(self, order: _Order) -> None:
        """Put ``order`` at the tail of its price level (and in the order table)."""
        self._own_side(order.symbol, order.side).setdefault(order.price, []).append(order.order_id)
        order.on_book = True
        self._orders[order.order_id] = order

    def _take_off_book(self, order: _Order) -> None:
        """Remove ``order`` from its price level (it stays in the order table)."""
        if not order.on_book:
            return
        book = self._own_side(order.symbol, order.side)
        level = book[order.price]
        level.remove(order.order_id)
        if not level:
            del book[order.price]
        order.on_book = False

    def _end(self, order: _Order) -> None:
        """The order is over: off the book and out of the order table."""
        self._take_off_book(order)
        if self._orders.get(order.order_id) is order:
            del self._orders[order.order_id]

    def _cancel_order(self, order: _Order, reason: CancelReason) -> None:
        """End ``order``, release what it holds: CANCELLED (carrying the balance it released into)."""
        sym = self._symbols[order.symbol]
        asset = self._reserve_asset(sym, order.side)
        released = order.reserve
        self._move_to_frozen(order.account, asset, -released)
        order.reserve = 0
        self._end(order)
        self._order_event(EventKind.CANCELLED, order, amount=released, reason=reason)

    # --- CREATE_ACCOUNT, DEPOSIT, WITHDRAW ----------------------------------------------------------

    def _create_account(self, cmd: _Cmd) -> None:
        if not 0 <= cmd.account < self._max_accounts:
            raise _Reject(RejectReason.UNKNOWN_ACCOUNT)
        if cmd.account in self._accounts:
            raise _Reject(RejectReason.ACCOUNT_EXISTS)
        self._open_account(cmd.account)
        self._emit(EventKind.ACCOUNT_CREATED, account=cmd.account)

    def _deposit_or_withdraw(self, cmd: _Cmd) -> None:
        deposit = cmd.kind == CommandKind.DEPOSIT
        if not self._exists(cmd.account):
            raise _Reject(RejectReason.UNKNOWN_ACCOUNT)
        if not 0 <= cmd.asset < self._asset_count:
            raise _Reject(RejectReason.UNKNOWN_ASSET)
        if cmd.amount <= 0:
            raise _Reject(RejectReason.INVALID_AMOUNT)
        acc = self._accounts[cmd.account]
        if deposit and self._supply[cmd.asset] + cmd.amount > INT64_MAX:
            raise _Reject(RejectReason.BALANCE_OVERFLOW)
        if not deposit and cmd.amount > acc.available[cmd.asset]:
            raise _Reject(RejectReason.INSUFFICIENT_FUNDS)
        change = cmd.amount if deposit else -cmd.amount
        acc.available[cmd.asset] += change
        self._supply[cmd.asset] += change
        self._balance_event(cmd.account, cmd.asset, change)

    # --- NEW --------------------------------------------------------------------------------------

    def _new(self, cmd: _Cmd) -> None:
        if not self._exists(cmd.account):
            raise _Reject(RejectReason.UNKNOWN_ACCOUNT)
        if not 0 <= cmd.symbol < len(self._symbols):
            raise _Reject(RejectReason.UNKNOWN_SYMBOL)
        sym = self._symbols[cmd.symbol]
        if cmd.side not in _SIDES:
            raise _Reject(RejectReason.INVALID_SIDE)
        if cmd.order_type not in _ORDER_TYPES:
            raise _Reject(RejectReason.INVALID_ORDER_TYPE)
        market = cmd.order_type == OrderType.MARKET
        if cmd.tif not in _TIFS or (market and cmd.tif != TimeInForce.IOC):
            raise _Reject(RejectReason.INVALID_TIME_IN_FORCE)
        by_amount = market and cmd.amount != 0
        if not market:
            if cmd.amount != 0 or not self._qty_in_range(sym, cmd.qty):
                raise _Reject(RejectReason.INVALID_QUANTITY)
        elif by_amount:
            if cmd.side == Side.SELL:
                raise _Reject(RejectReason.INVALID_ORDER_TYPE)
            if cmd.qty != 0:
                raise _Reject(RejectReason.INVALID_QUANTITY)
            if cmd.amount < 0:
                raise _Reject(RejectReason.INVALID_AMOUNT)
        elif not self._qty_in_range(sym, cmd.qty):
            raise _Reject(RejectReason.INVALID_QUANTITY)
        if not market and not self._price_in_band(sym, cmd.price):
            raise _Reject(RejectReason.PRICE_OUT_OF_BAND)
        if not market and self._notional(sym, cmd.price, cmd.qty) < sym.min_notional_units:
            raise _Reject(RejectReason.BELOW_MIN_NOTIONAL)
        if by_amount and cmd.amount < sym.min_notional_units:
            raise _Reject(RejectReason.BELOW_MIN_NOTIONAL)
        if cmd.seq <= 0 or cmd.seq in self._orders:
            raise _Reject(RejectReason.INVALID_ORDER_ID)
        if cmd.tif in (TimeInForce.GTC, TimeInForce.POST_ONLY) and len(self._orders) >= self._max_open_orders:
            raise _Reject(RejectReason.ORDER_TABLE_FULL)
        if cmd.tif == TimeInForce.POST_ONLY and self._would_cross(cmd.symbol, cmd.side, cmd.price):
            raise _Reject(RejectReason.POST_ONLY_WOULD_CROSS)

        # The reserve, and the limit the order matches up to.
        if not market:
            limit: int | None = cmd.price
            reserve = self._reserve_rule(sym, cmd.side, cmd.price, cmd.qty)
        elif cmd.side == Side.SELL:
            limit = None
            reserve = cmd.qty * sym.base_units_per_lot
        elif by_amount:
            limit = None
            reserve = cmd.amount
        else:
            limit = self._p_worst(cmd.symbol, cmd.qty)
            reserve = self._required(sym, limit, cmd.qty)
        asset = self._reserve_asset(sym, cmd.side)
        if reserve > self._accounts[cmd.account].available[asset]:
            raise _Reject(RejectReason.INSUFFICIENT_FUNDS)

        taker = _Order(
            order_id=cmd.seq,
            client_order_id=cmd.client_order_id,
            account=cmd.account,
            symbol=cmd.symbol,
            side=cmd.side,
            order_type=cmd.order_type,
            tif=cmd.tif,
            price=0 if market else cmd.price,
            qty=0 if by_amount else cmd.qty,
            filled=0,
            reserve=0,
            ts=cmd.ts,
            limit=limit,
            by_amount=by_amount,
        )

        if cmd.tif == TimeInForce.FOK and not self._fok_fillable(taker):
            self._order_event(EventKind.CANCELLED, taker, amount=0, reason=CancelReason.FOK)
            return

        # Accepted: freeze the reserve, then match.
        self._move_to_frozen(cmd.account, asset, reserve)
        taker.reserve = reserve
        self._order_event(EventKind.ACCEPTED, taker, amount=reserve)

        if self._match(taker):
            return  # self-trade prevention cancelled it
        if cmd.tif in (TimeInForce.GTC, TimeInForce.POST_ONLY):
            if taker.leaves > 0:
                self._rest(taker)
        elif by_amount:
            if taker.reserve > 0:
                self._cancel_order(taker, CancelReason.MARKET_REMAINDER)
        elif market:
            if taker.leaves > 0:
                self._cancel_order(taker, CancelReason.MARKET_REMAINDER)
        elif cmd.tif == TimeInForce.IOC:
            if taker.leaves > 0:
                self._cancel_order(taker, CancelReason.IOC_REMAINDER)
        else:  # FOK: the dry run said it fills completely
            assert taker.leaves == 0, "a FOK order passed its dry run but did not fill"
        assert taker.on_book or taker.reserve == 0, "an order ended still holding a reserve"

    def _p_worst(self, symbol: int, qty: int) -> int:
        """The ask price at which the cumulative ask quantity first reaches ``qty`` (docs: NEW, 12)."""
        cumulative = 0
        price = 0
        for price in self._levels_best_first(symbol, Side.SELL):
            cumulative += sum(self._orders[oid].leaves for oid in self._asks[symbol][price])
            if cumulative >= qty:
                return price
        return price  # the highest ask level, or 0 with no asks

    def _fok_fillable(self, taker: _Order) -> bool:
        """The FOK dry run: walk the opposite side in priority order up to the limit."""
        opposite_side = Side.SELL if taker.side == Side.BUY else Side.BUY
        book = self._opposite(taker.symbol, taker.side)
        covered = 0
        for price in self._levels_best_first(taker.symbol, opposite_side):
            if self._beyond_limit(taker.side, price, taker.limit):
                return False
            for maker_id in book[price]:
                maker = self._orders[maker_id]
                if maker.account == taker.account and self._stp != SelfTradePrevention.OFF:
                    if self._stp == SelfTradePrevention.CANCEL_MAKER:
                        continue
                    return False
                covered += maker.leaves
                if covered >= taker.qty:
                    return True
        return False

    # --- matching ---------------------------------------------------------------------------------

    def _match(self, taker: _Order) -> bool:
        """Match ``taker`` against the opposite side. True if self-trade prevention cancelled it."""
        sym = self._symbols[taker.symbol]
        book = self._opposite(taker.symbol, taker.side)
        opposite_side = Side.SELL if taker.side == Side.BUY else Side.BUY
        while True:
            if not taker.by_amount and taker.leaves == 0:
                return False
            price = self._best(book, opposite_side)
            if price is None or self._beyond_limit(taker.side, price, taker.limit):
                return False
            if taker.by_amount and self._affordable_lots(sym, price, taker.reserve) == 0:
                return False
            maker = self._orders[book[price][0]]
            if maker.account == taker.account and self._stp != SelfTradePrevention.OFF:
                if self._stp == SelfTradePrevention.CANCEL_TAKER:
                    self._cancel_order(taker, CancelReason.SELF_TRADE)
                    return True
                self._cancel_order(maker, CancelReason.SELF_TRADE)
                if self._stp == SelfTradePrevention.CANCEL_BOTH:
                    self._cancel_order(taker, CancelReason.SELF_TRADE)
                    return True
                continue
            if taker.by_amount:
                qty = min(maker.leaves, self._affordable_lots(sym, price, taker.reserve))
            else:
                qty = min(taker.leaves, maker.leaves)
            self._fill(sym, taker, maker, price, qty)

    def _fill(self, sym: SymbolConfig, taker: _Order, maker: _Order, price: int, qty: int) -> None:
        notional = self._notional(sym, price, qty)
        maker_fee = self._fee(notional, self._maker_bps)
        taker_fee = self._fee(notional, self._taker_bps)
        if taker.side == Side.BUY:
            buyer, buyer_fee, seller, seller_fee = taker, taker_fee, maker, maker_fee
        else:
            buyer, buyer_fee, seller, seller_fee = maker, maker_fee, taker, taker_fee
        base, quote = sym.base.id, sym.quote.id
        base_units = qty * sym.base_units_per_lot

        # The buyer pays notional + fee out of its reserve and receives the base.
        buyer.filled += qty
        paid = notional + buyer_fee
        assert paid <= buyer.reserve, "a buy order's reserve does not cover its fill"
        buyer_account = self._accounts[buyer.account]
        buyer_account.frozen[quote] -= paid
        buyer.reserve -= paid
        if not buyer.by_amount:
            assert buyer.limit is not None
            keep = self._required(sym, buyer.limit, buyer.leaves)
            excess = buyer.reserve - keep
            assert excess >= 0
            buyer_account.frozen[quote] -= excess
            buyer_account.available[quote] += excess
            buyer.reserve = keep
        buyer_account.available[base] += base_units

        # The seller's reserve drops by the base it delivers; it receives the notional less its fee.
        seller.filled += qty
        seller_account = self._accounts[seller.account]
        seller_account.frozen[base] -= base_units
        seller.reserve -= base_units
        seller_account.available[quote] += notional - seller_fee

        self._accounts[self._fee_account].available[quote] += maker_fee + taker_fee

        if maker.leaves == 0:
            assert maker.reserve == 0
            self._end(maker)

        self._emit(
            EventKind.TRADE,
            order_id=taker.order_id,
            client_order_id=taker.client_order_id,
            account=taker.account,
            side=taker.side,
            order_type=taker.order_type,
            tif=taker.tif,
            symbol=taker.symbol,
            leaves=taker.leaves,
            filled=taker.filled,
            maker_order_id=maker.order_id,
            maker_client_order_id=maker.client_order_id,
            maker_account=maker.account,
            maker_leaves=maker.leaves,
            maker_filled=maker.filled,
            price=price,
            qty=qty,
            amount=notional,
            maker_fee=maker_fee,
            taker_fee=taker_fee,
        )
        self._balance_event(taker.account, base)
        self._balance_event(taker.account, quote)
        self._balance_event(maker.account, base)
        self._balance_event(maker.account, quote)
        self._balance_event(self._fee_account, quote)

    # --- CANCEL, CANCEL_REPLACE, CANCEL_ALL ---------------------------------------------------------

    def _own_open_order(self, cmd: _Cmd) -> _Order:
        if not self._exists(cmd.account):
            raise _Reject(RejectReason.UNKNOWN_ACCOUNT)
        order = self._orders.get(cmd.order_id)
        if order is None or order.account != cmd.account:
            raise _Reject(RejectReason.UNKNOWN_ORDER)
        return order

    def _cancel(self, cmd: _Cmd) -> None:
        order = self._own_open_order(cmd)
        self._cancel_order(order, CancelReason.USER)

    def _cancel_replace(self, cmd: _Cmd) -> None:
        order = self._own_open_order(cmd)
        sym = self._symbols[order.symbol]
        if not self._price_in_band(sym, cmd.price):
            raise _Reject(RejectReason.PRICE_OUT_OF_BAND)
        if not self._qty_in_range(sym, cmd.qty) or cmd.qty <= order.filled:
            raise _Reject(RejectReason.INVALID_QUANTITY)
        if self._notional(sym, cmd.price, cmd.qty) < sym.min_notional_units:
            raise _Reject(RejectReason.BELOW_MIN_NOTIONAL)
        if order.tif == TimeInForce.POST_ONLY and self._would_cross(order.symbol, order.side, cmd.price):
            raise _Reject(RejectReason.POST_ONLY_WOULD_CROSS)
        asset = self._reserve_asset(sym, order.side)
        new_reserve = self._reserve_rule(sym, order.side, cmd.price, cmd.qty - order.filled)
        if new_reserve > order.reserve + self._accounts[order.account].available[asset]:
            raise _Reject(RejectReason.INSUFFICIENT_FUNDS)

        keeps_priority = cmd.price == order.price and cmd.qty <= order.qty
        self._move_to_frozen(order.account, asset, new_reserve - order.reserve)
        order.reserve = new_reserve
        if not keeps_priority:
            self._take_off_book(order)  # ``ts`` stays the time the order was placed
        order.price = order.limit = cmd.price
        order.qty = cmd.qty
        order.client_order_id = cmd.client_order_id
        self._order_event(EventKind.REPLACED, order, amount=new_reserve)
        if keeps_priority:
            return
        if self._match(order):
            return  # self-trade prevention cancelled it
        if order.leaves > 0:
            self._rest(order)
        else:
            self._end(order)

    def _cancel_all(self, cmd: _Cmd) -> None:
        if not self._exists(cmd.account):
            raise _Reject(RejectReason.UNKNOWN_ACCOUNT)
        if cmd.symbol != ALL_SYMBOLS and not 0 <= cmd.symbol < len(self._symbols):
            raise _Reject(RejectReason.UNKNOWN_SYMBOL)
        targets = sorted(
            oid
            for oid, order in self._orders.items()
            if order.account == cmd.account and cmd.symbol in (ALL_SYMBOLS, order.symbol)
        )
        for oid in targets:
            self._cancel_order(self._orders[oid], CancelReason.USER)
        self._emit(EventKind.MASS_CANCELLED, account=cmd.account, symbol=cmd.symbol, qty=len(targets))

    # --- state listing and invariants ----------------------------------------------------------------

    def _orders_in_book_order(self) -> list[_Order]:
        """Per symbol: bids best to worst, then asks best to worst, FIFO within each level."""
        out = []
        for symbol in range(len(self._symbols)):
            for side, book in ((Side.BUY, self._bids[symbol]), (Side.SELL, self._asks[symbol])):
                for price in self._levels_best_first(symbol, side):
                    out.extend(self._orders[oid] for oid in book[price])
        return out

    def _check_invariants(self) -> list[str]:
        problems: list[str] = []

        def int64(value: int) -> bool:
            return INT64_MIN <= value <= INT64_MAX

        # Balances: conservation, signs, int64.
        totals = [0] * self._asset_count
        for account_id, acc in self._accounts.items():
            if not 0 <= account_id < self._max_accounts:
                problems.append(f"account {account_id} is out of range")
            for asset in range(self._asset_count):
                available, frozen = acc.available[asset], acc.frozen[asset]
                if available < 0 or frozen < 0:
                    problems.append(f"account {account_id} asset {asset}: negative ({available}, {frozen})")
                if not (int64(available) and int64(frozen)):
                    problems.append(f"account {account_id} asset {asset}: beyond int64")
                totals[asset] += available + frozen
        if self._fee_account not in self._accounts:
            problems.append("the fee account does not exist")
        for asset in range(self._asset_count):
            if totals[asset] != self._supply[asset]:
                problems.append(f"asset {asset}: balances sum to {totals[asset]}, supply is {self._supply[asset]}")
            if not 0 <= self._supply[asset] <= INT64_MAX:
                problems.append(f"asset {asset}: supply {self._supply[asset]} outside [0, int64]")

        # Orders: reserves, frozen sums, fields.
        frozen_sums: dict[tuple[int, int], int] = {}
        for oid, order in self._orders.items():
            where = f"order {oid}"
            if order.order_id != oid:
                problems.append(f"{where}: indexed under the wrong id {order.order_id}")
            if order.account not in self._accounts:
                problems.append(f"{where}: account {order.account} does not exist")
                continue
            if not 0 <= order.symbol < len(self._symbols):
                problems.append(f"{where}: symbol {order.symbol} out of range")
                continue
            sym = self._symbols[order.symbol]
            restable = order.order_type == OrderType.LIMIT and order.tif in (TimeInForce.GTC, TimeInForce.POST_ONLY)
            if not restable:
                problems.append(f"{where}: a resting order must be a GTC or POST_ONLY limit order")
            if order.side not in _SIDES:
                problems.append(f"{where}: bad side {order.side}")
                continue
            if not 0 < order.leaves <= order.qty or order.filled < 0:
                problems.append(f"{where}: qty {order.qty}, filled {order.filled}: no lots left or bad counts")
            if not self._price_in_band(sym, order.price) or order.limit != order.price:
                problems.append(f"{where}: price {order.price} (limit {order.limit}) outside the band")
            if order.reserve < 0:
                problems.append(f"{where}: negative reserve {order.reserve}")
            expected = self._reserve_rule(sym, order.side, order.price, order.leaves)
            if order.reserve != expected:
                problems.append(f"{where}: reserve {order.reserve}, the rule gives {expected}")
            if not order.on_book:
                problems.append(f"{where}: in the order table but not on the book")
            key = (order.account, self._reserve_asset(sym, order.side))
            frozen_sums[key] = frozen_sums.get(key, 0) + order.reserve
        for account_id, acc in self._accounts.items():
            for asset in range(self._asset_count):
                expected = frozen_sums.get((account_id, asset), 0)
                if acc.frozen[asset] != expected:
                    problems.append(
                        f"account {account_id} asset {asset}: frozen {acc.frozen[asset]}, reserves sum to {expected}"
                    )

        # Books: levels hold their own orders exactly once, not crossed.
        seen: set[int] = set()
        for symbol in range(len(self._symbols)):
            for side, book in ((Side.BUY, self._bids[symbol]), (Side.SELL, self._asks[symbol])):
                for price, level in book.items():
                    if not level:
                        problems.append(f"symbol {symbol} side {side.name} price {price}: empty level kept")
                    for oid in level:
                        order = self._orders.get(oid)
                        if order is None:
                            problems.append(f"symbol {symbol} price {price}: order {oid} is not in the order table")
                            continue
                        if oid in seen:
                            problems.append(f"order {oid} is on the book twice")
                        seen.add(oid)
                        if (order.symbol, order.side, order.price) != (symbol, side, price):
                            problems.append(f"order {oid} sits at symbol {symbol} side {side.name} price {price}")
            bid = self._best(self._bids[symbol], Side.BUY)
            ask = self._best(self._asks[symbol], Side.SELL)
            if bid is not None and ask is not None and bid >= ask:
                problems.append(f"symbol {symbol}: crossed book, best bid {bid} >= best ask {ask}")
            both = set(self._bids[symbol]) & set(self._asks[symbol])
            if both:
                problems.append(f"symbol {symbol}: bids and asks share prices {sorted(both)}")
        missing = set(self._orders) - seen
        if missing:
            problems.append(f"orders {sorted(missing)} are in the order table but on no level")
        if len(self._orders) > self._max_open_orders:
            problems.append(f"{len(self._orders)} open orders, more than max_open_orders {self._max_open_orders}")
        return problems


# --- module helpers -------------------------------------------------------------------------------------


def _order_fields(order: _Order) -> dict[str, int]:
    """The order's fields as ACCEPTED / CANCELLED / REPLACED carry them (``amount`` aside)."""
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "tif": order.tif,
        "price": order.price,
        "qty": order.qty,
        "leaves": order.leaves,
        "filled": order.filled,
    }


def _order_dict(order: _Order) -> dict[str, int]:
    out = _order_fields(order)
    out["reserve"] = order.reserve
    out["ts"] = order.ts
    return out


def _to_array(events: list[dict[str, int]]) -> np.ndarray:
    out = np.zeros(len(events), dtype=EVENT_DTYPE)
    for index, event in enumerate(events):
        for name, value in event.items():
            out[name][index] = value
    return out


__all__ = ["ReferenceEngine"]
