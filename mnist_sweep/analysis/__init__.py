"""Analysis: pure functions over the results' DataFrames (statistics, `compare`, `show`, the race's verdicts).

Reads results through `results/`; draws nothing and trains nothing. The modules are the surface
(`analysis.compare.findings`, `analysis.stats.summarize_configs`); a name that is also a module's
name (`compare`) is not re-exported here, so `from mnist_sweep.analysis import compare` is the module.
"""

from .compare import findings, render
from .race import RACE_FILE, RacePlan, plan_for, read_race, run_race
from .show import after_run, show_results
from .stats import summarize_configs

__all__ = ["RACE_FILE", "RacePlan", "after_run", "findings", "plan_for", "read_race", "render", "run_race",
           "show_results", "summarize_configs"]
