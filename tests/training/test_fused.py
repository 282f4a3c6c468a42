"""Fused training: K trials as one model give the results each would give alone."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mnist_sweep.backend import get_keras
from mnist_sweep.cli import cli
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.plan.grouping import group_trials
from mnist_sweep.plan.grid import expand
from mnist_sweep.records import Sizing
from mnist_sweep.sweep.runner import run_sweep
from tests.helpers import DIVERGING, lazy, tiny_config

EarlyStopTracker = lazy("mnist_sweep.training.fused", "EarlyStopTracker")
execute_group = lazy("mnist_sweep.training.fused", "execute_group")
execute_trial = lazy("mnist_sweep.training.train", "execute_trial")
stop_mode = lazy("mnist_sweep.training.train", "stop_mode")


def _keras_stop_epoch(values, monitor, patience, min_delta):
    """Where Keras' own EarlyStopping stops on a scripted validation curve (None: it does not)."""
    keras = get_keras()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, min_delta=min_delta,
                                            mode=stop_mode(monitor))
    stopper.set_model(model)
    stopper.on_train_begin()
    model.stop_training = False
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            return epoch
    return None


def _tracker_stop_epoch(values, monitor, patience, min_delta):
    tracker = EarlyStopTracker(monitor, patience, min_delta)
    for epoch, value in enumerate(values):
        if tracker.update(epoch, value):
            return epoch
    return None


CURVES = {
    "falls then rises": [1.0, 0.8, 0.7, 0.72, 0.75, 0.71, 0.8, 0.9],
    "plateau within min_delta": [1.0, 0.9, 0.895, 0.894, 0.893, 0.892, 0.85, 0.84],
    "keeps improving": [1.0, 0.9, 0.8, 0.7, 0.6],
    "rises at once": [0.5, 0.6, 0.7, 0.8],
    "accuracy rises then dips": [0.5, 0.7, 0.8, 0.79, 0.81, 0.78, 0.77, 0.76],
}


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("patience", [0, 1, 2])
@pytest.mark.parametrize("min_delta", [0.0, 0.01])
@pytest.mark.keras
def test_branch_early_stopping_stops_where_keras_does(curve, patience, min_delta):
    monitor = "val_accuracy" if "accuracy" in curve else "val_loss"
    values = CURVES[curve]
    assert _tracker_stop_epoch(values, monitor, patience, min_delta) == \
        _keras_stop_epoch(values, monitor, patience, min_delta)


def _sweep(**sections):
    config = validate_config(tiny_config(**sections))
    return expand(config), load_dataset(config.dataset)


def _compare(trials, data):
    fused = execute_group(trials, data, form="branches")  # the sub-model form; tests/test_stacked.py has the other
    for trial in trials:
        alone = execute_trial(trial, data)
        together = fused[trial.trial_id]
        assert together["status"] == alone["status"] == "ok", together.get("error")
        for key in ("test_loss", "test_accuracy", "val_loss", "train_loss", "epochs_run", "best_epoch"):
            assert together["metrics"][key] == pytest.approx(alone["metrics"][key], rel=1e-4, abs=1e-5), \
                f"{trial.factors}: {key}"
    return fused


@pytest.mark.keras
def test_every_model_option_gives_the_isolated_result():
    trials, data = _sweep(
        model={"hidden": [8, 4], "activation": "leaky_relu", "batch_norm": [False, True, "input"], "dropout": 0.2},
        include=[{"kernel_l1": 0.001, "kernel_l2": 0.01, "batch_norm": False},
                 {"activity_l1": 0.001, "activity_l2": 0.001, "batch_norm": False},
                 {"initializer": {"name": "random_normal", "stddev": 0.05}, "activation": "sigmoid",
                  "batch_norm": False}],
        optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9})
    assert len(trials) == 6
    _compare(trials, data)


@pytest.mark.keras
def test_each_branch_stops_early_on_its_own_and_keeps_its_best_weights():
    trials, data = _sweep(
        dataset={"n_train": 300},
        model={"activation": ["relu", "tanh", "sigmoid"]},
        train={"epochs": 25, "early_stopping": [
            {"monitor": "val_loss", "patience": 0, "restore_best_weights": True},
            {"monitor": "val_accuracy", "patience": 3, "restore_best_weights": False},
        ]}, optimizer={"name": "adam", "learning_rate": 0.05})
    fused = _compare(trials, data)
    epochs = {fused[t.trial_id]["metrics"]["epochs_run"] for t in trials}
    assert len(epochs) > 1, "branches should stop at different epochs"
    assert any(r["metrics"]["stopped_early"] for r in fused.values())


