"""The sweep config schema (pydantic, `extra="forbid"`): what a valid config holds.

Every sweepable field is stored as a list: a scalar in YAML becomes a one-element
list, a list becomes a grid axis. `grid.py` turns those lists into trials. How a config
is read and overridden lives in `loading.py`; this module knows nothing of it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from ..errors import did_you_mean
from .ranges import PruneConfig, Range, SearchConfig
from .settings import LEARNING_RATE, MOMENTUM, PENALTY, RATE, not_a_switch

ACTIVATIONS = ("linear", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "nadam")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                "lecun_uniform", "lecun_normal", "random_normal", "random_uniform",
                "truncated_normal", "zeros", "ones")
# Keys each optimizer accepts besides name and learning_rate.
OPTIMIZER_KEYS = {
    "sgd": {"momentum", "nesterov"},
    "rmsprop": {"rho", "momentum"},
    "adagrad": set(),
    "adadelta": {"rho"},
    "adam": {"beta_1", "beta_2"},
    "adamw": {"beta_1", "beta_2", "weight_decay"},
    "nadam": {"beta_1", "beta_2"},
}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # matched in full: no trailing newline
MAX_SEED = 2**32 - 1  # numpy's SeedSequence and Keras' seeds take unsigned 32-bit values
# The most trials a sweep may have unless raised (`--max-trials`): counted from the axes before any
# trial is built, so a 23-byte `seeds: 1000000000` fails in milliseconds instead of filling memory.
MAX_TRIALS = 100_000


Int = Annotated[int, BeforeValidator(not_a_switch)]
Float = Annotated[float, BeforeValidator(not_a_switch), Field(allow_inf_nan=False)]  # .inf or .nan would fail a trial
Seed = Annotated[Int, Field(ge=0, le=MAX_SEED)]
Rate = Annotated[Float, RATE.field()]
Penalty = Annotated[Float, PENALTY.field()]
PositiveInt = Annotated[Int, Field(gt=0)]


def trial_limit(context: Any) -> int:
    """The most trials a sweep may have: the validation context's `max_trials`, else MAX_TRIALS."""
    return (context or {}).get("max_trials") or MAX_TRIALS


def _problems_at(problems: list[tuple[str, str, Any]]) -> PydanticCustomError:
    """An error holding several problems, each (key path below the field, message, bad value)."""
    summary = "; ".join(f"{sub.lstrip('.') or 'value'}: {msg}" for sub, msg, _ in problems)
    return PydanticCustomError("config_problems", "{summary}", {"summary": summary, "problems": problems})


def as_list(value: Any) -> Any:
    """Wrap a scalar into a one-element list so every sweepable field is an axis."""
    return value if isinstance(value, list) else [value]


def _axis(value: Any, ok=None, expected: str = "") -> list:
    """`value` as a non-empty axis; each item `ok` rejects is reported with what is `expected`."""
    items = as_list(value)
    if not items:
        raise ValueError("an axis needs at least one value")
    if ok is not None:
        bad = [(f"[{i}]" if isinstance(value, list) else "", f"expected {expected}", v)
               for i, v in enumerate(items) if not ok(v)]
        if bad:
            raise _problems_at(bad)
    return items


