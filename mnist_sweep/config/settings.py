"""Every trial setting, declared once: the config section it lives in, its prefix in trial-id slugs,
the bounds a range standing for it must keep (None: it cannot be a range), and what it means to the
model (read only by convolutional networks; shapes the layer graph).

The tables the rest of the package reads (`SECTIONS`, `SLUG_PREFIX`, `RANGE_SETTINGS`, `CNN_ONLY`,
`ARCHITECTURE`) are derived here; the schema takes its numeric bounds from the same `Bounds`.
Adding a setting: one `Setting` line below, its field (type and default) in `schema.ModelConfig` or
`TrainConfig`, and its use in the model code. `tests/config/test_config.py` checks the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from pydantic import Field


def not_a_switch(value: Any) -> Any:
    """A number field's guard: pydantic would read `true` as 1 or 1.0, and in a number field it is a slip."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


class Bounds(NamedTuple):
    """A numeric setting's allowed interval: (whole numbers?, lowest, is the lowest allowed?, highest, is it?)."""

    whole: bool
    low: float
    low_ok: bool
    high: float
    high_ok: bool

    def field(self) -> Any:
        """The same interval as a pydantic constraint, for the schema's field."""
        limits: dict[str, Any] = {"ge" if self.low_ok else "gt": self.low}
        if math.isfinite(self.high):
            limits["le" if self.high_ok else "lt"] = self.high
        return Field(**limits)

    def contains(self, value: float) -> bool:
        return (self.low < value or self.low_ok and value == self.low) and \
            (value < self.high or self.high_ok and value == self.high)


RATE = Bounds(False, 0.0, True, 1.0, False)  # [0, 1): dropout, leaky_alpha, momentum, rho, betas, weight decay
PENALTY = Bounds(False, 0.0, True, math.inf, False)  # [0, inf): the L1/L2 penalties
MOMENTUM = Bounds(False, 0.0, False, 1.0, False)  # (0, 1): batch normalization's momentum
COUNT = Bounds(True, 1, True, math.inf, False)  # whole numbers from 1: widths, batch sizes
LEARNING_RATE = Bounds(False, 0.0, False, 10.0, True)  # (0, 10]
OPTIMIZER_RATES = ("momentum", "rho", "beta_1", "beta_2", "weight_decay")  # optimizer settings in [0, 1)


@dataclass(frozen=True)
class Setting:
    """One setting of a trial."""

    name: str
    section: Optional[str]  # the config section it lives in; None: the top level
    slug: str = ""  # its prefix in trial-id slugs; "": the value alone
    bounds: Optional[Bounds] = None  # a range may stand for it, within these bounds (hidden: each layer's width)
    cnn_only: bool = False  # a dense network (type mlp) does not read it
    architecture: bool = False  # shapes the layer graph: trials equal on these share one diagram


# In schema order: the order of the settings in trial ids, summary.csv and every table.
SETTINGS = (
    Setting("type", "model"),
    Setting("conv", "model", "c", cnn_only=True),
    Setting("kernel_size", "model", "k", cnn_only=True),
    Setting("conv_batch_norm", "model", "cbn-", cnn_only=True),
    Setting("normalize", "model", "norm-"),
    Setting("hidden", "model", "h", COUNT, architecture=True),
    Setting("activation", "model", architecture=True),
    Setting("leaky_alpha", "model", "alpha-", RATE, architecture=True),
    Setting("batch_norm", "model", "bn-", architecture=True),
    Setting("batch_norm_momentum", "model", "bnm-", MOMENTUM),
    Setting("dropout", "model", "do-", RATE, architecture=True),
    Setting("kernel_l1", "model", "kl1-", PENALTY),
    Setting("kernel_l2", "model", "kl2-", PENALTY),
    Setting("activity_l1", "model", "al1-", PENALTY),
    Setting("activity_l2", "model", "al2-", PENALTY),
    Setting("initializer", "model", "init-"),
    Setting("optimizer", None),  # its learning_rate and OPTIMIZER_RATES may be ranges: see RANGE_SETTINGS
    Setting("augment", None, "aug-"),
    Setting("epochs", "train", "ep"),
    Setting("batch_size", "train", "bs", COUNT),
    Setting("early_stopping", "train", "es-"),
)
BY_NAME = {s.name: s for s in SETTINGS}

SECTIONS = {s.name: s.section for s in SETTINGS}  # every setting of a trial and its section (None: top level)
SLUG_PREFIX = {s.name: s.slug for s in SETTINGS if s.slug}
CNN_ONLY = tuple(s.name for s in SETTINGS if s.cnn_only)
ARCHITECTURE = tuple(s.name for s in SETTINGS if s.architecture)
# What a range may stand for, by key path kind, with its bounds.
RANGE_SETTINGS = {
    **{f"{s.section}.{s.name}": s.bounds for s in SETTINGS if s.bounds is not None},
    "optimizer.learning_rate": LEARNING_RATE,
    **{f"optimizer.{key}": RATE for key in OPTIMIZER_RATES},
}
