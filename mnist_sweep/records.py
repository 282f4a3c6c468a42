"""The records and vocabularies that cross layers, in one place: a trial's status, a trial and a task
(what to train, and how), what training returns for a trial, what the results directory keeps of it,
and what an executor and its task queue must do.

    plan/ --Task--> sweep/ --TaskQueue--> execution/ --> training/ --TrialResult--> execution/
    execution/ --("done", id, TrialResult)--> sweep/ --TrialRecord--> results/ (trial.json, summary.csv)

Results and records are TypedDicts, so they stay plain dicts: they pickle to worker processes and Ray
tasks unchanged, and trial.json is their JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, TypedDict


class Status(str, Enum):
    """How a trial stands; a record's `status` holds the value (the enum compares equal to its string)."""

    RUNNING = "running"  # started, not ended (a record left so by a kill reads as interrupted on resume)
    OK = "ok"  # trained to its end: the only status a re-run skips
    DIVERGED = "diverged"  # the loss became NaN or infinite
    FAILED = "failed"  # raised, or its worker died
    TIMEOUT = "timeout"  # stopped at train.timeout_seconds
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C or a lost cluster
    PRUNED = "pruned"  # stopped early by a search's pruner

    __str__ = str.__str__  # "ok" in f-strings and CSV cells, as the plain strings were
    __format__ = str.__format__  # type: ignore[assignment]


FINISHED = Status.OK  # the status whose trials a re-run skips
# A seed's run that a resumed search keeps (others run again): its result is what the study was told.
SEARCH_DONE = (Status.OK, Status.DIVERGED, Status.PRUNED)


class Form(str, Enum):
    """How a task trains its trials: one model, one stacked model, or branch sub-models of one model."""

    ISOLATED = "isolated"
    STACKED = "stacked"  # dense networks: weights with a branch axis, sub-stacks of one shape and optimizer
    BRANCHES = "branches"  # convolutional or augmented trials: a sub-model each, trained together

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]


@dataclass(frozen=True)
class Trial:
    """One model to train: its resolved settings and the seed it runs with."""

    trial_id: str
    config_id: str  # the same for every seed of one configuration
    seed: int
    settings: dict[str, Any]
    factors: dict[str, Any] = field(default_factory=dict)  # label of each setting that varies in the sweep


@dataclass(frozen=True)
class Task:
    """What one worker trains at once: a trial alone, or a group trained as one fused model.

    The form is decided once, where trials are grouped (`plan.grouping.make_tasks`).
    """

    trials: tuple[Trial, ...]
    form: Form = Form.ISOLATED

    @property
    def fused(self) -> bool:
        return self.form is not Form.ISOLATED

    def __iter__(self):
        return iter(self.trials)

    def __len__(self) -> int:
        return len(self.trials)


class Timing(TypedDict, total=False):
    fit_seconds: float  # inside model.fit; a fused trial's share of its group's
    seconds_per_epoch: float
    wall_seconds: float  # the whole trial: build, fit, evaluate
    group_seconds: float  # fused trials: the whole group's fit


class TrialResult(TypedDict, total=False):
    """What training one trial returns (`train.execute_trial`, `fused.execute_group`), or what an executor
    reports for a trial it lost (a dead worker or Ray task: status and error only).

    The runner writes `history`, `model_summary` and `model_file` to their own files and keeps the
    rest in the trial's record. Every key but `status` may be missing.
    """

    status: str  # a Status: ok | diverged | failed | timeout | pruned (| interrupted, from an executor)
    error: Optional[str]  # "ValueError: ..." when failed
    traceback: Optional[str]
    notes: list[str]
    versions: dict[str, str]  # python, keras, backend, ...
    device: str
    metrics: dict[str, Any]  # epochs_run, best_epoch, stopped_early, <split>_loss, <split>_accuracy
    params: dict[str, int]  # params, trainable_params, non_trainable_params
    timing: Timing
    history: list[dict[str, float]]  # history.csv's rows, one per epoch
    model_summary: str  # model.txt
    model_file: bytes  # model.keras, when the sweep keeps models
    execution: str  # fused (absent: isolated)
    group_id: str
    group_size: int
    fused_form: str  # stacked (one model, weights with a branch axis) | branches (branch sub-models)
    stacking: dict[str, int]  # a stacked group: {branches, substacks, seeds, xla} of its compiled model
    halt: str  # the machine has no room for what the trial wrote (its model): the driver stops the sweep


class TrialRecord(TrialResult, total=False):
    """A trial's trial.json: its identity and settings, where and when it ran, and its result."""

    trial_id: str
    config_id: str
    seed: int
    sweep: str
    settings: dict[str, Any]  # every resolved setting
    factors: dict[str, Any]  # the settings that vary in the sweep (the key is kept for older results)
    dataset: dict[str, Any]
    host: str
    worker: dict[str, Any]
    started_at: str
    finished_at: Optional[str]


