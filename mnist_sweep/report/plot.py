"""A sweep's figures: what can be drawn (the plan), drawing it into plots/, then report.html.

`plot_results` reads only the results files, so it works after a run, during one, and on results
copied from another machine. Whatever cannot be drawn is skipped and said so in `skipped`.
The page itself is written by `report_html.py`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from ..results import containment
from ..results.damage import report as report_damage
from ..results.damage import unsafe
from ..errors import OptionError, ResultsError, UnsafePathError, did_you_mean
from ..metrics import check as check_metric
from ..metrics import get as get_metric
from ..metrics import title
from ..analysis.race import read_race
from .html import MIME, Drawn, render_findings, render_report
from ..results.store import atomic_write, find_sweeps, load_histories, load_results, read_records
from ..analysis.show import varying_columns
from ..config.settings import ARCHITECTURE
from ..records import Status, TrialRecord

FORMATS = ("png", "svg", "pdf")
PER_TRIAL_FIGURES = 12  # up to this many trials get one history figure each; more share grid pages
GRID_PAGE = 36  # panels per page of the history grid
# Files in plots/ this module writes (older ones are removed first, so no stale figure lingers).
OWN_FILES = ("race.*", "curves_*", "effects.*", "*_vs_time.*", "wall_time.*", "overfitting_gap.*", "history_*",
             "model_*", "*_vs_settings.*", "best_so_far.*")
PLOTS_LOCK = ".plots.lock"  # where two `plot` commands on one sweep meet


class FigurePlan(NamedTuple):
    """One figure to draw: its file name without extension, the report section and caption it gets,
    and the function that draws it (a matplotlib Figure)."""

    stem: str
    section: str
    caption: str
    build: Callable[[], Any]


@dataclass
class PlotOutcome:
    """What `plot` did for one sweep."""

    sweep_dir: Path
    figures: list[Path] = field(default_factory=list)
    report: Path | None = None
    skipped: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # damaged files or rows left out, one line each


def check_options(metric: str | None, setting: str | None, fmt: str) -> None:
    """Reject an unknown metric, setting or format before reading anything."""
    from ..config import SECTIONS

    if metric is not None:
        check_metric(metric)
    if setting is not None and setting not in SECTIONS:
        raise OptionError("--group-by", f'unknown setting "{setting}"{did_you_mean(setting, SECTIONS)}; '
                                        f"settings: {', '.join(SECTIONS)}")
    if fmt not in FORMATS:
        raise OptionError("--format", f'unknown format "{fmt}"; formats: {", ".join(FORMATS)}')


def plot_results(path: str | Path, metric: str | None = None, setting: str | None = None,
                 fmt: str = "png", dpi: int = 100, model_diagrams: bool = False) -> Iterator[PlotOutcome]:
    """Draw every figure and write report.html for each sweep at or under `path`, one sweep at a time.
    `metric` defaults to each sweep's validation accuracy (`stats.selection_metric`)."""
    check_options(metric, setting, fmt)
    linked: list = []
    sweeps = find_sweeps(path, linked)
    for damage in linked:  # a sweep reached through a link lies outside the folder given: not drawn into
        yield PlotOutcome(damage.file, skipped=[str(damage)])
    for sweep_dir in sweeps:
        try:
            yield plot_sweep(sweep_dir, metric, setting, fmt, dpi, model_diagrams)
        except (OptionError, ResultsError) as exc:  # one sweep's problem stops only that sweep's figures
            if len(sweeps) == 1:
                raise
            yield PlotOutcome(sweep_dir, skipped=[str(exc)])


