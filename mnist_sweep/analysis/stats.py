"""Which differences are real: seed summaries, setting importance, tests against the best.

Pure functions over the trial DataFrame of `store.load_results`. Only trials with status "ok" count;
the others are excluded and counted. A configuration is one set of settings (`config_id`); its seeds
are repeats. Intervals and tests treat the seed as the random unit and the settings as fixed.
`compare.py` puts these tables into sentences and renders them.

The linear-model statistics are statsmodels': the type II ANOVA and its F tests (`ols`, `anova_lm`);
the probability of improvement's bootstrap is scipy's. Holm's correction is ours for speed, held equal
to statsmodels' `multipletests` by a test. What is ours: the design (which settings vary, which
interactions it can estimate, which trials count), the matching of like with like, the verdicts
(better, worse, equivalent within a margin, unresolved) and their wording. Those packages
are imported when first needed: importing scipy.stats or statsmodels costs seconds, and quantiles and
tail probabilities come from scipy.special.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from ..errors import OptionError, ResultsError, did_you_mean
from ..metrics import (METRICS, SELECTION, SELECTION_WITHOUT_VALIDATION, bounds, level_order, lower_is_better,
                       unknown_metric)
from ..records import FINISHED
from ..results.store import setting_columns

ALPHA = 0.05  # two-sided level of every interval (95%) and test
POWER = 0.80  # the power a seeds hint aims for
MAX_SEEDS_HINT = 1000  # beyond this a hint says nothing: the difference is too small to chase
DEFAULT_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "train_loss",
                   "wall_seconds")


def t_quantile(df, q: float = 1 - ALPHA / 2):
    """Student's t quantile (scipy.stats.t.ppf(q, df)); NaN below 1 degree of freedom. Takes arrays."""
    return special.stdtrit(np.where(np.asarray(df, dtype=float) >= 1, df, np.nan), q)


def half_width(sd, df, n):
    """Half-width of the 95% t-interval of a mean of `n` values whose SD `sd` has `df` degrees of freedom.

    The one interval formula here: `mean_ci` (df = n - 1), `main_effects` and the learning-curve bands
    (the seed-to-seed SD pooled within configurations, df = trials - configurations). Takes arrays.
    """
    return t_quantile(df) * np.asarray(sd, dtype=float) / np.sqrt(n)


def mean_ci(values, bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float, float]:
    """Mean, SD and the 95% t-interval of the mean; the SD and interval are NaN below 2 values.

    The interval is cut to `bounds`, the values the mean can take (`metrics.bounds`): with few seeds a
    t-interval of an accuracy can reach past 100%, where the true mean cannot be.
    """
    x = pd.Series(values, dtype=float).dropna()
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(half_width(sd, n - 1, n))
    return mean, sd, max(mean - half, bounds[0]), min(mean + half, bounds[1])


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, NaN left out of the family: the chance of any false finding in
    the family stays <= alpha.

    The same numbers as statsmodels' `multipletests(p, method="holm")` (a test holds them equal), in a
    few lines of our own because statsmodels runs `gc.collect()` on every Holm call: about 0.1 s here,
    more in a process holding TensorFlow, and a race calls this twice at every look it replays.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (len(tested) - rank) * p[i]))
        out[i] = running
    return out


def holm_levels(pvalues) -> np.ndarray:
    """The two-sided level at which Holm's step-down procedure judged each test.

    Tests it rejected were judged at alpha / (m - rank); those after the first one it kept are judged
    at that step's level. An interval built at a test's level excludes zero exactly when Holm
    rejects it, so an interval and its verdict never disagree.
    """
    p = np.asarray(pvalues, dtype=float)
    levels = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    stopped = None
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        level = ALPHA / (len(tested) - rank)
        if stopped is None and p[i] > level:
            stopped = level
        levels[i] = level if stopped is None else stopped
    return levels


