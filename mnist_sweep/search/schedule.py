"""The search's schedule: the study's configurations as tasks, asked on demand (`records.Schedule`).

random and qmc ask every configuration up front (their draws do not depend on results); tpe asks
one when a worker is free and fewer than `batch` (--jobs) configurations are out, so N workers
keep N configurations in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..config import SweepConfig
from ..plan.grouping import describe_plan, make_tasks
from ..records import SEARCH_DONE, Ending, Opening, Run, Task, Trial, TrialRecord
from .study import Configuration, Search, draw_configurations

RAY_ASK_LIMIT = 1024  # configurations a search keeps out at once on Ray: the cluster's free CPUs decide


class SearchSchedule:
    """A queue of tasks that asks the study for more as it runs dry, and tells it each configuration's result."""

    def __init__(self, config: SweepConfig, directory: str | Path):
        self.config = config
        self.search = Search(config, Path(directory))
        self.trials: list[Trial] = []  # added as the study asks
        self.known: set[str] = set()
        self.factors = self.search.space.varying
        self.prunes = config.prune is not None
        self.budget = config.search.trials or 0  # validation requires trials for a sampled method
        self.adaptive = config.search.method == "tpe"
        self.existing: list[Configuration] = []
        self.buffer: list[Task] = []
        self.in_flight: set[int] = set()
        self.run = Run({})
        self.records: dict[str, Any] = {}
        self.batch = 1

    retrain = "start the search again on it (the study restarts, and "

    def open(self, force: bool) -> None:
        """Create or load the study (a study of another search is refused before sweep.yaml is replaced), and
        take in the configurations it asked before, so that their run directories count as this sweep's."""
        self.existing = self.search.open(force)
        for configuration in self.existing:
            self._asked(configuration)

    def state_files(self) -> list[Path]:
        return [self.search.path]

    def recorded_dataset(self) -> Optional[dict]:
        return self.search.dataset()

    def remember_dataset(self, info: dict) -> None:
        self.search.remember_dataset(info)

    def start(self, run: Run) -> Opening:
        """Queue what a stopped run left (configurations asked, not told), then, for random/qmc, the rest."""
        self.run, self.records = run, ({} if run.force else run.records)
        # N workers keep N configurations out; Ray's own window (the cluster's CPUs) bounds its share.
        self.batch = max(1, run.jobs if run.executor != "ray" else RAY_ASK_LIMIT)
        running = [c for c in self.existing if self.search.state(c) == self.search.optuna.trial.TrialState.RUNNING]
        self._queue(running)
        if not self.adaptive:
            planned = draw_configurations(self.config)
            new = [self.search.ask(params) for params in planned[self.search.asked():]]
            for configuration in new:
                self._asked(configuration)
            self._queue(new)
        total = self.budget * len(self.config.seeds)
        done = 0 if run.force else sum(1 for t in self.trials
                                       if self.records.get(t.trial_id, {}).get("status") in SEARCH_DONE)
        path = self.search.path
        return Opening(total, total - done, done, [
            f"{self.config.search.method} search: {self.budget} configuration(s) x "
            f"{len(self.config.seeds)} seed(s); study in {path} (optuna-dashboard {path} shows it)",
            *(describe_plan(self.buffer, run.fuse, run.sizing) if not self.adaptive else [])])

    def _asked(self, configuration: Configuration) -> None:
        """Take in the runs (one per seed) of a configuration the study asked."""
        for trial in configuration.trials:
            if trial.trial_id not in self.known:
                self.trials.append(trial)
                self.known.add(trial.trial_id)

    def _queue(self, configurations: list[Configuration]) -> None:
        runs = []
        for configuration in configurations:
            for trial in configuration.trials:
                record = self.records.get(trial.trial_id) or {}
                if record.get("status") in SEARCH_DONE:  # kept from an earlier run of the sweep
                    configuration.results[trial.trial_id] = record
                else:
                    runs.append(trial)
            if len(configuration.results) == len(configuration.trials):
                self.search.tell(configuration)
            else:
                self.in_flight.add(configuration.number)
        self.buffer += make_tasks(runs, self.run.fuse, self.run.sizing)

    def next_tasks(self) -> list[Task]:
        while (self.adaptive and not self.buffer and len(self.in_flight) < self.batch
               and self.search.asked() < self.budget):
            # fused: ask for every free slot at once, so the configurations can share a model
            want = min(self.batch - len(self.in_flight), self.budget - self.search.asked(),
                       self.run.sizing.max_branches) if self.run.fuse else 1
            new = [self.search.ask() for _ in range(want)]
            for configuration in new:
                self._asked(configuration)
            self._queue(new)
        tasks, self.buffer = self.buffer, []
        return tasks

    def expected(self) -> int:
        left = max(0, self.budget - self.search.asked()) if self.adaptive else 0
        return len(self.buffer) + left * len(self.config.seeds)

    def finished(self, trial: Trial, record: TrialRecord) -> None:
        told = self.search.record(trial, record)
        if told is not None:
            self.in_flight.discard(told.number)

    def prune(self, trial: Trial, histories: dict[str, list[dict]]) -> bool:
        return self.search.should_prune(trial, histories)

    def end(self) -> Ending:
        best = self.search.best()
        if best is None:
            return Ending()
        return Ending(closing=[f"Best configuration: study trial {best['number']}, "
                               f"{self.config.search.metric} {best['value']:.4f} (mean over seeds)"])



