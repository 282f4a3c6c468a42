"""Peak memory of a 10-trial and a 100-trial sweep: a long sweep must not grow.

    python benchmarks/bench_memory.py [--jobs 1]

Runs each sweep through the real CLI in a fresh process and reads its peak RSS (ru_maxrss of
the child, plus its worker processes with --jobs > 1). Target: 100 trials within 20% of 10.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def config(trials: int) -> dict:
    return {
        "name": f"mem{trials}",
        "dataset": {"name": "mnist", "source": "bundled", "n_train": 1000, "n_test": 200, "validation_split": 0.2},
        "model": {"hidden": [30], "activation": ["relu", "tanh"], "kernel_l2": [0.0, 0.01, 0.02, 0.05, 0.1]},
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
        "train": {"epochs": 2, "batch_size": 100, "early_stopping": False},
        "seeds": trials // 10,
    }


def peak_rss_mb(trials: int, jobs: str, tmp: Path) -> float:
    path = tmp / f"mem{trials}.yaml"
    path.write_text(yaml.safe_dump(config(trials)))
    code = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [sys.executable, "-c", code, sys.executable, "-m", "mnist_sweep.cli", "run", str(path),
               "--out", str(tmp / "out"), "--quiet", "--jobs", jobs]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env={**os.environ, "MNIST_SWEEP_OFFLINE": "1"}).stdout
    return int(output.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = peak_rss_mb(10, args.jobs, Path(tmp))
        large = peak_rss_mb(100, args.jobs, Path(tmp))
    print(f"\n--jobs {args.jobs}; peak RSS of the largest process (ru_maxrss)\n")
    print("| sweep | peak RSS (MiB) |\n|---|---:|")
    print(f"| 10 trials | {small:.0f} |\n| 100 trials | {large:.0f} |")
    print(f"\n100 trials use {100 * (large / small - 1):+.1f}% vs 10 trials (target: within +20%)")


if __name__ == "__main__":
    main()
