"""The stacked engine: each branch of one compiled model ends as its isolated twin would, on TensorFlow and JAX.

Every test runs on both backends (`ran_on_backend` runs the JAX cases in one child process). A branch is
compared with `execute_trial` of its trial alone: the same status and epochs, its epoch-1 losses within
float tolerance, its later ones close, and the same test accuracy.
"""

import math

import numpy as np
import pytest

from mnist_sweep.backend import get_keras
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.plan.grid import expand
from mnist_sweep.plan.grouping import group_form, make_tasks
from tests.helpers import DIVERGING, lazy, ran_on_backend, tiny_config

execute_group = lazy("mnist_sweep.training.fused", "execute_group")
execute_trial = lazy("mnist_sweep.training.train", "execute_trial")

BACKENDS = ["tensorflow", "jax"]
FIRST_EPOCH_TOLERANCE = 1e-5  # a branch's epoch-1 losses against its twin's
LATER_TOLERANCE = 1e-3  # relative, for later epochs: float differences grow as training goes on


def _sweep(**sections):
    config = validate_config(tiny_config(**sections))
    return expand(config), load_dataset(config.dataset)


def _one_model(trials, data, **kwargs):
    """Train the trials as the planner's one stacked task; every branch must report the same compiled model."""
    tasks = make_tasks(trials, fuse=True)
    assert len(tasks) == 1 and group_form(tasks[0].trials) == "stacked", [len(t) for t in tasks]
    results = execute_group(list(tasks[0].trials), data, **kwargs)
    failed = [r.get("traceback") for r in results.values() if r["status"] == "failed"]
    assert not failed, failed[0]
    assert len({r["group_id"] for r in results.values()}) == 1
    return results


def _assert_twin(together: dict, alone: dict, label) -> None:
    assert together["status"] == alone["status"], label
    a, b = together["metrics"], alone["metrics"]
    for key in ("epochs_run", "best_epoch", "stopped_early"):
        assert a[key] == b[key], (label, key)
    if alone["status"] == "diverged":  # alone, TerminateOnNaN ends the epoch at its first infinite batch
        assert not math.isfinite(together["history"][-1]["loss"]) and math.isnan(a["test_accuracy"]), label
        return
    first, twin = together["history"][0], alone["history"][0]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if math.isfinite(twin[key]):
            assert abs(first[key] - twin[key]) < FIRST_EPOCH_TOLERANCE, (label, key, first[key], twin[key])
    for row, twin_row in zip(together["history"][1:], alone["history"][1:]):
        for key in ("loss", "val_loss"):
            assert row[key] == pytest.approx(twin_row[key], rel=LATER_TOLERANCE), (label, row["epoch"], key)
    if alone["status"] == "ok":
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6), label
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=LATER_TOLERANCE), label
    else:
        assert math.isnan(a["test_accuracy"]), label


_ALONE: dict = {}  # trial id -> its isolated result, shared by the tests of one process that train it


def _assert_every_twin(trials, data, results, on_epoch=None) -> None:
    for trial in trials:
        if trial.trial_id not in _ALONE:
            _ALONE[trial.trial_id] = execute_trial(trial, data, on_epoch=on_epoch)
        _assert_twin(results[trial.trial_id], _ALONE[trial.trial_id], trial.factors)


@pytest.mark.keras
@pytest.mark.parametrize("backend", BACKENDS)
def test_seeds_share_one_stack_each_with_its_own_batches_weights_and_dropout(backend, request):
    if ran_on_backend(backend, request):
        return
    trials, data = _sweep(model={"hidden": [8], "activation": ["relu", "tanh"], "dropout": 0.3}, seeds=3,
                          optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}, train={"epochs": 3})
    results = _one_model(trials, data)
    assert {r["stacking"]["substacks"] for r in results.values()} == {1}
    assert {r["stacking"]["seeds"] for r in results.values()} == {3}
    _assert_every_twin(trials, data, results)


OPTIMIZERS = [
    {"name": "sgd", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True},
    {"name": "sgd", "learning_rate": 0.1},
    {"name": "rmsprop", "learning_rate": 0.005, "rho": 0.8, "momentum": 0.5},
    {"name": "adagrad", "learning_rate": 0.05},
    {"name": "adadelta", "learning_rate": 0.5, "rho": 0.9},
    {"name": "adam", "learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99},
    {"name": "adam", "learning_rate": 0.003},
    {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.05},
    {"name": "nadam", "learning_rate": 0.005, "beta_2": 0.95},
]


@pytest.mark.keras
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_optimizer_family_with_its_own_settings_steps_in_one_model(backend, request):
    if ran_on_backend(backend, request):
        return
    trials, data = _sweep(model={"hidden": [8], "activation": "relu", "batch_norm": "input"},
                          optimizer=OPTIMIZERS, seeds=[3], train={"epochs": 3})
    results = _one_model(trials, data)
    assert {r["stacking"]["substacks"] for r in results.values()} == {7}  # one per optimizer family
    _assert_every_twin(trials, data, results)


@pytest.mark.keras
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layer_shapes_with_and_without_normalized_inputs_train_in_one_model(backend, request):
    if ran_on_backend(backend, request):
        return
    trials, data = _sweep(
        model={"hidden": [[8], [16, 8]], "normalize": [False, True]},
        include=[{"activation": "gelu", "batch_norm": True, "dropout": 0.2, "kernel_l1": 0.001, "activity_l2": 0.002},
                 {"activation": "leaky_relu", "leaky_alpha": 0.2, "batch_norm": "input", "batch_norm_momentum": 0.9,
                  "kernel_l2": 0.01, "activity_l1": 0.0005, "initializer": {"name": "random_normal", "stddev": 0.05}}],
        # SGD: under Adam, a Dense bias before batch normalization (whose gradient is float noise) moves by
        # the learning rate whatever the noise, so no two summation orders agree on it
        optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}, train={"epochs": 2})
    results = _one_model(trials, data)
    assert {r["stacking"]["substacks"] for r in results.values()} == {4}  # 2 shapes x normalize
    _assert_every_twin(trials, data, results)


