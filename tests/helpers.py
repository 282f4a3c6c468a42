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


_CHILD_OUTCOMES: dict = {}


def ran_on_backend(backend: str, request) -> bool:
    """Run a test parametrized by Keras backend: False when `backend` is this process's (run the body here);
    True when the test ran in a child process on that backend and passed there (it fails or skips as it did there).

    Keras' backend is fixed per process, so the first such test of a file runs every test of the file whose id
    names `backend` in one child (`-k backend`), and each parent test reports its own outcome from there.
    """
    import pytest

    from mnist_sweep.backend import backend_name

    if backend == backend_name():
        return False
    pytest.importorskip(backend)
    path = str(request.node.path)
    if (path, backend) not in _CHILD_OUTCOMES:
        _CHILD_OUTCOMES[(path, backend)] = _child_outcomes(path, backend, request)
    outcomes, output = _CHILD_OUTCOMES[(path, backend)]
    outcome, message = outcomes.get(request.node.name, ("missing", ""))
    if outcome == "skipped":
        pytest.skip(message)
    if outcome != "passed":
        pytest.fail(f"on {backend} ({outcome}): {message}\n{output}")
    return True


def _child_outcomes(path: str, backend: str, request) -> tuple[dict, str]:
    """Every `backend` test of `path` run once in a child process: {test name: (outcome, message)}, and its output.

    Under pytest-xdist the workers share one run: the first to ask runs the child, under a lock in the
    session's shared temporary folder, and the others read what it wrote there.
    """
    import fcntl
    import hashlib
    import json
    import os
    import subprocess
    import sys
    import xml.etree.ElementTree as ElementTree

    base = request.config._tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    name = hashlib.sha256(f"{path}|{backend}".encode()).hexdigest()[:12]
    saved, report = shared / f"child-{name}.json", shared / f"child-{name}.xml"
    with open(shared / f"child-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved.exists():
            outcomes, output = json.loads(saved.read_text())
            return {k: tuple(v) for k, v in outcomes.items()}, output
        done = subprocess.run([sys.executable, "-m", "pytest", path, "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                               "-k", backend, f"--junitxml={report}"], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend}, timeout=1200)
        outcomes = {}
        if report.exists():
            for case in ElementTree.parse(report).iter("testcase"):
                problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
                outcomes[case.get("name")] = ("passed", "") if problem is None else (
                    problem.tag, (problem.get("message") or "") + "\n" + (problem.text or ""))
        output = done.stdout[-4000:] + done.stderr[-4000:]
        saved.write_text(json.dumps([outcomes, output]))
        return outcomes, output
