"""Fused training: K compatible trials trained as one Keras model with K independent branches.

Tiny models spend most of a training step in framework overhead; K branches over the same
batches share it. Branches share no weights and the total loss is the sum of the branch losses,
so every branch gets exactly the gradient it would get alone. Each branch's loss includes its
own regularization penalties, so `loss`/`val_loss` mean what they mean for an isolated trial,
and each branch early-stops, diverges and is evaluated on its own.
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any, Optional

import numpy as np

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

from ..backend import fresh_session, resolve_device, versions
from ..plan.grouping import group_form, group_id, optimizer_key
from ..records import Status, Trial, TrialResult
from ..results.store import HISTORY_COLUMNS
from .models import build_model, build_optimizer, compile_model, count_params, summary_text
from .order import fit_inputs
from .saving import attach_model
from .stacked import StackedModel, build_twins, set_branch_weights
from .train import EVAL_BATCH, stop_mode, summarize_history

ops = keras.ops


class EarlyStopTracker:
    """Keras' EarlyStopping rule for one branch, fed one epoch's monitored value at a time."""

    def __init__(self, monitor: str, patience: int, min_delta: float):
        self.mode_max = stop_mode(monitor) == "max"
        self.patience, self.min_delta = patience, abs(min_delta)
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.wait = 0
        self.stopped_epoch: Optional[int] = None

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value - self.min_delta > self.best if self.mode_max else value + self.min_delta < self.best

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch (0-based); True when this branch should stop now."""
        self.wait += 1
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False


def _hidden_dense(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]


def _branch(settings: dict[str, Any], x_train, k: int):
    """One branch: the trial's own model, also returning its hidden activations for activity penalties."""
    plain = dict(settings, activity_l1=0.0, activity_l2=0.0)  # activity penalties are added in compute_loss
    model = build_model(plain, input_shape=x_train.shape[1:], name=f"b{k}", x_train=x_train)
    activations = [layer.output for layer in _hidden_dense(model)] if (
        settings["activity_l1"] or settings["activity_l2"]) else []
    return keras.Model(model.inputs, [model.output, *activations], name=f"branch{k}"), model


class FusedModel(keras.Model):
    """K branch sub-models side by side; the loss is the sum of theirs, each tracked on its own."""

    def __init__(self, branches, plain_models, settings):
        super().__init__(name="fused")
        self.branches = branches
        self.plain_models = plain_models
        self.settings = settings
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.loss_trackers = [keras.metrics.Mean(name=f"b{k}_loss") for k in range(len(branches))]
        self.acc_trackers = [keras.metrics.SparseCategoricalAccuracy(name=f"b{k}_accuracy")
                             for k in range(len(branches))]

    def call(self, x, training=False):
        return [branch(x, training=training) for branch in self.branches]

    def branch_loss(self, k, y, outputs):
        probs, *activations = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(y, probs))
        s = self.settings[k]
        for layer in _hidden_dense(self.plain_models[k]):
            if layer.kernel_regularizer is not None:
                loss = loss + layer.kernel_regularizer(layer.kernel)
        for a in activations:  # Keras' activity penalty: the regularizer over the batch / batch size
            loss = loss + (s["activity_l1"] * ops.mean(ops.sum(ops.abs(a), axis=-1))
                           + s["activity_l2"] * ops.mean(ops.sum(ops.square(a), axis=-1)))
        return loss, probs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = 0.0
        size = ops.cast(ops.shape(y)[0], "float32")  # Keras weights the loss mean by batch size
        for k, outputs in enumerate(y_pred):
            loss, probs = self.branch_loss(k, y, outputs)
            self.loss_trackers[k].update_state(loss, sample_weight=size)
            self.acc_trackers[k].update_state(y, probs)
            total = total + loss
        self.total_tracker.update_state(total, sample_weight=size)
        return total

    @property
    def metrics(self):
        return [self.total_tracker, *self.loss_trackers, *self.acc_trackers]


def make_fused_model(trials: list[Trial], x_train):
    """The fused model: every trial a branch, built right after seeding as its isolated twin would be."""
    branches, plain = [], []
    for k, trial in enumerate(trials):
        keras.utils.set_random_seed(trial.seed)  # same initial weights as the isolated trial
        branch, model = _branch(trial.settings, x_train, k)
        branches.append(branch)
        plain.append(model)
    return FusedModel(branches, plain, [t.settings for t in trials])  # fit builds it, as StackedModel says


class BranchForm:
    """Today's form: K branch sub-models side by side, each an ordinary model sharing the fused one's layers."""

    kind = "branches"

    def __init__(self, trials: list[Trial], x_train):
        self.model = make_fused_model(trials, x_train)
        self.twins = self.model.plain_models

    def snapshot(self, ids: list[int]) -> dict[int, Any]:
        return {i: self.twins[i].get_weights() for i in ids}

    def size(self) -> int:
        return 0  # branch sub-models run until the group ends; their weights are restored afterwards

    def drop(self, live: list[int]) -> None:
        raise NotImplementedError("branch sub-models cannot leave the fused model")

    def finish(self, final: dict[int, Any]) -> None:
        for i, weights in final.items():
            self.twins[i].set_weights(weights)


