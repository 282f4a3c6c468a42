"""Figures for sampled sweeps: a metric against each sampled setting's value, and best-so-far curves.

Pure functions over `load_results`' summary, like `plots.py`; `report.py` decides when to draw them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..metrics import higher_is_better, title
from .figures import PALETTE, STATUS_COLORS, axis_label
from ..records import Status

LR = re.compile(r"lr=([0-9.eE+-]+)")


def setting_values(summary, setting: str) -> pd.Series:
    """A sampled setting's values as numbers: a column as it is, a width from `hidden`, a rate from `optimizer`."""
    if setting == "learning_rate":
        column = summary["optimizer"].astype(str).map(lambda s: LR.search(s).group(1) if LR.search(s) else None)
    elif setting.startswith("hidden"):
        layer = int(setting.split(".")[1]) if "." in setting else 0
        column = summary["hidden"].astype(str).map(lambda s: s.split("-")[layer] if len(s.split("-")) > layer else None)
    else:
        column = summary[setting]
    return pd.to_numeric(column, errors="coerce")


def metric_vs_settings(summary, metric: str, settings: dict[str, bool]) -> Figure:
    """One panel per sampled setting: the metric of each finished trial against the setting's value.

    `settings` maps a setting (`dropout`, `learning_rate`, `hidden.0`) to whether its range is on a
    log scale; such a panel gets a log x axis.
    """
    ok = summary[summary["status"] == Status.OK]
    y = pd.to_numeric(ok[metric], errors="coerce")
    fig = Figure(figsize=(4.2 * len(settings), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(settings), sharey=True))
    for ax, (setting, log) in zip(axes, settings.items()):
        x = setting_values(ok, setting)
        ax.scatter(x, y, s=36, color=PALETTE[0], alpha=0.8)
        finite = y.notna() & x.notna()
        if finite.any():
            best = (y[finite].idxmax() if higher_is_better(metric) else y[finite].idxmin())
            ax.scatter([x[best]], [y[best]], s=140, facecolors="none", edgecolors="black", linewidths=1.3)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow log range would print overlapping minor ticks
        ax.set_xlabel(f"{setting}{' (log scale)' if log else ''}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(axis_label(metric))
    fig.suptitle(f"{title(metric).capitalize()} against each sampled setting ({len(ok)} finished "
                 "trials; the best circled)", fontsize=12)
    return fig


def best_so_far(summary, metric: str = "val_accuracy") -> Figure:
    """The best metric reached so far, against trials in the order they were asked and against wall time.

    Pruned and failed trials count as spent (they took time and a slot) but never as the best.
    """
    rows = summary.reset_index(drop=True)
    value = pd.to_numeric(rows[metric], errors="coerce").where(rows["status"] == Status.OK)
    higher = higher_is_better(metric)
    best = value.cummax() if higher else value.cummin()
    seconds = pd.to_numeric(rows["wall_seconds"], errors="coerce").fillna(0).cumsum()
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    number = np.arange(1, len(rows) + 1)
    for ax, x, label in ((left, number, "trials run"), (right, seconds, "wall time, summed over trials (s)")):
        ax.step(x, best, where="post", color=PALETTE[0], linewidth=2, label="best so far")
        for status, color in STATUS_COLORS.items():
            mask = rows["status"] == status
            if mask.any() and status == Status.OK:
                ax.scatter(np.asarray(x)[mask], value[mask], s=18, color=color, alpha=0.5, label="finished trial")
            elif mask.any():
                ax.scatter(np.asarray(x)[mask], np.full(mask.sum(), best.min() if higher else best.max()), marker="x",
                           s=24, color=color, label=f"{status} (no value)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    left.set_ylabel(axis_label(metric))
    left.legend(loc="lower right" if higher else "upper right", fontsize=8)
    fig.suptitle(f"Best {title(metric)} so far ({len(rows)} trials)", fontsize=12)
    return fig
