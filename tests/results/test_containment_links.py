"""Symbolic links and recorded names that lead out of a results directory (issue 22, class 3).

Whatever a sweep's folder holds, nothing mnist-sweep writes, deletes, reads into a report or exports
leaves it: `run` refuses a sweep holding a link, readers leave a linked file out with a `Warning:`
naming it (never its content), `plot` refuses a linked plots/, `predict` builds the model's path from
the trial id and refuses a linked model, and exports upload no linked file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.errors import excerpt
from mnist_sweep.results.store import ResultsStore
from tests.fake_results import write_sweep
from tests.helpers import tiny_config

SECRET = "TOPSECRET,do-not-quote\n1,2,3\n"
NOT_FOLLOWED = "mnist-sweep follows no link inside a results directory"


def quoted(target) -> str:
    """How a message names a link's target: quoted, and shortened past 80 characters (temporary paths can be long)."""
    return excerpt(str(target), 80)


def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "outside" / "secret.csv"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def _sweep(tmp_path) -> Path:
    return write_sweep(tmp_path / "results", "sw", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=3)


def _link(path: Path, target: Path) -> Path:
    if path.exists():
        path.unlink()
    path.symlink_to(target)
    return path


def _config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config("sw")))
    return path


# ---------------------------------------------------------------- the lock

