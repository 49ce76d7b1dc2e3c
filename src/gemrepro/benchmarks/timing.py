"""How every benchmark here times two (or more) things it compares: in turns, reported with their spread.

A shared or throttled machine changes speed within minutes (here by a factor of 1.5, and by far
more when another job takes a core), so the paths of a comparison are never timed one after the
other in blocks. Each round times every path once, in the same order (A, B, A, B, ...), and a
ratio is taken within a round, between neighbours in time. The median of the rounds is the
reported number; the lowest and highest round beside it say how far one round may be trusted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def check_repeats(repeats: int) -> int:
    """``repeats`` as an int, after refusing anything but a positive integer."""
    if isinstance(repeats, bool) or not (isinstance(repeats, (int, np.integer)) and repeats >= 1):
        raise ValueError(f"repeats: expected a positive integer, got {repeats!r}")
    return int(repeats)


def seconds_of(call: Callable[[], object]) -> float:
    """Wall time of one ``call()`` (what it returns is dropped)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def take_turns(paths: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each path in each round: every round runs every path once, in the order of ``paths``.

    Each path is a callable that runs once and returns its own measured seconds (so it can leave
    its set-up off the clock).
    """
    repeats = check_repeats(repeats)
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, path in paths.items():
            seconds[name].append(float(path()))
    return seconds


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, lowest and highest of the rounds' values."""
    if len(values) == 0:
        raise ValueError("values: expected at least one round")
    array = np.asarray(values, dtype=float)
    return {"median": float(np.median(array)), "min": float(array.min()), "max": float(array.max())}


def round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float | list[float]]:
    """``ratio`` (median over rounds of numerator / denominator, each round's pair taken together),
    ``ratio_min``, ``ratio_max`` and ``ratios`` (one per round)."""
    ratios = [float(a) / float(b) for a, b in zip(numerator, denominator, strict=True)]
    summary = spread(ratios)
    return {"ratio": summary["median"], "ratio_min": summary["min"], "ratio_max": summary["max"], "ratios": ratios}


def ratio_text(result: Mapping, digits: int = 2) -> str:
    """``"4.21x (rounds 3.90-4.60x, 3 rounds)"``: a result's ratio with its spread, as every bench command prints it."""
    low, high, rounds = result["ratio_min"], result["ratio_max"], len(result["ratios"])
    return f"{result['ratio']:.{digits}f}x (rounds {low:.{digits}f}-{high:.{digits}f}x, {rounds} rounds)"