def power_hint(diff: float, sd: float, *, paired: bool = False, alpha: float = ALPHA, power: float = POWER):
    """Seeds per configuration for a two-sided t-test at `alpha` to find `diff` with `power`.

    Exact for the t-test, by the noncentral t: unpaired, two groups of n with common SD `sd`
    (df 2n-2, noncentrality diff/sd*sqrt(n/2)); paired, `sd` is the SD of the per-seed differences
    (df n-1, noncentrality diff/sd*sqrt(n)). It takes the observed difference as the true one and
    ignores that Holm is less strict than the `alpha` given (callers pass 0.05 / pairs compared), so
    read it as a rough guide. None when there is no difference, no SD, or more than MAX_SEEDS_HINT
    seeds would be needed.
    """
    if not (np.isfinite(diff) and np.isfinite(sd)) or diff == 0 or sd <= 0:
        return None
    d = abs(diff) / sd

    def achieved(n: int) -> float:
        df, ncp = (n - 1, d * math.sqrt(n)) if paired else (2 * n - 2, d * math.sqrt(n / 2))
        crit = t_quantile(df, 1 - alpha / 2)
        return 1 - special.nctdtr(df, ncp, crit) + special.nctdtr(df, ncp, -crit)

    z = special.ndtri(1 - alpha / 2) + special.ndtri(power)
    n = max(2, math.ceil((1 if paired else 2) * (z / d) ** 2))  # the normal approximation, then exact steps
    if n > MAX_SEEDS_HINT:
        return None
    while achieved(n) < power:
        n += 1
    while n > 2 and achieved(n - 1) >= power:
        n -= 1
    return n if n <= MAX_SEEDS_HINT else None


def equivalence_hint(diff: float, sd: float, margin: float, *, paired: bool = False, alpha: float = ALPHA,
                     power: float = POWER):
    """Seeds per configuration for two one-sided t-tests at `alpha` to show |difference| < `margin` with
    `power`, taking the observed difference as the true one.

    The power is the usual lower bound P(t1 > c) + P(t2 < -c) - 1 by the noncentral t, t1 and t2 the
    statistics against -margin and +margin (as `power_hint`: unpaired, two groups of n with SD `sd`;
    paired, `sd` of the per-seed differences). None when the difference is not inside the margin,
    there is no SD, or more than MAX_SEEDS_HINT seeds would be needed.
    """
    if not (np.isfinite(diff) and np.isfinite(sd) and margin and np.isfinite(margin)) or sd <= 0 \
            or abs(diff) >= margin:
        return None

    def achieved(n: int) -> float:
        df, se = (n - 1, sd / math.sqrt(n)) if paired else (2 * n - 2, sd * math.sqrt(2 / n))
        crit = t_quantile(df, 1 - alpha)
        upper, lower = special.nctdtr(df, (diff + margin) / se, crit), special.nctdtr(df, (diff - margin) / se, -crit)
        return (1 - upper) + lower - 1

    z = special.ndtri(1 - alpha) + special.ndtri(1 - (1 - power) / 2)
    n = max(2, math.ceil((1 if paired else 2) * (z * sd / (margin - abs(diff))) ** 2))
    if n > MAX_SEEDS_HINT:
        return None
    while achieved(n) < power:
        n += 1
        if n > MAX_SEEDS_HINT:
            return None
    while n > 2 and achieved(n - 1) >= power:
        n -= 1
    return n


# ---------------------------------------------------------------- preparing the trials

class _Trials(NamedTuple):
    ok: pd.DataFrame  # finished trials with the metric; setting columns as text labels, plus "_config"
    settings: list[str]  # the settings that vary among them
    excluded: dict[str, int]  # trials left out, by status
    total: int


def level_text(value) -> str:
    """How a setting's value reads as a level: "relu", "0.02", "none"; the tables' level labels."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _ordered(labels: pd.Series) -> list[str]:
    """Distinct labels in `metrics.level_order`."""
    return level_order(labels.tolist())


def _config_label(row: pd.Series, settings: list[str]) -> str:
    return ", ".join(f"{f}={row[f]}" for f in settings) if settings else str(row.get("config_id", "all"))


def split_ok(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The trials that count (status "ok") and how many others were left out, by status."""
    if "status" not in df.columns:
        return df, {}
    ok = df["status"] == FINISHED
    counts = df.loc[~ok, "status"].fillna("unknown").astype(str).value_counts()
    return df[ok], {status: int(n) for status, n in counts.items()}


