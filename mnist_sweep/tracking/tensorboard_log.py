"""A sweep as TensorBoard event files: written live from the driver's events, or from finished results.

Layout under the log directory DIR (`tensorboard --logdir DIR`):

    DIR/<sweep>/               the HParams experiment: each varying setting's levels, the metrics
    DIR/<sweep>/<trial_id>/    per-epoch scalars (loss, accuracy, val_loss, val_accuracy, epoch_seconds),
                               final/<metric> scalars, and the trial's HParams session, whose group is the
                               configuration id so that TensorBoard groups a configuration's seeds

Written with TensorBoard's own record writer and protos, not TensorFlow's summary ops: any Keras backend
works and the driver does not load TensorFlow for it. Each file is flushed after every write, so a
running TensorBoard shows each epoch as it ends.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata as hparams_metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.record_writer import RecordWriter

from ..metrics import title
from .sweep_results import (EPOCH_METRICS, FINAL_PREFIX, SweepResults, final_metrics, hparam_columns,
                      hparams_of, load_sweeps, read_history, seconds)
from ..records import FINISHED, Status

# Files this module writes end so; only they are replaced when a trial is written again.
SUFFIX = ".mnist-sweep"
# The final metrics shown as columns of the HParams table (all of FINAL_METRICS are logged as scalars).
HPARAMS_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "epochs_run", "wall_seconds")
# Looked up with a record's status as written (None where it has none).
SESSION_STATUS: dict[str | None, int] = {FINISHED: api_pb2.STATUS_SUCCESS, Status.FAILED: api_pb2.STATUS_FAILURE,
                                          Status.DIVERGED: api_pb2.STATUS_FAILURE,
                                          Status.TIMEOUT: api_pb2.STATUS_FAILURE,
                                          Status.INTERRUPTED: api_pb2.STATUS_UNKNOWN}
_file_numbers = itertools.count()


class EventFile:
    """A run directory's event file, replacing the one an earlier write of this run left there."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob(f"events.out.tfevents.*{SUFFIX}"):
            old.unlink()
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_file_numbers)}{SUFFIX}")
        self._writer = RecordWriter(open(directory / name, "wb"))
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def add(self, summary: summary_pb2.Summary, step: int, wall_time: float | None = None) -> None:
        self._write(event_pb2.Event(wall_time=wall_time or time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        self._writer.close()


def _scalars(values: dict[str, float]) -> summary_pb2.Summary:
    summary = summary_pb2.Summary()
    for tag, value in values.items():
        summary.value.extend(scalar_pb(tag, float(value)).value)
    return summary


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, tensor=hparams_metadata.NULL_TENSOR,
                      metadata=hparams_metadata.create_summary_metadata(data))
    return summary


def _session_end(status: int, end_time: float) -> summary_pb2.Summary:
    return _hparams_summary(hparams_metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=end_time)))


def write_experiment(root: Path, columns: dict[str, list]) -> None:
    """The HParams experiment at the sweep's root: each varying setting with its levels, and the metrics."""
    infos = []
    for name, levels in columns.items():
        info = api_pb2.HParamInfo(name=name, differs=len(levels) > 1)
        hp.Discrete(levels).update_hparam_info(info)
        infos.append(info)
    metrics = [hp.Metric(FINAL_PREFIX + name, display_name=title(name)).as_proto() for name in HPARAMS_METRICS]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time())
    events = EventFile(root)
    events.add(_hparams_summary(hparams_metadata.EXPERIMENT_TAG,
                                plugin_data_pb2.HParamsPluginData(experiment=experiment)), 0)
    events.close()


class TrialLog:
    """One trial's run: its HParams session start, then its epochs, then its final metrics and status."""

    def __init__(self, directory: Path, hparams: dict[str, Any], config_id: str, start_time: float):
        self.events = EventFile(directory)
        self.last_epoch = 0
        self.events.add(hp.hparams_pb(hparams, trial_id=config_id, start_time_secs=start_time), 0, start_time)

    def epoch(self, row: dict[str, Any], wall_time: float | None = None) -> None:
        values = {k: row[k] for k in EPOCH_METRICS if isinstance(row.get(k), (int, float))}
        self.last_epoch = max(self.last_epoch, int(row["epoch"]))
        self.events.add(_scalars(values), int(row["epoch"]), wall_time)

    def end(self, record: Mapping[str, Any], end_time: float | None = None) -> None:
        end_time = end_time or time.time()
        finals = final_metrics(record)
        if finals:
            self.events.add(_scalars({FINAL_PREFIX + k: v for k, v in finals.items()}), self.last_epoch, end_time)
        status = SESSION_STATUS.get(record.get("status"))
        if status is not None:
            self.events.add(_session_end(status, end_time), self.last_epoch, end_time)
        self.events.close()


def write_trial(root: Path, record: Mapping[str, Any], history: list[dict], columns: dict[str, list]) -> None:
    """A recorded trial, whole: its session, its history (timed from its start) and its end."""
    start = seconds(record.get("started_at")) or time.time()
    log = TrialLog(root / record["trial_id"], hparams_of(record.get("factors") or {}, columns),
                   record.get("config_id") or record["trial_id"], start)
    wall = start
    for row in history:
        step = row.get("epoch_seconds")
        wall += step if isinstance(step, float) and math.isfinite(step) else 0.0
        log.epoch(row, wall)
    log.end(record, seconds(record.get("finished_at")) or wall)


