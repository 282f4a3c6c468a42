"""Figures: what each one draws (lines per level, labels, annotations, values), not only that it draws."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from mnist_sweep.analysis import compare, stats
from mnist_sweep.report import figures as plots
from mnist_sweep.results.store import load_histories, load_results
from tests.fake_results import write_sweep

STATUSES = {1: "failed", 2: "diverged", 3: "running"}


@pytest.fixture
def mixed(tmp_path):
    """3 activations x 2 dropouts x 2 seeds, with a failed, a diverged and a running trial."""
    sweep = write_sweep(tmp_path, "mixed", statuses=STATUSES, ragged=True)
    return load_results(sweep), load_histories(sweep)


@pytest.fixture
def finished(mixed):
    summary, histories = mixed
    ok = summary[summary["status"] == "ok"]
    return ok, histories[histories["trial_id"].isin(ok["trial_id"])]


def _texts(fig: Figure) -> str:
    """Every piece of text on a figure: titles, labels, legends, annotations."""
    found = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and callable(a.get_text))]
    return "\n".join(t for t in found if isinstance(t, str))


def test_learning_curves_draw_one_line_per_level_in_each_labelled_panel(mixed, finished):
    summary, _ = mixed  # the whole summary keeps the config's order of levels
    fig = plots.learning_curves(summary, finished[1], "activation")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["training loss", "validation loss", "training accuracy",
                                                 "validation accuracy"]
    for ax in panels:
        assert len(ax.get_lines()) == 3  # relu, tanh, sigmoid
    assert [ax.get_xlabel() for ax in panels] == ["", "", "epoch", "epoch"]  # the top row shares the x axis
    assert panels[0].get_ylabel() == "training loss (cross-entropy)"
    assert panels[3].get_ylabel() == "validation accuracy (fraction correct)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["relu (n=3)", "tanh (n=2)", "sigmoid (n=4)"]
    assert fig.legends[0].get_title().get_text() == "activation"


def test_learning_curve_lines_are_the_mean_over_the_levels_trials(finished):
    summary, histories = finished
    fig = plots.learning_curves(summary, histories, "dropout")
    line = fig.axes[2].get_lines()[0]  # training accuracy, dropout 0.0
    ids = summary.loc[summary["dropout"] == 0.0, "trial_id"]
    expected = histories[histories["trial_id"].isin(ids) & (histories["epoch"] == 1)]["accuracy"].mean()
    assert line.get_label() == "0.0"
    assert line.get_ydata()[0] == pytest.approx(expected)


def test_learning_curves_switch_to_a_colour_bar_past_eight_levels(tmp_path):
    sweep = write_sweep(tmp_path, "wide", factors={"hidden": [str(16 * i) for i in range(1, 13)]}, seeds=1)
    summary, histories = load_results(sweep), load_histories(sweep)
    fig = plots.learning_curves(summary, histories, "hidden")
    assert not fig.legends
    colour_bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bar) == 1
    assert "hidden" in colour_bar[0].get_ylabel()
    assert all(len(ax.get_lines()) == 12 for ax in fig.axes if ax not in colour_bar)


def test_trial_history_writes_wall_time_and_best_validation_accuracy_on_the_figure(finished):
    summary, histories = finished
    row = summary.iloc[0]
    history = histories[histories["trial_id"] == row["trial_id"]]
    best = history.loc[history["val_accuracy"].idxmax()]
    fig = plots.trial_history(summary, histories, row["trial_id"])
    accuracy, loss = fig.axes
    assert [line.get_label() for line in accuracy.get_lines()][:2] == ["train", "validation"]
    assert accuracy.get_xlabel() == "epoch" and loss.get_ylabel() == "loss (cross-entropy)"
    note = accuracy.get_legend().get_title().get_text()
    assert f"wall time {row['wall_seconds']:.1f} s" in note
    assert f"best val accuracy {best['val_accuracy']:.4f} (epoch {int(best['epoch'])})" in note


def test_trial_history_of_a_running_trial_says_how_far_it_got(mixed):
    summary, histories = mixed
    running = summary[summary["status"] == "running"].iloc[0]
    fig = plots.trial_history(summary, histories, running["trial_id"])
    epochs = (histories["trial_id"] == running["trial_id"]).sum()
    assert f"running: {epochs} epochs" in fig.axes[0].get_legend().get_title().get_text()
    assert "[running]" in fig._suptitle.get_text()


def test_history_grid_has_one_titled_panel_per_trial(mixed):
    summary, histories = mixed
    drawable = summary[summary["trial_id"].isin(histories["trial_id"])]
    fig = plots.history_grid(drawable, histories)
    ax = fig.axes[0]
    train, val = [c for c in ax.collections if isinstance(c, LineCollection)][:2]
    assert len(train.get_segments()) == len(val.get_segments()) == len(drawable) == 11
    text = _texts(fig)
    assert "[running]" in text and "[diverged]" in text
    assert text.count("· best val ") == len(drawable)
    assert "Panel titles: activation · dropout · seed" in text


def test_wall_time_bars_are_sorted_and_labelled_by_trial(mixed):
    summary, _ = mixed
    fig = plots.wall_time(summary)
    times, per_epoch = fig.axes[:2]
    widths = [bar.get_width() for bar in times.patches]
    assert widths == sorted(widths) and len(widths) == summary["wall_seconds"].notna().sum()
    assert times.get_xlabel() == "wall time (s)" and per_epoch.get_xlabel() == "time per epoch (s)"
    assert "activation=" in times.get_yticklabels()[0].get_text()
    assert "group_seconds" not in fig._suptitle.get_text()


def test_figures_of_time_say_when_times_are_shared_by_a_fused_group(tmp_path):
    summary = load_results(write_sweep(tmp_path, "fused", group_seconds=True, seeds=1))
    for fig in (plots.wall_time(summary), plots.accuracy_vs_time(summary)):
        assert "shared within fused groups" in fig._suptitle.get_text()


def test_pareto_front_keeps_trials_nothing_beats_on_both_time_and_score():
    times = np.array([1.0, 2.0, 3.0, 4.0, 2.5])
    scores = np.array([0.5, 0.7, 0.6, 0.9, 0.8])
    assert plots.pareto_front(times, scores) == [0, 1, 4, 3]
    assert plots.pareto_front(times, scores, higher=False) == [0]


def test_accuracy_against_time_marks_the_front_and_labels_its_points(finished):
    summary, _ = finished
    fig = plots.accuracy_vs_time(summary, "test_accuracy")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "wall time per trial (s)"
    assert ax.get_ylabel() == "test accuracy (fraction correct)"
    front = plots.pareto_front(summary["wall_seconds"].to_numpy(), summary["test_accuracy"].to_numpy())
    best = summary.iloc[front[-1]]
    labels = [t.get_text() for t in ax.texts]
    assert f"activation={best['activation']}, dropout={best['dropout']}, seed {best['seed']}" in labels
    assert "Pareto front" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_point_labels_that_would_overlap_are_left_out():
    x, y = [1.0, 1.01, 5.0, 9.0], [0.90, 0.901, 0.95, 0.80]
    assert plots._uncrowded(x, y, [2, 0, 1, 3]) == [2, 0, 3]


def test_overfitting_gap_is_train_minus_validation_and_test_in_points(finished):
    summary, _ = finished
    fig = plots.overfitting_gap(summary)
    ax = fig.axes[0]
    val_bars = ax.containers[0]
    expected = sorted(100 * (summary["train_accuracy"] - summary["val_accuracy"]))
    assert sorted(bar.get_width() for bar in val_bars) == pytest.approx(expected)
    assert "percentage points" in ax.get_xlabel()


def _drawn_levels(ax) -> dict[str, tuple[float, float, float]]:
    """{level: (value, low, high)} of each marker on an effects panel, as drawn (no bar: low = high = value)."""
    drawn = {}
    for container in ax.containers:
        value = container.lines[0].get_ydata()[0]
        bars = container.lines[2]
        low, high = (min(bars[0].get_segments()[0][:, 1]), max(bars[0].get_segments()[0][:, 1])) if bars else (value,) * 2
        drawn[container.get_label()] = (value, low, high)
    return drawn


def _check_effects_match_compare(summary, fig, metric="test_accuracy", scale=100):
    """Every panel draws compare's matched differences and intervals; the best level sits at 0."""
    contrasts = compare.compare(summary, metric).contrasts
    panels = [ax for ax in fig.axes if ax.get_visible()]
    order = list(stats.setting_importance(summary, metric)["setting"])
    assert [ax.get_title() for ax in panels] == [f"by {f}" for f in order]
    for ax in panels:
        table = contrasts[contrasts["setting"] == ax.get_title().removeprefix("by ")].set_index("level")
        drawn = _drawn_levels(ax)
        assert drawn.pop(table["reference"].iloc[0]) == (0, 0, 0)
        matched = table[table["cells"] > 0]
        assert sorted(drawn) == sorted(matched.index)
        for level, (value, low, high) in drawn.items():
            row = matched.loc[level]
            if pd.isna(row["ci_low"]):  # one seed: no interval, no verdict
                assert [value, low, high] == pytest.approx([scale * row["diff"]] * 3)
                continue
            assert [value, low, high] == pytest.approx([scale * row[c] for c in ("diff", "ci_low", "ci_high")])
            # picture and verdict agree: the bar leaves 0 exactly when compare finds a difference
            assert (low > 0 or high < 0) == (row["verdict"] in ("better", "worse"))
    return panels


