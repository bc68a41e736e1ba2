"""The pusher's pure core: WebSocket clients' requests, quotation's channels and the engine's account
events in; what to send to whom, and what to ask quotation and the engine, out. No sockets, no clock but
the one passed in: pusher/main.py does the I/O and carries out the actions.

Connections are numbers (``connect(conn)``). Every method returns a list of actions:

- ``Send(conn, text)``: one JSON text to one connection;
- ``Broadcast(conns, text)``: the same text to every connection of a channel (encoded once);
- ``AskQuotation(query)`` / ``AskEngine(query)``: a query map with its ``id``; the reply comes back
  through ``on_quotation_reply`` / ``on_engine_reply``;
- ``Listen(account, on)``: subscribe to (or leave) the engine's topic of an account.

How each channel stays exact (docs/market-data.md):

- **depth**: the pusher keeps each symbol's book (quotation's snapshot, then its diffs). A subscriber
  gets that book as a ``snapshot`` at once, then every diff. A diff that does not start where the book
  is (``U`` > ``u`` + 1), or a quotation restart (a new epoch), makes the pusher fetch a new snapshot and
  send subscribers the difference as an ordinary diff; only if quotation went back in time do they get
  a fresh ``snapshot`` instead.
- **trades**: trade ids are 1, 2, 3, ... per symbol; a jump is filled from quotation's recent trades
  before the trades after it go out. ``from_id`` on subscribe replays what followed that id first.
- **kline**, **ticker**: each message is the whole state; a subscriber gets the latest at once. While
  a channel has no subscriber its latest message is kept as quotation encoded it and decoded only when
  someone subscribes (most of quotation's messages are these, and most channels have nobody watching).
- **orders**, **balances**, **fills** (authenticated): a snapshot from the engine with its ``seq``, then
  the account's events with a higher ``seq``. Account messages chain by ``prev``: one missing makes the
  pusher take new snapshots (and tell ``fills`` subscribers that fills may have been missed).
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Protocol

from common.config import ExchangeConfig
from common.market import DEPTH, KLINE, TICKER, TRADES, MarketError, decode_publication_body, parse_channel
from common.protocol import sign_stream_auth
from common.reports import ACCOUNT_PREFIX, ReportMessage
from common.views import AccountViews

log = logging.getLogger("pusher.core")

ORDERS, FILLS, BALANCES = "orders", "fills", "balances"
PRIVATE_CHANNELS = (ORDERS, FILLS, BALANCES)
TRADES_PAGE = 1_000  # trades asked of quotation at a time when filling a gap
MAX_TEXT = 4_096  # characters of a client request


# --- actions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    text: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    conns: frozenset[int] | set[int]
    text: str


@dataclass(frozen=True, slots=True)
class AskQuotation:
    query: dict


@dataclass(frozen=True, slots=True)
class AskEngine:
    query: dict


@dataclass(frozen=True, slots=True)
class Listen:
    account: int
    on: bool


Action = Send | Broadcast | AskQuotation | AskEngine | Listen


class Credentials(Protocol):
    def lookup(self, key_id: str) -> Any: ...


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Refused(Exception):
    pass


# --- state --------------------------------------------------------------------------------------------------


@dataclass
class _Conn:
    id: int
    account: int | None = None
    public: set[str] = field(default_factory=set)  # channels joined (receiving broadcasts)
    waiting: dict[str, list] = field(default_factory=dict)  # channel -> held data until its catch-up arrives
    private: dict[str, int | None] = field(default_factory=dict)  # channel -> snapshot seq (None: waiting)

    @property
    def subscriptions(self) -> int:
        return len(self.public) + len(self.waiting) + len(self.private)


@dataclass
class _Depth:
    symbol: str
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    u: int | None = None  # None: no book yet
    epoch: int | None = None  # the quotation process the book comes from
    syncing: bool = False  # a snapshot asked for; diffs are held meanwhile
    held: list[tuple[dict, int]] = field(default_factory=list)  # (diff, epoch)


@dataclass
class _Trades:
    last_id: int | None = None
    filling: bool = False
    held: list[dict] = field(default_factory=list)


@dataclass
class _Account:
    last_seen: int | None = None  # None: the first snapshot has not come back yet
    held: list[ReportMessage] = field(default_factory=list)
    channels: dict[str, set[int]] = field(default_factory=lambda: {c: set() for c in PRIVATE_CHANNELS})

    def empty(self) -> bool:
        return not any(self.channels.values())


class PusherCore:
    def __init__(self, config: ExchangeConfig, credentials: Credentials, clock_ms: Callable[[], int]):
        self.config = config
        self.credentials = credentials
        self.clock_ms = clock_ms
        self.symbols = {symbol.name: symbol for symbol in config.symbols}
        self.views = AccountViews(config)
        self.conns: dict[int, _Conn] = {}
        self.channels: dict[str, set[int]] = {}  # public channel -> connections receiving it
        self.waiting: dict[str, set[int]] = {}  # public channel -> connections waiting for a snapshot or backfill
        self.depth: dict[str, _Depth] = {}
        self.trades: dict[str, _Trades] = {}
        self.latest: dict[str, str] = {}  # kline and ticker channels: the last message's text
        self.latest_encoded: dict[str, bytes] = {}  # ... or its body as quotation encoded it (nobody watching)
        self.streams: dict[str, tuple[int, int]] = {}  # channel -> (epoch, n) of quotation's last message
        self.lost_publications = 0  # breaks in quotation's counters (repaired per channel as documented)
        self._turn: dict[str, Any] | None = None  # channel -> what the open turn has for it (see begin_turn)
        self.accounts: dict[int, _Account] = {}
        self._asked: dict[int, Callable[[dict], list[Action]]] = {}
        self._next_id = 0
        self._seen_auth: dict[tuple[str, int], int] = {}  # (key, ts) -> when it may be forgotten (ms)

    # --- connections --------------------------------------------------------------------------------------

    def connect(self, conn: int) -> None:
        self.conns[conn] = _Conn(conn)

    def disconnect(self, conn: int) -> list[Action]:
        state = self.conns.pop(conn, None)
        if state is None:
            return []
        for channel in state.public:
            self.channels.get(channel, set()).discard(conn)
        for channel in state.waiting:
            self.waiting.get(channel, set()).discard(conn)
        actions: list[Action] = []
        for channel in list(state.private):
            actions += self._leave_private(state, channel)
        return actions

    def on_client_text(self, conn: int, text: Any) -> list[Action]:
        """One message from a client."""
        state = self.conns.get(conn)
        if state is None:
            return []
        request_id = None
        try:
            if not isinstance(text, str):
                raise _Refused("requests are JSON text frames")
            if len(text) > MAX_TEXT:
                raise _Refused(f"a request is at most {MAX_TEXT} characters")
            try:
                request = json.loads(text)
            except ValueError:
                raise _Refused("not JSON") from None
            if not isinstance(request, dict):
                raise _Refused("a request is a JSON object")
            request_id = request.get("id")
            if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (int, str))):
                request_id = None
                raise _Refused("id must be a number or a string")
            op = request.get("op")
            handler = _OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise _Refused(f"unknown op {op!r}: subscribe, unsubscribe, auth or ping")
            return handler(self, state, request, request_id)
        except _Refused as refusal:
            return [Send(conn, dumps(self._reply(request_id, "error", reason=str(refusal))))]

    @staticmethod
    def _reply(request_id: Any, event: str, **fields: Any) -> dict:
        out: dict[str, Any] = {"event": event, **fields}
        if request_id is not None:
            out["id"] = request_id
        return out

    def _ping(self, state: _Conn, request: dict, request_id: Any) -> list[Action]:
        return [Send(state.id, dumps(self._reply(request_id, "pong", time=self.clock_ms())))]

    def _auth(self, state: _Conn, request: dict, request_id: Any) -> list[Action]:
        if state.account is not None:
            raise _Refused("already authenticated")
        key, timestamp, signature = request.get("key"), request.get("ts"), request.get("sig")
        if not isinstance(key, str) or not isinstance(signature, str) or isinstance(timestamp, bool) \
                or not isinstance(timestamp, int):
            raise _Refused("auth needs key (string), ts (milliseconds, integer) and sig (hex string)")
        now = self.clock_ms()
        window = self.config.pusher.auth_window_ms
        if abs(now - timestamp) > window:
            raise _Refused(f"auth refused: ts is more than {window} ms from the server's clock")
        credential = self.credentials.lookup(key)
        if credential is None or not hmac.compare_digest(
                sign_stream_auth(credential.secret_bytes, timestamp, key), signature):
            raise _Refused("auth refused: unknown key or bad signature")
        if credential.is_admin:
            raise _Refused("auth refused: an admin key has no account to follow")
        self._seen_auth = {k: expiry for k, expiry in self._seen_auth.items() if expiry > now}
        if (key, timestamp) in self._seen_auth:
            raise _Refused("auth refused: this signed request was already used")
        self._seen_auth[(key, timestamp)] = timestamp + window
        state.account = credential.account
        return [Send(state.id, dumps(self._reply(request_id, "authenticated", account=credential.account)))]

    def _subscribe(self, state: _Conn, request: dict, request_id: Any) -> list[Action]:
        channel = request.get("channel")
        if not isinstance(channel, str):
            raise _Refused("subscribe needs a channel")
        if channel in state.public or channel in state.waiting or channel in state.private:
            return [Send(state.id, dumps(self._reply(request_id, "subscribed", channel=channel)))]
        if state.subscriptions >= self.config.pusher.max_subscriptions:
            raise _Refused(f"at most {self.config.pusher.max_subscriptions} subscriptions per connection")
        from_id = request.get("from_id")
        if from_id is not None and (isinstance(from_id, bool) or not isinstance(from_id, int) or from_id < 0):
            raise _Refused("from_id must be a non-negative integer")
        if channel in PRIVATE_CHANNELS:
            if state.account is None:
                raise _Refused(f"{channel} is private: authenticate first (op auth)")
            return [Send(state.id, dumps(self._reply(request_id, "subscribed", channel=channel))),
                    *self._join_private(state, channel)]
        try:
            kind, symbol, _ = parse_channel(channel)
        except MarketError as exc:
            raise _Refused(str(exc)) from None
        if symbol not in self.symbols:
            raise _Refused(f"unknown symbol {symbol!r}")
        if from_id is not None and kind != TRADES:
            raise _Refused("from_id is for trades channels only")
        actions: list[Action] = [Send(state.id, dumps(self._reply(request_id, "subscribed", channel=channel)))]
        if kind == DEPTH:
            actions += self._join_depth(state, channel, symbol)
        elif kind == TRADES and from_id is not None:
            actions += self._join_trades_from(state, channel, symbol, from_id)
        else:
            self._join(state, channel)
            latest = self._latest(channel)
            if latest is not None:
                actions.append(Send(state.id, latest))
        return actions

    def _latest(self, channel: str) -> str | None:
        """The text of a kline or ticker channel's last message (decoded now if nobody watched it)."""
        encoded = self.latest_encoded.pop(channel, None)
        if encoded is not None:
            try:
                body = decode_publication_body(encoded)
            except MarketError as exc:
                log.error("%s: dropped a malformed message: %s", channel, exc)
                return self.latest.get(channel)
            self.latest[channel] = dumps({"channel": channel, "type": "update", "data": body})
        return self.latest.get(channel)

    def _unsubscribe(self, state: _Conn, request: dict, request_id: Any) -> list[Action]:
        channel = request.get("channel")
        if not isinstance(channel, str):
            raise _Refused("unsubscribe needs a channel")
        actions: list[Action] = []
        if channel in state.private:
            actions += self._leave_private(state, channel)
        elif channel in state.public or channel in state.waiting:
            state.public.discard(channel)
            state.waiting.pop(channel, None)
            self.channels.get(channel, set()).discard(state.id)
            self.waiting.get(channel, set()).discard(state.id)
        else:
            raise _Refused(f"not subscribed to {channel!r}")
        return [Send(state.id, dumps(self._reply(request_id, "unsubscribed", channel=channel))), *actions]

    def _join(self, state: _Conn, channel: str) -> None:
        state.waiting.pop(channel, None)
        self.waiting.get(channel, set()).discard(state.id)
        state.public.add(channel)
        self.channels.setdefault(channel, set()).add(state.id)

    def _wait(self, state: _Conn, channel: str) -> None:
        state.waiting[channel] = []
        self.waiting.setdefault(channel, set()).add(state.id)

    def _ask_quotation(self, query: dict, then: Callable[[dict], list[Action]]) -> AskQuotation:
        self._next_id += 1
        self._asked[self._next_id] = then
        return AskQuotation({"id": self._next_id, **query})

    def _ask_engine(self, query: dict, then: Callable[[dict], list[Action]]) -> AskEngine:
        self._next_id += 1
        self._asked[self._next_id] = then
        return AskEngine({"id": self._next_id, **query})

    def on_quotation_reply(self, reply: dict) -> list[Action]:
        then = self._asked.pop(reply.get("id"), None)
        if then is None:
            return []
        if not reply.get("ok"):
            log.error("quotation refused a query: %s", reply.get("error"))
            return []
        return then(reply)

    on_engine_reply = on_quotation_reply

    # --- quotation's channels ------------------------------------------------------------------------------

    def begin_turn(self) -> None:
        """Publications until ``end_turn`` are coalesced: one message per channel (per bar, for K-lines)
        with everything they carried. The pusher's loop takes whatever quotation published while it was
        busy as one turn, so the more it falls behind, the fewer messages it sends: the cost of a turn
        stays bounded and a subscriber's latency with it."""
        self._turn = {}

    def end_turn(self) -> list[Action]:
        turn, self._turn = self._turn, None
        actions: list[Action] = []
        for channel, pending in (turn or {}).items():
            members = self.channels.get(channel)
            if not members:
                continue
            kind = channel.split(".", 1)[0]
            if kind == TRADES:
                texts = [dumps({"channel": channel, "type": "update", "data": {"trades": pending}})]
            elif kind == DEPTH:
                texts = [dumps({"channel": channel, "type": "update", "data": {
                    "U": pending["U"], "u": pending["u"], "bids": [list(level) for level in pending["bids"].items()],
                    "asks": [list(level) for level in pending["asks"].items()]}})]
            else:
                texts = list(pending.values())
            actions.extend(Broadcast(members, text) for text in texts)
        return actions

    def _emit_trades(self, channel: str, trades: list[dict]) -> list[Action]:
        if self._turn is not None:
            self._turn.setdefault(channel, []).extend(trades)
            return []
        members = self.channels.get(channel)
        if not members:
            return []
        return [Broadcast(members, dumps({"channel": channel, "type": "update", "data": {"trades": trades}}))]

    def _emit_diff(self, channel: str, diff: dict) -> list[Action]:
        if self._turn is not None:
            pending = self._turn.get(channel)
            if pending is None:
                pending = self._turn[channel] = {"U": diff["U"], "u": diff["u"], "bids": {}, "asks": {}}
            pending["u"] = diff["u"]
            for side in ("bids", "asks"):
                levels = pending[side]
                for price, qty in diff[side]:
                    levels[price] = qty
            return []
        members = self.channels.get(channel)
        if not members:
            return []
        return [Broadcast(members, dumps({"channel": channel, "type": "update", "data": diff}))]

    def _emit_state(self, channel: str, body: dict) -> list[Action]:
        """A K-line or ticker message: the whole state, so within a turn only the last one per bar counts."""
        text = dumps({"channel": channel, "type": "update", "data": body})
        self.latest[channel] = text
        self.latest_encoded.pop(channel, None)
        if self._turn is not None:
            self._turn.setdefault(channel, {})[body.get("open_time")] = text
            return []
        members = self.channels.get(channel)
        return [Broadcast(members, text)] if members else []

    def on_publication(self, channel: str, n: int, epoch: int, body: dict | bytes) -> list[Action]:
        """One message of quotation's; ``body`` decoded, or as quotation encoded it (decoded here when
        it is needed: common.market.decode_publications)."""
        try:
            kind, symbol, _ = parse_channel(channel)
        except MarketError:
            return []
        if symbol not in self.symbols:
            return []
        last = self.streams.get(channel)
        self.streams[channel] = (epoch, n)
        if last is not None and last[0] == epoch and n != last[1] + 1:
            self.lost_publications += 1
            log.warning("%s: message %d after %d: publications were lost on the way", channel, n, last[1])
        if isinstance(body, bytes):
            if kind in (KLINE, TICKER) and not self.channels.get(channel):
                self.latest_encoded[channel] = body  # decoded if someone subscribes (see _latest)
                return []
            try:
                body = decode_publication_body(body)
            except MarketError as exc:
                log.error("%s: dropped a malformed message: %s", channel, exc)
                return []
        if kind == DEPTH:
            return self._depth_diff(symbol, body, epoch)
        if kind == TRADES:
            return self._trades_arrived(symbol, body.get("trades", []))
        return self._emit_state(channel, body)

    # depth

    def _book(self, symbol: str) -> _Depth:
        book = self.depth.get(symbol)
        if book is None:
            book = self.depth[symbol] = _Depth(symbol)
        return book

    def _join_depth(self, state: _Conn, channel: str, symbol: str) -> list[Action]:
        book = self._book(symbol)
        if book.u is not None and not book.syncing:
            self._join(state, channel)
            return [Send(state.id, self._depth_snapshot_text(book))]
        self._wait(state, channel)
        return self._depth_sync(book)

    def _depth_sync(self, book: _Depth) -> list[Action]:
        if book.syncing:
            return []
        book.syncing = True
        return [self._ask_quotation({"q": "depth", "symbol": book.symbol},
                                    lambda reply: self._depth_snapshot_arrived(book, reply))]

    def _depth_snapshot_arrived(self, book: _Depth, reply: dict) -> list[Action]:
        channel = f"{DEPTH}.{book.symbol}"
        bids = {price: qty for price, qty in reply["bids"]}
        asks = {price: qty for price, qty in reply["asks"]}
        u = int(reply["lastUpdateId"])
        book.epoch = reply.get("epoch")
        actions: list[Action] = []
        members = self.channels.get(channel)
        reset = False
        if book.u is not None and members:
            changed_bids, changed_asks = _difference(book.bids, bids), _difference(book.asks, asks)
            if u > book.u:  # the subscribers' books only need what differs, as one ordinary diff
                actions.append(Broadcast(members, dumps({"channel": channel, "type": "update", "data": {
                    "U": book.u + 1, "u": u, "bids": changed_bids, "asks": changed_asks}})))
            elif u < book.u or changed_bids or changed_asks:
                reset = True  # quotation went back (it lost its store): subscribers start again
        book.bids, book.asks, book.u = bids, asks, u
        book.syncing = False
        if reset:
            actions.append(Broadcast(members, self._depth_snapshot_text(book)))
        held, book.held = book.held, []
        for body, epoch in held:
            actions += self._depth_diff(book.symbol, body, epoch)
        for conn in list(self.waiting.get(channel, ())):
            state = self.conns[conn]
            self._join(state, channel)
            actions.append(Send(state.id, self._depth_snapshot_text(book)))
        return actions

    def _depth_snapshot_text(self, book: _Depth) -> str:
        bids = sorted(book.bids.items(), key=lambda level: Decimal(level[0]), reverse=True)
        asks = sorted(book.asks.items(), key=lambda level: Decimal(level[0]))
        return dumps({"channel": f"{DEPTH}.{book.symbol}", "type": "snapshot", "data": {
            "lastUpdateId": book.u, "bids": [list(level) for level in bids], "asks": [list(level) for level in asks]}})

    def _depth_diff(self, symbol: str, body: dict, epoch: int) -> list[Action]:
        """One diff of quotation process ``epoch``."""
        book = self._book(symbol)
        if book.syncing:
            book.held.append((body, epoch))
            return []
        if book.u is None:  # nobody asked for this book yet: start keeping it now
            book.held.append((body, epoch))
            return self._depth_sync(book)
        first, last = int(body["U"]), int(body["u"])
        restarted = book.epoch is not None and epoch != book.epoch  # its update ids may have gone back
        if restarted or first > book.u + 1:
            book.held.append((body, epoch))
            log.warning("depth %s: diff %d..%d after %d%s; resynchronising", symbol, first, last, book.u,
                        " from a restarted quotation" if restarted else "")
            return self._depth_sync(book)
        if last <= book.u:
            return []
        for side, levels in ((book.bids, body["bids"]), (book.asks, body["asks"])):
            for price, qty in levels:
                if qty == "0" or Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        if first != book.u + 1:  # it overlaps what the book has: its levels are absolute, so say it follows on
            body = {**body, "U": book.u + 1}
        book.u = last
        book.epoch = epoch
        return self._emit_diff(f"{DEPTH}.{symbol}", body)

    # trades

    def _feed(self, symbol: str) -> _Trades:
        feed = self.trades.get(symbol)
        if feed is None:
            feed = self.trades[symbol] = _Trades()
        return feed

    def _trades_arrived(self, symbol: str, trades: list[dict]) -> list[Action]:
        feed = self._feed(symbol)
        if feed.filling:
            feed.held.extend(trades)
            return []
        if feed.last_id is not None and trades and int(trades[0]["id"]) > feed.last_id + 1:
            log.warning("trades %s: id %d after %d; filling the gap from quotation", symbol, trades[0]["id"],
                        feed.last_id)
            feed.filling = True
            feed.held = list(trades)
            return [self._ask_trades(symbol, feed.last_id)]
        return self._send_trades(symbol, trades)

    def _ask_trades(self, symbol: str, after_id: int) -> AskQuotation:
        return self._ask_quotation({"q": "trades", "symbol": symbol, "after_id": after_id, "limit": TRADES_PAGE},
                                   lambda reply: self._gap_trades_arrived(symbol, reply))

    def _gap_trades_arrived(self, symbol: str, reply: dict) -> list[Action]:
        feed = self._feed(symbol)
        actions = self._send_trades(symbol, reply["trades"])
        if reply["trades"] and int(reply["trades"][-1]["id"]) < int(reply.get("last_id", 0)) \
                and (not feed.held or int(reply["trades"][-1]["id"]) + 1 < int(feed.held[0]["id"])):
            return actions + [self._ask_trades(symbol, int(reply["trades"][-1]["id"]))]
        feed.filling = False
        held, feed.held = feed.held, []
        return actions + self._trades_arrived(symbol, held) if held else actions

    def _send_trades(self, symbol: str, trades: list[dict]) -> list[Action]:
        feed = self._feed(symbol)
        fresh = [t for t in trades if feed.last_id is None or int(t["id"]) > feed.last_id]
        if not fresh:
            return []
        feed.last_id = int(fresh[-1]["id"])
        channel = f"{TRADES}.{symbol}"
        for conn in self.waiting.get(channel, ()):  # connections waiting for their backfill: for later
            self.conns[conn].waiting[channel].extend(fresh)
        return self._emit_trades(channel, fresh)

    def _join_trades_from(self, state: _Conn, channel: str, symbol: str, from_id: int) -> list[Action]:
        self._wait(state, channel)
        return [self._ask_quotation({"q": "trades", "symbol": symbol, "after_id": from_id, "limit": TRADES_PAGE},
                                    lambda reply: self._backfill_arrived(state.id, channel, symbol, reply))]

    def _backfill_arrived(self, conn: int, channel: str, symbol: str, reply: dict) -> list[Action]:
        state = self.conns.get(conn)
        if state is None or channel not in state.waiting:
            return []
        trades = reply["trades"]
        actions: list[Action] = []
        if trades:
            actions.append(Send(conn, dumps({"channel": channel, "type": "update", "data": {"trades": trades}})))
            last = int(trades[-1]["id"])
            if last < int(reply.get("last_id", 0)) and len(trades) >= TRADES_PAGE:
                return actions + [self._ask_quotation(
                    {"q": "trades", "symbol": symbol, "after_id": last, "limit": TRADES_PAGE},
                    lambda more: self._backfill_arrived(conn, channel, symbol, more))]
        else:
            last = -1
        held = [t for t in state.waiting[channel] if int(t["id"]) > last]
        if held:
            actions.append(Send(conn, dumps({"channel": channel, "type": "update", "data": {"trades": held}})))
        self._join(state, channel)
        return actions

    # --- private channels -------------------------------------------------------------------------------------

    def _join_private(self, state: _Conn, channel: str) -> list[Action]:
        account = state.account
        assert account is not None
        feed = self.accounts.get(account)
        actions: list[Action] = []
        if feed is None:
            feed = self.accounts[account] = _Account()
            actions.append(Listen(account, True))
        feed.channels[channel].add(state.id)
        state.private[channel] = None
        actions.append(self._snapshot_query(account, state.id, channel))
        return actions

    def _snapshot_query(self, account: int, conn: int, channel: str) -> AskEngine:
        kind = {ORDERS: "open_orders", BALANCES: "balances", FILLS: "head"}[channel]
        query = {"q": kind} if kind == "head" else {"q": kind, "account": account}
        return self._ask_engine(query, lambda reply: self._snapshot_arrived(account, conn, channel, reply))

    def _snapshot_arrived(self, account: int, conn: int, channel: str, reply: dict) -> list[Action]:
        state = self.conns.get(conn)
        feed = self.accounts.get(account)
        if state is None or feed is None or state.private.get(channel, 0) is not None:
            return []  # gone, or unsubscribed, or a newer snapshot is awaited
        seq = int(reply["seq"])
        state.private[channel] = seq
        actions: list[Action] = []
        if channel == ORDERS:
            actions.append(Send(conn, dumps({"channel": ORDERS, "type": "snapshot", "seq": seq,
                                             "data": self.views.orders(reply["orders"])})))
        elif channel == BALANCES:
            actions.append(Send(conn, dumps({"channel": BALANCES, "type": "snapshot", "seq": seq,
                                             "data": self.views.balances(reply["balances"])})))
        if feed.last_seen is None:
            feed.last_seen = seq
            held, feed.held = feed.held, []
            for message in held:
                actions += self.on_account(message)
        return actions

    def _leave_private(self, state: _Conn, channel: str) -> list[Action]:
        state.private.pop(channel, None)
        account = state.account
        feed = self.accounts.get(account) if account is not None else None
        if feed is None:
            return []
        feed.channels[channel].discard(state.id)
        if feed.empty():
            del self.accounts[account]
            return [Listen(account, False)]
        return []

    def on_account(self, message: ReportMessage) -> list[Action]:
        """One message of an account topic of the engine."""
        if message.topic[:1] != ACCOUNT_PREFIX or message.heartbeat:
            return []
        try:
            account = int(message.topic[1:].rstrip(b"."))
        except ValueError:
            return []
        feed = self.accounts.get(account)
        if feed is None:
            return []
        if feed.last_seen is None:
            feed.held.append(message)
            return []
        if message.seq <= feed.last_seen:
            return []
        if message.prev > feed.last_seen:
            return self._account_gap(account, feed, message)
        feed.last_seen = message.seq
        wanted = {channel: bool(conns) for channel, conns in feed.channels.items()}
        orders, fills, balances = self.views.updates(account, message.events, message.items or [],
                                                      orders=wanted[ORDERS], fills=wanted[FILLS],
                                                      balances=wanted[BALANCES])
        actions: list[Action] = []
        for channel, data in ((ORDERS, orders), (FILLS, fills), (BALANCES, balances)):
            if not data:
                continue
            text = dumps({"channel": channel, "type": "update", "seq": message.seq, "data": data})
            ready = {conn for conn in feed.channels[channel]
                     if (since := self.conns[conn].private.get(channel)) is not None and message.seq > since}
            if ready:
                actions.append(Broadcast(ready, text))
        return actions

    def _account_gap(self, account: int, feed: _Account, message: ReportMessage) -> list[Action]:
        log.warning("account %d: events between seq %d and %d missed; new snapshots", account, feed.last_seen,
                    message.prev)
        actions: list[Action] = []
        feed.last_seen = None
        feed.held = [message]
        for channel, conns in feed.channels.items():
            for conn in conns:
                state = self.conns[conn]
                state.private[channel] = None
                if channel == FILLS:
                    actions.append(Send(conn, dumps({"channel": FILLS, "type": "gap", "data": {
                        "after_seq": message.prev}})))
                actions.append(self._snapshot_query(account, conn, channel))
        return actions


def _difference(old: dict[str, str], new: dict[str, str]) -> list[list[str]]:
    """The levels to send so that ``old`` becomes ``new``: changed or added ones, and removed ones at "0"."""
    out = [[price, qty] for price, qty in new.items() if old.get(price) != qty]
    out += [[price, "0"] for price in old if price not in new]
    return out


_OPS: dict[str, Callable[[PusherCore, _Conn, dict, Any], list[Action]]] = {
    "subscribe": PusherCore._subscribe,
    "unsubscribe": PusherCore._unsubscribe,
    "auth": PusherCore._auth,
    "ping": PusherCore._ping,
}

