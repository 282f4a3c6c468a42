"""Turning pydantic's validation errors into one plain line per problem.

Each line has the key path as the user wrote it, the bad value, and what is allowed, with
"did you mean" for near misses. The schema itself lives in schema.py.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import did_you_mean
from .schema import is_architecture


def model_in(annotation):
    """The pydantic model class inside an annotation like list[Union[..., Model]], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_in(arg)
        if found is not None:
            return found
    return None


# pydantic names the branch of a union an error came from inside its location: `literal['a','b']`,
# `function-after[...]`, `bool`, a model class name. None of these is a key the user wrote.
_UNION_TAG = re.compile(r"^([a-z-]+\[.*\]|bool|int|float|str|none|[A-Z]\w*)$")


def _walk(loc, raw, root) -> tuple[str, Any]:
    """Follow pydantic's error location through the user's raw config.

    Returns the key path as the user wrote it (union tags dropped, and the `[0]` of a scalar that
    became a one-element axis too) and the model class found there.
    """
    path, node, cls, wrapped = "", raw, root, False
    for part in loc:
        if isinstance(part, int):
            if isinstance(node, list) and not wrapped:
                path += f"[{part}]"
                node = node[part] if part < len(node) else None
            wrapped = False
            continue
        fields = cls.model_fields if cls is not None else {}
        if not (isinstance(node, dict) and part in node or part in fields) and _UNION_TAG.match(part):
            continue
        if isinstance(node, str) and part == "name":
            continue  # `optimizer: adam` is short for {name: adam}
        path += f".{part}" if path else part
        cls = model_in(fields[part].annotation) if part in fields else None
        node = node.get(part) if isinstance(node, dict) else None
        wrapped = part == "hidden" and is_architecture(node)  # stored as [node]: the user wrote no index
    return path, cls


def _choices(annotation) -> list[str]:
    """The allowed values of a Literal field (possibly inside Optional/list), else []."""
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        found = _choices(arg)
        if found:
            return found
    return []


def show(value: Any) -> str:
    """A value as the user wrote it, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_error(err: ErrorDetails, raw, root) -> list[tuple[str, str]]:
    """One pydantic error as (key path, message) lines: key path, bad value, what is allowed."""
    path, _ = _walk(err["loc"], raw, root)
    bad = err.get("input")
    kind = err["type"]
    if kind == "config_problems":
        return [(path + sub if path else sub.lstrip("."), f"{msg} (got {show(value)})")
                for sub, msg, value in err["ctx"]["problems"]]
    if kind == "extra_forbidden":
        _, parent = _walk(err["loc"][:-1], raw, root)
        allowed = sorted(parent.model_fields) if parent is not None else []
        msg = f"unknown key{did_you_mean(err['loc'][-1], allowed)}"
        return [(path, msg + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))]
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return [(path, f"{show(bad)} is not allowed; expected one of {expected}{did_you_mean(bad, choices)}")]
    if kind == "missing":
        _, parent = _walk(err["loc"][:-1], raw, root)
        field = parent.model_fields.get(err["loc"][-1]) if parent is not None else None
        hint = "a plain directory name for the sweep's results, e.g. name: my-sweep" if path == "name" else \
            ", ".join(_choices(field.annotation)) if field is not None else ""
        return [(path, "required key is missing" + (f"; expected {hint}" if hint else ""))]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "expected a mapping of keys to values"
    elif kind == "list_type":
        msg = "expected a list"
    else:
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "should be")
    return [(path, f"{msg} (got {show(bad)})")]


# When a value fails every branch of a union, pydantic reports each branch at the same key path; the
# first of these kinds says it best (a literal mismatch lists the allowed values).
_PREFERRED = ("config_problems", "value_error", "literal_error", "extra_forbidden", "missing")


def describe_errors(error: ValidationError, raw: Any, root: type[BaseModel]) -> list[str]:
    """Turn pydantic's errors into one line per problem: key path, bad value, what is allowed."""
    by_path: dict[str, list[tuple[int, str]]] = {}
    for err in error.errors():
        rank = _PREFERRED.index(err["type"]) if err["type"] in _PREFERRED else len(_PREFERRED)
        for path, msg in _describe_error(err, raw, root):
            by_path.setdefault(path or "(top level)", []).append((rank, msg))
    lines = []
    for path, found in by_path.items():
        if any(other != path and other.startswith((path + ".", path + "[")) for other in by_path):
            continue  # a union branch's error deeper under this key says it better
        best = min(rank for rank, _ in found)
        for msg in dict.fromkeys(msg for rank, msg in found if rank == best):
            lines.append(f"{path}: {msg}")
    return lines
