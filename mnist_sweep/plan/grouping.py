"""Which trials train together, and how: the pure planning half of fused training (no Keras).

Dense trials (no augmentation) that share a batch size and an epoch count train as ONE stacked model,
whatever their seeds, optimizers, hidden shapes and `normalize`; inside it, the branches of one shape,
`normalize` and optimizer form a sub-stack (`substack_key`). One model holds at most `max_branches`
branches and needs at most `stack_memory` bytes (`stack_bytes`): a bigger group is split, by whole
sub-stacks where it can be, into chunks of near-equal size. Convolutional and augmented trials that
share a seed, batch size, epochs and optimizer train as branch sub-models of one model. A trial with no
partner, or too big for the memory limit alone, trains as a plain Keras model. Each group becomes a
`Task` whose form is decided here, once; `training/` trains it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..records import DEFAULT_MAX_BRANCHES, DEFAULT_STACK_MEMORY, Form, Sizing, Task, Trial

__all__ = ["DEFAULT_MAX_BRANCHES", "DEFAULT_STACK_MEMORY", "FALLBACK_REASONS", "Sizing", "as_task",
           "describe_groups", "describe_plan", "fallback_reason", "format_size", "group_form", "group_id",
           "group_trials", "make_tasks", "optimizer_key", "parse_size", "stack_bytes", "substack_key"]

# What keeps a trial out of a stack (it trains as a branch sub-model instead).
FALLBACK_REASONS = {"cnn": "convolutional layers", "augment": "data augmentation"}
NUM_CLASSES = 10
FLOAT_BYTES = 4  # float32 weights, activations and inputs
INDEX_BYTES = 8  # int64 row indices of a branch's own shuffle
EVAL_ROWS = 1024  # rows the stacked model evaluates at once
# Per-weight state each optimizer keeps (Keras 3), counted high: SGD's momentum and RMSprop's are counted
# even when off. An optimizer not listed here is counted as 3.
OPTIMIZER_SLOTS = {"sgd": 1, "rmsprop": 2, "adagrad": 1, "adadelta": 2, "adam": 2, "adamw": 2, "nadam": 2}
# Float32 values a training step keeps per hidden unit and row: the Dense output, batch normalization's,
# the activation's, dropout's mask and output, and the gradient of about as many on the way back.
TRAIN_COPIES = 8
EVAL_COPIES = 2  # evaluating keeps a layer's input and output only
INPUT_COPIES = 2  # a branch's gathered input batch, and its normalized copy


def fallback_reason(settings: dict[str, Any]) -> Optional[str]:
    """Why a trial cannot be stacked (and trains as a branch sub-model instead), or None."""
    if (settings.get("type") or "mlp") == "cnn":
        return FALLBACK_REASONS["cnn"]
    if settings.get("augment"):
        return FALLBACK_REASONS["augment"]
    return None


def substack_key(settings: dict[str, Any]) -> tuple:
    """The sub-stack a stacked branch belongs to: branches with equal keys have equal weight shapes, see
    the same inputs and update with one optimizer family (their hyperparameters may differ)."""
    return tuple(settings["hidden"]), bool(settings.get("normalize")), settings["optimizer"]["name"]


def optimizer_key(optimizer: dict[str, Any]) -> str:
    """What must agree between the optimizers of one group of branch sub-models: all of it."""
    return json.dumps(optimizer, sort_keys=True)


# ---------------------------------------------------------------- sizing


def _widths(settings: dict[str, Any], input_dims: int) -> list[int]:
    return [input_dims, *settings["hidden"], NUM_CLASSES]


def _branch_params(settings: dict[str, Any], input_dims: int) -> int:
    """Weights of one dense branch: kernels and biases, plus 4 per unit batch normalization adds."""
    widths = _widths(settings, input_dims)
    params = sum(a * b + b for a, b in zip(widths, widths[1:]))
    if settings.get("batch_norm") is True:
        params += 4 * sum(settings["hidden"])
    elif settings.get("batch_norm") == "input":
        params += 4 * input_dims
    return params


def _own_bytes(settings: dict[str, Any], input_dims: int) -> int:
    """What one branch alone adds: weights, gradients and optimizer slots; a training batch's activations
    forward and back; an evaluation chunk's activations."""
    slots = OPTIMIZER_SLOTS.get(settings["optimizer"]["name"], 3)
    units = sum(settings["hidden"]) + NUM_CLASSES + (input_dims if settings.get("batch_norm") == "input" else 0)
    return FLOAT_BYTES * (_branch_params(settings, input_dims) * (2 + slots)
                          + settings["batch_size"] * units * TRAIN_COPIES + EVAL_ROWS * units * EVAL_COPIES)


