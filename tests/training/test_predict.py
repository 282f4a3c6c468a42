"""`mnist-sweep predict` through the real CLI: submissions, bad input, and the Kaggle workflow end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mnist_sweep.backend import get_keras
from mnist_sweep.cli import cli
from mnist_sweep.config import DatasetConfig
from mnist_sweep.data.dataset import PIXEL_COLUMNS, load_dataset
from mnist_sweep.training.models import build_model
from mnist_sweep.training.saving import BEST_FILE, keep_models, model_to_bytes

BAD_INPUT = Path(__file__).parents[1] / "data" / "predict"
ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"type": "cnn", "conv": [2, "pool"], "kernel_size": 3, "conv_batch_norm": False, "normalize": False,
            "augment": False, "hidden": [4], "activation": "relu", "leaky_alpha": 0.01, "batch_norm": False,
            "dropout": 0.0, "kernel_l1": 0.0, "kernel_l2": 0.0, "activity_l1": 0.0, "activity_l2": 0.0,
            "initializer": "glorot_uniform"}


def _predict(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], catch_exceptions=False)


def _write_idx(path, images):
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in images.shape)
    path.write_bytes(header + images.astype(np.uint8).tobytes())
    return path


def _write_kaggle_csv(path, images):
    rows = np.rint(images.reshape(len(images), -1)).astype(int)
    path.write_text(",".join(PIXEL_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A results directory with one saved (untrained) model, as a finished sweep leaves it."""
    sweep = tmp_path_factory.mktemp("results") / "tiny"
    run = sweep / "runs" / "cnn-s0-00000000"
    run.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("name: tiny\n")
    (run / "model.keras").write_bytes(model_to_bytes(build_model(SETTINGS)))
    record = {"trial_id": run.name, "status": "ok", "seed": 0, "metrics": {"val_accuracy": 0.5, "val_loss": 1.0}}
    (run / "trial.json").write_text(json.dumps(record))
    keep_models(sweep, {run.name: record}, "best")
    return sweep


@pytest.fixture
def idx_images(tmp_path):
    return _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.random.default_rng(0).integers(0, 256, (5, 28, 28)))


@pytest.mark.keras
def test_predict_writes_a_kaggle_submission(sweep, idx_images, tmp_path):
    out = tmp_path / "submission.csv"
    result = _predict(sweep, idx_images, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output == (f"Wrote 5 predictions to {out} "
                             f"(model: {sweep / 'runs' / 'cnn-s0-00000000' / 'model.keras'}, its training "
                             f"dataset not recorded)\n")
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["ImageId", "Label"]
    assert list(submission["ImageId"]) == [1, 2, 3, 4, 5]
    assert submission["Label"].between(0, 9).all()


@pytest.mark.keras
def test_probabilities_add_one_column_per_digit(sweep, tmp_path):
    images = tmp_path / "images.npz"
    np.savez(images, x=np.random.default_rng(1).integers(0, 256, (3, 784)).astype(np.uint8))  # flat rows work
    out = tmp_path / "p.csv"
    assert _predict(sweep / "runs" / "cnn-s0-00000000", images, "--out", out, "--probabilities").exit_code == 0
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["ImageId", "Label", *(f"p{d}" for d in range(10))]
    probabilities = submission[[f"p{d}" for d in range(10)]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert list(submission["Label"]) == list(probabilities.argmax(axis=1))


@pytest.mark.parametrize("name, message", [
    ("wrong-columns.csv", "{path}: header has 700 columns starting 'pixel0,pixel1', expected 784: "
                          "'pixel0,pixel1,...,pixel783'"),
    ("non-numeric.csv", "{path}, line 3, column pixel12: non-numeric value 'abc'"),
    ("ragged.csv", "{path}, line 4: 786 values, expected 784 like the header"),
    ("wrong-size.npz", "{path} [x]: images have shape (2, 32, 32) and type uint8; "
                       "expected numbers shaped (n, 28, 28) or (n, 784)"),
])
@pytest.mark.keras
def test_bad_input_exits_2_naming_the_file_and_line(sweep, tmp_path, name, message):
    path = BAD_INPUT / name
    out = tmp_path / "predictions.csv"
    result = _predict(sweep, path, "--out", out)
    assert result.exit_code == 2
    assert result.output == f"Error: {message.format(path=path)}\n"
    assert not out.exists()


@pytest.mark.keras
def test_images_of_another_size_than_the_model_takes_exit_2(idx_images, tmp_path):
    keras = get_keras()
    model = keras.Sequential([keras.Input((32, 32)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = tmp_path / "other.keras"
    path.write_bytes(model_to_bytes(model))
    result = _predict(path, idx_images, "--out", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert result.output == f"Error: {idx_images}: images are 28x28 pixels, but the model {path} takes 32x32\n"


def test_a_sweep_without_saved_models_says_how_to_get_one(tmp_path, idx_images):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sweep.yaml").write_text("name: old\n")
    result = _predict(tmp_path / "old", idx_images)
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'old'} has no saved model ({BEST_FILE} is missing): run the sweep "
                             f"with train.save_model: best (the default) or all\n")


@pytest.mark.slow
@pytest.mark.keras
def test_kaggle_workflow_end_to_end(tmp_path):
    """A small SEEDS.md #3 sweep keeps its best model, which predicts a Kaggle test.csv well above chance."""
    out = tmp_path / "results"
    dataset = {"source": "bundled", "n_train": 300, "n_test": 100, "validation_split": 0.2}
    overrides = [*(f"dataset.{k}={v}" for k, v in dataset.items()), "model.conv=[4, pool]", "model.hidden=[16]",
                 "model.dropout=0", "model.conv_batch_norm=false", "model.batch_norm=false",
                 "optimizer={name: adam, learning_rate: 0.01}", "train.epochs=2", "train.batch_size=32", "seeds=1"]
    result = CliRunner().invoke(cli, ["run", str(ROOT / "configs" / "cnn_augmentation.yaml"), "--out", str(out),
                                      *(a for o in overrides for a in ("--set", o))], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sweep = out / "cnn_augmentation"
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"ok"}  # with and without augmentation
    best = json.loads((sweep / BEST_FILE).read_text())
    assert best["trial_id"] == summary.loc[summary["val_accuracy"].idxmax(), "trial_id"]
    assert [p.parent.name for p in sweep.glob("runs/*/model.keras")] == [best["trial_id"]]
    assert f"Best model: {sweep / best['model']}" in result.output

    # Kaggle's test.csv has pixels only: write the sweep's own held-out test images that way.
    data = load_dataset(DatasetConfig(name="mnist", **dataset))
    test_csv = _write_kaggle_csv(tmp_path / "test.csv", data.x_test * 255)
    submission_path = tmp_path / "submission.csv"
    assert _predict(sweep, test_csv, "--out", submission_path).exit_code == 0
    submission = pd.read_csv(submission_path)
    assert list(submission.columns) == ["ImageId", "Label"] and len(submission) == 100
    assert list(submission["ImageId"]) == list(range(1, 101)) and submission["Label"].between(0, 9).all()
    accuracy = (submission["Label"].to_numpy() == data.y_test).mean()
    assert accuracy > 0.4  # chance is 0.1
    assert accuracy == pytest.approx(best["test_accuracy"], abs=0.011)  # the model the sweep evaluated
