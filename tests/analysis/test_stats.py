"""Tests for the statistics behind `mnist-sweep compare`: hand-computed values on tiny synthetic tables,
agreement with scipy, and simulations of the error rates the verdicts promise. Nothing is trained."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from mnist_sweep.analysis import compare, stats
from mnist_sweep.cli import cli
from mnist_sweep.errors import OptionError
from tests.fake_results import write_sweep

T1 = 12.706205  # t quantile 0.975 with 1 df
T2 = 4.302653  # t quantile 0.975 with 2 df
T4 = 2.776445  # with 4 df


def trials(cells, metric="test_accuracy", seeds=None, status=None):
    """A summary DataFrame: `cells` maps a tuple of settings to the metric of each seed."""
    names = list(cells.pop("_factors"))
    rows = []
    for c, (levels, values) in enumerate(cells.items()):
        for i, value in enumerate(values):
            seed = seeds[c][i] if seeds else i
            rows.append({"sweep": "synthetic", "trial_id": f"t{c}-{seed}", "config_id": f"cfg{c}", "seed": seed,
                         **dict(zip(names, levels)), "status": "ok", metric: value})
    frame = pd.DataFrame(rows)
    for index, value in (status or {}).items():
        frame.loc[index, "status"] = value
    return frame


def two_by_two():
    """A balanced 2x2 with 2 seeds; SS: A 72, B 32, AxB 8, seeds 8, total 120 (worked out by hand)."""
    return trials({"_factors": ("a", "b"), ("a1", "b1"): [1, 3], ("a1", "b2"): [3, 5], ("a2", "b1"): [5, 7],
                   ("a2", "b2"): [11, 13]}, metric="test_loss")


def regularization_like():
    """Not crossed, like configs/regularization.yaml: kernel_l2 varies only with relu."""
    return trials({"_factors": ("activation", "kernel_l2"), ("relu", 0.0): [0.88, 0.89, 0.90],
                   ("tanh", 0.0): [0.85, 0.86, 0.87], ("relu", 0.05): [0.85, 0.86, 0.88]})


# ---------------------------------------------------------------- small pieces

def test_mean_ci_matches_the_t_interval_by_hand():
    mean, sd, low, high = stats.mean_ci([0.80, 0.82, 0.84])
    assert (mean, sd) == pytest.approx((0.82, 0.02))
    assert (low, high) == pytest.approx((0.82 - T2 * 0.02 / math.sqrt(3), 0.82 + T2 * 0.02 / math.sqrt(3)))
    assert math.isnan(stats.mean_ci([0.9])[2])


def test_holm_matches_a_hand_example_and_keeps_nan():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4 0.02, x3 0.03, x2 0.06, x1 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.02, math.nan, 0.5])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.5)


@pytest.mark.parametrize("diff, paired, seeds", [(1.0, False, 17), (0.8, False, 26), (0.5, False, 64),
                                                 (0.5, True, 34)])
def test_power_hint_matches_cohens_tables(diff, paired, seeds):
    assert stats.power_hint(diff, 1.0, paired=paired) == seeds


def test_power_hint_says_nothing_without_a_difference_or_when_hopeless():
    assert stats.power_hint(0.0, 1.0) is None
    assert stats.power_hint(1.0, math.nan) is None
    assert stats.power_hint(0.001, 1.0) is None  # more than MAX_SEEDS_HINT


# ---------------------------------------------------------------- summaries

def test_summarize_configs_groups_seeds_and_counts_the_excluded():
    frame = trials({"_factors": ("optimizer",), ("sgd",): [0.80, 0.82, 0.84, 0.10], ("adam",): [0.9, 0.9, 0.93]},
                   status={3: "failed"})
    frame["wall_seconds"] = [10.0, 12.0, 14.0, 1.0, 20.0, 20.0, 20.0]
    summary = stats.summarize_configs(frame, ["test_accuracy", "wall_seconds"]).set_index("optimizer")
    half = T2 * 0.02 / math.sqrt(3)
    assert summary.loc["sgd", ["n_seeds", "n_excluded"]].tolist() == [3, 1]
    assert summary.loc["sgd", "test_accuracy_mean"] == pytest.approx(0.82)
    assert summary.loc["sgd", ["test_accuracy_ci_low", "test_accuracy_ci_high"]].tolist() == pytest.approx(
        [0.82 - half, 0.82 + half])
    assert summary.loc["sgd", ["wall_seconds_mean", "wall_seconds_sd"]].tolist() == pytest.approx([12.0, 2.0])
    assert summary.loc["adam", "test_accuracy_sd"] == pytest.approx(np.std([0.9, 0.9, 0.93], ddof=1))


def test_intervals_stay_within_what_the_metric_can_be():
    """Two seeds at 97.8% and 98.9% give a t-interval reaching past 100%: it is cut at 100%, and losses at 0."""
    frame = trials({"_factors": ("optimizer",), ("sgd",): [0.978, 0.989], ("adam",): [0.5, 0.52]})
    frame["test_loss"] = [0.02, 0.09, 1.0, 1.1]
    summary = stats.summarize_configs(frame, ["test_accuracy", "test_loss"]).set_index("optimizer")
    assert 0.9835 + T1 * 0.0055 > 1  # the uncut interval would reach past 100%
    assert summary.loc["sgd", "test_accuracy_ci_high"] == 1.0
    assert summary.loc["sgd", "test_accuracy_ci_low"] == pytest.approx(0.9835 - T1 * 0.0055)
    assert summary.loc["sgd", "test_loss_ci_low"] == 0.0
    best = stats.compare_to_best(frame).set_index("optimizer")
    assert best.loc["sgd", "mean_high"] == 1.0
    effects = stats.main_effects(frame).set_index("level")
    assert (effects["ci_high"] <= 1.0).all() and (effects["ci_low"] >= 0.0).all()


def test_summarize_configs_rejects_an_unknown_metric():
    with pytest.raises(OptionError, match='no metric "test_acc".*did you mean "test_accuracy"'):
        stats.summarize_configs(regularization_like(), ["test_acc"])


# ---------------------------------------------------------------- settings

def test_setting_importance_of_a_balanced_2x2_matches_the_anova_by_hand():
    table = stats.setting_importance(two_by_two(), "test_loss").set_index("setting")
    assert table.loc["a", ["rank", "ss", "df", "F"]].tolist() == pytest.approx([1, 72, 1, 36])  # MSE = 8/4
    assert table.loc["a", "share"] == pytest.approx(72 / 120)
    assert table.loc["b", "share"] == pytest.approx(32 / 120)
    assert table.loc["a", "p"] == pytest.approx(2 * sps.t.sf(6, 4))  # F(1, 4) = t(4) squared
    spread = stats.seed_spread(two_by_two(), "test_loss")
    assert (spread["sd"], spread["df"], spread["share"]) == pytest.approx((math.sqrt(2), 4, 8 / 120))


def test_main_effects_give_level_means_with_the_pooled_seed_interval():
    effects = stats.main_effects(two_by_two(), "test_loss").set_index(["setting", "level"])
    assert effects.loc[("a", "a1"), ["mean", "n_trials", "n_configs"]].tolist() == [3, 4, 2]
    half = T4 * math.sqrt(2) / 2  # pooled SD sqrt(8/4), 4 trials, 4 df
    assert effects.loc[("a", "a1"), ["ci_low", "ci_high"]].tolist() == pytest.approx([3 - half, 3 + half])
    assert effects.loc[("b", "b2"), "mean"] == 8
    assert list(effects.reset_index()["setting"].unique()) == ["a", "b"]  # most important first


def test_interactions_give_the_two_way_table_and_its_test():
    (pair, table), = stats.interactions(two_by_two(), "test_loss").items()
    assert pair == ("a", "b") and table.to_numpy().tolist() == [[2, 4], [6, 12]]
    test = stats.interaction_tests(two_by_two(), "test_loss").iloc[0]
    assert (test["ss"], test["share"], test["F"]) == pytest.approx((8, 8 / 120, 4))


def test_an_unbalanced_design_uses_type_ii_and_matches_like_with_like():
    frame = regularization_like()
    result = compare.compare(frame)
    assert not result.balanced and result.interactions == {}  # no full activation x kernel_l2 table
    # kernel_l2 after activation: only the two relu configurations differ, n/2 * (difference of means)^2
    ss = 1.5 * (0.89 - np.mean([0.85, 0.86, 0.88])) ** 2
    assert result.importance.set_index("setting").loc["kernel_l2", "ss"] == pytest.approx(ss)
    contrast = result.contrasts.set_index("setting").loc["kernel_l2"]
    assert (contrast["level"], contrast["reference"], contrast["test"]) == ("0.05", "0", "paired t")
    assert contrast["diff"] == pytest.approx(np.mean([0.85, 0.86, 0.88]) - 0.89)  # tanh left out
    assert contrast["p"] == pytest.approx(sps.ttest_rel([0.85, 0.86, 0.88], [0.88, 0.89, 0.90]).pvalue)
    assert any("unbalanced" in sentence for sentence in result.findings)


# ---------------------------------------------------------------- comparisons

def test_welch_against_the_best_matches_scipy():
    best, other = [0.91, 0.93, 0.92, 0.95], [0.88, 0.90, 0.85, 0.91, 0.89]
    frame = trials({"_factors": ("optimizer",), ("adam",): best, ("sgd",): other},
                   seeds=[[0, 1, 2, 3], [0, 1, 2, 3, 4]])
    row = stats.compare_to_best(frame).iloc[1]
    expected = sps.ttest_ind(other, best, equal_var=False)
    interval = expected.confidence_interval()
    assert (row["config"], row["test"]) == ("optimizer=sgd", "Welch t")
    assert row[["diff", "p", "df", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [np.mean(other) - np.mean(best), expected.pvalue, expected.df, interval.low, interval.high])
    assert row["verdict"] == ("worse" if expected.pvalue < 0.05 else "no detectable difference at 4 seeds")


def test_matched_seeds_are_paired_and_match_scipy():
    best, other = [0.91, 0.93, 0.92, 0.95, 0.90], [0.90, 0.915, 0.905, 0.94, 0.89]
    row = stats.compare_to_best(trials({"_factors": ("optimizer",), ("adam",): best, ("sgd",): other})).iloc[1]
    expected = sps.ttest_rel(other, best)
    assert row["test"] == "paired t"
    assert row[["p", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [expected.pvalue, *expected.confidence_interval()])
    assert row["verdict"] == "worse"  # a small but consistent difference: pairing finds it


def test_lower_is_better_for_losses_and_holm_runs_over_every_pair():
    frame = trials({"_factors": ("optimizer",), ("adam",): [0.30, 0.31, 0.29], ("sgd",): [0.50, 0.52, 0.49],
                    ("rmsprop",): [0.305, 0.31, 0.30]}, metric="test_loss")
    table = stats.compare_to_best(frame, "test_loss")
    assert table["config"].tolist() == ["optimizer=adam", "optimizer=rmsprop", "optimizer=sgd"]
    assert table["verdict"].tolist() == ["best", "no detectable difference at 3 seeds", "worse"]
    pairs = {(a, b): sps.ttest_rel(frame.loc[frame.optimizer == a, "test_loss"],
                                   frame.loc[frame.optimizer == b, "test_loss"]).pvalue
             for a, b in [("rmsprop", "adam"), ("sgd", "adam"), ("sgd", "rmsprop")]}
    adjusted = dict(zip(pairs, stats.holm(list(pairs.values()))))
    assert table["p_holm"].tolist()[1:] == pytest.approx([adjusted[("rmsprop", "adam")], adjusted[("sgd", "adam")]])
    assert table.loc[1, "seeds_needed"] > 3
    result = compare.compare(frame, "test_loss")
    sgd = result.contrasts.set_index("level").loc["sgd"]  # sgd - adam: positive, and worse
    sentence = next(s for s in result.findings if s.startswith("optimizer"))
    assert sgd["verdict"] == "worse" and 0 < sgd["ci_low"] < sgd["diff"] < sgd["ci_high"]
    assert (f"adam beats sgd by {sgd['diff']:.3f} (Holm-adjusted CI {sgd['ci_low']:.3f} to {sgd['ci_high']:.3f}, "
            f"p < 0.001, 3 seeds)") in sentence and sgd["p_holm"] < 0.001


def _verdicts(rng, effect, configs=4, seeds=5):
    values = rng.normal(0.9, 0.01, size=(configs, seeds))
    values[0] += effect
    frame = trials({"_factors": ("optimizer",), **{(f"o{c}",): list(values[c]) for c in range(configs)}})
    return stats.compare_to_best(frame)["verdict"].tolist()[1:]


def test_null_effects_are_found_at_most_at_the_stated_rate():
    # The best of 4 identical configurations is picked from the data; Holm over all pairs keeps the chance
    # of any "better"/"worse" at or below 5% (best-versus-rest alone gives about 5.5% here, 8.5% with 8).
    rng = np.random.default_rng(0)
    draws = [_verdicts(rng, 0.0) for _ in range(200)]
    false = sum(any(v in ("better", "worse") for v in verdicts) for verdicts in draws)
    assert false / len(draws) <= 0.08


def test_a_large_effect_is_found_in_nearly_all_draws():
    rng = np.random.default_rng(1)
    draws = [_verdicts(rng, 0.04, configs=2) for _ in range(200)]  # 4 SDs
    assert sum(verdicts == ["worse"] for verdicts in draws) / len(draws) >= 0.95


# ---------------------------------------------------------------- compare and findings

def test_findings_quote_the_numbers_of_the_tables():
    frame = trials({"_factors": ("optimizer", "kernel_l2"),
                    ("adam", 0.0): [0.950, 0.955, 0.948], ("adam", 0.02): [0.951, 0.950, 0.954],
                    ("sgd", 0.0): [0.890, 0.887, 0.893], ("sgd", 0.02): [0.889, 0.893, 0.886]})
    result = compare.compare(frame)
    optimizer = next(s for s in result.findings if s.startswith("optimizer explains"))
    row = result.contrasts.set_index("setting").loc["optimizer"]
    share = result.importance.set_index("setting").loc["optimizer", "share"]
    assert optimizer.startswith(f"optimizer explains {share:.0%} of the variance in test accuracy")
    assert (f"adam beats sgd by {-row['diff'] * 100:.1f} points (Holm-adjusted CI {-row['ci_high'] * 100:.1f} to "
            f"{-row['ci_low'] * 100:.1f}, p < 0.001, 3 seeds)") in optimizer
    l2 = next(s for s in result.findings if s.startswith("kernel_l2 explains"))
    assert "shows no detectable difference" in l2 and "3 seeds" in l2
    assert result.balanced and result.excluded == {}


def test_one_seed_ranks_but_gives_no_interval():
    frame = trials({"_factors": ("optimizer",), ("adam",): [0.95], ("sgd",): [0.89], ("rmsprop",): [0.94]})
    result = compare.compare(frame)
    assert any("No interval can be given with 1 seed per configuration" in s for s in result.findings)
    assert result.versus_best["config"].tolist() == ["optimizer=adam", "optimizer=rmsprop", "optimizer=sgd"]
    assert result.versus_best["p"].isna().all() and result.importance["share"].iloc[0] == pytest.approx(1.0)
    assert result.versus_best["verdict"].iloc[1] == "no interval with 1 seed"


def test_a_best_configuration_with_one_finished_seed_gets_no_made_up_interval():
    frame = trials({"_factors": ("optimizer",), ("adam",): [0.95, float("nan")], ("sgd",): [0.89, 0.88]},
                   status={1: "failed"})
    sentence = next(s for s in compare.findings(frame) if s.startswith("The best"))
    assert sentence == ("The best configuration is optimizer=adam (test accuracy 95.0%, no interval, 1 seed); "
                        "1 other cannot be tested against it (a side with fewer than 2 finished seeds).")


def test_a_metric_every_trial_shares_has_no_variance_to_explain():
    frame = trials({"_factors": ("optimizer",), ("adam",): [8, 8, 8], ("sgd",): [8, 8, 8]}, metric="epochs_run")
    sentences = compare.findings(frame, "epochs_run")
    assert "optimizer makes no difference: every trial has the same epochs run." in sentences
    assert not any("nan" in s for s in sentences)


def test_failed_trials_are_excluded_and_counted():
    frame = trials({"_factors": ("optimizer",), ("adam",): [0.95, 0.94, 0.96], ("sgd",): [0.89, 0.88, float("nan")]},
                   status={0: "failed", 5: "running"})
    result = compare.compare(frame)
    assert result.excluded == {"failed": 1, "running": 1} and result.seeds == (2, 2)
    assert result.findings[0] == "4 of 6 trials count: 2 were excluded (1 failed, 1 running)."
    assert result.versus_best["test"].iloc[1] == "Welch t"  # seeds 1, 2 against 0, 1


def test_compare_refuses_a_folder_of_several_sweeps():
    frame = pd.concat([regularization_like(), regularization_like().assign(sweep="other")])
    with pytest.raises(OptionError, match="2 sweeps"):
        compare.compare(frame)


# ---------------------------------------------------------------- the command

def test_compare_command_reports_a_sweep_on_disk(tmp_path):
    sweep = write_sweep(tmp_path, "demo", seeds=3, statuses={1: "failed"})
    result = CliRunner().invoke(cli, ["compare", str(sweep)])
    assert result.exit_code == 0, result.output
    assert "17 of 18 trials count: 1 was excluded (1 failed)." in result.output
    assert "activation explains" in result.output and "The best configuration against every other" in result.output
    data = json.loads(CliRunner().invoke(cli, ["compare", str(sweep), "--format", "json", "--factor", "dropout"]).output)
    assert data["excluded"] == {"failed": 1} and {e["setting"] for e in data["main_effects"]} == {"dropout"}
    markdown = CliRunner().invoke(cli, ["compare", str(sweep), "--format", "markdown"]).output
    assert markdown.startswith("## Findings\n") and "| configuration | seeds |" in markdown


@pytest.mark.parametrize("args, message", [
    (["--metric", "test_acc"], 'Error: --metric: unknown metric "test_acc" (did you mean "test_accuracy"?)'),
    (["--factor", "activaton"], 'Error: --factor: "activaton" is not a setting of this sweep (did you mean '
                                '"activation"?); settings that vary: activation, dropout'),
])
def test_compare_command_rejects_bad_options_with_exit_2(tmp_path, args, message):
    sweep = write_sweep(tmp_path, "demo", seeds=2)
    result = CliRunner().invoke(cli, ["compare", str(sweep), *args])
    assert result.exit_code == 2 and message in result.output


def test_compare_command_has_help_with_an_example():
    result = CliRunner().invoke(cli, ["compare", "--help"])
    assert result.exit_code == 0 and "mnist-sweep compare results/regularization" in result.output


def test_importing_the_cli_loads_no_statistics():
    code = "import sys, mnist_sweep.cli; print(sorted({'pandas', 'scipy', 'mnist_sweep.analysis.stats'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_holm_levels_are_the_step_down_levels_and_stop_at_the_first_kept_test():
    from mnist_sweep.analysis.stats import holm_levels

    # Sorted p: 0.001 (rejected at .05/4), 0.013 (rejected at .05/3), 0.03 (kept at .05/2: stop), 0.04.
    levels = holm_levels([0.03, 0.001, 0.04, 0.013])
    assert levels.tolist() == pytest.approx([0.025, 0.0125, 0.025, 0.05 / 3])


def test_every_verdict_agrees_with_its_interval():
    """'better' or 'worse' exactly when the interval excludes zero, over many noisy synthetic sweeps."""
    from mnist_sweep.analysis.stats import compare_to_best

    rng = np.random.default_rng(3)
    for draw in range(40):
        rows = [{"trial_id": f"c{c}s{s}", "config_id": f"c{c}", "seed": s, "lr": c, "status": "ok",
                 "test_accuracy": 0.9 + 0.004 * c * (draw % 3) + rng.normal(0, 0.005)}
                for c in range(5) for s in range(4)]
        table = compare_to_best(pd.DataFrame(rows))
        for _, r in table.iloc[1:].iterrows():
            excludes_zero = r["ci_low"] > 0 or r["ci_high"] < 0
            assert excludes_zero == (r["verdict"] in ("better", "worse")), r.to_dict()
