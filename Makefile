# One command sets up and starts the app (`make run`); one sets up and runs the tests (`make test`).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup run test bench browser test-oldest gpu-bench

# requirements.txt holds ranges (what a Space installs); requirements.lock pins the versions tested here.
$(STAMP): requirements.txt requirements-dev.txt requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -r requirements-dev.txt
	touch $@

setup: $(STAMP)

# Debian's Chromium for the real-browser tests (Playwright drives it; it downloads no browser of its own).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: setup
	$(VENV)/bin/python app.py

test: setup browser
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python -m benchmarks.bench
