"""Trials as Ray tasks, on a local instance or on a cluster whose nodes come and go.

Each task (one trial, or a fused group of trials) is a Ray generator task: it first reports the
node it landed on, then its results. Only the driver writes results. When something dies:

- a node is lost (removed, preempted, its raylet gone): the trials it was running are submitted
  again and land on the nodes still alive, up to NODE_LOSS_RETRIES times per trial;
- a trial's worker process dies on a node that is still alive (out of memory, killed): the trial
  is tried again; a trial whose worker dies WORKER_CRASH_LIMIT times is recorded `failed` with the
  cause, and the sweep goes on;
- the head, or the connection to it, is lost: the running trials are recorded `interrupted` and the
  sweep stops with an error naming what was lost; the same command continues once the cluster is back.
  (Ray's core may end the process connected to Ray at once instead: `ray_child.py` runs this executor
  in a child process of the driver for that reason.)

Every failed attempt (its node and cause) is kept in the trial's notes; `worker` in trial.json names
the node the last attempt ran on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Optional

from ..errors import SweepError, require
from .executors import ARRAYS, Options, execute_task, worker_env
from ..records import Emit as Event
from ..records import Status, Task, TaskQueue

NODE_LOSS_RETRIES = 3  # times a trial is resubmitted after losing its node
WORKER_CRASH_LIMIT = 2  # a trial whose worker dies this many times on live nodes is recorded failed
PROBE_SECONDS = 3.0  # how long a TCP connect to the head may take before the head counts as lost
REFRESH_SECONDS = 5.0  # how often the driver re-reads the cluster's nodes and checks the head
ANSWER_SECONDS = 10.0  # a head that takes longer to list its nodes counts as lost


class ClusterLostError(SweepError):
    """The Ray head or the connection to it is gone; running trials were recorded interrupted."""


def _ray_train(task: Task, arrays: dict, backend_name: Optional[str], device: str,
               timeout: Optional[float], save_model: bool = False):
    """The Ray task: says where it runs, then trains and yields the trials' results.

    It runs in a Ray worker process, which keeps Keras loaded between tasks.
    """
    import ray

    yield {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
           "hostname": socket.gethostname(), "pid": os.getpid()}
    from .. import backend

    backend.configure(backend_name, device)
    messages: list = []
    execute_task(task, SimpleNamespace(**arrays), lambda *message: messages.append(message), timeout, save_model)
    yield [m for m in messages if m[0] == "done"]  # epochs arrive with each result's history


@dataclass
class _Job:
    """One task and its attempts so far."""

    task: Task
    attempt: int = 0
    where: Optional[dict] = None  # the node the current attempt runs on, once it started
    announced: bool = False  # the driver has been told it started (it has a record)
    node_losses: int = 0
    crashes: int = 0
    notes: list[str] = field(default_factory=list)


def ray_env(options: Options) -> dict[str, str]:
    """Environment of every Ray worker: thread pools sized to the CPUs one task reserves."""
    threads = max(1, int(options.cpus_per_trial))
    env = worker_env(replace(options, gpus=()), 0, threads=threads)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray assigns GPUs to tasks itself
    return env


def node_capacity(resources: dict, cpus_per_task: float, gpus_per_task: float) -> int:
    """How many tasks of this size fit on a node with these resources at once."""
    fits = int(resources.get("CPU", 0) / cpus_per_task + 1e-9)
    if gpus_per_task > 0:
        fits = min(fits, int(resources.get("GPU", 0) / gpus_per_task + 1e-9))
    return fits


def head_answers(address: str) -> bool:
    """A TCP connect to a head's GCS port ("host:port"): a call into a dead GCS would block for a minute, then exit."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
        return True
    except (OSError, ValueError):
        return False


def check_address(address: Optional[str]) -> None:
    """Fail at once when nothing answers at a host:port address: Ray itself would retry for many minutes."""
    if address and "://" not in address and address.rpartition(":")[2].isdigit() and not head_answers(address):
        port = address.rpartition(":")[2]
        raise SweepError(f"cannot connect to Ray at {address}: nothing answers there. Start the cluster "
                         f"(`ray start --head --port={port}` on the head machine) or fix --ray-address")


def cluster_where(address: Optional[str]) -> str:
    """What the sweep runs on, as an error message names it."""
    return f"the Ray cluster's head at {address}" if address else "the local Ray instance this sweep started"


def stopped_message(lost: str, interrupted: int) -> str:
    """The error that ends a sweep whose cluster was lost, with what to do."""
    return (f"{lost}. {interrupted} running trial(s) recorded interrupted; once the cluster is back, run the "
            "same command to continue (finished trials are kept).")


def from_ray(exc: BaseException) -> bool:
    """Whether an exception is Ray's or its link's (gRPC, the raylet's socket) rather than our code's."""
    return type(exc).__module__.split(".")[0] in ("ray", "grpc") or isinstance(exc, OSError)


