"""`mnist-sweep compare`: the tables of `stats.py` for one sweep, the findings they support in plain
sentences, and the report as text (rich tables, markdown or JSON).

Every number in a sentence is read from a table of the `CompareResult`; a sentence is written only
when its table says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..metrics import get as get_metric
from ..metrics import lower_is_better, title
from .race import describe as describe_race, read_race
from .stats import (ALPHA, compare_to_best, design, interaction_tests, interactions, level_contrasts, main_effects,
                    seed_spread, setting_importance)
from ..results.store import find_sweeps, load_results, search_method


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
    if str(r["verdict"]).startswith("no detectable"):
        needed = r.get("seeds_needed")
        hint = (f"; about {int(needed)} seeds per configuration would resolve a difference of this size"
                if needed is not None and pd.notna(needed) else "")
        return (f"{a} vs {b} shows no detectable difference ({_amount(metric, diff, signed=True)}, CI "
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
    text = (f"The best configuration is {best['config']} ({name} {_value(r.metric, best['mean'])}, {interval}"
            f"{_seeds(int(best['n']), int(best['n']))})")
    untested = others["verdict"].astype(str).str.startswith("no interval")
    tested = others[~untested]
    if len(tested):
        text += f"; it beats {int((tested['verdict'] == 'worse').sum())} of {len(tested)} others"
    close = tested[tested["verdict"].astype(str).str.startswith("no detectable")]
    if len(close):
        listed = "; ".join(close["config"].head(3)) + (f" and {len(close) - 3} more" if len(close) > 3 else "")
        text += f", and {len(close)} show{'s' if len(close) == 1 else ''} no detectable difference from it ({listed})"
    if untested.any():
        n = int(untested.sum())
        text += (f"; {n} other{'s' if n != 1 else ''} cannot be tested against it (a side with fewer than 2 "
                 "finished seeds)")
    return text + "."


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
    out = _design_sentence(r) + out + _setting_sentences(r)
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

    def to_dict(self) -> dict:
        def records(frame):
            return json.loads(frame.to_json(orient="records"))
        return {"metric": self.metric, "setting": self.setting, "trials": self.total, "excluded": self.excluded,
                "configurations": self.n_configs, "seeds": {"min": self.seeds[0], "max": self.seeds[1]},
                "balanced": self.balanced, "method": self.method, "findings": self.findings,
                "importance": records(self.importance), "main_effects": records(self.main_effects),
                "contrasts": records(self.contrasts), "versus_best": records(self.versus_best),
                "interactions": [{"settings": list(k), "means": json.loads(v.to_json(orient="index"))}
                                 for k, v in self.interactions.items()],
                "interaction_tests": records(self.interaction_tests),
                "seed_spread": {k: (None if pd.isna(v) else v) for k, v in self.spread.items()}}


def compare(results, metric: str = "test_accuracy", setting: str | None = None,
            damaged: list | None = None, method: str | None = None) -> CompareResult:
    """Rank the settings, test the best configuration against the rest, and state the findings.

    `results` is one sweep's directory or its `load_results` DataFrame; `setting` narrows the
    per-setting tables and sentences to one setting; damaged files left out go to `damaged`.
    `method` is the sweep's search.method (read from its directory when not given): a tpe sweep
    gets no tests across settings.
    """
    df = results if isinstance(results, pd.DataFrame) else load_results(results, damaged)
    if "sweep" in df.columns and df["sweep"].nunique() > 1:
        names = sorted(df["sweep"].unique())
        where = f"{results}/" if not isinstance(results, pd.DataFrame) else ""
        raise OptionError("RESULTS", f"the results hold {len(names)} sweeps ({', '.join(names)}); compare one at "
                                     f"a time, e.g. mnist-sweep compare {where}{names[0]}")
    if method is None:
        sweeps = [] if isinstance(results, pd.DataFrame) else find_sweeps(results)
        method = search_method(sweeps[0]) if len(sweeps) == 1 else "grid"
    if method == "tpe":  # where TPE looked is not a design: no tests across settings
        empty = pd.DataFrame(columns=["setting", "level", "reference", "cells", "share", "p", "rank", "levels"])
        result = CompareResult(
            metric=metric, setting=setting, **design(df, metric, setting), importance=empty, main_effects=empty,
            contrasts=empty, versus_best=compare_to_best(df, metric), interactions={},
            interaction_tests=pd.DataFrame(columns=["a", "b", "share", "p_holm"]), spread=seed_spread(df, metric),
            method=method)
    else:
        result = CompareResult(
            metric=metric, setting=setting, **design(df, metric, setting),
            importance=setting_importance(df, metric), main_effects=main_effects(df, metric, setting),
            contrasts=level_contrasts(df, metric, setting), versus_best=compare_to_best(df, metric),
            interactions=interactions(df, metric, setting), interaction_tests=interaction_tests(df, metric, setting),
            spread=seed_spread(df, metric), method=method)
    result.findings = _findings(result)
    race = read_race(results) if not isinstance(results, pd.DataFrame) else None
    if race is not None:
        result.findings.append(describe_race(race))
    return result


def findings(results, metric: str = "test_accuracy", setting: str | None = None) -> list[str]:
    """The plain sentences of `compare`: what the numbers in its tables say."""
    return compare(results, metric, setting).findings


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
    sections.append((f"The best configuration against every other{unit}", pd.DataFrame(
        [[b["config"], str(b["n"]), _mean_cell(m, b["mean"], b["mean_low"], b["mean_high"]), *_contrast_cells(m, b)]
         for _, b in r.versus_best.iterrows()], columns=["configuration", "seeds", "mean (95% CI)", *tail])))
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
    console = Console(file=io.StringIO(), width=width, soft_wrap=False)
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
    return console.file.getvalue()
