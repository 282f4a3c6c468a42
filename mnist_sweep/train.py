"""Training one trial: seeding, callbacks, timing, evaluation and its status."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .backend import get_keras
from .grid import Trial
from .models import build_model, compile_model, count_params, summary_text
from .store import HISTORY_COLUMNS

EVAL_BATCH = 1024  # evaluation batch: large, since it does not affect the result

# Called after every epoch with (trial, history rows so far).
EpochHook = Callable[[Trial, list], None]


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


def _epoch_recorder(trial: Trial, hook: Optional[EpochHook]):
    """A Keras callback that times each epoch and records its logs as one history row."""
    keras = get_keras()

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict[str, float]] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1}
            for key in HISTORY_COLUMNS[1:-1]:
                row[key] = float(logs[key]) if key in logs else math.nan
            row["epoch_seconds"] = time.perf_counter() - self._start
            self.rows.append(row)
            if hook is not None:
                hook(trial, self.rows)

    return EpochRecorder()


def _diverged(rows: list[dict[str, float]]) -> bool:
    return any(not math.isfinite(r["loss"]) for r in rows)


def _summarize(rows, stopper, settings) -> dict[str, Any]:
    """Epoch counts and the train/val metrics of the epoch whose weights the model ends with."""
    epochs_run = len(rows)
    best_index = epochs_run - 1
    stopped_early = False
    if stopper is not None:
        stopped_early = stopper.stopped_epoch > 0
        if settings["early_stopping"]["restore_best_weights"] and stopper.best_weights is not None:
            best_index = stopper.best_epoch
        else:
            best_index = _best_index(rows, settings["early_stopping"]["monitor"])
    elif rows and not math.isnan(rows[-1]["val_loss"]):
        best_index = _best_index(rows, "val_loss")
    final = rows[best_index] if stopper is not None and settings["early_stopping"]["restore_best_weights"] else rows[-1]
    return {
        "epochs_run": epochs_run,
        "best_epoch": best_index + 1 if rows else 0,
        "stopped_early": stopped_early,
        "train_loss": final["loss"], "train_accuracy": final["accuracy"],
        "val_loss": final["val_loss"], "val_accuracy": final["val_accuracy"],
    }


def _best_index(rows, monitor: str) -> int:
    values = [r[monitor] for r in rows]
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return len(rows) - 1
    return (max(finite) if "accuracy" in monitor else min(finite))[1]


def train_trial(trial: Trial, data, on_epoch: Optional[EpochHook] = None) -> TrialOutcome:
    """Seed, build, fit with EarlyStopping and TerminateOnNaN, then evaluate on the test split."""
    keras = get_keras()
    settings = trial.settings
    keras.utils.set_random_seed(trial.seed)
    model = compile_model(build_model(settings, input_shape=data.x_train.shape[1:]), settings)
    recorder = _epoch_recorder(trial, on_epoch)
    callbacks = [recorder, keras.callbacks.TerminateOnNaN()]
    stopper = None
    if settings["early_stopping"]:
        spec = settings["early_stopping"]
        stopper = keras.callbacks.EarlyStopping(monitor=spec["monitor"], patience=spec["patience"],
                                                min_delta=spec["min_delta"],
                                                restore_best_weights=spec["restore_best_weights"])
        callbacks.append(stopper)
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, validation_data=validation, epochs=settings["epochs"],
              batch_size=settings["batch_size"], callbacks=callbacks, verbose=0, shuffle=True)
    fit_seconds = time.perf_counter() - start
    rows = recorder.rows
    metrics = _summarize(rows, stopper, settings)
    status = "diverged" if _diverged(rows) else "ok"
    notes = []
    if status == "ok":
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=EVAL_BATCH, verbose=0)
        metrics.update(test_loss=float(test_loss), test_accuracy=float(test_accuracy))
    else:
        metrics.update(test_loss=math.nan, test_accuracy=math.nan)
        notes.append(f"loss became NaN at epoch {next(r['epoch'] for r in rows if not math.isfinite(r['loss']))}")
    return TrialOutcome(status, rows, metrics, count_params(model), fit_seconds, summary_text(model), notes)
