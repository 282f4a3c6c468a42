"""How long `mnist-sweep plot` takes on a 200-trial sweep (target: under 20 s on 2 cores).

Synthesizes a results directory in the real layout (40 configurations x 5 seeds, about 20 epochs each,
some stopped early), times the whole command as a user runs it, then each figure on its own.

    .venv/bin/python benchmarks/bench_plot.py [--trials-per-seed 40] [--seeds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_results import write_sweep  # noqa: E402

FACTORS = {
    "activation": ["relu", "tanh", "sigmoid", "elu"],
    "optimizer": ["sgd lr=0.01", "sgd lr=0.3 momentum=0.9", "adagrad lr=0.1", "rmsprop lr=0.01", "adam lr=0.01"],
    "hidden": ["128", "512-512"],
}
TARGET_SECONDS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--keep", help="write the synthetic sweep here and keep it")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_plot_"))

    start = time.perf_counter()
    sweep = write_sweep(root, "bench", FACTORS, seeds=args.seeds, epochs=args.epochs, ragged=True)
    n_trials = len(list((sweep / "runs").iterdir()))
    write_seconds = time.perf_counter() - start

    command = [str(ROOT / ".venv" / "bin" / "mnist-sweep"), "plot", str(sweep)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    command_seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"plot failed ({done.returncode}):\n{done.stderr}")
    # CPU time barely depends on what else the machine runs; wall time does (see the load figure).
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    rows = [("synthesize results", write_seconds), ("mnist-sweep plot (whole command), wall", command_seconds),
            ("mnist-sweep plot (whole command), CPU", cpu_seconds)]
    rows += per_figure(sweep)
    width = max(len(name) for name, _ in rows)
    print(f"{n_trials} trials x ~{args.epochs} epochs, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}")
    print(f"{'step':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    verdict = "OK" if command_seconds < TARGET_SECONDS else "TOO SLOW"
    print(f"target < {TARGET_SECONDS:.0f} s for the whole command: {verdict}")
    if not args.keep:
        import shutil

        shutil.rmtree(root)


def per_figure(sweep: Path) -> list[tuple[str, float]]:
    """Each planned figure's build-and-save time, in this process (imports not counted)."""
    import matplotlib

    matplotlib.use("Agg")
    from mnist_sweep.report.plot import _plan, _render
    from mnist_sweep.results.store import load_histories, load_results

    start = time.perf_counter()
    summary, histories = load_results(sweep), load_histories(sweep)
    rows = [("  load_results + load_histories", time.perf_counter() - start)]
    plan, _ = _plan(summary, histories, "test_accuracy", None)
    out = Path(tempfile.mkdtemp(prefix="bench_fig_"))
    for stem, _, _, build in plan:
        start = time.perf_counter()
        _render(build(), out / f"{stem}.png", "png", 100)
        rows.append((f"  {stem}", time.perf_counter() - start))
    return rows


if __name__ == "__main__":
    main()
