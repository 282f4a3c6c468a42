"""The sweep driver: ask a schedule for tasks, hand them to an executor, record every trial.

One path for every schedule (the grid, a race over seeds, a search): the schedule decides what
runs and when the sweep is done, the executor where it runs. Executors only train; everything
written to the results directory is written here, so a distributed run needs no shared filesystem
and a kill at any moment leaves whole files.
"""

from __future__ import annotations

import math
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import SweepConfig, config_to_dict, load_config, validate_config
from ..errors import (ConfigError, DataError, LimitError, ResultsError, SweepError, cannot_write, out_of_room,
                      room_remedy)
from ..execution.executors import InlineExecutor, Options, ProcessExecutor
from ..plan.grouping import describe_plan, make_tasks
from ..plan.schedules import GridSchedule, RaceSchedule
from ..records import FINISHED, Executor, Run, Schedule, Sizing, Status, Task, Trial, TrialRecord, TrialResult
from ..results.store import SUPERSEDED, ResultsStore, data_fingerprint, summary_row

INTERRUPTED = "stopped by {} before it finished"  # the signal: Ctrl-C, SIGTERM, SIGHUP
# Signals that stop a sweep: the first Ctrl-C lets running trials finish, the others (and a second Ctrl-C)
# stop now. SIGTERM is what `timeout`, Slurm and Kubernetes send; SIGHUP comes when the terminal closes.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def make_executor(kind: str, options: Options) -> Executor:
    """The executor for `--executor` and `--jobs`."""
    if kind == "ray":
        from ..execution.ray_child import ChildRayExecutor

        return ChildRayExecutor(options)
    if options.jobs > 1 or (kind == "process"):
        return ProcessExecutor(options)
    return InlineExecutor(options)


def make_schedule(config: SweepConfig, directory: Path, max_trials: Optional[int] = None) -> Schedule:
    """The schedule a config asks for: a search (`search.method`), a race (`seeds: {race: ...}`) or the grid."""
    if config.search.method != "grid":
        from ..search import SearchSchedule

        return SearchSchedule(config, directory)
    if config.race is not None:
        return RaceSchedule(config, max_trials)
    return GridSchedule(config, max_trials)


def fuses(config: SweepConfig, fuse: Optional[bool]) -> bool:
    """Whether trials train fused: `--fuse/--no-fuse` when given, else the config's `execution`."""
    return fuse if fuse is not None else config.execution != "isolated"


def planned_grouping(config: SweepConfig, options: Optional[Options] = None,
                     max_trials: Optional[int] = None) -> list[str]:
    """What a fresh run says about how its first tasks are formed, with no data read (`--dry-run`).

    The models are sized for the training rows the config's dataset asks for (`expected_train_rows`);
    the run sizes them for the data it loads, which can only be as large. A TPE search forms its tasks as
    it asks for configurations: nothing to say before.
    """
    from ..data.dataset import expected_train_rows

    options = options or Options()
    fuse = fuses(config, options.fuse)
    sizing = Sizing(options.max_branches, options.stack_memory, n_train=expected_train_rows(config.dataset))
    if config.search.method == "tpe":
        return []
    if config.search.method != "grid":
        from ..search import first_configurations

        trials = [t for runs in first_configurations(config) for t in runs]
        return describe_plan(make_tasks(trials, fuse, sizing), fuse, sizing)
    schedule = RaceSchedule(config, max_trials) if config.race is not None else GridSchedule(config, max_trials)
    schedule.start(Run({}, fuse=fuse, sizing=sizing, say=lambda line: None))
    return describe_plan(schedule.tasks, fuse, sizing)


@dataclass
class SweepReport:
    """What a sweep did: where its results are, and how its trials ended."""

    directory: Path
    total: int
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0  # time spent running trials
    fit_seconds: float = 0.0  # of which inside model.fit, summed over trials
    interrupted: bool = False
    race: Optional[dict] = None  # race.json, for a raced sweep

    @property
    def failed(self) -> int:
        return self.statuses.get(Status.FAILED, 0)


