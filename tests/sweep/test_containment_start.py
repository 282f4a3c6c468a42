"""A run that stops before its first trial removes only what it created itself: the folders it made (when
they hold nothing else) and its own files, and puts back the files of an existing sweep it rewrote. A
parent folder, a sibling sweep or files that others put there meanwhile are never touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.errors import SweepError
from tests.fake_results import write_sweep
from tests.helpers import tiny_config


class _FailsToStart:
    """An executor that fails before any trial (as --device gpu without a GPU does), after `meanwhile()`."""

    stopping = False

    def __init__(self, meanwhile=lambda: None):
        self.meanwhile = meanwhile

    def run(self, tasks, data, emit):
        self.meanwhile()
        raise SweepError("--device gpu: no GPU is visible to the tensorflow backend")

    def stop(self):
        self.stopping = True


def _run(tmp_path: Path, out: Path, name: str = "start", **sections):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name=name, **sections)))
    return CliRunner().invoke(cli, ["run", str(path), "--out", str(out)])


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _siblings(root: Path) -> set[str]:
    write_sweep(root, "copied", seeds=1, epochs=2)  # a sweep copied in from another machine
    (root / "busy" / "runs").mkdir(parents=True)  # a concurrent run of another sweep, mid-start
    (root / "busy" / "sweep.yaml").write_text("name: busy\n")
    (root / "busy" / ".lock").write_text("pid 1 on elsewhere\n")
    return {"copied/sweep.yaml", "copied/summary.csv", "busy/sweep.yaml", "busy/.lock"}


def _into_this_sweep(root: Path) -> set[str]:
    (root / "start" / "runs" / "t-s0-1").mkdir()  # a trial copied into this very sweep
    (root / "start" / "runs" / "t-s0-1" / "trial.json").write_text("{}\n")
    return {"start/runs/t-s0-1/trial.json"}


@pytest.mark.parametrize("arrive", [_siblings, _into_this_sweep], ids=["sibling-sweeps", "a-trial-into-this-sweep"])
def test_a_failed_start_into_a_new_root_leaves_what_others_put_there_meanwhile(tmp_path, monkeypatch, arrive):
    from mnist_sweep.sweep import runner

    root = tmp_path / "new" / "r"
    theirs: set[str] = set()
    monkeypatch.setattr(runner, "make_executor",
                        lambda kind, options: _FailsToStart(lambda: theirs.update(arrive(root))))
    result = _run(tmp_path, root)
    assert result.exit_code == 1
    assert result.output.endswith("Error: --device gpu: no GPU is visible to the tensorflow backend\n")
    left = _tree(root) if root.exists() else {}
    assert theirs <= set(left)
    assert not any(k in left for k in ("start/sweep.yaml", "start/summary.csv", "start/.lock"))
    if "busy/.lock" in theirs:
        assert (root / "busy" / ".lock").read_text() == "pid 1 on elsewhere\n"


def test_a_failed_start_in_an_existing_sweep_puts_its_files_back(tmp_path, monkeypatch):
    from mnist_sweep.sweep import runner

    sweep = write_sweep(tmp_path / "r", "start", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=2)
    (sweep / ".lock").write_text("")
    (sweep / "notes.txt").write_text("the user's own notes\n")
    before = _tree(sweep)
    monkeypatch.setattr(runner, "make_executor", lambda kind, options: _FailsToStart())
    result = _run(tmp_path, tmp_path / "r", train={"epochs": 5})  # another config: sweep.yaml is rewritten first
    assert result.exit_code == 1, result.output
    assert _tree(sweep) == before
