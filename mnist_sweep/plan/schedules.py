"""Schedules: what a sweep trains next, given what has finished (the `records.Schedule` protocol).

`GridSchedule` trains every pending trial of the grid once; `RaceSchedule` trains the grid's
configurations a few seeds at a time and drops those clearly worse (`analysis.race`). The search's
schedule is `search.SearchSchedule`. The driver (sweep/) runs each the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..analysis.race import RACE_FILE, RacePlan, describe, plan_for, round_message, run_race
from ..config import SweepConfig
from ..records import FINISHED, Ending, Opening, Run, Status, Task, Trial, TrialRecord
from .grid import expand, varying_settings
from .grouping import describe_plan, make_tasks


class GridSchedule:
    """Every trial of the grid, in the grid's order (seed-major); finished ones are skipped unless forced."""

    prunes = False
    retrain = "train every trial again on it ("

    def __init__(self, config: SweepConfig, max_trials: Optional[int] = None, trials: Optional[list[Trial]] = None):
        self.config = config
        self.trials = expand(config, max_trials) if trials is None else trials
        self.factors = varying_settings(self.trials)
        self.tasks: list[Task] = []
        self.run = Run({})

    def open(self, force: bool) -> None:
        pass

    def state_files(self) -> list[Path]:
        return []  # race.json is written through Run.write, which keeps what was there

    def recorded_dataset(self) -> Optional[dict]:
        return None

    def remember_dataset(self, info: dict) -> None:
        pass

    def order(self, todo: list[Trial]) -> list[Trial]:
        """The order the pending trials train in; a subclass may change it."""
        return todo

    def start(self, run: Run) -> Opening:
        self.run = run
        todo = self.order([t for t in self.trials if run.force or run.records.get(t.trial_id, {}).get("status")
                           != FINISHED])
        self.tasks = make_tasks(todo, run.fuse, run.sizing)
        return Opening(len(self.trials), len(todo), len(self.trials) - len(todo), self.grouping(todo))

    def grouping(self, todo: list[Trial]) -> list[str]:
        """How the tasks were formed, for the run's output."""
        return describe_plan(self.tasks, self.run.fuse, self.run.sizing) if todo else []

    def next_tasks(self) -> list[Task]:
        tasks, self.tasks = self.tasks, []
        return tasks

    def expected(self) -> int:
        return len(self.tasks)

    def finished(self, trial: Trial, record: TrialRecord) -> None:
        pass

    def prune(self, trial: Trial, histories: dict[str, list[dict]]) -> bool:
        return False

    def end(self) -> Ending:
        return Ending()


class RaceSchedule(GridSchedule):
    """The grid's configurations raced over seeds: a round at a time, until one is left or `max` seeds."""

    def __init__(self, config: SweepConfig, max_trials: Optional[int] = None):
        super().__init__(config, max_trials)
        self.plan: RacePlan = plan_for(config)
        self.ended_here: set[str] = set()  # trials this run trained to an end, whatever their status
        self.outstanding: set[str] = set()  # the current round's trials not yet done
        self.told: list[dict] = []  # the rounds already announced
        self.over = False  # the race has ended: no more rounds

    def counts(self, trial: Trial) -> bool:
        """Whether the race counts this trial as run: finished before (unless --force), or ended in this run."""
        if trial.trial_id in self.ended_here:
            return self.run.records.get(trial.trial_id, {}).get("status") != Status.INTERRUPTED
        return not self.run.force and self.run.records.get(trial.trial_id, {}).get("status") == FINISHED

    def judge(self):
        """Replay the race over the trials that count and record it in race.json."""
        import pandas as pd

        metric, records = self.plan.metric, self.run.records
        rows = [{"config_id": t.config_id, "seed": t.seed, "status": records[t.trial_id]["status"],
                 metric: (records[t.trial_id].get("metrics") or {}).get(metric), **t.factors}
                for t in self.trials if self.counts(t)]
        configs = list(dict.fromkeys(t.config_id for t in self.trials))
        frame = pd.DataFrame(rows, columns=["config_id", "seed", "status", metric, *self.factors])
        frame[metric] = frame[metric].astype(float)
        race = run_race(frame, self.plan, configs)
        labels = {t.config_id: ", ".join(f"{k}={v}" for k, v in t.factors.items()) or t.config_id
                  for t in self.trials}
        data = race.to_dict(labels)
        data["trials_run"] = len(rows)
        self.run.write(RACE_FILE, json.dumps(data, indent=2) + "\n")
        return race, data

    def round(self) -> list[Trial]:
        """The trials of the race's next round: the seeds each configuration still in needs, batched to fill
        the executor (one seed each with one job; more when jobs outnumber the round's tasks)."""
        race, data = self.judge()
        for look in data["rounds"][len(self.told):]:
            self.run.say(round_message(look))
        self.told = data["rounds"]
        if race.finished:
            return []
        one_seed = [t for t in self.trials if t.config_id in race.racing and t.seed == race.plan.seeds[0]]
        per_seed = len(make_tasks(one_seed, self.run.fuse, self.run.sizing))
        batch = max(1, self.run.jobs // max(per_seed, 1))
        need = race.needed(batch)
        return [t for t in self.trials if t.seed in need.get(t.config_id, ()) and not self.counts(t)]

    def start(self, run: Run) -> Opening:
        self.run = run
        todo = self.round()
        self.outstanding = {t.trial_id for t in todo}
        skipped = sum(1 for t in self.trials if self.counts(t))
        self.tasks = make_tasks(todo, run.fuse, run.sizing)
        p = self.plan
        racing = (f"Racing {len(set(t.config_id for t in self.trials))} configurations on {p.metric} ({p.mode}): "
                  f"{p.minimum} to {p.maximum} seeds each, each look at level {p.alpha:.4f}; "
                  f"at most {len(self.trials)} trials")
        return Opening(len(self.trials), len(todo), skipped, [racing, *self.grouping(todo)])

    def next_tasks(self) -> list[Task]:
        """The tasks handed out at the start, then each next round once the last one's trials are done."""
        if self.tasks or self.outstanding or self.over:
            return super().next_tasks()
        more = self.round()
        self.over = not more
        self.outstanding = {t.trial_id for t in more}
        if more:
            self.run.added(len(more))
        return make_tasks(more, self.run.fuse, self.run.sizing)

    def finished(self, trial: Trial, record: TrialRecord) -> None:
        self.ended_here.add(trial.trial_id)
        self.outstanding.discard(trial.trial_id)

    def end(self) -> Ending:
        data = self.judge()[1]
        return Ending(messages=[describe(data)], report={"race": data})
