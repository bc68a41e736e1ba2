"""Fault injection through the real processes: orders from several clients while processes die.

    python -m tests.faults --faults 60           # the long run (on demand); prints a JSON summary
    python -m tests.faults --faults 6 --seed 3   # what CI runs (tests/test_fault_injection.py)

The exchange runs under supervisord (tests/harness.Exchange) with frequent engine snapshots. Traders
(client.sync.Client, one connection each) place crossing limit orders at a steady pace; a driver kills
a random program (the sequencer, the engine or a gateway) with SIGKILL at random moments, waiting each
time until supervisord has it running again. The traders behave as the client library asks: after a
Logout, or a Reject saying the gateway has no session for them, they ``reconnect()`` (which sends again
every order request never acknowledged, with its ClOrdID); an order unanswered for a while is sent
again with ``resend()``.

Afterwards (``check``):

1. every order the exchange acknowledged (any ExecutionReport about it reached the client) is in the
   journal exactly once, by (account, ClOrdID);
2. no fill was delivered twice (by ExecID), and no order got more fills than the engine says it has;
3. every client's view matches the engine's: each order's cumulative quantity from the fills the
   client received equals the engine's (OrderStatusRequest), except for fills that were published while
   the client's gateway was down, which the status answer then gives (counted as ``missed_fills``);
4. balances are conserved: per currency, what all accounts (traders and the fee account) hold equals
   what was deposited;
5. the engine's state hash equals that of a fresh engine replaying the whole journal.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from client.session import ClientTimeout, Disconnected, RequestRejected  # noqa: E402
from client.sync import Client  # noqa: E402
from common.config import Durability, load_config  # noqa: E402
from common.journal import Journal  # noqa: E402
from common.protocol import Field, MsgType, SessionRejectReason  # noqa: E402
from common.records import CommandKind  # noqa: E402
from engine.service import EngineService  # noqa: E402
from tests.harness import Exchange, poll  # noqa: E402

PROGRAMS = ("sequencer", "engine", "gateway:gateway-0", "gateway:gateway-1")
SYMBOL = "BTC-USDT"
FUNDS = {"USDT": Decimal("10000000"), "BTC": Decimal("1000")}
ORDERS_PER_S = 40  # all traders together
RESEND_AFTER_S = 3.0  # an order unanswered this long is sent again
RESTART_TIMEOUT_S = 90.0  # a killed program must be running again within this
SETTLE_TIMEOUT_S = 120.0  # after the last fault, every order must be answered within this
CLIENT_TIMEOUT_S = 5.0
RECONNECT_TIMEOUT_S = 2.0


@dataclass
class Order:
    side: str
    price: str
    qty: Decimal
    sent_at: float
    acknowledged: bool = False
    filled: Decimal = Decimal(0)


@dataclass
class Trader:
    account: int
    client: Client
    orders: dict[str, Order] = field(default_factory=dict)
    fill_ids: Counter = field(default_factory=Counter)
    reconnects: int = 0
    resends: int = 0


class FaultRun:
    def __init__(self, exchange: Exchange, *, traders: int, seed: int, log=print):
        self.exchange = exchange
        self.random = random.Random(seed)
        self.log = log
        self.traders: list[Trader] = []
        self.faults: list[tuple[float, str]] = []
        self.deposits: Counter = Counter()
        admin = exchange.admin_credentials()
        self.admin = Client(exchange.fix_endpoint(1), admin["key_id"], admin["secret"], timeout=CLIENT_TIMEOUT_S)
        self.admin.logon()
        gateways = len(exchange.fix_gateways)
        for index in range(traders):
            created = self.admin.admin_create_account(request_id=f"faults-{uuid.uuid4().hex}")
            for currency, amount in FUNDS.items():
                self.admin.admin_deposit(created.account, currency, str(amount), request_id=f"dep-{uuid.uuid4().hex}")
                self.deposits[currency] += amount
            client = Client(exchange.fix_endpoint(1 + index % gateways), created.key_id, created.secret,
                            timeout=CLIENT_TIMEOUT_S)
            client.logon()
            self.traders.append(Trader(created.account, client))

    # --- traffic --------------------------------------------------------------------------------------

    def place(self) -> None:
        trader = self.random.choice(self.traders)
        side = self.random.choice(("buy", "sell"))
        price = str(50000 + self.random.randint(-3, 3))
        qty = Decimal(self.random.choice(("0.001", "0.002", "0.003")))
        place = trader.client.buy if side == "buy" else trader.client.sell
        try:
            clordid = place(SYMBOL, str(qty), price)
        except zmq.ZMQError:
            return
        trader.orders[clordid] = Order(side, price, qty, time.monotonic())

    def pump(self, trader: Trader) -> None:
        """Everything the trader's connection holds; reconnect when the gateway lost the session."""
        while True:
            try:
                message = trader.client.next_message(timeout=0)
            except Exception:  # the connection failed under us: start a new one
                self.reconnect(trader)
                return
            if message is None:
                return
            lost_session = message.is_type(MsgType.LOGOUT) or (
                message.is_type(MsgType.REJECT)
                and message.get(Field.SESSION_REJECT_REASON) == SessionRejectReason.COMP_ID_PROBLEM)
            if lost_session:
                self.reconnect(trader)
                continue
            if not message.is_type(MsgType.EXECUTION_REPORT) or message.clordid not in trader.orders:
                continue
            order = trader.orders[message.clordid]
            order.acknowledged = True
            if message.get(Field.EXEC_TYPE) == "F":
                trader.fill_ids[message.get(Field.EXEC_ID)] += 1
                order.filled += Decimal(message.get(Field.LAST_QTY))

    def reconnect(self, trader: Trader) -> None:
        try:
            trader.client.reconnect(timeout=RECONNECT_TIMEOUT_S)
            trader.reconnects += 1
        except Exception:  # the gateway is not back yet: the next pump tries again
            trader.client.session.logged_on = False

    def resend_stale(self, trader: Trader) -> None:
        now = time.monotonic()
        stale = [o for c, o in trader.orders.items() if not o.acknowledged and now - o.sent_at > RESEND_AFTER_S
                 and c in trader.client.session.unacknowledged]
        if not stale:
            return
        if not trader.client.session.logged_on:
            self.reconnect(trader)
            return
        try:
            trader.client.resend()
            trader.resends += 1
        except Exception:
            return
        for order in stale:
            order.sent_at = now

    # --- faults ---------------------------------------------------------------------------------------

    def inject(self) -> tuple[str, int]:
        """Kill a random program; (its name, the pid killed)."""
        program = self.random.choice(PROGRAMS[: 2 + len(self.exchange.fix_gateways)])
        pid = self.exchange.program_pid(program)
        os.kill(pid, signal.SIGKILL)
        self.faults.append((time.monotonic(), program))
        self.log(f"fault {len(self.faults)}: killed {program} (pid {pid})")
        return program, pid

    def run(self, faults: int, *, min_gap_s: float = 1.0, max_gap_s: float = 4.0) -> None:
        period = 1.0 / ORDERS_PER_S
        next_order = time.monotonic()
        for _ in range(faults):
            gap_end = time.monotonic() + self.random.uniform(min_gap_s, max_gap_s)
            while time.monotonic() < gap_end:
                if time.monotonic() >= next_order:
                    self.place()
                    next_order += period
                for trader in self.traders:
                    self.pump(trader)
                    self.resend_stale(trader)
                time.sleep(0.002)
            program, killed = self.inject()
            killed_at = time.monotonic()
            while not self.exchange.restarted(program, killed) and time.monotonic() - killed_at < RESTART_TIMEOUT_S:
                for trader in self.traders:
                    self.pump(trader)
                time.sleep(0.2)
        self.settle()

    def settle(self) -> None:
        """Stop placing; pump, reconnect and resend until every order is answered."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            waiting = 0
            for trader in self.traders:
                self.pump(trader)
                self.resend_stale(trader)
                waiting += sum(1 for o in trader.orders.values() if not o.acknowledged)
            if not waiting:
                return
            time.sleep(0.05)
        raise AssertionError(f"{waiting} orders still unanswered {SETTLE_TIMEOUT_S} s after the last fault")

    # --- checks ---------------------------------------------------------------------------------------

    def check(self) -> dict:
        result: dict = {"faults": Counter(program for _, program in self.faults),
                        "orders": sum(len(t.orders) for t in self.traders),
                        "reconnects": sum(t.reconnects for t in self.traders),
                        "resends": sum(t.resends for t in self.traders)}
        acknowledged = {(t.account, c) for t in self.traders for c, o in t.orders.items() if o.acknowledged}
        result["acknowledged"] = len(acknowledged)

        # 5 first, while the exchange runs: the engine's state against a replay of the whole journal.
        head, live_hash = self.engine_state()
        config = load_config(self.exchange.config_path)
        replayed = EngineService(config)
        journaled: Counter = Counter()
        with Journal(config.paths.journal_dir, map_bytes=1 << 20, durability=Durability.PROCESS,
                     readonly=True) as journal:
            for batch in journal.iterate(chunk=65_536):
                if batch.first > head:
                    break
                if batch.last > head:
                    batch = type(batch)(batch.first, batch.records[: head - batch.first + 1],
                                        batch.envelopes[: head - batch.first + 1])
                replayed.apply(batch, report=False)
                new = int(CommandKind.NEW)
                for kind, account, envelope in zip(batch.records["kind"].tolist(), batch.records["account"].tolist(),
                                                   batch.envelopes):
                    if kind == new:
                        journaled[(account, envelope.clordid)] += 1
        assert replayed.engine.state_hash() == live_hash, "the engine's state differs from a replay of the journal"
        replayed.engine.validate()
        result["journal_head"] = head

        # 1. acknowledged orders journaled exactly once
        missing = [key for key in acknowledged if journaled.get(key, 0) == 0]
        twice = [key for key in acknowledged if journaled.get(key, 0) > 1]
        assert not missing, f"acknowledged but not journaled: {missing[:5]}"
        assert not twice, f"journaled more than once: {twice[:5]}"
        result["journaled_once"] = len(acknowledged)

        # 2 and 3. fills: none twice; each order's fills against the engine's. A gateway killed last
        # may have ended sessions whose clients have not sent anything since: log on again first.
        for trader in self.traders:
            poll(lambda: self._fresh_session(trader), timeout=RESTART_TIMEOUT_S, what="a new session")
            self.pump(trader)
        missed = 0
        for trader in self.traders:
            doubled = [exec_id for exec_id, count in trader.fill_ids.items() if count > 1]
            assert not doubled, f"fills delivered twice: {doubled[:5]}"
            for clordid, order in trader.orders.items():
                status = self.ask(trader.client, lambda c: c.status(clordid))
                cum = Decimal(status.get(Field.CUM_QTY, "0"))
                assert order.filled <= cum <= order.qty, (clordid, order.filled, cum)
                if order.filled < cum:
                    missed += 1
        result["missed_fills"] = missed

        # 4. balances conserved
        held: Counter = Counter()
        for trader in self.traders:
            for currency, balance in self.ask(trader.client, lambda c: c.balances()).items():
                held[currency] += Decimal(balance.available) + Decimal(balance.frozen)
        fee_account = config.fees.fee_account
        for currency, balance in self.ask(self.admin, lambda c: c.balances(account=fee_account)).items():
            held[currency] += Decimal(balance.available) + Decimal(balance.frozen)
        for currency, deposited in self.deposits.items():
            assert held[currency] == deposited, (currency, held[currency], deposited)
        result["conserved"] = True
        return result

    def ask(self, client: Client, request):
        """``request(client)``, logging on again first if a killed gateway took the session."""
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:
                return request(client)
            except (RequestRejected, Disconnected, ClientTimeout):
                if time.monotonic() > deadline:
                    raise
                try:
                    client.reconnect(timeout=RECONNECT_TIMEOUT_S)
                except Exception:
                    time.sleep(0.2)

    def _fresh_session(self, trader: Trader) -> bool:
        try:
            trader.client.reconnect(timeout=RECONNECT_TIMEOUT_S)
            return True
        except Exception:
            return False

    def engine_state(self) -> tuple[int, str]:
        context = zmq.Context.instance()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.exchange.document["engine"]["queries"])
        try:
            sock.send(msgpack.packb({"id": 1, "q": "state"}))
            if not sock.poll(CLIENT_TIMEOUT_S * 1000):
                raise AssertionError("the engine did not answer the state query")
            reply = msgpack.unpackb(sock.recv(), raw=False)
        finally:
            sock.close()
        return reply["head"], reply["state_hash"]

    def close(self) -> None:
        for trader in self.traders:
            try:
                trader.client.close(timeout=1)
            except Exception:
                pass
        try:
            self.admin.close(timeout=1)
        except Exception:
            pass


def fault_exchange() -> Exchange:
    """Two gateways, and snapshots often enough that restarts start from one."""

    def configure(document: dict) -> None:
        document["engine"].update(snapshot_every_commands=200, snapshot_every_s=2, snapshots_kept=3)

    return Exchange(gateways=2, configure=configure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=60)
    parser.add_argument("--traders", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    started = time.monotonic()
    with fault_exchange() as exchange:
        run = FaultRun(exchange, traders=args.traders, seed=args.seed, log=lambda text: print(text, file=sys.stderr))
        try:
            run.run(args.faults)
            result = run.check()
        finally:
            run.close()
    result.update(seed=args.seed, elapsed_s=round(time.monotonic() - started, 1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
