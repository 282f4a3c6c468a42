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


from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

from ..backend import fresh_session, resolve_device, versions
from ..plan.grouping import group_form, group_id, optimizer_key
from ..records import Form, Status, Trial, TrialResult
from ..results.store import HISTORY_COLUMNS
from .models import build_model, build_optimizer, compile_model, count_params, summary_text
from .order import fit_inputs
from .saving import attach_model
from .engine import StackEngine
from .engine import supported as engine_supported
from .train import EVAL_BATCH, execute_trial, stop_mode, summarize_history

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


class EngineForm:
    """The stacked form: the group as one compiled model (`engine.StackEngine`); stopped branches may leave it."""

    kind = "stacked"

    def __init__(self, trials: list[Trial], data):
        self.engine = StackEngine(trials, data)
        self.twins = self.engine.twins
        self.stop_training = False
        self.model = self  # what the group callback stops

    def snapshot(self, ids: list[int]) -> dict[int, Any]:
        return self.engine.snapshot(ids)

    def size(self) -> int:
        return self.engine.size()

    def drop(self, live: list[int]) -> None:
        self.engine.drop(live)

    def finish(self, final: dict[int, Any]) -> None:
        self.engine.finish(final)


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


def _restack_due(live: int, stacked: int) -> bool:
    """Dropping stopped branches costs one retrace: worth it once a quarter of the stack has stopped."""
    return 0 < live < stacked and stacked - live >= max(1, stacked // 4)


class _GroupCallback(keras.callbacks.Callback):
    """Each branch's epochs, early stopping, divergence, pruning and time limit, and when to re-stack.

    A Keras callback for branch sub-models' `fit`, and the stacked engine's callback (which reads
    `stop_training` on it after each epoch).
    """

    def __init__(self, form, branches: list[_Branch], on_epoch, deadline: Optional[float], epochs: int):
        super().__init__()
        self.form = form
        self.group_model = form.model  # not `model`, which fit sets; the form keeps this one while it re-stacks
        self.branches = branches
        self.on_epoch = on_epoch
        self.deadline = deadline
        self.epochs = epochs
        self.start = 0.0
        self.stop_training = False

    def _stop(self) -> None:
        self.stop_training = True
        self.group_model.stop_training = True

    def _past_deadline(self) -> bool:
        if self.deadline is None or time.perf_counter() <= self.deadline:
            return False
        for b in self.branches:
            b.timed_out = b.status is None
        self._stop()
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._past_deadline()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self.start
        live = [b for b in self.branches if b.status is None]
        ends: dict[int, str] = {}  # branch -> the status it stops with now
        keep_best: list[_Branch] = []
        for b in live:
            row = {"epoch": epoch + 1, "epoch_seconds": seconds}
            for key in HISTORY_COLUMNS[1:-1]:
                name = f"val_b{b.index}_{key[4:]}" if key.startswith("val_") else f"b{b.index}_{key}"
                row[key] = float(logs[name]) if name in logs else math.nan
            b.rows.append(row)
            pruned = bool(self.on_epoch(b.trial, b.rows)) if self.on_epoch is not None else False
            if not math.isfinite(row["loss"]):  # cut off this branch; the others go on
                ends[b.index] = Status.DIVERGED
            elif pruned:  # the search's pruner stops this branch; the others go on
                ends[b.index] = Status.PRUNED
            elif b.tracker is not None and b.spec is not None:
                value = row[b.spec["monitor"]]
                if b.spec["restore_best_weights"] and (b.tracker.best is None or b.tracker.improved(value)):
                    keep_best.append(b)
                if b.tracker.update(epoch, value):
                    ends[b.index] = Status.OK
        # Only the weights someone needs are read out of the stack.
        weights = self.form.snapshot(sorted({*ends, *(b.index for b in keep_best)}))
        for b in keep_best:
            b.best_weights = weights[b.index]
        for b in live:
            if b.index in ends:
                b.status = ends[b.index]
                restore = b.status == Status.OK and b.spec is not None and b.spec["restore_best_weights"]
                b.weights = b.best_weights if restore else weights[b.index]
        still = [b.index for b in self.branches if b.status is None]
        if not still:
            self._stop()
        elif self._past_deadline():
            return
        elif (epoch + 1 < self.epochs and not self.stop_training and not self.group_model.stop_training
              and _restack_due(len(still), self.form.size())):
            for b in self.branches:
                if b.status is not None and b.left_after is None:
                    b.left_after = epoch + 1
            self.form.drop(still)


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


def _together_note(fused, size: int, gid: str) -> str:
    if fused.kind == "stacked":
        shape = fused.engine.describe()
        return (f"trained in one compiled model with {size - 1} other trial(s) (group {gid}: {shape['branches']} "
                f"branches in {shape['substacks']} stack(s), {shape['seeds']} seed(s)): times are the group's, shared")
    return (f"trained fused (branch sub-models) with {size - 1} other trial(s) in group {gid}: "
            "times are the group's, shared")


@fresh_session()
def execute_group(trials: list[Trial], data, on_epoch=None, timeout_seconds: Optional[float] = None,
                  save_model: bool = False, form: Optional[str] = None) -> dict[str, TrialResult]:
    """Train a group of trials as one fused model; returns each trial's result, keyed by trial id.

    `form` is "stacked" or "branches"; by default the fastest the group allows (`group_form`).
    """
    if (form or group_form(trials)) == Form.STACKED and not engine_supported():  # torch: each trial alone
        return {t.trial_id: execute_trial(t, data, on_epoch, timeout_seconds, save_model) for t in trials}
    start = time.perf_counter()
    gid = group_id(trials)
    form_name = form or group_form(trials)
    if form_name != Form.STACKED and len({optimizer_key(t.settings["optimizer"]) for t in trials}) > 1:
        raise ValueError(f"trials of one {form_name} group need one optimizer: {group_id(trials)}'s differ")
    common: TrialResult = {"versions": versions(), "execution": "fused", "group_id": gid, "group_size": len(trials)}
    try:
        common["device"] = resolve_device("auto")
        settings = trials[0].settings
        branches = [_Branch(t, k) for k, t in enumerate(trials)]
        deadline = time.perf_counter() + timeout_seconds if timeout_seconds else None
        fused: EngineForm | BranchForm
        if form_name == Form.STACKED:
            fused = EngineForm(trials, data)
            callback = _GroupCallback(fused, branches, on_epoch, deadline, settings["epochs"])
            fit_start = time.perf_counter()
            fused.engine.fit(settings["epochs"], callback)
            group_seconds = time.perf_counter() - fit_start
            fused.finish({b.index: w for b in branches if (w := _final_weights(b)) is not None})
            test = {}
            for k, (loss, accuracy) in fused.engine.score(data.x_test, data.y_test).items():
                test[f"b{k}_loss"], test[f"b{k}_accuracy"] = loss, accuracy
            common["stacking"] = fused.engine.describe()
        else:
            fused = BranchForm(trials, data.x_train)
            model = fused.model
            model.compile(optimizer=build_optimizer(settings["optimizer"]))
            callback = _GroupCallback(fused, branches, on_epoch, deadline, settings["epochs"])
            keras.utils.set_random_seed(trials[0].seed)
            validation = (data.x_val, data.y_val) if len(data.x_val) else None
            fit_start = time.perf_counter()
            # A group of branch sub-models shares one seed: every branch is fed its isolated twin's batches.
            model.fit(**fit_inputs(data.x_train, data.y_train, settings["batch_size"], trials[0].seed),
                      validation_data=validation, epochs=settings["epochs"], callbacks=[callback], verbose=0)
            group_seconds = time.perf_counter() - fit_start
            fused.finish({b.index: w for b in branches if (w := _final_weights(b)) is not None})
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
    for k, b in enumerate(branches):
        twin = fused.twins[k]
        metrics = _metrics(b)
        status = Status.TIMEOUT if b.timed_out else (b.status or Status.OK)
        notes = [_together_note(fused, len(trials), gid)]
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