def is_architecture(value: Any) -> bool:
    """True for one architecture (`30` or `[512, 512]`), false for an axis of them (`[[30], [512, 512]]`)."""
    return not isinstance(value, list) or bool(value) and not any(isinstance(v, list) for v in value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(Strict):
    name: Literal["mnist", "fashion_mnist"] = "mnist"
    # auto falls back from path, to Keras' cache/download, to files that install offline.
    source: Literal["auto", "keras", "bundled", "file"] = "auto"
    path: Optional[str] = None
    n_train: Optional[PositiveInt] = None  # None = the whole training split
    n_test: Optional[PositiveInt] = None
    validation_split: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.1  # carved from training only
    seed: Seed = 0  # fixes the subset and the splits, so every trial sees the same data

    @model_validator(mode="before")
    @classmethod
    def _not_sweepable(cls, data):
        # Every trial of a sweep must see the same data, or their results cannot be compared.
        if isinstance(data, dict):
            lists = [(f".{k}", "dataset settings cannot be swept: give one value (run one sweep per dataset)", v)
                     for k, v in data.items() if isinstance(v, list)]
            if lists:
                raise _problems_at(lists)
        return data


# The parameters each initializer takes (Keras refuses any other); the rest take none.
INITIALIZER_KEYS = {"random_normal": ("mean", "stddev"), "truncated_normal": ("mean", "stddev"),
                    "random_uniform": ("minval", "maxval")}


class Initializer(Strict):
    name: Literal[INITIALIZERS]  # type: ignore[valid-type]
    mean: Optional[Float] = None
    stddev: Optional[Annotated[Float, Field(gt=0)]] = None
    minval: Optional[Float] = None
    maxval: Optional[Float] = None

    @model_validator(mode="after")
    def _parameters_it_takes(self):
        takes = INITIALIZER_KEYS.get(self.name, ())
        given = {k: v for k, v in self.model_dump(exclude_none=True).items() if k != "name"}
        problems = [(f".{key}", f"{self.name} takes " + (f"only {' and '.join(takes)}" if takes else "no parameters"),
                     value) for key, value in given.items() if key not in takes]
        low, high = given.get("minval", -0.05), given.get("maxval", 0.05)  # Keras' defaults
        if self.name == "random_uniform" and not low < high:
            problems.append((".maxval", f"maxval must be greater than minval ({low})", high))
        if problems:
            raise _problems_at(problems)
        return self


class OptimizerConfig(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal[OPTIMIZERS]  # type: ignore[valid-type]
    learning_rate: Annotated[Float, LEARNING_RATE.field()] = 0.001

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, data):
        # Extra settings skip pydantic's coercion: read YAML's `1e-3` (a string) and `0` as floats,
        # so equal settings give equal trial ids.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, value in data.items():
            if key in cls.model_fields or key == "nesterov" or isinstance(value, bool):
                continue
            if isinstance(value, int) or isinstance(value, str) and is_float(value):
                data[key] = float(value)
        return data

    @model_validator(mode="after")
    def _known_keys(self):
        allowed = OPTIMIZER_KEYS[self.name]
        problems = []
        for key, value in (self.model_extra or {}).items():
            if key not in allowed:
                known = sorted(allowed | {"learning_rate"})
                problems.append((f".{key}", f"{self.name} takes no setting {key!r}"
                                 f"{did_you_mean(key, known)}; it takes {', '.join(known)}", value))
            elif key == "nesterov":
                if not isinstance(value, bool):
                    problems.append((f".{key}", "nesterov must be true or false", value))
            elif isinstance(value, bool) or not isinstance(value, float) or not RATE.contains(value):
                problems.append((f".{key}", f"{key} must be a number in [0, 1)", value))
        if problems:
            raise _problems_at(problems)
        return self


def is_float(text: str) -> bool:
    """True for text that reads as a number: YAML gives `1e-3` as a string."""
    try:
        float(text)
    except ValueError:
        return False
    return True


class EarlyStopping(Strict):
    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    patience: Annotated[Int, Field(ge=0)] = 3
    min_delta: Annotated[Float, Field(ge=0.0)] = 0.0
    restore_best_weights: bool = True


Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Hidden = list[PositiveInt]
InitializerSpec = Union[Literal[INITIALIZERS], Initializer]  # type: ignore[valid-type]
ConvStack = list[Union[int, Literal["pool"]]]
BN_MOMENTUM = 0.99  # Keras' BatchNormalization default
IMAGE_SIZE = 28  # MNIST and Fashion-MNIST: the conv stack must leave at least one pixel of it


def _conv_problems(stack: Any, where: str) -> list[tuple[str, str, Any]]:
    """Problems with one conv stack such as [32, 32, pool, 64, 64, pool]."""
    if not isinstance(stack, list) or not stack:
        return [(where, "expected a list of filter counts and 'pool', such as [32, 32, pool, 64, 64, pool]", stack)]
    problems = [(f"{where}[{i}]", "expected a positive number of filters or 'pool'", item)
                for i, item in enumerate(stack)
                if item != "pool" and (isinstance(item, bool) or not isinstance(item, int) or item < 1)]
    if not problems and "pool" in stack and all(item == "pool" for item in stack):
        problems.append((where, "needs at least one convolution (a number of filters) besides 'pool'", stack))
    return problems


def _shrinks_to_nothing(stack: list, kernel_size: int) -> Optional[int]:
    """The index of the layer after which a 28x28 image has no pixels left (unpadded convs, 2x2 pools)."""
    size = IMAGE_SIZE
    for i, item in enumerate(stack):
        size = size // 2 if item == "pool" else size - (kernel_size - 1)
        if size < 1:
            return i
    return None


class ModelConfig(Strict):
    type: list[Literal["mlp", "cnn"]] = ["mlp"]
    # The SEEDS.md #3 stack; only read when type is cnn.
    conv: list[ConvStack] = [[32, 32, "pool", 64, 64, "pool"]]
    kernel_size: list[PositiveInt] = [3]
    conv_batch_norm: list[bool] = [False]
    normalize: list[bool] = [False]  # standardize inputs with the training images' mean and variance
    hidden: list[Hidden] = [[128]]
    activation: list[Activation] = ["relu"]
    leaky_alpha: list[Rate] = [0.01]  # SEEDS.md #4; Keras' own default is 0.3
    batch_norm: list[Union[bool, Literal["input"]]] = [False]
    # Keras' default; lower (0.9) lets the running statistics catch up when an epoch has few steps.
    batch_norm_momentum: list[Annotated[Float, MOMENTUM.field()]] = [BN_MOMENTUM]
    dropout: list[Rate] = [0.0]
    kernel_l1: list[Penalty] = [0.0]
    kernel_l2: list[Penalty] = [0.0]
    activity_l1: list[Penalty] = [0.0]
    activity_l2: list[Penalty] = [0.0]
    initializer: list[InitializerSpec] = ["glorot_uniform"]

    @field_validator("hidden", mode="before")
    @classmethod
    def _hidden_axis(cls, value):
        # `hidden: [512, 512]` is one architecture; `hidden: [[30], [512, 512]]` is an axis of two.
        if is_architecture(value):
            return [value if isinstance(value, list) else [value]]
        if not all(isinstance(v, list) for v in value):
            raise ValueError("mixes layer sizes and lists: write one architecture as [512, 512], "
                             "or an axis of architectures as [[30], [512, 512]]")
        return _axis(value)

    @field_validator("activation", "leaky_alpha", "dropout", "kernel_l1", "kernel_l2",
                     "activity_l1", "activity_l2", "initializer", "type", "batch_norm_momentum", mode="before")
    @classmethod
    def _axis(cls, value):
        return _axis(value)

    @field_validator("conv", mode="before")
    @classmethod
    def _conv_axis(cls, value):
        # `conv: [32, pool]` is one stack; `conv: [[32, pool], [32, 32, pool]]` is an axis of two.
        one = not isinstance(value, list) or not any(isinstance(v, list) for v in value)
        stacks = [value if isinstance(value, list) else [value]] if one else value
        problems = [p for i, stack in enumerate(stacks) for p in _conv_problems(stack, "" if one else f"[{i}]")]
        if problems:
            raise _problems_at(problems)
        return stacks

    @field_validator("kernel_size", mode="before")
    @classmethod
    def _kernel_size_axis(cls, value):
        return _axis(value, lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 2 == 1,
                     "an odd positive whole number (a kernel centred on its pixel), such as 3 or 5")

    @field_validator("conv_batch_norm", "normalize", mode="before")
    @classmethod
    def _bool_axis(cls, value):
        return _axis(value, lambda v: isinstance(v, bool), "true or false")

    @model_validator(mode="after")
    def _conv_leaves_pixels(self):
        if "cnn" not in self.type:
            return self
        problems = []
        for i, stack in enumerate(self.conv):
            for k in self.kernel_size:
                layer = _shrinks_to_nothing(stack, k)
                if layer is not None:
                    where = f".conv[{i}]" if len(self.conv) > 1 else ".conv"
                    problems.append((where, f"with kernel_size {k}, no pixels of a {IMAGE_SIZE}x{IMAGE_SIZE} image "
                                     f"are left after item [{layer}] ({stack[layer]!r}): convolutions are unpadded "
                                     f"and pools halve the size; use fewer layers or pools, or a smaller kernel_size",
                                     stack))
        if problems:
            raise _problems_at(problems)
        return self

    @field_validator("batch_norm", mode="before")
    @classmethod
    def _batch_norm_axis(cls, value):
        return _axis(value, lambda v: isinstance(v, bool) or v == "input", "true, false or 'input'")

    @field_validator("initializer")
    @classmethod
    def _initializer_names(cls, value):
        # {name: he_normal} with no parameters is the same initializer as he_normal: one trial, one id.
        return [v.name if isinstance(v, Initializer) and not v.model_dump(exclude_none=True).keys() - {"name"}
                else v for v in value]


class Augment(Strict):
    """Random distortions of the training images (SEEDS.md #3's values); 0 turns one off."""

    rotation: Annotated[Float, Field(ge=0.0, le=180.0)] = 8.0  # degrees, either way
    width_shift: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.08  # fraction of the width, either way
    height_shift: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.08
    shear: Annotated[Float, Field(ge=0.0, le=1.0)] = 0.3  # horizontal shear factor, either way (Keras' RandomShear)
    zoom: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.08  # fraction in or out, each axis on its own


class TrainConfig(Strict):
    epochs: list[PositiveInt] = [10]
    batch_size: list[PositiveInt] = [128]
    early_stopping: list[Union[Literal[False], EarlyStopping]] = [EarlyStopping()]
    # Optional limit per trial; past it the trial stops and is recorded as `timeout`. Not an axis.
    timeout_seconds: Optional[Annotated[Float, Field(gt=0)]] = None
    # Which trained models to keep as runs/<trial_id>/model.keras: the best by validation accuracy
    # (what `mnist-sweep predict` uses), every one, or none. Not an axis: it does not change training.
    save_model: Literal["none", "best", "all"] = "best"

    @field_validator("epochs", "batch_size", mode="before")
    @classmethod
    def _axis(cls, value):
        return _axis(value)

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping_axis(cls, value):
        return _axis(value, lambda v: v is False or isinstance(v, (dict, EarlyStopping)),
                     "false (no early stopping) or a mapping such as {monitor: val_loss, patience: 3}")


RACE_MODES = ("best", "factors")
# Metrics a race may rank by: never the test set's, which must not choose.
RACE_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
RACE_KEYS = ("min", "max", "race")
MAX_RACE_SEEDS = 1000  # beyond this a race cannot separate anything a sweep can afford


def _race_problems(value: dict) -> list[tuple[str, str, Any]]:
    """Problems with `seeds: {min: 3, max: 20, race: best}`, each at its key under seeds."""
    problems = [(f".{k}", f"unknown key{did_you_mean(str(k), RACE_KEYS)}; a race takes min, max and race", v)
                for k, v in value.items() if k not in RACE_KEYS]
    counts = {}
    for key in ("min", "max"):
        v = value.get(key)
        if key not in value:
            problems.append((f".{key}", "required: a race needs min and max seeds per configuration, such as "
                                        "{min: 3, max: 20, race: best}", value))
        elif isinstance(v, bool) or not isinstance(v, int):
            problems.append((f".{key}", "expected a whole number of seeds", v))
        elif not 2 <= v <= MAX_RACE_SEEDS:
            problems.append((f".{key}", f"must be between 2 (a t-test needs two seeds per configuration) and "
                                        f"{MAX_RACE_SEEDS}", v))
        else:
            counts[key] = v
    if len(counts) == 2 and counts["min"] > counts["max"]:
        problems.append((".max", f"must be at least min ({counts['min']}); to run a fixed number of seeds "
                                 "write seeds: N", counts["max"]))
    mode = value.get("race", "best")
    if mode not in RACE_MODES:
        problems.append((".race", f"expected best (stop when one configuration beats every other) or factors "
                                  f"(stop when every setting's comparisons are resolved)"
                                  f"{did_you_mean(str(mode), RACE_MODES)}", mode))
    return problems


class SeedRace(Strict):
    """Racing over seeds, from `seeds: {min, max, race}`: every configuration gets `min` seeds, those
    still in the race one more per round, up to `max` (see race.py)."""

    min: int
    max: int
    mode: Literal[RACE_MODES] = "best"  # type: ignore[valid-type]


class SweepConfig(Strict):
    name: str
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    optimizer: list[OptimizerConfig] = [OptimizerConfig(name="adam")]
    augment: list[Union[Literal[False], Augment]] = [False]  # off: plain MLP sweeps train as they always did
    train: TrainConfig = TrainConfig()
    seeds: list[Seed] = [0]
    # Set through `seeds: {min, max, race}` (then seeds is 0..max-1); None: every seed runs every configuration.
    race: Optional[SeedRace] = None
    race_metric: Optional[str] = None  # what a race ranks by; None: val_accuracy
    # The smallest difference that matters, in the metric's units as `compare` prints them (points for
    # accuracies): closer than this is "equivalent" in `compare`, and leaves a race. None: no such verdict.
    smallest_difference: Optional[float] = None
    # fused: train compatible trials as one model (dense ones sharing batch size and epochs; convolutional or
    # augmented ones sharing seed, batch size, epochs and optimizer), each trial a branch with its own
    # weights, loss, early stopping and saved model. auto (default): fused, since a
    # branch gives its isolated twin's results; isolated: one model per trial.
    execution: Literal["auto", "isolated", "fused"] = "auto"
    # A TensorBoard log directory: each trial's curves and HParams session go to <tensorboard>/<name>/ live.
    tensorboard: Optional[Annotated[str, Field(min_length=1)]] = None
    exclude: list[dict[str, Any]] = []
    include: list[dict[str, Any]] = []
    search: SearchConfig = SearchConfig()  # grid: every combination; random, qmc, tpe: `trials` of them
    prune: Optional[PruneConfig] = None  # stop unpromising trials early (sampled methods only)
    _ranges: dict[str, Range] = PrivateAttr(default_factory=dict)

    @property
    def ranges(self) -> dict[str, Range]:
        """The settings given as ranges, by key path (`model.dropout`, `optimizer.0.learning_rate`)."""
        return self._ranges

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        if not NAME_PATTERN.fullmatch(value) or value in {".", ".."}:
            raise ValueError("not a plain directory name: use letters, digits, '.', '_' and '-', "
                             "starting with a letter or digit, at most 64 characters")
        return value

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_axis(cls, value):
        value = _axis(value, lambda v: isinstance(v, (str, dict, OptimizerConfig)),
                      f"an optimizer name ({', '.join(OPTIMIZERS)}) or a mapping such as "
                      "{name: sgd, learning_rate: 0.01}")
        return [{"name": v} if isinstance(v, str) else v for v in value]

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_axis(cls, value):
        value = _axis(value, lambda v: isinstance(v, (bool, dict, Augment)),
                      "false, true (SEEDS.md #3's settings) or a mapping such as {rotation: 8, zoom: 0.1}")
        return [{} if v is True else v for v in value]

    @model_validator(mode="before")
    @classmethod
    def _seed_race(cls, data):
        # seeds: {min, max, race} becomes seeds 0..max-1 plus `race`; a bad mapping stays for _seeds to report.
        if not isinstance(data, dict):
            return data
        race = data.get("race")
        dumped = isinstance(race, dict) and set(race) == {"min", "max", "mode"} and \
            data.get("seeds") == list(range(race["max"]))  # a validated config dumped and validated again
        if "race" in data and race is not None and not dumped:
            raise _problems_at([("race", "set racing through seeds, e.g. seeds: {min: 3, max: 20, race: best}",
                                 data["race"])])
        seeds = data.get("seeds")
        if isinstance(seeds, dict) and not _race_problems(seeds):
            data = {**data, "seeds": seeds["max"],
                    "race": {"min": seeds["min"], "max": seeds["max"], "mode": seeds.get("race", "best")}}
        return data

    @field_validator("race_metric")
    @classmethod
    def _race_metric(cls, value):
        if value is None or value in RACE_METRICS:
            return value
        if str(value).startswith("test_"):
            raise ValueError("the test set never chooses; race on val_accuracy (the default) or "
                             "val_loss, or on train_accuracy/train_loss without a validation set")
        raise ValueError(f"{value!r} is not a metric a race can rank by{did_you_mean(str(value), RACE_METRICS)}; "
                         f"expected one of {', '.join(RACE_METRICS)}")

    @field_validator("smallest_difference", mode="before")
    @classmethod
    def _smallest_difference(cls, value):
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError("expected a positive number in the metric's units as compare prints them, such as "
                             "smallest_difference: 1.0 (1 point of accuracy); remove it for no equivalence verdicts")
        return float(value)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value, info: ValidationInfo):
        if isinstance(value, dict):
            raise _problems_at(_race_problems(value))
        # An integer n means seeds 0..n-1; a count no sweep could run is refused before the list is built.
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("seeds as a count must be at least 1")
            limit = trial_limit(info.context)
            if value > limit:
                raise ValueError(f"{value:,} seeds make at least {value:,} trials, more than the limit of "
                                 f"{limit:,}; use fewer seeds, or raise the limit with --max-trials")
            return list(range(value))
        if not isinstance(value, list):
            raise ValueError("expected a count n (meaning seeds 0..n-1), a list of seeds such as [0, 1, 2], or a "
                             "race such as {min: 3, max: 20, race: best}")
        if not value:
            raise ValueError("seeds needs at least one seed")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value):
        repeated = sorted({s for s in value if value.count(s) > 1})
        if repeated:
            raise ValueError(f"seed {', '.join(map(str, repeated))} listed more than once; "
                             "each seed runs every trial once")
        return value

    @field_validator("exclude", "include", mode="before")
    @classmethod
    def _selectors(cls, value):
        if not isinstance(value, list):
            raise ValueError("expected a list of partial trial settings, such as [{activation: tanh, dropout: 0.5}]")
        return value

    @model_validator(mode="after")
    def _race_metric_needs(self):
        if self.race_metric is not None and self.race is None:
            raise _problems_at([("race_metric", "applies to a raced sweep only: set seeds: {min: 3, max: 20, "
                                                "race: best}, or remove race_metric", self.race_metric)])
        metric = self.race_metric or "val_accuracy"
        if self.smallest_difference is not None and metric.endswith("accuracy") and self.smallest_difference >= 100:
            raise _problems_at([("smallest_difference", "is in points of accuracy (1.0 = one percentage point): "
                                                        "it must be under 100, such as smallest_difference: 1.0",
                                 self.smallest_difference)])
        if self.race is not None and metric.startswith("val_") and self.dataset.validation_split == 0:
            raise _problems_at([("race_metric", "racing on a validation metric needs a validation set, but "
                                                "dataset.validation_split is 0: set a validation_split > 0 or "
                                                "race_metric: train_accuracy", metric)])
        return self

    @model_validator(mode="after")
    def _validation_needed(self):
        if self.dataset.validation_split == 0:
            for stop in self.train.early_stopping:
                if stop and stop.monitor.startswith("val_"):
                    raise _problems_at([("train.early_stopping.monitor",
                                         "early stopping on a validation metric needs a validation set, but "
                                         "dataset.validation_split is 0: set a validation_split > 0 or monitor loss",
                                         stop.monitor)])
        return self