def _trials(df: pd.DataFrame, metric: str, setting: str | None = None) -> _Trials:
    if df.empty:
        raise ResultsError("the results hold no trials yet: run `mnist-sweep run CONFIG` first")
    if metric not in METRICS:
        raise unknown_metric(metric)
    if metric not in df.columns:
        raise OptionError("--metric", f'no metric "{metric}" in the results; '
                                      f"metrics: {', '.join(m for m in METRICS if m in df.columns)}")
    ok, excluded = split_ok(df)
    missing = ok[metric].isna()
    if missing.any():
        excluded[f"ok without {metric}"] = int(missing.sum())
    ok = ok[~missing].copy()
    if ok.empty:
        raise ResultsError(f"none of the {len(df)} trials finished with a {metric} "
                           f"({', '.join(f'{n} {s}' for s, n in excluded.items())}): nothing to compare")
    ok[metric] = ok[metric].astype(float)
    settings = []
    for f in setting_columns(df):
        ok[f] = ok[f].map(level_text)
        if ok[f].nunique() > 1:
            settings.append(f)
    ok["_config"] = (ok[settings].radd([f"{f}=" for f in settings]).agg(", ".join, axis=1) if settings
                     else ok["config_id"].astype(str) if "config_id" in ok.columns else "all")
    if setting is not None and setting not in settings:
        known = setting_columns(df)
        problem = ("does not vary among the finished trials" if setting in known
                   else f"is not a setting of this sweep{did_you_mean(setting, known)}")
        raise OptionError("--factor", f'"{setting}" {problem}; settings that vary: {", ".join(settings) or "none"}')
    return _Trials(ok, settings, excluded, len(df))


def _balanced(t: _Trials) -> bool:
    """A full factorial (every combination of levels run) with the same number of seeds everywhere."""
    cells = math.prod(t.ok[f].nunique() for f in t.settings)
    sizes = t.ok.groupby("_config").size()
    return len(sizes) == cells and sizes.nunique() == 1


def design(df: pd.DataFrame, metric: str | None = None, setting: str | None = None) -> dict:
    """How the trials that count are laid out: trials recorded (`total`), those left out by status
    (`excluded`), `n_configs`, `seeds` (fewest and most of a configuration) and whether `balanced`."""
    metric = metric or selection_metric(df)
    t = _trials(df, metric, setting)
    sizes = t.ok.groupby("_config").size()
    return {"total": t.total, "excluded": t.excluded, "n_configs": len(sizes),
            "seeds": (int(sizes.min()), int(sizes.max())), "balanced": _balanced(t)}


def selection_metric(df: pd.DataFrame) -> str:
    """What chooses and ranks by default: validation accuracy, or training accuracy in results without a
    validation set. The test set only where nothing else was recorded: choosing on it overstates the
    winner, since it then both picks the winner and scores it (`compare` says so)."""
    for metric in (SELECTION[0], SELECTION_WITHOUT_VALIDATION[0], "test_accuracy"):
        if metric in df.columns and df[metric].notna().any():
            return metric
    return SELECTION[0]


def confirmation_metric(metric: str) -> str | None:
    """The test set's figure for a metric that chose (val_accuracy -> test_accuracy); None for a test
    metric, or one the test set does not measure (times, epochs)."""
    for prefix in ("val_", "train_"):
        if metric.startswith(prefix) and f"test_{metric.removeprefix(prefix)}" in METRICS:
            return f"test_{metric.removeprefix(prefix)}"
    return None


# ---------------------------------------------------------------- summaries

