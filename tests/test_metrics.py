"""One metric vocabulary: each metric's direction and range pinned, and every command taking the same
names with the same "did you mean" error for a typo."""

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from mnist_sweep import metrics
from mnist_sweep.report import plot as report, html as report_html
from mnist_sweep.analysis import stats, show as tables
from mnist_sweep.cli import cli
from mnist_sweep.results.store import load_histories, load_results
from tests.fake_results import write_sweep

# Which way is better, pinned: accuracies up; losses, times and counts (epochs, parameters) down.
HIGHER_IS_BETTER = {
    "test_accuracy": True, "val_accuracy": True, "train_accuracy": True,
    "test_loss": False, "val_loss": False, "train_loss": False,
    "wall_seconds": False, "fit_seconds": False, "seconds_per_epoch": False,
    "epochs_run": False, "best_epoch": False, "params": False,
}


def test_every_metric_has_its_pinned_direction_and_range():
    assert set(metrics.METRICS) == set(HIGHER_IS_BETTER)
    for name, higher in HIGHER_IS_BETTER.items():
        metric = metrics.get(name)
        assert metric.higher_is_better is higher and metrics.lower_is_better(name) is not higher, name
        assert metric.bounds == ((0.0, 1.0) if metric.kind == "accuracy" else (0.0, math.inf)), name
    assert metrics.METRICS[:2] == ("test_accuracy", "val_accuracy")  # the order users see them listed in


def test_sorting_puts_the_better_value_first_for_every_metric(tmp_path):
    summary = load_results(write_sweep(tmp_path, "sorted", seeds=2, ragged=True))
    for name, higher in HIGHER_IS_BETTER.items():
        values = tables.sort_rows(summary, name)[name].dropna().tolist()
        assert values == sorted(values, reverse=higher), name


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("vocabulary"), "demo", factors={"activation": ["relu", "tanh"]},
                       seeds=2, epochs=3, ragged=True)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("name", metrics.METRICS)
def test_show_and_compare_take_every_metric(sweep, name):
    for args in (["show", sweep, "--sort", name], ["show", sweep, "--trials", "--sort", name],
                 ["compare", sweep, "--metric", name, "--format", "json"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)


def test_plot_takes_every_metric_and_draws_a_count(sweep):
    for name in metrics.METRICS:
        report.check_options(name, None, "png")  # raises for a name it does not take
    summary, histories = load_results(sweep), load_histories(sweep)
    plan, _ = report._plan(summary, histories, "epochs_run", None)
    drawn = {figure.stem: figure.build() for figure in plan if figure.stem in ("effects", "epochs_run_vs_time")}
    assert sorted(drawn) == ["effects", "epochs_run_vs_time"]
    assert drawn["effects"].axes[0].get_ylabel() == "epochs run: level − best level"
    findings = report_html.render_findings(summary, sweep, "epochs_run")
    assert "epochs run" in findings and "--metric epochs_run" in findings


def test_a_mistyped_metric_gets_the_same_error_from_every_command(sweep):
    expected = ('unknown metric "tst_accuracy" (did you mean "test_accuracy"?); metrics: '
                + ", ".join(metrics.METRICS) + "\n")
    for args, option in ((["show", sweep, "--sort"], "--sort"), (["show", sweep, "--trials", "--sort"], "--sort"),
                         (["compare", sweep, "--metric"], "--metric"), (["plot", sweep, "--metric"], "--metric")):
        result = invoke(*args, "tst_accuracy")
        assert result.exit_code == 2 and result.stderr == f"Error: {option}: {expected}", args


def test_a_mistyped_setting_is_still_a_column_error_in_show(sweep):
    result = invoke("show", sweep, "--trials", "--sort", "activaton")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: --sort: no column "activaton" (did you mean "activation"?)')


def test_levels_are_listed_in_one_order_by_tables_and_statistics():
    assert metrics.level_order([0.02, 0.0, "none", 0.05, 0.0]) == [0.0, 0.02, 0.05, "none"]
    assert metrics.level_order(["relu", "0.5", "tanh", "0.1"]) == ["0.1", "0.5", "relu", "tanh"]
    assert metrics.level_order([True, False]) == [True, False]  # as the config lists them
    frame = pd.DataFrame({"trial_id": list("abcd"), "config_id": list("abcd"), "seed": 0, "status": "ok",
                          "kernel_l2": [0.02, 0.0, 0.05, 0.0], "test_accuracy": [0.9, 0.8, 0.85, 0.81]})
    effects = stats.main_effects(frame)
    assert list(effects["level"]) == [stats.level_text(v) for v in tables.setting_levels(frame, "kernel_l2")]
