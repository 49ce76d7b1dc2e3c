"""Figures of a robustness audit: survival curves, error vs time, and the worst frames as drawings."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from ase import Atoms
from ase.visualize.plot import plot_atoms

from gemrepro.analysis.survival import survival_curves
from gemrepro.plots.survival import survival_plot


def survival(trajectories: pd.DataFrame, horizon_ps: float, hue: str = "temperature", title: str = "") -> plt.Figure:
    """Kaplan–Meier fraction of trajectories still stable vs time, one curve per ``hue``."""
    return survival_plot(survival_curves(trajectories, [hue], horizon_ps), hue=hue, title=title)


def error_vs_time(frames: pd.DataFrame, hue: str = "temperature", title: str = "") -> plt.Figure:
    """Force MAE of the relabelled frames vs simulation time; a cross marks a trajectory's failed geometry.

    A growing error before the failure is the "hole" of Stocker et al. Fig. 2e: the model is carried
    into a region it never saw long before a bond breaks.
    """
    for column in (hue, "system", "time_ps", "forces_mae", "failure_frame"):
        if column not in frames.columns:
            raise ValueError(f"frames: missing column {column!r}; expected the frames table of an audit")
    fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    labelled = frames[np.isfinite(frames["forces_mae"].to_numpy(dtype=float))]
    keys = sorted(labelled[hue].unique())
    colors = dict(zip(keys, sns.color_palette("viridis_r", len(keys))))
    for (key, _), trajectory in labelled.groupby([hue, "system"], sort=True):
        ordered = trajectory.sort_values("time_ps")
        ax.plot(ordered["time_ps"], ordered["forces_mae"], color=colors[key], lw=1, alpha=0.7, marker="o", ms=3)
        failed = ordered[ordered["failure_frame"].astype(bool)]
        ax.scatter(failed["time_ps"], failed["forces_mae"], color=colors[key], marker="x", s=60, zorder=3)
    for key in keys:
        ax.plot([], [], color=colors[key], label=str(key))
    ax.set(xlabel="time (ps)", ylabel="force MAE vs reference (eV/Å)", title=title)
    if len(labelled) and (labelled["forces_mae"] > 0).all():
        ax.set_yscale("log")
    if keys:
        ax.legend(title=hue, frameon=False)
    return fig


def structures(images: Sequence[Atoms], titles: Sequence[str], columns: int = 4) -> plt.Figure:
    """Ball drawings of a few structures side by side (ASE's matplotlib renderer, no display needed)."""
    if len(images) != len(titles) or not images:
        raise ValueError(f"images, titles: expected equally many (at least one), got {len(images)} and {len(titles)}")
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 3.0 * rows), squeeze=False, constrained_layout=True)
    for ax, atoms, title in zip(axes.flat, images, titles):
        atoms = atoms.copy()
        atoms.positions -= atoms.positions.mean(0)
        plot_atoms(atoms, ax, rotation="10x,20y,0z", radii=0.4)
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig
