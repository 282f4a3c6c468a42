"""MLflow export, read back with MlflowClient and mlflow.search_runs: params, metric histories,
nesting, artifacts and idempotence."""

import json
import sys

import pytest
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.results.store import atomic_write
from mnist_sweep.tracking.sweep_results import read_history
from tests.fake_results import write_sweep

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

FACTORS = {"hidden": [[64, 32], [16]], "optimizer": [{"name": "adam", "learning_rate": 0.01}]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fake sweep (one trial failed, one with a saved model) exported once to the default store."""
    root = tmp_path_factory.mktemp("mlflow") / "results"
    sweep_dir = write_sweep(root, factors=FACTORS, seeds=2, epochs=4, statuses={1: "failed"})
    (sweep_dir / "report.html").write_text("<html>report</html>")
    saved = next(t for t, r in sorted(_records(sweep_dir).items()) if r["status"] == "ok")
    atomic_write(sweep_dir / "runs" / saved / "model.keras", b"not really a model")
    result = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    return sweep_dir, root, result.output


def _client(root):
    return MlflowClient(tracking_uri=f"sqlite:///{root.resolve() / 'mlflow.db'}")


def _runs(client):
    experiment = client.get_experiment_by_name("fake")
    return experiment, client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)


def _records(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in (sweep_dir / "runs").glob("*/trial.json")}


def test_one_parent_run_per_sweep_and_one_nested_run_per_trial(exported, monkeypatch):
    sweep_dir, root, output = exported
    assert (root / "mlflow.db").exists()  # the default store sits in the results root
    assert f"mlflow ui --backend-store-uri sqlite:///{root.resolve() / 'mlflow.db'}" in output
    experiment, runs = _runs(_client(root))
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "fake"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1 == 4
    # mlflow.search_runs sees the same nesting as a DataFrame.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root.resolve() / 'mlflow.db'}")
    frame = mlflow.search_runs([experiment.experiment_id])
    assert sorted(frame["tags.trial_id"].dropna()) == sorted(_records(sweep_dir))
    assert set(frame["tags.mlflow.parentRunId"].dropna()) == {parents[0].info.run_id}


def test_a_trial_run_holds_settings_history_final_metrics_tags_and_model(exported):
    sweep_dir, root, _ = exported
    client = _client(root)
    _, runs = _runs(client)
    records = _records(sweep_dir)
    by_trial = {r.data.tags.get("trial_id"): r for r in runs if "trial_id" in r.data.tags}
    for trial_id, record in records.items():
        run = by_trial[trial_id]
        tags = run.data.tags
        assert (tags["status"], tags["seed"], tags["config_id"], tags["execution"]) == (
            record["status"], str(record["seed"]), record["config_id"], "isolated")
        # Lists and mappings are short readable strings.
        assert run.data.params["hidden"] in ("64-32", "16")
        assert run.data.params["optimizer"] == "adam lr=0.01"
        if record["status"] == "failed":
            assert run.info.status == "FAILED" and "final/test_accuracy" not in run.data.metrics
            continue
        assert run.info.status == "FINISHED"
        history = read_history(sweep_dir / "runs" / trial_id)
        points = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in sorted(points, key=lambda m: m.step)] == [
            (int(r["epoch"]), pytest.approx(r["val_accuracy"])) for r in history]
        assert run.data.metrics["final/test_accuracy"] == pytest.approx(record["metrics"]["test_accuracy"])
    first = next(t for t, r in sorted(records.items()) if r["status"] == "ok")
    artifacts = {a.path for a in client.list_artifacts(by_trial[first].info.run_id)}
    assert {"model.keras", "model.txt"} <= artifacts
    parent_id = by_trial[first].data.tags["mlflow.parentRunId"]
    parent_files = {a.path for a in client.list_artifacts(parent_id)}
    assert {"sweep.yaml", "findings.md", "report.html"} <= parent_files
    findings = client.download_artifacts(parent_id, "findings.md")
    assert "test_accuracy" in open(findings).read().replace(" ", "_").lower()


def test_exporting_again_adds_nothing_and_a_retrained_trial_replaces_its_run(exported):
    sweep_dir, root, _ = exported
    client = _client(root)
    _, before = _runs(client)
    again = CliRunner().invoke(cli, ["export", str(sweep_dir.parent), "--to", "mlflow"])
    assert again.exit_code == 0, again.output
    assert "0 new, 0 replaced, 4 unchanged" in again.output
    _, after = _runs(client)
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
    first_ok = next(r for r in after if r.data.tags.get("status") == "ok")
    assert len(client.get_metric_history(first_ok.info.run_id, "loss")) == 4  # not logged twice

    # The trial is trained again: its results change, so its run is replaced, not appended to.
    trial_id = first_ok.data.tags["trial_id"]
    record = _records(sweep_dir)[trial_id]
    record["metrics"]["test_accuracy"] = 0.5
    atomic_write(sweep_dir / "runs" / trial_id / "trial.json", json.dumps(record))
    third = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"])
    assert "0 new, 1 replaced, 3 unchanged" in third.output
    _, latest = _runs(client)
    assert len(latest) == len(before)
    replaced = next(r for r in latest if r.data.tags.get("trial_id") == trial_id)
    assert replaced.data.metrics["final/test_accuracy"] == pytest.approx(0.5)
    assert len(client.get_metric_history(replaced.info.run_id, "loss")) == 4


def test_tracking_uri_option_writes_where_it_says(exported, tmp_path):
    _, root, _ = exported
    other = write_sweep(tmp_path / "results", name="other", factors={"activation": ["relu", "tanh"]}, seeds=1,
                        epochs=2)
    uri = f"sqlite:///{root.resolve() / 'mlflow.db'}"  # an existing store (a fresh one takes long to set up)
    result = CliRunner().invoke(cli, ["export", str(other), "--to", "mlflow", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "results" / "mlflow.db").exists()
    client = _client(root)
    runs = client.search_runs([client.get_experiment_by_name("other").experiment_id])
    assert len(runs) == 3
    # Artifacts go beside the database, not into the working directory.
    assert any((root / "mlflow-artifacts").rglob("sweep.yaml")) and not (tmp_path / "mlruns").exists()


def test_without_mlflow_installed_export_says_how_to_install_it(tmp_path, monkeypatch):
    sweep_dir = write_sweep(tmp_path / "results", seeds=1, epochs=2)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"])
    assert result.exit_code == 2
    assert "pip install 'mnist-sweep[mlflow]'" in result.output
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_a_tracking_uri_mlflow_cannot_use_is_an_error_not_a_traceback(exported):
    sweep_dir, _, _ = exported
    result = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow", "--tracking-uri", "foo://x"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: --tracking-uri: unknown scheme 'foo://' in 'foo://x'; MLflow stores: ")
    assert "sqlite://" in result.output and "http://" in result.output


def test_a_run_cut_off_mid_export_is_written_again_by_the_next_export(exported, tmp_path, monkeypatch):
    _, root, _ = exported
    sweep_dir = write_sweep(tmp_path / "results", name="cut", factors={"activation": ["relu", "tanh"]}, seeds=1,
                            epochs=2)
    saved = sorted(_records(sweep_dir))[0]
    atomic_write(sweep_dir / "runs" / saved / "model.keras", b"not really a model")
    uri = f"sqlite:///{root.resolve() / 'mlflow.db'}"
    upload = MlflowClient.log_artifact

    def killed_at_the_model(self, run_id, local_path, *args, **kwargs):  # the export dies mid-run
        if local_path.endswith("model.keras"):
            raise RuntimeError("connection lost")
        return upload(self, run_id, local_path, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_artifact", killed_at_the_model)
    cut = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow", "--tracking-uri", uri])
    assert cut.exit_code != 0
    monkeypatch.setattr(MlflowClient, "log_artifact", upload)
    again = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow", "--tracking-uri", uri])
    assert again.exit_code == 0, again.output
    assert "1 new, 1 replaced, 0 unchanged" in again.output  # the half-written run is not taken as done
    client = _client(root)
    runs = client.search_runs([client.get_experiment_by_name("cut").experiment_id])
    trial_runs = [r for r in runs if "trial_id" in r.data.tags]
    assert sorted(r.data.tags["trial_id"] for r in trial_runs) == sorted(_records(sweep_dir))  # one run each
    run = next(r for r in trial_runs if r.data.tags["trial_id"] == saved)
    assert run.info.status == "FINISHED"
    assert "model.keras" in [f.path for f in client.list_artifacts(run.info.run_id)]


def test_a_renamed_trial_does_not_appear_twice(tmp_path):
    """Trials renamed (the grid's varying settings changed): the old id's run is deleted on export."""
    root = tmp_path / "results"
    sweep_dir = write_sweep(root, name="renamed", factors=FACTORS, seeds=1, epochs=2)
    assert CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"]).exit_code == 0
    old = sorted(_records(sweep_dir))[0]
    record = _records(sweep_dir)[old]
    new = f"renamed_{old}"
    (sweep_dir / "runs" / old).rename(sweep_dir / "runs" / new)
    atomic_write(sweep_dir / "runs" / new / "trial.json", json.dumps({**record, "trial_id": new}))
    again = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "mlflow"])
    assert again.exit_code == 0, again.output
    assert "1 new, 0 replaced, 1 unchanged" in again.output
    assert f"deleted the run(s) of 1 trial(s) no longer in the results (renamed or removed): {old}" in again.output
    client = _client(root)
    experiment = client.get_experiment_by_name("renamed")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    trial_ids = sorted(r.data.tags["trial_id"] for r in runs if r.data.tags.get("mnist_sweep.role") == "trial")
    assert trial_ids == sorted(_records(sweep_dir))
