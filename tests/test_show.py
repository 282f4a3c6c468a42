"""`mnist-sweep show`: rows, order, filters, formats, and how unfinished trials are marked."""

import io
import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from mnist_sweep import tables
from mnist_sweep.cli import cli
from mnist_sweep.store import load_results
from tests.fake_results import write_sweep


@pytest.fixture
def sweep(tmp_path):
    """12 trials: 3 activations x 2 dropouts x 2 seeds; trial 1 failed, 2 diverged, 3 still running."""
    return write_sweep(tmp_path, "mixed", statuses={1: "failed", 2: "diverged", 3: "running"})


def show(*args):
    return CliRunner().invoke(cli, ["show", *map(str, args)])


def test_table_lists_every_trial_best_first_with_unfinished_ones_marked(sweep):
    result = show(sweep)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "mixed: 12 of 12 trials, sorted by test_accuracy" in lines[0]
    assert "✗ failed" in result.stdout and "⚠ diverged" in result.stdout and "… running" in result.stdout
    assert "ValueError: <bad> shape & size" in result.stdout  # the failed trial's error
    assert "Note: 1 failed trial(s): no metrics" in result.stderr
    assert "Note: 1 running trial(s): still training" in result.stderr
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 12
    assert "✗ failed" in body[-1] or "… running" in body[-1] or "⚠ diverged" in body[-1]


def test_csv_is_sorted_by_test_accuracy_with_trials_without_it_last(sweep):
    result = show(sweep, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["trial_id", "activation", "dropout", "seed", "test_accuracy", "val_accuracy",
                                   "epochs_run", "wall_seconds", "status", "error"]
    scored = frame["test_accuracy"].dropna()
    assert list(scored) == sorted(scored, reverse=True)
    assert frame["test_accuracy"].isna().sum() == 3 and frame["test_accuracy"].iloc[-3:].isna().all()
    assert result.stderr and "Note:" not in result.stdout  # notes never pollute piped output


def test_sort_by_time_is_fastest_first_and_top_keeps_n(sweep):
    frame = pd.read_csv(io.StringIO(show(sweep, "--sort", "wall_seconds", "--top", 3, "--format", "csv").stdout))
    assert len(frame) == 3
    assert list(frame["wall_seconds"]) == sorted(frame["wall_seconds"])


def test_where_keeps_matching_trials_any_value_of_a_key_all_keys(sweep):
    result = show(sweep, "--where", "activation=relu", "--where", "activation=TANH", "--where", "dropout=0.2",
                  "--format", "json")
    rows = json.loads(result.stdout)
    assert {(r["activation"], r["dropout"]) for r in rows} == {("relu", 0.2), ("tanh", 0.2)}
    assert len(rows) == 4
    assert all(r["test_accuracy"] is None or isinstance(r["test_accuracy"], float) for r in rows)


def test_markdown_has_a_header_and_one_row_per_trial(sweep):
    result = show(sweep, "--format", "markdown", "--where", "status=ok")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| trial_id | activation | dropout | seed | test_accuracy |")
    assert lines[1].startswith("|---|---|---:|---:|---:|")
    assert len(lines) == 2 + 9


def test_unknown_sort_column_is_bad_input_with_a_suggestion(sweep):
    result = show(sweep, "--sort", "test_acuracy")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: --sort: no column "test_acuracy" (did you mean "test_accuracy"?)')


def test_where_value_no_trial_has_is_bad_input_listing_the_values(sweep):
    result = show(sweep, "--where", "activation=rleu")
    assert result.exit_code == 2
    assert result.stderr == ('Error: --where: no trial has activation=rleu (did you mean "relu"?); '
                             "activation values: relu, tanh, sigmoid\n")
    assert show(sweep, "--where", "activation").stderr.startswith('Error: --where: "activation" is not KEY=VALUE')


def test_a_folder_of_sweeps_shows_which_sweep_each_trial_is_from(tmp_path):
    write_sweep(tmp_path, "one", seeds=1)
    write_sweep(tmp_path, "two", factors={}, seeds=1)
    frame = pd.read_csv(io.StringIO(show(tmp_path, "--format", "csv").stdout))
    assert frame.columns[1] == "sweep" and set(frame["sweep"]) == {"one", "two"}


def test_single_trial_sweep_and_missing_results(tmp_path):
    sweep = write_sweep(tmp_path, "single", factors={}, seeds=1)
    result = show(sweep, "--format", "csv")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    missing = show(tmp_path / "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"Error: no results at {tmp_path / 'nope'}")


def test_select_accepts_a_summary_a_notebook_loaded(sweep):
    rows = tables.select(load_results(sweep), sort="val_accuracy", top=2, where=["dropout=0"])
    assert list(rows["dropout"]) == [0.0, 0.0]
    assert rows["val_accuracy"].is_monotonic_decreasing


def test_importing_the_cli_loads_neither_pandas_nor_matplotlib():
    code = "import sys, mnist_sweep.cli; print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
