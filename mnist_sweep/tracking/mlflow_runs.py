"""A sweep's results as MLflow runs: one parent run per sweep, one nested run per trial.

Each sweep is an MLflow experiment of its name. Its parent run holds the config, the findings of
`compare` and report.html; each trial's run holds its settings as params, its history as stepped
metrics, its final metrics as final/<metric>, tags (trial_id, config_id, seed, status, execution) and
its model. Runs are found again by their tags, so exporting twice adds nothing; a trial whose
results changed since (trained again) has its run replaced, since MLflow cannot take back a metric,
and the run of a trial no longer in the results (renamed when the grid's varying settings changed,
or removed) is deleted, so no trial appears twice. Deleted runs stay restorable until `mlflow gc`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, ViewType
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from ..errors import OptionError, SweepError
from ..plan.grid import label
from .sweep_results import EPOCH_METRICS, FINAL_PREFIX, SweepResults, final_metrics, load_sweeps, seconds
from ..records import FINISHED, Status

ROLE = "mnist_sweep.role"  # "sweep" on a parent run, "trial" on a trial's run
DIGEST = "mnist_sweep.digest"  # what the run was written from: unchanged results are not written again
RUN_STATUS: dict[str, str] = {FINISHED: "FINISHED", Status.FAILED: "FAILED", Status.DIVERGED: "FAILED",
                              Status.TIMEOUT: "FAILED", Status.INTERRUPTED: "KILLED"}
ARTIFACTS = "mlflow-artifacts"  # next to a SQLite tracking database
# MLflow 3's UI opens an experiment of no stated kind as a GenAI one (traces); this opens its runs.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# MLflow retries a failing HTTP request 7 times with backoff (minutes); an export fails sooner unless the user
# set these. The server was probed first, so what is left to retry is a busy server, not a missing one.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
PROBE_SECONDS = 5


@dataclass
class ExportedSweep:
    """What exporting one sweep did."""

    name: str
    experiment_id: str
    parent_run_id: str
    created: int = 0
    replaced: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # trial ids whose runs were deleted
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # files left out (links are not followed, so not uploaded)


def results_root(results: str | Path) -> Path:
    """The folder holding the sweeps: RESULTS itself, or its parent when RESULTS is one sweep."""
    path = Path(results)
    return path.parent if (path / "sweep.yaml").exists() or (path / "runs").is_dir() else path


def default_tracking_uri(results: str | Path) -> str:
    """A SQLite database in the results root: works offline, no server (MLflow's file store is deprecated)."""
    return f"sqlite:///{(results_root(results) / 'mlflow.db').resolve()}"


def _uri_problem(tracking_uri: str) -> str | None:
    """Why MLflow could not use this tracking URI, found without writing anything; None when it can.

    Checks the scheme against the stores MLflow knows, that a database URI's driver is installed and a
    SQLite file's folder exists, and that an HTTP server's port answers (a closed port fails in a second).
    """
    from urllib.parse import urlparse

    scheme = urlparse(tracking_uri).scheme.lower()
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        known = sorted(str(k) for k in _tracking_store_registry._registry if k)
    except (ImportError, AttributeError):  # an MLflow that moved it: let MLflow say
        known = []
    family = scheme.split("+")[0]  # postgresql+psycopg2: the database, then its driver
    if known and family not in known and tracking_uri not in known and len(scheme) > 1:  # C:\\... is a path
        return (f"unknown scheme {scheme + '://' if scheme else ''!r} in {tracking_uri!r}; MLflow stores: "
                f"{', '.join(k + '://' for k in known if k not in ('file',))} or a folder path")
    if family in ("sqlite", "postgresql", "mysql", "mssql"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(tracking_uri)
            url.get_dialect().import_dbapi()
        except ArgumentError as exc:
            return f"not a database URI ({exc})"
        except ImportError as exc:
            module = getattr(exc, "name", None) or str(exc)
            return (f"the database driver {module} for {scheme}:// is not installed: pip install it (e.g. "
                    f"pip install {_DRIVERS.get(module, module)}) or use the default SQLite store")
        except Exception as exc:  # a dialect SQLAlchemy does not have (mysql+nosuch)
            return f"no SQLAlchemy dialect for {scheme}:// ({type(exc).__name__}: {exc})"
        if scheme == "sqlite" and url.database not in (None, "", ":memory:"):
            folder = Path(url.database).expanduser().absolute().parent
            if not folder.is_dir():
                return f"the SQLite database's folder {folder} does not exist; create it or choose another path"
        return None
    if scheme in ("http", "https"):
        parsed = urlparse(tracking_uri)
        host, port = parsed.hostname or "localhost", parsed.port or (443 if scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
        except OSError as exc:
            return (f"no MLflow server answers at {host}:{port} ({exc.strerror or exc}); start one "
                    f"(mlflow server --host {host} --port {port}) or check the URI")
    return None


_DRIVERS = {"MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'",
            "pymssql": "pymssql", "pyodbc": "pyodbc"}


def check_tracking_uri(tracking_uri: str, given: bool = True) -> None:
    """Raise OptionError (exit 2) naming the URI when MLflow could not use it, before any work."""
    problem = _uri_problem(tracking_uri)
    if problem:
        raise OptionError("--tracking-uri" if given else "the default MLflow store", f"{problem}")


@contextmanager
def _http_retries_bounded():
    """MLflow's HTTP retry settings bounded for this export, unless the user set them; restored after."""
    added = {k: v for k, v in HTTP_DEFAULTS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _lock_path(tracking_uri: str) -> Path:
    """Where exports to one store meet: beside a SQLite database, else a per-URI file in the user's cache."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri[len("sqlite:///"):]).expanduser().absolute()
        return database.with_name(database.name + ".lock")
    from ..data.dataset import cache_dir

    return cache_dir() / "mlflow-locks" / f"{hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]}.lock"


@contextmanager
def store_lock(tracking_uri: str):
    """Hold an exclusive lock on one tracking store for a whole export, so that two exports at once never
    race to create its tables, a sweep's parent run or a trial's run: the second waits, then finds and
    reuses what the first wrote. The OS releases the lock if the holder dies. The file is opened without
    following a link at its name."""
    import fcntl

    path = _lock_path(tracking_uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise OptionError("--tracking-uri", f"cannot create the export lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _artifact_location(tracking_uri: str) -> str | None:
    """Beside a SQLite database; elsewhere the tracking server decides."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///"):]).resolve().parent / ARTIFACTS).as_uri()
    return None


