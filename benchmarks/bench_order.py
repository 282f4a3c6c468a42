"""Does feeding our own batch order cost isolated training time? Our feeder against Keras' shuffle=True.

    python benchmarks/bench_order.py [--backends tensorflow,jax] [--batch-sizes 32,200] [--epochs 6]

An isolated Dense(64) trial (784 -> 64 relu -> 10 softmax, Adam) on the bundled data (3,200 training
images), fitted once with `fit_inputs` (training/order.py) and once with `shuffle=True`, alternating,
three times each, in one fresh process per backend. A run's steady step is the median epoch after the
first, divided by its steps (no validation data, so only the training feed differs); each cell is the
median of the three runs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, math, statistics, sys, time
import numpy as np
from mnist_sweep.backend import get_keras, fresh_session
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.training.order import fit_inputs

keras = get_keras()
batch_sizes, epochs, repeats = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = validate_config({"name": "order", "dataset": {"name": "mnist", "source": "bundled", "n_train": 4000,
                          "n_test": 1000, "validation_split": 0.2}, "model": {"hidden": [64]}})
data = load_dataset(config.dataset)
x, y = data.x_train, data.y_train

class Epochs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

@fresh_session()
def steady_step(feeder, batch_size):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    feed = fit_inputs(x, y, batch_size, 0) if feeder == "ours" else dict(x=x, y=y, batch_size=batch_size, shuffle=True)
    timer = Epochs()
    model.fit(**feed, epochs=epochs, callbacks=[timer], verbose=0)
    return statistics.median(timer.seconds[1:]) / math.ceil(len(x) / batch_size)

rows = {}
for batch_size in batch_sizes:
    runs = {"ours": [], "keras": []}
    for _ in range(repeats):
        for feeder in runs:
            runs[feeder].append(steady_step(feeder, batch_size))
    rows[batch_size] = {feeder: statistics.median(times) for feeder, times in runs.items()}
print(json.dumps(rows))
"""


def run_child(backend: str, batch_sizes: list[int], epochs: int, repeats: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", MNIST_SWEEP_OFFLINE="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(batch_sizes), str(epochs), str(repeats)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"{backend} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--batch-sizes", default="32,200")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"\n{date.today()}, {platform.machine()}, {os.cpu_count()} cores; steady step, median of "
          f"{args.repeats} alternating runs\n")
    print("| backend | batch | ours (ms/step) | Keras shuffle=True (ms/step) | ours / Keras |")
    print("|---|---:|---:|---:|---:|")
    for backend in args.backends.split(","):
        for batch_size, cell in run_child(backend, batch_sizes, args.epochs, args.repeats).items():
            ours, theirs = cell["ours"] * 1e3, cell["keras"] * 1e3
            print(f"| {backend} | {batch_size} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