def summarize_configs(df: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """One row per configuration: how many seeds finished, and their mean, SD and 95% CI per metric.

    Columns: [sweep,] config_id, the settings, config, n_seeds, n_excluded, then for each metric
    `<m>_mean`, `<m>_sd`, `<m>_ci_low`, `<m>_ci_high` (raw units; CI and SD NaN with one seed).
    """
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in df.columns]
    for m in metrics:
        if m not in df.columns:
            raise OptionError("--metric", f'no metric "{m}" in the results{did_you_mean(m, df.columns)}')
    settings = setting_columns(df)
    keys = [k for k in ("sweep", "config_id") if k in df.columns]
    rows = []
    for _, group in df.groupby(keys, sort=False, dropna=False):
        ok, _ = split_ok(group)
        first = group.iloc[0]
        row = {k: first[k] for k in keys} | {f: first[f] for f in settings}
        row.update(config=_config_label(first.map(level_text), settings), n_seeds=len(ok),
                   n_excluded=len(group) - len(ok))
        for m in metrics:
            values = dict(zip(("mean", "sd", "ci_low", "ci_high"), mean_ci(ok[m], bounds(m))))
            row.update({f"{m}_{k}": v for k, v in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def seed_spread(df: pd.DataFrame, metric: str | None = None) -> dict:
    """Seed-to-seed noise: the pooled SD within configurations, its df, and its share of all variance."""
    metric = metric or selection_metric(df)
    t = _trials(df, metric)
    y = t.ok[metric]
    within = float(((y - t.ok.groupby("_config")[metric].transform("mean")) ** 2).sum())
    dof = len(y) - t.ok["_config"].nunique()
    total = float(((y - y.mean()) ** 2).sum())
    return {"sd": math.sqrt(within / dof) if dof else math.nan, "df": dof,
            "share": within / total if dof and total else math.nan}


# ---------------------------------------------------------------- settings

def _full_pairs(t: _Trials) -> list[tuple[str, str]]:
    """The pairs of settings whose every combination of levels has finished trials: the interactions
    the design can estimate."""
    pairs = []
    for a, b in combinations(t.settings, 2):
        cells = t.ok.groupby([a, b]).size()
        if len(cells) == t.ok[a].nunique() * t.ok[b].nunique():
            pairs.append((a, b))
    return pairs


def _anova(t: _Trials, metric: str) -> pd.DataFrame:
    """statsmodels' type II ANOVA of the metric on every varying setting (categorical) and every
    interaction the design can estimate (`_full_pairs`): one row per term, named "a" or "a:b", with
    sum_sq, df, F and PR(>F), and the Residual row.

    A setting whose levels the others already determine (an `include` row that changes two settings
    at once) adds nothing once they are in: it is left out of the model and given df 0, so that
    statsmodels is never handed a rank-deficient design, where its type II tables go wrong quietly.
    """
    import warnings

    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    names = {f: f"f{i}" for i, f in enumerate(t.settings)}
    data = pd.DataFrame({names[f]: t.ok[f].astype(str).to_numpy() for f in t.settings})
    data["y"] = t.ok[metric].to_numpy(float)

    def formula(terms: list[str]) -> str:
        return "y ~ " + (" + ".join(":".join(f"C({names[f]})" for f in term.split(":")) for term in terms) or "1")

    def rank(terms: list[str]) -> int:
        return int(np.linalg.matrix_rank(ols(formula(terms), data).exog)) if terms else 1

    kept: list[str] = []
    aliased: list[str] = []
    for f in t.settings:  # a setting that adds no column the others lack cannot be estimated after them
        (kept if rank([*kept, f]) > rank(kept) else aliased).append(f)
    terms = [*kept, *(f"{a}:{b}" for a, b in _full_pairs(t) if a in kept and b in kept)]
    while len(terms) > len(kept) and rank(terms) < 1 + _columns(t, terms):
        terms.pop()  # an interaction that is not fully estimable after the others
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        model = ols(formula(terms), data).fit()
        if terms and model.df_resid >= 1:
            table = anova_lm(model, typ=2)
        else:  # one seed: no error to test against, but the type II sums of squares still rank the settings
            rows = {}
            for term in terms:
                parts = set(term.split(":"))
                without = [u for u in terms if not parts <= set(u.split(":"))]
                reduced, larger = ols(formula(without), data).fit(), ols(formula([*without, term]), data).fit()
                rows[term] = [reduced.ssr - larger.ssr, reduced.df_resid - larger.df_resid, math.nan, math.nan]
            rows["Residual"] = [model.ssr, model.df_resid, math.nan, math.nan]
            table = pd.DataFrame.from_dict(rows, orient="index", columns=["sum_sq", "df", "F", "PR(>F)"])
    back = {f"C({v})": k for k, v in names.items()}
    table.index = [":".join(back.get(part, part) for part in str(i).split(":")) for i in table.index]
    for f in aliased:
        table.loc[f] = [0.0, 0.0, math.nan, math.nan]
    if model.df_resid < 1 or model.ssr <= 0:  # no seed-to-seed error left to test against
        table["F"], table["PR(>F)"] = math.nan, math.nan
    return table


def _columns(t: _Trials, terms: list[str]) -> int:
    """How many columns a full-rank coding of `terms` has: 1 + the product of (levels - 1) per term."""
    return sum(math.prod(t.ok[f].nunique() - 1 for f in term.split(":")) for term in terms)


def _term_row(table: pd.DataFrame, term: str, total: float) -> dict:
    ss, dof = float(table.at[term, "sum_sq"]), int(round(float(table.at[term, "df"])))
    F, p = float(table.at[term, "F"]), float(table.at[term, "PR(>F)"])
    return {"share": max(ss, 0.0) / total if total else math.nan, "ss": max(ss, 0.0), "df": dof,
            "F": F if dof else math.nan, "p": p if dof else math.nan}


def setting_importance(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Each varying setting's share of the variance across all trials, ranked (eta squared).

    The sum of squares is statsmodels' type II (`anova_lm(typ=2)` on `ols` with every setting and every
    interaction the design can estimate): what the setting adds to a model of every term that does not
    contain it. In a balanced full factorial the shares, interactions and seed noise add up to 100%; in
    an unbalanced design (a grid with `include`/`exclude`, a race, failed trials) a share is the
    setting's effect after the others and the shares need not add up. F and p test the setting against
    the model's residual (seed-to-seed noise, plus what the model's terms leave out); NaN with one seed.
    Columns: rank, setting, levels, share, ss, df, F, p.
    """
    metric = metric or selection_metric(df)
    t = _trials(df, metric)
    y = t.ok[metric].to_numpy()
    total = float(((y - y.mean()) ** 2).sum())
    table = _anova(t, metric)
    rows = [{"setting": f, "levels": t.ok[f].nunique(), **_term_row(table, f, total)} for f in t.settings]
    table = pd.DataFrame(rows, columns=["setting", "levels", "share", "ss", "df", "F", "p"])
    table = table.sort_values("share", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def main_effects(df: pd.DataFrame, metric: str | None = None, setting: str | None = None) -> pd.DataFrame:
    """The mean metric at each level of each setting, with a 95% CI, settings in order of importance.

    The interval uses the pooled seed-to-seed SD (df = trials - configurations), as a factorial
    ANOVA does, cut to the values the metric can take; it is NaN with one seed. Level means average every
    trial at that level, so in an unbalanced design they mix other settings: `level_contrasts` compares
    like with like.
    Columns: setting, rank, share, level, n_configs, n_trials, mean, ci_low, ci_high.
    """
    metric = metric or selection_metric(df)
    t = _trials(df, metric, setting)
    spread = seed_spread(df, metric)
    importance = setting_importance(df, metric).set_index("setting")
    low, high = bounds(metric)
    rows = []
    for f in importance.index if setting is None else [setting]:
        for level in _ordered(t.ok[f]):
            values = t.ok.loc[t.ok[f] == level]
            mean, n = float(values[metric].mean()), len(values)
            half = float(half_width(spread["sd"], spread["df"], n))
            rows.append({"setting": f, "rank": importance.at[f, "rank"], "share": importance.at[f, "share"],
                         "level": level, "n_configs": values["_config"].nunique(), "n_trials": n,
                         "mean": mean, "ci_low": max(mean - half, low), "ci_high": min(mean + half, high)})
    return pd.DataFrame(rows, columns=["setting", "rank", "share", "level", "n_configs", "n_trials", "mean",
                                       "ci_low", "ci_high"])


# ---------------------------------------------------------------- comparisons

def _contrast(pairs: list[tuple[pd.Series, pd.Series]], alpha: float = ALPHA, margin: float | None = None) -> dict:
    """A - B averaged over matched cells (series of the metric by seed), with a CI and p-value.

    The interval is at level 1 - alpha; comparisons within a family pass their Holm level
    (`holm_levels`), so the interval excludes zero exactly when the Holm-corrected p is significant.
    With a `margin`, `p_equiv` is the p-value of two one-sided tests (TOST) that |A - B| < margin:
    the larger of the two one-sided t-tests against -margin and +margin.

    Paired t on the per-seed differences when every series has the same seeds; otherwise Welch's t
    with Welch-Satterthwaite degrees of freedom (for one cell, exactly scipy's equal_var=False).
    """
    testable = [(a, b) for a, b in pairs if len(a) >= 2 and len(b) >= 2]
    pairs = testable or pairs
    k = len(pairs)
    values = [(a.to_numpy(), b.to_numpy()) for a, b in pairs]
    out: dict[str, Any] = {"diff": float(np.mean([a.mean() - b.mean() for a, b in values])), "cells": k,
           "n_seeds": min(min(len(a), len(b)) for a, b in pairs), "test": "none", "df": math.nan, "se": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "p_equiv": math.nan, "sd": math.nan,
           "paired": False}
    if not testable:
        return out
    seeds = {tuple(s.index) for pair in pairs for s in pair}  # _by_seed sorts them
    if len(seeds) == 1 and len(set(next(iter(seeds)))) == len(next(iter(seeds))):
        d = sum(a - b for a, b in values) / k  # aligned on seed
        out.update(test="paired t", paired=True, sd=float(np.std(d, ddof=1)), df=len(d) - 1)
        se = out["sd"] / math.sqrt(len(d))
    else:
        arrays = [x for pair in values for x in pair]
        v = [np.var(x, ddof=1) / len(x) / k**2 for x in arrays]
        se = math.sqrt(sum(v))
        dof = sum(v) ** 2 / sum(vi**2 / (len(x) - 1) for vi, x in zip(v, arrays)) if se else math.nan
        out.update(test="Welch t", df=dof, sd=math.sqrt(np.mean([np.var(x, ddof=1) for x in arrays]) / k))
    out["se"] = se
    diff = out["diff"]
    if se == 0:  # seeds that change nothing: the difference is exact
        out.update(ci_low=diff, ci_high=diff, p=1.0 if diff == 0 else 0.0)
        if margin:
            out["p_equiv"] = 0.0 if abs(diff) < margin else 1.0
        return out
    half = float(t_quantile(out["df"], 1 - alpha / 2)) * se
    out.update(ci_low=diff - half, ci_high=diff + half, p=float(2 * special.stdtr(out["df"], -abs(diff) / se)))
    if margin:
        out["p_equiv"] = float(max(special.stdtr(out["df"], -(diff + margin) / se),
                                   special.stdtr(out["df"], (diff - margin) / se)))
    return out


def _verdict(r: dict, lower: bool, margin: float | None = None, alpha: float = ALPHA,
             equivalence_alpha: float = ALPHA) -> str:
    """better | worse | equivalent | unresolved (with a margin) or no detectable difference (without).

    Equivalence within the margin is said first: a difference that is real but smaller than the
    smallest one that matters is "equivalent", which is what a margin asks.
    """
    n = r["n_seeds"]
    if n < 2 or math.isnan(r["p_holm"]):
        return f"no interval with {n} seed{'s' if n != 1 else ''}"
    if margin and r.get("p_equiv_holm", math.nan) < equivalence_alpha:
        return "equivalent"
    if r["p_holm"] < alpha:
        return "better" if (r["diff"] < 0) == lower and r["diff"] != 0 else "worse"
    return f"unresolved at {n} seeds" if margin else f"no detectable difference at {n} seeds"


OPEN = ("no detectable", "unresolved")  # how an open verdict starts


def _against(groups: dict[str, dict[tuple, pd.Series]], ref: str, lower: bool,
             margin: float | None = None) -> list[dict]:
    """Every group against `ref`, matched on context. The family is every pair of groups, because the
    reference was picked as the best from the same data (best-versus-rest alone would find too much):
    Holm over its p-values, and each interval at its comparison's Holm level.

    With a `margin`, the equivalence tests' family is the comparisons with `ref` (Holm over them):
    picking the best makes the others look further from it, which works against equivalence, so the
    selection that needs every pair for "worse" does not for "equivalent".
    """
    matched = {}
    for a, b in combinations(groups, 2):
        if a == ref:
            a, b = b, a
        common = [c for c in groups[a] if c in groups[b]]
        matched[(a, b)] = [(groups[a][c], groups[b][c]) for c in common]
    results = {key: _contrast(pairs, margin=margin) if pairs else None for key, pairs in matched.items()}
    pvalues = [r["p"] if r else math.nan for r in results.values()]
    adjusted = dict(zip(results, holm(pvalues)))
    levels = dict(zip(results, holm_levels(pvalues)))
    against_ref = [key for key in results if key[1] == ref]
    p_equiv = [r["p_equiv"] if (r := results[k]) else math.nan for k in against_ref]
    equivalence = dict(zip(against_ref, holm(p_equiv)))
    equivalence_levels = dict(zip(against_ref, holm_levels(p_equiv)))
    rows = []
    for level in groups:
        if level == ref:
            continue
        r = results[(level, ref)]
        if r is None:
            rows.append({"level": level, "cells": 0, "verdict": "no configurations to match"})
            continue
        alpha = levels[(level, ref)] if not math.isnan(levels[(level, ref)]) else ALPHA
        r = {"level": level, **_contrast(matched[(level, ref)], alpha, margin), "p_holm": adjusted[(level, ref)],
             "p_equiv_holm": equivalence[(level, ref)] if margin else math.nan}
        r["verdict"] = _verdict(r, lower, margin)
        r["seeds_needed"] = None
        if r["verdict"].startswith(OPEN):  # seeds to settle the verdict still open: equivalence, or a difference
            eq_alpha = equivalence_levels[(level, ref)]
            r["seeds_needed"] = (equivalence_hint(r["diff"], r["sd"], margin, paired=r["paired"],
                                                  alpha=ALPHA if math.isnan(eq_alpha) else eq_alpha)
                                 if margin and abs(r["diff"]) < margin else
                                 power_hint(r["diff"], r["sd"], paired=r["paired"], alpha=alpha))
        rows.append(r)
    return rows


CONTRAST_COLUMNS = ["diff", "ci_low", "ci_high", "test", "se", "df", "p", "p_holm", "p_equiv", "p_equiv_holm",
                    "verdict", "n_seeds", "cells", "seeds_needed", "sd", "paired"]
IMPROVEMENT_COLUMNS = ["p_improve", "p_improve_low", "p_improve_high"]


def _by_seed(values: pd.DataFrame, metric: str) -> pd.Series:
    """The metric of one configuration's trials, indexed and sorted by seed."""
    return values.set_index("seed")[metric].sort_index() if "seed" in values.columns else values[metric]


def versus_best(values: dict[str, pd.Series], metric: str = SELECTION[0],
                margin: float | None = None) -> tuple[list[str], list[dict]]:
    """`compare_to_best`'s test on bare numbers: each configuration's metric by seed (a Series indexed
    by seed), best mean first. Returns the configurations best first, and one contrast row per other
    configuration (`level` names it; the contrast columns, `p_holm` Holm-adjusted over every pair and,
    with a `margin` in the metric's raw units, `p_equiv_holm` over the comparisons with the best).
    Racing calls this after every round; it skips building the tables around the test."""
    lower = lower_is_better(metric)
    means = {c: float(np.mean(v.to_numpy())) for c, v in values.items()}
    order = sorted(means, key=lambda c: means[c] if lower else -means[c])  # stable: ties keep their order
    groups = {c: {(): values[c] if values[c].index.is_monotonic_increasing else values[c].sort_index()}
              for c in order}
    return order, _against(groups, order[0], lower, margin)


def probability_of_improvement(best: pd.Series, other: pd.Series, lower: bool = False,
                               resamples: int = 2000) -> tuple[float, float, float]:
    """P(best > other) over seeds, with a 95% percentile bootstrap interval (`scipy.stats.bootstrap`).

    Paired by seed when both ran the same seeds (the share of seeds on which the best scored higher),
    else over every pair of runs (the Mann-Whitney probability); a tie counts one half, and "higher"
    means better (lower for losses and times). The bootstrap is seeded, so the interval is the same on
    every run; all NaN with fewer than 2 seeds a side.
    """
    from scipy.stats import bootstrap

    sign = -1.0 if lower else 1.0
    a, b = sign * best.to_numpy(float), sign * other.to_numpy(float)
    paired = len(a) == len(b) and list(best.index) == list(other.index) and best.index.is_unique

    def paired_stat(x, y, axis=-1):
        return np.mean((x > y) + 0.5 * (x == y), axis=axis)

    def unpaired_stat(x, y, axis=-1):
        x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
        return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))

    if min(len(a), len(b)) < 2:
        return math.nan, math.nan, math.nan
    stat = paired_stat if paired else unpaired_stat
    point = float(stat(a, b))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample (every seed the same way) is an answer here
        ci = bootstrap((a, b), stat, paired=paired, vectorized=True, n_resamples=resamples, method="percentile",
                       confidence_level=1 - ALPHA, rng=np.random.default_rng(0)).confidence_interval
    return point, float(ci.low), float(ci.high)


