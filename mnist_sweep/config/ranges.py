"""Ranges as axes (`dropout: {low: 0, high: 0.5}`) and the `search:` / `prune:` sections of a config.

A range is taken out of the raw YAML before the schema sees it: the schema validates the rest
with the range's `low` in its place, and `SweepConfig.ranges` keeps each range under its key path
(`model.dropout`, `model.hidden.0`, `optimizer.0.learning_rate`). Only `search/` samples them.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..errors import did_you_mean
from .settings import RANGE_SETTINGS, not_a_switch

SAMPLED_METHODS = ("random", "qmc", "tpe")
METHODS = ("grid", *SAMPLED_METHODS)
PRUNERS = ("median", "successive_halving", "hyperband")


Number = Annotated[Union[int, float], BeforeValidator(not_a_switch)]  # ints stay ints: widths, batch sizes
Count = Annotated[int, BeforeValidator(not_a_switch)]

RANGE_KEYS = ("low", "high", "log", "step")


class Range(BaseModel):
    """A setting's interval: sampled on a log scale with `log`, on a grid of `step` with `step`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: Number
    high: Number
    log: bool = False
    step: Optional[Number] = None


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # grid: every combination (the default). random / qmc (Sobol) / tpe (Bayesian): `trials` of them.
    method: Literal[METHODS] = "grid"  # type: ignore[valid-type]
    trials: Optional[Annotated[Count, Field(gt=0)]] = None  # configurations to sample, each run once per seed
    # The sampler's seed: the same configurations on any machine. numpy's samplers take 32 bits.
    seed: Annotated[Count, Field(ge=0, le=2**32 - 1)] = 0
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"  # what tpe and the pruners optimize


