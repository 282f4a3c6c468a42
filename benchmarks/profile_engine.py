"""Where a stacked engine's steady epoch goes: the profile behind bench_roofline.py's figures.

    python benchmarks/profile_engine.py [--groups 1,2] [--epochs 4]
    KERAS_BACKEND=jax python benchmarks/profile_engine.py

For each group of bench_roofline.py, the steady epoch (median of the epochs after the first) of the
stacked engine (`mnist_sweep.training.engine.StackEngine`) is measured in one process under
variants that each take one piece of work away:

  as planned      the group as mnist-sweep trains it (XLA on TensorFlow only if the engine chooses it)
  no dropout      the same group with dropout 0: what the per-branch dropout draws cost
  one seed        every branch on seed 0: one gathered batch shared instead of one per seed
  xla             (TensorFlow, groups without dropout) XLA forced on
  GEMM floor      numpy float32 matrix products of exactly the shapes one epoch multiplies (forward
                  and both backward products of every layer per branch, then the validation pass)

and the rate of each against numpy's float32 GEMM on 1024^3 measured in the same run. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_roofline import GROUPS, INPUTS, CLASSES, config_for, dense_weights, gemm_rate  # noqa: E402


class _Epochs:
    """The engine's callback: epoch wall times, no stopping."""

    stop_training = False

    def __init__(self):
        self.seconds: list[float] = []
        self.start = 0.0

    def on_epoch_begin(self, epoch):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        self.seconds.append(time.perf_counter() - self.start)


def steady_epoch(trials, data, epochs: int, force_xla: bool = False) -> float:
    from mnist_sweep.training.engine import trainer

    saved = trainer.XLA_MIN_STEPS
    if force_xla:
        trainer.XLA_MIN_STEPS = 0
    try:
        engine = trainer.StackEngine(trials, data)
    finally:
        trainer.XLA_MIN_STEPS = saved
    callback = _Epochs()
    engine.fit(epochs, callback)
    return statistics.median(callback.seconds[1:])


def gemm_floor(trials, n_train: int, n_val: int, batch: int) -> float:
    """Seconds numpy takes for one epoch's matrix products of these branches' shapes."""
    import numpy as np

    total = 0.0
    for trial in trials:
        sizes = [INPUTS, *trial.settings["hidden"], CLASSES]
        for n_in, n_out in zip(sizes, sizes[1:]):
            x, w = np.random.rand(batch, n_in).astype("float32"), np.random.rand(n_in, n_out).astype("float32")
            g = np.random.rand(batch, n_out).astype("float32")
            start = time.perf_counter()
            x @ w, g @ w.T, x.T @ g
            total += (time.perf_counter() - start) * n_train / batch
            v = np.random.rand(min(n_val, 1024), n_in).astype("float32")
            start = time.perf_counter()
            v @ w
            total += (time.perf_counter() - start) * n_val / len(v)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="1,2", help="bench_roofline.py's groups, by number")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("MNIST_SWEEP_OFFLINE", "1")
    from mnist_sweep.backend import backend_name
    from mnist_sweep.config import validate_config
    from mnist_sweep.data.dataset import load_dataset
    from mnist_sweep.plan.grid import expand

    names = list(GROUPS)
    chosen = [names[int(g) - 1] for g in args.groups.split(",")]
    rate = gemm_rate()
    backend = backend_name()
    rows = []
    for name in chosen:
        config = validate_config(config_for(name, mix_seeds=True))
        trials, data = expand(config), load_dataset(config.dataset)
        n_train, n_val, batch = len(data.x_train), len(data.x_val), trials[0].settings["batch_size"]
        flops = sum(dense_weights(t.settings) for t in trials) * (6 * n_train + 2 * n_val)
        variants = [("as planned", trials)]
        if any(t.settings["dropout"] for t in trials):
            variants.append(("no dropout", [type(t)(t.trial_id, t.config_id, t.seed, {**t.settings, "dropout": 0.0})
                                            for t in trials]))
        variants.append(("one seed", [type(t)(t.trial_id, t.config_id, 0, t.settings) for t in trials]))
        for label, group in variants:
            seconds = steady_epoch(group, data, args.epochs)
            rows.append((name, label, seconds, flops / seconds / 1e9))
        if backend == "tensorflow" and not any(t.settings["dropout"] for t in trials):
            seconds = steady_epoch(trials, data, args.epochs, force_xla=True)
            rows.append((name, "xla", seconds, flops / seconds / 1e9))
        floor = gemm_floor(trials, n_train, n_val, batch)
        rows.append((name, "GEMM floor (numpy, these shapes)", floor, flops / floor / 1e9))
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, backend {backend}; numpy GEMM 1024^3: "
          f"{rate:.0f} GFLOP/s; load average {os.getloadavg()[0]:.2f}; steady epoch: median of epochs 2..{args.epochs}")
    print("\n| group | variant | steady epoch (s) | GFLOP/s | share of GEMM 1024^3 |\n|---|---|---:|---:|---:|")
    for name, label, seconds, gflops in rows:
        print(f"| {name} | {label} | {seconds:.3f} | {gflops:.1f} | {gflops / rate:.0%} |")


if __name__ == "__main__":
    main()
