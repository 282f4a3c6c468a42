"""Sampled sweeps on Optuna: ranges, random/qmc/tpe, pruning, resume after kill -9, and what the
commands say about them. Tiny configs on the bundled data: a few trials of one to three epochs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.config import config_to_dict, validate_config
from mnist_sweep.errors import ConfigError
from mnist_sweep.sweep.runner import run_sweep
from mnist_sweep.search import STUDY_FILE, SearchSpace, draw_configurations, first_configurations
from tests.helpers import tiny_config

RANGES = {"dropout": {"low": 0.0, "high": 0.5}, "kernel_l2": {"low": 1e-5, "high": 1e-1, "log": True},
          "hidden": [{"low": 8, "high": 32, "step": 8}]}


def _search_config(name="srch", method="random", trials=3, seed=0, prune=None, **sections):
    sections.setdefault("model", RANGES)
    sections.setdefault("search", {"method": method, "trials": trials, "seed": seed})
    config = tiny_config(name=name, **sections)
    if prune:
        config["prune"] = prune
    return config


def _write(tmp_path, config):
    path = tmp_path / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _study(sweep_dir, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path(sweep_dir) / STUDY_FILE}")


def _records(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in (Path(sweep_dir) / "runs").glob("*/trial.json")}


# ---------------------------------------------------------------- sampling, without training

def test_sampled_values_lie_in_their_ranges_and_name_the_trial():
    config = validate_config(_search_config(trials=8, optimizer={"name": "adam", "learning_rate": {
        "low": 1e-4, "high": 1e-2, "log": True}}))
    runs = first_configurations(config)
    assert len(runs) == 8
    for (trial,) in runs:
        s = trial.settings
        assert 0 <= s["dropout"] <= 0.5 and 1e-5 <= s["kernel_l2"] <= 1e-1
        assert s["hidden"][0] in (8, 16, 24, 32)
        assert 1e-4 <= s["optimizer"]["learning_rate"] <= 1e-2
        assert f"do-{s['dropout']}" in trial.trial_id and f"kl2-{s['kernel_l2']}" in trial.trial_id
        assert len(f"{s['dropout']:g}".replace("0.", "")) <= 4  # 4 significant digits: readable ids
    # The same config and seed sample the same configurations (and ids) anywhere; another seed does not.
    assert [r[0].trial_id for r in first_configurations(config)] == [r[0].trial_id for r in runs]
    other = validate_config(_search_config(trials=8, seed=1))
    assert {r[0].trial_id for r in first_configurations(other)}.isdisjoint({r[0].trial_id for r in runs})


@pytest.mark.parametrize("method", ["random", "qmc"])
def test_lists_are_sampled_without_repeats(method):
    model = {"activation": ["relu", "tanh", "sigmoid"], "dropout": [0.0, 0.2, 0.4, 0.6]}
    config = validate_config(_search_config(method=method, trials=12, model=model))
    space = SearchSpace(config)
    drawn = [json.dumps(space.settings(optuna.trial.FixedTrial(p)), sort_keys=True)
             for p in draw_configurations(config)]
    assert len(drawn) == len(set(drawn)) == 12  # the whole product, each combination once
    with pytest.raises(ConfigError, match="13 configurations asked for, but the lists and stepped ranges hold "
                                          "only 12 distinct ones"):
        first_configurations(validate_config(_search_config(method=method, trials=13, model=model)))


def test_qmc_follows_a_seeded_sobol_sequence():
    one = draw_configurations(validate_config(_search_config(method="qmc", trials=6, seed=3)))
    assert one == draw_configurations(validate_config(_search_config(method="qmc", trials=6, seed=3)))
    assert one[1:] != draw_configurations(validate_config(_search_config(method="qmc", trials=6, seed=4)))[1:]


def test_tpe_takes_every_seed_the_config_allows():
    # The per-configuration TPE seed is derived from search.seed; for the largest it must stay in numpy's range.
    config = validate_config(_search_config(method="tpe", trials=2, seed=2**32 - 1))
    assert len(first_configurations(config)) == 2


def test_yaml_bounds_without_a_dot_are_numbers(tmp_path):
    # YAML reads 1e-5 as text; a range takes it as the number it means.
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nmodel: {kernel_l2: {low: 1e-5, high: 1e-1, log: true}}\n"
                    "search: {method: random, trials: 2}\n")
    from mnist_sweep.config import load_config
    assert load_config(path).ranges["model.kernel_l2"].low == 1e-5


def test_sweep_yaml_keeps_the_ranges():
    config = validate_config(_search_config(optimizer={"name": "sgd", "learning_rate": {"low": 0.01, "high": 0.1}}))
    again = validate_config(config_to_dict(config))
    assert again.ranges == config.ranges and set(config.ranges) == {
        "model.dropout", "model.kernel_l2", "model.hidden.0", "optimizer.0.learning_rate"}


def test_dry_run_prints_every_random_configuration_and_tpes_first(tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(_write(tmp_path, _search_config(trials=5))), "--dry-run",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "random search, 5 configurations x 1 seed(s)" in result.output
    assert "kernel_l2: 1e-05 to 0.1 (log scale)" in result.output
    assert "Configurations (all of them)" in result.output
    assert sum(line.startswith("│ ") and "-s0-" in line for line in result.output.splitlines()) >= 5
    result = CliRunner().invoke(cli, ["run", str(_write(tmp_path, _search_config(method="tpe", trials=14))),
                                      "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "the first 10, drawn at random" in result.output and "4 more configuration(s) chosen by TPE" in result.output
    assert not out.exists()


def test_without_optuna_a_search_fails_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(_write(tmp_path, _search_config())), "--out", str(out)])
    assert result.exit_code == 2
    assert "search.method random needs Optuna, which is not installed: pip install 'mnist-sweep[search]'" \
        in result.output
    assert not out.exists()


@pytest.mark.parametrize("bad, message", [
    ({"model": {"dropout": {"low": 0.4, "high": 0.1}}}, "low (0.4) is above high (0.1)"),
    ({"model": {"kernel_l2": {"low": -1, "high": 0.1, "log": True}}}, "a log range needs low > 0"),
    ({"model": {"activation": {"low": 0, "high": 1}}}, "activation cannot take a range"),
    ({"search": {"method": "random", "trials": 0}}, "search.trials: should be greater than 0"),
    ({"search": {"method": "grid"}}, "a range needs a sampled search (search.method: random, qmc, tpe)"),
    # Values Optuna or numpy would crash on, found by review: each must be refused before the study opens.
    ({"model": {"dropout": {"low": 0.0, "high": float("nan")}}}, "model.dropout.high: expected a finite number"),
    ({"model": {"dropout": {"low": 0.0, "high": 0.4, "step": float("nan")}}},
     "model.dropout.step: expected a finite number"),
    ({"search": {"method": "tpe", "trials": 2, "seed": 2**40}}, "search.seed: should be less than or equal to 4294967295"),
    ({"search": {"method": "random", "trials": 10**12}},
     "search.trials: 1,000,000,000,000 configurations x 1 seed(s) make 1,000,000,000,000 trials, more than the "
     "limit of 100,000"),
    ({"search": {"method": "random", "trials": 2}, "seeds": {"min": 2, "max": 3, "race": "best"}},
     "seeds: a race compares fixed configurations, so it needs search.method grid"),
])
def test_bad_ranges_exit_2_and_write_nothing(tmp_path, bad, message):
    config = _search_config()
    for key, value in bad.items():
        config[key] = {**config[key], **value} if key == "model" else value
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(_write(tmp_path, config)), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_pruning_on_ray_is_refused_as_bad_input_before_anything_starts(tmp_path):
    config = _write(tmp_path, _search_config(prune={"method": "median"}))
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--executor", "ray"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and "prune: the Ray executor cannot stop a running trial" in result.output
    assert not out.exists()


# ---------------------------------------------------------------- searches that train

@pytest.mark.keras
@pytest.mark.parametrize("method", ["random", "qmc", "tpe"])
def test_each_method_runs_through_the_cli(tmp_path, method):
    out = tmp_path / "r"
    config = _write(tmp_path, _search_config(name=method, method=method, trials=2, train={"epochs": 1}))
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    study = _study(out / method, method)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    summary = pd.read_csv(out / method / "summary.csv")
    assert list(summary["status"]) == ["ok", "ok"]
    # The study was told each configuration's validation accuracy, never its test accuracy.
    assert sorted(t.value for t in study.trials) == sorted(summary["val_accuracy"])
    assert {"dropout", "kernel_l2", "hidden"} <= set(summary.columns)


@pytest.mark.keras
def test_show_compare_and_plot_work_on_a_tpe_sweep(tmp_path):
    out = tmp_path / "r"
    run_sweep(_search_config(name="t", method="tpe", trials=3, seeds=2, train={"epochs": 1}), out=out)
    sweep = out / "t"
    study = _study(sweep, "t")
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 6 and len(study.trials) == 3  # each configuration once per seed
    means = summary.groupby("config_id")["val_accuracy"].mean()  # each configuration told its seeds' mean
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(means))
    runner = CliRunner()
    assert runner.invoke(cli, ["show", str(sweep)]).exit_code == 0
    compared = runner.invoke(cli, ["compare", str(sweep), "--metric", "val_accuracy"])
    assert compared.exit_code == 0, compared.output
    text = " ".join(compared.output.split())
    assert "This is a TPE (Bayesian) search" in text and "None of the significance tests across settings" in text
    assert "Settings ranked by share" not in compared.output
    plotted = runner.invoke(cli, ["plot", str(sweep)])
    assert plotted.exit_code == 0, plotted.output
    assert (sweep / "plots" / "best_so_far.png").exists()
    assert (sweep / "plots" / "val_accuracy_vs_settings.png").exists()  # plot chooses on validation
    assert "best_so_far.png" in (sweep / "report.html").read_text()


@pytest.mark.keras
def test_a_random_sweep_says_it_is_not_a_balanced_design(tmp_path):
    out = tmp_path / "r"
    run_sweep(_search_config(name="rnd", trials=2, train={"epochs": 1}), out=out)
    compared = CliRunner().invoke(cli, ["compare", str(out / "rnd"), "--metric", "val_accuracy"])
    assert compared.exit_code == 0, compared.output
    assert "This is a random search: 2 configuration(s) drawn from the space, not a balanced design" \
        in " ".join(compared.output.split())


@pytest.mark.keras
@pytest.mark.parametrize("prune", [
    {"method": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    {"method": "hyperband", "min_resource": 1, "reduction_factor": 2},
    {"method": "median", "n_startup_trials": 1},
])
def test_each_pruner_through_the_python_api(tmp_path, prune):
    out = tmp_path / "r"
    config = _search_config(name="p", method="tpe", trials=4, prune=prune, train={"epochs": 3},
                            search={"method": "tpe", "trials": 4, "seed": 0, "metric": "val_loss"})
    frame = run_sweep(config, out=out)
    study = _study(out / "p", "p")
    states = {t.state.name for t in study.trials}
    assert len(study.trials) == 4 and states <= {"COMPLETE", "PRUNED"}
    records = _records(out / "p")
    pruned = [r for r in records.values() if r["status"] == "pruned"]
    assert len(pruned) == sum(t.state.name == "PRUNED" for t in study.trials)
    for record in pruned:  # recorded with the epoch it reached, no test metrics, no model
        assert record["metrics"]["epochs_run"] < 3
        assert record["metrics"]["test_accuracy"] is None
        assert f"pruned after epoch {record['metrics']['epochs_run']}" in record["notes"][0]
        history = pd.read_csv(out / "p" / "runs" / record["trial_id"] / "history.csv")
        assert len(history) == record["metrics"]["epochs_run"]  # a stopped curve
    assert set(frame["status"]) <= {"ok", "pruned"}
    if prune["method"] == "successive_halving":  # 4 configurations, halved at epoch 1 and 2: some must stop
        assert pruned


@pytest.mark.keras
def test_pruning_stops_single_branches_of_a_fused_group(tmp_path):
    out = tmp_path / "r"
    # One optimizer and one batch size: the four configurations share fused models.
    config = _search_config(name="f", trials=4, execution="fused", train={"epochs": 3},
                            prune={"method": "successive_halving", "min_resource": 1, "reduction_factor": 2},
                            search={"method": "random", "trials": 4, "seed": 0, "metric": "val_loss"})
    run_sweep(config, out=out)
    records = list(_records(out / "f").values())
    assert {r["execution"] for r in records} == {"fused"} and len({r["group_id"] for r in records}) < len(records)
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned and any(r["status"] == "ok" for r in records)
    assert all("this branch was cut off, the others went on" in " ".join(r["notes"]) for r in pruned)


@pytest.mark.keras
@pytest.mark.slow
def test_worker_processes_obey_the_pruner(tmp_path):
    out = tmp_path / "r"
    config = _write(tmp_path, _search_config(
        name="w", method="tpe", trials=4, train={"epochs": 3},
        prune={"method": "successive_halving", "min_resource": 1, "reduction_factor": 2},
        search={"method": "tpe", "trials": 4, "seed": 0, "metric": "val_loss"}))
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--jobs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    study = _study(out / "w", "w")
    records = _records(out / "w")
    assert len(study.trials) == 4 and all(r["worker"].get("pid") for r in records.values())
    pruned = [r for r in records.values() if r["status"] == "pruned"]
    assert pruned and all(r["metrics"]["epochs_run"] < 3 for r in pruned)


@pytest.mark.keras
def test_a_changed_search_is_refused_before_it_rewrites_the_sweeps_config(tmp_path):
    out = tmp_path / "r"
    config = _write(tmp_path, _search_config(name="c", trials=1, train={"epochs": 1}))
    assert CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "-q"]).exit_code == 0
    before = (out / "c" / "sweep.yaml").read_text()
    changed = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "-q", "--set", "search.seed=1"])
    assert changed.exit_code == 2, changed.output
    assert "holds a study of a different search" in changed.output
    # sweep.yaml still describes the study and the results beside it (show, compare and plot read it).
    assert (out / "c" / "sweep.yaml").read_text() == before


@pytest.mark.keras
@pytest.mark.parametrize("method", ["random", pytest.param("tpe", marks=pytest.mark.slow)])
def test_a_search_rerun_with_more_trials_keeps_those_it_ran(tmp_path, method):
    out = tmp_path / "r"
    config = _write(tmp_path, _search_config(name="g", method=method, trials=2, train={"epochs": 1}))
    assert CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "-q"]).exit_code == 0
    first = _records(out / "g")
    asked = [t.params for t in _study(out / "g", "g").trials]
    more = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "-q", "--set", "search.trials=4"])
    assert more.exit_code == 0, more.output
    study = _study(out / "g", "g")
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert [t.params for t in study.trials][:2] == asked
    records = _records(out / "g")
    assert len(records) == 4 and first.keys() <= records.keys()
    for trial_id, record in first.items():  # the first two were not trained again
        assert records[trial_id]["started_at"] == record["started_at"]
    if method == "random":  # the same configurations a fresh 4-trial search draws
        fresh = validate_config(yaml.safe_load(config.read_text()) | {"search": {
            "method": "random", "trials": 4, "seed": 0}})
        assert [t.params for t in study.trials] == draw_configurations(fresh)
    # Fewer trials than the study holds: what exists is kept, nothing new is asked or run.
    fewer = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "-q", "--set", "search.trials=3"])
    assert fewer.exit_code == 0, fewer.output
    assert len(_study(out / "g", "g").trials) == 4 and _records(out / "g") == records


@pytest.mark.keras
@pytest.mark.slow
def test_a_search_resumes_where_kill_9_left_it(tmp_path):
    out = tmp_path / "r"
    config = _write(tmp_path, _search_config(name="k", method="tpe", trials=4, train={"epochs": 2}))
    command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out)]
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sweep = out / "k"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill once a trial finished and the next began
        statuses = [r.get("status") for r in _records(sweep).values()] if (sweep / "runs").exists() else []
        if statuses.count("ok") >= 1 and "running" in statuses:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {tid: r for tid, r in _records(sweep).items() if r["status"] == "ok"}
    asked = [t.params for t in _study(sweep, "k").trials]
    assert kept and len(asked) < 4
    final = CliRunner().invoke(cli, ["run", str(config), "--out", str(out)])  # the same command, in this process
    assert final.exit_code == 0, final.output
    study = _study(sweep, "k")
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert [t.params for t in study.trials][:len(asked)] == asked  # the asked-but-unfinished one ran again
    records = _records(sweep)
    assert len(records) == 4 and {r["status"] for r in records.values()} == {"ok"}
    for trial_id, record in kept.items():  # finished trials were not trained again
        assert records[trial_id]["started_at"] == record["started_at"]
    assert f"{len(kept)} already finished, skipped" in final.stderr


# ---------------------------------------------------------------- what the study is told (no training)

def _told(tmp_path, metric, seed_runs):
    """A study told one configuration per entry of `seed_runs` (a list of (status, value) per seed)."""
    from mnist_sweep.search import Search
    config = validate_config(_search_config(name="tell", trials=len(seed_runs), seeds=len(seed_runs[0]),
                                            search={"method": "random", "trials": len(seed_runs), "seed": 0,
                                                    "metric": metric}))
    search = Search(config, tmp_path)
    search.open()
    for runs in seed_runs:
        configuration = search.ask()
        for trial, (status, value) in zip(configuration.trials, runs):
            search.record(trial, {"status": status, "metrics": {metric: value}})
    return [(t.state.name, t.value) for t in search.study.trials]


def test_a_diverged_seed_counts_as_zero_accuracy_in_its_configurations_mean(tmp_path):
    told = _told(tmp_path, "val_accuracy", [
        [("ok", 0.9), ("ok", 0.6), ("diverged", float("nan"))],  # worse than its two good seeds alone
        [("diverged", float("nan"))] * 3,                          # a region TPE must learn is bad
        [("ok", 0.9), ("failed", None), ("ok", 0.7)],             # a crash is no verdict on the settings
        [("ok", 0.9), ("pruned", 0.1), ("ok", 0.7)],
    ])
    assert told[0] == ("COMPLETE", pytest.approx(0.5))
    assert told[1] == ("COMPLETE", 0.0)
    assert told[2] == ("COMPLETE", pytest.approx(0.8))
    assert told[3] == ("PRUNED", None)


def test_a_diverged_seed_counts_as_the_worst_loss_known(tmp_path):
    told = _told(tmp_path, "val_loss", [
        [("diverged", float("nan"))] * 2,   # no finite loss known yet: nothing to stand for it
        [("ok", 1.0), ("ok", 2.0)],
        [("ok", 0.5), ("diverged", float("nan"))],
        [("diverged", float("nan")), ("ok", float("inf"))],
    ])
    assert told[0] == ("FAIL", None)
    assert told[1] == ("COMPLETE", pytest.approx(1.5))
    assert told[2] == ("COMPLETE", pytest.approx(1.0))  # (0.5 + the worst told, 1.5) / 2
    assert told[3] == ("COMPLETE", pytest.approx(1.5))


def test_fewer_draws_are_a_prefix_of_more_even_when_a_small_space_runs_out(monkeypatch):
    from mnist_sweep.search import study
    monkeypatch.setattr(study, "MAX_REPEATS", 1)  # take the fallback (unseen combinations in order) at once
    model = {"activation": ["relu", "tanh", "sigmoid"], "dropout": [0.0, 0.1, 0.2, 0.3]}
    for method in ("random", "qmc"):
        config = lambda trials: validate_config(tiny_config(name="x", model=model, search={
            "method": method, "trials": trials, "seed": 3}))
        full = draw_configurations(config(12))
        assert len({json.dumps(p, sort_keys=True) for p in full}) == 12
        for trials in (1, 5, 11):
            assert draw_configurations(config(trials)) == full[:trials], (method, trials)
