"""`mnist-sweep plot` and report.html: every figure written, what is skipped said, the page self-contained,
escaped, and rendering in a real headless browser; the Python API on results the real runner wrote."""

import html
import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from mnist_sweep.analysis import compare
from mnist_sweep.report import plot as report, html as report_html
from mnist_sweep.cli import cli
from mnist_sweep.results.store import HISTORY_COLUMNS, load_histories, load_results
from tests.fake_results import write_sweep
from tests.helpers import tiny_config

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """`mnist-sweep plot` run once on a folder of two sweeps: one with a failed, a diverged and a
    still-running trial among 8; one with a single trial."""
    results = tmp_path_factory.mktemp("results")
    mixed = write_sweep(results, "mixed", factors={"activation": ["relu", "tanh"], "dropout": [0.0, 0.2]},
                        statuses={1: "failed", 2: "diverged", 3: "running"}, ragged=True)
    (mixed / "sweep.yaml").write_text("name: mixed\n# <script>alert('config')</script>\n")
    write_sweep(results, "single", factors={}, seeds=1)
    return results, plot(results)


def plot(*args):
    return CliRunner().invoke(cli, ["plot", *map(str, args)])


def test_plot_a_folder_writes_every_figure_and_a_report_per_sweep(plotted):
    results, result = plotted
    assert result.exit_code == 0, result.output
    mixed = sorted(p.name for p in (results / "mixed" / "plots").iterdir())
    with_history = [p.parent.name for p in (results / "mixed" / "runs").glob("*/history.csv")]
    assert len(with_history) == 7  # all but the failed trial
    assert mixed == sorted(["curves_activation.png", "curves_dropout.png", "effects.png", "overfitting_gap.png",
                            "seed_scores.png", "val_accuracy_vs_time.png", "wall_time.png",
                            *(f"history_{t}.png" for t in with_history)])  # chosen on validation accuracy
    single = sorted(p.name for p in (results / "single" / "plots").iterdir())
    assert single == ["history_trial-s0-00000000.png", "overfitting_gap.png", "val_accuracy_vs_time.png",
                      "wall_time.png"]
    assert (results / "mixed" / "report.html").exists() and (results / "single" / "report.html").exists()
    assert f"{results / 'mixed'}: 14 figures in {results / 'mixed' / 'plots'}" in result.stdout


def test_plot_says_what_it_skipped_and_why(plotted):
    _, result = plotted
    skipped = [line for line in result.stderr.splitlines() if line.startswith("Skipped")]
    assert any(line.startswith("Skipped (mixed): 1 failed trial(s) left out") for line in skipped)
    assert any("1 diverged trial(s)" in line for line in skipped)
    assert any("1 running trial(s) left out of the comparisons (still training" in line for line in skipped)
    assert ("Skipped (single): no setting varies among the finished trials: learning curves per setting and "
            "setting effects skipped") in skipped


def test_many_trials_share_grid_pages_instead_of_a_file_each(tmp_path):
    sweep = write_sweep(tmp_path, "many", factors={"activation": ["relu", "tanh"], "dropout": [0.0, 0.1, 0.2]},
                        seeds=7, epochs=4)
    plan, _ = report._plan(load_results(sweep), load_histories(sweep), "test_accuracy", None)
    histories = [stem for stem, *_ in plan if stem.startswith("history")]
    assert histories == ["history_grid_1", "history_grid_2"]  # 42 trials, 36 per page


def test_group_by_format_and_dpi(tmp_path):
    sweep = write_sweep(tmp_path, "two", factors={"activation": ["relu", "tanh"], "dropout": [0.0, 0.2]}, seeds=1)
    result = plot(sweep, "--group-by", "dropout", "--format", "svg", "--dpi", 50)
    assert result.exit_code == 0, result.output
    names = {p.name for p in (sweep / "plots").iterdir()}
    assert "curves_dropout.svg" in names and "curves_activation.svg" not in names
    assert all(name.endswith(".svg") for name in names)
    assert "data:image/svg+xml;base64," in (sweep / "report.html").read_text()


def test_plot_rejects_unknown_metric_and_settings_as_bad_input(plotted):
    results, _ = plotted
    bad_metric = plot(results, "--metric", "tst_accuracy")
    assert bad_metric.exit_code == 2
    assert bad_metric.stderr.startswith('Error: --metric: unknown metric "tst_accuracy" (did you mean '
                                        '"test_accuracy"?); metrics: test_accuracy, val_accuracy')
    bad_setting = plot(results, "--group-by", "dropuot")
    assert bad_setting.exit_code == 2 and '(did you mean "dropout"?)' in bad_setting.stderr
    constant = plot(results / "single", "--group-by", "dropout")
    assert constant.exit_code == 2
    assert constant.stderr == ('Error: --group-by: "dropout" does not vary among the finished trials of single; '
                               "varying settings: none\n")


