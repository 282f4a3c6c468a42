"""Figures over a sweep's DataFrames: each function takes the summary (and histories) and returns a Figure.

The summary and histories are what `load_results` and `load_histories` return; pass them filtered
as you like. Nothing here saves, prints or picks trials: `report.py` decides what to draw.
Figures are built without pyplot, so they work under any backend and never pile up in memory.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..metrics import bounds, higher_is_better, title
from ..metrics import get as get_metric
from ..analysis.stats import setting_importance, half_width, level_contrasts, level_text
from ..analysis.show import setting_levels, trial_labels, varying_columns
from ..records import Status

# Okabe & Ito's colour-blind-safe palette, most distinct first (yellow last: weak on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":")
MAX_LEGEND = len(PALETTE)  # more levels than this get a colour map and a colour bar instead of a legend
MAX_LABELLED = 40  # bar charts name each trial up to this many trials
STATUS_COLORS = {Status.OK: PALETTE[0], Status.DIVERGED: PALETTE[4], Status.FAILED: PALETTE[1],
                 Status.RUNNING: "#999999", Status.INTERRUPTED: "#999999", Status.PRUNED: PALETTE[3]}
CURVE_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")
SHARED_TIME_NOTE = ("Times are shared within fused groups (group_seconds): trials trained together show "
                    "a share of their group's time,\nnot a separate measurement.")


def axis_label(metric: str) -> str:
    """An axis label with its unit (`metrics.Metric.axis_label`); other columns by name."""
    try:
        return get_metric(metric).axis_label
    except KeyError:
        return title(metric)


def level_styles(n: int) -> tuple[list[Any], list[str]]:
    """Colours and line styles for n levels: the palette with varied dashes, or viridis past MAX_LEGEND."""
    if n <= MAX_LEGEND:
        return list(PALETTE[:n]), [LINESTYLES[i % len(LINESTYLES)] for i in range(n)]
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0, 0.92, n)], ["-"] * n


def _level_key(fig: Figure, axes, levels: Sequence[Any], colors, styles, title: str, counts=None) -> None:
    """A legend for a few levels; a colour bar naming the levels when there are too many for a legend."""
    names = [f"{v} (n={counts[i]})" if counts else str(v) for i, v in enumerate(levels)]
    if len(levels) <= MAX_LEGEND:
        handles = [Line2D([], [], color=c, linestyle=s, linewidth=2) for c, s in zip(colors, styles)]
        fig.legend(handles, names, title=title, loc="outside lower center", ncols=min(len(names), 4), frameon=False)
        return
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    mappable = ScalarMappable(norm=BoundaryNorm(np.arange(len(levels) + 1), len(levels)), cmap=ListedColormap(colors))
    bar = fig.colorbar(mappable, ax=axes, location="right", shrink=0.9)
    step = max(1, math.ceil(len(levels) / 30))  # at most ~30 tick labels stay readable
    ticks = np.arange(len(levels))[::step]
    bar.set_ticks((ticks + 0.5).tolist(), labels=[names[i] for i in ticks])
    bar.set_label(title)


def _keys(summary, histories) -> list[str]:
    return ["sweep", "trial_id"] if "sweep" in summary.columns and "sweep" in histories.columns else ["trial_id"]


def _with_settings(histories, summary, columns: list[str]):
    """The histories with summary columns added per trial; infinities become NaN so means stay finite."""
    keys = _keys(summary, histories)
    merged = histories.merge(summary[keys + [c for c in columns if c not in keys]], on=keys, how="inner")
    numeric = merged.select_dtypes("number").columns
    merged[numeric] = merged[numeric].replace([np.inf, -np.inf], np.nan)
    return merged


def _time_note(summary) -> str:
    """A second title line for figures of time when trials share their times within fused groups."""
    if "group_seconds" in summary.columns and summary["group_seconds"].notna().any():
        return "\n" + SHARED_TIME_NOTE
    return ""


def _trial_count(n: int) -> str:
    return f"{n} trial{'' if n == 1 else 's'}"


def _config_keys(summary) -> list[str]:
    """The columns that tell one configuration from another: its id, else its settings."""
    keys = ["config_id"] if "config_id" in summary.columns else [f for f in varying_columns(summary) if f != "sweep"]
    return (["sweep"] if "sweep" in summary.columns else []) + keys


def seed_band(rows, metric: str, configs: list[str]):
    """Per epoch: the mean over `rows` (trials of several configurations) and the half-width of its
    95% CI across seeds, from the seed-to-seed SD pooled within configurations (`stats.main_effects`'
    interval, epoch by epoch); NaN where no configuration has 2 seeds at that epoch."""
    values = rows.dropna(subset=[metric])
    cells = values.groupby(["epoch", *configs])[metric].agg(["var", "count"])
    cells["ss"] = cells["var"].fillna(0.0) * (cells["count"] - 1)
    epochs = cells.groupby(level="epoch").agg(n=("count", "sum"), configs=("count", "size"), ss=("ss", "sum"))
    dof = epochs["n"] - epochs["configs"]
    sd = np.sqrt(epochs["ss"] / dof.where(dof > 0))
    return values.groupby("epoch")[metric].mean(), pd.Series(half_width(sd, dof, epochs["n"]), index=epochs.index)


def learning_curves(summary, histories, setting: str, metrics: Sequence[str] = CURVE_METRICS) -> Figure:
    """Loss and accuracy per epoch, one line per level of `setting`: the mean over the trials with that
    level (other settings and seeds), with a band for its 95% CI across seeds (see `seed_band`): how
    far the line could move with other seeds, not how the other settings spread (SEEDS.md #4)."""
    configs = _config_keys(summary)
    data = _with_settings(histories, summary, [setting, *configs])
    levels = [v for v in setting_levels(summary, setting) if (data[setting] == v).any()]
    if not levels:
        raise ValueError(f"no history to draw for {setting}")
    colors, styles = level_styles(len(levels))
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, math.ceil(len(metrics) / 2), sharex=True, sharey="row", squeeze=False)
    counts = [data.loc[data[setting] == v, _keys(summary, histories)].drop_duplicates().shape[0] for v in levels]
    ragged = banded = False
    for ax, metric in zip(axes.flat, metrics):
        for level, color, style in zip(levels, colors, styles):
            rows = data[data[setting] == level]
            ragged |= rows.groupby("epoch")[metric].count().nunique() > 1
            mean, half = seed_band(rows, metric, configs)
            ax.plot(mean.index, mean, color=color, linestyle=style, linewidth=2, label=str(level))
            if half.notna().any():
                banded = True
                low, high = bounds(metric)
                ax.fill_between(half.index, (mean - half).clip(lower=low), (mean + half).clip(upper=high),
                                color=color, alpha=0.15, linewidth=0)
        ax.set_title(title(metric))
        ax.set_ylabel(axis_label(metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if data[metric].isna().all():
            ax.text(0.5, 0.5, f"no {metric} recorded", transform=ax.transAxes, ha="center", color="0.4")
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    detail = "line: mean over the level's trials; " + (
        "band: its 95% CI across seeds (seed-to-seed SD pooled within configurations)" if banded
        else "no band: a single seed per configuration gives no interval")
    if ragged:
        detail += "; trials that stopped early leave the mean after their last epoch"
    fig.suptitle(f"Learning curves by {setting}\n" + textwrap.fill(detail, 110), fontsize=12)
    _level_key(fig, axes, levels, colors, styles, setting, counts)
    return fig


def _best(history) -> tuple[float, int]:
    """The best validation accuracy and its epoch (NaN, 0 without validation data)."""
    val = history["val_accuracy"].replace([np.inf, -np.inf], np.nan)
    if val.notna().any():
        index = val.idxmax()
        return float(val[index]), int(history.loc[index, "epoch"])
    return math.nan, 0


def _time_text(row, history) -> str:
    """The trial's wall time, or the time its epochs took so far when it is still running."""
    wall = row.get("wall_seconds")
    shared = " (shared by its fused group)" if pd.notna(row.get("group_seconds", np.nan)) else ""
    if wall is not None and pd.notna(wall):
        return f"wall time {wall:.1f} s{shared}"
    so_far = history["epoch_seconds"].sum() if "epoch_seconds" in history else math.nan
    return f"{row.get('status', 'running')}: {len(history)} epochs, {so_far:.1f} s so far"


def trial_history(summary, histories, trial_id: str) -> Figure:
    """Train and validation accuracy and loss per epoch of one trial, with its wall time and best
    validation accuracy written on the figure (SEEDS.md #1)."""
    row = summary.loc[summary["trial_id"] == trial_id].iloc[0]
    history = histories.loc[histories["trial_id"] == trial_id].sort_values("epoch")
    if "sweep" in histories.columns and "sweep" in summary.columns:
        history = history.loc[history["sweep"] == row["sweep"]]
    best, best_epoch = _best(history)
    label = trial_labels(summary).loc[row.name]
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2, sharex=True)
    for ax, metric in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        ax.plot(history["epoch"], history[metric], color=PALETTE[0], linewidth=2, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], color=PALETTE[1], linestyle="--", linewidth=2,
                label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="0.5", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(axis_label(metric).replace("training ", ""))
        ax.set_title(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if best_epoch:
        acc_ax.scatter([best_epoch], [best], s=40, color=PALETTE[1], zorder=3)
    best_text = f"best val accuracy {best:.4f} (epoch {best_epoch})" if best_epoch else "no validation data"
    acc_ax.legend(title=f"{_time_text(row, history)}\n{best_text}", loc="best", alignment="left")
    loss_ax.legend(loc="best")
    status = "" if row.get("status") == Status.OK else f" [{row.get('status')}]"
    fig.suptitle(f"{label}{status}\n{trial_id}", fontsize=11)
    return fig


def _shared_range(histories) -> tuple[float, float]:
    """One accuracy range for every panel of a grid page: the data's, widened to tenths, within [0, 1]."""
    values = pd.concat([histories["accuracy"], histories["val_accuracy"]]).replace([np.inf, -np.inf], np.nan).dropna()
    if values.empty:
        return 0.0, 1.0
    low = max(0.0, math.floor(values.min() * 10) / 10)
    high = min(1.0, math.ceil(values.max() * 10) / 10)
    return (low, high) if high - low >= 0.1 else (max(0.0, high - 0.1), max(0.1, high))


# History grid geometry, in inches: each panel's frame and the room around it for its title and labels.
CELL_WIDTH, CELL_HEIGHT, CELL_GAP_X, CELL_GAP_Y = 1.85, 1.2, 0.45, 0.85


def history_grid(summary, histories, trial_ids: Sequence[str] | None = None, columns: int = 6) -> Figure:
    """Small multiples of train and validation accuracy per epoch, one panel per trial, each titled
    with the trial's settings, wall time and best validation accuracy.

    All panels live in one Axes whose data units are inches (one Axes per panel costs seconds per
    page): `fig.axes[0].collections` holds the train lines, the validation lines, the frames, the
    reference lines and the best-epoch markers, one item per trial in each.
    """
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Rectangle

    keys = _keys(summary, histories)
    trial_ids = list(summary["trial_id"] if trial_ids is None else trial_ids)
    parts = varying_columns(summary) or ["trial_id"]
    if summary["seed"].nunique() > 1:
        parts.append("seed")
    rows_needed = math.ceil(len(trial_ids) / columns)
    width = 0.5 + columns * (CELL_WIDTH + CELL_GAP_X)
    body = rows_needed * (CELL_HEIGHT + CELL_GAP_Y) + 0.4
    fig = Figure(figsize=(width, body + 0.6))
    ax = fig.add_axes((0, 0, 1, body / (body + 0.6)))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(0, body)
    grouped = dict(tuple(histories.groupby(keys)))
    last_epoch = max(int(histories["epoch"].max()) if len(histories) else 1, 2)
    low, high = _shared_range(histories[histories["trial_id"].isin(trial_ids)])
    train, val, frames, guides, best_points = [], [], [], [], []
    for i, trial_id in enumerate(trial_ids):
        row = summary.loc[summary["trial_id"] == trial_id].iloc[0]
        history = grouped.get(tuple(row[k] for k in keys), histories.iloc[0:0]).sort_values("epoch")
        x0 = 0.5 + (i % columns) * (CELL_WIDTH + CELL_GAP_X)
        y0 = body - (i // columns + 1) * (CELL_HEIGHT + CELL_GAP_Y) + 0.15
        x = x0 + (history["epoch"].to_numpy(float) - 1) / (last_epoch - 1) * CELL_WIDTH

        def y(values, y0=y0):
            return y0 + (np.clip(np.asarray(values, float), low, high) - low) / (high - low) * CELL_HEIGHT

        train.append(np.column_stack([x, y(history["accuracy"])]))
        val.append(np.column_stack([x, y(history["val_accuracy"])]))
        frames.append(Rectangle((x0, y0), CELL_WIDTH, CELL_HEIGHT))
        guides.append([(x0, y0 + CELL_HEIGHT / 2), (x0 + CELL_WIDTH, y0 + CELL_HEIGHT / 2)])
        best, best_epoch = _best(history)
        if best_epoch:
            best_points.append((x0 + (best_epoch - 1) / (last_epoch - 1) * CELL_WIDTH, y([best])[0]))
        status = "" if row.get("status") == Status.OK else f"[{row.get('status')}] "
        named = " · ".join(f"seed {row[f]}" if f == "seed" else str(row[f]) for f in parts)
        title = "\n".join(textwrap.wrap(status + named, 40, max_lines=2,
                                        placeholder="…"))
        when = _time_text(row, history).replace("wall time ", "").replace(" (shared by its fused group)", "*")
        ax.text(x0 + CELL_WIDTH / 2, y0 + CELL_HEIGHT + 0.06, f"{title}\n{when} · best val {best:.3f}"
                if best_epoch else f"{title}\n{when}", ha="center", va="bottom", fontsize=7)
        if i % columns == 0:
            for value in (low, (low + high) / 2, high):
                ax.text(x0 - 0.05, y([value])[0], f"{value:g}", ha="right", va="center", fontsize=6.5)
            ax.text(x0 - 0.32, y0 + CELL_HEIGHT / 2, "accuracy", rotation=90, ha="center", va="center", fontsize=7)
        if i + columns >= len(trial_ids):
            ax.text(x0, y0 - 0.05, "1", ha="center", va="top", fontsize=6.5)
            ax.text(x0 + CELL_WIDTH, y0 - 0.05, str(last_epoch), ha="center", va="top", fontsize=6.5)
            ax.text(x0 + CELL_WIDTH / 2, y0 - 0.05, "epoch", ha="center", va="top", fontsize=7)
    ax.add_collection(LineCollection(train, colors=PALETTE[0], linewidths=1.4, label="train accuracy"))
    ax.add_collection(LineCollection(val, colors=PALETTE[1], linewidths=1.4, linestyles="--",
                                     label="validation accuracy"))
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="0.6", linewidth=0.8))
    ax.add_collection(LineCollection(guides, colors="0.85", linewidths=0.6, zorder=0.5))
    if best_points:
        xs, ys = zip(*best_points)
        ax.scatter(xs, ys, s=10, color=PALETTE[1], zorder=3, label="best validation epoch")
    handles = [Line2D([], [], color=PALETTE[0]), Line2D([], [], color=PALETTE[1], linestyle="--"),
               Line2D([], [], color=PALETTE[1], marker="o", markersize=3, linestyle="none")]
    height = fig.get_figheight()
    fig.legend(handles, ["train accuracy", "validation accuracy", "best validation epoch"], loc="upper right",
               ncols=3, frameon=False, fontsize=8, bbox_to_anchor=(0.99, 1 - 0.1 / height))
    fig.suptitle(f"Accuracy per epoch of {_trial_count(len(trial_ids))}\nPanel titles: {' · '.join(parts)}; wall time; "
                 "best validation accuracy", x=0.01, y=1 - 0.1 / height, ha="left", va="top", fontsize=11)
    return fig


def _bar_labels(ax, labels, n: int, what: str) -> None:
    if n <= MAX_LABELLED:
        ax.set_yticks(range(n), labels, fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} trials, sorted by {what}")


def _status_legend(fig: Figure, statuses) -> None:
    present = [s for s in STATUS_COLORS if s in set(statuses)]
    if len(present) > 1:
        handles = [Line2D([], [], color=STATUS_COLORS[s], linewidth=6) for s in present]
        fig.legend(handles, present, title="status", loc="outside lower center", ncols=len(present), frameon=False)


def wall_time(summary) -> Figure:
    """Wall time per trial (sorted bars, slowest at the top) and the seconds per epoch of the same trials."""
    data = summary[pd.to_numeric(summary["wall_seconds"], errors="coerce").notna()]
    data = data.assign(label=trial_labels(summary).loc[data.index]).sort_values("wall_seconds", kind="stable")
    n = len(data)
    fig = Figure(figsize=(12, 1.6 + 0.28 * n if n <= MAX_LABELLED else 7.5), layout="constrained")
    time_ax, epoch_ax = fig.subplots(1, 2, sharey=True)
    colors = [STATUS_COLORS.get(s, "0.5") for s in data["status"]]
    height = 0.8 if n <= MAX_LABELLED else 1.0
    for ax, column in ((time_ax, "wall_seconds"), (epoch_ax, "seconds_per_epoch")):
        values = pd.to_numeric(data[column], errors="coerce").fillna(0.0)
        bars = ax.barh(range(n), values, color=colors, height=height)
        if n <= MAX_LABELLED:
            ax.bar_label(bars, labels=[f"{v:.3g}" if v else "" for v in values], padding=2, fontsize=7)
        ax.set_xlabel(axis_label(column))
        ax.set_title(title(column) + " per trial")
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.12)
    _bar_labels(time_ax, data["label"], n, "wall time")
    _status_legend(fig, data["status"])
    fig.suptitle(f"Time per trial ({_trial_count(n)}; total {data['wall_seconds'].sum():.0f} s){_time_note(summary)}",
                 fontsize=12)
    return fig


