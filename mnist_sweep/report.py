"""A sweep's figures and its self-contained HTML report: what can be drawn, where it goes, how it reads.

`plot_results` reads only the results files, so it works after a run, during one, and on results
copied from another machine. Whatever cannot be drawn is skipped and said so in `skipped`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import OptionError, ResultsError, did_you_mean
from .store import atomic_write, find_sweeps, load_histories, load_results, read_records, search_method
from .tables import METRICS, format_cell, higher_is_better, trial_labels, varying_factors

FORMATS = ("png", "svg", "pdf")
PER_TRIAL_FIGURES = 12  # up to this many trials get one history figure each; more share grid pages
GRID_PAGE = 36  # panels per page of the history grid
# Files in plots/ this module writes (older ones are removed first, so no stale figure lingers).
OWN_FILES = ("curves_*", "effects.*", "*_vs_time.*", "wall_time.*", "overfitting_gap.*", "history_*", "model_*",
             "*_vs_settings.*", "best_so_far.*")
# The settings that shape a model's layer graph: trials equal on these share one diagram.
ARCHITECTURE = ("hidden", "activation", "leaky_alpha", "batch_norm", "dropout")
MIME = {"png": "image/png", "svg": "image/svg+xml"}


@dataclass
class Drawn:
    """One figure written to plots/, with what the report shows for it."""

    path: Path
    section: str
    caption: str
    image: bytes  # PNG or SVG bytes to embed
    mime: str


@dataclass
class PlotOutcome:
    """What `plot` did for one sweep."""

    sweep_dir: Path
    figures: list[Path] = field(default_factory=list)
    report: Path | None = None
    skipped: list[str] = field(default_factory=list)


def check_options(metric: str, group_by: str | None, fmt: str) -> None:
    """Reject an unknown metric, setting or format before reading anything."""
    from .grid import SECTIONS

    if metric not in METRICS:
        raise OptionError("--metric", f'unknown metric "{metric}"{did_you_mean(metric, METRICS)}; '
                                      f"metrics: {', '.join(METRICS)}")
    if group_by is not None and group_by not in SECTIONS:
        raise OptionError("--group-by", f'unknown setting "{group_by}"{did_you_mean(group_by, SECTIONS)}; '
                                        f"settings: {', '.join(SECTIONS)}")
    if fmt not in FORMATS:
        raise OptionError("--format", f'unknown format "{fmt}"; formats: {", ".join(FORMATS)}')


def plot_results(path: str | Path, metric: str = "test_accuracy", group_by: str | None = None,
                 fmt: str = "png", dpi: int = 100, model_diagrams: bool = False) -> Iterator[PlotOutcome]:
    """Draw every figure and write report.html for each sweep at or under `path`, one sweep at a time."""
    check_options(metric, group_by, fmt)
    sweeps = find_sweeps(path)
    for sweep_dir in sweeps:
        try:
            yield plot_sweep(sweep_dir, metric, group_by, fmt, dpi, model_diagrams)
        except OptionError as exc:
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
        "failed": "no history or metrics: only in the wall-time chart and the table",
        "diverged": "loss became NaN: in the per-trial history and wall-time chart only",
        "running": "still training: in the per-trial history only (partial)",
        "interrupted": "stopped before finishing: in the per-trial history and wall-time chart only",
        "pruned": "stopped by the search's pruner: its curve in the per-trial history stops where it was pruned",
    }
    for status, where in left_out.items():
        rows = summary[summary["status"] == status]
        if len(rows):
            notes.append(f"{len(rows)} {status} trial(s) left out of the comparisons ({where}): {_ids(rows)}")
    finished = summary[summary["status"] == "ok"]
    missing = finished[~has_history.loc[finished.index]]
    if len(missing):
        notes.append(f"{len(missing)} finished trial(s) have no history.csv (left out of the curves): {_ids(missing)}")
    return finished, summary[has_history], notes


def _plan(summary, histories, metric: str, group_by: str | None) -> tuple[list[tuple], list[str]]:
    """The figures to draw as (file stem, section, caption, builder), and notes on what is skipped."""
    from . import plots

    finished, drawable, notes = _triage(summary, histories)
    done_histories = histories[histories["trial_id"].isin(finished["trial_id"])]
    factors = varying_factors(finished)
    if group_by is not None:
        if group_by not in factors:
            raise OptionError("--group-by", f'"{group_by}" does not vary among the finished trials of '
                                            f"{summary['sweep'].iloc[0]}; varying settings: {', '.join(factors) or 'none'}")
        factors = [group_by]
    has_metric = finished[metric].notna()
    plan = []
    if not factors:
        notes.append("no setting varies among the finished trials: learning curves per factor and "
                     "factor effects skipped")
    for factor in factors if len(done_histories) else []:
        plan.append((f"curves_{factor}", "Learning curves per factor",
                     f"Loss and accuracy per epoch, one line per {factor} level: the mean over its trials, with "
                     "a band for the 95% CI of that mean across seeds (none with one seed per configuration)",
                     lambda f=factor: plots.learning_curves(summary, done_histories, f)))
    if factors and has_metric.any():
        plan.append(("effects", "Factor effects", f"Mean {metric} per level with 95% confidence intervals from the "
                     "seed-to-seed spread: the numbers of `mnist-sweep compare`",
                     lambda: plots.factor_effects(summary, metric, factors)))
    if has_metric.any():
        plan.append((f"{metric}_vs_time", f"{metric.replace('_', ' ').capitalize()} against time",
                     f"{metric} against wall time; the Pareto front is circled",
                     lambda: plots.accuracy_vs_time(finished[has_metric], metric)))
    elif len(finished):
        notes.append(f"no finished trial has {metric}: factor effects and accuracy against time skipped")
    timed = summary[summary["wall_seconds"].notna()]
    if len(timed):
        plan.append(("wall_time", "Time", "Wall time and seconds per epoch per trial, sorted",
                     lambda: plots.wall_time(timed)))
    gaps = finished[finished["train_accuracy"].notna()]
    if len(gaps):
        plan.append(("overfitting_gap", "Overfitting gap", "Final train accuracy minus validation and test accuracy",
                     lambda: plots.overfitting_gap(gaps)))
    if len(drawable) <= PER_TRIAL_FIGURES:
        for trial_id in drawable["trial_id"]:
            plan.append((f"history_{trial_id}", "Per-trial history", f"Trial {trial_id}",
                         lambda t=trial_id: plots.trial_history(drawable, histories, t)))
    else:
        ids = list(drawable["trial_id"])
        pages = [ids[i:i + GRID_PAGE] for i in range(0, len(ids), GRID_PAGE)]
        for page, chunk in enumerate(pages, 1):
            plan.append((f"history_grid_{page}", "Per-trial history",
                         f"Trials {GRID_PAGE * (page - 1) + 1}–{GRID_PAGE * (page - 1) + len(chunk)} of {len(ids)}",
                         lambda c=chunk: plots.history_grid(drawable, histories, c)))
    if len(drawable) == 0:
        notes.append("no trial has a history yet: per-trial history skipped")
    return plan, notes


def _search_plan(sweep_dir: Path, summary, metric: str) -> list[tuple]:
    """A sampled sweep's own figures: the metric against each sampled setting, and the best so far."""
    import pandas as pd
    import yaml

    from .config.ranges import take_ranges
    from .search import figures

    try:
        raw = yaml.safe_load((sweep_dir / "sweep.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
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
    ok = summary[summary["status"] == "ok"]
    if settings and pd.to_numeric(ok[metric], errors="coerce").notna().any():
        plan.append((f"{metric}_vs_settings", "Search", f"{metric} against each sampled setting's value (log axis "
                     "for log ranges)", lambda: figures.metric_vs_settings(summary, metric, settings)))
    plan.append(("best_so_far", "Search", f"The best {search_metric} so far (the value the {method} search "
                 "optimizes), against trials run and against summed wall time",
                 lambda: figures.best_so_far(summary, search_metric)))
    return plan


def _render(fig, path: Path, fmt: str, dpi: int) -> tuple[bytes, str]:
    """Save the figure; return the bytes the report embeds (PDF is embedded as a PNG copy)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    data = buffer.getvalue()
    path.write_bytes(data)
    if fmt == "pdf":
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue(), MIME["png"]
    return data, MIME[fmt]


def render_findings(summary, sweep_dir: Path, metric: str = "test_accuracy", factor: str | None = None) -> str:
    """`mnist-sweep compare`'s findings on one sweep as an HTML list, escaped; when it has none, why."""
    from .compare import compare

    try:
        sentences = compare(summary, metric, factor, method=search_method(sweep_dir)).findings
    except (OptionError, ResultsError) as exc:
        return f"<p>No findings yet: {_e(exc)}.</p>"
    command = f"mnist-sweep compare {sweep_dir} --metric {metric}" + (f" --factor {factor}" if factor else "")
    return ("<ul>" + "".join(f"<li>{_e(s)}</li>" for s in sentences) + "</ul>"
            f"<p>Every number here comes from the tables of <code>{_e(command)}</code>.</p>")


def plot_sweep(sweep_dir: str | Path, metric: str = "test_accuracy", group_by: str | None = None,
               fmt: str = "png", dpi: int = 100, model_diagrams: bool = False) -> PlotOutcome:
    """Draw one sweep's figures into <sweep>/plots/ and write <sweep>/report.html, its findings at the top."""
    sweep_dir = Path(sweep_dir)
    outcome = PlotOutcome(sweep_dir)
    summary, histories = load_results(sweep_dir), load_histories(sweep_dir)
    if summary.empty:
        outcome.skipped.append(f"{sweep_dir.name}: no trials recorded yet, nothing to plot")
        return outcome
    plan, outcome.skipped = _plan(summary, histories, metric, group_by)
    plan += _search_plan(sweep_dir, summary, metric)
    out = sweep_dir / "plots"
    out.mkdir(exist_ok=True)
    for pattern in OWN_FILES:
        for old in out.glob(pattern):
            old.unlink()
    drawn = []
    for stem, section, caption, build in plan:
        fig = build()
        path = out / f"{stem}.{fmt}"
        image, mime = _render(fig, path, fmt, dpi)
        drawn.append(Drawn(path, section, caption, image, mime))
    records = read_records(sweep_dir)
    if model_diagrams:
        diagrams, notes = draw_model_diagrams(records, out, dpi)
        drawn += diagrams
        outcome.skipped += notes
    outcome.figures = [d.path for d in drawn]
    outcome.report = sweep_dir / "report.html"
    atomic_write(outcome.report, render_report(sweep_dir, summary, records, drawn, metric, outcome.skipped,
                                               render_findings(summary, sweep_dir, metric, group_by)))
    return outcome


def draw_model_diagrams(records: dict[str, dict], out: Path, dpi: int = 100) -> tuple[list[Drawn], list[str]]:
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
    architectures: dict[str, list[dict]] = {}
    for record in records.values():
        settings = record.get("settings") or {}
        if all(k in settings for k in ARCHITECTURE):
            key = json.dumps({k: settings[k] for k in ARCHITECTURE}, sort_keys=True, default=str)
            architectures.setdefault(key, []).append(record)
    from .backend import configure, get_keras
    from .models import build_model

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


# --- the HTML report ---------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1300px;
padding:0 1.2rem 3rem;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2rem}nav a{margin-right:1rem}section{margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem}td:first-child{white-space:nowrap}th,td{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f2f2f2;position:sticky;top:0;white-space:nowrap}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}table.sortable th[aria-sort=descending]::after{content:" ▼"}
tr.failed{background:#fde8e4}tr.diverged{background:#fff4d6}tr.running,tr.interrupted{background:#eef0f3}
.scroll{overflow-x:auto;max-height:38rem}figure{margin:1.5rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9rem}pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;font-size:.8rem}
.notes li{color:#7a4b00}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
"""

# Sort a table by the clicked header: numbers by value (from data-sort), text naturally, empty cells last.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (row) { var c = row.cells[col]; return c.hasAttribute("data-sort") ? c.getAttribute("data-sort") : c.textContent; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y, undefined, {numeric: true}) : nx - ny;
        return ascending ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

TABLE_COLUMNS = ("seed", "status", "test_accuracy", "val_accuracy", "train_accuracy", "test_loss", "val_loss",
                 "epochs_run", "best_epoch", "params", "wall_seconds", "seconds_per_epoch", "error")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _summary_table(summary, metric: str) -> str:
    import pandas as pd

    factors = [f for f in varying_factors(summary) if f != "sweep"]
    columns = ["trial_id", *factors, *(c for c in TABLE_COLUMNS if c in summary.columns)]
    if "seed" in columns and summary["seed"].nunique() < 2:
        columns.remove("seed")
    rows = summary.sort_values(metric, ascending=not higher_is_better(metric), na_position="last", kind="stable")
    head = "".join(f'<th scope="col" title="click to sort">{_e(c)}</th>' for c in columns)
    body = []
    for _, row in rows.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            numeric = pd.api.types.is_number(value) and not pd.api.types.is_bool(value)
            if numeric and pd.notna(value):
                cells.append(f'<td class="num" data-sort="{_e(value)}">{_e(format_cell(column, value))}</td>')
            elif pd.isna(value):
                cells.append('<td data-sort="">-</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        body.append(f'<tr class="{_e(row["status"])}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="sortable" id="summary"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _definitions(items: dict[str, Any]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items()) + "</dl>"


def _distinct(records, get: Callable[[dict], Any]) -> list[tuple[str, int]]:
    """Each distinct value (as JSON) among the records, with how many records have it."""
    counts: dict[str, int] = {}
    for record in records:
        value = get(record)
        if value:
            text = json.dumps(value, sort_keys=True, default=str)
            counts[text] = counts.get(text, 0) + 1
    return list(counts.items())


def _dataset_html(records) -> str:
    found = _distinct(records, lambda r: r.get("dataset"))
    if not found:
        return "<p>No trial recorded its dataset yet.</p>"
    parts = []
    for text, count in found:
        head = f"<p>Used by {count} trial(s):</p>" if len(found) > 1 else ""
        parts.append(head + _definitions(json.loads(text)))
    return "".join(parts)


def _environment_html(records) -> str:
    items: dict[str, Any] = {}
    for text, count in _distinct(records, lambda r: r.get("versions")):
        for key, value in json.loads(text).items():
            items.setdefault(key, set()).add(str(value))
    for key in ("device", "host"):
        items[key] = {str(r.get(key)) for r in records if r.get(key)}
    started = sorted(str(r["started_at"]) for r in records if r.get("started_at"))
    finished = sorted(str(r["finished_at"]) for r in records if r.get("finished_at"))
    items = {k: ", ".join(sorted(v)) for k, v in items.items() if v}
    if started:
        items["first trial started"] = started[0]
    if finished:
        items["last trial finished"] = finished[-1]
    return _definitions(items) if items else "<p>No environment recorded yet.</p>"


def _models_html(sweep_dir: Path, summary) -> str:
    """The Keras summary of each distinct architecture (model.txt), folded."""
    texts: dict[str, list[str]] = {}
    for trial_id in summary["trial_id"]:
        path = sweep_dir / "runs" / str(trial_id) / "model.txt"
        if path.exists():
            text = "\n".join(line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                             if "Optimizer params" not in line)
            texts.setdefault(text, []).append(str(trial_id))
    if not texts:
        return "<p>No model summaries (model.txt) yet.</p>"
    return "".join(f"<details><summary>Architecture {n}: {len(ids)} trial(s), e.g. {_e(ids[0])}</summary>"
                   f"<pre>{_e(text)}</pre></details>" for n, (text, ids) in enumerate(texts.items(), 1))


def render_report(sweep_dir: Path, summary, records: dict[str, dict], drawn: list[Drawn], metric: str,
                  notes: list[str], findings_html: str = "") -> str:
    """The report as one HTML page: figures embedded as data URIs, no external resource, all text escaped.

    `findings_html` is trusted HTML (`render_findings`) placed at the top, under the title.
    """
    name = summary["sweep"].iloc[0] if "sweep" in summary.columns else sweep_dir.name
    records = list(records.values())
    counts = summary["status"].value_counts()
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    best = summary[summary["status"] == "ok"].dropna(subset=[metric]) if metric in summary else summary.iloc[0:0]
    best_text = ""
    if len(best):
        top = best.sort_values(metric, ascending=not higher_is_better(metric)).iloc[0]
        best_text = (f" Best {_e(metric)}: <strong>{_e(format_cell(metric, top[metric]))}</strong> "
                     f"({_e(trial_labels(summary).loc[top.name])}).")
    sections: dict[str, list[Drawn]] = {}
    for figure in drawn:
        sections.setdefault(figure.section, []).append(figure)
    figures_html = []
    for section, figures in sections.items():
        figures_html.append(f"<h3>{_e(section)}</h3>")
        for f in figures:
            data = base64.b64encode(f.image).decode("ascii")
            figures_html.append(f'<figure><img src="data:{f.mime};base64,{data}" alt="{_e(f.caption)}" '
                                f'loading="eager"><figcaption>{_e(f.caption)} — <code>plots/{_e(f.path.name)}'
                                f"</code></figcaption></figure>")
    config_path = sweep_dir / "sweep.yaml"
    config_text = config_path.read_text(encoding="utf-8", errors="replace") if config_path.exists() else "(no sweep.yaml)"
    notes_html = ("<section id=\"skipped\"><h2>Skipped</h2><ul class=\"notes\">"
                  + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></section>") if notes else ""
    findings = f'<section id="findings"><h2>Findings</h2>{findings_html}</section>' if findings_html else ""
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(name)}: mnist-sweep report</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{_e(name)}</h1>
<p>{len(summary)} trials ({_e(status_text)}).{best_text} Generated {_e(generated)} by mnist-sweep from
<code>{_e(sweep_dir)}</code>.</p>
<nav>{'<a href="#findings">Findings</a>' if findings else ""}<a href="#summary-section">Summary</a>
<a href="#figures">Figures</a><a href="#config">Config</a><a href="#dataset">Dataset</a>
<a href="#environment">Environment</a><a href="#models">Models</a></nav>
</header>
<!-- findings: the statistics module's sentences go here -->
{findings}
{notes_html}
<section id="summary-section"><h2>Summary</h2>
<p>One row per trial, best {_e(metric)} first; click a column header to sort.</p>
{_summary_table(summary, metric)}
</section>
<section id="figures"><h2>Figures</h2>
{"".join(figures_html) or "<p>No figures could be drawn yet.</p>"}
</section>
<section id="config"><h2>Config</h2><pre>{_e(config_text)}</pre></section>
<section id="dataset"><h2>Dataset</h2>{_dataset_html(records)}</section>
<section id="environment"><h2>Environment</h2>{_environment_html(records)}</section>
<section id="models"><h2>Models</h2>{_models_html(sweep_dir, summary)}</section>
<script>{SORT_SCRIPT}</script>
</body>
</html>
"""
