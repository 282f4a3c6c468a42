"""mnist-sweep against a bare model.fit loop and Keras Tuner on the same grids and data.

    pip install -e '.[bench]'            # keras-tuner and tensorboard, for this script only
    python benchmarks/bench_peers.py [--grids peers,seeds] [--backend jax] [--device gpu] [--skip-tuner]
                                     [--repeats 3]

Two grids of the SEEDS.md #1 model (784 -> 30 -> 10), SGD 0.01, batch 200, EarlyStopping(val_loss,
patience 3), 20 epochs, on the bundled MNIST subset (3,200 train / 800 validation / 1,000 test):
`peers`, 4 activations x 2 L2 values x 2 seeds (issue 12's grid), and `seeds`, 2 activations x 8
seeds, whose largest axis is the seeds (issue 24: only an engine that stacks across seeds trains it
as one model). Every mode runs as a fresh process, so its time includes Python and Keras start-up,
as a user would see it. mnist-sweep's modes: its default (compatible trials fused as stacked
groups, `execution: auto`), with --jobs 2, and --no-fuse (one model per trial) with and without
--jobs 2; Keras Tuner runs on the `peers` grid only, when installed. Every mode runs --repeats
times, the modes taking turns (round-robin), so a drift in the machine's speed reaches them all;
each grid's table gives each mode's median and its ratios of medians. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

EPOCHS, BATCH, PATIENCE = 20, 200, 3
DATASET = {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2}
GRIDS = {
    "peers": {"activation": ["relu", "tanh", "sigmoid", "elu"], "kernel_l2": [0.0, 0.02], "seeds": [0, 1],
              "label": "4 activations x 2 L2 x 2 seeds"},
    "seeds": {"activation": ["relu", "tanh"], "kernel_l2": [0.0], "seeds": list(range(8)),
              "label": "2 activations x 8 seeds"},
}
TUNER_GRIDS = ("peers",)  # Keras Tuner's GridSearch repeats seeds as executions_per_trial: the grid it was built for


def sweep_config(grid: dict) -> dict:
    """The grid as an mnist-sweep config."""
    return {
        "name": "peers", "dataset": DATASET,
        "model": {"hidden": [30], "activation": grid["activation"], "kernel_l2": grid["kernel_l2"]},
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
        "train": {"epochs": EPOCHS, "batch_size": BATCH,
                  "early_stopping": {"monitor": "val_loss", "patience": PATIENCE, "restore_best_weights": True}},
        "seeds": grid["seeds"],
    }


def trial_count(grid: dict) -> int:
    return len(grid["activation"]) * len(grid["kernel_l2"]) * len(grid["seeds"])


# The same data for every mode: mnist-sweep's loader, then plain Keras.
PRELUDE = f"""
import json, keras
from types import SimpleNamespace
from mnist_sweep.data.dataset import load_dataset
data = load_dataset(SimpleNamespace(**{{'seed': 0, 'path': None, **{DATASET!r}}}))
def build(activation, l2):
    reg = keras.regularizers.L2(l2) if l2 else None
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(30, activation=None if activation == 'linear' else activation,
                                                 kernel_regularizer=reg),
                              keras.layers.Dense(10, activation='softmax')])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss='sparse_categorical_crossentropy',
                  metrics=['accuracy'])
    return model
def stopper():
    return keras.callbacks.EarlyStopping(monitor='val_loss', patience={PATIENCE}, restore_best_weights=True)
"""


def bare_loop(grid: dict) -> str:
    """A notebook's loop over the grid: one model.fit per trial."""
    return PRELUDE + f"""
for seed in {grid['seeds']!r}:
    for activation in {grid['activation']!r}:
        for l2 in {grid['kernel_l2']!r}:
            keras.utils.set_random_seed(seed)
            model = build(activation, l2)
            model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs={EPOCHS},
                      batch_size={BATCH}, callbacks=[stopper()], verbose=0)
            model.evaluate(data.x_test, data.y_test, verbose=0)
            keras.backend.clear_session()
"""


def keras_tuner(grid: dict) -> str:
    """Keras Tuner's GridSearch over the grid, the seeds as executions per trial."""
    configs = len(grid["activation"]) * len(grid["kernel_l2"])
    return PRELUDE + f"""
import sys, keras_tuner as kt
def hypermodel(hp):
    return build(hp.Choice('activation', {grid['activation']!r}), hp.Choice('l2', {grid['kernel_l2']!r}))
tuner = kt.GridSearch(hypermodel, objective='val_loss', executions_per_trial={len(grid['seeds'])},
                      directory=sys.argv[1], project_name='peers', overwrite=True, seed=0)
tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs={EPOCHS},
             batch_size={BATCH}, callbacks=[stopper()], verbose=0)
assert len(tuner.oracle.trials) == {configs}, len(tuner.oracle.trials)
for trial in tuner.oracle.get_best_trials({configs}):  # evaluated like the others
    model = tuner.load_model(trial)
    model.evaluate(data.x_test, data.y_test, verbose=0)
"""


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


