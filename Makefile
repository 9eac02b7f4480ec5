# andchain: `make run` starts the platform on its embedded defaults; `make test` runs the whole suite.
# Both first run `make setup`, which is quick when nothing changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The suite runs in three processes (pytest-xdist), a test file per process at a time: most of a test's
# time is spent waiting for a node, a worker or a database, so three keep two cores busy (four made
# timeouts of the API's test client likelier; docs/benchmarks.md has the suite's times). PYTEST_WORKERS=0
# runs it in this process alone (for a debugger, or -x on the first failure).
PYTEST_WORKERS ?= 3
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: setup run demo test test-deep lint format bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

run: setup
	$(BIN)/andchain db upgrade
	$(BIN)/andchain networks up
	$(BIN)/andchain tokens setup --network internal
	$(BIN)/andchain stablecoin setup
	$(BIN)/andchain custodian start
	$(BIN)/andchain serve --sample-data --worker

demo: setup
	$(BIN)/andchain demo

# pytest's exit code 5 means no test ran: that must fail, never pass silently.
# Property tests run derandomized (the hypothesis profile of tests/conftest.py): the same examples every run.
test: setup
	@HYPOTHESIS_PROFILE=derandomized $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc

# The property tests only, with random seeds and 1,000 examples each (profile "deep").
test-deep: setup
	@HYPOTHESIS_PROFILE=deep $(BIN)/python -m pytest -m property $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected" >&2; exit 1; fi; exit $$rc

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: setup
	$(BIN)/andchain bench ledger --backend sqlite --seconds 10 --json
	$(BIN)/andchain bench ledger --backend postgresql --seconds 10 --json
	$(BIN)/andchain bench chain --seconds 20 --json
	$(BIN)/andchain bench mint --count 1000 --json

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .ruff_cache .mypy_cache .hypothesis
