"""Talk to the exchange from a shell: ``python -m client.cli [options] COMMAND ...``

    python -m client.cli --credentials var/data/demo-1.json balances
    python -m client.cli --credentials var/data/demo-1.json buy BTC-USDT 0.01 65000
    python -m client.cli --credentials var/data/demo-1.json buy BTC-USDT 0.01          # market
    python -m client.cli --credentials var/data/demo-1.json buy BTC-USDT --cash 500    # market, by quote
    python -m client.cli --credentials var/data/demo-1.json orders
    python -m client.cli --credentials var/data/admin.json admin deposit 1 USDT 1000

Credentials come from ``--key``/``--secret``, else ``--credentials FILE`` (the JSON the bootstrap
writes), else the environment: ``EXCHANGE_KEY_ID`` and ``EXCHANGE_SECRET``, or
``EXCHANGE_CREDENTIALS`` (a file). The endpoint is ``--endpoint``, else the file's, else
``EXCHANGE_ENDPOINT``, else the first gateway of the exchange configuration (``--config``, else
``$EXCHANGE_CONFIG``, else the built-in one).

Every command logs on, does one thing, prints one line per report, and logs out. The exit status is 0
on success, 1 when the exchange refuses (the reason is printed), 2 for a usage error, 3 when the
gateway cannot be reached or does not answer in time.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from client.bootstrap import CredentialsFileError, read_credentials_file, write_credentials_file
from client.session import (
    Balance,
    ClientError,
    ClientTimeout,
    Incoming,
    LogonRefused,
    RequestRejected,
    SessionUsageError,
)
from client.sync import DEFAULT_TIMEOUT_S, Client
from common.config import ConfigError, load_config
from common.protocol import CxlRejReason, ExecType, Field, MsgType, OrdRejReason, OrdStatus, SessionRejectReason

ENV_KEY_ID = "EXCHANGE_KEY_ID"
ENV_SECRET = "EXCHANGE_SECRET"
ENV_CREDENTIALS = "EXCHANGE_CREDENTIALS"
ENV_ENDPOINT = "EXCHANGE_ENDPOINT"

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_SETTLE_S = 0.25  # after an order's first report, how long to wait for more reports of it

TERMINAL_STATUSES = frozenset({OrdStatus.FILLED.value, OrdStatus.CANCELED.value, OrdStatus.REJECTED.value,
                               OrdStatus.EXPIRED.value})
_EXEC_TYPE_NAMES = {t.value: t.name.replace("_", " ").lower() for t in ExecType}
_ORD_STATUS_NAMES = {s.value: s.name.replace("_", " ").lower() for s in OrdStatus}
_SIDE_NAMES = {"1": "buy", "2": "sell"}
NO_ORDER_ID = "NONE"  # the OrderID of a report about an order that never existed (docs/protocol.md)


class UsageError(Exception):
    """Bad arguments or missing credentials (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: str
    key_id: str
    secret: str


# --- formatting ------------------------------------------------------------------------------------


def format_message(message: Incoming) -> str:
    """One readable line for a report (or any other message)."""
    msg_type = message.msg_type
    if msg_type == MsgType.EXECUTION_REPORT.value:
        return format_execution_report(message)
    if msg_type == MsgType.ORDER_CANCEL_REJECT.value:
        what = "amend" if message.get(Field.CXL_REJ_RESPONSE_TO) == "2" else "cancel"
        order = message.get(Field.ORIG_CL_ORD_ID) or message.get(Field.ORDER_ID)
        about = f" (order {order})" if order and order != NO_ORDER_ID else ""
        reason = message.text or _reason_name(message.get(Field.CXL_REJ_REASON), CxlRejReason)
        return f"{what} rejected  {message.get(Field.CL_ORD_ID)}{about}: {reason}"
    if msg_type == MsgType.ORDER_MASS_CANCEL_REPORT.value:
        if message.is_reject:
            return f"cancel-all rejected  {message.get(Field.CL_ORD_ID)}: {message.text or 'no reason given'}"
        count = message.get(Field.TOTAL_AFFECTED_ORDERS)
        return f"cancelled {count if count is not None else '?'} order(s)  {message.get(Field.CL_ORD_ID)}"
    if msg_type == MsgType.REJECT.value:
        reason = _reason_name(message.get(Field.SESSION_REJECT_REASON), SessionRejectReason)
        about = message.get(Field.REF_TAG_ID)
        return (f"rejected  {message.clordid or 'message ' + str(message.get(Field.REF_SEQ_NUM))}: "
                f"{message.text or reason}" + (f" (field {about})" if about else "") + f" [{reason}]")
    if msg_type == MsgType.ADMIN_RESPONSE.value:
        status = message.get(Field.STATUS)
        details = " ".join(f"{k}={v}" for k, v in message.fields.items()
                           if k not in (Field.MSG_TYPE.value, Field.MSG_SEQ_NUM.value, Field.SENDING_TIME.value,
                                        Field.STATUS.value, Field.SECRET.value, Field.TEXT.value))
        return f"admin {status}  {details}" + (f": {message.text}" if message.text else "")
    if msg_type == MsgType.LOGOUT.value:
        return f"logged out: {message.text or 'no reason given'}"
    return message.describe()


def format_execution_report(message: Incoming) -> str:
    exec_type = message.get(Field.EXEC_TYPE)
    status = message.get(Field.ORD_STATUS)
    side = _SIDE_NAMES.get(message.get(Field.SIDE), message.get(Field.SIDE) or "")
    head = f"{_EXEC_TYPE_NAMES.get(exec_type, exec_type):<13} {message.get(Field.CL_ORD_ID)}"
    order = message.get(Field.ORDER_ID)
    parts = [head]
    if order is not None and order != NO_ORDER_ID:
        parts.append(f"order {order}")
    what = " ".join(str(p) for p in (message.get(Field.SYMBOL), side) if p)
    if what:
        parts.append(what)
    if exec_type == ExecType.REJECTED.value:
        reason = message.text or _reason_name(message.get(Field.ORD_REJ_REASON), OrdRejReason)
        resent = " (sent before: the original outcome)" if message.get(Field.POSS_RESEND) else ""
        return "  ".join(parts) + f": {reason}{resent}"
    if exec_type == ExecType.TRADE.value:
        fill = f"filled {message.get(Field.LAST_QTY)} @ {message.get(Field.LAST_PX)}"
        liquidity = {"1": "maker", "2": "taker"}.get(message.get(Field.LAST_LIQUIDITY_IND))
        if liquidity:
            fill += f" ({liquidity})"
        if message.get(Field.COMMISSION) is not None:
            fill += f" fee {message.get(Field.COMMISSION)} {message.get(Field.COMM_CURRENCY) or ''}".rstrip()
        parts.append(fill)
    else:
        qty = message.get(Field.ORDER_QTY)
        price = message.get(Field.PRICE)
        if qty is not None:
            parts.append(f"{qty}" + (f" @ {price}" if price is not None else " at market"))
        elif message.get(Field.CASH_ORDER_QTY) is not None:
            parts.append(f"for {message.get(Field.CASH_ORDER_QTY)} at market")
    totals = []
    for label, name in (("leaves", Field.LEAVES_QTY), ("cum", Field.CUM_QTY), ("avg", Field.AVG_PX)):
        if message.get(name) is not None:
            totals.append(f"{label} {message.get(name)}")
    if totals:
        parts.append(" ".join(totals))
    if status is not None:
        parts.append(f"[{_ORD_STATUS_NAMES.get(status, status)}]")
    if message.text:
        parts.append(f"({message.text})")
    if message.get(Field.POSS_RESEND):
        parts.append("(sent before: the original outcome)")
    return "  ".join(parts)


def _reason_name(value: Any, codes: type) -> str:
    try:
        return codes(int(value)).name.lower()
    except (TypeError, ValueError):
        return "no reason given" if value is None else str(value)


def format_balances(balances: dict[str, Balance]) -> list[str]:
    if not balances:
        return ["no balances"]
    width = max(len(currency) for currency in balances)
    return [f"{currency:<{width}}  available {b.available}  frozen {b.frozen}" for currency, b in sorted(balances.items())]


# --- arguments ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m client.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="exchange configuration (for the default endpoint)")
    parser.add_argument("--endpoint", help="the gateway, e.g. tcp://127.0.0.1:7001")
    parser.add_argument("--credentials", metavar="FILE", help="a credentials JSON file (as the bootstrap writes)")
    parser.add_argument("--key", help="API key id")
    parser.add_argument("--secret", help="API secret (hex); prefer --credentials or $EXCHANGE_SECRET")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT_S:g})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("logon", help="log on and log off (checks the credentials)")

    for side in ("buy", "sell"):
        order = commands.add_parser(side, help=f"{side}: a limit order with PRICE, a market order without",
                                    description=f"{side.capitalize()} QTY of SYMBOL: at PRICE or better "
                                                f"(a limit order), or at market without PRICE.")
        order.add_argument("symbol")
        order.add_argument("qty", nargs="?", help="quantity of the base asset (decimal)")
        order.add_argument("price", nargs="?", help="limit price (decimal); none for a market order")
        order.add_argument("--tif", choices=("gtc", "ioc", "fok"),
                           help="time in force (default gtc for limit orders, ioc for market orders)")
        order.add_argument("--post-only", action="store_true", help="never take liquidity (limit orders)")
        if side == "buy":
            order.add_argument("--cash", metavar="AMOUNT", help="market buy spending this quote amount (no QTY)")
        order.add_argument("--clordid", help="ClOrdID to use (default: a fresh one)")
        order.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S,
                           help=f"seconds to wait for more reports after the first (default {DEFAULT_SETTLE_S:g})")

    amend = commands.add_parser("amend", help="change an open order's price and/or quantity")
    _order_reference(amend)
    amend.add_argument("--price", help="new limit price")
    amend.add_argument("--qty", help="new total quantity")
    amend.add_argument("--symbol", help="the order's symbol (when amending by order id)")
    amend.add_argument("--side", choices=("buy", "sell"), help="the order's side")

    cancel = commands.add_parser("cancel", help="cancel an open order")
    _order_reference(cancel)
    cancel.add_argument("--symbol", help="the order's symbol")

    cancel_all = commands.add_parser("cancel-all", help="cancel every open order (of one symbol)")
    cancel_all.add_argument("--symbol", help="only this symbol")

    status = commands.add_parser("status", help="an order's state")
    _order_reference(status)
    status.add_argument("--symbol", help="the order's symbol")

    orders = commands.add_parser("orders", help="open orders")
    orders.add_argument("--symbol", help="only this symbol")

    balances = commands.add_parser("balances", help="the account's balances")
    balances.add_argument("--account", type=int, help="whose (admin sessions only)")
    balances.add_argument("--currency", help="only this asset")

    admin = commands.add_parser("admin", help="operator commands (admin key only)")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create-account", help="open an account and print its credentials")
    create.add_argument("--write", metavar="FILE", help="also write them to this credentials file (mode 0600)")
    create.add_argument("--request-id", help="idempotency key: the same id gives the same account")
    for name in ("deposit", "withdraw"):
        action = actions.add_parser(name, help=f"{name} an amount of an asset")
        action.add_argument("account", type=int)
        action.add_argument("currency")
        action.add_argument("amount")
        action.add_argument("--request-id", help="idempotency key: a retry with the same id is applied once")
    return parser


