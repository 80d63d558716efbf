# Two commands for a new machine with only Python 3.10+:
#   make run    set up a virtual environment, start a broker with local workers and the web pages
#   make test   set up the same environment and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKERS ?= 2
WEB ?= 127.0.0.1:8080
EXTRAS ?= test

.PHONY: setup run test bench clean

$(VENV)/.installed-$(EXTRAS): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

run: setup
	$(PY) -m engine.broker --local-workers $(WORKERS) --web $(WEB)

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .benchmarks
