"""`mnist-sweep compare`: the tables of `stats.py` for one sweep, the findings they support in plain
sentences, and the report as text (rich tables, markdown or JSON).

Every number in a sentence is read from a table of the `CompareResult`; a sentence is written only
when its table says so.

Select on validation, confirm on test: the metric that chooses the best configuration and ranks the
others is the validation metric unless `--metric` says otherwise (`stats.selection_metric`), and the
test set's figure for the chosen configuration and for each setting's best level is reported beside
it, with its interval, as the confirmation. Choosing on the test set overstates the winner, and
`compare` says so when asked to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError, SweepError
from ..metrics import bounds, display_scale, lower_is_better, title
from ..metrics import get as get_metric
from ..results.store import find_sweeps, load_results, search_method
from .race import describe as describe_race, read_race
from .stats import (ALPHA, OPEN, compare_to_best, confirmation_metric, design, interaction_tests,
                    interactions, level_contrasts, main_effects, mean_ci, scores_by_config, seed_spread,
                    selection_metric, setting_importance)


# ---------------------------------------------------------------- numbers in words

def _percent(metric: str) -> bool:
    """Accuracies read in percent, their differences in points."""
    return get_metric(metric).kind == "accuracy"


def _bare(metric: str, value: float) -> str:
    """A number in display units without the unit: accuracies in percent (points), losses to 0.001."""
    digits = 1 if _percent(metric) else 3 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
    text = f"{value * (100 if _percent(metric) else 1):.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0"


def _amount(metric: str, value: float, signed: bool = False) -> str:
    text = _bare(metric, value)
    text = f"+{text}" if signed and value > 0 and text.strip("0.") else text
    return text + (" points" if _percent(metric) else " s" if get_metric(metric).kind == "time" else "")


def _value(metric: str, value: float) -> str:
    return f"{_bare(metric, value)}%" if _percent(metric) else _amount(metric, value)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _pct(share: float) -> str:
    return "under 1%" if 0 < share < 0.005 else f"{share:.0%}"


def _seeds(low: int, high: int) -> str:
    return f"{low} seed{'s' if low != 1 else ''}" if low == high else f"{low} to {high} seeds"


def _pair_clause(metric: str, a: str, b: str, r) -> str:
    """One comparison in words, from a contrast row whose diff is a - b."""
    diff, n = r["diff"], int(r["n_seeds"])
    a_wins = (diff < 0) if lower_is_better(metric) else (diff > 0)
    win, lose = (a, b) if a_wins else (b, a)
    lo, hi = sorted(np.sign(diff) * np.array([r["ci_low"], r["ci_high"]]))  # the interval of |diff|
    if r["verdict"] in ("better", "worse"):
        return (f"{win} beats {lose} by {_amount(metric, abs(diff))} (Holm-adjusted CI {_bare(metric, lo)} to "
                f"{_bare(metric, hi)}, {_p(r['p_holm'])}, {n} seeds)")
    if r["verdict"] == "equivalent":
        return (f"{a} and {b} are equivalent within the smallest difference ({_amount(metric, diff, signed=True)}, "
                f"two one-sided tests {_p(r['p_equiv_holm'])} Holm-adjusted, {n} seeds)")
    if str(r["verdict"]).startswith(OPEN):
        needed = r.get("seeds_needed")
        unresolved = str(r["verdict"]).startswith("unresolved")
        what = ("settle it (equivalent or not)" if unresolved else "resolve a difference of this size")
        hint = (f"; about {int(needed)} seeds per configuration would {what}"
                if needed is not None and pd.notna(needed) else "")
        head = "is unresolved" if unresolved else "shows no detectable difference"
        return (f"{a} vs {b} {head} ({_amount(metric, diff, signed=True)}, CI "
                f"{_bare(metric, r['ci_low'])} to {_bare(metric, r['ci_high'])}, {n} seeds{hint})")
    if diff == 0 or pd.isna(diff):
        return f"{a} and {b} tie"
    return f"{win} leads {lose} by {_amount(metric, abs(diff))} in single runs"


def _level_name(setting: str, level: str, levels) -> str:
    """Text levels read alone ("adam"); numbers need their setting ("kernel_l2=0.02")."""
    def numeric(text):
        try:
            float(text)
            return True
        except ValueError:
            return text in ("True", "False", "none")
    return f"{setting}={level}" if all(numeric(x) for x in levels) else level


def _setting_sentences(r: "CompareResult") -> list[str]:
    name = title(r.metric)
    sentences = []
    for _, f in r.importance.iterrows():
        if r.setting not in (None, f["setting"]):
            continue
        if pd.isna(f["share"]):  # no variance at all: every trial has the same value
            sentences.append(f"{f['setting']} makes no difference: every trial has the same {name}.")
            continue
        head = f"{f['setting']} explains {_pct(f['share'])} of the variance in {name}"
        head += f" ({_p(f['p'])})" if pd.notna(f["p"]) else ""
        rows = r.contrasts[(r.contrasts["setting"] == f["setting"]) & (r.contrasts["cells"] > 0)]
        levels = r.main_effects.loc[r.main_effects["setting"] == f["setting"], "level"]
        clauses = [_pair_clause(r.metric, _level_name(f["setting"], c["level"], levels),
                                _level_name(f["setting"], c["reference"], levels), c) for _, c in rows.iterrows()]
        confirm = next((c for c in r.confirmation.get("levels", []) if c["setting"] == f["setting"]), None)
        if confirm is not None:
            clauses.append(f"its best level, {_level_name(f['setting'], confirm['level'], levels)}, has "
                           f"{_confirmed(r, confirm)}")
        sentences.append("; ".join([head, *clauses]) + ".")
    return sentences


def _best_sentence(r: "CompareResult") -> str:
    name, table = title(r.metric), r.versus_best
    best, others = table.iloc[0], table.iloc[1:]
    if others.empty:
        return f"Only one configuration finished ({best['config']}): there is nothing to compare it with."
    if r.seeds[1] < 2:
        return (f"The best single run is {best['config']} ({name} {_value(r.metric, best['mean'])}); with 1 seed "
                f"per configuration this ranking of {len(table)} configurations may be seed noise.")
    interval = (f"95% CI {_bare(r.metric, best['mean_low'])} to {_bare(r.metric, best['mean_high'])}, "
                if pd.notna(best["mean_low"]) else "no interval, ")
    text = (f"The best configuration is {best['config']} ({name} {_value(r.metric, best['mean'])}, "
            f"{interval}{_seeds(int(best['n']), int(best['n']))})")
    if r.confirmation.get("best"):
        text += f"; as the confirmation, it has {_confirmed(r, r.confirmation['best'])}"
    untested = others["verdict"].astype(str).str.startswith("no interval")
    tested = others[~untested]
    if len(tested):
        text += f"; it beats {int((tested['verdict'] == 'worse').sum())} of {len(tested)} others"
    same = tested[tested["verdict"] == "equivalent"]
    if len(same) and r.margin is not None:  # an equivalent verdict needs a margin
        listed = "; ".join(same["config"].head(3)) + (f" and {len(same) - 3} more" if len(same) > 3 else "")
        text += (f", {len(same)} {'is' if len(same) == 1 else 'are'} equivalent to it within "
                 f"{_amount(r.metric, r.margin)} ({listed})")
    close = tested[tested["verdict"].astype(str).str.startswith(OPEN)]
    if len(close):
        listed = "; ".join(close["config"].head(3)) + (f" and {len(close) - 3} more" if len(close) > 3 else "")
        what = ("{} unresolved" if r.margin else "{} no detectable difference from it").format(
            ("is" if len(close) == 1 else "are") if r.margin else ("shows" if len(close) == 1 else "show"))
        text += f", and {len(close)} {what} ({listed})"
    improve = others.dropna(subset=["p_improve"]) if "p_improve" in others.columns else others.iloc[0:0]
    if len(improve):
        runner = improve.iloc[0]
        interval = (f", bootstrap CI {runner['p_improve_low']:.2f} to {runner['p_improve_high']:.2f}"
                    if pd.notna(runner["p_improve_low"]) else "")
        text += (f"; on a seed it beats the runner-up, {runner['config']}, with probability "
                 f"{runner['p_improve']:.2f}{interval}")
    if untested.any():
        n = int(untested.sum())
        text += (f"; {n} other{'s' if n != 1 else ''} cannot be tested against it (a side with fewer than 2 "
                 "finished seeds)")
    return text + "."


def _confirmed(r: "CompareResult", c: dict) -> str:
    """A test-set figure that confirms a choice: "test accuracy 87.3% (95% CI 86.9 to 87.6)"."""
    m = r.confirmation["metric"]
    interval = f" (95% CI {_bare(m, c['low'])} to {_bare(m, c['high'])})" if pd.notna(c["low"]) else ""
    return f"{title(m)} {_value(m, c['mean'])}{interval}"


TEST_CHOOSES = ("Choosing on the test set overstates the winner: the same test scores then pick it and score it. "
                "Compare on validation accuracy (the default) and read test accuracy as the confirmation.")


# ---------------------------------------------------------------- findings

def _design_sentence(r: "CompareResult") -> list[str]:
    """What a sampled sweep's design allows, said before any number."""
    if r.method in ("random", "qmc"):
        how = "random" if r.method == "random" else "quasi-random (Sobol)"
        return [f"This is a {how} search: {r.n_configs} configuration(s) drawn from the space, not a balanced "
                "design. It gives the best configuration and its comparison with the others, and each setting's "
                "share of the variance after the others (type II); a continuous setting has about one configuration "
                "per value, so its level comparisons say little: `mnist-sweep plot` draws the metric against "
                "each setting's value."]
    if r.method == "tpe":
        return ["This is a TPE (Bayesian) search: the sampler chose where to look from the results so far, so the "
                "configurations are neither balanced nor a random sample of the space. None of the significance "
                "tests across settings is given (no shares of variance, level comparisons or interactions: they "
                "would measure where TPE looked, not what the settings do); only the best configuration and, "
                "with 2 or more seeds, its comparison with the others. `mnist-sweep plot` draws best-so-far curves."]
    return []