def _input_bytes(settings: dict[str, Any], n_train: int, input_dims: int) -> int:
    """A branch's input batch and its shuffle's row indices: once for the model when every branch has one
    seed (they share the batch), once per branch when seeds differ."""
    return FLOAT_BYTES * settings["batch_size"] * input_dims * INPUT_COPIES + INDEX_BYTES * n_train


@dataclass(frozen=True)
class _Load:
    """A chunk's size as it is filled: `stack_bytes`' sums, so adding a trial costs O(1)."""

    count: int = 0
    own: int = 0
    inputs: int = 0  # summed over branches
    widest: int = 0  # the largest branch input, for a chunk of one seed
    seeds: frozenset = frozenset()

    def __add__(self, other: _Load) -> _Load:
        return _Load(self.count + other.count, self.own + other.own, self.inputs + other.inputs,
                     max(self.widest, other.widest), self.seeds | other.seeds)

    def bytes(self, input_dims: int) -> int:
        inputs = self.inputs if len(self.seeds) > 1 else self.widest
        return self.own + inputs + FLOAT_BYTES * EVAL_ROWS * input_dims


def _load(trials: Sequence[Trial], n_train: int, input_dims: int) -> _Load:
    total = _Load()
    for t in trials:
        inputs = _input_bytes(t.settings, n_train, input_dims)
        total += _Load(1, _own_bytes(t.settings, input_dims), inputs, inputs, frozenset([t.seed]))
    return total


def stack_bytes(trials: Sequence[Trial], n_train: int, input_dims: int) -> int:
    """Bytes one stacked model of these dense trials needs while training, estimated high (float32 = 4 B).

    Per branch, with P its weights (kernels, biases, 4 per batch-normalized unit), S its optimizer's
    slots per weight (`OPTIMIZER_SLOTS`), B its batch size and U its units (hidden + 10 outputs):
        4 * (P * (2 + S)                   weights, gradients, optimizer slots
             + B * U * 8                   the batch's activations, forward and back (`TRAIN_COPIES`)
             + 1024 * U * 2)               an evaluation chunk's activations
    plus its input, counted per branch when seeds differ (each branch gathers its own batch) and once
    when they agree:
        4 * B * input_dims * 2 + 8 * n_train   the gathered batch and its normalized copy; the shuffle
    plus, once, the evaluation chunk's rows: 4 * 1024 * input_dims. The training data itself is shared by
    every model and not counted, nor is the framework's own workspace (the copies above are counted high).
    """
    return _load(trials, n_train, input_dims).bytes(input_dims)


def format_size(size: int) -> str:
    """Bytes as the user writes them: 2147483648 -> '2 GiB', 1610612736 -> '1.5 GiB'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size in bytes from '2GiB', '512MiB', '1.5G' (K, M, G, T: binary) or '2GB' (KB, MB, GB, TB:
    decimal) or plain bytes ('1000000'); ValueError naming the text otherwise."""
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a size; give bytes or a number with a unit, e.g. 2GiB, 512MiB, 1.5G")
    number, prefix, binary, b = match.groups()
    power = "kmgt".index(prefix.lower()) + 1 if prefix else 0
    if binary and not prefix:
        raise ValueError(f"{text!r} is not a size; give bytes or a number with a unit, e.g. 2GiB, 512MiB, 1.5G")
    base = 1000 if (b and not binary and prefix) else 1024
    size = int(float(number) * base**power)
    if size < 1:
        raise ValueError(f"{text!r} is less than one byte; give a size such as 2GiB")
    return size


# ---------------------------------------------------------------- grouping