def scores_by_config(df: pd.DataFrame, metric: str | None = None) -> dict[str, pd.Series]:
    """Each configuration's finished values of the metric by seed, keyed by the label `compare_to_best`
    gives it ("activation=relu, kernel_l2=0")."""
    metric = metric or selection_metric(df)
    t = _trials(df, metric)
    return {c: _by_seed(g, metric) for c, g in t.ok.groupby("_config", sort=False)}


def compare_to_best(df: pd.DataFrame, metric: str | None = None, margin: float | None = None) -> pd.DataFrame:
    """The best configuration (by mean) against every other: difference, 95% CI, p-value and verdict.

    A row's `diff` is that configuration minus the best; its `verdict` says whether it is "better",
    "worse", "equivalent" (within `margin`, in the metric's raw units) or still open ("no detectable
    difference at n seeds" without a margin, "unresolved at n seeds" with one); lower is better for
    losses and times. Paired t on seed when both ran the same seeds, else Welch's t; Holm-corrected over
    every pair of configurations, each interval at its Holm level; equivalence by two one-sided tests,
    Holm over the comparisons with the best. `seeds_needed` is for the open verdict: the seeds to show
    equivalence when the difference is inside the margin, else to show the difference. `p_improve` is
    P(best > this one) over seeds with its bootstrap interval. The metric defaults to
    `selection_metric`: validation accuracy. Columns: rank, config, the settings, n, mean, mean_low,
    mean_high (the configuration's own 95% CI), then the contrast and improvement columns; best first.
    """
    metric = metric or selection_metric(df)
    t = _trials(df, metric)
    trials = dict(tuple(t.ok.groupby("_config", sort=False)))
    series = {c: _by_seed(g, metric) for c, g in trials.items()}
    order, against = versus_best(series, metric, margin)
    contrasts = {r["level"]: r for r in against}
    lower = lower_is_better(metric)
    rows = []
    for rank, config in enumerate(order, 1):
        values, first = series[config], trials[config].iloc[0]
        mean, _, low, high = mean_ci(values, bounds(metric))
        row = {"rank": rank, "config": config, **{f: first[f] for f in t.settings}, "n": len(values),
               "mean": mean, "mean_low": low, "mean_high": high}
        row.update(contrasts.get(config, {"diff": 0.0, "verdict": "best"}))
        row.pop("level", None)
        if rank > 1:
            row.update(zip(IMPROVEMENT_COLUMNS, probability_of_improvement(series[order[0]], values, lower)))
        rows.append(row)
    return pd.DataFrame(rows, columns=["rank", "config", *t.settings, "n", "mean", "mean_low", "mean_high",
                                       *CONTRAST_COLUMNS, *IMPROVEMENT_COLUMNS])


