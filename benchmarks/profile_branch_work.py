"""Which per-branch work costs a stacked group its time: the SEEDS.md #2 group with and without dropout.

    python benchmarks/profile_branch_work.py [--repeats 2]      # KERAS_BACKEND picks the backend

bench_roofline.py's 4-branch SEEDS.md #2 group (784 -> 512 -> 512 -> 10, relu/tanh/sigmoid/elu,
Adam, 5 epochs, batch 200, 3,200 / 800 bundled images), trained by `execute_group` as it is and
with dropout 0 instead of 0.2: each branch draws its dropout masks on its own slice, so the
difference is what per-branch dropout costs. Prints each case's steady epoch (median over the
epochs after the first, then over the repeats) as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MNIST_SWEEP_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_roofline import GROUPS, config_for  # noqa: E402

GROUP = list(GROUPS)[1]


def steady_epoch(dropout: float, repeats: int) -> float:
    from mnist_sweep.config import validate_config
    from mnist_sweep.data.dataset import load_dataset
    from mnist_sweep.training.fused import execute_group
    from mnist_sweep.plan.grid import expand

    raw = config_for(GROUP)
    config = validate_config({**raw, "model": {**raw["model"], "dropout": dropout}})
    trials, data = expand(config), load_dataset(config.dataset)
    medians = []
    for _ in range(repeats):
        result = execute_group(trials, data)[trials[0].trial_id]
        medians.append(statistics.median(row["epoch_seconds"] for row in result["history"][1:]))
    return statistics.median(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"\n{GROUP}, backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}\n")
    print("| case | steady epoch (s) |\n|---|---:|")
    for dropout in (0.2, 0.0):
        print(f"| dropout {dropout} | {steady_epoch(dropout, args.repeats):.3f} |", flush=True)


if __name__ == "__main__":
    main()
