"""The engine process's pure core: the matching engine plus the state its reports and queries need.

    service = EngineService(config)
    messages = service.apply(batch)        # SequencedBatch -> [ReportMessage], in publication order
    messages = service.duplicate(notice)   # a resend of a command already sequenced: its outcome again
    reply = service.query({"q": "order", "account": 7, "clordid": "abc"})

No sockets, no clock: ``engine.main`` does the I/O. The state is a function of the sequenced commands:
replaying the journal rebuilds it exactly. The report messages are not: a topic's counter ``n`` starts at
1 with the process, and every message carries the process's ``epoch``, so a subscriber that sees a new
epoch knows the engine restarted; and the messages of a batch depend on where batches begin.

What the engine core does not know and this class keeps (docs/architecture.md); the order tracking and
the OrigClOrdID map are arrays updated by one kernel call per chunk of events (engine/ledger.py):

- the last ``CLORDIDS_PER_ORDER`` ClOrdIDs of every order, per account, so that a CANCEL or CANCEL_REPLACE
  may name its target by OrigClOrdID. The map is built from events only (ACCEPTED: the NEW's ClOrdID;
  REPLACED: the new one; the one it pushes out of the order's last ``CLORDIDS_PER_ORDER`` leaves at the
  next sweep), and
  a command naming an OrigClOrdID is resolved against the map as it is after every command before it
  (the batch is applied in two parts when an earlier command of the same batch could add that ClOrdID,
  and the map forgets ClOrdIDs only at fixed seqs, see SWEEP_INTERVAL), so the resolution never depends
  on where batches begin and end;
- per open order: the gateway and session it came from (the last that placed or replaced it), its
  current ClOrdID and its filled quote amount (``cum_quote``, for AvgPx); a bounded history of ended
  orders for status queries;
- the first event of each of the last ``OUTCOME_HISTORY`` commands' outcomes, by seq, to answer a resend
  (PossResend; engine/outcomes.py), and the (account, ClOrdID) of each NEW that never became an order
  (rejected, or an unfillable FOK), for status queries;
- a counter per topic and the last ``engine.recent_reports`` messages per gateway topic, for resends;
- per symbol and per account, the seq of the topic's last message (``prev`` in the next one, see
  common/reports.py; part of the state), and the last ``engine.recent_market_messages`` market messages
  per symbol, for quotation to catch up after a gap or a restart.

Market messages carry the batch's trades of a symbol and the book levels the batch changed, read from
the engine's ladder after the batch: every (price, side) where a limit order that can rest was accepted,
cancelled or replaced (the old price as well as the new), and the maker's level of every trade.

Routing of events to gateways (``items``, see common/reports.py): an event caused by a command goes to
the command's gateway and session with role ``"order"`` and the command's ClOrdID; a TRADE goes to the
taker order's session (role ``"taker"``) and to the maker order's session (role ``"maker"``), each with
that order's ClOrdID; a resting order cancelled by self-trade prevention (when a new or replaced order of
its account meets it) goes to the resting order's session. BALANCE events go to gateways only for
deposits and withdrawals; those of fills are on the account topics.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Any, NamedTuple

import numpy as np

from common.config import ExchangeConfig
from common.intake import Envelopes
from common.records import (
    BOOK_LEVEL_DTYPE,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    TimeInForce,
    owned_copy,
)
from common.reports import ReportMessage, account_topic, gateway_topic, market_topic
from common.stream import Duplicate, Refused, SequencedBatch
from engine.core import Engine
from engine.ledger import Ledger, StreamOutsideBatch, clordid_text, new_routes
from engine.ledger_kernels import (
    M_UNKNOWN,
    topic_seqs,
    CLORDID_NONE,
    CLORDID_OF_COMMAND,
    ROLE_MAKER,
    ROLE_ORDER,
    ROLE_TAKER,
    STATUS_CANCELED,
    STATUS_EXPIRED,
    STATUS_FILLED,
    STATUS_OPEN,
)
from engine.outcomes import OutcomeHistory

log = logging.getLogger("engine.service")

CLOSED_ORDER_HISTORY = 100_000  # ended orders kept for status queries (and OrigClOrdID resolution)
OUTCOME_HISTORY = 100_000  # commands whose first outcome event is kept (by seq), to answer resends
HISTORY_REPLY_DEFAULT = 100  # orders in a history reply unless the query asks for another number
HISTORY_REPLY_MAX = 500
RESEND_REPLY_MAX = 10_000  # report messages in one resend reply at most (the reply says where to go on)
# ClOrdIDs of orders gone from the history leave the OrigClOrdID map only before a command whose seq is a
# multiple of this: between two such points the map only grows, so whether a batch must pause before a
# cancel by OrigClOrdID can be seen from the batch's own commands. A sweep also frees the orders evicted
# since the one before: small and often, it stays well under a millisecond (every 65,536 seqs it held a
# batch up for 60-85 ms at 5,000 orders/s).
SWEEP_INTERVAL = 1024
# ClOrdIDs of one order that resolve an OrigClOrdID: its current one and those just before it. An order a
# market maker replaces all day would otherwise hold a map entry (and a snapshot row) per replace until
# it ends and leaves the history of ended orders. Part of the state (a replay must forget what the live
# engine forgot), so a constant, not configuration.
CLORDIDS_PER_ORDER = 16
# Rows of each structure of the order ledger at start: the ended orders kept and some 31,000 open ones fit
# before any of them grows. Growing one means a copy into new memory mid-traffic (53 ms for the order rows
# at 65,536, live at 10,000 orders/s); from this size on, only a book of more open orders grows it.
LEDGER_ROWS = 1 << 17
# Chunks of at least this many events are routed to topics with numpy over their columns (a replay's
# chunks of thousands), shorter ones by a Python loop over the events: numpy's calls cost more than the
# loop for the few events of a live batch. With reports built, batches of 8 / 64 / 256 / 1,024 commands of
# the exchange-core mix took 66 / 228 / 771 / 2,885 us by the loop, 164 / 298 / 733 / 2,222 us by columns.
COLUMN_ROUTING_EVENTS = 512

# Order status names of the "order" query.
NEW_STATUS = "new"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELED = "canceled"
REJECTED_STATUS = "rejected"
EXPIRED = "expired"

_ACCEPTED = int(EventKind.ACCEPTED)
_REJECTED = int(EventKind.REJECTED)
_TRADE = int(EventKind.TRADE)
_CANCELLED = int(EventKind.CANCELLED)
_REPLACED = int(EventKind.REPLACED)

_NEW = int(CommandKind.NEW)
_CANCEL = int(CommandKind.CANCEL)
_CANCEL_REPLACE = int(CommandKind.CANCEL_REPLACE)
_LIMIT = int(OrderType.LIMIT)
_IMMEDIATE = frozenset({int(TimeInForce.IOC), int(TimeInForce.FOK)})
_BOOK_EVENTS = frozenset({_ACCEPTED, _CANCELLED, _REPLACED})


_BOOK_EVENT_LIST = sorted(_BOOK_EVENTS)
_IMMEDIATE_LIST = sorted(_IMMEDIATE)
_OPPOSITE_SIDE = {1: 2, 2: 1}  # Side.BUY <-> Side.SELL: a trade's maker is on the other side of its taker
# The same as an array to index with a column of sides (0 where no side is).
_MAKER_SIDE = np.array([_OPPOSITE_SIDE.get(side, 0) for side in range(max(_OPPOSITE_SIDE) + 1)], dtype=np.int64)
_EVENT_ROW = np.dtype((np.void, EVENT_DTYPE.itemsize))  # an event as one opaque block of bytes
# What a reject of a command the journal could not take repeats of the command (as the engine's rejects do).
_REFUSED_ECHO = ("account", "symbol", "side", "order_type", "tif", "price", "qty", "order_id", "client_order_id",
                 "amount", "asset")


class StreamInconsistency(ValueError):
    """A batch that does not continue the applied sequence, or whose records contradict its header."""


# The order rows of snapshots from before the ledger (engine/ledger.py), and of ``Ledger``-free views.
_ORDER_FIELDS = ("order_id", "account", "symbol", "side", "order_type", "tif", "price", "qty", "filled", "gateway",
                 "session", "clordid", "clordids", "cum_quote", "ts", "status", "fills")
_STATUS_CODES = {NEW_STATUS: STATUS_OPEN, PARTIALLY_FILLED: STATUS_OPEN, FILLED: STATUS_FILLED,
                 CANCELED: STATUS_CANCELED, EXPIRED: STATUS_EXPIRED}
_STATUS_NAMES = {STATUS_OPEN: NEW_STATUS, STATUS_FILLED: FILLED, STATUS_CANCELED: CANCELED, STATUS_EXPIRED: EXPIRED}
_ROLE_NAMES = {ROLE_ORDER: "order", ROLE_TAKER: "taker", ROLE_MAKER: "maker"}
_ROLE_NAME_ARRAY = np.array([_ROLE_NAMES.get(code, "") for code in range(max(_ROLE_NAMES) + 1)], dtype=object)


def _legacy_order(row: list) -> dict[str, Any]:
    if len(row) == len(_ORDER_FIELDS) - 1:  # a snapshot from before orders kept their fills
        row = [*row, []]
    return dict(zip(_ORDER_FIELDS, row, strict=True))


class _Output:
    """The report messages of one ``apply`` being gathered: the batch's events (the bytes of the engine's
    chunks: copying a record array through its bytes costs a tenth of ``ndarray.copy``), and per gateway
    the positions of its events in them with one item each."""

    __slots__ = ("chunks", "count", "gateway_positions", "gateway_items", "market_positions", "account_positions",
                 "touched", "market_seq", "account_seq", "own_clordid", "maker_clordid")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.count = 0  # events in ``chunks``
        self.gateway_positions: dict[int, list[int]] = {}
        self.gateway_items: dict[int, list[dict]] = {}
        self.market_positions: dict[int, list[int]] = {}  # symbol -> its trades
        self.account_positions: dict[int, list[int]] = {}  # account -> its events, and trades as the maker
        self.touched: dict[int, set[tuple[int, int]]] = {}  # symbol -> (price, side) of levels changed
        self.market_seq: dict[int, int] = {}  # symbol -> the last seq that traded or changed its book
        self.account_seq: dict[int, int] = {}  # account -> the last seq of an event of the account
        self.own_clordid: dict[int, str] = {}  # position -> ClOrdID of the event's order (a trade's taker)
        self.maker_clordid: dict[int, str] = {}  # position -> ClOrdID of a trade's maker order

    def events(self) -> tuple[np.ndarray, bytes]:
        """The batch's events, and their bytes."""
        raw = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        return np.frombuffer(raw, dtype=EVENT_DTYPE), raw


