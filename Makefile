# Two entry points, both self-contained on a fresh machine with Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick install clean

run: $(STAMP)
	$(BIN)/mnist-sweep run configs/regularization.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

# The tests that need no Keras (config, grid, results, statistics, figures), one file per core:
# under a minute. `make test` above stays the full suite CI runs.
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
