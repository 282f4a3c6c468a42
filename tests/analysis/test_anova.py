"""The ANOVA behind `compare` is statsmodels' (issue 25): our tables against `ols` + `anova_lm(typ=2)` and
`multipletests`, computed here directly, on a balanced, a raced (unbalanced) and a partly failed sweep."""

import itertools

import numpy as np
import pandas as pd
import pytest
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from mnist_sweep.analysis import stats


def _sweep(kind: str) -> pd.DataFrame:
    """Three settings of two levels, 3 seeds, real main effects, a two-way and a three-way interaction."""
    rng = np.random.default_rng(7)
    rows = []
    for c, (a, b, d) in enumerate(itertools.product(["relu", "tanh"], [0.0, 0.5], ["adam", "sgd"])):
        mean = (0.85 + 0.03 * (a == "relu") + 0.01 * (b == 0.5) + 0.02 * (a == "relu") * (d == "adam")
                + 0.015 * (a == "relu") * (b == 0.5) * (d == "sgd"))
        for s in range(3):
            rows.append({"sweep": "s", "trial_id": f"t{c}-{s}", "config_id": f"cfg{c}", "seed": s, "activation": a,
                         "dropout": b, "optimizer": d, "status": "ok", "val_accuracy": mean + rng.normal(0, 0.004)})
    frame = pd.DataFrame(rows)
    if kind == "raced":  # the worse configurations left the race after 2 seeds
        frame = frame[~((frame["activation"] == "tanh") & (frame["seed"] == 2))]
    if kind == "partly failed":
        frame.loc[[1, 9], "status"] = "failed"
        frame.loc[[4], ["status", "val_accuracy"]] = ["diverged", np.nan]
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("kind", ["balanced", "raced", "partly failed"])
def test_importance_and_interaction_tests_are_statsmodels_type_ii_tables(kind):
    frame = _sweep(kind)
    ok = frame[frame["status"] == "ok"].astype({"dropout": str})
    model = ols("val_accuracy ~ C(activation) + C(dropout) + C(optimizer) + C(activation):C(dropout)"
                " + C(activation):C(optimizer) + C(dropout):C(optimizer)", ok).fit()
    expected = anova_lm(model, typ=2)
    total = float(((ok["val_accuracy"] - ok["val_accuracy"].mean()) ** 2).sum())

    importance = stats.setting_importance(frame, "val_accuracy").set_index("setting")
    for setting in ("activation", "dropout", "optimizer"):
        row = expected.loc[f"C({setting})"]
        assert importance.loc[setting, "ss"] == pytest.approx(row["sum_sq"], rel=1e-9)
        assert importance.loc[setting, "share"] == pytest.approx(row["sum_sq"] / total, rel=1e-9)
        assert importance.loc[setting, "df"] == row["df"]
        assert importance.loc[setting, "F"] == pytest.approx(row["F"], rel=1e-9)
        assert importance.loc[setting, "p"] == pytest.approx(row["PR(>F)"], rel=1e-9)

    tests = stats.interaction_tests(frame, "val_accuracy")
    names = {("activation", "dropout"): "C(activation):C(dropout)", ("activation", "optimizer"):
             "C(activation):C(optimizer)", ("dropout", "optimizer"): "C(dropout):C(optimizer)"}
    assert len(tests) == 3
    for _, row in tests.iterrows():
        want = expected.loc[names[(row["a"], row["b"])]]
        assert row["ss"] == pytest.approx(want["sum_sq"], rel=1e-9) and row["F"] == pytest.approx(want["F"], rel=1e-9)
        assert row["p"] == pytest.approx(want["PR(>F)"], rel=1e-9)
    holm = multipletests(tests["p"], method="holm")[1]
    assert tests["p_holm"].to_numpy() == pytest.approx(holm, rel=1e-12)

