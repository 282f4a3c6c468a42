"""Where a stacked fused fit spends its time: the profile behind bench_roofline.py's figures.

    python benchmarks/profile_stacked.py [--backends tensorflow,jax] [--groups 1,2]

For each group of bench_roofline.py and each backend (a fresh process each), the fit is taken apart
by measuring its pieces in the same process, one after another:

  fit          the group's whole fit (`execute_group`, as bench_roofline.py times it)
  first epoch  the first epoch less a steady one: tracing and compiling the train and test steps
  steady       the median epoch after the first (training steps, validation, the per-epoch callback)
  bare model   the same stacked shapes as a bare Keras model (einsum layers, relu, softmax
               cross-entropy summed over branches, the same optimizer), fitted the same way: what
               Keras' fit loop and the backend's step cost without mnist-sweep's per-branch work
               (activations by slice, penalties, per-branch metrics, early-stopping snapshots);
               then again with `steps_per_execution` set to the epoch's steps (one call per epoch)
  GEMM floor   numpy float32 matrix products of exactly the shapes one epoch multiplies (forward
               and both backward products of every layer, then the validation forward pass)
  GEMM 1024    numpy's float32 rate on 1024^3, the roofline bench_roofline.py divides by

Prints a markdown table; every time is a median of `--repeats` measurements.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_roofline import GROUPS, flops, gemm_rate, run_child  # noqa: E402

CHILD = r"""
import json, math, statistics, sys, time
import numpy as np
from mnist_sweep.backend import get_keras
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.training.fused import execute_group
from mnist_sweep.plan.grid import expand
from mnist_sweep.training.models import build_optimizer

config = validate_config(json.loads(sys.argv[1]))
repeats = int(sys.argv[2])
trials, data = expand(config), load_dataset(config.dataset)
settings = trials[0].settings
K, B, epochs = len(trials), settings["batch_size"], settings["epochs"]
dims = [int(np.prod(data.x_train.shape[1:]))] + list(settings["hidden"]) + [10]
steps, val_steps = math.ceil(len(data.x_train) / B), math.ceil(len(data.x_val) / B)

fits, firsts, steadies = [], [], []
for _ in range(repeats):
    result = execute_group(trials, data)[trials[0].trial_id]
    seconds = [row["epoch_seconds"] for row in result["history"]]
    fits.append(result["timing"]["group_seconds"])
    steadies.append(statistics.median(seconds[1:]))
    firsts.append(seconds[0] - steadies[-1])
weights = result["params"]["trainable_params"]

keras = get_keras()
ops = keras.ops

class Bare(keras.Model):
    def __init__(self):
        super().__init__()
        self.kernels = [self.add_weight(shape=(K, i, o), initializer="glorot_uniform") for i, o in zip(dims, dims[1:])]
        self.biases = [self.add_weight(shape=(K, o), initializer="zeros") for o in dims[1:]]
    def call(self, x):
        h = ops.reshape(x, (-1, dims[0]))
        for j, (w, b) in enumerate(zip(self.kernels, self.biases)):
            h = ops.einsum("bi,kio->kbo" if j == 0 else "kbi,kio->kbo", h, w) + b[:, None, :]
            h = ops.relu(h) if j < len(self.kernels) - 1 else ops.softmax(h)
        return h
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        targets = ops.broadcast_to(ops.cast(y, "int32")[None, :], ops.shape(y_pred)[:2])
        return ops.sum(ops.mean(keras.losses.sparse_categorical_crossentropy(targets, y_pred), axis=1))

class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

def bare_epoch(steps_per_execution):
    keras.utils.set_random_seed(0)
    model = Bare()
    model.compile(optimizer=build_optimizer(settings["optimizer"]), steps_per_execution=steps_per_execution)
    timer = EpochTimes()
    timer.seconds = []
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
              batch_size=B, callbacks=[timer], verbose=0, shuffle=True)
    keras.backend.clear_session()
    return statistics.median(timer.seconds[1:])

bare = [bare_epoch(1) for _ in range(repeats)]
bare_spe = [bare_epoch(steps) for _ in range(repeats)]

rng = np.random.default_rng(0)
def array(*shape):
    return rng.random(shape, dtype=np.float32)
def epoch_gemms():
    work = []  # (a, b) pairs, multiplied with np.matmul
    for j, (i, o) in enumerate(zip(dims, dims[1:])):
        x = array(B, i) if j == 0 else array(K, B, i)
        w = array(i, K * o) if j == 0 else array(K, i, o)
        grad = array(K, B, o)
        xt = np.ascontiguousarray(np.swapaxes(x, -1, -2))
        forward = [(x, w)]
        backward = [(xt, grad)] + ([] if j == 0 else [(grad, np.ascontiguousarray(np.swapaxes(w, -1, -2)))])
        work.append((forward, backward))
    def run():
        for forward, backward in work:
            for _ in range(steps):
                for a, b in forward + backward:
                    np.matmul(a, b)
            for _ in range(val_steps):
                for a, b in forward:
                    np.matmul(a, b)
    return run
run = epoch_gemms()
run()
floor = []
for _ in range(max(repeats, 3)):
    start = time.perf_counter()
    run()
    floor.append(time.perf_counter() - start)
print(json.dumps({"fit": statistics.median(fits), "first": statistics.median(firsts),
                  "steady": statistics.median(steadies), "bare": statistics.median(bare),
                  "bare_spe": statistics.median(bare_spe), "steps": steps, "floor": min(floor),
                  "epochs": epochs, "weights": weights, "branches": K, "n_train": len(data.x_train),
                  "n_val": len(data.x_val)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--groups", default="1,2", help="bench_roofline.py's groups by number: 1 (SEEDS #1), 2 (#2)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each piece; the median counts")
    args = parser.parse_args()
    names = [list(GROUPS)[int(g) - 1] for g in args.groups.split(",")]
    rows = []
    gemm_before = gemm_rate()
    for backend in args.backends.split(","):
        for name in names:
            rows.append((name, backend, run_child(CHILD, backend, name, args.repeats)))
            print(f"# {name}, {backend}: {rows[-1][2]}", flush=True)
    gemm = max(gemm_before, gemm_rate())
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores; numpy float32 GEMM 1024^3: {gemm:.1f} "
          f"GFLOP/s; medians of {args.repeats}\n")
    print("| group | backend | fit (s) | first epoch extra (s) | steady epoch (s) | bare model epoch (s) "
          "| bare, steps_per_execution = steps (s) | GEMM floor epoch (s) | steady / floor | steady GFLOP/s | steady of GEMM 1024 |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, backend, run in rows:
        epoch_flops = flops(run, 1)
        steady_rate = epoch_flops / run["steady"] / 1e9
        print(f"| {name} | {backend} | {run['fit']:.2f} | {run['first']:.2f} | {run['steady']:.3f} | "
              f"{run['bare']:.3f} | {run['bare_spe']:.3f} | {run['floor']:.3f} | {run['steady'] / run['floor']:.1f}x | {steady_rate:.1f} | "
              f"{steady_rate / gemm:.0%} |")


if __name__ == "__main__":
    main()