@pytest.mark.keras
def test_a_diverging_branch_is_cut_off_and_the_others_match_their_isolated_runs():
    trials, data = _sweep(
        model={"kernel_l2": [0.0, DIVERGING["kernel_l2"]]},
        train={"epochs": 3})
    fused = execute_group(trials, data, form="branches")
    healthy, exploding = trials
    assert fused[exploding.trial_id]["status"] == "diverged"
    assert math.isnan(fused[exploding.trial_id]["metrics"]["test_accuracy"])
    alone = execute_trial(healthy, data)
    assert fused[healthy.trial_id]["status"] == "ok"
    assert fused[healthy.trial_id]["metrics"]["test_loss"] == pytest.approx(alone["metrics"]["test_loss"], rel=1e-4)
    assert execute_trial(exploding, data)["status"] == "diverged"  # as it does alone


def test_dense_trials_group_by_batch_size_and_epochs_whatever_their_seeds_and_optimizers():
    trials = expand(validate_config(tiny_config(
        model={"activation": ["relu", "tanh", "elu"]}, train={"batch_size": [32, 64]},
        optimizer=[{"name": "adam"}, {"name": "sgd", "learning_rate": 0.1}], seeds=2)))
    groups = group_trials(trials, Sizing(max_branches=5))
    assert sum(len(g) for g in groups) == len(trials) == 24
    for group in groups:
        assert len(group) <= 5 and len({t.settings["batch_size"] for t in group}) == 1
    assert [len(g) for g in group_trials(trials)] == [12, 12]  # one model per batch size


@pytest.mark.keras
def test_no_fuse_trains_each_trial_alone_and_says_so(tmp_path):
    import yaml

    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="f", model={"activation": ["relu", "tanh"]}, train={"epochs": 1})))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "r"), "--no-fuse"])
    assert result.exit_code == 0, result.output
    assert "isolated: 2 trial(s), each its own model" in result.output
    assert set(pd.read_csv(tmp_path / "r" / "f" / "summary.csv")["execution"]) == {"isolated"}


@pytest.mark.keras
def test_fused_sweep_through_the_cli_records_shared_times(tmp_path):
    import yaml

    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="f", model={"activation": ["relu", "tanh", "sigmoid"]})))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "r")])  # fused by default
    assert result.exit_code == 0, result.output
    assert "3 trials in 1 compiled model: 3 branches in 1 stack" in result.output
    summary = pd.read_csv(tmp_path / "r" / "f" / "summary.csv")
    assert set(summary["execution"]) == {"fused"} and summary["group_id"].nunique() == 1
    assert (summary["fit_seconds"] * 3).tolist() == pytest.approx(summary["group_seconds"].tolist())
    record = json.loads(next((tmp_path / "r" / "f" / "runs").glob("*/trial.json")).read_text())
    assert "times are the group's, shared" in record["notes"][0]
    history = pd.read_csv(tmp_path / "r" / "f" / "runs" / record["trial_id"] / "history.csv")
    assert len(history) == 2


@pytest.mark.slow
@pytest.mark.keras
def test_three_seed_means_fused_match_isolated_within_the_seed_spread(tmp_path):
    config = tiny_config(name="stat", model={"activation": ["relu", "tanh"]}, seeds=3, train={"epochs": 3})
    isolated = run_sweep(dict(config, execution="isolated"), out=tmp_path / "iso")
    fused = run_sweep(dict(config, execution="fused"), out=tmp_path / "fused")
    assert set(fused["execution"]) == {"fused"} and set(isolated["execution"]) == {"isolated"}
    for activation in ("relu", "tanh"):
        a = isolated.loc[isolated["activation"] == activation, "test_accuracy"]
        b = fused.loc[fused["activation"] == activation, "test_accuracy"]
        assert abs(a.mean() - b.mean()) <= max(a.std(), b.std(), 1e-9)


@pytest.mark.keras
def test_cnn_branches_with_normalization_and_augmentation_match_and_save_their_models():
    trials, data = _sweep(
        dataset={"n_train": 200, "n_test": 50},
        model={"type": "cnn", "conv": [[4, "pool"]], "hidden": [8], "normalize": True},
        augment=[False, True], train={"epochs": 1})
    fused = execute_group(trials, data, save_model=True)
    for trial in trials:
        alone = execute_trial(trial, data)
        assert fused[trial.trial_id]["metrics"]["test_loss"] == pytest.approx(alone["metrics"]["test_loss"], rel=1e-4)
        assert fused[trial.trial_id]["model_file"][:2] == b"PK"  # a .keras file is a zip archive
