"""The tasks of a sampled sweep, handed to an executor one at a time and asked from the study on demand.

An executor takes tasks with `pop(0)` while the feed is true. random and qmc ask every configuration
up front (their draws do not depend on results); tpe asks one when a worker is free and fewer than
`batch` (--jobs) configurations are out, so N workers keep N configurations in flight.
"""

from __future__ import annotations

from typing import Callable

from ..training.fused import group_trials
from ..plan.grid import Trial
from .study import DONE, Configuration, Search, draw_configurations


class SearchFeed:
    """A queue of tasks (lists of trials) that asks the study for more as it runs dry."""

    def __init__(self, search: Search, records: dict[str, dict], batch: int = 1, fuse: bool = False,
                 max_branches: int = 16, on_new: Callable[[Configuration], None] = lambda c: None):
        self.search = search
        self.records = records
        self.batch = max(1, batch)
        self.fuse, self.max_branches = fuse, max_branches
        self.on_new = on_new
        self.budget = search.config.search.trials
        self.buffer: list[list[Trial]] = []
        self.in_flight: set[int] = set()
        self.adaptive = search.config.search.method == "tpe"

    def start(self, existing: list[Configuration]) -> None:
        """Queue what a stopped run left (configurations asked, not told), then, for random/qmc, the rest."""
        running = [c for c in existing if self.search.state(c) == self.search.optuna.trial.TrialState.RUNNING]
        self._queue(running)
        if not self.adaptive:
            planned = draw_configurations(self.search.config)
            new = [self.search.ask(params) for params in planned[self.search.asked():]]
            for configuration in new:
                self.on_new(configuration)
            self._queue(new)

    def _queue(self, configurations: list[Configuration]) -> None:
        runs = []
        for configuration in configurations:
            for trial in configuration.trials:
                record = self.records.get(trial.trial_id) or {}
                if record.get("status") in DONE:  # kept from an earlier run of the sweep
                    configuration.results[trial.trial_id] = record
                else:
                    runs.append(trial)
            if len(configuration.results) == len(configuration.trials):
                self.search.tell(configuration)
            else:
                self.in_flight.add(configuration.number)
        self.buffer += group_trials(runs, self.max_branches) if self.fuse else [[t] for t in runs]

    def _fill(self) -> None:
        while (self.adaptive and not self.buffer and len(self.in_flight) < self.batch
               and self.search.asked() < self.budget):
            # fused: ask for every free slot at once, so the configurations can share a model
            want = min(self.batch - len(self.in_flight), self.budget - self.search.asked(),
                       self.max_branches) if self.fuse else 1
            new = [self.search.ask() for _ in range(want)]
            for configuration in new:
                self.on_new(configuration)
            self._queue(new)

    def told(self, configuration: Configuration) -> None:
        self.in_flight.discard(configuration.number)

    def __bool__(self) -> bool:
        self._fill()
        return bool(self.buffer)

    def __len__(self) -> int:
        left = max(0, self.budget - self.search.asked()) if self.adaptive else 0
        return len(self.buffer) + left * len(self.search.config.seeds)

    def pop(self, index: int = 0) -> list[Trial]:
        self._fill()
        return self.buffer.pop(index)

    def __iter__(self):
        while self:
            yield self.pop(0)
