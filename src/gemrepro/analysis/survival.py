"""How long trajectories stay stable: survival curves, stable-time ratios and their uncertainty.

A trajectory that survives the whole run is *censored* at the run length: we know only that
its failure lies later. Kaplan–Meier curves (lifelines) use that information correctly; the
MDsim-style "stable time" of a trajectory is its failure time or, when it survived, the run
length, which makes medians and their ratios conservative lower bounds when many survive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

__all__ = [
    "Correlation",
    "RatioEstimate",
    "bootstrap_ratio",
    "kaplan_meier",
    "rank_correlation",
    "stable_times",
    "survival_curves",
]


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio of two statistics with a percentile-bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float = 0.95


@dataclass(frozen=True)
class Correlation:
    """Spearman rank correlation of two samples."""

    rho: float
    p_value: float
    n: int


def _times_and_events(times_ps, failed) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times_ps, dtype=float)
    events = np.asarray(failed, dtype=bool)
    if times.ndim != 1 or times.shape != events.shape or len(times) == 0:
        raise ValueError(
            f"times_ps, failed: expected two non-empty 1-d arrays of equal length, "
            f"got shapes {times.shape} and {events.shape}"
        )
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError("times_ps: expected finite, non-negative times in ps (use the run length for survivors)")
    return times, events


def stable_times(
    trajectories: pd.DataFrame, horizon_ps: float, time: str = "time_to_failure_ps", event: str = "failed"
) -> np.ndarray:
    """Stable time of each trajectory (ps): its failure time, or ``horizon_ps`` when it survived."""
    missing = [c for c in (time, event) if c not in trajectories.columns]
    if missing:
        raise ValueError(f"trajectories: missing column(s) {missing}; expected a systems table of an MD run")
    if not (np.isfinite(horizon_ps) and horizon_ps > 0):
        raise ValueError(f"horizon_ps: expected the positive run length in ps, got {horizon_ps!r}")
    failed = trajectories[event].to_numpy(dtype=bool)
    times = trajectories[time].to_numpy(dtype=float)
    if np.any(failed & ~np.isfinite(times)):
        raise ValueError(f"trajectories: a failed trajectory has no finite {time!r}")
    return np.where(failed, np.minimum(times, horizon_ps), float(horizon_ps))


def kaplan_meier(times_ps, failed, label: str = "") -> pd.DataFrame:
    """Kaplan–Meier survival with its 95 % (Greenwood, log-log) band: time_ps, survival, lower, upper."""
    # Imported here: lifelines takes seconds to import; only survival curves need it.
    from lifelines import KaplanMeierFitter

    times, events = _times_and_events(times_ps, failed)
    fitter = KaplanMeierFitter(label=label or "survival", alpha=0.05).fit(times, event_observed=events)
    curve = fitter.survival_function_.iloc[:, 0]
    band = fitter.confidence_interval_survival_function_
    return pd.DataFrame(
        {
            "time_ps": curve.index.to_numpy(dtype=float),
            "survival": curve.to_numpy(dtype=float),
            "lower": band.iloc[:, 0].to_numpy(dtype=float),
            "upper": band.iloc[:, 1].to_numpy(dtype=float),
        }
    )


def survival_curves(
    trajectories: pd.DataFrame,
    by: Sequence[str],
    horizon_ps: float,
    *,
    time: str = "time_to_failure_ps",
    event: str = "failed",
) -> pd.DataFrame:
    """One Kaplan–Meier curve per group of ``by``, ending at the run length ``horizon_ps``.

    Each curve gets a last point at ``horizon_ps`` so survivors draw a line to the end of the run.
    """
    by = list(by)
    missing = [c for c in by if c not in trajectories.columns]
    if missing:
        raise ValueError(f"trajectories: missing grouping column(s) {missing}")
    frames = []
    for key, group in trajectories.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        curve = kaplan_meier(stable_times(group, horizon_ps, time, event), group[event].to_numpy(dtype=bool))
        if curve["time_ps"].iloc[-1] < horizon_ps:
            curve = pd.concat([curve, curve.iloc[[-1]].assign(time_ps=float(horizon_ps))], ignore_index=True)
        for column, value in zip(by, key):
            curve.insert(0, column, value)
        frames.append(curve)
    return pd.concat(frames, ignore_index=True)


def bootstrap_ratio(
    a,
    b,
    *,
    statistic: Callable[[np.ndarray], float] = np.median,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RatioEstimate:
    """``statistic(a) / statistic(b)`` with a percentile bootstrap over trajectories of each sample.

    Used for "the pretrained model stays stable up to 3x longer": ``a`` and ``b`` are the stable
    times of the two models' trajectories.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or len(a) == 0 or len(b) == 0:
        raise ValueError("a, b: expected two non-empty 1-d samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level between 0 and 1, got {confidence!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot!r}")
    denominator = float(statistic(b))
    ratio = float(statistic(a)) / denominator if denominator > 0 else float("inf")
    rng = np.random.default_rng(seed)
    draws = np.empty(int(n_boot))
    for k in range(int(n_boot)):
        sample_a = a[rng.integers(0, len(a), len(a))]
        sample_b = b[rng.integers(0, len(b), len(b))]
        bottom = float(statistic(sample_b))
        draws[k] = float(statistic(sample_a)) / bottom if bottom > 0 else np.inf
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return RatioEstimate(ratio, float(low), float(high), confidence)


def rank_correlation(x, y) -> Correlation:
    """Spearman's rho between two samples (e.g. test force MAE and stable time), with its p-value.

    Undefined (NaN) when either sample is constant: every model surviving the whole run gives
    no ranking of stability.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected two 1-d samples of equal length, got shapes {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"x, y: expected at least 3 pairs for a rank correlation, got {len(x)}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant sample has no ranks to correlate (scipy would warn)
        return Correlation(float("nan"), float("nan"), int(len(x)))
    result = spearmanr(x, y)
    return Correlation(float(result.statistic), float(result.pvalue), int(len(x)))
