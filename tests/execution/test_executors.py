"""Executors end to end through the CLI, and a sweep that survives kills, crashes and full disks."""

import errno
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

from mnist_sweep.cli import cli
from mnist_sweep.results.store import ResultsStore
from tests.helpers import tiny_config

ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu"]


def _config(tmp_path, name="exec", **sections):
    sections.setdefault("model", {"activation": ACTIVATIONS})
    sections.setdefault("execution", "isolated")  # one trial per task: these tests are about the executors
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name=name, **sections)))
    return path


def _invoke(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args)])


def _summary(out, name="exec"):
    return pd.read_csv(Path(out) / name / "summary.csv")


def _records(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in (Path(sweep_dir) / "runs").glob("*/trial.json")}


def _command(config, out, *extra):
    return [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), *extra]


def _env():
    return {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _wait_for(predicate, seconds=120.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _statuses(sweep_dir):
    def read(path):
        try:
            return json.loads(path.read_text()).get("status")
        except ValueError:
            return None
    return {p.parent.name: read(p) for p in (Path(sweep_dir) / "runs").glob("*/trial.json")}


@pytest.mark.slow
@pytest.mark.keras
def test_two_worker_processes_give_the_same_results_as_one_process(tmp_path):
    config = _config(tmp_path)
    assert _invoke(config, "--out", tmp_path / "seq").exit_code == 0
    result = _invoke(config, "--out", tmp_path / "par", "--jobs", "2")
    assert result.exit_code == 0, result.output
    seq, par = _summary(tmp_path / "seq"), _summary(tmp_path / "par")
    assert list(par["status"]) == ["ok"] * 4
    assert list(par["trial_id"]) == list(seq["trial_id"])  # recorded in trial order, whatever finishes first
    # One thread per worker instead of two changes float summation order, not the outcome.
    assert (par["test_accuracy"] - seq["test_accuracy"]).abs().max() < 0.05
    pids = {r["worker"]["pid"] for r in _records(tmp_path / "par" / "exec").values()}
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.xdist_group("ray")  # under `make test`, never at the same time as another test that starts Ray
def test_ray_executor_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    config = _config(tmp_path, model={"activation": ["relu", "tanh"]})
    result = _invoke(config, "--out", tmp_path / "r", "--executor", "ray", "--cpus-per-trial", "1")
    assert result.exit_code == 0, result.output
    summary = _summary(tmp_path / "r")
    assert list(summary["status"]) == ["ok", "ok"]
    for record in _records(tmp_path / "r" / "exec").values():  # the driver wrote everything
        history = pd.read_csv(tmp_path / "r" / "exec" / "runs" / record["trial_id"] / "history.csv")
        assert len(history) == 2


@pytest.mark.slow
@pytest.mark.keras
def test_smoke_sweep_on_the_jax_backend(tmp_path):
    pytest.importorskip("jax")
    result = subprocess.run(_command("configs/smoke.yaml", tmp_path / "r", "--backend", "jax",
                                     "--set", "train.epochs=1"), env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path / "r" / "smoke")
    assert len(records) == 4
    assert {r["versions"]["backend"] for r in records.values()} == {"jax"}
    assert {r["status"] for r in records.values()} == {"ok"}


def _ok_count(sweep):
    return sum(1 for status in _statuses(sweep).values() if status == "ok")


def _histories(sweep):
    return len(list(Path(sweep).glob("runs/*/history.csv")))


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.keras
def test_kill_9_at_many_points_loses_nothing(tmp_path, jobs):
    """kill -9 the whole sweep at start-up, mid-fit, right after a trial finishes and again in a resumed run.

    Each kill point is a fresh process (TensorFlow's import dominates its cost), so there is one per phase
    whose files differ: nothing written yet; a trial.json marked running with part of its history.csv;
    a finished trial next to unstarted ones; and a run that skipped finished trials before it was killed.
    """
    config = _config(tmp_path, model={"activation": ACTIVATIONS, "dropout": [0.0, 0.3]}, train={"epochs": 3})
    out = tmp_path / "r"
    sweep = out / "exec"
    kill_points = {
        "during start-up": lambda ok, hist: True,
        "mid-fit: a trial marked running, an epoch of it written": (
            lambda ok, hist: _histories(sweep) > hist and "running" in _statuses(sweep).values()),
        "just after a trial finished": lambda ok, hist: _ok_count(sweep) > ok,
        "after another trial finished, in a run that skipped the first": lambda ok, hist: _ok_count(sweep) > ok,
    }
    kept: dict[str, str] = {}
    for point, reached in kill_points.items():
        ok, hist = (_ok_count(sweep), _histories(sweep)) if sweep.exists() else (0, 0)
        proc = subprocess.Popen(_command(config, out, "--jobs", jobs), env=_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        _wait_for(lambda: reached(ok, hist) or proc.poll() is not None, seconds=180)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in sweep.glob("runs/*/trial.json"):  # every record parses: nothing half-written
            record = json.loads(path.read_text())
            if record["status"] == "ok":
                kept.setdefault(record["trial_id"], path.read_text())
        for path in sweep.glob("runs/*/history.csv"):
            pd.read_csv(path)
        if (sweep / "summary.csv").exists():
            pd.read_csv(sweep / "summary.csv")
    assert kept, "no trial finished between the kills"
    final = _invoke(config, "--out", out, "--jobs", jobs)  # in this process: what it reads is on disk
    assert final.exit_code == 0, final.output
    assert f"{len(kept)} already finished, skipped" in final.stderr
    for trial_id, text in kept.items():  # not retrained
        assert (sweep / "runs" / trial_id / "trial.json").read_text() == text
    summary = _summary(out)
    assert dict(zip(summary["trial_id"], summary["status"])) == _statuses(sweep)
    assert list(summary["status"]) == ["ok"] * 8
    assert not list(sweep.rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.keras
def test_first_ctrl_c_finishes_running_trials_second_stops_now(tmp_path):
    config = _config(tmp_path, train={"epochs": 40})
    out = tmp_path / "r"
    sweep = out / "exec"
    # First: one Ctrl-C while the first trial trains; it finishes, no other trial starts.
    proc = subprocess.Popen(_command(config, out), env=_env(), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: "running" in _statuses(sweep).values())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert "starting no more" in err
    assert list(_statuses(sweep).values()) == ["ok"]
    # Then: two Ctrl-C stop the running trial at once, recorded as interrupted.
    proc = subprocess.Popen(_command(config, out), env=_env(), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: "running" in _statuses(sweep).values())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert sorted(_statuses(sweep).values()) == ["interrupted", "ok"]


def test_a_second_ctrl_c_that_surfaces_as_another_error_still_records_interrupted(tmp_path, monkeypatch):
    """TensorFlow can turn a KeyboardInterrupt raised mid-trace into a ValueError: that is not a failure."""
    from mnist_sweep.sweep import runner

    class StopNowMidTrace:
        stopping = False

        def __init__(self, name, options):
            pass

        def run(self, tasks, data, emit):  # tasks: a records.TaskQueue
            tasks.ready()
            trial = tasks.take().trials[0]
            emit("started", trial.trial_id, {})
            os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: finish this trial
            try:
                os.kill(os.getpid(), signal.SIGINT)  # second: stop now, raised "inside TensorFlow"
                time.sleep(5)
            except KeyboardInterrupt:
                emit("done", trial.trial_id, {"status": "failed", "error": "ValueError: None values not supported."})

        def stop(self):
            self.stopping = True

    monkeypatch.setattr(runner, "make_executor", StopNowMidTrace)
    config = tiny_config(name="exec", model={"activation": ACTIVATIONS})
    report = runner.Sweep(runner.validate_config(config), tmp_path / "r").run()
    assert report.interrupted
    record, = _records(tmp_path / "r" / "exec").values()
    assert record["status"] == "interrupted"
    assert "None values not supported" in record["notes"][-1]
    assert list(_summary(tmp_path / "r")["status"]) == ["interrupted"]


def test_a_second_run_on_the_same_results_refuses_and_names_the_first(tmp_path):
    config = _config(tmp_path)
    with ResultsStore(tmp_path / "r", "exec").lock():
        result = _invoke(config, "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert "in use by another mnist-sweep run" in result.output
    assert f"pid {os.getpid()}" in result.output


@pytest.mark.keras
def test_a_killed_run_does_not_leave_the_lock_stuck(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from mnist_sweep.results.store import ResultsStore\n"
        f"with ResultsStore({str(tmp_path / 'r')!r}, 'exec').lock():\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    blocked = _invoke(_config(tmp_path), "--out", tmp_path / "r", "--set", "train.epochs=1")
    assert blocked.exit_code == 1 and f"pid {holder.pid}" in blocked.output
    holder.kill()
    holder.wait()
    freed = _invoke(_config(tmp_path, model={"activation": "relu"}), "--out", tmp_path / "r",
                    "--set", "train.epochs=1")
    assert freed.exit_code == 0, freed.output


@pytest.mark.slow
@pytest.mark.keras
def test_a_worker_that_dies_fails_only_its_trial(tmp_path):
    config = _config(tmp_path, train={"epochs": 30})
    out = tmp_path / "r"
    sweep = out / "exec"
    proc = subprocess.Popen(_command(config, out, "--jobs", "2"), env=_env(), stderr=subprocess.PIPE, text=True)

    def a_running_worker():
        for record in _records(sweep).values() if sweep.exists() else []:
            if record.get("status") == "running" and record.get("worker", {}).get("pid"):
                return record
        return None

    victim = _wait_for(a_running_worker)
    os.kill(victim["worker"]["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1  # a trial failed
    records = _records(sweep)
    assert records[victim["trial_id"]]["status"] == "failed"
    assert "SIGKILL" in records[victim["trial_id"]]["error"]
    assert sorted(r["status"] for r in records.values()) == ["failed", "ok", "ok", "ok"]


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EROFS, "Read-only file system")])
@pytest.mark.keras
def test_disk_full_or_read_only_stops_with_a_clear_error_and_keeps_what_was_recorded(
        tmp_path, monkeypatch, code, text):
    from mnist_sweep.results import store

    config = _config(tmp_path, model={"activation": ["relu", "tanh", "sigmoid"]})
    first = _invoke(config, "--out", tmp_path / "r", "--set", "model.activation=[relu,sigmoid]")
    assert first.exit_code == 0, first.output
    before = _records(tmp_path / "r" / "exec")
    real = store.atomic_write

    def failing(path, content):
        if "trial.json" in str(path) and path.parent.name.startswith("tanh"):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, content)

    monkeypatch.setattr(store, "atomic_write", failing)
    result = _invoke(config, "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert f"cannot write results to {tmp_path / 'r' / 'exec'}: {text}" in result.output
    assert "The 2 trial(s) recorded before are intact" in result.output
    assert "Traceback" not in result.output
    after = _records(tmp_path / "r" / "exec")
    assert {k: after[k] for k in before} == before


@pytest.mark.keras
def test_a_trial_past_its_time_limit_is_recorded_as_timeout(tmp_path):
    config = _config(tmp_path, model={"activation": "relu"},
                     train={"epochs": 500, "timeout_seconds": 1.0})
    result = _invoke(config, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    record = next(iter(_records(tmp_path / "r" / "exec").values()))
    assert record["status"] == "timeout"
    assert record["metrics"]["epochs_run"] < 500
    assert "timeout_seconds" in record["notes"][-1]
