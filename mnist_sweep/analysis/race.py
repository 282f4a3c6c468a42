"""Racing over seeds: every configuration gets a few seeds, the clearly worse ones leave, the rest get more.

This is F-Race (Birattari et al. 2002) with `compare`'s own test. A *look* happens at every seed
count n from `min` to `max`: the configurations still in the race are compared on their first n
seeds by `stats.versus_best` (paired t on seed, or Welch's t, Holm-corrected over every pair of
configurations in the race) on the race metric (validation accuracy unless `race_metric` says
otherwise; the test set never chooses). A configuration worse than the current best at the look's
level leaves the race and keeps the trials it finished.

Error control across looks: Bonferroni over the most looks a race can make, `max - min + 1`. Each
look tests at ALPHA / looks (0.05 / 9 = 0.0056 for seeds 2 to 10), Holm within the look, so the
chance that a race ever drops a configuration that is not truly worse than the one it lost to is at
most ALPHA = 5%, however many looks it makes. In particular, when all configurations are equal, a
race names a winner in at most 5% of races. A larger `max` makes every look stricter: a rerun with
a larger `max` replays the looks already made at the new level (reusing every finished trial) and
goes on from there, which is exactly the race that `max` would have run from the start.

Looks are defined by seed counts, not by how many seeds the runner trains at once, so the outcome
is a pure function of the results: the runner may train a batch of seeds per round (to fill its
workers) and a resumed race makes the same decisions as an uninterrupted one.

Modes: `best` ends when one configuration is left (it beats every other) or at `max` (the rest are
indistinguishable). `factors` drops no configuration: it ends when every main-effect comparison of
`compare` (each level against its setting's best, `stats.level_contrasts`) is resolved at the look's
level, or at `max`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import pandas as pd

from ..metrics import lower_is_better
from .stats import ALPHA, level_contrasts, versus_best
from ..records import FINISHED

RACE_FILE = "race.json"
ERROR_CONTROL = ("Bonferroni over the maximum number of looks (max - min + 1): each look tests at 0.05 / looks, "
                 "Holm-corrected over every pair of configurations still in the race, so the chance of ever "
                 "dropping a configuration that is not truly worse is at most 5%")


@dataclass(frozen=True)
class RacePlan:
    """How a race runs: its mode, seed range, metric, and the seeds in the order they are added."""

    mode: str  # best | factors
    minimum: int
    maximum: int
    seeds: tuple[int, ...]  # `maximum` seeds; a look at n seeds uses the first n
    metric: str = "val_accuracy"

    @property
    def looks(self) -> int:
        """The most looks the race can make: one per seed count from `minimum` to `maximum`."""
        return self.maximum - self.minimum + 1

    @property
    def alpha(self) -> float:
        """The level of every look (Bonferroni over the looks)."""
        return ALPHA / self.looks


@dataclass
class Look:
    """One look: at `seeds` seeds per configuration, who was in, who led, who left and on what p-value."""

    seeds: int
    alpha: float
    racing: list[str]
    best: Optional[str] = None
    left: list[dict[str, Any]] = field(default_factory=list)  # {config, p_holm, diff, reason}
    unresolved: int = 0  # factors mode: main-effect comparisons still open


@dataclass
class Race:
    """The race as far as the results allow: its looks, who is still in, and whether it is over."""

    plan: RacePlan
    looks: list[Look]
    racing: list[str]  # still in the race after the last look
    left_at: dict[str, int]  # configuration -> seed count of the look it left at
    outcome: str  # running | winner | indistinguishable | resolved | unresolved
    winner: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.outcome != "running"

    @property
    def next_look(self) -> Optional[int]:
        """The seed count of the look waiting for trials; None once the race is over."""
        if self.finished:
            return None
        return self.looks[-1].seeds + 1 if self.looks else self.plan.minimum

    def needed(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """The seeds each configuration still in the race needs for the next `batch` looks."""
        if self.finished:
            return {}
        upto = min(self.next_look + max(batch, 1) - 1, self.plan.maximum)
        return {c: self.plan.seeds[:upto] for c in self.racing}

    def to_dict(self, labels: Optional[dict[str, str]] = None) -> dict[str, Any]:
        """race.json: the plan, the error control, every look, and the outcome; configurations by label."""
        name = (lambda c: labels.get(c, c)) if labels else (lambda c: c)
        p = self.plan
        return {
            "mode": p.mode, "metric": p.metric, "min": p.minimum, "max": p.maximum, "seeds": list(p.seeds),
            "looks_at_most": p.looks, "alpha": ALPHA, "alpha_per_look": p.alpha, "error_control": ERROR_CONTROL,
            "outcome": self.outcome, "finished": self.finished, "winner": name(self.winner) if self.winner else None,
            "racing": [name(c) for c in self.racing],
            "configurations": {c: name(c) for c in [*self.racing, *self.left_at]},
            "left_at": {name(c): n for c, n in self.left_at.items()},
            "rounds": [{"round": i + 1, "seeds": look.seeds, "alpha": look.alpha,
                        "in": [name(c) for c in look.racing], "best": name(look.best) if look.best else None,
                        "left": [dict(left, config=name(left["config"])) for left in look.left],
                        **({"unresolved": look.unresolved} if p.mode == "factors" else {})}
                       for i, look in enumerate(self.looks)],
        }


def _clean(value: Any) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _eliminate(look: Look, values: dict[str, pd.Series], metric: str) -> None:
    """Best mode: every configuration worse than the best at the look's level leaves."""
    if len(values) < 2:
        look.best = next(iter(values), None)
        return
    order, rows = versus_best(values, metric)
    look.best = order[0]
    lower = lower_is_better(metric)
    for row in rows:
        worse = row["diff"] > 0 if lower else row["diff"] < 0
        if worse and pd.notna(row.get("p_holm")) and row["p_holm"] < look.alpha:
            look.left.append({"config": row["level"], "p_holm": _clean(row["p_holm"]), "diff": _clean(row["diff"]),
                              "reason": f"worse than {order[0]}"})


