"""Early warning from a committee's disagreement: lead times and the threshold trade-off.

An alarm is the first stored frame whose disagreement exceeds a threshold. On a trajectory that
failed, an alarm strictly before the failure is a warning and the time between them is the
*lead time* (a warning with less lead than ``min_lead_ps`` is *late*: no time to act); no alarm
before the failure is a *miss*. On a trajectory that stayed stable to the horizon any alarm is a
*false alarm*. Lowering the threshold trades misses for false alarms; :func:`threshold_tradeoff`
traces that curve (an ROC curve over trajectories) and :func:`recommend_threshold` picks the point
a practitioner would use.

Inputs are plain tables: ``disagreement`` has one row per stored frame (the trajectory keys
``by``, ``time_ps`` and the ``signal`` column), ``trajectories`` one row per trajectory (the same
keys, ``failed`` and ``time_to_failure_ps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemrepro.analysis.statistics import Interval, bootstrap_ratio_of_means
from gemrepro.analysis.survival import Correlation, rank_correlation

__all__ = [
    "OUTCOMES",
    "PROXY_TRENDS",
    "ProxyAtLargeError",
    "first_crossing",
    "proxy_at_large_error",
    "proxy_correlation",
    "recommend_threshold",
    "threshold_tradeoff",
    "warnings_at",
]

PROXY_TRENDS: tuple[str, ...] = ("keeps rising", "plateaus or falls", "underpowered")
"""Verdicts of :func:`proxy_at_large_error` on the committee's known weakness."""

OUTCOMES: tuple[str, ...] = ("warned", "late", "missed", "false alarm", "quiet")


def first_crossing(times_ps, values, threshold: float) -> float:
    """Time (ps) of the first value above ``threshold`` (NaN when none); NaN values count as above.

    A NaN disagreement means a member produced non-finite forces: the committee is off the map.
    """
    times, values = np.asarray(times_ps, dtype=float), np.asarray(values, dtype=float)
    if times.ndim != 1 or times.shape != values.shape:
        raise ValueError(
            f"times_ps, values: expected two 1-d arrays of equal length, got {times.shape} and {values.shape}"
        )
    above = np.flatnonzero(~(values <= threshold))
    return float(times[above[0]]) if len(above) else float("nan")


