"""Survival analysis: Kaplan–Meier against a hand computation, censoring, bootstrap ratios."""

import warnings

import numpy as np
import pandas as pd
import pytest

from gemrepro.analysis import survival


def test_kaplan_meier_matches_hand_computation_with_censoring():
    # failures at 1 and 3 ps, one survivor censored at 2 ps, one at 4 ps
    curve = survival.kaplan_meier([1.0, 2.0, 3.0, 4.0], [True, False, True, False])
    s = curve.set_index("time_ps")["survival"]
    assert s[1.0] == pytest.approx(3 / 4)
    assert s[2.0] == pytest.approx(3 / 4)  # censoring does not drop the curve
    assert s[3.0] == pytest.approx(3 / 4 * 1 / 2)  # 2 at risk at 3 ps, one fails
    assert np.all(curve["lower"] <= curve["survival"] + 1e-12)
    assert np.all(curve["upper"] >= curve["survival"] - 1e-12)


def test_stable_times_use_the_horizon_for_survivors():
    table = pd.DataFrame({"failed": [True, False], "time_to_failure_ps": [0.1, np.nan]})
    assert survival.stable_times(table, 0.25).tolist() == [0.1, 0.25]
    with pytest.raises(ValueError, match="horizon_ps"):
        survival.stable_times(table, 0.0)
    with pytest.raises(ValueError, match="finite"):
        survival.stable_times(pd.DataFrame({"failed": [True], "time_to_failure_ps": [np.nan]}), 1.0)


def test_survival_curves_per_group_end_at_the_horizon():
    table = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "failed": [True, True, False, True],
            "time_to_failure_ps": [0.1, 0.2, np.nan, 0.3],
        }
    )
    curves = survival.survival_curves(table, ["model"], horizon_ps=1.0)
    last = curves.groupby("model").tail(1).set_index("model")
    assert last.loc["a", "survival"] == pytest.approx(0.0)
    assert last.loc["b", "survival"] == pytest.approx(0.5)
    assert (last["time_ps"] == 1.0).all()


def test_bootstrap_ratio_brackets_the_point_estimate():
    rng = np.random.default_rng(1)
    slow, fast = rng.exponential(3.0, 200), rng.exponential(1.0, 200)
    est = survival.bootstrap_ratio(slow, fast, n_boot=500, seed=0)
    assert est.low < est.ratio < est.high
    assert 2.0 < est.ratio < 4.5
    again = survival.bootstrap_ratio(slow, fast, n_boot=500, seed=0)
    assert again == est  # seeded


def test_rank_correlation_sign_and_bad_input():
    corr = survival.rank_correlation([1, 2, 3, 4], [8, 6, 4, 2])
    assert corr.rho == pytest.approx(-1.0) and corr.n == 4
    with pytest.raises(ValueError, match="at least 3"):
        survival.rank_correlation([1, 2], [1, 2])


def test_survival_plot_draws_one_curve_per_group():
    import matplotlib

    matplotlib.use("Agg")
    from gemrepro.plots.survival import survival_plot

    table = pd.DataFrame(
        {"model": ["a", "a", "b"], "failed": [True, False, True], "time_to_failure_ps": [0.1, np.nan, 0.2]}
    )
    fig = survival_plot(survival.survival_curves(table, ["model"], 0.5), hue="model")
    assert len(fig.axes[0].get_legend().get_texts()) == 2


def test_coinciding_survival_curves_stay_at_their_height_and_stay_distinguishable():
    import matplotlib

    matplotlib.use("Agg")
    from gemrepro.plots.survival import survival_plot

    stable = pd.DataFrame({"train_size": [100, 100, 3200, 3200], "failed": False, "time_to_failure_ps": np.nan})
    fig = survival_plot(survival.survival_curves(stable, ["train_size"], 1.0), hue="train_size")
    lines = fig.axes[0].get_lines()
    assert [line.get_ydata()[0] for line in lines] == pytest.approx([1.0, 1.0])  # no curve is drawn lower than it is
    assert lines[0].get_linestyle() != lines[1].get_linestyle() and lines[0].get_linewidth() > lines[1].get_linewidth()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["100", "3,200"]


def test_rank_correlation_of_a_constant_sample_is_undefined_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corr = survival.rank_correlation([0.1, 0.2, 0.3], [5.0, 5.0, 5.0])
    assert np.isnan(corr.rho) and np.isnan(corr.p_value) and corr.n == 3