def _findings(r: "CompareResult") -> list[str]:
    name = title(r.metric)
    n_ok = r.total - sum(r.excluded.values())
    if r.excluded:
        dropped = ", ".join(f"{n} {status}" for status, n in r.excluded.items())
        n_out = sum(r.excluded.values())
        out = [f"{n_ok} of {r.total} trials count: {n_out} {'was' if n_out == 1 else 'were'} excluded ({dropped})."]
    else:
        plural = "s" if r.n_configs != 1 else ""
        out = [f"{n_ok} trial{'s' if n_ok != 1 else ''}: {r.n_configs} configuration{plural} with "
               f"{_seeds(*r.seeds)} each."]
    if r.seeds[1] < 2:
        out.append("No interval can be given with 1 seed per configuration: the shares and rankings below come "
                   "from single runs; run 3 or more seeds (`seeds: 3`) to tell which differences are real.")
    if r.margin:
        out.append(f"The smallest difference that matters is {_amount(r.metric, r.margin)}: a configuration (or "
                   "level) within it of the best, by two one-sided tests, is equivalent; one that is neither "
                   "shown equivalent nor shown different is unresolved.")
    out = _design_sentence(r) + out + _setting_sentences(r)
    if r.metric.startswith("test_"):  # second, after the count of trials: what is being chosen on
        out.insert(1 + len(_design_sentence(r)), TEST_CHOOSES)
    out.append(_best_sentence(r))
    if pd.notna(r.spread["sd"]):
        share = f": {_pct(r.spread['share'])} of all the variance" if pd.notna(r.spread["share"]) else ""
        out.append(f"Seeds alone move {name} by an SD of {_amount(r.metric, r.spread['sd'])} within a "
                   f"configuration{share}.")
    tests = r.interaction_tests.dropna(subset=["p_holm"])
    for _, i in tests[tests["p_holm"] < ALPHA].iterrows():
        out.append(f"{i['a']} and {i['b']} interact: the interaction explains {_pct(i['share'])} of the variance "
                   f"({_p(i['p_holm'])}): the effect of {i['a']} depends on {i['b']} (see the two-way table).")
    if len(tests) and not (tests["p_holm"] < ALPHA).any():
        top = tests.loc[tests["share"].idxmax()]
        out.append(f"No detectable interaction ({len(tests)} pair{'s' if len(tests) != 1 else ''} tested; the "
                   f"largest, {top['a']} x {top['b']}, explains {_pct(top['share'])} of the variance).")
    if not r.balanced and len(r.importance) > 1:
        out.append("The design is unbalanced, so each share is the setting's effect after the others (type II) and "
                   "the shares need not add up to 100%; level comparisons pair only configurations that agree on "
                   "every other setting.")
    if r.seeds[1] >= 2 and r.n_configs > 1:
        out.append("p-values are paired (same seeds) or Welch t-tests across seeds, Holm-corrected over every pair "
                   "of configurations (or of a setting's levels); each interval of a difference is at the level "
                   "Holm judged it, so it excludes zero exactly when the verdict is better or worse.")
    return out