def _require(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {list(columns)}")


def warnings_at(
    disagreement: pd.DataFrame,
    trajectories: pd.DataFrame,
    threshold: float,
    by: Sequence[str] = ("train_size", "system"),
    signal: str = "force_disagreement",
    min_lead_ps: float = 0.0,
) -> pd.DataFrame:
    """One row per trajectory: the first alarm at ``threshold``, its lead time and the outcome.

    Columns: ``by``, failed, time_to_failure_ps, alarm_ps (first alarm before the failure, or
    anywhere on a stable trajectory; NaN when none), lead_time_ps (failure minus alarm, failed
    trajectories only), outcome (one of :data:`OUTCOMES`).
    """
    by = list(by)
    _require(disagreement, [*by, "time_ps", signal], "disagreement")
    _require(trajectories, [*by, "failed", "time_to_failure_ps"], "trajectories")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold: expected a finite non-negative disagreement, got {threshold!r}")
    if not (np.isfinite(min_lead_ps) and min_lead_ps >= 0):
        raise ValueError(f"min_lead_ps: expected a non-negative time in ps, got {min_lead_ps!r}")
    frames = {
        key if isinstance(key, tuple) else (key,): group.sort_values("time_ps")
        for key, group in disagreement.groupby(by, sort=False)
    }
    rows = []
    for _, trajectory in trajectories.iterrows():
        key = tuple(trajectory[c] for c in by)
        group = frames.get(key)
        if group is None:
            raise ValueError(f"disagreement: no frames for trajectory {dict(zip(by, key))}")
        failed = bool(trajectory["failed"])
        failure = float(trajectory["time_to_failure_ps"]) if failed else float("nan")
        before = group[group["time_ps"] < failure] if failed else group
        alarm = first_crossing(before["time_ps"], before[signal], threshold)
        lead = failure - alarm if failed else float("nan")
        if failed:
            outcome = "missed" if np.isnan(alarm) else ("late" if lead < min_lead_ps else "warned")
        else:
            outcome = "quiet" if np.isnan(alarm) else "false alarm"
        rows.append(
            {
                **dict(zip(by, key)),
                "failed": failed,
                "time_to_failure_ps": failure,
                "alarm_ps": alarm,
                "lead_time_ps": lead,
                "outcome": outcome,
            }
        )
    return pd.DataFrame(rows)


def threshold_tradeoff(
    disagreement: pd.DataFrame,
    trajectories: pd.DataFrame,
    thresholds: Sequence[float] | np.ndarray,
    by: Sequence[str] = ("train_size", "system"),
    signal: str = "force_disagreement",
    min_lead_ps: float = 0.0,
) -> pd.DataFrame:
    """One row per threshold: detection rate on failed trajectories, false-alarm rate on stable ones.

    Columns: threshold, n_failed, n_stable, detection_rate (warned in time / failed), miss_rate
    (missed or late / failed), false_alarm_rate (false alarms / stable), median_lead_ps (of the
    warnings in time). A rate with no trajectory to count is NaN.
    """
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.ndim != 1 or len(thresholds) == 0:
        raise ValueError(
            f"thresholds: expected a non-empty 1-d sequence of disagreements, got shape {thresholds.shape}"
        )
    rows = []
    for threshold in thresholds:
        table = warnings_at(disagreement, trajectories, float(threshold), by, signal, min_lead_ps)
        counts = table["outcome"].value_counts()
        n_failed, n_stable = int(table["failed"].sum()), int((~table["failed"]).sum())
        warned = table[table["outcome"] == "warned"]
        rows.append(
            {
                "threshold": float(threshold),
                "n_failed": n_failed,
                "n_stable": n_stable,
                "detection_rate": counts.get("warned", 0) / n_failed if n_failed else np.nan,
                "miss_rate": (counts.get("missed", 0) + counts.get("late", 0)) / n_failed if n_failed else np.nan,
                "false_alarm_rate": counts.get("false alarm", 0) / n_stable if n_stable else np.nan,
                "median_lead_ps": float(warned["lead_time_ps"].median()) if len(warned) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def recommend_threshold(tradeoff: pd.DataFrame, max_false_alarm_rate: float | None = None) -> pd.Series:
    """The trade-off row to use: most failures warned in time minus false alarms (Youden's J).

    With ``max_false_alarm_rate`` only thresholds within that budget compete. Ties go to the
    larger threshold, which stops fewer healthy trajectories.
    """
    _require(tradeoff, ["threshold", "detection_rate", "false_alarm_rate"], "tradeoff")
    table = tradeoff.dropna(subset=["detection_rate", "false_alarm_rate"])
    if max_false_alarm_rate is not None:
        if not 0 <= max_false_alarm_rate <= 1:
            raise ValueError(f"max_false_alarm_rate: expected a fraction in [0, 1], got {max_false_alarm_rate!r}")
        table = table[table["false_alarm_rate"] <= max_false_alarm_rate]
    if table.empty:
        raise ValueError(
            "tradeoff: no threshold has both failed and stable trajectories to score "
            "(or none is within max_false_alarm_rate)"
        )
    score = table["detection_rate"] - table["false_alarm_rate"]
    best = table[score == score.max()]
    return best.loc[best["threshold"].idxmax()].rename(None)


@dataclass(frozen=True)
class HeldOutWarning:
    """A threshold chosen on one set of trajectories and its warnings on another, never seen while choosing."""

    threshold: float
    calibration: pd.Series  # the trade-off row of the chosen threshold on the calibration set
    held_out: pd.DataFrame  # :func:`warnings_at` on the evaluation set
    n_failed: int
    n_stable: int

    @property
    def detection_rate(self) -> float:
        return float((self.held_out["outcome"] == "warned").sum() / self.n_failed) if self.n_failed else float("nan")

    @property
    def false_alarm_rate(self) -> float:
        return (
            float((self.held_out["outcome"] == "false alarm").sum() / self.n_stable) if self.n_stable else float("nan")
        )


def calibrate_and_test(
    disagreement: pd.DataFrame,
    trajectories: pd.DataFrame,
    thresholds: Sequence[float] | np.ndarray,
    calibrate: pd.Series,
    *,
    by: Sequence[str] = ("train_size", "system"),
    signal: str = "force_disagreement",
    min_lead_ps: float = 0.0,
) -> HeldOutWarning:
    """Choose the threshold on the trajectories flagged in ``calibrate`` and measure it on the others.

    ``calibrate`` is a boolean Series aligned with ``trajectories``; disagreement rows follow their
    trajectory (matched on ``by``). A threshold tuned and scored on the same trajectories looks
    better than it is; this is the honest number.
    """
    by = list(by)
    calibrate = pd.Series(calibrate, index=trajectories.index).astype(bool)
    if not calibrate.any() or calibrate.all():
        raise ValueError("calibrate: expected some trajectories to choose the threshold on and some to test it on")
    keys = trajectories[by].assign(_calibrate=calibrate.to_numpy())
    flagged = disagreement.merge(keys, on=by, how="inner")
    cal_traj, test_traj = trajectories[calibrate], trajectories[~calibrate]
    cal_dis = flagged[flagged["_calibrate"]].drop(columns="_calibrate")
    test_dis = flagged[~flagged["_calibrate"]].drop(columns="_calibrate")
    chosen = recommend_threshold(threshold_tradeoff(cal_dis, cal_traj, thresholds, by, signal, min_lead_ps))
    held_out = warnings_at(test_dis, test_traj, float(chosen["threshold"]), by, signal, min_lead_ps)
    return HeldOutWarning(
        float(chosen["threshold"]), chosen, held_out, int(held_out["failed"].sum()), int((~held_out["failed"]).sum())
    )


def proxy_correlation(
    frames: pd.DataFrame, signal: str = "force_disagreement", error: str = "forces_mae"
) -> Correlation:
    """Spearman correlation between the committee's disagreement and the true error, frame by frame.

    Frames whose reference calculation failed (NaN error) are left out.
    """
    _require(frames, [signal, error], "frames")
    usable = frames[[signal, error]].replace([np.inf, -np.inf], np.nan).dropna()
    return rank_correlation(usable[signal].to_numpy(), usable[error].to_numpy())


@dataclass(frozen=True)
class ProxyAtLargeError:
    """How the disagreement follows the true error where the error is largest, and the alarms it misses there."""

    bins: pd.DataFrame  # per half-decade of error: error_low, error_high, n_frames, median_error, median_signal
    top_ratio: Interval  # mean signal of the large-error frames / of the frames one decade below
    error_ratio: float  # mean error of the same two groups: what a proportional proxy's ratio would be
    trend: str  # one of PROXY_TRENDS
    n_large: int  # frames whose error exceeds ``large_error``
    n_missed: int  # of those, frames whose signal stays below the alarm threshold
    large_error: float
    alarm_threshold: float

    @property
    def miss_rate(self) -> float:
        return self.n_missed / self.n_large if self.n_large else float("nan")


def _half_decade_bins(usable: pd.DataFrame, signal: str, error: str) -> pd.DataFrame:
    """Median error and signal per half-decade of error (the curve a reader looks at)."""
    positive = usable[usable[error] > 0]
    exponent = np.floor(2.0 * np.log10(positive[error].to_numpy())) / 2.0
    grouped = positive.groupby(exponent)
    bins = pd.DataFrame(
        {
            "error_low": 10.0 ** np.asarray(list(grouped.groups), dtype=float),
            "n_frames": grouped.size().to_numpy(),
            "median_error": grouped[error].median().to_numpy(),
            "median_signal": grouped[signal].median().to_numpy(),
        }
    )
    bins.insert(1, "error_high", bins["error_low"] * 10.0**0.5)
    return bins


def proxy_at_large_error(
    frames: pd.DataFrame,
    *,
    alarm_threshold: float,
    large_error: float,
    min_frames: int = 8,
    signal: str = "force_disagreement",
    error: str = "forces_mae",
) -> ProxyAtLargeError:
    """Does disagreement keep rising with the true error out of distribution, and what does the alarm miss?

    Far from the training data a committee's members can agree on the same wrong answer, so the
    disagreement plateaus or even falls while the error grows (Kurniawan et al., arXiv:2508.06456).
    The rule, fixed before the data: the frames with error above ``large_error`` are compared with
    those one decade below (``large_error / 10`` to ``large_error``); the disagreement *keeps
    rising* when the bootstrap interval of the ratio of their mean signals lies above 1, else it
    *plateaus or falls*; with fewer than ``min_frames`` frames on either side the test is
    *underpowered*. A frame above ``large_error`` whose signal is below ``alarm_threshold`` is a
    miss: the warning is silent where it is needed most.
    """
    _require(frames, [signal, error], "frames")
    if not (np.isfinite(alarm_threshold) and alarm_threshold > 0 and np.isfinite(large_error) and large_error > 0):
        raise ValueError(
            f"alarm_threshold/large_error: expected positive values, got {alarm_threshold!r}, {large_error!r}"
        )
    usable = frames[[signal, error]].replace([np.inf, -np.inf], np.nan).dropna()
    if usable.empty:
        raise ValueError(f"frames: expected frames with a finite {error} and {signal}")
    large = usable[usable[error] > large_error]
    below = usable[(usable[error] > large_error / 10.0) & (usable[error] <= large_error)]
    if min(len(large), len(below)) < min_frames:
        trend, ratio = "underpowered", Interval(float("nan"), float("nan"), float("nan"), min(len(large), len(below)))
        error_ratio = float("nan")
    else:
        ratio = bootstrap_ratio_of_means(large[signal].to_numpy(), below[signal].to_numpy())
        trend = "keeps rising" if ratio.low > 1.0 else "plateaus or falls"
        error_ratio = float(large[error].mean() / below[error].mean())
    return ProxyAtLargeError(
        _half_decade_bins(usable, signal, error),
        ratio,
        error_ratio,
        trend,
        len(large),
        int((large[signal] < alarm_threshold).sum()),
        float(large_error),
        float(alarm_threshold),
    )