def _reference_level(ok: pd.DataFrame, f: str, contexts: list[str], metric: str, lower: bool) -> str:
    """The best level: best mean over the settings of the others at which every level was run."""
    cells = ok.groupby([f, *contexts], sort=False)[metric].mean().reset_index()
    if contexts:
        counts = cells.groupby(contexts)[f].transform("nunique")
        if (counts == ok[f].nunique()).any():
            cells = cells[counts == ok[f].nunique()]
    means = cells.groupby(f)[metric].mean()
    return means.idxmin() if lower else means.idxmax()


def level_contrasts(df: pd.DataFrame, metric: str | None = None, setting: str | None = None,
                    margin: float | None = None) -> pd.DataFrame:
    """Each level of each setting against that setting's best level, matching like with like.

    A difference averages over the settings of the other settings at which both levels were run
    (a paired t on seed when the seeds match, else Welch-Satterthwaite), so `kernel_l2` 0.02 vs 0
    compares only configurations that agree on everything else. Holm (p, and the level of each
    interval and `seeds_needed`) runs over every pair of levels of one setting; a `margin` adds the
    equivalence verdict as `compare_to_best` does. Columns: setting, level, reference, then the contrast
    columns.
    """
    metric = metric or selection_metric(df)
    t = _trials(df, metric, setting)
    lower = lower_is_better(metric)
    rows = []
    for f in t.settings if setting is None else [setting]:
        contexts = [g for g in t.settings if g != f]
        ref = _reference_level(t.ok, f, contexts, metric, lower)
        groups: dict[str, dict[tuple, pd.Series]] = {level: {} for level in _ordered(t.ok[f])}
        for (level, *context), values in t.ok.groupby([f, *contexts], sort=False):
            groups[level][tuple(context)] = _by_seed(values, metric)
        rows += [{"setting": f, "reference": ref, **r} for r in _against(groups, ref, lower, margin)]
    return pd.DataFrame(rows, columns=["setting", "level", "reference", *CONTRAST_COLUMNS])


