"""The metrics a sweep records, defined once: which exist, which way is better, what values they can
take and how they read. `show --sort`, `compare --metric`, `plot --metric` and the report all take
these names, with these meanings.

`epochs_run` and `best_epoch` count training cost, as the times do, so fewer is better: sorting by
them puts the trials that finished training soonest first, and `compare --metric epochs_run` asks
which settings train in fewer epochs. (More epochs are not a merit of their own: with early
stopping, a trial that runs longer has simply taken longer to stop improving.) `params` is a cost
too: a smaller model is better.

No pandas, numpy or Keras here: the command line imports this to check an option before loading
anything heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import OptionError, did_you_mean


@dataclass(frozen=True)
class Metric:
    """One measured quantity: its column name, how it reads, and which way is better."""

    name: str  # the column in summary.csv (or history.csv)
    title: str  # how sentences and figure titles name it: "test accuracy"
    short: str  # the terminal table's header: "test acc"
    kind: str  # accuracy | loss | time | count
    higher_is_better: bool
    low: float = 0.0  # the values it can take: accuracies in [0, 1], losses, times and counts >= 0
    high: float = math.inf

    @property
    def lower_is_better(self) -> bool:
        return not self.higher_is_better

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def unit(self) -> str:
        """What one unit is, for axis labels: accuracy is a fraction, loss is cross-entropy, times are seconds."""
        return {"accuracy": "fraction correct", "loss": "cross-entropy", "time": "s"}.get(self.kind, "")

    @property
    def axis_label(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit else self.title


def _accuracy(name: str, title: str, short: str) -> Metric:
    return Metric(name, title, short, "accuracy", True, 0.0, 1.0)


def _cost(name: str, title: str, short: str, kind: str) -> Metric:
    return Metric(name, title, short, kind, False)


# The metrics every command takes, in the order they are listed to users (accuracies first).
VOCABULARY: tuple[Metric, ...] = (
    _accuracy("test_accuracy", "test accuracy", "test acc"),
    _accuracy("val_accuracy", "validation accuracy", "val acc"),
    _accuracy("train_accuracy", "train accuracy", "train acc"),
    _cost("test_loss", "test loss", "test loss", "loss"),
    _cost("val_loss", "validation loss", "val loss", "loss"),
    _cost("train_loss", "train loss", "train loss", "loss"),
    _cost("wall_seconds", "wall time", "wall s", "time"),
    _cost("fit_seconds", "fit time", "fit s", "time"),
    _cost("seconds_per_epoch", "time per epoch", "s/epoch", "time"),
    _cost("epochs_run", "epochs run", "epochs", "count"),
    _cost("best_epoch", "best epoch", "best epoch", "count"),
    _cost("params", "parameters", "params", "count"),
)
# The per-epoch columns of history.csv, for the learning curves (not options of any command).
CURVES: tuple[Metric, ...] = (
    _cost("loss", "training loss", "loss", "loss"),
    _accuracy("accuracy", "training accuracy", "acc"),
    _cost("val_loss", "validation loss", "val loss", "loss"),
    _accuracy("val_accuracy", "validation accuracy", "val acc"),
    _cost("epoch_seconds", "epoch time", "epoch s", "time"),
)

METRICS: tuple[str, ...] = tuple(m.name for m in VOCABULARY)
DEFAULT = "test_accuracy"
# What picks "the best" model or configuration (saving.py, the run summary, the report's headline):
# validation accuracy, ties broken by the lower validation loss; training accuracy without a validation set.
SELECTION = ("val_accuracy", "val_loss")
SELECTION_WITHOUT_VALIDATION = ("train_accuracy", "train_loss")
_BY_NAME = {m.name: m for m in (*CURVES, *VOCABULARY)}  # the summary's val_* win over the history's


def get(name: str) -> Metric:
    """The metric called `name` (a summary or history column); KeyError for anything else."""
    return _BY_NAME[name]


def known(name: str) -> bool:
    return name in _BY_NAME


def title(name: str) -> str:
    """How a column reads in sentences and titles: the metric's title, else the name with spaces."""
    return _BY_NAME[name].title if name in _BY_NAME else name.replace("_", " ")


def higher_is_better(name: str) -> bool:
    """Best first means high to low for accuracies; low to high for losses, times, counts and any other column."""
    return name in _BY_NAME and _BY_NAME[name].higher_is_better


def lower_is_better(name: str) -> bool:
    return not higher_is_better(name)


def bounds(name: str) -> tuple[float, float]:
    """The values a column can take: a metric's range, else unbounded."""
    return _BY_NAME[name].bounds if name in _BY_NAME else (-math.inf, math.inf)


def display_scale(name: str) -> float:
    """How many display units one raw unit is: 100 for accuracies (shown in percent, differences in
    points), 1 for the rest. `smallest_difference` is given in display units."""
    return 100.0 if name in _BY_NAME and _BY_NAME[name].kind == "accuracy" else 1.0


def level_order(values) -> list:
    """A setting's distinct levels in the one order every table and figure lists them: numbers (or labels
    that read as numbers, "0.02") in increasing order first, then the others as they first appear."""
    def number(value):
        if isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(number) else number

    distinct = list(dict.fromkeys(values))
    numbers = sorted((v for v in distinct if number(v) is not None), key=number)
    return numbers + [v for v in distinct if number(v) is None]


def unknown_metric(name: str, option: str = "--metric") -> OptionError:
    """The one error every command gives for a metric name it does not know."""
    return OptionError(option, f'unknown metric "{name}"{did_you_mean(name, METRICS)}; metrics: {", ".join(METRICS)}')


def check(name: str, option: str = "--metric") -> Metric:
    """The metric named by a command-line option, or the `unknown_metric` error."""
    if name not in METRICS:
        raise unknown_metric(name, option)
    return _BY_NAME[name]
