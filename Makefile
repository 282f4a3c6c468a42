# Two entry points, both self-contained on a fresh machine with Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick lint install clean bench-data

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

# Full Fashion-MNIST for benchmarks/configs/fashion_full.yaml, from Debian's dataset-fashion-mnist package
# (the four IDX files in /usr/share/datasets/fashion-mnist, which `source: auto` finds offline). Needs
# root and apt-get; elsewhere it says what to do instead. Not part of `make test`.
FASHION_DIR := /usr/share/datasets/fashion-mnist
bench-data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST is installed: $(FASHION_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null; } && \
	  echo "Fashion-MNIST installed: $(FASHION_DIR)"; \
	else \
	  echo "Cannot install Fashion-MNIST here (needs root and apt-get): run 'apt-get install" \
	       "dataset-fashion-mnist' as root, or put the four Fashion-MNIST .gz IDX files in" \
	       "~/.keras/datasets/fashion-mnist/" >&2; \
	  exit 1; \
	fi

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