# An executor's report to the driver: ("started", trial_id, info), ("epoch", trial_id, history row),
# ("done", trial_id, TrialResult). The driver answers an epoch with its pruning verdict (true: stop the trial).
Emit = Callable[[str, str, Any], Any]


class TaskQueue(Protocol):
    """The tasks an executor takes, one at a time, as workers free up; more may come while it runs (a race's
    next round, a search's next configurations), so `ready` is asked again after every event."""

    def ready(self) -> bool:
        """Whether a task can be taken now."""
        ...

    def take(self) -> Task:
        """The next task; only after `ready()` said there is one."""
        ...

    def expected(self) -> int:
        """How many tasks are known now, counting those a schedule will still plan: bounds the workers started."""
        ...


class ListQueue:
    """A fixed list of tasks as a TaskQueue: tests, notebooks and benchmarks hand executors one."""

    def __init__(self, tasks):
        self.tasks = list(tasks)

    def ready(self) -> bool:
        return bool(self.tasks)

    def take(self) -> Task:
        return self.tasks.pop(0)

    def expected(self) -> int:
        return len(self.tasks)


class Executor(Protocol):
    """Where trials run (execution/): in this process, in worker processes, or as Ray tasks.

    `run` trains the queue's tasks and reports every trial through `emit`; it never writes results.
    `stop` (the first Ctrl-C) lets running tasks finish and starts no more; `stopping` says it was called.
    """

    stopping: bool

    def run(self, queue: TaskQueue, data: Any, emit: Emit) -> None: ...

    def stop(self) -> None: ...


DEFAULT_MAX_BRANCHES = 64  # most trials in one fused model: past this a step's launch overhead is already shared
DEFAULT_STACK_MEMORY = 2 * 1024**3  # bytes one stacked model may need while training: fits any GPU and CPU here


@dataclass(frozen=True)
class Sizing:
    """How big one fused model may be (`--max-branches`, `--stack-memory`), and the data it is sized for."""

    max_branches: int = DEFAULT_MAX_BRANCHES
    stack_memory: int = DEFAULT_STACK_MEMORY
    n_train: int = 60_000  # training rows: the runner gives the loaded data's, --dry-run the config's
    input_dims: int = 784  # values per image (28 x 28)


@dataclass
class Run:
    """What a schedule is told as a sweep starts: the records kept so far and how tasks are formed."""

    records: dict[str, TrialRecord]  # the driver's own records, updated as trials finish
    force: bool = False  # --force: finished trials run again and count only when run again
    fuse: bool = True
    sizing: Sizing = field(default_factory=Sizing)
    jobs: int = 1
    executor: str = "auto"
    say: Callable[[str], None] = print  # a line for the user (progress.message)
    added: Callable[[int], None] = lambda count: None  # trials added after the start (a race's next round)
    write: Callable[[str, str], None] = lambda name, text: None  # a file in the sweep's directory, atomically


@dataclass
class Opening:
    """What a schedule answers at the start: the run's size and what to say before the first trial."""

    total: int  # trials a full run has at most
    todo: int  # trials to run now
    skipped: int  # trials kept from before
    messages: list[str] = field(default_factory=list)


@dataclass
class Ending:
    """What a schedule answers at the end: lines before and after the best model is named, report fields."""

    messages: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)  # SweepReport fields it fills (a race: race.json)


class Schedule(Protocol):
    """What a sweep trains and when it is done: the grid, a race over seeds, a search (Keras Tuner's Oracle).

    The driver calls `open` before it reads the results (a search adds the trials its study asked
    before), `remember_dataset` once the results are checked against the data, `start` once, `next_tasks`
    whenever its queue runs dry (an empty list: nothing more now), `finished` for every trial that
    ends, `prune` after every epoch and `end` once the executor returns. It never asks which
    schedule it drives.
    """

    trials: list[Trial]  # every trial known so far, in order (a search adds those its study asks)
    factors: list[str]  # the settings that vary (summary.csv's setting columns)
    prunes: bool  # whether `prune` can stop a trial (workers then wait for a verdict after each epoch)
    retrain: str  # what --force does, for the message that refuses to resume on other data

    def open(self, force: bool) -> None: ...

    def state_files(self) -> list[Path]: ...  # files of its own in the results directory (a search's study)

    def recorded_dataset(self) -> Optional[dict]: ...  # the data its own stored state was made on, if any

    def remember_dataset(self, info: dict) -> None: ...

    def start(self, run: Run) -> Opening: ...

    def next_tasks(self) -> list[Task]: ...

    def expected(self) -> int: ...

    def finished(self, trial: Trial, record: TrialRecord) -> None: ...

    def prune(self, trial: Trial, histories: dict[str, list[dict]]) -> bool: ...

    def end(self) -> Ending: ...
