"""How close a stacked fused fit comes to the machine's arithmetic limit, per Keras backend.

    python benchmarks/bench_roofline.py [--backends tensorflow,jax] [--repeats 3]

Two groups, each trained by `mnist_sweep.training.fused.execute_group` in a fresh process per backend:
the SEEDS.md #1 model (784 -> 30 -> 10), 16 branches (4 activations x 4 L2 values), SGD 0.01, and
the SEEDS.md #2 model (784 -> 512 -> 512 -> 10, dropout 0.2), 4 branches (4 activations), Adam;
20 and 5 epochs, batch 200, 3,200 training / 800 validation images of the bundled subset, no
early stopping. FLOPs count 6 x weights per training image (forward and backward) and 2 x weights
per validation image, per branch and epoch. The rate is set against numpy's float32 GEMM (1024^3,
best of five) measured in the same run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date

DATASET = {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2}
GROUPS = {
    "SEEDS #1, 16 branches (784-30-10)": {
        "model": {"hidden": [30], "activation": ["relu", "tanh", "sigmoid", "elu"],
                  "kernel_l2": [0.0, 0.001, 0.01, 0.02]},
        "optimizer": {"name": "sgd", "learning_rate": 0.01}, "epochs": 20},
    "SEEDS #2, 4 branches (784-512-512-10)": {
        "model": {"hidden": [512, 512], "dropout": 0.2, "activation": ["relu", "tanh", "sigmoid", "elu"]},
        "optimizer": {"name": "adam", "learning_rate": 0.001}, "epochs": 5},
}

# Runs in a child process with KERAS_BACKEND set: trains one group, prints its fit time as JSON.
CHILD = """
import json, sys
from mnist_sweep.config import validate_config
from mnist_sweep.data.dataset import load_dataset
from mnist_sweep.plan.grouping import group_form
from mnist_sweep.training.fused import execute_group
from mnist_sweep.plan.grid import expand
config = validate_config(json.loads(sys.argv[1]))
trials, data = expand(config), load_dataset(config.dataset)
assert group_form(trials) == "stacked", "the group should stack"
weights = None
times = []
for _ in range(int(sys.argv[2])):
    results = execute_group(trials, data)
    first = results[trials[0].trial_id]
    assert first["status"] == "ok", first.get("error")
    times.append(first["timing"]["group_seconds"])
    weights = first["params"]["trainable_params"]
print(json.dumps({"seconds": sorted(times)[len(times) // 2], "all": times, "weights": weights,
                  "branches": len(trials), "n_train": len(data.x_train), "n_val": len(data.x_val)}))
"""


def gemm_rate(n: int = 1024, repeats: int = 5) -> float:
    """numpy float32 GEMM, GFLOP/s: the best of `repeats`."""
    import numpy as np

    a, b = np.random.rand(n, n).astype("float32"), np.random.rand(n, n).astype("float32")
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def config_for(name: str) -> dict:
    group = GROUPS[name]
    return {"name": "roofline", "dataset": DATASET, "model": group["model"], "optimizer": group["optimizer"],
            "train": {"epochs": group["epochs"], "batch_size": 200, "early_stopping": False}, "seeds": [0]}


def flops(run: dict, epochs: int) -> float:
    """Multiply-adds x 2: 6 x weights per training image, 2 x weights per validation image."""
    return run["branches"] * epochs * run["weights"] * (6 * run["n_train"] + 2 * run["n_val"])


def run_child(code: str, backend: str, name: str, repeats: int) -> dict:
    """Run `code` on group `name` in a fresh process with this Keras backend; its last line, as JSON."""
    env = {**os.environ, "KERAS_BACKEND": backend, "MNIST_SWEEP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(config_for(name)), str(repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--repeats", type=int, default=3, help="fits per group and backend; the median counts")
    args = parser.parse_args()
    rows = []
    gemm_before = gemm_rate()
    for backend in args.backends.split(","):
        for name in GROUPS:
            run = run_child(CHILD, backend, name, args.repeats)
            rows.append((name, backend, run, flops(run, GROUPS[name]["epochs"])))
    gemm = max(gemm_before, gemm_rate())
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores; numpy float32 GEMM {gemm:.1f} GFLOP/s "
          f"(1024^3, best of 5, before and after); fit times: median of {args.repeats}\n")
    print("| group | backend | GFLOP | fit (s) | GFLOP/s | of GEMM |\n|---|---|---:|---:|---:|---:|")
    for name, backend, run, work in rows:
        rate = work / run["seconds"] / 1e9
        print(f"| {name} | {backend} | {work / 1e9:.1f} | {run['seconds']:.2f} | {rate:.1f} | {rate / gemm:.0%} |")


if __name__ == "__main__":
    main()
