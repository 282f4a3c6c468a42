"""Where trials run: in this process, in long-lived worker processes, or as Ray tasks.

Every executor turns trials into events for the driver: ("started", trial_id, info),
("epoch", trial_id, row) and ("done", trial_id, result). Only the driver writes results.
An executor takes tasks from a `records.TaskQueue` as workers free up; more may come while it runs
(a race's next round once the last trial of a round is done, a search's next configurations).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional

from ..errors import LimitError, SetupError, SweepError, out_of_room, room_remedy
from ..records import Emit as Event
from ..records import DEFAULT_MAX_BRANCHES, DEFAULT_STACK_MEMORY, Form, Status, Task, TaskQueue, Trial

ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
HANG_GRACE_SECONDS = 30.0  # past timeout_seconds + this, a worker that did not stop itself is killed
NO_COPY = "run with --jobs 1 --executor auto, which trains in this process and needs no copy"
PR_SET_PDEATHSIG = 1  # Linux prctl: the signal a process gets when its parent ends


@dataclass
class Options:
    """How and where trials run; the same for every executor."""

    jobs: int = 1
    backend: Optional[str] = None  # None: Keras' default (tensorflow unless KERAS_BACKEND says otherwise)
    device: str = "auto"
    gpus: tuple[str, ...] = ()  # GPU indices to spread workers over
    timeout_seconds: Optional[float] = None
    ray_address: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    fuse: Optional[bool] = None  # train compatible trials as one model; None: the config's `execution`
    save_model: bool = False  # return each ok trial's .keras file to the driver (train.save_model best/all)
    max_branches: int = DEFAULT_MAX_BRANCHES  # --max-branches
    stack_memory: int = DEFAULT_STACK_MEMORY  # --stack-memory, in bytes
    prune: bool = False  # a worker waits for the driver's verdict after each epoch (search with `prune:`)


def execute_task(task: Task, data, send: Event, timeout: Optional[float], save_model: bool = False) -> None:
    """Train one task and report it through `send`: epochs as they end, then a result per trial."""
    from ..training.train import execute_trial

    def on_epoch(trial, rows):
        return send("epoch", trial.trial_id, rows[-1])  # true: the driver prunes this trial

    if task.form is Form.ISOLATED:
        (trial,) = task.trials
        results = {trial.trial_id: execute_trial(trial, data, on_epoch=on_epoch, timeout_seconds=timeout,
                                                 save_model=save_model)}
    else:
        from ..training.fused import execute_group

        results = execute_group(list(task.trials), data, on_epoch=on_epoch, timeout_seconds=timeout,
                                save_model=save_model, form=task.form)
    for trial in task.trials:
        send("done", trial.trial_id, results[trial.trial_id])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_jobs(device: str, gpus: tuple[str, ...] = ()) -> int:
    """As many workers as the hardware sensibly allows: one per core, or two per GPU."""
    if device == "gpu":
        return 2 * max(len(gpus), 1)
    return max(1, cpu_count())


def worker_env(options: Options, index: int, threads: Optional[int] = None) -> dict[str, str]:
    """Environment of worker `index`: backend, GPU share, and thread pools sized to its share of cores."""
    pool = str(threads or max(1, cpu_count() // max(options.jobs, 1)))
    env = {"OMP_NUM_THREADS": pool, "TF_NUM_INTRAOP_THREADS": pool, "TF_NUM_INTEROP_THREADS": "1",
           "TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "MNIST_SWEEP_TORCH_THREADS": pool}
    if pool == "1":
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if options.backend:
        env["KERAS_BACKEND"] = options.backend
    if options.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif options.gpus:
        env["CUDA_VISIBLE_DEVICES"] = options.gpus[index % len(options.gpus)]
    return env


# ---------------------------------------------------------------- shared data

def share_arrays(data, folder: Path) -> Path:
    """Write the dataset's arrays once as .npy files that every worker memory-maps.

    Not np.save: a short write there raises an OSError without its errno, so a full disk or the
    file-size limit could not be told from any other failure.
    """
    import numpy as np

    for name in ARRAYS:
        array = np.ascontiguousarray(getattr(data, name))
        with open(folder / f"{name}.npy", "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
            handle.write(array.data.cast("B"))  # the array's own buffer, as memoryview(array)
    return folder


@contextmanager
def shared_data(data) -> Iterator[str]:
    """A private folder in $TMPDIR holding the dataset for the workers (`share_arrays`), removed afterwards
    however the sweep ends; a full disk or file-size limit while copying is a LimitError naming it."""
    where = tempfile.gettempdir()
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="mnist-sweep-data-")
        share_arrays(data, Path(folder))
    except BaseException as exc:  # a signal too: the copy goes
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        full = out_of_room(exc)
        problem = f"cannot copy the dataset for the worker processes into {folder or where}: {exc.strerror or exc}"
        if full is None:
            raise SweepError(f"{problem}; check that TMPDIR ({where}) is a writable folder, or {NO_COPY}") from None
        raise LimitError(f"{problem}; {room_remedy(full, where, 'point TMPDIR at')}, or {NO_COPY}") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def open_arrays(folder: Path) -> SimpleNamespace:
    import numpy as np

    return SimpleNamespace(**{name: np.load(Path(folder) / f"{name}.npy", mmap_mode="r") for name in ARRAYS})


# ---------------------------------------------------------------- in-process

class InlineExecutor:
    """Trials one after another in this process: the default, and what notebooks get."""

    def __init__(self, options: Options):
        self.options = options
        self.stopping = False

    def run(self, queue: TaskQueue, data, emit: Event) -> None:
        from .. import backend

        backend.configure(self.options.backend, self.options.device)
        backend.resolve_device(self.options.device)  # --device gpu without a GPU fails before any training
        while not self.stopping and queue.ready():
            task = queue.take()
            for trial in task.trials:
                emit("started", trial.trial_id, {})
            execute_task(task, data, emit, self.options.timeout_seconds, self.options.save_model)

    def stop(self) -> None:
        self.stopping = True


# ---------------------------------------------------------------- worker processes

def _leave_signals_to_the_driver() -> None:
    """In a worker: Ctrl-C, SIGTERM and SIGHUP (sent to the whole process group by a terminal, `timeout` or a
    batch system) are the driver's to handle, and the worker dies with the driver however it ends."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        parent = os.getppid()
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the driver died before the line above
            os._exit(1)


