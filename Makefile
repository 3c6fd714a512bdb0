# Seawall: `make run` starts the gateway on the embedded default; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit e2e bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# make run PORT=9000 (HOST=0.0.0.0): the same as `seawall run --port 9000 --host 0.0.0.0`.
run: $(STAMP)
	$(BIN)/seawall run $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .seawall .pytest_cache .mypy_cache .ruff_cache
