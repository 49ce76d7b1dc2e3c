"""Figures of the performance appendix: one function per measurement, each naming its hardware.

Every function takes the ``result`` stored in a ``gemrepro.studies.performance`` artifact and the
hardware line (``hardware_label``) and returns the figure; timings belong to a machine, so the
machine is written into the figure itself, not only into the provenance line under it.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

__all__ = [
    "labelling_scaling",
    "md_profile",
    "md_speedup",
    "measurements_by_hardware",
    "model_cost",
    "training_throughput",
]


def _mark_hardware(fig: Figure, hardware: str) -> None:
    fig.text(0.99, 0.005, f"measured on {hardware}", ha="right", va="bottom", fontsize=7, color="0.35")


def md_speedup(result: dict, hardware: str) -> Figure:
    """System-steps per second of the batched engine and of the ASE loop, with their ratio."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    speeds = [result["ase_steps_per_s"], result["batched_steps_per_s"]]
    ax.bar(
        ["ASE Langevin loop\n(one system at a time)", "batched engine\n(all systems, one graph)"],
        speeds,
        color=sns.color_palette()[:2],
    )
    ax.set_ylabel("system-steps per second")
    ax.set_title(
        f"MD: {result['n_systems']} systems x {result['n_steps']} steps, ratio {result['ratio']:.1f}x", fontsize=10
    )
    _mark_hardware(fig, f"{hardware} ({result['device']})")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def md_profile(result: dict, hardware: str) -> Figure:
    """Milliseconds of one batched energy-and-forces call by kind of work, largest first."""
    rows = pd.DataFrame(result["rows"])
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.barh(rows["kind"], rows["ms_per_call"], color=sns.color_palette()[0])
    ax.invert_yaxis()
    for y, (ms, share) in enumerate(zip(rows["ms_per_call"], rows["share"])):
        ax.text(ms, y, f" {share:.0%}", va="center", fontsize=8)
    ax.set_xlabel("ms per energy-and-forces call")
    ax.set_title(
        f"{result['n_atoms']} atoms, {result['n_edges']:,} edges, {result['n_triplets']:,} triplets: "
        f"{result['wall_ms_per_call']:.0f} ms per call",
        fontsize=10,
    )
    ax.margins(x=0.15)
    _mark_hardware(fig, f"{hardware} ({result['device']})")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def batch_scaling(result: dict, hardware: str) -> Figure:
    """Force-call time against systems per batch (with its straight line), and the speed-up it gives."""
    rows = pd.DataFrame(result["rows"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    counts = np.linspace(0, rows["n_systems"].max(), 50)
    left.plot(
        rows["n_systems"],
        rows["one_at_a_time_ms"],
        "s",
        color=sns.color_palette()[0],
        label="one system at a time (sum)",
    )
    left.plot(rows["n_systems"], rows["batched_ms"], "o", color=sns.color_palette()[1], label="one batched call")
    left.plot(
        counts,
        result["fixed_ms"] + result["ms_per_system"] * counts,
        "--",
        color="0.4",
        label=f"{result['fixed_ms']:.1f} ms + {result['ms_per_system']:.2f} ms per system",
    )
    left.set(xlabel="systems", ylabel="ms per energy-and-forces call")
    left.legend(fontsize=8)
    right.plot(rows["n_systems"], rows["ratio"], "o-", color=sns.color_palette()[1], label="measured")
    right.axhline(
        result["ratio_bound"],
        ls="--",
        color="0.4",
        label=f"bound: single call / per-system cost = {result['ratio_bound']:.1f}x",
    )
    right.set(xlabel="systems in the batch", ylabel="speed-up of the force calls", ylim=(0, None))
    right.legend(fontsize=8)
    _mark_hardware(fig, f"{hardware} ({result['device']})")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def model_cost(rows: list[dict], linearity: dict, hardware: str) -> Figure:
    """Seconds per energy+force evaluation against atoms (with the fitted line), and cost per atom."""
    sizes = pd.DataFrame([r for r in rows if r["case"] == "size"]).sort_values("num_atoms")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    left.plot(sizes["num_atoms"], 1e3 * sizes["seconds"], "o", label="measured")
    atoms = np.linspace(0, sizes["num_atoms"].max(), 50)
    fitted = linearity["intercept_ms"] + 1e-3 * linearity["slope_us_per_atom"] * atoms
    left.plot(atoms, fitted, "--", color="0.4", label=f"linear fit, R² = {linearity['r_squared']:.3f}")
    left.set(xlabel="atoms in the molecule", ylabel="ms per energy+force evaluation")
    left.legend(fontsize=8)
    right.plot(sizes["num_atoms"], sizes["microseconds_per_atom"], "o-")
    right.set(xscale="log", xlabel="atoms in the molecule", ylabel="µs per atom", ylim=(0, None))
    right.set_title(f"largest / median size: {linearity['per_atom_ratio']:.2f}x per atom", fontsize=9)
    _mark_hardware(fig, hardware)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def labelling_scaling(rows: list[dict], reference: str, hardware: str) -> Figure:
    """Labels per second against Dask workers, beside ideal linear scaling from one worker."""
    table = pd.DataFrame(rows).sort_values("n_workers")
    fig, ax = plt.subplots(figsize=(5.0, 3.3))
    ax.plot(table["n_workers"], table["labels_per_s"], "o-", label="measured")
    one = float(table.loc[table["n_workers"] == 1, "labels_per_s"].iloc[0])
    ax.plot(table["n_workers"], one * table["n_workers"], "--", color="0.5", label="ideal (linear)")
    ax.set(xlabel="Dask workers", ylabel=f"{reference} labels per second", ylim=(0, None))
    ax.set_xticks(table["n_workers"])
    ax.legend(fontsize=8)
    _mark_hardware(fig, hardware)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def training_throughput(result: dict, hardware: str) -> Figure:
    """Training samples per second of one configuration (forward, double backward, update)."""
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    ax.barh(
        [f"batch {result['batch_size']} x {result['atoms_per_molecule']} atoms"],
        [result["samples_per_s"]],
        color=sns.color_palette()[2],
    )
    ax.set_xlabel("training samples per second")
    ax.set_title(f"{result['parameters']:,} parameters, {result['seconds_per_step']:.2g} s per update", fontsize=10)
    _mark_hardware(fig, hardware)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def measurements_by_hardware(table: pd.DataFrame) -> Figure:
    """Each measurement's headline value per machine (all cached measurements, CPU and GPU)."""
    if table.empty:
        raise ValueError("table: expected at least one measurement (see collect_measurements)")
    kinds = list(dict.fromkeys(table["measurement"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.0 * len(kinds), 3.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        rows = table[table["measurement"] == kind]
        labels = [f"{textwrap.fill(h, 24)}\n({d})" for h, d in zip(rows["hardware"], rows["device"])]
        ax.bar(range(len(rows)), rows["value"], color=sns.color_palette()[: len(rows)])
        ax.set_xticks(range(len(rows)), labels, fontsize=6, rotation=20, ha="right")
        ax.set_title(f"{kind}\n{rows['quantity'].iloc[0]}", fontsize=9)
    fig.tight_layout()
    return fig


def book_profile(chapters: pd.DataFrame, about: dict) -> Figure:
    """Each chapter's wall time in one book build, split into the seconds spent computing artifacts
    and the rest (reading the cache or a bundle, analysis, figures)."""
    order = chapters.sort_values("wall_s")
    fig, ax = plt.subplots(figsize=(6.0, 0.3 * len(order) + 1.2))
    computing = order["computing_s"].clip(upper=order["wall_s"])
    ax.barh(order["chapter"], computing, color=sns.color_palette()[3], label="computing artifacts")
    ax.barh(order["chapter"], order["wall_s"] - computing, left=computing, color="0.75", label="the rest")
    ax.set_xlabel("seconds")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    kind = (
        "empty cache"
        if about["artifacts_cached_before"] == 0
        else f"{about['artifacts_cached_before']} artifacts cached"
    )
    kind += ", bundles used" if about["bundles_used"] else ", no bundle"
    ax.set_title(
        f"make book at {about['scale']}: {about['wall_s'] / 60:.1f} min, {about['jobs']} chapters at once ({kind})",
        fontsize=10,
    )
    _mark_hardware(fig, f"{about['hardware']}, commit {about['git_revision']}")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
