"""Search methods against Keras Tuner at the same budget: best validation accuracy, its test accuracy, wall time.

    pip install -e '.[bench,search]'     # keras-tuner and optuna
    python benchmarks/bench_search.py [--configs 40] [--repeats 3] [--epochs 10] [--skip-tuner]

One search space on the SEEDS.md #1 network (784 -> Dense(width, relu) -> 10, SGD, batch 200):
learning rate 0.005-0.5 (log), kernel L2 1e-6-1e-1 (log), dropout 0-0.5, width 16-128 (step 16),
on the bundled MNIST subset (3,200 train / 800 validation / 1,000 test). Every method gets
`--configs` configurations x 1 seed; each is repeated with sampler seeds 0..repeats-1 and the
table gives means. All methods run in this one process, one after another, so Keras start-up is
paid once and not counted; wall time is each search's own.

What "best" means: mnist-sweep records a trial's validation accuracy at its last epoch (no early
stopping); Keras Tuner's score is a trial's best epoch (its objective), and its best model is the
checkpoint of that epoch. Both test accuracies are of the configuration with the best validation
accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MNIST_SWEEP_OFFLINE", "1")

DATASET = {"name": "mnist", "source": "bundled", "n_train": 4000, "n_test": 1000, "validation_split": 0.2}
BATCH = 200
SPACE = {"learning_rate": (0.005, 0.5), "kernel_l2": (1e-6, 1e-1), "dropout": (0.0, 0.5), "width": (16, 128, 16)}


def config(name: str, method: str, configs: int, epochs: int, seed: int, prune: dict | None = None) -> dict:
    """An mnist-sweep config over SPACE (grid: a subgrid of about `configs` points)."""
    lr, l2, do, width = SPACE["learning_rate"], SPACE["kernel_l2"], SPACE["dropout"], SPACE["width"]
    if method == "grid":
        axes = _subgrid(configs)
        model = {"hidden": [[w] for w in axes["width"]], "kernel_l2": axes["kernel_l2"], "dropout": axes["dropout"]}
        optimizer = [{"name": "sgd", "learning_rate": v} for v in axes["learning_rate"]]
        search = {}
    else:
        model = {"hidden": [{"low": width[0], "high": width[1], "step": width[2]}],
                 "kernel_l2": {"low": l2[0], "high": l2[1], "log": True}, "dropout": {"low": do[0], "high": do[1]}}
        optimizer = {"name": "sgd", "learning_rate": {"low": lr[0], "high": lr[1], "log": True}}
        search = {"search": {"method": method, "trials": configs, "seed": seed}}
    return {"name": name, "dataset": DATASET, "model": {"activation": "relu", **model}, "optimizer": optimizer,
            "train": {"epochs": epochs, "batch_size": BATCH, "early_stopping": False, "save_model": "none"},
            "seeds": [seed], **search, **({"prune": prune} if prune else {})}


def _subgrid(configs: int) -> dict[str, list]:
    """Evenly spaced levels (log-spaced for log settings) whose product is as close to `configs` as it gets."""
    best = None
    for counts in itertools.product(range(1, 9), repeat=4):
        size = math.prod(counts)
        if size <= configs and (best is None or size > math.prod(best)):
            best = counts
    lr_n, l2_n, do_n, w_n = best

    def logs(low, high, n):
        return [float(f"{low * (high / low) ** (i / max(n - 1, 1)):.3g}") for i in range(n)] if n > 1 \
            else [float(f"{math.sqrt(low * high):.3g}")]

    def lin(low, high, n):
        return [round(low + (high - low) * i / max(n - 1, 1), 3) for i in range(n)] if n > 1 else [(low + high) / 2]

    w = SPACE["width"]
    widths = sorted({int(round(v / w[2]) * w[2]) for v in lin(w[0], w[1], w_n)})
    return {"learning_rate": logs(*SPACE["learning_rate"], lr_n), "kernel_l2": logs(*SPACE["kernel_l2"], l2_n),
            "dropout": lin(*SPACE["dropout"], do_n), "width": widths}


def run_ours(method: str, configs: int, epochs: int, seed: int, out: Path, prune=None) -> dict:
    from mnist_sweep.sweep.runner import run_sweep

    name = f"{method}-{seed}" + ("-pruned" if prune else "")
    start = time.perf_counter()
    frame = run_sweep(config(name, method, configs, epochs, seed, prune), out=out)
    wall = time.perf_counter() - start
    ok = frame[frame["status"] == "ok"]
    best = ok.loc[ok["val_accuracy"].idxmax()]
    return {"val": float(best["val_accuracy"]), "test": float(best["test_accuracy"]), "wall": wall,
            "configs": int(frame["config_id"].nunique()), "pruned": int((frame["status"] == "pruned").sum())}


def run_tuner(kind: str, configs: int, epochs: int, seed: int, out: Path, data) -> dict:
    import keras
    import keras_tuner as kt

    from mnist_sweep.training.models import build_model, compile_model

    lr, l2, do, width = SPACE["learning_rate"], SPACE["kernel_l2"], SPACE["dropout"], SPACE["width"]

    def hypermodel(hp):
        settings = {"type": "mlp", "normalize": False, "augment": False, "hidden": [hp.Int("width", *width)],
                    "activation": "relu", "leaky_alpha": 0.01, "batch_norm": False, "batch_norm_momentum": None,
                    "dropout": hp.Float("dropout", *do), "kernel_l1": 0.0,
                    "kernel_l2": hp.Float("kernel_l2", *l2, sampling="log"), "activity_l1": 0.0, "activity_l2": 0.0,
                    "initializer": "glorot_uniform", "conv": None, "kernel_size": None, "conv_batch_norm": None,
                    "optimizer": {"name": "sgd", "learning_rate": hp.Float("learning_rate", *lr, sampling="log")}}
        return compile_model(build_model(settings), settings)

    common = {"objective": "val_accuracy", "directory": str(out), "project_name": f"{kind}-{seed}",
              "overwrite": True, "seed": seed}
    if kind == "RandomSearch":
        tuner = kt.RandomSearch(hypermodel, max_trials=configs, **common)
    elif kind == "BayesianOptimization":
        tuner = kt.BayesianOptimization(hypermodel, max_trials=configs, **common)
    else:
        tuner = kt.Hyperband(hypermodel, max_epochs=epochs, factor=3, hyperband_iterations=1, **common)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                 batch_size=BATCH, verbose=0)
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.load_model(best_trial)
    _, test = model.evaluate(data.x_test, data.y_test, verbose=0)
    wall = time.perf_counter() - start
    return {"val": float(best_trial.score), "test": float(test), "wall": wall,
            "configs": len(tuner.oracle.trials), "pruned": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40, help="configurations per search (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="sampler seeds per method (default 3)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--skip-tuner", action="store_true", help="leave out Keras Tuner (if not installed)")
    args = parser.parse_args()
    from mnist_sweep.data.dataset import load_dataset

    data = load_dataset(SimpleNamespace(seed=0, path=None, **DATASET))
    hyperband = {"method": "hyperband", "min_resource": 1, "reduction_factor": 3}
    methods = [("mnist-sweep grid (subgrid)", lambda s, o: run_ours("grid", args.configs, args.epochs, s, o)),
               ("mnist-sweep random", lambda s, o: run_ours("random", args.configs, args.epochs, s, o)),
               ("mnist-sweep qmc", lambda s, o: run_ours("qmc", args.configs, args.epochs, s, o)),
               ("mnist-sweep tpe", lambda s, o: run_ours("tpe", args.configs, args.epochs, s, o)),
               ("mnist-sweep tpe + hyperband", lambda s, o: run_ours("tpe", args.configs, args.epochs, s, o,
                                                                      hyperband))]
    if not args.skip_tuner:
        methods += [(f"Keras Tuner {kind}", lambda s, o, kind=kind: run_tuner(kind, args.configs, args.epochs, s, o,
                                                                             data))
                    for kind in ("RandomSearch", "BayesianOptimization", "Hyperband")]
    results: dict[str, list[dict]] = {name: [] for name, _ in methods}
    with tempfile.TemporaryDirectory() as tmp:
        run_ours("random", 1, 1, 99, Path(tmp) / "warm-up")  # first-use costs (tracing, caches) go uncounted
        for seed in range(args.repeats):  # seed-major: a stopped run still compares every method
            for name, run in methods:
                out = Path(tmp) / f"{len(results[name])}-{name.replace(' ', '_')}"
                results[name].append(run(seed, out))
                shutil.rmtree(out, ignore_errors=True)
                r = results[name][-1]
                print(f"# seed {seed} {name}: val {r['val']:.4f} test {r['test']:.4f} {r['wall']:.1f} s "
                      f"({r['configs']} configurations, {r['pruned']} pruned)", flush=True)
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores; {args.configs} configurations x 1 seed, "
          f"{args.epochs} epochs, means over {args.repeats} sampler seeds\n")
    print("| method | best val accuracy | its test accuracy | wall time (s) | configurations | pruned |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        mean = {k: statistics.fmean(r[k] for r in rows) for k in ("val", "test", "wall", "configs", "pruned")}
        print(f"| {name} | {mean['val']:.4f} | {mean['test']:.4f} | {mean['wall']:.1f} | {mean['configs']:.1f} "
              f"| {mean['pruned']:.1f} |")


if __name__ == "__main__":
    main()