def _worker_main(conn, env: dict[str, str], data_dir: str, device: str, timeout: Optional[float],
                 save_model: bool = False, prune: bool = False) -> None:
    """A worker: imports Keras once, maps the data once, then trains the trials it is sent."""
    _leave_signals_to_the_driver()
    os.environ.update(env)
    from .. import backend

    try:
        backend.configure(env.get("KERAS_BACKEND"), device)
        backend.resolve_device(device)
        if backend.backend_name() == "torch":
            import torch

            torch.set_num_threads(int(env["MNIST_SWEEP_TORCH_THREADS"]))
        data = open_arrays(Path(data_dir))
    except Exception as exc:  # the driver stops the sweep with this message
        conn.send(("fatal", f"{type(exc).__name__}: {exc}" if not isinstance(exc, SweepError) else str(exc),
                   isinstance(exc, SetupError)))  # no GPU, no backend: the environment's fault, exit 2
        return
    parent = os.getppid()
    conn.send(("ready",))
    while True:
        if not conn.poll(1.0):
            if os.getppid() != parent:  # the driver is gone (kill -9): do not train for nobody
                return
            continue
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        for trial in task.trials:
            conn.send(("started", trial.trial_id, {"pid": os.getpid()}))

        def send(*message):
            conn.send(message)
            if prune and message[0] == "epoch":
                return conn.recv()  # the driver's pruning verdict on this epoch
            return None

        execute_task(task, data, send, timeout, save_model)


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    task: list[Trial] = field(default_factory=list)  # trials of the current task not yet done
    started: float = 0.0


