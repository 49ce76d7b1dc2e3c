"""Figures of the out-of-sample chapter (Stocker et al., Fig. 3) and of the dispersion test.

Each function takes tables from :mod:`gemrepro.analysis.shift` or the frames of
:func:`gemrepro.studies.out_of_sample.out_of_sample` and returns a Figure. Paper values are
drawn in black and labelled "paper".
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def _order(frames: pd.DataFrame) -> list[str]:
    """Molecules from smallest to largest, the order of every legend."""
    sizes = frames.groupby("molecule")["n_atoms"].first()
    return list(sizes.sort_values(kind="stable").index)


def error_kdes(frames: pd.DataFrame, force_errors: pd.DataFrame, paper_shift: float | None = None) -> plt.Figure:
    """Fig. 3a/b: KDEs of the AE error per frame and of the force-component errors, per molecule.

    ``paper_shift`` (eV) marks the paper's tripeptide mean AE shift with a black dashed line.
    """
    order = _order(frames)
    converged = frames[frames["converged"].astype(bool)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    sns.kdeplot(
        data=converged,
        x="energy_error",
        hue="molecule",
        hue_order=order,
        fill=True,
        alpha=0.25,
        common_norm=False,
        warn_singular=False,
        ax=axes[0],
    )
    axes[0].axvline(0.0, color="0.5", lw=0.8)
    if paper_shift is not None:
        axes[0].axvline(paper_shift, color="k", ls="--", lw=1.2, label="paper: tripeptide shift")
        axes[0].annotate(
            "paper, tripeptide",
            (paper_shift, 0.0),
            xytext=(3, 6),
            textcoords="offset points",
            fontsize="small",
            rotation=90,
            va="bottom",
        )
    axes[0].set(xlabel="AE error, model − reference (eV)", ylabel="density", title="(a) atomization energy")
    sns.kdeplot(
        data=force_errors,
        x="error",
        hue="molecule",
        hue_order=order,
        fill=True,
        alpha=0.25,
        common_norm=False,
        warn_singular=False,
        legend=False,
        ax=axes[1],
    )
    axes[1].axvline(0.0, color="0.5", lw=0.8)
    axes[1].set(xlabel="force-component error, model − reference (eV/Å)", ylabel="density", title="(b) forces")
    return fig


def shift_vs_size(shares: pd.DataFrame, paper_shift: tuple[int, float] | None = None) -> plt.Figure:
    """Mean AE shift per molecule against its size, beside the shift each dispersion part explains.

    ``shares`` is :func:`gemrepro.analysis.shift.dispersion_share`; ``paper_shift`` is (atoms,
    shift in eV) of the paper's tripeptide, drawn as a black star.
    """
    parts = [
        ("mean_shift", "mean AE shift (model − reference)", "o-", "k"),
        ("missing_total", "all dispersion of the reference", "s--", None),
        ("missing_beyond_cutoff", "dispersion beyond the cutoff", "^--", None),
        ("missing_beyond_receptive_field", "dispersion beyond the receptive field", "v--", None),
    ]
    colors = iter(sns.color_palette("colorblind", len(parts)))
    fig, ax = plt.subplots(figsize=(7.0, 4.0), constrained_layout=True)
    for column, label, style, color in parts:
        ax.plot(shares["n_atoms"], shares[column], style, color=color or next(colors), label=label)
    for _, row in shares.iterrows():
        ax.annotate(
            row["molecule"],
            (row["n_atoms"], row["mean_shift"]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize="x-small",
        )
    if paper_shift is not None:
        ax.plot(*paper_shift, "*", color="k", ms=12, ls="none", label="paper: tripeptide shift (PBE0+MBD)")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set(xlabel="atoms in the molecule", ylabel="eV", title="AE shift and the dispersion a local model misses")
    ax.legend(fontsize="small")
    return fig