def test_run_refuses_a_lock_that_is_a_link_and_leaves_its_target_alone(tmp_path, secret):
    lock = _link(_sweep(tmp_path) / ".lock", secret)
    result = invoke("run", _config(tmp_path), "--out", tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert result.output == (f"Error: {lock} is a symbolic link (to {quoted(secret)}), and {NOT_FOLLOWED}: "
                             "remove the "
                             f"link ({lock}) and run again\n")
    assert secret.read_text() == SECRET


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_the_lock_never_truncates_or_writes_into_a_file_it_shares(tmp_path, secret, link):
    """A symbolic link is refused (O_NOFOLLOW); a hard link is locked, but nothing is written into it."""
    sweep = tmp_path / "results" / "sw"
    sweep.mkdir(parents=True)
    link(secret, sweep / ".lock")
    store = ResultsStore(tmp_path / "results", "sw")
    if link is os.symlink:
        with pytest.raises(Exception, match="is a symbolic link"):
            with store.lock():
                pass
    else:
        with store.lock():
            assert secret.read_text() == SECRET
    assert secret.read_text() == SECRET


# ---------------------------------------------------------------- run

def test_run_refuses_a_sweep_holding_a_link_before_any_work(tmp_path, secret):
    sweep = _sweep(tmp_path)
    outside = secret.parent
    run_dir = sorted((sweep / "runs").iterdir())[0]
    before = {p: p.read_bytes() for p in outside.iterdir()}
    _link(tmp_path / "results" / "sw" / "runs" / "extra", outside)
    _link(run_dir / "history.csv", secret)
    yaml_before = (sweep / "sweep.yaml").read_text()
    result = invoke("run", _config(tmp_path), "--out", tmp_path / "results")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {sweep} holds 2 symbolic link(s), and {NOT_FOLLOWED}: ")
    assert f"{run_dir / 'history.csv'} is a symbolic link (to {quoted(secret)})" in result.output
    assert "Replace each link with what it points to, or remove it, then run again." in result.output
    assert {p: p.read_bytes() for p in outside.iterdir()} == before
    assert (sweep / "sweep.yaml").read_text() == yaml_before and not (sweep / "superseded").exists()


# ---------------------------------------------------------------- readers: plot, report.html, show

def test_plot_leaves_linked_files_out_names_them_and_never_quotes_them(tmp_path, secret):
    pytest.importorskip("matplotlib")
    sweep = _sweep(tmp_path)
    run_dir = sorted((sweep / "runs").iterdir())[0]
    for name in ("history.csv", "model.txt"):
        _link(run_dir / name, secret)
    _link(sweep / "sweep.yaml", secret)
    result = invoke("plot", sweep)
    assert result.exit_code == 0, result.output
    for name in ("history.csv", "model.txt"):
        assert (f"Warning: damaged results: {run_dir / name}: is a symbolic link (to {quoted(secret)}), and "
                f"{NOT_FOLLOWED}") in result.stderr
    assert f"Warning: damaged results: {sweep / 'sweep.yaml'}: is a symbolic link" in result.stderr
    report = (sweep / "report.html").read_text()
    assert "TOPSECRET" not in result.output and "TOPSECRET" not in report
    assert "(no readable sweep.yaml)" in report
    shown = invoke("show", sweep, "--trials", "--format", "csv")
    assert shown.exit_code == 0 and "TOPSECRET" not in shown.output


def test_a_linked_trial_record_or_summary_is_left_out_not_quoted(tmp_path, secret):
    sweep = _sweep(tmp_path)
    run_dir = sorted((sweep / "runs").iterdir())[0]
    secret.write_text(json.dumps({"trial_id": "TOPSECRET", "status": "ok"}))
    _link(run_dir / "trial.json", secret)
    _link(sweep / "summary.csv", secret)
    shown = invoke("show", sweep, "--trials", "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert f"Warning: damaged results: {run_dir / 'trial.json'}: is a symbolic link" in shown.stderr
    assert f"Warning: damaged results: {sweep / 'summary.csv'}: is a symbolic link" in shown.stderr
    assert "TOPSECRET" not in shown.output and shown.stdout.count("\n") - 1 == 1  # the other trial only


def test_plot_refuses_a_linked_plots_folder_and_touches_nothing_there(tmp_path):
    pytest.importorskip("matplotlib")
    sweep = _sweep(tmp_path)
    outside = tmp_path / "published"
    outside.mkdir()
    (outside / "curves_activation.png").write_bytes(b"someone else's figure")
    _link(sweep / "plots", outside)
    result = invoke("plot", sweep)
    assert result.exit_code == 2, result.output
    assert result.output == (f"Error: {sweep / 'plots'} is a symbolic link (to {quoted(outside)}), and {NOT_FOLLOWED}: "
                             "remove it (plot writes its figures into the sweep's own plots/ folder) and plot again\n")
    assert [p.name for p in outside.iterdir()] == ["curves_activation.png"]
    assert (outside / "curves_activation.png").read_bytes() == b"someone else's figure"
    assert not (sweep / "report.html").exists()


def test_a_sweep_linked_into_a_folder_of_sweeps_is_left_out(tmp_path):
    pytest.importorskip("matplotlib")
    elsewhere = write_sweep(tmp_path / "elsewhere", "far", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=2)
    _sweep(tmp_path)
    link = _link(tmp_path / "results" / "far", elsewhere)
    shown = invoke("show", tmp_path / "results", "--trials", "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert f"Warning: damaged results: {link}: is a symbolic link (to {quoted(elsewhere)})" in shown.stderr
    assert "far" not in shown.stdout
    plotted = invoke("plot", tmp_path / "results")
    assert plotted.exit_code == 0, plotted.output
    assert not (elsewhere / "plots").exists() and not (elsewhere / "report.html").exists()


# ---------------------------------------------------------------- predict: the model's path

def _best(sweep: Path, trial_id: str, model: str) -> None:
    (sweep / "best_model.json").write_text(json.dumps({"trial_id": trial_id, "model": model}))


def test_predict_refuses_a_linked_model(tmp_path):
    sweep = _sweep(tmp_path)
    trial = sorted((sweep / "runs").iterdir())[0]
    outside = tmp_path / "outside.keras"
    outside.write_bytes(b"PK\x05\x06" + bytes(18))
    _link(trial / "model.keras", outside)
    _best(sweep, trial.name, f"runs/{trial.name}/model.keras")
    for given in (sweep, trial):
        result = invoke("predict", given, tmp_path / "images.npz", "--out", tmp_path / "p.csv")
        assert result.exit_code == 2, result.output
        assert result.output == (f"Error: {trial / 'model.keras'} is a symbolic link (to {quoted(outside)}), and "
                                 f"{NOT_FOLLOWED}: give the .keras file itself as RESULTS if you trust where it "
                                 "points\n")


def test_predict_builds_the_models_path_from_the_trial_id_never_the_recorded_path(tmp_path):
    sweep = _sweep(tmp_path)
    trial = sorted((sweep / "runs").iterdir())[0].name
    outside = tmp_path / "outside.keras"
    outside.write_bytes(b"PK\x05\x06" + bytes(18))
    _best(sweep, trial, "../../outside.keras")
    result = invoke("predict", sweep, tmp_path / "images.npz", "--out", tmp_path / "p.csv")
    assert result.exit_code == 1, result.output
    assert result.output == (f"Error: {sweep / 'best_model.json'} names the trial {trial}, whose model.keras is "
                             f"missing from {sweep / 'runs'}; run the sweep again to rewrite it\n")
    _best(sweep, "../../outside", "runs/x/model.keras")
    result = invoke("predict", sweep, tmp_path / "images.npz", "--out", tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {sweep / 'best_model.json'} names the trial '../../outside', which is "
                                    "not a trial id")


# ---------------------------------------------------------------- exports

def test_export_uploads_no_linked_file(tmp_path, secret):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    sweep = _sweep(tmp_path)
    run_dir = sorted((sweep / "runs").iterdir())[0]
    links = [_link(run_dir / name, secret) for name in ("model.keras", "model.txt", "history.csv")]
    _link(sweep / "report.html", secret)
    result = invoke("export", sweep, "--to", "mlflow")
    assert result.exit_code == 0, result.output
    for link in [*links, sweep / "report.html"]:
        assert f"Warning: left out of the export: {link} is a symbolic link (to {quoted(secret)})" in result.stderr
    uploaded = [p for p in (tmp_path / "results" / "mlflow-artifacts").rglob("*") if p.is_file()]
    assert {p.name for p in uploaded} >= {"sweep.yaml", "summary.csv", "model.txt", "findings.md"}
    assert not any("TOPSECRET" in p.read_text(errors="replace") for p in uploaded)
    assert sum(p.name == "model.txt" for p in uploaded) == 1  # the other trial's own
    tb = invoke("export", sweep, "--to", "tensorboard", tmp_path / "tb")
    assert tb.exit_code == 0 and f"Warning: left out of the export: {links[2]}" in tb.stderr
