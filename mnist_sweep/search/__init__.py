"""Sampled sweeps on Optuna: `search.method` random, qmc (Sobol) or tpe, and pruning with `prune:`.

`space` turns a config's lists and ranges into Optuna parameters; `study` asks, tells and prunes,
with the study stored in `<sweep>/study.db`; `feed` hands the runner's executor one task at a time.
"""

from .feed import SearchFeed
from .space import SearchSpace
from .study import (STUDY_FILE, TPE_STARTUP, Configuration, Search, check_budget, draw_configurations,
                    first_configurations, load_optuna)

__all__ = ["STUDY_FILE", "TPE_STARTUP", "Configuration", "Search", "SearchFeed", "SearchSpace", "check_budget",
           "draw_configurations", "first_configurations", "load_optuna"]