def _ids(frame) -> str:
    ids = list(frame["trial_id"].astype(str))
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _triage(summary, histories) -> tuple[Any, Any, list[str]]:
    """The finished trials, the trials with any history, and a note per kind of trial left out."""
    has_history = summary["trial_id"].isin(histories["trial_id"])
    notes = []
    left_out = {
        Status.FAILED: "no history or metrics: only in the wall-time chart and the table",
        Status.DIVERGED: "loss became NaN or infinite: in the per-trial history and wall-time chart only",
        Status.RUNNING: "still training: in the per-trial history only (partial)",
        Status.INTERRUPTED: "stopped before finishing: in the per-trial history and wall-time chart only",
        Status.PRUNED: "stopped by the search's pruner: its curve in the per-trial history stops where it was pruned",
    }
    for status, where in left_out.items():
        rows = summary[summary["status"] == status]
        if len(rows):
            notes.append(f"{len(rows)} {status} trial(s) left out of the comparisons ({where}): {_ids(rows)}")
    finished = summary[summary["status"] == Status.OK]
    missing = finished[~has_history.loc[finished.index]]
    if len(missing):
        notes.append(f"{len(missing)} finished trial(s) have no usable history.csv (left out of the curves): "
                     f"{_ids(missing)}")
    return finished, summary[has_history], notes


def _plan(summary, histories, metric: str, setting: str | None,
          margin: float | None = None) -> tuple[list[FigurePlan], list[str]]:
    """The figures to draw, and notes on what is skipped."""
    from . import figures as plots

    finished, drawable, notes = _triage(summary, histories)
    done_histories = histories[histories["trial_id"].isin(finished["trial_id"])]
    settings = varying_columns(finished)
    if setting is not None:
        if setting not in settings:
            raise OptionError("--group-by", f'"{setting}" does not vary among the finished trials of '
                                            f"{summary['sweep'].iloc[0]}; "
                                            f"varying settings: {', '.join(settings) or 'none'}")
        settings = [setting]
    has_metric = finished[metric].notna()
    plan: list[FigurePlan] = []
    if not settings:
        notes.append("no setting varies among the finished trials: learning curves per setting and "
                     "setting effects skipped")
    for name in settings if len(done_histories) else []:
        plan.append(FigurePlan(f"curves_{name}", "Learning curves per setting",
                     f"Loss and accuracy per epoch, one line per {name} level: the mean over its trials, with "
                     "a band for the 95% CI of that mean across seeds (none with one seed per configuration)",
                     functools.partial(plots.learning_curves, summary, done_histories, name)))
    if settings and has_metric.any():
        plan.append(FigurePlan("effects", "Setting effects", f"{metric} of each level minus its setting's best level, "
                     "matched on the other settings, with Holm-adjusted 95% intervals: the comparisons and numbers "
                     "of `mnist-sweep compare`",
                     lambda: plots.setting_effects(summary, metric, settings)))
    if has_metric.any() and finished["config_id"].nunique() > 1:
        plan.append(FigurePlan("seed_scores", "Scores per seed", f"{metric} of every seed of every configuration, "
                     "with each configuration's mean and 95% CI, ordered and coloured as `mnist-sweep compare`'s "
                     "verdicts against the best", lambda: plots.seed_scores(finished, metric, margin)))
    if has_metric.any() and get_metric(metric).kind == "time":
        notes.append(f"{metric} against time skipped: {metric} is a time itself")
    elif has_metric.any():
        plan.append(FigurePlan(f"{metric}_vs_time", f"{title(metric).capitalize()} against time",
                     f"{metric} against wall time; the Pareto front is circled",
                     lambda: plots.accuracy_vs_time(finished[has_metric], metric)))
    elif len(finished):
        notes.append(f"no finished trial has {metric}: setting effects and accuracy against time skipped")
    timed = summary[summary["wall_seconds"].notna()]
    if len(timed):
        plan.append(FigurePlan("wall_time", "Time", "Wall time and seconds per epoch per trial, sorted",
                     lambda: plots.wall_time(timed)))
    gaps = finished[finished["train_accuracy"].notna()]
    if len(gaps):
        plan.append(FigurePlan("overfitting_gap", "Overfitting gap",
                               "Final train accuracy minus validation and test accuracy",
                               lambda: plots.overfitting_gap(gaps)))
    if len(drawable) <= PER_TRIAL_FIGURES:
        for trial_id in drawable["trial_id"]:
            plan.append(FigurePlan(f"history_{trial_id}", "Per-trial history", f"Trial {trial_id}",
                         functools.partial(plots.trial_history, drawable, histories, trial_id)))
    else:
        ids = list(drawable["trial_id"])
        pages = [ids[i:i + GRID_PAGE] for i in range(0, len(ids), GRID_PAGE)]
        for page, chunk in enumerate(pages, 1):
            plan.append(FigurePlan(f"history_grid_{page}", "Per-trial history",
                         f"Trials {GRID_PAGE * (page - 1) + 1}–{GRID_PAGE * (page - 1) + len(chunk)} of {len(ids)}",
                         functools.partial(plots.history_grid, drawable, histories, chunk)))
    if len(drawable) == 0:
        notes.append("no trial has a history yet: per-trial history skipped")
    return plan, notes


