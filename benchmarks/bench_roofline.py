"""How close a stacked fused fit comes to the machine's arithmetic limit, per Keras backend.

    python benchmarks/bench_roofline.py [--backends tensorflow,jax] [--repeats 3] [--mix-seeds]

Two groups, each planned by `mnist_sweep.plan.grouping.make_tasks` and trained by the public
`mnist_sweep.training.fused.execute_group`: the SEEDS.md #1 model (784 -> 30 -> 10), 16 branches
(4 activations x 4 L2 values), SGD 0.01, and the SEEDS.md #2 model (784 -> 512 -> 512 -> 10,
dropout 0.2), 4 branches (4 activations), Adam; 20 and 5 epochs, batch 200, 3,200 training / 800
validation images of the bundled subset, no early stopping. With --mix-seeds the same shapes and
branch counts come from seeds instead (#1: 4 activations x 4 seeds; #2: 2 activations x 2 seeds),
for an engine that stacks trials of different seeds; one that does not is told apart by the plan.

TensorFlow trains in this process, every other backend in a fresh child process. From each fit:
the whole fit (the group's `timing.group_seconds`, first epoch included), the first epoch and a
steady epoch (median of the epochs after the first), from the trials' `history` `epoch_seconds`.
FLOPs come from each trial's settings (its layer shapes, so branches may differ): 6 x weights per
training image (forward and backward) and 2 x weights per validation image, per branch and epoch.
The rate is set against numpy's float32 GEMM (1024^3, best of five) measured in the same run,
before and after. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date

INPUTS, CLASSES = 28 * 28, 10
DATASET = {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2}
GROUPS = {
    "SEEDS #1, 16 branches (784-30-10)": {
        "model": {"hidden": [30], "activation": ["relu", "tanh", "sigmoid", "elu"],
                  "kernel_l2": [0.0, 0.001, 0.01, 0.02]},
        "optimizer": {"name": "sgd", "learning_rate": 0.01}, "epochs": 20, "seeds": [0],
        "mixed": {"model": {"hidden": [30], "activation": ["relu", "tanh", "sigmoid", "elu"]},
                  "seeds": [0, 1, 2, 3]}},
    "SEEDS #2, 4 branches (784-512-512-10)": {
        "model": {"hidden": [512, 512], "dropout": 0.2, "activation": ["relu", "tanh", "sigmoid", "elu"]},
        "optimizer": {"name": "adam", "learning_rate": 0.001}, "epochs": 5, "seeds": [0],
        "mixed": {"model": {"hidden": [512, 512], "dropout": 0.2, "activation": ["relu", "tanh"]},
                  "seeds": [0, 1]}},
}


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


def config_for(name: str, mix_seeds: bool) -> dict:
    group = GROUPS[name]
    varied = group["mixed"] if mix_seeds else group
    return {"name": "roofline", "dataset": DATASET, "model": varied["model"], "optimizer": group["optimizer"],
            "train": {"epochs": group["epochs"], "batch_size": 200, "early_stopping": False},
            "seeds": varied["seeds"]}


def dense_weights(settings: dict) -> int:
    """Weights and biases of a trial's dense layers, from its settings: 784 -> hidden... -> 10."""
    if settings["type"] != "mlp":
        raise ValueError(f"roofline counts dense networks only, not {settings['type']!r}")
    sizes = [INPUTS, *settings["hidden"], CLASSES]
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))


