"""Where tasks run: in this process, in worker processes, or as Ray tasks (`ray_child`, loaded only for Ray).

An executor trains what it is given and reports every trial through its `emit` callback; it never
writes results. Training is imported inside the worker, after the backend is chosen.
"""

from .executors import InlineExecutor, Options, ProcessExecutor, auto_jobs

__all__ = ["InlineExecutor", "Options", "ProcessExecutor", "auto_jobs"]
