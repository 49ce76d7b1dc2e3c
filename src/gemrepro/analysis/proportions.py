"""Intervals of proportions counted over few trajectories (stable fractions, converged percentages).

With a handful of trajectories per cell a fraction such as 3 of 5 says little; the exact
(Clopper–Pearson) interval says how little, and never leaves [0, 1].
"""

from __future__ import annotations

import pandas as pd
from scipy.stats import binomtest

from gemrepro.analysis.statistics import CONFIDENCE

__all__ = ["binomial_interval", "with_intervals"]


def binomial_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval of ``successes`` out of ``trials``."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"expected 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence, method="exact")
    return float(interval.low), float(interval.high)


def with_intervals(table: pd.DataFrame, successes: str = "stable", trials: str = "trajectories") -> pd.DataFrame:
    """``table`` with ``lower`` and ``upper``: the exact interval of ``successes`` / ``trials`` in each row
    (a :func:`gemrepro.analysis.errors.stable_fraction` table by default)."""
    missing = [c for c in (successes, trials) if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column(s) {missing}")
    bounds = [binomial_interval(k, n) for k, n in zip(table[successes], table[trials], strict=True)]
    return table.assign(lower=[b[0] for b in bounds], upper=[b[1] for b in bounds])
