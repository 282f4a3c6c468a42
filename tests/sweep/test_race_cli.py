"""A raced sweep through the CLI: killed mid-race it resumes where it stopped, and a larger max continues it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.helpers import tiny_config


def _config(tmp_path, seeds):
    path = tmp_path / "race.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="race", model={"hidden": [8], "activation": ["relu", "elu"]},
                                               train={"epochs": 1}, seeds=seeds)))
    return path


def _records(sweep):
    found = {}
    for path in Path(sweep).glob("runs/*/trial.json"):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except ValueError:
            pass
    return found


def _race(sweep):
    try:
        return json.loads((Path(sweep) / "race.json").read_text())
    except (OSError, ValueError):
        return None


def _run(config, out, *extra):
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), *extra], env


@pytest.mark.slow
def test_a_race_killed_mid_round_resumes_and_a_larger_max_continues_it(tmp_path):
    config, out = _config(tmp_path, {"min": 2, "max": 3, "race": "best"}), tmp_path / "r"
    sweep = out / "race"
    command, env = _run(config, out)
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill -9 once round 2 (seed 2) is training
        race = _race(sweep)
        if race and race["rounds"] and any(r["seed"] == 2 for r in _records(sweep).values()):
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _race(sweep)
    assert before["rounds"][0]["seeds"] == 2 and not before["finished"]
    kept = {t: r for t, r in _records(sweep).items() if r["status"] == "ok"}
    assert {r["seed"] for r in kept.values()} >= {0, 1}

    done = CliRunner().invoke(cli, ["run", str(config), "--out", str(out)])  # the same command, in this process
    assert done.exit_code == 0, done.output
    assert f"{len(kept)} already finished, skipped" in done.stderr
    after = _records(sweep)
    assert all(after[t] == r for t, r in kept.items())  # no finished trial trained again
    race = _race(sweep)
    assert race["finished"] and race["rounds"][0] == before["rounds"][0] and race["max"] == 3
    assert len(after) == race["trials_run"] == sum(3 if c in race["racing"] else race["left_at"][c]
                                                   for c in race["configurations"].values())

    # A larger max replays the looks at the stricter level and carries the race on from there.
    config, out2 = _config(tmp_path, {"min": 2, "max": 4, "race": "best"}), out
    wider = CliRunner().invoke(cli, ["run", str(config), "--out", str(out2), "--quiet"])
    assert wider.exit_code == 0, wider.output
    longer = _race(sweep)
    from mnist_sweep.analysis.race import nominal_levels

    stricter = nominal_levels((2, 3, 4))[0]  # Pocock's level for 3 looks, below the 2 looks' of the first run
    assert stricter < nominal_levels((2, 3))[0] == pytest.approx(race["alpha_per_look"])
    assert longer["max"] == 4 and longer["finished"] and longer["alpha_per_look"] == pytest.approx(stricter)
    final = _records(sweep)
    assert all(final[t] == r for t, r in after.items() if r["status"] == "ok")
    assert len(final) == longer["trials_run"] > len(after) or longer["outcome"] == "winner"


def test_dry_run_prints_the_best_and_worst_case_trial_counts(tmp_path):
    config = _config(tmp_path, {"min": 2, "max": 6, "race": "best"})
    result = CliRunner().invoke(cli, ["run", str(config), "--dry-run", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "at worst 12 trials (2 configurations x 6 seeds" in result.output
    assert "at best 4 (2 configurations x 2 seeds" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seeds, extra, message", [
    ({"min": 5, "max": 3}, {}, "seeds.max: must be at least min (5)"),
    ({"min": 1, "max": 3}, {}, "seeds.min: must be between 2"),
    ({"min": 2, "max": 3, "race": "fastest"}, {}, "seeds.race: expected best"),
    ({"min": 2, "max": 3, "rounds": 2}, {}, "seeds.rounds: unknown key"),
    ({"min": 2, "max": 3}, {"race_metric": "test_accuracy"}, "race_metric: the test set never chooses"),
    ({"min": 2, "max": 3}, {"race_metric": "val_acc"}, 'did you mean "val_accuracy"'),
    (3, {"race_metric": "val_loss"}, "race_metric: applies to a raced sweep only"),
])
def test_bad_race_settings_stop_before_anything_is_written(tmp_path, seeds, extra, message):
    raw = tiny_config(name="race", seeds=seeds, **extra)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_plain_seeds_keep_their_meaning_and_a_race_round_trips_through_sweep_yaml(tmp_path):
    from mnist_sweep.config import config_to_dict, validate_config

    assert validate_config(tiny_config(seeds=3)).seeds == [0, 1, 2]
    assert validate_config(tiny_config(seeds=[4, 7])).race is None
    raced = validate_config(tiny_config(seeds={"min": 2, "max": 4}, race_metric="val_loss"))
    assert raced.seeds == [0, 1, 2, 3] and (raced.race.min, raced.race.max, raced.race.mode) == (2, 4, "best")
    dumped = config_to_dict(raced)
    assert dumped["seeds"] == {"min": 2, "max": 4, "race": "best"} and dumped["race_metric"] == "val_loss"
    assert validate_config(dumped) == raced


@pytest.mark.slow
def test_a_race_through_worker_processes_trains_a_batch_of_seeds_per_round_as_fused_groups(tmp_path):
    config, out = _config(tmp_path, {"min": 2, "max": 3, "race": "best"}), tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--jobs", "2", "--fuse"])
    assert result.exit_code == 0, result.output
    race, records = _race(out / "race"), _records(out / "race")
    # Two workers and one fused group per seed: the first round trains seeds 0-2 at once (a batch of 2
    # looks); the race judges its looks by seed count all the same.
    assert [r["seeds"] for r in race["rounds"]] == ([2] if race["outcome"] == "winner" else [2, 3])
    assert race["trials_run"] == len(records) == 6
    assert {r["execution"] for r in records.values()} == {"fused"}
