"""The summary as a table: picking, filtering, sorting and formatting the rows `mnist-sweep show` prints,
one per configuration (its seeds' mean and 95% CI, from `stats.summarize_configs`) or one per trial.

Also what the figures share with it: which settings vary, in which order their levels go and how a
trial is labelled. Which way is "better" for a metric is `metrics.py`'s to say.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import OptionError, did_you_mean
from ..metrics import (METRICS, SELECTION, SELECTION_WITHOUT_VALIDATION, VOCABULARY, higher_is_better, known,
                      level_order, unknown_metric)
from ..metrics import get as get_metric
from ..metrics import title as title_of
from ..results.store import setting_columns, load_results
from ..records import Status

SHOWN = ("test_accuracy", "val_accuracy", "epochs_run", "wall_seconds", "status")
CONFIG_METRICS = ("test_accuracy", "val_accuracy", "epochs_run", "wall_seconds")  # the configuration view's
FORMATS = ("table", "csv", "json", "markdown")
# Short headers for the terminal table (csv, json and markdown keep the column names); metrics have theirs.
HEADERS = {**{m.name: m.short for m in VOCABULARY}, "n_seeds": "seeds", "excluded": "left out"}
# How `show` marks trials that did not finish cleanly (the table format only; csv/json keep the raw status).
STATUS_MARKS = {Status.FAILED: ("✗ failed", "red"), Status.DIVERGED: ("⚠ diverged", "yellow"),
                Status.RUNNING: ("… running", "cyan"), Status.INTERRUPTED: ("⏸ interrupted", "magenta"),
                Status.PRUNED: ("✂ pruned", "blue")}


def varying_columns(summary) -> list[str]:
    """The settings that take more than one value in these trials (plus `sweep` when several are mixed)."""
    columns = [c for c in setting_columns(summary) if summary[c].dropna().nunique() > 1]
    if "sweep" in summary.columns and summary["sweep"].nunique() > 1:
        columns.insert(0, "sweep")
    return columns


def setting_levels(summary, setting: str) -> list[Any]:
    """A setting's distinct values in `metrics.level_order`: numbers increasing, the rest as the config lists them."""
    return level_order(summary[setting].dropna().tolist())


def trial_labels(summary, settings: list[str] | None = None):
    """A short label per trial ("activation=relu, dropout=0.2, seed 1"): its varying settings and seed."""
    settings = varying_columns(summary) if settings is None else settings
    with_seed = "seed" in summary.columns and summary["seed"].nunique() > 1
    if not settings and not with_seed:
        return summary["trial_id"].astype(str)

    def one(row) -> str:
        parts = [f"{f}={row[f]}" for f in settings]
        if with_seed:
            parts.append(f"seed {row['seed']}")
        return ", ".join(parts)

    return summary.apply(one, axis=1).astype(str)


def _precise(column: str) -> bool:
    """Accuracies and losses print to 4 decimals; times, counts and settings as they are."""
    return known(column) and get_metric(column).kind in ("accuracy", "loss")


def check_column(summary, column: str, option: str) -> None:
    if column not in summary.columns:
        if option == "--sort" and (column in METRICS or did_you_mean(column, METRICS)):
            if column in METRICS:
                raise OptionError(option, f'no metric "{column}" in the results; '
                                          f"metrics: {', '.join(m for m in METRICS if m in summary.columns)}")
            raise unknown_metric(column, option)  # the error every command gives a mistyped metric
        raise OptionError(option, f'no column "{column}"{did_you_mean(column, summary.columns)}; '
                                  f"columns: {', '.join(summary.columns)}")


