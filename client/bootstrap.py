"""The operator's first step: an admin key, and demo accounts to try the exchange with.

    python -m client.bootstrap [--config FILE] [--timeout SECONDS] [--fund ASSET=AMOUNT ...]

``make run`` runs this on every start (supervisord's ``bootstrap`` program); it is idempotent:

1. If ``data_dir/admin.json`` does not hold a key the credentials store knows as an admin key, it
   creates one (``common.credentials``) and writes the file (mode 0600). Secrets are always fresh.
2. If the demo credentials files ``data_dir/demo-<n>.json`` all exist, it prints where they are and how
   to use them, and exits 0 (a later start).
3. Otherwise (the first start) it waits until the first gateway accepts the admin Logon, creates the
   demo accounts with admin requests, funds them (by default 100000 USDT, 2 BTC and 20 ETH each, for
   those of these assets the configuration has; ``--fund`` replaces the list), writes their files
   (mode 0600) and prints how to use them. Every admin request has a fixed AdminReqID
   (``bootstrap-demo-<n>``, ``bootstrap-demo-<n>-deposit-<ASSET>``), so a bootstrap interrupted half-way
   and run again gets the same accounts and never deposits twice, and a request left unanswered is
   simply sent again.

A credentials file is JSON: ``{"endpoint", "key_id", "secret", "account", "role"}`` (``account`` is
null for the admin key, which has no trading account). ``python -m client.cli --credentials FILE``
reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from client.session import ClientError, ClientTimeout, LogonRefused, NewAccount
from client.sync import DEFAULT_TIMEOUT_S as CLIENT_TIMEOUT_S, Client
from common.config import ConfigError, ExchangeConfig, load_config
from common.fixedpoint import FixedPointError, amount_to_units, notional_units, ticks_to_price

CREDENTIALS_FILE_MODE = 0o600
ADMIN_FILE = "admin.json"
DEMO_ACCOUNTS = 2
DEMO_FUNDS = {"USDT": "100000", "BTC": "2", "ETH": "20"}
DEFAULT_TIMEOUT_S = 300.0  # a first start compiles the engine (about a minute on a small machine)
LOGON_RETRY_S = 0.5  # between Logon attempts while the gateway is not up yet
ADMIN_ATTEMPT_S = 10.0  # an admin request unanswered this long is sent again (same AdminReqID)


# --- credentials files --------------------------------------------------------------------------------


def write_credentials_file(path: Path, *, endpoint: str, key_id: str, secret: str, account: int | None,
                           role: str) -> None:
    """Write a credentials file atomically, readable by its owner only (0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"endpoint": endpoint, "key_id": key_id, "secret": secret, "account": account, "role": role}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, CREDENTIALS_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, CREDENTIALS_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class CredentialsFileError(ValueError):
    """A credentials file that cannot be used; the message says which and why."""