def test_setting_effects_draw_the_differences_compare_reports(mixed):
    summary, _ = mixed  # trials without test accuracy (failed, diverged, running) are left out
    fig = plots.setting_effects(summary, "test_accuracy")
    panels = _check_effects_match_compare(summary, fig)
    by_activation = next(ax for ax in panels if ax.get_title() == "by activation")
    assert [t.get_text().split("\n")[0] for t in by_activation.get_xticklabels()] == ["relu", "tanh", "sigmoid"]
    assert "Holm-adjusted 95% CI of each difference" in fig._suptitle.get_text()


def test_setting_effects_of_one_seed_draw_differences_without_intervals(tmp_path):
    summary = load_results(write_sweep(tmp_path, "once", seeds=1))
    fig = plots.setting_effects(summary)
    _check_effects_match_compare(summary, fig)
    assert all(low == value == high for ax in fig.axes if ax.get_visible()
               for value, low, high in _drawn_levels(ax).values())
    assert "no interval: a single seed per configuration" in fig._suptitle.get_text()


def unbalanced_sweep():
    """configs/regularization.yaml's shape: activation crossed with nothing, kernel_l2 0.02 run with relu only.

    relu is the best activation; kernel_l2 makes no difference. The plain mean of kernel_l2=0 mixes in
    the weaker sigmoid and tanh trials, so it sits well below 0.02's, though like for like they tie.
    """
    quality = {("relu", 0.0): 0.870, ("relu", 0.02): 0.871, ("tanh", 0.0): 0.84, ("sigmoid", 0.0): 0.80}
    noise = np.random.default_rng(1).normal(0, 0.004, (len(quality), 3))
    rows = [{"trial_id": f"{a}-{l2}-s{s}", "config_id": f"{a}-{l2}", "seed": s, "activation": a, "kernel_l2": l2,
             "status": "ok", "test_accuracy": q + noise[c, s], "val_accuracy": q + noise[c, s] + 0.001,
             "test_loss": 1 - q, "wall_seconds": 1.0}
            for c, ((a, l2), q) in enumerate(quality.items()) for s in range(3)]
    return pd.DataFrame(rows)


