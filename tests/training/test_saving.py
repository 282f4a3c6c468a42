"""Which trained models a sweep keeps, and how the best one is chosen (by validation, never test, accuracy)."""

import json

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.training.saving import BEST_FILE, keep_models
from tests.helpers import tiny_config


def _sweep(tmp_path, trials):
    """A results directory whose trials each left a model file; `trials` maps id -> (status, metrics)."""
    records = {}
    for trial_id, (status, metrics) in trials.items():
        run = tmp_path / "runs" / trial_id
        run.mkdir(parents=True)
        (run / "model.keras").write_bytes(b"model of " + trial_id.encode())
        records[trial_id] = {"trial_id": trial_id, "status": status, "seed": 0, "metrics": metrics}
    return records


def _models(tmp_path):
    return sorted(p.parent.name for p in tmp_path.glob("runs/*/model.keras"))


def test_best_is_chosen_by_validation_accuracy_never_test_accuracy(tmp_path):
    records = _sweep(tmp_path, {
        "a": ("ok", {"val_accuracy": 0.90, "val_loss": 0.3, "test_accuracy": 0.99}),
        "b": ("ok", {"val_accuracy": 0.95, "val_loss": 0.2, "test_accuracy": 0.80}),
        "c": ("failed", {"val_accuracy": 0.99, "val_loss": 0.1}),  # not finished: never the best
    })
    best = keep_models(tmp_path, records, "best")
    assert best["trial_id"] == "b" and best["selected_by"] == "val_accuracy"
    assert json.loads((tmp_path / BEST_FILE).read_text())["model"] == "runs/b/model.keras"
    assert _models(tmp_path) == ["b"]


def test_ties_go_to_the_lower_validation_loss(tmp_path):
    records = _sweep(tmp_path, {"a": ("ok", {"val_accuracy": 0.9, "val_loss": 0.4}),
                                "b": ("ok", {"val_accuracy": 0.9, "val_loss": 0.3})})
    assert keep_models(tmp_path, records, "all")["trial_id"] == "b"
    assert _models(tmp_path) == ["a", "b"]  # all keeps every model


def test_without_a_validation_set_training_accuracy_decides_and_says_so(tmp_path):
    records = _sweep(tmp_path, {"a": ("ok", {"val_accuracy": None, "train_accuracy": 0.8, "train_loss": 0.5}),
                                "b": ("ok", {"val_accuracy": None, "train_accuracy": 0.9, "train_loss": 0.4})})
    best = keep_models(tmp_path, records, "best")
    assert best["trial_id"] == "b" and best["selected_by"] == "train_accuracy (no validation set)"


def test_a_resumed_sweep_keeps_the_best_of_old_and_new_trials(tmp_path):
    old = _sweep(tmp_path, {"a": ("ok", {"val_accuracy": 0.9, "val_loss": 0.3}),
                            "b": ("ok", {"val_accuracy": 0.8, "val_loss": 0.3})})
    keep_models(tmp_path, old, "best")
    assert _models(tmp_path) == ["a"]
    new = _sweep(tmp_path, {"c": ("ok", {"val_accuracy": 0.95, "val_loss": 0.2})})
    assert keep_models(tmp_path, {**old, **new}, "best")["trial_id"] == "c"
    assert _models(tmp_path) == ["c"]


def test_none_touches_nothing(tmp_path):
    records = _sweep(tmp_path, {"a": ("ok", {"val_accuracy": 0.9}), "b": ("ok", {"val_accuracy": 0.8})})
    assert keep_models(tmp_path, records, "none") is None
    assert _models(tmp_path) == ["a", "b"] and not (tmp_path / BEST_FILE).exists()


@pytest.mark.parametrize("mode, kept", [("none", 0), ("best", 1), ("all", 2)])
@pytest.mark.keras
def test_run_keeps_the_models_save_model_asks_for(tmp_path, mode, kept):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_config(model={"activation": ["relu", "tanh"]},
                                                 train={"epochs": 1, "batch_size": 64, "early_stopping": False,
                                                        "save_model": mode})))
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "results")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sweep = tmp_path / "results" / "tiny"
    assert len(list(sweep.glob("runs/*/model.keras"))) == kept
    assert (sweep / BEST_FILE).exists() == (mode != "none")
    assert ("Best model:" in result.output) == (mode != "none")
