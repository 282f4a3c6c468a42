"""Reading a sweep config: YAML in, `--set` overrides applied, validated config out, and back to plain data.

Built on the schema (schema.py), which knows nothing of how a config is read or overridden.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, did_you_mean
from .describe import describe_errors, model_in, show
from .schema import CNN_ONLY, OPTIMIZER_KEYS, OptimizerConfig, SweepConfig, as_list
from .selectors import check_selectors, unknown_settings


def _cnn_keys_without_cnn(raw: dict) -> list[str]:
    """Convolution settings in a config whose networks are all dense: a slip the schema cannot see.

    Checked on the user's own YAML: the schema fills in defaults for every key, so it cannot tell
    a conv the user wrote from the default one.
    """
    model = raw.get("model")
    types = as_list(model.get("type", "mlp")) if isinstance(model, dict) else ["cnn"]
    if any(t != "mlp" for t in types):  # a cnn among them, or a typo the schema reports
        return []
    return [f"model.{key}: {key} applies to convolutional networks only, but model.type is mlp; set "
            f"model.type: cnn (or [mlp, cnn] to compare both), or remove {key} (got {show(model[key])})"
            for key in CNN_ONLY if key in model]


def uses_batch_norm(config: dict) -> bool:
    """Whether any network of a dumped config has a BatchNormalization layer, `include` too.

    Without one, batch_norm_momentum changes nothing and is left out of sweep.yaml. It is not an
    error: `--set model.batch_norm=false` on a config that sets a momentum is an ordinary ablation.
    """
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    include = config.get("include") if isinstance(config.get("include"), list) else []
    for settings in [model, *({**model, **entry} for entry in include if isinstance(entry, dict))]:
        dense = as_list(settings.get("batch_norm", False))
        cnn = "cnn" in as_list(settings.get("type", "mlp"))
        conv = as_list(settings.get("conv_batch_norm", False)) if cnn else []
        if any(v is not False for v in dense + conv):  # anything else is BN, or a typo the schema reports
            return True
    return False


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but a repeated key is an error instead of silently replacing the first."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given at line {seen[key] + 1})", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """Parse `--set key.path=value` strings; values are YAML (`[0, 0.5]` is a list)."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
            continue
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
        except yaml.YAMLError as exc:
            problems.append(f"--set {item!r}: value is not valid YAML ({getattr(exc, 'problem', None) or exc})")
            continue
        parsed.append((key.strip().split("."), value))
    if problems:
        raise ConfigError(problems)
    return parsed


def _section_keys(cls) -> set[str]:
    """The keys a section accepts (an optimizer also takes its own settings)."""
    keys = set(cls.model_fields)
    return keys | set().union(*OPTIMIZER_KEYS.values()) if cls is OptimizerConfig else keys


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw config dict with `--set` overrides applied."""
    raw = copy.deepcopy(raw)
    parsed, problems = [], []
    for item in overrides:  # one at a time, so that every bad override is reported
        try:
            parsed += parse_overrides([item])
        except ConfigError as exc:
            problems += exc.problems
    for path, value in parsed:
        node, cls = raw, SweepConfig
        for i, part in enumerate(path):
            keys = _section_keys(cls) if cls is not None else set()
            here = ".".join(path[: i + 1])
            if cls is not None and part not in keys:
                problems.append(f"--set {'.'.join(path)}: unknown key {here!r}{did_you_mean(part, keys)}; "
                                f"allowed keys: {', '.join(sorted(keys))}")
                break
            if i == len(path) - 1:
                node[part] = value
                break
            child_cls = model_in(cls.model_fields[part].annotation) if part in getattr(cls, "model_fields", {}) \
                else None
            child = node.get(part)
            if child is None and child_cls is not None:
                child = {}
            elif isinstance(child, str) and child_cls is OptimizerConfig:
                child = {"name": child}  # `optimizer: sgd` is short for {name: sgd}
            if not isinstance(child, dict):
                problems.append(f"--set {'.'.join(path)}: {here} is {child!r}, not a section of keys; "
                                f"set it whole instead, e.g. --set '{here}=...'")
                break
            node[part] = child
            node, cls = child, child_cls
    if problems:
        raise ConfigError(problems)
    return raw


def validate_config(raw: Any, source: str | None = None) -> SweepConfig:
    """Validate a raw config mapping, listing every problem at once."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of keys to values (such as name: my-sweep), "
                          f"got {type(raw).__name__}", source)
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        # include/exclude values are checked against a valid config; their setting names can be checked now.
        raise ConfigError(describe_errors(exc, raw, SweepConfig) + _cnn_keys_without_cnn(raw)
                          + unknown_settings(raw), source) from None
    problems = _cnn_keys_without_cnn(raw) + check_selectors(config)
    if problems:
        raise ConfigError(problems, source)
    return config


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning parse errors into a ConfigError with line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        # An unclosed bracket is noticed lines later; say where the construct it broke began.
        began = f" ({context} that began at line {start.line + 1}, column {start.column + 1})" if context and start else ""
        raise ConfigError(f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}{began}", str(path)) from None
    if raw is None:
        raise ConfigError("the file is empty", str(path))
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read, override and validate a sweep config file."""
    raw = read_yaml(path)
    if isinstance(raw, dict) and overrides:
        try:
            raw = apply_overrides(raw, list(overrides))
        except ConfigError as exc:
            raise ConfigError(exc.problems, str(path)) from None
    return validate_config(raw, str(path))


def config_to_dict(config: SweepConfig) -> dict:
    """The validated config as plain data, for sweep.yaml (which must validate again as it is)."""
    data = config.model_dump(mode="json")
    if "cnn" not in config.model.type:  # a dense network's config names no convolution settings
        data["model"] = {k: v for k, v in data["model"].items() if k not in CNN_ONLY}
    if not uses_batch_norm(data):
        del data["model"]["batch_norm_momentum"]
    race = data.pop("race")
    if race is not None:  # written back the way the user wrote it
        data["seeds"] = {"min": race["min"], "max": race["max"], "race": race["mode"]}
    if data.get("race_metric") is None:
        data.pop("race_metric", None)
    return data
