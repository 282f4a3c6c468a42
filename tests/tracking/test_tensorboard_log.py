"""TensorBoard event files, read back with TensorBoard's own readers: the event accumulator for the
scalars, the HParams plugin's handlers over its data provider for the experiment and the sessions.

Those readers load TensorFlow (through `tensorboard.compat.tf`), so the tests that read are marked
keras; the writer does not."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.execution.executors import Options
from mnist_sweep.sweep.runner import Observers, Progress, Sweep
from mnist_sweep.config import validate_config
from mnist_sweep.tracking.sweep_results import hparam_columns, read_history, tracker_value
from tests.helpers import tiny_config
from tests.fake_results import write_sweep

pytest.importorskip("tensorboard")

from tensorboard import context  # noqa: E402
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups
from tensorboard.util import tensor_util

EPOCH_TAGS = {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}


def _scalars(run_dir):
    """{tag: [(step, value), ...]} of one run directory (TensorBoard 2 stores scalars as tensors)."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"] if not tag.startswith("_hparams_/")}


def _hparams(logdir):
    """The HParams plugin's view of a log directory: (experiment, session groups)."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = MultiplexerDataProvider(multiplexer, str(logdir))
    plugin_context = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, data_provider=provider))
    experiment = get_experiment.Handler(context.RequestContext(), plugin_context, "",
                                        api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1000, aggregation_type=api_pb2.AGGREGATION_AVG,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                          api_pb2.STATUS_RUNNING],
        col_params=[api_pb2.ColParams(hparam=h.name) for h in experiment.hparam_infos]
        + [api_pb2.ColParams(metric=m.name) for m in experiment.metric_infos])
    groups = list_session_groups.Handler(context.RequestContext(), plugin_context, "", request).run()
    return experiment, groups.session_groups


def _value(proto_value):
    kind = proto_value.WhichOneof("kind")
    return {"string_value": proto_value.string_value, "number_value": proto_value.number_value,
            "bool_value": proto_value.bool_value}[kind]


@pytest.mark.keras
def test_export_writes_each_trials_curves_final_metrics_and_session_grouped_by_configuration(tmp_path):
    sweep_dir = write_sweep(tmp_path / "results", factors={"activation": ["relu", "tanh"], "dropout": [0.0, 0.2]},
                            seeds=2, epochs=5, statuses={1: "failed"})
    logdir = tmp_path / "tb"
    result = CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "tensorboard", str(logdir)])
    assert result.exit_code == 0, result.output
    assert f"tensorboard --logdir {logdir}" in result.output

    records = {r.name: yaml.safe_load((r / "trial.json").read_text()) for r in (sweep_dir / "runs").iterdir()}
    failed = next(r for r in records.values() if r["status"] == "failed")
    ok = next(r for r in records.values() if r["status"] == "ok" and r["config_id"] != failed["config_id"])
    run_dir = logdir / "fake" / ok["trial_id"]
    scalars = _scalars(run_dir)
    history = read_history(sweep_dir / "runs" / ok["trial_id"])
    assert EPOCH_TAGS <= set(scalars)
    assert [step for step, _ in scalars["val_accuracy"]] == [1, 2, 3, 4, 5]
    assert [v for _, v in scalars["val_accuracy"]] == pytest.approx([r["val_accuracy"] for r in history], rel=1e-6)
    assert scalars["final/test_accuracy"] == [(5, pytest.approx(ok["metrics"]["test_accuracy"], rel=1e-6))]

    experiment, groups = _hparams(logdir)
    levels = {h.name: sorted(_value(v) for v in h.domain_discrete.values) for h in experiment.hparam_infos}
    assert levels == {"activation": ["relu", "tanh"], "dropout": [0.0, 0.2]}
    assert all(h.differs for h in experiment.hparam_infos)
    assert "final/test_accuracy" in {m.name.tag for m in experiment.metric_infos}
    # One group per configuration, holding its two seeds; the group is named by the configuration id.
    assert len(groups) == 4
    config_of = {f"fake/{r['trial_id']}": r["config_id"] for r in records.values()}
    for group in groups:
        assert len(group.sessions) == 2
        assert {config_of[s.name] for s in group.sessions} == {group.name}
    statuses = {s.name: s.status for g in groups for s in g.sessions}
    assert statuses[f"fake/{failed['trial_id']}"] == api_pb2.STATUS_FAILURE
    assert statuses[f"fake/{ok['trial_id']}"] == api_pb2.STATUS_SUCCESS
    group = next(g for g in groups if g.name == ok["config_id"])
    seeds = [r["metrics"]["test_accuracy"] for r in records.values() if r["config_id"] == ok["config_id"]]
    mean = {m.name.tag: m.value for m in group.metric_values}["final/test_accuracy"]
    assert mean == pytest.approx(sum(seeds) / len(seeds), rel=1e-6)  # the group's value averages its seeds


@pytest.mark.keras
def test_exporting_again_replaces_the_event_files_instead_of_adding_to_them(tmp_path):
    sweep_dir = write_sweep(tmp_path / "results", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=3)
    logdir = tmp_path / "tb"
    for _ in range(2):
        assert CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "tensorboard", str(logdir)]).exit_code == 0
    trial_dirs = [d for d in (logdir / "fake").iterdir() if d.is_dir()]
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        assert len(list(trial_dir.glob("events.out.tfevents.*"))) == 1
        assert [step for step, _ in _scalars(trial_dir)["loss"]] == [1, 2, 3]
    assert len(list((logdir / "fake").glob("events.out.tfevents.*"))) == 1


def test_settings_that_are_not_scalars_become_short_strings():
    assert tracker_value("optimizer", {"name": "adam", "learning_rate": 0.01}) == "adam lr=0.01"
    assert tracker_value("hidden", [128, 64]) == "128-64"
    assert tracker_value("conv", [32, 32, "pool", 64, "pool"]) == "32-32-pool-64-pool"
    assert tracker_value("early_stopping", False) is False
    assert tracker_value("dropout", 0) == 0.0 and tracker_value("kernel_size", None) == "none"
    # A setting whose levels mix types (a conv setting of a dense network is None) is all strings.
    assert hparam_columns([{"kernel_size": 3}, {"kernel_size": None}]) == {"kernel_size": ["3.0", "none"]}


@pytest.mark.keras
def test_live_log_shows_each_epoch_while_the_sweep_runs(tmp_path):
    logdir = tmp_path / "tb"
    config = validate_config(tiny_config(model={"activation": ["relu", "tanh"]}, seeds=1, tensorboard=str(logdir)))
    seen = {}

    class Watcher(Progress):  # runs before the log in the same event: sees what earlier events wrote
        def epoch(self, trial, rows):
            if rows[-1]["epoch"] == 2:
                seen[trial.trial_id] = _scalars(logdir / "tiny" / trial.trial_id)

    sweep = Sweep(config, tmp_path / "results", Watcher())  # the config's `tensorboard:` key
    report = sweep.run(options=Options(), executor="auto")
    assert report.statuses == {"ok": 2}
    assert len(seen) == 2
    for scalars in seen.values():  # mid-training: epoch 1 is on disk, epoch 2 not yet, no final metrics
        assert [step for step, _ in scalars["val_loss"]] == [1]
        assert not any(tag.startswith("final/") for tag in scalars)
    experiment, groups = _hparams(logdir)
    assert [h.name for h in experiment.hparam_infos] == ["activation"]
    assert sorted(g.name for g in groups) == sorted(t.config_id for t in sweep.trials)
    for trial in sweep.trials:
        scalars = _scalars(logdir / "tiny" / trial.trial_id)
        assert [step for step, _ in scalars["accuracy"]] == [1, 2]
        record = sweep.records[trial.trial_id]
        assert scalars["final/val_accuracy"][0][1] == pytest.approx(record["metrics"]["val_accuracy"], rel=1e-6)


@pytest.mark.keras
@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_sampled_search_logs_the_settings_it_samples_as_hparams(tmp_path, method):
    # A search has no trials when the log opens: random draws them at start, tpe asks one at a time.
    logdir = tmp_path / "tb"
    config = validate_config(tiny_config(model={"dropout": {"low": 0.0, "high": 0.5}}, train={"epochs": 1},
                                         search={"method": method, "trials": 2}, tensorboard=str(logdir)))
    sweep = Sweep(config, tmp_path / "results")
    assert sweep.run(options=Options(), executor="auto").statuses == {"ok": 2}
    experiment, groups = _hparams(logdir)
    assert [h.name for h in experiment.hparam_infos] == ["dropout"]
    logged = sorted(_value(g.hparams["dropout"]) for g in groups)
    assert logged == sorted(t.factors["dropout"] for t in sweep.trials)


def test_every_sweep_event_reaches_every_observer():
    # With --tensorboard the display is one of several observers: a race's added rounds must still reach it.
    heard = []

    class Recorder(Progress):
        def __getattribute__(self, name):
            if name in vars(Progress) and not name.startswith("_"):
                return lambda *args: heard.append(name)
            return super().__getattribute__(name)

    events = sorted(name for name in vars(Progress) if not name.startswith("_"))
    observers = Observers(Recorder(), Recorder())
    for name in events:
        getattr(observers, name)()
    assert sorted(heard) == sorted(events * 2)


@pytest.mark.keras
def test_run_with_tensorboard_fused_and_resumed_logs_every_trial(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_config(model={"activation": ["relu", "tanh"]}, seeds=1)))
    out, logdir = tmp_path / "results", tmp_path / "tb"
    first = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--fuse", "-q"])
    assert first.exit_code == 0, first.output
    # Added later, on a run with nothing left to train: the finished trials are written from the results.
    again = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--fuse", "-q",
                                     "--tensorboard", str(logdir)])
    assert again.exit_code == 0, again.output
    experiment, groups = _hparams(logdir)
    assert len(groups) == 2
    assert all(math.isfinite(m.value) for g in groups for m in g.metric_values)
    forced = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--fuse", "-q", "--force",
                                      "--tensorboard", str(logdir)])
    assert forced.exit_code == 0, forced.output
    for trial_dir in [d for d in (logdir / "tiny").iterdir() if d.is_dir()]:
        assert len(list(trial_dir.glob("events.out.tfevents.*"))) == 1  # the retrained trial's run, alone
        assert [step for step, _ in _scalars(trial_dir)["loss"]] == [1, 2]


@pytest.mark.parametrize("args", [["run", "{config}", "--out", "{out}", "--tensorboard", "{tb}"],
                                  ["export", "{results}", "--to", "tensorboard", "{tb}"]])
def test_without_tensorboard_installed_the_option_says_how_to_install_it(tmp_path, monkeypatch, args):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    results = write_sweep(tmp_path / "fake_results", seeds=1, epochs=2)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    paths = {"config": config, "out": tmp_path / "out", "tb": tmp_path / "tb", "results": results}
    result = CliRunner().invoke(cli, [a.format(**paths) for a in args])
    assert result.exit_code == 2
    assert "pip install 'mnist-sweep[tensorboard]'" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()


def test_without_tensorboard_installed_the_config_key_says_how_to_install_it(tmp_path, monkeypatch):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tensorboard=str(tmp_path / "tb"))))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"tensorboard: {tmp_path / 'tb'} needs TensorBoard" in result.output
    assert "pip install 'mnist-sweep[tensorboard]'" in result.output
    assert not (tmp_path / "out").exists()


def test_export_options_that_do_not_fit_the_tool_exit_2(tmp_path):
    results = write_sweep(tmp_path / "results", seeds=1, epochs=2)
    no_dir = CliRunner().invoke(cli, ["export", str(results), "--to", "tensorboard"])
    assert no_dir.exit_code == 2 and "--to tensorboard needs a log directory" in no_dir.output
    stray = CliRunner().invoke(cli, ["export", str(results), "--to", "mlflow", str(tmp_path / "x")])
    assert stray.exit_code == 2 and "--tracking-uri" in stray.output
    missing = CliRunner().invoke(cli, ["export", str(tmp_path / "nothing"), "--to", "tensorboard", str(tmp_path / "tb")])
    assert missing.exit_code != 0 and "no results at" in missing.output


@pytest.mark.keras
def test_a_log_directory_that_cannot_be_written_is_an_error_for_export_and_a_warning_for_a_run(tmp_path):
    results = write_sweep(tmp_path / "results", seeds=1, epochs=2)
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory")
    exported = CliRunner().invoke(cli, ["export", str(results), "--to", "tensorboard", str(blocked / "tb")])
    assert exported.exit_code == 1
    assert exported.output.startswith(f"Error: cannot write TensorBoard event files to {blocked / 'tb'}")
    # A run goes on without its log, says so once, and says how to write the log afterwards.
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tensorboard=str(blocked / "tb"))))
    ran = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output
    assert ran.output.count("TensorBoard log stopped: cannot write to") == 1
    assert "--to tensorboard DIR` writes the log afterwards" in ran.output
    assert (tmp_path / "out" / "tiny" / "summary.csv").exists()


def test_writing_event_files_loads_neither_tensorflow_nor_keras(tmp_path):
    # TensorBoard's own EventFileWriter imports TensorFlow when it is installed; this writer must not,
    # so that a driver on the JAX or torch backend (or without Keras loaded) logs as cheaply.
    results = write_sweep(tmp_path / "results", seeds=1, epochs=2)
    code = ("import sys; from mnist_sweep.tracking import export_tensorboard; "
            f"export_tensorboard({str(results)!r}, {str(tmp_path / 'tb')!r}); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert len(list((tmp_path / "tb" / "fake").rglob("events.out.tfevents.*"))) == 1 + 6  # experiment + trials


def test_export_removes_the_event_folders_of_trials_no_longer_in_the_results(tmp_path):
    sweep_dir = write_sweep(tmp_path / "results", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=2)
    logdir = tmp_path / "tb"
    assert CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "tensorboard", str(logdir)]).exit_code == 0
    old = sorted(p.name for p in (sweep_dir / "runs").iterdir())[0]
    new = f"renamed_{old}"
    (sweep_dir / "runs" / old).rename(sweep_dir / "runs" / new)
    trial_json = sweep_dir / "runs" / new / "trial.json"
    trial_json.write_text(trial_json.read_text().replace(f'"{old}"', f'"{new}"'))
    (logdir / "fake" / "notes").mkdir()  # not ours: left alone
    (logdir / "fake" / "notes" / "todo.txt").write_text("keep me")
    assert CliRunner().invoke(cli, ["export", str(sweep_dir), "--to", "tensorboard", str(logdir)]).exit_code == 0
    folders = sorted(d.name for d in (logdir / "fake").iterdir() if d.is_dir())
    assert folders == sorted([*(p.name for p in (sweep_dir / "runs").iterdir()), "notes"])
    assert old not in folders and new in folders
