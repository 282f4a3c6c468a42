"""The sweep loop: expand trials, skip finished ones, train the rest, record each one."""

from __future__ import annotations

import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from . import backend
from .config import SweepConfig, config_to_dict, load_config, validate_config
from .grid import Trial, expand, varying_settings
from .store import FINISHED, ResultsStore, summary_row


@dataclass
class SweepReport:
    """What a sweep did: where its results are, and how its trials ended."""

    directory: Path
    total: int
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0  # time spent in the trial loop
    fit_seconds: float = 0.0  # of which inside model.fit
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)


class Progress:
    """Receives sweep events; the default shows nothing (the CLI passes a visible one)."""

    def start(self, total: int, todo: int, skipped: int, dataset_info: dict) -> None: ...
    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, trial: Trial, rows: list[dict]) -> None: ...
    def trial_finished(self, trial: Trial, record: dict) -> None: ...
    def finish(self, report: SweepReport) -> None: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Sweep:
    """One run of a config: holds the store, the dataset and every trial's record."""

    def __init__(self, config: SweepConfig, out: str | Path = "results", progress: Optional[Progress] = None):
        self.config = config
        self.trials = expand(config)
        self.factors = varying_settings(self.trials)
        self.store = ResultsStore(out, config.name)
        self.progress = progress or Progress()
        self.records: dict[str, dict[str, Any]] = {}
        self.data = None
        self.device = "cpu"

    def pending(self, force: bool = False) -> list[Trial]:
        """Trials still to train: all with `force`, else those without a finished record."""
        self.records = self.store.read_records()
        if force:
            return list(self.trials)
        return [t for t in self.trials if self.records.get(t.trial_id, {}).get("status") != FINISHED]

    def _base_record(self, trial: Trial) -> dict[str, Any]:
        return {
            "trial_id": trial.trial_id, "config_id": trial.config_id, "seed": trial.seed,
            "sweep": self.config.name, "settings": trial.settings, "factors": trial.factors,
            "status": "running", "error": None, "traceback": None, "notes": [],
            "device": self.device, "dataset": self.data.info(), "versions": backend.versions(),
            "host": socket.gethostname(), "started_at": _now(), "finished_at": None,
        }

    def _write(self, record: dict[str, Any]) -> None:
        self.records[record["trial_id"]] = record
        self.store.write_record(record)
        rows = [summary_row(self.records[t.trial_id], t.factors) for t in self.trials
                if t.trial_id in self.records]
        self.store.write_summary(rows, self.factors)

    def run_trial(self, trial: Trial) -> dict[str, Any]:
        """Train one trial and record it; a trial that raises is recorded as failed."""
        from .train import train_trial

        keras = backend.get_keras()
        record = self._base_record(trial)
        self._write(record)
        self.progress.trial_started(trial)
        start = time.perf_counter()

        def on_epoch(trial: Trial, rows: list[dict]) -> None:
            self.store.write_history(trial.trial_id, rows)
            self.progress.epoch(trial, rows)

        try:
            outcome = train_trial(trial, self.data, on_epoch=on_epoch)
        except KeyboardInterrupt:
            record.update(status="interrupted", error="interrupted by the user (Ctrl-C)", finished_at=_now())
            self._write(record)
            raise
        except Exception as exc:  # a failed trial is recorded and the sweep goes on
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc())
        else:
            self.store.write_history(trial.trial_id, outcome.history)
            self.store.write_text(trial.trial_id, "model.txt", outcome.model_summary + "\n")
            epochs = max(outcome.metrics["epochs_run"], 1)
            record.update(status=outcome.status, metrics=outcome.metrics, params=outcome.params,
                          notes=outcome.notes)
            record["timing"] = {"fit_seconds": outcome.fit_seconds,
                                "seconds_per_epoch": outcome.fit_seconds / epochs}
        finally:
            keras.backend.clear_session()  # keeps a long sweep's memory flat
        record.setdefault("timing", {})["wall_seconds"] = time.perf_counter() - start
        record["finished_at"] = _now()
        self._write(record)
        self.progress.trial_finished(trial, record)
        return record

    def run(self, force: bool = False, device: str = "auto",
            warn: Callable[[str], None] = print) -> SweepReport:
        """Load the data once, then train every pending trial in order."""
        from .data import load_dataset

        todo = self.pending(force)
        report = SweepReport(self.store.dir, len(self.trials), skipped=len(self.trials) - len(todo))
        backend.configure(device=device)
        self.data = load_dataset(self.config.dataset, warn=warn)
        if todo:
            self.device = backend.resolve_device(device)
        self.store.prepare(config_to_dict(self.config))
        self.progress.start(len(self.trials), len(todo), report.skipped, self.data.info())
        start = time.perf_counter()
        try:
            for trial in todo:
                record = self.run_trial(trial)
                report.statuses[record["status"]] = report.statuses.get(record["status"], 0) + 1
                report.fit_seconds += (record.get("timing") or {}).get("fit_seconds", 0.0)
        except KeyboardInterrupt:
            report.interrupted = True
        report.wall_seconds = time.perf_counter() - start
        self.progress.finish(report)
        return report


def run_sweep(config: SweepConfig | dict | str | Path, out: str | Path = "results", force: bool = False,
              device: str = "auto", progress: Optional[Progress] = None):
    """Run a config (a path, a dict or a SweepConfig) and return its summary as a DataFrame."""
    from .store import load_results

    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = validate_config(config)
    sweep = Sweep(config, out, progress)
    report = sweep.run(force=force, device=device)
    if report.interrupted:
        raise KeyboardInterrupt
    return load_results(report.directory)