def param_value(key: str, value: Any) -> str:
    """A setting as a short readable string: "adam lr=0.01", "128-64", "32-32-pool-64-64-pool", "none"."""
    return "none" if value is None else str(label(key, value))


def _millis(timestamp: float) -> int:
    """Seconds since the epoch as MLflow's milliseconds."""
    return int(timestamp * 1000)


def _ms(timestamp: float | None) -> int | None:
    return None if timestamp is None else _millis(timestamp)


def _results_digest(record: Mapping[str, Any], history: list[dict], model: Path | None) -> str:
    data = {"record": record, "history": history, "model": model.stat().st_size if model is not None else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class MlflowExport:
    """Writes sweeps to one tracking URI."""

    def __init__(self, tracking_uri: str):
        for name in ("alembic", "mlflow.store.db.utils"):  # setting up the database's tables is not news
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def _experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            return self.client.create_experiment(name, artifact_location=_artifact_location(self.tracking_uri),
                                                 tags={EXPERIMENT_KIND: MODEL_TRAINING})
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        if EXPERIMENT_KIND not in experiment.tags:
            self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        return experiment.experiment_id

    def _runs(self, experiment_id: str) -> list:
        runs: list = []
        token = None
        while True:
            page = self.client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self.client.log_batch(run_id, params=list(params), tags=list(tags))
        for chunk in _chunks(list(metrics), 1000):
            self.client.log_batch(run_id, metrics=chunk)

    def _unique(self, runs: list, done: "ExportedSweep | None" = None) -> Any:
        """The first-created of runs that stand for one thing (a sweep, a trial); any others, left by an
        export that ran at the same time as another before exports took a lock, are deleted."""
        if not runs:
            return None
        keep, *extra = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
        for run in extra:
            self.client.delete_run(run.info.run_id)
        if extra and done is not None:
            done.notes.append(f"deleted {len(extra)} duplicate run(s) of {keep.info.run_name}")
        return keep

    def export(self, sweep: SweepResults) -> ExportedSweep:
        experiment_id = self._experiment(sweep.name)
        runs = self._runs(experiment_id)
        notes: list[str] = []
        parents = [r for r in runs if r.data.tags.get(ROLE) == "sweep"]
        parent = self._unique(parents)
        if len(parents) > 1:
            notes.append(f"deleted {len(parents) - 1} duplicate parent run(s) of {sweep.name}")
            extra = {r.info.run_id for r in parents} - {parent.info.run_id}
            runs = [r for r in runs if r.info.run_id not in extra]
            for run in [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) in extra]:
                self.client.delete_run(run.info.run_id)  # trials under a duplicate parent
            runs = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) not in extra]
        parent_id = parent.info.run_id if parent else self.client.create_run(
            experiment_id, start_time=_ms(min(filter(None, (seconds(r.get("started_at")) for r in sweep.records)),
                                             default=None)),
            tags={ROLE: "sweep", "sweep": sweep.name}, run_name=sweep.name).info.run_id
        done = ExportedSweep(sweep.name, experiment_id, parent_id, notes=notes,
                             warnings=list(sweep.warnings))
        by_trial: dict[Any, list] = {}
        for r in runs:  # a trial's runs are keyed by sweep (its parent) and trial id
            if r.data.tags.get(ROLE) == "trial" and r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent_id:
                by_trial.setdefault(r.data.tags.get("trial_id"), []).append(r)
        children = {trial_id: self._unique(found, done) for trial_id, found in by_trial.items()}
        for record in sweep.records:
            self._trial(sweep, record, parent_id, experiment_id, children.get(record["trial_id"]), done)
        current = {record["trial_id"] for record in sweep.records}
        for trial_id, run in sorted(children.items(), key=lambda item: str(item[0])):
            if trial_id not in current:  # renamed or removed since the last export
                self.client.delete_run(run.info.run_id)
                done.removed.append(str(trial_id))
        self._sweep_run(sweep, parent_id, done)
        return done

    def _trial(self, sweep: SweepResults, record: Mapping[str, Any], parent_id: str, experiment_id: str, existing,
               done: ExportedSweep) -> None:
        trial_id = record["trial_id"]
        history = sweep.history(trial_id)
        model = sweep.file("runs", trial_id, "model.keras")
        digest = _results_digest(record, history, model)
        if existing is not None:
            if existing.data.tags.get(DIGEST) == digest:
                done.unchanged += 1
                return
            self.client.delete_run(existing.info.run_id)
            done.replaced += 1
        else:
            done.created += 1
        status = str(record.get("status"))
        tags = {MLFLOW_PARENT_RUN_ID: parent_id, ROLE: "trial", "sweep": sweep.name,
                "trial_id": trial_id, "config_id": str(record.get("config_id")), "seed": str(record.get("seed")),
                "status": status, "execution": str(record.get("execution") or "isolated")}
        if record.get("group_id"):
            tags["group_id"] = str(record["group_id"])
        if record.get("error"):
            tags["error"] = str(record["error"])[:1000]
        start = seconds(record.get("started_at"))
        run_id = self.client.create_run(experiment_id, start_time=_ms(start), tags=tags, run_name=trial_id).info.run_id
        params = {key: param_value(key, value) for key, value in (record.get("settings") or {}).items()}
        params["seed"] = str(record.get("seed"))
        metrics, wall = [], start or 0.0
        for row in history:
            step = row.get("epoch_seconds")
            wall += step if isinstance(step, float) and math.isfinite(step) else 0.0
            metrics += [Metric(key, float(row[key]), _millis(wall), int(row["epoch"])) for key in EPOCH_METRICS
                        if isinstance(row.get(key), float)]
        end = seconds(record.get("finished_at")) or wall
        last = int(history[-1]["epoch"]) if history else 0
        metrics += [Metric(FINAL_PREFIX + key, value, _millis(end), last)
                    for key, value in final_metrics(record).items()]
        self._log(run_id, metrics, [Param(k, v) for k, v in params.items()])
        for name in ("model.keras", "model.txt"):
            artifact = sweep.file("runs", trial_id, name)
            if artifact is not None:
                self.client.log_artifact(run_id, str(artifact))
        if status in RUN_STATUS:
            self.client.set_terminated(run_id, RUN_STATUS[status], end_time=_ms(end))
        # Last: a run cut off before here (kill, lost server) has no digest, so the next export replaces it.
        self.client.set_tag(run_id, DIGEST, digest)

    def _sweep_run(self, sweep: SweepResults, parent_id: str, done: ExportedSweep) -> None:
        """The parent run: the config, the findings, the report, and a status that sums up the trials."""
        from ..analysis.compare import compare, render

        for name in ("sweep.yaml", "summary.csv", "report.html"):
            artifact = sweep.file(name)
            if artifact is not None:
                self.client.log_artifact(parent_id, str(artifact))
        try:
            self.client.log_text(parent_id, render(compare(sweep.directory), "markdown"), "findings.md")
        except SweepError as exc:
            done.notes.append(f"no findings.md: {exc}")
        statuses = {str(r.get("status")) for r in sweep.records}
        self.client.set_tag(parent_id, "trials", str(len(sweep.records)))
        self.client.set_tag(parent_id, "finished", str(sweep.finished))
        if statuses & {Status.RUNNING} or not statuses:
            self.client.update_run(parent_id, RunStatus.to_string(RunStatus.RUNNING))
            return
        end = max(filter(None, (seconds(r.get("finished_at")) for r in sweep.records)), default=None)
        status = ("KILLED" if Status.INTERRUPTED in statuses else "FAILED" if statuses - {FINISHED, Status.INTERRUPTED}
                  else "FINISHED")
        self.client.set_terminated(parent_id, status, end_time=_ms(end))


def export_mlflow(results: str | Path, tracking_uri: str | None = None) -> tuple[str, list[ExportedSweep]]:
    """Every sweep at or under `results` into MLflow; returns the tracking URI used and what was done."""
    sweeps = load_sweeps(results)  # reads only; nothing is written before the store is checked
    given = tracking_uri is not None
    tracking_uri = tracking_uri or default_tracking_uri(results)
    check_tracking_uri(tracking_uri, given)
    with _http_retries_bounded(), store_lock(tracking_uri):
        exporter = MlflowExport(tracking_uri)
        return tracking_uri, [exporter.export(sweep) for sweep in sweeps]
