"""Figures of the pretraining chapter (Maheshwari et al.): force errors, stable times, h(r), MAE vs stability."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MODEL_COLORS = {"scratch": "#d55e00", "pretrained": "#0072b2", "reference MD": "0.2"}


def force_errors(errors: pd.DataFrame, paper_forces_mae: float | None = None) -> plt.Figure:
    """Test force MAE (meV/Å) of the scratch and fine-tuned models on the same held-out frames."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4), constrained_layout=True)
    values = 1000 * errors["forces_mae"].to_numpy(dtype=float)
    ax.bar(errors["model"], values, color=[MODEL_COLORS.get(m, "0.5") for m in errors["model"]], width=0.6)
    for x, v in enumerate(values):
        ax.annotate(f"{v:.0f}", (x, v), ha="center", va="bottom", fontsize="small")
    if paper_forces_mae is not None:
        ax.axhline(1000 * paper_forces_mae, color="0.3", ls="--", lw=1)
        ax.annotate(
            "paper (both)",
            (ax.get_xlim()[0], 1000 * paper_forces_mae),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize="x-small",
        )
    ax.set(ylabel="test force MAE (meV/Å)", xlabel="", title="same held-out frames")
    return fig


def stable_times(trajectories: pd.DataFrame, horizon_ps: float, models: list[str] | None = None) -> plt.Figure:
    """Stable time of every trajectory per model; trajectories that never failed sit on the dashed line."""
    data = trajectories if models is None else trajectories[trajectories["model"].isin(models)]
    data = data.assign(outcome=np.where(data["failed"], "failed", "stable to the end"))
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    sns.stripplot(
        data=data,
        x="model",
        y="stable_time_ps",
        hue="outcome",
        order=models,
        palette={"failed": "#d55e00", "stable to the end": "#009e73"},
        size=4,
        jitter=0.25,
        ax=ax,
    )
    ax.axhline(horizon_ps, color="0.4", ls="--", lw=1)
    ax.set(xlabel="", ylabel="stable time (ps)", title="time to failure, one dot per seed", ylim=(0, 1.1 * horizon_ps))
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(title=None, fontsize="small")
    return fig


def distance_histograms(table: pd.DataFrame) -> plt.Figure:
    """h(r) of the reference MD and each model's stable frames, and their difference to the reference."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.5, 4.6), sharex=True, constrained_layout=True, gridspec_kw={"height_ratios": (2, 1)}
    )
    reference = table[table["source"] == "reference MD"].set_index("r")["h"]
    for source, curve in table.groupby("source", sort=False):
        color = MODEL_COLORS.get(source)
        distance = curve["distance"].iloc[0]
        label = source if source == "reference MD" else f"{source} (∫|Δh| dr = {distance:.2f})"
        top.plot(curve["r"], curve["h"], color=color, lw=1.4, label=label)
        if source != "reference MD":
            bottom.plot(curve["r"], curve["h"].to_numpy() - reference.loc[curve["r"]].to_numpy(), color=color, lw=1)
    top.set(ylabel="h(r) (1/Å)", title="interatomic distances over the stable part of the runs")
    top.legend(frameon=False, fontsize="small")
    bottom.axhline(0, color="0.5", lw=0.8)
    bottom.set(xlabel="r (Å)", ylabel="h − h_ref")
    r_max = table.loc[table["h"] > 0, "r"].max()
    bottom.set_xlim(0, min(float(r_max) + 0.5, float(table["r"].max())))
    return fig


def mae_vs_stability(overview: pd.DataFrame, horizon_ps: float) -> plt.Figure:
    """Test force MAE against median stable time for every model of the book."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    sns.scatterplot(
        data=overview.assign(forces_mae_mev=1000 * overview["forces_mae"]),
        x="forces_mae_mev",
        y="median_stable_time_ps",
        hue="kind",
        style="kind",
        s=80,
        ax=ax,
    )
    for k, (_, row) in enumerate(overview.sort_values("forces_mae").iterrows()):
        label = str(row["model"]).replace("QM7-X-style ", "n = ")
        ax.annotate(
            label,
            (1000 * row["forces_mae"], row["median_stable_time_ps"]),
            textcoords="offset points",
            xytext=(-4, 7 if k % 2 == 0 else -13),
            fontsize="x-small",
        )  # alternate: close points stay legible
    ax.axhline(horizon_ps, color="0.4", ls="--", lw=1)
    ax.set(
        xscale="log",
        xlabel="test force MAE (meV/Å)",
        ylabel="median stable time (ps)",
        title="test force error against MD stability",
        ylim=(0, 1.12 * horizon_ps),
    )
    ax.legend(title=None, fontsize="small")
    return fig


def validation_curves(histories: pd.DataFrame) -> plt.Figure:
    """Validation force MAE per epoch of every model of both arms, one panel per fine-tuning set size.

    ``histories``: arm, size, training_seed, epoch, val_forces_mae, stopped (the last epoch) and
    matched (the epoch whose model entered the matched comparison). A cross marks where each run
    stopped, a ring where a fine-tuned run was matched to the scratch arm.
    """
    sizes = sorted(histories["size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.4), sharey=True, constrained_layout=True)
    for ax, size in zip(np.atleast_1d(axes), sizes):
        for (arm, seed), run in histories[histories["size"] == size].groupby(["arm", "training_seed"]):
            color = MODEL_COLORS.get(arm, "0.5")
            label = f"{arm}" if seed == 0 else None
            ax.plot(run["epoch"], 1000 * run["val_forces_mae"], color=color, lw=1, alpha=0.8, label=label)
            last = run[run["stopped"]]
            ax.scatter(last["epoch"], 1000 * last["val_forces_mae"], marker="x", color=color, s=25, zorder=3)
            matched = run[run["matched"]]
            ax.scatter(
                matched["epoch"], 1000 * matched["val_forces_mae"], facecolors="none", edgecolors="k", s=45, zorder=4
            )
        ax.set(xscale="log", yscale="log", xlabel="epoch", title=f"{size:,} training frames")
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("validation force MAE (meV/Å)")
    first.legend(frameon=False, fontsize="small")
    return fig


def families(family: pd.DataFrame, horizon_ps: float) -> plt.Figure:
    """Median stable time against test force MAE for both families over the fine-tuning set sizes.

    At one force error, the family drawn higher lasts longer: the thesis of both papers at a glance.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.8), constrained_layout=True)
    for arm, rows in family.groupby("arm"):
        color = MODEL_COLORS.get(arm, "0.5")
        ax.scatter(1000 * rows["forces_mae"], rows["median_stable_time_ps"], color=color, s=30, alpha=0.7, label=arm)
        means = rows.groupby("train_size")[["forces_mae", "median_stable_time_ps"]].median()
        ax.plot(1000 * means["forces_mae"], means["median_stable_time_ps"], color=color, lw=1.2)
        for size, row in means.iterrows():
            ax.annotate(
                f"{int(size):,}",
                (1000 * row["forces_mae"], row["median_stable_time_ps"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="x-small",
                color=color,
            )
    ax.axhline(horizon_ps, color="0.4", ls="--", lw=1)
    ax.set(
        xscale="log",
        xlabel="test force MAE on the held-out run (meV/Å)",
        ylabel="median stable time (ps)",
        ylim=(0, 1.1 * horizon_ps),
        title="same force error, same stability? (labels: training frames)",
    )
    ax.legend(frameon=False, fontsize="small")
    return fig