def _split(members: list[Trial], count: int) -> list[list[Trial]]:
    """`members` in `count` near-equal runs, in order: 17 in 2 make 9 + 8."""
    size, extra = divmod(len(members), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (i < extra)
        out.append(members[start:end])
        start = end
    return out


def _balanced_chunks(members: list[Trial], max_branches: int) -> list[list[Trial]]:
    """Near-equal chunks of at most `max_branches`: 17 trials make 9 + 8, not 16 + 1."""
    return _split(members, -(-len(members) // max_branches))


class _Stacker:
    """Splits one batch size's and epoch count's dense trials into stacked models that fit `sizing`."""

    def __init__(self, sizing: Sizing):
        self.sizing = sizing

    def load(self, trials: Sequence[Trial]) -> _Load:
        return _load(trials, self.sizing.n_train, self.sizing.input_dims)

    def fits(self, load: _Load, cap: Optional[int] = None) -> bool:
        return (load.count <= min(cap or self.sizing.max_branches, self.sizing.max_branches)
                and load.bytes(self.sizing.input_dims) <= self.sizing.stack_memory)

    def chunks(self, members: list[Trial]) -> list[list[Trial]]:
        """The fewest models that fit, as even as they can be, holding whole sub-stacks where that needs no
        more models (a sub-stack too big for one model is cut into near-equal pieces first). A trial too big
        alone trains alone."""
        alone = [[t] for t in members if not self.fits(self.load([t]))]
        rest = sorted((t for t in members if self.fits(self.load([t]))), key=lambda t: substack_key(t.settings))
        if len(rest) <= 1 or self.fits(self.load(rest)):
            return ([rest] if rest else []) + alone
        whole: list[list[Trial]] = []
        for _, same in itertools.groupby(rest, key=lambda t: substack_key(t.settings)):
            whole.extend(self.pieces(list(same)))
        single = [[t] for t in rest]
        fewest = len(self.pack(single, [self.load(u) for u in single], self.sizing.max_branches))
        units = whole if len(self.pack(whole, [self.load(u) for u in whole], self.sizing.max_branches)) == fewest \
            else single
        return self.even(units, fewest) + alone

    def even(self, units: list[list[Trial]], count: int) -> list[list[Trial]]:
        """`units` packed in order into `count` chunks (as few as they pack into), as even as they fit:
        each chunk aims at its share of what is left (30 in 4: 8, 8, 7, 7); where memory upsets that, the
        packing whose largest chunk is smallest."""
        loads = [self.load(u) for u in units]
        chunks: list[list[Trial]] = []
        current, target, left = _Load(), 0, sum(len(u) for u in units)
        for unit, load in zip(units, loads):
            if chunks and current.count + load.count <= target and self.fits(current + load):
                chunks[-1] = chunks[-1] + unit
                current = current + load
            else:
                target = -(-left // max(count - len(chunks), 1))
                chunks.append(list(unit))
                current = load
            left -= load.count
        if len(chunks) <= count:
            return chunks
        low, high = max(len(u) for u in units), self.sizing.max_branches
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if len(self.pack(units, loads, mid)) <= count else (mid + 1, high)
        return self.pack(units, loads, low)

    def pieces(self, same: list[Trial]) -> list[list[Trial]]:
        """One sub-stack in the fewest near-equal pieces that each fit (each trial alone fits)."""
        for count in range(-(-len(same) // self.sizing.max_branches), len(same) + 1):
            pieces = _split(same, count)
            if all(self.fits(self.load(p)) for p in pieces):
                return pieces
        raise AssertionError("unreachable: every trial fits alone")

    def pack(self, units: list[list[Trial]], loads: list[_Load], cap: int) -> list[list[Trial]]:
        """Units in order, each added to the current chunk while it fits with at most `cap` trials."""
        chunks: list[list[Trial]] = []
        current = _Load()
        for unit, load in zip(units, loads):
            if chunks and self.fits(current + load, cap):
                chunks[-1] = chunks[-1] + unit
                current = current + load
            else:
                chunks.append(list(unit))
                current = load
        return chunks


def _stackable(trial: Trial) -> bool:
    return fallback_reason(trial.settings) is None


def group_trials(trials: list[Trial], sizing: Sizing = Sizing()) -> list[list[Trial]]:
    """Split trials into groups that train as one model each.

    Dense trials group by batch size and epochs alone, split to fit `sizing` (`_Stacker`); convolutional
    and augmented ones by seed, batch size, epochs and the exact optimizer, in near-equal chunks of at
    most `max_branches`. Groups come in the order of their first trial.
    """
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        s = trial.settings
        key = [s["batch_size"], s["epochs"]] if _stackable(trial) else \
            [trial.seed, s["batch_size"], s["epochs"], optimizer_key(s["optimizer"])]
        groups.setdefault(json.dumps([_stackable(trial), *key]), []).append(trial)
    stacker = _Stacker(sizing)
    chunks = []
    for members in groups.values():
        if _stackable(members[0]):
            chunks.extend(stacker.chunks(members))
        else:
            chunks.extend(_balanced_chunks(members, sizing.max_branches))
    return chunks


def group_form(trials: Sequence[Trial]) -> Form:
    """How a group trains: STACKED (one stacked model of dense trials) or BRANCHES (branch sub-models)."""
    return Form.STACKED if all(_stackable(t) for t in trials) else Form.BRANCHES


def make_tasks(trials: list[Trial], fuse: bool, sizing: Sizing = Sizing()) -> list[Task]:
    """The tasks that train `trials`: fused groups (`fuse`) or one task per trial, each with its form."""
    groups = group_trials(trials, sizing) if fuse else [[t] for t in trials]
    return [as_task(group) for group in groups]


def as_task(trials: Sequence[Trial] | Task) -> Task:
    """A group of trials as a task: a trial alone is ISOLATED, a group takes the form `group_form` gives it."""
    if isinstance(trials, Task):
        return trials
    return Task(tuple(trials), Form.ISOLATED if len(trials) == 1 else group_form(trials))


# ---------------------------------------------------------------- describing


def _n(count: int, word: str) -> str:
    """'1 trial', '2 trials', '2 branches'."""
    return f"{count} {word}" if count == 1 else f"{count} {'branches' if word == 'branch' else word + 's'}"


def _why_split(trials: list[Trial], sizing: Sizing) -> list[str]:
    """The limits one batch size's and epochs' dense trials exceed together (none: one model holds them)."""
    stacker = _Stacker(sizing)
    fitting = [t for t in trials if stacker.fits(stacker.load([t]))]
    if len(fitting) <= 1:
        return []
    limits = []
    if len(fitting) > sizing.max_branches:
        limits.append(f"{sizing.max_branches} --max-branches")
    if stacker.load(fitting).bytes(sizing.input_dims) > sizing.stack_memory:
        limits.append(f"{format_size(sizing.stack_memory)} --stack-memory")
    return limits


def _pair(trial: Trial) -> tuple:
    return trial.settings["batch_size"], trial.settings["epochs"]


def _stacked_line(stacked: list[Task], by_pair: dict[tuple, list[Trial]], sizing: Sizing) -> str:
    trials = [t for task in stacked for t in task.trials]
    ids = {t.trial_id for t in trials}
    stacks = sum(len({substack_key(t.settings) for t in task.trials}) for task in stacked)
    details = [_n(len({t.seed for t in trials}), "seed"),
               _n(len({t.settings["optimizer"]["name"] for t in trials}), "optimizer"),
               _n(len({tuple(t.settings["hidden"]) for t in trials}), "shape")]
    if len({bool(t.settings.get("normalize")) for t in trials}) > 1:
        details.append("normalize on and off")
    pairs = {_pair(t) for t in trials}
    apart = [_n(count, word) for count, word in ((len({p[0] for p in pairs}), "batch size"),
                                                  (len({p[1] for p in pairs}), "epoch count")) if count > 1]
    line = (f"{_n(len(trials), 'trial')} in {_n(len(stacked), 'compiled model')}: "
            f"{_n(len(trials), 'branch')} in {_n(stacks, 'stack')} ({', '.join(details)}"
            + (f"; {' and '.join(apart)}, trained apart" if apart else "") + ")")
    splits = {pair: limits for pair, members in by_pair.items() if (limits := _why_split(members, sizing))}
    if len(splits) == 1:
        (pair, limits), = splits.items()
        models = sum(1 for task in stacked if _pair(task.trials[0]) == pair)
        lone = sum(1 for t in by_pair[pair] if t.trial_id not in ids)
        line += f" (split in {models + lone}: {' and '.join(limits)})"
    elif splits:
        line += f" (split: {' and '.join(sorted({limit for found in splits.values() for limit in found}))})"
    return line


def _isolated_reason(trial: Trial, by_pair: dict[tuple, list[Trial]], sizing: Sizing) -> tuple[str, ...]:
    """Why a trial trains alone, as a key `_render_reason` words."""
    reason = fallback_reason(trial.settings)
    if reason is not None:
        return "fallback", reason
    stacker = _Stacker(sizing)
    if not stacker.fits(stacker.load([trial])):
        return ("too big",)
    partners = [t for t in by_pair[_pair(trial)] if t is not trial]
    if not any(stacker.fits(stacker.load([t])) for t in partners):
        return "no partner", str(trial.settings["batch_size"]), str(trial.settings["epochs"]), \
            "too big" if partners else ""
    return "split", " and ".join(_why_split(by_pair[_pair(trial)], sizing))


def _render_reason(reason: tuple[str, ...], count: int, sizing: Sizing) -> str:
    their = "its" if count == 1 else "their"
    if reason[0] == "fallback":
        return f"{reason[1]}, and no other such trial with {their} seed, batch size, epochs and optimizer"
    if reason[0] == "too big":
        return f"{'it needs' if count == 1 else 'each needs'} more than {format_size(sizing.stack_memory)} " \
               "--stack-memory alone"
    if reason[0] == "no partner":
        which = f"{their} batch size and epochs" if count > 1 else \
            f"batch size {reason[1]} and {_n(int(reason[2]), 'epoch')}"
        return f"no other trial with {which}" + (" small enough to share a model" if reason[3] else "")
    return f"alone after the split at {reason[1]}"


def describe_groups(tasks: Sequence[Task | Sequence[Trial]], sizing: Sizing = Sizing()) -> list[str]:
    """The plan as the user reads it: what trains as stacked models, what as branch sub-models, what alone
    and why; a line each."""
    formed = [as_task(t) for t in tasks]
    stacked = [t for t in formed if t.form is Form.STACKED]
    branches = [t for t in formed if t.form is Form.BRANCHES]
    alone = [t.trials[0] for t in formed if t.form is Form.ISOLATED]
    by_pair: dict[tuple, list[Trial]] = {}
    for task in formed:
        for trial in task.trials:
            if _stackable(trial):
                by_pair.setdefault(_pair(trial), []).append(trial)
    lines = []
    if stacked:
        lines.append(_stacked_line(stacked, by_pair, sizing))
    if branches:
        count = sum(len(t.trials) for t in branches)
        kept_out = sorted({fallback_reason(x.settings) or "" for t in branches for x in t.trials} - {""})
        lines.append(f"{_n(count, 'trial')} as branch sub-models of {_n(len(branches), 'compiled model')} "
                     f"({', '.join(kept_out)})")
    if alone:
        reasons = Counter(_isolated_reason(t, by_pair, sizing) for t in alone)
        why = [_render_reason(reason, n, sizing) for reason, n in reasons.items()]
        if len(why) > 1:
            why = [f"{n}: {text}" for n, text in zip(reasons.values(), why)]
        lines.append(f"{_n(len(alone), 'trial')} isolated ({'; '.join(why)})")
    return lines


def describe_plan(tasks: Sequence[Task], fuse: bool, sizing: Sizing = Sizing()) -> list[str]:
    """What the run says about how its tasks are formed, before training (and `--dry-run`)."""
    if not tasks:
        return []
    if not fuse:
        count = sum(len(t.trials) for t in tasks)
        return [f"isolated: {count} trial(s), each its own model (execution: isolated)"]
    return describe_groups(tasks, sizing)


def group_id(trials: Sequence[Trial]) -> str:
    return "g-" + hashlib.sha256("|".join(t.trial_id for t in trials).encode()).hexdigest()[:8]