def test_in_an_unbalanced_sweep_the_effects_figure_agrees_with_compare():
    summary = unbalanced_sweep()
    plain = stats.main_effects(summary).set_index(["setting", "level"])["mean"]
    assert plain[("kernel_l2", "0.02")] - plain[("kernel_l2", "0")] > 0.02  # the misleading plain means
    fig = plots.setting_effects(summary)
    _check_effects_match_compare(summary, fig)
    by_l2 = next(ax for ax in fig.axes if ax.get_title() == "by kernel_l2")
    row = compare.compare(summary).contrasts.set_index("setting").loc["kernel_l2"]
    value, low, high = _drawn_levels(by_l2)[row["level"]]
    assert abs(value) < 0.5 and low < 0 < high  # like for like: a tie, as compare says
    assert row["verdict"].startswith("no detectable difference")


def test_learning_curves_band_is_the_ci_across_seeds(tmp_path):
    # 2 configurations x 3 seeds: each level is one configuration, so its band is the t-interval of its seeds.
    sweep = write_sweep(tmp_path, "pair", factors={"activation": ["relu", "tanh"]}, seeds=3)
    summary, histories = load_results(sweep), load_histories(sweep)
    fig = plots.learning_curves(summary, histories, "activation")
    accuracy = fig.axes[2]
    bands = [c for c in accuracy.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one per level
    ids = summary.loc[summary["activation"] == "relu", "trial_id"]
    first = histories[histories["trial_id"].isin(ids) & (histories["epoch"] == 1)]["accuracy"]
    mean, _, low, high = stats.mean_ci(first)
    outline = bands[0].get_paths()[0].vertices
    at_epoch_1 = outline[np.isclose(outline[:, 0], 1.0), 1]
    assert (at_epoch_1.min(), at_epoch_1.max()) == pytest.approx((low, high))
    assert "band: its 95% CI across seeds" in fig._suptitle.get_text()


def test_learning_curves_of_one_seed_have_no_band(tmp_path):
    sweep = write_sweep(tmp_path, "once", factors={"activation": ["relu", "tanh"]}, seeds=1)
    fig = plots.learning_curves(load_results(sweep), load_histories(sweep), "activation")
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert "no band: a single seed per configuration" in fig._suptitle.get_text()


def test_the_band_pools_the_seed_spread_within_configurations():
    # Level "a" holds two configurations; the band uses the SD within each, not the gap between them.
    rows = pd.DataFrame({"epoch": [1] * 6, "config_id": ["x"] * 3 + ["y"] * 3,
                         "accuracy": [0.50, 0.52, 0.54, 0.80, 0.82, 0.84]})
    mean, half = plots.seed_band(rows, "accuracy", ["config_id"])
    pooled = math.sqrt((2 * 0.02**2 + 2 * 0.02**2) / 4)  # 6 trials - 2 configurations = 4 df
    assert mean[1] == pytest.approx(0.67)
    assert half[1] == pytest.approx(2.776445 * pooled / math.sqrt(6), rel=1e-6)


def test_mean_ci_of_one_value_has_no_interval():
    mean, sd, low, high = stats.mean_ci([0.9])
    assert mean == 0.9 and math.isnan(sd) and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in stats.mean_ci([]))


def test_axis_labels_carry_units():
    assert plots.axis_label("val_accuracy") == "validation accuracy (fraction correct)"
    assert plots.axis_label("test_loss") == "test loss (cross-entropy)"
    assert plots.axis_label("wall_seconds") == "wall time (s)"


def test_level_styles_are_colour_blind_safe_and_differ_in_dash_too():
    colors, styles = plots.level_styles(5)
    assert colors == list(plots.PALETTE[:5])
    assert len(set(zip(colors, styles))) == 5 and len(set(styles)) > 1
    many, _ = plots.level_styles(20)
    assert len(many) == 20


def test_figures_accept_dataframes_a_notebook_built_itself():
    summary = pd.DataFrame({"trial_id": ["a", "b"], "seed": [0, 0], "optimizer": ["sgd", "adam"],
                            "status": ["ok", "ok"], "test_accuracy": [0.9, 0.95], "wall_seconds": [3.0, 5.0]})
    fig = plots.accuracy_vs_time(summary)
    assert isinstance(fig, Figure)
    assert {t.get_text() for t in fig.axes[0].texts} == {"optimizer=sgd", "optimizer=adam"}
