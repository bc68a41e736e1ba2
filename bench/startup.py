"""One engine start-up, timed: import, build from the default config, apply the first command.

Run by ``bench.engine`` in a fresh process with ``NUMBA_CACHE_DIR`` pointing at an empty directory (the
first run compiles every kernel) and then at the same directory again (the warm-cache start). Prints one
JSON object.
"""

from __future__ import annotations

import json
import time

START = time.perf_counter()


def main() -> None:
    from common.config import default_config
    from common.records import CommandKind, command
    from engine.core import Engine

    imported = time.perf_counter()
    engine = Engine(default_config())
    built = time.perf_counter()
    events = engine.apply(command(CommandKind.CREATE_ACCOUNT, seq=1, ts=1, account=1))
    applied = time.perf_counter()
    assert len(events) == 1
    print(json.dumps({
        "import_s": imported - START,
        "build_s": built - imported,
        "first_apply_s": applied - built,
        "in_process_s": applied - START,
    }))


if __name__ == "__main__":
    main()
