"""One function per figure of the book. Each takes tables the package computed and returns a Figure.

Paper values, when drawn, are labelled "paper" so they are never mistaken for ours.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from rdkit import Chem
from rdkit.Chem import Draw

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
    axes[1].axvline(
        displaced.attrs.get("kT_expected", 1.5 * 8.617333e-5 * 1500),
        color="k",
        ls="--",
        label=r"$\frac{3}{2}k_BT$, 1500 K",
    )
    axes[1].set(title="energy above the relaxed structure", xlabel="eV / atom")
    axes[1].legend(fontsize="small")
    sns.histplot(force_components, bins=80, ax=axes[2], color="C2", log_scale=(False, True), element="step", fill=False)
    axes[2].set(title="force components", xlabel="eV / Å", ylabel="count")
    return fig


def bond_deviation_comparison(bonds: pd.DataFrame) -> plt.Figure:
    """Bond-length deviations from their mean, ours vs real QM7-X, per bond type."""
    fig, ax = plt.subplots(figsize=(8, 3.6), constrained_layout=True)
    sns.violinplot(
        data=bonds, x="bond", y="deviation", hue="source", split=True, inner="quart", density_norm="width", ax=ax, cut=0
    )
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


def learning_curves(
    ours: pd.DataFrame,
    paper_points: pd.DataFrame,
    peer: tuple[float, float] | None = None,
    peer_label: str = "SpookyNet (paper)",
) -> plt.Figure:
    """Fig. 1: test AE MAE and force MAE against training-set size, log-log, ours beside the paper's.

    ``ours`` and ``paper_points`` hold ``train_size``, ``energy_mae`` (eV) and ``forces_mae``
    (eV/Å); ``peer`` = (training configurations, force MAE) draws a peer model's single result as a
    point. The paper's points are drawn as points: a line between them would claim a shape between
    its 3.2k and 3.2M models that its text does not give. An optional
    ``variant`` column in ``ours`` with several values draws one line style per GemNet variant;
    an optional ``member`` column (training seeds) draws every seed as a dot, the mean as the line
    and the seeds' range as a band. Legends sit below the axes, off the data.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), constrained_layout=True)
    panels = (("energy_mae", "AE MAE (eV)", "atomization energy"), ("forces_mae", "force MAE (eV/Å)", "forces"))
    variants = list(dict.fromkeys(ours["variant"])) if "variant" in ours else [None]
    styles = ("o-", "^-.", "v:", "d-")
    for ax, (column, ylabel, title) in zip(axes, panels):
        for i, (variant, style) in enumerate(zip(variants, styles)):
            rows = ours if variant is None else ours[ours["variant"] == variant]
            label = "ours" if len(variants) == 1 else f"ours GemNet-{variant}"
            color = f"C{2 * i}"
            by_size = rows.groupby("train_size")[column]
            n_seeds = int(by_size.size().max())
            if n_seeds > 1:
                ax.plot(rows["train_size"], rows[column], ".", color=color, alpha=0.5, ms=5)
                ax.fill_between(
                    by_size.min().index,
                    by_size.min(),
                    by_size.max(),
                    color=color,
                    alpha=0.2,
                    lw=0,
                    label=f"{label}: range of {n_seeds} seeds",
                )
                label = f"{label}: mean of {n_seeds} seeds"
            ax.plot(by_size.mean().index, by_size.mean(), style, color=color, label=label)
        ax.plot(paper_points["train_size"], paper_points[column], "s", color="C3", ms=7, label="GemNet (paper)")
        if column == "forces_mae" and peer is not None:
            ax.plot(*peer, "*", color="0.3", ms=11, label=peer_label)
        ax.set(xscale="log", yscale="log", xlabel="training configurations", ylabel=ylabel, title=title)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    return fig


def training_history(histories: dict) -> plt.Figure:
    """Validation force MAE against optimizer step: one colour per training-set size, one line per seed.

    ``histories`` maps a training size, or a ``(training size, seed)`` pair, to a ``history.csv``
    table; the kept model (lowest validation loss) is marked on every line.
    """
    fig, ax = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    keys = sorted(histories, key=lambda k: k if isinstance(k, tuple) else (k, 0))
    sizes = sorted({k[0] if isinstance(k, tuple) else k for k in keys})
    labelled: set[int] = set()
    for key in keys:
        size = key[0] if isinstance(key, tuple) else key
        history = histories[key]
        if not len(history):
            continue
        color = f"C{sizes.index(size)}"
        label = f"{size:,} train" if size not in labelled else None
        labelled.add(size)
        ax.plot(history["step"], history["val_forces_mae"], "-", lw=1, color=color, label=label)
        best = history.loc[history["val_loss"].idxmin()] if "val_loss" in history else history.iloc[-1]
        ax.plot(best["step"], best["val_forces_mae"], "o", ms=4, color=color)
    ax.set(yscale="log", xlabel="optimizer step", ylabel="validation force MAE (eV/Å)", title="training")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def molecule_drawings(molecules, columns: int = 5, size: int = 260) -> plt.Figure:
    """2-D structure drawings (RDKit) of ``molecules`` (objects with ``name`` and ``smiles``), named below each."""
    molecules = list(molecules)
    if not molecules:
        raise ValueError("molecules: expected at least one molecule to draw")
    columns = min(columns, len(molecules))
    rows = -(-len(molecules) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, molecule in zip(axes.ravel(), molecules):
        ax.imshow(Draw.MolToImage(Chem.MolFromSmiles(molecule.smiles), size=(size, size)))
        ax.set_title(molecule.name, fontsize="small", y=-0.12)
    return fig
