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
    <root>/<name>/superseded/<trial_id>/     trials the config run last does not contain, or trained on other
                                             data: set aside by `run`, read by nothing else

Every path below <root>/<name> is used through `containment`: no symbolic link there is followed.
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
from typing import Any, Iterable, Iterator, Mapping, cast

import yaml

from . import containment
from ..errors import ResultsError, SetupError, cannot_write
from ..records import FINISHED, TrialRecord

# Columns before the swept settings, and after them, in summary.csv.
SUMMARY_HEAD = ("trial_id", "config_id", "seed")
SUMMARY_TAIL = ("status", "epochs_run", "best_epoch", "stopped_early", "train_loss", "train_accuracy",
                "val_loss", "val_accuracy", "test_loss", "test_accuracy", "params", "fit_seconds",
                "wall_seconds", "seconds_per_epoch", "device", "dataset_source", "execution", "group_id",
                "group_seconds", "error")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
SUPERSEDED = "superseded"  # where `run` sets aside the trials its config does not contain
LOCK_HOLDER_BYTES = 256  # the most of the lock file's one line (who holds it) that is written or read


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write a file (text, or bytes as they are) so that readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if isinstance(text, bytes):
            with os.fdopen(fd, "wb") as binary:
                binary.write(text)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared and copied
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unwritable(folder: Path, exc: OSError) -> SetupError:
    """A results folder that cannot be written at the start (read-only, not a folder): bad environment, exit 2."""
    return SetupError(f"{cannot_write(folder, exc)}; choose a folder you can write to with --out")


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
        self._moved: list[tuple[Path, Path]] = []  # run folders it moved (renamed, set aside): (from, to)

    def prepare(self, config: dict[str, Any]) -> None:
        """Create the directory, drop temp files a killed run left, and record the config as run."""
        try:
            self._make_dirs(self.runs)
            for leftover in [*self.dir.glob(".*.tmp"), *self.runs.glob("*/.*.tmp")]:
                if containment.problem(self.dir, leftover.parent) is None:  # never one through a linked folder
                    leftover.unlink(missing_ok=True)
            self.write_file("sweep.yaml", yaml.safe_dump(config, sort_keys=False))
        except OSError as exc:
            raise _unwritable(self.dir, exc) from None

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
        self._made, self._before, self._moved = [], {}, []

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
        for source, target in reversed(self._moved):  # after the files: they were written at the new places
            try:
                if not os.path.lexists(source):
                    os.rename(target, source)
            except OSError:
                pass
        for path, folder in reversed(self._made):
            try:
                path.rmdir() if folder else path.unlink()
            except OSError:
                pass  # not empty (someone else's files are in it) or gone already
        self._made, self._before, self._moved = [], {}, []

    def refuse_nested(self) -> None:
        """Refuse a results root inside another sweep's folder (its runs/, say): its results would mix."""
        from ..errors import OptionError

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
            fd = containment.open_lock(self.dir / ".lock")  # never through a link, never truncated
        except OSError as exc:
            raise _unwritable(self.dir, exc) from None
        with os.fdopen(fd, "r+b", buffering=0):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, LOCK_HOLDER_BYTES, 0).decode("utf-8", "replace").strip()[:200]
                raise ResultsError(f"{self.dir} is in use by another mnist-sweep run ({holder or 'another process'}); "
                                   "wait for it to finish or stop it, then run again") from None
            if fresh and not self.began:
                self._made.append(((self.dir / ".lock").absolute(), False))  # undone while the lock is held
            # Say who holds it, in place; not into a file that shares its content with another (a hard link).
            # A file of its own (no link reaches it: O_NOFOLLOW, one hard link) may be rewritten and emptied.
            own = os.fstat(fd).st_nlink == 1
            if own:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n"[:LOCK_HOLDER_BYTES].encode(), 0)
            try:
                yield
            finally:
                if own:
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)

    def refuse_links(self) -> None:
        """UnsafePathError when the sweep's folder holds a symbolic link: `run` writes nothing through one."""
        containment.refuse_links(self.dir, "Replace each link with what it points to, or remove it, then run again.")

    def run_dir(self, trial_id: str) -> Path:
        return self.runs / trial_id

    def _file(self, trial_id: str, name: str) -> Path:
        """runs/<trial_id>/<name>, checked: a link on the way is refused, never written through."""
        return containment.inside(self.dir, "runs", trial_id, name)

    def write_history(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        atomic_write(self._file(trial_id, "history.csv"), _csv_text(HISTORY_COLUMNS, rows))

    def write_record(self, record: TrialRecord) -> None:
        """Write trial.json last: a trial counts as finished only once this file says so."""
        self.keep_before(self._file(record["trial_id"], "trial.json"))  # a record rewritten at the start
        atomic_write(self._file(record["trial_id"], "trial.json"),
                     json.dumps(_json_safe(record), indent=2, default=str) + "\n")

    def write_text(self, trial_id: str, name: str, text: str) -> None:
        atomic_write(self._file(trial_id, name), text)

    def write_model(self, trial_id: str, model_file: bytes | None) -> None:
        """Write a trial's model.keras; None removes one left by an earlier run of the trial."""
        path = self._file(trial_id, "model.keras")
        if model_file is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, model_file)

    def read_records(self) -> dict[str, TrialRecord]:
        """Every readable trial.json, by trial id; unreadable ones are skipped (they get retrained)."""
        return read_records(self.dir)

    def run_records(self) -> list[tuple[str, TrialRecord]]:
        """(directory name, record) for every readable runs/*/trial.json, also one whose directory was
        renamed but whose record was not yet rewritten."""
        return list(_run_records(self.dir))

    def finished_by_digest(self, fingerprint: str | None = None) -> dict[str, tuple[Path, TrialRecord]]:
        """Finished trials by the hash that ends their id: {hash: (directory, record)}, from runs/ first,
        then from superseded/ (trials set aside by an earlier run that the config may contain again).

        Unlike `read_records`, a record whose directory was renamed but not yet rewritten counts. With
        `fingerprint`, only trials trained on that data (or on data never fingerprinted) count.
        """
        found: dict[str, tuple[Path, TrialRecord]] = {}
        for folder in (self.runs, self.dir / SUPERSEDED):
            for name, record in _run_records(self.dir, folder=folder):
                if (record.get("status") == FINISHED and "-" in str(record.get("trial_id"))
                        and (fingerprint is None or data_fingerprint(record) in (None, fingerprint))):
                    found.setdefault(record["trial_id"].rsplit("-", 1)[1], (folder / name, record))
        return found

    def rename_run(self, old: Path, new: str) -> None:
        """Move a run directory (of runs/ or superseded/) to runs/<new>."""
        self._move(containment.refuse(self.dir, old), containment.inside(self.dir, "runs", new))

    def set_aside(self, folder: str) -> Path:
        """Move runs/<folder> to superseded/<folder> (then <folder>~2, ~3... when taken); returns where it went."""
        aside = self.dir / SUPERSEDED
        self._make_dirs(aside)
        target, n = aside / folder, 1
        while target.exists() or target.is_symlink():
            n += 1
            target = aside / f"{folder}~{n}"
        self._move(containment.inside(self.dir, "runs", folder), containment.refuse(self.dir, target))
        return target

    def _move(self, source: Path, target: Path) -> None:
        """Rename a run folder, remembered until the run begins so that a failed start moves it back."""
        os.rename(source, target)
        if not self.began:
            self._moved.append((source.absolute(), target.absolute()))

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