MODES = ("bare", "tuner", "default", "jobs2", "no-fuse", "no-fuse-jobs2")


def modes_for(name: str, grid: dict, tmp: Path, python: str, sweep: list[str], env: dict, tuner: bool):
    """The modes timed on one grid, in the order they take turns: (label, a function returning seconds)."""
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(sweep_config(grid)))

    def ours(*extra):
        def run() -> float:  # a fresh results directory each time: a finished sweep would only resume
            out = tmp / "out"
            shutil.rmtree(out, ignore_errors=True)
            return timed([*sweep, str(config), "--out", str(out), *extra], env)
        return run

    modes = [("bare", "bare model.fit loop", lambda: timed([python, "-c", bare_loop(grid)], env))]
    if tuner:
        modes.append(("tuner", "Keras Tuner GridSearch",
                      lambda: timed([python, "-c", keras_tuner(grid), str(tmp / "kt")], env)))
    return modes + [("default", "mnist-sweep (default: fused automatically, stacked)", ours()),
                    ("jobs2", "mnist-sweep --jobs 2 (fused, stacked)", ours("--jobs", "2")),
                    ("no-fuse", "mnist-sweep --no-fuse (sequential)", ours("--no-fuse")),
                    ("no-fuse-jobs2", "mnist-sweep --no-fuse --jobs 2", ours("--no-fuse", "--jobs", "2"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="peers,seeds", help=f"comma-separated, of: {', '.join(GRIDS)}")
    parser.add_argument("--backend", default=None, help="Keras backend for every mode (default tensorflow)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-tuner", action="store_true", help="leave out Keras Tuner (if not installed)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every mode, taken in turn; medians count")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of: {', '.join(MODES)} (the first given is the baseline)")
    args = parser.parse_args()
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not chosen or any(m not in MODES for m in chosen):
        parser.error(f"--modes takes some of: {', '.join(MODES)}")
    grids = [name.strip() for name in args.grids.split(",") if name.strip()]
    unknown = [name for name in grids if name not in GRIDS]
    if unknown:
        parser.error(f"unknown grid(s) {', '.join(unknown)}; choose from {', '.join(GRIDS)}")
    tuner = not args.skip_tuner and importlib.util.find_spec("keras_tuner") is not None
    if not args.skip_tuner and not tuner:
        print("# Keras Tuner is not installed (pip install -e '.[bench]'): its mode is left out", file=sys.stderr)
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if args.backend:
        env["KERAS_BACKEND"] = args.backend
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    python = sys.executable
    load = os.getloadavg()
    sweep = [python, "-m", "mnist_sweep.cli", "run", "--quiet", "--device", args.device]
    if args.backend:
        sweep += ["--backend", args.backend]
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in grids:
            every = modes_for(name, GRIDS[name], Path(tmp), python, sweep, env, tuner and name in TUNER_GRIDS)
            modes = [(label, run) for key in chosen for k, label, run in every if k == key]
            times: dict[str, list[float]] = {label: [] for label, _ in modes}
            for round_ in range(args.repeats):
                for label, run in modes:
                    times[label].append(run())
                    print(f"# {name}, round {round_ + 1}: {label}: {times[label][-1]:.1f} s", flush=True)
            tables.append((name, [(label, statistics.median(seconds)) for label, seconds in times.items()]))
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, backend {args.backend or 'tensorflow'}, "
          f"device {args.device}; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) at "
          f"the start, {os.getloadavg()[0]:.2f} at the end; up to {EPOCHS} epochs; medians of {args.repeats} "
          f"run(s) per mode")
    for name, rows in tables:
        grid = GRIDS[name]
        base = rows[0][1]
        over = dict(rows).get("Keras Tuner GridSearch")
        print(f"\n`{name}`: {trial_count(grid)} trials ({grid['label']})\n")
        print(f"| mode | median wall time (s) | vs {rows[0][0]} | speed-up over it | speed-up over Keras Tuner |\n"
              "|---|---:|---:|---:|---:|")
        for label, seconds in rows:
            over_tuner = f"{over / seconds:.2f}x" if over else "-"
            print(f"| {label} | {seconds:.1f} | {seconds / base:.2f}x | {base / seconds:.2f}x | {over_tuner} |")


if __name__ == "__main__":
    main()
