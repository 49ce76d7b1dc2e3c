"""Two arms of models: nested intervals, the stratified log-rank test, power, the same-MAE offset, the design rules."""

import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import logrank_test

from gemrepro.analysis import arms


def test_unstratified_logrank_matches_lifelines(arm_trajectories):
    table = arm_trajectories({"scratch": [3.0], "pretrained": [9.0]}, n_md=40, seed=3)
    ours = arms.stratified_logrank(table, "pretrained", "scratch")
    a, b = (table[table["arm"] == name] for name in ("pretrained", "scratch"))
    theirs = logrank_test(a["stable_time_ps"], b["stable_time_ps"], a["failed"], b["failed"])
    assert ours.statistic == pytest.approx(theirs.test_statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-9)
    assert ours.observed < ours.expected  # the longer-lived arm fails less than equal hazards predict


def test_stratification_sums_the_strata(arm_trajectories):
    table = arm_trajectories({"scratch": [2.0, 8.0], "pretrained": [4.0, 16.0]}, n_md=30, seed=1)
    both = arms.stratified_logrank(table, "pretrained", "scratch")
    parts = [arms.stratified_logrank(g, "pretrained", "scratch") for _, g in table.groupby("training_seed")]
    assert both.n_strata == 2
    assert both.observed == pytest.approx(sum(p.observed for p in parts))
    assert both.expected == pytest.approx(sum(p.expected for p in parts))


def test_no_failure_gives_p_one(arm_trajectories):
    table = arm_trajectories({"scratch": [1e6], "pretrained": [1e6]}, n_md=5, horizon=1.0)
    assert not table["failed"].any()
    assert arms.stratified_logrank(table, "pretrained", "scratch").p_value == 1.0


def test_nested_ratio_finds_a_real_effect_and_none_where_there_is_none(arm_trajectories):
    effect = arm_trajectories({"scratch": [2.0, 2.5, 3.0], "pretrained": [8.0, 9.0, 10.0]}, horizon=100.0)
    ratio = arms.nested_median_ratio(effect, "pretrained", "scratch", n_boot=500)
    assert ratio.low > 1.5 and ratio.low <= ratio.ratio <= ratio.high
    null = arm_trajectories({"scratch": [3.0, 3.0, 3.0], "pretrained": [3.0, 3.0, 3.0]}, horizon=100.0, seed=5)
    ratio = arms.nested_median_ratio(null, "pretrained", "scratch", n_boot=500)
    assert ratio.low < 1.0 < ratio.high


def test_nested_interval_is_wider_than_one_that_ignores_the_training_seeds(arm_trajectories):
    # Models of one arm differ a lot: trajectories of one model are not independent evidence.
    table = arm_trajectories({"scratch": [1.0, 4.0, 16.0], "pretrained": [2.0, 8.0, 32.0]}, n_md=32, horizon=1e3)
    nested = arms.nested_median_ratio(table, "pretrained", "scratch", n_boot=800)
    flat = arms.nested_median_ratio(table.assign(training_seed=range(len(table))), "pretrained", "scratch", n_boot=800)
    assert (nested.high - nested.low) > 1.3 * (flat.high - flat.low)


def test_detectable_ratio_falls_with_more_trajectories_and_is_inf_without_failures(arm_trajectories):
    control = arm_trajectories({"scratch": [4.0, 5.0, 6.0]}, n_md=16, horizon=20.0)
    few = arms.detectable_ratio(control, "scratch", 20.0, n_models=3, n_trajectories=4, n_sim=60)
    many = arms.detectable_ratio(control, "scratch", 20.0, n_models=3, n_trajectories=32, n_sim=60)
    assert many < few
    survivors = arm_trajectories({"scratch": [1e9, 1e9, 1e9]}, n_md=4, horizon=1.0)
    assert arms.detectable_ratio(survivors, "scratch", 1.0, n_models=3, n_trajectories=16, n_sim=5) == np.inf


def _family(offset: float, seed: int = 0) -> pd.DataFrame:
    """Stability falls as a power of force MAE, the same law for both families, shifted by ``offset``."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, errors, factor in (("scratch", (0.08, 0.05, 0.03), 1.0), ("pretrained", (0.06, 0.04, 0.025), offset)):
        for size, mae in zip((50, 150, 450), errors):
            for training_seed in range(3):
                m = mae * float(np.exp(rng.normal(0, 0.05)))
                t = factor * 0.5 * m**-1.5 * float(np.exp(rng.normal(0, 0.1)))
                rows.append(
                    {
                        "arm": arm,
                        "train_size": size,
                        "training_seed": training_seed,
                        "forces_mae": m,
                        "median_stable_time_ps": t,
                    }
                )
    return pd.DataFrame(rows)


def test_same_error_offset_recovers_the_shift_and_not_the_error_gap():
    shifted = arms.same_error_offset(_family(3.0), "pretrained", "scratch", n_boot=300)
    assert shifted.low > 2.0 and shifted.high < 4.5
    # The fine-tuned family has lower errors, so its raw medians are longer, yet at equal MAE there is no gap.
    plain = arms.same_error_offset(_family(1.0), "pretrained", "scratch", n_boot=300)
    assert 0.85 < plain.low and plain.high < 1.2 and plain.high < shifted.low


def test_matched_step_is_the_first_validation_that_reaches_the_target():
    history = pd.DataFrame({"step": [10, 20, 30, 40], "val_forces_mae": [0.09, 0.05, 0.04, 0.06]})
    assert arms.matched_step(history, 0.05) == 20
    assert arms.matched_step(history, 0.01) is None
    with pytest.raises(ValueError, match="target_forces_mae"):
        arms.matched_step(history, float("nan"))


def test_pilot_temperature_is_the_lowest_whose_median_fails_inside_the_run():
    pilot = pd.DataFrame(
        {
            "temperature": [500.0] * 4 + [800.0] * 4 + [1100.0] * 4,
            "stable_time_ps": [5.0, 5.0, 5.0, 1.0] + [5.0, 2.0, 1.0, 0.5] + [0.1, 0.2, 0.3, 0.4],
        }
    )
    assert arms.pilot_temperature(pilot, 5.0) == 800.0
    assert arms.pilot_temperature(pilot[pilot["temperature"] == 500.0], 5.0) is None


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="training_seed"):
        arms.stratified_logrank(pd.DataFrame({"arm": ["a"], "stable_time_ps": [1.0], "failed": [True]}), "a", "b")
