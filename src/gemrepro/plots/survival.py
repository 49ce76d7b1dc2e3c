"""Survival curves (Kaplan–Meier steps with their confidence bands), shared by the MD chapters."""

from __future__ import annotations

from typing import cast

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

HUE_LABELS = {"train_size": "training configurations", "temperature": "T (K)", "model": "model"}


LINE_STYLES = ("-", "--", ":", "-.")


def survival_plot(
    curves: pd.DataFrame,
    *,
    hue: str,
    ax: plt.Axes | None = None,
    title: str = "",
    palette: dict | None = None,
) -> plt.Figure:
    """Fraction of trajectories still stable vs time, one step curve and shaded 95 % band per ``hue``.

    ``curves`` is the table of :func:`gemrepro.analysis.survival.survival_curves`. Every curve is
    drawn at its true height; curves that coincide (every group stable: all at 1) stay visible
    because each group has its own line style and the earlier ones are drawn wider underneath.
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
        label = f"{int(key):,}" if hue == "train_size" else str(key)
        width = 1.5 + 1.5 * (len(groups) - 1 - k) / max(len(groups) - 1, 1)  # the first group widest, underneath
        style = LINE_STYLES[k % len(LINE_STYLES)]
        ax.step(curve["time_ps"], curve["survival"], where="post", color=color, lw=width, ls=style, label=label)
        ax.fill_between(curve["time_ps"], curve["lower"], curve["upper"], step="post", color=color, alpha=0.15)
    ax.set(xlabel="time (ps)", ylabel="fraction still stable", ylim=(-0.03, 1.03), title=title)
    ax.legend(title=HUE_LABELS.get(hue, hue), frameon=False, loc="lower left")
    return fig