def export_sweep(sweep: SweepResults, logdir: str | Path) -> Path:
    """Write a finished (or partial) sweep's event files under logdir/<sweep>; returns that directory."""
    root = Path(logdir) / sweep.name
    columns = hparam_columns(r.get("factors") or {} for r in sweep.records)
    write_experiment(root, columns)
    for record in sweep.records:
        write_trial(root, record, sweep.history(record["trial_id"]), columns)
    _remove_stale_trials(root, {record["trial_id"] for record in sweep.records})
    return root


def _remove_stale_trials(root: Path, current: set[str]) -> None:
    """Delete the event folders of trials no longer in the results (renamed or removed since).

    Only folders holding nothing but event files this tool wrote: anything else (a link included) is left alone.
    """
    for directory in root.iterdir():
        if directory.is_dir() and not directory.is_symlink() and directory.name not in current:
            files = list(directory.iterdir())
            if files and all(f.is_file() and f.name.startswith("events.out.tfevents.") and f.name.endswith(SUFFIX)
                             for f in files):
                for f in files:
                    f.unlink()
                directory.rmdir()


def export_tensorboard(results: str | Path, logdir: str | Path) -> list[tuple[SweepResults, Path]]:
    """Every sweep at or under `results` as event files under `logdir`."""
    return [(sweep, export_sweep(sweep, logdir)) for sweep in load_sweeps(results)]


def _keeps_sweep_going(method):
    """A log directory that cannot be written stops the log, not the sweep; it says so once."""

    @functools.wraps(method)
    def wrapper(self, *args):
        if self.broken:
            return
        try:
            method(self, *args)
        except OSError as exc:
            self.broken = True
            self.sweep.progress.message(
                f"TensorBoard log stopped: cannot write to {self.root}: {exc.strerror or exc}. The sweep goes on; "
                f"`mnist-sweep export {self.sweep.store.dir} --to tensorboard DIR` writes the log afterwards.")

    return wrapper


class TensorBoardLog:
    """Receives the sweep's events, as the progress display (a runner.Progress) does, and writes each
    trial's run live."""

    def __init__(self, logdir: str | Path, sweep):
        self.sweep = sweep
        self.root = Path(logdir) / sweep.config.name
        self.columns: dict[str, list] = {}  # each varying setting's levels, from the trials known at start
        self.logs: dict[str, TrialLog] = {}
        self.broken = False

    def _open(self, trial) -> TrialLog:
        hparams = hparams_of(trial.factors, self.columns)
        if any(value not in self.columns.get(key, ()) for key, value in hparams.items()):
            # A sampled search adds trials as it asks: the experiment's levels grow to take this one in.
            self.columns = hparam_columns(t.factors for t in self.sweep.trials)
            write_experiment(self.root, self.columns)
        log = TrialLog(self.root / trial.trial_id, hparams_of(trial.factors, self.columns), trial.config_id,
                       time.time())
        self.logs[trial.trial_id] = log
        return log

    @_keeps_sweep_going
    def start(self, total, todo, skipped, dataset_info):
        self.columns = hparam_columns(t.factors for t in self.sweep.trials)  # a search has asked some by now
        write_experiment(self.root, self.columns)
        # Trials of an earlier config (set aside in the results) must not show beside this one's.
        _remove_stale_trials(self.root, {t.trial_id for t in self.sweep.trials})
        if not skipped:  # every trial trains now (a new sweep, or --force)
            return
        for trial in self.sweep.trials:  # skipped as finished before, by a run without this log: from the results
            record = self.sweep.records.get(trial.trial_id)
            if record and record.get("status") == FINISHED and not _has_events(self.root / trial.trial_id):
                write_trial(self.root, record, read_history(self.sweep.store.run_dir(trial.trial_id)), self.columns)

    @_keeps_sweep_going
    def trial_started(self, trial):
        self._open(trial)

    @_keeps_sweep_going
    def epoch(self, trial, rows):
        (self.logs.get(trial.trial_id) or self._open(trial)).epoch(rows[-1])

    @_keeps_sweep_going
    def trial_finished(self, trial, record):
        log = self.logs.pop(trial.trial_id, None) or self._open(trial)
        self.logs.pop(trial.trial_id, None)
        # Epochs the driver recorded without an epoch event (a result that carried its whole history).
        for row in read_history(self.sweep.store.run_dir(trial.trial_id)):
            if row["epoch"] > log.last_epoch:
                log.epoch(row)
        log.end(record)

    def message(self, text):
        """Messages are for the display."""

    @_keeps_sweep_going
    def finish(self, report):
        for trial_id, log in list(self.logs.items()):  # interrupted: the runner marked them so
            log.end(self.sweep.records.get(trial_id) or {"status": Status.INTERRUPTED})
        self.logs.clear()


def _has_events(directory: Path) -> bool:
    return any(directory.glob("events.out.tfevents.*"))

