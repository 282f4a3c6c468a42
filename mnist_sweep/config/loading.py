"""Reading a sweep config: YAML in, `--set` overrides applied, validated config out, and back to plain data.

Built on the schema (schema.py), which knows nothing of how a config is read or overridden.
"""

from __future__ import annotations

import copy
import itertools
import re
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, did_you_mean, excerpt
from .describe import describe_errors, model_in, show
from .schema import OPTIMIZER_KEYS, OptimizerConfig, SweepConfig, as_list, trial_limit
from .settings import CNN_ONLY
from .ranges import SearchConfig, put_ranges, search_problems, take_ranges
from .selectors import check_selectors, unknown_settings


def _cnn_keys_without_cnn(raw: dict) -> list[str]:
    """Convolution settings in a config whose networks are all dense: a slip the schema cannot see.

    Checked on the user's own YAML: the schema fills in defaults for every key, so it cannot tell
    a conv the user wrote from the default one.
    """
    model = raw.get("model")
    if not isinstance(model, dict):  # no model section of its own: no convolution key to report
        return []
    if any(t != "mlp" for t in as_list(model.get("type", "mlp"))):  # a cnn among them, or a typo the schema reports
        return []
    return [f"model.{key}: {key} applies to convolutional networks only, but model.type is mlp; set "
            f"model.type: cnn (or [mlp, cnn] to compare both), or remove {key} (got {show(model[key])})"
            for key in CNN_ONLY if key in model]


def uses_batch_norm(config: dict) -> bool:
    """Whether any network of a dumped config has a BatchNormalization layer, `include` too.

    Without one, batch_norm_momentum changes nothing and is left out of sweep.yaml. It is not an
    error: `--set model.batch_norm=false` on a config that sets a momentum is an ordinary ablation.
    """
    model = config.get("model")
    if not isinstance(model, dict):
        model = {}
    include = config.get("include") if isinstance(config.get("include"), list) else []
    for settings in [model, *({**model, **entry} for entry in include if isinstance(entry, dict))]:
        dense = as_list(settings.get("batch_norm", False))
        cnn = "cnn" in as_list(settings.get("type", "mlp"))
        conv = as_list(settings.get("conv_batch_norm", False)) if cnn else []
        if any(v is not False for v in dense + conv):  # anything else is BN, or a typo the schema reports
            return True
    return False


# A config is a few hundred bytes; these bound what a hostile one can make the reader allocate.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_VALUES = 250_000  # scalars, lists and mappings once every alias is expanded (100,000 seeds fit)
MAX_YAML_DEPTH = 64  # [ and { nesting: PyYAML's scanner slows quadratically with it


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


def load_yaml(text: str) -> Any:
    """Parse YAML safely and within bounds: an alias bomb or a recursive alias is refused before it is built.

    Raises yaml.YAMLError for malformed YAML and ValueError for a document too big or too deep.
    """
    brackets = re.sub(r"[^][{}]", "", text)
    if max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0) > MAX_YAML_DEPTH:
        raise ValueError(f"the YAML is nested more than {MAX_YAML_DEPTH} brackets deep; a config needs a few")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > MAX_YAML_VALUES:
            raise ValueError(f"the YAML expands to more than {MAX_YAML_VALUES:,} values (its aliases repeat "
                             "one part many times); a config needs a few hundred")
        return loader.construct_document(node)
    except RecursionError:
        raise ValueError("the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values a YAML node holds with every alias expanded (each shared node is counted once per use)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ValueError("the YAML has an alias inside the node it names (a recursive structure)")
    open_nodes.add(key)
    children = node.value if isinstance(node.value, list) else []
    size = 1
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            size += _expanded_size(part, sizes, open_nodes)
            if size > MAX_YAML_VALUES:
                break
    open_nodes.discard(key)
    sizes[key] = size
    return size


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """Parse `--set key.path=value` strings; values are YAML (`[0, 0.5]` is a list)."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {excerpt(item)}: expected KEY=VALUE, e.g. --set train.epochs=2")
            continue
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problems.append(f"--set {excerpt(item)}: value is not valid YAML ({getattr(exc, 'problem', None) or exc})")
            continue
        except ValueError as exc:
            problems.append(f"--set {excerpt(item)}: {exc}")
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
        node: dict = raw
        cls: type[BaseModel] | None = SweepConfig
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


def validate_config(raw: Any, source: str | None = None, max_trials: int | None = None) -> SweepConfig:
    """Validate a raw config mapping, listing every problem at once.

    `max_trials` (default MAX_TRIALS) bounds a count of seeds here; `grid.expand` bounds the rest.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of keys to values (such as name: my-sweep), "
                          f"got {type(raw).__name__}", source)
    raw, ranges, range_problems = take_ranges(raw)  # the schema checks the rest with each range's low
    try:
        config = SweepConfig.model_validate(raw, context={"max_trials": max_trials})
    except ValidationError as exc:
        # include/exclude values are checked against a valid config; their setting names can be checked now.
        raise ConfigError(range_problems + describe_errors(exc, raw, SweepConfig) + _cnn_keys_without_cnn(raw)
                          + unknown_settings(raw), source) from None
    problems = range_problems + _cnn_keys_without_cnn(raw) + check_selectors(config) + search_problems(
        config.search, config.prune, ranges, bool(config.include or config.exclude), config.dataset.validation_split,
        len(config.seeds), config.race is not None, trial_limit({"max_trials": max_trials}))
    if problems:
        raise ConfigError(problems, source)
    config._ranges = ranges
    return config


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning parse errors into a ConfigError with line and column."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read; a device never end
        raise ConfigError(f"cannot read config {path}: {'is a folder' if path.is_dir() else 'not a regular file'}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"the file is over {MAX_CONFIG_BYTES:,} bytes; a config needs a few hundred", str(path))
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start:,})") from None
    try:
        raw = load_yaml(text)
    except ValueError as exc:
        raise ConfigError(str(exc), str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        # An unclosed bracket is noticed lines later; say where the construct it broke began.
        began = (f" ({context} that began at line {start.line + 1}, column {start.column + 1})"
                 if context and start else "")
        raise ConfigError(f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}{began}", str(path)) from None
    if raw is None:
        raise ConfigError("the file is empty", str(path))
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = (), max_trials: int | None = None) -> SweepConfig:
    """Read, override and validate a sweep config file (`max_trials`: see `validate_config`)."""
    raw = read_yaml(path)
    if isinstance(raw, dict) and overrides:
        try:
            raw = apply_overrides(raw, list(overrides))
        except ConfigError as exc:
            raise ConfigError(exc.problems, str(path)) from None
    return validate_config(raw, str(path), max_trials)


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
    for key in ("race_metric", "smallest_difference"):
        if data.get(key) is None:
            data.pop(key, None)
    if config.search == SearchConfig() and config.prune is None:  # a grid's sweep.yaml stays as it was
        del data["search"], data["prune"]
    return put_ranges(data, config.ranges)