def exit_cause(exitcode: Optional[int]) -> str:
    """Why a child process ended, from its exit code: the signal that killed it, or the code it exited with."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed by {name}" + (": out of memory, or by a user" if name == "SIGKILL" else "")
    return f"exit code {exitcode}"


class ProcessExecutor:
    """N long-lived worker processes on this machine; a worker that dies is replaced."""

    def __init__(self, options: Options):
        self.options = options
        self.stopping = False
        self.workers: list[_Worker] = []
        self.context = mp.get_context("spawn")  # never fork a process that has loaded TensorFlow

    def _spawn(self, index: int, data_dir: str) -> _Worker:
        parent_conn, child_conn = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, daemon=True, name=f"mnist-sweep-worker-{index}",
            args=(child_conn, worker_env(self.options, index), data_dir, self.options.device,
                  self.options.timeout_seconds, self.options.save_model, self.options.prune))
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def run(self, queue: TaskQueue, data, emit: Event) -> None:
        with shared_data(data) as folder:
            count = max(1, min(self.options.jobs, queue.expected()))
            self.workers = [self._spawn(i, folder) for i in range(count)]
            try:
                self._loop(queue, folder, emit)
            finally:
                self._shutdown()

    def _loop(self, queue: TaskQueue, folder: str, emit: Event) -> None:
        while self.workers and (not self.stopping and queue.ready() or any(w.task for w in self.workers)):
            for worker in self.workers:
                if worker.ready and not worker.task and not self.stopping and queue.ready():
                    task = queue.take()
                    worker.task, worker.started = list(task.trials), time.monotonic()
                    worker.conn.send(task)
            waitables = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
            for ready in wait(waitables, timeout=1.0):
                worker = next(w for w in self.workers if ready in (w.conn, w.process.sentinel))
                self._receive(worker, emit)
            self._replace_dead(folder, emit)
            self._kill_hung(emit)
            if self.stopping:  # idle workers are not needed any more
                for worker in [w for w in self.workers if not w.task]:
                    self._retire(worker)

    def _receive(self, worker: _Worker, emit: Event) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready = True
                    continue
                if message[0] == "fatal":
                    error = SetupError if len(message) > 2 and message[2] else SweepError
                    raise error(f"a worker could not start: {message[1]}")
                verdict = emit(*message)
                if message[0] == "epoch" and self.options.prune:
                    worker.conn.send(bool(verdict))
                if message[0] == "done":
                    worker.task = [t for t in worker.task if t.trial_id != message[1]]
        except (EOFError, OSError):
            pass  # the worker died; _replace_dead reports it

    def _replace_dead(self, folder: str, emit: Event) -> None:
        for i, worker in enumerate(self.workers):
            if worker.process.is_alive():
                continue
            worker.process.join()
            for trial in worker.task:
                died = f"worker process died ({exit_cause(worker.process.exitcode)})"
                emit("done", trial.trial_id, {"status": Status.FAILED, "error": died})
            if not worker.task and not worker.ready:
                raise SweepError(f"a worker process could not start ({exit_cause(worker.process.exitcode)}); "
                                 "run with --jobs 1 to see the error")
            self.workers[i] = self._spawn(i, folder)

    def _kill_hung(self, emit: Event) -> None:
        limit = self.options.timeout_seconds
        if not limit:
            return
        for worker in self.workers:
            if worker.task and time.monotonic() - worker.started > limit + HANG_GRACE_SECONDS:
                task, worker.task = worker.task, []
                worker.process.kill()
                for trial in task:
                    emit("done", trial.trial_id, {"status": Status.TIMEOUT, "notes": [
                        f"killed: still running {limit + HANG_GRACE_SECONDS:g} s after it started"]})

    def _retire(self, worker: _Worker) -> None:
        try:
            worker.conn.send(None)
        except OSError:
            pass
        self.workers.remove(worker)
        worker.process.join(timeout=5)

    def stop(self) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(timeout=5)
        self.workers = []
