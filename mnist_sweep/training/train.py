"""Training one trial: seeding, callbacks, timing, evaluation and its status."""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import _quiet_import  # noqa: F401  (first: Keras is loaded through backend.get_keras)
import keras

from ..backend import fresh_session, resolve_device, versions
from ..metrics import higher_is_better
from ..records import Status, Trial, TrialResult
from ..results.store import HISTORY_COLUMNS
from .models import build_model, compile_model, count_params, summary_text
from .order import fit_inputs
from .saving import attach_model

EVAL_BATCH = 1024  # evaluation batch: large, since it does not affect the result

# Called after every epoch with (trial, history rows so far); a true result prunes the trial (search).
EpochHook = Callable[[Trial, list], Optional[bool]]


@dataclass
class TrialOutcome:
    """What one training run produced, before it is written to the results directory."""

    status: str  # ok | diverged
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    params: dict[str, int]
    fit_seconds: float
    model_summary: str
    notes: list[str] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the trained Keras model, for saving


class _EpochRecorder(keras.callbacks.Callback):
    """A Keras callback that times each epoch and records its logs as one history row."""

    def __init__(self, trial: Trial, hook: Optional[EpochHook]):
        super().__init__()
        self.trial = trial
        self.hook = hook
        self.rows: list[dict[str, float]] = []
        self._start = 0.0
        self.pruned = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1}
        for key in HISTORY_COLUMNS[1:-1]:
            row[key] = float(logs[key]) if key in logs else math.nan
        row["epoch_seconds"] = time.perf_counter() - self._start
        self.rows.append(row)
        if self.hook is not None and self.hook(self.trial, self.rows) and math.isfinite(row["loss"]):
            self.pruned = True
            self.model.stop_training = True


def stop_mode(monitor: str) -> str:
    """Accuracy is maximized, loss minimized: said explicitly rather than left to Keras to infer."""
    return "max" if higher_is_better(monitor) else "min"


def _diverged(rows: list[dict[str, float]]) -> bool:
    return any(not math.isfinite(r["loss"]) for r in rows)


def summarize_history(rows, best_index: Optional[int], restore: bool, stopped_early: bool) -> dict[str, Any]:
    """Epoch counts and the train/val metrics of the epoch whose weights the model ends with.

    `best_index` is early stopping's best epoch (0-based), or None without early stopping.
    """
    if best_index is None:
        best_index = _best_index(rows, "val_loss") if rows and not math.isnan(rows[-1]["val_loss"]) else len(rows) - 1
    final = rows[best_index] if restore else rows[-1]
    return {
        "epochs_run": len(rows), "best_epoch": best_index + 1 if rows else 0, "stopped_early": stopped_early,
        "train_loss": final["loss"], "train_accuracy": final["accuracy"],
        "val_loss": final["val_loss"], "val_accuracy": final["val_accuracy"],
    }


def _best_index(rows, monitor: str) -> int:
    """The first epoch with the lowest finite value of a loss column."""
    finite = [(r[monitor], i) for i, r in enumerate(rows) if math.isfinite(r[monitor])]
    return min(finite)[1] if finite else len(rows) - 1


def train_trial(trial: Trial, data, on_epoch: Optional[EpochHook] = None, extra_callbacks=()) -> TrialOutcome:
    """Seed, build, fit with EarlyStopping and TerminateOnNaN, then evaluate on the test split."""
    settings = trial.settings
    keras.utils.set_random_seed(trial.seed)
    model = compile_model(build_model(settings, input_shape=data.x_train.shape[1:], x_train=data.x_train), settings)
    recorder = _EpochRecorder(trial, on_epoch)
    callbacks = [recorder, keras.callbacks.TerminateOnNaN(), *extra_callbacks]
    stopper = None
    if settings["early_stopping"]:
        spec = settings["early_stopping"]
        stopper = keras.callbacks.EarlyStopping(monitor=spec["monitor"], patience=spec["patience"],
                                                min_delta=spec["min_delta"], mode=stop_mode(spec["monitor"]),
                                                restore_best_weights=spec["restore_best_weights"])
        callbacks.append(stopper)
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    start = time.perf_counter()
    model.fit(**fit_inputs(data.x_train, data.y_train, settings["batch_size"], trial.seed),
              validation_data=validation, epochs=settings["epochs"], callbacks=callbacks, verbose=0)
    fit_seconds = time.perf_counter() - start
    rows = recorder.rows
    metrics = summarize_history(
        rows, stopper.best_epoch if stopper else None,  # Keras' own best epoch: its first strict improvement
        restore=bool(stopper) and settings["early_stopping"]["restore_best_weights"],
        stopped_early=bool(stopper) and stopper.stopped_epoch > 0)
    status = Status.DIVERGED if _diverged(rows) else Status.PRUNED if recorder.pruned else Status.OK
    notes = []
    if status == Status.PRUNED:  # not a result: kept out of every mean, so no test metrics either
        metrics.update(test_loss=math.nan, test_accuracy=math.nan)
        notes.append(f"pruned after epoch {len(rows)}: its validation metric was not promising")
    elif status == Status.OK:
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=EVAL_BATCH, verbose=0)
        metrics.update(test_loss=float(test_loss), test_accuracy=float(test_accuracy))
    else:
        metrics.update(test_loss=math.nan, test_accuracy=math.nan)
        epoch = next(r["epoch"] for r in rows if not math.isfinite(r["loss"]))
        notes.append(f"loss became NaN or infinite at epoch {epoch}")
    return TrialOutcome(status, rows, metrics, count_params(model), fit_seconds, summary_text(model), notes, model)


class _Timeout(keras.callbacks.Callback):
    """A callback that stops training once a trial has run past its time limit."""

    def __init__(self, seconds: float):
        super().__init__()
        self.deadline = time.perf_counter() + seconds
        self.fired = False

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() > self.deadline:
            self.fired = True
            self.model.stop_training = True


@fresh_session()  # also on failure: the next trial starts clean
def execute_trial(trial: Trial, data, on_epoch: Optional[EpochHook] = None,
                  timeout_seconds: Optional[float] = None, save_model: bool = False) -> TrialResult:
    """Train one trial wherever it runs and return a plain, picklable result; never raises but for Ctrl-C.

    With `save_model`, a trial that ends ok also returns its `.keras` file as bytes (`model_file`),
    for the driver to write: workers need no access to the results directory.
    """
    start = time.perf_counter()
    result: TrialResult = {"versions": versions()}
    try:
        result["device"] = resolve_device("auto")
        guard = _Timeout(timeout_seconds) if timeout_seconds else None
        outcome = train_trial(trial, data, on_epoch=on_epoch, extra_callbacks=[guard] if guard else ())
        epochs = max(outcome.metrics["epochs_run"], 1)
        status = Status.TIMEOUT if guard is not None and guard.fired else outcome.status
        notes = outcome.notes + ([f"stopped after {timeout_seconds:g} s (train.timeout_seconds)"]
                                 if status == Status.TIMEOUT else [])
        result["status"], result["history"], result["metrics"] = status, outcome.history, outcome.metrics
        result["params"], result["model_summary"], result["notes"] = outcome.params, outcome.model_summary, notes
        result["timing"] = {"fit_seconds": outcome.fit_seconds, "seconds_per_epoch": outcome.fit_seconds / epochs}
        if save_model and status == Status.OK:
            attach_model(result, outcome.model)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded as a failed trial; the sweep goes on
        result["status"], result["error"] = Status.FAILED, f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    result.setdefault("timing", {})["wall_seconds"] = time.perf_counter() - start
    return result
