"""`mnist-sweep run` end to end through the real CLI on the bundled data."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.sweep import runner as runner_module
from mnist_sweep.cli import cli
from tests.helpers import tiny_config


def _write_config(tmp_path, **sections):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**sections)))
    return path


def _run(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def two_trial_config(tmp_path):
    return _write_config(tmp_path, model={"activation": ["relu", "tanh"]})


@pytest.mark.keras
def test_run_writes_the_documented_layout(tmp_path, two_trial_config):
    out = tmp_path / "results"
    result = _run(two_trial_config, "--out", out)
    assert result.exit_code == 0, result.output
    sweep = out / "tiny"
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["activation"]) == ["relu", "tanh"]
    assert set(summary["status"]) == {"ok"}
    assert {"trial_id", "seed", "test_accuracy", "fit_seconds", "wall_seconds", "seconds_per_epoch",
            "device", "dataset_source", "params", "best_epoch", "stopped_early"} <= set(summary.columns)
    assert (summary["dataset_source"] == "bundled").all()
    for trial_id in summary["trial_id"]:
        run_dir = sweep / "runs" / trial_id
        history = pd.read_csv(run_dir / "history.csv")
        assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"]
        assert len(history) == 2
        record = json.loads((run_dir / "trial.json").read_text())
        assert record["status"] == "ok" and record["settings"]["hidden"] == [8]
        assert record["dataset"]["fingerprint"] and record["versions"]["keras"].startswith("3")
        assert "Total params" in (run_dir / "model.txt").read_text()
    assert yaml.safe_load((sweep / "sweep.yaml").read_text())["name"] == "tiny"
    _check_best_configurations_and_next_commands(result, sweep)
    quiet = _run(two_trial_config, "--out", out, "--quiet")  # every trial already finished: nothing trains
    assert quiet.exit_code == 0 and quiet.output == ""


def _check_best_configurations_and_next_commands(result, sweep):
    """`run` ends with its configurations ranked by validation accuracy, and the commands that come next."""
    lines = result.stdout.splitlines()
    assert lines[0] == "Top 2 of 2 configurations by validation accuracy (mean over seeds):"
    summary = pd.read_csv(sweep / "summary.csv").sort_values(["val_accuracy", "val_loss"], ascending=[False, True])
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == list(summary["activation"])  # best first, as saving picks
    assert f"{summary['val_accuracy'].iloc[0]:.4f}" in rows[0] and f"{summary['test_accuracy'].iloc[0]:.4f}" in rows[0]
    assert lines[-4] == "Next:"
    assert [line.split()[:3] for line in lines[-3:]] == [["mnist-sweep", command, str(sweep)]
                                                          for command in ("show", "compare", "plot")]


@pytest.mark.keras
def test_second_run_skips_finished_trials_and_force_retrains(tmp_path, two_trial_config, capsys):
    out = tmp_path / "results"
    assert _run(two_trial_config, "--out", out).exit_code == 0
    first = json.loads(next((out / "tiny" / "runs").glob("*/trial.json")).read_text())
    again = _run(two_trial_config, "--out", out)
    assert "2 already finished, skipped" in again.output
    assert json.loads((out / "tiny" / "runs" / first["trial_id"] / "trial.json").read_text()) == first
    forced = _run(two_trial_config, "--out", out, "--force")
    assert "0 already finished" in forced.output and "2 ok" in forced.output


@pytest.mark.keras
def test_adding_an_axis_keeps_the_finished_trials_it_did_not_change(tmp_path, two_trial_config):
    """`dropout: [0.0, 0.3]` renames the dropout-0.0 trials (their ids gain `do-0`) but does not retrain them."""
    out = tmp_path / "results"
    assert _run(two_trial_config, "--out", out).exit_code == 0
    runs = out / "tiny" / "runs"
    before = {json.loads(p.read_text())["settings"]["activation"]: (p.parent.name, (p.parent / "history.csv").read_text())
              for p in runs.glob("*/trial.json")}
    wider = _run(two_trial_config, "--out", out, "--set", "model.dropout=[0.0,0.3]")
    assert wider.exit_code == 0, wider.output
    assert "2 finished trial(s) kept under new ids" in wider.output and "2 already finished, skipped" in wider.output
    assert "2 ok" in wider.output  # only the two dropout-0.3 trials trained
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    assert len(summary) == 4 and set(summary["status"]) == {"ok"}
    assert sorted(p.name for p in runs.iterdir()) == sorted(summary["trial_id"])  # no stale directories
    for row in summary[summary["dropout"] == 0.0].itertuples():
        old_id, history = before[row.activation]
        assert row.trial_id != old_id and row.trial_id.endswith(old_id.rsplit("-", 1)[1])
        assert (runs / row.trial_id / "history.csv").read_text() == history
        record = json.loads((runs / row.trial_id / "trial.json").read_text())
        assert record["trial_id"] == row.trial_id and record["factors"]["dropout"] == 0.0
        assert f"renamed from {old_id}" in record["notes"][-1]
    # A rename cut short by a crash (directory moved, trial.json not yet rewritten) is finished too.
    target = summary[summary["dropout"] == 0.0]["trial_id"].iloc[0]
    stale = json.loads((runs / target / "trial.json").read_text())
    (runs / target / "trial.json").write_text(json.dumps(dict(stale, trial_id="relu-s0-" + target[-8:])))
    again = _run(two_trial_config, "--out", out, "--set", "model.dropout=[0.0,0.3]")
    assert "4 already finished, skipped" in again.output and "nothing trained" in again.output


@pytest.mark.keras
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, two_trial_config, monkeypatch):
    from mnist_sweep.training import train

    real = train.train_trial

    def flaky(trial, data, **kwargs):
        if trial.settings["activation"] == "relu":
            raise RuntimeError("out of cheese")
        return real(trial, data, **kwargs)

    monkeypatch.setattr(train, "train_trial", flaky)
    result = CliRunner().invoke(cli, ["run", str(two_trial_config), "--out", str(tmp_path / "r"), "--no-fuse"])
    assert result.exit_code == 1
    assert "1 trial(s) failed" in result.output
    summary = pd.read_csv(tmp_path / "r" / "tiny" / "summary.csv")
    assert dict(zip(summary["activation"], summary["status"])) == {"relu": "failed", "tanh": "ok"}
    failed = summary[summary["status"] == "failed"].iloc[0]
    record = json.loads((tmp_path / "r" / "tiny" / "runs" / failed["trial_id"] / "trial.json").read_text())
    assert record["error"] == "RuntimeError: out of cheese" and "Traceback" in record["traceback"]


def test_dry_run_lists_trials_and_writes_nothing(tmp_path):
    config = _write_config(tmp_path, model={"activation": ["relu", "tanh"], "dropout": [0.0, 0.5]}, seeds=2)
    result = _run(config, "--out", tmp_path / "r", "--dry-run", "--set", "train.epochs=1")
    assert result.exit_code == 0
    assert "8 trials (4 configurations x 2 seeds)" in result.output
    assert "tanh" in result.output and "dropout" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.keras
def test_the_run_prints_the_plan_its_dry_run_printed(tmp_path, two_trial_config):
    for options in ((), ("--max-branches", "1")):
        planned = _run(two_trial_config, "--dry-run", *options).output.splitlines()[-1]
        result = _run(two_trial_config, "--out", tmp_path / "r", "--force", *options)
        assert result.exit_code == 0, result.output
        assert planned in result.output.splitlines()


@pytest.mark.keras
def test_set_overrides_reach_the_trials(tmp_path, two_trial_config):
    out = tmp_path / "r"
    result = _run(two_trial_config, "--out", out, "--set", "train.epochs=1", "--set", "model.activation=sigmoid")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    assert len(summary) == 1 and summary["epochs_run"].iloc[0] == 1
    assert yaml.safe_load((out / "tiny" / "sweep.yaml").read_text())["model"]["activation"] == ["sigmoid"]


def test_bad_config_exits_2_with_every_problem_and_writes_nothing(tmp_path):
    config = _write_config(tmp_path, model={"activation": "rleu", "dropout": 2})
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "Traceback" not in result.output
    assert "model.activation" in result.output and "'rleu'" in result.output
    assert 'did you mean "relu"' in result.output
    assert "model.dropout" in result.output and "got 2" in result.output
    assert not (tmp_path / "r").exists()


def test_unknown_set_key_is_a_config_error(tmp_path, two_trial_config):
    result = CliRunner().invoke(cli, ["run", str(two_trial_config), "--set", "train.epoch=2"])
    assert result.exit_code == 2
    assert 'did you mean "epochs"' in result.output


def test_too_large_a_subset_is_a_clear_data_error(tmp_path):
    config = _write_config(tmp_path, dataset={"n_train": 9000})
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "9,000" in result.output or "9000" in result.output
    assert "Traceback" not in result.output


def test_every_command_has_help_with_an_example():
    for name, command in cli.commands.items():
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output, f"{name} --help has no example"


@pytest.mark.keras
def test_ctrl_c_in_a_trial_marks_it_interrupted(tmp_path, two_trial_config, monkeypatch):
    from mnist_sweep.training import train

    real = train.train_trial

    def interrupt_second(trial, data, **kwargs):
        if trial.settings["activation"] == "tanh":
            raise KeyboardInterrupt
        return real(trial, data, **kwargs)

    monkeypatch.setattr(train, "train_trial", interrupt_second)
    result = CliRunner().invoke(cli, ["run", str(two_trial_config), "--out", str(tmp_path / "r"), "--no-fuse"])
    assert result.exit_code == 130
    summary = pd.read_csv(tmp_path / "r" / "tiny" / "summary.csv")
    assert dict(zip(summary["activation"], summary["status"])) == {"relu": "ok", "tanh": "interrupted"}


@pytest.mark.slow
@pytest.mark.keras
def test_real_sigint_then_rerun_trains_only_unfinished_trials(tmp_path):
    """Ctrl-C a real sweep mid-way: finished trials survive intact and are not retrained."""
    config = _write_config(tmp_path, model={"activation": ["relu", "tanh", "sigmoid", "elu"]},
                           train={"epochs": 8})
    out = tmp_path / "r"
    command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), "--no-fuse"]
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = out / "tiny" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first finished trial
        done = [p for p in runs.glob("*/trial.json") if json.loads(p.read_text() or "{}").get("status") == "ok"]
        if done:
            break
        time.sleep(0.2)
    assert done, "no trial finished within 120 s"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    finished = {p.parent.name: p.read_text() for p in runs.glob("*/trial.json")
                if json.loads(p.read_text())["status"] == "ok"}
    assert 1 <= len(finished) < 4
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    assert set(summary.loc[summary["status"] == "ok", "trial_id"]) == set(finished)

    rerun = _run(config, "--out", out, "--no-fuse")  # the same command, in this process: it reads what is on disk
    assert rerun.exit_code == 0, rerun.output
    assert f"{len(finished)} already finished, skipped" in rerun.stderr
    assert f"{4 - len(finished)} ok" in rerun.stderr
    for trial_id, text in finished.items():  # untouched by the second run
        assert (runs / trial_id / "trial.json").read_text() == text
    assert (pd.read_csv(out / "tiny" / "summary.csv")["status"] == "ok").sum() == 4
