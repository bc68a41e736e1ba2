"""Start the whole exchange under supervisord, or talk to it.

    python -m common.launch            # supervisord in the foreground (what `make run` does)
    python -m common.launch ctl status # supervisorctl against it (`make ctl CMD=status`)

Reads the configuration once ($EXCHANGE_CONFIG, --config, or the packaged default), creates its data
and log directories, exports what supervisord.conf refers to, and replaces itself with supervisord (or
supervisorctl). SIGTERM or Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.config import CONFIG_ENV_VAR, load_config

ROOT = Path(__file__).resolve().parent.parent


def supervisor_environment(config_path: str | None = None) -> dict[str, str]:
    """The environment supervisord.conf expects, derived from the exchange configuration."""
    config = load_config(config_path)
    data_dir = (ROOT / config.paths.data_dir).resolve()
    log_dir = (ROOT / config.paths.log_dir).resolve()
    run_dir = data_dir / "run"
    for directory in (data_dir, log_dir, run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    if config_path is not None:
        environment[CONFIG_ENV_VAR] = str(Path(config_path).resolve())
    environment.update(
        EXCHANGE_PYTHON=sys.executable,
        EXCHANGE_LOG_DIR=str(log_dir),
        EXCHANGE_RUN_DIR=str(run_dir),
        EXCHANGE_GATEWAYS=str(len(config.gateway.instances)),
    )
    return environment


def supervisord_command() -> list[str]:
    return [sys.executable, "-m", "supervisor.supervisord", "-c", str(ROOT / "supervisord.conf")]


def supervisorctl_command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(ROOT / "supervisord.conf"), *arguments]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="exchange configuration file (default: $EXCHANGE_CONFIG or built-in)")
    parser.add_argument("action", nargs="?", default="run", choices=["run", "ctl"])
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="supervisorctl arguments (with ctl)")
    args = parser.parse_args()
    environment = supervisor_environment(args.config)
    os.chdir(ROOT)
    command = supervisord_command() if args.action == "run" else supervisorctl_command(args.arguments)
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main()
