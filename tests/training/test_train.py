"""Training one trial: early stopping, divergence, timing and evaluation."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_sweep.config import validate_config
from mnist_sweep.plan.grid import expand
from tests.helpers import DIVERGING, lazy, tiny_config

train_trial = lazy("mnist_sweep.training.train", "train_trial")

pytestmark = pytest.mark.keras  # every test here builds or trains a Keras model


def _data(n=200):
    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return SimpleNamespace(x_train=x, y_train=y, x_val=x[:40], y_val=y[:40], x_test=x[:50], y_test=y[:50])


def _trial(model=None, **train):
    return expand(validate_config(tiny_config(train=train, model=model or {})))[0]


def test_history_has_one_timed_row_per_epoch_and_test_metrics():
    seen = []
    outcome = train_trial(_trial(epochs=3), _data(), on_epoch=lambda t, rows: seen.append(len(rows)))
    assert outcome.status == "ok"
    assert [r["epoch"] for r in outcome.history] == [1, 2, 3]
    assert all(r["epoch_seconds"] > 0 for r in outcome.history)
    assert seen == [1, 2, 3]
    assert 0.0 <= outcome.metrics["test_accuracy"] <= 1.0
    assert outcome.metrics["epochs_run"] == 3 and not outcome.metrics["stopped_early"]
    assert outcome.params["params"] == 784 * 8 + 8 + 8 * 10 + 10


def test_early_stopping_ends_training_and_reports_the_best_epoch():
    # Random labels: validation loss stops improving almost at once.
    trial = _trial(epochs=30, early_stopping={"monitor": "val_loss", "patience": 1, "restore_best_weights": True})
    outcome = train_trial(trial, _data())
    metrics = outcome.metrics
    assert metrics["stopped_early"] and metrics["epochs_run"] < 30
    assert metrics["epochs_run"] - metrics["best_epoch"] == 1  # patience 1: one epoch past the best
    best_row = outcome.history[metrics["best_epoch"] - 1]
    assert metrics["val_loss"] == pytest.approx(best_row["val_loss"])
    assert best_row["val_loss"] == min(r["val_loss"] for r in outcome.history)


def test_a_non_finite_loss_ends_the_trial_as_diverged_not_a_crash():
    outcome = train_trial(_trial(DIVERGING, epochs=5), _data())
    assert outcome.status == "diverged"
    assert outcome.metrics["epochs_run"] == 1 and not math.isfinite(outcome.history[0]["loss"])
    assert math.isnan(outcome.metrics["test_accuracy"])
    assert outcome.notes == ["loss became NaN or infinite at epoch 1"]


def test_same_seed_gives_the_same_history():
    first = train_trial(_trial(epochs=2), _data()).history
    second = train_trial(_trial(epochs=2), _data()).history
    assert [r["loss"] for r in first] == pytest.approx([r["loss"] for r in second], rel=1e-5)


def test_a_long_sweep_in_one_process_keeps_no_traced_graphs_from_finished_trials():
    """Memory stays flat: TensorFlow's custom-gradient table would otherwise pin every trial's graph."""
    import gc

    from mnist_sweep.backend import backend_name
    from mnist_sweep.training.train import execute_trial

    if backend_name() != "tensorflow":
        pytest.skip("the leak and its cleanup are TensorFlow's")
    from tensorflow.python.framework.func_graph import FuncGraph

    def live_graphs():
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    trials = expand(validate_config(tiny_config(model={"activation": ["relu", "tanh", "sigmoid", "elu"]},
                                                train={"epochs": 1})))
    assert execute_trial(trials[0], _data())["status"] == "ok"
    after_one = live_graphs()
    for trial in trials[1:]:
        assert execute_trial(trial, _data())["status"] == "ok"
    assert live_graphs() == after_one
