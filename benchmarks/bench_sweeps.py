"""Issue 24's sweeps as whole `mnist-sweep run` commands: the default (fused, stacked) against --no-fuse.

    python benchmarks/bench_sweeps.py [--configs act_dropout_seeds,seeds16] [--runs 3] [--backend jax]

Each config of benchmarks/configs/ (all of them by default; `fashion_full` needs `make bench-data`)
runs as a fresh `python -m mnist_sweep.cli run CONFIG --out FRESH_DIR` process in two modes, the
default and `--no-fuse`, taking turns (A B A B ...) so a drift in the machine's speed reaches both;
each timed with time.perf_counter around the whole command, start-up included, as a user sees it.
The table gives each mode's median, the ratio isolated/default, how the default run grouped its
trials (the plan line it prints), and the test accuracies of both modes' last runs as a sanity check:
a stacked branch should end exactly as its isolated twin. The load average is printed at the start
and the end: on a shared machine read the times as ratios within one run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = {"default": [], "--no-fuse": ["--no-fuse"]}
# The runner's line saying how it grouped the trials: "16 trials in 1 compiled model: ...", "isolated: ..."
PLAN = re.compile(r"^(isolated:|fused:|\d+ trials? (in \d+ compiled models?|as branch sub-models|isolated))")
# Test accuracies closer than this are the same count of right answers, rounded differently in float32
# (one image of 10,000 is 1e-4); JAX's stacked evaluation gives such differences.
SAME_ACCURACY = 1e-6


@dataclass
class Runs:
    """One config's runs: wall times per mode, the default's plan line, each mode's last test accuracies."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {mode: [] for mode in MODES})
    plans: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # mode -> trial_id -> test accuracy
    error: str | None = None


def run_once(command: list[str], env: dict, out: Path, sweep: str) -> tuple[float, str, dict[str, float]]:
    """Time one whole command into a fresh `out`; its wall time, plan line and test accuracy per trial."""
    from mnist_sweep.results import load_results

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    plan = next((line.strip() for line in done.stderr.splitlines() + done.stdout.splitlines()
                 if PLAN.match(line.strip())), "?")
    frame = load_results(out / sweep)
    accuracy = dict(zip(frame["trial_id"], frame["test_accuracy"].astype(float)))
    shutil.rmtree(out, ignore_errors=True)
    return seconds, plan, accuracy


def bench(config: Path, runs: int, backend: str | None, tmp: Path) -> Runs:
    """Run `config` `runs` times in each mode, the modes taking turns."""
    sweep = yaml.safe_load(config.read_text())["name"]
    command = [sys.executable, "-m", "mnist_sweep.cli", "run", str(config), "--force"]
    if backend:
        command += ["--backend", backend]
    env = {**os.environ, "MNIST_SWEEP_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend:
        env["KERAS_BACKEND"] = backend
    result = Runs()
    for round_ in range(runs):
        for mode, extra in MODES.items():
            try:
                seconds, plan, accuracy = run_once(command + extra, env, tmp / f"{sweep}-{mode}", sweep)
            except RuntimeError as exc:
                result.error = f"{mode}: {exc}"
                print(f"# {config.stem} {mode}: failed, {exc}", file=sys.stderr, flush=True)
                return result
            result.seconds[mode].append(seconds)
            result.plans[mode], result.accuracy[mode] = plan, accuracy
            print(f"# round {round_ + 1}: {config.stem} {mode}: {seconds:.1f} s ({plan})", flush=True)
    return result


def accuracy_columns(result: Runs) -> tuple[str, str, str]:
    """Mean test accuracy of each mode's last run, and how many trials differ between them (max |diff|)."""
    fused, alone = result.accuracy["default"], result.accuracy["--no-fuse"]
    diffs = [abs(fused[t] - alone[t]) for t in fused if t in alone]
    differing = sum(d > SAME_ACCURACY for d in diffs)
    missing = len(set(fused) ^ set(alone))
    text = f"{differing} of {len(diffs)}" + (f" (max {max(diffs):.4f})" if differing else "")
    if not differing and any(diffs):
        text += f" (float32 rounding only: max {max(diffs):.1e})"
    if missing:
        text += f"; {missing} in one mode only"
    return f"{statistics.mean(fused.values()):.4f}", f"{statistics.mean(alone.values()):.4f}", text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    parser.add_argument("--configs", default=",".join(names), help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode, taken in turn; medians count")
    parser.add_argument("--backend", default=None, help="Keras backend (default tensorflow)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    load_start = os.getloadavg()
    results: dict[str, Runs] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            results[name] = bench(CONFIG_DIR / f"{name}.yaml", args.runs, args.backend, Path(tmp))
    load_end = os.getloadavg()
    print(f"\n{date.today()}, {platform.node()}, {os.cpu_count()} cores, backend {args.backend or 'tensorflow'}; "
          f"load average {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} (1/5/15 min) at the "
          f"start, {load_end[0]:.2f} at the end; medians of {args.runs} whole command(s) per mode, round-robin\n")
    print("| config | trials | default run's plan | default (s) | --no-fuse (s) | isolated / default "
          "| test acc default | test acc --no-fuse | trials differing |\n"
          "|---|---:|---|---:|---:|---:|---:|---:|---|")
    for name, result in results.items():
        if result.error:
            print(f"| {name} | - | failed: {result.error.splitlines()[-1]} | - | - | - | - | - | - |")
            continue
        fused, alone = (statistics.median(result.seconds[mode]) for mode in MODES)
        acc_fused, acc_alone, differing = accuracy_columns(result)
        print(f"| {name} | {len(result.accuracy['default'])} | {result.plans['default']} | {fused:.1f} | "
              f"{alone:.1f} | {alone / fused:.2f}x | {acc_fused} | {acc_alone} | {differing} |")


if __name__ == "__main__":
    main()
