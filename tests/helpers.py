"""Helpers the tests share: import them as `from tests.helpers import tiny_config`."""

from importlib import import_module

# Model settings that make a trial diverge in its first training step on any CPU and backend: the L2
# penalty, 1e38 x (sum of squared kernel weights, about 16 for a glorot-initialized 784x8 layer),
# overflows float32 to +inf in one multiplication and is added to the loss. No NaN has to pass
# through an activation or a clip, which kernels treat differently (oneDNN's ReLU maps NaN to 0).
DIVERGING = {"kernel_l2": 1e38}


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


def lazy(module: str, name: str):
    """`module.name`, imported on first call: training/'s modules load Keras, and collecting a test file
    (as `make test-quick` does for every file) must not."""

    def call(*args, **kwargs):
        return getattr(import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call
