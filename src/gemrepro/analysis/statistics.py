"""Intervals for the book's headline numbers: every number carries its n and a bootstrap interval.

The resampled unit is what varies between repetitions of the experiment: molecules (one
trajectory per molecule and temperature), training seeds, or both. Percentile intervals from a
seeded generator, so a re-executed chapter prints the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "bootstrap_interval",
    "bootstrap_ratio_of_means",
    "loglog_slope_change",
    "loglog_slopes",
    "percentile_interval",
]

CONFIDENCE = 0.95
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """An estimate with its percentile bootstrap interval and the number of resampled units."""

    estimate: float
    low: float
    high: float
    n: int

    def format(self, spec: str = ".2g", unit: str = "") -> str:
        """``estimate unit [low, high], n = …``: how the book prints a headline number."""
        unit = f" {unit}" if unit else ""
        return f"{self.estimate:{spec}}{unit} [{self.low:{spec}}, {self.high:{spec}}], n = {self.n}"


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap draws (non-finite draws dropped)."""
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """``statistic`` of ``values`` with a percentile interval from resampling the values.

    Non-finite values are dropped first (a frame whose reference calculation failed has no error).
    One value gives a zero-width interval: n says so.
    """
    all_values = np.asarray(values, dtype=float).ravel()
    finite = all_values[np.isfinite(all_values)]
    if len(finite) == 0:
        raise ValueError("values: expected at least one finite value")
    estimate = float(statistic(finite))
    if len(finite) == 1:
        return Interval(estimate, estimate, estimate, 1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(finite), size=(n_boot, len(finite)))
    samples = np.array([statistic(finite[d]) for d in draws], dtype=float)
    low, high = percentile_interval(samples, confidence)
    return Interval(estimate, low, high, len(finite))


def bootstrap_ratio_of_means(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    paired: bool = False,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """mean(numerator) / mean(denominator) with a bootstrap interval (``n``: the smaller sample).

    ``paired`` resamples the same indices on both sides (the same molecules at two temperatures).
    """
    a = np.asarray(numerator, dtype=float).ravel()
    b = np.asarray(denominator, dtype=float).ravel()
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired samples: expected equal lengths, got {len(a)} and {len(b)}")
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
    else:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("ratio: expected at least one finite value on each side")
    estimate = float(a.mean() / b.mean())
    rng = np.random.default_rng(seed)
    if paired:
        draws = rng.integers(0, len(a), size=(n_boot, len(a)))
        samples = a[draws].mean(axis=1) / b[draws].mean(axis=1)
    else:
        samples = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1) / b[
            rng.integers(0, len(b), size=(n_boot, len(b)))
        ].mean(axis=1)
    low, high = percentile_interval(samples, confidence)
    return Interval(estimate, low, high, int(min(len(a), len(b))))


def _slope_samples(
    sizes: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    segments: Sequence[tuple[int, int]],
    n_boot: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Slope estimates (K,), bootstrap samples (n_boot, K) and the fewest seeds of a size."""
    sizes = np.asarray(sizes, dtype=float)
    errors = np.asarray(errors, dtype=float)
    if sizes.shape != errors.shape or sizes.ndim != 1:
        raise ValueError("sizes, errors: expected two 1-d arrays of equal length")
    if not (np.all(sizes > 0) and np.all(errors > 0)):
        raise ValueError("sizes, errors: a log-log slope needs positive sizes and errors")
    distinct = np.unique(sizes)
    groups = [np.log(errors[sizes == s]) for s in distinct]
    x = np.log(distinct)
    for first, last in segments:
        if not 0 <= first < last < len(distinct):
            raise ValueError(f"segment ({first}, {last}): expected 0 <= first < last < {len(distinct)}")

    def slopes(means: np.ndarray) -> list[float]:
        return [float(np.polyfit(x[a : b + 1], means[a : b + 1], 1)[0]) for a, b in segments]

    estimate = np.array(slopes(np.array([g.mean() for g in groups])))
    rng = np.random.default_rng(seed)
    samples = np.array(
        [slopes(np.array([g[rng.integers(0, len(g), len(g))].mean() for g in groups])) for _ in range(n_boot)]
    )
    return estimate, samples, int(min(len(g) for g in groups))


def loglog_slopes(
    sizes: Sequence[float],
    errors: Sequence[float],
    segments: Sequence[tuple[int, int]],
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> list[Interval]:
    """Least-squares slopes of log(error) against log(size) over index ranges of the distinct sizes.

    ``sizes`` and ``errors`` have one entry per model (several training seeds per size); a bootstrap
    sample resamples the seeds within every size, so an interval reflects the seed-to-seed spread.
    ``segments`` are ``(first, last)`` indices (inclusive) into the sorted distinct sizes; the
    estimate uses the mean log error per size. ``n`` is the smallest number of seeds of a size.
    """
    estimate, samples, n = _slope_samples(sizes, errors, segments, n_boot, seed)
    out = []
    for k, value in enumerate(estimate):
        low, high = percentile_interval(samples[:, k], confidence) if n > 1 else (value, value)
        out.append(Interval(float(value), low, high, n))
    return out


def loglog_slope_change(
    sizes: Sequence[float],
    errors: Sequence[float],
    lower: tuple[int, int],
    upper: tuple[int, int],
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Slope over ``upper`` minus slope over ``lower`` (same resampling as :func:`loglog_slopes`).

    A learning curve that levels off has a positive change: its top segment falls less steeply.
    """
    estimate, samples, n = _slope_samples(sizes, errors, [lower, upper], n_boot, seed)
    change = samples[:, 1] - samples[:, 0]
    value = float(estimate[1] - estimate[0])
    low, high = percentile_interval(change, confidence) if n > 1 else (value, value)
    return Interval(value, low, high, n)
