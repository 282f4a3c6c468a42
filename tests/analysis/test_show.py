"""`mnist-sweep show`: one row per configuration (mean and 95% CI of its seeds) or per trial (--trials);
rows, order, filters, formats, and how unfinished trials are marked and counted."""

import io
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from mnist_sweep.analysis import stats, show as tables
from mnist_sweep.cli import cli
from mnist_sweep.results.store import load_results
from tests.fake_results import write_sweep

T2 = 4.302653  # t quantile 0.975 with 2 df


@pytest.fixture
def sweep(tmp_path):
    """12 trials: 3 activations x 2 dropouts x 2 seeds; trial 1 failed, 2 diverged, 3 still running."""
    return write_sweep(tmp_path, "mixed", statuses={1: "failed", 2: "diverged", 3: "running"})


def show(*args):
    return CliRunner().invoke(cli, ["show", *map(str, args)])


# ---------------------------------------------------------------- one row per configuration (the default)

@pytest.fixture
def two_configs(tmp_path):
    """2 configurations x 3 seeds: relu and tanh."""
    return write_sweep(tmp_path, "pair", factors={"activation": ["relu", "tanh"]}, seeds=3)


def by_hand(values):
    """Mean and the 95% t-interval of three values, worked out without the library."""
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    return mean, sd, mean - T2 * sd / math.sqrt(3), mean + T2 * sd / math.sqrt(3)


def test_configurations_are_the_mean_and_ci_of_their_seeds(two_configs):
    trials = load_results(two_configs)
    frame = pd.read_csv(io.StringIO(show(two_configs, "--format", "csv").stdout))
    assert list(frame.columns[:3]) == ["config_id", "activation", "n_seeds"]
    assert list(frame["activation"]) == ["tanh", "relu"] and list(frame["n_seeds"]) == [3, 3]  # best mean first
    for _, row in frame.iterrows():
        seeds = trials[trials["activation"] == row["activation"]]
        for metric in ("test_accuracy", "val_accuracy", "epochs_run", "wall_seconds"):
            expected = by_hand(list(seeds[metric]))  # epochs_run: all equal, so SD 0 and the interval is the mean
            got = row[[f"{metric}_mean", f"{metric}_sd", f"{metric}_ci_low", f"{metric}_ci_high"]]
            assert got.tolist() == pytest.approx(expected, rel=1e-6), metric
    assert "excluded" not in frame.columns  # nothing was left out


def test_the_table_shows_mean_plus_minus_the_ci_half_width(two_configs):
    result = show(two_configs)
    assert result.exit_code == 0, result.output
    assert "pair: 2 of 2 configurations, sorted by mean val_accuracy; ± is the 95% CI across seeds" in result.stdout
    tanh = load_results(two_configs).query("activation == 'tanh'")
    mean, _, _, high = by_hand(list(tanh["test_accuracy"]))
    row = next(line for line in result.stdout.splitlines() if "tanh" in line)
    assert f"{mean:.4f} ± {high - mean:.4f}" in row and "│     3 │" in row
    markdown = show(two_configs, "--format", "markdown").stdout.splitlines()
    assert markdown[0] == ("| config_id | activation | n_seeds | test_accuracy | val_accuracy | epochs_run "
                           "| wall_seconds |")
    assert f"| {mean:.4f} ± {high - mean:.4f} |" in markdown[2]


def test_configurations_use_summarize_configs_and_sort_top_where_work(sweep):
    trials = load_results(sweep)
    frame = tables.select_configs(trials, sort="wall_seconds", top=4, where=["dropout=0.2", "dropout=0"])
    expected = stats.summarize_configs(trials, list(tables.CONFIG_METRICS)).sort_values("wall_seconds_mean")
    assert list(frame["config_id"]) == list(expected["config_id"].head(4))
    assert frame["wall_seconds_mean"].tolist() == pytest.approx(expected["wall_seconds_mean"].head(4).tolist())
    relu = json.loads(show(sweep, "--where", "activation=relu", "--format", "json").stdout)
    assert {r["activation"] for r in relu} == {"relu"} and len(relu) == 2
    by_loss = pd.read_csv(io.StringIO(show(sweep, "--sort", "test_loss", "--format", "csv").stdout))
    assert "test_loss_mean" in by_loss.columns  # a metric not shown by default is summarized to sort by it
    assert list(by_loss["test_loss_mean"].dropna()) == sorted(by_loss["test_loss_mean"].dropna())


