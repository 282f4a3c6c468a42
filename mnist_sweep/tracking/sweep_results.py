"""A sweep's results as experiment trackers take them: settings as scalars or short strings, each
trial's history and final metrics, read from the results files alone (so copied results work)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..results import containment
from ..results.damage import report
from ..errors import ResultsError
from ..plan.grid import label
from ..records import FINISHED, TrialRecord
from ..results.store import HISTORY_COLUMNS, find_sweeps, read_records

# Per-epoch values, named as in history.csv; `epoch` is the step.
EPOCH_METRICS = tuple(c for c in HISTORY_COLUMNS if c != "epoch")
# What a finished trial reports once (named and titled as in metrics.py). Logged as "final/<name>" so
# that the restored model's val_accuracy is not mistaken for the last epoch's.
FINAL_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss",
                 "epochs_run", "best_epoch", "wall_seconds", "fit_seconds")
FINAL_PREFIX = "final/"

Scalar = bool | float | str


def tracker_value(key: str, value: Any) -> Scalar:
    """A setting as trackers show it: numbers and booleans as they are, the rest as a short string
    ("adam lr=0.01", "128-64", "32-32-pool-64-64-pool", "none")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if value is None:
        return "none"
    return str(label(key, value))


def hparam_columns(factor_rows: Iterable[dict[str, Any]]) -> dict[str, list[Scalar]]:
    """Each varying setting's levels, all of one type (strings where the trials mix types)."""
    levels: dict[str, list[Scalar]] = {}
    for factors in factor_rows:
        for key, value in factors.items():
            value = tracker_value(key, value)
            if value not in levels.setdefault(key, []):
                levels[key].append(value)
    for key, values in levels.items():
        if len({type(v) for v in values}) > 1:
            levels[key] = list(dict.fromkeys(str(v) for v in values))
    return levels


def hparams_of(factors: dict[str, Any], columns: dict[str, list[Scalar]]) -> dict[str, Scalar]:
    """One trial's varying settings, typed as `hparam_columns` typed that setting's levels."""
    values = {}
    for key, value in factors.items():
        value = tracker_value(key, value)
        levels = columns.get(key)
        values[key] = str(value) if levels and isinstance(levels[0], str) else value
    return values


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A trial's final metrics and times that are numbers (a failed trial has none)."""
    found = {**(record.get("metrics") or {}), **(record.get("timing") or {})}
    return {name: float(found[name]) for name in FINAL_METRICS
            if isinstance(found.get(name), (int, float)) and not isinstance(found.get(name), bool)}


def seconds(timestamp: str | None) -> float | None:
    """An ISO timestamp from trial.json as seconds since the epoch."""
    try:
        return datetime.fromisoformat(timestamp).timestamp() if timestamp else None
    except ValueError:
        return None


def read_history(run_dir: Path, root: Path | None = None) -> list[dict[str, float]]:
    """A trial's history.csv as rows of numbers (empty cells are NaN); [] when absent, unreadable, or reached
    through a link below the sweep `root` (by default the sweep that holds runs/<trial_id>/)."""
    try:
        text = containment.read_bytes(root or run_dir.parent.parent, run_dir / "history.csv").decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (OSError, ResultsError, csv.Error, UnicodeDecodeError):
        return []
    parsed = []
    for row in rows:
        try:
            parsed.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items() if k})
        except ValueError:
            continue
    return [r for r in parsed if math.isfinite(r.get("epoch", math.nan))]


@dataclass
class SweepResults:
    """One sweep's results directory, read for export."""

    directory: Path
    name: str
    records: list[TrialRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # files left out: links (not followed), damaged records

    def run_dir(self, trial_id: str) -> Path:
        return self.directory / "runs" / trial_id

    def history(self, trial_id: str) -> list[dict[str, float]]:
        return read_history(self.run_dir(trial_id), self.directory)

    def file(self, *names: str) -> Path | None:
        """A file of the sweep (`"sweep.yaml"`, or `"runs", trial_id, "model.keras"`) to export, or None when
        it is missing or not a regular file reached without a link: nothing from outside is uploaded."""
        path = self.directory.joinpath(*names)
        return path if all(map(containment.plain_name, names)) and containment.is_file(self.directory, path) else None

    @property
    def finished(self) -> int:
        return sum(1 for r in self.records if r.get("status") == FINISHED)


def load_sweeps(results: str | Path) -> list[SweepResults]:
    """Every sweep at or under `results`, with its trial records in a stable order, and a warning per file
    left out: each symbolic link in the sweep (not followed, so not exported), each damaged trial.json."""
    linked: list = []
    sweeps = []
    for directory in find_sweeps(results, linked):
        damaged: list = []
        records = sorted(read_records(directory, damaged).values(),
                         key=lambda r: (r["seed"] if isinstance(r.get("seed"), int) else -1, r["trial_id"]))
        named = {d.file for d in damaged}
        links = [f"{containment.link_text(p)}, and {containment.NOT_FOLLOWED}; not exported"
                 for p in containment.links(directory) if p not in named and p.parent not in named]
        sweeps.append(SweepResults(directory, directory.name, records,
                                   [*report(damaged, limit=len(damaged)), *links]))
    if sweeps and linked:
        sweeps[0].warnings[:0] = report(linked, limit=len(linked))
    return sweeps