def _short_node_id(node_id: Optional[str]) -> str:
    return node_id[:8] if node_id else "?"


def where_text(where: Optional[dict]) -> str:
    if not where:
        return "before it started on a node"
    return f"on node {_short_node_id(where['node_id'])} ({where['hostname']}, {where['node_ip']})"


class RayExecutor:
    """Each task a Ray task on an existing cluster or a fresh local instance; results return to the driver."""

    def __init__(self, options: Options):
        self.ray = require("ray", "--executor ray")
        self.options = options
        self.stopping = False
        self.started_here = False
        self.head: Optional[str] = None  # the GCS's host:port, once connected
        self.lost = False
        self.hung = False  # a call into the head never returned: shutting Ray down would hang too

    # ------------------------------------------------------------ the cluster

    def connect(self) -> None:
        """Join the cluster (or start a local instance); an address where nothing answers fails at once."""
        ray = self.ray
        check_address(self.options.ray_address)
        if not ray.is_initialized():
            # "local" always starts a new instance: never join a cluster some earlier `ray start` left behind.
            try:
                ray.init(address=self.options.ray_address or "local", include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": ray_env(self.options)}, configure_logging=False)
            except Exception as exc:
                where = self.options.ray_address or "a local instance"
                raise SweepError(f"cannot connect to Ray at {where}: {exc}") from None
            self.started_here = True
        self.head = ray.get_runtime_context().gcs_address

    def _where(self) -> str:
        return cluster_where(self.options.ray_address)

    def _head_alive(self) -> bool:
        return self.head is not None and head_answers(self.head)  # asked only once connected

    def _nodes(self) -> list[dict]:
        """The live nodes. Asked from a thread: a head that dies mid-call would block this one for a
        minute and then Ray ends the process, before the running trials could be recorded."""
        if not self._head_alive():
            raise ClusterLostError(f"lost {self._where()}: it does not answer")
        answer: dict = {}

        def ask():
            try:
                answer["nodes"] = self.ray.nodes()
            except Exception as exc:  # noqa: BLE001 - reported below as a lost head
                answer["error"] = exc

        asking = threading.Thread(target=ask, name="mnist-sweep-ray-nodes", daemon=True)
        asking.start()
        asking.join(ANSWER_SECONDS)
        if "nodes" not in answer:
            self.hung = asking.is_alive()
            cause = f" ({type(answer['error']).__name__})" if "error" in answer else ""
            raise ClusterLostError(f"lost {self._where()}: it stopped answering{cause}")
        return [node for node in answer["nodes"] if node.get("Alive")]

    def _capacity(self) -> int:
        opts = self.options
        return sum(node_capacity(n.get("Resources", {}), opts.cpus_per_trial, opts.gpus_per_trial)
                   for n in self._nodes())

    def _check_fits(self, capacity: int) -> None:
        if capacity:
            return
        need = f"{self.options.cpus_per_trial:g} CPU(s)"
        if self.options.gpus_per_trial:
            need += f" and {self.options.gpus_per_trial:g} GPU(s)"
        have = "; ".join(f"{_short_node_id(n['NodeID'])}: {n.get('Resources', {}).get('CPU', 0):g} CPU(s), "
                         f"{n.get('Resources', {}).get('GPU', 0):g} GPU(s)" for n in self._nodes())
        raise SweepError(f"no node of {self._where()} can run a trial: each needs {need} "
                         f"(--cpus-per-trial, --gpus-per-trial); the nodes have {have or 'nothing'}")

    # ------------------------------------------------------------ the sweep

    def run(self, tasks: TaskQueue, data, emit: Event) -> None:
        ray = self.ray
        self.connect()
        running: dict = {}  # generator -> _Job
        try:
            remote = ray.remote(num_cpus=self.options.cpus_per_trial, num_gpus=self.options.gpus_per_trial,
                                max_retries=0)(_ray_train)
            capacity = self._capacity()
            self._check_fits(capacity)
            arrays = ray.put({name: getattr(data, name) for name in ARRAYS})
            queue: deque = deque()  # jobs to retry, ahead of `tasks` (which may grow from an event)
            refreshed = time.monotonic()
            while not self.stopping and (queue or tasks.ready()) or running:
                while not self.stopping and (queue or tasks.ready()) and len(running) < max(capacity, 1):
                    job = queue.popleft() if queue else _Job(tasks.take())
                    job.attempt, job.where = job.attempt + 1, None
                    running[remote.remote(job.task, arrays, self.options.backend, self.options.device,
                                          self.options.timeout_seconds, self.options.save_model)] = job
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for generator in ready:
                    self._receive(generator, running, queue, emit)
                if ready or time.monotonic() - refreshed > REFRESH_SECONDS:
                    capacity, refreshed = self._capacity(), time.monotonic()  # nodes join and leave
        except Exception as exc:  # noqa: BLE001 - the cluster lost, or Ray itself failing (its socket to the raylet...)
            if not isinstance(exc, ClusterLostError):
                if not from_ray(exc):
                    raise  # our own code's error, or the driver's (a results directory that cannot be written)
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                exc = ClusterLostError(f"lost {self._where()} ({type(exc).__name__}: {first})")
            self.lost = True
            started = [job for job in running.values() if job.where]
            for job in started:
                for trial in job.task.trials:
                    emit("done", trial.trial_id, {
                        "status": Status.INTERRUPTED, "error": f"stopped: {exc}", "host": job.where["hostname"],
                        "notes": job.notes + [f"attempt {job.attempt} {where_text(job.where)}: interrupted, {exc}"]})
            running.clear()
            raise ClusterLostError(stopped_message(str(exc), sum(len(j.task.trials) for j in started))) from None
        finally:
            if not self.lost:
                for generator in running:
                    ray.cancel(generator, force=True)
            if (self.started_here or self.lost) and not self.hung:
                ray.shutdown()

    def _receive(self, generator, running: dict, queue: deque, emit: Event) -> None:
        """Take the next thing a task yielded: where it started, its results, or why it died."""
        ray = self.ray
        job = running[generator]
        try:
            value = ray.get(next(generator))
        except StopIteration:
            running.pop(generator)
            return
        except ray.exceptions.RayTaskError as exc:  # the task's own code raised, outside any trial
            running.pop(generator)
            for trial in job.task.trials:
                emit("done", trial.trial_id, {"status": Status.FAILED, "error": f"Ray task failed: {exc}",
                                              "notes": list(job.notes)})
            return
        except ray.exceptions.RayError as exc:  # the task's worker, node or connection died
            self._attempt_died(job, exc, queue, emit)  # a lost head raises here, with the job still running
            running.pop(generator)
            return
        if isinstance(value, dict):
            job.where, job.announced = value, True
            for trial in job.task.trials:
                emit("started", trial.trial_id, dict(value, attempt=job.attempt))
            return
        running.pop(generator)
        for kind, trial_id, result in value:
            result["notes"] = job.notes + list(result.get("notes") or [])
            result.setdefault("host", job.where["hostname"] if job.where else None)
            emit(kind, trial_id, result)

    def _attempt_died(self, job: _Job, exc, queue: deque, emit: Event) -> None:
        """Retry a job whose node died; fail it after WORKER_CRASH_LIMIT deaths on live nodes."""
        errors = self.ray.exceptions
        cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        if isinstance(exc, errors.LocalRayletDiedError) or not self._head_alive():
            raise ClusterLostError(f"lost {self._where()} ({cause.split('. ')[0]})")  # Ray's advice follows
        node = (job.where or {}).get("node_id")
        node_died = isinstance(exc, (errors.NodeDiedError, errors.ObjectLostError)) or (
            isinstance(exc, (errors.WorkerCrashedError, errors.OutOfMemoryError))
            and node is not None and node not in {n["NodeID"] for n in self._nodes()})
        crashed = isinstance(exc, (errors.WorkerCrashedError, errors.OutOfMemoryError)) and not node_died
        if node_died:
            job.node_losses += 1
            job.notes.append(f"attempt {job.attempt} {where_text(job.where)}: its node was lost ({cause})")
            retry = job.node_losses <= NODE_LOSS_RETRIES
        elif crashed:
            job.crashes += 1
            job.notes.append(f"attempt {job.attempt} {where_text(job.where)}: its worker process died ({cause})")
            retry = job.crashes < WORKER_CRASH_LIMIT
        else:  # unschedulable, runtime environment, ...: not something a retry fixes
            job.notes.append(f"attempt {job.attempt} {where_text(job.where)}: {cause}")
            retry = False
        if retry and not self.stopping:
            queue.appendleft(job)  # first in line for the next free slot
            return
        if node_died:
            error = f"lost its node {job.node_losses} times (limit {NODE_LOSS_RETRIES} retries); last: {cause}"
        elif crashed:
            error = f"its worker process died {job.crashes} times, on nodes that stayed up; last: {cause}"
        else:
            error = f"Ray could not run it: {cause}"
        if retry:  # a retry was due, but the sweep is stopping (Ctrl-C)
            status, error = Status.INTERRUPTED, f"stopped before a retry: {cause}"
        else:
            status = Status.FAILED
        if not job.announced:  # it never started anywhere: give it a record to fail in
            for trial in job.task.trials:
                emit("started", trial.trial_id, {"attempt": job.attempt})
        for trial in job.task.trials:
            emit("done", trial.trial_id, {"status": status, "error": error, "notes": list(job.notes),
                                          "host": job.where["hostname"] if job.where else None})

    def stop(self) -> None:
        self.stopping = True
