# Two entry points, both self-contained on a fresh machine with Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick lint install clean

run: $(STAMP)
	$(BIN)/mnist-sweep run configs/regularization.yaml

# The full suite CI runs, on two worker processes: most of its time is spent starting child processes
# (each imports TensorFlow) and waiting on them, so two workers finish sooner even on two cores. Tests
# marked @pytest.mark.xdist_group("ray") start Ray clusters and run one after another on one worker.
# `make test WORKERS=0` runs it in one process; more workers need the cores and memory to match.
WORKERS ?= 2

# ruff (lint) and mypy (types, configured in pyproject.toml) check the package before the tests run.
test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check mnist_sweep
	$(BIN)/mypy

# The tests that need no Keras (config, grid, results, statistics, figures), one file per core.
# `make test` above stays the full suite CI runs.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not keras and not slow" -n auto --dist loadfile

install: $(STAMP)

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