def data_fingerprint(record: Mapping[str, Any]) -> str | None:
    """The fingerprint of the data a trial was trained on, as its record says (None when it does not say)."""
    dataset = record.get("dataset")
    value = dataset.get("fingerprint") if isinstance(dataset, dict) else None
    return str(value) if value else None


def _run_records(sweep_dir: Path, damaged: list | None = None,
                 folder: Path | None = None) -> Iterator[tuple[str, TrialRecord]]:
    """(directory name, record) for every run directory (of runs/, or of `folder`) whose trial.json parses
    as a mapping.

    A trial.json that does not, or that is reached through a link, is added to `damaged` (when given) as a
    `damage.Damage`.
    """
    from .damage import read_trial

    for path in sorted((folder or Path(sweep_dir) / "runs").glob("*/trial.json")):
        record, damage = read_trial(path, Path(sweep_dir))
        if damage is not None and damaged is not None:
            damaged.append(damage)
        if record is not None:  # a trial.json that parses as a mapping is taken as the record it was written as
            yield path.parent.name, cast(TrialRecord, record)


def read_records(sweep_dir: Path, damaged: list | None = None) -> dict[str, TrialRecord]:
    return {folder: record for folder, record in _run_records(sweep_dir, damaged)
            if record.get("trial_id") == folder}


def find_sweeps(path: str | Path, damaged: list | None = None) -> list[Path]:
    """The sweep directories at or under `path` (a sweep has a sweep.yaml or a runs/ folder).

    In a folder of sweeps, a sweep reached through a symbolic link lies outside the folder given: it is
    left out, and added to `damaged` (when given) as a `damage.Damage`.
    """
    from .damage import unsafe

    path = Path(path)
    if not path.exists():
        raise ResultsError(f"no results at {path}: run `mnist-sweep run CONFIG` first, or check the path")
    if (path / "sweep.yaml").exists() or (path / "runs").is_dir():
        return [path]
    found: list[Path] = []
    linked: list[Path] = []
    for candidate in sorted(p.parent for p in path.glob("*/sweep.yaml")):
        (found if containment.problem(path, candidate) is None else linked).append(candidate)
    if damaged is not None:
        damaged.extend(unsafe(p, f"{containment.problem(path, p)}; sweep left out") for p in linked)
    if not found:
        raise ResultsError(f"{path} holds no sweep results (no sweep.yaml in it or its sub-folders"
                           + (", other than through symbolic links, which are not followed)" if linked else ")"))
    return found


def search_method(sweep_dir: str | Path) -> str:
    """How a sweep chose its configurations (sweep.yaml's search.method): grid unless it says otherwise."""
    try:
        config = yaml.safe_load(containment.read_text(sweep_dir, Path(sweep_dir) / "sweep.yaml"))
    except (OSError, ResultsError, yaml.YAMLError):
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

    frames: list = []
    found: list = []
    for sweep_dir in find_sweeps(path, found):
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
    from ..errors import DamagedResultsError

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

    frames: list = []
    found: list = []
    for sweep_dir in find_sweeps(path, found):
        for history in sorted((sweep_dir / "runs").glob("*/history.csv")):
            frame, damage = read_history(history, HISTORY_COLUMNS, sweep_dir)
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
