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

# Debian's packages the tests use: Chromium for the real-browser tests (Playwright drives it; it downloads no browser
# of its own) and libfaketime for the app started with its clock moved (the sweep's tests and the soak).
browser:
	@(command -v chromium && command -v faketime) >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium faketime >/dev/null)

run: setup
	$(VENV)/bin/python app.py

test: setup browser
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python -m benchmarks.bench

# On a CUDA GPU: the GPU's figures against the planner's (README, Performance).
gpu-bench: setup
	$(VENV)/bin/python -m benchmarks.gpu

# The lower bound of requirements.txt, tested: the oldest torch it admits (where ZeroGPU's August 2026 list starts) on
# the Space's Python (README's python_version), with the rest of requirements.txt resolved as the Space's build
# resolves it (no lock: the lock's versions need Python 3.11). Only the core: the engine, the app's start-up and a
# run through it, the ZeroGPU fork simulation, the presets (tomli on 3.10). Downloads ~3 GB of CUDA wheels from PyPI.
OLDEST_PYTHON ?= python3.10
OLDEST_VENV ?= .venv-oldest
OLDEST_TORCH := torch==2.8.0 torchvision==0.23.0
CORE_TESTS := tests/test_engine.py tests/test_zerogpu.py tests/test_presets.py tests/test_python_version.py \
	tests/test_app.py::test_python_app_py_serves_the_page_within_15_seconds \
	tests/test_app.py::test_stylize_streams_frames_and_ends_with_the_png_once_and_a_status_line

$(OLDEST_VENV)/.installed: requirements.txt
	$(OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/pip install --quiet $(OLDEST_TORCH) -r requirements.txt pytest vermin
	touch $@

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -c "import sys, torch, torchvision; print('oldest:', sys.version.split()[0], torch.__version__, torchvision.__version__)"
	$(OLDEST_VENV)/bin/python -m pytest -q $(CORE_TESTS)
