"""A raced sweep against the fixed-seed sweep it replaces: trials, wall time and verdicts.

    python benchmarks/bench_race.py [--config configs/regularization.yaml] [--min 2] [--max 10] [--fuse]
    python benchmarks/bench_race.py --summarize FIXED_SWEEP_DIR RACED_SWEEP_DIR

The first form runs `--set seeds=MAX` and `--set 'seeds={min: MIN, max: MAX, race: best}'` through
the real CLI, one after the other, into fresh results directories. The second reads two finished
sweeps (wall time: first trial started to last trial finished). Either prints a markdown table and
each sweep's verdict from `compare` on the race metric (validation accuracy).
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

    result = compare(sweep, "val_accuracy")
    table = result.versus_best
    tied = [str(c) for c, v in zip(table["config"], table["verdict"]) if str(v).startswith("no detectable")]
    return str(table["config"].iloc[0]), tied


def _row(name: str, sweep: Path, seconds: float) -> str:
    from mnist_sweep.results.store import load_results

    frame = load_results(sweep)
    best, tied = _verdict(sweep)
    race = sweep / "race.json"
    outcome = json.loads(race.read_text())["outcome"] if race.exists() else "-"
    return (f"| {name} | {int((frame['status'] == 'ok').sum())} | {seconds:.0f} | {best} | {len(tied)}: "
            f"{'; '.join(tied) or '-'} | {outcome} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/regularization.yaml")
    parser.add_argument("--min", type=int, default=2)
    parser.add_argument("--max", type=int, default=10)
    parser.add_argument("--fuse", action="store_true")
    parser.add_argument("--summarize", nargs=2, metavar=("FIXED", "RACED"), type=Path)
    args = parser.parse_args()
    if args.summarize:
        runs = [("fixed", args.summarize[0], _elapsed(args.summarize[0])),
                ("raced", args.summarize[1], _elapsed(args.summarize[1]))]
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
    print("| sweep | trials | wall time (s) | best by val accuracy | not separated from it (compare) | race |")
    print("|---|---:|---:|---|---|---|")
    for name, sweep, seconds in runs:
        print(_row(name, sweep, seconds))


if __name__ == "__main__":
    main()
