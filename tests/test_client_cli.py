"""The command-line tool and the operator bootstrap, run as subprocesses against the fake gateway of
tests/test_client.py (which, for the bootstrap, reads the real credentials store)."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import default_document
from common.credentials import CredentialStore
from tests.harness import to_toml
from tests.test_client import (
    ADMIN_KEY,
    ADMIN_SECRET,
    OTHER_SECRET,
    TRADER_KEY,
    TRADER_SECRET,
    FakeGateway,
    Key,
)

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60  # a subprocess that takes this long has hung


def cli(*arguments: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "client.cli", *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def write_config(tmp_path: Path, endpoint: str) -> Path:
    document = default_document()
    document["gateway"]["instances"] = [{"id": 1, "name": "gw-1", "fix": endpoint}]
    document["paths"] = {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "log")}
    path = tmp_path / "exchange.toml"
    path.write_text(to_toml(document))
    return path


@pytest.fixture
def gateway(tmp_path):
    fake = FakeGateway(f"ipc://{tmp_path}/fix.sock")
    yield fake
    fake.stop()


def as_trader(gateway: FakeGateway, *arguments: str, **kwargs) -> subprocess.CompletedProcess:
    return cli("--endpoint", gateway.endpoint, "--key", TRADER_KEY, "--secret", TRADER_SECRET, *arguments, **kwargs)


def as_admin(gateway: FakeGateway, *arguments: str) -> subprocess.CompletedProcess:
    return cli("--endpoint", gateway.endpoint, "--key", ADMIN_KEY, "--secret", ADMIN_SECRET, *arguments)


# --- the command-line tool ---------------------------------------------------------------------------


def test_logon_prints_the_account_and_exits_zero(gateway):
    done = as_trader(gateway, "logon")
    assert done.returncode == 0, done.stderr
    assert f"with key {TRADER_KEY} (account 1), heartbeat 30s" in done.stdout
    assert gateway.received_types() == ["A", "5"]


def test_a_limit_buy_prints_its_report_and_the_order_is_then_listed(gateway):
    done = as_trader(gateway, "buy", "BTC-USDT", "0.5", "65000", "--settle", "0.05")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("new") and "BTC-USDT buy" in line and "0.5 @ 65000" in line and "[new]" in line
    clordid = line.split()[1]
    listed = as_trader(gateway, "orders")
    assert listed.returncode == 0 and clordid in listed.stdout
    status = as_trader(gateway, "status", clordid)
    assert status.returncode == 0 and status.stdout.startswith("order status") and clordid in status.stdout


def test_a_market_buy_prints_one_line_per_report_until_filled(gateway):
    done = as_trader(gateway, "buy", "BTC-USDT", "0.1")
    assert done.returncode == 0, done.stderr
    new, trade = done.stdout.splitlines()
    assert new.startswith("new") and "at market" in new
    assert trade.startswith("trade") and "filled 0.1 @ 100 (taker) fee 0.05 USDT" in trade and "[filled]" in trade
    order = gateway.wait_received(lambda m: m["MsgType"] == "D")
    assert order["OrdType"] == "1" and order["TimeInForce"] == "3" and "Price" not in order


def test_a_market_buy_by_quote_amount_sends_cash_order_qty(gateway):
    done = as_trader(gateway, "buy", "BTC-USDT", "--cash", "250")
    assert done.returncode == 0, done.stderr
    assert gateway.wait_received(lambda m: m["MsgType"] == "D")["CashOrderQty"] == "250"


def test_a_refused_order_exits_one_with_the_reason(gateway):
    done = as_trader(gateway, "sell", "DOGE-USDT", "1", "1")
    assert done.returncode == 1
    assert done.stdout.startswith("rejected") and "UNKNOWN_SYMBOL: unknown symbol 'DOGE-USDT'" in done.stdout


def test_amend_then_cancel_then_cancel_all_by_clordid(gateway):
    placed = as_trader(gateway, "sell", "ETH-USDT", "2", "3000", "--post-only", "--settle", "0.05")
    clordid = placed.stdout.split()[1]
    assert gateway.wait_received(lambda m: m["MsgType"] == "D")["ExecInst"] == "6"
    amended = as_trader(gateway, "amend", clordid, "--price", "3100", "--qty", "2")
    assert amended.returncode == 0 and amended.stdout.startswith("replaced") and "2 @ 3100" in amended.stdout
    new_clordid = amended.stdout.split()[1]
    cancelled = as_trader(gateway, "cancel", new_clordid, "--symbol", "ETH-USDT")
    assert cancelled.returncode == 0 and cancelled.stdout.startswith("canceled")
    assert as_trader(gateway, "orders").stdout.strip() == "no open orders"
    everything = as_trader(gateway, "cancel-all")
    assert everything.returncode == 0 and everything.stdout.startswith("cancelled 0 order(s)")


def test_cancel_all_prints_each_cancelled_order_then_the_count(gateway):
    for price in ("10", "11"):
        as_trader(gateway, "buy", "BTC-USDT", "1", price, "--settle", "0")
    done = as_trader(gateway, "cancel-all", "--symbol", "BTC-USDT")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["canceled", "canceled", "cancelled"]
    assert lines[-1].startswith("cancelled 2 order(s)")


def test_cancelling_or_asking_for_an_unknown_order_exits_one(gateway):
    cancelled = as_trader(gateway, "cancel", "nope-1")
    assert cancelled.returncode == 1 and "cancel rejected" in cancelled.stdout and "UNKNOWN_ORDER" in cancelled.stdout
    status = as_trader(gateway, "status", "--order-id", "999")
    assert status.returncode == 1 and "UNKNOWN_ORDER" in status.stdout


def test_balances_prints_one_line_per_currency(gateway):
    done = as_trader(gateway, "balances")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["BTC   available 2  frozen 0", "USDT  available 100000  frozen 0"]


def test_admin_creates_an_account_into_a_private_credentials_file_the_tool_then_uses(gateway, tmp_path):
    path = tmp_path / "new.json"
    created = as_admin(gateway, "admin", "create-account", "--write", str(path))
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("account 3  key_id ") and "secret " in created.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["account"] == 3 and document["endpoint"] == gateway.endpoint and document["role"] == "trader"
    deposited = as_admin(gateway, "admin", "deposit", "3", "USDT", "700")
    assert deposited.returncode == 0 and deposited.stdout.strip() == "deposit of 700 USDT to account 3: ok"
    too_much = as_admin(gateway, "admin", "withdraw", "3", "USDT", "701")
    assert too_much.returncode == 1 and "INSUFFICIENT_FUNDS" in too_much.stderr
    balances = cli("--credentials", str(path), "balances")
    assert balances.returncode == 0 and balances.stdout.strip() == "USDT  available 700  frozen 0"


def test_an_admin_command_with_a_trader_key_exits_one(gateway):
    done = as_trader(gateway, "admin", "deposit", "1", "USDT", "1")
    assert done.returncode == 1 and "admin" in done.stderr


def test_credentials_and_endpoint_may_come_from_the_environment(gateway, tmp_path):
    done = cli("logon", env={"EXCHANGE_KEY_ID": TRADER_KEY, "EXCHANGE_SECRET": TRADER_SECRET,
                             "EXCHANGE_ENDPOINT": gateway.endpoint})
    assert done.returncode == 0, done.stderr
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"endpoint": gateway.endpoint, "key_id": TRADER_KEY, "secret": TRADER_SECRET}))
    assert cli("logon", env={"EXCHANGE_CREDENTIALS": str(path)}).returncode == 0


def test_the_endpoint_defaults_to_the_configurations_first_gateway(gateway, tmp_path):
    config = write_config(tmp_path, gateway.endpoint)
    done = cli("--key", TRADER_KEY, "--secret", TRADER_SECRET, "logon", env={"EXCHANGE_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr


def test_a_wrong_secret_exits_one_with_the_gateways_reason(gateway):
    done = cli("--endpoint", gateway.endpoint, "--key", TRADER_KEY, "--secret", OTHER_SECRET, "balances")
    assert done.returncode == 1 and done.stderr == "error: logon refused: unknown key or bad signature\n"


@pytest.mark.parametrize(
    "arguments, reason",
    [
        (("balances",), "no credentials"),
        (("--key", "k", "--secret", "00", "buy", "BTC-USDT"), "needs a QTY"),
        (("--key", "k", "--secret", "00", "buy", "BTC-USDT", "1", "--cash", "5"), "--cash"),
        (("--key", "k", "--secret", "00", "cancel"), "ClOrdID or --order-id"),
        (("--key", "k", "--secret", "00", "amend", "c-1"), "--price and/or --qty"),
        (("--credentials", "/nonexistent/creds.json", "balances"), "cannot read credentials file"),
    ],
)
def test_usage_errors_exit_two_with_the_reason(arguments, reason):
    done = cli("--endpoint", "ipc:///nonexistent.sock", *arguments)
    assert done.returncode == 2 and reason in done.stderr


def test_an_unreachable_gateway_exits_three(tmp_path):
    done = cli("--endpoint", f"ipc://{tmp_path}/nobody.sock", "--key", TRADER_KEY, "--secret", TRADER_SECRET,
               "--timeout", "0.3", "balances")
    assert done.returncode == 3 and "an answer to the Logon did not come" in done.stderr


# --- the bootstrap --------------------------------------------------------------------------------------


def bootstrap(config: Path, *arguments: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    environment["EXCHANGE_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "client.bootstrap", *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def store_backed_gateway(tmp_path):
    """The fake gateway, knowing the keys of the real credentials store in the configuration's data_dir."""
    endpoint = f"ipc://{tmp_path}/fix.sock"
    config = write_config(tmp_path, endpoint)
    from common.config import load_config

    store = CredentialStore.open(load_config(config))

    def lookup(key_id: str) -> Key | None:
        found = store.lookup(key_id)
        return None if found is None else Key(found.secret, None if found.is_admin else found.account, found.role)

    fake = FakeGateway(endpoint, keys=lookup)
    yield fake, config
    fake.stop()
    store.close()


