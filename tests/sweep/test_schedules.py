"""The driver runs any schedule the same way: a fourth, trivial one (configurations in reverse order),
written here against the `records.Schedule` protocol, drives a real sweep without touching the runner."""

import json

import pytest

from mnist_sweep.config import validate_config
from mnist_sweep.plan import expand, varying_settings
from mnist_sweep.records import Ending, Opening, Run, Task
from mnist_sweep.sweep import Progress, Sweep
from tests.helpers import tiny_config


class ReverseOrder:
    """Every trial once, the grid's last first, handed out one task at a time."""

    prunes = False
    retrain = "train every trial again on it ("

    def __init__(self, config):
        self.trials = expand(config)
        self.factors = varying_settings(self.trials)
        self.left: list[Task] = []
        self.ended: list[str] = []

    def open(self, force: bool) -> None:
        pass

    def state_files(self):
        return []

    def recorded_dataset(self):
        return None

    def remember_dataset(self, info) -> None:
        pass

    def start(self, run: Run) -> Opening:
        self.left = [Task((t,)) for t in reversed(self.trials)]
        return Opening(total=len(self.trials), todo=len(self.trials), skipped=0, messages=["reverse order"])

    def next_tasks(self) -> list[Task]:
        tasks, self.left = self.left[:1], self.left[1:]
        return tasks

    def expected(self) -> int:
        return len(self.left)

    def finished(self, trial, record) -> None:
        self.ended.append(trial.trial_id)

    def prune(self, trial, histories) -> bool:
        return False

    def end(self) -> Ending:
        return Ending(closing=[f"{len(self.ended)} trial(s), last first"])


class Heard(Progress):
    def __init__(self):
        self.started, self.messages = [], []

    def trial_started(self, trial):
        self.started.append(trial.trial_id)

    def message(self, text):
        self.messages.append(text)


@pytest.mark.keras
def test_a_schedule_written_outside_the_package_drives_a_sweep_through_the_same_runner(tmp_path):
    config = validate_config(tiny_config(model={"activation": ["relu", "tanh", "sigmoid"]}, train={"epochs": 1}))
    schedule, heard = ReverseOrder(config), Heard()
    report = Sweep(config, tmp_path / "results", heard, schedule=schedule).run()
    grid = [t.trial_id for t in expand(config)]
    assert heard.started == grid[::-1] == schedule.ended
    assert report.statuses == {"ok": 3} and report.total == 3
    assert heard.messages[0] == "reverse order" and heard.messages[-1] == "3 trial(s), last first"
    runs = tmp_path / "results" / "tiny" / "runs"
    assert sorted(json.loads((runs / t / "trial.json").read_text())["status"] for t in grid) == ["ok"] * 3
    summary = (tmp_path / "results" / "tiny" / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and summary[0].split(",")[:2] == ["trial_id", "config_id"]
