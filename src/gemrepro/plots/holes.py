"""Figures of the holes chapter (Stocker et al., Fig. 2e, and survival beyond the paper).

Each function takes tables from :mod:`gemrepro.studies.holes` / :mod:`gemrepro.analysis` and
returns a Figure. Paper values are drawn in black and labelled "paper", never in our colours.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from ase import Atoms
from ase.build import minimize_rotation_and_translation
from ase.data import chemical_symbols, covalent_radii
from ase.data.colors import jmol_colors

from gemrepro.analysis.stability import reference_bonds
from gemrepro.plots.style import size_palette
from gemrepro.plots.survival import survival_plot


def error_timeline(
    timeline: pd.DataFrame,
    *,
    tolerance: float = 0.5,
    failure_ps: float | None = None,
    title: str = "",
    paper_error_ev: float | None = None,
) -> plt.Figure:
    """|AE error| and the bond-criterion signal of one trajectory against time (Fig. 2e).

    Top: |model - reference| atomization energy per relabelled frame (log scale); frames whose
    reference did not converge are marked on the time axis. Bottom: the largest deviation of a
    start-structure bond from its start length, with the ``tolerance`` of the bond rule.
    ``paper_error_ev`` draws the paper's error after its hole as a black line labelled "paper".
    """
    missing = [c for c in ("time_ps", "max_bond_deviation", "energy_error") if c not in timeline.columns]
    if missing:
        raise ValueError(f"timeline: missing column(s) {missing}; expected trajectory_timeline() with labels")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 5.0), sharex=True, constrained_layout=True)
    labelled = timeline.dropna(subset=["energy_error"])
    top.plot(labelled["time_ps"], labelled["energy_error"].abs(), "o-", ms=3, lw=1.2, label="ours")
    if "converged" in timeline.columns:
        failed = timeline[timeline["converged"].eq(False)]
        if len(failed):
            low = labelled["energy_error"].abs().min() if len(labelled) else 1e-3
            top.plot(failed["time_ps"], np.full(len(failed), low), "x", color="C3", label="reference did not converge")
    if paper_error_ev is not None:
        top.axhline(paper_error_ev, color="k", ls=":", lw=1)
        top.annotate(
            f"paper: > {paper_error_ev:g} eV after its hole",
            (0.01, paper_error_ev),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize="small",
        )
    top.set(yscale="log", ylabel="|AE error| (eV)", title=title)
    top.legend(fontsize="small", loc="lower right")
    bottom.plot(timeline["time_ps"], timeline["max_bond_deviation"], color="C1", lw=1.5)
    bottom.axhline(tolerance, color="k", ls="--", lw=1)
    bottom.annotate(
        f"bond rule: {tolerance:g} Å",
        (0.01, tolerance),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize="small",
    )
    bottom.set(xlabel="simulation time (ps)", ylabel="max |bond deviation| (Å)")
    for ax in (top, bottom):
        if failure_ps is not None and np.isfinite(failure_ps):
            ax.axvline(failure_ps, color="C3", lw=1, alpha=0.7)
    return fig


def _projection(reference_positions: np.ndarray) -> np.ndarray:
    """The two principal axes of the start structure: the view that shows most of the molecule."""
    centered = reference_positions - reference_positions.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return vt[:2].T


def structures(
    snapshots: dict[str, tuple[float, Atoms]], reference_positions: np.ndarray, tolerance: float = 0.5
) -> plt.Figure:
    """Ball-and-stick drawings of ``{label: (time_ps, atoms)}`` seen along the start structure's
    principal plane; the start structure's bonds are drawn red where they deviate more than
    ``tolerance`` from their start length (the bond rule), grey otherwise."""
    if not snapshots:
        raise ValueError("snapshots: expected at least one structure to draw")
    first = next(iter(snapshots.values()))[1]
    numbers = first.numbers
    start = Atoms(numbers, reference_positions)
    bonds, lengths = reference_bonds(numbers, reference_positions)
    axes_2d = _projection(np.asarray(reference_positions, dtype=float))
    fig, axes = plt.subplots(
        1, len(snapshots), figsize=(3.2 * len(snapshots), 3.2), constrained_layout=True, squeeze=False
    )
    origin = np.asarray(reference_positions, dtype=float).mean(axis=0)
    for ax, (label, (time_ps, atoms)) in zip(axes[0], snapshots.items()):
        atoms = atoms.copy()
        minimize_rotation_and_translation(start, atoms)  # seen from the same side as the start
        xyz = atoms.positions - origin
        xy = xyz @ axes_2d
        depth = np.argsort(xyz @ np.cross(axes_2d[:, 0], axes_2d[:, 1]))  # far atoms first
        current = np.linalg.norm(atoms.positions[bonds[:, 0]] - atoms.positions[bonds[:, 1]], axis=-1)
        for (i, j), deviation in zip(bonds, np.abs(current - lengths)):
            broken = deviation > tolerance
            ax.plot(
                xy[[i, j], 0],
                xy[[i, j], 1],
                color="C3" if broken else "0.5",
                lw=3 if broken else 2,
                ls="--" if broken else "-",
                zorder=1,
            )
        for k in depth:
            ax.scatter(
                *xy[k],
                s=900 * covalent_radii[numbers[k]] ** 2,
                color=jmol_colors[numbers[k]],
                edgecolors="k",
                linewidths=0.6,
                zorder=2,
            )
        n_broken = int((np.abs(current - lengths) > tolerance).sum())
        ax.set_title(f"{label}, {time_ps:.3g} ps\n{n_broken} bond(s) past {tolerance:g} Å", fontsize="small")
        ax.set_aspect("equal")
        ax.margins(0.15)
        ax.axis("off")
    elements = sorted(set(numbers.tolist()))
    handles = [
        plt.Line2D([], [], marker="o", ls="none", color=jmol_colors[z], markeredgecolor="k", label=chemical_symbols[z])
        for z in elements
    ]
    axes[0, -1].legend(handles=handles, fontsize="small", loc="upper right", frameon=False, bbox_to_anchor=(1.15, 1))
    return fig


def cross_trajectory(table: pd.DataFrame, paper: dict[str, float] | None = None) -> plt.Figure:
    """Force MAE of each model on each model's trajectory, the paper's two numbers as black stars.

    Points, not bars: the errors span orders of magnitude, and a bar on a log axis has no base, so
    a small error (the densest model's) would all but vanish.
    """
    missing = [c for c in ("model", "trajectory_of", "forces_mae") if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column(s) {missing}; expected holes.cross_trajectory() output")
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    trajectories = sorted(table["trajectory_of"].unique())
    models = sorted(table["model"].unique())
    colors = sns.color_palette("viridis_r", len(models))
    for j, (model, color) in enumerate(zip(models, colors, strict=True)):
        rows = table[table["model"] == model].set_index("trajectory_of").reindex(trajectories)
        positions = np.arange(len(trajectories)) + (j - (len(models) - 1) / 2) * 0.2
        ax.plot(positions, rows["forces_mae"], "o", color=color, ms=9, label=f"{int(model):,}-configuration model")
        for xi, value in zip(positions, rows["forces_mae"], strict=True):
            ax.annotate(f"{value:.3g}", (xi, value), xytext=(7, -3), textcoords="offset points", fontsize="x-small")
    if paper:
        for x, key in enumerate(("own trajectory", "exhaustive model's trajectory")):
            ax.plot(x - 0.2, paper[key], "*", color="k", ms=12)
            ax.annotate(
                f"paper {paper[key]:g}",
                (x - 0.2, paper[key]),
                xytext=(6, 2),
                textcoords="offset points",
                fontsize="small",
            )
    ax.set_xticks(range(len(trajectories)), [f"{int(n):,} model's" for n in trajectories])
    ax.set(
        xlim=(-0.6, len(trajectories) - 0.4),
        yscale="log",
        xlabel="frames from the trajectory of the",
        ylabel="force MAE (eV/Å)",
        title="each model on its own and on the other model's trajectory",
    )
    ax.legend(fontsize="small", frameon=False)
    return fig


def survival_by_temperature(curves: pd.DataFrame) -> plt.Figure:
    """Kaplan–Meier curves per training size, one panel per temperature."""
    missing = [c for c in ("temperature", "train_size") if c not in curves.columns]
    if missing:
        raise ValueError(f"curves: missing column(s) {missing}; expected survival_curves(by=[temperature, train_size])")
    temperatures = sorted(curves["temperature"].unique())
    palette = size_palette(curves["train_size"].unique())
    fig, axes = plt.subplots(
        1,
        len(temperatures),
        figsize=(3.6 * len(temperatures), 3.4),
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    for ax, temperature in zip(axes[0], temperatures):
        part = curves[curves["temperature"] == temperature]
        survival_plot(part, hue="train_size", ax=ax, title=f"{temperature:g} K", palette=palette)
        ax.get_legend().remove()
    axes[0, -1].legend(
        title="training\nconfigurations", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )
    return fig


def error_vs_survival(
    table: pd.DataFrame, correlation=None, error: str = "test_forces_mae", survival: str = "mean_stable_fraction"
) -> plt.Figure:
    """Each (model, temperature): test-set error against the mean stable fraction of its trajectories."""
    missing = [c for c in (error, survival, "temperature", "train_size") if c not in table.columns]
    if missing:
        raise ValueError(f"table: missing column(s) {missing}; expected holes.error_vs_survival() output")
    fig, ax = plt.subplots(figsize=(6.0, 3.6), constrained_layout=True)
    sns.scatterplot(
        data=table, x=error, y=survival, hue="temperature", style="temperature", palette="flare", s=70, ax=ax
    )
    for _, row in table.drop_duplicates("train_size").iterrows():
        ax.annotate(
            f"{int(row['train_size']):,}",
            (row[error], row[survival]),
            xytext=(4, -10),
            textcoords="offset points",
            fontsize="x-small",
        )
    text = (
        ""
        if correlation is None
        else (f"Spearman ρ = {correlation.rho:.2f} (p = {correlation.p_value:.2g}, n = {correlation.n})")
    )
    ax.set(
        xscale="log",
        xlabel="test-set force MAE (eV/Å)",
        ylabel="mean stable fraction of the run",
        ylim=(-0.02, 1.05),
        title=text,
    )
    ax.legend(title="T (K)", fontsize="small", frameon=False)
    return fig
