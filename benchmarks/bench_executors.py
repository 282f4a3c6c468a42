"""Wall time of one 16-trial grid run sequentially, with --jobs 2, and through Ray.

    python benchmarks/bench_executors.py [--epochs 5] [--backend jax] [--device gpu] [--jobs 1,4,8]

Each mode runs the same grid into a fresh results directory through the real CLI (a new
process, so start-up is counted as a user would see it) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GRID = {  # 16 trials: the SEEDS.md #1 model, 4 activations x 2 L2 values x 2 seeds
    "name": "bench",
    "dataset": {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2},
    "model": {"hidden": [30], "activation": ["relu", "tanh", "sigmoid", "elu"], "kernel_l2": [0.0, 0.02]},
    "optimizer": {"name": "sgd", "learning_rate": 0.01},
    "train": {"epochs": 5, "batch_size": 200, "early_stopping": False},
    "seeds": 2,
}


def run_mode(config: Path, out: Path, args: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), "--quiet",
                    *args], check=True, env={**os.environ, "MNIST_SWEEP_OFFLINE": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", default="1,2", help="worker counts to try besides sequential, e.g. 1,4,8")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    grid = dict(GRID, train=dict(GRID["train"], epochs=args.epochs))
    common = ["--device", args.device] + (["--backend", args.backend] if args.backend else [])
    modes = [("sequential (in-process)", ["--jobs", "1"])]
    modes += [(f"--jobs {n}", ["--jobs", n, "--executor", "process"]) for n in args.jobs.split(",") if n != "1"]
    if not args.no_ray:
        modes.append(("--executor ray (local)", ["--executor", "ray"]))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(grid))
        rows = [(name, run_mode(config, Path(tmp) / "out", common + extra)) for name, extra in modes]
    base = rows[0][1]
    print(f"\n16 trials, {args.epochs} epochs each, backend {args.backend or 'tensorflow'}, device {args.device}, "
          f"{os.cpu_count()} cores\n")
    print("| mode | wall time (s) | speed-up |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
