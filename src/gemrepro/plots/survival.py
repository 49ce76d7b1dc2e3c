"""Survival curves (Kaplan–Meier steps with their confidence bands), shared by the MD chapters."""

from __future__ import annotations

from typing import cast

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

HUE_LABELS = {"train_size": "training configurations", "temperature": "T (K)", "model": "model"}


def survival_plot(
    curves: pd.DataFrame,
    *,
    hue: str,
    ax: plt.Axes | None = None,
    title: str = "",
    palette: dict | None = None,
    offset: float = 0.015,
) -> plt.Figure:
    """Fraction of trajectories still stable vs time, one step curve and shaded 95 % band per ``hue``.

    ``curves`` is the table of :func:`gemrepro.analysis.survival.survival_curves`. Curves that
    coincide (every group stable: all at 1) would hide each other, so the k-th curve is drawn
    ``k * offset`` lower; the y label says so.
    """
    missing = [c for c in (hue, "time_ps", "survival", "lower", "upper") if c not in curves.columns]
    if missing:
        raise ValueError(f"curves: missing column(s) {missing}; expected survival_curves() output")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    else:
        fig = cast(plt.Figure, ax.figure)  # an Axes the caller made in a Figure (not a SubFigure)
    groups = list(curves.groupby(hue, sort=True))
    colors = palette or dict(zip([k for k, _ in groups], sns.color_palette("viridis_r", len(groups))))
    for k, (key, curve) in enumerate(groups):
        color = colors[key]
        shift = k * offset
        label = f"{int(key):,}" if hue == "train_size" else str(key)
        ax.step(curve["time_ps"], curve["survival"] - shift, where="post", color=color, lw=2, label=label)
        ax.fill_between(
            curve["time_ps"], curve["lower"] - shift, curve["upper"] - shift, step="post", color=color, alpha=0.15
        )
    ylabel = "fraction still stable" + (f"\n(curve k drawn k·{offset:g} lower)" if offset and len(groups) > 1 else "")
    ax.set(xlabel="time (ps)", ylabel=ylabel, ylim=(-0.02 - offset * len(groups), 1.02), title=title)
    ax.legend(title=HUE_LABELS.get(hue, hue), frameon=False, loc="lower left")
    return fig
