"""`--executor ray` with the connection to Ray in a child process, so that losing the head cannot end the sweep.

When the node that a Ray driver is attached to dies (the head, for a sweep run on the head machine),
Ray's core worker ends the driver's process at once ("connection to the plasma store is failed",
exit code 1), before Python sees an error. So the process that writes the results does not talk to
Ray: it starts a child that runs `RayExecutor` and relays its events. When Ray ends that child, the
driver records the trials that were running `interrupted` and stops with an error naming what was
lost; the same command continues once the cluster is back.

The protocol, on one pipe; the child asks and the driver answers:

    child -> ("connected", gcs_address)          once ray.init returned (the driver waits CONNECT_SECONDS)
    child -> ("next",)                     <-    the next task, or None when there is none now
    child -> ("event", kind, trial_id, info) <-  what emit returned (the pruning verdict)
    child -> ("end", error)                      its last message: None, a SweepError, or a traceback's text

The first Ctrl-C sets an Event the child watches (it ignores SIGINT and SIGHUP itself). A child that ends
without saying "end" was ended by Ray (or killed); a child whose driver is gone exits.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from pathlib import Path

from ..errors import SweepError, require
from .executors import Options, exit_cause, open_arrays, shared_data
from ..records import Emit as Event
from ..records import Status, Task, TaskQueue
from .ray_executor import (ClusterLostError, RayExecutor, check_address, cluster_where, head_answers,
                           stopped_message, where_text)

CONNECT_SECONDS = 120.0  # a cluster that has not let the child join by then is reported unreachable
EXIT_SECONDS = 30.0  # how long a child that is done may take to shut Ray down before it is killed


class _DriverGone(Exception):
    """The driver closed the pipe (it stopped on an error of its own, or was killed)."""


class _DriverTasks:
    """The driver's task queue as seen from the child (a TaskQueue): each task asked for when one is wanted."""

    def __init__(self, ask):
        self.ask = ask
        self.held = None

    def ready(self) -> bool:
        if self.held is None:
            self.held = self.ask("next")
        return self.held is not None

    def take(self) -> Task:
        if not self.ready():
            raise IndexError("no task left")
        task, self.held = self.held, None
        return task

    def expected(self) -> int:
        return int(self.held is not None)


def _asker(conn):
    def ask(*message):
        try:
            conn.send(message)
            return conn.recv()
        except (EOFError, OSError):
            raise _DriverGone() from None
    return ask


def _watch(stop, executor, driver: int) -> None:
    """Pass the first Ctrl-C on; end this process if the driver died (nobody would record its trials)."""
    while not stop.wait(1.0):
        if os.getppid() != driver:
            os._exit(1)  # Ray ends the tasks of a driver that is gone
    executor.stop()


