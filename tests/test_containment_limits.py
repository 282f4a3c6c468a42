"""Limits of the machine: a full $TMPDIR (ENOSPC) or a file-size limit (`ulimit -f`, EFBIG) stop the sweep
with the trials recorded and an `Error:` line naming the folder and the remedy, as a full results disk does.

Both are real: the file-size limit is RLIMIT_FSIZE set in the child process, the full disk a small tmpfs
mounted as TMPDIR in a mount namespace of the child's own (`unshare`, as root or in a user namespace), which
vanishes with it. Where neither kind of namespace is allowed, the tmpfs cases are skipped.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent
FILE_LIMIT = 200_000  # bytes: above every results file of these sweeps, below their models and data copy
TMPFS_SIZE = "64k"  # room for Python's check that TMPDIR is writable, not for a model or the data


def _config(tmp_path: Path) -> Path:
    config = tiny_config(name="lim", model={"hidden": [64], "activation": ["relu", "tanh", "sigmoid"]},
                         train={"epochs": 1})  # a model of about 600 kB, a data copy of about 1 MB
    path = tmp_path / "lim.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@functools.lru_cache(maxsize=1)
def _unshare() -> list[str] | None:
    """The `unshare` command that gives a child a mount namespace where it may mount a tmpfs, if any does."""
    for command in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            probe = subprocess.run([*command, "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /tmp"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if probe.returncode == 0:
            return command
    return None


def _run(tmp_path: Path, limit: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    """`mnist-sweep run` with TMPDIR on a full tmpfs (ENOSPC) or under a file-size limit (EFBIG); returns the
    process, TMPDIR and what the run left in TMPDIR."""
    tmp, left = tmp_path / "tmp", tmp_path / "left-in-tmp.txt"
    tmp.mkdir()
    command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(_config(tmp_path)), "--out",
               str(tmp_path / "r"), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    preexec = None
    if limit == "ENOSPC":
        unshare = _unshare()
        if unshare is None:
            pytest.skip("no mount namespace allowed here for a small tmpfs")
        script = (f'mount -t tmpfs -o size={TMPFS_SIZE} tmpfs "$0" || exit 99; "$@"; rc=$?; '
                  f'ls -A "$0" > {shlex.quote(str(left))}; exit $rc')
        command = [*unshare, "sh", "-c", script, str(tmp), *command]
    else:
        def preexec():
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=preexec)
    return done, tmp, left.read_text().split() if limit == "ENOSPC" else [p.name for p in tmp.iterdir()]


REMEDY = {"ENOSPC": "No space left on device; free space on the disk of {tmp}, or point TMPDIR at a folder on a "
                    "disk with room",
          "EFBIG": f"File too large; the file-size limit of this process (ulimit -f) is {FILE_LIMIT:,} bytes: raise "
                   "it (ulimit -f unlimited)"}


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("limit, execution", [("ENOSPC", "--no-fuse"), ("EFBIG", "--fuse")])
def test_no_room_for_a_trained_model_stops_the_sweep_with_the_trial_recorded(tmp_path, limit, execution):
    """The first model that cannot be saved stops the sweep: no trial after it trains only to fail the same way."""
    done, tmp, left = _run(tmp_path, limit, execution)
    sweep = tmp_path / "r" / "lim"
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: trial "), done.stderr
    assert f"cannot save the trained model in the temporary folder {tmp} ($TMPDIR): " in error
    assert REMEDY[limit].format(tmp=tmp) + ", then run the same command again to continue" in error
    assert "Traceback" not in done.stderr
    summary = pd.read_csv(sweep / "summary.csv")
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("runs/*/trial.json")}
    assert set(summary["trial_id"]) == set(records)
    assert {r["status"] for r in records.values()} == {"interrupted"}
    # isolated: the first trial only; fused: its group, trained together
    assert len(records) == (1 if execution == "--no-fuse" else 3)
    assert left == []  # no temporary file or folder left, Keras' own included
    assert not list(sweep.rglob("model.keras"))


@pytest.mark.parametrize("limit", ["ENOSPC", "EFBIG"])
def test_no_room_for_the_workers_data_copy_stops_before_any_trial_and_leaves_nothing(tmp_path, limit):
    done, tmp, left = _run(tmp_path, limit, "--jobs", "2")
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: cannot copy the dataset for the worker processes into {tmp}/mnist-sweep-data-")
    assert REMEDY[limit].format(tmp=tmp) + ", or run with --jobs 1 --executor auto" in error
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()
    assert left == []
