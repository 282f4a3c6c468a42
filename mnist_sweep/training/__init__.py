"""The Keras code: models, training one trial, fused and stacked groups, saving and predicting.

Imported only once the backend is chosen (`backend.configure`); nothing here is loaded by
`mnist-sweep --help` or config validation, so the names below are imported on first use.
"""

from importlib import import_module

_EXPORTS = {"build_model": "models", "compile_model": "models", "execute_trial": "train",
            "execute_group": "fused", "keep_models": "saving", "load_model": "saving", "predict_file": "predict"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
