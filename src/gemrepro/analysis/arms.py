"""Two arms of models compared on MD stability, where each arm holds several training seeds and
each model runs several MD seeds.

The trajectories of one model are not independent draws of the arm: they share the model's
weights. A bootstrap that resampled trajectories alone would pretend there were as many models
as trajectories, so every interval here resamples *nested*: first the arm's models (training
seeds), then the trajectories of each model drawn. The log-rank test is stratified by training
seed, so a seed that happens to be fragile in both arms does not count as evidence.

Stable times follow MDsim: a trajectory's failure time, or the run length when it survived (a
censored value). Medians of such times are lower bounds once half of an arm survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2

from gemrepro.analysis.statistics import percentile_interval
from gemrepro.analysis.survival import RatioEstimate

__all__ = [
    "LogRank",
    "arm_models",
    "detectable_ratio",
    "matched_step",
    "nested_median_ratio",
    "pilot_temperature",
    "same_error_offset",
    "stratified_logrank",
]


@dataclass(frozen=True)
class LogRank:
    """A (stratified) log-rank test of two arms: the treated arm's observed and expected failures."""

    statistic: float
    p_value: float
    observed: float  # failures of the treated arm
    expected: float  # failures the treated arm would have had under equal hazards
    n_strata: int


def _check_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"trajectories: missing column(s) {missing}; expected one row per trajectory")


def arm_models(
    table: pd.DataFrame, arm_value: str, *, arm: str = "arm", model: str = "training_seed", time: str = "stable_time_ps"
) -> list[np.ndarray]:
    """The stable times of each model of one arm (a list over training seeds, sorted by seed)."""
    _check_columns(table, (arm, model, time))
    rows = table[table[arm] == arm_value]
    if rows.empty:
        raise ValueError(f"trajectories: no row with {arm} == {arm_value!r}")
    return [group[time].to_numpy(dtype=float) for _, group in rows.groupby(model, sort=True)]


def _nested_medians(models: list[np.ndarray], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Median of the pooled stable times of ``n_boot`` nested resamples: models, then their trajectories."""
    out = np.empty(n_boot)
    for k in range(n_boot):
        picked = rng.integers(0, len(models), len(models))
        pooled = [models[m][rng.integers(0, len(models[m]), len(models[m]))] for m in picked]
        out[k] = np.median(np.concatenate(pooled))
    return out


def nested_median_ratio(
    table: pd.DataFrame,
    treated: str,
    control: str,
    *,
    arm: str = "arm",
    model: str = "training_seed",
    time: str = "stable_time_ps",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RatioEstimate:
    """Median stable time of the treated arm over the control arm's, with a nested percentile bootstrap.

    Each replicate draws each arm's training seeds with replacement, then each drawn model's
    trajectories with replacement, and takes the median of what was drawn.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level between 0 and 1, got {confidence!r}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive integer, got {n_boot!r}")
    a = arm_models(table, treated, arm=arm, model=model, time=time)
    b = arm_models(table, control, arm=arm, model=model, time=time)
    bottom = float(np.median(np.concatenate(b)))
    estimate = float(np.median(np.concatenate(a))) / bottom if bottom > 0 else float("inf")
    rng = np.random.default_rng(seed)
    top_draws, bottom_draws = _nested_medians(a, rng, int(n_boot)), _nested_medians(b, rng, int(n_boot))
    with np.errstate(divide="ignore"):
        draws = np.where(bottom_draws > 0, top_draws / np.where(bottom_draws > 0, bottom_draws, 1.0), np.inf)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return RatioEstimate(estimate, float(low), float(high), confidence)


def _logrank_terms(times: np.ndarray, events: np.ndarray, treated: np.ndarray) -> tuple[float, float, float]:
    """Observed and expected failures of the treated group and the hypergeometric variance, one stratum."""
    observed = expected = variance = 0.0
    for t in np.unique(times[events]):
        at_risk = times >= t
        n, n1 = int(at_risk.sum()), int((at_risk & treated).sum())
        failing = events & (times == t)
        d, d1 = int(failing.sum()), int((failing & treated).sum())
        observed += d1
        expected += d * n1 / n
        if n > 1:
            variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    return observed, expected, variance


def stratified_logrank(
    table: pd.DataFrame,
    treated: str,
    control: str,
    *,
    arm: str = "arm",
    strata: str = "training_seed",
    time: str = "stable_time_ps",
    event: str = "failed",
) -> LogRank:
    """Two-sided log-rank test of equal hazards in the two arms, stratified by ``strata``.

    ``observed < expected`` means the treated arm fails less often than equal hazards predict.
    No failure at all gives p = 1 (nothing to test).
    """
    _check_columns(table, (arm, strata, time, event))
    rows = table[table[arm].isin([treated, control])]
    if not {treated, control} <= set(rows[arm]):
        raise ValueError(f"trajectories: expected rows of both arms {treated!r} and {control!r}")
    observed = expected = variance = 0.0
    n_strata = 0
    for _, group in rows.groupby(strata, sort=True):
        is_treated = (group[arm] == treated).to_numpy()
        if is_treated.all() or not is_treated.any():
            continue  # a stratum with one arm only carries no comparison
        terms = _logrank_terms(group[time].to_numpy(float), group[event].to_numpy(bool), is_treated)
        observed, expected, variance = observed + terms[0], expected + terms[1], variance + terms[2]
        n_strata += 1
    if variance <= 0:
        return LogRank(0.0, 1.0, observed, expected, n_strata)
    statistic = (observed - expected) ** 2 / variance
    return LogRank(float(statistic), float(chi2.sf(statistic, 1)), observed, expected, n_strata)


def _model_hazards(models: list[np.ndarray], failed: list[np.ndarray]) -> np.ndarray:
    """Failures per ps of each model (exponential maximum likelihood: failures / time at risk)."""
    return np.array([f.sum() / t.sum() for t, f in zip(models, failed)])


def detectable_ratio(
    table: pd.DataFrame,
    control: str,
    horizon_ps: float,
    *,
    n_models: int,
    n_trajectories: int,
    arm: str = "arm",
    model: str = "training_seed",
    time: str = "stable_time_ps",
    event: str = "failed",
    power: float = 0.8,
    alpha: float = 0.05,
    ratios: Sequence[float] = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0),
    n_sim: int = 200,
    seed: int = 0,
) -> float:
    """The smallest ratio of median stable times this design detects with ``power``; inf if none.

    A simulation from the control arm itself: each simulated model draws the hazard of one of
    the control arm's models (so training seeds vary as much as they did), the treated arm's
    hazards are divided by the ratio (for exponential failures, the ratio of medians), and
    ``n_trajectories`` exponential failure times per model are censored at ``horizon_ps``. A
    design detects the ratio when the stratified log-rank test gives p < ``alpha`` with the
    treated arm failing less. With no failure in the control arm nothing can be detected.
    """
    _check_columns(table, (arm, model, time, event))
    rows = table[table[arm] == control]
    groups = [g for _, g in rows.groupby(model, sort=True)]
    if not groups:
        raise ValueError(f"trajectories: no row with {arm} == {control!r}")
    hazards = _model_hazards([g[time].to_numpy(float) for g in groups], [g[event].to_numpy(bool) for g in groups])
    if not np.any(hazards > 0):
        return float("inf")
    rng = np.random.default_rng(seed)
    strata = np.repeat(np.arange(n_models), n_trajectories)
    labels = np.repeat(["control", "treated"], n_models * n_trajectories)
    for ratio in sorted(ratios):
        detected = 0
        for _ in range(n_sim):
            base = hazards[rng.integers(0, len(hazards), n_models)]
            rates = np.concatenate([np.repeat(base, n_trajectories), np.repeat(base / ratio, n_trajectories)])
            with np.errstate(divide="ignore"):
                draws = rng.exponential(1.0 / np.where(rates > 0, rates, np.inf))
            simulated = pd.DataFrame(
                {
                    arm: labels,
                    model: np.concatenate([strata, strata]),
                    time: np.minimum(draws, horizon_ps),
                    event: draws < horizon_ps,
                }
            )
            test = stratified_logrank(simulated, "treated", "control", arm=arm, strata=model, time=time, event=event)
            detected += test.p_value < alpha and test.observed < test.expected
        if detected / n_sim >= power:
            return float(ratio)
    return float("inf")


