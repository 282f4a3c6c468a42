"""Sampled sweeps on Optuna: `search.method` random, qmc (Sobol) or tpe, and pruning with `prune:`.

`space` turns a config's lists and ranges into Optuna parameters; `study` asks, tells and prunes,
with the study stored in `<sweep>/study.db`; `schedule` is the search as a sweep's schedule: it
hands the driver tasks as the study asks them.
"""

from .schedule import SearchSchedule
from .space import SearchSpace
from .study import (STUDY_FILE, TPE_STARTUP, Configuration, Search, check_budget, draw_configurations,
                    first_configurations, load_optuna)

__all__ = ["STUDY_FILE", "TPE_STARTUP", "Configuration", "Search", "SearchSchedule", "SearchSpace", "check_budget",
           "draw_configurations", "first_configurations", "load_optuna"]
