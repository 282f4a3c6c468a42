"""Racing over seeds: every configuration gets a few seeds, the clearly worse ones leave, the rest get more.

This is F-Race (Birattari et al. 2002) with `compare`'s own test. A *look* happens at every seed
count n from `min` to `max`: the configurations still in the race are compared on their first n
seeds by `stats.versus_best` (paired t on seed, or Welch's t, Holm-corrected over every pair of
configurations in the race) on the race metric (validation accuracy unless `race_metric` says
otherwise; the test set never chooses). A configuration worse than the current best at the look's
level leaves the race and keeps the trials it finished. With `smallest_difference` (the margin), a
configuration shown equivalent to the current best (two one-sided tests that the difference is
inside the margin, Holm over the comparisons with the best) leaves too, as "equivalent".

Error control across looks: Pocock's group-sequential boundary (Pocock 1977). Every look tests at one
nominal level, chosen so that a comparison looked at after every seed from `min` to `max` crosses it
by chance with probability ALPHA over all its looks: the looks are correlated (each adds one seed to
the last), so the level per look is larger than Bonferroni's ALPHA / looks (0.0126 against 0.0056 for
seeds 2 to 10) for the same overall error. The boundary is computed for the race's seed counts
(information n, independent increments; `nominal_levels`) and applied to the t-tests' p-values, the
usual practice for t statistics; a test checks the 5% on 400 simulated races. The equivalence tests
have a one-sided boundary of their own at ALPHA. So the chance that a race ever drops a configuration
as worse when it is not, and the chance that it ever calls one equivalent when it is a margin or more
from the best, are each about 5% at most, however many looks it makes. Bonferroni over the looks (the
most conservative choice) and O'Brien-Fleming's boundary are kept for comparison: on simulated races
Pocock's ends them soonest at the same guarantee (benchmarks/bench_race.py --simulate). A larger
`max` makes every look stricter: a rerun with a larger `max` replays the looks already made at the
new level (reusing every finished trial) and goes on from there, which is exactly the race that
`max` would have run from the start.

Looks are defined by seed counts, not by how many seeds the runner trains at once, so the outcome
is a pure function of the results: the runner may train a batch of seeds per round (to fill its
workers) and a resumed race makes the same decisions as an uninterrupted one.

Modes: `best` ends when one configuration is left (every other was worse or equivalent) or at `max`
(the rest are indistinguishable). `factors` drops no configuration: it ends when every main-effect
comparison of `compare` (each level against its setting's best, `stats.level_contrasts`) is resolved
at the look's level (different or, with a margin, equivalent), or at `max`.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

import numpy as np

import pandas as pd

from ..metrics import display_scale, lower_is_better
from .stats import ALPHA, level_contrasts, versus_best
from ..records import FINISHED

RACE_FILE = "race.json"
BOUNDARIES = ("pocock", "bonferroni", "obrien-fleming")  # how a race spends its 5% over its looks
ERROR_CONTROL = {
    "pocock": "Pocock's group-sequential boundary over every possible look (min to max seeds): one nominal level "
              "per look, set so that a comparison crosses it by chance with probability 0.05 over all its looks",
    "bonferroni": "Bonferroni over the maximum number of looks (max - min + 1): each look tests at 0.05 / looks",
    "obrien-fleming": "O'Brien-Fleming's group-sequential boundary over every possible look: strict early, "
                      "close to 0.05 at max, 0.05 over all the looks",
}
GUARANTEE = ("; Holm-corrected over every pair of configurations still in the race, so the chance of ever dropping "
             "a configuration that is not truly worse is at most 5%")
EQUIVALENCE_GUARANTEE = ("; a configuration leaves as equivalent when two one-sided tests at the look's one-sided "
                         "level (the same boundary at 0.05 one-sided, Holm over the comparisons with the best) put "
                         "its difference from the best inside the smallest difference, so the chance of ever "
                         "calling one equivalent that is a margin or more from the best is at most 5%")


# ---------------------------------------------------------------- group-sequential boundaries

_GRID = 401  # points of the numerical integration (Armitage, McPherson and Rowe 1969; Jennison and Turnbull ch. 19)


def crossing(bounds, info) -> np.ndarray:
    """Per look, the chance under the null that a two-sided z statistic first reaches |Z_k| >= bounds[k].

    The score S_k = Z_k sqrt(info_k) has independent normal increments of variance info_k - info_(k-1);
    its density on the region still open is carried from look to look by numerical integration.
    """
    from scipy import special

    info = np.asarray(info, dtype=float)
    out: list[float] = []
    grid = density = np.empty(0)  # set at the first look
    for k, (c, level) in enumerate(zip(bounds, info)):
        edge = c * math.sqrt(level)
        if k == 0:
            out.append(float(2 * special.ndtr(-c)))
            grid = np.linspace(-edge, edge, _GRID)
            density = np.exp(-grid**2 / (2 * level)) / math.sqrt(2 * math.pi * level)
            continue
        step = math.sqrt(level - info[k - 1])
        weights = np.full(len(grid), grid[1] - grid[0])
        weights[[0, -1]] /= 2
        mass = density * weights  # trapezoid rule
        out.append(float(mass @ (special.ndtr((grid - edge) / step) + special.ndtr((-edge - grid) / step))))
        new = np.linspace(-edge, edge, _GRID)
        density = (np.exp(-((new[:, None] - grid[None, :]) / step) ** 2 / 2) / (math.sqrt(2 * math.pi) * step)) @ mass
        grid = new
    return np.array(out)


@lru_cache(maxsize=64)
def nominal_levels(info: tuple[int, ...], alpha: float = ALPHA, rule: str = "pocock") -> tuple[float, ...]:
    """The two-sided nominal level of each look for an overall two-sided `alpha` over looks at
    information `info` (seed counts): constant for Pocock, rising for O'Brien-Fleming (bounds
    proportional to 1 / sqrt(info)), alpha / looks for Bonferroni."""
    from scipy import optimize, special

    k = len(info)
    if rule == "bonferroni" or k == 1:
        return (alpha / k,) * k
    shape = np.ones(k) if rule == "pocock" else np.sqrt(info[-1] / np.asarray(info, dtype=float))
    scale = optimize.brentq(lambda c: crossing(c * shape, info).sum() - alpha, 0.5, 10, xtol=1e-6)
    return tuple(float(2 * special.ndtr(-c)) for c in scale * shape)


def _clean(value: Any) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass(frozen=True)
class RacePlan:
    """How a race runs: its mode, seed range, metric, and the seeds in the order they are added."""

    mode: str  # best | factors
    minimum: int
    maximum: int
    seeds: tuple[int, ...]  # `maximum` seeds; a look at n seeds uses the first n
    metric: str = "val_accuracy"
    margin: Optional[float] = None  # smallest_difference in the metric's raw units (0.01 = 1 point of accuracy)
    boundary: str = "pocock"  # one of BOUNDARIES

    @property
    def looks(self) -> int:
        """The most looks the race can make: one per seed count from `minimum` to `maximum`."""
        return self.maximum - self.minimum + 1

    @property
    def levels(self) -> tuple[float, ...]:
        """The two-sided level of each possible look, for "worse" (the boundary's nominal levels)."""
        return nominal_levels(tuple(range(self.minimum, self.maximum + 1)), ALPHA, self.boundary)

    @property
    def equivalence_levels(self) -> tuple[float, ...]:
        """The one-sided level of each look's two one-sided tests: the one-sided boundary at ALPHA (the
        two-sided one at 2 ALPHA, halved)."""
        both = nominal_levels(tuple(range(self.minimum, self.maximum + 1)), 2 * ALPHA, self.boundary)
        return tuple(level / 2 for level in both)

    @property
    def alpha(self) -> float:
        """The level of the first look (of every look, for Pocock and Bonferroni)."""
        return self.levels[0]

    def level_at(self, seeds: int) -> tuple[float, float]:
        """(two-sided level for worse, one-sided level for equivalent) of the look at `seeds` seeds."""
        return self.levels[seeds - self.minimum], self.equivalence_levels[seeds - self.minimum]


@dataclass
class Look:
    """One look: at `seeds` seeds per configuration, who was in, who led, who left and on what p-value."""

    seeds: int
    alpha: float
    racing: list[str]
    best: Optional[str] = None
    left: list[dict[str, Any]] = field(default_factory=list)  # {config, verdict, p_holm, p_equiv, diff, reason}
    equivalence_alpha: float = math.nan  # one-sided level of the equivalence tests (with a margin)
    unresolved: int = 0  # factors mode: main-effect comparisons still open


@dataclass
class Race:
    """The race as far as the results allow: its looks, who is still in, and whether it is over."""

    plan: RacePlan
    looks: list[Look]
    racing: list[str]  # still in the race after the last look
    left_at: dict[str, int]  # configuration -> seed count of the look it left at
    outcome: str  # running | winner | equivalent | indistinguishable | resolved | unresolved
    winner: Optional[str] = None  # the one left in best mode: it beat (winner) or matched (equivalent) the rest

    @property
    def equivalent(self) -> list[str]:
        """The configurations that left as equivalent to the best of their look."""
        return [left["config"] for look in self.looks for left in look.left if left.get("verdict") == "equivalent"]

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
        look = self.next_look
        if look is None:  # the race is over
            return {}
        upto = min(look + max(batch, 1) - 1, self.plan.maximum)
        return {c: self.plan.seeds[:upto] for c in self.racing}

    def to_dict(self, labels: Optional[dict[str, str]] = None) -> dict[str, Any]:
        """race.json: the plan, the error control, every look, and the outcome; configurations by label."""
        name = (lambda c: labels.get(c, c)) if labels else (lambda c: c)
        p = self.plan
        control = ERROR_CONTROL[p.boundary] + GUARANTEE + (EQUIVALENCE_GUARANTEE if p.margin else "")
        return {
            "mode": p.mode, "metric": p.metric, "min": p.minimum, "max": p.maximum, "seeds": list(p.seeds),
            "smallest_difference": p.margin, "boundary": p.boundary,
            "looks_at_most": p.looks, "alpha": ALPHA, "alpha_per_look": p.alpha, "levels": list(p.levels),
            "equivalence_levels": list(p.equivalence_levels) if p.margin else None, "error_control": control,
            "outcome": self.outcome, "finished": self.finished, "winner": name(self.winner) if self.winner else None,
            "equivalent": [name(c) for c in self.equivalent],
            "racing": [name(c) for c in self.racing],
            "configurations": {c: name(c) for c in [*self.racing, *self.left_at]},
            "left_at": {name(c): n for c, n in self.left_at.items()},
            "rounds": [{"round": i + 1, "seeds": look.seeds, "alpha": look.alpha,
                        **({"equivalence_alpha": look.equivalence_alpha} if p.margin else {}),
                        "in": [name(c) for c in look.racing], "best": name(look.best) if look.best else None,
                        "left": [dict(left, config=name(left["config"])) for left in look.left],
                        **({"unresolved": look.unresolved} if p.mode == "factors" else {})}
                       for i, look in enumerate(self.looks)],
        }


def leaves(row: dict, lower: bool, alpha: float, equivalence_alpha: float, margin: Optional[float]) -> Optional[str]:
    """The race's decision rule for one comparison with the look's best: "equivalent" when the two one-sided
    tests (Holm over the comparisons with the best) are below the look's one-sided level, "worse" when the
    difference is below the look's level (Holm over every pair) and the best is ahead, else None (it stays)."""
    if margin and pd.notna(row.get("p_equiv_holm")) and row["p_equiv_holm"] < equivalence_alpha:
        return "equivalent"
    worse = row["diff"] > 0 if lower else row["diff"] < 0
    if worse and pd.notna(row.get("p_holm")) and row["p_holm"] < alpha:
        return "worse"
    return None


def _eliminate(look: Look, values: dict[str, pd.Series], metric: str, margin: Optional[float] = None) -> None:
    """Best mode: every configuration worse than, or equivalent to, the best at the look's level leaves."""
    if len(values) < 2:
        look.best = next(iter(values), None)
        return
    order, rows = versus_best(values, metric, margin)
    look.best = order[0]
    lower = lower_is_better(metric)
    for row in rows:
        verdict = leaves(row, lower, look.alpha, look.equivalence_alpha, margin)
        if verdict is not None:
            look.left.append({"config": row["level"], "verdict": verdict, "p_holm": _clean(row["p_holm"]),
                              "p_equiv": _clean(row.get("p_equiv_holm")), "diff": _clean(row["diff"]),
                              "reason": f"{verdict} {'to' if verdict == 'equivalent' else 'than'} {order[0]}"})


def _open_contrasts(frame: pd.DataFrame, metric: str, alpha: float, margin: Optional[float] = None,
                    equivalence_alpha: float = math.nan) -> int:
    """Factors mode: how many main-effect comparisons are neither different at `alpha` nor, with a
    margin, equivalent at `equivalence_alpha`."""
    table = level_contrasts(frame, metric, margin=margin)
    if table.empty:
        return 0
    tested = table[table["cells"] > 0]
    settled = tested["p_holm"] < alpha
    if margin:
        settled |= tested["p_equiv_holm"] < equivalence_alpha
    return int((~settled).sum())


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
    racing = list(configs)
    left_at: dict[str, int] = {}
    looks: list[Look] = []
    for n in range(plan.minimum, plan.maximum + 1):
        seeds = plan.seeds[:n]
        if any((c, s) not in have for c in racing for s in seeds):
            return Race(plan, looks, racing, left_at, "running")
        alpha, equivalence_alpha = plan.level_at(n)
        look = Look(n, alpha, list(racing), equivalence_alpha=equivalence_alpha if plan.margin else math.nan)
        values = {}
        for c in racing:
            if c in by_config:
                series, at = by_config[c]
                count = bisect.bisect_left(at, n)  # its values among the first n seeds
                if count:
                    values[c] = series.iloc[:count]
        for c in racing:
            if c not in values:
                look.left.append({"config": c, "verdict": "no result", "p_holm": None, "p_equiv": None, "diff": None,
                                  "reason": f"no trial finished with a {plan.metric}"})
        if plan.mode == "best":
            _eliminate(look, values, plan.metric, plan.margin)
            gone = {left["config"] for left in look.left}
        else:
            look.best = None
            rows = ok[ok["config_id"].isin(racing) & ok["seed"].isin(seeds)]
            look.unresolved = (_open_contrasts(rows, plan.metric, alpha, plan.margin, equivalence_alpha)
                               if values else 0)
            gone = {left["config"] for left in look.left}
        racing = [c for c in racing if c not in gone]
        left_at.update({c: n for c in gone})
        looks.append(look)
        if plan.mode == "best" and len(racing) <= 1:
            race = Race(plan, looks, racing, left_at, "winner", racing[0] if racing else None)
            race.outcome = "equivalent" if race.equivalent else "winner"
            return race
        if plan.mode == "factors" and look.unresolved == 0:
            return Race(plan, looks, racing, left_at, "resolved")
        if not racing:
            break
    outcome = "indistinguishable" if plan.mode == "best" else "unresolved"
    return Race(plan, looks, racing, left_at, outcome)


def plan_for(config) -> RacePlan:
    """The race a validated config asks for (`seeds: {min, max, race}`, `race_metric`, `smallest_difference`
    in the metric's display units: points for accuracies)."""
    metric = config.race_metric or "val_accuracy"
    margin = getattr(config, "smallest_difference", None)
    return RacePlan(config.race.mode, config.race.min, config.race.max, tuple(config.seeds), metric,
                    None if margin is None else margin / display_scale(metric))


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


def _units(race: dict[str, Any], value: float) -> str:
    scale = display_scale(race["metric"])
    return f"{value * scale:g} point{'s' if value * scale != 1 else ''}" if scale != 1 else f"{value:g}"


def round_message(look: dict[str, Any]) -> str:
    """One round of race.json as the runner announces it."""
    def one(left):
        if left.get("verdict") == "equivalent" and left.get("p_equiv") is not None:
            return f"{left['config']} (equivalent, p = {left['p_equiv']:.2g})"
        if left.get("p_holm") is not None:
            return f"{left['config']} (p = {left['p_holm']:.2g})"
        return f"{left['config']} ({left['reason']})"
    gone = "; ".join(one(left) for left in look["left"])
    return f"Race, round {look['round']} ({look['seeds']} seeds): {len(look['in'])} in" + (
        f"; left: {gone}" if gone else "; none left")


def describe(race: dict[str, Any]) -> str:
    """race.json in one sentence, for `compare` and the report."""
    rounds = race.get("rounds") or []
    boundary = race.get("boundary", "bonferroni")
    how = {"pocock": "Pocock's boundary", "bonferroni": "Bonferroni",
           "obrien-fleming": "O'Brien-Fleming's boundary"}.get(boundary, boundary)
    level = (f"each at level {race['alpha_per_look']:.4f}" if boundary != "obrien-fleming"
             else f"at levels {race['levels'][0]:.2g} to {race['levels'][-1]:.2g}")
    where = (f"{len(rounds)} look{'s' if len(rounds) != 1 else ''} ({race['min']} to "
             f"{rounds[-1]['seeds'] if rounds else race['min']} seeds per configuration, max {race['max']}), "
             f"{level} (0.05 over {race['looks_at_most']} possible looks, {how})")
    left = sum(len(r["left"]) for r in rounds)
    metric = race["metric"].replace("_", " ")
    head = f"This sweep was raced on {metric} ({race['mode']}): {where}; {left} configuration(s) left the race"
    margin = race.get("smallest_difference")
    if margin:
        head += f" (the smallest difference that matters: {_units(race, margin)})"
    outcome = race.get("outcome")
    equivalent = race.get("equivalent") or []
    if outcome == "winner" and race.get("winner"):
        tail = f"{race['winner']} beat every other configuration"
    elif outcome == "equivalent" and race.get("winner"):
        listed = "; ".join(equivalent[:4]) + (" ..." if len(equivalent) > 4 else "")
        tail = (f"{race['winner']} was left; {len(equivalent)} configuration(s) left as equivalent to the best "
                f"within the margin ({listed}), the others as worse")
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
