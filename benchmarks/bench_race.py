"""A raced sweep against the fixed-seed sweep it replaces: trials, wall time and verdicts.

    python benchmarks/bench_race.py [--config configs/regularization.yaml] [--min 2] [--max 10] [--fuse]
    python benchmarks/bench_race.py --summarize FIXED_SWEEP_DIR RACED_SWEEP_DIR [MORE_RACED_DIRS ...]
    python benchmarks/bench_race.py --simulate [--races 400]

The first form runs `--set seeds=MAX` and `--set 'seeds={min: MIN, max: MAX, race: best}'` through
the real CLI, one after the other, into fresh results directories. The second reads two finished
sweeps (wall time: first trial started to last trial finished). Either prints a markdown table and
each sweep's verdict from `compare` on the race metric (validation accuracy; with the sweep's
smallest_difference, if it has one). The third trains nothing: it races simulated scores under each
boundary (Pocock, O'Brien-Fleming, Bonferroni) at the same 5% and prints the share of the maximum
trials each spends and how often each errs, which is how the race's default boundary was chosen.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _elapsed(sweep: Path) -> float:
    records = [json.loads(p.read_text()) for p in sweep.glob("runs/*/trial.json")]
    starts = [datetime.fromisoformat(r["started_at"]) for r in records if r.get("started_at")]
    ends = [datetime.fromisoformat(r["finished_at"]) for r in records if r.get("finished_at")]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")


def _verdict(sweep: Path) -> tuple[str, list[str]]:
    from mnist_sweep.analysis.compare import compare

    from mnist_sweep.analysis.stats import OPEN

    result = compare(sweep, "val_accuracy")
    table = result.versus_best
    tied = [f"{c}{' (equivalent)' if v == 'equivalent' else ''}" for c, v in zip(table["config"], table["verdict"])
            if str(v).startswith(OPEN) or v == "equivalent"]
    return str(table["config"].iloc[0]), tied


def _row(name: str, sweep: Path, seconds: float) -> str:
    from mnist_sweep.results.store import load_results

    frame = load_results(sweep)
    best, tied = _verdict(sweep)
    race = sweep / "race.json"
    outcome = json.loads(race.read_text())["outcome"] if race.exists() else "-"
    return (f"| {name} | {int((frame['status'] == 'ok').sum())} | {seconds:.0f} | {best} | {len(tied)}: "
            f"{'; '.join(tied) or '-'} | {outcome} |")


def simulate(races: int, minimum: int, maximum: int) -> None:
    """Race simulated scores (no training) under each boundary: the trials spent and the error rates."""
    import numpy as np
    import pandas as pd

    from mnist_sweep.analysis.race import BOUNDARIES, RacePlan, run_race

    def scores(means, rng, sd=0.01):
        return pd.DataFrame([{"config_id": f"c{i}", "seed": s, "status": "ok", "val_accuracy": m + rng.normal(0, sd)}
                             for i, m in enumerate(means) for s in range(maximum)])

    print(f"{races} races per cell, seeds {minimum} to {maximum}, seed SD 1 point, margin 3 points")
    print("| boundary | configs | equal: share of max trials | equal, no margin: share | equal: wrongly worse "
          "| one better by 1.5 margins: found | called equivalent |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for boundary in BOUNDARIES:
        for k in (2, 4, 8):
            rng = np.random.default_rng(k)
            configs = [f"c{i}" for i in range(k)]
            plan = RacePlan("best", minimum, maximum, tuple(range(maximum)), margin=0.03, boundary=boundary)
            bare = RacePlan("best", minimum, maximum, tuple(range(maximum)), boundary=boundary)
            spent = bare_spent = worse = found = equivalent = 0
            for _ in range(races):
                frame = scores([0.9] * k, rng)
                for p, counter in ((plan, "margin"), (bare, "bare")):
                    race = run_race(frame, p, configs)
                    used = sum(race.left_at.get(c, race.looks[-1].seeds) for c in configs) / (k * maximum)
                    if counter == "margin":
                        spent += used
                        worse += any(left["verdict"] == "worse" for look in race.looks for left in look.left)
                    else:
                        bare_spent += used
                race = run_race(scores([0.945] + [0.9] * (k - 1), rng), plan, configs)
                found += race.outcome == "winner" and race.winner == "c0"
                equivalent += any(left["verdict"] == "equivalent" and "c0" in (left["config"], look.best)
                                  for look in race.looks for left in look.left)
            print(f"| {boundary} | {k} | {spent / races:.2f} | {bare_spent / races:.2f} | {worse / races:.3f} "
                  f"| {found / races:.2f} | {equivalent / races:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/regularization.yaml")
    parser.add_argument("--min", type=int, default=2)
    parser.add_argument("--max", type=int, default=10)
    parser.add_argument("--fuse", action="store_true")
    parser.add_argument("--summarize", nargs="+", metavar="SWEEP", type=Path)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--races", type=int, default=400)
    args = parser.parse_args()
    if args.simulate:
        simulate(args.races, args.min, args.max)
        return
    if args.summarize:
        runs = [("fixed" if i == 0 else f"raced {i}", sweep, _elapsed(sweep)) for i, sweep in enumerate(args.summarize)]
    else:
        runs = []
        seeds = {"fixed": f"seeds={args.max}", "raced": f"seeds={{min: {args.min}, max: {args.max}, race: best}}"}
        for name, setting in seeds.items():
            out = Path(tempfile.mkdtemp(prefix=f"bench-race-{name}-"))
            command = [sys.executable, "-m", "mnist_sweep.cli", "run", args.config, "--set", setting, "--out",
                       str(out), "--quiet", *(["--fuse"] if args.fuse else [])]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            runs.append((name, next(out.iterdir()), time.perf_counter() - start))
    print("| sweep | trials | wall time (s) | best by val accuracy | not separated from it, or equivalent (compare) "
          "| race |")
    print("|---|---:|---:|---|---|---|")
    for name, sweep, seconds in runs:
        print(_row(name, sweep, seconds))


if __name__ == "__main__":
    main()