def parse_where(items: Iterable[str]) -> dict[str, list[str]]:
    """`key=value` filters by key; several values of one key match any of them."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError("--where", f'"{item}" is not KEY=VALUE, e.g. --where activation=relu')
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


def _matches(series, wanted: str):
    """Cells equal to `wanted`: as numbers when both are numbers, else as case-insensitive text."""
    import pandas as pd

    try:
        number = float(wanted)
    except ValueError:
        number = None
    if number is not None and pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
        return series.astype(float).sub(number).abs().le(1e-12 * max(1.0, abs(number)))
    return series.astype(str).str.casefold() == wanted.casefold()


def filter_rows(summary, filters: dict[str, list[str]]):
    """The rows matching every key, each key matching any of its values; a value no trial has is an error."""
    mask = None
    for key, values in filters.items():
        check_column(summary, key, "--where")
        key_mask = None
        for value in values:
            hit = _matches(summary[key], value)
            if not hit.any():
                present = [str(v) for v in list(dict.fromkeys(summary[key].dropna().tolist()))[:20]]
                raise OptionError("--where", f'no trial has {key}={value}{did_you_mean(value, present)}; '
                                             f"{key} values: {', '.join(present) or 'none'}")
            key_mask = hit if key_mask is None else key_mask | hit
        mask = key_mask if mask is None else mask & key_mask
    return summary if mask is None else summary[mask]


def sort_rows(summary, column: str):
    """Best first for `column` (see `metrics.py`); empty cells last."""
    return summary.sort_values(column, ascending=not higher_is_better(column), na_position="last",
                               kind="stable")


def by_validation(frame, suffix: str = "") -> tuple[Any, str]:
    """The rows best first as the best model is chosen (saving.py), and the accuracy that ranked them.

    Highest validation accuracy first, ties broken by the lower validation loss; without a validation
    set, training accuracy and loss. Never test accuracy: that would let the test set choose. `suffix`
    ranks `summarize_configs` rows by their means ("_mean"). Rows without the accuracy go last.
    """
    has_val = f"{SELECTION[0]}{suffix}" in frame.columns and frame[f"{SELECTION[0]}{suffix}"].notna().any()
    accuracy, loss = SELECTION if has_val else SELECTION_WITHOUT_VALIDATION
    columns = [c for c in (f"{accuracy}{suffix}", f"{loss}{suffix}") if c in frame.columns]
    if not columns:
        return frame, accuracy
    return frame.sort_values(columns, ascending=[False, True][:len(columns)], na_position="last",
                             kind="stable"), accuracy


def default_sort(summary) -> str:
    """What `show` sorts by unless told: the accuracy the best model is chosen by (`by_validation`),
    never the test set's."""
    has_val = SELECTION[0] in summary.columns and summary[SELECTION[0]].notna().any()
    return SELECTION[0] if has_val or SELECTION_WITHOUT_VALIDATION[0] not in summary.columns \
        else SELECTION_WITHOUT_VALIDATION[0]


def select(summary, sort: str | None = None, top: int | None = None, where: Iterable[str] = ()):
    """The rows and columns `show` prints: trial id, varying settings, key metrics, time and status; best
    first by `sort`, by default validation accuracy (`default_sort`)."""
    sort = sort or default_sort(summary)
    check_column(summary, sort, "--sort")
    rows = sort_rows(filter_rows(summary, parse_where(where)), sort)
    if top is not None:
        rows = rows.head(top)
    columns = ["trial_id", *varying_columns(summary)]
    if summary["seed"].nunique() > 1:
        columns.append("seed")
    columns += [c for c in SHOWN if c in summary.columns]
    if sort not in columns:
        columns.insert(len(columns) - 1, sort)
    if "error" in rows.columns and rows["error"].fillna("").astype(str).str.strip().any():
        columns.append("error")
    return rows[columns].reset_index(drop=True)


def _config_sort(summary, configs_columns: list[str], sort: str) -> str | None:
    """The metric to summarize for `--sort` in the configuration view (None: sort by a column it has)."""
    import pandas as pd

    if sort in configs_columns:
        return None
    per_trial = ("seed", "trial_id", "status", "error")
    metrics = [c for c in summary.columns if c not in (*per_trial, *setting_columns(summary))
               and pd.api.types.is_numeric_dtype(summary[c])]
    if sort in metrics:
        return sort
    choices = [*configs_columns, *metrics]
    if sort in summary.columns:
        raise OptionError("--sort", f'"{sort}" differs between the trials of a configuration; sort configurations '
                                    f"by a setting or a metric ({', '.join(m for m in METRICS if m in metrics)}), "
                                    f"or add --trials")
    check_column(summary, sort, "--sort")
    raise OptionError("--sort", f'no column "{sort}"{did_you_mean(sort, choices)}; columns: {", ".join(choices)}')


def _left_out(statuses) -> str:
    """"1 failed, 1 running": a configuration's trials that did not finish, by status."""
    return ", ".join(f"{n} {status}" for status, n in statuses[statuses != Status.OK].value_counts(sort=False).items())


