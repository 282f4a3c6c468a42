"""TensorBoard and an MLflow server, started for real on free loopback ports, list an exported sweep."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.fake_results import write_sweep

BIN = Path(sys.executable).parent
START_SECONDS = 300  # both import heavy packages; on a busy two-core machine that takes minutes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fetch(url: str, body: dict | None = None):
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextmanager
def _server(args: list[str], log: Path):
    """Start a server in its own process group; stop the group afterwards, killing it if it lingers."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait_until_up(url: str, process, log: Path, deadline: float) -> None:
    while True:
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"{url}: server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{url}: no answer within {START_SECONDS}s:\n{log.read_text()[-2000:]}")
            time.sleep(1)


@pytest.mark.slow  # starting both servers takes 30 s or more
def test_tensorboard_and_mlflow_servers_list_the_exported_sweep(tmp_path):
    for tool in ("tensorboard", "mlflow"):
        if not (BIN / tool).exists():
            pytest.skip(f"{tool} is not installed next to this Python")
    sweep_dir = write_sweep(tmp_path / "results", factors={"activation": ["relu", "tanh"]}, seeds=2, epochs=3)
    logdir = tmp_path / "tb"
    assert CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "tensorboard", str(logdir)]).exit_code == 0
    exported = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"])
    assert exported.exit_code == 0, exported.output
    store = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    trial_ids = sorted(p.name for p in (sweep_dir / "runs").iterdir())

    tb_port, mlflow_port = _free_port(), _free_port()
    tensorboard_url, mlflow_url = f"http://127.0.0.1:{tb_port}", f"http://127.0.0.1:{mlflow_port}"
    with ExitStack() as servers:
        tensorboard = servers.enter_context(_server(
            [str(BIN / "tensorboard"), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(tb_port)],
            tmp_path / "tensorboard.log"))
        mlflow = servers.enter_context(_server(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--host", "127.0.0.1",
             "--port", str(mlflow_port), "--workers", "1"], tmp_path / "mlflow.log"))
        deadline = time.monotonic() + START_SECONDS
        _wait_until_up(f"{tensorboard_url}/data/runs", tensorboard, tmp_path / "tensorboard.log", deadline)
        _wait_until_up(f"{mlflow_url}/health", mlflow, tmp_path / "mlflow.log", deadline)

        runs = _fetch(f"{tensorboard_url}/data/runs")
        assert {f"fake/{t}" for t in trial_ids} <= set(runs)
        experiment = _fetch(f"{tensorboard_url}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert [h["name"] for h in experiment["hparamInfos"]] == ["activation"]
        groups = _fetch(f"{tensorboard_url}/data/plugin/hparams/session_groups", {
            "startIndex": 0, "sliceSize": 100, "colParams": [{"hparam": "activation"}],
            "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"]})
        assert sorted(len(g["sessions"]) for g in groups["sessionGroups"]) == [2, 2]  # seeds per configuration

        found = _fetch(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=fake")
        listed = _fetch(f"{mlflow_url}/api/2.0/mlflow/runs/search",
                        {"experiment_ids": [found["experiment"]["experiment_id"]], "max_results": 100})
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in listed["runs"]]
        parents = [t for t in tags if "mlflow.parentRunId" not in t]
        assert len(parents) == 1
        assert sorted(t["trial_id"] for t in tags if "trial_id" in t) == trial_ids
