"""Stacked fused training: each branch of a stacked group gives its isolated twin's results."""

import math

import numpy as np
import pytest

from mnist_sweep.backend import get_keras
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.plan.grouping import describe_groups, group_form, group_trials
from mnist_sweep.plan.grid import expand
from mnist_sweep.training.models import build_optimizer
from mnist_sweep.training.saving import model_to_bytes
from tests.helpers import DIVERGING, lazy, tiny_config

StackedForm = lazy("mnist_sweep.training.fused", "StackedForm")
execute_group = lazy("mnist_sweep.training.fused", "execute_group")
execute_trial = lazy("mnist_sweep.training.train", "execute_trial")

FIRST_EPOCH_TOLERANCE = 1e-5  # the bound on a branch's first-epoch losses against its twin


def _sweep(**sections):
    config = validate_config(tiny_config(**sections))
    return expand(config), load_dataset(config.dataset)


def _first_epoch_deviation(fused: dict, alone: dict) -> float:
    a, b = fused["history"][0], alone["history"][0]
    return max(abs(a[key] - b[key]) for key in ("loss", "val_loss"))


# Every option a dense network has, several per branch; all share the shape [8, 4], so they form one stack.
OPTIONS = [
    {"activation": "relu", "kernel_l1": 0.001, "kernel_l2": 0.01, "dropout": 0.3},
    {"activation": "tanh", "activity_l1": 0.001, "activity_l2": 0.002, "batch_norm": True,
     "batch_norm_momentum": 0.9},
    {"activation": "leaky_relu", "leaky_alpha": 0.2, "batch_norm": "input",
     "initializer": {"name": "random_normal", "stddev": 0.05}},
    {"activation": "gelu", "initializer": "he_uniform", "dropout": 0.1, "batch_norm": True},
    {"activation": "swish", "kernel_l2": 0.005, "activity_l1": 0.0005},
]
NORMALIZED = [{"activation": "elu", "dropout": 0.2}, {"activation": "linear", "batch_norm": "input"},
              {"activation": "selu"}]


@pytest.mark.keras
@pytest.mark.parametrize("normalize", [False, True])
def test_every_dense_option_trains_as_its_isolated_twin_in_the_first_epoch(normalize):
    trials, data = _sweep(model={"hidden": [8, 4], "activation": "sigmoid", "normalize": normalize},
                          include=NORMALIZED if normalize else OPTIONS,
                          optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                          train={"epochs": 1})
    assert group_form(trials) == "stacked" and len(trials) == (4 if normalize else 6)
    fused = execute_group(trials, data)
    for trial in trials:
        alone = execute_trial(trial, data)
        together = fused[trial.trial_id]
        assert together["status"] == alone["status"] == "ok", together.get("error")
        assert _first_epoch_deviation(together, alone) < FIRST_EPOCH_TOLERANCE, trial.factors
        assert together["params"] == alone["params"]
        assert together["metrics"]["test_accuracy"] == pytest.approx(alone["metrics"]["test_accuracy"], abs=0.011)


def _monitored(result, epoch_index, monitor):
    return result["history"][epoch_index][monitor]


@pytest.mark.keras
def test_a_16_trial_grid_stops_where_its_twins_stop_with_the_same_mean_accuracy():
    trials, data = _sweep(
        model={"activation": ["relu", "tanh", "sigmoid", "elu"], "kernel_l2": [0.0, 0.01]},
        train={"epochs": 6, "early_stopping": [
            {"monitor": "val_loss", "patience": 0, "restore_best_weights": True},
            {"monitor": "val_accuracy", "patience": 2, "restore_best_weights": False}]},
        optimizer={"name": "adam", "learning_rate": 0.05})  # fast enough that branches stop at different epochs
    assert len(trials) == 16 and len(group_trials(trials)) == 1
    fused = execute_group(trials, data)
    deviation, fused_acc, alone_acc = 0.0, [], []
    for trial in trials:
        alone = execute_trial(trial, data)
        together = fused[trial.trial_id]
        deviation = max(deviation, _first_epoch_deviation(together, alone))
        a, b = together["metrics"], alone["metrics"]
        if a["epochs_run"] != b["epochs_run"]:  # only a float tie may decide differently
            decided = min(a["epochs_run"], b["epochs_run"]) - 1
            monitor = trial.settings["early_stopping"]["monitor"]
            assert _monitored(together, decided, monitor) == pytest.approx(
                _monitored(alone, decided, monitor), abs=FIRST_EPOCH_TOLERANCE), trial.factors
        fused_acc.append(a["test_accuracy"])
        alone_acc.append(b["test_accuracy"])
    assert deviation < FIRST_EPOCH_TOLERANCE
    assert abs(np.mean(fused_acc) - np.mean(alone_acc)) <= 0.002  # 0.2 points
    assert len({r["metrics"]["epochs_run"] for r in fused.values()}) > 1, "branches should stop at different epochs"