def select_configs(summary, sort: str | None = None, top: int | None = None, where: Iterable[str] = ()):
    """The rows `show` prints by default: one per configuration of the trials `where` keeps.

    Columns: config_id, the varying settings, `n_seeds` (finished trials), `excluded` (the others, by
    status; only when there are any), then `<metric>_mean`, `_sd`, `_ci_low`, `_ci_high` (95% CI across
    seeds, empty below 2 seeds) per metric. A metric `sort` sorts by its mean, best first; by default
    validation accuracy's (`default_sort`).
    """
    import pandas as pd

    sort = sort or default_sort(summary)
    from .stats import summarize_configs

    trials = filter_rows(summary, parse_where(where))
    keys = ["config_id", *varying_columns(summary), "n_seeds"]
    metric = _config_sort(summary, keys, sort)
    metrics = [m for m in CONFIG_METRICS if m in summary.columns]
    if metric and metric not in metrics:
        metrics.append(metric)
    columns = keys + [f"{m}_{part}" for m in metrics for part in ("mean", "sd", "ci_low", "ci_high")]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    configs = summarize_configs(trials, metrics)
    group = [k for k in ("sweep", "config_id") if k in trials.columns]
    configs = configs.join(trials.groupby(group, sort=False)["status"].agg(_left_out).rename("excluded"), on=group)
    if configs["excluded"].astype(bool).any():
        columns.insert(len(keys), "excluded")
    rows = configs.sort_values(f"{metric}_mean" if metric else sort, ascending=not higher_is_better(metric or sort),
                               na_position="last", kind="stable")
    if top is not None:
        rows = rows.head(top)
    return rows[columns].reset_index(drop=True)


def format_mean(column: str, mean: float, low: float, high: float) -> str:
    """"0.9123 ± 0.0040": a mean and the half-width of its (symmetric) t-interval; the mean alone without one."""
    if mean is None or math.isnan(mean):
        return "-"
    digits = 4 if _precise(column) else 1
    return f"{mean:.{digits}f}" + ("" if math.isnan(high) else f" ± {high - mean:.{digits}f}")


def _config_display(configs):
    """The configuration rows as people read them: each metric's mean, SD and CI become one "mean ± CI" cell."""
    metrics = [c.removesuffix("_mean") for c in configs.columns if c.endswith("_mean")]
    shown = configs[[c for c in configs.columns if not c.startswith(tuple(f"{m}_" for m in metrics))]].copy()
    for m in metrics:
        shown[m] = [format_mean(m, *values) for values in
                    configs[[f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]].itertuples(index=False, name=None)]
    return shown, metrics