def measure(config: dict, repeats: int) -> dict:
    """Plan `config` as one stacked group and fit it `repeats` times in this process; medians of the fits.

    The backend must be chosen (`mnist_sweep.backend.configure`) before this is called.
    """
    from mnist_sweep.config import validate_config
    from mnist_sweep.data.dataset import load_dataset
    from mnist_sweep.plan.grid import expand
    from mnist_sweep.plan.grouping import describe_groups, make_tasks
    from mnist_sweep.records import Form, Sizing
    from mnist_sweep.training.fused import execute_group

    validated = validate_config(config)
    trials, data = expand(validated), load_dataset(validated.dataset)
    tasks = make_tasks(trials, fuse=True, sizing=Sizing(max_branches=len(trials), n_train=len(data.x_train)))
    if len(tasks) != 1 or tasks[0].form is not Form.STACKED:
        raise SystemExit(f"the group does not form one stack on this engine: {describe_groups(tasks)}")
    (task,) = tasks
    n_train, n_val = len(data.x_train), len(data.x_val)
    epoch_flops = sum(dense_weights(t.settings) for t in task.trials) * (6 * n_train + 2 * n_val)
    fits, firsts, steadies, epochs_run = [], [], [], []
    for _ in range(repeats):
        results = execute_group(list(task.trials), data, form=task.form)
        for trial in task.trials:
            result = results[trial.trial_id]
            if result["status"] != "ok":
                raise SystemExit(f"{trial.trial_id}: {result['status']}: {result.get('error')}")
        histories = [[row["epoch_seconds"] for row in results[t.trial_id]["history"]] for t in task.trials]
        fits.append(results[task.trials[0].trial_id]["timing"]["group_seconds"])
        firsts.append(statistics.median(h[0] for h in histories))
        steadies.append(statistics.median(statistics.median(h[1:] or h) for h in histories))
        epochs_run.append(statistics.median(len(h) for h in histories))
    return {"fit": statistics.median(fits), "first": statistics.median(firsts),
            "steady": statistics.median(steadies), "epochs": statistics.median(epochs_run), "fits": fits,
            "epoch_flops": epoch_flops, "branches": len(task.trials),
            "seeds": len({t.seed for t in task.trials}), "n_train": n_train, "n_val": n_val}


def measure_in_child(backend: str, name: str, repeats: int, mix_seeds: bool) -> dict:
    """`measure` in a fresh process with this Keras backend; its last line of output, as JSON."""
    env = {**os.environ, "KERAS_BACKEND": backend, "MNIST_SWEEP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--child", backend, "--group", name, "--repeats", str(repeats)]
    done = subprocess.run(command + ["--mix-seeds"] * mix_seeds, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend} child failed on {name}:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--repeats", type=int, default=3, help="fits per group and backend; the median counts")
    parser.add_argument("--mix-seeds", action="store_true", help="the same shapes, branches drawn from seeds")
    parser.add_argument("--child", metavar="BACKEND", help=argparse.SUPPRESS)  # one group, as JSON
    parser.add_argument("--group", choices=list(GROUPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from mnist_sweep.backend import configure

        configure(args.child)
        print(json.dumps(measure(config_for(args.group, args.mix_seeds), args.repeats)))
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows = []
    gemm_before = gemm_rate()
    if "tensorflow" in backends:
        from mnist_sweep.backend import configure

        os.environ.setdefault("MNIST_SWEEP_OFFLINE", "1")
        configure("tensorflow")
    for backend in backends:
        for name in GROUPS:
            run = (measure(config_for(name, args.mix_seeds), args.repeats) if backend == "tensorflow"
                   else measure_in_child(backend, name, args.repeats, args.mix_seeds))
            rows.append((name, backend, run))
            print(f"# {name}, {backend}: fits {', '.join(f'{s:.2f}' for s in run['fits'])} s", flush=True)
    gemm = max(gemm_before, gemm_rate())
    load = os.getloadavg()
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, load average {load[0]:.2f} at the end; "
          f"numpy float32 GEMM {gemm:.1f} GFLOP/s (1024^3, best of 5, before and after); medians of "
          f"{args.repeats} fit(s); steady epoch = median of the epochs after the first\n")
    print("| group | backend | branches (seeds) | GFLOP/epoch | fit (s) | first epoch (s) | steady epoch (s) "
          "| fit GFLOP/s | fit of GEMM | steady GFLOP/s | steady of GEMM |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, backend, run in rows:
        whole = run["epoch_flops"] * run["epochs"] / run["fit"] / 1e9
        steady = run["epoch_flops"] / run["steady"] / 1e9
        print(f"| {name} | {backend} | {run['branches']} ({run['seeds']}) | {run['epoch_flops'] / 1e9:.2f} | "
              f"{run['fit']:.2f} | {run['first']:.2f} | {run['steady']:.3f} | {whole:.1f} | {whole / gemm:.0%} | "
              f"{steady:.1f} | {steady / gemm:.0%} |")


if __name__ == "__main__":
    main()
