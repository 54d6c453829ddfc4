# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast lint install install-dev migration bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install-dev: $(STAMP)

demo: install
	$(BIN)/retention demo

lint: $(STAMP)
	$(BIN)/ruff format --check worker integrations metrics tests benchmarks
	$(BIN)/ruff check worker integrations metrics tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The inner loop: lint and every test but the slow ones (end-to-end runs, the browser).
test-fast: lint
	$(BIN)/pytest -m "not slow"

# Regenerate the initial migration from the models (allowed while the schema is unreleased).
# A new migration after the newest one, from what the models add to it: make migration NAME=what_it_adds
migration: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make migration NAME=what_it_adds"; exit 2; }
	db=sqlite:///$$(mktemp -d)/m.db; next=$$(printf %04d $$(( $$(ls worker/migrations/versions/*.py | wc -l) + 1 ))); \
	RETENTION_DATABASE_URL=$$db $(BIN)/alembic -c worker/alembic.ini upgrade head && \
	RETENTION_DATABASE_URL=$$db $(BIN)/alembic -c worker/alembic.ini revision --autogenerate --rev-id $$next -m $(NAME)

bench: $(STAMP)
	$(BIN)/python benchmarks/sync_bench.py
	$(BIN)/python benchmarks/metrics_bench.py
	$(BIN)/python benchmarks/rebuild_bench.py
	$(BIN)/python benchmarks/start_bench.py
	$(BIN)/python benchmarks/backtest_bench.py
	$(BIN)/python benchmarks/watch_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