def read_credentials_file(path: Path) -> dict[str, Any]:
    """The fields of a credentials file; ``key_id`` and ``secret`` are required."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CredentialsFileError(f"cannot read credentials file {str(path)!r}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CredentialsFileError(f"credentials file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CredentialsFileError(f"credentials file {str(path)!r} must hold a JSON object")
    for key in ("key_id", "secret"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise CredentialsFileError(f"credentials file {str(path)!r} has no {key!r}")
    return document


# --- the bootstrap --------------------------------------------------------------------------------------


def demo_path(data_dir: Path, n: int) -> Path:
    return data_dir / f"demo-{n}.json"


def ensure_admin_key(config: ExchangeConfig, data_dir: Path, endpoint: str) -> dict[str, Any]:
    """The admin credentials in ``data_dir/admin.json``, created (key and file) if missing or unknown."""
    from common.credentials import CredentialStore  # the store is LMDB; only the bootstrap needs it here

    path = data_dir / ADMIN_FILE
    with CredentialStore.open(config) as store:
        if path.exists():
            try:
                existing = read_credentials_file(path)
            except CredentialsFileError:
                existing = None
            if existing is not None:
                known = store.lookup(existing["key_id"])
                if known is not None and known.is_admin and known.secret == existing["secret"]:
                    if existing.get("endpoint") != endpoint:
                        write_credentials_file(path, endpoint=endpoint, key_id=known.key_id, secret=known.secret,
                                               account=None, role="admin")
                    return read_credentials_file(path)
        key_id, secret = store.create_admin_key()
    write_credentials_file(path, endpoint=endpoint, key_id=key_id, secret=secret, account=None, role="admin")
    print(f"created an admin key: {path}", flush=True)
    return read_credentials_file(path)


def connect_admin(admin: dict[str, Any], endpoint: str, *, deadline: float) -> Client:
    """A logged-on admin client, once the gateway accepts the Logon (retried until ``deadline``)."""
    last_error = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(f"the gateway at {endpoint} did not accept the admin Logon in time ({last_error})")
        client = Client(endpoint, admin["key_id"], admin["secret"], timeout=min(remaining, CLIENT_TIMEOUT_S))
        try:
            client.logon()
            client.timeout = max(deadline - time.monotonic(), 1.0)
            return client
        except LogonRefused as exc:
            last_error = str(exc)
        except ClientError as exc:
            last_error = str(exc)
        client.close()
        time.sleep(min(LOGON_RETRY_S, max(deadline - time.monotonic(), 0)))


def demo_funds(config: ExchangeConfig, overrides: list[str] | None) -> dict[str, str]:
    """ASSET -> amount to deposit in each demo account (only assets of the configuration)."""
    if overrides:
        funds = {}
        for item in overrides:
            asset, separator, amount = item.partition("=")
            if not separator:
                raise ValueError(f"--fund takes ASSET=AMOUNT, not {item!r}")
            funds[asset.strip()] = amount.strip()
    else:
        funds = dict(DEMO_FUNDS)
    names = {asset.name for asset in config.assets}
    unknown = [asset for asset in funds if asset not in names]
    if overrides and unknown:
        raise ValueError(f"unknown asset {unknown[0]!r}; the configuration has {', '.join(sorted(names))}")
    funds = {asset: amount for asset, amount in funds.items() if asset in names}
    for asset, amount in funds.items():
        try:
            amount_to_units(amount, config.asset(asset))
        except FixedPointError as exc:
            raise ValueError(f"--fund {asset}={amount}: {exc}") from None
    return funds


def persist(call: Callable[..., Any], *, deadline: float) -> Any:
    """``call(timeout=...)`` again and again, each attempt ADMIN_ATTEMPT_S at most, until it answers or
    ``deadline`` passes. Safe because every bootstrap request has a fixed AdminReqID: a repeat is not
    applied twice, it gets the original outcome (which also recovers an answer that was lost, e.g. for
    a request journaled while the engine was still starting)."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            return call(timeout=max(min(ADMIN_ATTEMPT_S, remaining), 0.001))
        except ClientTimeout:
            if deadline - time.monotonic() <= 0:
                raise


def create_demo_account(client: Client, n: int, funds: dict[str, str], *, deadline: float) -> NewAccount:
    created = persist(partial(client.admin_create_account, request_id=f"bootstrap-demo-{n}"), deadline=deadline)
    for asset, amount in funds.items():
        persist(partial(client.admin_deposit, created.account, asset, amount,
                        request_id=f"bootstrap-demo-{n}-deposit-{asset}"), deadline=deadline)
    return created


