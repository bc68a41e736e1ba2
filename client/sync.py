"""The blocking client: one ZeroMQ DEALER connection to a gateway, for scripts and the command line.

    from client.sync import Client

    with Client("tcp://127.0.0.1:7001", key_id, secret) as client:
        client.logon()
        clordid = client.buy("BTC-USDT", "0.01", "65000")
        print(client.first_report(clordid).describe())
        print(client.balances())

The protocol state lives in :class:`client.session.ClientSession`; this class only moves frames.
Messages that arrive while the client waits for something else (fills of other orders, say) are kept
in order and handed out by :meth:`Client.next_message` and iteration.

Heartbeats: a TestRequest is answered as soon as it is read, and a Heartbeat is sent whenever nothing
was sent for HeartBtInt seconds -- both while the client is inside one of its calls (which is whenever
it waits for anything). A program that goes quiet for longer than twice HeartBtInt without calling the
client is logged out by the gateway; call :meth:`Client.next_message` with a timeout in such loops.

Not thread-safe: use one client per thread (ZeroMQ sockets are not thread-safe either).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any, Callable, Iterator, Mapping

import zmq

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
from common.protocol import DecodeError, Field, MsgType, encode

log = logging.getLogger("client")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
DEFAULT_INBOX_LIMIT = 100_000


class Client:
    """A trader's (or an operator's) connection to one gateway.

    ``endpoint`` is the gateway's address (``gateway.instances[].fix`` in the exchange's config);
    ``key_id`` and ``secret`` the account's API credentials. Keyword arguments:

    - ``timeout`` (default 5 s): how long a call waits for its answer unless given its own timeout;
      a call that waits longer raises :class:`client.session.ClientTimeout`.
    - ``heartbeat_s`` (default None: the gateway's choice): the HeartBtInt to ask for at Logon.
    - ``max_message_bytes`` (default 1 MiB): larger incoming frames are refused unread.
    - ``inbox_limit`` (default 100,000): unread messages kept; beyond it the oldest are dropped and
      counted in ``dropped``.
    - ``clordid_prefix`` (default random): see :class:`client.session.ClientSession`.
    - ``context``: the ZeroMQ context (default the process-wide one).
    """

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
        context: zmq.Context | None = None,
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
        self._context = context or zmq.Context.instance()
        self._socket = self._connect()
        self._last_sent = time.monotonic()
        self._closed = False

    def _connect(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def logon(self, *, timeout: float | None = None) -> Incoming:
        """Log on; returns the gateway's Logon. Raises :class:`client.session.LogonRefused` with the
        gateway's reason if it refuses, :class:`client.session.ClientTimeout` if it does not answer."""
        message = self.session.logon(heartbeat_s=self._requested_heartbeat_s)
        self.send(message)
        return self._await(LogonAnswer(message), timeout)

    def reconnect(self, *, timeout: float | None = None) -> list[str]:
        """A new connection and session after the old one failed (the gateway restarted, the network
        broke): log on again, then send again every order message never acknowledged, with its
        original ClOrdID, so that the exchange acts on each exactly once (a ClOrdID it already has
        gets the original outcome back). Returns the ClOrdIDs sent again."""
        if self._closed:
            raise ClientError("the client is closed")
        self._socket.close(linger=0)
        self._socket = self._connect()
        self._inbox = deque(m for m in self._inbox if not m.is_session_level)
        self.session.restart()
        self.logon(timeout=timeout)
        return self.resend()

    def resend(self) -> list[str]:
        """Send again, on this connection, every order request not acknowledged yet, with its original
        ClOrdID (after waiting too long for an answer: a command lost in a crash is then carried out,
        one already carried out is answered with its original outcome). Returns the ClOrdIDs."""
        resent = self.session.resend()
        for message in resent:
            self.send(message)
        return [str(m.get(Field.CL_ORD_ID.value, "")) for m in resent]

    def close(self, *, timeout: float | None = None) -> None:
        """Log out (waiting up to ``timeout`` for the gateway's Logout) and close the socket at once."""
        if self._closed:
            return
        try:
            if self.session.logged_on:
                message = self.session.logout()
                self.send(message)
                try:
                    self._await(PredicateAnswer(lambda m: m.is_type(MsgType.LOGOUT)), timeout)
                except ClientError:
                    pass  # closing anyway
        finally:
            self._closed = True
            self._socket.close(linger=0)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- orders -----------------------------------------------------------------------------------

    def place(
        self,
        symbol: str,
        side: str,
        *,
        qty: str | None = None,
        price: str | None = None,
        tif: str | None = None,
        post_only: bool = False,
        cash_qty: str | None = None,
        clordid: str | None = None,
    ) -> str:
        """Send a NewOrderSingle (see :meth:`ClientSession.new_order`); returns its ClOrdID."""
        message = self.session.new_order(symbol, side, qty=qty, price=price, tif=tif, post_only=post_only,
                                         cash_qty=cash_qty, clordid=clordid)
        self.send(message)
        return message[Field.CL_ORD_ID.value]

    def buy(self, symbol: str, qty: str, price: str, *, tif: str = "gtc", post_only: bool = False,
            clordid: str | None = None) -> str:
        """A limit buy of ``qty`` at ``price`` (decimal strings); ``tif`` "gtc" (default), "ioc" or
        "fok"; ``post_only`` refuses to take liquidity. Returns the ClOrdID."""
        return self.place(symbol, "buy", qty=qty, price=price, tif=tif, post_only=post_only, clordid=clordid)

    def sell(self, symbol: str, qty: str, price: str, *, tif: str = "gtc", post_only: bool = False,
             clordid: str | None = None) -> str:
        """A limit sell; see :meth:`buy`."""
        return self.place(symbol, "sell", qty=qty, price=price, tif=tif, post_only=post_only, clordid=clordid)

    def market_buy(self, symbol: str, qty: str | None = None, *, cash_qty: str | None = None,
                   tif: str = "ioc", clordid: str | None = None) -> str:
        """A market buy of ``qty`` base, or of as much as ``cash_qty`` quote buys. ``tif`` "ioc"
        (default) or "fok". Returns the ClOrdID."""
        return self.place(symbol, "buy", qty=qty, cash_qty=cash_qty, tif=tif, clordid=clordid)

    def market_sell(self, symbol: str, qty: str, *, tif: str = "ioc", clordid: str | None = None) -> str:
        """A market sell of ``qty`` base; see :meth:`market_buy`."""
        return self.place(symbol, "sell", qty=qty, tif=tif, clordid=clordid)

    def amend(self, orig_clordid: str | None = None, *, order_id: str | int | None = None,
              price: str | None = None, qty: str | None = None, symbol: str | None = None,
              side: str | None = None) -> str:
        """Change an open order's price and/or total quantity (OrderCancelReplaceRequest). Name the
        order by its ClOrdID or ``order_id``; see :meth:`ClientSession.replace`. For an order this
        client did not place, what is not given is first read from the order's status (one round
        trip; :class:`client.session.RequestRejected` if the exchange does not know the order).
        Returns the new ClOrdID."""
        if not self.session.knows(orig_clordid) and None in (symbol, price, qty):
            symbol, side, price, qty = amend_defaults(
                self.status(orig_clordid, order_id=order_id, symbol=symbol), symbol, side, price, qty)
        message = self.session.replace(orig_clordid, order_id=order_id, price=price, qty=qty,
                                       symbol=symbol, side=side)
        self.send(message)
        return message[Field.CL_ORD_ID.value]

    def cancel(self, orig_clordid: str | None = None, *, order_id: str | int | None = None,
               symbol: str | None = None) -> str:
        """Cancel an open order named by its ClOrdID or ``order_id``; returns the cancel's ClOrdID."""
        message = self.session.cancel(orig_clordid, order_id=order_id, symbol=symbol)
        self.send(message)
        return message[Field.CL_ORD_ID.value]

    def cancel_all(self, *, symbol: str | None = None) -> str:
        """Cancel every open order (of ``symbol``, or all); returns the request's ClOrdID, which its
        OrderMassCancelReport carries."""
        message = self.session.mass_cancel(symbol=symbol)
        self.send(message)
        return message[Field.CL_ORD_ID.value]

    def first_report(self, clordid: str, *, timeout: float | None = None) -> Incoming:
        """The first ExecutionReport (or OrderCancelReject, OrderMassCancelReport, session Reject)
        about ``clordid``; a refusal is returned, not raised (see ``Incoming.is_reject``)."""
        return self._await(ReportAnswer(clordid), timeout)

    # --- queries ------------------------------------------------------------------------------------

    def status(self, clordid: str | None = None, *, order_id: str | int | None = None,
               symbol: str | None = None, timeout: float | None = None) -> Incoming:
        """The order's current state (an ExecutionReport with ExecType I)."""
        message = self.session.order_status(clordid, order_id=order_id, symbol=symbol)
        self.send(message)
        return self._await(StatusAnswer(message), timeout)

    def open_orders(self, *, symbol: str | None = None, timeout: float | None = None) -> list[Incoming]:
        """An ExecutionReport per open order (of ``symbol``, or all)."""
        message = self.session.mass_status(symbol=symbol)
        self.send(message)
        return self._await(MassStatusAnswer(message), timeout)

    def balances(self, *, account: int | None = None, currency: str | None = None,
                 timeout: float | None = None) -> dict[str, Balance]:
        """The account's balances: currency -> Balance(available, frozen), decimal strings. An admin
        session names the ``account``; ``currency`` asks for one asset only."""
        message = self.session.balance_request(account=account, currency=currency)
        self.send(message)
        return self._await(BalanceAnswer(message), timeout)

    # --- admin (admin sessions only) ----------------------------------------------------------------

    def admin_create_account(self, *, request_id: str | None = None, timeout: float | None = None) -> NewAccount:
        """Create an account; returns its id and its API key id and secret (shown this once)."""
        message = self.session.admin_request("create_account", request_id=request_id)
        self.send(message)
        return new_account(self._await(AdminAnswer(message), timeout))

    def admin_deposit(self, account: int, currency: str, amount: str, *, request_id: str | None = None,
                      timeout: float | None = None) -> Incoming:
        """Credit ``amount`` (decimal string) of ``currency`` to ``account``. ``request_id`` makes a
        retry safe: the same id is not applied twice."""
        message = self.session.admin_request("deposit", account=account, currency=currency, amount=amount,
                                             request_id=request_id)
        self.send(message)
        return self._await(AdminAnswer(message), timeout)

    def admin_withdraw(self, account: int, currency: str, amount: str, *, request_id: str | None = None,
                       timeout: float | None = None) -> Incoming:
        """Debit ``amount`` of ``currency`` from ``account``'s available balance; see :meth:`admin_deposit`."""
        message = self.session.admin_request("withdraw", account=account, currency=currency, amount=amount,
                                             request_id=request_id)
        self.send(message)
        return self._await(AdminAnswer(message), timeout)

    # --- messages ---------------------------------------------------------------------------------

    def send(self, message: Mapping[str, Any], *, timeout: float | None = None) -> None:
        """Send one message as it is (built by ``self.session``)."""
        if self._closed:
            raise ClientError("the client is closed")
        frame = encode(dict(message))
        try:
            self._socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            wait = self.timeout if timeout is None else timeout
            if not self._socket.poll(int(wait * 1000), zmq.POLLOUT):
                raise ClientTimeout(f"cannot send to {self.endpoint} within {wait}s (gateway unreachable?)") from None
            self._socket.send(frame, zmq.NOBLOCK)
        self._last_sent = time.monotonic()

    def next_message(self, timeout: float | None = None) -> Incoming | None:
        """The next message not taken by a call that waited for it (Heartbeats and TestRequests are
        handled here and not returned); None after ``timeout`` seconds (default: the client's)."""
        return self._next(self._deadline(timeout))

    def _next(self, deadline: float | None) -> Incoming | None:
        if self._inbox:
            return self._inbox.popleft()
        while (incoming := self._receive(deadline)) is not None and incoming.is_session_level:
            pass
        return incoming

    def messages(self, *, timeout: float | None = None) -> Iterator[Incoming]:
        """Messages as they come, until none arrives for ``timeout`` seconds (default: the client's)."""
        while (incoming := self.next_message(timeout)) is not None:
            yield incoming

    def __iter__(self) -> Iterator[Incoming]:
        """Every message as it comes, waiting as long as it takes; ends after the gateway's Logout."""
        while True:
            incoming = self._next(None)
            if incoming is None:  # pragma: no cover - only with a deadline
                return
            yield incoming
            if incoming.is_type(MsgType.LOGOUT):
                return

    def wait_for(self, predicate: Callable[[Incoming], bool], *, timeout: float | None = None) -> Incoming:
        """The first message (kept or new) for which ``predicate`` is true; the messages before it
        stay for :meth:`next_message`. Raises ClientTimeout, or Disconnected on the gateway's Logout."""
        return self._await(PredicateAnswer(predicate), timeout)

    # --- internals ----------------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _await(self, answer: Answer, timeout: float | None) -> Any:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        if self._inbox:
            kept = deque(m for m in self._inbox if answer.done or not answer.offer(m))
            self._inbox = kept
        while not answer.done:
            incoming = self._receive(deadline)
            if incoming is None:
                raise ClientTimeout(f"{answer.what} did not come from {self.endpoint} within {wait}s")
            if answer.offer(incoming):
                continue
            self._keep(incoming)
            if incoming.is_type(MsgType.LOGOUT):
                raise Disconnected(incoming.text)
        return answer.result()

    def _keep(self, incoming: Incoming) -> None:
        if incoming.is_session_level:
            return
        if len(self._inbox) >= self._inbox_limit:
            self._inbox.popleft()
            self.dropped += 1
        self._inbox.append(incoming)

    def _heartbeat_interval(self) -> float | None:
        return self.session.heartbeat_s if self.session.logged_on and self.session.heartbeat_s else None

    def _receive(self, deadline: float | None) -> Incoming | None:
        """One message from the socket (sending owed and due heartbeats meanwhile), or None at ``deadline``."""
        if self._closed:
            raise ClientError("the client is closed")
        while True:
            now = time.monotonic()
            wait = None if deadline is None else max(deadline - now, 0.0)
            interval = self._heartbeat_interval()
            if interval is not None:
                due = self._last_sent + interval - now
                if due <= 0:
                    self.send(self.session.heartbeat())
                    due = interval
                wait = due if wait is None else min(wait, due)
            if self._socket.poll(None if wait is None else math.ceil(wait * 1000), zmq.POLLIN):
                frame = self._socket.recv(zmq.NOBLOCK)
                try:
                    incoming = self.session.receive_frame(frame, max_bytes=self._max_message_bytes)
                except DecodeError as exc:
                    log.warning("ignored an undecodable frame from %s: %s", self.endpoint, exc)
                    continue
                for owed in self.session.data_to_send():
                    self.send(owed)
                if incoming.duplicate:
                    self.duplicates += 1
                    continue
                return incoming
            if deadline is not None and time.monotonic() >= deadline:
                return None