def test_bootstrap_creates_an_admin_key_and_funded_demo_accounts_once(store_backed_gateway, tmp_path):
    gateway, config = store_backed_gateway
    first = bootstrap(config)
    assert first.returncode == 0, first.stderr
    data = tmp_path / "data"
    admin = json.loads((data / "admin.json").read_text())
    assert admin["role"] == "admin" and admin["account"] is None and admin["endpoint"] == gateway.endpoint
    for n in (1, 2):
        path = data / f"demo-{n}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text())["role"] == "trader"
    assert stat.S_IMODE((data / "admin.json").stat().st_mode) == 0o600
    admin_requests = [m for m in gateway.received if m["MsgType"] == "UA"]
    assert [(m["AdminAction"], m["AdminReqID"], m.get("Currency"), m.get("Amount")) for m in admin_requests] == [
        ("create_account", "bootstrap-demo-1", None, None),
        ("deposit", "bootstrap-demo-1-deposit-USDT", "USDT", "100000"),
        ("deposit", "bootstrap-demo-1-deposit-BTC", "BTC", "2"),
        ("deposit", "bootstrap-demo-1-deposit-ETH", "ETH", "20"),
        ("create_account", "bootstrap-demo-2", None, None),
        ("deposit", "bootstrap-demo-2-deposit-USDT", "USDT", "100000"),
        ("deposit", "bootstrap-demo-2-deposit-BTC", "BTC", "2"),
        ("deposit", "bootstrap-demo-2-deposit-ETH", "ETH", "20"),
    ]
    assert f"--credentials {data / 'demo-1.json'} balances" in first.stdout

    # The printed commands work as printed.
    command = next(line.strip() for line in first.stdout.splitlines() if line.strip().endswith("balances"))
    done = subprocess.run(shlex.split(command), cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0 and "USDT  available 100000" in done.stdout

    # A later start changes nothing and talks to nobody.
    before = len(gateway.received)
    again = bootstrap(config)
    assert again.returncode == 0, again.stderr
    assert json.loads((data / "admin.json").read_text()) == admin
    assert len(gateway.received) == before and str(data / "demo-2.json") in again.stdout


def test_bootstrap_waits_for_a_gateway_that_starts_later(tmp_path):
    endpoint = f"ipc://{tmp_path}/fix.sock"
    config = write_config(tmp_path, endpoint)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    environment["EXCHANGE_CONFIG"] = str(config)
    process = subprocess.Popen([sys.executable, "-m", "client.bootstrap", "--fund", "BTC=1"], cwd=ROOT,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        admin_file = tmp_path / "data" / "admin.json"
        from tests.harness import poll

        poll(admin_file.exists, timeout=RUN_TIMEOUT, what="the admin credentials")
        from common.config import load_config

        with CredentialStore.open(load_config(config)) as store:
            admin = json.loads(admin_file.read_text())
            found = store.lookup(admin["key_id"])
            assert found is not None and found.is_admin and found.secret == admin["secret"]
            gateway = FakeGateway(endpoint, keys={admin["key_id"]: Key(admin["secret"], None, "admin")})
            try:
                out, err = process.communicate(timeout=RUN_TIMEOUT)
            finally:
                gateway.stop()
        assert process.returncode == 0, err
        deposits = [m for m in gateway.received if m.get("AdminAction") == "deposit"]
        assert [(m["Currency"], m["Amount"]) for m in deposits] == [("BTC", "1"), ("BTC", "1")]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(RUN_TIMEOUT)


def test_bootstrap_gives_up_with_a_reason_when_no_gateway_answers(tmp_path):
    config = write_config(tmp_path, f"ipc://{tmp_path}/nobody.sock")
    done = bootstrap(config, "--timeout", "1")
    assert done.returncode == 1 and "did not accept the admin Logon" in done.stderr
    assert (tmp_path / "data" / "admin.json").exists()


def test_bootstrap_refuses_funds_in_an_unknown_asset(tmp_path):
    config = write_config(tmp_path, f"ipc://{tmp_path}/nobody.sock")
    done = bootstrap(config, "--fund", "DOGE=5")
    assert done.returncode == 1 and "unknown asset 'DOGE'" in done.stderr