@dataclass
class CompareResult:
    """What `mnist-sweep compare` reports on one sweep: its tables, and the findings they support."""

    metric: str
    setting: str | None
    total: int  # every trial recorded
    excluded: dict[str, int]  # trials left out, by status
    n_configs: int
    seeds: tuple[int, int]  # fewest and most finished seeds of a configuration
    balanced: bool
    importance: pd.DataFrame  # setting_importance
    main_effects: pd.DataFrame
    contrasts: pd.DataFrame  # level_contrasts
    versus_best: pd.DataFrame  # compare_to_best
    interactions: dict  # two-way tables of means
    interaction_tests: pd.DataFrame
    spread: dict  # seed_spread
    findings: list[str] = field(default_factory=list)
    method: str = "grid"  # search.method of the sweep: grid, random, qmc or tpe
    margin: float | None = None  # the smallest difference that matters, raw units (None: no equivalence verdict)
    # The test set's figures for what the metric chose: {"metric", "best": {config, mean, low, high},
    # "levels": [{setting, level, mean, low, high}]}; empty when the metric is a test metric.
    confirmation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        def records(frame):
            return json.loads(frame.to_json(orient="records"))
        return {"metric": self.metric, "setting": self.setting, "trials": self.total, "excluded": self.excluded,
                "configurations": self.n_configs, "seeds": {"min": self.seeds[0], "max": self.seeds[1]},
                "balanced": self.balanced, "method": self.method, "findings": self.findings,
                "smallest_difference": None if self.margin is None else self.margin * display_scale(self.metric),
                "confirmation": json.loads(json.dumps(self.confirmation, default=_number_or_none)),
                "importance": records(self.importance), "main_effects": records(self.main_effects),
                "contrasts": records(self.contrasts), "versus_best": records(self.versus_best),
                "interactions": [{"settings": list(k), "means": json.loads(v.to_json(orient="index"))}
                                 for k, v in self.interactions.items()],
                "interaction_tests": records(self.interaction_tests),
                "seed_spread": {k: (None if pd.isna(v) else v) for k, v in self.spread.items()}}


