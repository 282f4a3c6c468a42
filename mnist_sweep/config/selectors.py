"""The settings a trial has, the config section each lives in, and checks of include/exclude entries.

An include or exclude entry names trial settings (`{activation: tanh, dropout: 0.5}`); each value
is checked the way the config's own value for that setting would be, and reported at the entry's
own key path.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import did_you_mean
from .describe import describe_errors
from .schema import OPTIMIZER_KEYS, SweepConfig
from .settings import SECTIONS

def pin_settings(config: SweepConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """The config as plain data with some settings replaced."""
    data = config.model_dump(mode="json")
    data["include"], data["exclude"] = [], []
    for key, value in settings.items():
        section = SECTIONS[key]
        (data[section] if section else data)[key] = value
    return data


def unknown_settings(raw: Any) -> list[str]:
    """Settings named in a raw config's include/exclude entries that are not trial settings."""
    problems = []
    for kind in ("exclude", "include"):
        entries = raw.get(kind) if isinstance(raw, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue  # the schema reports it
            if not entry:
                problems.append(f"{kind}[{i}]: an entry needs at least one setting, such as {{activation: relu}}")
            for key in entry:
                if key not in SECTIONS:
                    problems.append(f"{kind}[{i}].{key}: unknown setting{did_you_mean(key, SECTIONS)}; "
                                    f"settings: {', '.join(SECTIONS)}")
    return problems


def check_selectors(config: SweepConfig) -> list[str]:
    """Problems with include/exclude entries: unknown settings or invalid values."""
    problems = unknown_settings(config.model_dump(include={"exclude", "include"}))
    for kind in ("exclude", "include"):
        for i, entry in enumerate(getattr(config, kind)):
            if not all(k in SECTIONS for k in entry):
                continue
            for key, value in entry.items():
                if kind == "exclude" and key == "optimizer" and isinstance(value, dict) and "name" not in value:
                    known = {"learning_rate"}.union(*OPTIMIZER_KEYS.values())
                    problems += [f"{kind}[{i}].optimizer.{k}: no optimizer takes this setting"
                                 f"{did_you_mean(k, known)}; settings: {', '.join(sorted(known))}"
                                 for k in value if k not in known]
                    continue
                data = pin_settings(config, {key: value})
                try:
                    SweepConfig.model_validate(data)
                except ValidationError as exc:
                    # Report at the entry's own key path: include[0].activation, not model.activation.
                    where = f"{SECTIONS[key]}.{key}" if SECTIONS[key] else key
                    for line in describe_errors(exc, data, SweepConfig):
                        if line.startswith(where):
                            problems.append(f"{kind}[{i}].{key}{line[len(where):]}")
                        else:
                            problems.append(f"{kind}[{i}].{key}: {line}")
    return problems
