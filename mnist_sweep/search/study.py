"""The Optuna study behind a sampled sweep: samplers, pruners, ask and tell, stored in `<sweep>/study.db`.

One Optuna trial is one configuration; it runs once per seed (each run an mnist-sweep trial) and is
told the mean of its seeds' validation metric, never a test metric. `random` and `qmc` do not look
at results, so all their configurations are drawn up front (deterministic for a seed, without
repeats); `tpe` is asked as workers free up. Everything the study knows is in SQLite, so a sweep
killed at any moment resumes where it was: configurations asked but not told are run again
(their finished seeds kept), and no configuration is asked twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import SweepConfig
from ..errors import ConfigError, require
from ..plan.grid import Trial, make_trial
from ..config.ranges import SAMPLED_METHODS
from .space import EXACT_COUNT_LIMIT, SearchSpace
from ..records import Status

STUDY_FILE = "study.db"
MAX_REPEATS = 100  # draws in a row that repeat an earlier configuration, before taking unseen ones in order
DIVERGED_ACCURACY = 0.0  # what a diverged seed counts as in its configuration's mean val_accuracy


def load_optuna(method: str):
    """Optuna, or an error naming the install command (exit 2)."""
    optuna = require("search", f"search.method {method}")
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def make_sampler(optuna, config: SweepConfig, number: int = 0):
    """The sampler for `search.method`; tpe is seeded per configuration, so a resumed study asks as an unbroken one."""
    method, seed = config.search.method, config.search.seed
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # QMCSampler is marked experimental; the dry run and README say what it does
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if method == "qmc":  # a scrambled Sobol sequence: the seed picks the scramble
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                              warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=(seed * 100_003 + number) % 2**32)  # numpy takes 32-bit seeds


def sampled_trials(config: SweepConfig) -> int:
    """search.trials of a sampled search, which validation makes sure is given."""
    trials = config.search.trials
    if trials is None:
        raise ConfigError(f"search.trials: method {config.search.method} needs a number of configurations, "
                          "such as trials: 20")
    return trials


TPE_STARTUP = 10  # Optuna's TPESampler draws its first 10 configurations at random, then models the results


def first_configurations(config: SweepConfig) -> list[list[Trial]]:
    """What `--dry-run` shows: every configuration random/qmc will try, or tpe's first (random) ones."""
    optuna = load_optuna(config.search.method)
    check_budget(config)
    space = SearchSpace(config)
    if config.search.method != "tpe":
        drawn = draw_configurations(config)
    else:
        study = optuna.create_study()
        drawn = []
        for number in range(min(sampled_trials(config), TPE_STARTUP)):
            study.sampler = make_sampler(optuna, config, number)
            trial = study.ask()
            space.settings(trial)
            drawn.append(trial.params)
    return [[make_trial(config, space.settings(optuna.trial.FixedTrial(p)), seed, space.varying)
             for seed in config.seeds] for p in drawn]


def make_pruner(optuna, config: SweepConfig):
    """Optuna's pruner for `prune.method` with the keys given (Optuna's defaults for the rest)."""
    prune = config.prune
    if prune is None:
        return optuna.pruners.NopPruner()
    given = {k: v for k, v in prune.model_dump(exclude={"method"}).items() if v is not None}
    if prune.method == "median":
        return optuna.pruners.MedianPruner(**given)
    if prune.method == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**given)
    given.setdefault("max_resource", max(config.train.epochs))  # "auto" would wait for a finished trial
    return optuna.pruners.HyperbandPruner(**given)


def space_digest(config: SweepConfig, with_trials: bool = False) -> str:
    """What a stored study must match to be resumed: the space, sampler, data and seeds.

    Not `search.trials`: a resumed search may ask for more configurations (the draws are a prefix of
    a longer run's) or fewer (those asked are kept). `with_trials`: the digest studies stored before.
    """
    search = config.search.model_dump(exclude=None if with_trials else {"trials"})
    data = {"ranges": {k: v.model_dump() for k, v in config.ranges.items()}, "search": search,
            "settings": SearchSpace(config).base, "dataset": config.dataset.model_dump(mode="json", exclude={"path"}),
            "seeds": config.seeds}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def draw_configurations(config: SweepConfig, count: Optional[int] = None) -> list[dict[str, Any]]:
    """The parameters random or qmc tries, in order: `count` (default search.trials), none drawn twice.

    Drawn in a study held in memory; results do not steer these samplers, so the draws are the run's.
    Nothing but the stopping point depends on `count`, so fewer configurations are a prefix of more
    (a search resumed with a larger `trials` keeps those it ran).
    """
    optuna = load_optuna(config.search.method)
    space = SearchSpace(config)
    count = sampled_trials(config) if count is None else count
    study = optuna.create_study(sampler=make_sampler(optuna, config))
    drawn: dict[str, dict[str, Any]] = {}
    repeats = 0
    while len(drawn) < count and repeats < MAX_REPEATS:
        trial = study.ask()
        key = json.dumps(space.settings(trial), sort_keys=True)
        repeats = repeats + 1 if key in drawn else 0
        drawn.setdefault(key, trial.params)
        study.tell(trial, 0.0)  # qmc reads its search space from a told trial
    if len(drawn) < count:  # a small discrete space: take the combinations not drawn yet, in a seeded order
        rest = [p for p in _all_params(optuna, space, EXACT_COUNT_LIMIT) if json.dumps(
            space.settings(optuna.trial.FixedTrial(p)), sort_keys=True) not in drawn]
        random.Random(config.search.seed).shuffle(rest)
        for params in rest[: count - len(drawn)]:
            drawn[json.dumps(space.settings(optuna.trial.FixedTrial(params)), sort_keys=True)] = params
    return list(drawn.values())