def _search_plan(sweep_dir: Path, summary, metric: str) -> list[FigurePlan]:
    """A sampled sweep's own figures: the metric against each sampled setting, and the best so far."""
    import pandas as pd
    import yaml

    from ..config.ranges import take_ranges
    from . import search_figures as figures

    try:
        raw = yaml.safe_load(containment.read_text(sweep_dir, sweep_dir / "sweep.yaml"))
    except (OSError, ResultsError, yaml.YAMLError):
        return []
    method = (raw.get("search") or {}).get("method", "grid") if isinstance(raw, dict) else "grid"
    if method == "grid" or "status" not in summary.columns:
        return []
    _, ranges, _ = take_ranges(raw)
    settings = {where.split(".")[-1] if not where.startswith("model.hidden") else f"hidden.{where.split('.')[-1]}":
                spec.log for where, spec in ranges.items()}
    column = {"learning_rate": "optimizer", "hidden": "hidden"}
    settings = {s: log for s, log in settings.items() if column.get(s.split(".")[0], s) in summary.columns
                and figures.setting_values(summary, s).notna().any()}
    search_metric = (raw.get("search") or {}).get("metric", "val_accuracy")
    plan = []
    ok = summary[summary["status"] == Status.OK]
    if settings and pd.to_numeric(ok[metric], errors="coerce").notna().any():
        plan.append(FigurePlan(f"{metric}_vs_settings", "Search", f"{metric} against each sampled setting's value "
                               "(log axis for log ranges)",
                               lambda: figures.metric_vs_settings(summary, metric, settings)))
    plan.append(FigurePlan("best_so_far", "Search", f"The best {search_metric} so far (the value the {method} search "
                           "optimizes), against trials run and against summed wall time",
                           lambda: figures.best_so_far(summary, search_metric)))
    return plan