def same_error_offset(
    models: pd.DataFrame,
    treated: str,
    control: str,
    *,
    family: str = "arm",
    cell: str = "train_size",
    error: str = "forces_mae",
    stability: str = "median_stable_time_ps",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> RatioEstimate:
    """How many times longer the treated family stays stable than the control family *at the same
    force error*: exp(c) of the least-squares fit log t = a + b log MAE + c [treated].

    One row per model. The bootstrap resamples models within each (family, ``cell``) group, so
    every training-set size keeps its share of the fit.
    """
    _check_columns(models, (family, cell, error, stability))
    rows = models[models[family].isin([treated, control])].reset_index(drop=True)
    if rows[error].le(0).any() or rows[stability].le(0).any():
        raise ValueError(f"models: expected positive {error!r} and {stability!r} (they are fitted on a log scale)")
    if not {treated, control} <= set(rows[family]):
        raise ValueError(f"models: expected rows of both families {treated!r} and {control!r}")

    def offset(index: np.ndarray) -> float:
        chosen = rows.iloc[index]
        design = np.column_stack(
            [np.ones(len(chosen)), np.log(chosen[error]), (chosen[family] == treated).astype(float)]
        )
        coefficients, *_ = np.linalg.lstsq(design, np.log(chosen[stability].to_numpy(float)), rcond=None)
        return float(np.exp(coefficients[2]))

    groups = [g.index.to_numpy() for _, g in rows.groupby([family, cell], sort=True)]
    estimate = offset(np.arange(len(rows)))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [offset(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])) for _ in range(int(n_boot))]
    )
    low, high = percentile_interval(draws, confidence)
    return RatioEstimate(estimate, low, high, confidence)


# ----------------------------------------------------------------------------- the design's own rules
def matched_step(history: pd.DataFrame, target_forces_mae: float, *, column: str = "val_forces_mae") -> int | None:
    """The first validated step whose validation force MAE reaches ``target_forces_mae`` (None: never).

    Matches a fine-tuning run to the scratch arm by a rule fixed in advance, rather than by
    stopping wherever the two errors happen to agree.
    """
    _check_columns(history, ("step", column))
    if not (np.isfinite(target_forces_mae) and target_forces_mae > 0):
        raise ValueError(f"target_forces_mae: expected a positive force MAE, got {target_forces_mae!r}")
    reached = history.loc[history[column] <= target_forces_mae, "step"]
    return int(reached.min()) if len(reached) else None


def pilot_temperature(
    pilot: pd.DataFrame, horizon_ps: float, *, temperature: str = "temperature", time: str = "stable_time_ps"
) -> float | None:
    """The lowest pilot temperature at which the median stable time falls inside the run (None: none does).

    ``pilot`` holds the control arm's pilot trajectories, every model pooled. Below that temperature
    fewer than half of the trajectories fail within the run, and a median ratio is only a bound.
    """
    _check_columns(pilot, (temperature, time))
    medians = pilot.groupby(temperature)[time].median().sort_index()
    inside = medians[medians < horizon_ps]
    return float(inside.index[0]) if len(inside) else None