class Progress:
    """Receives sweep events; the default shows nothing (the CLI passes a visible one)."""

    def start(self, total: int, todo: int, skipped: int, dataset_info: dict) -> None: ...
    def trial_started(self, trial: Trial) -> None: ...
    def epoch(self, trial: Trial, rows: list[dict]) -> None: ...
    def trial_finished(self, trial: Trial, record: TrialRecord) -> None: ...
    def added(self, count: int) -> None: ...  # a race's next round: `count` more trials to run
    def message(self, text: str) -> None: ...
    def finish(self, report: SweepReport) -> None: ...


class Observers(Progress):
    """Passes each sweep event on to several receivers: the display, a TensorBoard log."""

    def __init__(self, *observers: Progress):
        self.observers = observers

    def start(self, *args): self._tell("start", *args)
    def trial_started(self, *args): self._tell("trial_started", *args)
    def epoch(self, *args): self._tell("epoch", *args)
    def trial_finished(self, *args): self._tell("trial_finished", *args)
    def added(self, *args): self._tell("added", *args)
    def message(self, *args): self._tell("message", *args)
    def finish(self, *args): self._tell("finish", *args)

    def _tell(self, event: str, *args) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args)


def _first_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _from_ray(exc: BaseException) -> bool:
    """Whether an exception comes from Ray or the gRPC link to its cluster (not from our code)."""
    return type(exc).__module__.split(".")[0] in ("ray", "grpc")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Queue:
    """The executor's TaskQueue over a schedule: asks it for more whenever the tasks run out, until Ctrl-C."""

    def __init__(self, schedule: Schedule, stopping: Callable[[], bool]):
        self.schedule, self.stopping = schedule, stopping
        self.tasks: list[Task] = []

    def ready(self) -> bool:
        if not self.tasks and not self.stopping():
            self.tasks = self.schedule.next_tasks()
        return bool(self.tasks)

    def take(self) -> Task:
        return self.tasks.pop(0)

    def expected(self) -> int:
        return len(self.tasks) + self.schedule.expected()