class EngineService:
    """The engine plus the process-level state of reports, resends and queries (module docstring)."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.engine = Engine(config)
        self._last_seq = 0
        self._ledger = Ledger(LEDGER_ROWS)  # order tracking and the OrigClOrdID map
        self._routes = new_routes(config.engine.event_buffer)  # where each event of a chunk goes, reused
        self._outcomes = OutcomeHistory(OUTCOME_HISTORY)
        # (account, ClOrdID) -> seq of a NEW that never became an order, oldest first (bounded like the outcomes)
        self._unplaced: OrderedDict[tuple[int, str], int] = OrderedDict()
        self._counters: dict[bytes, int] = {}
        self._recent: dict[int, deque] = {}  # gateway -> deque of (n, events bytes, items)
        # The seq of each topic's last message, 0 before any (state: ``prev`` in the next message)
        self._market_last = np.zeros(len(config.symbols), dtype=np.int64)  # by symbol
        self._account_last = np.zeros(config.capacity.max_accounts, dtype=np.int64)  # by account
        self._market_recent: dict[int, deque] = {}  # symbol -> deque of (seq, prev, trades bytes, levels bytes)
        # Accounts whose topic someone subscribes to (engine/main.py follows the subscriptions): only
        # theirs are built into messages. None: every account's.
        self.account_listeners: set[int] | None = None
        # The process's draw (engine/main.py): every report message carries it, and the topic counters
        # start at 1 with each (common/reports.py). Not part of the state.
        self.epoch = 0
        self._max_accounts = config.capacity.max_accounts
        self._n_symbols = len(config.symbols)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last command applied (0 before any)."""
        return self._last_seq

    def warm_up(self) -> None:
        """Compile the engine's and the ledger's kernels now (a command of no known kind: rejected, nothing
        changes)."""
        probe = np.zeros(1, dtype=COMMAND_DTYPE)
        for _ in self.engine.process(probe):
            pass
        self.engine.order(1)
        Ledger.warm_up()

    def pretouch(self) -> None:
        """Map every page of the engine's and the ledger's arrays now (config ``engine.pretouch``)."""
        self.engine.pretouch()
        self._ledger.pretouch()

    # --- applying batches ---------------------------------------------------------------------------

    def apply(self, batch: SequencedBatch, *, report: bool = True, resend: bool = False) -> list[ReportMessage]:
        """Apply the next batch; return its report messages (gateways, then markets, then accounts).

        ``report=False`` updates every state the same way but builds no message and leaves the topic
        counters alone. ``resend=True`` (recovery at start-up) marks every gateway item as a possible
        resend: the engine cannot know which of them it published before it stopped.
        """
        count = len(batch.records)
        if count == 0:
            return []
        if batch.first != self._last_seq + 1:
            raise StreamInconsistency(f"batch starts at seq {batch.first}, expected {self._last_seq + 1}")
        envelopes = Envelopes.of(batch.envelopes)
        if len(envelopes) != count:
            raise StreamInconsistency(f"batch of {count} records carries {len(envelopes)} envelopes")
        # A writable copy: order ids get resolved in it, and the kernels take writable arrays only.
        records = owned_copy(batch.records)
        seqs = records["seq"]
        if int(seqs[0]) != batch.first or int(seqs[-1]) != batch.last or (
            count > 1 and not bool(np.all(np.diff(seqs) == 1))
        ):
            raise StreamInconsistency(f"records of batch {batch.first}..{batch.last} are not numbered so")

        try:
            context = _BatchContext(batch.first, records, envelopes, report, resend)
        except (OverflowError, ValueError) as exc:  # a session id that is not a 64-bit unsigned integer
            raise StreamInconsistency(f"batch {batch.first}..{batch.last}: {exc}") from None
        output = _Output()
        start = 0
        for index, is_sweep in self._stops(records, envelopes):
            if is_sweep:
                if index > start:
                    self._run(records[start:index], context, output)
                    start = index
                self._sweep()
                continue
            account = int(records[index]["account"])
            key = (account, envelopes.origs[index])
            if context.added_between(key, start, index):
                # An order of this batch, not yet applied, may take that ClOrdID: apply up to here first.
                self._run(records[start:index], context, output)
                start = index
            resolved = self._ledger.resolve(*key)
            records[index]["order_id"] = resolved
        self._run(records[start:], context, output)
        self._last_seq = batch.last
        messages = self._messages(output) if report else []
        _set_last(self._market_last, output.market_seq)
        _set_last(self._account_last, output.account_seq)
        return messages

    @staticmethod
    def _stops(records: np.ndarray, envelopes: Envelopes) -> list[tuple[int, bool]]:
        """Positions where applying must pause: (position, True) before a sweep of the ClOrdID map,
        (position, False) at a cancel or replace that names its target by OrigClOrdID only."""
        origs = envelopes.origs
        stops = [(i, False) for i, orig in enumerate(origs) if orig] if any(origs) else []
        if stops:  # only cancels and replaces carry an OrigClOrdID; those that also name an order id don't stop
            kinds, order_ids = records["kind"], records["order_id"]
            stops = [(i, False) for i, _ in stops if kinds[i] in (_CANCEL, _CANCEL_REPLACE) and order_ids[i] == 0]
        first = int(records[0]["seq"])
        sweep = -(-first // SWEEP_INTERVAL) * SWEEP_INTERVAL  # the first multiple at or after `first`
        if sweep < first + len(records):
            stops.extend((seq - first, True) for seq in range(sweep, first + len(records), SWEEP_INTERVAL))
            stops.sort(key=lambda stop: (stop[0], not stop[1]))
        return stops

    def _run(self, commands: np.ndarray, context: "_BatchContext", output: _Output) -> None:
        """Apply a part of the batch (consecutive commands, their OrigClOrdIDs resolved)."""
        at, count = int(commands["seq"][0]) - context.first, len(commands)
        part = _Part(context.first + at, commands, context.session_column[at : at + count], context.text,
                     context.offsets[at : at + count + 1])
        for chunk in self.engine.process(commands):
            self._take_chunk(chunk, context, part, output)
        self._ledger.end_command(CLOSED_ORDER_HISTORY)

    def _take_chunk(self, chunk: np.ndarray, ctx: "_BatchContext", part: "_Part", output: _Output) -> None:
        """Update the order tracking from one chunk of events and route its events to topics."""
        if not ctx.report:  # the state alone: the topics' last seqs
            topic_seqs(chunk, self._market_last, self._account_last)
        self._remember_outcomes(chunk, ctx)
        if len(self._routes) < len(chunk):
            self._routes = new_routes(len(chunk))
        routes = self._routes[: len(chunk)]
        try:
            self._ledger.track(chunk, *part, routes, CLOSED_ORDER_HISTORY, CLORDIDS_PER_ORDER)
        except StreamOutsideBatch as exc:
            raise StreamInconsistency(str(exc)) from None
        if self._ledger.meta[M_UNKNOWN]:  # pragma: no cover - the tracking follows every event
            self._log_unknown(chunk, routes)
        ctx.read_seq = int(chunk["seq"][-1])
        if ctx.report:
            if len(chunk) >= COLUMN_ROUTING_EVENTS:
                self._route_downstream_columns(chunk, routes["old_price"], output)
                self._gather_items_columns(chunk, routes, ctx, output)
            else:
                # The columns the loops read, each as a list once: indexing a list is what they do per event
                # (a field of a numpy record costs about as much as a whole list element's work).
                self._route_downstream(chunk["kind"].tolist(), chunk["seq"].tolist(), chunk["account"].tolist(),
                                       chunk["symbol"].tolist(), chunk["side"].tolist(), chunk["price"].tolist(),
                                       routes["old_price"].tolist(), chunk["order_type"].tolist(),
                                       chunk["tif"].tolist(), chunk["maker_account"].tolist(), output)
                self._gather_items(chunk, routes, ctx, output)
            output.chunks.append(chunk.tobytes())
            output.count += len(chunk)

    def _log_unknown(self, chunk: np.ndarray, routes: np.ndarray) -> None:  # pragma: no cover
        """Trades of orders the ledger does not track (it follows every event: never seen)."""
        self._ledger.meta[M_UNKNOWN] = 0
        for position in np.flatnonzero(routes["unknown"]).tolist():
            event = chunk[position]
            if int(routes[position]["unknown"]) & 1:
                log.warning("seq %d: trade of order %d, which the service does not know", int(event["seq"]),
                            int(event["order_id"]))
            if int(routes[position]["unknown"]) & 2:
                log.warning("seq %d: trade of maker order %d, which the service does not know", int(event["seq"]),
                            int(event["maker_order_id"]))

    def _gather_items(self, chunk: np.ndarray, routes: np.ndarray, ctx: "_BatchContext", output: _Output) -> None:
        """The gateway items of a chunk's events, from where the ledger routed each."""
        offset = output.count
        gateway_positions, gateway_items = output.gateway_positions, output.gateway_items
        own_clordid, maker_clordid = output.own_clordid, output.maker_clordid
        listeners = self.account_listeners
        clordids, first, resend = ctx.clordids, ctx.first, ctx.resend
        seqs = chunk["seq"].tolist()
        # Each route a tuple in ROUTE_DTYPE's order: one tolist for the chunk instead of one per field.
        for i, (session, clordid_ref, cum_quote, maker_session, maker_clordid_ref, maker_cum_quote, _, gateway, account,
                maker_gateway, maker_account, role, maker_role, _, _) in enumerate(routes.tolist()):
            if not role and not maker_role:
                continue
            position = offset + i
            if role:
                clordid = self._clordid_of(clordid_ref, clordids, seqs[i] - first)
                if listeners is None or account in listeners:  # for the account topic's items
                    own_clordid[position] = clordid
                gateway_positions.setdefault(gateway, []).append(position)
                gateway_items.setdefault(gateway, []).append({
                    "session": session, "account": account, "role": _ROLE_NAMES[role], "clordid": clordid,
                    "cum_quote": cum_quote, "resend": resend})
            if maker_role:
                clordid = self._clordid_of(maker_clordid_ref, clordids, seqs[i] - first)
                if listeners is None or maker_account in listeners:
                    maker_clordid[position] = clordid
                gateway_positions.setdefault(maker_gateway, []).append(position)
                gateway_items.setdefault(maker_gateway, []).append({
                    "session": maker_session, "account": maker_account, "role": _ROLE_NAMES[maker_role],
                    "clordid": clordid, "cum_quote": maker_cum_quote, "resend": resend})

    def _gather_items_columns(self, chunk: np.ndarray, routes: np.ndarray, ctx: "_BatchContext",
                              output: _Output) -> None:
        """``_gather_items`` with numpy over the columns, for a long chunk (a replay's): the same items in
        the same order (per gateway by position, an event's own item before its maker's)."""
        own = np.flatnonzero(routes["role"])
        made = np.flatnonzero(routes["maker_role"])
        if not len(own) and not len(made):
            return

        def items_column(name: str) -> np.ndarray:
            """A route field of the items, the own ones' then the makers' (``maker_<name>``)."""
            return np.concatenate((routes[name][own], routes[f"maker_{name}"][made]))

        positions = np.concatenate((own, made))
        is_maker = np.concatenate((np.zeros(len(own), np.int8), np.ones(len(made), np.int8)))
        gateways = items_column("gateway")
        order = np.lexsort((is_maker, positions, gateways))
        sessions, accounts, cum_quotes = (items_column(name)[order].tolist()
                                          for name in ("session", "account", "cum_quote"))
        roles = _ROLE_NAME_ARRAY[items_column("role")[order]].tolist()
        refs = items_column("clordid")[order]
        positions = positions[order]
        # Each item's ClOrdID: its command's (by its place in the batch), none, or a ledger pool entry's.
        clordid_column = np.full(len(refs), "", dtype=object)
        from_command = np.flatnonzero(refs == CLORDID_OF_COMMAND)
        batch_clordids = ctx.clordids
        clordid_column[from_command] = [batch_clordids[at] for at in
                                        (chunk["seq"][positions[from_command]] - ctx.first).tolist()]
        pooled = np.flatnonzero((refs != CLORDID_OF_COMMAND) & (refs != CLORDID_NONE))
        clordid_column[pooled] = [self._ledger.clordid(ref) for ref in refs[pooled].tolist()]
        clordids = clordid_column.tolist()
        positions = (positions + output.count).tolist()
        gateways = gateways[order]
        listeners, resend = self.account_listeners, ctx.resend
        if listeners is None or listeners:  # for the account topics' items
            mine = is_maker[order].tolist()
            for position, account, clordid, by_maker in zip(positions, accounts, clordids, mine):
                if listeners is None or account in listeners:
                    (output.maker_clordid if by_maker else output.own_clordid)[position] = clordid
        items = [{"session": session, "account": account, "role": role, "clordid": clordid,
                  "cum_quote": cum_quote, "resend": resend}
                 for session, account, role, clordid, cum_quote in zip(sessions, accounts, roles, clordids,
                                                                        cum_quotes)]
        bounds = [0, *(np.flatnonzero(np.diff(gateways)) + 1).tolist(), len(items)]
        for start, stop in zip(bounds, bounds[1:]):
            gateway = int(gateways[start])
            output.gateway_positions.setdefault(gateway, []).extend(positions[start:stop])
            output.gateway_items.setdefault(gateway, []).extend(items[start:stop])

    def _clordid_of(self, ref: int, clordids: list[str], at: int) -> str:
        """A route's ClOrdID: the command's (at ``at`` in the batch), none, or a ledger pool entry's."""
        if ref == CLORDID_OF_COMMAND:
            return clordids[at]
        return "" if ref == CLORDID_NONE else self._ledger.clordid(ref)

    def _messages(self, output: _Output) -> list[ReportMessage]:
        if not output.chunks:
            return []
        events, raw = output.events()
        # A topic's events are picked as rows of opaque bytes: numpy copies each as one block, where
        # indexing the record array copies field by field (5 - 8 x slower) and joining slices of the bytes
        # costs a Python step per event.
        rows, count = np.frombuffer(raw, dtype=_EVENT_ROW), len(events)

        def pick(positions: list[int]) -> np.ndarray:
            if len(positions) == count:  # every event, in order
                return events
            return rows[np.array(positions, dtype=np.intp)].view(EVENT_DTYPE)

        messages = []
        for gateway in sorted(output.gateway_positions):
            messages.append(self._gateway_message(gateway, pick(output.gateway_positions[gateway]),
                                                  output.gateway_items[gateway]))
        for symbol in sorted(output.market_seq):
            messages.append(self._market_message(symbol, pick(output.market_positions.get(symbol, [])),
                                                 output.touched.get(symbol, ()), output.market_seq[symbol]))
        listened = sorted(output.account_positions)  # gathered for the listened accounts only
        if listened:
            event_accounts = events["account"].tolist()
            event_makers = events["maker_account"].tolist()
            own, maker = output.own_clordid, output.maker_clordid
        for account in listened:
            topic = account_topic(account)
            positions = output.account_positions[account]
            items = [[own.get(p, "") if event_accounts[p] == account else "",
                      maker.get(p, "") if event_makers[p] == account else ""] for p in positions]
            messages.append(ReportMessage(topic, self._next_n(topic), pick(positions), items, self.epoch,
                                          seq=output.account_seq[account],
                                          prev=int(self._account_last[account])))
        return messages

    def _route_downstream(self, kinds: list[int], seqs: list[int], accounts: list[int], symbols: list[int],
                          sides: list[int], prices: list[int], old_prices: list[int], order_types: list[int],
                          tifs: list[int], makers: list[int], output: _Output) -> None:
        """The chunk's part of the market and account topics: positions of the trades per symbol, the book
        levels changed per symbol, positions of every event of an account whose topic is listened to (and
        of the trades where it is the maker), in event order, and the last seq of each topic (of every
        account's: it chains the topic's messages, state). The arguments are the chunk's columns, and the
        limit each replaced order had before (the ledger's routes)."""
        trades, touched, owners = output.market_positions, output.touched, output.account_positions
        market_seq, account_seq = output.market_seq, output.account_seq
        max_accounts = self._max_accounts
        listeners = self.account_listeners
        every_account = listeners is None
        offset = output.count  # positions are counted over the whole batch
        for i, kind in enumerate(kinds):
            position = offset + i
            seq = seqs[i]
            if kind == _TRADE:
                symbol = symbols[i]
                trades.setdefault(symbol, []).append(position)
                levels = touched.get(symbol)
                if levels is None:
                    levels = touched[symbol] = set()
                levels.add((prices[i], _OPPOSITE_SIDE[sides[i]]))  # the maker's level
                market_seq[symbol] = seq
            elif kind in _BOOK_EVENTS and order_types[i] == _LIMIT and tifs[i] not in _IMMEDIATE:
                symbol = symbols[i]
                levels = touched.get(symbol)
                if levels is None:
                    levels = touched[symbol] = set()
                levels.add((prices[i], sides[i]))
                if kind == _REPLACED:  # the order left its old level too
                    levels.add((old_prices[i], sides[i]))
                market_seq[symbol] = seq
            account = accounts[i]
            if 0 <= account < max_accounts:
                if every_account or account in listeners:
                    owners.setdefault(account, []).append(position)
                account_seq[account] = seq
            if kind == _TRADE:
                maker = makers[i]
                if maker != account and 0 <= maker < max_accounts:
                    if every_account or maker in listeners:
                        owners.setdefault(maker, []).append(position)
                    account_seq[maker] = seq

    def _route_downstream_columns(self, chunk: np.ndarray, old_prices: np.ndarray, output: _Output) -> None:
        """``_route_downstream`` with numpy over the columns, for a long chunk (a replay's): the same
        positions, levels and seqs."""
        offset = output.count
        kinds, seqs, symbols = chunk["kind"], chunk["seq"], chunk["symbol"]
        sides, prices = chunk["side"], chunk["price"]
        is_trade = kinds == _TRADE
        is_book = (np.isin(kinds, _BOOK_EVENT_LIST) & (chunk["order_type"] == _LIMIT)
                   & ~np.isin(chunk["tif"], _IMMEDIATE_LIST))
        trades = np.flatnonzero(is_trade)
        for symbol, members in _groups(symbols[trades], trades):
            output.market_positions.setdefault(symbol, []).extend((members + offset).tolist())
        # Levels changed: a trade's maker level, a book event's level, and a replaced order's old one.
        book = np.flatnonzero(is_book)
        replaced = book[kinds[book] == _REPLACED]
        level_symbols = np.concatenate((symbols[trades], symbols[book], symbols[replaced]))
        level_prices = np.concatenate((prices[trades], prices[book], old_prices[replaced]))
        level_sides = np.concatenate((_MAKER_SIDE[sides[trades]], sides[book], sides[replaced]))
        for symbol, members in _groups(level_symbols, np.arange(len(level_symbols))):
            touched = output.touched.get(symbol)
            if touched is None:
                touched = output.touched[symbol] = set()
            touched.update(zip(level_prices[members].tolist(), level_sides[members].tolist()))
        changed = np.flatnonzero(is_trade | is_book)
        output.market_seq.update(_last_seqs(symbols[changed], seqs[changed]))
        # Accounts: each event's own, and a trade's maker when it is another.
        accounts, makers = chunk["account"], chunk["maker_account"]
        max_accounts = self._max_accounts
        owned = np.flatnonzero((accounts >= 0) & (accounts < max_accounts))
        made = trades[(makers[trades] != accounts[trades]) & (makers[trades] >= 0) & (makers[trades] < max_accounts)]
        concerned = np.concatenate((accounts[owned], makers[made])).astype(np.int64)
        positions = np.concatenate((owned, made))
        output.account_seq.update(_last_seqs(concerned, seqs[positions]))
        listeners = self.account_listeners
        if listeners is None or listeners:
            if listeners is not None:
                kept = np.isin(concerned, np.fromiter(listeners, dtype=np.int64, count=len(listeners)))
                concerned, positions = concerned[kept], positions[kept]
            in_event_order = np.argsort(positions, kind="stable")
            for account, members in _groups(concerned[in_event_order], positions[in_event_order]):
                output.account_positions.setdefault(account, []).extend((members + offset).tolist())

    def _market_message(self, symbol: int, trades: np.ndarray, touched: set[tuple[int, int]],
                        seq: int) -> ReportMessage:
        """The symbol's market message of a batch (its trades, its changed levels as they are now), kept
        for catch-up queries."""
        levels = np.zeros(len(touched), dtype=BOOK_LEVEL_DTYPE)
        if touched:
            ordered = sorted(touched, key=lambda level: (level[1], level[0]))  # side, then price
            levels["price"] = [price for price, _ in ordered]
            levels["side"] = [side for _, side in ordered]
            levels["qty"] = self.engine.level_quantities(symbol, levels["price"], levels["side"])
        prev = int(self._market_last[symbol])
        kept = self._market_recent.get(symbol)
        if kept is None:
            kept = self._market_recent[symbol] = deque(maxlen=self.config.engine.recent_market_messages)
        kept.append((seq, prev, trades.tobytes(), levels.tobytes()))
        topic = market_topic(symbol)
        return ReportMessage(topic, self._next_n(topic), trades, epoch=self.epoch, seq=seq, prev=prev,
                             levels=levels)

    def _gateway_message(self, gateway: int, events: np.ndarray, items: list[dict]) -> ReportMessage:
        topic = gateway_topic(gateway)
        message = ReportMessage(topic, self._next_n(topic), events, items, self.epoch)
        kept = self._recent.get(gateway)
        if kept is None:
            kept = self._recent[gateway] = deque(maxlen=self.config.engine.recent_reports)
        kept.append((message.n, events.tobytes(), items))
        return message

    def heartbeats(self) -> list[ReportMessage]:
        """A heartbeat on every gateway topic of the configuration, with the topic's last ``n``."""
        out = []
        for instance in self.config.gateway.instances:
            topic = gateway_topic(instance.id)
            out.append(ReportMessage(topic, self._counters.get(topic, 0), np.zeros(0, dtype=EVENT_DTYPE), [],
                                     self.epoch, heartbeat=True))
        return out

    def _next_n(self, topic: bytes) -> int:
        n = self._counters.get(topic, 0) + 1
        self._counters[topic] = n
        return n

    # --- order tracking -----------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Forget the ClOrdIDs of orders evicted from the history since the last sweep, and those pushed out
        of an order's last ``CLORDIDS_PER_ORDER``. The sequencer never sequences an (account, ClOrdID)
        twice (its index is kept for good), so a ClOrdID pushed out of an order's last ones cannot have
        come back to it."""
        self._ledger.sweep()

    def _remember_outcomes(self, chunk: np.ndarray, ctx: "_BatchContext") -> None:
        """Keep the first event of each command that begins in ``chunk`` (a command's events may run on
        from the chunk before: ``ctx.read_seq`` is the last seq read so far)."""
        unplaced = self._outcomes.record_commands(chunk, ctx.read_seq, ctx.first, ctx.kind_column)
        # NEWs answered without an ACCEPTED: seldom, so a Python step each is cheap.
        for position in unplaced:
            seq = int(chunk["seq"][position])
            clordid = ctx.clordids[seq - ctx.first]
            if clordid:
                key = (int(chunk["account"][position]), clordid)
                self._unplaced.pop(key, None)
                self._unplaced[key] = seq
        while len(self._unplaced) > OUTCOME_HISTORY:
            self._unplaced.popitem(last=False)

    def _known_order(self, account: int, order_id: int) -> int:
        """The ledger row of the account's order (open, or ended and in the history), or -1."""
        slot = self._ledger.slot(order_id)
        return slot if slot >= 0 and int(self._ledger.slots[slot]["account"]) == account else -1

    # --- snapshots -----------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """What the service knows beyond the engine's arrays, as plain msgpack-able values (engine/snapshot.py).

        The topic counters and the recent report messages are not part of it: they belong to the
        process, and a subscriber sees a restarted engine by its counters starting at 1 again.
        """
        return {
            "last_seq": self._last_seq,
            "ledger": self._ledger.export(),
            "outcome_history": self._outcomes.export(),
            "unplaced": [[account, clordid, seq] for (account, clordid), seq in self._unplaced.items()],
            "market_last": _nonzero_items(self._market_last),
            "account_last": _nonzero_items(self._account_last),
        }

    def tracked(self) -> dict[str, list]:
        """The order tracking in readable form (the format snapshots had before the ledger): ``open`` and
        ``closed`` orders (oldest first) as rows of ``_ORDER_FIELDS``, ``evicted`` (always empty: an order
        leaves the ledger when it leaves the history), ``retired`` [account, ClOrdID, order id] waiting
        for the next sweep, and ``by_clordid`` [account, ClOrdID, order id], the OrigClOrdID map."""
        ledger = self._ledger
        closed = ledger.closed_slots().tolist()
        open_slots = np.flatnonzero(ledger.slots["status"] == STATUS_OPEN)
        open_slots = open_slots[np.argsort(ledger.slots["order_id"][open_slots], kind="stable")].tolist()

        def row(slot: int) -> list:
            fields = ledger.order(slot)
            fields.update(clordids=ledger.clordids(slot), fills=ledger.fills_of(slot),
                          status=_STATUS_NAMES[fields["status"]])
            return [fields[name] for name in _ORDER_FIELDS]

        return {"open": [row(slot) for slot in open_slots], "closed": [row(slot) for slot in closed], "evicted": [],
                "retired": ledger.retired_clordids(), "by_clordid": ledger.mapped_clordids()}

    def import_state(self, state: dict[str, Any]) -> None:
        """Take the state ``export_state`` gave (into a service whose engine holds the matching arrays)."""
        self._last_seq = int(state["last_seq"])
        self._ledger = Ledger(LEDGER_ROWS)
        if "ledger" in state:
            self._ledger.restore(state["ledger"])
        else:
            self._import_tracked(state)
        self._outcomes = OutcomeHistory(OUTCOME_HISTORY)
        self._unplaced = OrderedDict()
        if "outcome_history" in state:
            self._outcomes.restore(state["outcome_history"])
            self._unplaced.update(((account, clordid), seq) for account, clordid, seq in state["unplaced"])
        else:  # a snapshot from before outcomes were kept by seq: [account, clordid, command kind, event]
            self._import_outcome_map(state["outcomes"])
        self._market_last[:] = 0
        self._account_last[:] = 0
        _set_last(self._market_last, dict(state.get("market_last", ())))
        _set_last(self._account_last, dict(state.get("account_last", ())))

    def _import_tracked(self, state: dict[str, Any]) -> None:
        """The order tracking of a snapshot from before the ledger (the rows ``tracked`` gives)."""
        ledger = self._ledger
        for section, open_ in (("open", True), ("closed", False)):
            for row in state[section]:
                order = _legacy_order(row)
                ledger.add_order(order, list(order["clordids"]), order["fills"],
                                 STATUS_OPEN if open_ else _STATUS_CODES[order["status"]], CLORDIDS_PER_ORDER)
        for row in state["evicted"]:  # gone from the history, their ClOrdIDs not swept yet
            order = _legacy_order(row)
            for clordid in order["clordids"]:
                ledger.add_orphan(order["account"], clordid, order["order_id"])
        for account, clordid, order_id in state.get("retired", ()):
            ledger.add_orphan(account, clordid, order_id)
        for account, clordid, order_id in state["by_clordid"]:  # what each ClOrdID named when the snapshot was taken
            if ledger.resolve(account, clordid) != order_id:
                ledger.remap(account, clordid, order_id)

    def _import_outcome_map(self, outcomes: list) -> None:
        events = np.frombuffer(b"".join(bytes(event) for _, _, _, event in outcomes), dtype=EVENT_DTYPE)
        kinds = np.array([kind for _, _, kind, _ in outcomes], dtype=np.uint8)
        order = np.argsort(events["seq"], kind="stable")
        self._outcomes.record(events[order], kinds[order])
        for (account, clordid, kind, _), event in zip(outcomes, events):
            if kind == _NEW and int(event["kind"]) != _ACCEPTED:
                self._unplaced[(account, clordid)] = int(event["seq"])

    # --- resends of commands already sequenced ------------------------------------------------------

    def duplicate(self, notice: Duplicate) -> list[ReportMessage]:
        """The original outcome of a command sent again, for the session that sent it again.

        The answer is a gateway message like any other (it takes the topic's next ``n``); it is not part
        of the journal, so a replay does not produce it again.
        """
        record = notice.record.reshape(-1)[0]
        account, gateway = int(record["account"]), int(record["origin"])
        clordid = notice.envelope.clordid
        outcome = self._outcomes.get(notice.original)
        if outcome is None or int(outcome[1]["account"][0]) != account:
            log.info("resend of account %d ClOrdID %r (seq %d): its outcome is no longer kept; not answered",
                     account, clordid, notice.original)
            return []
        events = outcome[1]
        slot = self._known_order(account, int(events[0]["order_id"]))
        item = {"session": notice.envelope.session, "account": account, "role": "order", "clordid": clordid,
                "cum_quote": int(self._ledger.slots[slot]["cum_quote"]) if slot >= 0 else 0, "resend": True}
        return [self._gateway_message(gateway, events, [item])]

    def refused(self, notice: Refused) -> list[ReportMessage]:
        """Commands the sequencer could not journal: a REJECTED event each (JOURNAL_UNAVAILABLE), for the
        session that sent it, on its gateway's topic. Nothing else changes; the events have no seq."""
        by_gateway: dict[int, tuple[list[np.ndarray], list[dict]]] = {}
        for record, envelope in zip(notice.records, notice.envelopes):
            event = np.zeros(1, dtype=EVENT_DTYPE)
            for name in _REFUSED_ECHO:
                event[name] = record[name]
            event["kind"] = _REJECTED
            event["reason"] = int(RejectReason.JOURNAL_UNAVAILABLE)
            event["ts"] = notice.ts
            account = int(record["account"])
            events, items = by_gateway.setdefault(int(record["origin"]), ([], []))
            events.append(event)
            items.append({"session": envelope.session, "account": account, "role": "order",
                          "clordid": envelope.clordid, "cum_quote": 0, "resend": False})
        return [self._gateway_message(gateway, np.concatenate(events), items)
                for gateway, (events, items) in sorted(by_gateway.items())]

    # --- queries ------------------------------------------------------------------------------------

    def query(self, q: Any) -> dict:
        """Answer one query map (common/reports.py); a malformed one gets ``{"ok": False, "error": ...}``."""
        if not isinstance(q, dict):
            return {"ok": False, "error": "a query is a map"}
        reply: dict[str, Any] = {"id": q.get("id")}
        try:
            kind = q.get("q")
            handler = _QUERY_HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise _BadQuery(f"unknown query kind {kind!r}")
            reply.update(handler(self, q))
            reply["ok"] = True
            reply["seq"] = self._last_seq
        except _BadQuery as exc:
            reply.update(ok=False, error=str(exc))
        return reply

    def _query_order(self, q: dict) -> dict:
        account = self._account(q)
        order_id = _optional_int(q, "order_id")
        clordid = q.get("clordid")
        if clordid is not None and not isinstance(clordid, str):
            raise _BadQuery("clordid must be a string")
        if (order_id is None) == (clordid is None):
            raise _BadQuery("give exactly one of order_id and clordid")
        if clordid is not None:
            order_id = self._ledger.resolve(account, clordid)
            if not order_id:
                return self._order_from_outcome(account, clordid)
        slot = self._known_order(account, order_id)
        if slot < 0:
            return {"found": False}
        return {"found": True, "order": self._order_view(slot)}

    def _order_from_outcome(self, account: int, clordid: str) -> dict:
        """A NEW that never became an open order (rejected, or an unfillable FOK)."""
        seq = self._unplaced.get((account, clordid))
        outcome = self._outcomes.get(seq) if seq is not None else None
        if outcome is None or outcome[0] != _NEW:
            return {"found": False}
        event = outcome[1][0]
        status = REJECTED_STATUS if int(event["kind"]) == _REJECTED else EXPIRED
        view = {name: int(event[name]) for name in ("symbol", "side", "order_type", "tif", "price", "qty", "ts")}
        view.update(order_id=int(event["seq"]), account=account, clordid=clordid, filled=0, leaves=0, cum_quote=0,
                    status=status)
        if status == REJECTED_STATUS:
            view["reason"] = int(event["reason"])
        return {"found": True, "order": view}

    def _order_view(self, slot: int) -> dict:
        """An order of the ledger as the "order" query shows it; an open one as the engine holds it now."""
        order = self._ledger.order(slot)
        view = {name: order[name] for name in ("order_id", "account", "clordid", "symbol", "side", "order_type", "tif",
                                               "cum_quote", "ts")}
        live = self.engine.order(order["order_id"]) if order["status"] == STATUS_OPEN else None
        if live is not None:
            view.update(price=live["price"], qty=live["qty"], filled=live["filled"], leaves=live["leaves"],
                        status=PARTIALLY_FILLED if live["filled"] > 0 else NEW_STATUS)
        else:
            view.update(price=order["price"], qty=order["qty"], filled=order["filled"], leaves=0,
                        status=_STATUS_NAMES[order["status"]])
        return view

    def _open_slots(self, account: int, symbol: int | None) -> list[int]:
        """The ledger rows of the account's open orders, in the engine's order (of one symbol, if given)."""
        slots = []
        for row in self.engine.open_orders(account):
            if symbol is not None and row["symbol"] != symbol:
                continue
            slot = self._ledger.slot(row["order_id"])
            if not self._ledger.is_open(slot):  # pragma: no cover - the tracking follows every event
                log.warning("open order %d is not tracked", row["order_id"])
                continue
            slots.append(slot)
        return slots

    def _query_open_orders(self, q: dict) -> dict:
        account = self._account(q)
        symbol = _optional_int(q, "symbol")
        if symbol is not None and not 0 <= symbol < self._n_symbols:
            raise _BadQuery(f"unknown symbol {symbol}")
        return {"orders": [self._order_view(slot) for slot in self._open_slots(account, symbol)]}

    def _query_balances(self, q: dict) -> dict:
        account = self._account(q)
        balances = []
        for asset in self.config.assets:
            available, frozen = self.engine.balance(account, asset.id)
            balances.append({"asset": asset.id, "available": available, "frozen": frozen})
        return {"balances": balances}

    def _query_resend(self, q: dict) -> dict:
        gateway = _required_int(q, "gateway")
        first = _required_int(q, "from")
        if first < 1:
            raise _BadQuery("from must be at least 1")
        limit = _optional_int(q, "max")
        limit = RESEND_REPLY_MAX if limit is None else min(max(limit, 1), RESEND_REPLY_MAX)
        kept = self._recent.get(gateway, ())
        last = self._counters.get(gateway_topic(gateway), 0)
        oldest = kept[0][0] if kept else last + 1
        messages = []
        for n, events, items in kept:  # a deque: walk from the oldest
            if n < first:
                continue
            if len(messages) == limit:
                break
            messages.append([n, events, items])
        more = bool(messages) and messages[-1][0] < last
        return {"messages": messages, "dropped": first < oldest, "last": last, "more": more, "epoch": self.epoch}

    def _query_history(self, q: dict) -> dict:
        """The account's newest orders, open and ended (as far as the bounded history reaches), newest
        first, each with its fills."""
        account = self._account(q)
        symbol = _optional_int(q, "symbol")
        limit = _optional_int(q, "limit")
        limit = HISTORY_REPLY_DEFAULT if limit is None else min(max(limit, 1), HISTORY_REPLY_MAX)
        found = self._open_slots(account, symbol)
        if len(found) < limit:  # then the newest ended orders of the account
            closed = self._ledger.closed_slots()[::-1]
            rows = self._ledger.slots[closed]
            mine = rows["account"] == account
            if symbol is not None:
                mine &= rows["symbol"] == symbol
            found.extend(closed[mine][: limit - len(found)].tolist())
        ledger = self._ledger
        found.sort(key=lambda slot: int(ledger.slots[slot]["order_id"]), reverse=True)
        return {"orders": [{**self._order_view(slot), "fills": ledger.fills_of(slot)} for slot in found[:limit]]}

    def _query_head(self, q: dict) -> dict:
        return {"head": self._last_seq}

    def _query_state(self, q: dict) -> dict:
        """The last applied seq and the state hash there (a check against a replay of the journal)."""
        return {"head": self._last_seq, "state_hash": self.engine.state_hash()}

    def _query_market(self, q: dict) -> dict:
        """The kept market messages of a symbol after seq ``after`` (quotation catching up)."""
        symbol = self._symbol(q)
        after = _required_int(q, "after")
        limit = _optional_int(q, "max")
        limit = RESEND_REPLY_MAX if limit is None else min(max(limit, 1), RESEND_REPLY_MAX)
        last = int(self._market_last[symbol])
        messages: list[list] = []
        complete = True
        for seq, prev, trades, levels in self._market_recent.get(symbol, ()):  # oldest first
            if seq <= after:
                continue
            if not messages and prev > after:
                complete = False  # what came between ``after`` and this message is no longer kept
            if len(messages) == limit:
                break
            messages.append([seq, prev, trades, levels])
        if not messages and last > after:
            complete = False
        more = bool(messages) and messages[-1][0] < last
        return {"messages": messages, "complete": complete, "last": last, "more": more}

    def _query_depth(self, q: dict) -> dict:
        """Every level of a symbol's book now, best first (quotation resynchronising)."""
        symbol = self._symbol(q)
        bids, asks = self.engine.depth(symbol, self.config.symbols[symbol].levels)
        return {"bids": [[price, qty] for price, qty, _ in bids], "asks": [[price, qty] for price, qty, _ in asks],
                "market_last": int(self._market_last[symbol])}

    def _symbol(self, q: dict) -> int:
        symbol = _required_int(q, "symbol")
        if not 0 <= symbol < self._n_symbols:
            raise _BadQuery(f"unknown symbol {symbol}")
        return symbol

    def _account(self, q: dict) -> int:
        account = _required_int(q, "account")
        if not 0 <= account < self._max_accounts:
            raise _BadQuery(f"unknown account {account}")
        return account


_QUERY_HANDLERS = {
    "order": EngineService._query_order,
    "open_orders": EngineService._query_open_orders,
    "balances": EngineService._query_balances,
    "resend": EngineService._query_resend,
    "head": EngineService._query_head,
    "state": EngineService._query_state,
    "market": EngineService._query_market,
    "depth": EngineService._query_depth,
    "history": EngineService._query_history,
}


def _set_last(last: np.ndarray, seqs: dict[int, int]) -> None:
    """Topics' last seqs (by symbol or account) into ``last``; a key outside it names no topic."""
    for key, seq in seqs.items():
        if 0 <= key < len(last):
            last[key] = seq


def _nonzero_items(last: np.ndarray) -> list[tuple[int, int]]:
    keys = np.flatnonzero(last)
    return list(zip(keys.tolist(), last[keys].tolist()))


def _groups(keys: np.ndarray, values: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``values`` grouped by ``keys`` (as Python ints, ascending), each group in its original order."""
    if not len(keys):
        return []
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    bounds = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    return [(int(keys[start]), values[start:stop]) for start, stop in zip(bounds, bounds[1:])]


def _last_seqs(keys: np.ndarray, seqs: np.ndarray) -> dict[int, int]:
    """The highest seq of each key."""
    if not len(keys):
        return {}
    order = np.lexsort((seqs, keys))
    keys, seqs = keys[order], seqs[order]
    last = np.flatnonzero(np.diff(keys)).tolist() + [len(keys) - 1]
    return dict(zip(keys[last].tolist(), seqs[last].tolist()))


def catch_up_parts(batch: SequencedBatch, head: int, reported_commands: int) -> list[tuple[SequencedBatch, bool]]:
    """A batch of the journal replayed at start-up, as (part, report) pairs to apply in order: report
    messages are built again only for the last ``reported_commands`` commands up to ``head``, the
    journal's last seq (``engine.catch_up_reports``); the commands before them only rebuild the state,
    as those before a snapshot do."""
    quiet_through = head - reported_commands  # the last seq whose reports are not published again
    if len(batch.records) == 0:
        return []
    if batch.last <= quiet_through:
        return [(batch, False)]
    if batch.first > quiet_through:
        return [(batch, True)]
    split = quiet_through - batch.first + 1
    return [(SequencedBatch(batch.first, batch.records[:split], batch.envelopes[:split], batch.head), False),
            (SequencedBatch(quiet_through + 1, batch.records[split:], batch.envelopes[split:], batch.head), True)]


class _BadQuery(ValueError):
    pass


def _required_int(q: dict, key: str) -> int:
    value = _optional_int(q, key)
    if value is None:
        raise _BadQuery(f"{key} is required")
    return value


def _optional_int(q: dict, key: str) -> int | None:
    value = q.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadQuery(f"{key} must be an integer")
    return value


class _Part(NamedTuple):
    """Consecutive commands of a batch applied in one go, as the ledger reads them (Ledger.track)."""

    first: int
    commands: np.ndarray
    sessions: np.ndarray
    text: np.ndarray
    offsets: np.ndarray


class _BatchContext:
    """The batch being applied, as the ledger and the routing read it."""

    __slots__ = ("first", "records", "envelopes", "kind_column", "session_column", "text", "offsets", "report",
                 "resend", "adds", "read_seq")

    def __init__(self, first: int, records: np.ndarray, envelopes: Envelopes, report: bool,
                 resend: bool = False):
        self.first = first
        self.records = records  # order ids get resolved in it as the batch is applied
        self.report = report
        self.resend = resend
        self.adds: dict[tuple[int, str], list[int]] | None = None
        self.kind_column = records["kind"]  # indexed by (seq - first)
        self.envelopes = envelopes
        self.session_column = envelopes.session_array()
        as_bytes = envelopes.clordid_bytes()
        if as_bytes is None:
            self.text, self.offsets = clordid_text(envelopes.clordids)
        else:  # decoded from the wire: the kernels read the bytes, and no string is made unless a report needs it
            text, ends = as_bytes
            self.text = np.frombuffer(text or b"\0", dtype=np.uint8)
            self.offsets = np.zeros(len(ends) + 1, dtype=np.int64)
            self.offsets[1:] = ends
        self.read_seq = 0  # the seq of the last event read (of a command the state-only reading may skip)

    @property
    def clordids(self) -> list[str]:
        """The batch's ClOrdIDs as strings (made at the first read)."""
        return self.envelopes.clordids

    def added_between(self, key: tuple[int, str], start: int, stop: int) -> bool:
        """Whether a NEW or a replace at a position in ``[start, stop)`` gives an order ClOrdID ``key``."""
        if self.adds is None:
            self.adds = {}
            accounts = self.records["account"].tolist()
            for i, kind in enumerate(self.kind_column.tolist()):
                if (kind == _NEW or kind == _CANCEL_REPLACE) and self.clordids[i]:
                    self.adds.setdefault((accounts[i], self.clordids[i]), []).append(i)
        return any(start <= i < stop for i in self.adds.get(key, ()))
