"""Bootstrap intervals and log-log slopes behind the book's headline numbers and verdicts."""

import numpy as np
import pytest

from gemrepro.analysis.statistics import (
    Interval,
    bootstrap_interval,
    bootstrap_ratio_of_means,
    loglog_slope_change,
    loglog_slopes,
)


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    few = bootstrap_interval(rng.normal(5.0, 1.0, 10))
    many = bootstrap_interval(rng.normal(5.0, 1.0, 1000))
    assert few.low < few.estimate < few.high and few.n == 10
    assert many.low < 5.0 < many.high
    assert (many.high - many.low) < (few.high - few.low) / 3
    assert bootstrap_interval([2.0, np.nan, 4.0]).n == 2  # failed calculations carry no error
    single = bootstrap_interval([3.0])
    assert (single.low, single.high, single.n) == (3.0, 3.0, 1)
    with pytest.raises(ValueError, match="at least one finite"):
        bootstrap_interval([np.nan])


def test_bootstrap_is_seeded_so_a_re_executed_chapter_prints_the_same_interval():
    values = np.arange(20.0) ** 1.5
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    assert bootstrap_interval(values, seed=3) != bootstrap_interval(values, seed=4)


def test_ratio_of_means_paired_and_unpaired():
    cold = np.array([1.0, 2.0, 3.0, 4.0])
    hot = 3.0 * cold
    paired = bootstrap_ratio_of_means(hot, cold, paired=True)
    assert paired.estimate == pytest.approx(3.0) and paired.low == pytest.approx(3.0)  # exact pairs: no spread
    unpaired = bootstrap_ratio_of_means(hot, cold)
    assert unpaired.low < 3.0 < unpaired.high
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_ratio_of_means([1.0], [1.0, 2.0], paired=True)


def test_loglog_slopes_recover_a_power_law_and_its_levelling_off():
    rng = np.random.default_rng(0)
    sizes = np.repeat([100, 320, 1000, 3200], 3).astype(float)
    power = 0.3 * (sizes / 100) ** -0.5 * np.exp(rng.normal(0, 0.03, len(sizes)))
    low, top = loglog_slopes(sizes, power, [(0, 2), (2, 3)])
    assert low.estimate == pytest.approx(-0.5, abs=0.05) and top.estimate == pytest.approx(-0.5, abs=0.08)
    assert low.low < low.estimate < low.high and top.high < 0 and low.n == 3
    # a floor at the top: the last segment falls much less steeply
    floored = np.where(sizes == 3200, power[sizes == 1000].mean() * 0.95, power)
    change = loglog_slope_change(sizes, floored, (0, 2), (2, 3))
    assert change.low > 0.2
    assert (
        loglog_slope_change(sizes, power, (0, 2), (2, 3)).low
        < 0
        < loglog_slope_change(sizes, power, (0, 2), (2, 3)).high
    )
    with pytest.raises(ValueError, match="positive"):
        loglog_slopes(sizes, -power, [(0, 1)])
    with pytest.raises(ValueError, match="segment"):
        loglog_slopes(sizes, power, [(2, 4)])


def test_interval_format_names_n():
    assert Interval(0.123, 0.1, 0.15, 3).format(".2g", "eV/Å") == "0.12 eV/Å [0.1, 0.15], n = 3"