def _open_contrasts(frame: pd.DataFrame, metric: str, alpha: float) -> int:
    """Factors mode: how many main-effect comparisons are not resolved at `alpha`."""
    table = level_contrasts(frame, metric)
    if table.empty:
        return 0
    tested = table[table["cells"] > 0]
    return int((~(tested["p_holm"] < alpha)).sum())


def run_race(attempted: pd.DataFrame, plan: RacePlan, configs: list[str]) -> Race:
    """Replay a race over the trials attempted so far, look by look, as far as they allow.

    `attempted` has one row per trial that ran to an end (config_id, seed, status, the metric, and
    for factors mode the setting columns); only status "ok" rows give values, the others count as
    run. `configs` is every configuration of the grid. Deterministic: the same rows give the same race.
    """
    have = set(zip(attempted["config_id"], attempted["seed"])) if len(attempted) else set()
    ok = attempted[(attempted["status"] == FINISHED) & attempted[plan.metric].notna()] if len(attempted) else attempted
    position = {seed: i for i, seed in enumerate(plan.seeds)}
    by_config = {}  # each configuration's values in the order seeds are added, and their positions
    for c, g in ok[ok["seed"].isin(position)].groupby("config_id", sort=False):
        g = g.assign(_at=g["seed"].map(position)).sort_values("_at")
        by_config[c] = (pd.Series(g[plan.metric].to_numpy(float), index=g["seed"].to_numpy()), g["_at"].tolist())
    racing, left_at, looks = list(configs), {}, []
    for n in range(plan.minimum, plan.maximum + 1):
        seeds = plan.seeds[:n]
        if any((c, s) not in have for c in racing for s in seeds):
            return Race(plan, looks, racing, left_at, "running")
        look = Look(n, plan.alpha, list(racing))
        values = {}
        for c in racing:
            if c in by_config:
                series, at = by_config[c]
                count = bisect.bisect_left(at, n)  # its values among the first n seeds
                if count:
                    values[c] = series.iloc[:count]
        for c in racing:
            if c not in values:
                look.left.append({"config": c, "p_holm": None, "diff": None,
                                  "reason": f"no trial finished with a {plan.metric}"})
        if plan.mode == "best":
            _eliminate(look, values, plan.metric)
            gone = {left["config"] for left in look.left}
        else:
            look.best = None
            rows = ok[ok["config_id"].isin(racing) & ok["seed"].isin(seeds)]
            look.unresolved = _open_contrasts(rows, plan.metric, plan.alpha) if values else 0
            gone = {left["config"] for left in look.left}
        racing = [c for c in racing if c not in gone]
        left_at.update({c: n for c in gone})
        looks.append(look)
        if plan.mode == "best" and len(racing) <= 1:
            return Race(plan, looks, racing, left_at, "winner", racing[0] if racing else None)
        if plan.mode == "factors" and look.unresolved == 0:
            return Race(plan, looks, racing, left_at, "resolved")
        if not racing:
            break
    outcome = "indistinguishable" if plan.mode == "best" else "unresolved"
    return Race(plan, looks, racing, left_at, outcome)