def test_unfinished_trials_are_left_out_of_the_means_and_counted(sweep):
    result = show(sweep, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False).set_index("config_id")
    assert len(frame) == 6 and frame["n_seeds"].sum() == 9
    assert sorted(v for v in frame["excluded"] if v) == ["1 diverged", "1 failed", "1 running"]
    failed = frame[frame["excluded"] == "1 failed"].iloc[0]
    trials = load_results(sweep)
    ok = trials[(trials["config_id"] == failed.name) & (trials["status"] == "ok")]
    assert failed["n_seeds"] == 1 and float(failed["test_accuracy_mean"]) == pytest.approx(ok["test_accuracy"].iloc[0])
    assert failed["test_accuracy_ci_low"] == ""  # one seed: no interval, not NaN
    assert "1 failed trial(s): no metrics" in result.stderr
    assert "left out of the means (--trials lists them)" in result.stderr
    assert "✗ failed" in show(sweep, "--trials").stdout


def test_one_seed_per_configuration_gives_values_and_says_no_interval(tmp_path):
    sweep = write_sweep(tmp_path, "once", seeds=1)
    result = show(sweep)
    assert result.exit_code == 0 and "±" not in result.stdout and "nan" not in result.stdout.lower()
    assert "Note: 1 finished seed per configuration: no interval can be given" in result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("│")]) == 6


def test_sorting_configurations_by_a_per_trial_column_says_to_use_trials(sweep):
    result = show(sweep, "--sort", "seed")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: --sort: "seed" differs between the trials of a configuration')
    assert result.stderr.rstrip().endswith("or add --trials")
    typo = show(sweep, "--sort", "test_acuracy")
    assert typo.exit_code == 2 and '(did you mean "test_accuracy"?)' in typo.stderr


# ---------------------------------------------------------------- one row per trial (--trials)

def test_table_lists_every_trial_best_first_with_unfinished_ones_marked(sweep):
    result = show(sweep, "--trials")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "mixed: 12 of 12 trials, sorted by val_accuracy" in lines[0]
    assert "✗ failed" in result.stdout and "⚠ diverged" in result.stdout and "… running" in result.stdout
    assert "ValueError: <bad> shape & size" in result.stdout  # the failed trial's error
    assert "Note: 1 failed trial(s): no metrics" in result.stderr
    assert "Note: 1 running trial(s): still training" in result.stderr
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 12
    assert "✗ failed" in body[-1] or "… running" in body[-1] or "⚠ diverged" in body[-1]


def test_csv_is_sorted_by_test_accuracy_with_trials_without_it_last(sweep):
    result = show(sweep, "--trials", "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["trial_id", "activation", "dropout", "seed", "test_accuracy", "val_accuracy",
                                   "epochs_run", "wall_seconds", "status", "error"]
    scored = frame["test_accuracy"].dropna()
    assert list(scored) == sorted(scored, reverse=True)
    assert frame["test_accuracy"].isna().sum() == 3 and frame["test_accuracy"].iloc[-3:].isna().all()
    assert result.stderr and "Note:" not in result.stdout  # notes never pollute piped output


