"""mnist-sweep: Keras experiment sweeps on MNIST from one YAML file.

For notebooks:

    from mnist_sweep import load_results, load_histories, run_sweep
"""

__version__ = "0.1.0"
__all__ = ["load_histories", "load_results", "run_sweep"]

_EXPORTS = {"load_results": "results.store", "load_histories": "results.store", "run_sweep": "sweep.runner"}


def __getattr__(name):
    """Import the public functions on first use, so `mnist-sweep --help` stays instant."""
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
