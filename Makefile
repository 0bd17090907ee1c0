# The two commands a newcomer needs: `make run` and `make test`.
# Poetry owns the dependency set (pyproject.toml + poetry.lock); the lock is exported and installed
# with pip into .venv, so installing needs only Python 3.11 and the package index. The export is the
# whole locked set, so pip installs it with --no-deps: its resolver never sees an unpinned extra
# (pytest-cov's coverage[toml]), which hash-checking mode refuses once a newer release is out.
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
BIN := $(VENV)/bin
PORT ?= 8007
# Empty: BEE_HOST, else 127.0.0.1. Another address (HOST=0.0.0.0) needs a real BEE_JWT_SECRET:
# `serve` refuses to expose the built-in development secret beyond this machine.
HOST ?=

.PHONY: install run test lint typecheck bench services clean

$(TOOLS)/bin/poetry:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "poetry>=2.0,<3" "poetry-plugin-export>=1.8"

$(VENV)/.installed: pyproject.toml poetry.lock $(TOOLS)/bin/poetry
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(TOOLS)/bin/poetry export --with dev --format requirements.txt --output $(VENV)/requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r $(VENV)/requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/bee-customers migrate
	$(BIN)/bee-customers serve --port $(PORT) $(if $(HOST),--host $(HOST))

services:
	bash scripts/ensure-services.sh

# The house rules are checked before the suite: style (ruff), types (mypy) and the import
# contracts of pyproject.toml (import-linter: layers, core and events import no domain, no cycles).
test: install services lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache
