# Two commands on a fresh machine with only Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	$(BIN)/pip install --quiet -e '.[fast]' || echo "gunicorn-h1c did not build (no C compiler?): gunicorn parses HTTP in Python"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/cannect run

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/ws.py
	$(BIN)/python bench/push.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/aggregates.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/admin_backfill.py
	$(BIN)/python bench/b2b_limits.py
	$(BIN)/python bench/b2b.py

clean:
	rm -rf $(VENV) .cannect .pytest_cache