def _number_or_none(value):
    return None if pd.isna(value) else float(value)


def sweep_margin(results, metric: str) -> float | None:
    """The sweep's `smallest_difference` (sweep.yaml), when it is in this metric's units: it is given for the
    race metric (validation accuracy by default), so it carries over to metrics of the same kind."""
    import yaml

    if isinstance(results, pd.DataFrame):
        return None
    try:
        sweeps = find_sweeps(results)
        config = yaml.safe_load((sweeps[0] / "sweep.yaml").read_text(encoding="utf-8")) if len(sweeps) == 1 else None
    except (OSError, yaml.YAMLError, SweepError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get("smallest_difference"), (int, float)):
        return None
    race_metric = config.get("race_metric") or "val_accuracy"
    same_kind = get_metric(race_metric).kind == get_metric(metric).kind
    return float(config["smallest_difference"]) if same_kind else None


def _confirmation(df: pd.DataFrame, metric: str, versus_best: pd.DataFrame, contrasts: pd.DataFrame,
                  setting: str | None) -> dict:
    """The test set's figures for the configuration and the levels `metric` chose (see the module's note)."""
    confirm = confirmation_metric(metric)
    if confirm is None or confirm not in df.columns or df[confirm].isna().all() or versus_best.empty:
        return {}
    best = versus_best.iloc[0]["config"]
    values = scores_by_config(df, confirm).get(best, pd.Series(dtype=float))
    mean, _, low, high = mean_ci(values, bounds(confirm))
    out: dict[str, Any] = {"metric": confirm, "best": {"config": best, "mean": mean, "low": low, "high": high},
                           "levels": []}
    if len(contrasts) and "reference" in contrasts.columns:
        effects = main_effects(df, confirm, setting).set_index(["setting", "level"])
        for f, ref in contrasts.drop_duplicates("setting")[["setting", "reference"]].itertuples(index=False):
            if (f, ref) in effects.index:
                e = effects.loc[(f, ref)]
                out["levels"].append({"setting": f, "level": ref, "mean": float(e["mean"]),
                                      "low": float(e["ci_low"]), "high": float(e["ci_high"])})
    return out


