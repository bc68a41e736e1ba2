"""The quotation process: ``python -m quotation.main`` (configuration from ``$EXCHANGE_CONFIG``).

Sockets, every endpoint from the configuration:

    SUB     connects engine.reports     the market topics (prefix ``m``): trades and book levels
    DEALER  connects engine.queries     catch-up: the engine's kept market messages, its depth
    PUB     binds quotation.market      trades, depth diffs, K-lines, tickers (common/market.py)
    ROUTER  binds quotation.queries     bars, recent trades, depth snapshots, tickers

1. Start-up: the store gives each symbol's position, book, bars and ticker window; the SUB subscribes;
   then every symbol catches up from the engine's kept messages (what was published while this process
   was not running). Until the engine answers, that is retried every ``CATCH_UP_RETRY_S``.
2. Live, one turn: take every market message waiting (up to ``MESSAGES_PER_TURN``) through the core; a
   gap is filled at once from the engine (the core ignores what it has counted, so messages that arrive
   meanwhile are harmless); on the second boundary the core closes bars and moves the tickers; the
   turn's changes are written to the store in one transaction, and only then published. Queries are
   answered between turns, so an answer never reflects a half-applied turn.
3. SIGTERM or SIGINT: the turn is finished, the store closed, the exit status 0. Anything inconsistent
   exits 1 for supervisord to restart: start-up is recovery.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time

import msgpack
import zmq

from common.config import ExchangeConfig, load_config
from common.heap import HeapKeeper
from common.market import decode_query, encode_publications
from common.reports import MARKET_PREFIX, ReportError, decode_report
from common.signals import StopSignals
from common.sockets import send_frames
from quotation import queries
from quotation.core import QuotationCore
from quotation.store import QuotationStore

log = logging.getLogger("quotation")

MESSAGES_PER_TURN = 1024  # market messages taken per turn at most, so that queries are not starved
QUERIES_PER_TURN = 64
ENGINE_TIMEOUT_S = 5.0  # an engine query not answered in this time: retried later (start-up) or fatal
CATCH_UP_RETRY_S = 1.0
CATCH_UP_PAGE = 10_000  # market messages asked for at a time
SUB_RCVHWM = 1_000_000  # market messages queued from the engine before the SUB drops (then: a gap)
PUB_SNDHWM = 1_000_000
LINGER_MS = 200
STATUS_INTERVAL_S = 10.0


class Fatal(Exception):
    pass


class Stopping(Exception):
    pass


class QuotationProcess:
    def __init__(self, config: ExchangeConfig):
        self.config = config
        self.core = QuotationCore(config)
        self.store = QuotationStore(config.paths.quotation_dir, map_bytes=config.quotation.store_map_bytes,
                                    recent_trades=config.quotation.recent_trades,
                                    second_bars_kept_ms=config.quotation.second_bars_kept_s * 1000)
        self.core.restore(self.store.load(len(config.symbols)))
        self.epoch = secrets.randbits(62)
        self.counters: dict[str, int] = {}  # channel -> last n published
        self.stopping = False
        self.heap = HeapKeeper()
        self.signals = StopSignals(self._on_signal)
        self.behind = set(range(len(config.symbols)))  # symbols still to catch up at start-up
        self.messages = self.published = self.gaps = self.answered = 0
        self._query_id = 0

        self.context = zmq.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, SUB_RCVHWM)
        self.sub.setsockopt(zmq.SUBSCRIBE, MARKET_PREFIX)
        self.engine = self.context.socket(zmq.DEALER)
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        self.router = self.context.socket(zmq.ROUTER)
        for sock in (self.sub, self.engine, self.pub, self.router):
            sock.setsockopt(zmq.LINGER, LINGER_MS)
        self.sub.connect(config.engine.reports)
        self.engine.connect(config.engine.queries)
        self.pub.bind(config.quotation.market)
        self.router.bind(config.quotation.queries)
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.signals.fd, zmq.POLLIN)
        self.engine_poller = zmq.Poller()
        self.engine_poller.register(self.engine, zmq.POLLIN)
        self.engine_poller.register(self.signals.fd, zmq.POLLIN)

    def _on_signal(self) -> None:
        self.stopping = True

    # --- the loop -----------------------------------------------------------------------------------------

    def run(self) -> int:
        positions = ", ".join(f"{s.name} at seq {self.core.position(s.id)}" for s in self.config.symbols)
        log.info("quotation started (epoch %08x): %s; market %s, queries %s", self.epoch & 0xFFFFFFFF, positions,
                 self.config.quotation.market, self.config.quotation.queries)
        status = 0
        self.heap.started()
        next_tick = self._next_second()
        next_status = time.monotonic() + STATUS_INTERVAL_S
        retry_at = 0.0
        try:
            while not self.stopping:
                now = time.monotonic()
                if self.behind and now >= retry_at:
                    self._catch_up_start()
                    retry_at = now + CATCH_UP_RETRY_S
                wake = min(next_tick - time.time(), next_status - now, retry_at - now if self.behind else 60.0)
                ready = dict(self.poller.poll(max(0, int(wake * 1000)) + 1))
                if self.signals.fd in ready:
                    self.signals.drain()
                if self.sub in ready:
                    self._take_market()
                if time.time() >= next_tick:
                    self.core.on_tick(int(time.time() * 1000))
                    next_tick = self._next_second()
                self._finish_turn()
                if self.router in ready:
                    self._answer_queries()
                now = time.monotonic()
                if now >= next_status:
                    self._log_status()
                    next_status = now + STATUS_INTERVAL_S
                self.heap.tick(now, idle=not ready)
        except Stopping:
            pass
        except Fatal as exc:
            log.error("%s; exiting for a restart", exc)
            status = 1
        except Exception:
            log.exception("quotation failed")
            status = 1
        finally:
            self._close()
        log.info("quotation stopped")
        return status

    @staticmethod
    def _next_second() -> float:
        return float(int(time.time()) + 1)

    def _take_market(self) -> None:
        gaps: dict[int, int] = {}
        for _ in range(MESSAGES_PER_TURN):
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = decode_report(frames)
            except ReportError as exc:
                log.error("dropped a malformed market message: %s", exc)
                continue
            self.messages += 1
            gap = self.core.on_market(message)
            if gap is not None:  # the symbol's later messages give gaps too until it has caught up
                gaps.setdefault(gap.symbol, gap.after)
        for symbol in sorted(gaps):
            self.gaps += 1
            log.warning("symbol %s: market messages missing after seq %d; catching up from the engine",
                        self.config.symbols[symbol].name, gaps[symbol])
            if not self._catch_up(symbol, fatal=True):
                raise Fatal(f"the engine did not answer the catch-up of {self.config.symbols[symbol].name}")

    def _catch_up_start(self) -> None:
        for symbol in sorted(self.behind):
            if not self._catch_up(symbol, fatal=False):
                return
            self.behind.discard(symbol)
            log.info("symbol %s caught up at seq %d", self.config.symbols[symbol].name, self.core.position(symbol))

    def _catch_up(self, symbol: int, *, fatal: bool) -> bool:
        """Fill the symbol's gap from the engine. False if the engine did not answer in time."""
        while True:
            after = self.core.position(symbol)
            reply = self._ask_engine({"q": "market", "symbol": symbol, "after": after, "max": CATCH_UP_PAGE})
            if reply is None:
                return False
            if reply["complete"]:
                self.core.catch_up(symbol, reply["messages"], complete=True)
            else:
                depth = self._ask_engine({"q": "depth", "symbol": symbol})
                if depth is None:
                    return False
                again = self._ask_engine({"q": "market", "symbol": symbol, "after": after, "max": CATCH_UP_PAGE})
                if again is None:
                    return False
                self.core.catch_up(symbol, again["messages"], complete=False,
                                   depth=(depth["bids"], depth["asks"], depth["seq"]))
                reply = again
            self._finish_turn()
            if not reply["more"]:
                return True

    def _ask_engine(self, query: dict) -> dict | None:
        self._query_id += 1
        query_id = self._query_id
        self.engine.send(msgpack.packb({"id": query_id, **query}, use_bin_type=True))
        deadline = time.monotonic() + ENGINE_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("the engine did not answer %s within %.0f s", query["q"], ENGINE_TIMEOUT_S)
                return None
            ready = dict(self.engine_poller.poll(int(remaining * 1000) + 1))
            if self.signals.fd in ready:
                self.signals.drain()
                if self.stopping:
                    raise Stopping()
            if self.engine in ready:
                reply = msgpack.unpackb(self.engine.recv(), raw=False)
                if reply.get("id") != query_id:
                    continue  # the late answer to a query given up on
                if not reply.get("ok"):
                    raise Fatal(f"the engine refused {query}: {reply.get('error')}")
                return reply

    def _finish_turn(self) -> None:
        """Store the turn's changes, then publish what it produced."""
        publications, changes = self.core.take_output()
        if changes:
            positions = {symbol: self.core.saved(symbol) for symbol in changes.symbols}
            self.store.commit(changes, positions, int(time.time() * 1000))
        if not publications:
            return
        numbered = []
        for channel, body in publications:
            n = self.counters.get(channel, 0) + 1
            self.counters[channel] = n
            numbered.append((channel, n, body))
        send_frames(self.pub, encode_publications(self.epoch, numbered))  # the turn's bundle
        self.published += len(numbered)

    def _answer_queries(self) -> None:
        now_ms = int(time.time() * 1000)
        for _ in range(QUERIES_PER_TURN):
            try:
                identity, *frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            query = None
            try:
                query = decode_query(frames[-1]) if frames else None
                reply = queries.answer(self.core, self.store, query, now_ms)
            except Exception as exc:  # a query that breaks something is answered, never fatal
                log.exception("query %r failed", query)
                reply = {"id": query.get("id") if isinstance(query, dict) else None, "ok": False,
                         "error": f"the query failed: {exc}"}
            reply["epoch"] = self.epoch  # which process answered: update ids compare within one
            self.answered += 1
            self.router.send_multipart([identity, msgpack.packb(reply, use_bin_type=True)])

    def _log_status(self) -> None:
        log.info("%d market messages, %d publications, %d gaps filled, %d queries; positions %s",
                 self.messages, self.published, self.gaps, self.answered,
                 ", ".join(str(self.core.position(s.id)) for s in self.config.symbols))
        self.messages = self.published = self.answered = 0

    def _close(self) -> None:
        for sock in (self.sub, self.engine, self.pub, self.router):
            sock.close()
        self.context.term()
        self.store.close()
        self.signals.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config()
    except Exception as exc:
        log.error("cannot start: %s", exc)
        return 2
    return QuotationProcess(config).run()


if __name__ == "__main__":
    sys.exit(main())