def _child_main(conn, stop, options: Options, folder: str) -> None:
    """The child: joins Ray, then runs the sweep's tasks there, asking the driver for each and reporting back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and a hang-up are the driver's to handle; SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # stays Ray's: the driver sends it to shut this child down
    ask = _asker(conn)
    error: SweepError | str | None = None  # the driver raises a SweepError again, and shows a traceback (str)
    try:
        executor = RayExecutor(options)
        threading.Thread(target=_watch, args=(stop, executor, os.getppid()), daemon=True).start()
        executor.connect()
        conn.send(("connected", executor.head))
        executor.run(_DriverTasks(ask), open_arrays(Path(folder)), lambda *event: ask("event", *event))
    except _DriverGone:
        return
    except SweepError as exc:
        error = exc if type(exc) in (SweepError, ClusterLostError) else SweepError(str(exc))
    except Exception:  # noqa: BLE001 - a bug: the driver shows its traceback
        error = traceback.format_exc()
    try:
        conn.send(("end", error))
    except OSError:
        pass


class ChildRayExecutor:
    """The executor of `--executor ray`: RayExecutor in a child process; this process records everything."""

    def __init__(self, options: Options):
        require("ray", "--executor ray", load=False)  # the driver never imports Ray itself
        self.options = options
        self.stopping = False
        self.context = mp.get_context("spawn")  # never fork a process that may have loaded TensorFlow
        self.stop_event = self.context.Event()
        self.head = options.ray_address  # the GCS's host:port, as the child reports it once connected
        self.running: dict[str, dict] = {}  # trial id -> the "started" info of its current attempt
        self.interrupted = 0  # trials the child recorded interrupted (it saw the cluster go)
        self.connected = False

    def run(self, tasks: TaskQueue, data, emit: Event) -> None:
        check_address(self.options.ray_address)  # here too: a child takes seconds to import Ray
        with shared_data(data) as folder:
            conn, child_conn = self.context.Pipe()
            child = self.context.Process(target=_child_main, args=(child_conn, self.stop_event, self.options, folder),
                                         name="mnist-sweep-ray", daemon=True)
            child.start()
            child_conn.close()
            ended, error = False, None
            try:
                error, ended = self._serve(conn, child, tasks, emit), True
            finally:
                conn.close()  # a child still waiting for an answer learns the driver is gone
                if not ended and child.is_alive():
                    child.terminate()  # Ray's SIGTERM handler shuts the driver down, which ends its tasks
                child.join(EXIT_SECONDS)
                if child.is_alive():
                    child.kill()
                    child.join()
        if isinstance(error, str):
            raise RuntimeError(f"the Ray driver process failed:\n{error}")
        if error is not None:
            raise error

    def _serve(self, conn, child, tasks: TaskQueue, emit: Event):
        """Answer the child until it says "end", and return the error it ended with; raise when it is lost."""
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            if self.stopping:
                self.stop_event.set()
            if not conn.poll(0.5):
                if not child.is_alive() and not conn.poll():
                    self._lost(child, emit)
                if not self.connected and time.monotonic() > deadline:
                    raise SweepError(f"cannot connect to Ray at {self.options.ray_address or 'a local instance'}: "
                                     f"no answer within {CONNECT_SECONDS:g} s; check that the cluster is up "
                                     "(`ray status` on the head) and --ray-address")
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._lost(child, emit)
            if message[0] == "end":
                return message[1]
            answer = self._answer(message, tasks, emit)
            try:
                if message[0] != "connected":
                    conn.send(answer)
            except OSError:  # the child died between its question and the answer
                self._lost(child, emit)

    def _answer(self, message: tuple, tasks: TaskQueue, emit: Event):
        kind = message[0]
        if kind == "connected":
            self.connected, self.head = True, message[1]
            return None
        if kind == "next":
            return tasks.take() if not self.stopping and tasks.ready() else None
        _, event, trial_id, info = message
        if event == "started":
            self.running[trial_id] = info
        elif event == "done":
            self.running.pop(trial_id, None)
            self.interrupted += info.get("status") == Status.INTERRUPTED
        return emit(event, trial_id, info)

    def _lost(self, child, emit: Event) -> None:
        """Ray ended the child: record its running trials interrupted and stop with what was lost."""
        child.join(EXIT_SECONDS)
        lost = f"lost {cluster_where(self.options.ray_address)}: Ray ended the process connected to it " \
               f"({exit_cause(child.exitcode)})"
        if self.head and not head_answers(self.head):
            lost += " and the head does not answer"
        for trial_id, info in list(self.running.items()):
            emit("done", trial_id, {
                "status": Status.INTERRUPTED, "error": f"stopped: {lost}", "host": info.get("hostname"),
                "notes": [f"attempt {info.get('attempt', 1)} {where_text(info)}: interrupted, {lost}"]})
        self.interrupted, self.running = self.interrupted + len(self.running), {}
        raise ClusterLostError(stopped_message(lost, self.interrupted))

    def stop(self) -> None:
        self.stopping = True
