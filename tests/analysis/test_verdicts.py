"""Verdicts a reviewer would accept (issue 25): choose on validation and confirm on test, equivalence
within the smallest difference that matters, and the probability of improvement. Nothing is trained."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.analysis import compare, stats
from mnist_sweep.cli import cli
from mnist_sweep.results.store import load_results
from tests.fake_results import write_sweep


def _rewrite(sweep, frame):
    """Replace a fake sweep's summary with `frame` (its trial records stay as written)."""
    frame.drop(columns="sweep").to_csv(sweep / "summary.csv", index=False)


@pytest.fixture
def disagree(tmp_path):
    """relu is best on validation, tanh on the test set: what chooses decides the winner."""
    sweep = write_sweep(tmp_path, "disagree", factors={"activation": ["relu", "tanh", "sigmoid"]}, seeds=4)
    frame = load_results(sweep)
    rng = np.random.default_rng(3)
    val = {"relu": 0.90, "tanh": 0.86, "sigmoid": 0.80}
    test = {"relu": 0.84, "tanh": 0.92, "sigmoid": 0.80}
    for name in val:
        rows = frame["activation"] == name
        frame.loc[rows, "val_accuracy"] = val[name] + rng.normal(0, 0.002, rows.sum())
        frame.loc[rows, "test_accuracy"] = test[name] + rng.normal(0, 0.002, rows.sum())
    _rewrite(sweep, frame)
    return sweep


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_compare_chooses_on_validation_and_shows_the_test_figure_beside_it(disagree):
    result = run("compare", disagree, "--format", "markdown")
    assert result.exit_code == 0, result.output
    best = next(line for line in result.output.splitlines() if "The best configuration is" in line)
    assert best.startswith("- The best configuration is activation=relu (validation accuracy 90.0%")
    assert re.search(r"as the confirmation, it has test accuracy 8[34]\.\d% \(95% CI 8[34]\.\d to 8[34]\.\d\)", best)
    assert re.search(r"\| configuration \| activation=relu \| 90\.0 \| 8[34]\.\d \(", result.output)  # the table
    assert "overstates the winner" not in result.output
    assert compare.findings(disagree)[2] == best.removeprefix("- ")  # the Python API: the same choice


