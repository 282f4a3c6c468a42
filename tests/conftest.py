"""Shared test set-up: no network, an empty Keras cache, and seeded randomness."""

import os
import random

import numpy as np
import pytest

# Set before anything imports Keras: quiet TensorFlow and never try to download data.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MNIST_SWEEP_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test starts from the same seeds and an empty Keras cache directory."""
    random.seed(0)
    np.random.seed(0)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras_home"))
    # One parsed copy of the bundled subset per test session, shared by the CLI subprocesses.
    monkeypatch.setenv("MNIST_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("MNIST_SWEEP_OFFLINE", "1")


def tiny_config(name="tiny", **sections):
    """A config dict for a sweep that trains in a second or two on the bundled data."""
    config = {
        "name": name,
        "dataset": {"name": "mnist", "source": "bundled", "n_train": 300, "n_test": 100,
                    "validation_split": 0.2},
        "model": {"hidden": [8], "activation": "relu"},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "train": {"epochs": 2, "batch_size": 64, "early_stopping": False},
        "seeds": 1,
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config
