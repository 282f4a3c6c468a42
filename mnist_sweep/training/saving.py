"""Saved models: a trial's `.keras` file, the sweep's best trial, and loading models safely.

Workers return a trained model as bytes; the driver writes it to runs/<trial_id>/model.keras and,
after the sweep, picks the best trial by validation accuracy (never test accuracy, which would
leak the test set into the choice) and records it in best_model.json.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..results import containment
from ..errors import LimitError, ResultsError, UnsafePathError, cannot_write, excerpt, out_of_room, room_remedy
from ..metrics import SELECTION, SELECTION_WITHOUT_VALIDATION
from ..records import FINISHED, TrialResult
from ..results.store import atomic_write

MODEL_FILE = "model.keras"
BEST_FILE = "best_model.json"


def model_to_bytes(model) -> bytes:
    """The model as the bytes of a `.keras` file (saved to a temporary file: Keras saves to paths).

    A full disk or the file-size limit raises LimitError naming $TMPDIR. Keras' own temporary
    folders are made inside ours, so a failed save leaves nothing behind there either.
    """
    where = tempfile.gettempdir()
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-sweep-model-") as folder:
            path = Path(folder) / MODEL_FILE
            tempfile.tempdir = folder
            try:
                model.save(path)
            finally:
                tempfile.tempdir = where
            return path.read_bytes()
    except Exception as exc:
        full = out_of_room(exc)
        if full is None:
            raise
        raise LimitError(f"cannot save the trained model in the temporary folder {where} ($TMPDIR): "
                         f"{full.strerror}; {room_remedy(full, where, 'point TMPDIR at')}") from None


def attach_model(result: TrialResult, model) -> None:
    """Add the trained model's `.keras` bytes to an ok trial's result for the driver to write.

    When the machine has no room for the file, the result says so (`halt`) instead: the driver
    records the trial interrupted and stops the sweep, since every later trial would fail the same way.
    """
    try:
        result["model_file"] = model_to_bytes(model)
    except LimitError as exc:
        result["status"], result["error"], result["halt"] = "interrupted", f"stopped: {exc}", str(exc)


def load_model(path: str | Path):
    """Load a `.keras` file in Keras' safe mode (no arbitrary code), without its training set-up."""
    from ..backend import get_keras

    keras = get_keras()  # a missing backend is its own error, not a damaged model
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # a damaged file, or one saved with custom code
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResultsError(f"{path}: cannot load the model ({reason})") from None


def _finite_number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def best_trial(records: dict[str, dict[str, Any]], sweep_dir: Path) -> Optional[dict[str, Any]]:
    """The finished trial with a saved model and the highest validation accuracy (ties: lower validation
    loss), as best_model.json describes it; None when no trial has a saved model.

    Without a validation set (validation_split 0) it ranks by training accuracy, and says so.
    """
    candidates = [r for _, r in sorted(records.items()) if r.get("status") == FINISHED and _has_model(sweep_dir, r)]
    if not candidates:
        return None
    have_val = any(_finite_number((r.get("metrics") or {}).get(SELECTION[0])) is not None for r in candidates)
    accuracy, loss = SELECTION if have_val else SELECTION_WITHOUT_VALIDATION

    def rank(record):
        metrics = record.get("metrics") or {}
        acc, lost = _finite_number(metrics.get(accuracy)), _finite_number(metrics.get(loss))
        return (acc if acc is not None else -math.inf, -lost if lost is not None else -math.inf)

    best = max(candidates, key=rank)  # the first of equals, in trial-id order
    metrics = best.get("metrics") or {}
    return {
        "trial_id": best["trial_id"],
        "model": f"runs/{best['trial_id']}/{MODEL_FILE}",
        "selected_by": accuracy if have_val else f"{accuracy} (no validation set)",
        "val_accuracy": metrics.get("val_accuracy"), "val_loss": metrics.get("val_loss"),
        "train_accuracy": metrics.get("train_accuracy"),
        "test_accuracy": metrics.get("test_accuracy"),  # reported, never used to choose
        "seed": best.get("seed"), "settings": best.get("settings"),
        "candidates": len(candidates),
    }


def _has_model(sweep_dir: Path, record: dict[str, Any]) -> bool:
    """Whether the trial's runs/<trial_id>/model.keras is a regular file inside the sweep (never through a link)."""
    trial_id = str(record.get("trial_id"))
    return containment.plain_name(record.get("trial_id")) and containment.is_file(
        sweep_dir, sweep_dir / "runs" / trial_id / MODEL_FILE)


