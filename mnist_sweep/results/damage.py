"""Reading results files that may be damaged: each file is checked, and what is wrong is said, not raised.

A results folder can be truncated by a full disk, edited by hand, or copied half-way. Each reader
here returns what is usable plus a `Damage` (file and reason) per problem, so `show`, `compare`
and `plot` leave damaged trials out, say which, and go on with the rest.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import containment
from ..errors import UnsafePathError, excerpt
from ..records import Status

# Columns a summary.csv must have to be read at all; the others may be missing (older versions).
SUMMARY_REQUIRED = ("trial_id", "config_id", "seed", "status")
# Columns of summary.csv that hold numbers (empty means none); anything else in them is damage.
SUMMARY_NUMBERS = ("seed", "epochs_run", "best_epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "test_loss", "test_accuracy", "params", "fit_seconds", "wall_seconds", "seconds_per_epoch",
                   "group_seconds")


@dataclass(frozen=True)
class Damage:
    """One damaged results file, or one damaged row of one, and what is wrong with it."""

    file: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def unsafe(path: Path, reason: str) -> Damage:
    """The Damage of a file that is not read because of `reason` (a `containment` refusal, which names it)."""
    return Damage(path, reason[len(f"{path} "):] if reason.startswith(f"{path} ") else reason)


def _text(path: Path, root: Path) -> tuple[str | None, Damage | None]:
    """A results file's text, or the Damage that stops it being read: reached through a link or not a
    regular file (then nothing of it is read, so nothing of it is quoted), unreadable, not UTF-8, empty."""
    try:
        data = containment.read_bytes(root, path)
    except UnsafePathError as e:
        return None, unsafe(path, str(e))
    except OSError as e:
        return None, Damage(path, f"cannot be read ({e.strerror or e})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, Damage(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start:,})")
    if not text.strip():
        return None, Damage(path, "empty")
    return text, None


def _number(cell: str) -> float | None:
    """A CSV cell as a float (empty is NaN), or None when it is not a number."""
    if not cell.strip():
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return None


def _rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]], list[Damage]]:
    """Header, (line, cells) per row with the header's width, and a Damage per row of another width."""
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        rows, damage = [], []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                damage.append(Damage(path, f"line {reader.line_num}: {len(cells)} values under {len(header)} columns"
                                           f" (starting {excerpt(','.join(cells[:2]))}); row left out"))
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as e:
        return [], [], [Damage(path, f"not a readable CSV ({excerpt(str(e), 80)})")]
    return header, rows, damage


def _frame(header: list[str], rows: list[list[str]]):
    """Rows as pandas reads a CSV (same type inference as a plain read_csv of the good rows)."""
    import pandas as pd

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    buffer.seek(0)
    return pd.read_csv(buffer, index_col=False)


def read_summary(sweep_dir: Path):
    """summary.csv as a DataFrame without its damaged rows, or None when the file is unusable; and the damage."""
    path = sweep_dir / "summary.csv"
    text, broken = _text(path, sweep_dir)
    if text is None:
        return None, [broken]
    header, rows, damage = _rows(path, text)
    missing = [c for c in SUMMARY_REQUIRED if c not in header]
    if not header or missing:
        return None, damage or [Damage(path, f"missing column(s) {', '.join(missing)} "
                                             f"(found {excerpt(','.join(header), 80)})")]
    good = []
    for line, cells in rows:
        row = dict(zip(header, cells))
        problem = _summary_row_problem(row)
        if problem:
            damage.append(Damage(path, f"line {line} (trial {excerpt(row['trial_id'])}): {problem}; row left out"))
        else:
            good.append(cells)
    return _frame(header, good), damage


def _summary_row_problem(row: dict[str, str]) -> str:
    """What is wrong with one summary row ('' when nothing): no id or status, or a number that is not one."""
    for column in ("trial_id", "status"):
        if not row[column].strip():
            return f"no {column}"
    for column in SUMMARY_NUMBERS:
        if column not in row:
            continue
        value = _number(row[column])
        if value is None:
            return f"{column} is {excerpt(row[column])}, not a number"
        if math.isinf(value) and not (row["status"] == Status.DIVERGED and column.endswith("loss")):
            return f"{column} is {row[column]}"
        if _out_of_range(column, value):
            return f"{column} is {value:g}, outside {_RANGES[column.rsplit('_', 1)[-1]]}"
    return ""


# What a number in a results file can be, by the end of its column name; losses may be anything.
_RANGES = {"accuracy": "0-1", "seconds": "0 or more", "epoch": "0 or more"}


def _out_of_range(column: str, value: float) -> bool:
    """Whether a finite or infinite value is impossible for its column (accuracies 0-1, times and counts >= 0)."""
    kind = column.rsplit("_", 1)[-1]
    if math.isnan(value) or kind not in _RANGES:
        return False
    return not math.isfinite(value) or value < 0 or (kind == "accuracy" and value > 1)


def read_history(path: Path, columns: tuple[str, ...], root: Path):
    """One history.csv (inside the results directory `root`) as a DataFrame, or None and the Damage that
    makes it unusable.

    Infinite losses, which a diverging trial leaves, are read as missing; text, a missing epoch
    column, epochs that are not whole numbers, or accuracies and times that cannot be make the
    file damaged.
    """
    import numpy as np

    text, broken = _text(path, root)
    if text is None:
        return None, broken
    header, rows, damage = _rows(path, text)
    if damage:
        return None, damage[0]
    if "epoch" not in header:
        return None, Damage(path, f"no epoch column (found {excerpt(','.join(header), 80)})")
    known = [c for c in header if c in columns]
    for line, cells in rows:
        for column, cell in zip(header, cells):
            value = _number(cell) if column in known else 0.0
            if value is None:
                return None, Damage(path, f"line {line}: {column} is {excerpt(cell)}, not a number")
            if column == "epoch" and not (math.isfinite(value) and value >= 0 and value == int(value)):
                return None, Damage(path, f"line {line}: epoch is {excerpt(cell)}, not a whole number")
            if _out_of_range(column, value):
                return None, Damage(path, f"line {line}: {column} is {excerpt(cell)}, outside "
                                          f"{_RANGES[column.rsplit('_', 1)[-1]]}")
    frame = _frame(header, [cells for _, cells in rows])
    numeric = frame[known].apply(lambda column: column.astype(float))
    frame[known] = numeric.where(np.isfinite(numeric))
    return frame, None


def read_trial(path: Path, root: Path) -> tuple[dict[str, Any] | None, Damage | None]:
    """One trial.json (inside the results directory `root`) as a mapping, or None and the Damage that makes
    it unusable."""
    text, broken = _text(path, root)
    if text is None:
        return None, broken
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        cut = "; it looks truncated" if not text.rstrip().endswith("}") else ""
        return None, Damage(path, f"not valid JSON ({e.msg}: line {e.lineno}, column {e.colno}{cut})")
    except RecursionError:
        return None, Damage(path, "not a trial record: nested too deeply")
    if not isinstance(record, dict):
        return None, Damage(path, f"not a JSON object (got {type(record).__name__})")
    return record, None


def report(damage: list[Damage], limit: int = 10) -> list[str]:
    """One line per damaged file (at most `limit`, then how many more), for warnings and error messages."""
    lines = [str(d) for d in damage[:limit]]
    if len(damage) > limit:
        lines.append(f"and {len(damage) - limit:,} more damaged file(s) or row(s)")
    return lines