def compare(results, metric: str | None = None, setting: str | None = None,
            damaged: list | None = None, method: str | None = None,
            smallest_difference: float | None = None) -> CompareResult:
    """Rank the settings, test the best configuration against the rest, and state the findings.

    `results` is one sweep's directory or its `load_results` DataFrame; `metric` chooses and ranks
    (default: validation accuracy, `stats.selection_metric`; the test figure is the confirmation);
    `setting` narrows the per-setting tables and sentences to one setting; `smallest_difference` (in
    the metric's units as printed: points for accuracies; default: the sweep's own) adds the
    equivalence verdict; damaged files left out go to `damaged`. `method` is the sweep's search.method
    (read from its directory when not given): a tpe sweep gets no tests across settings.
    """
    df = results if isinstance(results, pd.DataFrame) else load_results(results, damaged)
    if "sweep" in df.columns and df["sweep"].nunique() > 1:
        names = sorted(df["sweep"].unique())
        where = f"{results}/" if not isinstance(results, pd.DataFrame) else ""
        raise OptionError("RESULTS", f"the results hold {len(names)} sweeps ({', '.join(names)}); compare one at "
                                     f"a time, e.g. mnist-sweep compare {where}{names[0]}")
    metric = metric or selection_metric(df)
    if smallest_difference is None:
        smallest_difference = sweep_margin(results, metric)
    margin = None if smallest_difference is None else smallest_difference / display_scale(metric)
    if method is None:
        sweeps = [] if isinstance(results, pd.DataFrame) else find_sweeps(results)
        method = search_method(sweeps[0]) if len(sweeps) == 1 else "grid"
    versus_best = compare_to_best(df, metric, margin)
    if method == "tpe":  # where TPE looked is not a design: no tests across settings
        empty = pd.DataFrame(columns=["setting", "level", "reference", "cells", "share", "p", "rank", "levels"])
        result = CompareResult(
            metric=metric, setting=setting, **design(df, metric, setting), importance=empty, main_effects=empty,
            contrasts=empty, versus_best=versus_best, interactions={},
            interaction_tests=pd.DataFrame(columns=["a", "b", "share", "p_holm"]), spread=seed_spread(df, metric),
            method=method, margin=margin)
    else:
        result = CompareResult(
            metric=metric, setting=setting, **design(df, metric, setting),
            importance=setting_importance(df, metric), main_effects=main_effects(df, metric, setting),
            contrasts=level_contrasts(df, metric, setting, margin), versus_best=versus_best,
            interactions=interactions(df, metric, setting), interaction_tests=interaction_tests(df, metric, setting),
            spread=seed_spread(df, metric), method=method, margin=margin)
    result.confirmation = _confirmation(df, metric, versus_best, result.contrasts, setting)
    result.findings = _findings(result)
    race = read_race(results) if not isinstance(results, pd.DataFrame) else None
    if race is not None:
        result.findings.append(describe_race(race))
    return result


def findings(results, metric: str | None = None, setting: str | None = None,
             smallest_difference: float | None = None) -> list[str]:
    """The plain sentences of `compare`: what the numbers in its tables say (chosen on validation by default)."""
    return compare(results, metric, setting, smallest_difference=smallest_difference).findings


# ---------------------------------------------------------------- rendering

def _interval(metric: str, low: float, high: float) -> str:
    return "" if pd.isna(low) else f"{_bare(metric, low)} to {_bare(metric, high)}"


def _mean_cell(metric: str, mean: float, low: float, high: float, signed: bool = False) -> str:
    text = _amount(metric, mean, signed).removesuffix(" points").removesuffix(" s")
    return text + (f" ({_interval(metric, low, high)})" if pd.notna(low) else "")


def _p_cell(p: float) -> str:
    return "" if pd.isna(p) else _p(p).removeprefix("p = ").replace("p < ", "<")


def _contrast_cells(metric: str, r) -> list[str]:
    """difference (CI), p, verdict (its seed count has a column of its own), seeds needed."""
    needed, diff = r.get("seeds_needed"), r["diff"]
    if r.get("verdict") == "best":
        return ["", "", "best", ""]
    return [_mean_cell(metric, diff, r["ci_low"], r["ci_high"], signed=True) if pd.notna(diff) else "",
            _p_cell(r["p_holm"]), str(r["verdict"]).split(" at ")[0],
            str(int(needed)) if needed is not None and pd.notna(needed) else ""]


def _improvement_cell(r) -> str:
    """P(best > this one) over seeds, with its bootstrap interval."""
    p = r.get("p_improve")
    if p is None or pd.isna(p):
        return ""
    return f"{p:.2f}" + (f" ({r['p_improve_low']:.2f} to {r['p_improve_high']:.2f})" if pd.notna(r["p_improve_low"])
                         else "")