def interactions(df: pd.DataFrame, metric: str | None = None, setting: str | None = None) -> dict:
    """Two-way tables of mean metric, {(a, b): DataFrame levels of a x levels of b}, for each pair of
    settings (with `setting` if given) where every combination of their levels has finished trials."""
    metric = metric or selection_metric(df)
    t = _trials(df, metric, setting)
    tables = {}
    for a, b in combinations(t.settings, 2):
        if setting not in (None, a, b):
            continue
        table = t.ok.pivot_table(index=a, columns=b, values=metric, aggfunc="mean")
        table = table.reindex(index=_ordered(t.ok[a]), columns=_ordered(t.ok[b]))
        if not table.isna().to_numpy().any():
            tables[(a, b)] = table
    return tables


def interaction_tests(df: pd.DataFrame, metric: str | None = None, setting: str | None = None) -> pd.DataFrame:
    """For each pair with a full two-way table: the interaction's share of variance and its F test
    (statsmodels' type II ANOVA, as `setting_importance`), Holm-corrected over the pairs."""
    metric = metric or selection_metric(df)
    t = _trials(df, metric, setting)
    y = t.ok[metric].to_numpy()
    total = float(((y - y.mean()) ** 2).sum())
    table = _anova(t, metric)
    rows = [{"a": a, "b": b, **_term_row(table, f"{a}:{b}", total)} for a, b in interactions(df, metric, setting)
            if f"{a}:{b}" in table.index and table.at[f"{a}:{b}", "df"] > 0]
    table = pd.DataFrame(rows, columns=["a", "b", "share", "ss", "df", "F", "p"])
    table["p_holm"] = holm(table["p"]) if len(table) else []
    return table
