"""A config's search space: its lists as Optuna categoricals, its ranges as numeric parameters.

`SearchSpace.settings(trial)` asks an Optuna trial (or a `FixedTrial` replaying stored parameters)
for every parameter and returns a trial's resolved settings, so sampling and resuming agree.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any

from ..config import SECTIONS, SweepConfig
from ..plan.grid import base_settings, label, resolve_settings
from ..config.ranges import Range

SIGNIFICANT = 4  # a sampled float keeps 4 significant digits: readable in ids, and what is trained
EXACT_COUNT_LIMIT = 200_000  # above this many combinations of lists, do not count distinct ones


def _round(value: float, spec: Range) -> float:
    """A sampled float as trained: 4 significant digits (a step's grid as it is), kept inside the range."""
    value = float(f"{value:.{SIGNIFICANT}g}") if spec.step is None else round(value, 12)
    return min(max(value, spec.low), spec.high)


class SearchSpace:
    """What a sampled search varies: settings with several listed values, and settings given as ranges."""

    def __init__(self, config: SweepConfig):
        self.config = config
        self.base = base_settings(config)
        self.ranges = dict(config.ranges)
        self.choices = {key: values for key, values in self.base.items() if len(values) > 1}
        ranged = {self._setting(where) for where in self.ranges}
        self.varying = [key for key in SECTIONS if key in self.choices or key in ranged]
        optimizers = self.base["optimizer"]
        names = [o["name"] for o in optimizers]
        # An optimizer's own parameters: `learning_rate` with one optimizer, `adam.learning_rate` with several.
        self._opt_prefix = ["" if len(optimizers) == 1 else f"{n}." if names.count(n) == 1 else f"optimizer{i}."
                            for i, n in enumerate(names)]

    @staticmethod
    def _setting(where: str) -> str:
        parts = where.split(".")
        return "optimizer" if parts[0] == "optimizer" else parts[1]

    def _choice_labels(self, key: str) -> list[str]:
        """Each listed value as text Optuna can store; labels where they tell values apart, else JSON."""
        values = self.choices[key]
        labels = [str(label(key, v)) for v in values]
        return labels if len(set(labels)) == len(labels) else [json.dumps(v, sort_keys=True) for v in values]

    def settings(self, trial) -> dict[str, Any]:
        """Ask `trial` for every parameter (conditionally: only the chosen optimizer's) and resolve them."""
        settings = {key: copy.deepcopy(values[0]) for key, values in self.base.items()}
        chosen_optimizer = 0
        for key in self.choices:
            labels = self._choice_labels(key)
            index = labels.index(trial.suggest_categorical(key, labels))
            settings[key] = copy.deepcopy(self.choices[key][index])
            if key == "optimizer":
                chosen_optimizer = index
        for where, spec in self.ranges.items():
            parts = where.split(".")
            if parts[0] == "optimizer":
                if int(parts[1]) != chosen_optimizer:
                    continue
                name = self._opt_prefix[chosen_optimizer] + parts[2]
                settings["optimizer"][parts[2]] = self._suggest(trial, name, spec, whole=False)
            elif parts[1] == "hidden":
                settings["hidden"][int(parts[2])] = self._suggest(trial, f"hidden.{parts[2]}", spec, whole=True)
            else:
                settings[parts[1]] = self._suggest(trial, parts[1], spec, whole=parts[1] == "batch_size")
        return resolve_settings(settings)

    @staticmethod
    def _suggest(trial, name: str, spec: Range, whole: bool):
        if whole:
            return int(trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log))
        return _round(trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step), spec)

    def distinct_count(self) -> float:
        """How many distinct configurations the space holds: infinite with a continuous range."""
        whole = ("batch_size", "hidden")
        if any(spec.step is None and self._setting(w) not in whole for w, spec in self.ranges.items()):
            return math.inf
        sizes = [len(v) for v in self.choices.values()]
        for spec in self.ranges.values():
            sizes.append(int((spec.high - spec.low) // (spec.step or 1)) + 1)
        total = math.prod(sizes)
        if total > EXACT_COUNT_LIMIT or self.ranges:
            return total
        combos = itertools.product(*(self.choices.values()))
        fixed = {key: values[0] for key, values in self.base.items()}
        return len({json.dumps(resolve_settings({**fixed, **dict(zip(self.choices, combo))}), sort_keys=True)
                    for combo in combos})

    def describe(self) -> list[str]:
        """One line per parameter, for the dry run."""
        lines = [f"{key}: one of {', '.join(self._choice_labels(key))}" for key in self.choices]
        for where, spec in self.ranges.items():
            scale = "log scale" if spec.log else f"step {spec.step:g}" if spec.step else "uniform"
            lines.append(f"{where}: {spec.low:g} to {spec.high:g} ({scale})")
        return lines
