"""Showing a sweep's progress: a live bar on a terminal, one line per trial otherwise."""

from __future__ import annotations

import os
import sys
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from ..records import Trial
from .runner import Progress, SweepReport
from ..records import Status


def _metric(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def _result_line(trial: Trial, record: dict) -> str:
    metrics = record.get("metrics") or {}
    seconds = (record.get("timing") or {}).get("wall_seconds", 0.0)
    status = record["status"]
    detail = (f"test_acc {_metric(metrics.get('test_accuracy'))}  val_acc {_metric(metrics.get('val_accuracy'))}  "
              f"epochs {metrics.get('epochs_run', '-')}") if status != Status.FAILED else record.get("error", "")
    return f"{status:<8} {trial.trial_id}  {detail}  {seconds:.1f}s"


def _describe(report: SweepReport) -> str:
    done = ", ".join(f"{n} {status}" for status, n in sorted(report.statuses.items())) or "nothing trained"
    skipped = f"; {report.skipped} already finished, skipped" if report.skipped else ""
    stop = " (interrupted: run the same command again to continue)" if report.interrupted else ""
    return f"{done}{skipped} in {report.wall_seconds:.1f}s{stop} -> {report.directory}"


class PlainProgress(Progress):
    """One line per finished trial, for logs and pipes."""

    def __init__(self, console: Optional[Console] = None):
        self.console = console or Console(file=sys.stderr, highlight=False, soft_wrap=True)
        self.done = 0
        self.todo = 0

    def start(self, total, todo, skipped, dataset_info):
        self.todo = todo
        info = dataset_info
        self.console.print(f"{total} trials ({skipped} already finished, skipped); data: {info['name']} from "
                           f"{info['source']} ({info['n_train']} train / {info['n_val']} val / {info['n_test']} test)")

    def trial_finished(self, trial, record):
        self.done += 1
        self.console.print(f"[{self.done}/{self.todo}] {_result_line(trial, record)}")

    def message(self, text):
        self.console.print(text)

    def added(self, count):
        self.todo += count

    def finish(self, report):
        self.console.print(_describe(report))


class RichProgress(PlainProgress):
    """A live bar with ETA and the current trial's epoch and validation metrics."""

    def __init__(self, console: Optional[Console] = None):
        super().__init__(console)
        self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       TextColumn("{task.fields[status]}"), console=self.console, transient=True)
        self.task = None

    def start(self, total, todo, skipped, dataset_info):
        super().start(total, todo, skipped, dataset_info)
        self.bar.start()
        self.task = self.bar.add_task("trials", total=todo, status="")

    def added(self, count):
        super().added(count)
        self.bar.update(self.task, total=self.todo)

    def trial_started(self, trial):
        self.bar.update(self.task, status=f"{trial.trial_id}: building")

    def epoch(self, trial, rows):
        last = rows[-1]
        self.bar.update(self.task, status=f"{trial.trial_id} epoch {last['epoch']}/{trial.settings['epochs']} "
                                          f"val_loss {_metric(last['val_loss'])} "
                                          f"val_acc {_metric(last['val_accuracy'])}")

    def trial_finished(self, trial, record):
        self.done += 1
        self.bar.console.print(_result_line(trial, record))
        self.bar.advance(self.task)

    def finish(self, report):
        self.bar.stop()
        self.console.print(_describe(report))


class OutputThatMayGo:
    """A text stream (stdout, stderr) whose writes are dropped once its reader is gone: a closed pipe
    (`| head`), a hung-up terminal, a full disk under a log file. Progress is never worth stopping training
    for. The stream's descriptor is then pointed at /dev/null, so that later writes from anywhere in the
    process (C++ logs, the final flush at exit) go nowhere quietly too."""

    def __init__(self, stream):
        self._stream = stream
        self.gone = False

    def write(self, text):
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError:
                self._drop()

    def _drop(self) -> None:
        self.gone = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):  # no descriptor (a test's buffer): dropping is enough
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def keep_going_without_output() -> None:
    """Wrap sys.stdout and sys.stderr so that a reader who goes away never stops the sweep."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, OutputThatMayGo):
            setattr(sys, name, OutputThatMayGo(stream))


def make_progress(quiet: bool) -> Progress:
    """The right display for where output goes: nothing, a live bar, or plain lines."""
    if quiet:
        return Progress()
    console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    return RichProgress(console) if console.is_terminal else PlainProgress(console)