def _all_params(optuna, space: SearchSpace, limit: int) -> list[dict[str, Any]]:
    """Every combination of a space of lists and stepped ranges, as parameters (Optuna's brute force).

    Run inside `optimize`: the sampler stops the study itself once every combination was tried.
    """
    found: dict[str, dict[str, Any]] = {}

    def objective(trial) -> float:
        space.settings(trial)
        key = json.dumps(trial.params, sort_keys=True)
        if key in found:
            trial.study.stop()
        found.setdefault(key, trial.params)
        return 0.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
        study.optimize(objective, n_trials=limit)
    return list(found.values())


def check_budget(config: SweepConfig) -> None:
    """random and qmc draw without repeats: a space of lists must hold at least `trials` configurations."""
    if config.search.method in ("random", "qmc"):
        distinct = SearchSpace(config).distinct_count()
        if distinct < sampled_trials(config):
            raise ConfigError(f"search.trials: {config.search.trials} configurations asked for, but the lists and "
                              f"stepped ranges hold only {int(distinct)} distinct ones; lower trials to "
                              f"{int(distinct)} or less, widen the space, or use method: grid")


@dataclass
class Configuration:
    """One Optuna trial: its parameters and its runs, one per seed."""

    number: int
    params: dict[str, Any]
    trials: list[Trial]
    results: dict[str, dict] = field(default_factory=dict)  # trial id -> its record once done
    pruned: bool = False