@pytest.mark.keras
def test_an_early_stopper_a_diverging_branch_and_live_ones_are_each_recorded_as_alone():
    trials, data = _sweep(
        model={"activation": "tanh"},
        include=[
            {"early_stopping": {"monitor": "val_loss", "patience": 0, "restore_best_weights": True},
             "activation": "relu"},
            {**DIVERGING, "activation": "relu"},
            {"activation": "sigmoid"}, {"activation": "elu"}],
        train={"epochs": 6, "early_stopping": False}, optimizer={"name": "adam", "learning_rate": 0.05})
    assert len(trials) == 5
    fused = execute_group(trials, data)
    statuses = []
    for trial in trials:
        alone, together = execute_trial(trial, data), fused[trial.trial_id]
        statuses.append(together["status"])
        assert together["status"] == alone["status"], trial.factors
        for key in ("epochs_run", "best_epoch", "stopped_early"):
            assert together["metrics"][key] == alone["metrics"][key], (trial.factors, key)
        if alone["status"] == "ok":
            assert _first_epoch_deviation(together, alone) < FIRST_EPOCH_TOLERANCE
            for key in ("train_loss", "val_loss", "test_loss"):
                assert together["metrics"][key] == pytest.approx(alone["metrics"][key], rel=1e-2), (trial.factors, key)
        else:
            assert math.isnan(together["metrics"]["test_accuracy"])
    assert statuses.count("diverged") == 1
    assert any(r["metrics"]["stopped_early"] for r in fused.values())
    assert all(r["fused_form"] == "stacked" for r in fused.values())
    assert any("left the stack" in " ".join(r["notes"]) for r in fused.values())


@pytest.mark.keras
def test_a_saved_stacked_branch_loads_in_safe_mode_and_predicts_what_the_stack_predicted(tmp_path):
    keras = get_keras()
    trials, data = _sweep(model={"hidden": [8], "activation": ["relu", "tanh"], "batch_norm": [False, True],
                                 "dropout": 0.2}, train={"epochs": 1})
    form = StackedForm(trials, data.x_train)
    form.model.compile(optimizer=build_optimizer(trials[0].settings["optimizer"]))
    form.model.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
    form.finish({})
    stacked, _ = form.model(data.x_test)
    for k, twin in enumerate(form.twins):
        path = tmp_path / f"{k}.keras"
        path.write_bytes(model_to_bytes(twin))
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded.predict(data.x_test, verbose=0), keras.ops.convert_to_numpy(stacked[k]),
                                   atol=1e-6)


@pytest.mark.keras
def test_the_group_result_carries_each_branch_model_and_its_test_accuracy(tmp_path):
    keras = get_keras()
    trials, data = _sweep(model={"activation": ["relu", "sigmoid", "tanh"]}, train={"epochs": 2})
    fused = execute_group(trials, data, save_model=True)
    for trial in trials:
        path = tmp_path / f"{trial.trial_id}.keras"
        path.write_bytes(fused[trial.trial_id]["model_file"])
        loaded = keras.saving.load_model(path, safe_mode=True)
        predicted = np.argmax(loaded.predict(data.x_test, verbose=0), axis=1)
        assert np.mean(predicted == data.y_test) == pytest.approx(fused[trial.trial_id]["metrics"]["test_accuracy"])


def test_groups_stack_equal_shapes_and_fall_back_to_branch_models_for_the_rest():
    trials = expand(validate_config(tiny_config(
        model={"hidden": [[8], [16]], "activation": ["relu", "tanh"]},
        include=[{"hidden": [4], "activation": "relu"}, {"hidden": [4], "activation": "elu", "type": "cnn",
                                                         "conv": [[4, "pool"]]}], seeds=2)))
    groups = group_trials(trials)
    forms = sorted((group_form(g), len(g)) for g in groups if len(g) > 1)
    # per seed: [8] x 2 stacked, [16] x 2 stacked, and the lone [4] MLP with the CNN as branch sub-models
    assert forms == [("branches", 2)] * 2 + [("stacked", 2)] * 4
    text = describe_groups(groups)
    assert "8 trial(s) in 4 stacked group(s)" in text
    assert "4 trial(s) in 2 group(s) of branch sub-models (convolutional layers, layer shapes differ)" in text
    assert len(group_trials(trials * 1, max_branches=1)) == len(trials)


@pytest.mark.keras
def test_sgd_branches_with_their_own_learning_rates_stack_and_train_as_their_twins():
    trials, data = _sweep(model={"hidden": [8], "activation": ["relu", "tanh"]}, train={"epochs": 2},
                          optimizer=[{"name": "sgd", "learning_rate": 0.01},
                                     {"name": "sgd", "learning_rate": 0.2, "momentum": 0.9},
                                     {"name": "sgd", "learning_rate": 0.5}])
    # momentum 0.9 is another optimizer: SGD branches may differ in their learning rate only
    groups = group_trials(trials)
    assert sorted(len(g) for g in groups) == [2, 4] and all(group_form(g) == "stacked" for g in groups)
    for group in groups:
        fused = execute_group(group, data)
        for trial in group:
            alone, together = execute_trial(trial, data), fused[trial.trial_id]
            assert together["status"] == alone["status"] == "ok", together.get("error")
            # epoch 1's val_loss is measured after epoch 1's steps: a wrong rate shows there
            assert _first_epoch_deviation(together, alone) < FIRST_EPOCH_TOLERANCE, trial.factors
            assert together["history"][1]["loss"] == pytest.approx(alone["history"][1]["loss"], abs=1e-4)


def test_only_stacked_sgd_branches_may_differ_in_learning_rate():
    adam = expand(validate_config(tiny_config(
        model={"activation": ["relu", "tanh"]},
        optimizer=[{"name": "adam", "learning_rate": 0.01}, {"name": "adam", "learning_rate": 0.1}])))
    assert sorted(len(g) for g in group_trials(adam)) == [2, 2]  # Adam divides out a gradient's scale
    sub_models = expand(validate_config(tiny_config(
        model={"hidden": [4], "activation": "relu", "type": "cnn", "conv": [[4, "pool"]]},
        include=[{"hidden": [4], "activation": "elu"}],
        optimizer=[{"name": "sgd", "learning_rate": 0.01}, {"name": "sgd", "learning_rate": 0.1}])))
    groups = group_trials(sub_models)
    assert [group_form(g) for g in groups] == ["branches", "branches"]
    for group in groups:
        assert len({t.settings["optimizer"]["learning_rate"] for t in group}) == 1
