"""Signals other than Ctrl-C and output that goes away: SIGTERM (`timeout`, Slurm, Kubernetes) and SIGHUP
(a closed terminal) stop a sweep as a second Ctrl-C does, for every executor, and leave no process and no
temporary folder behind; a closed output pipe never stops training.

Real signals and real pipes need a real process: those tests run the CLI in a child process in its own
session, so that whatever it started can be found afterwards. The rest runs in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, name: str = "sig", **sections) -> Path:
    sections.setdefault("model", {"activation": ["relu", "tanh", "sigmoid", "elu"]})
    sections.setdefault("execution", "isolated")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name=name, **sections)))
    return path


def _statuses(sweep: Path) -> dict[str, str]:
    found = {}
    for path in sweep.glob("runs/*/trial.json"):
        try:
            found[path.parent.name] = json.loads(path.read_text())["status"]
        except (ValueError, KeyError, OSError):
            pass  # being replaced right now
    return found


def _session_processes(session: int) -> list[str]:
    """The live processes (not zombies) of a session, as `pid command`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _, _, sid = stat[stat.rindex(")") + 2:].split()[:4]
            if int(sid) == session and state != "Z":
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name} {command[:120]}")
        except (OSError, ValueError):
            continue  # ended while we looked
    return found


def _child(config: Path, out: Path, tmp: Path, *extra: str, **popen) -> subprocess.Popen:
    """`mnist-sweep run` in a new session, with its own TMPDIR."""
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), *extra],
                            env=env, cwd=ROOT, start_new_session=True, text=True, **popen)


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 240.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}) before the condition was met:\n{err}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("condition not met in time")


def _left_behind(session: int, tmp: Path, seconds: float = 15.0) -> tuple[list[str], list[str]]:
    """Processes of the session and mnist-sweep folders in its TMPDIR still there after `seconds` at most."""
    deadline = time.monotonic() + seconds
    while True:
        processes = _session_processes(session)
        folders = sorted(p.name for p in tmp.glob("mnist-sweep-*"))
        if not processes and not folders or time.monotonic() > deadline:
            return processes, folders
        time.sleep(0.2)