def forget_best(sweep_dir: Path, trial_ids: list[str]) -> None:
    """Remove best_model.json when it names one of `trial_ids` (trials set aside): no stale choice survives."""
    path = Path(sweep_dir) / BEST_FILE
    try:
        named = json.loads(containment.read_text(sweep_dir, path)).get("trial_id")
    except (OSError, ValueError, AttributeError, ResultsError):
        return
    if named in trial_ids:
        path.unlink(missing_ok=True)


def keep_models(sweep_dir: Path, records: dict[str, dict[str, Any]], mode: str) -> Optional[dict[str, Any]]:
    """After a sweep: record the best trial in best_model.json and, for `best`, delete the other models.

    Runs on every (resumed) sweep over all the config's trials (`run` has set aside the rest), so the kept
    model is the best of them all. `none` touches nothing. Returns best_model.json's content, or None.
    """
    if mode == "none":
        return None
    sweep_dir = Path(sweep_dir)
    try:
        best = best_trial(records, sweep_dir)
        if mode == "best":
            for path in (sweep_dir / "runs").glob(f"*/{MODEL_FILE}"):
                if (best is None or path.parent.name != best["trial_id"]) and \
                        containment.problem(sweep_dir, path.parent) is None:  # never a file through a linked folder
                    path.unlink(missing_ok=True)
        if best is None:
            (sweep_dir / BEST_FILE).unlink(missing_ok=True)
        else:
            atomic_write(sweep_dir / BEST_FILE, json.dumps(best, indent=2, default=str) + "\n")
    except OSError as exc:
        raise cannot_write(sweep_dir, exc) from None
    return best


def _why_no_model(trial_dir: Path) -> str:
    """Why a trial's directory holds no model, as far as its record and best_model.json tell."""
    try:
        status = json.loads(containment.read_text(trial_dir, trial_dir / "trial.json")).get("status")
    except (OSError, ValueError, AttributeError, ResultsError):
        status = None
    if status != FINISHED:
        return f"the trial ended {status or 'without a readable record'}, so no model was saved"
    best_file = trial_dir.parent.parent / BEST_FILE
    if best_file.is_file():
        return (f"train.save_model: best keeps only the best trial's model ({best_file} names it); "
                f"use train.save_model: all to keep every trial's")
    return "train.save_model was none"


def find_model(path: str | Path) -> Path:
    """The `.keras` file meant by a sweep directory (its best model), a trial directory, or the file itself.

    Inside a sweep or trial directory the model is runs/<trial_id>/model.keras, built from the trial id
    best_model.json names (never from a path recorded there) and never reached through a link.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ResultsError(f"no results at {path}: give a sweep's results directory, RESULTS/runs/TRIAL, "
                           f"or a .keras file")
    if path.is_file():
        if path.suffix != ".keras":
            raise ResultsError(f"{path}: not a .keras model file; give a sweep's results directory, "
                               f"RESULTS/runs/TRIAL, or a .keras file")
        return path
    if (path / MODEL_FILE).exists() or (path / MODEL_FILE).is_symlink():
        return _model_file(path, path / MODEL_FILE)
    if (path / "trial.json").is_file():
        raise ResultsError(f"{path} has no {MODEL_FILE}: {_why_no_model(path)}")
    if not ((path / "runs").is_dir() or (path / "sweep.yaml").is_file()):
        raise ResultsError(f"{path} is not a sweep's results directory (no sweep.yaml or runs/ in it), "
                           f"a trial's directory, or a .keras file")
    best_file = path / BEST_FILE
    if not (best_file.exists() or best_file.is_symlink()):
        raise ResultsError(f"{path} has no saved model ({BEST_FILE} is missing): run the sweep with "
                           f"train.save_model: best (the default) or all")
    try:
        trial_id = json.loads(containment.read_text(path, best_file))["trial_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{best_file}: unreadable ({exc}); run the sweep again to rewrite it") from None
    if not containment.plain_name(trial_id):
        raise UnsafePathError(f"{best_file} names the trial {excerpt(str(trial_id), 80)}, which is not a trial id "
                              "(one plain name in runs/); run the sweep again to rewrite it")
    model = path / "runs" / trial_id / MODEL_FILE
    if not (model.exists() or model.is_symlink()):
        raise ResultsError(f"{best_file} names the trial {trial_id}, whose {MODEL_FILE} is missing from "
                           f"{path / 'runs'}; run the sweep again to rewrite it")
    return _model_file(path, model)


def _model_file(root: Path, model: Path) -> Path:
    """`model`, when it is a regular file reached from `root` without a link; else UnsafePathError."""
    reason = containment.problem(root, model)
    if reason is not None:
        raise UnsafePathError(f"{reason}: give the .keras file itself as RESULTS if you trust where it points")
    if not containment.is_file(root, model):
        raise UnsafePathError(f"{model} is not a regular file, so it is not a saved model; run the sweep again "
                              "to rewrite it")
    return model