class Sweep:
    """One run of a config: holds the store, the dataset, the schedule and every trial's record."""

    def __init__(self, config: SweepConfig, out: str | Path = "results", progress: Optional[Progress] = None,
                 tensorboard: str | Path | None = None, max_trials: Optional[int] = None,
                 schedule: Optional[Schedule] = None):
        self.config = config
        self.store = ResultsStore(out, config.name)
        self.schedule = schedule or make_schedule(config, self.store.dir, max_trials)
        self.by_id = {t.trial_id: t for t in self.schedule.trials}
        self.progress = progress or Progress()
        self.records: dict[str, Any] = {}  # trial id -> its TrialRecord
        self.histories: dict[str, list[dict]] = {}
        self.data: Any = None  # the Dataset, once `run` has loaded it
        self.report: Optional[SweepReport] = None
        self.executor: Optional[Executor] = None
        self.halting = False  # a second Ctrl-C, SIGTERM or SIGHUP: stop the running trial(s) now
        self._holding = 0  # > 0 while one event's files are written: a stop signal waits for them (`_whole`)
        self._stop_pending = False
        self._stopped_by = "Ctrl-C"
        if tensorboard or config.tensorboard:  # each trial's curves and HParams session, from the events here
            from ..tracking import live_tensorboard

            needed_by = "--tensorboard" if tensorboard else f"the config's tensorboard: {config.tensorboard}"
            logdir = tensorboard or config.tensorboard or ""
            self.progress = Observers(self.progress, live_tensorboard(logdir, self, needed_by))

    @property
    def trials(self) -> list[Trial]:
        """Every trial known so far (a search adds those its study asks)."""
        return self.schedule.trials

    @property
    def factors(self) -> list[str]:
        return self.schedule.factors

    def _trial(self, trial_id: str) -> Trial:
        if trial_id not in self.by_id:  # asked by a search since
            self.by_id.update((t.trial_id, t) for t in self.trials)
        return self.by_id[trial_id]

    def pending(self, force: bool = False) -> list[Trial]:
        """Trials still to train: all with `force`, else those without a finished record.

        First the results are made to describe this config on this data, and nothing else: results of
        other data are refused (`force`: set aside and trained again), finished trials renamed or set
        aside earlier are taken back, and what the config does not contain is set aside.
        """
        self.records = self.store.read_records()
        self._check_data(force)
        self._adopt_renamed()
        self._set_aside()
        if force:
            return list(self.trials)
        return [t for t in self.trials if self.records.get(t.trial_id, {}).get("status") != FINISHED]

    def _check_data(self, force: bool) -> None:
        """Refuse to resume on other data than the results were trained on, as their fingerprints tell:
        a trial of this config, or the schedule's own state (a search's study), recorded another. `force`
        trains them again instead."""
        new = self.data.info()
        digests = {t.trial_id.rsplit("-", 1)[1] for t in self.trials}
        other = [r for _, r in self.store.run_records() if str(r.get("trial_id")).rsplit("-", 1)[-1] in digests
                 and data_fingerprint(r) not in (None, new["fingerprint"])]
        study = self.schedule.recorded_dataset()
        study = study if study is not None and study.get("fingerprint") != new["fingerprint"] else None
        if force or not (other or study):
            return
        old = study or other[0]["dataset"]
        changes = [f"{key} was {old.get(key)}, now {new.get(key)}" for key in
                   ("name", "source", "origin", "n_train", "n_val", "n_test", "fingerprint")
                   if old.get(key) != new.get(key)]
        what = " and ".join(([f"{len(other)} trial(s)"] if other else []) + (["the search's study"] if study else []))
        raise DataError(f"the data changed since the results in {self.store.dir} were made ({what}): "
                        f"{'; '.join(changes)}. "
                        f"Not resumed, nothing changed: a sweep's results describe one dataset. Give this data its "
                        f"own results (another --out, or --set name=NEW), or run with --force to "
                        f"{self.schedule.retrain}the trials of the old data are moved to "
                        f"{self.store.dir / SUPERSEDED}/)")

    def _adopt_renamed(self) -> None:
        """Keep finished trials whose id changed only because another setting started or stopped varying,
        and take back from superseded/ those an earlier run set aside, when this config contains them again.

        An id is `<slug>-s<seed>-<hash>`: the slug names the settings that vary, so adding an axis
        renames trials whose settings did not change; the hash covers every setting, the data's settings
        and the seed. Such a trial's directory is renamed instead of the trial being trained again; only
        a trial trained on this run's data counts.
        """
        missing = {t.trial_id.rsplit("-", 1)[1]: t for t in self.trials if t.trial_id not in self.records}
        if not missing:
            return
        adopted, restored = 0, 0
        for digest, (folder, record) in self.store.finished_by_digest(self.data.fingerprint).items():
            trial = missing.get(digest)
            if trial is None or record.get("seed") != trial.seed:
                continue
            aside = folder.parent.name == SUPERSEDED
            if folder != self.store.run_dir(trial.trial_id):
                if self.store.run_dir(trial.trial_id).exists():
                    continue  # an unfinished attempt under the new id: train it again
                self.store.rename_run(folder, trial.trial_id)
            renamed = record["trial_id"]
            note = (f"brought back from {SUPERSEDED}/{folder.name}: the config contains it again" if aside else
                    f"renamed from {renamed}: the grid's varying settings changed, this trial's did not")
            record = {**record, "trial_id": trial.trial_id, "factors": trial.factors,
                      "notes": list(record.get("notes") or []) + [note]}
            self.store.write_record(record)
            if not aside:
                self.records.pop(renamed, None)
            self.records[trial.trial_id] = record
            restored, adopted = restored + aside, adopted + (not aside)
        if adopted:
            self.progress.message(f"{adopted} finished trial(s) kept under new ids: the grid's varying settings "
                                  "changed, theirs did not")
        if restored:
            self.progress.message(f"{restored} finished trial(s) brought back from {self.store.dir / SUPERSEDED}: "
                                  "the config contains them again")

    def _set_aside(self) -> None:
        """Move every run directory this config does not contain, or trained on other data, to superseded/:
        the results then describe this config alone, whatever reads them (a rebuilt summary.csv included)."""
        from ..training.saving import BEST_FILE, forget_best

        current = {t.trial_id for t in self.trials}
        moved = []
        for folder in sorted(p.name for p in self.store.runs.iterdir()) if self.store.runs.is_dir() else []:
            record = self.records.get(folder)
            if folder in current and (record is None or
                                      data_fingerprint(record) in (None, self.data.fingerprint)):
                continue
            self.store.set_aside(folder)
            self.records.pop(folder, None)
            moved.append(folder)
        if moved:
            self.store.keep_before(self.store.dir / BEST_FILE)  # a failed start puts it back
            forget_best(self.store.dir, moved)
            self.progress.message(f"{len(moved)} trial(s) that this config does not contain, or trained on other "
                                  f"data, moved to {self.store.dir / SUPERSEDED}: they are not shown, exported or "
                                  "counted, and come back when a config contains them again")

    # ------------------------------------------------------------ recording

    def _write(self, record: TrialRecord) -> None:
        self.records[record["trial_id"]] = record
        self.store.write_record(record)
        self._write_summary()

    def _write_summary(self) -> None:
        rows = [summary_row(self.records[t.trial_id], t.factors) for t in self.trials if t.trial_id in self.records]
        self.store.write_summary(rows, self.factors)

    def _begin(self, trial: Trial, info: dict) -> None:
        self.store.begin()  # from the first trial on, a run's files are results, never undone
        self.histories[trial.trial_id] = []
        self._write({
            "trial_id": trial.trial_id, "config_id": trial.config_id, "seed": trial.seed,
            "sweep": self.config.name, "settings": trial.settings, "factors": trial.factors,
            "status": Status.RUNNING, "error": None, "traceback": None, "notes": [],
            "dataset": self.data.info(), "host": socket.gethostname(), "worker": info,
            "started_at": _now(), "finished_at": None,
        })
        self.progress.trial_started(trial)

    def _epoch(self, trial: Trial, row: dict) -> bool:
        """Record an epoch; true when the schedule prunes the trial here (a search's pruner)."""
        rows = self.histories.setdefault(trial.trial_id, [])
        rows.append(row)
        self.store.write_history(trial.trial_id, rows)
        self.progress.epoch(trial, rows)
        return self.schedule.prune(trial, self.histories)

    def _finish(self, trial: Trial, result: TrialResult) -> None:
        record: TrialRecord = {**(self.records.get(trial.trial_id) or {})}
        history = result.pop("history", None) or self.histories.pop(trial.trial_id, [])
        halt = result.pop("halt", None)  # the machine had no room for what the trial wrote
        summary_text = result.pop("model_summary", None)
        self.store.write_model(trial.trial_id, result.pop("model_file", None))  # before trial.json says ok
        if history:
            self.store.write_history(trial.trial_id, history)
        if summary_text:
            self.store.write_text(trial.trial_id, "model.txt", summary_text + "\n")
        record.update({"error": None, "traceback": None, "notes": []})
        record.update(result)
        if self.halting and record["status"] == Status.FAILED:
            # Ctrl-C landing inside TensorFlow's tracing surfaces as an arbitrary error, not KeyboardInterrupt.
            record.update({"status": Status.INTERRUPTED, "error": INTERRUPTED.format(self._stopped_by),
                           "traceback": None,
                           "notes": record["notes"] + [f"the interrupt surfaced as: {result.get('error')}"]})
        record["finished_at"] = _now()
        self._write(record)
        if halt is not None:  # every later trial would fail the same way: stop, as a full results disk does
            raise LimitError(f"trial {trial.trial_id}: {halt}, then run the same command again to continue. "
                             f"{self._kept()}; {trial.trial_id} and any other trial that was running are "
                             "recorded interrupted and train again.")
        status = record["status"]
        self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
        self.report.fit_seconds += (record.get("timing") or {}).get("fit_seconds", 0.0)
        self.progress.trial_finished(trial, record)
        self.schedule.finished(trial, record)

    def _on_event(self, kind: str, trial_id: str, payload: Any) -> Any:
        """Record what an executor reports (an epoch's answer is the pruning verdict); a write that fails
        stops the sweep with a clear error. A stop signal waits until the event's files are written."""
        trial = self._trial(trial_id)
        handlers: dict[str, Callable[[Trial, Any], Any]] = {"started": self._begin, "epoch": self._epoch,
                                                            "done": self._finish}
        handler = handlers[kind]
        with self._whole():
            try:
                answer = handler(trial, payload)
            except OSError as exc:
                full = out_of_room(exc)
                remedy = room_remedy(full, self.store.dir) if full is not None else "fix the problem"
                raise ResultsError(f"{cannot_write(self.store.dir, exc)}. "
                                   f"{self._kept()}; {remedy}, then run the same command again to continue."
                                   ) from None
        if self.halting and kind == "epoch":  # still training after "stop now": the interrupt was swallowed
            raise KeyboardInterrupt
        return answer

    def _kept(self) -> str:
        kept = sum(1 for r in self.records.values() if r.get("status") == FINISHED)
        return f"The {kept} trial(s) recorded before are intact"

    def _mark_interrupted(self, reason: Optional[str] = None) -> None:
        reason = reason or INTERRUPTED.format(self._stopped_by)
        self._holding += 1  # a stop signal now would cut this short: the sweep is stopping anyway
        try:
            for kept in list(self.records.values()):
                if kept.get("status") == Status.RUNNING:
                    record: TrialRecord = {**kept, "status": Status.INTERRUPTED, "error": reason,
                                           "finished_at": _now()}
                    self.store.write_record(record)
                    self.records[record["trial_id"]] = record
            self._write_summary()
        finally:
            self._holding -= 1

    def _keep_models(self) -> None:
        """Record the best trial's model (by validation accuracy) and, for `best`, drop the others."""
        from ..training.saving import BEST_FILE, keep_models

        with self._whole():  # other models go and best_model.json names the one kept: both, or neither
            best = keep_models(self.store.dir, self.records, self.config.train.save_model)
        if best is not None:
            metric = best["selected_by"].split(" ")[0]
            value = f"{best[metric]:.4f}" if isinstance(best[metric], float) else "-"
            self.progress.message(f"Best model: {self.store.dir / best['model']} ({metric} {value}; "
                                  f"{BEST_FILE} names it, `mnist-sweep predict {self.store.dir} INPUT` uses it)")

    # ------------------------------------------------------------ running

    @contextmanager
    def _signals(self):
        """First Ctrl-C: finish running trials, start no more. A second Ctrl-C, SIGTERM or SIGHUP: stop now,
        with the running trials recorded interrupted (KeyboardInterrupt, once). A signal that is ignored when
        the run starts (`nohup` ignores SIGHUP) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum, frame):
            if signum == signal.SIGINT and not self.halting and self.executor is not None \
                    and not self.executor.stopping:
                self.executor.stop()
                self.report.interrupted = True
                self.progress.message("Ctrl-C: finishing the running trial(s), starting no more; "
                                      "press Ctrl-C again to stop now.")
                return
            if self.halting:
                return  # already stopping now; the clean-up that follows is short
            self.halting = True
            if self.executor is not None:
                self.executor.stop()
            if signum != signal.SIGINT:
                self._stopped_by = signal.Signals(signum).name
                self.progress.message(f"{self._stopped_by}: stopping now, as a second Ctrl-C does; "
                                      "running trials are recorded as interrupted")
            if self._holding:
                self._stop_pending = True  # `_whole` raises once the files being written are whole
            else:
                raise KeyboardInterrupt

        previous = {}
        for signum in STOP_SIGNALS:
            if signum == signal.SIGINT or signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def _whole(self):
        """Write one event's files whole: a stop signal arriving meanwhile takes effect right after."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._stop_pending:
            self._stop_pending = False
            raise KeyboardInterrupt

    @contextmanager
    def _undone_unless_begun(self):
        """A run that stops before its first trial began (an error, a signal) puts back what it wrote."""
        try:
            yield
            if self.report is None or not self.report.interrupted or self.store.began:
                return
            failure: BaseException = KeyboardInterrupt()  # interrupted before anything ran: nothing to keep
        except BaseException as exc:
            failure = exc
        if not self.store.began:
            self._holding += 1  # a stop signal now would cut the undoing short
            try:
                self.store.undo_start()
            finally:
                self._holding -= 1
        raise failure

    def run(self, force: bool = False, options: Optional[Options] = None, executor: str = "auto",
            warn: Callable[[str], None] = print) -> SweepReport:
        """Load the data once, then train what the schedule hands out through the chosen executor.

        Ctrl-C, SIGTERM and SIGHUP are handled from start to end (`_signals`). A run stopped before its
        first trial began leaves nothing behind and raises KeyboardInterrupt when a signal stopped it.
        """
        with self._signals():
            return self._run(force, options, executor, warn)

    def _run(self, force: bool, options: Optional[Options], executor: str,
             warn: Callable[[str], None]) -> SweepReport:
        import time

        from ..data.dataset import load_dataset

        options = options or Options()
        options = replace(options,  # the config's own settings apply whoever calls: CLI or Python API
                          fuse=fuses(self.config, options.fuse),
                          timeout_seconds=options.timeout_seconds or self.config.train.timeout_seconds,
                          save_model=self.config.train.save_model != "none",
                          prune=self.schedule.prunes)
        if options.prune and executor == "ray":
            raise ConfigError("prune: the Ray executor cannot stop a running trial yet; run the pruned search with "
                              "--executor process (or inline), or remove prune:")  # bad input: exit 2
        self.store.refuse_nested()
        self.data = load_dataset(self.config.dataset, warn=warn)  # bad data stops the run before anything is written
        with self.store.lock(), self._undone_unless_begun():
            self.store.refuse_links()  # nothing is written through a link, nothing read through one
            for path in self.schedule.state_files():  # a failed start puts them back (a search's study)
                self.store.keep_before(path)
            # A search refuses another search's study before sweep.yaml, which describes the results, is
            # replaced, and adds the configurations it asked before to the trials that `pending` keeps.
            self.schedule.open(force)
            self.pending(force)
            self.schedule.remember_dataset(self.data.info())
            self.store.prepare(config_to_dict(self.config))
            sizing = Sizing(options.max_branches, options.stack_memory, n_train=len(self.data.y_train),
                            input_dims=math.prod(self.data.x_train.shape[1:]))
            opening = self.schedule.start(Run(
                self.records, force, bool(options.fuse), sizing, options.jobs, executor,
                say=self.progress.message, added=self.progress.added,
                write=self.store.write_file))
            self.report = SweepReport(self.store.dir, opening.total, skipped=opening.skipped)
            self._write_summary()  # agrees with the run directories even if the last run was killed
            self.executor = make_executor(executor, options)
            self.progress.start(opening.total, opening.todo, opening.skipped, self.data.info())
            for line in opening.messages:
                self.progress.message(line)
            start = time.perf_counter()
            try:
                self.executor.run(_Queue(self.schedule, lambda: self.executor.stopping), self.data, self._on_event)
            except KeyboardInterrupt:
                self.report.interrupted = True
                self._mark_interrupted()
            except Exception as exc:  # the trials that were running are not any more, whatever stopped them
                try:
                    self._mark_interrupted(f"the sweep stopped before it finished: {_first_line(exc)}")
                except OSError:
                    pass  # the results directory itself failed (full disk, read-only): report that error below
                if _from_ray(exc):
                    raise SweepError(f"the Ray cluster stopped under the sweep ({_first_line(exc)}); the running "
                                     f"trial(s) are recorded as interrupted in {self.store.dir}; start the "
                                     "cluster again and run the same command to resume") from None
                raise
            self.report.wall_seconds = time.perf_counter() - start
            ending = self.schedule.end()
            for name, value in ending.report.items():
                setattr(self.report, name, value)
            for line in ending.messages:
                self.progress.message(line)
            self._keep_models()
            for line in ending.closing:
                self.progress.message(line)
        self.progress.finish(self.report)
        return self.report


def run_sweep(config: SweepConfig | dict | str | Path, out: str | Path = "results", force: bool = False,
              options: Optional[Options] = None, executor: str = "auto", progress: Optional[Progress] = None,
              tensorboard: str | Path | None = None):
    """Run a config (a path, a dict or a SweepConfig) and return its summary as a DataFrame.

    `tensorboard`: a log directory to write each trial's TensorBoard run to as it trains.
    """
    from ..results.store import load_results

    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = validate_config(config)
    report = Sweep(config, out, progress, tensorboard).run(force=force, options=options, executor=executor)
    if report.interrupted:
        raise KeyboardInterrupt
    return load_results(report.directory)