def format_cell(column: str, value: Any) -> str:
    """A cell as people read it: metrics to 4 decimals, seconds to 0.1, whole numbers without ".0"."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, float):
        if column.endswith("seconds"):
            return f"{value:.1f}"
        if value.is_integer() and not _precise(column):
            return str(int(value))
        return f"{value:.4f}" if _precise(column) else f"{value:g}"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def to_json(frame) -> str:
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")],
                      indent=2, default=str) + "\n"


def _numeric(frame, column: str, right: Iterable[str] = ()) -> bool:
    """Whether a column holds numbers (right-aligned): by its type, or named in `right` (formatted numbers)."""
    import pandas as pd

    return column in right or pd.api.types.is_numeric_dtype(frame[column]) and frame[column].dtype != bool


def to_markdown(frame, right: Iterable[str] = ()) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    numeric = [_numeric(frame, c, right) for c in frame.columns]
    lines = ["| " + " | ".join(cell(str(c)) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(format_cell(c, v)) for c, v in zip(frame.columns, row)) + " |")
    return "\n".join(lines) + "\n"


def to_rich(frame, title: str = "", right: Iterable[str] = ()):
    """A rich Table; failed, diverged and unfinished trials are marked in colour."""
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    # On a terminal the settings and numbers come first; the long ids and error go last.
    tail = [c for c in ("config_id", "trial_id", "error") if c in frame.columns]
    frame = frame[[c for c in frame.columns if c not in tail] + tail]
    for column in frame.columns:
        numeric = _numeric(frame, column, right)
        # Numbers and status never wrap; on a narrow terminal the long text columns fold instead.
        folds = not numeric and column != "status"
        table.add_column(HEADERS.get(column, column), justify="right" if numeric else "left", no_wrap=not folds,
                         overflow="fold", min_width=10 if folds else None, max_width=48 if folds else None)
    for row in frame.itertuples(index=False):
        cells = [format_cell(c, v) for c, v in zip(frame.columns, row)]
        status = getattr(row, "status", Status.OK)
        mark = STATUS_MARKS.get(status)
        if mark:
            cells[list(frame.columns).index("status")] = mark[0]
        table.add_row(*cells, style=mark[1] if mark else None)
    return table


def render(frame, fmt: str = "table", title: str = ""):
    """`frame` as csv, json or markdown text, or as a rich Table for `table`.

    The configuration view (columns `<metric>_mean` …) keeps its numbers in csv and json; for
    people, table and markdown show each metric as one "mean ± CI" cell.
    """
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return to_json(frame)
    frame, right = _config_display(frame)
    if fmt == "markdown":
        return to_markdown(frame, right)
    return to_rich(frame, title, right)


def status_notes(summary) -> list[str]:
    """One line per kind of trial that has no (or partial) results, naming where to look."""
    notes = []
    counts = summary["status"].value_counts()
    for status, what in ((Status.FAILED, "no metrics; their errors are in runs/<trial_id>/trial.json"),
                         (Status.DIVERGED, "loss became NaN or infinite; no test metrics"),
                         (Status.RUNNING, "still training; metrics come when they finish"),
                         (Status.INTERRUPTED, "stopped before finishing; `mnist-sweep run` resumes them"),
                         (Status.PRUNED,
                          "stopped early by the search's pruner; left out of the means, like failed ones")):
        if counts.get(status, 0):
            notes.append(f"{counts[status]} {status} trial(s): {what}")
    return notes


@dataclass
class Shown:
    """What `show` prints: the body (text or a rich Table) and notes for stderr."""

    body: Any
    rows: int
    notes: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # damaged files or rows left out, one line each


def show_results(path: str | Path, sort: str | None = None, top: int | None = None,
                 where: Iterable[str] = (), fmt: str = "table", trials: bool = False) -> Shown:
    """Load a sweep's (or a folder of sweeps') summary and render the selected configurations (or trials)."""
    from ..results.damage import report

    damage: list = []
    summary = load_results(path, damage)
    if summary.empty:
        return Shown("" if fmt != "table" else None, 0, [f"{path}: no trials recorded yet"], report(damage))
    sweeps = ", ".join(map(str, summary["sweep"].unique()))
    sort = sort or default_sort(summary)
    if trials:
        rows = select(summary, sort, top, where)
        notes = status_notes(summary.loc[summary["trial_id"].isin(rows["trial_id"])])
        title = f"{sweeps}: {len(rows)} of {len(summary)} trials, sorted by {sort}"
    else:
        rows = select_configs(summary, sort, top, where)
        notes = _config_notes(filter_rows(summary, parse_where(where)), rows)
        total = summary.groupby([k for k in ("sweep", "config_id") if k in summary.columns]).ngroups
        by = f"mean {sort}" if f"{sort}_mean" in rows.columns else sort
        title = f"{sweeps}: {len(rows)} of {total} configurations, sorted by {by}"
        title += "; ± is the 95% CI across seeds" if (rows["n_seeds"] > 1).any() else ""
    if rows.empty:
        notes.append(f"no {'trial' if trials else 'configuration'} matches every --where filter")
    return Shown(render(rows, fmt, title), len(rows), notes, report(damage))


RUN_TOP = 5  # configurations listed after a run
RUN_METRICS = ("val_accuracy", "val_loss", "test_accuracy", "wall_seconds")


def after_run(path: str | Path, top: int = RUN_TOP) -> Shown:
    """What `mnist-sweep run` prints when it ends: the best configurations, ranked by their seeds' mean
    validation accuracy as the best model is chosen (`by_validation`), and the commands that come next."""
    import shlex

    from .stats import split_ok, summarize_configs

    summary = load_results(path)
    quoted = shlex.quote(str(path))
    steps = {"show": "every configuration: mean ± 95% CI over seeds",
             "compare": "which settings matter, which differences hold up", "plot": "figures and report.html"}
    width = max(len(f"mnist-sweep {c} {quoted}") for c in steps) + 3
    commands = [f"{f'mnist-sweep {c} {quoted}':<{width}}{what}" for c, what in steps.items()]
    finished, _ = split_ok(summary)
    if finished.empty:
        return Shown(None, 0, ["Next:", *commands])
    configs = summarize_configs(finished, [m for m in RUN_METRICS if m in finished.columns])
    ranked, accuracy = by_validation(configs, "_mean")
    rows = ranked.head(top)
    keys = ["config_id", *varying_columns(summary), "n_seeds"]
    metrics = [m for m in (accuracy, "test_accuracy", "wall_seconds") if f"{m}_mean" in rows.columns]
    rows = rows[[*keys, *(f"{m}_{part}" for m in metrics for part in ("mean", "sd", "ci_low", "ci_high"))]]
    title = (f"Top {len(rows)} of {len(configs)} configurations by {title_of(accuracy)} (mean over seeds"
             f"{', ± its 95% CI' if (rows['n_seeds'] > 1).any() else ''}):")
    return Shown(render(rows.reset_index(drop=True), "table", title), len(rows), ["Next:", *commands])


def _config_notes(trials, configs) -> list[str]:
    """What the configuration view leaves out of its means, and where no interval could be given."""
    shown = trials[trials["config_id"].isin(configs["config_id"])]
    notes = [f"{note}; left out of the means (--trials lists them)" for note in status_notes(shown)]
    single = int((configs["n_seeds"] == 1).sum())
    if len(configs) and single == len(configs):
        notes.append("1 finished seed per configuration: no interval can be given, the values are single runs; "
                     "run more seeds (e.g. --set seeds=3) to see which differences hold up")
    elif single:
        notes.append(f"{single} configuration(s) with 1 finished seed: no interval for them")
    return notes