def _sections(r: CompareResult) -> list[tuple[str, pd.DataFrame]]:
    """The report's tables as (title, DataFrame of display strings)."""
    m, name = r.metric, title(r.metric)
    unit = " (accuracy in %, differences in points)" if _percent(m) else ""
    tail = ["difference (Holm-adjusted CI)", "p (Holm)", "verdict", "seeds needed"]
    sections = [(f"Settings ranked by share of the variance in {name}", pd.DataFrame(
        [[str(f["rank"]), f["setting"], str(f["levels"]), _pct(f["share"]) if pd.notna(f["share"]) else "",
          _p_cell(f["p"])] for _, f in r.importance.iterrows()],
        columns=["rank", "setting", "levels", "share", "p"]))]
    mixed = "" if r.balanced else "; unbalanced, so a level's mean mixes the other settings"
    sections.append((f"Mean {name} per level{unit}{mixed}", pd.DataFrame(
        [[e["setting"], e["level"], str(e["n_configs"]), str(e["n_trials"]), _bare(m, e["mean"]),
          _interval(m, e["ci_low"], e["ci_high"])] for _, e in r.main_effects.iterrows()],
        columns=["setting", "level", "configs", "trials", "mean", "95% CI"])))
    sections.append((f"Each level against its setting's best, matched on the other settings{unit}", pd.DataFrame(
        [[c["setting"], c["level"], c["reference"], str(c["n_seeds"]) if c["cells"] else "", *_contrast_cells(m, c)]
         for _, c in r.contrasts.iterrows()], columns=["setting", "level", "vs", "seeds", *tail])))
    margin = f"; equivalent means within {_amount(m, r.margin)}" if r.margin else ""
    sections.append((f"The best configuration against every other{unit}{margin}", pd.DataFrame(
        [[b["config"], str(b["n"]), _mean_cell(m, b["mean"], b["mean_low"], b["mean_high"]), *_contrast_cells(m, b),
          _improvement_cell(b)] for _, b in r.versus_best.iterrows()],
        columns=["configuration", "seeds", "mean (95% CI)", *tail, "P(best > it) (95% CI)"])))
    if r.confirmation:
        c, shown = r.confirmation, r.confirmation["metric"]
        chosen = [["configuration", c["best"]["config"], _bare(m, r.versus_best.iloc[0]["mean"]),
                   _mean_cell(shown, c["best"]["mean"], c["best"]["low"], c["best"]["high"])]]
        chosen += [[f"best level of {e['setting']}", e["level"],
                    _bare(m, float(r.main_effects.set_index(["setting", "level"]).loc[(e["setting"], e["level"]),
                                                                                    "mean"])),
                    _mean_cell(shown, e["mean"], e["low"], e["high"])] for e in c["levels"]
                   if (e["setting"], e["level"]) in set(zip(r.main_effects["setting"], r.main_effects["level"]))]
        sections.append((f"Chosen by {name}, confirmed on the test set{unit}", pd.DataFrame(
            chosen, columns=["chosen", "which", f"{name}", f"{title(shown)} (95% CI)"])))
    for (a, b), table in r.interactions.items():
        shown = table.apply(lambda col: col.map(lambda v: _bare(m, v)))
        shown.columns = [f"{b}={c}" for c in shown.columns]
        sections.append((f"Mean {name}: {a} x {b}", shown.rename_axis(a).reset_index()))
    return sections


def render(result: CompareResult, fmt: str = "table", width: int | None = None) -> str:
    """The compare report as text: rich tables ("table"), "markdown", or "json"."""
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2)
    sections = _sections(result)
    if fmt == "markdown":
        lines = ["## Findings", "", *(f"- {s}" for s in result.findings)]
        for title, frame in sections:
            if frame.empty:
                continue
            lines += ["", f"### {title}", "", "| " + " | ".join(frame.columns) + " |",
                      "|" + "---|" * len(frame.columns)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
        return "\n".join(lines) + "\n"
    import io
    import shutil

    from rich.console import Console
    from rich.table import Table

    width = width or max(shutil.get_terminal_size((120, 24)).columns, 100)
    text = io.StringIO()
    console = Console(file=text, width=width, soft_wrap=False)
    console.print("[bold]Findings[/bold]")
    for sentence in result.findings:
        console.print(f" - {sentence}", highlight=False, markup=False)
    for title, frame in sections:
        if frame.empty:
            continue
        table = Table(title=title, title_justify="left")
        for column in frame.columns:
            table.add_column(str(column), ratio=3 if column == "configuration" else None)
        for row in frame.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        console.print()
        console.print(table)
    return text.getvalue()
