# Two commands for a new machine with only Python 3.10+:
#   make run    set up a virtual environment with what running needs (the engine and the web pages),
#               then start a broker with local workers and the web pages
#   make test   add the test tools (pytest, Playwright, schemathesis...) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKERS ?= 2
WEB ?= 127.0.0.1:8080

.PHONY: setup setup-test run test test-pure lint bench clean

$(VENV)/.installed-run: setup.cfg setup.py pyproject.toml engine/broker/_hotpath.pyx engine/broker/_hotpath_core.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[web]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e ".[web,test]"
	touch $@

setup: $(VENV)/.installed-run

setup-test: $(VENV)/.installed-test

run: setup
	$(PY) -m engine.broker --local-workers $(WORKERS) --web $(WEB)

test: setup-test
	$(PY) -m pytest

# The broker, fault and hardening tests again on the hot path's pure-Python twin (CI runs both).
PURE_TESTS = tests/test_broker_hotpath.py tests/test_core_*.py tests/test_faults_*.py tests/test_hardening_*.py
test-pure: setup-test
	ENGINE_NO_EXTENSIONS=1 $(PY) -m pytest -q $(PURE_TESTS)

# ruff (lint) and mypy (types), configured in pyproject.toml; CI runs both and both must be clean.
lint: setup-test
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup-test
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .benchmarks bench/.build engine/broker/_hotpath.c engine/broker/_hotpath.*.so