def test_plot_on_missing_or_empty_results_fails_plainly(tmp_path):
    assert plot(tmp_path / "nope").stderr.startswith(f"Error: no results at {tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sweep.yaml").write_text("name: empty\n")
    result = plot(tmp_path / "empty")
    assert result.exit_code == 1
    assert "Skipped (empty): empty: no trials recorded yet, nothing to plot" in result.stderr
    assert f"Error: nothing to plot in {tmp_path / 'empty'}" in result.stderr


def test_report_is_self_contained_escaped_and_has_every_section(plotted):
    results, result = plotted
    page = (results / "mixed" / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 14 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network
    assert "&lt;script&gt;alert(&#x27;config&#x27;)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "ValueError: &lt;bad&gt; shape &amp; size" in page
    for section in ('id="summary"', 'id="config"', 'id="dataset"', 'id="environment"', 'id="models"',
                    "synthetic test data", "test-host", "<!-- findings"):
        assert section in page
    rows = re.findall(r'<tr class="(\w+)">', page)
    assert len(rows) == 8 and rows.count("failed") == rows.count("running") == rows.count("diverged") == 1


def test_the_header_names_the_best_trial_by_validation_accuracy_with_its_test_accuracy(tmp_path):
    sweep = write_sweep(tmp_path, "ranked", factors={"activation": ["relu", "tanh", "sigmoid"]}, seeds=1)
    summary = load_results(sweep)
    summary["test_accuracy"] = 1.5 - summary["val_accuracy"]  # the test set would pick another trial
    page = report_html.render_report(sweep, summary, {}, [], [])
    header = page[page.index("<header>"):page.index("</header>")]
    best = summary.loc[summary["val_accuracy"].idxmax()]
    assert (f"Best by validation accuracy: <strong>{best['val_accuracy']:.4f}</strong>, test accuracy "
            f"{best['test_accuracy']:.4f} (activation={best['activation']})") in header
    assert ("Trials are ranked by validation accuracy, as the saved best model is chosen; test accuracy is shown "
            "beside it, never used to choose.") in header
    table = page[page.index('id="summary"'):]
    first = [t for t in summary.sort_values("val_accuracy", ascending=False)["trial_id"]]
    assert sorted(first, key=table.index) == first  # the table is ranked the same way


def test_findings_go_at_the_top_of_the_report(plotted):
    results, _ = plotted
    sweep = results / "single"
    page = report_html.render_report(sweep, load_results(sweep), {}, [], [],
                                findings_html="<p id='f'>relu beats tanh</p>")
    assert page.index("<!-- findings") < page.index("<p id='f'>relu beats tanh</p>") < page.index('id="summary"')
    assert 'id="findings"' not in report_html.render_report(sweep, load_results(sweep), {}, [], [])


def _findings_section(page: str) -> str:
    return page[page.index('<section id="findings">'):page.index("</section>", page.index('<section id="findings">'))]


def test_the_report_starts_with_compares_findings_escaped(plotted):
    results, _ = plotted
    page = (results / "mixed" / "report.html").read_text()
    sentences = compare.findings(load_results(results / "mixed"))
    section = _findings_section(page)
    assert page.index("</header>") < page.index('<section id="findings">') < page.index('id="skipped"')
    assert section.count("<li>") == len(sentences) and '<a href="#findings">Findings</a>' in page
    for sentence in sentences:
        assert f"<li>{html.escape(sentence)}</li>" in section
    assert sentences[0] == "5 of 8 trials count: 3 were excluded (1 failed, 1 diverged, 1 running)."
    assert f"<code>mnist-sweep compare {results / 'mixed'}</code>" in section  # the default: validation


def test_findings_are_escaped_and_follow_the_metric(tmp_path):
    sweep = write_sweep(tmp_path, "clear", factors={"activation": ["relu", "tanh", "sigmoid"]}, seeds=3)
    summary = load_results(sweep)
    section = report_html.render_findings(summary, sweep, "test_loss")
    sentences = compare.findings(summary, "test_loss")
    assert any("p < 0.001" in s for s in sentences) and "p &lt; 0.001" in section and "p < 0.001" not in section
    assert all(html.escape(s) in section for s in sentences)


def test_a_one_seed_sweep_gets_the_one_seed_finding(plotted):
    results, _ = plotted
    section = _findings_section((results / "single" / "report.html").read_text())
    assert "No interval can be given with 1 seed per configuration" in section


def test_a_sweep_without_finished_trials_says_why_it_has_no_findings(tmp_path):
    sweep = write_sweep(tmp_path, "early", factors={"activation": ["relu", "tanh"]}, seeds=1,
                        statuses={0: "running", 1: "failed"})
    assert plot(sweep).exit_code == 0
    section = _findings_section((sweep / "report.html").read_text())
    assert "<li>" not in section
    assert ("No findings yet: none of the 2 trials finished with a val_accuracy (1 running, 1 failed): "
            "nothing to compare.") in section


def test_model_diagrams_without_graphviz_say_how_to_install_it_and_go_on(tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path, "single", factors={}, seeds=1)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = plot(sweep, "--model-diagrams")
    assert result.exit_code == 0
    assert "model diagrams skipped: they need" in result.stderr
    assert "graphviz (apt-get install graphviz, or brew install graphviz)" in result.stderr
    assert (sweep / "report.html").exists()


def find_browser():
    for name in (os.environ.get("MNIST_SWEEP_BROWSER"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


# Injected first in <head>: records script errors, failed loads and console errors, then after `load`
# checks every image decoded and that clicking a header sorts the table both ways; writes JSON to the DOM.
PROBE = """<script>
window.__problems = [];
addEventListener("error", function (e) { __problems.push("error: " + (e.message || (e.target && String(e.target.src).slice(0, 60)))); }, true);
addEventListener("unhandledrejection", function (e) { __problems.push("rejection: " + e.reason); });
document.addEventListener("securitypolicyviolation", function (e) { __problems.push("csp: " + e.blockedURI); });
["error", "warn"].forEach(function (k) { var f = console[k]; console[k] = function () { __problems.push(k + ": " + Array.prototype.join.call(arguments, " ")); f.apply(console, arguments); }; });
addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var header = Array.prototype.slice.call(document.querySelectorAll("#summary th")).filter(function (th) { return th.textContent === "wall_seconds"; })[0];
  var column = Array.prototype.indexOf.call(header.parentNode.children, header);
  var values = function () { return Array.prototype.map.call(document.querySelectorAll("#summary tbody tr"), function (r) { return r.cells[column].getAttribute("data-sort"); }); };
  header.click(); var up = values(); header.click(); var down = values();
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({images: images.length, broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; }),
    problems: __problems, ascending: up, descending: down});
  document.body.appendChild(out);
});
</script>"""


def test_report_renders_in_a_headless_browser_with_all_images_and_no_errors(plotted, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser found: install Debian's chromium (apt-get install chromium) "
                    "or set MNIST_SWEEP_BROWSER to a Chrome or Chromium binary")
    results, _ = plotted
    probed = tmp_path / "probed.html"
    probed.write_text((results / "mixed" / "report.html").read_text().replace("<head>", "<head>" + PROBE, 1))
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=15000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the page never finished loading:\n{done.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["images"] == 14 and probe["broken"] == []
    assert probe["problems"] == []
    assert [line for line in done.stderr.splitlines() if ":CONSOLE" in line] == []
    numbers = [float(v) for v in probe["ascending"] if v]
    assert numbers == sorted(numbers) and probe["ascending"][-1] == ""  # empty cells last
    assert [float(v) for v in probe["descending"] if v] == sorted(numbers, reverse=True)


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    """A two-trial sweep trained by the real runner on the bundled MNIST subset."""
    from mnist_sweep.sweep.runner import run_sweep

    out = tmp_path_factory.mktemp("real")
    config = tiny_config(name="real", model={"hidden": [8], "activation": ["relu", "tanh"]})
    summary = run_sweep(config, out=out)
    return out / "real", summary


@pytest.mark.slow
@pytest.mark.keras
def test_load_results_and_histories_read_what_the_runner_wrote(real_results):
    sweep, returned = real_results
    summary = load_results(sweep)
    assert list(summary["activation"]) == ["relu", "tanh"] and list(summary["status"]) == ["ok", "ok"]
    assert summary.equals(returned)
    assert summary["test_accuracy"].between(0, 1).all() and (summary["wall_seconds"] > 0).all()
    histories = load_histories(sweep)
    assert list(histories.columns) == ["sweep", "trial_id", *HISTORY_COLUMNS]
    assert len(histories) == 4 and set(histories["trial_id"]) == set(summary["trial_id"])
    assert list(histories.groupby("trial_id")["epoch"].apply(list)) == [[1, 2], [1, 2]]
    assert set(load_results(sweep.parent)["sweep"]) == {"real"}


@pytest.mark.slow
@pytest.mark.keras
def test_plot_draws_results_the_runner_wrote(real_results):
    sweep, _ = real_results
    result = plot(sweep)
    assert result.exit_code == 0, result.output
    names = {p.name for p in (sweep / "plots").iterdir()}
    assert {"curves_activation.png", "effects.png", "wall_time.png", "overfitting_gap.png"} <= names
    page = (sweep / "report.html").read_text()
    assert "bundled" in page and "keras" in page and "Total params" in page


def test_a_sweep_killed_before_its_first_summary_still_plots_and_shows(tmp_path):
    sweep = write_sweep(tmp_path, "early", factors={"activation": ["relu", "tanh"]}, seeds=1,
                        statuses={0: "running", 1: "running"})
    (sweep / "summary.csv").unlink()  # load_results rebuilds the rows from trial.json, without metric columns
    result = plot(sweep)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (sweep / "plots").iterdir()) == [
        "history_relu-s0-00000000.png", "history_tanh-s0-00010000.png"]
    assert "2 running trial(s) left out of the comparisons" in result.stderr
    shown = CliRunner().invoke(cli, ["show", str(sweep), "--trials", "--format", "csv"])
    assert shown.exit_code == 0 and shown.stdout.count(",running") == 2
    configs = CliRunner().invoke(cli, ["show", str(sweep), "--format", "csv"])
    assert configs.exit_code == 0 and configs.stdout.count(",1 running,") == 2