class StackedForm:
    """The stacked form: one model whose weights carry a branch axis; stopped branches leave it."""

    kind = "stacked"

    def __init__(self, trials: list[Trial], x_train):
        self.trials = trials
        self.twins = build_twins(trials, x_train)
        self.model = StackedModel(list(range(len(trials))), [t.settings for t in trials], self.twins,
                                  x_train.shape[1:])

    def snapshot(self, ids: list[int]) -> dict[int, Any]:
        slices = self.model.branch_slices()
        return {i: slices[i] for i in ids}

    def size(self) -> int:
        return len(self.model.plan.ids)

    def drop(self, live: list[int]) -> None:
        self.model.restack(live)

    def finish(self, final: dict[int, Any]) -> None:
        """Every branch back in the stack with the weights it ends with, for one evaluation; and in its twin."""
        current = self.model.branch_slices()
        weights = [final.get(i) or current[i] for i in range(len(self.trials))]
        for twin, w in zip(self.twins, weights):
            set_branch_weights(twin, w)
        stacked = {name: np.stack([w[name] for w in weights]) for name in weights[0]}
        if self.model.plan.ids == list(range(len(self.trials))):  # nobody left: keep the traced test step
            self.model.assign(stacked)
        else:
            self.model.load(list(range(len(self.trials))), [t.settings for t in self.trials], stacked)