def test_compare_on_the_test_set_still_works_and_says_in_one_line_that_it_overstates_the_winner(disagree):
    result = run("compare", disagree, "--metric", "test_accuracy", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert re.search(r"- The best configuration is activation=tanh \(test accuracy 9[12]\.\d%", result.output)
    warning = [line for line in result.output.splitlines() if "overstates the winner" in line]
    assert warning == ["- Choosing on the test set overstates the winner: the same test scores then pick it and "
                       "score it. Compare on validation accuracy (the default) and read test accuracy as the "
                       "confirmation."]


def test_show_and_the_report_name_the_validation_choice_too(disagree):
    shown = run("show", disagree, "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[1].split(",")[1] == "relu"  # first row: the validation best
    from mnist_sweep.report import html

    findings = html.render_findings(load_results(disagree), disagree)  # the findings report.html starts with
    assert "The best configuration is activation=relu (validation accuracy 90.0%" in findings
    assert f"<code>mnist-sweep compare {disagree}</code>" in findings


def _pairs(cells, seeds=6):
    """A summary with `cells` {activation: (mean, sd)} of validation accuracy, paired seeds, fixed draws."""
    rng = np.random.default_rng(11)
    rows = [{"sweep": "s", "trial_id": f"{a}-{s}", "config_id": a, "seed": s, "activation": a, "status": "ok",
             "val_accuracy": mean + rng.normal(0, sd)} for a, (mean, sd) in cells.items() for s in range(seeds)]
    return pd.DataFrame(rows)


def test_every_verdict_is_better_worse_equivalent_or_unresolved_with_a_margin():
    frame = _pairs({"relu": (0.900, 0.001), "elu": (0.8995, 0.001), "sigmoid": (0.80, 0.001),
                    "tanh": (0.895, 0.02)})
    table = stats.compare_to_best(frame, margin=0.01).set_index("activation")
    assert table.loc["relu", "verdict"] == "best"
    assert table.loc["elu", "verdict"] == "equivalent" and table.loc["elu", "p_equiv_holm"] < 0.05
    assert table.loc["sigmoid", "verdict"] == "worse"
    assert table.loc["tanh", "verdict"] == "unresolved at 6 seeds" and table.loc["tanh", "seeds_needed"] > 6
    plain = stats.compare_to_best(frame).set_index("activation")  # without a margin: no equivalence
    assert plain.loc["elu", "verdict"] == "no detectable difference at 6 seeds"


def test_the_cli_margin_is_in_points_and_the_sweeps_own_is_the_default(tmp_path):
    sweep = write_sweep(tmp_path, "close", factors={"activation": ["relu", "elu"]}, seeds=6)
    frame = load_results(sweep)
    rng = np.random.default_rng(5)
    frame["val_accuracy"] = 0.9 + rng.normal(0, 0.001, len(frame))
    _rewrite(sweep, frame)
    plain = json.loads(run("compare", sweep, "--format", "json").output)
    assert plain["smallest_difference"] is None and plain["versus_best"][1]["verdict"].startswith("no detectable")
    margin = json.loads(run("compare", sweep, "--smallest-difference", "1.0", "--format", "json").output)
    assert margin["smallest_difference"] == 1.0 and margin["versus_best"][1]["verdict"] == "equivalent"
    assert any("equivalent to it within 1.0 points" in s for s in margin["findings"])
    config = yaml.safe_load((sweep / "sweep.yaml").read_text())
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({**config, "smallest_difference": 1.0}))
    own = json.loads(run("compare", sweep, "--format", "json").output)
    assert own["smallest_difference"] == 1.0 and own["versus_best"][1]["verdict"] == "equivalent"
    tiny = json.loads(run("compare", sweep, "--smallest-difference", "0.01", "--format", "json").output)
    assert tiny["versus_best"][1]["verdict"] == "unresolved at 6 seeds"  # the option wins over the sweep's


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "lots"])
def test_a_bad_smallest_difference_is_refused_before_anything_is_read(tmp_path, value):
    result = run("compare", tmp_path / "nowhere", "--smallest-difference", value)
    assert result.exit_code == 2
    assert "Error: Invalid value for '--smallest-difference'" in result.output and value in result.output


@pytest.mark.parametrize("value, message", [
    (0, "smallest_difference: expected a positive number"),
    ("one", "smallest_difference: expected a positive number"),
    (float("nan"), "smallest_difference: expected a positive number"),
    (150, "smallest_difference: is in points of accuracy (1.0 = one percentage point): it must be under 100"),
])
def test_a_bad_smallest_difference_in_a_config_is_a_config_error(tmp_path, value, message):
    from tests.helpers import tiny_config

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_config(seeds={"min": 2, "max": 4}, smallest_difference=value)))
    result = run("run", path, "--dry-run", "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_probability_of_improvement_is_paired_by_seed_with_a_bootstrap_interval_in_table_and_json(tmp_path):
    best = pd.Series([0.90, 0.91, 0.92, 0.93], index=[0, 1, 2, 3])
    other = pd.Series([0.89, 0.92, 0.91, 0.92], index=[0, 1, 2, 3])  # the best wins on 3 of 4 seeds
    p, low, high = stats.probability_of_improvement(best, other)
    assert p == 0.75 and 0 <= low <= 0.75 <= high <= 1
    assert stats.probability_of_improvement(best, other) == (p, low, high)  # seeded: the same every time
    unpaired = stats.probability_of_improvement(best, other.set_axis([4, 5, 6, 7]))
    assert unpaired[0] == pytest.approx(9.5 / 16)  # every pair of runs: 8 wins and 3 ties of 16
    assert math.isnan(stats.probability_of_improvement(best.iloc[:1], other.iloc[:1])[0])
    sweep = write_sweep(tmp_path, "three", factors={"activation": ["relu", "tanh", "sigmoid"]}, seeds=4)
    data = json.loads(run("compare", sweep, "--format", "json").output)
    runner = data["versus_best"][1]
    assert 0 <= runner["p_improve_low"] <= runner["p_improve"] <= runner["p_improve_high"] <= 1
    table = run("compare", sweep, "--format", "markdown").output
    assert "P(best > it) (95% CI)" in table and f"{runner['p_improve']:.2f} (" in table