class PruneConfig(BaseModel):
    """Optuna's pruners, fed every epoch's validation metric. Unset keys keep Optuna's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal[PRUNERS]  # type: ignore[valid-type]
    n_startup_trials: Optional[Annotated[Count, Field(ge=0)]] = None  # median
    n_warmup_steps: Optional[Annotated[Count, Field(ge=0)]] = None  # median: epochs before it prunes
    min_resource: Optional[Annotated[Count, Field(gt=0)]] = None  # successive_halving, hyperband: epochs
    reduction_factor: Optional[Annotated[Count, Field(ge=2)]] = None  # successive_halving, hyperband
    max_resource: Optional[Annotated[Count, Field(gt=0)]] = None  # hyperband; default: train.epochs


PRUNE_KEYS = {"median": {"n_startup_trials", "n_warmup_steps"},
              "successive_halving": {"min_resource", "reduction_factor"},
              "hyperband": {"min_resource", "reduction_factor", "max_resource"}}


def is_range(value: Any) -> bool:
    """A mapping that names `low` or `high`: written as a range, right or wrong."""
    return isinstance(value, dict) and ("low" in value or "high" in value)


def _numbers(spec: dict) -> dict:
    """YAML reads `1e-5` (no dot) as text: read such bounds as the numbers they are."""
    def number(value):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value
    return {k: number(v) if k in ("low", "high", "step") else v for k, v in spec.items()}


def _range_problems(path: str, kind: str, spec: dict) -> list[str]:
    """Problems with one range at `path` whose setting is of `kind` (a `settings.RANGE_SETTINGS` key)."""
    unknown = [k for k in spec if k not in RANGE_KEYS]
    problems = [f"{path}.{k}: unknown key{did_you_mean(k, RANGE_KEYS)}; a range takes {', '.join(RANGE_KEYS)}"
                for k in unknown]
    missing = [k for k in ("low", "high") if k not in spec and not unknown]  # a misspelt key says it better
    problems += [f"{path}: a range needs both low and high (missing {k})" for k in missing]
    if problems:
        return problems
    whole, lo, lo_ok, hi, hi_ok = RANGE_SETTINGS[kind]
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is None and key == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}.{key}: expected {'a whole number' if whole else 'a number'} (got {value!r})")
        elif not math.isfinite(value):  # .nan passes every comparison below, and Optuna's sampler then crashes
            problems.append(f"{path}.{key}: expected a finite number (got {value!r})")
        elif whole and not float(value).is_integer():
            problems.append(f"{path}.{key}: expected a whole number (got {value!r})")
    if not isinstance(log, bool):
        problems.append(f"{path}.log: expected true or false (got {log!r})")
    if problems:
        return problems
    for key, value in (("low", low), ("high", high)):
        if value < lo or value == lo and not lo_ok or value > hi or value == hi and not hi_ok:
            interval = f"{'[' if lo_ok else '('}{lo:g}, {hi:g}{']' if hi_ok else ')'}"
            problems.append(f"{path}.{key}: {kind.split('.')[-1]} must lie in {interval} (got {value!r})")
    if low > high:
        problems.append(f"{path}: low ({low!r}) is above high ({high!r}); swap them")
    if log and low <= 0:
        problems.append(f"{path}: a log range needs low > 0 (got low {low!r}); use a small positive low "
                        "such as 1e-6, or drop log: true")
    if step is not None and step <= 0:
        problems.append(f"{path}.step: must be above 0 (got {step!r})")
    if step is not None and log:
        problems.append(f"{path}: log and step cannot be combined (Optuna samples either a log scale or a grid "
                        "of steps); drop one")
    return problems


def _range_paths(raw: dict) -> list[tuple[tuple, str | None, Any]]:
    """Every range-like mapping in a raw config: (key path, its RANGE_SETTINGS kind or None, the mapping)."""
    found: list[tuple[tuple, str | None, Any]] = []
    for section in ("model", "train"):
        block = raw.get(section)
        for key, value in (block.items() if isinstance(block, dict) else []):
            kind = f"{section}.{key}"
            if is_range(value):
                found.append(((section, key), kind if kind in RANGE_SETTINGS and key != "hidden" else None, value))
            elif key == "hidden" and isinstance(value, list):
                found += [((section, key, i), kind, v) for i, v in enumerate(value) if is_range(v)]
            elif isinstance(value, list):  # a range inside a list of values: an axis takes one or the other
                found += [((section, key, i), None, v) for i, v in enumerate(value) if is_range(v)]
    optimizers = raw.get("optimizer")
    for i, opt in enumerate(optimizers if isinstance(optimizers, list) else [optimizers]):
        for key, value in (opt.items() if isinstance(opt, dict) else []):
            if is_range(value):
                kind = f"optimizer.{key}"
                path = ("optimizer", i, key) if isinstance(optimizers, list) else ("optimizer", key)
                found.append((path, kind if kind in RANGE_SETTINGS else None, value))
    for key, value in raw.items():
        if key not in ("model", "train", "optimizer") and is_range(value):
            found.append(((key,), None, value))
    return found


def dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def take_ranges(raw: Any) -> tuple[Any, dict[str, Range], list[str]]:
    """Split a raw config into (the config with each range's low in its place, the ranges, problems)."""
    if not isinstance(raw, dict):
        return raw, {}, []
    raw = copy.deepcopy(raw)
    ranges: dict[str, Range] = {}
    problems: list[str] = []
    takers = ", ".join(sorted({k.split(".")[-1] for k in RANGE_SETTINGS}))
    for path, kind, spec in reversed(_range_paths(raw)):  # from the last, so list indexes stay valid
        where = dotted(path)
        spec = _numbers(spec)
        node = raw
        for part in path[:-1]:
            node = node[part]
        found = [f"{where}: {path[-1] if isinstance(path[-1], str) else dotted(path[:-1])} cannot take "
                 f"a range (low/high); settings that can: {takers} (hidden: per layer, such as "
                 "[{low: 32, high: 512, step: 32}]; inside a list of values, write values only)"] \
            if kind is None else _range_problems(where, kind, spec)
        if found:  # reported here; the schema sees the setting's default instead
            problems = found + problems
            if isinstance(node, dict):
                del node[path[-1]]
            elif path[1] == "hidden":
                node[path[-1]] = 1
            else:
                node.pop(path[-1])
            continue
        # Kept under one spelling: `optimizer: {...}` is the axis `optimizer: [{...}]`.
        ranges[dotted(path) if len(path) != 2 or path[0] != "optimizer" else f"optimizer.0.{path[1]}"] = Range(**spec)
        node[path[-1]] = spec["low"] if not RANGE_SETTINGS[kind][0] else int(spec["low"])
    return raw, dict(reversed(ranges.items())), problems


def put_ranges(data: dict, ranges: dict[str, Range]) -> dict:
    """The dumped config with each range back under its key path (sweep.yaml must validate again as it is)."""
    data = copy.deepcopy(data)
    for where, spec in ranges.items():
        parts = [int(p) if p.isdigit() else p for p in where.split(".")]
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        if parts[:2] == ["model", "hidden"] and isinstance(node[0], list):
            node = data["model"]["hidden"] = node[0]  # stored as an axis of one architecture: write the architecture
        node[parts[-1]] = spec.model_dump(exclude_none=True, exclude_defaults=False)
        if not node[parts[-1]].get("log"):
            node[parts[-1]].pop("log", None)
    return data


def search_problems(search: SearchConfig, prune: Optional[PruneConfig], ranges: dict[str, Range],
                    selectors: bool, validation_split: float, seeds: int, raced: bool, max_trials: int) -> list[str]:
    """What the `search:` and `prune:` sections cannot do together with the rest of the config
    (`seeds`: how many seeds run each configuration; `raced`: seeds given as a race)."""
    problems = []
    sampled = ", ".join(SAMPLED_METHODS)
    if search.method == "grid":
        problems += [f"{where}: a range needs a sampled search (search.method: {sampled}); method grid runs "
                     "lists of values only" for where in ranges]
        if search.trials is not None:
            problems.append(f"search.trials: method grid runs every combination; trials applies to {sampled}")
        if prune is not None:
            problems.append(f"prune: pruning needs search.method {sampled} (an Optuna study); method is grid")
        return problems
    if search.trials is None:
        problems.append(f"search.trials: method {search.method} needs a number of configurations, such as trials: 20")
    elif search.trials * seeds > max_trials:  # checked before a sampler draws them all up front
        problems.append(f"search.trials: {search.trials:,} configurations x {seeds} seed(s) make "
                        f"{search.trials * seeds:,} trials, more than the limit of {max_trials:,}; lower trials, "
                        "or raise the limit with --max-trials")
    if raced:
        problems.append(f"seeds: a race compares fixed configurations, so it needs search.method grid; method "
                        f"{search.method} samples new ones: give seeds as a count (such as seeds: 3) or a list")
    if selectors:
        problems.append(f"include/exclude: they edit a grid; method {search.method} samples the space instead: "
                        "remove them, or narrow the lists and ranges")
    if validation_split == 0:
        problems.append(f"dataset.validation_split: method {search.method} chooses on the validation metric, "
                        "but validation_split is 0; set it above 0 (such as 0.1)")
    if prune is not None:
        extra = sorted(k for k, v in prune.model_dump(exclude={"method"}).items() if v is not None
                       and k not in PRUNE_KEYS[prune.method])
        problems += [f"prune.{k}: {prune.method} takes no {k}; it takes {', '.join(sorted(PRUNE_KEYS[prune.method]))}"
                     for k in extra]
    return problems
