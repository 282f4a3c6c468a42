"""Shared test set-up: no network, an empty Keras cache, and seeded randomness."""

import os
import random
import sys

import numpy as np
import pytest

# Set before anything imports Keras: quiet TensorFlow and never try to download data.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MNIST_SWEEP_OFFLINE"] = "1"

KERAS_FREE = pytest.StashKey[bool]()  # no selected test is marked keras (`make test-quick`)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test starts from the same seeds and an empty Keras cache directory."""
    random.seed(0)
    np.random.seed(0)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras_home"))
    # One parsed copy of the bundled subset per test session, shared by the CLI subprocesses.
    monkeypatch.setenv("MNIST_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("MNIST_SWEEP_OFFLINE", "1")


def pytest_collection_finish(session):
    session.config.stash[KERAS_FREE] = not any(item.get_closest_marker("keras") for item in session.items)


@pytest.fixture(autouse=True)
def _keras_marker_is_honest(request):
    """In a run without Keras tests, a test that loads Keras is missing its `keras` marker: say which."""
    before = "keras" in sys.modules or "tensorflow" in sys.modules
    yield
    if request.config.stash.get(KERAS_FREE, False) and not before:
        loaded = [name for name in ("keras", "tensorflow") if name in sys.modules]
        assert not loaded, f"{request.node.nodeid} loads {', '.join(loaded)}: mark it @pytest.mark.keras"
