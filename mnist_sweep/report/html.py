"""report.html: one self-contained page per sweep (figures embedded, no external resource, all text
escaped) with compare's findings at the top, then the config, dataset, environment, a sortable summary
table and every figure. `report.py` decides what to draw and draws it; this module only writes HTML.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from ..results import containment
from ..errors import OptionError, ResultsError
from ..metrics import title
from ..analysis.race import describe as describe_race, read_race
from ..results.store import search_method
from ..analysis.show import by_validation, format_cell, trial_labels, varying_columns
from ..records import Status, TrialRecord

MIME = {"png": "image/png", "svg": "image/svg+xml"}


@dataclass
class Drawn:
    """One figure written to plots/, with what the report shows for it."""

    path: Path
    section: str
    caption: str
    image: bytes  # PNG or SVG bytes to embed
    mime: str


def render_findings(summary, sweep_dir: Path, metric: str | None = None, setting: str | None = None) -> str:
    """`mnist-sweep compare`'s findings on one sweep as an HTML list, escaped; when it has none, why.
    Chosen on validation accuracy unless `metric` says otherwise, with the sweep's smallest_difference."""
    from ..analysis.compare import compare, sweep_margin
    from ..analysis.stats import selection_metric

    chosen = metric or selection_metric(summary)
    try:
        sentences = compare(summary, chosen, setting, method=search_method(sweep_dir),
                            smallest_difference=sweep_margin(sweep_dir, chosen)).findings
    except (OptionError, ResultsError) as exc:
        return f"<p>No findings yet: {_e(exc)}.</p>"
    command = (f"mnist-sweep compare {sweep_dir}" + (f" --metric {metric}" if metric else "")
               + (f" --setting {setting}" if setting else ""))
    race = read_race(sweep_dir)
    sentences = sentences + ([describe_race(race)] if race is not None else [])
    return ("<ul>" + "".join(f"<li>{_e(s)}</li>" for s in sentences) + "</ul>"
            f"<p>Every number here comes from the tables of <code>{_e(command)}</code>.</p>")


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


def _summary_table(summary) -> str:
    import pandas as pd

    settings = [f for f in varying_columns(summary) if f != "sweep"]
    columns = ["trial_id", *settings, *(c for c in TABLE_COLUMNS if c in summary.columns)]
    if "seed" in columns and summary["seed"].nunique() < 2:
        columns.remove("seed")
    rows, _ = by_validation(summary)
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
    for text, _count in _distinct(records, lambda r: r.get("versions")):
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
        if not containment.plain_name(str(trial_id)):  # a summary row naming "../x" names nothing of this sweep
            continue
        text = _read(sweep_dir, sweep_dir / "runs" / str(trial_id) / "model.txt")
        if text is not None:
            text = "\n".join(line for line in text.splitlines() if "Optimizer params" not in line)
            texts.setdefault(text, []).append(str(trial_id))
    if not texts:
        return "<p>No model summaries (model.txt) yet.</p>"
    return "".join(f"<details><summary>Architecture {n}: {len(ids)} trial(s), e.g. {_e(ids[0])}</summary>"
                   f"<pre>{_e(text)}</pre></details>" for n, (text, ids) in enumerate(texts.items(), 1))


def _read(sweep_dir: Path, path: Path) -> str | None:
    """A results file's text, or None when it is missing, unreadable, or reached through a link (`plot` has
    named those in its warnings): the page never quotes a file from outside the sweep."""
    try:
        return containment.read_text(sweep_dir, path)
    except (OSError, ResultsError):
        return None


def _best_html(summary) -> tuple[str, str, str]:
    """The header's best trial, ranked as the saved best model is (`tables.by_validation`), with its test
    accuracy beside it; the line saying how it was ranked; and the accuracy that ranked it."""
    finished = summary[summary["status"] == Status.OK] if "status" in summary.columns else summary
    ranked, accuracy = by_validation(finished)
    if ranked.empty or accuracy not in ranked.columns or ranked[accuracy].isna().all():
        return "", "", accuracy
    top = ranked.iloc[0]
    test = (f", {title('test_accuracy')} {_e(format_cell('test_accuracy', top['test_accuracy']))}"
            if "test_accuracy" in ranked.columns else "")
    best = (f" Best by {_e(title(accuracy))}: <strong>{_e(format_cell(accuracy, top[accuracy]))}</strong>{test} "
            f"({_e(trial_labels(summary).loc[top.name])}).")
    how = (f'<p class="ranking">Trials are ranked by {_e(title(accuracy))}, as the saved best model is chosen; '
           "test accuracy is shown beside it, never used to choose.</p>")
    return best, how, accuracy


def render_report(sweep_dir: Path, summary, records: Mapping[str, TrialRecord], drawn: list[Drawn], notes: list[str],
                  findings_html: str = "") -> str:
    """The report as one HTML page: figures embedded as data URIs, no external resource, all text escaped.

    `findings_html` is trusted HTML (`render_findings`) placed at the top, under the title.
    """
    name = summary["sweep"].iloc[0] if "sweep" in summary.columns else sweep_dir.name
    runs = list(records.values())
    counts = summary["status"].value_counts()
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    best_text, ranking, ranked_by = _best_html(summary)
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
    config_text = _read(sweep_dir, sweep_dir / "sweep.yaml")
    config_text = "(no readable sweep.yaml)" if config_text is None else config_text
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
{ranking}
<nav>{'<a href="#findings">Findings</a>' if findings else ""}<a href="#summary-section">Summary</a>
<a href="#figures">Figures</a><a href="#config">Config</a><a href="#dataset">Dataset</a>
<a href="#environment">Environment</a><a href="#models">Models</a></nav>
</header>
<!-- findings: the statistics module's sentences go here -->
{findings}
{notes_html}
<section id="summary-section"><h2>Summary</h2>
<p>One row per trial, best {_e(title(ranked_by))} first; click a column header to sort.</p>
{_summary_table(summary)}
</section>
<section id="figures"><h2>Figures</h2>
{"".join(figures_html) or "<p>No figures could be drawn yet.</p>"}
</section>
<section id="config"><h2>Config</h2><pre>{_e(config_text)}</pre></section>
<section id="dataset"><h2>Dataset</h2>{_dataset_html(runs)}</section>
<section id="environment"><h2>Environment</h2>{_environment_html(runs)}</section>
<section id="models"><h2>Models</h2>{_models_html(sweep_dir, summary)}</section>
<script>{SORT_SCRIPT}</script>
</body>
</html>
"""
