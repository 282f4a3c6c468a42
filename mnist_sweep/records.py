"""The records that cross module boundaries, in one place: what training returns for a trial, what the
results directory keeps of it, and what an executor must do.

    train.py / fused.py --TrialResult--> executors.py --("done", id, TrialResult)--> runner.py
    runner.py --TrialRecord--> store.py (runs/<trial_id>/trial.json, a row of summary.csv)

Results and records are TypedDicts, so they stay plain dicts: they pickle to worker processes and Ray
tasks unchanged, and trial.json is their JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypedDict

if TYPE_CHECKING:  # only for annotations: reading results must not load the config schema
    from .grid import Trial


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

    status: str  # ok | diverged | failed | timeout (see store.FINISHED)
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


Task = list["Trial"]  # one trial, or a group trained as one fused model
# An executor's report to the driver: ("started", trial_id, info), ("epoch", trial_id, history row),
# ("done", trial_id, TrialResult).
Emit = Callable[[str, str, Any], None]


class Executor(Protocol):
    """Where trials run (executors.py): in this process, in worker processes, or as Ray tasks.

    `run` trains the tasks and reports every trial through `emit`; it never writes results. `stop`
    (the first Ctrl-C) lets running tasks finish and starts no more; `stopping` says it was called.
    """

    stopping: bool

    def run(self, tasks: list[Task], data: Any, emit: Emit) -> None: ...

    def stop(self) -> None: ...
