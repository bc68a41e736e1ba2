"""The trader's side of the exchange: a client library for the FIX-like protocol, and the tools on it.

- ``client.session``: the protocol state, pure (messages in, messages out, no sockets).
- ``client.sync.Client``: a blocking connection (scripts, the command line).
- ``client.aio.AsyncClient``: the same calls for asyncio programs.
- ``python -m client.cli``: the command-line tool (logon, buy, sell, amend, cancel, status, orders,
  balances, and the operators' ``admin`` commands).
- ``python -m client.bootstrap``: the operator's first step (admin key, demo accounts), run by ``make run``.

The contract they implement is docs/protocol.md. Only ``common/`` is imported from the exchange.
"""

from client.session import (
    Balance,
    ClientError,
    ClientSession,
    ClientTimeout,
    Disconnected,
    Incoming,
    LogonRefused,
    NewAccount,
    RequestRejected,
    SessionUsageError,
)

__all__ = [
    "Balance",
    "ClientError",
    "ClientSession",
    "ClientTimeout",
    "Disconnected",
    "Incoming",
    "LogonRefused",
    "NewAccount",
    "RequestRejected",
    "SessionUsageError",
]
