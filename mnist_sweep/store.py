"""The results directory: atomic writes, resume, and reading results back as DataFrames.

Layout (a contract that users' scripts read):

    <root>/<name>/sweep.yaml                 the validated config as run
    <root>/<name>/summary.csv                one row per trial, rebuilt from the records
    <root>/<name>/runs/<trial_id>/history.csv
    <root>/<name>/runs/<trial_id>/trial.json
    <root>/<name>/runs/<trial_id>/model.txt
    <root>/<name>/runs/<trial_id>/model.keras   the trained model (train.save_model: best or all)
    <root>/<name>/best_model.json            which trial's model is the best, by validation accuracy
    <root>/<name>/study.db                   a sampled search's Optuna study (search.method random/qmc/tpe)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .errors import ResultsError
from .records import TrialRecord

# Columns before the swept settings, and after them, in summary.csv.
SUMMARY_HEAD = ("trial_id", "config_id", "seed")
SUMMARY_TAIL = ("status", "epochs_run", "best_epoch", "stopped_early", "train_loss", "train_accuracy",
                "val_loss", "val_accuracy", "test_loss", "test_accuracy", "params", "fit_seconds",
                "wall_seconds", "seconds_per_epoch", "device", "dataset_source", "execution", "group_id",
                "group_seconds", "error")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
FINISHED = "ok"  # the status whose trials a re-run skips


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write a file (text, or bytes as they are) so that readers see either the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else
              os.fdopen(fd, "w", encoding="utf-8", newline="")) as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared and copied
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_text(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null so trial.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class ResultsStore:
    """One sweep's results directory."""

    def __init__(self, root: str | Path, name: str):
        self.dir = Path(root) / name
        self.runs = self.dir / "runs"
        # Until the run begins its first trial, what it changed is kept so that a failed start can undo it:
        self.began = False
        self._made: list[tuple[Path, bool]] = []  # folders (True) and the lock file it created, in order
        self._before: dict[Path, bytes | None] = {}  # files it wrote: their content before (None: absent)

    def prepare(self, config: dict[str, Any]) -> None:
        """Create the directory, drop temp files a killed run left, and record the config as run."""
        try:
            self._make_dirs(self.runs)
            for leftover in [*self.dir.glob(".*.tmp"), *self.runs.glob("*/.*.tmp")]:
                leftover.unlink(missing_ok=True)
            self.write_file("sweep.yaml", yaml.safe_dump(config, sort_keys=False))
        except OSError as exc:
            raise ResultsError(f"cannot write results to {self.dir}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------ undoing a failed start

    def _make_dirs(self, path: Path) -> None:
        """mkdir -p that remembers each folder it created (one made meanwhile by another process is not ours)."""
        missing = []
        for folder in [path.absolute(), *path.absolute().parents]:
            if folder.exists():
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            if not self.began:
                self._made.append((folder, True))

    def keep_before(self, path: Path) -> None:
        """Remember a file's content (or that it is absent) before this run first writes it, until it begins."""
        path = path.absolute()
        if self.began or path in self._before:
            return
        self._before[path] = path.read_bytes() if path.is_file() and not path.is_symlink() else None

    def write_file(self, name: str, text: str | bytes) -> None:
        """Write a file of the sweep's own (sweep.yaml, summary.csv, race.json), whole or not at all."""
        self.keep_before(self.dir / name)
        atomic_write(self.dir / name, text)

    def begin(self) -> None:
        """The run began a trial: what it wrote is results from now on, never undone."""
        self.began = True
        self._made, self._before = [], {}

    def undo_start(self) -> None:
        """After a run that stops before its first trial: put back every file it wrote and remove the folders
        it created, so that it leaves nothing behind. What others made meanwhile stays: a folder goes only
        when it is empty, and files are put back one by one, never a folder removed whole."""
        if self.began:
            return
        for path, content in reversed(list(self._before.items())):
            try:
                if content is None:
                    path.unlink(missing_ok=True)
                else:
                    atomic_write(path, content)
            except OSError:
                pass  # the disk that stopped the run may refuse this too: leave the file as it is
        for path, folder in reversed(self._made):
            try:
                path.rmdir() if folder else path.unlink()
            except OSError:
                pass  # not empty (someone else's files are in it) or gone already
        self._made, self._before = [], {}

    def refuse_nested(self) -> None:
        """Refuse a results root inside another sweep's folder (its runs/, say): its results would mix."""
        from .errors import OptionError

        for parent in self.dir.absolute().parents:
            if (parent / "sweep.yaml").is_file() and (parent / "runs").is_dir():
                raise OptionError("--out", f"{self.dir.parent} is inside the sweep {parent}, whose files this "
                                           f"sweep would mix with; choose a folder outside it, e.g. --out "
                                           f"{parent.parent}")

    @contextmanager
    def lock(self):
        """Hold `<sweep>/.lock` while running; the OS releases it when the holder dies, so it never sticks.

        The folders and the lock file it creates count as this run's (`undo_start` removes them).
        """
        import fcntl

        try:
            self._make_dirs(self.dir)
            fresh = not os.path.lexists(self.dir / ".lock")
            handle = open(self.dir / ".lock", "a+")
        except OSError as exc:
            raise ResultsError(f"cannot write results to {self.dir}: {exc.strerror or exc}") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ResultsError(f"{self.dir} is in use by another mnist-sweep run ({holder}); "
                                   "wait for it to finish or stop it, then run again") from None
            if fresh and not self.began:
                self._made.append(((self.dir / ".lock").absolute(), False))  # undone while the lock is held
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run_dir(self, trial_id: str) -> Path:
        return self.runs / trial_id

    def write_history(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        atomic_write(self.run_dir(trial_id) / "history.csv", _csv_text(HISTORY_COLUMNS, rows))

    def write_record(self, record: TrialRecord) -> None:
        """Write trial.json last: a trial counts as finished only once this file says so."""
        atomic_write(self.run_dir(record["trial_id"]) / "trial.json",
                     json.dumps(_json_safe(record), indent=2, default=str) + "\n")

    def write_text(self, trial_id: str, name: str, text: str) -> None:
        atomic_write(self.run_dir(trial_id) / name, text)

    def write_model(self, trial_id: str, model_file: bytes | None) -> None:
        """Write a trial's model.keras; None removes one left by an earlier run of the trial."""
        path = self.run_dir(trial_id) / "model.keras"
        if model_file is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, model_file)

    def read_records(self) -> dict[str, TrialRecord]:
        """Every readable trial.json, by trial id; unreadable ones are skipped (they get retrained)."""
        return read_records(self.dir)

    def finished_by_digest(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Finished trials by the hash that ends their id: {hash: (directory name, record)}.

        Unlike `read_records`, a record whose directory was renamed but not yet rewritten counts.
        """
        found = {}
        for folder, record in _run_records(self.dir):
            if record.get("status") == FINISHED and "-" in str(record.get("trial_id")):
                found.setdefault(record["trial_id"].rsplit("-", 1)[1], (folder, record))
        return found

    def rename_run(self, old: str, new: str) -> None:
        os.rename(self.run_dir(old), self.run_dir(new))

    def write_summary(self, rows: list[dict[str, Any]], factors: list[str]) -> None:
        self.write_file("summary.csv", _csv_text(summary_columns(factors), rows))


def summary_columns(factors: list[str]) -> list[str]:
    return [*SUMMARY_HEAD, *factors, *SUMMARY_TAIL]


def summary_row(record: TrialRecord, factors: dict[str, Any]) -> dict[str, Any]:
    """Flatten a trial record into its summary.csv row."""
    row = {"trial_id": record["trial_id"], "config_id": record["config_id"], "seed": record["seed"], **factors}
    row.update(record.get("metrics") or {})
    row.update(record.get("timing") or {})
    row["params"] = (record.get("params") or {}).get("params")
    row.update(status=record["status"], device=record.get("device"),
               dataset_source=(record.get("dataset") or {}).get("source"), error=record.get("error"),
               execution=record.get("execution", "isolated"), group_id=record.get("group_id"))
    return row


def _run_records(sweep_dir: Path, damaged: list | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(directory name, record) for every run directory whose trial.json parses as a mapping.

    A trial.json that does not is added to `damaged` (when given) as a `damage.Damage`.
    """
    from .damage import read_trial

    for path in sorted((Path(sweep_dir) / "runs").glob("*/trial.json")):
        record, damage = read_trial(path)
        if damage is not None and damaged is not None:
            damaged.append(damage)
        if record is not None:
            yield path.parent.name, record


def read_records(sweep_dir: Path, damaged: list | None = None) -> dict[str, TrialRecord]:
    return {folder: record for folder, record in _run_records(sweep_dir, damaged)
            if record.get("trial_id") == folder}


def find_sweeps(path: str | Path) -> list[Path]:
    """The sweep directories at or under `path` (a sweep has a sweep.yaml or a runs/ folder)."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"no results at {path}: run `mnist-sweep run CONFIG` first, or check the path")
    if (path / "sweep.yaml").exists() or (path / "runs").is_dir():
        return [path]
    found = sorted(p.parent for p in path.glob("*/sweep.yaml"))
    if not found:
        raise ResultsError(f"{path} holds no sweep results (no sweep.yaml in it or its sub-folders)")
    return found


def search_method(sweep_dir: str | Path) -> str:
    """How a sweep chose its configurations (sweep.yaml's search.method): grid unless it says otherwise."""
    try:
        config = yaml.safe_load((Path(sweep_dir) / "sweep.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "grid"
    search = config.get("search") if isinstance(config, dict) else None
    return str(search.get("method", "grid")) if isinstance(search, dict) else "grid"


def load_results(path: str | Path, damaged: list | None = None):
    """A DataFrame with one row per trial: its settings as columns, metrics, timing and status.

    `path` is one sweep's directory or a folder of sweeps (then a `sweep` column tells them apart).
    Damaged files are left out: a summary.csv that cannot be read is rebuilt from the trial records,
    a damaged row or trial.json drops that trial. Each is appended to `damaged` as a `damage.Damage`
    (or, without that list, issued as a warning); when nothing usable is left, DamagedResultsError.
    """
    import pandas as pd

    from .damage import read_summary

    frames, found = [], []
    for sweep_dir in find_sweeps(path):
        bad_records: list = []
        records = read_records(sweep_dir, bad_records)
        frame, damage = read_summary(sweep_dir) if (sweep_dir / "summary.csv").exists() else (None, [])
        if frame is None:  # no summary yet (a sweep killed early), or one that cannot be read: rebuild it
            if damage:
                damage[-1] = replace(damage[-1], reason=damage[-1].reason + "; rebuilt from runs/*/trial.json")
            frame = pd.DataFrame([summary_row(r, r.get("factors") or {}) for r in records.values()])
        missing = [c for c in (*SUMMARY_HEAD, *SUMMARY_TAIL) if c not in frame.columns]
        frame = frame.assign(**{c: float("nan") for c in missing})  # columns no record (or older file) has
        left_out = {d.file.parent.name for d in bad_records}
        frame = frame[~frame["trial_id"].astype(str).isin(left_out)]
        found += damage + [replace(d, reason=d.reason + "; trial left out") for d in bad_records]
        frame.insert(0, "sweep", sweep_dir.name)
        frames.append(frame)
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    _tell(found, damaged, path, usable=not summary.empty)
    return summary


def _tell(found: list, damaged: list | None, path, usable: bool) -> None:
    """Hand damage found to the caller's list (or warn), or raise when it left nothing usable."""
    import warnings

    from .damage import report
    from .errors import DamagedResultsError

    if found and not usable:
        raise DamagedResultsError(f"nothing usable in {path}: every results file there is damaged:\n  "
                                  + "\n  ".join(report(found)))
    if damaged is not None:
        damaged.extend(found)
    else:
        for line in report(found):
            warnings.warn(f"damaged results, left out: {line}", stacklevel=3)


def load_histories(path: str | Path, damaged: list | None = None):
    """A long DataFrame of every trial's per-epoch history: sweep, trial_id, epoch and the metrics.

    A damaged history.csv is left out and appended to `damaged` (or issued as a warning).
    """
    import pandas as pd

    from .damage import read_history

    frames, found = [], []
    for sweep_dir in find_sweeps(path):
        for history in sorted((sweep_dir / "runs").glob("*/history.csv")):
            frame, damage = read_history(history, HISTORY_COLUMNS)
            if damage is not None:
                found.append(replace(damage, reason=damage.reason + "; history left out"))
                continue
            frame.insert(0, "trial_id", history.parent.name)
            frame.insert(0, "sweep", sweep_dir.name)
            frames.append(frame)
    columns = ["sweep", "trial_id", *HISTORY_COLUMNS]
    _tell(found, damaged, path, usable=True)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def setting_columns(summary) -> list[str]:
    """The swept-setting columns of a summary DataFrame (everything between seed and status)."""
    known = {"sweep", *SUMMARY_HEAD, *SUMMARY_TAIL}
    return [c for c in summary.columns if c not in known]
