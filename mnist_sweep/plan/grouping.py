"""Which trials train together, and how: the pure planning half of fused training (no Keras).

Compatible trials (same seed, batch size, epochs and optimizer) are grouped; dense networks of one
shape stack (one model whose weights carry a branch axis), the rest train as branch sub-models.
Each group becomes a `Task` whose form is decided here, once; `training.fused` trains it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional, Sequence

from ..records import Form, Task, Trial

DEFAULT_MAX_BRANCHES = 16
# What keeps a trial out of a stack (it trains as a branch sub-model instead).
FALLBACK_REASONS = {"cnn": "convolutional layers", "augment": "data augmentation"}


def fallback_reason(settings: dict[str, Any]) -> Optional[str]:
    """Why a trial cannot be stacked (and trains as a branch sub-model instead), or None."""
    if (settings.get("type") or "mlp") == "cnn":
        return FALLBACK_REASONS["cnn"]
    if settings.get("augment"):
        return FALLBACK_REASONS["augment"]
    return None


def stack_key(settings: dict[str, Any]) -> tuple:
    """Trials with equal keys have equal weight shapes and see the same inputs."""
    return tuple(settings["hidden"]), bool(settings.get("normalize"))


def optimizer_key(optimizer: dict[str, Any], stackable: bool) -> str:
    """What must agree between the optimizers of one group.

    SGD's update is its learning rate times the gradient (momentum is linear in it too), so a
    stacked branch gets its own learning rate by scaling its share of the loss: stacked SGD
    branches may differ in `learning_rate`. Every other optimizer, and branch sub-models, must agree.
    """
    if stackable and optimizer.get("name") == "sgd":
        optimizer = {k: v for k, v in optimizer.items() if k != "learning_rate"}
    return json.dumps(optimizer, sort_keys=True)


def _balanced_chunks(members: list[Trial], max_branches: int) -> list[list[Trial]]:
    """Near-equal chunks of at most `max_branches`: 17 trials make 9 + 8, not 16 + 1."""
    count = -(-len(members) // max_branches)
    size, extra = divmod(len(members), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (i < extra)
        out.append(members[start:end])
        start = end
    return out


def group_trials(trials: list[Trial], max_branches: int = DEFAULT_MAX_BRANCHES) -> list[list[Trial]]:
    """Split trials into groups that can be fused: same seed, batch size, epochs and optimizer
    (stacked SGD branches may differ in learning rate, see `optimizer_key`).

    Within those, dense networks of one shape form stacked groups; the rest (other shapes left
    alone, convolutional or augmented networks) form groups of branch sub-models.
    """
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        key = json.dumps([trial.seed, trial.settings["batch_size"], trial.settings["epochs"],
                          optimizer_key(trial.settings["optimizer"], stackable=True)])
        groups.setdefault(key, []).append(trial)
    chunks = []
    for members in groups.values():
        stacks: dict[tuple, list[Trial]] = {}
        rest = []
        for trial in members:
            if fallback_reason(trial.settings) is None:
                stacks.setdefault(stack_key(trial.settings), []).append(trial)
            else:
                rest.append(trial)
        for stack in stacks.values():
            if len(stack) > 1:
                chunks.extend(_balanced_chunks(stack, max_branches))
            else:
                rest.extend(stack)
        by_optimizer: dict[str, list[Trial]] = {}  # branch sub-models share one optimizer exactly
        for trial in rest:
            by_optimizer.setdefault(optimizer_key(trial.settings["optimizer"], stackable=False), []).append(trial)
        for same in by_optimizer.values():
            chunks.extend(_balanced_chunks(same, max_branches))
    return chunks


def group_form(trials: Sequence[Trial]) -> Form:
    """How a group trains: STACKED (one stacked model) or BRANCHES (branch sub-models)."""
    if all(fallback_reason(t.settings) is None for t in trials) and \
            len({stack_key(t.settings) for t in trials}) == 1:
        return Form.STACKED
    return Form.BRANCHES


def make_tasks(trials: list[Trial], fuse: bool, max_branches: int = DEFAULT_MAX_BRANCHES) -> list[Task]:
    """The tasks that train `trials`: fused groups (`fuse`) or one task per trial, each with its form."""
    groups = group_trials(trials, max_branches) if fuse else [[t] for t in trials]
    return [as_task(group) for group in groups]


def as_task(trials: Sequence[Trial] | Task) -> Task:
    """A group of trials as a task: a trial alone is ISOLATED, a group takes the form `group_form` gives it."""
    if isinstance(trials, Task):
        return trials
    return Task(tuple(trials), Form.ISOLATED if len(trials) == 1 else group_form(trials))


def describe_groups(tasks: Sequence[Task | Sequence[Trial]]) -> str:
    """How the trials were grouped, for the run's output."""
    formed = [as_task(t) for t in tasks]
    stacked = [t for t in formed if t.form is Form.STACKED]
    branches = [t for t in formed if t.form is Form.BRANCHES]
    alone = sum(1 for t in formed if t.form is Form.ISOLATED)
    parts = []
    if stacked:
        sizes = sorted({len(t.trials) for t in stacked})
        parts.append(f"{sum(len(t.trials) for t in stacked)} trial(s) in {len(stacked)} stacked group(s) "
                     f"({'/'.join(map(str, sizes))} branches: one batched matmul per layer)")
    if branches:
        reasons = sorted({fallback_reason(x.settings) or "layer shapes differ" for t in branches for x in t.trials})
        parts.append(f"{sum(len(t.trials) for t in branches)} trial(s) in {len(branches)} group(s) of branch "
                     f"sub-models ({', '.join(reasons)})")
    if alone:
        parts.append(f"{alone} trial(s) isolated (nothing to fuse them with)")
    return "fused: " + "; ".join(parts)


def group_id(trials: Sequence[Trial]) -> str:
    return "g-" + hashlib.sha256("|".join(t.trial_id for t in trials).encode()).hexdigest()[:8]


def substack_key(settings: dict[str, Any]) -> tuple:
    """Branches with equal keys form one sub-stack of a stacked model: one shape, inputs and optimizer family."""
    return tuple(settings["hidden"]), bool(settings.get("normalize")), settings["optimizer"]["name"]
