"""The one place that imports Keras: picks the backend and device before the import.

Everything else gets Keras through `get_keras()` (training/'s modules, which `import keras` at the top,
through `training/_quiet_import.py`), so `mnist-sweep --help` and config validation never pay for
loading TensorFlow.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from functools import lru_cache

from .errors import DeviceError

BACKENDS = ("tensorflow", "jax", "torch")
DEVICES = ("auto", "cpu", "gpu")


def check_backend(backend: str | None = None) -> str:
    """The Keras backend a run would use (`backend`, else $KERAS_BACKEND, else tensorflow), or a DeviceError
    saying why it cannot be used: checked without importing it, before any work."""
    chosen = backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    where = f"--backend {chosen}" if backend else f"KERAS_BACKEND={chosen}"
    if chosen not in BACKENDS:
        raise DeviceError(f"{where} is not a Keras backend; use one of: {', '.join(BACKENDS)} "
                          f"(e.g. unset KERAS_BACKEND for tensorflow)")
    if importlib.util.find_spec(chosen) is None:
        extra = {"tensorflow": "tensorflow", "jax": "'mnist-sweep[jax]'", "torch": "torch"}[chosen]
        raise DeviceError(f"{where}: {chosen} is not installed: pip install {extra}, or choose an installed "
                          f"backend with --backend or KERAS_BACKEND")
    return chosen


def configure(backend: str | None = None, device: str = "auto", threads: int | None = None) -> None:
    """Set the environment Keras reads at import time; must run before `get_keras()`."""
    check_backend(backend)
    if "keras" in sys.modules and backend and os.environ.get("KERAS_BACKEND", "tensorflow") != backend:
        raise DeviceError(f"Keras is already loaded with backend {os.environ.get('KERAS_BACKEND')!r}; "
                          f"cannot switch to {backend!r} in the same process")
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # hides GPUs from every backend
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if threads:
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[var] = str(threads)


@contextmanager
def _native_logs_held():
    """Hold back what C++ start-up code writes to fd 2 (TensorFlow's CUDA probing, CPU notes).

    No Python setting silences those lines; they are shown if the import fails, and never held
    when the user asks for them with TF_CPP_MIN_LOG_LEVEL=0.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@lru_cache(maxsize=None)
def get_keras():
    """Import and return the `keras` module (once per process), its start-up chatter held back."""
    if "keras" not in sys.modules:
        check_backend()
    with _native_logs_held():
        import keras

        keras.ops.convert_to_tensor([0.0])  # the first op probes devices: keep that quiet too
    return keras


def backend_name() -> str:
    return get_keras().backend.backend()


def gpu_names() -> list[str]:
    """Names of the GPUs the active backend can see."""
    name = backend_name()
    if name == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def resolve_device(device: str) -> str:
    """The device trials will run on ('cpu' or 'gpu:<name>'); errors if a GPU was asked for and none is visible."""
    if device == "cpu":
        return "cpu"
    gpus = gpu_names()
    if device == "gpu" and not gpus:
        raise DeviceError(f"--device gpu: no GPU is visible to the {backend_name()} backend. "
                          "Check the driver (nvidia-smi) and that a GPU build of the backend is installed, "
                          "or use --device cpu.")
    return f"gpu:{gpus[0]}" if gpus else "cpu"


def _tf_gradient_registry() -> dict | None:
    """TensorFlow's process-wide table of gradient functions, or None on other backends."""
    if backend_name() != "tensorflow":
        return None
    try:
        from tensorflow.python.framework import ops

        return ops._gradient_registry._registry
    except (ImportError, AttributeError):  # a TensorFlow that moved it: nothing to clean
        return None


@contextmanager
def fresh_session():
    """Free everything one trial (or fused group) built once it is done, so a long sweep stays flat.

    `clear_session()` drops the models and traced functions. On TensorFlow that is not enough: each
    traced train step also registers a gradient function (the optimizer's all-reduce uses
    `tf.custom_gradient`) in a process-wide table that nothing ever empties, and each entry keeps
    its whole traced graph alive, about 2 MB a trial (tensorflow/tensorflow#97697). The entries the
    trial added are removed too; entries that were there before are left alone.
    """
    registry = _tf_gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        get_keras().backend.clear_session()
        if registry is not None:
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    registry.pop(name, None)


def versions() -> dict[str, str]:
    """Versions recorded with every trial."""
    keras = get_keras()
    found = {"python": platform.python_version(), "keras": keras.__version__, "backend": backend_name()}
    for module in ("tensorflow", "jax", "torch", "numpy"):
        if module in sys.modules:
            found[module] = getattr(sys.modules[module], "__version__", "?")
    return found
