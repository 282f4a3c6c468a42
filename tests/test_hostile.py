"""Hostile and damaged input, as a careless or malicious user would give it: every case exits with a
plain `Error:` (2 for bad input) or a warning, writes nothing it should not, and stays within a
memory limit and a time bound.

Small hostile files live in tests/data/hostile/; big ones are generated here, sparse where possible.
Paths that never load TensorFlow run in a child process under RLIMIT_AS.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.fake_results import write_sweep

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).parent / "data" / "hostile"
MEMORY_LIMIT = 512 << 20  # bytes of address space for a child that does not load TensorFlow
PIXELS = ",".join(f"pixel{i}" for i in range(784))


def cli_child(*args, limit: int = MEMORY_LIMIT, seconds: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    """Run `mnist-sweep ARGS` in a child process limited to `limit` bytes of memory; return it and its time."""

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mnist_sweep.cli", *map(str, args)], capture_output=True,
                          env=env, preexec_fn=cap, timeout=seconds, cwd=ROOT)
    return done, time.monotonic() - start


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")


def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def sweep_config(tmp_path: Path, **dataset) -> Path:
    config = {"name": "hostile", "dataset": {"name": "mnist", **dataset}, "model": {"hidden": [4]},
              "train": {"epochs": 1}, "seeds": 1}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    """A path that `predict` takes as a model; bad input is refused before it is ever loaded."""
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    return path


# ---------------------------------------------------------------- 2, 3, 4: configs

EXPECTED = yaml.safe_load((HOSTILE / "expected.yaml").read_text())
CONFIGS = EXPECTED["configs"]


@pytest.mark.parametrize("name", sorted(n for n in CONFIGS if not CONFIGS[n].get("child")))
def test_config_values_that_would_fail_a_trial_are_refused(tmp_path, name):
    for dry_run in ([], ["--dry-run"]):
        result = invoke("run", HOSTILE / "configs" / name, "--out", tmp_path / "r", *dry_run)
        assert result.exit_code == 2
        assert f"  - {CONFIGS[name]['message']}" in result.output.splitlines()
        assert result.output.startswith(f"Error: {HOSTILE / 'configs' / name}: invalid config")
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", sorted(n for n in CONFIGS if CONFIGS[n].get("child")))
def test_configs_that_would_fill_memory_fail_fast_in_bounded_memory(tmp_path, name):
    done, seconds = cli_child("run", HOSTILE / "configs" / name, "--dry-run", "--out", tmp_path / "r")
    assert done.returncode == 2, output(done)
    assert output(done).startswith(f"Error: {HOSTILE / 'configs' / name}: invalid config (1 problem)\n"
                                   f"  - {CONFIGS[name]['message']}")
    assert seconds < 20 and not (tmp_path / "r").exists()


def test_the_trial_limit_can_be_raised(tmp_path):
    config = tmp_path / "many.yaml"
    config.write_text("name: many\nseeds: 3\nmodel: {dropout: [0, .1, .2, .3]}\n")
    refused = invoke("run", config, "--dry-run", "--max-trials", "10")
    assert refused.exit_code == 2
    assert "the sweep has 12 trials (model.dropout (4) x seeds (3)), more than the limit of 10" in refused.output
    assert invoke("run", config, "--dry-run", "--max-trials", "12").exit_code == 0


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("name: deep\ninclude: " + "[" * 500_000 + "]" * 500_000 + "\n"),
     "the YAML is nested more than 64 brackets deep; a config needs a few"),
    (lambda p: p.write_text("name: deep\ninclude:\n" + "".join(" " * i + "- \n" for i in range(1_000))),
     "the YAML is nested too deeply"),
    (lambda p: open(p, "wb").truncate(2 << 30), "the file is over 1,048,576 bytes; a config needs a few hundred"),
])
def test_huge_or_deep_config_files_fail_fast(tmp_path, make, message):
    path = tmp_path / "hostile.yaml"
    make(path)
    done, seconds = cli_child("run", path, "--dry-run")
    assert done.returncode == 2, output(done)
    assert output(done) == f"Error: {path}: invalid config (1 problem)\n  - {message}\n"
    assert seconds < 20


def test_an_alias_bomb_in_set_is_refused(tmp_path):
    levels = ["a: &a [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]"]
    levels += [f"{b}: &{b} [{', '.join(['*' + a] * 10)}]" for a, b in zip("abcdefg", "bcdefgh")]
    bomb = "include=[{" + ", ".join(levels) + "}]"
    done, seconds = cli_child("run", HOSTILE / "configs" / "penalty-inf.yaml", "--dry-run", "--set", bomb)
    assert done.returncode == 2, output(done)
    assert f"characters in all): the YAML expands to more than 250,000 values" in output(done)
    assert len(output(done)) < 400 and seconds < 20


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "config.yaml")
    done, seconds = cli_child("run", tmp_path / "config.yaml", "--dry-run", seconds=20)
    assert done.returncode == 2
    assert output(done) == f"Error: invalid config (1 problem)\n  - cannot read config {tmp_path / 'config.yaml'}: " \
                           "not a regular file\n"
    assert seconds < 20


# ---------------------------------------------------------------- 1, 2, 7: data files (predict and training)

def test_predict_csv_with_one_value_more_than_the_header_is_refused(tmp_path, model):
    """An extra leading value per row must not be read as an index, shifting every pixel by one."""
    out = tmp_path / "submission.csv"
    done, seconds = cli_child("predict", model, HOSTILE / "predict-extra-value.csv", "--out", out)
    assert done.returncode == 2, output(done)
    assert output(done) == f"Error: {HOSTILE / 'predict-extra-value.csv'}, line 2: 785 values, expected 784 like " \
                           "the header\n"
    assert not out.exists() and seconds < 20


def test_training_csv_with_one_value_more_than_the_header_is_refused_and_nothing_written(tmp_path):
    config = sweep_config(tmp_path, source="file", path=str(HOSTILE / "train-extra-value.csv"))
    result = invoke("run", config, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.output == f"Error: {HOSTILE / 'train-extra-value.csv'}, line 2: 786 values, expected 785 like " \
                            "the header\n"
    assert not (tmp_path / "r").exists()


def test_a_row_of_a_million_values_fails_fast(tmp_path, model):
    path = tmp_path / "wide.csv"
    path.write_text(PIXELS + "\n" + ",".join(["0"] * 1_000_000) + "\n")
    done, seconds = cli_child("predict", model, path, "--out", tmp_path / "p.csv")
    assert done.returncode == 2, output(done)
    assert f"{path}, line 2: longer than 25,088 bytes, more than 784 values can take" in output(done)
    assert seconds < 20 and not (tmp_path / "p.csv").exists()


def test_two_gigabytes_without_a_newline_give_a_short_printable_error(tmp_path, model):
    path = tmp_path / "zeros.csv"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GB of NUL bytes that take no disk
    done, seconds = cli_child("predict", model, path, "--out", tmp_path / "p.csv")
    text = output(done)
    assert done.returncode == 2, text
    assert text.startswith(f"Error: {path}: header has at least 1 columns starting '\\x00\\x00")
    assert len(text) < 400 and "\0" not in text and text.isprintable() is False  # one line, escaped
    assert text.count("\n") == 1 and seconds < 20


def _gzip_bomb(path: Path, declared_images: int, inflated_gb: float) -> Path:
    """An IDX images file whose gzip inflates to `inflated_gb` GB, made of repeated gzip members."""
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (declared_images, 28, 28))
    chunk = 64 << 20
    zeros = zlib.compressobj(9, zlib.DEFLATED, 31)  # one member of 64 MB of zeros, about 64 KB packed
    member = zeros.compress(bytes(chunk)) + zeros.flush()
    with open(path, "wb") as f:
        f.write(gzip.compress(header))
        for _ in range(int(inflated_gb * (1 << 30) / chunk)):
            f.write(member)
    return path


@pytest.mark.parametrize("declared, message", [
    (10_000_000, "header says 10,000,000 items, more than the 1,000,000 one file may hold"),
    (1_000, "IDX file has extra bytes: header says shape (1000, 28, 28), which needs 784,016 bytes"),
])
def test_gzip_bomb_is_refused_in_bounded_memory(tmp_path, model, declared, message):
    bomb = _gzip_bomb(tmp_path / "t10k-images-idx3-ubyte.gz", declared, inflated_gb=7.5)
    assert bomb.stat().st_size < 10 << 20
    done, seconds = cli_child("predict", model, bomb, "--out", tmp_path / "p.csv")
    assert done.returncode == 2, output(done)
    assert message in output(done)
    assert seconds < 20 and not (tmp_path / "p.csv").exists()


def test_images_of_another_size_are_refused_from_the_header(tmp_path, model):
    header = (0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 4096, 4096))
    path = tmp_path / "big-images-idx3-ubyte"
    path.write_bytes(header)
    result = invoke("predict", model, path, "--out", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: header says images of 4096x4096 pixels; expected 28x28\n"


def test_npz_declaring_a_huge_array_is_refused_before_loading(tmp_path, model):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (50_000_000, 784)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
    done, _ = cli_child("predict", model, path, "--out", tmp_path / "p.csv")
    assert done.returncode == 2, output(done)
    assert "x.npy would take 313,600,000,000 bytes, more than 1,000,000 images' worth" in output(done)


# ---------------------------------------------------------------- 8: what dataset.path is

@pytest.mark.parametrize("make, what", [
    (lambda p: os.mkfifo(p) or p, "is a named pipe (FIFO), not a file"),
    (lambda p: Path("/dev/zero"), "is a character device, not a file"),
])
def test_a_fifo_or_device_as_dataset_path_says_what_it_is(tmp_path, make, what):
    path = make(tmp_path / "fifo")
    result = invoke("run", sweep_config(tmp_path, source="file", path=str(path)), "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {path}: {what}; path must be a .npz")
    assert not (tmp_path / "r").exists()


def test_a_fifo_as_predict_input_says_what_it_is(tmp_path, model):
    os.mkfifo(tmp_path / "images")
    result = invoke("predict", model, tmp_path / "images", "--out", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert result.output == f"Error: {tmp_path / 'images'}: is a named pipe (FIFO), not a file\n"


def test_out_inside_another_sweeps_runs_is_refused(tmp_path):
    other = write_sweep(tmp_path / "results", "other", seeds=1, epochs=2)
    before = sorted(p.name for p in (other / "runs").iterdir())
    result = invoke("run", sweep_config(tmp_path, source="bundled"), "--out", other / "runs")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: --out: {other / 'runs'} is inside the sweep {other}")
    assert sorted(p.name for p in (other / "runs").iterdir()) == before


def _tiny_npz(tmp_path: Path) -> Path:
    data = tmp_path / "tiny.npz"
    images, labels = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
    np.savez(data, x_train=images, y_train=labels, x_test=images, y_test=labels)
    return data


def test_a_run_that_stops_before_its_first_trial_removes_what_it_created(tmp_path, monkeypatch):
    import mnist_sweep.sweep.runner as runner
    from mnist_sweep.errors import SweepError

    def no_executor(kind, options):
        raise SweepError("--executor ray needs Ray: pip install 'mnist-sweep[ray]'")

    monkeypatch.setattr(runner, "make_executor", no_executor)
    config = sweep_config(tmp_path, source="file", path=str(_tiny_npz(tmp_path)))
    result = invoke("run", config, "--out", tmp_path / "new" / "r")
    assert result.exit_code == 1 and result.output.endswith("Error: --executor ray needs Ray: pip install "
                                                             "'mnist-sweep[ray]'\n")
    assert not (tmp_path / "new").exists()


def test_ray_cluster_death_is_an_error_line_and_running_trials_are_interrupted(tmp_path, monkeypatch):
    import mnist_sweep.sweep.runner as runner

    class RaySystemError(Exception):  # what Ray raises when its cluster goes away mid-sweep
        __module__ = "ray.exceptions"

    class DyingCluster:
        stopping = False

        def run(self, tasks, data, emit):  # tasks: a records.TaskQueue
            tasks.ready()
            emit("started", tasks.take().trials[0].trial_id, {})
            raise RaySystemError("System error: the GCS at 10.0.0.5:6379 is unreachable")

    monkeypatch.setattr(runner, "make_executor", lambda kind, options: DyingCluster())
    result = invoke("run", sweep_config(tmp_path, source="file", path=str(_tiny_npz(tmp_path))),
                    "--out", tmp_path / "r")
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("Error: the Ray cluster stopped under the sweep "
                                                      "(RaySystemError: System error: the GCS")
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "r" / "hostile" / "runs").glob("*/trial.json")]
    assert record["status"] == "interrupted"
    assert record["error"].startswith("the sweep stopped before it finished: RaySystemError")


# ---------------------------------------------------------------- 6: damaged results


def _damage(root: Path, name: str) -> Path:
    """A finished sweep with one of its files replaced by a damaged one from tests/data/hostile/results/."""
    sweep = write_sweep(root, "sw", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=3)
    first = sorted((sweep / "runs").iterdir())[0]
    target = {"summary": sweep / "summary.csv", "history": first / "history.csv", "trial": first / "trial.json"}
    shutil.copyfile(HOSTILE / "results" / name, target[name.split("-")[0]])
    return sweep


@pytest.mark.parametrize("name", sorted(EXPECTED["results"]))
def test_damaged_results_are_listed_left_out_and_the_rest_shown(tmp_path, name):
    sweep = _damage(tmp_path, name)
    expected = EXPECTED["results"][name]
    warning = f"Warning: damaged results: {sweep}/{expected['file']}: {expected['reason']}\n"
    for command in ("show", "compare"):
        result = invoke(command, sweep, *(["--trials", "--format", "csv"] if command == "show" else []))
        assert result.exit_code == 0, result.output
        assert (warning in result.stderr) == (command in expected["warns_in"]), result.stderr
        if command == "show":
            assert result.stdout.count("\n") - 1 == expected["trials_shown"]


@pytest.mark.parametrize("name", sorted(EXPECTED["results"]))
def test_figures_are_built_around_damaged_results(tmp_path, name):
    """What `plot` draws for each damaged file: every figure builds, the damage is listed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnist_sweep.report import plot as report
    from mnist_sweep.results.store import load_histories, load_results

    sweep = _damage(tmp_path, name)
    expected = EXPECTED["results"][name]
    damaged: list = []
    summary, histories = load_results(sweep, damaged), load_histories(sweep, damaged)
    assert [str(d) for d in damaged] == ([f"{sweep}/{expected['file']}: {expected['reason']}"]
                                         if "plot" in expected["warns_in"] else [])
    plan, _ = report._plan(summary, histories, "test_accuracy", None)
    assert len(plan) >= 3
    for *_, build in plan:
        plt.close(build())