class Search:
    """A sampled sweep's study: ask configurations, tell their seeds' mean, decide on pruning each epoch."""

    def __init__(self, config: SweepConfig, directory: Path):
        if config.search.method not in SAMPLED_METHODS:
            raise ValueError("Search runs sampled methods only")
        self.config = config
        self.optuna = load_optuna(config.search.method)
        check_budget(config)
        self.space = SearchSpace(config)
        self.path = Path(directory) / STUDY_FILE
        self.maximize = config.search.metric != "val_loss"
        self.study: Any = None  # optuna.Study, once `open` has run
        self.storage: Any = None
        self.configurations: dict[str, Configuration] = {}  # by config_id
        self.by_trial: dict[str, Configuration] = {}

    # ---------------------------------------------------------------- the study

    def open(self, force: bool = False) -> list[Configuration]:
        """Create or load the study; returns every configuration it already asked, in order."""
        optuna = self.optuna
        if force:
            self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.storage = optuna.storages.RDBStorage(f"sqlite:///{self.path.resolve()}")
        self.study = optuna.create_study(
            study_name=self.config.name, storage=self.storage, load_if_exists=True,
            direction="maximize" if self.maximize else "minimize",
            sampler=make_sampler(optuna, self.config), pruner=make_pruner(optuna, self.config))
        digest = space_digest(self.config)
        stored = self.study.user_attrs.get("space")
        if stored is None:
            self.study.set_user_attr("space", digest)
            self.study.set_user_attr("method", self.config.search.method)
        elif stored == space_digest(self.config, with_trials=True):  # stored before trials could change
            self.study.set_user_attr("space", digest)
        elif stored != digest:
            raise ConfigError(f"{self.path} holds a study of a different search (its space, sampler, data or seeds "
                              "changed): run with --force to start it again, or give the sweep another name")
        asked = sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number)
        return [self._add(t.number, t.params) for t in asked]

    def dataset(self) -> Optional[dict[str, Any]]:
        """The data (`Dataset.info()`, with its fingerprint) the study's results were found on; None for a new
        study, or one stored before the data was recorded (its trials' records tell then)."""
        value = self.study.user_attrs.get("dataset")
        return value if isinstance(value, dict) else None

    def remember_dataset(self, info: dict[str, Any]) -> None:
        """Record the data this run trains on, so a resume on other data is refused (`space_digest` leaves
        out the data file's path, which differs between machines; the fingerprint does not)."""
        if self.dataset() != info:
            self.study.set_user_attr("dataset", info)

    def _add(self, number: int, params: dict[str, Any]) -> Configuration:
        settings = self.space.settings(self.optuna.trial.FixedTrial(params))
        trials = [make_trial(self.config, settings, seed, self.space.varying) for seed in self.config.seeds]
        configuration = Configuration(number, params, trials)
        self.configurations[trials[0].config_id] = configuration
        for trial in trials:
            self.by_trial[trial.trial_id] = configuration
        return configuration

    def state(self, configuration: Configuration):
        return self.storage.get_trial(self._trial_id(configuration)).state

    def _trial_id(self, configuration: Configuration) -> int:
        study_id = self.storage.get_study_id_from_name(self.config.name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, configuration.number)

    def asked(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    def ask(self, params: Optional[dict[str, Any]] = None) -> Configuration:
        """Ask the study for the next configuration (`params`: one drawn up front by random or qmc)."""
        if params is not None:
            self.study.enqueue_trial(params)
        else:
            self.study.sampler = make_sampler(self.optuna, self.config, self.asked())
        trial = self.study.ask()
        self.space.settings(trial)
        return self._add(trial.number, trial.params)

    # ---------------------------------------------------------------- results

    def record(self, trial: Trial, record: Any) -> Optional[Configuration]:
        """Note a seed's run as done; once every seed is, tell the study. Returns the configuration told."""
        configuration = self.by_trial.get(trial.trial_id)
        if configuration is None:
            return None
        configuration.results[trial.trial_id] = record
        if record.get("status") == Status.INTERRUPTED or len(configuration.results) < len(configuration.trials):
            return None
        self.tell(configuration)
        return configuration

    def tell(self, configuration: Configuration) -> None:
        """The mean over seeds of the validation metric, a diverged seed counting as the worst value.

        Pruned if any seed was. A diverged seed (NaN loss) counts as accuracy 0, or as the worst finite
        loss known (this configuration's seeds and the study's told values), so TPE learns that the
        region is bad. Failed (crashed) seeds are left out; failed if no seed ran to a value.
        """
        TrialState = self.optuna.trial.TrialState
        if self.state(configuration) != TrialState.RUNNING:
            return
        statuses = [r.get("status") for r in configuration.results.values()]
        if Status.PRUNED in statuses or configuration.pruned:
            self.study.tell(configuration.number, state=TrialState.PRUNED)
            return
        metric = self.config.search.metric
        values, diverged = [], 0
        for record in configuration.results.values():
            value = (record.get("metrics") or {}).get(metric)
            value = float(value) if value is not None else math.nan
            status = record.get("status")
            if status == Status.DIVERGED or (status == Status.OK and not math.isfinite(value)):
                diverged += 1
            elif record.get("status") == Status.OK:
                values.append(value)
        if diverged:
            worst = self._worst(values)
            if worst is None:  # a loss, and no finite one known yet to stand for the diverged seeds
                self.study.tell(configuration.number, state=TrialState.FAIL)
                return
            values += [worst] * diverged
        if values:
            self.study.tell(configuration.number, sum(values) / len(values))
        else:
            self.study.tell(configuration.number, state=TrialState.FAIL)

    def _worst(self, values: list[float]) -> Optional[float]:
        """What a diverged seed counts as: accuracy 0; the highest finite loss known, if any."""
        if self.maximize:
            return DIVERGED_ACCURACY
        told = [t.value for t in self.study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.COMPLETE,))]
        known = [v for v in values + told if v is not None and math.isfinite(v)]
        return max(known) if known else None

    def should_prune(self, trial: Trial, histories: dict[str, list[dict]]) -> bool:
        """Report this configuration's epoch (mean over the seeds that reached it) and ask the pruner."""
        configuration = self.by_trial.get(trial.trial_id)
        if self.config.prune is None or configuration is None:
            return False
        if configuration.pruned:
            return True
        epoch = len(histories.get(trial.trial_id, []))
        metric = self.config.search.metric
        values = [rows[epoch - 1][metric] for t in configuration.trials
                  if len(rows := histories.get(t.trial_id, [])) >= epoch > 0]
        values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
        if not values:
            return False
        trial_id = self._trial_id(configuration)
        if self.storage.get_trial(trial_id).state != self.optuna.trial.TrialState.RUNNING:
            return False
        self.storage.set_trial_intermediate_value(trial_id, epoch, sum(values) / len(values))
        configuration.pruned = bool(self.study.pruner.prune(self.study, self.storage.get_trial(trial_id)))
        return configuration.pruned

    def best(self) -> Optional[dict[str, Any]]:
        """The best told configuration: number, value and parameters."""
        try:
            best = self.study.best_trial
        except ValueError:
            return None
        return {"number": best.number, "value": best.value, "params": best.params}
