"""The REST API and the web UI: a gateway instance of its own on HTTP (``[[gateway.instances]]`` with
``http = "host:port"``; ``python -m gateway.main`` runs it for such an instance). Contract: docs/rest.md.

An asyncio process (aiohttp) around the same pure core as the FIX front door (gateway/core.py): a private
request is signed (gateway/rest.py); its key gets a session of the core, opened without a Logon; an order
request becomes the FIX-like message a FIX client would send, goes through the same validation, and the
core's first answer about it (an ExecutionReport, an OrderCancelReject or a Reject) is the HTTP answer.
Later reports for the session (fills) are not kept: clients follow them on the pusher's ``orders`` and
``fills`` channels, or ask for the order.

Sockets, every endpoint from the configuration:

    PUSH    connects sequencer.intake   commands (common/intake.py)
    SUB     connects engine.reports     this gateway's report topic
    DEALER  connects engine.queries     the core's queries (report resends, order status)
    DEALER  connects engine.queries     the API's own: balances, open orders, an order
    DEALER  connects quotation.queries  symbols' depth, trades, bars, tickers

SIGTERM or SIGINT: the server stops taking requests, the sockets close, the exit status is 0.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgpack
import zmq
import zmq.asyncio
from aiohttp import web

from common.config import ExchangeConfig, GatewayInstance
from common.credentials import CredentialStore
from common.protocol import FIELDS, MSG_TYPES, encode
from common.reports import ReportError, decode_report, encode_query
from common.views import AccountViews
from gateway import openapi, rest
from gateway.core import GatewayCore, Query, Submit, ToClient
from gateway.rest import RestError

log = logging.getLogger("gateway.http")

F = FIELDS
M = MSG_TYPES
ANSWER_TIMEOUT_S = 10.0  # an order request without an answer in this time gets 504 (it may still happen)
QUERY_TIMEOUT_S = 5.0  # the engine or quotation not answering a query in this time: 503
LINGER_MS = 200
REPORTS_RCVHWM = 1_000_000
MAX_LIMIT = 1_000  # depth levels, trades or bars in one answer at most
MAX_HISTORY = 500  # orders in one history answer at most (the engine's bound)
WEB_DIR = Path(__file__).resolve().parent / "web"


class HttpGateway:
    def __init__(self, config: ExchangeConfig, instance: GatewayInstance):
        self.config = config
        self.instance = instance
        self.credentials = CredentialStore.open(config)
        self.core = GatewayCore(config, instance, self.credentials, clock=time.time_ns)
        self.signing = rest.RequestSigning(self.credentials, config.gateway.logon_window_ms,
                                           clock_ms=lambda: time.time_ns() // 1_000_000)
        self.views = AccountViews(config)
        self.symbols = {symbol.name: symbol for symbol in config.symbols}
        self.seq: dict[bytes, itertools.count] = {}  # session identity -> its MsgSeqNums
        self.waiters: dict[bytes, list[tuple[Callable[[dict], bool], asyncio.Future]]] = {}
        self.replies: dict[int, asyncio.Future] = {}
        self._query_ids = itertools.count(1)

        self.context = zmq.asyncio.Context()
        self.intake = self.context.socket(zmq.PUSH)
        self.intake.setsockopt(zmq.IMMEDIATE, 1)
        self.reports = self.context.socket(zmq.SUB)
        self.reports.setsockopt(zmq.RCVHWM, REPORTS_RCVHWM)
        self.reports.setsockopt(zmq.SUBSCRIBE, self.core.topic)
        self.core_queries = self.context.socket(zmq.DEALER)
        self.engine = self.context.socket(zmq.DEALER)
        self.quotation = self.context.socket(zmq.DEALER)
        for sock in (self.intake, self.reports, self.core_queries, self.engine, self.quotation):
            sock.setsockopt(zmq.LINGER, LINGER_MS)
        self.intake.connect(config.sequencer.intake)
        self.reports.connect(config.engine.reports)
        self.core_queries.connect(config.engine.queries)
        self.engine.connect(config.engine.queries)
        self.quotation.connect(config.quotation.queries)

    # --- the application ------------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.config.gateway.max_message_bytes,
                              middlewares=[self._errors])
        api = "/api/v1"
        app.router.add_get(f"{api}/info", self.info)
        app.router.add_get(f"{api}/symbols", self.symbols_list)
        app.router.add_get(f"{api}/depth", self.depth)
        app.router.add_get(f"{api}/trades", self.trades)
        app.router.add_get(f"{api}/bars", self.bars)
        app.router.add_get(f"{api}/ticker", self.ticker)
        app.router.add_get(f"{api}/account/balances", self.private(self.balances))
        app.router.add_get(f"{api}/orders", self.private(self.open_orders))
        app.router.add_post(f"{api}/orders", self.private(self.place))
        app.router.add_get(f"{api}/orders/history", self.private(self.history))
        app.router.add_get(api + "/orders/{clordid}", self.private(self.order))
        app.router.add_patch(api + "/orders/{clordid}", self.private(self.amend))
        app.router.add_delete(api + "/orders/{clordid}", self.private(self.cancel))
        app.router.add_get("/api/openapi.json", self.openapi_document)
        openapi.add_docs_routes(app)
        if WEB_DIR.is_dir():
            app.router.add_get("/", self.index)
            app.router.add_static("/static", WEB_DIR, follow_symlinks=False)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RestError as exc:
            return web.json_response(exc.body(), status=exc.status)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return web.json_response({"error": exc.reason}, status=exc.status)
            raise

    def private(self, handler: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]):
        async def signed(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            credential = self.signing.verify(request.headers, request.method, request.path_qs, body)
            return await handler(request, credential)
        return signed

    # --- public ---------------------------------------------------------------------------------------

    def _symbol(self, request: web.Request) -> str:
        name = request.query.get("symbol")
        if not name:
            raise RestError(400, "symbol is required (a name such as BTC-USDT)")
        if name not in self.symbols:
            raise RestError(400, f"unknown symbol {name!r}")
        return name

    @staticmethod
    def _int(request: web.Request, key: str, *, maximum: int | None = None, minimum: int = 0) -> int | None:
        text = request.query.get(key)
        if text is None:
            return None
        if not text.isdigit() or len(text) > 19:
            raise RestError(400, f"{key} must be a non-negative integer")
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise RestError(400, f"{key} must be between {minimum} and {maximum}")
        return value

    async def info(self, request: web.Request) -> web.Response:
        """Where the live feeds are (the pusher's WebSocket, docs/market-data.md), and whether private
        requests are taken yet (``ready``: the gateway has heard from the engine since it started)."""
        pusher = self.config.pusher
        return web.json_response({"pusher": f"ws://{pusher.host}:{pusher.port}", "gateway": self.instance.name,
                                  "ready": self.core.synced})

    async def symbols_list(self, request: web.Request) -> web.Response:
        out = []
        for symbol in self.config.symbols:
            out.append({"symbol": symbol.name, "base": symbol.base.name, "quote": symbol.quote.name,
                        "tick_size": symbol.tick.text, "lot_size": symbol.lot.text,
                        "min_qty": symbol.lot.format(symbol.min_qty_lots),
                        "max_qty": symbol.lot.format(symbol.max_qty_lots),
                        "min_notional": symbol.quote.unit.format(symbol.min_notional_units),
                        "price_min": symbol.tick.format(symbol.min_price_ticks),
                        "price_max": symbol.tick.format(symbol.max_price_ticks)})
        return web.json_response({"symbols": out})

    async def depth(self, request: web.Request) -> web.Response:
        reply = await self._ask(self.quotation, {"q": "depth", "symbol": self._symbol(request),
                                                 "limit": self._int(request, "limit", minimum=1, maximum=MAX_LIMIT)})
        return web.json_response({key: reply[key] for key in ("symbol", "lastUpdateId", "bids", "asks")})

    async def trades(self, request: web.Request) -> web.Response:
        reply = await self._ask(self.quotation, {
            "q": "trades", "symbol": self._symbol(request), "after_id": self._int(request, "after_id"),
            "limit": self._int(request, "limit", minimum=1, maximum=MAX_LIMIT)})
        return web.json_response({key: reply[key] for key in ("symbol", "trades", "last_id")})

    async def bars(self, request: web.Request) -> web.Response:
        interval = request.query.get("interval", "1m")
        reply = await self._ask(self.quotation, {
            "q": "bars", "symbol": self._symbol(request), "interval": interval,
            "start": self._int(request, "start"), "end": self._int(request, "end"),
            "limit": self._int(request, "limit", minimum=1, maximum=MAX_LIMIT)})
        return web.json_response({key: reply[key] for key in ("symbol", "interval", "bars")})

    async def ticker(self, request: web.Request) -> web.Response:
        reply = await self._ask(self.quotation, {"q": "ticker", "symbol": self._symbol(request)})
        return web.json_response({"ticker": reply["ticker"]})

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(self.config))

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    # --- private --------------------------------------------------------------------------------------

    async def balances(self, request: web.Request, credential) -> web.Response:
        reply = await self._ask(self.engine, {"q": "balances", "account": credential.account})
        return web.json_response({"seq": reply["seq"], "balances": self.views.balances(reply["balances"])})

    async def open_orders(self, request: web.Request, credential) -> web.Response:
        query: dict[str, Any] = {"q": "open_orders", "account": credential.account}
        if "symbol" in request.query:
            query["symbol"] = self.symbols[self._symbol(request)].id
        reply = await self._ask(self.engine, query)
        return web.json_response({"seq": reply["seq"], "orders": self.views.orders(reply["orders"])})

    async def history(self, request: web.Request, credential) -> web.Response:
        query: dict[str, Any] = {"q": "history", "account": credential.account,
                                 "limit": self._int(request, "limit", minimum=1, maximum=MAX_HISTORY)}
        if "symbol" in request.query:
            query["symbol"] = self.symbols[self._symbol(request)].id
        reply = await self._ask(self.engine, query)
        return web.json_response({"seq": reply["seq"], "orders": self.views.history(reply["orders"])})

    async def order(self, request: web.Request, credential) -> web.Response:
        reply = await self._ask(self.engine, {"q": "order", "account": credential.account,
                                              "clordid": request.match_info["clordid"]})
        if not reply["found"]:
            raise RestError(404, "no such order of this account")
        [view] = self.views.orders([{**reply["order"], "leaves": reply["order"].get("leaves", 0)}])
        return web.json_response(view)

    async def place(self, request: web.Request, credential) -> web.Response:
        return await self._submit(credential, rest.new_order(await self._json(request)))

    async def cancel(self, request: web.Request, credential) -> web.Response:
        return await self._submit(credential, rest.cancel(request.match_info["clordid"]))

    async def amend(self, request: web.Request, credential) -> web.Response:
        clordid = request.match_info["clordid"]
        message = rest.amend(clordid, await self._json(request))
        # A replace names the symbol and both terms: what the request leaves out stays as the order has it.
        reply = await self._ask(self.engine, {"q": "order", "account": credential.account, "clordid": clordid})
        if not reply["found"] or reply["order"]["status"] not in ("new", "partially_filled"):
            raise RestError(404, "no open order of this account with that clordid")
        order = reply["order"]
        symbol = self.config.symbols[order["symbol"]]
        message[F.SYMBOL] = symbol.name
        message.setdefault(F.PRICE, symbol.tick.format(order["price"]))
        message.setdefault(F.ORDER_QTY, symbol.lot.format(order["qty"]))
        return await self._submit(credential, message)

    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return json.loads(await request.text())
        except ValueError:
            raise RestError(400, "the body is not JSON") from None

    async def _submit(self, credential, message: dict) -> web.Response:
        """Through the core as a FIX client's message; the core's first answer about it is the answer."""
        identity = b"rest:" + credential.key_id.encode()
        if self.core.open_trusted_session(identity, credential) is None:
            raise RestError(503, "the exchange is starting: try again in a moment")
        counter = self.seq.setdefault(identity, itertools.count(1))
        msg_seq_num = next(counter)
        message[F.MSG_SEQ_NUM] = msg_seq_num
        future = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(identity, []).append((rest.answers(message, msg_seq_num), future))
        self._carry_out(self.core.on_client(identity, encode(message)))
        try:
            answer_message = await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RestError(504, "no answer from the exchange in time: ask for the order before sending again",
                            clordid=message.get(F.CL_ORD_ID)) from None
        finally:
            waiting = self.waiters.get(identity, [])
            self.waiters[identity] = [(match, f) for match, f in waiting if f is not future]
        result = rest.answer(answer_message)
        return web.json_response(result.body, status=result.status)

    # --- the core's actions -----------------------------------------------------------------------------

    def _carry_out(self, actions: list) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if type(action) is ToClient:
                queue.extend(self._to_client(action))
            elif type(action) is Submit:
                try:
                    self.intake.send_multipart(action.frames, zmq.NOBLOCK)
                except zmq.Again:
                    queue.extend(self.core.on_submit_failed(action))
            elif type(action) is Query:
                self.core_queries.send_multipart(encode_query(action.query))

    def _to_client(self, action: ToClient) -> list:
        message = action.message
        if message.get(F.MSG_TYPE) == M.TEST_REQUEST:  # the session is alive: answer as a client would
            counter = self.seq.setdefault(action.identity, itertools.count(1))
            return self.core.on_client(action.identity, encode({
                F.MSG_TYPE: M.HEARTBEAT, F.MSG_SEQ_NUM: next(counter), F.TEST_REQ_ID: message.get(F.TEST_REQ_ID)}))
        if message.get(F.MSG_TYPE) == M.LOGOUT:
            self.seq.pop(action.identity, None)
        for match, future in self.waiters.get(action.identity, []):
            if not future.done() and match(message):
                future.set_result(message)
                break
        return []

    async def _ask(self, sock: zmq.asyncio.Socket, query: dict) -> dict:
        query_id = next(self._query_ids)
        future = asyncio.get_running_loop().create_future()
        self.replies[query_id] = future
        await sock.send(msgpack.packb({"id": query_id, **{k: v for k, v in query.items() if v is not None}},
                                      use_bin_type=True))
        try:
            reply = await asyncio.wait_for(future, QUERY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RestError(503, "the exchange did not answer in time; try again") from None
        finally:
            self.replies.pop(query_id, None)
        if not reply.get("ok"):
            raise RestError(400, str(reply.get("error", "refused")))
        return reply

    # --- loops ---------------------------------------------------------------------------------------------

    async def _read_reports(self) -> None:
        while True:
            frames = await self.reports.recv_multipart()
            try:
                message = decode_report(frames)
            except ReportError as exc:
                log.error("dropped a malformed report message: %s", exc)
                continue
            self._carry_out(self.core.on_report(message))

    async def _read_core_replies(self) -> None:
        while True:
            frames = await self.core_queries.recv_multipart()
            try:
                reply = msgpack.unpackb(frames[-1], raw=False)
            except Exception as exc:  # noqa: BLE001
                log.error("dropped a malformed query reply: %s", exc)
                continue
            self._carry_out(self.core.on_query_reply(reply))

    async def _read_replies(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frame = await sock.recv()
            try:
                reply = msgpack.unpackb(frame, raw=False)
            except Exception as exc:  # noqa: BLE001
                log.error("dropped a malformed reply: %s", exc)
                continue
            future = self.replies.get(reply.get("id")) if isinstance(reply, dict) else None
            if future is not None and not future.done():
                future.set_result(reply)

    async def _ticks(self) -> None:
        interval = self.core.tick_interval_ns / 1e9
        while True:
            await asyncio.sleep(interval)
            self._carry_out(self.core.on_tick())

    async def run(self) -> int:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        runner = web.AppRunner(self.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.instance.http_host, self.instance.http_port)
        await site.start()
        log.info("gateway %s (id %d): REST API and web UI on http://%s:%d", self.instance.name, self.instance.id,
                 self.instance.http_host, self.instance.http_port)
        tasks = [asyncio.create_task(coroutine) for coroutine in (
            self._read_reports(), self._read_core_replies(), self._read_replies(self.engine),
            self._read_replies(self.quotation), self._ticks())]
        await stopping.wait()
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.context.destroy(linger=LINGER_MS)
        self.credentials.close()
        log.info("gateway %s stopped", self.instance.name)
        return 0


def run(config: ExchangeConfig, instance: GatewayInstance) -> int:
    return asyncio.run(HttpGateway(config, instance).run())
