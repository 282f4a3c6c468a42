"""The sweep driver: expand trials, skip finished ones, hand the rest to an executor, record each one.

Executors only train; everything written to the results directory is written here, so a
distributed run needs no shared filesystem and a kill at any moment leaves whole files.
"""

from __future__ import annotations

import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import SweepConfig, config_to_dict, load_config, validate_config
from ..errors import ConfigError, ResultsError, SweepError
from ..execution.executors import InlineExecutor, Options, ProcessExecutor
from ..training.fused import describe_groups, group_trials
from ..plan.grid import Trial, expand, varying_settings
from ..records import Executor, TrialRecord, TrialResult
from ..results.store import FINISHED, ResultsStore, summary_row

INTERRUPTED = "stopped by Ctrl-C before it finished"
RAY_ASK_LIMIT = 1024  # configurations a search keeps out at once on Ray: the cluster's free CPUs decide


def make_executor(kind: str, options: Options) -> Executor:
    """The executor for `--executor` and `--jobs`."""
    if kind == "ray":
        from ..execution.ray_child import ChildRayExecutor

        return ChildRayExecutor(options)
    if options.jobs > 1 or (kind == "process"):
        return ProcessExecutor(options)
    return InlineExecutor(options)


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
        return self.statuses.get("failed", 0)


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