def example_order(config: ExchangeConfig, *, fraction: tuple[int, int] = (1, 2)) -> tuple[str, str, str]:
    """(symbol, qty, price) of the smallest order of the first symbol at ``fraction`` of the way up its
    price band that meets the symbol's minimum quantity and notional."""
    symbol = config.symbols[0]
    numerator, denominator = fraction
    price_ticks = symbol.min_price_ticks + (symbol.max_price_ticks - symbol.min_price_ticks) * numerator // denominator
    per_lot = notional_units(price_ticks, 1, symbol)
    lots = max(symbol.min_qty_lots, -(-symbol.min_notional_units // per_lot))
    return symbol.name, symbol.lot.format(lots), ticks_to_price(price_ticks, symbol)


def _python() -> str:
    """How to call this interpreter in a printed command: relative if it lives under the working directory."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


def usage_text(config: ExchangeConfig, files: list[Path]) -> str:
    """How to use the demo accounts: copy-paste commands of the command-line tool."""
    first, second = files[0], files[-1]
    symbol, qty, price = example_order(config)
    _, rest_qty, rest_price = example_order(config, fraction=(1, 4))
    tick = config.symbols[0].tick
    better = tick.format(tick.count(rest_price) + 1)
    clordid = f"demo-rest-{time.time_ns() // 1_000_000_000}"  # a ClOrdID is used once per account, ever
    lines = ["Demo accounts (keep these files private: mode 0600):"]
    for path in files:
        try:
            account = read_credentials_file(path).get("account")
        except CredentialsFileError:
            account = "?"
        lines.append(f"  {path}  (account {account})")
    cli = f"{_python()} -m client.cli --credentials"
    lines += [
        "Try it (the first account sells, the second buys: they trade):",
        f"  {cli} {first} balances",
        f"  {cli} {first} sell {symbol} {qty} {price}",
        f"  {cli} {second} buy {symbol} {qty} {price}",
        f"  {cli} {second} balances",
        "A resting order: placed, looked at, amended, listed, cancelled:",
        f"  {cli} {first} buy {symbol} {rest_qty} {rest_price} --clordid {clordid}",
        f"  {cli} {first} status {clordid}",
        f"  {cli} {first} amend {clordid} --price {better}",
        f"  {cli} {first} orders",
        f"  {cli} {first} cancel-all",
        f"Everything else: {_python()} -m client.cli --help",
        *[f"The web UI and the REST API: http://{web.http_host}:{web.http_port}/ (sign in with a demo "
          f"account's key_id and secret; API docs at /api/docs)" for web in config.gateway.http_instances[:1]],
        f"Market data and each account's own updates over WebSocket: ws://{config.pusher.host}:{config.pusher.port}",
        f"  {_python()} -m websockets ws://{config.pusher.host}:{config.pusher.port}   "
        f"then: {{\"op\": \"subscribe\", \"channel\": \"trades.{symbol}\"}}   (docs/market-data.md)",
    ]
    return "\n".join(lines)


def run(config: ExchangeConfig, *, timeout: float, fund: list[str] | None = None) -> int:
    deadline = time.monotonic() + timeout
    data_dir = Path(config.paths.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoint = config.gateway.fix_instances[0].fix
    funds = demo_funds(config, fund)
    admin = ensure_admin_key(config, data_dir, endpoint)
    files = [demo_path(data_dir, n) for n in range(1, DEMO_ACCOUNTS + 1)]
    missing = [path for path in files if not path.exists()]
    if missing:
        client = connect_admin(admin, endpoint, deadline=deadline)
        try:
            for n, path in enumerate(files, start=1):
                if path.exists():
                    continue
                created = create_demo_account(client, n, funds, deadline=deadline)
                write_credentials_file(path, endpoint=endpoint, key_id=created.key_id, secret=created.secret,
                                       account=created.account, role="trader")
                funded = ", ".join(f"{amount} {asset}" for asset, amount in funds.items()) or "nothing"
                print(f"created demo account {created.account} ({funded}): {path}", flush=True)
        finally:
            client.close()
    print(usage_text(config, files), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.bootstrap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="exchange configuration file (default: $EXCHANGE_CONFIG or built-in)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the gateway and the exchange (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--fund", action="append", metavar="ASSET=AMOUNT",
                        help="what each demo account gets (repeat; default: "
                             + ", ".join(f"{a}={v}" for a, v in DEMO_FUNDS.items()) + ")")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        return run(config, timeout=args.timeout, fund=args.fund)
    except (ConfigError, ValueError, ClientError, CredentialsFileError, OSError) as exc:
        print(f"bootstrap failed: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