def pareto_front(times, scores, higher: bool = True) -> list[int]:
    """Positions of the trials no other trial beats on both time (lower) and score, fastest first."""
    order = np.lexsort((-np.asarray(scores) if higher else np.asarray(scores), np.asarray(times)))
    front, best = [], -math.inf
    for i in order:
        score = scores[i] if higher else -scores[i]
        if score > best:
            front.append(int(i))
            best = score
    return front


def _uncrowded(x, y, candidates, width: float = 0.3, height: float = 0.045) -> list[int]:
    """The candidates, in priority order, whose labels would not overlap one already placed: positions
    are compared as fractions of the data range, a label taking about `width` x `height` of the axes."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    spread_x, spread_y = max(np.ptp(x), 1e-12), max(np.ptp(y), 1e-12)
    placed: list[int] = []
    for i in candidates:
        if all(abs(x[i] - x[j]) / spread_x > width or abs(y[i] - y[j]) / spread_y > height for j in placed):
            placed.append(i)
    return placed


def accuracy_vs_time(summary, metric: str = "test_accuracy", label_all: int = 12) -> Figure:
    """The metric against wall time, one point per trial, the Pareto front marked and labelled (in small
    sweeps the other points too); a label that would overlap one already placed is left out."""
    data = summary.copy()
    for column in (metric, "wall_seconds"):
        data[column] = pd.to_numeric(data[column], errors="coerce").replace([np.inf, -np.inf], np.nan)
    data = data.dropna(subset=[metric, "wall_seconds"])
    if data.empty:
        raise ValueError(f"no trial has both {metric} and wall_seconds")
    data = data.assign(label=trial_labels(summary).loc[data.index]).reset_index(drop=True)
    higher = higher_is_better(metric)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.subplots()
    settings = [f for f in varying_columns(summary) if summary[f].nunique() <= MAX_LEGEND]
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    if settings:
        levels = setting_levels(data, settings[0])
        colors, _ = level_styles(len(levels))
        for level, color, marker in zip(levels, colors, markers):
            rows = data[data[settings[0]] == level]
            ax.scatter(rows["wall_seconds"], rows[metric], s=45, color=color, marker=marker, alpha=0.85,
                       label=f"{settings[0]}={level}", zorder=3)
    else:
        ax.scatter(data["wall_seconds"], data[metric], s=45, color=PALETTE[0], alpha=0.85, label="trial", zorder=3)
    front = pareto_front(data["wall_seconds"].to_numpy(), data[metric].to_numpy(), higher)
    ax.step(data.loc[front, "wall_seconds"], data.loc[front, metric], where="post", color="0.3",
            linestyle="--", linewidth=1, zorder=2, label="Pareto front")
    ax.scatter(data.loc[front, "wall_seconds"], data.loc[front, metric], s=140, facecolors="none",
               edgecolors="black", linewidths=1.3, zorder=4)
    rest = [i for i in range(len(data)) if i not in front] if len(data) <= label_all else []
    for i in _uncrowded(data["wall_seconds"], data[metric], front + rest):  # the front's labels come first
        ax.annotate(textwrap.shorten(data.loc[i, "label"], 48, placeholder="…"),
                    (data.loc[i, "wall_seconds"], data.loc[i, metric]), xytext=(6, 5), textcoords="offset points",
                    fontsize=7.5, color="0.15", zorder=5)
    times = data["wall_seconds"]
    if times.min() > 0 and times.max() / times.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("wall time per trial (s)")
    ax.set_ylabel(axis_label(metric))
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.1)
    ax.legend(loc="best", fontsize=8)
    better = "more accurate" if higher else "lower"
    fig.suptitle(f"{title(metric).capitalize()} against wall time ({_trial_count(len(data))})\n"
                 f"Pareto front: no other trial is both faster and {better}{_time_note(summary)}", fontsize=12)
    return fig


def overfitting_gap(summary) -> Figure:
    """Final train accuracy minus validation and test accuracy per trial, in percentage points (SEEDS.md #5)."""
    data = summary.copy()
    for column in ("train_accuracy", "val_accuracy", "test_accuracy"):
        data[column] = pd.to_numeric(data[column], errors="coerce")
    data = data.assign(label=trial_labels(summary).loc[data.index],
                       gap_val=100 * (data["train_accuracy"] - data["val_accuracy"]),
                       gap_test=100 * (data["train_accuracy"] - data["test_accuracy"]))
    data = data.dropna(subset=["gap_val", "gap_test"], how="all")
    if data.empty:
        raise ValueError("no trial has train and validation or test accuracy")
    sort_by = "gap_test" if data["gap_test"].notna().any() else "gap_val"
    data = data.sort_values(sort_by, kind="stable", na_position="first")
    n = len(data)
    fig = Figure(figsize=(10, 1.8 + 0.32 * n if n <= MAX_LABELLED else 7.5), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(n)
    height = 0.4 if n <= MAX_LABELLED else 0.5
    ax.barh(positions + height / 2, data["gap_val"].fillna(0), height=height, color=PALETTE[0],
            label="train − validation")
    ax.barh(positions - height / 2, data["gap_test"].fillna(0), height=height, color=PALETTE[4],
            hatch="//" if n <= MAX_LABELLED else None, edgecolor="white", linewidth=0, label="train − test")
    ax.axvline(0, color="black", linewidth=0.8)
    _bar_labels(ax, data["label"], n, "the train − test gap")
    ax.set_xlabel("accuracy gap (percentage points; > 0: better on training data)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle("Overfitting gap per trial: final train accuracy minus validation and test accuracy", fontsize=12)
    return fig


VERDICT_COLORS = {"better": PALETTE[2], "worse": PALETTE[1]}  # Holm-significant; anything else PALETTE[0]


def _tick(level, detail: str) -> str:
    """A level's tick label, wrapped, with what compare says of it beneath."""
    return textwrap.fill(str(level), 14, max_lines=3, placeholder="…") + (f"\n({detail})" if detail else "")


def setting_effects(summary, metric: str = "test_accuracy", settings: Sequence[str] | None = None) -> Figure:
    """Per varying setting, most important first, each level minus the setting's best level, matched on
    the other settings, with its Holm-adjusted 95% interval: `stats.level_contrasts`, the comparisons
    `mnist-sweep compare` tests, number for number.

    A level's plain mean would average over whatever else ran at that level: in a grid plus `include:`
    rows, `kernel_l2=0` holds the sigmoid and tanh trials and 0.02 only relu ones. A matched difference
    compares configurations that agree on every other setting, so a bar crosses 0 exactly when compare
    says "no detectable difference". Accuracies are drawn in percentage points.
    """
    contrasts = level_contrasts(summary, metric)
    ranked = [f for f in setting_importance(summary, metric)["setting"] if f in set(contrasts["setting"])]
    settings = [f for f in ranked if settings is None or f in settings]
    if not settings:
        raise ValueError("no setting varies among the finished trials")
    measure = get_metric(metric)
    scale, unit = (100, "percentage points") if measure.kind == "accuracy" else (1, measure.unit)
    columns = min(len(settings), 3)
    rows = math.ceil(len(settings) / columns)
    fig = Figure(figsize=(4.6 * columns + 0.4, 4.4 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    for ax, setting in zip(axes.flat, settings):
        table = contrasts[contrasts["setting"] == setting].set_index("level")
        reference = table["reference"].iloc[0]
        order = {level_text(v): i for i, v in enumerate(setting_levels(summary, setting))}  # the config's order
        levels = sorted([reference, *table.index], key=lambda v: order.get(v, len(order)))
        ax.axhline(0, color="0.3", linewidth=1, zorder=1)
        names = []
        for i, level in enumerate(levels):
            if level == reference:
                ax.errorbar([i], [0.0], fmt="D", color="black", markersize=7, zorder=3, label=level)
                names.append(_tick(level, "best"))
                continue
            r = table.loc[level]
            if not r["cells"] or pd.isna(r["diff"]):
                ax.text(i, 0, f"not run beside\n{reference}", ha="center", va="bottom", fontsize=7, color="0.4")
                names.append(_tick(level, ""))
                continue
            diff = scale * r["diff"]
            error = (None if pd.isna(r["ci_low"]) else
                     [[diff - scale * r["ci_low"]], [scale * r["ci_high"] - diff]])
            ax.errorbar([i], [diff], yerr=error, fmt="o", color=VERDICT_COLORS.get(r["verdict"], PALETTE[0]),
                        markersize=7, capsize=5, linewidth=2, zorder=3, label=level)
            verdict = str(r["verdict"]).split(" at ")[0].replace("no detectable difference", "no diff.")
            names.append(_tick(level, verdict))
        crowded = len(levels) > 6
        ax.set_xticks(range(len(levels)), names, fontsize=8, rotation=30 if crowded else 0,
                      ha="right" if crowded else "center")
        ax.set_title(f"by {setting}")
        ax.set_xlabel(setting)
        if ax in axes[:, 0]:
            ax.set_ylabel(f"{measure.title}: level − best level" + (f" ({unit})" if unit else ""))
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.5, len(levels) - 0.5)
    for ax in axes.flat[len(settings):]:
        ax.set_visible(False)
    interval = ("bars: the Holm-adjusted 95% CI of each difference, as `mnist-sweep compare` reports it; a bar "
                "crossing 0 is no detectable difference" if contrasts["ci_low"].notna().any()
                else "no interval: a single seed per configuration gives none")
    better = "above" if measure.higher_is_better else "below"
    lines = [f"{measure.title.capitalize()} of each level minus its setting's best level, matched on the other "
             "settings; most important setting first", f"{interval}; {better} 0 is better"]
    fig.suptitle("\n".join(textwrap.fill(line, 45 * columns) for line in lines), fontsize=11)
    return fig


VERDICT_COLORS = {"best": "black", "better": "#1a7f37", "worse": "#b42318", "equivalent": "#2f6fb3"}


def seed_scores(summary, metric: str | None = None, margin: float | None = None) -> Figure:
    """Each configuration's per-seed scores (dots), their mean and 95% interval (a bar), ordered as
    `compare`'s verdicts are (best first) and coloured by verdict, so a reader sees the spread the
    verdicts come from. A `margin` (raw units) shades the band of equivalence around the best mean."""
    from ..analysis.stats import compare_to_best, scores_by_config, selection_metric

    metric = metric or selection_metric(summary)
    table = compare_to_best(summary, metric, margin)
    scores = scores_by_config(summary, metric)
    scale = 100 if get_metric(metric).kind == "accuracy" else 1
    fig = Figure(figsize=(8, 1.2 + 0.42 * len(table)), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # a fixed jitter, so the figure is the same on every run
    if margin:
        best = scale * table["mean"].iloc[0]
        ax.axvspan(best - scale * margin, best + scale * margin, color="#2f6fb3", alpha=0.08, zorder=0,
                   label="within the smallest difference of the best")
    for y, row in enumerate(table.itertuples(index=False)):
        verdict = str(row.verdict).split(" at ")[0]
        color = VERDICT_COLORS.get(verdict, "0.45")
        values = scale * scores[row.config].to_numpy(float)
        ax.scatter(values, y + rng.uniform(-0.12, 0.12, len(values)), s=14, color=color, alpha=0.6, zorder=2)
        error = None if pd.isna(row.mean_low) else [[scale * (row.mean - row.mean_low)],
                                                    [scale * (row.mean_high - row.mean)]]
        ax.errorbar([scale * row.mean], [y], xerr=error, fmt="D", color=color, markersize=6, capsize=3, zorder=3)
    ax.set_yticks(range(len(table)), [textwrap.shorten(f"{c} ({str(v).split(' at ')[0]})", 60)
                                      for c, v in zip(table["config"], table["verdict"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{title(metric)}" + (" (%)" if scale == 100 else f" ({get_metric(metric).unit})"
                                        if get_metric(metric).unit else ""))
    ax.set_title(f"{title(metric).capitalize()} per seed: dots, with each configuration's mean and 95% CI",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if margin:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def race_rounds(race: dict) -> Figure:
    """A raced sweep (race.json): one row per configuration, one column per look, a bar for the looks it
    was in; where it left, the Holm-adjusted p-value it left on (worse, or equivalent within the margin).
    The winner, if any, is drawn first."""
    rounds = race.get("rounds") or []
    seeds = [r["seeds"] for r in rounds] or [race["min"]]
    left = {item["config"]: (r["seeds"], item.get("p_equiv") if item.get("verdict") == "equivalent"
                             else item.get("p_holm")) for r in rounds for item in r["left"]}
    how = {item["config"]: item.get("verdict") for r in rounds for item in r["left"]}
    configs = list(race.get("configurations", {}).values()) or [*race.get("racing", []), *left]
    order = sorted(configs, key=lambda c: (c != race.get("winner"), -left.get(c, (math.inf, None))[0]))
    fig = Figure(figsize=(8, 1.2 + 0.42 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    for y, config in enumerate(order):
        last, p = left.get(config, (seeds[-1], None))
        color = PALETTE[2] if config == race.get("winner") else "#999999" if config in left else PALETTE[0]
        ax.barh(y, last - race["min"] + 1, left=race["min"] - 0.5, height=0.6, color=color)
        if config in left:
            ax.text(last + 0.6, y, ("left as equivalent: " if how.get(config) == "equivalent" else "left: ")
                    + ("no finished trial" if p is None else f"p = {p:.2g}"),
                    va="center", fontsize=8)
    ax.set_yticks(range(len(order)), [textwrap.shorten(c, 48) for c in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(race["min"] - 0.5, race["max"] + 2.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seeds per configuration at the look (one look per seed count)")
    outcome = str(race.get("outcome"))
    verdict = {"winner": f"winner: {race.get('winner')}", "indistinguishable": "no winner by max seeds",
               "equivalent": f"{race.get('winner')} left, the rest worse or equivalent within the margin",
               "resolved": "every comparison resolved", "unresolved": "comparisons still open at max seeds",
               "running": "race not finished"}.get(outcome, outcome)
    ax.set_title(textwrap.shorten(f"Race on {race['metric']} ({race['mode']}): {verdict}; each look at level "
                                  f"{race['alpha_per_look']:.2g}", 110), fontsize=10)
    ax.legend(handles=[Line2D([], [], color=c, lw=6, label=t) for c, t in
                       ((PALETTE[0], "still in"), ("#999999", "left the race"), (PALETTE[2], "winner"))],
              loc="lower right", fontsize=8)
    return fig


def save_figure(fig: Figure, path, dpi: int = 100) -> None:
    """Write a figure; the format follows the file's extension."""
    fig.savefig(path, dpi=dpi)
