"""The whole exchange, started the way operators start it, in a temporary directory.

``Exchange`` writes a configuration whose endpoints are ipc sockets inside a fresh temporary directory,
starts ``python -m common.launch --config ...`` (supervisord in the foreground, running the sequencer,
the engine, the gateways and the bootstrap from supervisord.conf), waits until the bootstrap has
written the admin credentials and a gateway accepts them, and stops everything by supervisord's pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from common.config import default_document

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240.0  # a cold Numba cache compiles the engine for about a minute


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TOML for {value!r}")


def to_toml(document: dict[str, Any]) -> str:
    """Just enough TOML writing for a configuration document (tables, arrays of tables, scalars)."""
    lines: list[str] = []

    def table(prefix: str, mapping: dict[str, Any], header: str | None) -> None:
        scalars = {k: v for k, v in mapping.items() if not isinstance(v, (dict, list))}
        if header is not None:
            lines.append(header)
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        lines.append("")
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                table(f"{name}.", value, f"[{name}]")
            elif isinstance(value, list):
                for item in value:
                    table(f"{name}.", item, f"[[{name}]]")

    table("", document, None)
    return "\n".join(lines)


def poll(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Call ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port of the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def logged_on(client) -> bool:
    """Log ``client`` on; False (to be polled again) while the exchange cannot take it yet."""
    try:
        client.logon()
        return True
    except Exception:
        return False


class Exchange:
    """One exchange under supervisord in a temporary directory. Use as a context manager."""

    def __init__(self, *, gateways: int = 1, configure: Callable[[dict], None] | None = None):
        self.home = Path(tempfile.mkdtemp(prefix="exch-"))  # short: ipc paths are limited to ~100 bytes
        document = default_document()
        ipc = lambda name: f"ipc://{self.home}/{name}.sock"  # noqa: E731
        document["engine"].update(reports=ipc("reports"), queries=ipc("queries"))
        document["sequencer"].update(intake=ipc("intake"), stream=ipc("stream"), replay=ipc("replay"),
                                     journal_map_bytes=16 << 20)
        document["quotation"].update(market=ipc("market"), queries=ipc("quotes"))
        document["pusher"]["port"] = free_port()
        document["gateway"]["instances"] = [
            {"id": i + 1, "name": f"gw-{i + 1}", "fix": ipc(f"fix-{i + 1}")} for i in range(gateways)
        ] + [{"id": gateways + 1, "name": "web-1", "http": f"127.0.0.1:{free_port()}"}]
        document["paths"] = {"data_dir": str(self.home / "data"), "log_dir": str(self.home / "log")}
        if configure is not None:
            configure(document)
        self.document = document
        self.config_path = self.home / "exchange.toml"
        self.config_path.write_text(to_toml(document))
        tomllib.loads(self.config_path.read_text())  # fail early on a writer bug
        self.process: subprocess.Popen | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> "Exchange":
        if self.process is not None and self.process.poll() is None:
            return self  # started already (``with Exchange() as exchange`` starts it)
        # A driver stopped by SIGTERM (a `timeout`, say) unwinds like on an exception, so that the exchange
        # it started (in a process group of its own, which outlives the driver) is stopped too.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        environment = {**os.environ, "EXCHANGE_CONFIG": str(self.config_path)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "common.launch", "--config", str(self.config_path)],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # A process group of its own (a terminal's Ctrl-C reaches only the driver, which stops it), but
            # the driver's session: under the kernel's autogroup scheduling (sched_autogroup_enabled) a
            # session is one scheduling group, and all the exchange's processes would split one group's
            # share against the driver's session and its load generators (docs/benchmarks.md).
            process_group=0,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        poll(lambda: self.admin_credentials() is not None or self._died(), timeout=START_TIMEOUT_S,
             what="the bootstrap's admin credentials")
        if self._died():
            raise RuntimeError(f"the exchange exited at start:\n{self.output()}")
        for gateway in range(1, len(self.fix_gateways) + 1):
            poll(lambda: self._answers_admin(gateway), timeout=max(1.0, deadline - time.monotonic()),
                 interval=0.5, what=f"gateway {gateway} and the engine to answer an admin session")
        if any("http" in g for g in self.document["gateway"]["instances"]):
            poll(self._http_ready, timeout=max(1.0, deadline - time.monotonic()), interval=0.2,
                 what="the HTTP gateway to take private requests")
        return self

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/api/v1/info", timeout=2) as answer:
                return bool(json.loads(answer.read()).get("ready"))
        except (OSError, ValueError):
            return False

    def _answers_admin(self, gateway: int) -> bool:
        """Ready: an admin session logs on and the engine answers its balance query."""
        from client.sync import Client  # the harness is a client of the exchange like any other

        credentials = self.admin_credentials()
        client = Client(self.fix_endpoint(gateway), credentials["key_id"], credentials["secret"], timeout=2.0)
        try:
            client.logon()
            client.balances(account=0)
            return True
        except Exception:
            return False
        finally:
            client.close()

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to supervisord (which stops every program), wait; SIGKILL the group on timeout."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> "Exchange":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if not os.environ.get("KEEP_EXCHANGE_HOME"):
            shutil.rmtree(self.home, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def log(self, program: str) -> str:
        path = self.home / "log" / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted((self.home / "log").glob("*.log")))

    def admin_credentials(self) -> dict | None:
        path = self.data_dir / "admin.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # being written
            return None

    @property
    def fix_gateways(self) -> list[dict]:
        """The configuration's FIX gateways (the others serve HTTP)."""
        return [g for g in self.document["gateway"]["instances"] if "fix" in g]

    def admin_client(self, timeout: float = 20.0):
        """A logged-on admin session (a ``client.sync.Client``; close it, or use it as a context manager)."""
        from client.sync import Client  # the harness is a client of the exchange like any other

        credentials = self.admin_credentials()
        client = Client(self.fix_endpoint(), credentials["key_id"], credentials["secret"], timeout=timeout)
        poll(lambda: logged_on(client), timeout=60, what="an admin logon")
        return client

    def open_account(self, funds: dict[str, str]):
        """A new account, funded with ``funds`` (currency -> decimal amount): its ``NewAccount`` (account,
        key_id, secret)."""
        with self.admin_client() as admin:
            account = admin.admin_create_account(request_id=f"account-{uuid.uuid4().hex}")
            for currency, amount in funds.items():
                admin.admin_deposit(account.account, currency, amount, request_id=f"deposit-{uuid.uuid4().hex}")
        return account

    def fix_endpoint(self, gateway: int = 1) -> str:
        """The ZeroMQ endpoint of the ``gateway``-th FIX gateway (1, 2, ...)."""
        return self.fix_gateways[gateway - 1]["fix"]

    @property
    def http_url(self) -> str:
        [web] = [g for g in self.document["gateway"]["instances"] if "http" in g]
        return f"http://{web['http']}"

    @property
    def pusher_url(self) -> str:
        return f"ws://127.0.0.1:{self.document['pusher']['port']}"

    def ctl(self, *arguments: str) -> str:
        """supervisorctl against this exchange."""
        completed = subprocess.run(
            [sys.executable, "-m", "common.launch", "--config", str(self.config_path), "ctl", *arguments],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        return completed.stdout + completed.stderr

    def program_pid(self, name: str) -> int:
        output = self.ctl("pid", name).strip().splitlines()
        return int(output[-1])

    def restarted(self, program: str, before: int) -> bool:
        """Whether supervisord runs ``program`` again, in another process than ``before``."""
        try:
            pid = self.program_pid(program)
        except ValueError:
            return False
        return pid != before and pid > 0 and "RUNNING" in self.ctl("status", program)
