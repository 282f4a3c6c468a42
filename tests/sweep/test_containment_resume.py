"""Resuming after the config or the data changed (issue 22, class 2).

A sweep's results describe one config on one dataset: `run` moves the trials its config does not
contain to <sweep>/superseded/ (and brings them back when a config contains them again), so nothing
chooses, shows, exports or counts them, a rebuilt summary.csv included; a rerun on other data (told
by the recorded fingerprint) is refused with exit 2 unless --force retrains it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.helpers import tiny_config

pytestmark = pytest.mark.keras


def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def _config(tmp_path: Path, name: str = "tiny", **sections) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name, **sections)))
    return path


def _ids(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _npz(path: Path, reverse: bool = False) -> Path:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8), np.arange(120) % 10
    if reverse:
        images = images[::-1].copy()
    np.savez(path, x_train=images, y_train=labels, x_test=images[:30], y_test=labels[:30])
    return path


def test_trials_the_config_no_longer_contains_are_never_chosen_shown_exported_or_counted(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    out = tmp_path / "r"
    config = _config(tmp_path, model={"activation": ["relu", "tanh"]})
    assert invoke("run", config, "--out", out, "-q", "--set", "train.epochs=2").exit_code == 0
    sweep = out / "tiny"
    old = _ids(sweep / "runs")
    second = invoke("run", config, "--out", out, "--set", "train.epochs=1")
    assert second.exit_code == 0, second.output
    assert (f"2 trial(s) that this config does not contain, or trained on other data, moved to "
            f"{sweep / 'superseded'}") in second.output
    summary = pd.read_csv(sweep / "summary.csv")
    current = set(summary["trial_id"])
    assert len(current) == 2 and not current & old
    assert _ids(sweep / "runs") == current and _ids(sweep / "superseded") == old
    best = json.loads((sweep / "best_model.json").read_text())["trial_id"]
    assert best in current and [p.parent.name for p in (sweep / "runs").glob("*/model.keras")] == [best]
    # A summary.csv rebuilt from the records does not bring the old trials back.
    (sweep / "summary.csv").write_bytes(b"\xff\xfe not a summary")
    shown = invoke("show", sweep, "--trials", "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert set(pd.read_csv(io.StringIO(shown.stdout))["trial_id"]) == current
    exported = invoke("export", sweep, "--to", "tensorboard", tmp_path / "tb")
    assert exported.exit_code == 0, exported.output
    assert {p.name for p in (tmp_path / "tb" / "tiny").iterdir() if p.is_dir()} == current
    mlflow = pytest.importorskip("mlflow")
    assert invoke("export", sweep, "--to", "mlflow").exit_code == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert {r.data.tags["trial_id"] for r in runs if "trial_id" in r.data.tags} == current
    # The first config again: its trials come back from superseded/, none is trained again.
    third = invoke("run", config, "--out", out, "--set", "train.epochs=2")
    assert third.exit_code == 0, third.output
    assert f"2 finished trial(s) brought back from {sweep / 'superseded'}" in third.output
    assert "2 already finished, skipped" in third.output
    assert _ids(sweep / "runs") == old and _ids(sweep / "superseded") == current


def test_a_rerun_on_other_data_is_refused_and_force_retrains_it(tmp_path):
    a, b = _npz(tmp_path / "a.npz"), _npz(tmp_path / "b.npz", reverse=True)
    config = _config(tmp_path, dataset={"source": "file", "path": str(a), "n_train": 100, "n_test": 20})
    out = tmp_path / "r"
    assert invoke("run", config, "--out", out, "-q").exit_code == 0
    sweep = out / "tiny"
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != ".lock"}
    old = json.loads(next((sweep / "runs").glob("*/trial.json")).read_text())
    refused = invoke("run", config, "--out", out, "--set", f"dataset.path={b}")
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith(f"Error: the data changed since the results in {sweep} were made (1 trial(s)): "
                                     f"origin was {a}, now {b}; fingerprint was {old['dataset']['fingerprint']}, "
                                     "now ")
    assert ("Not resumed, nothing changed: a sweep's results describe one dataset. Give this data its own results "
            "(another --out, or --set name=NEW), or run with --force to train every trial again on it") in refused.output
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != ".lock"} == before
    forced = invoke("run", config, "--out", out, "-q", "--force", "--set", f"dataset.path={b}")
    assert forced.exit_code == 0, forced.output
    new = json.loads(next((sweep / "runs").glob("*/trial.json")).read_text())
    assert new["dataset"]["origin"] == str(b) and new["dataset"]["fingerprint"] != old["dataset"]["fingerprint"]
    aside = json.loads(next((sweep / "superseded").glob("*/trial.json")).read_text())
    assert aside["dataset"]["origin"] == str(a)
    assert invoke("run", config, "--out", out, "-q", "--set", f"dataset.path={b}").exit_code == 0  # resumes on b


def test_a_search_on_other_data_is_refused(tmp_path):
    pytest.importorskip("optuna")
    a, b = _npz(tmp_path / "a.npz"), _npz(tmp_path / "b.npz", reverse=True)
    config = _config(tmp_path, "srch", dataset={"source": "file", "path": str(a), "n_train": 100, "n_test": 20},
                     model={"hidden": [8], "dropout": {"low": 0.0, "high": 0.5}},
                     train={"epochs": 1}, search={"method": "random", "trials": 1, "seed": 0})
    out = tmp_path / "r"
    assert invoke("run", config, "--out", out, "-q").exit_code == 0
    sweep = out / "srch"
    before = (sweep / "sweep.yaml").read_text()
    for trial in (sweep / "runs").iterdir():  # the study alone still knows the data it was run on
        for path in trial.iterdir():
            path.unlink()
        trial.rmdir()
    refused = invoke("run", config, "--out", out, "-q", "--set", f"dataset.path={b}")
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith(f"Error: the data changed since the results in {sweep} were made (the search's "
                                     f"study): origin was {a}, now {b}; fingerprint was ")
    assert "run with --force to start the search again on it (the study restarts" in refused.output
    assert (sweep / "sweep.yaml").read_text() == before
