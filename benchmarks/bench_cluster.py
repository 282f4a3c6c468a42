"""Wall time of one 32-trial grid through `--executor ray` on 1, 2 and 3 simulated cluster nodes.

    python benchmarks/bench_cluster.py [--nodes 1,2,3] [--epochs 1]

Each node is a separate Ray raylet started with Ray's multi-node test harness on this machine,
with one logical CPU (one trial at a time) and pinned to one core (cores dealt round-robin), so
more nodes never means more cores than the machine has: the table shows Ray's scheduling overhead
and how the sweep scales, not extra hardware. The head only schedules (no CPUs). The sweep runs
through the real CLI in a fresh process joining the cluster with --ray-address, so the driver's
start-up and each node's first Keras import are counted as a user would see them. Cluster start-up
is timed separately.
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

GRID = {  # 32 trials: 4 activations x 2 widths x 2 dropouts x 2 seeds, a small MLP
    "name": "bench_cluster",
    "dataset": {"name": "mnist", "source": "bundled", "n_train": 1000, "n_test": 500, "validation_split": 0.2},
    "model": {"hidden": [[16], [32]], "activation": ["relu", "tanh", "sigmoid", "elu"], "dropout": [0.0, 0.2]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "train": {"epochs": 1, "batch_size": 100, "early_stopping": False},
    "seeds": 2,
}
STORE = 80 * 1024 * 1024


def start_cluster(nodes: int, cores: list[int]):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE,
                                                           "include_dashboard": False})
    everything = os.sched_getaffinity(0)
    try:
        for index in range(nodes):  # a node's raylet, and the workers it starts, inherit this affinity
            os.sched_setaffinity(0, {cores[index % len(cores)]})
            cluster.add_node(num_cpus=1, object_store_memory=STORE)
    finally:
        os.sched_setaffinity(0, everything)
    cluster.wait_for_nodes()
    return cluster


def run_sweep(config: Path, out: Path, address: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--out", str(out), "--quiet",
                    "--executor", "ray", "--ray-address", address, "--cpus-per-trial", "1", "--no-fuse"],
                   check=True, env={**os.environ, "MNIST_SWEEP_OFFLINE": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to try, e.g. 1,2,3")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    grid = dict(GRID, train=dict(GRID["train"], epochs=args.epochs))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(grid))
        for nodes in [int(n) for n in args.nodes.split(",")]:
            begun = time.perf_counter()
            cluster = start_cluster(nodes, cores)
            up = time.perf_counter() - begun
            try:
                wall = run_sweep(config, Path(tmp) / "out", cluster.address)
            finally:
                cluster.shutdown()
            rows.append((nodes, min(nodes, len(cores)), up, wall))
    print(f"\n32 trials, {args.epochs} epoch(s) each, one trial per node at a time, {len(cores)} cores\n")
    print("| nodes | cores used | cluster start (s) | sweep wall time (s) | trials/min | vs 1 node |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = rows[0][3]
    for nodes, used, up, wall in rows:
        print(f"| {nodes} | {used} | {up:.1f} | {wall:.1f} | {32 * 60 / wall:.1f} | {base / wall:.2f}x |")


if __name__ == "__main__":
    main()
