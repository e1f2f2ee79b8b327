# One command surface for people and CI. `make demo` and `make test` set everything up.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test test-storage test-fast lint bench setup clean services-stop

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "plantstream needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,aws,infra]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/plantstream demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# the tests that talk to PostgreSQL or Redis; CI re-runs them against the machine's servers
test-storage: $(STAMP)
	$(PY) -m pytest -m storage $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/processor.py
	$(PY) bench/ingest.py
	$(PY) bench/detection.py

services-stop: $(STAMP)
	$(VENV)/bin/plantstream services stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