def test_plot_draws_a_folder_with_a_damaged_sweep_and_lists_the_damage(tmp_path):
    pytest.importorskip("matplotlib")
    good = write_sweep(tmp_path, "good", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=2)
    history = sorted((good / "runs").iterdir())[0] / "history.csv"
    shutil.copyfile(HOSTILE / "results" / "history-text.csv", history)
    bad = write_sweep(tmp_path, "bad", factors={"activation": ["relu", "tanh"]}, seeds=1, epochs=2)
    (bad / "summary.csv").write_bytes((HOSTILE / "results" / "summary-not-utf8.csv").read_bytes())
    for record in (bad / "runs").glob("*/trial.json"):
        record.write_text((HOSTILE / "results" / "trial-truncated.json").read_text())
    result = invoke("plot", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"Warning: damaged results: {history}: line 3: loss is 'abc', not a number; history left out\n" \
        in result.stderr
    assert f"Skipped (bad): nothing usable in {bad}: every results file there is damaged" in result.output
    assert (good / "report.html").exists() and not (bad / "report.html").exists()
    assert f"{history}: line 3: loss is &#x27;abc&#x27;, not a number" in (good / "report.html").read_text()
    shown = invoke("show", tmp_path, "--trials", "--format", "csv")
    assert shown.exit_code == 0 and shown.stdout.count("-s0-") == 2  # the good sweep's two trials
    assert f"Warning: damaged results: {bad}/summary.csv: not UTF-8 text" in shown.stderr
    nothing = invoke("compare", bad)
    assert nothing.exit_code == 2
    assert nothing.output.startswith(f"Error: nothing usable in {bad}: every results file there is damaged:\n"
                                     f"  {bad}/summary.csv: not UTF-8 text")
