"""A stacked group's fit against its trials' isolated fits, in one process: the engine without start-up.

    python benchmarks/bench_group_fit.py [--configs seeds16,act_dropout_seeds] [--runs 3]

For each config under benchmarks/configs/, its trials are planned as mnist-sweep plans them; each
stacked task is trained by `execute_group` (one compiled model) and each of its trials alone by
`execute_trial` (Keras' own `model.fit`), in turns, `--runs` times, in this process with the data
loaded once: no process start, no import, no data loading in either figure. Prints a markdown table
of medians: the whole group, the isolated trials summed, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"


def main() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="seeds16,act_dropout_seeds",
                        help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MNIST_SWEEP_OFFLINE", "1")
    from mnist_sweep.backend import backend_name
    from mnist_sweep.config import load_config
    from mnist_sweep.data.dataset import load_dataset
    from mnist_sweep.plan.grid import expand
    from mnist_sweep.plan.grouping import make_tasks
    from mnist_sweep.records import Form, Sizing
    from mnist_sweep.training.fused import execute_group
    from mnist_sweep.training.train import execute_trial

    rows = []
    load = os.getloadavg()[0]
    for name in args.configs.split(","):
        config = load_config(CONFIGS / f"{name}.yaml")
        trials, data = expand(config), load_dataset(config.dataset)
        tasks = [t for t in make_tasks(trials, fuse=True, sizing=Sizing(n_train=len(data.x_train)))
                 if t.form is Form.STACKED]
        stacked = [trial for task in tasks for trial in task.trials]
        group_times, alone_times = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            for task in tasks:
                execute_group(list(task.trials), data, form=task.form)
            group_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for trial in stacked:
                execute_trial(trial, data)
            alone_times.append(time.perf_counter() - start)
            print(f"# {name}: group {group_times[-1]:.1f} s, alone {alone_times[-1]:.1f} s", flush=True)
        group, alone = statistics.median(group_times), statistics.median(alone_times)
        rows.append((name, len(stacked), len(tasks), group, alone))
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, backend {backend_name()}; load average "
          f"{load:.2f} at the start; medians of {args.runs} run(s), in turns, one process\n")
    print("| config | stacked trials | compiled models | stacked fit (s) | isolated fits (s) | isolated / stacked |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, count, models, group, alone in rows:
        print(f"| {name} | {count} | {models} | {group:.1f} | {alone:.1f} | {alone / group:.1f}x |")


if __name__ == "__main__":
    main()
