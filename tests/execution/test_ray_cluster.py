"""The Ray executor on a real multi-node cluster (Ray's own test harness, all nodes on this machine).

A head and two worker nodes with their own resources; one worker node is removed mid-sweep, and in
another test the head is killed mid-sweep. Each sweep runs through the CLI in its own process, as a
user's would, and the tests wait for the records the driver writes rather than for fixed times.
Without a cluster: how a dead attempt is judged, and what the driver does when Ray ends the child
process that holds the connection (`ray_child.py`).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import tiny_config

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
pytestmark = pytest.mark.xdist_group("ray")  # under `make test`, one Ray cluster at a time, on one worker

STORE = 80 * 1024 * 1024  # each node's object store: the data is a few MB
EPOCHS = 3


def _node_args(**extra):
    return {"object_store_memory": STORE, "include_dashboard": False, **extra}


def _config(tmp_path, epochs=EPOCHS, n_train=1500, activation=("relu", "tanh", "sigmoid")):
    path = tmp_path / "cluster.yaml"
    config = tiny_config(name="cluster", dataset={"n_train": n_train},
                         model={"activation": list(activation), "dropout": [0.0, 0.3]},
                         train={"epochs": epochs})
    path.write_text(yaml.safe_dump(config))
    return path


def _start(config, out, address, *extra):
    extra = extra or ("--no-fuse",)  # one trial per Ray task unless a test fuses
    command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out),
               "--executor", "ray", "--ray-address", address, "--cpus-per-trial", "1", *extra]
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(sweep):
    records = {}
    for path in Path(sweep).glob("runs/*/trial.json"):
        try:
            records[path.parent.name] = json.loads(path.read_text())
        except ValueError:  # never half-written (atomic), but a test must not trip on a rename race
            continue
    return records


def _wait_for(predicate, proc, seconds=240.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sweep ended before the condition was met:\n{err[-3000:]}")
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _node(record):
    return (record.get("worker") or {}).get("node_id")


@pytest.fixture
def cluster():
    made = []

    def start(**head):
        made.append(cluster_utils.Cluster(initialize_head=True, head_node_args=_node_args(**head)))
        return made[-1]

    yield start
    for each in made:
        each.shutdown()


@pytest.mark.slow
def test_a_worker_node_removed_mid_sweep_has_its_trials_retried_on_the_others(tmp_path, cluster):
    head = cluster(num_cpus=0)  # the head only schedules: every trial runs on a worker node
    node_a = head.add_node(**_node_args(num_cpus=1, resources={"node_a": 1}))
    node_b = head.add_node(**_node_args(num_cpus=1, resources={"node_b": 1}))
    sweep = tmp_path / "r" / "cluster"
    proc = _start(_config(tmp_path), tmp_path / "r", head.address)

    def one_done_and_one_running_on_b():
        on_b = [r for r in _records(sweep).values() if _node(r) == node_b.node_id]
        done = [r for r in on_b if r["status"] == "ok"]
        running = [r for r in on_b if r["status"] == "running"]
        return (done[0], running[0]) if done and running else None

    finished_on_b, victim = _wait_for(one_done_and_one_running_on_b, proc)
    kept = (sweep / "runs" / finished_on_b["trial_id"] / "trial.json").read_text()
    head.remove_node(node_b, allow_graceful=False)  # like a preempted machine: no goodbye
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Error:" not in err

    records = _records(sweep)
    assert sorted(r["status"] for r in records.values()) == ["ok"] * 6
    assert {_node(r) for r in records.values()} == {node_a.node_id, node_b.node_id}  # the record names the node
    assert all(r["worker"]["hostname"] == socket.gethostname() == r["host"] for r in records.values())
    retried = records[victim["trial_id"]]
    assert _node(retried) == node_a.node_id and retried["worker"]["attempt"] == 2
    assert len(retried["notes"]) == 1 and f"attempt 1 on node {node_b.node_id[:8]}" in retried["notes"][0]
    # Nothing written twice: one record and one full history per trial, the trial done on b untouched.
    assert (sweep / "runs" / finished_on_b["trial_id"] / "trial.json").read_text() == kept
    for record in records.values():
        assert len(pd.read_csv(sweep / "runs" / record["trial_id"] / "history.csv")) == EPOCHS
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["trial_id"]) == sorted(records) and list(summary["status"]) == ["ok"] * 6

    # Fused groups are Ray tasks too: two groups of three, on the node left.
    fused = _start(tmp_path / "cluster.yaml", tmp_path / "fused", head.address, "--fuse", "--max-branches", "3")
    _, err = fused.communicate(timeout=600)
    assert fused.returncode == 0, err[-3000:]
    records = _records(tmp_path / "fused" / "cluster").values()
    assert sorted(r["status"] for r in records) == ["ok"] * 6
    assert len({r["group_id"] for r in records}) == 2 and {_node(r) for r in records} == {node_a.node_id}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_losing_the_head_stops_cleanly_and_the_same_command_continues(tmp_path, cluster):
    """Ray may end the process connected to it when the head dies, or report the loss: either way the
    driver (ray_child.py) prints an Error: line, records the running trials interrupted and exits 1."""
    port = _free_port()
    head = cluster(num_cpus=1, gcs_server_port=port)
    head.add_node(**_node_args(num_cpus=1))
    address = head.address
    config = _config(tmp_path, epochs=1, n_train=300, activation=("relu", "tanh"))  # 4 trials
    out, sweep = tmp_path / "r", tmp_path / "r" / "cluster"
    proc = _start(config, out, address)

    def one_done_and_one_running():
        statuses = [r["status"] for r in _records(sweep).values()]
        return "ok" in statuses and "running" in statuses

    _wait_for(one_done_and_one_running, proc)
    head.remove_node(head.head_node, allow_graceful=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    error = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith(f"Error: lost the Ray cluster's head at {address}"), err[-3000:]
    assert "running trial(s) recorded interrupted; once the cluster is back, run the same command" in error[0]
    assert "Traceback" not in err
    records = _records(sweep)
    statuses = [r["status"] for r in records.values()]
    assert "interrupted" in statuses and "running" not in statuses
    interrupted = [r for r in records.values() if r["status"] == "interrupted"]
    assert all("interrupted" in r["notes"][-1] and r["error"].startswith("stopped: lost") for r in interrupted)
    done_before = {k: (sweep / "runs" / k / "trial.json").read_text()
                   for k, r in records.items() if r["status"] == "ok"}

    head.shutdown()  # what is left of the old cluster
    back = cluster(num_cpus=2, gcs_server_port=port)  # the cluster is back at the same address
    assert back.address == address
    rerun = _start(config, out, address)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert f"{len(done_before)} already finished, skipped" in err
    records = _records(sweep)
    assert sorted(r["status"] for r in records.values()) == ["ok"] * 4
    for trial_id, text in done_before.items():  # not trained again
        assert (sweep / "runs" / trial_id / "trial.json").read_text() == text
    for trial_id in records:  # one epoch each: no history appended to or written twice
        assert len(pd.read_csv(sweep / "runs" / trial_id / "history.csv")) == 1
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["trial_id"]) == sorted(records) and list(summary["status"]) == ["ok"] * 4


def test_an_address_where_nothing_answers_fails_at_once_with_an_error_line(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    proc = _start(_config(tmp_path, epochs=1, n_train=300), tmp_path / "r", address)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert err.splitlines()[-1] == (f"Error: cannot connect to Ray at {address}: nothing answers there. Start the "
                                    f"cluster (`ray start --head --port={address.split(':')[1]}` on the head "
                                    "machine) or fix --ray-address")
    assert "Traceback" not in err and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- how a dead attempt is judged, without a cluster

def _executor(monkeypatch, live_nodes=("a" * 56,), head_up=True):
    from mnist_sweep.execution.executors import Options
    from mnist_sweep.execution.ray_executor import RayExecutor

    executor = RayExecutor(Options(ray_address="10.0.0.5:6379"))
    monkeypatch.setattr(executor, "_head_alive", lambda: head_up)
    monkeypatch.setattr(executor, "_nodes", lambda: [{"NodeID": n, "Resources": {"CPU": 2.0}} for n in live_nodes])
    return executor


def _job(node_id="a" * 56):
    from collections import deque

    from mnist_sweep.config import validate_config
    from mnist_sweep.plan.grid import expand
    from mnist_sweep.execution.ray_executor import _Job
    from mnist_sweep.records import Task

    trial = expand(validate_config(tiny_config()))[0]
    where = {"node_id": node_id, "node_ip": "10.0.0.7", "hostname": "gpu-3", "pid": 7}
    job = _Job(Task((trial,)), attempt=1, where=where, announced=True)
    return job, deque()


def test_a_trial_that_kills_its_worker_twice_is_recorded_failed_with_every_attempt(monkeypatch):
    from ray.exceptions import OutOfMemoryError, WorkerCrashedError

    executor = _executor(monkeypatch)
    job, queue = _job()
    events = []
    executor._attempt_died(job, WorkerCrashedError(), queue, lambda *e: events.append(e))
    assert list(queue) == [job] and not events  # the first death on a live node: tried again
    queue.clear()
    job.attempt += 1
    executor._attempt_died(job, OutOfMemoryError("Task was killed due to the node running low on memory."),
                           queue, lambda *e: events.append(e))
    assert not queue
    (kind, _, result), = events
    assert kind == "done" and result["status"] == "failed"
    assert result["error"].startswith("its worker process died 2 times") and "OutOfMemoryError" in result["error"]
    assert [n.split(":")[0] for n in result["notes"]] == ["attempt 1 on node aaaaaaaa (gpu-3, 10.0.0.7)",
                                                          "attempt 2 on node aaaaaaaa (gpu-3, 10.0.0.7)"]


def test_a_trial_whose_node_is_gone_is_retried_up_to_the_limit(monkeypatch):
    from ray.exceptions import NodeDiedError, WorkerCrashedError

    from mnist_sweep.execution.ray_executor import NODE_LOSS_RETRIES

    executor = _executor(monkeypatch)  # only node a is alive
    job, queue = _job(node_id="b" * 56)
    events = []
    # A worker crash on a node that is no longer alive is a lost node, not the trial's fault.
    for attempt, exc in enumerate([WorkerCrashedError()] + [NodeDiedError("node died")] * NODE_LOSS_RETRIES, 1):
        job.attempt = attempt
        executor._attempt_died(job, exc, queue, lambda *e: events.append(e))
    assert len(queue) == NODE_LOSS_RETRIES and len(events) == 1
    result = events[0][2]
    assert result["status"] == "failed" and result["error"].startswith(f"lost its node {NODE_LOSS_RETRIES + 1} times")
    assert all("its node was lost" in note for note in result["notes"]) and len(result["notes"]) == 4


def test_a_dead_head_stops_the_sweep_instead_of_retrying(monkeypatch):
    from ray.exceptions import WorkerCrashedError

    from mnist_sweep.execution.ray_executor import ClusterLostError

    executor = _executor(monkeypatch, head_up=False)
    job, queue = _job()
    with pytest.raises(ClusterLostError, match="lost the Ray cluster's head at 10.0.0.5:6379"):
        executor._attempt_died(job, WorkerCrashedError(), queue, lambda *e: None)
    assert not queue


def test_trials_that_fit_no_node_stop_before_anything_runs(monkeypatch):
    from mnist_sweep.errors import SweepError
    from mnist_sweep.execution.ray_executor import node_capacity

    assert node_capacity({"CPU": 8.0, "GPU": 1.0}, 2, 0.25) == 4
    assert node_capacity({"CPU": 1.0}, 0.1, 0) == 10  # no float rounding loses a slot
    assert node_capacity({"CPU": 8.0}, 1, 1) == 0
    executor = _executor(monkeypatch)
    executor.options.gpus_per_trial = 1
    with pytest.raises(SweepError, match=r"no node .* can run a trial: each needs 1 CPU\(s\) and 1 GPU\(s\)"):
        executor._check_fits(0)


def test_a_head_that_stops_answering_mid_call_counts_as_lost(monkeypatch):
    """A Ray call into a head that died blocks for a minute, then Ray ends the process: never wait on it."""
    import threading
    from types import SimpleNamespace

    from mnist_sweep.execution import ray_executor
    from mnist_sweep.execution.executors import Options

    executor = ray_executor.RayExecutor(Options(ray_address="10.0.0.5:6379"))
    released = threading.Event()
    monkeypatch.setattr(executor, "_head_alive", lambda: True)
    monkeypatch.setattr(executor, "ray", SimpleNamespace(nodes=lambda: released.wait(30)))
    monkeypatch.setattr(ray_executor, "ANSWER_SECONDS", 0.2)
    started = time.monotonic()
    with pytest.raises(ray_executor.ClusterLostError, match="head at 10.0.0.5:6379: it stopped answering"):
        executor._nodes()
    assert time.monotonic() - started < 5 and executor.hung
    released.set()


def test_when_ray_ends_the_child_the_driver_records_its_running_trials_interrupted():
    """Ray's core ends the process connected to a dead head at once; the driver, which owns the
    results, sees the pipe close without an "end" and stops with what was lost."""
    import threading
    from multiprocessing import Pipe
    from types import SimpleNamespace

    from mnist_sweep.execution.executors import Options
    from mnist_sweep.execution.ray_child import ChildRayExecutor
    from mnist_sweep.execution.ray_executor import ClusterLostError
    from mnist_sweep.records import ListQueue

    job, _ = _job()
    trial = job.task.trials[0]
    driver_end, child_end = Pipe()
    dead_head = f"127.0.0.1:{_free_port()}"

    def child():  # joins, takes a task, starts it on node a, then Ray ends the process
        child_end.send(("connected", dead_head))
        child_end.send(("next",))
        assert [t.trial_id for t in child_end.recv()] == [trial.trial_id]
        child_end.send(("event", "started", trial.trial_id, dict(job.where, attempt=2)))
        child_end.recv()
        child_end.close()

    thread = threading.Thread(target=child)
    thread.start()
    process = SimpleNamespace(is_alive=thread.is_alive, exitcode=1, join=lambda timeout=None: thread.join(timeout))
    executor = ChildRayExecutor(Options(ray_address="10.0.0.5:6379"))
    events, left = [], [["another task"]]
    with pytest.raises(ClusterLostError) as lost:
        executor._serve(driver_end, process, ListQueue([job.task] + left), lambda *event: events.append(event))
    what = ("lost the Ray cluster's head at 10.0.0.5:6379: Ray ended the process connected to it (exit code 1) "
            "and the head does not answer")
    assert str(lost.value) == (f"{what}. 1 running trial(s) recorded interrupted; once the cluster is back, run "
                               "the same command to continue (finished trials are kept).")
    assert [e[:2] for e in events] == [("started", trial.trial_id), ("done", trial.trial_id)]
    assert events[1][2] == {"status": "interrupted", "error": f"stopped: {what}", "host": "gpu-3",
                            "notes": [f"attempt 2 on node aaaaaaaa (gpu-3, 10.0.0.7): interrupted, {what}"]}
    assert left == [["another task"]]  # never handed out: it has no record, the rerun trains it