def _prune_one(target: str, after: int):
    def on_epoch(trial, rows):
        return trial.trial_id == target and len(rows) == after
    return on_epoch


@pytest.mark.keras
@pytest.mark.parametrize("compact", [False, True], ids=["kept", "compacted"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_branches_that_stop_diverge_or_are_pruned_end_as_alone_while_the_rest_go_on(backend, compact, request,
                                                                                   monkeypatch):
    if ran_on_backend(backend, request):
        return
    from mnist_sweep.training import fused

    # kept: stopped branches stay in the compiled model to the end; compacted: they leave it at once
    monkeypatch.setattr(fused, "_restack_due", lambda live, stacked: compact and 0 < live < stacked)
    trials, data = _sweep(
        model={"activation": "tanh"},
        include=[{"early_stopping": {"monitor": "val_loss", "patience": 0, "restore_best_weights": True},
                  "activation": "relu"},
                 {**DIVERGING, "activation": "relu"},
                 {"activation": "sigmoid", "dropout": 0.2}, {"activation": "elu"}],
        seeds=[0, 1], train={"epochs": 6, "early_stopping": False}, optimizer={"name": "adam", "learning_rate": 0.05})
    target = next(t for t in trials if t.factors.get("activation") == "sigmoid" and t.seed == 1).trial_id
    hook = _prune_one(target, after=2)
    results = _one_model(trials, data, on_epoch=hook)
    statuses = sorted(r["status"] for r in results.values())
    assert statuses.count("diverged") == 2 and statuses.count("pruned") == 1, statuses
    assert any(r["metrics"]["stopped_early"] for r in results.values())
    left = any("left the stack" in " ".join(r["notes"]) for r in results.values())
    assert left == compact
    _assert_every_twin(trials, data, results, on_epoch=hook)


@pytest.mark.keras
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_time_limit_stops_every_branch_at_an_epoch_end(backend, request):
    if ran_on_backend(backend, request):
        return
    trials, data = _sweep(model={"activation": ["relu", "tanh"]}, seeds=2, train={"epochs": 50})
    results = _one_model(trials, data, timeout_seconds=0.01)
    for r in results.values():
        assert r["status"] == "timeout"
        assert 1 <= r["metrics"]["epochs_run"] < 50
        assert any("train.timeout_seconds" in note for note in r["notes"])


@pytest.mark.keras
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_saved_branch_loads_in_safe_mode_and_scores_what_the_stack_reported(backend, request, tmp_path):
    if ran_on_backend(backend, request):
        return
    keras = get_keras()
    trials, data = _sweep(model={"hidden": [[8], [6, 4]], "activation": "tanh", "batch_norm": True, "dropout": 0.2},
                          optimizer=[{"name": "adam"}, {"name": "sgd"}], seeds=2, train={"epochs": 2})
    results = _one_model(trials, data, save_model=True)
    for trial in trials:
        path = tmp_path / f"{trial.trial_id}.keras"
        path.write_bytes(results[trial.trial_id]["model_file"])
        loaded = keras.saving.load_model(path, safe_mode=True)
        predicted = np.argmax(loaded.predict(data.x_test, verbose=0), axis=1)
        assert np.mean(predicted == data.y_test) == pytest.approx(results[trial.trial_id]["metrics"]["test_accuracy"])


@pytest.mark.keras
def test_an_8_trial_grid_with_early_stopping_keeps_its_twins_mean_accuracy():
    trials, data = _sweep(
        model={"activation": ["relu", "tanh", "sigmoid", "elu"]},
        train={"epochs": 6, "early_stopping": [
            {"monitor": "val_loss", "patience": 0, "restore_best_weights": True},
            {"monitor": "val_accuracy", "patience": 2, "restore_best_weights": False}]},
        optimizer={"name": "adam", "learning_rate": 0.05})
    assert len(trials) == 8
    results = _one_model(trials, data)
    fused_acc, alone_acc = [], []
    for trial in trials:
        alone, together = execute_trial(trial, data), results[trial.trial_id]
        assert abs(together["history"][0]["val_loss"] - alone["history"][0]["val_loss"]) < FIRST_EPOCH_TOLERANCE
        fused_acc.append(together["metrics"]["test_accuracy"])
        alone_acc.append(alone["metrics"]["test_accuracy"])
    assert abs(np.mean(fused_acc) - np.mean(alone_acc)) <= 0.002
    assert len({r["metrics"]["epochs_run"] for r in results.values()}) > 1, "branches should stop at different epochs"


@pytest.mark.keras
def test_xla_compiled_epochs_match_the_twins_when_no_branch_drops_out(monkeypatch):
    from mnist_sweep.backend import backend_name
    from mnist_sweep.training.engine import trainer

    if backend_name() != "tensorflow":
        pytest.skip("JAX always compiles with XLA: every JAX case above covers it")
    monkeypatch.setattr(trainer, "XLA_MIN_STEPS", 0)  # a long sweep's choice, on a short one
    trials, data = _sweep(model={"hidden": [[8], [6, 4]], "batch_norm": [False, "input"]},
                          optimizer=[{"name": "adam"}, {"name": "sgd", "learning_rate": 0.1, "momentum": 0.5}],
                          train={"epochs": 2})
    results = _one_model(trials, data)
    assert {r["stacking"]["xla"] for r in results.values()} == {True}
    _assert_every_twin(trials, data, results)