def _restack_due(live: int, stacked: int) -> bool:
    """Re-stacking costs one retrace: worth it once a quarter of the stack has stopped."""
    return 0 < live < stacked and stacked - live >= max(1, stacked // 4)


class _Branch:
    """What the group callback tracks for one branch."""

    def __init__(self, trial: Trial, index: int):
        self.trial = trial
        self.index = index
        spec = trial.settings["early_stopping"]
        self.spec = spec or None
        self.tracker = EarlyStopTracker(spec["monitor"], spec["patience"], spec["min_delta"]) if spec else None
        self.rows: list[dict] = []
        self.status: Optional[str] = None  # None while training; "ok" once stopped; "diverged"
        self.weights = None  # the weights this branch ends with once it has stopped
        self.best_weights = None
        self.timed_out = False
        self.left_after: Optional[int] = None  # the epoch after which it left the stack


class _GroupCallback(keras.callbacks.Callback):
    """Each branch's epochs, early stopping, divergence, pruning and time limit, and when to re-stack."""

    def __init__(self, form, branches: list[_Branch], on_epoch, deadline: Optional[float], epochs: int):
        super().__init__()
        self.form = form
        self.group_model = form.model  # not `model`, which fit sets; the form keeps this one while it re-stacks
        self.branches = branches
        self.on_epoch = on_epoch
        self.deadline = deadline
        self.epochs = epochs
        self.start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.perf_counter() > self.deadline:
            for b in self.branches:
                b.timed_out = b.status is None
            self.group_model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self.start
        live = [b for b in self.branches if b.status is None]
        rows, pruned = {}, {}
        for b in live:
            row = {"epoch": epoch + 1, "epoch_seconds": seconds}
            for key in HISTORY_COLUMNS[1:-1]:
                name = f"val_b{b.index}_{key[4:]}" if key.startswith("val_") else f"b{b.index}_{key}"
                row[key] = float(logs[name]) if name in logs else math.nan
            b.rows.append(row)
            rows[b.index] = row
            pruned[b.index] = bool(self.on_epoch(b.trial, b.rows)) if self.on_epoch is not None else False
        weights = self.form.snapshot([b.index for b in live])
        for b in live:
            row = rows[b.index]
            if not math.isfinite(row["loss"]):  # cut off this branch; the others go on
                b.status, b.weights = Status.DIVERGED, weights[b.index]
                continue
            if pruned[b.index]:  # the search's pruner stops this branch; the others go on
                b.status, b.weights = Status.PRUNED, weights[b.index]
                continue
            self._early_stop(epoch, b, row, weights)
        still = [b.index for b in self.branches if b.status is None]
        if not still:
            self.group_model.stop_training = True
        elif (epoch + 1 < self.epochs and not self.group_model.stop_training
              and _restack_due(len(still), self.form.size())):
            for b in self.branches:
                if b.status is not None and b.left_after is None:
                    b.left_after = epoch + 1
            self.form.drop(still)

    def _early_stop(self, epoch, b: _Branch, row, weights):
        if b.tracker is None or b.spec is None:  # one without the other: never
            return
        value = row[b.spec["monitor"]]
        if b.tracker.best is None or b.tracker.improved(value):
            if b.spec["restore_best_weights"]:
                b.best_weights = weights[b.index]
        if b.tracker.update(epoch, value):
            b.status = Status.OK
            b.weights = b.best_weights if b.spec["restore_best_weights"] else weights[b.index]


def _metrics(b: _Branch) -> dict[str, Any]:
    if b.tracker is None or b.spec is None:  # both or neither: without early stopping
        return summarize_history(b.rows, None, restore=False, stopped_early=False)
    return summarize_history(b.rows, b.tracker.best_epoch, restore=b.spec["restore_best_weights"],
                             stopped_early=b.tracker.stopped_epoch is not None)


def _final_weights(b: _Branch):
    """The weights a branch ends with: at its stop (best or last), its best at the end, or None (as it is)."""
    if b.status is not None:
        return b.weights
    if b.spec and b.spec["restore_best_weights"]:
        return b.best_weights
    return None


@fresh_session()
def execute_group(trials: list[Trial], data, on_epoch=None, timeout_seconds: Optional[float] = None,
                  save_model: bool = False, form: Optional[str] = None) -> dict[str, TrialResult]:
    """Train a group of trials as one fused model; returns each trial's result, keyed by trial id.

    `form` is "stacked" or "branches"; by default the fastest the group allows (`group_form`).
    """
    start = time.perf_counter()
    gid = group_id(trials)
    form_name = form or group_form(trials)
    if len({optimizer_key(t.settings["optimizer"], form_name == "stacked") for t in trials}) > 1:
        raise ValueError(f"trials of one {form_name} group need one optimizer: {group_id(trials)}'s differ")
    common: TrialResult = {"versions": versions(), "execution": "fused", "group_id": gid, "group_size": len(trials)}
    try:
        common["device"] = resolve_device("auto")
        settings = trials[0].settings
        fused = (StackedForm if form_name == "stacked" else BranchForm)(trials, data.x_train)
        model = fused.model
        model.compile(optimizer=build_optimizer(settings["optimizer"]))
        branches = [_Branch(t, k) for k, t in enumerate(trials)]
        deadline = time.perf_counter() + timeout_seconds if timeout_seconds else None
        callback = _GroupCallback(fused, branches, on_epoch, deadline, settings["epochs"])
        keras.utils.set_random_seed(trials[0].seed)
        validation = (data.x_val, data.y_val) if len(data.x_val) else None
        fit_start = time.perf_counter()
        # A group's trials share one seed, so every branch is fed the batches its isolated twin is fed.
        model.fit(**fit_inputs(data.x_train, data.y_train, settings["batch_size"], trials[0].seed),
                  validation_data=validation, epochs=settings["epochs"], callbacks=[callback], verbose=0)
        group_seconds = time.perf_counter() - fit_start
        fused.finish({b.index: w for b in branches if (w := _final_weights(b)) is not None})
        model = fused.model
        test = model.evaluate(data.x_test, data.y_test, batch_size=EVAL_BATCH, verbose=0, return_dict=True)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the whole group failed: every branch is recorded with the error
        error: TrialResult = {"status": Status.FAILED, "error": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc()}
        wall = time.perf_counter() - start
        return {t.trial_id: {**common, **error, "timing": {"wall_seconds": wall, "group_seconds": wall}}
                for t in trials}
    results: dict[str, TrialResult] = {}
    share = group_seconds / len(trials)
    how = "stacked weights" if fused.kind == "stacked" else "branch sub-models"
    for k, b in enumerate(branches):
        twin = fused.twins[k]
        metrics = _metrics(b)
        status = Status.TIMEOUT if b.timed_out else (b.status or Status.OK)
        notes = [f"trained fused ({how}) with {len(trials) - 1} other trial(s) in group {gid}: "
                 "times are the group's, shared"]
        if status == Status.DIVERGED:
            metrics.update(test_loss=math.nan, test_accuracy=math.nan)
            notes.append(f"loss became NaN or infinite at epoch {len(b.rows)}; this branch was cut off, "
                         "the others went on")
        elif status == Status.PRUNED:
            metrics.update(test_loss=math.nan, test_accuracy=math.nan)
            notes.append(f"pruned after epoch {len(b.rows)}; this branch was cut off, the others went on")
        else:
            metrics.update(test_loss=float(test[f"b{k}_loss"]), test_accuracy=float(test[f"b{k}_accuracy"]))
        if status == Status.TIMEOUT:
            notes.append(f"stopped after {timeout_seconds:g} s (train.timeout_seconds)")
        if b.left_after is not None:
            notes.append(f"left the stack after epoch {b.left_after}: the others went on without it")
        results[b.trial.trial_id] = {
            **common, "status": status, "history": b.rows, "metrics": metrics, "fused_form": fused.kind,
            "params": count_params(twin), "model_summary": summary_text(twin), "notes": notes,
            "timing": {"fit_seconds": share, "seconds_per_epoch": share / max(len(b.rows), 1),
                       "group_seconds": group_seconds, "wall_seconds": (time.perf_counter() - start) / len(trials)},
        }
        if save_model and status == Status.OK:  # the branch alone, as an ordinary model
            attach_model(results[b.trial.trial_id], compile_model(twin, b.trial.settings))
    return results