class Sweep:
    """One run of a config: holds the store, the dataset and every trial's record."""

    def __init__(self, config: SweepConfig, out: str | Path = "results", progress: Optional[Progress] = None,
                 tensorboard: str | Path | None = None, max_trials: Optional[int] = None):
        self.config = config
        self.store = ResultsStore(out, config.name)
        self.search = None  # a sampled sweep's Optuna study (search.method random, qmc or tpe)
        self.feed = None
        if config.search.method != "grid":
            from ..search import Search

            self.search = Search(config, self.store.dir)
        self.trials = expand(config, max_trials) if self.search is None else []  # a search adds them as it asks
        self.by_id = {t.trial_id: t for t in self.trials}
        self.factors = varying_settings(self.trials) if self.search is None else self.search.space.varying
        self.progress = progress or Progress()
        self.records: dict[str, TrialRecord] = {}
        self.histories: dict[str, list[dict]] = {}
        self.data = None
        self.report: Optional[SweepReport] = None
        self.executor: Optional[Executor] = None
        self.halting = False  # a second Ctrl-C: stop the running trial(s) now
        self.race_plan = None
        if config.race is not None:
            from ..analysis.race import plan_for

            self.race_plan = plan_for(config)
        self.ended_here: set[str] = set()  # trials this run trained to an end, whatever their status
        self.outstanding: set[str] = set()  # a race's trials of the current round not yet done
        self.fresh = False  # --force: a race counts only what this run trains
        self._told: list[dict] = []  # the race's rounds already announced
        self._tasks: list[list[Trial]] = []  # what the executor is consuming
        self._options = Options()
        if tensorboard or config.tensorboard:  # each trial's curves and HParams session, from the events here
            from ..tracking import live_tensorboard

            needed_by = "--tensorboard" if tensorboard else f"the config's tensorboard: {config.tensorboard}"
            self.progress = Observers(self.progress, live_tensorboard(tensorboard or config.tensorboard, self,
                                                                      needed_by))

    def pending(self, force: bool = False) -> list[Trial]:
        """Trials still to train: all with `force`, else those without a finished record."""
        self.records = self.store.read_records()
        self._adopt_renamed()
        if force:
            return list(self.trials)
        return [t for t in self.trials if self.records.get(t.trial_id, {}).get("status") != FINISHED]

    def _adopt_renamed(self) -> None:
        """Keep finished trials whose id changed only because another setting started or stopped varying.

        An id is `<slug>-s<seed>-<hash>`: the slug names the settings that vary, so adding an axis
        renames trials whose settings did not change; the hash covers every setting, the data and
        the seed. Such a trial's directory is renamed instead of the trial being trained again.
        """
        missing = {t.trial_id.rsplit("-", 1)[1]: t for t in self.trials if t.trial_id not in self.records}
        if not missing:
            return
        adopted = 0
        for digest, (folder, record) in self.store.finished_by_digest().items():
            trial = missing.get(digest)
            if trial is None or record.get("seed") != trial.seed:
                continue
            if folder != trial.trial_id:
                if self.store.run_dir(trial.trial_id).exists():
                    continue  # an unfinished attempt under the new id: train it again
                self.store.rename_run(folder, trial.trial_id)
            renamed = record["trial_id"]
            record = dict(record, trial_id=trial.trial_id, factors=trial.factors,
                          notes=list(record.get("notes") or []) + [f"renamed from {renamed}: the grid's varying "
                                                                  "settings changed, this trial's did not"])
            self.store.write_record(record)
            self.records.pop(renamed, None)
            self.records[trial.trial_id] = record
            adopted += 1
        if adopted:
            self.progress.message(f"{adopted} finished trial(s) kept under new ids: the grid's varying settings "
                                  "changed, theirs did not")

    # ------------------------------------------------------------ recording

    def _write(self, record: TrialRecord) -> None:
        self.records[record["trial_id"]] = record
        self.store.write_record(record)
        self._write_summary()

    def _write_summary(self) -> None:
        rows = [summary_row(self.records[t.trial_id], t.factors) for t in self.trials if t.trial_id in self.records]
        self.store.write_summary(rows, self.factors)

    def _begin(self, trial: Trial, info: dict) -> None:
        self.histories[trial.trial_id] = []
        self._write({
            "trial_id": trial.trial_id, "config_id": trial.config_id, "seed": trial.seed,
            "sweep": self.config.name, "settings": trial.settings, "factors": trial.factors,
            "status": "running", "error": None, "traceback": None, "notes": [],
            "dataset": self.data.info(), "host": socket.gethostname(), "worker": info,
            "started_at": _now(), "finished_at": None,
        })
        self.progress.trial_started(trial)

    def _epoch(self, trial: Trial, row: dict) -> bool:
        """Record an epoch; true when the search's pruner stops the trial here."""
        rows = self.histories.setdefault(trial.trial_id, [])
        rows.append(row)
        self.store.write_history(trial.trial_id, rows)
        self.progress.epoch(trial, rows)
        return self.search is not None and self.search.should_prune(trial, self.histories)

    def _finish(self, trial: Trial, result: TrialResult) -> None:
        record: TrialRecord = dict(self.records.get(trial.trial_id) or {})
        history = result.pop("history", None) or self.histories.pop(trial.trial_id, [])
        summary_text = result.pop("model_summary", None)
        self.store.write_model(trial.trial_id, result.pop("model_file", None))  # before trial.json says ok
        if history:
            self.store.write_history(trial.trial_id, history)
        if summary_text:
            self.store.write_text(trial.trial_id, "model.txt", summary_text + "\n")
        record.update({"error": None, "traceback": None, "notes": []})
        record.update(result)
        if self.halting and record["status"] == "failed":
            # Ctrl-C landing inside TensorFlow's tracing surfaces as an arbitrary error, not KeyboardInterrupt.
            record.update(status="interrupted", error=INTERRUPTED, traceback=None,
                          notes=record["notes"] + [f"the interrupt surfaced as: {result.get('error')}"])
        record["finished_at"] = _now()
        self._write(record)
        status = record["status"]
        self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
        self.report.fit_seconds += (record.get("timing") or {}).get("fit_seconds", 0.0)
        self.ended_here.add(trial.trial_id)
        self.progress.trial_finished(trial, record)
        told = self.search.record(trial, record) if self.search is not None else None
        if told is not None and self.feed is not None:
            self.feed.told(told)
        if self.race_plan is not None:
            self._next_round(trial)

    def _on_event(self, kind: str, trial_id: str, payload: Any) -> Any:
        """Record what an executor reports (an epoch's answer is the pruning verdict); a write that fails
        stops the sweep with a clear error."""
        trial = self.by_id[trial_id]
        handler = {"started": self._begin, "epoch": self._epoch, "done": self._finish}[kind]
        try:
            return handler(trial, payload)
        except OSError as exc:
            kept = sum(1 for r in self.records.values() if r.get("status") == FINISHED)
            raise ResultsError(f"cannot write results to {self.store.dir}: {exc.strerror or exc}. "
                               f"The {kept} trial(s) recorded before are intact; fix the problem and run "
                               "the same command again to continue.") from None

    def _mark_interrupted(self, reason: str = INTERRUPTED) -> None:
        for record in list(self.records.values()):
            if record.get("status") == "running":
                record = dict(record, status="interrupted", error=reason,
                              finished_at=_now())
                self.store.write_record(record)
                self.records[record["trial_id"]] = record
        self._write_summary()

    def _keep_models(self) -> None:
        """Record the best trial's model (by validation accuracy) and, for `best`, drop the others."""
        from ..training.saving import BEST_FILE, keep_models

        best = keep_models(self.store.dir, self.records, self.config.train.save_model)
        if best is not None:
            metric = best["selected_by"].split(" ")[0]
            value = f"{best[metric]:.4f}" if isinstance(best[metric], float) else "-"
            self.progress.message(f"Best model: {self.store.dir / best['model']} ({metric} {value}; "
                                  f"{BEST_FILE} names it, `mnist-sweep predict {self.store.dir} INPUT` uses it)")

    # ------------------------------------------------------------ searching

    def _asked(self, configuration) -> None:
        """Take in the runs (one per seed) of a configuration the study asked."""
        for trial in configuration.trials:
            if trial.trial_id not in self.by_id:
                self.trials.append(trial)
                self.by_id[trial.trial_id] = trial

    def _search_tasks(self, existing: list, force: bool, options: Options, executor: str):
        """A feed of the opened study's tasks (`existing`: the configurations it asked before); returns
        (feed, runs already done)."""
        from ..search import SearchFeed
        from ..search.study import DONE

        for configuration in existing:
            self._asked(configuration)
        # N workers keep N configurations out; Ray's own window (the cluster's CPUs) bounds its share.
        batch = options.jobs if executor != "ray" else RAY_ASK_LIMIT
        self.feed = SearchFeed(self.search, {} if force else self.records, batch=batch, fuse=options.fuse,
                               max_branches=options.max_branches, on_new=self._asked)
        self.feed.start(existing)
        done = 0 if force else sum(1 for t in self.trials if self.records.get(t.trial_id, {}).get("status") in DONE)
        return self.feed, done

    # ------------------------------------------------------------ racing

    def _counts(self, trial: Trial) -> bool:
        """Whether a race counts this trial as run: finished before (unless --force), or ended in this run."""
        if trial.trial_id in self.ended_here:
            return self.records.get(trial.trial_id, {}).get("status") != "interrupted"
        return not self.fresh and self.records.get(trial.trial_id, {}).get("status") == FINISHED

    def _judge(self):
        """Replay the race over the trials that count and record it in race.json."""
        import json

        import pandas as pd

        from ..analysis.race import RACE_FILE, run_race
        from ..results.store import atomic_write

        metric = self.race_plan.metric
        rows = [{"config_id": t.config_id, "seed": t.seed, "status": self.records[t.trial_id]["status"],
                 metric: (self.records[t.trial_id].get("metrics") or {}).get(metric), **t.factors}
                for t in self.trials if self._counts(t)]
        configs = list(dict.fromkeys(t.config_id for t in self.trials))
        frame = pd.DataFrame(rows, columns=["config_id", "seed", "status", metric, *self.factors])
        frame[metric] = frame[metric].astype(float)
        race = run_race(frame, self.race_plan, configs)
        labels = {t.config_id: ", ".join(f"{k}={v}" for k, v in t.factors.items()) or t.config_id
                  for t in self.trials}
        data = race.to_dict(labels)
        data["trials_run"] = len(rows)
        atomic_write(self.store.dir / RACE_FILE, json.dumps(data, indent=2) + "\n")
        return race, data

    def _race_round(self, options: Options) -> list[Trial]:
        """The trials of the race's next round: the seeds each configuration still in needs, batched to fill
        the executor (one seed each with one job; more when jobs outnumber the round's tasks)."""
        from ..analysis.race import round_message

        race, data = self._judge()
        for look in data["rounds"][len(self._told):]:
            self.progress.message(round_message(look))
        self._told = data["rounds"]
        if race.finished:
            return []
        one_seed = [t for t in self.trials if t.config_id in race.racing and t.seed == race.plan.seeds[0]]
        per_seed = len(group_trials(one_seed, options.max_branches)) if options.fuse else len(one_seed)
        batch = max(1, options.jobs // max(per_seed, 1))
        need = race.needed(batch)
        return [t for t in self.trials if t.seed in need.get(t.config_id, ()) and not self._counts(t)]

    def _next_round(self, trial: Trial) -> None:
        """When a round's last trial is done, queue the next round (unless Ctrl-C asked to stop)."""
        self.outstanding.discard(trial.trial_id)
        if self.outstanding or self.executor is None or self.executor.stopping:
            return
        more = self._race_round(self._options)
        self.outstanding = {t.trial_id for t in more}
        if more:
            self.progress.added(len(more))
            self._tasks.extend(self._group(more, self._options))

    @staticmethod
    def _group(todo: list[Trial], options: Options) -> list[list[Trial]]:
        return group_trials(todo, options.max_branches) if options.fuse else [[t] for t in todo]

    # ------------------------------------------------------------ running

    @contextmanager
    def _ctrl_c(self):
        """First Ctrl-C: finish running trials, start no more. Second: stop now."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum, frame):
            if self.executor is not None and not self.executor.stopping:
                self.executor.stop()
                self.report.interrupted = True
                self.progress.message("Ctrl-C: finishing the running trial(s), starting no more; "
                                      "press Ctrl-C again to stop now.")
            else:
                self.halting = True
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def run(self, force: bool = False, options: Optional[Options] = None, executor: str = "auto",
            warn: Callable[[str], None] = print) -> SweepReport:
        """Load the data once, then train every pending trial through the chosen executor."""
        import time

        from ..data.dataset import load_dataset

        options = options or Options()
        options = replace(options,  # the config's own settings apply whoever calls: CLI or Python API
                          fuse=options.fuse if options.fuse is not None else self.config.execution != "isolated",
                          timeout_seconds=options.timeout_seconds or self.config.train.timeout_seconds,
                          save_model=self.config.train.save_model != "none",
                          prune=self.search is not None and self.config.prune is not None)
        if options.prune and executor == "ray":
            raise ConfigError("prune: the Ray executor cannot stop a running trial yet; run the pruned search with "
                              "--executor process (or inline), or remove prune:")  # bad input: exit 2
        self.store.refuse_nested()
        self.data = load_dataset(self.config.dataset, warn=warn)  # bad data stops the run before anything is written
        with self.store.lock():
            todo = self.pending(force)
            self.fresh, self._options = force, options
            # A study of another search is refused before sweep.yaml, which describes the results, is replaced.
            existing = self.search.open(force) if self.search is not None else []
            self.store.prepare(config_to_dict(self.config))
            if self.search is not None:
                total = self.config.search.trials * len(self.config.seeds)
                self.report = SweepReport(self.store.dir, total)
                tasks, self.report.skipped = self._search_tasks(existing, force, options, executor)
                self._write_summary()  # agrees with the run directories even if the last run was killed
                self.executor = make_executor(executor, options)
                self.progress.start(total, total - self.report.skipped, self.report.skipped, self.data.info())
                self.progress.message(f"{self.config.search.method} search: {self.config.search.trials} "
                                      f"configuration(s) x {len(self.config.seeds)} seed(s); study in "
                                      f"{self.search.path} (optuna-dashboard {self.search.path} shows it)")
            else:
                self._write_summary()  # agrees with the run directories even if the last run was killed
                if self.race_plan is not None:
                    todo = self._race_round(options)
                    self.outstanding = {t.trial_id for t in todo}
                skipped = (sum(1 for t in self.trials if self._counts(t)) if self.race_plan
                           else len(self.trials) - len(todo))
                self.report = SweepReport(self.store.dir, len(self.trials), skipped=skipped)
                self.executor = make_executor(executor, options)
                tasks = self._tasks = self._group(todo, options)  # a race appends its next rounds to this list
                self.progress.start(len(self.trials), len(todo), self.report.skipped, self.data.info())
                if self.race_plan is not None:
                    p = self.race_plan
                    self.progress.message(f"Racing {len(set(t.config_id for t in self.trials))} configurations on "
                                          f"{p.metric} ({p.mode}): {p.minimum} to {p.maximum} seeds each, each look "
                                          f"at level {p.alpha:.4f}; at most {len(self.trials)} trials")
                if todo:
                    self.progress.message(describe_groups(tasks) if options.fuse else
                                          f"isolated: {len(todo)} trial(s), each its own model (execution: isolated)")
            start = time.perf_counter()
            try:
                with self._ctrl_c():
                    self.executor.run(tasks, self.data, self._on_event)
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
            if self.race_plan is not None:
                from ..analysis.race import describe

                self.report.race = self._judge()[1]
                self.progress.message(describe(self.report.race))
            self._keep_models()
            best = self.search.best() if self.search is not None else None
            if best is not None:
                self.progress.message(f"Best configuration: study trial {best['number']}, "
                                      f"{self.config.search.metric} {best['value']:.4f} (mean over seeds)")
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
