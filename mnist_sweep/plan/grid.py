"""Expanding a validated config's axes into trials with stable, readable ids."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from typing import Any

from ..config import (BN_MOMENTUM, CNN_ONLY, MAX_TRIALS, SECTIONS, SLUG_PREFIX, Augment, SweepConfig,
                      is_architecture, is_float, pin_settings)
from ..errors import ConfigError
from ..records import Trial

def label(key: str, value: Any) -> Any:
    """A short human label for a setting's value; numbers and booleans stay as they are."""
    if key in ("early_stopping", "augment") and value is False:
        return "off"
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    if isinstance(value, dict):
        name = value.get("name")
        rest = {k: v for k, v in value.items() if k != "name" and v is not None}
        if name is None:  # early stopping
            return " ".join(f"{k}={v}" for k, v in rest.items())
        if "learning_rate" in rest:
            rest = {"lr": rest.pop("learning_rate"), **rest}
        return " ".join([name] + [f"{k}={v}" for k, v in rest.items()])
    return value


def _slug(factors: dict[str, Any]) -> str:
    """A readable, filesystem-safe name from the varying settings; the hash in the id tells trials apart."""
    parts = []
    for key, value in factors.items():
        if value is None:  # a convolution setting of a dense network
            continue
        text = str(value)
        if key == "optimizer" and isinstance(value, str):
            text = value.split(" ")[0] + ("-lr" + value.split("lr=")[1].split(" ")[0] if "lr=" in value else "")
        elif key == "early_stopping" and "=" in text:  # the monitor and patience say which early stopping
            spec = dict(kv.split("=", 1) for kv in text.split(" "))
            text = f"{spec.get('monitor')}-p{spec.get('patience')}"
        elif key == "augment" and "=" in text:  # what differs from SEEDS.md #3's augmentation: r15.0, or on
            spec = dict(kv.split("=", 1) for kv in text.split(" "))
            text = "-".join(k[0] + v for k, v in spec.items() if float(v) != getattr(Augment(), k)) or "on"
        parts.append(re.sub(r"[^a-z0-9._]+", "-", f"{SLUG_PREFIX.get(key, '')}{text}".lower()).strip("-_."))
    slug = ""
    for part in parts:  # whole parts only: a value cut short would mislead
        if len(slug) + len(part) + 1 > 48:
            break
        slug = f"{slug}_{part}" if slug else part
    return slug or "trial"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _axes(config: SweepConfig) -> dict[str, list[Any]]:
    """Each setting's list of values, as plain data."""
    data = config.model_dump(mode="json")
    return {key: (data[section][key] if section else data[key]) for key, section in SECTIONS.items()}


def _selected_by(settings: dict[str, Any], selector: dict[str, list[Any]]) -> bool:
    """True when each setting of a selector (see `_selector`) matches one of its values."""
    return all(any(_same(settings[key], want) for want in wants) for key, wants in selector.items())


def _same(have: Any, want: Any) -> bool:
    """Equal values; a name matches that optimizer or initializer at any settings, and a mapping in a
    selector matches partially (`{learning_rate: 0.1}`: any optimizer at that rate)."""
    if isinstance(have, dict) and isinstance(want, str):
        return have.get("name") == want
    if isinstance(want, dict):
        have = {"name": have} if isinstance(have, str) else have
        return isinstance(have, dict) and all(have.get(k) == v for k, v in want.items())
    return have == want


def _pinned_config(config: SweepConfig, settings: dict[str, Any]) -> SweepConfig:
    """The config with some settings pinned (used to expand `include` entries)."""
    return SweepConfig.model_validate(pin_settings(config, settings))


def _selector(config: SweepConfig, entry: dict[str, Any]) -> dict[str, list[Any]]:
    """An exclude entry as each setting's accepted values, read like the config's own (a list is an axis).

    A mapping keeps only the keys it names, so `{optimizer: {name: adam}}` matches adam at any rate.
    """
    selector = {}
    for key, value in entry.items():
        if key == "optimizer" and isinstance(value, dict) and "name" not in value:
            selector[key] = [{k: float(v) if isinstance(v, str) and is_float(v) else v for k, v in value.items()}]
            continue
        given = ([value] if is_architecture(value) else value) if key in ("hidden", "conv") else \
            value if isinstance(value, list) else [value]
        valid = _axes(_pinned_config(config, {key: value}))[key]
        # Validation filled in defaults; keep only what the entry names: a name, or the keys it gives.
        selector[key] = [v if not isinstance(v, dict) else {k: v[k] for k in g if k in v} if isinstance(g, dict)
                         else v.get("name", v) for g, v in zip(given, valid)]
    return selector


