"""Figures of the MD chapters (Stocker et al., Fig. 2b-d): errors, stability and convergence vs temperature.

Each function takes tables from :mod:`gemrepro.analysis.errors` and returns a Figure. Paper values
are drawn in black and labelled "paper", never in our colours.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from gemrepro.analysis.proportions import with_intervals
from gemrepro.plots.style import size_palette


def errors_vs_temperature(
    trajectories: pd.DataFrame, means: pd.DataFrame, paper_points: pd.DataFrame | None = None
) -> plt.Figure:
    """AE and force MAE vs temperature per training size (Fig. 2b, c), log y.

    Thin transparent lines are single molecules, thick opaque lines their mean. ``paper_points``
    (``quantity``, ``temperature``, ``value``, ``label``; quantity ``energy_mae`` or ``forces_mae``)
    are drawn as black markers; a ``bound`` column ``">"`` draws an upward triangle (a lower bound).
    """
    colors = size_palette(trajectories["train_size"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, column, title, unit in (
        (axes[0], "energy_mae", "atomization energy", "eV"),
        (axes[1], "forces_mae", "forces", "eV/Å"),
    ):
        for (size, _), rows in trajectories.groupby(["train_size", "molecule"], sort=True):
            ax.plot(rows["temperature"], rows[column], color=colors[int(size)], alpha=0.25, lw=1)
        for size, rows in means.groupby("train_size", sort=True):
            ax.plot(rows["temperature"], rows[column], "o-", color=colors[int(size)], lw=2.5, label=f"{int(size):,}")
        if paper_points is not None:
            for _, p in paper_points[paper_points["quantity"] == column].iterrows():
                marker = "^" if p.get("bound", "") == ">" else "*"
                ax.plot(p["temperature"], p["value"], marker, color="k", ms=10, ls="none")
                ax.annotate(
                    f"paper {p['label']}",
                    (p["temperature"], p["value"]),
                    textcoords="offset points",
                    xytext=(6, 4),
                    fontsize="small",
                )
        ax.set(yscale="log", xlabel="temperature (K)", ylabel=f"MAE ({unit})", title=f"{title} MAE on MD frames")
        ax.set_xticks(sorted(trajectories["temperature"].unique()))
    handles, labels = axes[0].get_legend_handles_labels()  # beside the panels, off the curves and paper points
    fig.legend(
        handles, labels, title="training\nconfigurations", fontsize="small", loc="outside right upper", frameon=False
    )
    return fig


def stable_fraction(table: pd.DataFrame) -> plt.Figure:
    """Share of trajectories without a failure, per training size and temperature (a
    :func:`gemrepro.analysis.errors.stable_fraction` table): bars with their exact 95 % interval and n."""
    table = with_intervals(table)
    fig, ax = plt.subplots(figsize=(7.0, 3.6), constrained_layout=True)
    sizes = sorted(table["train_size"].unique())
    temperatures = sorted(table["temperature"].unique())
    width = 0.8 / len(temperatures)
    colors = sns.color_palette("flare", len(temperatures))
    for j, (temperature, color) in enumerate(zip(temperatures, colors, strict=True)):
        rows = table[table["temperature"] == temperature].set_index("train_size").reindex(sizes)
        x = np.arange(len(sizes)) - 0.4 + width * (j + 0.5)
        percent = 100 * rows["stable_fraction"].to_numpy(dtype=float)
        below = percent - 100 * rows["lower"].to_numpy(dtype=float)
        above = 100 * rows["upper"].to_numpy(dtype=float) - percent
        bars = ax.bar(x, percent, width, color=color, label=f"{temperature:g}")
        ax.errorbar(x, percent, yerr=[below, above], fmt="none", ecolor="k", elinewidth=1, capsize=2)
        ax.bar_label(bars, labels=[f"n={int(n)}" for n in rows["trajectories"]], padding=12, fontsize="x-small")
    ax.set_xticks(range(len(sizes)), [f"{int(n):,}" for n in sizes])
    ax.set(
        xlabel="training configurations",
        ylabel="stable trajectories (%)",
        ylim=(0, 118),
        title="trajectories that stayed stable (bars: exact 95 % interval)",
    )
    ax.legend(title="T (K)", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def converged_percent(
    xtb: pd.DataFrame,
    dft: pd.DataFrame | None = None,
    paper: pd.DataFrame | None = None,
    labels: tuple[str, str] = ("GFN2-xTB, all sampled frames", "PBE0, subsample"),
) -> plt.Figure:
    """% of converged reference calculations per model and temperature (Fig. 2d).

    ``xtb`` and ``dft`` come from :func:`gemrepro.analysis.errors.converged_percent`; bars carry the
    number of calculations. ``paper`` (``train_size`` label, ``temperature``, ``converged_percent``)
    is drawn as black markers in the DFT panel.
    """
    panels = [(xtb, labels[0])] + ([(dft, labels[1])] if dft is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), constrained_layout=True, squeeze=False)
    for ax, (table, title) in zip(axes[0], panels):
        data = table.assign(model=table["train_size"].map(lambda n: f"{int(n):,}"))
        sns.barplot(data=data, x="model", y="converged_percent", hue="temperature", palette="flare", ax=ax)
        for container, (_, rows) in zip(ax.containers, data.groupby("temperature", sort=True)):
            ax.bar_label(container, labels=[f"n={n}" for n in rows["calculations"]], fontsize="x-small")
        ax.set(xlabel="training configurations", ylabel="converged (%)", ylim=(0, 115), title=title)
        ax.legend(title="T (K)", fontsize="small", loc="lower right")
    if paper is not None and dft is not None:
        axis = axes[0][-1]
        text = "; ".join(
            f"{r['model']} at {r['temperature']:.0f} K: {r['converged_percent']:.0f} %" for _, r in paper.iterrows()
        )
        axis.text(0.0, -0.32, f"paper (PBE0+MBD): {text}", transform=axis.transAxes, fontsize="x-small", wrap=True)
    return fig


def frame_geometry(frames: pd.DataFrame, hue: str = "outcome") -> plt.Figure:
    """Shortest and longest start-structure bond and the closest atom pair of relabelled frames.

    ``frames`` needs ``shortest_bond``, ``longest_bond``, ``min_distance`` and a ``hue`` column
    (e.g. "converged" / "not converged" / "not converged, after failure").
    """
    long = frames.melt(
        id_vars=[hue],
        value_vars=["min_distance", "shortest_bond", "longest_bond"],
        var_name="descriptor",
        value_name="length",
    )
    long = long[np.isfinite(long["length"])]
    fig, ax = plt.subplots(figsize=(8, 3.8), constrained_layout=True)
    sns.stripplot(data=long, x="descriptor", y="length", hue=hue, dodge=True, alpha=0.6, size=3, jitter=0.25, ax=ax)
    ax.set(yscale="log", xlabel="", ylabel="length (Å)", title="geometry of the relabelled frames")
    ax.legend(title=None, fontsize="small")
    return fig


def time_to_failure(trajectories: pd.DataFrame, md_time_ps: float) -> plt.Figure:
    """Time to failure of every trajectory per training size and temperature (stable ones at the end)."""
    data = trajectories.assign(
        time=trajectories["time_to_failure_ps"].where(trajectories["failed"], md_time_ps),
        model=trajectories["train_size"].map(lambda n: f"{int(n):,}"),
    )
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    sns.stripplot(data=data, x="model", y="time", hue="temperature", palette="flare", dodge=True, size=5, ax=ax)
    ax.axhline(md_time_ps, color="0.4", ls="--", lw=1)
    ax.annotate(
        "end of run (stable)",
        (ax.get_xlim()[0], md_time_ps),
        textcoords="offset points",
        xytext=(4, -10),
        fontsize="x-small",
    )
    ax.set(xlabel="training configurations", ylabel="time to failure (ps)", title="when trajectories failed")
    ax.legend(title="T (K)", fontsize="small")
    return fig
