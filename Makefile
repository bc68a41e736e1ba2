# The two entry points a fresh machine needs: `make test` and `make run`.
# Each creates the virtual environment and installs the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test run ctl journal snapshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends chromium >/dev/null \
		|| (apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null); \
	else \
		echo "the browser tests need $(CHROMIUM): install Debian's chromium package (sudo apt-get install chromium)"; \
	fi

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The whole exchange in the foreground under supervisord (Ctrl-C stops it).
run: $(STAMP)
	$(BIN)/python -m common.launch

# supervisorctl against the running exchange: make ctl CMD=status
ctl: $(STAMP)
	$(BIN)/python -m common.launch ctl $(CMD)

# The journal's operator commands: make journal CMD=verify | CMD="tail -n 50" | CMD=compact
journal: $(STAMP)
	$(BIN)/python -m sequencer.tool $(CMD)

# The engine's snapshots: make snapshots CMD=snapshots | CMD=verify
snapshots: $(STAMP)
	$(BIN)/python -m engine.tool $(CMD)

bench: $(STAMP)
	$(BIN)/python -m bench.engine

clean:
	rm -rf $(VENV) build *.egg-info