def _product(config: SweepConfig) -> list[dict[str, Any]]:
    axes = _axes(config)
    return [_resolved(dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]


def _resolved(settings: dict[str, Any]) -> dict[str, Any]:
    """Blank the settings a trial's network does not read, so it is one trial, not one per value:
    convolution settings for a dense network, batch_norm_momentum without BatchNormalization."""
    if settings["type"] == "mlp":
        settings.update({key: None for key in CNN_ONLY})
    if settings["batch_norm"] is False and not settings["conv_batch_norm"]:
        settings["batch_norm_momentum"] = None
    return settings


# Settings added after trial ids were first written, and the values at which they change nothing:
# left out of the hash there, so results recorded before keep their ids.
LATER_SETTINGS = {"batch_norm_momentum": (None, BN_MOMENTUM)}


def _hashed(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not (k in LATER_SETTINGS and v in LATER_SETTINGS[k])}


def count_trials(config: SweepConfig) -> tuple[int, str]:
    """How many trials the axes make at most (before exclusions), and which axes make them, without
    building any: e.g. (4000, "model.activation (4) x model.dropout (10) x seeds (100)")."""
    sizes = {f"{section}.{key}" if section else key: len(axis)
             for (key, section), axis in zip(SECTIONS.items(), _axes(config).values())}
    grid = math.prod(sizes.values())
    seeds = len(config.seeds)
    total = (grid + sum(math.prod(len(axis) for axis in _axes(_pinned_config(config, entry)).values())
                        for entry in config.include)) * seeds
    named = " x ".join([f"{name} ({n:,})" for name, n in sizes.items() if n > 1] + [f"seeds ({seeds:,})"])
    if config.include:
        named += f", with {len(config.include)} include entr{'y' if len(config.include) == 1 else 'ies'}"
    return total, named


def check_trial_count(config: SweepConfig, max_trials: int | None = None) -> int:
    """The count of `count_trials`, or a ConfigError when it is over `max_trials` (default MAX_TRIALS)."""
    limit = max_trials or MAX_TRIALS
    total, axes = count_trials(config)
    if total > limit:
        raise ConfigError(f"the sweep has {total:,} trials ({axes}), more than the limit of {limit:,}; "
                          "remove values from the largest axes or use fewer seeds, or raise the limit with "
                          "--max-trials")
    return total


def expand(config: SweepConfig, max_trials: int | None = None) -> list[Trial]:
    """All trials of a sweep: the product of its axes, minus exclusions, plus inclusions, times seeds.

    The trials are counted from the axes first: more than `max_trials` (default MAX_TRIALS) is a
    ConfigError before any is built.
    """
    check_trial_count(config, max_trials)
    exclude = [_selector(config, entry) for entry in config.exclude]
    combos = [s for s in _product(config) if not any(_selected_by(s, sel) for sel in exclude)]
    for entry in config.include:
        combos.extend(_product(_pinned_config(config, entry)))
    unique: dict[str, dict[str, Any]] = {}
    for settings in combos:
        unique.setdefault(json.dumps(settings, sort_keys=True), settings)
    combos = list(unique.values())
    varying = [k for k in SECTIONS if len({json.dumps(c[k], sort_keys=True) for c in combos if c[k] is not None}) > 1]
    # seed-major: a partial sweep already compares every configuration
    return [make_trial(config, settings, seed, varying) for seed in config.seeds for settings in combos]


def make_trial(config: SweepConfig, settings: dict[str, Any], seed: int, varying: list[str]) -> Trial:
    """One trial of resolved settings: its id names the `varying` settings and hashes all of them."""
    # The data's location differs between machines but the data does not: keep it out of the ids.
    dataset = config.dataset.model_dump(mode="json", exclude={"path"})
    factors = {k: label(k, settings[k]) for k in varying}
    config_id = _digest({"settings": _hashed(settings), "dataset": dataset})
    digest = _digest({"settings": _hashed(settings), "dataset": dataset, "seed": seed})
    return Trial(f"{_slug(factors)}-s{seed}-{digest}", config_id, seed, settings, factors)


def base_settings(config: SweepConfig) -> dict[str, list[Any]]:
    """Each setting's list of values as plain data (a range's place holds its low)."""
    return _axes(config)


resolve_settings = _resolved  # blank what a trial's network does not read


def varying_settings(trials: list[Trial]) -> list[str]:
    """Names of the settings that differ between trials, in schema order."""
    return list(trials[0].factors) if trials else []
