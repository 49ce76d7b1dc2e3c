"""One function per figure of the book. Each takes tables the package computed and returns a Figure.

Paper values, when drawn, are labelled "paper" so they are never mistaken for ours.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from gemrepro.data.statistics import HEAVY


def dataset_composition(table: pd.DataFrame) -> plt.Figure:
    """Elements and sizes: molecules containing each heavy element; atoms and heavy atoms per molecule."""
    molecules = table.drop_duplicates(["mol_id", "isomer"])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    counts = [(molecules[e] > 0).sum() for e in HEAVY]
    sns.barplot(x=list(HEAVY), y=counts, ax=axes[0], color="C0")
    axes[0].set(title="molecules containing element", ylabel="molecules")
    sns.histplot(molecules["n_heavy"], discrete=True, ax=axes[1], color="C1")
    axes[1].set(title="heavy atoms per molecule", xlabel="heavy atoms", ylabel="molecules")
    sns.histplot(molecules["n_atoms"], discrete=True, ax=axes[2], color="C2")
    axes[2].axvspan(4, 23, color="0.85", zorder=0, label="QM7-X range (paper)")
    axes[2].set(title="atoms per molecule", xlabel="atoms", ylabel="molecules")
    axes[2].legend(loc="upper left", fontsize="small")
    return fig


def dataset_energies_forces(table: pd.DataFrame, force_components: np.ndarray) -> plt.Figure:
    """Atomization energy per atom, energy above the relaxed structure, force components."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    sns.histplot(table["atomization_energy_per_atom"], bins=40, ax=axes[0], color="C0")
    axes[0].set(title="atomization energy per atom", xlabel="eV / atom")
    displaced = table[table["geometry"] != "opt"]
    per_atom = displaced["displacement_energy"] / displaced["n_atoms"]
    sns.histplot(per_atom, bins=40, ax=axes[1], color="C1")
    axes[1].axvline(displaced.attrs.get("kT_expected", 1.5 * 8.617333e-5 * 1500), color="k", ls="--",
                    label=r"$\frac{3}{2}k_BT$, 1500 K")
    axes[1].set(title="energy above the relaxed structure", xlabel="eV / atom")
    axes[1].legend(fontsize="small")
    sns.histplot(force_components, bins=80, ax=axes[2], color="C2", log_scale=(False, True), element="step", fill=False)
    axes[2].set(title="force components", xlabel="eV / Å", ylabel="count")
    return fig


def bond_deviation_comparison(bonds: pd.DataFrame) -> plt.Figure:
    """Bond-length deviations from their mean, ours vs real QM7-X, per bond type."""
    fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
    sns.violinplot(data=bonds, x="bond", y="deviation", hue="source", split=True, inner="quart",
                   density_norm="width", ax=ax, cut=0)
    ax.set(xlabel="bond", ylabel="length − mean length (Å)", title="bond stretching by normal-mode sampling")
    ax.legend(title=None, fontsize="small")
    return fig


def labelling_cost(labels: pd.DataFrame) -> plt.Figure:
    """Wall time of each reference calculation against molecule size."""
    done = labels[labels["n_atoms"] > 0]
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    sns.boxplot(data=done, x="n_atoms", y=done["wall_time"] * 1e3, ax=ax, color="C0", fliersize=1)
    ax.set(xlabel="atoms", ylabel="wall time per label (ms)", title="labelling cost (one core)")
    ax.set_yscale("log")
    return fig


def learning_curves(ours: pd.DataFrame, paper_points: pd.DataFrame, peer_forces_mae: float | None = None,
                    peer_label: str = "SpookyNet (paper)") -> plt.Figure:
    """Fig. 1: test AE MAE and force MAE against training-set size, log-log, ours beside the paper's.

    ``ours`` and ``paper_points`` hold ``train_size``, ``energy_mae`` (eV) and ``forces_mae``
    (eV/Å); ``peer_forces_mae`` draws a peer model's force MAE as a horizontal line. An optional
    ``variant`` column in ``ours`` with several values draws one line style per GemNet variant.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    panels = (("energy_mae", "AE MAE (eV)", "atomization energy"), ("forces_mae", "force MAE (eV/Å)", "forces"))
    variants = list(dict.fromkeys(ours["variant"])) if "variant" in ours else []
    if len(variants) > 1:
        lines = [(f"ours GemNet-{v}", ours[ours["variant"] == v], style)
                 for v, style in zip(variants, ("o-", "^-.", "v:", "d-"))]
    else:
        lines = [("ours", ours, "o-")]
    for ax, (column, ylabel, title) in zip(axes, panels):
        for label, rows, style in lines:
            ax.plot(rows["train_size"], rows[column], style, color="C0", label=label)
        ax.plot(paper_points["train_size"], paper_points[column], "s--", color="C3", label="GemNet (paper)")
        if column == "forces_mae" and peer_forces_mae is not None:
            ax.axhline(peer_forces_mae, color="0.4", ls=":", label=peer_label)
        ax.set(xscale="log", yscale="log", xlabel="training configurations", ylabel=ylabel, title=title)
        ax.legend(fontsize="small")
    return fig


def training_history(histories: dict[int, pd.DataFrame]) -> plt.Figure:
    """Validation force MAE against optimizer step, one line per training-set size."""
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    for i, (size, history) in enumerate(sorted(histories.items())):
        if len(history):
            ax.plot(history["step"], history["val_forces_mae"], "o-", ms=3, color=f"C{i}", label=f"{size} train")
    ax.set(yscale="log", xlabel="step", ylabel="validation force MAE (eV/Å)", title="training")
    ax.legend(fontsize="small")
    return fig
