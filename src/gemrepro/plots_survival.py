"""Survival curves (Kaplan–Meier steps with their confidence bands), shared by the MD chapters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def survival_plot(curves: pd.DataFrame, hue: str, ax: plt.Axes | None = None, title: str = "",
                  palette: dict | None = None) -> plt.Figure:
    """Fraction of trajectories still stable vs time, one step curve and shaded 95 % band per ``hue``.

    ``curves`` is the table of :func:`gemrepro.analysis.survival.survival_curves`.
    """
    missing = [c for c in (hue, "time_ps", "survival", "lower", "upper") if c not in curves.columns]
    if missing:
        raise ValueError(f"curves: missing column(s) {missing}; expected survival_curves() output")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    else:
        fig = ax.figure
    groups = list(curves.groupby(hue, sort=True))
    colors = palette or dict(zip([k for k, _ in groups], sns.color_palette("viridis_r", len(groups))))
    for key, curve in groups:
        color = colors[key]
        ax.step(curve["time_ps"], curve["survival"], where="post", color=color, lw=2, label=str(key))
        ax.fill_between(curve["time_ps"], curve["lower"], curve["upper"], step="post", color=color, alpha=0.2)
    ax.set(xlabel="time (ps)", ylabel="fraction still stable", ylim=(-0.02, 1.02), title=title)
    ax.legend(title=hue, frameon=False)
    return fig