def test_sort_by_time_is_fastest_first_and_top_keeps_n(sweep):
    result = show(sweep, "--trials", "--sort", "wall_seconds", "--top", 3, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert len(frame) == 3
    assert list(frame["wall_seconds"]) == sorted(frame["wall_seconds"])


def test_where_keeps_matching_trials_any_value_of_a_key_all_keys(sweep):
    result = show(sweep, "--trials", "--where", "activation=relu", "--where", "activation=TANH", "--where",
                  "dropout=0.2", "--format", "json")
    rows = json.loads(result.stdout)
    assert {(r["activation"], r["dropout"]) for r in rows} == {("relu", 0.2), ("tanh", 0.2)}
    assert len(rows) == 4
    assert all(r["test_accuracy"] is None or isinstance(r["test_accuracy"], float) for r in rows)


def test_markdown_has_a_header_and_one_row_per_trial(sweep):
    result = show(sweep, "--trials", "--format", "markdown", "--where", "status=ok")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| trial_id | activation | dropout | seed | test_accuracy |")
    assert lines[1].startswith("|---|---|---:|---:|---:|")
    assert len(lines) == 2 + 9


def test_unknown_sort_column_is_bad_input_with_a_suggestion(sweep):
    result = show(sweep, "--trials", "--sort", "test_acuracy")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: --sort: unknown metric "test_acuracy" (did you mean "test_accuracy"?)')


def test_where_value_no_trial_has_is_bad_input_listing_the_values(sweep):
    result = show(sweep, "--where", "activation=rleu")
    assert result.exit_code == 2
    assert result.stderr == ('Error: --where: no trial has activation=rleu (did you mean "relu"?); '
                             "activation values: relu, tanh, sigmoid\n")
    assert show(sweep, "--where", "activation").stderr.startswith('Error: --where: "activation" is not KEY=VALUE')


def test_a_folder_of_sweeps_shows_which_sweep_each_trial_is_from(tmp_path):
    write_sweep(tmp_path, "one", seeds=1)
    write_sweep(tmp_path, "two", factors={}, seeds=1)
    frame = pd.read_csv(io.StringIO(show(tmp_path, "--trials", "--format", "csv").stdout))
    assert frame.columns[1] == "sweep" and set(frame["sweep"]) == {"one", "two"}
    configs = pd.read_csv(io.StringIO(show(tmp_path, "--format", "csv").stdout))
    assert configs.columns[1] == "sweep" and len(configs) == 6 + 1


def test_single_trial_sweep_and_missing_results(tmp_path):
    sweep = write_sweep(tmp_path, "single", factors={}, seeds=1)
    for args in (["--trials"], []):
        result = show(sweep, "--format", "csv", *args)
        assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    missing = show(tmp_path / "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"Error: no results at {tmp_path / 'nope'}")


def test_select_accepts_a_summary_a_notebook_loaded(sweep):
    rows = tables.select(load_results(sweep), sort="val_accuracy", top=2, where=["dropout=0"])
    assert list(rows["dropout"]) == [0.0, 0.0]
    assert rows["val_accuracy"].is_monotonic_decreasing


def test_show_has_help_with_examples_of_both_views():
    result = CliRunner().invoke(cli, ["show", "--help"])
    assert result.exit_code == 0 and "mnist-sweep show results/regularization --trials" in result.output


def test_importing_the_cli_loads_neither_pandas_nor_matplotlib_nor_scipy():
    code = ("import sys, mnist_sweep.cli; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'scipy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_after_a_run_configurations_are_ranked_by_validation_not_test_accuracy(tmp_path):
    sweep = write_sweep(tmp_path, "ranked", factors={"activation": ["relu", "tanh", "sigmoid"]}, seeds=2)
    summary = pd.read_csv(sweep / "summary.csv")
    summary["test_accuracy"] = 1.5 - summary["val_accuracy"]  # the test set would rank them the other way round
    summary.to_csv(sweep / "summary.csv", index=False)
    shown = tables.after_run(sweep, top=2)
    assert shown.rows == 2 and shown.body.title.startswith("Top 2 of 3 configurations by validation accuracy")
    best = summary.groupby("activation")["val_accuracy"].mean().sort_values(ascending=False)
    assert [cell for cell in shown.body.columns[0].cells] == list(best.index[:2])
    assert shown.notes[0] == "Next:" and shown.notes[1].startswith(f"mnist-sweep show {sweep} ")
