"""The asyncio client: the same calls as :class:`client.sync.Client`, awaited, over zmq.asyncio.

    from client.aio import AsyncClient

    async with AsyncClient("tcp://127.0.0.1:7001", key_id, secret) as client:
        await client.logon()
        clordid = await client.buy("BTC-USDT", "0.01", "65000")
        print((await client.first_report(clordid)).describe())
        async for message in client:  # every report as it comes
            print(message.describe())

A reader task takes every incoming message as it arrives: it answers TestRequests at once, hands each
message to the call waiting for it, and keeps the rest, in order, for :meth:`AsyncClient.next_message`
and ``async for``. A heartbeat task sends a Heartbeat whenever nothing was sent for HeartBtInt
seconds, so a quiet program stays logged on without calling the client. Both tasks start with
:meth:`AsyncClient.logon` (or ``async with``) and stop at :meth:`AsyncClient.close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, AsyncIterator, Callable, Mapping

import zmq
import zmq.asyncio

from client.session import (
    AdminAnswer,
    Answer,
    Balance,
    BalanceAnswer,
    ClientError,
    ClientSession,
    ClientTimeout,
    Disconnected,
    Incoming,
    LogonAnswer,
    MassStatusAnswer,
    NewAccount,
    PredicateAnswer,
    ReportAnswer,
    StatusAnswer,
    amend_defaults,
    new_account,
)
from client.sync import DEFAULT_INBOX_LIMIT, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT_S
from common.protocol import DecodeError, Field, MsgType, encode

log = logging.getLogger("client")


class _Waiter:
    __slots__ = ("answer", "future")

    def __init__(self, answer: Answer, future: asyncio.Future):
        self.answer = answer
        self.future = future


class AsyncClient:
    """A connection to one gateway for asyncio programs; arguments as :class:`client.sync.Client`
    (``context`` is a ``zmq.asyncio.Context``)."""

    def __init__(
        self,
        endpoint: str,
        key_id: str,
        secret: str | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        heartbeat_s: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
        clordid_prefix: str | None = None,
        context: zmq.asyncio.Context | None = None,
    ):
        self.endpoint = endpoint
        self.timeout = timeout
        self.session = ClientSession(key_id, secret, clordid_prefix=clordid_prefix)
        self._requested_heartbeat_s = heartbeat_s
        self._max_message_bytes = max_message_bytes
        self._inbox: deque[Incoming] = deque()
        self._inbox_limit = inbox_limit
        self.dropped = 0
        self.duplicates = 0  # reports the exchange sent again and this client had already delivered
        self._context = context or zmq.asyncio.Context.instance()
        self._socket = self._connect()
        self._waiters: list[_Waiter] = []
        self._arrived: asyncio.Event | None = None  # set when a message is kept in the inbox
        self._received: asyncio.Event | None = None  # set when any message is read
        self._tasks: list[asyncio.Task] = []
        self._last_sent = time.monotonic()
        self._closed = False
        self._failure: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> "AsyncClient":
        self._start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def _connect(self) -> zmq.asyncio.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    async def reconnect(self, *, timeout: float | None = None) -> list[str]:
        """A new connection and session, then every unacknowledged order message sent again with its
        original ClOrdID; see :meth:`client.sync.Client.reconnect`."""
        if self._closed:
            raise ClientError("the client is closed")
        await self._stop_tasks()
        self._socket.close(linger=0)
        self._socket = self._connect()
        self._failure = None
        self.session.restart()
        await self.logon(timeout=timeout)
        resent = self.session.resend()
        for message in resent:
            await self.send(message)
        return [str(m.get(Field.CL_ORD_ID.value, "")) for m in resent]

    def _start(self) -> None:
        if not self._tasks:
            self._arrived = asyncio.Event()
            self._received = asyncio.Event()
            self._tasks = [asyncio.create_task(self._read(), name=f"client-read {self.endpoint}"),
                           asyncio.create_task(self._heartbeat(), name=f"client-heartbeat {self.endpoint}")]

    async def logon(self, *, timeout: float | None = None) -> Incoming:
        """Log on; see :meth:`client.sync.Client.logon`."""
        self._start()
        message = self.session.logon(heartbeat_s=self._requested_heartbeat_s)
        return await self._request(message, LogonAnswer(message), timeout)

    async def close(self, *, timeout: float | None = None) -> None:
        """Log out (waiting up to ``timeout`` for the gateway's Logout), stop the tasks, close the socket."""
        if self._closed:
            return
        try:
            if self.session.logged_on and self._tasks and self._failure is None:
                message = self.session.logout()
                try:
                    await self._request(message, PredicateAnswer(lambda m: m.is_type(MsgType.LOGOUT)), timeout)
                except ClientError:
                    pass  # closing anyway
        finally:
            self._closed = True
            await self._stop_tasks()
            self._socket.close(linger=0)
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(ClientError("the client is closed"))

    @property
    def closed(self) -> bool:
        return self._closed

    # --- orders -----------------------------------------------------------------------------------

    async def place(self, symbol: str, side: str, *, qty: str | None = None, price: str | None = None,
                    tif: str | None = None, post_only: bool = False, cash_qty: str | None = None,
                    clordid: str | None = None) -> str:
        """See :meth:`client.sync.Client.place`."""
        message = self.session.new_order(symbol, side, qty=qty, price=price, tif=tif, post_only=post_only,
                                         cash_qty=cash_qty, clordid=clordid)
        await self.send(message)
        return message[Field.CL_ORD_ID.value]

    async def buy(self, symbol: str, qty: str, price: str, *, tif: str = "gtc", post_only: bool = False,
                  clordid: str | None = None) -> str:
        """See :meth:`client.sync.Client.buy`."""
        return await self.place(symbol, "buy", qty=qty, price=price, tif=tif, post_only=post_only, clordid=clordid)

    async def sell(self, symbol: str, qty: str, price: str, *, tif: str = "gtc", post_only: bool = False,
                   clordid: str | None = None) -> str:
        """See :meth:`client.sync.Client.sell`."""
        return await self.place(symbol, "sell", qty=qty, price=price, tif=tif, post_only=post_only, clordid=clordid)

    async def market_buy(self, symbol: str, qty: str | None = None, *, cash_qty: str | None = None,
                         tif: str = "ioc", clordid: str | None = None) -> str:
        """See :meth:`client.sync.Client.market_buy`."""
        return await self.place(symbol, "buy", qty=qty, cash_qty=cash_qty, tif=tif, clordid=clordid)

    async def market_sell(self, symbol: str, qty: str, *, tif: str = "ioc", clordid: str | None = None) -> str:
        """See :meth:`client.sync.Client.market_sell`."""
        return await self.place(symbol, "sell", qty=qty, tif=tif, clordid=clordid)

    async def amend(self, orig_clordid: str | None = None, *, order_id: str | int | None = None,
                    price: str | None = None, qty: str | None = None, symbol: str | None = None,
                    side: str | None = None) -> str:
        """See :meth:`client.sync.Client.amend`."""
        if not self.session.knows(orig_clordid) and None in (symbol, price, qty):
            symbol, side, price, qty = amend_defaults(
                await self.status(orig_clordid, order_id=order_id, symbol=symbol), symbol, side, price, qty)
        message = self.session.replace(orig_clordid, order_id=order_id, price=price, qty=qty,
                                       symbol=symbol, side=side)
        await self.send(message)
        return message[Field.CL_ORD_ID.value]

    async def cancel(self, orig_clordid: str | None = None, *, order_id: str | int | None = None,
                     symbol: str | None = None) -> str:
        """See :meth:`client.sync.Client.cancel`."""
        message = self.session.cancel(orig_clordid, order_id=order_id, symbol=symbol)
        await self.send(message)
        return message[Field.CL_ORD_ID.value]

    async def cancel_all(self, *, symbol: str | None = None) -> str:
        """See :meth:`client.sync.Client.cancel_all`."""
        message = self.session.mass_cancel(symbol=symbol)
        await self.send(message)
        return message[Field.CL_ORD_ID.value]

    async def first_report(self, clordid: str, *, timeout: float | None = None) -> Incoming:
        """See :meth:`client.sync.Client.first_report`."""
        return await self._await(ReportAnswer(clordid), timeout)

    # --- queries ------------------------------------------------------------------------------------

    async def status(self, clordid: str | None = None, *, order_id: str | int | None = None,
                     symbol: str | None = None, timeout: float | None = None) -> Incoming:
        """See :meth:`client.sync.Client.status`."""
        message = self.session.order_status(clordid, order_id=order_id, symbol=symbol)
        return await self._request(message, StatusAnswer(message), timeout)

    async def open_orders(self, *, symbol: str | None = None, timeout: float | None = None) -> list[Incoming]:
        """See :meth:`client.sync.Client.open_orders`."""
        message = self.session.mass_status(symbol=symbol)
        return await self._request(message, MassStatusAnswer(message), timeout)

    async def balances(self, *, account: int | None = None, currency: str | None = None,
                       timeout: float | None = None) -> dict[str, Balance]:
        """See :meth:`client.sync.Client.balances`."""
        message = self.session.balance_request(account=account, currency=currency)
        return await self._request(message, BalanceAnswer(message), timeout)

    # --- admin --------------------------------------------------------------------------------------

    async def admin_create_account(self, *, request_id: str | None = None,
                                   timeout: float | None = None) -> NewAccount:
        """See :meth:`client.sync.Client.admin_create_account`."""
        message = self.session.admin_request("create_account", request_id=request_id)
        return new_account(await self._request(message, AdminAnswer(message), timeout))

    async def admin_deposit(self, account: int, currency: str, amount: str, *, request_id: str | None = None,
                            timeout: float | None = None) -> Incoming:
        """See :meth:`client.sync.Client.admin_deposit`."""
        message = self.session.admin_request("deposit", account=account, currency=currency, amount=amount,
                                             request_id=request_id)
        return await self._request(message, AdminAnswer(message), timeout)

    async def admin_withdraw(self, account: int, currency: str, amount: str, *, request_id: str | None = None,
                             timeout: float | None = None) -> Incoming:
        """See :meth:`client.sync.Client.admin_withdraw`."""
        message = self.session.admin_request("withdraw", account=account, currency=currency, amount=amount,
                                             request_id=request_id)
        return await self._request(message, AdminAnswer(message), timeout)

    # --- messages ---------------------------------------------------------------------------------

    async def send(self, message: Mapping[str, Any], *, timeout: float | None = None) -> None:
        """Send one message as it is (built by ``self.session``)."""
        if self._closed:
            raise ClientError("the client is closed")
        wait = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._socket.send(encode(dict(message))), wait)
        except asyncio.TimeoutError:
            raise ClientTimeout(f"cannot send to {self.endpoint} within {wait}s (gateway unreachable?)") from None
        self._last_sent = time.monotonic()

    async def next_message(self, timeout: float | None = None) -> Incoming | None:
        """The next message no call waited for (not Heartbeats and TestRequests: the client handles
        those); None after ``timeout`` seconds (default: the client's)."""
        self._start()
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while not self._inbox:
            self._check_alive()
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return None
        return self._inbox.popleft()

    async def messages(self, *, timeout: float | None = None) -> AsyncIterator[Incoming]:
        """Messages as they come, until none arrives for ``timeout`` seconds (default: the client's)."""
        while (incoming := await self.next_message(timeout)) is not None:
            yield incoming

    def __aiter__(self) -> AsyncIterator[Incoming]:
        return self._forever()

    async def _forever(self) -> AsyncIterator[Incoming]:
        """Every message as it comes, waiting as long as it takes; ends after the gateway's Logout."""
        self._start()
        while True:
            while not self._inbox:
                self._check_alive()
                self._arrived.clear()
                await self._arrived.wait()
            incoming = self._inbox.popleft()
            yield incoming
            if incoming.is_type(MsgType.LOGOUT):
                return

    async def wait_for(self, predicate: Callable[[Incoming], bool], *, timeout: float | None = None) -> Incoming:
        """See :meth:`client.sync.Client.wait_for`."""
        return await self._await(PredicateAnswer(predicate), timeout)

    # --- internals ----------------------------------------------------------------------------------

    async def _request(self, message: Mapping[str, Any], answer: Answer, timeout: float | None) -> Any:
        """Send ``message`` and wait for ``answer`` (registered first, so no reply can slip past)."""
        self._start()
        waiter = self._register(answer)
        if waiter is None:  # pragma: no cover - an answer to a message not yet sent is not in the inbox
            return answer.result()
        await self.send(message)
        return await self._wait(waiter, timeout)

    async def _await(self, answer: Answer, timeout: float | None) -> Any:
        self._start()
        waiter = self._register(answer)
        if waiter is None:
            return answer.result()
        return await self._wait(waiter, timeout)

    def _register(self, answer: Answer) -> _Waiter | None:
        """Offer the kept messages to ``answer``; None if they complete it, else a waiter for the reader."""
        if self._inbox:
            self._inbox = deque(m for m in self._inbox if answer.done or not answer.offer(m))
        if answer.done:
            return None
        self._check_alive()
        waiter = _Waiter(answer, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        return waiter

    async def _wait(self, waiter: _Waiter, timeout: float | None) -> Any:
        wait = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except asyncio.TimeoutError:
            raise ClientTimeout(f"{waiter.answer.what} did not come from {self.endpoint} within {wait}s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return waiter.future.result()

    def _check_alive(self) -> None:
        if self._closed:
            raise ClientError("the client is closed")
        if self._failure is not None:
            raise ClientError(f"the connection failed: {self._failure!r}")

    def _dispatch(self, incoming: Incoming) -> None:
        for waiter in list(self._waiters):
            if waiter.future.done() or not waiter.answer.offer(incoming):
                continue
            if waiter.answer.done:
                self._waiters.remove(waiter)
                try:
                    waiter.future.set_result(waiter.answer.result())
                except ClientError as exc:
                    waiter.future.set_exception(exc)
            return
        if incoming.is_session_level:
            return
        if len(self._inbox) >= self._inbox_limit:
            self._inbox.popleft()
            self.dropped += 1
        self._inbox.append(incoming)
        self._arrived.set()
        if incoming.is_type(MsgType.LOGOUT):
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(Disconnected(incoming.text))
            self._waiters.clear()

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._socket.recv()
                try:
                    incoming = self.session.receive_frame(frame, max_bytes=self._max_message_bytes)
                except DecodeError as exc:
                    log.warning("ignored an undecodable frame from %s: %s", self.endpoint, exc)
                    continue
                for owed in self.session.data_to_send():
                    await self.send(owed)
                if incoming.duplicate:
                    self.duplicates += 1
                    continue
                self._dispatch(incoming)
                self._received.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket failed: wake every waiter with the reason
            self._failure = exc
            for waiter in self._waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(ClientError(f"the connection failed: {exc!r}"))
            self._waiters.clear()
            self._arrived.set()
            self._received.set()

    async def _heartbeat(self) -> None:
        while True:
            interval = self.session.heartbeat_s if self.session.logged_on else None
            if not interval:
                # Not logged on yet (or no HeartBtInt): look again after the next message arrives.
                self._received.clear()
                await self._received.wait()
                continue
            due = self._last_sent + interval - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            if self.session.logged_on:
                await self.send(self.session.heartbeat())