def _render(fig, path: Path, fmt: str, dpi: int) -> tuple[bytes, str]:
    """Save the figure (replacing the file, never writing through a link); return the bytes the report embeds
    (PDF is embedded as a PNG copy)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    data = buffer.getvalue()
    atomic_write(path, data)  # a reader (a browser, another plot) sees the old figure or the new, never half
    if fmt == "pdf":
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue(), MIME["png"]
    return data, MIME[fmt]


def plot_sweep(sweep_dir: str | Path, metric: str | None = None, setting: str | None = None,
               fmt: str = "png", dpi: int = 100, model_diagrams: bool = False) -> PlotOutcome:
    """Draw one sweep's figures into <sweep>/plots/ and write <sweep>/report.html, its findings at the top."""
    sweep_dir = Path(sweep_dir)
    outcome = PlotOutcome(sweep_dir)
    out = sweep_dir / "plots"  # figures are deleted and written there, and nowhere else
    reason = containment.problem(sweep_dir, out)
    if reason is not None:
        raise UnsafePathError(f"{reason}: remove it (plot writes its figures into the sweep's own plots/ folder) "
                              "and plot again")
    damaged: list = []
    summary, histories = load_results(sweep_dir, damaged), load_histories(sweep_dir, damaged)
    named = {d.file for d in damaged}
    damaged += [unsafe(link, f"{containment.link_text(link)}, and {containment.NOT_FOLLOWED}; left out")
                for link in containment.links(sweep_dir) if link not in named and link.parent not in named]
    outcome.damaged = report_damage(damaged, limit=len(damaged))
    if summary.empty:
        outcome.skipped.append(f"{sweep_dir.name}: no trials recorded yet, nothing to plot")
        return outcome
    from ..analysis.compare import sweep_margin
    from ..analysis.stats import selection_metric
    from ..metrics import display_scale

    chosen = metric or selection_metric(summary)
    margin = sweep_margin(sweep_dir, chosen)
    plan, outcome.skipped = _plan(summary, histories, chosen, setting,
                                  None if margin is None else margin / display_scale(chosen))
    plan += _search_plan(sweep_dir, summary, chosen)
    race = read_race(sweep_dir)
    if race is not None:
        from .figures import race_rounds

        plan.insert(0, FigurePlan("race", "Race", "Each configuration's looks in the race: how many seeds it got, "
                                  "and the p-value it left on (race.json)", lambda: race_rounds(race)))
    out.mkdir(exist_ok=True)
    with plots_lock(sweep_dir):  # a second `plot` of this sweep waits, then redraws: neither deletes the other's
        for pattern in OWN_FILES:
            for old in out.glob(pattern):
                old.unlink(missing_ok=True)
        drawn = []
        for figure in plan:
            path = out / f"{figure.stem}.{fmt}"
            image, mime = _render(figure.build(), path, fmt, dpi)
            drawn.append(Drawn(path, figure.section, figure.caption, image, mime))
        records = {k: r for k, r in read_records(sweep_dir).items() if k in set(summary["trial_id"].astype(str))}
        if model_diagrams:
            diagrams, notes = draw_model_diagrams(records, out, dpi)
            drawn += diagrams
            outcome.skipped += notes
        outcome.figures = [d.path for d in drawn]
        outcome.report = sweep_dir / "report.html"
        left_out = [f"damaged results: {line}" for line in outcome.damaged]
        atomic_write(outcome.report, render_report(sweep_dir, summary, records, drawn, outcome.skipped + left_out,
                                                   render_findings(summary, sweep_dir, metric, setting)))
    return outcome


@contextmanager
def plots_lock(sweep_dir: Path):
    """Hold `<sweep>/.plots.lock` while plots/ and report.html are rewritten (opened without following a
    link at its name); the OS releases it when the holder dies, so it never sticks."""
    import fcntl

    try:
        fd = containment.open_lock(sweep_dir / PLOTS_LOCK)  # a link or a non-file there: UnsafePathError, exit 2
    except OSError as exc:
        raise ResultsError(f"cannot write figures to {sweep_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def draw_model_diagrams(records: Mapping[str, TrialRecord], out: Path, dpi: int = 100) -> tuple[list[Drawn], list[str]]:
    """One model_<n>.png per distinct architecture, drawn by Keras; needs pydot and graphviz's `dot`."""
    missing = []
    try:
        import pydot  # noqa: F401
    except ImportError:
        missing.append("pydot (pip install pydot)")
    if shutil.which("dot") is None:
        missing.append("graphviz (apt-get install graphviz, or brew install graphviz)")
    if missing:
        return [], [f"model diagrams skipped: they need {' and '.join(missing)}"]
    architectures: dict[str, list[TrialRecord]] = {}
    for record in records.values():
        settings = record.get("settings") or {}
        if all(k in settings for k in ARCHITECTURE):
            key = json.dumps({k: settings[k] for k in ARCHITECTURE}, sort_keys=True, default=str)
            architectures.setdefault(key, []).append(record)
    from ..backend import configure, get_keras
    from ..training.models import build_model

    configure(device="cpu")
    keras = get_keras()
    drawn, notes = [], []
    for n, (key, group) in enumerate(architectures.items(), 1):
        path = out / f"model_{n}.png"
        try:
            model = build_model(group[0]["settings"], input_shape=(28, 28))
            keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_activations=True, dpi=dpi)
        except Exception as exc:  # a drawing tool failing must not cost the other figures
            notes.append(f"model diagram {n} skipped: {type(exc).__name__}: {exc}")
            continue
        what = ", ".join(f"{k}={v}" for k, v in json.loads(key).items())
        drawn.append(Drawn(path, "Model diagrams", f"{what} ({len(group)} trials)", path.read_bytes(), MIME["png"]))
    return drawn, notes