@pytest.fixture
def short_tmp():
    """A TMPDIR of its own for the child, with a short path: Ray's socket paths under it must fit 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="mnist-sweep-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


RAY = pytest.mark.xdist_group("ray")  # under `make test`, never beside another test that starts Ray


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("signum, to_group, extra", [
    pytest.param(signal.SIGHUP, True, [], id="SIGHUP-to-the-group-in-process"),
    pytest.param(signal.SIGTERM, False, ["--jobs", "2"], id="SIGTERM-to-the-driver-worker-processes"),
    pytest.param(signal.SIGHUP, True, ["--jobs", "2"], id="SIGHUP-to-the-group-worker-processes"),
    pytest.param(signal.SIGTERM, True, ["--executor", "ray", "--cpus-per-trial", "1"], id="SIGTERM-to-the-group-ray",
                 marks=RAY),
])
def test_sigterm_and_sighup_stop_now_record_interrupted_and_leave_nothing_running(tmp_path, short_tmp, signum,
                                                                                 to_group, extra):
    """As `timeout` (the whole group), Slurm or a closing terminal would: like a second Ctrl-C."""
    if "ray" in extra:
        pytest.importorskip("ray")
    config = _config(tmp_path, train={"epochs": 400})
    out, tmp = tmp_path / "r", short_tmp
    sweep = out / "sig"
    proc = _child(config, out, tmp, *extra, stderr=subprocess.PIPE)
    _wait_for(lambda: "running" in _statuses(sweep).values(), proc)
    time.sleep(1.0)  # into the fit
    running = {k for k, v in _statuses(sweep).items() if v == "running"}
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert proc.returncode == 130, err
    assert f"{name}: stopping now" in err
    assert "Traceback" not in err
    statuses = _statuses(sweep)
    assert running <= set(statuses) and set(statuses.values()) == {"interrupted"}, statuses
    record = json.loads((sweep / "runs" / sorted(running)[0] / "trial.json").read_text())
    assert record["error"] == f"stopped by {name} before it finished"
    summary = pd.read_csv(sweep / "summary.csv")
    assert dict(zip(summary["trial_id"], summary["status"])) == statuses
    processes, folders = _left_behind(proc.pid, tmp)
    assert processes == [] and folders == []


@pytest.mark.slow
@pytest.mark.keras
def test_a_closed_output_pipe_never_stops_training(tmp_path):
    """`mnist-sweep run cfg 2>&1 | head -n 3`: the output after three lines goes nowhere, the sweep finishes."""
    config = _config(tmp_path)
    out, tmp = tmp_path / "r", tmp_path / "tmp"
    proc = _child(config, out, tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what head does after its three lines
    assert proc.wait(timeout=300) == 0, lines
    sweep = out / "sig"
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["ok"] * 4
    best = json.loads((sweep / "best_model.json").read_text())
    assert (sweep / best["model"]).is_file()


# ---------------------------------------------------------------- in this process


class _SignalReached(Exception):
    """What a stop signal raises in this test process when nothing in the sweep handles it."""


@pytest.fixture
def stop_signals_raise():
    """Without a handler of the sweep's own, SIGTERM or SIGHUP would end the test process: raise instead."""
    def fail(signum, frame):
        raise _SignalReached(signal.Signals(signum).name)

    previous = {s: signal.signal(s, fail) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


class _Scripted:
    """An executor that runs a script instead of training: it emits events and sends itself signals."""

    def __init__(self, script):
        self.script = script
        self.stopping = False

    def run(self, queue, data, emit):  # the script gets the tasks the driver's queue (records.TaskQueue) holds
        tasks = []
        while queue.ready():
            tasks.append(queue.take())
        self.script(self, tasks, emit)

    def stop(self):
        self.stopping = True


def _ok():
    return {"status": "ok", "metrics": {"val_accuracy": 0.5, "test_accuracy": 0.5}, "history": [
        {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "epoch_seconds": 0.1}]}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_before_the_first_trial_exits_130_and_leaves_nothing(tmp_path, monkeypatch, signum,
                                                                           stop_signals_raise):
    from mnist_sweep.sweep import runner

    def signalled_while_starting(executor, tasks, emit):
        os.kill(os.getpid(), signum)  # workers starting, data being copied: no trial has begun
        time.sleep(5)

    monkeypatch.setattr(runner, "make_executor", lambda kind, options: _Scripted(signalled_while_starting))
    result = CliRunner().invoke(cli, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "new" / "r")])
    assert result.exit_code == 130, result.output
    assert f"{signal.Signals(signum).name}: stopping now" in result.output
    assert not (tmp_path / "new").exists()


def test_a_signal_while_a_result_is_written_lets_it_be_written_whole(tmp_path, monkeypatch, stop_signals_raise):
    """SIGTERM landing between a finished trial's files: it is recorded ok everywhere, and nothing more runs.
    A signal ignored when the run starts (SIGHUP under `nohup`) stays ignored."""
    from mnist_sweep.sweep import runner
    from mnist_sweep.results import store

    real = store.ResultsStore.write_record

    def write_record(self, record):
        if record["status"] == "ok":
            os.kill(os.getpid(), signal.SIGTERM)  # after the model and history, before trial.json
        real(self, record)

    def finish_one(executor, tasks, emit):
        (first,), (second,) = tasks[:2]
        emit("started", first.trial_id, {})
        os.kill(os.getpid(), signal.SIGHUP)  # ignored, as nohup asked
        emit("done", first.trial_id, _ok())
        emit("started", second.trial_id, {})  # never reached: the SIGTERM took effect after the write

    monkeypatch.setattr(store.ResultsStore, "write_record", write_record)
    monkeypatch.setattr(runner, "make_executor", lambda kind, options: _Scripted(finish_one))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    result = CliRunner().invoke(cli, ["run", str(_config(tmp_path)), "--out", str(tmp_path / "r")])
    assert result.exit_code == 130, result.output
    assert "SIGHUP" not in result.output
    sweep = tmp_path / "r" / "sig"
    assert list(_statuses(sweep).values()) == ["ok"]
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["ok"]
