"""NaN and infinite pixels are refused by every data source the same way: exit 2, counted, located, nothing written.

Training and `predict` read the same formats (a .npz, IDX files, a Kaggle CSV) and Keras' cache; each
bad file says how many values are NaN, infinite or out of range, and where the first one is.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli

PIXELS = ",".join(f"pixel{i}" for i in range(784))


def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def images(n: int, bad: dict[int, float] | None = None, count: int = 784) -> np.ndarray:
    """n float32 images of 0-255 values; image i of `bad` gets `count` pixels set to bad[i]."""
    x = np.random.default_rng(0).integers(0, 256, (n, 28, 28)).astype(np.float32)
    for i, value in (bad or {}).items():
        x[i].reshape(-1)[:count] = value
    return x


def labels(n: int) -> np.ndarray:
    return np.arange(n) % 10


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    """An IDX file of the given data type (0x08 unsigned bytes, 0x0D big-endian float32), gzipped by name."""
    dtype = {0x08: np.uint8, 0x0D: ">f4"}[type_code]
    raw = (type_code << 8 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += np.asarray(array, dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    """A Kaggle CSV whose cells are written as Python prints them: NaN as 'nan', infinity as 'inf'."""
    head = ("label," if y is not None else "") + PIXELS
    lines = [",".join(([str(int(y[i]))] if y is not None else []) + [f"{v:g}" for v in row.reshape(-1)])
             for i, row in enumerate(x)]
    path.write_text("\n".join([head, *lines]) + "\n")
    return path


def run_on(tmp_path: Path, **dataset):
    config = {"name": "nonfinite", "dataset": {"name": "mnist", "validation_split": 0.2, **dataset},
              "model": {"hidden": [4]}, "train": {"epochs": 1}, "seeds": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    return invoke("run", tmp_path / "c.yaml", "--out", tmp_path / "results")


def assert_refused(result, tmp_path: Path, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    assert not (tmp_path / "results").exists()


def test_npz_training_images_with_nan_are_counted_by_split_and_first_image(tmp_path):
    x = images(30, {3: np.nan, 7: np.nan}, count=5)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=labels(30), x_test=images(10), y_test=labels(10))
    assert_refused(run_on(tmp_path, source="file", path=str(tmp_path / "d.npz")), tmp_path,
                   f"{tmp_path / 'd.npz'} [train]: pixel values must be finite numbers in 0-255; "
                   "found 10 NaN values in 2 images, the first in image 3")


def test_npz_test_images_with_infinities_and_nan_are_counted_apart(tmp_path):
    x = images(10, {4: np.inf, 6: -np.inf}, count=2)
    x[9, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", x_train=images(30), y_train=labels(30), x_test=x, y_test=labels(10))
    assert_refused(run_on(tmp_path, source="file", path=str(tmp_path / "d.npz")), tmp_path,
                   "[test]: pixel values must be finite numbers in 0-255; found 1 NaN and 4 infinite values in "
                   "3 images, the first in image 4")


def test_idx_folder_of_float_images_with_nan_is_counted(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images(30, {0: np.nan}, count=1), type_code=0x0D)
    write_idx(folder / "train-labels-idx1-ubyte", labels(30))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images(10, {2: np.inf}, count=3), type_code=0x0D)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels(10))
    assert_refused(run_on(tmp_path, source="file", path=str(folder)), tmp_path,
                   "[train]: pixel values must be finite numbers in 0-255; found 1 NaN value in 1 image, "
                   "the first in image 0")


def test_kaggle_training_csv_with_nan_and_inf_cells_names_the_line_and_counts(tmp_path):
    x = images(20, {5: np.nan, 8: np.inf}, count=2)
    path = write_csv(tmp_path / "train.csv", x, labels(20))
    assert_refused(run_on(tmp_path, source="file", path=str(path)), tmp_path,
                   f"{path}, line 7: missing value (2 missing or NaN and 2 infinite values in 2 rows; pixel "
                   "values must be finite numbers in 0-255)")


def test_keras_cache_with_infinite_pixels_is_refused_with_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / "keras" / "datasets" / "mnist.npz", x_train=images(40, {12: np.inf}, count=784),
             y_train=labels(40), x_test=images(10), y_test=labels(10))
    assert_refused(run_on(tmp_path, source="keras"), tmp_path,
                   "[train]: pixel values must be finite numbers in 0-255; found 784 infinite values in 1 image, "
                   "the first in image 12", "(in Keras' cache: delete it so Keras downloads it again)")


@pytest.fixture
def model(tmp_path) -> Path:
    """A path `predict` takes as a model: the input is refused before the model is ever loaded."""
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    return path


@pytest.mark.parametrize("kind", ["npz", "csv", "idx"])
def test_predict_refuses_nan_and_inf_inputs_in_every_format_and_writes_nothing(tmp_path, model, kind):
    x = images(6, {1: np.nan, 4: np.inf}, count=3)
    if kind == "npz":
        np.savez(tmp_path / "in.npz", x=x)
        path, where = tmp_path / "in.npz", "[x]: pixel values must be finite numbers in 0-255; found 3 NaN and " \
                                           "3 infinite values in 2 images, the first in image 1"
    elif kind == "csv":
        path, where = write_csv(tmp_path / "test.csv", x), "line 3: missing value (3 missing or NaN and 3 " \
                                                           "infinite values in 2 rows"
    else:
        path = write_idx(tmp_path / "t10k-images-idx3-ubyte", x, type_code=0x0D)
        where = "pixel values must be finite numbers in 0-255; found 3 NaN and 3 infinite values in 2 images, " \
                "the first in image 1"
    result = invoke("predict", model, path, "--out", tmp_path / "submission.csv")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {path}") and where in result.output, result.output
    assert not (tmp_path / "submission.csv").exists()


def test_float_idx_images_in_range_load_like_bytes(tmp_path):
    """The IDX reader takes every IDX data type; in-range float pixels are then read as any others."""
    from mnist_sweep.data.dataset import read_images

    x = images(4)
    assert np.array_equal(read_images(write_idx(tmp_path / "f-idx3-ubyte", x, type_code=0x0D)), x)
    assert np.array_equal(read_images(write_idx(tmp_path / "b-idx3-ubyte", x)), x.astype(np.uint8))
