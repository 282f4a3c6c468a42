"""mnist-sweep against a bare model.fit loop and Keras Tuner on the same grid and data.

    pip install -e '.[bench]'            # keras-tuner and tensorboard, for this script only
    python benchmarks/bench_peers.py [--backend jax] [--device gpu] [--skip-tuner] [--repeats 3]

The grid: the SEEDS.md #1 model (784 -> 30 -> 10), 4 activations x 2 L2 values x 2 seeds,
SGD 0.01, batch 200, EarlyStopping(val_loss, patience 3), 20 epochs, on the bundled MNIST
subset (3,200 train / 800 validation / 1,000 test). Every mode runs as a fresh process, so
its time includes Python and Keras start-up, as a user would see it. mnist-sweep's modes: its
default (compatible trials fused as stacked groups, `execution: auto`), with --jobs 2, and
--no-fuse (one model per trial) with and without --jobs 2. With --repeats N every mode runs N
times, the modes taking turns (round-robin), so a drift in the machine's speed reaches them all;
the table gives each mode's median and its ratios of medians. Prints a markdown table.
"""

from __future__ import annotations

import argparse
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

ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu"]
L2 = [0.0, 0.02]
SEEDS = [0, 1]
EPOCHS, BATCH, PATIENCE = 20, 200, 3
DATASET = {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2}

CONFIG = {
    "name": "peers", "dataset": DATASET,
    "model": {"hidden": [30], "activation": ACTIVATIONS, "kernel_l2": L2},
    "optimizer": {"name": "sgd", "learning_rate": 0.01},
    "train": {"epochs": EPOCHS, "batch_size": BATCH,
              "early_stopping": {"monitor": "val_loss", "patience": PATIENCE, "restore_best_weights": True}},
    "seeds": SEEDS,
}

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

BARE_LOOP = PRELUDE + f"""
for seed in {SEEDS!r}:
    for activation in {ACTIVATIONS!r}:
        for l2 in {L2!r}:
            keras.utils.set_random_seed(seed)
            model = build(activation, l2)
            model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs={EPOCHS},
                      batch_size={BATCH}, callbacks=[stopper()], verbose=0)
            model.evaluate(data.x_test, data.y_test, verbose=0)
            keras.backend.clear_session()
"""

KERAS_TUNER = PRELUDE + f"""
import sys, keras_tuner as kt
def hypermodel(hp):
    return build(hp.Choice('activation', {ACTIVATIONS!r}), hp.Choice('l2', {L2!r}))
tuner = kt.GridSearch(hypermodel, objective='val_loss', executions_per_trial={len(SEEDS)},
                      directory=sys.argv[1], project_name='peers', overwrite=True, seed=0)
tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs={EPOCHS},
             batch_size={BATCH}, callbacks=[stopper()], verbose=0)
assert len(tuner.oracle.trials) == {len(ACTIVATIONS) * len(L2)}, len(tuner.oracle.trials)
for trial in tuner.oracle.get_best_trials({len(ACTIVATIONS) * len(L2)}):  # evaluated like the others
    model = tuner.load_model(trial)
    model.evaluate(data.x_test, data.y_test, verbose=0)
"""


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="Keras backend for every mode (default tensorflow)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-tuner", action="store_true", help="leave out Keras Tuner (if not installed)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every mode, taken in turn; medians count")
    args = parser.parse_args()
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if args.backend:
        env["KERAS_BACKEND"] = args.backend
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "peers.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        sweep = [python, "-m", "mnist_sweep.cli", "run", str(config), "--quiet", "--device", args.device]
        if args.backend:
            sweep += ["--backend", args.backend]

        def ours(*extra):
            def run() -> float:  # a fresh results directory each time: a finished sweep would only resume
                out = Path(tmp) / "out"
                shutil.rmtree(out, ignore_errors=True)
                return timed(sweep + ["--out", str(out), *extra], env)
            return run

        modes = [("bare model.fit loop", lambda: timed([python, "-c", BARE_LOOP], env))]
        if not args.skip_tuner:
            modes.append(("Keras Tuner GridSearch",
                          lambda: timed([python, "-c", KERAS_TUNER, str(Path(tmp) / "kt")], env)))
        modes += [("mnist-sweep (default: fused automatically, stacked)", ours()),
                  ("mnist-sweep --jobs 2 (fused, stacked)", ours("--jobs", "2")),
                  ("mnist-sweep --no-fuse (sequential)", ours("--no-fuse")),
                  ("mnist-sweep --no-fuse --jobs 2", ours("--no-fuse", "--jobs", "2"))]
        times: dict[str, list[float]] = {name: [] for name, _ in modes}
        for round_ in range(args.repeats):
            for name, run in modes:
                times[name].append(run())
                print(f"# round {round_ + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
        rows = [(name, statistics.median(seconds)) for name, seconds in times.items()]
    base = rows[0][1]
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, backend {args.backend or 'tensorflow'}, "
          f"device {args.device}; 16 trials (4 activations x 2 L2 x 2 seeds), up to {EPOCHS} epochs; "
          f"medians of {args.repeats} run(s) per mode\n")
    tuner = dict(rows).get("Keras Tuner GridSearch")
    print("| mode | median wall time (s) | vs bare loop | speed-up over bare loop | speed-up over Keras Tuner |\n"
          "|---|---:|---:|---:|---:|")
    for name, seconds in rows:
        over_tuner = f"{tuner / seconds:.2f}x" if tuner else "-"
        print(f"| {name} | {seconds:.1f} | {seconds / base:.2f}x | {base / seconds:.2f}x | {over_tuner} |")


if __name__ == "__main__":
    main()