def plan_for(config) -> RacePlan:
    """The race a validated config asks for (`seeds: {min, max, race}`)."""
    return RacePlan(config.race.mode, config.race.min, config.race.max, tuple(config.seeds),
                    config.race_metric or "val_accuracy")


def trial_counts(configs: int, plan: RacePlan) -> tuple[int, int]:
    """(best case, worst case) trials: every configuration decided at `min` seeds, or all run to `max`.

    The best case for `race: best` is one configuration beating all others at the first look.
    """
    return configs * plan.minimum, configs * plan.maximum


def read_race(sweep_dir) -> Optional[dict[str, Any]]:
    """A sweep's race.json, or None when it was not raced (or the file cannot be read)."""
    import json
    from pathlib import Path

    from ..results.containment import read_text
    from ..errors import ResultsError

    try:
        data = json.loads(read_text(sweep_dir, Path(sweep_dir) / RACE_FILE))  # never through a link
    except (OSError, ValueError, ResultsError):
        return None
    return data if isinstance(data, dict) and "rounds" in data else None


def describe(race: dict[str, Any]) -> str:
    """race.json in one sentence, for `compare` and the report."""
    rounds = race.get("rounds") or []
    where = (f"{len(rounds)} look{'s' if len(rounds) != 1 else ''} ({race['min']} to "
             f"{rounds[-1]['seeds'] if rounds else race['min']} seeds per configuration, max {race['max']}), "
             f"each at level {race['alpha_per_look']:.4f} (0.05 over {race['looks_at_most']} possible looks)")
    left = sum(len(r["left"]) for r in rounds)
    metric = race["metric"].replace("_", " ")
    head = f"This sweep was raced on {metric} ({race['mode']}): {where}; {left} configuration(s) left the race"
    outcome = race.get("outcome")
    if outcome == "winner" and race.get("winner"):
        tail = f"{race['winner']} beat every other configuration"
    elif outcome == "indistinguishable":
        tail = (f"{len(race['racing'])} configuration(s) were still in at {race['max']} seeds, none separated "
                f"from the best ({'; '.join(race['racing'][:4])}{' ...' if len(race['racing']) > 4 else ''})")
    elif outcome == "resolved":
        tail = "every main-effect comparison was resolved"
    elif outcome == "unresolved":
        tail = f"some main-effect comparisons were still open at {race['max']} seeds"
    else:
        tail = "the race is not over yet: run the same command again to continue it"
    return (f"{head}; {tail}. The race's p-values are corrected for its looks; the p-values above are not, "
            "so read them as descriptive.")