def _order_reference(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clordid", nargs="?", help="the order's ClOrdID")
    parser.add_argument("--order-id", help="the order's OrderID instead")


def resolve_target(args: argparse.Namespace, environ: dict[str, str]) -> Target:
    """Endpoint and credentials from the flags, the credentials file, the environment and the config."""
    document: dict[str, Any] = {}
    credentials_file = args.credentials or environ.get(ENV_CREDENTIALS)
    if credentials_file:
        document = read_credentials_file(credentials_file)
    key_id = args.key or document.get("key_id") or environ.get(ENV_KEY_ID)
    secret = args.secret or document.get("secret") or environ.get(ENV_SECRET)
    if not key_id or not secret:
        raise UsageError("no credentials: give --credentials FILE, or --key and --secret, "
                         f"or set {ENV_CREDENTIALS}, or {ENV_KEY_ID} and {ENV_SECRET}")
    endpoint = args.endpoint or document.get("endpoint") or environ.get(ENV_ENDPOINT)
    if not endpoint:
        endpoint = load_config(args.config).gateway.fix_instances[0].fix
    return Target(endpoint=endpoint, key_id=key_id, secret=secret)


# --- commands --------------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
        environ: dict[str, str] | None = None) -> int:
    """The command line; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage
        return int(exc.code or 0)
    try:
        target = resolve_target(args, dict(os.environ if environ is None else environ))
        check_arguments(args)
    except (UsageError, CredentialsFileError, ConfigError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    try:
        with Client(target.endpoint, target.key_id, target.secret, timeout=args.timeout) as client:
            logon = client.logon()
            return COMMANDS[args.command](client, args, logon, out)
    except LogonRefused as exc:
        print(f"error: {exc}", file=err)
        return EXIT_REJECTED
    except RequestRejected as exc:
        print(format_message(exc.incoming), file=out)
        print(f"error: {exc.text or 'rejected'}", file=err)
        return EXIT_REJECTED
    except SessionUsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except ClientTimeout as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE
    except ClientError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE


def check_arguments(args: argparse.Namespace) -> None:
    if args.command in ("buy", "sell"):
        cash = getattr(args, "cash", None)
        if cash is not None and (args.qty is not None or args.price is not None):
            raise UsageError("--cash is a market buy by quote amount: give no QTY or PRICE with it")
        if cash is None and args.qty is None:
            raise UsageError(f"{args.command} needs a QTY (or --cash AMOUNT for a market buy)")
    if args.command in ("amend", "cancel", "status"):
        if (args.clordid is None) == (args.order_id is None):
            raise UsageError(f"{args.command} needs the order's ClOrdID or --order-id (one of them)")
    if args.command == "amend" and args.price is None and args.qty is None:
        raise UsageError("amend needs --price and/or --qty")


def command_logon(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    account = logon.get(Field.ACCOUNT)
    heartbeat = logon.get(Field.HEART_BT_INT)
    print(f"logged on to {client.endpoint} with key {client.session.key_id}"
          + (f" (account {account})" if account is not None else "")
          + (f", heartbeat {heartbeat}s" if heartbeat is not None else ""), file=out)
    return EXIT_OK


def command_order(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    clordid = client.place(args.symbol, args.command, qty=args.qty, price=args.price, tif=args.tif,
                           post_only=args.post_only, cash_qty=getattr(args, "cash", None), clordid=args.clordid)
    return print_order_reports(client, clordid, args.settle, out)


def print_order_reports(client: Client, clordid: str, settle: float, out: TextIO) -> int:
    """Print the first report about ``clordid`` and those that follow it within ``settle`` seconds,
    until one is final; 1 if the request was refused."""
    report = client.first_report(clordid)
    print(format_message(report), file=out)
    if report.is_reject:
        return EXIT_REJECTED
    while not _final(report):
        try:
            report = client.wait_for(lambda m: m.clordid == clordid and m.is_type(MsgType.EXECUTION_REPORT),
                                     timeout=settle)
        except ClientTimeout:
            break
        print(format_message(report), file=out)
    return EXIT_OK


def _final(report: Incoming) -> bool:
    if report.msg_type != MsgType.EXECUTION_REPORT.value:
        return True
    return report.get(Field.ORD_STATUS) in TERMINAL_STATUSES


def command_amend(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    clordid = client.amend(args.clordid, order_id=args.order_id, price=args.price, qty=args.qty,
                           symbol=args.symbol, side=args.side)
    return print_first_report(client, clordid, out)


def command_cancel(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    clordid = client.cancel(args.clordid, order_id=args.order_id, symbol=args.symbol)
    return print_first_report(client, clordid, out)


def command_cancel_all(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    """Print each cancelled order's report (they carry the request's ClOrdID), then the count."""
    clordid = client.cancel_all(symbol=args.symbol)
    report = client.first_report(clordid)
    while True:
        print(format_message(report), file=out)
        if report.is_reject:
            return EXIT_REJECTED
        if report.is_type(MsgType.ORDER_MASS_CANCEL_REPORT):
            return EXIT_OK
        report = client.wait_for(lambda m: m.clordid == clordid)


def print_first_report(client: Client, clordid: str, out: TextIO) -> int:
    report = client.first_report(clordid)
    print(format_message(report), file=out)
    return EXIT_REJECTED if report.is_reject else EXIT_OK


def command_status(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    """Exit 1 if the status request was refused or the order is unknown (OrdStatus rejected)."""
    report = client.status(args.clordid, order_id=args.order_id, symbol=args.symbol)
    print(format_message(report), file=out)
    unknown = report.get(Field.ORD_STATUS) == OrdStatus.REJECTED.value
    return EXIT_REJECTED if report.is_reject or unknown else EXIT_OK


def command_orders(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    reports = client.open_orders(symbol=args.symbol)
    if not reports:
        print("no open orders", file=out)
    for report in reports:
        print(format_message(report), file=out)
    return EXIT_OK


def command_balances(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    for line in format_balances(client.balances(account=args.account, currency=args.currency)):
        print(line, file=out)
    return EXIT_OK


def command_admin(client: Client, args: argparse.Namespace, logon: Incoming, out: TextIO) -> int:
    if args.action == "create-account":
        created = client.admin_create_account(request_id=args.request_id)
        print(f"account {created.account}  key_id {created.key_id}  secret {created.secret}", file=out)
        if args.write:
            write_credentials_file(args.write, endpoint=client.endpoint, key_id=created.key_id,
                                   secret=created.secret, account=created.account, role="trader")
            print(f"wrote {args.write}", file=out)
        return EXIT_OK
    call = client.admin_deposit if args.action == "deposit" else client.admin_withdraw
    response = call(args.account, args.currency, args.amount, request_id=args.request_id)
    direction = "to" if args.action == "deposit" else "from"
    print(f"{args.action} of {args.amount} {args.currency} {direction} account {args.account}: "
          f"{response.get(Field.STATUS)}" + (f" ({response.text})" if response.text else ""), file=out)
    return EXIT_OK


COMMANDS = {
    "logon": command_logon,
    "buy": command_order,
    "sell": command_order,
    "amend": command_amend,
    "cancel": command_cancel,
    "cancel-all": command_cancel_all,
    "status": command_status,
    "orders": command_orders,
    "balances": command_balances,
    "admin": command_admin,
}


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
